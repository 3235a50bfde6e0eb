//! How each service type runs on its stack: the start script (initialising its data folder
//! on first start), the command that says it is ready, and the user apps connect as.
//!
//! A service's data folder is its container's `/app` (writable); it listens on its own
//! loopback address in the environment's network namespace, on its type's standard port.

use sha2::{Digest as _, Sha256};
use slipway_config::databases::{Layout, Privilege};
use slipway_stack::Language;
use slipway_state::ServiceRecord;

/// The variable holding a service's generated password inside its container (never on a
/// command line; the bundle's `config.json` is private to root).
pub const PASSWORD_VAR: &str = "SLIPWAY_SERVICE_PASSWORD";

/// The file in a MariaDB service's data folder holding the SQL of its configured
/// `schemas` and `endpoints` ([`mysql_endpoints_sql`]), run at each start.
pub const ENDPOINTS_FILE: &str = "slipway-endpoints.sql";

/// The file in a RabbitMQ service's data folder holding its users, vhosts and permissions
/// ([`rabbitmq_definitions`]), imported at each start.
pub const DEFINITIONS_FILE: &str = "slipway-definitions.json";

/// The file in a PostgreSQL service's data folder naming its `configuration.extensions`,
/// one per line ([`postgresql_extensions`]), created in `main` at each start.
pub const EXTENSIONS_FILE: &str = "slipway-extensions.txt";

/// The lines of [`EXTENSIONS_FILE`]: each of `configuration.extensions` (a list of
/// extension names, as on Platform.sh); names that are not plain words are refused.
pub fn postgresql_extensions(configuration: &serde_json::Value) -> Result<String, String> {
    let mut out = String::new();
    let Some(list) = configuration.get("extensions") else {
        return Ok(out);
    };
    let list = list
        .as_array()
        .ok_or_else(|| "`extensions` must be a list of extension names".to_string())?;
    for e in list {
        let name = e
            .as_str()
            .filter(|n| plain_name(&n.replace('-', "_")))
            .ok_or_else(|| format!("extension {e} is not a plain name"))?;
        out.push_str(name);
        out.push('\n');
    }
    Ok(out)
}

/// The password of a configured endpoint (its own user): derived from the service's
/// generated password, so state keeps one secret per service.
pub fn endpoint_password(service_password: &str, endpoint: &str) -> String {
    let mut h = Sha256::new();
    h.update(service_password.as_bytes());
    h.update([0]);
    h.update(endpoint.as_bytes());
    hex::encode(h.finalize())[..48].to_string()
}

/// Whether `s` is a name MariaDB and PostgreSQL take as written: letters, digits, `_`.
fn plain_name(s: &str) -> bool {
    slipway_config::databases::plain_name(s)
}

/// The [`Layout`] of a database service's `configuration` (schemas and endpoints).
fn database_layout(
    service_type: &str,
    configuration: &serde_json::Value,
) -> Result<Layout, String> {
    slipway_config::databases::layout(service_type, configuration)
        .unwrap_or_else(|| Ok(Layout::default()))
        .map_err(|e| e.to_string())
}

/// The SQL creating a MariaDB service's `configuration.schemas` (`main` only when none
/// is configured, as on Platform.sh) and one user per other `configuration.endpoints`
/// entry with its generated password; no privilege. Names that are not plain words are
/// refused.
pub fn mysql_accounts_sql(
    configuration: &serde_json::Value,
    service_password: &str,
) -> Result<String, String> {
    let layout = database_layout("mariadb", configuration)?;
    let mut sql = String::new();
    for schema in &layout.schemas {
        sql.push_str(&format!("CREATE DATABASE IF NOT EXISTS `{schema}`;\n"));
    }
    for name in layout.endpoints.keys() {
        let pw = endpoint_password(service_password, name);
        sql.push_str(&format!(
            "CREATE USER IF NOT EXISTS '{name}'@'%' IDENTIFIED BY '{pw}';\nALTER USER '{name}'@'%' IDENTIFIED BY '{pw}';\n"
        ));
    }
    Ok(sql)
}

/// The init file of a MariaDB service ([`ENDPOINTS_FILE`], run at each start before it
/// serves anyone): [`mysql_accounts_sql`], then each account of
/// [`grants::wanted`](super::grants::wanted) (the endpoints and the service's own user)
/// given exactly its privileges per schema (`admin`: all, `rw`: read and write data,
/// `ro`: read), set from scratch: revoked, then granted. A running server gets only the
/// changes ([`grants::changes_sql`](super::grants::changes_sql)).
pub fn mysql_endpoints_sql(
    configuration: &serde_json::Value,
    service_password: &str,
) -> Result<String, String> {
    let layout = database_layout("mariadb", configuration)?;
    let mut sql = mysql_accounts_sql(configuration, service_password)?;
    for (name, privileges) in super::grants::wanted(&layout) {
        // Set again from the configuration: a privilege lowered or a schema removed since
        // leaves nothing behind (a GRANT only adds).
        sql.push_str(&format!(
            "REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{name}'@'%';\n"
        ));
        for (schema, level) in privileges {
            let grant = super::grants::grant_list(level);
            sql.push_str(&format!("GRANT {grant} ON `{schema}`.* TO '{name}'@'%';\n"));
        }
    }
    Ok(sql)
}

