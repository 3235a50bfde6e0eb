//! Varnish: an HTTP cache in front of the apps, as on Platform.sh. The user writes the VCL
//! (`configuration.vcl`, usually `!include {type: string, path: config.vcl}`) without its
//! preamble or `vcl_init`; Slipway generates them: `vcl 4.1`, `import std; import
//! directors;`, a backend per service relationship `REL: "APP:http"` and, in `vcl_init`, a
//! round-robin director named `REL` holding it, so the user's VCL says
//! `set req.backend_hint = REL.backend();` (the first backend is the default otherwise).
//!
//! Backends follow releases: each release's apps listen on new ports, so at every switch
//! ([`follow`], called by the pipeline before the router's table is swapped) the VCL is
//! generated for the new release's ports, written to the service's data folder (where a
//! restart of varnishd reads it) and loaded with `varnishadm vcl.load` + `vcl.use`: new
//! requests go to the new release while those under way finish on the old one, which is
//! only stopped after the router drained it. A VCL that does not compile is refused in the
//! services phase ([`check`]; a new service's varnishd refuses to start on it), before any
//! app starts.
//!
//! varnishd runs as the project's user with its working folder in `/tmp/varnish`
//! (`varnishadm -n` finds its admin port and secret there), listening on the service's
//! address, port 8080 (apps' relationships, the listener named [`APPS_SOCKET`]), and on
//! `127.0.0.1:`[`route_port`] (the router's routes to the service, dialed like an app's
//! port in the environment's network namespace).
//!
//! Purging: an app purges (or bans) through a relationship to the service
//! (`cache: 'varnish:http'`), with `PURGE`/`BAN` requests the user's VCL allows by an ACL
//! (`acl purge { "localhost"; }`, as on Platform.sh: every request reaches varnishd from
//! the loopback, the router's too). The generated preamble's `vcl_recv`, which runs before
//! the user's, refuses those methods on any listener but the relationship's, so the
//! public, through a route, never purges; and the relationship's address is reached only
//! from the environment's own network namespace, so only the environment's apps do.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use slipway_config::{Service, Topology};
use slipway_state::ServiceRecord;

use crate::environment::ReleaseSpec;
use crate::output::Output;
use crate::pipeline::PhaseError;
use crate::Platform;

/// The VCL varnishd runs: generated preamble + the user's VCL, in its data folder (`/app`).
pub const VCL_FILE: &str = "slipway.vcl";

/// Where a VCL is written to be compiled before it is used ([`check`]).
const CHECK_FILE: &str = "slipway-check.vcl";

/// varnishd's working folder in its container (shared memory log, admin secret).
pub const WORK_DIR: &str = "/tmp/varnish";

/// The port a service's own relationships reach it on (Platform.sh's `http` endpoint).
pub const PORT: u16 = 8080;

/// The name of varnishd's listener on the service's address (`local.socket` in VCL): the
/// apps' relationships, the only listener that takes `PURGE` and `BAN`.
pub const APPS_SOCKET: &str = "relationship";

/// The generated `vcl_recv`, before the user's: cache invalidation only from the apps.
const INVALIDATION_GUARD: &str = "sub vcl_recv {\n    if ((req.method == \"PURGE\" || req.method == \"BAN\") && local.socket != \"relationship\") {\n        return (synth(405, \"Not allowed: purge through a relationship to the service\"));\n    }\n}\n\n";

/// The port varnish also listens on at `127.0.0.1` in the environment's network namespace,
/// for the router's routes to it: one per service address, in its block of
/// [`super::ports`] (below the apps' ports).
pub fn route_port(address: Ipv4Addr) -> u16 {
    super::ports::private(super::ports::Private::VarnishRoute, address)
}

/// The port of varnishd's admin interface (`varnishadm`, secret in [`WORK_DIR`]) at
/// `127.0.0.1`: fixed below the apps' ports, so that it never takes a port a later
/// release's app is given (a random one could).
pub fn admin_port(address: Ipv4Addr) -> u16 {
    super::ports::private(super::ports::Private::VarnishAdmin, address)
}

/// Whether `name` is a VCL identifier Slipway can name a backend and director after.
fn vcl_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The line before the user's VCL in the generated file.
const USER_MARK: &str = "# --- configuration.vcl ---\n";

