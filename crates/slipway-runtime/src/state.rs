//! What the runtime says about a container (`runc state`, `runc list`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::RuntimeError;

/// Life-cycle status of a container, as the OCI runtime reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, process not started yet.
    Created,
    /// The process runs.
    Running,
    /// Frozen.
    Paused,
    /// The process has exited; the container still has to be deleted.
    Stopped,
}

impl Status {
    fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "creating" => Status::Creating,
            "created" => Status::Created,
            "running" => Status::Running,
            "paused" => Status::Paused,
            "stopped" => Status::Stopped,
            _ => return None,
        })
    }
}

/// One container known to the runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerState {
    /// Container id.
    pub id: String,
    /// Current status.
    pub status: Status,
    /// Host pid of the container's process, while it has one.
    pub pid: Option<i32>,
    /// The annotations of its `config.json`.
    pub annotations: BTreeMap<String, String>,
}

/// The fields of `runc state` / `runc list --format json` entries this crate uses.
#[derive(Deserialize)]
struct RawState {
    id: String,
    #[serde(default)]
    pid: i32,
    status: String,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

impl RawState {
    fn into_state(self, command: &str) -> Result<ContainerState, RuntimeError> {
        let status = Status::parse(&self.status).ok_or_else(|| RuntimeError::Parse {
            command: command.to_string(),
            message: format!("unknown container status {:?}", self.status),
        })?;
        Ok(ContainerState {
            id: self.id,
            pid: (self.pid > 0 && status != Status::Stopped).then_some(self.pid),
            status,
            annotations: self.annotations.unwrap_or_default(),
        })
    }
}

fn parse_err(command: &str, e: serde_json::Error) -> RuntimeError {
    RuntimeError::Parse {
        command: command.to_string(),
        message: e.to_string(),
    }
}

/// Parses the output of `runc state ID`.
pub(crate) fn parse_state(command: &str, json: &[u8]) -> Result<ContainerState, RuntimeError> {
    let raw: RawState = serde_json::from_slice(json).map_err(|e| parse_err(command, e))?;
    raw.into_state(command)
}

/// Parses the output of `runc list --format json` (`null` when there is none).
pub(crate) fn parse_list(command: &str, json: &[u8]) -> Result<Vec<ContainerState>, RuntimeError> {
    if json.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Vec::new());
    }
    let raw: Option<Vec<RawState>> =
        serde_json::from_slice(json).map_err(|e| parse_err(command, e))?;
    raw.unwrap_or_default()
        .into_iter()
        .map(|r| r.into_state(command))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_runc_output() {
        let s = parse_state(
            "state",
            br#"{"ociVersion":"1.0.2-dev","id":"a","pid":42,"status":"running","bundle":"/b","annotations":{"k":"v"}}"#,
        )
        .unwrap();
        assert_eq!(s.status, Status::Running);
        assert_eq!(s.pid, Some(42));
        assert_eq!(s.annotations.get("k").map(String::as_str), Some("v"));
        let stopped = parse_state("state", br#"{"id":"a","pid":0,"status":"stopped"}"#).unwrap();
        assert_eq!((stopped.status, stopped.pid), (Status::Stopped, None));
        assert!(parse_state("state", br#"{"id":"a","status":"weird"}"#).is_err());
        assert!(parse_state("state", b"not json").is_err());
        assert!(parse_list("list", b"null\n").unwrap().is_empty());
        assert!(parse_list("list", b"").unwrap().is_empty());
        assert_eq!(
            parse_list(
                "list",
                br#"[{"id":"x","pid":1,"status":"created","annotations":null}]"#
            )
            .unwrap()
            .len(),
            1
        );
    }
}