/// The SQL dropping the schemas and endpoint users a MariaDB service's `old` configuration
/// had and `new` no longer has (pushed with `-o allow-data-loss`): a dropped user can no
/// longer log in, and its open sessions are closed (after the drop: none can start again
/// in between), before its schemas go.
pub fn mysql_removed_sql(
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> Result<String, String> {
    let (old, new) = (
        database_layout("mariadb", old)?,
        database_layout("mariadb", new)?,
    );
    let mut sql = String::new();
    for name in old.endpoints_removed(&new) {
        sql.push_str(&format!(
            "DROP USER IF EXISTS '{name}'@'%';\nKILL CONNECTION USER '{name}'@'%';\n"
        ));
    }
    for schema in old.schemas_removed(&new) {
        sql.push_str(&format!("DROP DATABASE IF EXISTS `{schema}`;\n"));
    }
    Ok(sql)
}

/// The privileges on a database, its `public` schema, and its tables and sequences (those
/// there and those made later) that `level` gives, as on Platform.sh: `ro` reads, `rw`
/// also writes rows (no `CREATE`), `admin` may do everything.
fn pg_grants(level: Privilege) -> [&'static str; 4] {
    match level {
        Privilege::Ro => ["CONNECT", "USAGE", "SELECT", "SELECT"],
        Privilege::Rw => [
            "CONNECT, TEMPORARY",
            "USAGE",
            "SELECT, INSERT, UPDATE, DELETE",
            "USAGE, SELECT, UPDATE",
        ],
        Privilege::Admin => ["ALL", "ALL", "ALL", "ALL"],
    }
}

/// `name` (a plain word) as a PostgreSQL identifier.
fn pg_ident(name: &str) -> String {
    format!("\"{name}\"")
}

/// The `psql` script (run by the service's own superuser `main` over the server's socket)
/// creating a PostgreSQL service's databases (`configuration.schemas` or `databases`,
/// default `main`) and a login role per other `configuration.endpoints` entry with exactly
/// its `privileges` per database; every database is closed to everyone else (`PUBLIC` may
/// neither connect nor create); each of `configuration.extensions` is created in each
/// database (refused first when the server has not got it), and the service's own user
/// `main` gets `service_password` (a copy of another environment's data has that one's).
/// Run at each deploy and after each `sync`: what is there already is kept, privileges
/// and passwords are set again from the configuration.
pub fn postgresql_endpoints_sql(
    configuration: &serde_json::Value,
    service_password: &str,
) -> Result<String, String> {
    let layout = database_layout("postgresql", configuration)?;
    let extensions = postgresql_extensions(configuration)?;
    let mut sql = String::from("\\set ON_ERROR_STOP on\n");
    // Each extension there to be created, before anything changes.
    for ext in extensions.lines() {
        sql.push_str(&format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = '{ext}') THEN \
             RAISE EXCEPTION 'extension {ext} is not available on this server'; END IF; END $$;\n"
        ));
    }
    // The service's own user logs in with this environment's password (a branch's data,
    // copied from its parent, holds the parent's).
    sql.push_str(&format!(
        "ALTER ROLE {} WITH PASSWORD '{service_password}';\n",
        pg_ident(username("postgresql"))
    ));
    for db in &layout.schemas {
        sql.push_str(&format!(
            "SELECT 'CREATE DATABASE {}' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{db}')\\gexec\n",
            pg_ident(db)
        ));
    }
    for name in layout.endpoints.keys() {
        let pw = endpoint_password(service_password, name);
        let role = pg_ident(name);
        sql.push_str(&format!(
            "SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{name}')\\gexec\n\
             ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '{pw}';\n\
             COMMENT ON ROLE {role} IS '{}';\n",
            crate::backups::pg_roles::ROLE_COMMENT
        ));
    }
    for db in ["postgres", "template1"] {
        sql.push_str(&format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC;\n"));
    }
    for db in &layout.schemas {
        let d = pg_ident(db);
        sql.push_str(&format!(
            // One transaction per database: the revokes and grants below take effect
            // together, so an app's query never lands between them.
            "\\connect {d}\nBEGIN;\nREVOKE ALL ON DATABASE {d} FROM PUBLIC;\nREVOKE CREATE ON SCHEMA public FROM PUBLIC;\n"
        ));
        // Those who make tables here: the service's own user and this database's admins.
        let creators: Vec<String> = std::iter::once("main".to_string())
            .chain(
                layout
                    .endpoints
                    .iter()
                    .filter(|(_, ep)| ep.privileges.get(db) == Some(&Privilege::Admin))
                    .map(|(n, _)| n.clone()),
            )
            .map(|n| pg_ident(&n))
            .collect();
        for (name, ep) in &layout.endpoints {
            let role = pg_ident(name);
            sql.push_str(&format!(
                "REVOKE ALL ON DATABASE {d} FROM {role};\nREVOKE ALL ON SCHEMA public FROM {role};\n\
                 REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role};\nREVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role};\n"
            ));
            for c in &creators {
                sql.push_str(&format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {c} IN SCHEMA public REVOKE ALL ON TABLES FROM {role};\n\
                     ALTER DEFAULT PRIVILEGES FOR ROLE {c} IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {role};\n"
                ));
            }
            let Some(level) = ep.privileges.get(db) else {
                continue;
            };
            let [database, schema, tables, sequences] = pg_grants(*level);
            sql.push_str(&format!(
                "GRANT {database} ON DATABASE {d} TO {role};\nGRANT {schema} ON SCHEMA public TO {role};\n\
                 GRANT {tables} ON ALL TABLES IN SCHEMA public TO {role};\nGRANT {sequences} ON ALL SEQUENCES IN SCHEMA public TO {role};\n"
            ));
            for c in &creators {
                sql.push_str(&format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {c} IN SCHEMA public GRANT {tables} ON TABLES TO {role};\n\
                     ALTER DEFAULT PRIVILEGES FOR ROLE {c} IN SCHEMA public GRANT {sequences} ON SEQUENCES TO {role};\n"
                ));
            }
        }
        sql.push_str("COMMIT;\n");
        // The configured extensions, in each database (a later push's too).
        for ext in extensions.lines() {
            sql.push_str(&format!(
                "CREATE EXTENSION IF NOT EXISTS {};\n",
                pg_ident(ext)
            ));
        }
    }
    Ok(sql)
}

