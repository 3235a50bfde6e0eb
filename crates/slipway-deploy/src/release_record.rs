//! Reading a release's stored record back from the state database: its spec (apps,
//! containers, ports) and the topology it was deployed with. A record that does not
//! decode is a [`ReleaseRecordError`] naming the release, never a silent default:
//! restore skips such a release saying so, `releases` shows it as unreadable, and a
//! deploy over it refuses.

use slipway_config::Topology;
use slipway_state::Release;

use crate::environment::ReleaseSpec;

/// Which part of a release's stored record did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordPart {
    /// The release's spec ([`ReleaseSpec`]).
    Spec,
    /// The topology the release was deployed with.
    Topology,
}

impl std::fmt::Display for RecordPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordPart::Spec => "spec",
            RecordPart::Topology => "topology",
        })
    }
}

/// A release whose stored spec or topology does not decode.
#[derive(Debug, thiserror::Error)]
#[error("release {number} of {project}/{environment} is unreadable: its stored {part} does not decode: {source}")]
pub struct ReleaseRecordError {
    /// The project.
    pub project: String,
    /// The environment.
    pub environment: String,
    /// The release number users see.
    pub number: i64,
    /// What did not decode.
    pub part: RecordPart,
    /// Why.
    #[source]
    pub source: serde_json::Error,
}

impl ReleaseRecordError {
    fn of(release: &Release, part: RecordPart, source: serde_json::Error) -> Self {
        ReleaseRecordError {
            project: release.project.clone(),
            environment: release.environment.clone(),
            number: release.number,
            part,
            source,
        }
    }
}

/// The spec a release was recorded with.
pub fn spec_of(release: &Release) -> Result<ReleaseSpec, ReleaseRecordError> {
    ReleaseSpec::from_json(&release.spec)
        .map_err(|e| ReleaseRecordError::of(release, RecordPart::Spec, e))
}

/// The topology a release was deployed with.
pub fn topology_of(release: &Release) -> Result<Topology, ReleaseRecordError> {
    serde_json::from_value(release.topology.clone())
        .map_err(|e| ReleaseRecordError::of(release, RecordPart::Topology, e))
}

/// The live release of `env` of `project`, if one is live.
pub fn live_release(
    state: &slipway_state::State,
    project: &str,
    env: &str,
) -> Result<Option<Release>, String> {
    Ok(state
        .environment(project, env)
        .map_err(|e| e.to_string())?
        .and_then(|en| en.current_release)
        .map(|id| state.release(id))
        .transpose()
        .map_err(|e| e.to_string())?
        .flatten())
}

/// The live release of `env` of `project` (if one is live) and the spec it was recorded
/// with; a state error or a spec that does not decode is the error.
pub fn live_with_spec(
    state: &slipway_state::State,
    project: &str,
    env: &str,
) -> Result<(Option<Release>, Option<ReleaseSpec>), String> {
    let live = live_release(state, project, env)?;
    let spec = live
        .as_ref()
        .map(spec_of)
        .transpose()
        .map_err(|e| e.to_string())?;
    Ok((live, spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(spec: serde_json::Value, topology: serde_json::Value) -> Release {
        Release {
            id: 7,
            project: "shop".into(),
            environment: "main".into(),
            number: 3,
            commit: "0".repeat(40),
            status: "live".into(),
            spec,
            topology,
            created_at: 0,
            author: slipway_state::ReleaseAuthor::Unknown,
        }
    }

    #[test]
    fn a_corrupted_spec_is_an_error_naming_the_release() {
        // Apps that are not a list, as a damaged or foreign record would have them.
        let r = release(
            serde_json::json!({"apps": "web", "netns": "x", "routed_app": null}),
            serde_json::json!({}),
        );
        let e = spec_of(&r).unwrap_err();
        assert_eq!(e.part, RecordPart::Spec);
        let msg = e.to_string();
        assert!(
            msg.contains("release 3 of shop/main is unreadable"),
            "{msg}"
        );
        assert!(msg.contains("spec does not decode"), "{msg}");
        // A record that is not even an object.
        assert!(spec_of(&release(serde_json::json!(null), serde_json::json!({}))).is_err());
    }

    #[test]
    fn a_corrupted_topology_is_an_error_naming_the_release() {
        let r = release(
            serde_json::json!({"apps": [], "netns": "x", "routed_app": null}),
            serde_json::json!({"applications": 5}),
        );
        assert!(spec_of(&r).is_ok());
        let e = topology_of(&r).unwrap_err();
        assert_eq!(e.part, RecordPart::Topology);
        assert!(e.to_string().contains("topology does not decode"), "{e}");
    }

    #[test]
    fn a_sound_record_decodes() {
        let spec = ReleaseSpec {
            netns: "ns".into(),
            routed_app: Some("web".into()),
            ..Default::default()
        };
        let r = release(spec.to_json(), serde_json::json!({}));
        assert_eq!(spec_of(&r).unwrap().netns, "ns");
    }
}
