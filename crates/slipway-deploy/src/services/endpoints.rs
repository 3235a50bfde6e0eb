//! A PostgreSQL service's databases and endpoint roles ([`recipe::postgresql_endpoints_sql`]),
//! applied by `psql` in its running container over the server's socket: at each deploy
//! (so a database or endpoint added later is created on the running service, its data
//! kept), and the ones a push with `-o allow-data-loss` removed dropped once it is live.
//! A running MariaDB service gets its schemas and endpoints the same way, its privileges
//! changed without a gap ([`apply_mysql`]; at its start they come from its init file), and
//! loses the removed ones the same way, their open sessions closed ([`drop_removed`]).
//! A running RabbitMQ service gets the vhosts a later push added ([`apply_rabbitmq`]; at
//! its start they come from its definitions file).

use slipway_state::ServiceRecord;

use super::{grants, recipe};
use crate::backups::parts;
use crate::Platform;

/// The file in a PostgreSQL service's data folder holding the script being applied
/// (private to the service's user; removed once applied).
const SCRIPT_FILE: &str = "slipway-endpoints.psql";

/// The file in a MariaDB service's data folder holding the SQL dropping its removed
/// schemas and endpoints (private to the service's user; removed once applied).
const MYSQL_SCRIPT_FILE: &str = "slipway-removed.sql";

/// The file in a MariaDB service's data folder holding the SQL bringing its schemas,
/// endpoints and privileges to the configuration (private to the service's user; removed
/// once applied).
const MYSQL_APPLY_FILE: &str = "slipway-apply.sql";

/// Run `script` with `psql` as the service's superuser in `record`'s running container.
pub(crate) async fn run_psql(
    platform: &Platform,
    record: &ServiceRecord,
    script: &str,
) -> Result<(), String> {
    let (_, version) = parts::software(record)?;
    let dir = super::data_dir(platform, &record.project, &record.environment, &record.name);
    let file = dir.join(SCRIPT_FILE);
    super::write_secret(&dir, &file, script.as_bytes())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let args = [
        format!("/usr/lib/postgresql/{version}/bin/psql"),
        "-X".into(),
        "-q".into(),
        "-d".into(),
        "postgres".into(),
    ];
    // stdin is the script, opened here: nothing of it on a command line.
    let result = parts::exec(platform, record, &args, &parts::pg_env(), Some(&file), None).await;
    let _ = std::fs::remove_file(&file);
    result.map(|_| ())
}

/// Create the databases and endpoint roles of `configuration` on the running PostgreSQL
/// service `record` and set each role's privileges from it.
pub async fn apply(
    platform: &Platform,
    record: &ServiceRecord,
    configuration: &serde_json::Value,
) -> Result<(), String> {
    let script = recipe::postgresql_endpoints_sql(configuration, &record.password)?;
    run_psql(platform, record, &script).await
}