/// The `psql` script dropping the databases and endpoint roles a PostgreSQL service's
/// `old` configuration had and `new` no longer has (pushed with `-o allow-data-loss`):
/// each dropped role's open sessions are closed, and what it owns in the remaining
/// databases is dropped with it.
pub fn postgresql_removed_sql(
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> Result<String, String> {
    let (old, new) = (
        database_layout("postgresql", old)?,
        database_layout("postgresql", new)?,
    );
    let mut sql = String::from("\\set ON_ERROR_STOP on\n");
    for db in old.schemas_removed(&new) {
        sql.push_str(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE);\n",
            pg_ident(&db)
        ));
    }
    let roles = old.endpoints_removed(&new);
    if roles.is_empty() {
        return Ok(sql);
    }
    // No new session, then the open ones closed (a dropped role's sessions would go on).
    for r in &roles {
        sql.push_str(&format!(
            "SELECT 'ALTER ROLE {} NOLOGIN' WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{r}')\\gexec\n\
             SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '{r}';\n",
            pg_ident(r)
        ));
    }
    for db in &new.schemas {
        sql.push_str(&format!("\\connect {}\n", pg_ident(db)));
        for r in &roles {
            sql.push_str(&format!(
                "SELECT 'DROP OWNED BY {}' WHERE EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{r}')\\gexec\n",
                pg_ident(r)
            ));
        }
    }
    for r in &roles {
        sql.push_str(&format!("DROP ROLE IF EXISTS {};\n", pg_ident(r)));
    }
    Ok(sql)
}

/// The vhosts of a RabbitMQ service: the default `/` and each of `configuration.vhosts`
/// (names of 1 to 255 characters, none a control character), once each.
pub fn rabbitmq_vhosts(configuration: &serde_json::Value) -> Result<Vec<String>, String> {
    let mut vhosts = vec!["/".to_string()];
    if let Some(list) = configuration.get("vhosts") {
        let list = list
            .as_array()
            .ok_or_else(|| "`vhosts` must be a list of names".to_string())?;
        for v in list {
            let name = v
                .as_str()
                .filter(|n| !n.is_empty() && n.len() <= 255 && !n.chars().any(char::is_control))
                .ok_or_else(|| format!("vhost {v} is not a name"))?;
            if !vhosts.iter().any(|h| h == name) {
                vhosts.push(name.to_string());
            }
        }
    }
    Ok(vhosts)
}

/// The vhosts named in a definitions file [`rabbitmq_definitions`] wrote (None: not such a
/// file).
pub fn definitions_vhosts(text: &str) -> Option<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("vhosts")?
        .as_array()?
        .iter()
        .map(|h| h.get("name")?.as_str().map(str::to_string))
        .collect()
}

/// The definitions a RabbitMQ service imports at each start: the user apps connect as
/// (`guest`, Platform.sh's name, with the service's generated password, stored as RabbitMQ's
/// salted SHA-256 hash), the default vhost `/` and each of `configuration.vhosts`, with
/// all permissions on each. `salt`: 4 random bytes.
pub fn rabbitmq_definitions(
    configuration: &serde_json::Value,
    service_password: &str,
    salt: [u8; 4],
) -> Result<String, String> {
    use base64::Engine as _;
    let vhosts = rabbitmq_vhosts(configuration)?;
    let mut hashed = salt.to_vec();
    hashed.extend(Sha256::digest(
        [&salt[..], service_password.as_bytes()].concat(),
    ));
    let user = username("rabbitmq");
    let definitions = serde_json::json!({
        "users": [{
            "name": user,
            "password_hash": base64::engine::general_purpose::STANDARD.encode(hashed),
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": "administrator",
        }],
        "vhosts": vhosts.iter().map(|v| serde_json::json!({"name": v})).collect::<Vec<_>>(),
        "permissions": vhosts.iter().map(|v| serde_json::json!({
            "user": user, "vhost": v, "configure": ".*", "write": ".*", "read": ".*",
        })).collect::<Vec<_>>(),
    });
    Ok(definitions.to_string())
}