/// The compiler's messages about the generated file, with its positions in the user's
/// part told as lines of `configuration.vcl` (`('/app/slipway.vcl' Line 21 Pos 1)` ->
/// `(configuration.vcl line 3 Pos 1)`); `vcl_text` is the generated file.
pub fn explain(message: &str, vcl_text: &str) -> String {
    let before = vcl_text
        .find(USER_MARK)
        .map_or(0, |i| vcl_text[..i + USER_MARK.len()].lines().count());
    message
        .lines()
        .map(|line| {
            for file in [VCL_FILE, CHECK_FILE] {
                let needle = format!("('/app/{file}' Line ");
                let Some(at) = line.find(&needle) else {
                    continue;
                };
                let rest = &line[at + needle.len()..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                let Ok(n) = digits.parse::<usize>() else {
                    continue;
                };
                if n > before {
                    return format!(
                        "{}(configuration.vcl line {}{}",
                        &line[..at],
                        n - before,
                        &rest[digits.len()..]
                    );
                }
            }
            line.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The whole VCL of `service`: the generated preamble (a backend and a round-robin director
/// per relationship, the backend at `127.0.0.1:PORT` of `ports[APP]`, or an address that
/// refuses while the app has no release) followed by the user's `configuration.vcl`.
pub fn vcl(service: &Service, ports: &BTreeMap<String, u16>) -> Result<String, String> {
    let user = match service.configuration.get("vcl") {
        None | Some(serde_json::Value::Null) => "",
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(_) => return Err("`configuration.vcl` must be the VCL text (e.g. `!include {type: string, path: config.vcl}`)".into()),
    };
    let mut out = String::from("vcl 4.1;\n\nimport std;\nimport directors;\n\n");
    let mut init = String::new();
    for (rel, target) in &service.relationships {
        if !vcl_name(rel) {
            return Err(format!(
                "relationship `{rel}`: a varnish relationship's name must be a VCL name (letters, digits, `_`)"
            ));
        }
        let app = target.split_once(':').map_or(target.as_str(), |(a, _)| a);
        // No release of the app yet: port 1 refuses at once (503) until the switch.
        let port = ports.get(app).copied().unwrap_or(1);
        out.push_str(&format!(
            "backend slipway_{rel} {{\n    .host = \"127.0.0.1\";\n    .port = \"{port}\";\n    .connect_timeout = 2s;\n    .first_byte_timeout = 60s;\n}}\n\n"
        ));
        init.push_str(&format!(
            "    new {rel} = directors.round_robin();\n    {rel}.add_backend(slipway_{rel});\n"
        ));
    }
    if service.relationships.is_empty() {
        out.push_str("backend default none;\n\n");
    }
    out.push_str(&format!("sub vcl_init {{\n{init}}}\n\n"));
    out.push_str(INVALIDATION_GUARD);
    out.push_str(USER_MARK);
    out.push_str(user);
    out.push('\n');
    Ok(out)
}

/// The ports of a release's apps, by app name.
pub fn app_ports(spec: &ReleaseSpec) -> BTreeMap<String, u16> {
    spec.apps.iter().map(|a| (a.name.clone(), a.port)).collect()
}

/// The ports of the live release's apps of the environment (empty: none live).
pub fn live_ports(platform: &Platform, project: &str, env: &str) -> BTreeMap<String, u16> {
    let state = platform.state();
    let Ok(Some(e)) = state.environment(project, env) else {
        return BTreeMap::new();
    };
    let Some(Ok(Some(release))) = e.current_release.map(|id| state.release(id)) else {
        return BTreeMap::new();
    };
    crate::release_record::spec_of(&release)
        .map(|s| app_ports(&s))
        .unwrap_or_default()
}

/// The start script: varnishd in the foreground on the generated VCL.
pub fn start_script(address: Ipv4Addr) -> String {
    let (route, admin) = (route_port(address), admin_port(address));
    format!(
        r#"set -e
rm -rf {WORK_DIR}
exec varnishd -F -j none -n {WORK_DIR} -f /app/{VCL_FILE} -a {APPS_SOCKET}={address}:{PORT} -a router=127.0.0.1:{route} -T 127.0.0.1:{admin} -s malloc,256m
"#
    )
}

/// Write `text` to `file` in the service's data folder, owned by the project's user (who
/// runs varnishd), readable by it only.
fn write_owned(
    platform: &Platform,
    record: &ServiceRecord,
    file: &str,
    text: &str,
) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = super::data_dir(platform, &record.project, &record.environment, &record.name);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(file);
    let tmp = dir.join(format!("{file}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    crate::isolation::run_as(&record.project)
        .own_tree(&tmp)
        .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Write the VCL a new (or stopped) service starts on, with the live release's ports.
pub fn prepare(
    platform: &Platform,
    record: &ServiceRecord,
    service: &Service,
) -> Result<(), String> {
    let ports = live_ports(platform, &record.project, &record.environment);
    let text = vcl(service, &ports).map_err(|m| format!("service {}: {m}", record.name))?;
    write_owned(platform, record, VCL_FILE, &text)
}

/// Write the VCL of the environment's live release (its topology's VCL, its apps' ports)
/// before varnishd starts outside a deploy (`serve`, `sync`): a copied or stale file never
/// points it at another environment's or an earlier release's ports. Nothing to do for a
/// service the live release does not have.
pub fn write_for_live(platform: &Platform, record: &ServiceRecord) -> Result<(), String> {
    let state = platform.state();
    let Some(env) = state
        .environment(&record.project, &record.environment)
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let Some(id) = env.current_release else {
        return Ok(());
    };
    let Some(release) = state.release(id).map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let topology = crate::release_record::topology_of(&release).map_err(|e| e.to_string())?;
    let spec = crate::release_record::spec_of(&release).map_err(|e| e.to_string())?;
    let Some(service) = topology.service(&record.name) else {
        return Ok(());
    };
    let text =
        vcl(service, &app_ports(&spec)).map_err(|m| format!("service {}: {m}", record.name))?;
    write_owned(platform, record, VCL_FILE, &text)
}

/// Run `varnishadm ARGS` in the service's container; its output, or the output as the error.
async fn admin(
    platform: &Platform,
    record: &ServiceRecord,
    args: &[&str],
) -> Result<String, String> {
    let id = super::container_id(&record.project, &record.environment, &record.name);
    let mut cmd = vec!["varnishadm".to_string(), "-n".into(), WORK_DIR.into()];
    cmd.extend(args.iter().map(|a| a.to_string()));
    let env = vec![(
        "PATH".to_string(),
        "/usr/local/bin:/usr/bin:/bin".to_string(),
    )];
    let mut said = String::new();
    let code = platform
        .runtime()
        .exec(&id, &cmd, &env, "/app", Duration::from_secs(60), &mut |l| {
            said.push_str(l);
            said.push('\n');
        })
        .await
        .map_err(|e| format!("service {}: varnishadm: {e}", record.name))?;
    if code == 0 {
        Ok(said)
    } else {
        Err(said.trim_end().to_string())
    }
}

/// Whether `debug.listen_address` output (`NAME ADDRESS PORT` per listener) names the
/// apps' listener [`APPS_SOCKET`]: a varnishd started by a Slipway before its listeners
/// were named has `a0` and `a1`, where the generated `vcl_recv` refuses every `PURGE`.
fn names_apps_socket(listeners: &str) -> bool {
    listeners
        .lines()
        .any(|l| l.split_whitespace().next() == Some(APPS_SOCKET))
}

/// Whether the running varnishd of `record` has the listener apps purge through
/// ([`APPS_SOCKET`]); false for one started by an older Slipway (unnamed listeners), which
/// must start again on [`start_script`] for its apps to purge.
pub async fn listens_for_apps(platform: &Platform, record: &ServiceRecord) -> Result<bool, String> {
    admin(platform, record, &["debug.listen_address"])
        .await
        .map(|l| names_apps_socket(&l))
}

/// A name for a VCL loaded now (`vcl.load` names must be unique in a varnishd).
fn fresh_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}_{nanos}")
}

/// Compile `service`'s VCL in its running varnishd (`vcl.load`, then discarded): the
/// compiler's message when it does not compile. The running VCL is untouched.
pub async fn check(
    platform: &Platform,
    record: &ServiceRecord,
    service: &Service,
) -> Result<(), String> {
    let ports = live_ports(platform, &record.project, &record.environment);
    let text = vcl(service, &ports).map_err(|m| format!("service {}: {m}", record.name))?;
    write_owned(platform, record, CHECK_FILE, &text)?;
    let name = fresh_name("slipway_check");
    let path = format!("/app/{CHECK_FILE}");
    match admin(platform, record, &["vcl.load", &name, &path]).await {
        Ok(_) => {
            let _ = admin(platform, record, &["vcl.discard", &name]).await;
            Ok(())
        }
        Err(m) => Err(format!(
            "service {}: its VCL does not compile:\n{}",
            record.name,
            explain(&m, &text)
        )),
    }
}

/// What [`follow`] changed in one varnish, to put back when the switch fails.
#[derive(Debug)]
pub struct Followed {
    record: ServiceRecord,
    /// The VCL file as it was.
    previous_text: Option<String>,
    /// The VCL active before, by name.
    previous_vcl: Option<String>,
}

/// The name of the active VCL in `vcl.list` output (`active auto warm 0 NAME`).
fn active_vcl(list: &str) -> Option<String> {
    list.lines()
        .find(|l| l.starts_with("active"))
        .and_then(|l| l.split_whitespace().nth(4))
        .map(str::to_string)
}

/// The names of loaded VCLs that are not in use (`available`).
fn available_vcls(list: &str) -> Vec<String> {
    list.lines()
        .filter(|l| l.starts_with("available"))
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(str::to_string)
        .collect()
}

/// Point every varnish service of `topology` at the apps of the release `spec` (the VCL
/// generated for its ports, written, loaded and made active), before the router switches
/// to it. VCLs left unused by earlier switches are discarded (those still busy stay).
pub async fn follow(
    platform: &Platform,
    (project, env): (&str, &str),
    spec: &ReleaseSpec,
    topology: &Topology,
    out: &Output,
) -> Result<Vec<Followed>, PhaseError> {
    let fail = |m: String| PhaseError::new("switch routes", m);
    let ports = app_ports(spec);
    let mut done = Vec::new();
    for service in topology.services.iter().filter(|s| s.r#type == "varnish") {
        let record = match platform.state().service(project, env, &service.name) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => return Err(fail(e.to_string())),
        };
        let result = async {
            let text = vcl(service, &ports)?;
            let dir = super::data_dir(platform, project, env, &service.name);
            let previous_text = std::fs::read_to_string(dir.join(VCL_FILE)).ok();
            let list = admin(platform, &record, &["vcl.list"]).await?;
            let previous_vcl = active_vcl(&list);
            for stale in available_vcls(&list) {
                let _ = admin(platform, &record, &["vcl.discard", &stale]).await;
            }
            write_owned(platform, &record, VCL_FILE, &text)?;
            let followed = Followed {
                record: record.clone(),
                previous_text,
                previous_vcl,
            };
            let name = fresh_name("slipway");
            let path = format!("/app/{VCL_FILE}");
            let loaded = async {
                admin(platform, &record, &["vcl.load", &name, &path]).await?;
                admin(platform, &record, &["vcl.use", &name]).await
            }
            .await;
            match loaded {
                Ok(_) => Ok(followed),
                Err(m) => {
                    undo(platform, vec![followed]).await;
                    Err(m)
                }
            }
        }
        .await;
        match result {
            Ok(f) => {
                out.line(&format!(
                    "       service {}: backends -> {}",
                    service.name,
                    service
                        .relationships
                        .iter()
                        .map(|(rel, target)| {
                            let app = target.split_once(':').map_or(target.as_str(), |(a, _)| a);
                            format!(
                                "{rel} ({app} on port {})",
                                ports.get(app).copied().unwrap_or(0)
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                done.push(f);
            }
            Err(m) => {
                undo(platform, done).await;
                return Err(fail(format!("service {}: {m}", service.name)));
            }
        }
    }
    Ok(done)
}

/// Put back what [`follow`] changed (the switch did not happen): the previous VCL file and
/// active VCL.
pub async fn undo(platform: &Platform, followed: Vec<Followed>) {
    for f in followed {
        if let Some(text) = &f.previous_text {
            if let Err(e) = write_owned(platform, &f.record, VCL_FILE, text) {
                tracing::warn!(service = %f.record.name, "putting the VCL file back: {e}");
            }
        }
        if let Some(name) = &f.previous_vcl {
            if let Err(e) = admin(platform, &f.record, &["vcl.use", name]).await {
                tracing::warn!(service = %f.record.name, "putting the active VCL back: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(vcl_text: Option<&str>) -> Service {
        let mut relationships = BTreeMap::new();
        relationships.insert("application".to_string(), "app:http".to_string());
        Service {
            name: "varnish".into(),
            r#type: "varnish".into(),
            version: "7.1".into(),
            disk: None,
            configuration: match vcl_text {
                Some(t) => serde_json::json!({ "vcl": t }),
                None => serde_json::Value::Null,
            },
            relationships,
        }
    }

    #[test]
    fn vcl_has_a_director_per_relationship_at_the_release_port_and_the_users_vcl() {
        let user = "sub vcl_recv {\n    set req.backend_hint = application.backend();\n}\n";
        let mut ports = BTreeMap::new();
        ports.insert("app".to_string(), 10042);
        let text = vcl(&service(Some(user)), &ports).unwrap();
        assert!(text.starts_with("vcl 4.1;\n"), "{text}");
        assert!(text.contains("import directors;"));
        assert!(text.contains(".port = \"10042\";"), "{text}");
        assert!(text.contains("new application = directors.round_robin();"));
        assert!(text.contains("application.add_backend(slipway_application);"));
        assert!(text.ends_with(user) || text.ends_with(&format!("{user}\n")));
        // PURGE and BAN are refused, before the user's VCL, but on the apps' listener.
        let guard = text.find(INVALIDATION_GUARD).unwrap();
        assert!(guard < text.find(USER_MARK).unwrap(), "{text}");
        assert!(INVALIDATION_GUARD.contains(&format!("local.socket != \"{APPS_SOCKET}\"")));
        // No release yet: a port that refuses.
        let none = vcl(&service(None), &BTreeMap::new()).unwrap();
        assert!(none.contains(".port = \"1\";"), "{none}");
        let mut bad = service(None);
        bad.configuration = serde_json::json!({"vcl": 3});
        assert!(vcl(&bad, &ports).is_err());
        let mut bad = service(None);
        bad.relationships.insert("my-app".into(), "app:http".into());
        assert!(vcl(&bad, &ports).is_err());
    }

    #[test]
    fn compiler_positions_in_the_users_part_are_told_as_its_lines() {
        let text = vcl(
            &service(Some("sub vcl_recv {\n    x\n}\n")),
            &BTreeMap::new(),
        )
        .unwrap();
        let line = text.lines().position(|l| l == "    x").unwrap() + 1;
        let m = format!("Symbol not found\nAt: ('/app/slipway-check.vcl' Line {line} Pos 5)\n('/app/slipway.vcl' Line 2 Pos 1)");
        let e = explain(&m, &text);
        assert!(e.contains("At: (configuration.vcl line 2 Pos 5)"), "{e}");
        assert!(e.contains("('/app/slipway.vcl' Line 2 Pos 1)"), "{e}");
    }

    #[test]
    fn reads_vcl_list() {
        let list = "available   auto    cold         0    slipway_1\nactive      auto    warm         0    slipway_2\navailable   auto    warm         3    boot\n";
        assert_eq!(active_vcl(list).as_deref(), Some("slipway_2"));
        assert_eq!(available_vcls(list), ["slipway_1", "boot"]);
        assert_eq!(route_port(Ipv4Addr::new(127, 1, 0, 3)), 9503);
        let script = start_script(Ipv4Addr::new(127, 1, 0, 3));
        assert!(script.contains("-a router=127.0.0.1:9503"), "{script}");
        assert!(
            script.contains("-a relationship=127.1.0.3:8080"),
            "{script}"
        );
        assert!(script.contains("-T 127.0.0.1:9703"), "{script}");
        // varnishadm debug.listen_address of varnishd 7.1, named and not.
        assert!(names_apps_socket(
            "relationship 127.1.0.3 8080\nrouter 127.0.0.1 9503\n\n"
        ));
        assert!(!names_apps_socket(
            "a0 127.1.0.3 8080\na1 127.0.0.1 9503\n\n"
        ));
    }
}
