//! The stack a service starts on: the one it was made on, recorded in its
//! [`ServiceRecord::stack`] at its first start, never the one its configured version
//! resolves to today. PostgreSQL refuses a data folder of another major and MariaDB
//! must upgrade one, so a newer catalog (`postgresql:12` resolving to 13 once 13 joined it,
//! where it was made on 15) must not move a service: only a push with
//! `-o allow-service-upgrade` (a major up) or `-o allow-data-loss` (a major down) does,
//! by dump and restore ([`crate::backups::upgrade`]); the push's diff says so ([`notes`]).
//!
//! A record made before stacks were recorded gets one at its next start
//! ([`ensure_recorded`]): the major its data says it was made by (PostgreSQL's
//! `PG_VERSION`, MariaDB's `mysql_upgrade_info`), else (types whose data names no
//! version, or no data yet) the stack its version resolves to then; the server's log
//! says which.

use std::path::Path;

use slipway_config::{DiffOptions, Topology};
use slipway_stack::{Language, Stack};
use slipway_state::{ServiceRecord, ServiceStack};
use tracing::info;

use crate::Platform;

/// The major of a catalog version as data folders care: PostgreSQL's first number (10
/// on), MariaDB's first two (`10.11`), the first number for the others.
pub fn major(software: Language, version: &str) -> String {
    let mut parts = version.split('.');
    let first = parts.next().unwrap_or(version);
    match (software, parts.next()) {
        (Language::Mariadb, Some(second)) => format!("{first}.{second}"),
        _ => first.to_string(),
    }
}

/// What a service made on `stack` records.
pub fn made_on(stack: &'static Stack) -> ServiceStack {
    ServiceStack {
        software: stack.language.name().to_string(),
        version: stack.version.to_string(),
        fingerprint: stack.fingerprint(),
    }
}

