//! What the SSH `backup` commands and the console's backups page say about backups, in
//! one place so both say it alike.

use slipway_state::{Backup, PartKind};

/// The answer to listing an environment without backups.
pub fn none_yet(project: &str, env: &str) -> String {
    format!("{env} has no backups (`backup create {project} {env}` takes one)")
}

/// What `backup create` says once backup `b` is taken.
pub fn taken(b: &Backup) -> String {
    format!("backup {} of {} taken", b.id, b.environment)
}

/// The size of `b`'s parts, for people (`1.2 MiB`).
pub fn size(b: &Backup) -> String {
    slipway_slug::human_size(b.size)
}

/// The parts of `b`, each as `SERVICE/DATABASE`, `SERVICE` or the mount's volume name.
pub fn part_names(b: &Backup) -> Vec<String> {
    b.manifest
        .parts
        .iter()
        .map(|p| match &p.database {
            Some(db) => format!("{}/{db}", p.name),
            None if p.kind == PartKind::PostgresqlRoles => format!("{} (roles)", p.name),
            None => p.name.clone(),
        })
        .collect()
}

/// What restoring `b` overwrites: one sentence per service (with its type and the
/// databases the backup holds) and per mount.
pub fn overwritten(b: &Backup) -> Vec<String> {
    let mut said: Vec<String> = Vec::new();
    let mut services: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for p in &b.manifest.parts {
        if p.kind == PartKind::MountTar {
            said.push(format!("the files of mount {}", p.name));
            continue;
        }
        match services.iter_mut().find(|(name, _, _)| *name == p.name) {
            Some((_, _, dbs)) => dbs.extend(p.database.as_deref()),
            None => services.push((
                &p.name,
                &p.service,
                p.database.iter().map(|d| d.as_str()).collect(),
            )),
        }
    }
    let mut lines: Vec<String> = services
        .into_iter()
        .map(|(name, service, dbs)| {
            if dbs.is_empty() {
                format!("the data of service {name} ({service})")
            } else {
                format!(
                    "the data of service {name} ({service}): database{} {}",
                    if dbs.len() > 1 { "s" } else { "" },
                    dbs.join(", ")
                )
            }
        })
        .collect();
    lines.append(&mut said);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use slipway_state::{BackupManifest, BackupPart};

    fn part(kind: PartKind, name: &str, service: &str, database: Option<&str>) -> BackupPart {
        BackupPart {
            kind,
            name: name.into(),
            service: service.into(),
            database: database.map(str::to_string),
            digest: String::new(),
            size: 0,
        }
    }

    #[test]
    fn a_restore_names_each_service_with_its_databases_and_each_mount() {
        let b = Backup {
            id: 4,
            project: "demo".into(),
            environment: "main".into(),
            tag: "backup_demo.main.1-x".into(),
            manifest: BackupManifest {
                parts: vec![
                    part(
                        PartKind::PostgresqlDump,
                        "db",
                        "postgresql:15",
                        Some("main"),
                    ),
                    part(
                        PartKind::PostgresqlDump,
                        "db",
                        "postgresql:15",
                        Some("reports"),
                    ),
                    part(PartKind::MountTar, "data", "", None),
                ],
                skipped: Vec::new(),
            },
            size: 0,
            created_by: "me".into(),
            created_at: 0,
        };
        assert_eq!(
            overwritten(&b),
            [
                "the data of service db (postgresql:15): databases main, reports",
                "the files of mount data"
            ]
        );
        assert_eq!(part_names(&b), ["db/main", "db/reports", "data"]);
        assert_eq!(taken(&b), "backup 4 of main taken");
    }
}