/// A ready command that makes one plain HTTP/1.1 request (`Connection: close`) to `addr:port` with bash's
/// `/dev/tcp` (every stack has bash) and prints the answer.
fn http_probe(addr: impl std::fmt::Display, port: u16, path: &str) -> Vec<String> {
    vec![
        "/bin/bash".into(),
        "-c".into(),
        format!(
            "exec 3<>/dev/tcp/{addr}/{port} && printf 'GET {path} HTTP/1.1\\r\\nHost: {addr}:{port}\\r\\nConnection: close\\r\\n\\r\\n' >&3 && {{ timeout 3 cat <&3 || true; }}"
        ),
    ]
}

/// A ready command asking memcached at `addr:port` for its `version` over TCP (bash's
/// `/dev/tcp`) and printing the answer (`VERSION 1.6.x` once it serves): a server that
/// accepts but does not answer within 3 s is not ready.
fn memcached_probe(addr: impl std::fmt::Display, port: u16) -> Vec<String> {
    vec![
        "/bin/bash".into(),
        "-c".into(),
        format!(
            "exec 3<>/dev/tcp/{addr}/{port} && printf 'version\\r\\n' >&3 && timeout 3 head -n 1 <&3"
        ),
    ]
}

/// A ready command that exits 0 once `addr:port` accepts a TCP connection.
fn tcp_probe(addr: impl std::fmt::Display, port: u16) -> Vec<String> {
    vec![
        "/bin/bash".into(),
        "-c".into(),
        format!("exec 3<>/dev/tcp/{addr}/{port}"),
    ]
}

/// The port Chromium's DevTools listens on at 127.0.0.1 in the environment's network
/// namespace (Chromium binds nothing else); `socat` publishes it on the service's address,
/// port 9222. One per service address, in its block of [`super::ports`].
pub fn chromium_inner_port(address: std::net::Ipv4Addr) -> u16 {
    super::ports::private(super::ports::Private::ChromiumDevtools, address)
}

/// How one service runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The `/bin/sh -c` script: initialise `/app` when empty, then `exec` the server.
    pub start: String,
    /// A command run in the container that exits 0 once the server answers; `None`: ready
    /// once its process has stayed up for a moment.
    pub ready: Option<Vec<String>>,
    /// What the ready command prints when ready (checked besides its exit code).
    pub ready_output: Option<&'static str>,
}

/// The user apps connect as, by service type (Platform.sh's names); empty: no
/// authentication.
pub fn username(service_type: &str) -> &'static str {
    match service_type {
        "postgresql" => "main",
        t if slipway_config::catalog::runs_mariadb(t) => "user",
        "rabbitmq" => "guest",
        _ => "",
    }
}

/// Whether a service keeps what it holds across restarts (`redis` is a cache:
/// `redis-persistent` writes to disk).
fn persistent(service_type: &str) -> bool {
    !matches!(
        service_type,
        "redis" | "valkey" | "memcached" | "chrome-headless" | "varnish"
    )
}

/// The shell lines choosing a RabbitMQ node's name and exporting what its server and its
/// `rabbitmqctl` share (node name, Erlang cookie in `/app`, port mapper): one Erlang node
/// name, distribution port and port-mapper daemon (epmd) per service address `addr`, the
/// ports on the 127.0.0.1 all the environment's containers share. A node's data is bound
/// to its name: data made by a node of another name (a copy of the parent environment's,
/// a `sync`, a backup of another service or environment restored, where the service's
/// address differs) keeps the name it was made under (the one node folder in
/// /app/mnesia), so its messages are not left behind in a folder the node never reads.
/// That name may be another service's of the environment (two `rabbitmq` services): each
/// node registers with its own epmd, so the two never meet in one name table.
fn rabbitmq_env(addr: std::net::Ipv4Addr) -> String {
    let node = addr.octets()[3];
    let dist_port = super::ports::private(super::ports::Private::RabbitmqDistribution, addr);
    let epmd_port = super::ports::private(super::ports::Private::RabbitmqEpmd, addr);
    format!(
        r#"NODE=rabbit{node}@localhost
if [ ! -d "/app/mnesia/$NODE" ]; then
  for d in /app/mnesia/rabbit*@localhost; do
    if [ -d "$d" ]; then NODE="${{d##*/}}"; fi
  done
fi
export HOME=/app RABBITMQ_MNESIA_BASE=/app/mnesia RABBITMQ_LOG_BASE=/tmp/log RABBITMQ_LOGS=- \
  RABBITMQ_NODENAME="$NODE" RABBITMQ_CONFIG_FILE=/tmp/rabbitmq.conf \
  RABBITMQ_ADVANCED_CONFIG_FILE=/tmp/advanced.config RABBITMQ_CONF_ENV_FILE=/tmp/rabbitmq-env.conf \
  RABBITMQ_ENABLED_PLUGINS_FILE=/tmp/enabled_plugins RABBITMQ_PID_FILE=/tmp/rabbitmq.pid \
  RABBITMQ_DIST_PORT={dist_port} ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT={epmd_port}"#
    )
}

/// The command (`sh -c`) running `rabbitmqctl ARGS` (each a plain word or path, not
/// quoted) against the running RabbitMQ node of the service at `addr`, inside its
/// container, with the node's own name, cookie and port mapper ([`rabbitmq_env`]).
pub fn rabbitmqctl(addr: std::net::Ipv4Addr, args: &[&str]) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "set -e\n{}\nexec /usr/lib/rabbitmq/bin/rabbitmqctl {}\n",
            rabbitmq_env(addr),
            args.join(" ")
        ),
    ]
}