/// The catalog stack (or the imported one, [`slipway_stack::imported`]) `recorded` names:
/// that version, else (a catalog whose version of that major changed, e.g. `10.11` to a
/// later `10.11`-compatible entry) one of the same major; never another major.
pub fn catalog_stack(service: &str, recorded: &ServiceStack) -> Result<&'static Stack, String> {
    let software = Language::SERVICES
        .into_iter()
        .find(|l| l.name() == recorded.software)
        .ok_or_else(|| {
            format!("service {service} was made on {recorded}, which this Slipway does not know")
        })?;
    if let Some(s) = slipway_stack::imported::find_any(software, &recorded.version) {
        return Ok(s);
    }
    let want = major(software, &recorded.version);
    let known = slipway_stack::imported::versions(software);
    known
        .iter()
        .rev()
        .find(|s| major(software, s.version) == want)
        .copied()
        .ok_or_else(|| {
            format!(
                "service {service} was made on {recorded}, which this Slipway's catalog no longer has (it has {}); it is not started on another major: run a Slipway that has it, import it (`slipway stack import {recorded} IMAGE`), or restore a backup into a new service",
                known
                    .iter()
                    .map(|s| format!("{software}:{}", s.version))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

/// The stack `record` runs on: the recorded one, or (a record made before stacks were
/// recorded that has not started since) the one its version resolves to today.
pub fn of_record(record: &ServiceRecord) -> Result<&'static Stack, String> {
    match &record.stack {
        Some(recorded) => catalog_stack(&record.name, recorded),
        None => slipway_stack::resolve_service(&record.service_type, &record.version)
            .map(|r| r.stack)
            .map_err(|e| format!("service {}: {e}", record.name)),
    }
}

/// The stack `record` runs on, reading the state when the caller's copy predates
/// [`ensure_recorded`].
pub fn current(platform: &Platform, record: &ServiceRecord) -> Result<&'static Stack, String> {
    if record.stack.is_none() {
        if let Ok(Some(stored)) =
            platform
                .state()
                .service(&record.project, &record.environment, &record.name)
        {
            return of_record(&stored);
        }
    }
    of_record(record)
}

/// The catalog version (of `software`) the data in `data` (the service's `/app`, its
/// volume mounted) was made by, when its files name one.
pub fn version_in_data(software: Language, data: &Path) -> Option<String> {
    let said = match software {
        Language::Postgresql => std::fs::read_to_string(data.join("pgdata/PG_VERSION")).ok()?,
        // `10.11.6-MariaDB` (MariaDB 10.x/11.x write it after an upgrade or install).
        Language::Mariadb => std::fs::read_to_string(data.join("mysql/mysql_upgrade_info")).ok()?,
        _ => return None,
    };
    let said = said.trim().trim_end_matches('\0');
    let number: String = said
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if number.is_empty() {
        return None;
    }
    let want = major(software, &number);
    slipway_stack::imported::versions(software)
        .into_iter()
        .find(|s| major(software, s.version) == want)
        .map(|s| s.version.to_string())
}

/// The stack of `record`, recorded first when it has none (its volume is mounted, so its
/// data can say what made it). Returns the record as stored now.
pub fn ensure_recorded(
    platform: &Platform,
    record: &ServiceRecord,
    data: &Path,
) -> Result<ServiceRecord, String> {
    if record.stack.is_some() {
        return Ok(record.clone());
    }
    let software = slipway_stack::service_software(&record.service_type)
        .ok_or_else(|| format!("service type {} has no stack", record.service_type))?;
    let (stack, from) = match version_in_data(software, data) {
        Some(v) => (
            slipway_stack::imported::find_any(software, &v)
                .ok_or_else(|| format!("service {}: no stack {software}:{v}", record.name))?,
            "its data",
        ),
        None => (of_record(record)?, "its version resolved today"),
    };
    let recorded = made_on(stack);
    platform
        .state()
        .set_service_stack(
            &record.project,
            &record.environment,
            &record.name,
            &recorded,
        )
        .map_err(|e| e.to_string())?;
    info!(
        project = %record.project, env = %record.environment, service = %record.name,
        "service made before stacks were recorded: recorded {recorded} (from {from})"
    );
    let mut out = record.clone();
    out.stack = Some(recorded);
    Ok(out)
}

/// The push's notes on services that stay on the stack they were made on although their
/// configured version now resolves to another major: `service db stays on postgresql:15
/// (made on it; postgresql:12 resolves to 13 now): push with -o allow-data-loss to move it
/// to 13 by dump and restore`. None for a change the push's options allow (the upgrade
/// phase moves it).
pub fn notes(
    platform: &Platform,
    project: &str,
    env: &str,
    topology: &Topology,
    options: DiffOptions,
) -> Vec<String> {
    let mut out = Vec::new();
    for svc in &topology.services {
        let Ok(Some(record)) = platform.state().service(project, env, &svc.name) else {
            continue;
        };
        if record.service_type != svc.r#type {
            continue;
        }
        let (Ok(now), Ok(wanted)) = (
            of_record(&record),
            slipway_stack::resolve_service(&svc.r#type, &svc.version),
        ) else {
            continue;
        };
        let wanted = wanted.stack;
        let software = now.language;
        if major(software, now.version) == major(software, wanted.version) {
            continue;
        }
        let up = slipway_config::catalog::compare_versions(wanted.version, now.version)
            == std::cmp::Ordering::Greater;
        if (up && options.allow_service_upgrade) || (!up && options.allow_data_loss) {
            continue;
        }
        out.push(format!(
            "service {} stays on {software}:{} (made on it; {}:{} resolves to {} now): push with -o {} to move it to {} by dump and restore",
            svc.name,
            now.version,
            svc.r#type,
            svc.version,
            wanted.version,
            if up { "allow-service-upgrade" } else { "allow-data-loss" },
            wanted.version,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_and_the_version_data_says() {
        assert_eq!(major(Language::Postgresql, "15"), "15");
        assert_eq!(major(Language::Mariadb, "10.11"), "10.11");
        assert_eq!(major(Language::Redis, "7.0"), "7");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(version_in_data(Language::Postgresql, dir.path()), None);
        std::fs::create_dir_all(dir.path().join("pgdata")).unwrap();
        std::fs::write(dir.path().join("pgdata/PG_VERSION"), "15\n").unwrap();
        assert_eq!(
            version_in_data(Language::Postgresql, dir.path()).as_deref(),
            Some("15")
        );
        std::fs::create_dir_all(dir.path().join("mysql")).unwrap();
        std::fs::write(
            dir.path().join("mysql/mysql_upgrade_info"),
            "10.11.6-MariaDB\0",
        )
        .unwrap();
        assert_eq!(
            version_in_data(Language::Mariadb, dir.path()).as_deref(),
            Some("10.11")
        );
        // A major the catalog does not have: nothing said (resolved instead).
        std::fs::write(dir.path().join("pgdata/PG_VERSION"), "9.6\n").unwrap();
        assert_eq!(version_in_data(Language::Postgresql, dir.path()), None);
    }

    #[test]
    fn a_recorded_stack_is_found_by_version_or_major_and_never_another_major() {
        let pg15 = made_on(slipway_stack::catalog::find(Language::Postgresql, "15").unwrap());
        assert_eq!(catalog_stack("db", &pg15).unwrap().version, "15");
        let gone = ServiceStack {
            version: "14".into(),
            ..pg15.clone()
        };
        let e = catalog_stack("db", &gone).unwrap_err();
        assert!(
            e.contains("no longer has") && e.contains("postgresql:15"),
            "{e}"
        );
        let record = ServiceRecord {
            project: "p".into(),
            environment: "main".into(),
            name: "db".into(),
            service_type: "postgresql".into(),
            version: "12".into(),
            address: std::net::Ipv4Addr::new(127, 1, 0, 2),
            username: "main".into(),
            password: "x".into(),
            state: slipway_state::ServiceState::Running,
            stack: Some(pg15),
        };
        // Asked for 12 (which resolves to 13 now), made on 15: 15.
        assert_eq!(of_record(&record).unwrap().version, "15");
        let unrecorded = ServiceRecord {
            stack: None,
            ..record
        };
        assert_eq!(of_record(&unrecorded).unwrap().version, "13");
    }
}
