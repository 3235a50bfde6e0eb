//! Every configuration of the public conformance corpus (../shared/examples/platform-configs) loads
//! without error, and its topology has the expected shape; except those whose app `type` names
//! a version no stack can provide (no Debian release here, bullseye to trixie, nor the npm
//! registry's Node.js builds has it): those are refused at the `type`, and only there; and
//! those with a service of a type no Debian release packages (spec section 9: refused,
//! naming the types the server runs), refused at that service's `type`, and only there.

use slipway_config::{load, load_as, ConfigSource, DirSource, Format, RouteKind};

mod corpus;
use corpus::{config_root, corpus, snapshots};

/// Snapshots refused only because an app's `type` names a version nothing provides:
/// `java:8` (Debian ships 11 in bullseye, 17, 21, 25). Lisp's `lisp:2.1` runs on SBCL 2.2,
/// demo-js's `stack: [deno]` on deno 2 and demo-clamav's `stack: [clamav]` on the base
/// stack with ClamAV's packages. The `php:7.4`,
/// `java:11`, `ruby:2.7` and `python:3.8` (run on 3.9) ones load, on Debian 11 (bullseye)
/// stacks, with a warning that bullseye gets no security updates.
const REFUSED_FOR_THEIR_STACK: &[&str] = &[
    "platformsh-templates__microprofile-piranha@update",
    "platformsh-templates__xwiki",
    "upsun__service-examples",
];

/// Snapshots refused only because a service's type is one no Debian release packages and
/// no stack provides (elasticsearch, opensearch, solr, kafka, mongodb, vault-kms).
const REFUSED_FOR_THEIR_SERVICES: &[&str] = &[
    "magento__magento-cloud",
    "platformsh-templates__akeneo",
    "platformsh-templates__magentoCE24",
    "platformsh-templates__mattermost",
    "upsun__service-examples@upsun-python",
];

/// Whether every error of a failed load is a stack refusal at an app's `type`, or a
/// refusal of a service type this server cannot run at a service's `type`.
fn only_stack_errors(e: &slipway_config::Diagnostics) -> bool {
    e.errors().all(|d| {
        (d.key_path == "type" || d.key_path.ends_with(".type") || d.key_path.contains(".stack."))
            && (d.message.contains("is not available")
                || d.message.contains("unknown language")
                || d.message.contains("this server cannot run `"))
    })
}