/// The recipe of `record`, running on the stack of `software` at `stack_version` (the
/// stack's own version, e.g. `15`, which may be newer than the configured one).
pub fn recipe(record: &ServiceRecord, software: Language, stack_version: &str) -> Option<Recipe> {
    let addr = record.address;
    // The relationships' port, on the service's own address ([`super::ports`]).
    let port = super::ports::public(&record.service_type)?;
    Some(match software {
        Language::Postgresql => {
            let bin = format!("/usr/lib/postgresql/{stack_version}/bin");
            Recipe {
                start: format!(
                    r#"set -e
D=/app/pgdata
if [ ! -s "$D/PG_VERSION" ]; then
  rm -rf "$D.init"
  umask 077
  printf '%s\n' "${PASSWORD_VAR}" > /tmp/pwfile
  {bin}/initdb -D "$D.init" -U main --pwfile=/tmp/pwfile -A scram-sha-256 --auth-local=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  rm -f /tmp/pwfile
  echo "host all all 127.0.0.0/8 scram-sha-256" >> "$D.init/pg_hba.conf"
  echo "CREATE DATABASE main" | {bin}/postgres --single -D "$D.init" postgres >/dev/null
  mv "$D.init" "$D"
fi
# This container is the only one ever started on this volume, and it is starting: a
# lock file here is a leftover (a crash, or a copy of a running server for a branch),
# whose PID may well be another process of this fresh PID namespace.
rm -f "$D/postmaster.pid"
if [ -s /app/{EXTENSIONS_FILE} ]; then
  while read -r ext; do
    if [ ! -f "/usr/share/postgresql/{stack_version}/extension/$ext.control" ]; then
      echo "extension $ext is not available on this server's postgresql:{stack_version}" >&2
      exit 1
    fi
  done < /app/{EXTENSIONS_FILE}
  while read -r ext; do
    echo "CREATE EXTENSION IF NOT EXISTS \"$ext\""
  done < /app/{EXTENSIONS_FILE} | {bin}/postgres --single -D "$D" main >/dev/null
fi
exec {bin}/postgres -D "$D" -c listen_addresses={addr} -c port={port} -c unix_socket_directories=/tmp
"#
                ),
                ready: Some(vec![
                    format!("{bin}/pg_isready"),
                    "-q".into(),
                    "-h".into(),
                    addr.to_string(),
                    "-p".into(),
                    port.to_string(),
                ]),
                ready_output: None,
            }
        }
        Language::Mariadb => Recipe {
            start: format!(
                r#"set -e
D=/app/mysql
if [ ! -d "$D/mysql" ]; then
  rm -rf "$D.init"
  mariadb-install-db --no-defaults --force --skip-name-resolve --datadir="$D.init" --auth-root-authentication-method=socket --skip-test-db >/dev/null
  mv "$D.init" "$D"
fi
umask 077
cat > /tmp/init.sql <<SQL
CREATE USER IF NOT EXISTS 'user'@'%' IDENTIFIED BY '${PASSWORD_VAR}';
ALTER USER 'user'@'%' IDENTIFIED BY '${PASSWORD_VAR}';
CREATE USER IF NOT EXISTS 'slipway'@'localhost' IDENTIFIED BY '${PASSWORD_VAR}';
ALTER USER 'slipway'@'localhost' IDENTIFIED BY '${PASSWORD_VAR}';
GRANT ALL PRIVILEGES ON *.* TO 'slipway'@'localhost' WITH GRANT OPTION;
SQL
# Schemas and privileges as configured (written by each deploy); without it, Platform.sh's
# default: `main`, the service's own user its admin.
if [ -f /app/{ENDPOINTS_FILE} ]; then
  cat /app/{ENDPOINTS_FILE} >> /tmp/init.sql
else
  printf '%s\n' 'CREATE DATABASE IF NOT EXISTS main;' "GRANT ALL PRIVILEGES ON main.* TO 'user'@'%';" >> /tmp/init.sql
fi
exec mariadbd --no-defaults --datadir="$D" --bind-address={addr} --port={port} --socket=/tmp/mysqld.sock --pid-file=/tmp/mysqld.pid --init-file=/tmp/init.sql --skip-name-resolve
"#
            ),
            ready: Some(vec![
                "mariadb-admin".into(),
                "--no-defaults".into(),
                "--socket=/tmp/mysqld.sock".into(),
                "ping".into(),
            ]),
            // 0 once the server answers, even when it refuses the caller (no account).
            ready_output: None,
        },
        Language::Redis | Language::Valkey => {
            let (server, cli) = if software == Language::Redis {
                ("redis-server", "redis-cli")
            } else {
                ("valkey-server", "valkey-cli")
            };
            let persistence = if persistent(&record.service_type) {
                "--appendonly yes --save 60 1"
            } else {
                "--appendonly no --save ''"
            };
            Recipe {
                start: format!(
                    "exec {server} --bind {addr} --port {port} --dir /app --protected-mode no --daemonize no {persistence}\n"
                ),
                ready: Some(vec![
                    cli.into(),
                    "-h".into(),
                    addr.to_string(),
                    "-p".into(),
                    port.to_string(),
                    "ping".into(),
                ]),
                ready_output: Some("PONG"),
            }
        }
        Language::Memcached => Recipe {
            start: format!("exec memcached -l {addr} -p {port} -U 0 -m 64\n"),
            ready: Some(memcached_probe(addr, port)),
            ready_output: Some("VERSION "),
        },
        Language::Rabbitmq => {
            Recipe {
                // The Debian wrapper in /usr/sbin insists on the `rabbitmq` user: the server's own
                // script runs as the project's user, everything under /app (data, Erlang cookie)
                // or /tmp (generated configuration).
                start: format!(
                    r#"set -e
{env}
umask 077
mkdir -p /tmp/log
echo '[].' > /tmp/enabled_plugins
cat > /tmp/rabbitmq.conf <<CONF
listeners.tcp.default = {addr}:{port}
loopback_users = none
vm_memory_high_watermark.absolute = 512MiB
load_definitions = /app/{DEFINITIONS_FILE}
CONF
exec /usr/lib/rabbitmq/bin/rabbitmq-server
"#,
                    env = rabbitmq_env(addr)
                ),
                ready: Some(tcp_probe(addr, port)),
                ready_output: None,
            }
        }
        Language::ChromeHeadless => {
            let inner = chromium_inner_port(addr);
            Recipe {
                start: format!(
                    r#"export HOME=/tmp
socat TCP-LISTEN:{port},bind={addr},fork,reuseaddr TCP:127.0.0.1:{inner} &
exec chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run --user-data-dir=/tmp/chromium --remote-debugging-port={inner} '--remote-allow-origins=*' about:blank
"#
                ),
                ready: Some(http_probe(addr, port, "/json/version")),
                ready_output: Some("webSocketDebuggerUrl"),
            }
        }
        Language::Influxdb => Recipe {
            start: format!(
                r#"export HOME=/tmp INFLUXDB_META_DIR=/app/meta INFLUXDB_DATA_DIR=/app/data \
  INFLUXDB_DATA_WAL_DIR=/app/wal INFLUXDB_HTTP_BIND_ADDRESS={addr}:{port} \
  INFLUXDB_BIND_ADDRESS={addr}:8088 INFLUXDB_REPORTING_DISABLED=true \
  INFLUXDB_DATA_QUERY_LOG_ENABLED=false
exec influxd
"#
            ),
            ready: Some(http_probe(addr, port, "/ping")),
            ready_output: Some(" 204 "),
        },
        Language::Varnish => Recipe {
            start: super::varnish::start_script(addr),
            // Its child running means it serves. Not an HTTP request through the VCL:
            // one sent while the apps are down (a start before them, or `sync`) fails
            // to connect, and varnish then holds that backend down for a while
            // (`backend_remote_error_holddown`), failing the first requests after the
            // apps came up.
            ready: Some(vec![
                "/usr/bin/varnishadm".into(),
                "-n".into(),
                super::varnish::WORK_DIR.into(),
                "status".into(),
            ]),
            ready_output: Some("running"),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_state::ServiceState;

    fn record(ty: &str) -> ServiceRecord {
        ServiceRecord {
            project: "p".into(),
            environment: "main".into(),
            name: "db".into(),
            service_type: ty.into(),
            version: "15".into(),
            address: "127.1.0.2".parse().unwrap(),
            username: username(ty).into(),
            password: "pw".into(),
            state: ServiceState::Starting,
            stack: None,
        }
    }

    #[test]
    fn mysql_endpoints_get_their_schemas_users_and_privileges() {
        let conf = serde_json::json!({"schemas": ["main", "legacy"], "endpoints": {
            "admin": {"default_schema": "main", "privileges": {"main": "admin", "legacy": "admin"}},
            "reporter": {"privileges": {"legacy": "ro"}},
        }});
        let sql = mysql_endpoints_sql(&conf, "pw").unwrap();
        assert!(
            sql.contains("CREATE DATABASE IF NOT EXISTS `legacy`;"),
            "{sql}"
        );
        assert!(
            sql.contains("REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'reporter'@'%';\nGRANT SELECT, SHOW VIEW ON `legacy`.* TO 'reporter'@'%';"),
            "{sql}"
        );
        assert!(sql.contains(&endpoint_password("pw", "reporter")));
        assert_ne!(endpoint_password("pw", "a"), endpoint_password("pw", "b"));
        let bad = serde_json::json!({"schemas": ["x'; DROP"]});
        assert!(mysql_endpoints_sql(&bad, "pw").is_err());
        let bad = serde_json::json!({"endpoints": {"e": {"privileges": {"nope": "ro"}}}});
        assert!(mysql_endpoints_sql(&bad, "pw").is_err());
        assert_eq!(
            mysql_endpoints_sql(&serde_json::Value::Null, "pw").unwrap(),
            "CREATE DATABASE IF NOT EXISTS `main`;\nREVOKE ALL PRIVILEGES, GRANT OPTION FROM 'user'@'%';\nGRANT ALL PRIVILEGES ON `main`.* TO 'user'@'%';\n"
        );
        // Schemas given: only those, `main` not among them; the service's own user gets
        // the `mysql` endpoint's privileges when configured.
        let own = serde_json::json!({"schemas": ["app"], "endpoints": {
            "mysql": {"privileges": {"app": "ro"}},
        }});
        let sql = mysql_endpoints_sql(&own, "pw").unwrap();
        assert!(!sql.contains("main"), "{sql}");
        assert!(
            sql.contains("GRANT SELECT, SHOW VIEW ON `app`.* TO 'user'@'%';"),
            "{sql}"
        );
        let fewer = serde_json::json!({"schemas": ["main"], "endpoints": {
            "admin": {"privileges": {"main": "admin"}},
        }});
        assert_eq!(
            mysql_removed_sql(&conf, &fewer).unwrap(),
            "DROP USER IF EXISTS 'reporter'@'%';\nKILL CONNECTION USER 'reporter'@'%';\nDROP DATABASE IF EXISTS `legacy`;\n"
        );
        assert_eq!(mysql_removed_sql(&conf, &conf).unwrap(), "");
    }

    #[test]
    fn postgresql_endpoints_get_their_databases_roles_and_exact_privileges() {
        let conf = serde_json::json!({"databases": ["main", "legacy"], "endpoints": {
            "admin": {"privileges": {"main": "admin", "legacy": "admin"}},
            "reporter": {"default_database": "main", "privileges": {"main": "ro"}},
            "importer": {"privileges": {"legacy": "rw"}},
        }});
        let sql = postgresql_endpoints_sql(&conf, "pw").unwrap();
        assert!(sql.starts_with("\\set ON_ERROR_STOP on\n"), "{sql}");
        assert!(
            sql.contains("'CREATE DATABASE \"legacy\"' WHERE NOT EXISTS"),
            "{sql}"
        );
        assert!(sql.contains(&format!(
            "ALTER ROLE \"reporter\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '{}';",
            endpoint_password("pw", "reporter")
        )));
        assert!(sql.contains("\\connect \"legacy\"\nBEGIN;\nREVOKE ALL ON DATABASE \"legacy\" FROM PUBLIC;\nREVOKE CREATE ON SCHEMA public FROM PUBLIC;"));
        // Each database's revokes and grants are one transaction: no query sees the gap.
        assert_eq!(
            sql.matches("BEGIN;").count(),
            sql.matches("COMMIT;").count()
        );
        assert!(sql.trim_end().ends_with("COMMIT;"), "{sql}");
        assert!(sql.contains("GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"reporter\";"));
        assert!(sql.contains(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"importer\";"
        ));
        assert!(
            !sql.contains("GRANT ALL ON SCHEMA public TO \"importer\""),
            "rw makes no tables"
        );
        assert!(sql.contains(
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"admin\" IN SCHEMA public GRANT SELECT ON TABLES TO \"reporter\";"
        ));
        assert!(
            postgresql_endpoints_sql(&serde_json::json!({"endpoints": {"main": {}}}), "pw")
                .is_err()
        );
        let fewer = serde_json::json!({"databases": ["main"], "endpoints": {"admin": {}}});
        let drop = postgresql_removed_sql(&conf, &fewer).unwrap();
        assert!(
            drop.contains("DROP DATABASE IF EXISTS \"legacy\" WITH (FORCE);"),
            "{drop}"
        );
        assert!(
            drop.contains("DROP ROLE IF EXISTS \"importer\";")
                && drop.contains("DROP ROLE IF EXISTS \"reporter\";")
        );
        assert!(!drop.contains("\"admin\""), "{drop}");
        // Its sessions: no new one, then the open ones closed, before the role goes.
        let closed = drop
            .find("WHERE usename = 'reporter'")
            .expect("reporter's sessions are closed");
        assert!(drop.find("'ALTER ROLE \"reporter\" NOLOGIN'").unwrap() < closed);
        assert!(closed < drop.find("DROP ROLE IF EXISTS \"reporter\";").unwrap());
    }

    #[test]
    fn recipes_listen_on_the_service_address_and_keep_passwords_off_the_command_line() {
        let pg = recipe(&record("postgresql"), Language::Postgresql, "15").unwrap();
        assert!(pg.start.contains("listen_addresses=127.1.0.2"));
        assert!(pg.start.contains("/usr/lib/postgresql/15/bin/initdb"));
        assert!(!pg.start.contains("pw\n") && pg.start.contains("$SLIPWAY_SERVICE_PASSWORD"));
        assert!(pg
            .start
            .contains("/usr/share/postgresql/15/extension/$ext.control"));
        let conf = serde_json::json!({"extensions": ["pg_trgm", "uuid-ossp"]});
        assert_eq!(
            postgresql_extensions(&conf).unwrap(),
            "pg_trgm\nuuid-ossp\n"
        );
        let bad = serde_json::json!({"extensions": ["x\"; DROP"]});
        assert!(postgresql_extensions(&bad).is_err());
        assert_eq!(postgresql_extensions(&serde_json::Value::Null).unwrap(), "");
        // At each deploy: checked first, then created in each database; `main`'s password
        // set again (a branch's copy holds its parent's).
        let conf = serde_json::json!({"databases": ["main", "app"], "extensions": ["uuid-ossp"]});
        let sql = postgresql_endpoints_sql(&conf, "pw").unwrap();
        let checked = sql.find("WHERE name = 'uuid-ossp'").unwrap();
        assert!(
            sql.contains("ALTER ROLE \"main\" WITH PASSWORD 'pw';"),
            "{sql}"
        );
        let made: Vec<_> = sql
            .match_indices("CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\";")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(made.len(), 2, "{sql}");
        assert!(checked < made[0] && sql.find("\\connect \"app\"").unwrap() < made[1]);
        let cache = recipe(&record("redis"), Language::Redis, "7.0").unwrap();
        assert!(cache.start.contains("--appendonly no"));
        let kept = recipe(&record("redis-persistent"), Language::Redis, "7.0").unwrap();
        assert!(kept.start.contains("--appendonly yes"));
        assert!(recipe(&record("python"), Language::Python, "3.11").is_none());
    }

    #[test]
    fn rabbitmq_definitions_hold_the_salted_password_hash_and_every_vhost() {
        use base64::Engine as _;
        let conf = serde_json::json!({"vhosts": ["orders", "/"]});
        let json = rabbitmq_definitions(&conf, "pw", [1, 2, 3, 4]).unwrap();
        assert_eq!(
            definitions_vhosts(&json).unwrap(),
            rabbitmq_vhosts(&conf).unwrap()
        );
        assert_eq!(definitions_vhosts("{}"), None);
        let d: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(d["users"][0]["name"], "guest");
        let hash = base64::engine::general_purpose::STANDARD
            .decode(d["users"][0]["password_hash"].as_str().unwrap())
            .unwrap();
        assert_eq!(&hash[..4], &[1, 2, 3, 4]);
        assert_eq!(&hash[4..], Sha256::digest(b"\x01\x02\x03\x04pw").as_slice());
        assert!(
            !json.contains("\"pw\""),
            "the password itself is never written"
        );
        let vhosts: Vec<_> = d["vhosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| &v["name"])
            .collect();
        assert_eq!(vhosts, ["/", "orders"]);
        assert_eq!(d["permissions"].as_array().unwrap().len(), 2);
        assert!(rabbitmq_definitions(&serde_json::json!({"vhosts": "x"}), "pw", [0; 4]).is_err());
        assert!(rabbitmq_definitions(&serde_json::json!({"vhosts": [""]}), "pw", [0; 4]).is_err());
    }

    #[test]
    fn new_service_types_listen_on_the_service_address() {
        let mut r = record("rabbitmq");
        r.username = "guest".into();
        let rabbit = recipe(&r, Language::Rabbitmq, "3.10").unwrap();
        assert!(rabbit
            .start
            .contains("listeners.tcp.default = 127.1.0.2:5672"));
        assert!(rabbit.start.contains("rabbit2@localhost"));
        assert!(rabbit.start.contains("ERL_EPMD_PORT=8902"));
        assert!(rabbit.start.contains("RABBITMQ_DIST_PORT=9102"));
        // rabbitmqctl reaches that node: its name, cookie (HOME) and port mapper.
        let ctl = rabbitmqctl(r.address, &["-q", "list_vhosts"]);
        assert_eq!(ctl[..2], ["sh", "-c"]);
        assert!(ctl[2].contains(&rabbitmq_env(r.address)), "{}", ctl[2]);
        assert!(rabbit.start.contains(&rabbitmq_env(r.address)));
        assert!(ctl[2].contains("ERL_EPMD_PORT=8902") && ctl[2].contains("HOME=/app"));
        assert!(ctl[2].ends_with("exec /usr/lib/rabbitmq/bin/rabbitmqctl -q list_vhosts\n"));
        let chrome = recipe(&record("chrome-headless"), Language::ChromeHeadless, "156").unwrap();
        assert!(chrome.start.contains("bind=127.1.0.2"));
        assert!(chrome.start.contains("--remote-debugging-port=9302"));
        assert_eq!(chrome.ready_output, Some("webSocketDebuggerUrl"));
        let influx = recipe(&record("influxdb"), Language::Influxdb, "1.6").unwrap();
        assert!(influx
            .start
            .contains("INFLUXDB_HTTP_BIND_ADDRESS=127.1.0.2:8086"));
        assert_eq!(username("rabbitmq"), "guest");
        assert_eq!(username("influxdb"), "");
        let memcached = recipe(&record("memcached"), Language::Memcached, "1.6").unwrap();
        assert_eq!(memcached.ready, Some(memcached_probe("127.1.0.2", 11211)));
        assert_eq!(memcached.ready_output, Some("VERSION "));
    }

    /// Run `probe` on the host (bash as in the service's container); its exit and output.
    fn run_probe(probe: &[String]) -> (bool, String) {
        let o = std::process::Command::new(&probe[0])
            .args(&probe[1..])
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into(),
        )
    }

    #[test]
    fn memcached_is_ready_once_it_answers_its_version_command() {
        use std::io::{BufRead, Write};
        // A server answering as memcached does: ready, having been asked `version`.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut asked = String::new();
            std::io::BufReader::new(&conn)
                .read_line(&mut asked)
                .unwrap();
            (&conn).write_all(b"VERSION 1.6.18\r\n").unwrap();
            asked
        });
        let (ok, said) = run_probe(&memcached_probe("127.0.0.1", port));
        assert!(ok && said.starts_with("VERSION 1.6.18"), "{said}");
        assert_eq!(server.join().unwrap(), "version\r\n");

        // One that accepts but never answers (still starting, or hung): not ready.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (ok, said) = run_probe(&memcached_probe("127.0.0.1", port));
        assert!(!ok || !said.contains("VERSION "), "{said}");
        drop(listener);
    }
}
