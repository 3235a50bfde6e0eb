//! Taking and loading each part of a backup, inside the service's own container (its
//! stack's tools, as the project's user, against the running server): PostgreSQL
//! `pg_dump -Fc` per database and `pg_restore` into the database dropped and created again,
//! its endpoint roles and their privileges made from the configuration around it;
//! MariaDB `mariadb-dump --single-transaction --all-databases --routines --events` and the
//! SQL loaded back after every user database is dropped; Redis/Valkey `BGSAVE` and the RDB
//! file, put back while the server is stopped; InfluxDB `influxd backup -portable` (online,
//! every database's shards as of one moment) as a tar, loaded with `influxd restore
//! -portable` into the server started again on an empty data folder; RabbitMQ its data
//! folder as a tar taken while the node is stopped (RabbitMQ keeps messages consistent on
//! disk only on a stopped node), put back while it is stopped; a mount's volume as a tar
//! taken while it is frozen. Dumps stream from the container straight into a temp file of
//! the archive.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use slipway_slug::PartFile;
use slipway_stack::Language;
use slipway_state::{BackupPart, PartKind, ServiceRecord};

use super::pg_roles;
use crate::volumes::Volume;
use crate::Platform;

/// The `PATH` of commands run in a service's container.
const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The MariaDB account backups use: all privileges, reachable only through the server's
/// socket inside its container (`'slipway'@'localhost'`, created by the service's start
/// script with the service's password).
pub const MARIADB_ADMIN: &str = "slipway";

/// The software and stack version a service runs on (the stack it was made on).
pub(crate) fn software(record: &ServiceRecord) -> Result<(Language, String), String> {
    let s = crate::services::stack::of_record(record)?;
    Ok((s.language, s.version.to_string()))
}

fn container(record: &ServiceRecord) -> String {
    crate::services::container_id(&record.project, &record.environment, &record.name)
}

