//! Every catalog stack's packages resolve on its suite, against the real Debian mirror and
//! npm registry a build uses (no stack is built): a package renamed or dropped, a security
//! build the mirror no longer serves, or a pinned npm tarball changed is found here, not
//! by the first push of that version. Stacks made wrong on purpose show each failure names
//! the stack and what does not resolve.

use slipway_stack::catalog::{NpmTarball, NpmTool};
use slipway_stack::check::{check, CheckProblem};
use slipway_stack::{BuildOptions, Language, Stack, Suite, CATALOG};

/// A bookworm Python stack asking for a package Debian does not have.
const MISSING: Stack = Stack {
    language: Language::Python,
    version: "0.1",
    suite: Suite::Bookworm,
    packages: &["python3", "python3-no-such-package"],
    node_from_npm: None,
    npm_tools: &[],
};

/// Two mail servers that conflict: each resolves alone, not together.
const CONFLICT: Stack = Stack {
    language: Language::Python,
    version: "0.2",
    suite: Suite::Trixie,
    packages: &["postfix", "exim4-daemon-light"],
    node_from_npm: None,
    npm_tools: &[],
};

/// yarn 1.22.22 pinned with a sha512 that is not the registry's, and a version never
/// published.
const NPM_WRONG: Stack = Stack {
    language: Language::Nodejs,
    version: "0.3",
    suite: Suite::Bookworm,
    packages: &["libstdc++6"],
    node_from_npm: None,
    npm_tools: &[
        NpmTool {
            tarball: NpmTarball {
                package: "yarn",
                version: "1.22.22",
                sha512: "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            },
            commands: &[("yarn", "bin/yarn.js")],
        },
        NpmTool {
            tarball: NpmTarball {
                package: "yarn",
                version: "0.0.999",
                sha512: "00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
            },
            commands: &[("yarn", "bin/yarn.js")],
        },
    ],
};

#[test]
fn every_catalog_stack_resolves_on_its_suite_and_broken_ones_are_named() {
    let work = tempfile::tempdir().unwrap();
    let mut stacks: Vec<&Stack> = CATALOG.iter().collect();
    stacks.extend([&MISSING, &CONFLICT, &NPM_WRONG]);
    let started = std::time::Instant::now();
    let checks = check(&stacks, &BuildOptions::default(), work.path(), &mut |l| {
        eprintln!("{l}")
    })
    .unwrap_or_else(|e| panic!("checking the catalog: {e}"));
    eprintln!(
        "{} stacks checked in {:.1?}",
        checks.len(),
        started.elapsed()
    );
    assert_eq!(checks.len(), CATALOG.len() + 3);
    let failing: Vec<String> = checks[..CATALOG.len()]
        .iter()
        .filter(|c| !c.ok())
        .map(|c| c.to_string())
        .collect();
    assert!(
        failing.is_empty(),
        "catalog stacks that would not build:\n{}",
        failing.join("\n")
    );
    for c in &checks[..CATALOG.len()] {
        eprintln!("{c}");
        assert!(c.debs > 5, "{c}: too few packages to be a real install");
    }

    let broken = &checks[CATALOG.len()..];
    assert_eq!(broken[0].stack, "python:0.1");
    assert_eq!(
        broken[0].problems,
        vec![CheckProblem::PackageMissing {
            package: "python3-no-such-package".into()
        }]
    );
    assert_eq!(
        broken[0].to_string(),
        "python:0.1 (bookworm): no package `python3-no-such-package`;"
    );
    assert!(
        matches!(&broken[1].problems[..], [CheckProblem::Unresolvable { detail }]
            if detail.contains("Conflicts")),
        "{}",
        broken[1]
    );
    match &broken[2].problems[..] {
        [CheckProblem::NpmChecksum {
            package, actual, ..
        }, CheckProblem::NpmMetadata { package: p2, .. }, CheckProblem::NotServed { url, status }] =>
        {
            assert_eq!(package, "yarn@1.22.22");
            // The registry's real sha512 of yarn 1.22.22, which the catalog pins.
            assert_eq!(
                actual,
                "a6b2f7906b721bba3d67d4aff083df04dad64c399707841b7acf00f6b133b7ac24255f2652fa22ae3534329dc6180534e98d17432037ff6fd140556e2bb3137e"
            );
            assert_eq!(p2, "yarn@0.0.999");
            assert!(url.ends_with("/yarn/-/yarn-0.0.999.tgz"), "{url}");
            assert_eq!(status, "404");
        }
        other => panic!("nodejs:0.3: {other:?}"),
    }
}
