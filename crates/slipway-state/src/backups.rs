//! Backups of an environment (`backup create|ls|restore`): each is a set of parts kept in
//! the archive (service-native dumps of every service, a tar of every mount) under one
//! archive tag, recorded here with its typed [`BackupManifest`]. A stored manifest that
//! does not decode is an error, never a default.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::{now, Result, State, StateError};

/// What a part of a backup holds, and so how it is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    /// One PostgreSQL database, `pg_dump -Fc` (restored with `pg_restore` into the database
    /// dropped and created again).
    PostgresqlDump,
    /// A PostgreSQL service's endpoint roles: `pg_dumpall --roles-only
    /// --no-role-passwords` filtered to the roles Slipway made for it (SQL, made again
    /// before the databases load).
    PostgresqlRoles,
    /// Every MariaDB database, `mariadb-dump --single-transaction --all-databases` (SQL).
    MariadbDump,
    /// A Redis/Valkey RDB file written by `BGSAVE`.
    RedisRdb,
    /// A tar of a mount's volume, taken while it was frozen.
    MountTar,
    /// An InfluxDB 1.x service's `influxd backup -portable` folder as a tar (every
    /// database but `_internal`, restored with `influxd restore -portable`).
    InfluxdbPortable,
    /// A tar of a RabbitMQ service's data folder (its node's database: users, vhosts,
    /// queues, exchanges, bindings, policies, and the messages of durable queues), taken
    /// while the node was stopped.
    RabbitmqData,
}

impl PartKind {
    /// The media type of its blob in the archive.
    pub fn media_type(self) -> &'static str {
        match self {
            PartKind::PostgresqlDump => "application/vnd.slipway.backup.pg-dump",
            PartKind::PostgresqlRoles => "application/vnd.slipway.backup.pg-roles+sql",
            PartKind::MariadbDump => "application/vnd.slipway.backup.mariadb-dump+sql",
            PartKind::RedisRdb => "application/vnd.slipway.backup.redis-rdb",
            PartKind::MountTar => "application/vnd.slipway.backup.mount+tar",
            PartKind::InfluxdbPortable => "application/vnd.slipway.backup.influxdb-portable+tar",
            PartKind::RabbitmqData => "application/vnd.slipway.backup.rabbitmq-data+tar",
        }
    }
}

/// One part of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupPart {
    /// What it holds.
    pub kind: PartKind,
    /// The service's name, or the mount's volume name.
    pub name: String,
    /// The service's type and version as configured when the backup was taken (e.g.
    /// `postgresql:15`); empty for a mount.
    pub service: String,
    /// The database, for a part holding one (PostgreSQL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The blob's `sha256:` digest in the archive.
    pub digest: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    /// Its parts, in the order they were taken.
    pub parts: Vec<BackupPart>,
    /// Services that hold nothing to back up (memcached), by name.
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// A backup, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Backup {
    /// Its id (unique on the server; what `backup restore` takes).
    pub id: i64,
    /// The project.
    pub project: String,
    /// The environment it was taken of.
    pub environment: String,
    /// Its tag in the archive.
    pub tag: String,
    /// What it holds.
    pub manifest: BackupManifest,
    /// The bytes of its parts.
    pub size: u64,
    /// Who took it (a user name, or `slipway` for one taken by a service upgrade).
    pub created_by: String,
    /// When (unix seconds).
    pub created_at: i64,
}

const COLUMNS: &str = "id, project, environment, tag, manifest, size, created_by, created_at";

fn backup_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Backup, String)> {
    Ok((
        Backup {
            id: r.get(0)?,
            project: r.get(1)?,
            environment: r.get(2)?,
            tag: r.get(3)?,
            manifest: BackupManifest::default(),
            size: r.get::<_, i64>(5)? as u64,
            created_by: r.get(6)?,
            created_at: r.get(7)?,
        },
        r.get(4)?,
    ))
}

fn decode((mut b, json): (Backup, String)) -> Result<Backup> {
    b.manifest = serde_json::from_str(&json)
        .map_err(|e| StateError::Invalid(format!("backup {} ({}): manifest: {e}", b.id, b.tag)))?;
    Ok(b)
}