#[test]
fn every_corpus_config_loads() {
    let Some(root) = corpus() else {
        eprintln!("conformance corpus not present; skipped");
        return;
    };
    let mut failures = Vec::new();
    let mut refused = Vec::new();
    let mut checked = 0;
    for snap in snapshots(&root) {
        let name = snap.file_name().unwrap().to_string_lossy().to_string();
        let dir = config_root(&snap);
        let src = DirSource::new(&dir);
        // The detected format, plus every alternative layout the snapshot also holds.
        let mut formats = vec![];
        if src.read_file(".upsun/config.yaml").unwrap().is_some() {
            formats.push(Format::Upsun);
        }
        if !src.list_dir(".platform").unwrap().is_empty()
            || src.read_file(".platform.app.yaml").unwrap().is_some()
        {
            formats.push(Format::PlatformSh);
        }
        if src.read_file(".magento.app.yaml").unwrap().is_some() {
            formats.push(Format::MagentoCloud);
        }
        let expect_refusal = REFUSED_FOR_THEIR_STACK.contains(&name.as_str())
            || REFUSED_FOR_THEIR_SERVICES.contains(&name.as_str());
        match load(&src) {
            Ok(l) => assert_eq!(Some(&l.format), formats.first(), "{name}: detected format"),
            Err(e) if expect_refusal && only_stack_errors(&e) => refused.push(name.clone()),
            Err(e) => failures.push(format!("{name}:\n{e}")),
        }
        for f in formats {
            checked += 1;
            match load_as(&src, f) {
                Err(e) if expect_refusal && only_stack_errors(&e) => {}
                Err(e) => failures.push(format!("{name} as {f:?}:\n{e}")),
                Ok(l) => {
                    let t = &l.topology;
                    assert!(!t.applications.is_empty(), "{name}: no apps");
                    assert!(!t.routes.is_empty(), "{name}: no routes");
                    assert_eq!(
                        t.routes.iter().filter(|r| r.primary).count(),
                        1,
                        "{name}: exactly one primary route"
                    );
                    for r in &t.routes {
                        if let RouteKind::Upstream { app, .. } = &r.kind {
                            assert!(
                                t.application(app).is_some(),
                                "{name}: route to unknown app {app}"
                            );
                        }
                    }
                    for s in &t.services {
                        let kind = slipway_config::catalog::service_kind(&s.r#type);
                        assert!(
                            kind.is_some_and(|k| k.versions.contains(&s.version.as_str())),
                            "{name}: service {} {}:{} not in the catalog",
                            s.name,
                            s.r#type,
                            s.version
                        );
                    }
                    for a in &t.applications {
                        assert!(
                            a.r#type.as_deref().is_some_and(|t| t.contains(':'))
                                || f == Format::Upsun,
                            "{name}: app {} has no type:version",
                            a.name
                        );
                        for target in a.relationships.values() {
                            let (svc, ep) = target.split_once(':').unwrap();
                            assert!(!ep.is_empty(), "{name}: empty endpoint");
                            assert!(
                                t.service(svc).is_some() || t.application(svc).is_some(),
                                "{name}: relationship to unknown {svc}"
                            );
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    let mut expected: Vec<&str> = REFUSED_FOR_THEIR_STACK
        .iter()
        .chain(REFUSED_FOR_THEIR_SERVICES)
        .copied()
        .collect();
    expected.sort_unstable();
    assert_eq!(refused, expected, "refused for their stack or services");
    assert!(checked >= 70, "only {checked} configurations checked");
}

/// A one-line-per-item summary of a topology.
fn summary(t: &slipway_config::Topology) -> Vec<String> {
    let mut out = Vec::new();
    for a in &t.applications {
        out.push(format!(
            "app {} {} root={:?} rels={:?}",
            a.name,
            a.r#type.as_deref().unwrap_or("-"),
            a.source_root,
            a.relationships
        ));
    }
    for s in &t.services {
        out.push(format!(
            "service {} {}:{} disk={:?}",
            s.name, s.r#type, s.version, s.disk
        ));
    }
    for r in &t.routes {
        let to = match &r.kind {
            RouteKind::Upstream { app, endpoint } => format!("{app}:{endpoint}"),
            RouteKind::Redirect { to, code } => format!("redirect {code} {to}"),
        };
        out.push(format!(
            "route {} -> {to}{}{}",
            r.url,
            if r.primary { " primary" } else { "" },
            r.id.as_ref()
                .map(|i| format!(" id={i}"))
                .unwrap_or_default()
        ));
    }
    out
}

/// Spot checks of whole topologies against what the corpus files say (read by hand).
#[test]
fn corpus_topologies_are_right() {
    let Some(root) = corpus() else {
        eprintln!("conformance corpus not present; skipped");
        return;
    };
    let load_dir = |name: &str| {
        load(&DirSource::new(&root.join(name)))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .topology
    };
    assert_eq!(
        summary(&load_dir("platformsh-templates__django4")),
        vec![
            "app app python:3.10 root=\"\" rels={\"database\": \"db:postgresql\"}",
            "service db postgresql:16 disk=Some(1024)",
            "route https://{default}/ -> app:http primary",
            "route https://www.{default}/ -> redirect 301 https://{default}/",
        ]
    );
    let t = load_dir("platformsh-templates__bigfoot-multiapp@multiapp-upsun");
    let names: Vec<&str> = t.applications.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["api", "admin", "gatsby", "mercure"]);
    assert_eq!(t.application("api").unwrap().source_root, "api");
    assert_eq!(
        t.application("mercure").unwrap().source_root,
        "mercure/.config"
    );
    assert_eq!(
        t.application("api").unwrap().relationships["database"],
        "database:postgresql"
    );
    let s = summary(&t);
    assert!(
        s.contains(&"service database postgresql:15 disk=None".to_string())
            || s.iter()
                .any(|l| l.starts_with("service database postgresql:15")),
        "{s:#?}"
    );
    let routes: Vec<&String> = s.iter().filter(|l| l.starts_with("route")).collect();
    assert_eq!(
        routes,
        vec![
            "route https://{default} -> api:http primary id=api",
            "route https://{default}/admin -> admin:http id=admin",
            "route https://{default}/site -> gatsby:http",
            "route https://mercure.{default} -> mercure:http",
        ]
    );
}