/// Drop the databases (schemas) and endpoint users the `old` configuration of the
/// PostgreSQL or MariaDB service `record` had and `new` has not (after a push with
/// `-o allow-data-loss` went live).
pub async fn drop_removed(
    platform: &Platform,
    record: &ServiceRecord,
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> Result<(), String> {
    if slipway_config::catalog::runs_mariadb(&record.service_type) {
        let script = recipe::mysql_removed_sql(old, new)?;
        let dir = super::data_dir(platform, &record.project, &record.environment, &record.name);
        let file = dir.join(MYSQL_SCRIPT_FILE);
        super::write_secret(&dir, &file, script.as_bytes())
            .map_err(|e| format!("{}: {e}", file.display()))?;
        let result = run_mysql(platform, record, &file).await;
        let _ = std::fs::remove_file(&file);
        return result;
    }
    let script = recipe::postgresql_removed_sql(old, new)?;
    run_psql(platform, record, &script).await
}

/// Bring the schemas, endpoint users and privileges of the running MariaDB service
/// `record` to its `configuration` without a gap ([`grants`]): what it holds is read
/// first, then missing schemas and users are created, missing privileges granted, and
/// only then those no longer wanted revoked. Nothing is granted or revoked when no
/// endpoint changed.
pub async fn apply_mysql(
    platform: &Platform,
    record: &ServiceRecord,
    configuration: &serde_json::Value,
) -> Result<(), String> {
    let layout = slipway_config::databases::layout(&record.service_type, configuration)
        .unwrap_or_else(|| Ok(Default::default()))
        .map_err(|e| e.to_string())?;
    let args = parts::mariadb_client(&["-N", "-B", "-e", grants::HELD_QUERY]);
    let out = parts::exec(
        platform,
        record,
        &args,
        &parts::mariadb_env(record),
        None,
        None,
    )
    .await?;
    let held = grants::Held::parse(&out).map_err(|e| e.to_string())?;
    let script = recipe::mysql_accounts_sql(configuration, &record.password)?
        + &grants::changes_sql(&layout, &held);
    let dir = super::data_dir(platform, &record.project, &record.environment, &record.name);
    let file = dir.join(MYSQL_APPLY_FILE);
    super::write_secret(&dir, &file, script.as_bytes())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let result = run_mysql(platform, record, &file).await;
    let _ = std::fs::remove_file(&file);
    result
}

/// Make the vhosts of `configuration` that the running RabbitMQ service `record` lacks
/// (a later push added them), with their permissions: `rabbitmqctl list_vhosts` on its
/// node, then, when one is missing, `rabbitmqctl import_definitions` of the definitions
/// file this deploy wrote ([`recipe::DEFINITIONS_FILE`], what a restart would import), so
/// the node, its queues and messages stay as they are. `previous`: that file as it was
/// before this deploy (what the node imported at its start or a deploy since); when it
/// names every configured vhost already, the node is not asked. The vhosts made, by name.
pub async fn apply_rabbitmq(
    platform: &Platform,
    record: &ServiceRecord,
    configuration: &serde_json::Value,
    previous: Option<&str>,
) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    struct Vhost {
        name: String,
    }
    let wanted = recipe::rabbitmq_vhosts(configuration)?;
    if previous
        .and_then(recipe::definitions_vhosts)
        .is_some_and(|had| wanted.iter().all(|v| had.contains(v)))
    {
        return Ok(Vec::new());
    }
    let args = recipe::rabbitmqctl(
        record.address,
        &["-q", "list_vhosts", "name", "--formatter", "json"],
    );
    let out = parts::exec(platform, record, &args, &[], None, None).await?;
    let held: Vec<Vhost> = serde_json::from_str(out.trim()).map_err(|e| {
        format!(
            "service {}: rabbitmqctl list_vhosts said {:?}: {e}",
            record.name,
            out.trim()
        )
    })?;
    let missing: Vec<String> = wanted
        .into_iter()
        .filter(|v| !held.iter().any(|h| &h.name == v))
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let file = format!("/app/{}", recipe::DEFINITIONS_FILE);
    let args = recipe::rabbitmqctl(record.address, &["-q", "import_definitions", &file]);
    parts::exec(platform, record, &args, &[], None, None).await?;
    Ok(missing)
}

/// After a dump was loaded into the running MariaDB service `record` (its `mysql` tables
/// included, written by the service it was taken from, whose password may differ): the
/// server's accounts are read again, the service's own two accounts given their password
/// back in the same session (no other could log in), then schemas, endpoints and
/// privileges brought to `configuration` ([`apply_mysql`]).
pub async fn after_mysql_restore(
    platform: &Platform,
    record: &ServiceRecord,
    configuration: &serde_json::Value,
) -> Result<(), String> {
    let pw = &record.password;
    let admin = parts::MARIADB_ADMIN;
    let script = format!(
        "FLUSH PRIVILEGES;\n\
         CREATE USER IF NOT EXISTS '{admin}'@'localhost' IDENTIFIED BY '{pw}';\n\
         ALTER USER '{admin}'@'localhost' IDENTIFIED BY '{pw}';\n\
         GRANT ALL PRIVILEGES ON *.* TO '{admin}'@'localhost' WITH GRANT OPTION;\n\
         CREATE USER IF NOT EXISTS '{own}'@'%' IDENTIFIED BY '{pw}';\n\
         ALTER USER '{own}'@'%' IDENTIFIED BY '{pw}';\n",
        own = grants::OWN_USER
    );
    let dir = super::data_dir(platform, &record.project, &record.environment, &record.name);
    let file = dir.join(MYSQL_APPLY_FILE);
    super::write_secret(&dir, &file, script.as_bytes())
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let result = run_mysql(platform, record, &file).await;
    let _ = std::fs::remove_file(&file);
    result?;
    apply_mysql(platform, record, configuration).await
}

/// Run the SQL in `file` (in the data folder of MariaDB service `record`) on its running
/// server, as its local account [`parts::MARIADB_ADMIN`] over the server's socket.
async fn run_mysql(
    platform: &Platform,
    record: &ServiceRecord,
    file: &std::path::Path,
) -> Result<(), String> {
    parts::exec(
        platform,
        record,
        &parts::mariadb_client(&[]),
        &parts::mariadb_env(record),
        Some(file),
        None,
    )
    .await
    .map(|_| ())
}