impl State {
    /// Record a backup of `project`/`environment` whose parts are in the archive under
    /// `tag`. Returns its id.
    pub fn add_backup(
        &self,
        project: &str,
        environment: &str,
        tag: &str,
        manifest: &BackupManifest,
        created_by: &str,
    ) -> Result<i64> {
        let size: u64 = manifest.parts.iter().map(|p| p.size).sum();
        let db = self.db();
        db.execute(
            "INSERT INTO backups(project, environment, tag, manifest, size, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                project,
                environment,
                tag,
                serde_json::to_string(manifest)?,
                size as i64,
                created_by,
                now()
            ],
        )?;
        Ok(db.last_insert_rowid())
    }

    /// The backup `id`, of whichever environment.
    pub fn backup(&self, id: i64) -> Result<Option<Backup>> {
        let row = self
            .db()
            .query_row(
                &format!("SELECT {COLUMNS} FROM backups WHERE id = ?1"),
                params![id],
                backup_of,
            )
            .optional()?;
        row.map(decode).transpose()
    }

    /// The backups of an environment, newest first.
    pub fn backups(&self, project: &str, environment: &str) -> Result<Vec<Backup>> {
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "SELECT {COLUMNS} FROM backups WHERE project = ?1 AND environment = ?2 ORDER BY id DESC"
        ))?;
        let rows = stmt
            .query_map(params![project, environment], backup_of)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(decode).collect()
    }

    /// The backups of every environment of a project, newest first (a backup of one
    /// environment restores into another of the project).
    pub fn project_backups(&self, project: &str) -> Result<Vec<Backup>> {
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "SELECT {COLUMNS} FROM backups WHERE project = ?1 ORDER BY id DESC"
        ))?;
        let rows = stmt
            .query_map(params![project], backup_of)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(decode).collect()
    }

    /// Every backup on the server, newest first.
    pub fn all_backups(&self) -> Result<Vec<Backup>> {
        let db = self.db();
        let mut stmt = db.prepare(&format!("SELECT {COLUMNS} FROM backups ORDER BY id DESC"))?;
        let rows = stmt
            .query_map([], backup_of)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(decode).collect()
    }

    /// Record that service `name` of `project`/`environment` now runs `version` (after a
    /// major upgrade moved its data to that version).
    pub fn set_service_version(
        &self,
        project: &str,
        environment: &str,
        name: &str,
        version: &str,
    ) -> Result<()> {
        let n = self.db().execute(
            "UPDATE services SET version = ?4 WHERE project = ?1 AND environment = ?2 AND name = ?3",
            params![project, environment, name, version],
        )?;
        if n == 0 {
            return Err(StateError::NotFound(format!(
                "service {name} of {project}/{environment}"
            )));
        }
        Ok(())
    }

    /// Forget backup `id` (its parts go at the next `archive gc`). Returns whether it was
    /// there.
    pub fn remove_backup(&self, id: i64) -> Result<bool> {
        Ok(self
            .db()
            .execute("DELETE FROM backups WHERE id = ?1", params![id])?
            > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_keep_their_typed_manifest_and_refuse_a_broken_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db")).unwrap();
        let manifest = BackupManifest {
            parts: vec![BackupPart {
                kind: PartKind::PostgresqlDump,
                name: "db".into(),
                service: "postgresql:15".into(),
                database: Some("main".into()),
                digest: format!("sha256:{}", "0".repeat(64)),
                size: 42,
            }],
            skipped: vec!["cache".into()],
        };
        let id = state
            .add_backup("p", "main", "backup.p.main.x", &manifest, "alice")
            .unwrap();
        let b = state.backup(id).unwrap().unwrap();
        assert_eq!(b.manifest, manifest);
        assert_eq!((b.size, b.environment.as_str()), (42, "main"));
        assert_eq!(state.backups("p", "main").unwrap().len(), 1);
        assert!(state.backups("p", "other").unwrap().is_empty());
        let dev = state
            .add_backup("p", "dev", "backup.p.dev.x", &manifest, "alice")
            .unwrap();
        state
            .add_backup("q", "main", "backup.q.main.x", &manifest, "alice")
            .unwrap();
        let of_p: Vec<(i64, String)> = state
            .project_backups("p")
            .unwrap()
            .into_iter()
            .map(|b| (b.id, b.environment))
            .collect();
        assert_eq!(of_p, [(dev, "dev".into()), (id, "main".into())]);
        state
            .db()
            .execute("UPDATE backups SET manifest = '{\"parts\": 3}'", [])
            .unwrap();
        assert!(matches!(state.backup(id), Err(StateError::Invalid(_))));
        assert!(state.remove_backup(id).unwrap());
        assert!(state.backup(id).unwrap().is_none());
    }
}
