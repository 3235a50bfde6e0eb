//! The database schema and its migrations, applied in order at open.

use rusqlite::Connection;

/// Each entry moves the schema one version up. Never edit a shipped entry: add one.
pub(crate) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE users (
    name  TEXT PRIMARY KEY,
    admin INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE keys (
    key  TEXT PRIMARY KEY,            -- 'ssh-ed25519 AAAA...' without comment
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE
);
CREATE TABLE projects (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE access (
    project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    user    TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    role    TEXT NOT NULL CHECK (role IN ('viewer', 'contributor', 'admin')),
    PRIMARY KEY (project, user)
);
CREATE TABLE environments (
    project         TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    branch          TEXT NOT NULL,
    current_release INTEGER,
    PRIMARY KEY (project, name)
);
CREATE TABLE releases (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    number      INTEGER NOT NULL,
    commit_id   TEXT NOT NULL,
    status      TEXT NOT NULL,
    spec        TEXT NOT NULL,
    topology    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (project, environment, number),
    FOREIGN KEY (project, environment) REFERENCES environments(project, name) ON DELETE CASCADE
);
CREATE TABLE builds (
    build_key  TEXT PRIMARY KEY,
    slug       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE activity (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project     TEXT NOT NULL,
    environment TEXT,
    kind        TEXT NOT NULL,
    user        TEXT,
    status      TEXT NOT NULL,
    summary     TEXT NOT NULL,
    log         TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX activity_by_project ON activity(project, environment, id);
"#,
    r#"
CREATE TABLE variables (
    project     TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    environment TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       TEXT NOT NULL,
    PRIMARY KEY (project, environment, name)
);
"#,
    r#"
-- Activity logs grow by one row per line: appending no longer rewrites the whole log.
CREATE TABLE activity_lines (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    activity INTEGER NOT NULL REFERENCES activity(id) ON DELETE CASCADE,
    text     TEXT NOT NULL
);
CREATE INDEX activity_lines_by_activity ON activity_lines(activity, seq);
"#,
    // domains (tenant-hosts): hosts outside the server's domain, assigned to a project by a server admin.
    r#"
CREATE TABLE domains (
    host        TEXT PRIMARY KEY,     -- lowercase, no trailing dot, no port
    project     TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    assigned_by TEXT NOT NULL,
    assigned_at INTEGER NOT NULL
);
CREATE INDEX domains_by_project ON domains(project, host);
"#,
    r#"
-- tenant-builds (issue 12): slugs are remembered per project, with the environment whose
-- build made them and whether a build cache fed that build; the global table goes. Slugs
-- of existing releases stay findable (rollback), each scoped to its own environment.
CREATE TABLE built_slugs (
    project     TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    build_key   TEXT NOT NULL,
    environment TEXT NOT NULL,
    cache_fed   INTEGER NOT NULL CHECK (cache_fed IN (0, 1)),
    slug        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (project, build_key, environment)
);
INSERT OR IGNORE INTO built_slugs(project, build_key, environment, cache_fed, slug, created_at)
    SELECT r.project, json_extract(a.value, '$.build_key'), r.environment, 1, b.slug, b.created_at
    FROM releases r
    JOIN json_each(CASE WHEN json_valid(r.spec) THEN r.spec ELSE '{}' END, '$.apps') a
    JOIN builds b ON b.build_key = json_extract(a.value, '$.build_key')
    WHERE r.project IN (SELECT name FROM projects);
DROP TABLE builds;
"#,
    // variables.sensitive (tenant-vars-logs): `var set --sensitive` values reach the apps but
    // are never shown again.
    r#"
ALTER TABLE variables ADD COLUMN sensitive INTEGER NOT NULL DEFAULT 0 CHECK (sensitive IN (0, 1));
"#,
    // services (issue 14): the services of an environment, which outlive its releases, with
    // their loopback address in the environment's network namespace and generated credentials.
    r#"
CREATE TABLE services (
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    name        TEXT NOT NULL,
    type        TEXT NOT NULL,
    version     TEXT NOT NULL,
    address     TEXT NOT NULL,
    username    TEXT NOT NULL,
    password    TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (project, environment, name),
    UNIQUE (project, environment, address),
    FOREIGN KEY (project, environment) REFERENCES environments(project, name) ON DELETE CASCADE
);
"#,
    // backups (issue 14, backups lane): `backup create` records each backup of an
    // environment with its manifest (the parts kept in the archive under `tag`).
    r#"
CREATE TABLE backups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    tag         TEXT NOT NULL UNIQUE,
    manifest    TEXT NOT NULL,
    size        INTEGER NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX backups_by_environment ON backups(project, environment, id);
"#,
    // console (issue 15): one-time login links printed by `ssh git@HOST console` and the
    // web console's sessions, both stored as SHA-256 hashes of their secrets and gone with
    // their user.
    r#"
CREATE TABLE console_logins (
    token_hash TEXT PRIMARY KEY,
    user       TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL
);
CREATE TABLE console_sessions (
    id_hash    TEXT PRIMARY KEY,
    user       TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
"#,
    // project_entropy (templates): each project's PLATFORM_PROJECT_ENTROPY, a random value
    // made once and kept for the project's life (apps derive secret keys from it).
    r#"
CREATE TABLE project_entropy (
    project TEXT PRIMARY KEY REFERENCES projects(name) ON DELETE CASCADE,
    entropy TEXT NOT NULL CHECK (length(entropy) >= 32)
);
"#,
    // release_author (console-more): who caused each release, `user:NAME` or `server`; NULL
    // for releases recorded before, shown as "unknown".
    r#"
ALTER TABLE releases ADD COLUMN author TEXT
    CHECK (author IS NULL OR author = 'server' OR (author LIKE 'user:%' AND length(author) > 5));
"#,
    // console_actions (console-activity): the actions started from the web console, so that
    // an action's waiting page (`/started/N`, its starter's only) survives a restart or
    // `serve --upgrade`; `activity` once the action recorded one, else its outcome once it
    // ended before it began; rows are forgotten once expired.
    r#"
CREATE TABLE console_actions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user        TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    what        TEXT NOT NULL,
    server_pid  INTEGER NOT NULL,
    early       TEXT NOT NULL DEFAULT '',
    activity    INTEGER,
    outcome     TEXT CHECK (outcome IS NULL OR outcome IN ('done', 'refused')),
    message     TEXT,
    started_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
"#,
    // activity.log_pruned_at (console-activity): when an old activity's log was pruned (its
    // lines deleted, the row kept with its summary); NULL while the log is kept.
    r#"
ALTER TABLE activity ADD COLUMN log_pruned_at INTEGER;
"#,
    // service_stacks (services-lifecycle): the stack each service was made on
    // (`postgresql:15`) and that stack's fingerprint, so that it starts on it from then on.
    // NULL for services made before: their next start fills it from their data (PG_VERSION,
    // mysql_upgrade_info) or the version resolved then, and says so in the server's log.
    r#"
ALTER TABLE services ADD COLUMN stack TEXT CHECK (stack IS NULL OR stack LIKE '_%:_%');
ALTER TABLE services ADD COLUMN stack_fingerprint TEXT;
"#,
    // container_restarts (services-lifecycle): how often the supervisor started each app,
    // worker and service container again and how it last exited, kept across server
    // restarts; an app's or worker's count belongs to its release (a deploy starts anew).
    r#"
CREATE TABLE container_restarts (
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('app', 'worker', 'service')),
    name        TEXT NOT NULL,
    release     INTEGER CHECK ((kind = 'service') = (release IS NULL)),
    restarts    INTEGER NOT NULL CHECK (restarts >= 0),
    last_exit   TEXT,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (project, environment, kind, name),
    FOREIGN KEY (project, environment) REFERENCES environments(project, name) ON DELETE CASCADE
);
"#,
    // postdeploy_runs (heroku): the release whose deploy ran an environment's app.json
    // `scripts.postdeploy`, which runs once per environment.
    r#"
CREATE TABLE postdeploy_runs (
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    release     INTEGER NOT NULL,
    ran_at      INTEGER NOT NULL,
    PRIMARY KEY (project, environment),
    FOREIGN KEY (project, environment) REFERENCES environments(project, name) ON DELETE CASCADE
);
"#,
    // environment_parents: the environment a branch's environment was made from (its data
    // copied at its first deploy), kept so that `sync` copies from the same one later, however
    // the branches' heads move.
    r#"
CREATE TABLE environment_parents (
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    parent      TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (project, environment),
    FOREIGN KEY (project, environment) REFERENCES environments(project, name) ON DELETE CASCADE
);
"#,
    // release_variables (polish): the environment's variables a release's containers
    // started with, as names and value digests (never values), so that the next deploy can
    // say which changed since the live release.
    r#"
CREATE TABLE release_variables (
    release     INTEGER PRIMARY KEY REFERENCES releases(id) ON DELETE CASCADE,
    digests     TEXT NOT NULL
);
"#,
    // console_actions.outcome 'failed' (console15): an action that failed inside before it
    // began (an internal failure: the server's log tells, the row keeps no message).
    r#"
CREATE TABLE console_actions_next (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user        TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    project     TEXT NOT NULL,
    environment TEXT NOT NULL,
    what        TEXT NOT NULL,
    server_pid  INTEGER NOT NULL,
    early       TEXT NOT NULL DEFAULT '',
    activity    INTEGER,
    outcome     TEXT CHECK (outcome IS NULL OR outcome IN ('done', 'refused', 'failed')),
    message     TEXT,
    started_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
INSERT INTO console_actions_next SELECT * FROM console_actions;
DROP TABLE console_actions;
ALTER TABLE console_actions_next RENAME TO console_actions;
"#,
    // replaced_services (issue 14): a service a push replaces by one of another type waits
    // here, its columns those of `services`, until the push is live (then forgotten) or
    // failed (then back in `services`); a server killed in between finds it at its next
    // start and settles it by what the live release configures. The replacing service
    // takes its address, so no UNIQUE on the address here.
    r#"
CREATE TABLE replaced_services (
    project           TEXT NOT NULL,
    environment       TEXT NOT NULL,
    name              TEXT NOT NULL,
    type              TEXT NOT NULL,
    version           TEXT NOT NULL,
    address           TEXT NOT NULL,
    username          TEXT NOT NULL,
    password          TEXT NOT NULL,
    state             TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    stack             TEXT,
    stack_fingerprint TEXT,
    PRIMARY KEY (project, environment, name),
    FOREIGN KEY (project, environment) REFERENCES environments(project, name) ON DELETE CASCADE
);
"#,
    // console_actions.refused_as (console refusals): what kind of refusal ended an action
    // before it began, for the status of its page (403, 404, 400 or 409). The refusals of
    // older servers were all shown as 409: they are conflicts.
    r#"
ALTER TABLE console_actions ADD COLUMN refused_as TEXT
    CHECK (refused_as IS NULL OR refused_as IN ('forbidden', 'not-found', 'invalid', 'conflict'));
UPDATE console_actions SET refused_as = 'conflict' WHERE outcome = 'refused';
"#,
];

/// Bring the schema to the newest version (tracked in `PRAGMA user_version`).
pub(crate) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