/// Run `args` in `record`'s container with `env`, stdin from `input` (or nothing) and
/// stdout into `output` (or captured and returned).
pub(crate) async fn exec(
    platform: &Platform,
    record: &ServiceRecord,
    args: &[String],
    env: &[(String, String)],
    input: Option<&Path>,
    output: Option<&File>,
) -> Result<String, String> {
    let mut env = env.to_vec();
    env.push(("PATH".into(), PATH.into()));
    env.push(("LANG".into(), "C.UTF-8".into()));
    let id = container(record);
    let mut cmd = platform
        .runtime()
        .exec_command(&id, args, &env, "/app", false)
        .map_err(|e| format!("service {}: {e}", record.name))?;
    match input {
        Some(p) => {
            let f = File::open(p).map_err(|e| format!("{}: {e}", p.display()))?;
            cmd.stdin(Stdio::from(f));
        }
        None => {
            cmd.stdin(Stdio::null());
        }
    }
    match output {
        Some(f) => {
            let f = f.try_clone().map_err(|e| e.to_string())?;
            cmd.stdout(Stdio::from(f));
        }
        None => {
            cmd.stdout(Stdio::piped());
        }
    }
    cmd.stderr(Stdio::piped()).kill_on_drop(true);
    // Not `output()`, which would pipe stdout instead of the file given.
    let out = cmd
        .spawn()
        .map_err(|e| format!("service {}: running {}: {e}", record.name, args[0]))?
        .wait_with_output()
        .await
        .map_err(|e| format!("service {}: running {}: {e}", record.name, args[0]))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(format!(
            "service {}: {} failed ({}): {}",
            record.name,
            args[0],
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `name` as a PostgreSQL identifier.
fn pg_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `name` as a libpq connection string naming that database.
fn pg_dbname(name: &str) -> String {
    format!(
        "dbname='{}'",
        name.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// The libpq variables reaching a PostgreSQL service's own superuser `main` over its socket.
pub(crate) fn pg_env() -> Vec<(String, String)> {
    vec![
        ("PGHOST".into(), "/tmp".into()),
        ("PGPORT".into(), "5432".into()),
        ("PGUSER".into(), "main".into()),
    ]
}

/// Run the SQL `sql` with the `psql` of `bin` (the server's binaries' folder) as the
/// superuser on database `postgres` of PostgreSQL service `record`; its output (tuples
/// only, unaligned).
async fn pg_sql(
    platform: &Platform,
    record: &ServiceRecord,
    bin: &str,
    sql: &str,
) -> Result<String, String> {
    let args = strings(&[
        &format!("{bin}/psql"),
        "-AtX",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        "postgres",
        "-c",
        sql,
    ]);
    exec(platform, record, &args, &pg_env(), None, None).await
}

/// The databases of a PostgreSQL service (all but `postgres` and the templates).
async fn pg_databases(
    platform: &Platform,
    record: &ServiceRecord,
    bin: &str,
) -> Result<Vec<String>, String> {
    let out = pg_sql(
        platform,
        record,
        bin,
        "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate AND datname <> 'postgres' ORDER BY 1",
    )
    .await?;
    Ok(out.lines().map(str::to_string).collect())
}

/// The `mariadb` client as the service's local account [`MARIADB_ADMIN`], over the
/// server's socket, with `extra` arguments (its password in [`mariadb_env`]).
pub(crate) fn mariadb_client(extra: &[&str]) -> Vec<String> {
    let mut args = strings(&[
        "mariadb",
        "--no-defaults",
        "--socket=/tmp/mysqld.sock",
        &format!("--user={MARIADB_ADMIN}"),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The environment of [`MARIADB_ADMIN`]'s clients: the password, never on a command line.
pub(crate) fn mariadb_env(record: &ServiceRecord) -> Vec<(String, String)> {
    vec![("MYSQL_PWD".to_string(), record.password.clone())]
}

/// A part taken into `file` of the archive, to be stored by the caller.
pub(crate) struct Taken {
    /// The part as the manifest will say (digest and size filled in once stored).
    pub part: BackupPart,
    /// Its bytes, in a temp file of the archive.
    pub file: PartFile,
    /// What the backup's output says of it, if anything (the roles a roles part holds).
    pub note: Option<String>,
}

fn part(kind: PartKind, record: &ServiceRecord, database: Option<String>) -> BackupPart {
    BackupPart {
        kind,
        name: record.name.clone(),
        service: format!("{}:{}", record.service_type, record.version),
        database,
        digest: String::new(),
        size: 0,
    }
}

/// Take the parts of one service; empty for a service that holds nothing to keep
/// (memcached).
pub(crate) async fn take_service(
    platform: &std::sync::Arc<Platform>,
    record: &ServiceRecord,
) -> Result<Vec<Taken>, String> {
    let (software, version) = software(record)?;
    let archive = platform.archive();
    let new_file = || archive.part_file().map_err(|e| e.to_string());
    let mut out = Vec::new();
    match software {
        Language::Postgresql => {
            let bin = format!("/usr/lib/postgresql/{version}/bin");
            for db in pg_databases(platform, record, &bin).await? {
                let file = new_file()?;
                exec(
                    platform,
                    record,
                    &strings(&[&format!("{bin}/pg_dump"), "-Fc", "-d", &pg_dbname(&db)]),
                    &pg_env(),
                    None,
                    Some(file.file()),
                )
                .await?;
                out.push(Taken {
                    part: part(PartKind::PostgresqlDump, record, Some(db)),
                    file,
                    note: None,
                });
            }
            out.extend(take_pg_roles(platform, record, &bin).await?);
        }
        Language::Mariadb => {
            let file = new_file()?;
            exec(
                platform,
                record,
                &strings(&[
                    "mariadb-dump",
                    "--no-defaults",
                    "--socket=/tmp/mysqld.sock",
                    &format!("--user={MARIADB_ADMIN}"),
                    "--single-transaction",
                    "--all-databases",
                    "--routines",
                    "--events",
                ]),
                &mariadb_env(record),
                None,
                Some(file.file()),
            )
            .await?;
            out.push(Taken {
                part: part(PartKind::MariadbDump, record, None),
                file,
                note: None,
            });
        }
        Language::Redis | Language::Valkey => {
            let cli = if software == Language::Redis {
                "redis-cli"
            } else {
                "valkey-cli"
            };
            let addr = record.address.to_string();
            let ask = |cmd: &'static [&'static str]| {
                let mut args = strings(&[cli, "-h", &addr, "-p", "6379"]);
                args.extend(cmd.iter().map(|s| s.to_string()));
                args
            };
            let saves = |info: &str| {
                info.lines()
                    .find_map(|l| l.trim().strip_prefix("rdb_saves:"))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            };
            let info_persistence = ask(&["INFO", "persistence"]);
            let persistence = || exec(platform, record, &info_persistence, &[], None, None);
            let info = persistence().await?;
            let before = saves(&info).ok_or_else(|| {
                format!("service {}: INFO persistence has no rdb_saves", record.name)
            })?;
            exec(platform, record, &ask(&["BGSAVE"]), &[], None, None).await?;
            let deadline = std::time::Instant::now() + Duration::from_secs(3600);
            loop {
                let info = persistence().await?;
                let busy = info.contains("rdb_bgsave_in_progress:1");
                if !busy && saves(&info).is_some_and(|n| n > before) {
                    if !info.contains("rdb_last_bgsave_status:ok") {
                        return Err(format!("service {}: BGSAVE failed", record.name));
                    }
                    break;
                }
                if std::time::Instant::now() > deadline {
                    return Err(format!("service {}: BGSAVE did not finish", record.name));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let rdb = crate::services::data_dir(
                platform,
                &record.project,
                &record.environment,
                &record.name,
            )
            .join("dump.rdb");
            let file = new_file()?;
            let mut src = File::open(&rdb).map_err(|e| format!("{}: {e}", rdb.display()))?;
            std::io::copy(&mut src, &mut file.file())
                .map_err(|e| format!("copying {}: {e}", rdb.display()))?;
            out.push(Taken {
                part: part(PartKind::RedisRdb, record, None),
                file,
                note: None,
            });
        }
        Language::Influxdb => {
            let file = new_file()?;
            let dir = INFLUX_BACKUP_DIR;
            // The portable backup into a folder of the service's own data folder (its disk,
            // not the container's small /tmp), tarred to stdout and removed.
            let script = format!(
                "set -e\nD={dir}\ntrap 'rm -rf \"$D\"' EXIT\nrm -rf \"$D\"\ninfluxd backup -portable -host \"$1\" \"$D\" >&2\ntar -C \"$D\" -cf - .\n"
            );
            exec(
                platform,
                record,
                &strings(&["/bin/sh", "-c", &script, "sh", &influx_rpc(record)]),
                &[],
                None,
                Some(file.file()),
            )
            .await?;
            out.push(Taken {
                part: part(PartKind::InfluxdbPortable, record, None),
                file,
                note: None,
            });
        }
        Language::Rabbitmq => {
            let file = new_file()?;
            let dir = stopped_data(platform, record).await?;
            let f = file.file().try_clone().map_err(|e| e.to_string())?;
            let tarred = tokio::task::spawn_blocking(move || tar_dir(&dir, &f))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            // Started again whether the tar worked or not.
            let started = start_again(platform, record).await;
            tarred.map_err(|e| format!("service {}: {e}", record.name))?;
            started?;
            out.push(Taken {
                part: part(PartKind::RabbitmqData, record, None),
                file,
                note: Some(
                    "stopped while its data folder was copied (RabbitMQ keeps its messages consistent on disk only on a stopped node), and started again".into(),
                ),
            });
        }
        _ => {}
    }
    Ok(out)
}

/// The folder (in an InfluxDB service's `/app`) its portable backup is written to and its
/// restore read from, removed after each.
const INFLUX_BACKUP_DIR: &str = "/app/.slipway-backup";

/// The address of an InfluxDB service's backup and restore (RPC) service: its own address,
/// port 8088 (the recipe's `INFLUXDB_BIND_ADDRESS`).
fn influx_rpc(record: &ServiceRecord) -> String {
    format!("{}:8088", record.address)
}

/// Start service `record` again (its container, in its environment's network namespace),
/// wait until it answers, and record it running.
async fn start_again(
    platform: &std::sync::Arc<Platform>,
    record: &ServiceRecord,
) -> Result<(), String> {
    let netns =
        crate::environment::netns_name(platform.instance(), &record.project, &record.environment);
    crate::services::start(platform, record, &netns).await?;
    crate::services::wait_ready(
        platform,
        record,
        crate::services::ready_timeout(&record.service_type),
    )
    .await?;
    platform
        .state()
        .set_service_state(
            &record.project,
            &record.environment,
            &record.name,
            slipway_state::ServiceState::Running,
        )
        .map_err(|e| e.to_string())
}

/// The databases an InfluxDB portable backup (the tar `blob`) holds shards of, from its
/// `.manifest` file, `_internal` (the server's own statistics, made again by every server)
/// left out.
fn influx_databases(blob: &Path) -> Result<Vec<String>, String> {
    let o = std::process::Command::new("tar")
        .args(["-xOf"])
        .arg(blob)
        .args(["--wildcards", "*.manifest"])
        .output()
        .map_err(|e| format!("tar: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "the InfluxDB backup has no manifest: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    databases_of_manifest(&o.stdout)
}

/// The databases of an `influxd backup -portable` manifest (JSON; one per backup), sorted,
/// `_internal` left out. A manifest that does not decode is an error.
fn databases_of_manifest(json: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        files: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        database: String,
    }
    let m: Manifest = serde_json::from_slice(json)
        .map_err(|e| format!("the InfluxDB backup's manifest does not decode: {e}"))?;
    let set: BTreeSet<String> = m
        .files
        .into_iter()
        .map(|e| e.database)
        .filter(|d| d != "_internal")
        .collect();
    Ok(set.into_iter().collect())
}

/// The roles part of PostgreSQL service `record` ([`pg_roles`]): its configured endpoints'
/// roles and those Slipway marked as its own, without passwords; none when it has none.
async fn take_pg_roles(
    platform: &Platform,
    record: &ServiceRecord,
    bin: &str,
) -> Result<Option<Taken>, String> {
    let configuration = live_configuration(platform, record)?;
    let mut keep = configured_endpoints(record, &configuration)?;
    let psql = strings(&[
        &format!("{bin}/psql"),
        "-AtX",
        "-d",
        "postgres",
        "-c",
        pg_roles::MARKED_QUERY,
    ]);
    let marked = exec(platform, record, &psql, &pg_env(), None, None).await?;
    keep.extend(marked.lines().map(str::to_string));
    if keep.is_empty() {
        return Ok(None);
    }
    let dumpall = strings(&[
        &format!("{bin}/pg_dumpall"),
        "--roles-only",
        "--no-role-passwords",
    ]);
    let all = exec(platform, record, &dumpall, &pg_env(), None, None).await?;
    let (sql, kept) = pg_roles::filter(&all, &keep);
    if kept.is_empty() {
        return Ok(None);
    }
    let file = platform.archive().part_file().map_err(|e| e.to_string())?;
    std::io::Write::write_all(&mut file.file(), sql.as_bytes())
        .map_err(|e| format!("service {}: writing its roles: {e}", record.name))?;
    Ok(Some(Taken {
        part: part(PartKind::PostgresqlRoles, record, None),
        file,
        note: Some(format!("roles {}", kept.join(", "))),
    }))
}

/// The endpoint roles `configuration` gives PostgreSQL service `record`.
fn configured_endpoints(
    record: &ServiceRecord,
    configuration: &serde_json::Value,
) -> Result<BTreeSet<String>, String> {
    let layout = slipway_config::databases::layout(&record.service_type, configuration)
        .unwrap_or_else(|| Ok(Default::default()))
        .map_err(|e| format!("service {}: {e}", record.name))?;
    Ok(layout.endpoints.into_keys().collect())
}

/// The data folder of service `record`, given to its project's uid, once the service is
/// stopped (RabbitMQ's data is copied from, or put back into, a stopped node only).
async fn stopped_data(
    platform: &Platform,
    record: &ServiceRecord,
) -> Result<std::path::PathBuf, String> {
    let volume =
        crate::services::data::volume(platform, &record.project, &record.environment, &record.name)
            .map_err(|e| e.to_string())?;
    let dir = volume
        .service_data(crate::isolation::run_as(&record.project))
        .map_err(|e| format!("service {}: {e}", record.name))?;
    crate::services::stop(platform, record).await;
    Ok(dir)
}

/// Whether a service of this type holds data a backup keeps. Those that do not: memcached
/// and varnish (caches in memory), chrome-headless (a browser whose profile is in its
/// `/tmp`); network-storage has no service record (its volume is kept as a mount).
pub(crate) fn has_data(record: &ServiceRecord) -> bool {
    matches!(
        software(record).map(|(s, _)| s),
        Ok(Language::Postgresql
            | Language::Mariadb
            | Language::Redis
            | Language::Valkey
            | Language::Influxdb
            | Language::Rabbitmq)
    )
}

/// The `configuration` of service `record` in its environment's live release (`null`
/// when none is live or it has no such service: the defaults).
fn live_configuration(
    platform: &Platform,
    record: &ServiceRecord,
) -> Result<serde_json::Value, String> {
    let (live, _) = crate::release_record::live_with_spec(
        platform.state(),
        &record.project,
        &record.environment,
    )?;
    let Some(live) = live else {
        return Ok(serde_json::Value::Null);
    };
    let topology = crate::release_record::topology_of(&live).map_err(|e| e.to_string())?;
    Ok(topology
        .service(&record.name)
        .map(|s| s.configuration.clone())
        .unwrap_or(serde_json::Value::Null))
}

/// Load `parts` (all of one service, verified) into `record`'s running server, replacing
/// what it holds. Redis/Valkey are stopped, given the RDB file and started again. Returns
/// what the user is told besides (PostgreSQL roles kept disabled).
pub(crate) async fn load_service(
    platform: &std::sync::Arc<Platform>,
    record: &ServiceRecord,
    parts: &[&BackupPart],
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let (software, version) = software(record)?;
    let blob = |p: &BackupPart| -> Result<std::path::PathBuf, String> {
        let d = slipway_slug::Digest::parse(&p.digest).map_err(|e| e.to_string())?;
        Ok(platform.archive().blob_path(&d))
    };
    match software {
        Language::Postgresql => {
            // Endpoint roles live in the cluster, not in a database's dump: made from the
            // configuration before the dumps load (their grants name them), and every
            // database's privileges set from it again once loaded (a database made
            // again is open to `PUBLIC` and grants no endpoint its `CONNECT`).
            let configuration = live_configuration(platform, record)?;
            // The backup's own roles first (those the configuration no longer has kept,
            // disabled, so the dumps' grants to them apply).
            if let Some(p) = parts.iter().find(|p| p.kind == PartKind::PostgresqlRoles) {
                let path = blob(p)?;
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let roles = pg_roles::parse(&text).map_err(|e| e.to_string())?;
                let configured = configured_endpoints(record, &configuration)?;
                let (script, disabled) = pg_roles::restore_sql(&roles, &configured);
                crate::services::endpoints::run_psql(platform, record, &script).await?;
                for name in disabled {
                    notes.push(format!(
                        "role {name} (in the backup, no longer an endpoint of {}): kept disabled (no login) with its grants; configure the endpoint again to use it, or push its removal with -o allow-data-loss to drop it",
                        record.name
                    ));
                }
            }
            crate::services::endpoints::apply(platform, record, &configuration).await?;
            let bin = format!("/usr/lib/postgresql/{version}/bin");
            let psql = |sql: String| {
                let bin = &bin;
                async move { pg_sql(platform, record, bin, &sql).await }
            };
            // The databases come back as they were: those made since are dropped too.
            let wanted: Vec<&str> = parts.iter().filter_map(|p| p.database.as_deref()).collect();
            let dumps = parts.iter().filter(|p| p.kind == PartKind::PostgresqlDump);
            for db in pg_databases(platform, record, &bin).await? {
                if !wanted.contains(&db.as_str()) && !db.ends_with(".slipway-restore") {
                    let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", pg_ident(&db));
                    psql(sql).await?;
                }
            }
            for p in dumps {
                let Some(db) = p.database.as_deref() else {
                    return Err(format!("backup part of {} names no database", p.name));
                };
                // Loaded beside the database first: a dump that fails to load leaves the
                // database as it was.
                let loading = format!("{db}.slipway-restore");
                let drop_loading = format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    pg_ident(&loading)
                );
                psql(drop_loading.clone()).await?;
                let create = format!("CREATE DATABASE {} TEMPLATE template0", pg_ident(&loading));
                psql(create).await?;
                let loaded = exec(
                    platform,
                    record,
                    &strings(&[
                        &format!("{bin}/pg_restore"),
                        "--exit-on-error",
                        "--no-owner",
                        "-d",
                        &pg_dbname(&loading),
                    ]),
                    &pg_env(),
                    Some(&blob(p)?),
                    None,
                )
                .await;
                if let Err(e) = loaded {
                    let _ = psql(drop_loading).await;
                    return Err(e);
                }
                let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", pg_ident(db));
                psql(drop).await?;
                let rename = format!(
                    "ALTER DATABASE {} RENAME TO {}",
                    pg_ident(&loading),
                    pg_ident(db)
                );
                psql(rename).await?;
            }
            crate::services::endpoints::apply(platform, record, &configuration).await?;
        }
        Language::Mariadb => {
            let admin = mariadb_env(record);
            let dbs = exec(
                platform,
                record,
                &mariadb_client(&["-N", "-B", "-e", "SHOW DATABASES"]),
                &admin,
                None,
                None,
            )
            .await?;
            for db in dbs.lines().filter(|d| {
                !matches!(
                    *d,
                    "mysql" | "information_schema" | "performance_schema" | "sys"
                )
            }) {
                let sql = format!("DROP DATABASE `{}`", db.replace('`', "``"));
                exec(
                    platform,
                    record,
                    &mariadb_client(&["-e", &sql]),
                    &admin,
                    None,
                    None,
                )
                .await?;
            }
            for p in parts {
                exec(
                    platform,
                    record,
                    &mariadb_client(&[]),
                    &admin,
                    Some(&blob(p)?),
                    None,
                )
                .await?;
            }
            // The dump's accounts are the backed-up service's: its own accounts get this
            // service's password back, the endpoints and privileges follow the
            // configuration.
            let configuration = live_configuration(platform, record)?;
            crate::services::endpoints::after_mysql_restore(platform, record, &configuration)
                .await?;
        }
        Language::Redis | Language::Valkey => {
            let Some(p) = parts.first() else {
                return Ok(notes);
            };
            let dir = crate::services::data_dir(
                platform,
                &record.project,
                &record.environment,
                &record.name,
            );
            crate::services::stop(platform, record).await;
            // The RDB file, and the same as the base of a fresh append-only file (Redis 7's
            // multi-part AOF), which a persistent server loads instead of the RDB.
            let src = blob(p)?;
            let put = |to: &Path| -> Result<(), String> {
                std::fs::copy(&src, to).map_err(|e| format!("{}: {e}", to.display()))?;
                Ok(())
            };
            put(&dir.join("dump.rdb"))?;
            let aof = dir.join("appendonlydir");
            if aof.exists() {
                std::fs::remove_dir_all(&aof).map_err(|e| format!("{}: {e}", aof.display()))?;
                std::fs::create_dir_all(&aof).map_err(|e| format!("{}: {e}", aof.display()))?;
                put(&aof.join("appendonly.aof.1.base.rdb"))?;
                std::fs::write(
                    aof.join("appendonly.aof.manifest"),
                    "file appendonly.aof.1.base.rdb seq 1 type b\n",
                )
                .map_err(|e| format!("{}: {e}", aof.display()))?;
            }
            start_again(platform, record).await?;
        }
        Language::Influxdb => {
            let Some(p) = parts.first() else {
                return Ok(notes);
            };
            let src = blob(p)?;
            let b = src.clone();
            // A backup without a manifest that decodes is refused before the data goes.
            tokio::task::spawn_blocking(move || influx_databases(&b))
                .await
                .map_err(|e| e.to_string())??;
            // The server again on an empty data folder: `restore -portable` makes each
            // database anew (it refuses one that exists).
            let dir = crate::services::data_dir(
                platform,
                &record.project,
                &record.environment,
                &record.name,
            );
            crate::services::stop(platform, record).await;
            for sub in ["meta", "data", "wal"] {
                let d = dir.join(sub);
                if d.exists() {
                    std::fs::remove_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
                }
            }
            start_again(platform, record).await?;
            let mut script = format!(
                "set -e\nD={INFLUX_BACKUP_DIR}\ntrap 'rm -rf \"$D\"' EXIT\nrm -rf \"$D\"\nmkdir \"$D\"\ntar -C \"$D\" -xf -\nH=\"$1\"\nshift\n"
            );
            // Every database of the backup's meta store, those without a point (no shard in
            // the manifest) too; `_internal`'s shards are skipped (the server's own).
            script.push_str("influxd restore -portable -host \"$H\" \"$D\" >&2\n");
            let args = strings(&["/bin/sh", "-c", &script, "sh", &influx_rpc(record)]);
            exec(platform, record, &args, &[], Some(&src), None).await?;
        }
        Language::Rabbitmq => {
            let Some(p) = parts.first() else {
                return Ok(notes);
            };
            let src = blob(p)?;
            let dir = stopped_data(platform, record).await?;
            // Its users, vhosts and permissions stay those of the configuration now (the
            // definitions file each deploy writes), not the backup's.
            let file = crate::services::recipe::DEFINITIONS_FILE;
            let keep: Vec<&str> = if dir.join(file).exists() {
                vec![file]
            } else {
                vec![]
            };
            tokio::task::spawn_blocking(move || untar_dir(&dir, &src, &keep))
                .await
                .map_err(|e| e.to_string())??;
            start_again(platform, record).await?;
        }
        _ => {}
    }
    Ok(notes)
}

/// Tar a mount's volume into `file`, frozen while the tar reads it (reads go on, the
/// apps' writes wait), so it is consistent. The freeze is [`Volume::while_frozen`]'s, the
/// one a branch copy ([`Volume::snapshot_to`]) takes: the two wait for each other instead
/// of one freezing a volume the other froze (which fails) or thawing it under the other.
pub(crate) fn take_mount(volume: &Volume, file: &File) -> Result<(), String> {
    if !volume.is_mounted().map_err(|e| e.to_string())? {
        volume.mount().map_err(|e| e.to_string())?;
    }
    volume
        .while_frozen(|| tar_dir(&volume.dir, file))
        .map_err(|e| e.to_string())?
}

/// Tar the content of `dir` (owners as numbers, extended attributes kept) into `file`.
fn tar_dir(dir: &Path, file: &File) -> Result<(), String> {
    let out = file.try_clone().map_err(|e| e.to_string())?;
    let o = std::process::Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "-C"])
        .arg(dir)
        .args(["-cf", "-", "."])
        .stdout(Stdio::from(out))
        .output()
        .map_err(|e| format!("tar: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "tar of {}: {}",
            dir.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(())
}

/// Replace a mount's content with the tar `blob` (the apps are stopped).
pub(crate) fn load_mount(volume: &Volume, blob: &Path) -> Result<(), String> {
    if !volume.is_mounted().map_err(|e| e.to_string())? {
        volume.mount().map_err(|e| e.to_string())?;
    }
    untar_dir(&volume.dir, blob, &[])
}

/// Replace the content of `dir` with the tar `blob` (nothing writes to it meanwhile),
/// `lost+found` and the files named in `keep` (top-level names) left as they are.
fn untar_dir(dir: &Path, blob: &Path, keep: &[&str]) -> Result<(), String> {
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let name = entry.file_name();
        if name == "lost+found" || keep.iter().any(|k| name == *k) {
            continue;
        }
        let p = entry.path();
        let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        removed.map_err(|e| format!("{}: {e}", p.display()))?;
    }
    let mut cmd = std::process::Command::new("tar");
    cmd.args(["--numeric-owner", "--xattrs", "-xpf"])
        .arg(blob)
        .arg("-C")
        .arg(dir);
    for k in keep {
        cmd.arg(format!("--exclude=./{k}"));
    }
    let o = cmd.output().map_err(|e| format!("tar: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "restoring {}: {}",
            dir.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_quoted_for_sql_and_libpq() {
        assert_eq!(pg_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(pg_dbname("it's"), "dbname='it\\'s'");
        assert_eq!(pg_dbname("main"), "dbname='main'");
    }

    #[test]
    fn an_influxdb_manifest_names_its_databases_without_internal() {
        let json = br#"{"meta":{"fileName":"20240101T000000Z.meta","size":10},"limit":0,"files":[
            {"database":"metrics","policy":"autogen","shardID":2,"fileName":"a","size":1,"lastModified":0},
            {"database":"_internal","policy":"monitor","shardID":1,"fileName":"b","size":1,"lastModified":0},
            {"database":"metrics","policy":"autogen","shardID":3,"fileName":"c","size":1,"lastModified":0},
            {"database":"audit","policy":"autogen","shardID":4,"fileName":"d","size":1,"lastModified":0}]}"#;
        assert_eq!(
            databases_of_manifest(json).unwrap(),
            vec!["audit".to_string(), "metrics".to_string()]
        );
        assert!(databases_of_manifest(b"{\"files\": 3}").is_err());
        assert!(databases_of_manifest(b"not json").is_err());
    }
}
