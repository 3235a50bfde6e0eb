//! `dependencies`: global packages an app lists per language, installed before its build
//! flavor and `hooks.build` into [`GLOBAL_DIR`] inside the build container, as Platform.sh does.
//! The folder is part of the slug, so the packages ship with the app; [`PATH`] and the
//! language's variables ([`env()`]) are the same in the build container and at run time
//! (containers, deploy hooks, shells), so the packages' commands work in both.
//!
//! | language | installed with | commands in |
//! |---|---|---|
//! | `python`, `python2`, `python3` | `pip`, `pip2`, `pip3` `install --user` (`PYTHONUSERBASE`) | `/app/.global/bin` |
//! | `nodejs` | `npm install -g --prefix /app/.global NAME@VERSION` | `/app/.global/bin` |
//! | `php` | `composer global require NAME:VERSION` (`COMPOSER_HOME`) | `/app/.global/vendor/bin` |
//! | `ruby` | `gem install --install-dir /app/.global --bindir /app/.global/bin NAME -v VERSION` | `/app/.global/bin` |
//!
//! A version `*` means any version. For pip a bare version means `==VERSION`, one starting
//! with an operator (`>=1.2`, `~=2.0`) is used as written; npm and composer constraints
//! (`^2`, `~1.4`) pass through as written.
//!
//! `php: composer/composer` is not installed when the composer the stack ships (every PHP
//! stack has Debian's composer 2) satisfies its constraint ([`composer_satisfies`]): the
//! build says so instead of asking packagist for a copy of what it has.

use std::path::Path;

use slipway_config::Application;

use super::{sh_quote, Step, CACHE_MOUNT};

/// Where global packages go inside the build container (and so inside the slug).
pub const GLOBAL_DIR: &str = "/app/.global";

/// `PATH` in build containers and app containers: the global packages' commands first.
pub const PATH: &str =
    "/app/.global/bin:/app/.global/vendor/bin:/app/.local/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How packages of one language are installed.
struct Installer {
    /// The command that must exist in the build container.
    tool: &'static str,
    /// One package (name, version as written) as the tool takes it, unquoted: for messages.
    show: fn(&str, &str) -> String,
    /// The shell command installing these packages (name, version as written).
    command: fn(&'static str, &[(&str, String)]) -> String,
}

/// The installer of a `dependencies` language key; None for a language Slipway does not know.
fn installer(language: &str) -> Option<Installer> {
    let pip = |tool| Installer {
        tool,
        show: pip_requirement,
        command: |tool, packages| {
            let specs: Vec<String> = packages
                .iter()
                .map(|(n, v)| sh_quote(&pip_requirement(n, v)))
                .collect();
            format!(
                "{tool} install --user --no-warn-script-location --disable-pip-version-check {}",
                specs.join(" ")
            )
        },
    };
    Some(match language {
        "python" => pip("pip"),
        "python2" => pip("pip2"),
        "python3" => pip("pip3"),
        "nodejs" => Installer {
            tool: "npm",
            show: |n, v| format!("{n}@{v}"),
            command: |_, packages| {
                let specs: Vec<String> = packages
                    .iter()
                    .map(|(n, v)| sh_quote(&format!("{n}@{v}")))
                    .collect();
                format!("npm install -g --prefix {GLOBAL_DIR} {}", specs.join(" "))
            },
        },
        "php" => Installer {
            tool: "composer",
            show: |n, v| format!("{n}:{v}"),
            command: |_, packages| {
                let specs: Vec<String> = packages
                    .iter()
                    .map(|(n, v)| sh_quote(&format!("{n}:{v}")))
                    .collect();
                format!(
                    "composer global require --no-interaction --no-progress --no-ansi {}",
                    specs.join(" ")
                )
            },
        },
        "ruby" => Installer {
            tool: "gem",
            show: |n, v| {
                if v == "*" {
                    n.to_string()
                } else {
                    format!("{n} -v {v}")
                }
            },
            // gem takes one version per command: one command per gem.
            command: |_, packages| {
                packages
                    .iter()
                    .map(|(n, v)| {
                        let version = if v == "*" { String::new() } else { format!(" -v {}", sh_quote(v)) };
                        format!("gem install --no-document --install-dir {GLOBAL_DIR} --bindir {GLOBAL_DIR}/bin {}{version}", sh_quote(n))
                    })
                    .collect::<Vec<_>>()
                    .join(" && ")
            },
        },
        _ => return None,
    })
}

/// A pip requirement: `*` is any version, a version starting with an operator is used as
/// written, any other version means exactly that one (`2018.10.13` -> `==2018.10.13`).
pub fn pip_requirement(name: &str, version: &str) -> String {
    let v = version.trim();
    if v.is_empty() || v == "*" {
        name.to_string()
    } else if v.starts_with(['=', '<', '>', '!', '~']) {
        format!("{name}{v}")
    } else {
        format!("{name}=={v}")
    }
}

/// A version as written in the config (`"*"` when absent).
fn version_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "*".into(),
        other => other.to_string(),
    }
}

/// Variables the global packages of `app` need, in the build container and at run time:
/// `PYTHONUSERBASE` for pip packages, `GEM_HOME`/`GEM_PATH` for gems, `COMPOSER_HOME` for
/// Composer packages. Apps without such dependencies get none of them.
pub fn env(app: &Application) -> Vec<(String, String)> {
    let has = |langs: &[&str]| {
        langs
            .iter()
            .any(|l| app.dependencies.get(*l).is_some_and(has_packages))
    };
    let mut env = Vec::new();
    if has(&["python", "python2", "python3"]) {
        env.push(("PYTHONUSERBASE".into(), GLOBAL_DIR.into()));
    }
    if has(&["ruby"]) {
        env.push(("GEM_HOME".into(), GLOBAL_DIR.into()));
        // The trailing colon keeps the stack's own gems visible.
        env.push(("GEM_PATH".into(), format!("{GLOBAL_DIR}:")));
    }
    if has(&["php"]) {
        env.push(("COMPOSER_HOME".into(), GLOBAL_DIR.into()));
    }
    env
}

fn has_packages(v: &serde_json::Value) -> bool {
    v.as_object().is_some_and(|m| !m.is_empty())
}

/// Variables of Slipway's own steps (dependencies, build flavor): package managers keep
/// their downloads in the persistent build cache, not in the slug, and stay quiet.
pub(crate) fn step_env() -> Vec<(String, String)> {
    [
        ("PIP_BREAK_SYSTEM_PACKAGES", "1".to_string()),
        ("PIP_ROOT_USER_ACTION", "ignore".to_string()),
        ("PIP_CACHE_DIR", format!("{CACHE_MOUNT}/pip")),
        ("npm_config_cache", format!("{CACHE_MOUNT}/npm")),
        ("NPM_CONFIG_UPDATE_NOTIFIER", "false".to_string()),
        ("NPM_CONFIG_FUND", "false".to_string()),
        ("NPM_CONFIG_AUDIT", "false".to_string()),
        ("COMPOSER_CACHE_DIR", format!("{CACHE_MOUNT}/composer")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The Composer package that is composer itself.
const COMPOSER_PACKAGE: &str = "composer/composer";

/// The version of the Debian package `package` installed in the stack whose root file system
/// is `root` (from its `var/lib/dpkg/status`, without epoch and Debian revision), if it is
/// there and reads as a version.
pub(crate) fn stack_package_version(root: &Path, package: &str) -> Option<semver::Version> {
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).ok()?;
    let paragraph = status.split("\n\n").find(|p| {
        p.lines()
            .any(|l| l.strip_prefix("Package:").map(str::trim) == Some(package))
    })?;
    let version = paragraph
        .lines()
        .find_map(|l| l.strip_prefix("Version:"))?
        .trim();
    let upstream = version.split_once(':').map_or(version, |(_, v)| v);
    let upstream = upstream.split(['-', '+', '~']).next()?;
    let parts: Vec<&str> = upstream.split('.').collect();
    let padded = match parts.len() {
        1 => format!("{upstream}.0.0"),
        2 => format!("{upstream}.0"),
        _ => parts[..3].join("."),
    };
    semver::Version::parse(&padded).ok()
}

/// Whether `version` satisfies the Composer constraint `constraint` by Composer's rules:
/// `*`, `^2`, `~2.1` (`>=2.1 <3`), `~2.1.3` (`>=2.1.3 <2.2`), `2.*`, `>=2.2 <3`, `!=2.0.1`,
/// an exact version, alternatives joined by `||` and `@stable` flags. A constraint it does not
/// read (a hyphen range, a branch name) is not satisfied, so the package is installed as
/// written.
pub fn composer_satisfies(constraint: &str, version: &semver::Version) -> bool {
    constraint
        .split("||")
        .flat_map(|a| a.split('|'))
        .any(|alternative| {
            let parts: Vec<&str> = alternative
                .split([',', ' '])
                .map(|p| p.split('@').next().unwrap_or(p).trim())
                .filter(|p| !p.is_empty())
                .collect();
            !parts.is_empty()
                && parts
                    .iter()
                    .all(|p| composer_part(p, version) == Some(true))
        })
}

/// Whether `version` passes one comparison of a Composer constraint; None: not understood.
fn composer_part(part: &str, version: &semver::Version) -> Option<bool> {
    // Composer reads a partial version as zeros (`>2` is `>2.0.0`), semver as a range.
    let bare = |v: &str| {
        let v = v.trim().trim_start_matches(['v', 'V']);
        let missing = 3usize.saturating_sub(v.split('.').count());
        format!("{v}{}", ".0".repeat(missing))
    };
    let req = |text: String| {
        semver::VersionReq::parse(&text)
            .ok()
            .map(|r| r.matches(version))
    };
    if part == "*" {
        return Some(true);
    }
    if let Some(v) = part.strip_prefix("!=") {
        return req(format!("={}", bare(v))).map(|equal| !equal);
    }
    if let Some(v) = part.strip_prefix('~') {
        // Composer's tilde: the last given part may grow (`~2.1` is `>=2.1 <3`).
        let given = v.trim().trim_start_matches(['v', 'V']);
        let v = bare(given);
        let nums: Vec<u64> = given
            .split('.')
            .map(|n| n.parse().ok())
            .collect::<Option<_>>()?;
        let upper = match nums.as_slice() {
            [major] | [major, _] => format!("<{}.0.0", major + 1),
            [major, minor, ..] => format!("<{major}.{}.0", minor + 1),
            [] => return None,
        };
        return req(format!(">={v}, {upper}"));
    }
    if part.starts_with(['^', '>', '<', '=']) {
        let (op, v) = part.split_at(part.find(|c: char| c.is_ascii_alphanumeric())?);
        return req(format!("{op}{}", bare(v)));
    }
    if part.contains('*') {
        return req(part.trim_start_matches(['v', 'V']).to_string());
    }
    // An exact version (`2.5.5`, `2.5` as 2.5.0).
    req(format!("={}", bare(part)))
}

/// The install steps of `app`, one per language with packages (in the languages' alphabetical
/// order), and the lines the build prints about packages it leaves out: `composer/composer`
/// when `stack_composer`, the version of composer on the app's stack, satisfies it.
/// Err: a language Slipway does not know (the message names the app and the language).
pub(crate) fn steps(
    app: &Application,
    stack_composer: Option<&semver::Version>,
) -> Result<(Vec<Step>, Vec<String>), String> {
    let mut steps = Vec::new();
    let mut notes = Vec::new();
    for (language, packages) in &app.dependencies {
        let Some(packages) = packages.as_object().filter(|m| !m.is_empty()) else {
            continue;
        };
        let Some(inst) = installer(language) else {
            return Err(format!(
                "app {}: dependencies.{language}: Slipway does not know how to install {language} packages (it knows {})",
                app.name,
                slipway_config::DEPENDENCY_LANGUAGES.join(", ")
            ));
        };
        let mut list = Vec::new();
        for (name, version) in packages {
            if name.is_empty() || name.starts_with('-') {
                return Err(format!(
                    "app {}: dependencies.{language}: package name `{name}` is not valid",
                    app.name
                ));
            }
            let version = version_text(version);
            if language == "php" && name.eq_ignore_ascii_case(COMPOSER_PACKAGE) {
                if let Some(have) = stack_composer.filter(|v| composer_satisfies(&version, v)) {
                    notes.push(format!(
                        "dependencies.php: {name}:{version} is not installed: the stack's composer {have} satisfies it"
                    ));
                    continue;
                }
            }
            list.push((name.as_str(), version));
        }
        if list.is_empty() {
            continue;
        }
        let shown: Vec<String> = list.iter().map(|(n, v)| (inst.show)(n, v)).collect();
        steps.push(Step {
            id: format!("deps-{language}"),
            headline: format!("installing dependencies ({language}: {})", shown.join(", ")),
            what: format!("installing the {language} dependencies of {}", app.name),
            tools: vec![inst.tool],
            needer: format!("dependencies.{language}"),
            remedy: format!("use a `type` whose stack has it, or remove dependencies.{language}"),
            script: (inst.command)(inst.tool, &list),
        });
    }
    Ok((steps, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with(language: &str, packages: serde_json::Value) -> Application {
        let mut a = Application {
            name: "web".into(),
            ..Default::default()
        };
        a.dependencies.insert(language.into(), packages);
        a
    }

    #[test]
    fn pip_requirements_follow_platform_sh() {
        assert_eq!(
            pip_requirement("pipenv", "2018.10.13"),
            "pipenv==2018.10.13"
        );
        assert_eq!(pip_requirement("poetry", "*"), "poetry");
        assert_eq!(pip_requirement("poetry", ">=1.2,<2"), "poetry>=1.2,<2");
        assert_eq!(pip_requirement("x", "~=2.0"), "x~=2.0");
        assert_eq!(pip_requirement("x", "==1"), "x==1");
        assert_eq!(pip_requirement("x", "!=3"), "x!=3");
    }

    #[test]
    fn each_language_gets_its_installer() {
        let (steps, _) = steps(
            &app_with(
                "python3",
                serde_json::json!({"pipenv": "2018.10.13", "poetry": "*"}),
            ),
            None,
        )
        .unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(
            steps[0].headline,
            "installing dependencies (python3: pipenv==2018.10.13, poetry)"
        );
        assert_eq!(
            steps[0].script,
            "pip3 install --user --no-warn-script-location --disable-pip-version-check 'pipenv==2018.10.13' 'poetry'"
        );
        assert_eq!(steps[0].tools, vec!["pip3"]);

        let s = &steps_of(
            "nodejs",
            serde_json::json!({"yarn": "1.22.17", "@scope/tool": "^2", "pm2": "*"}),
        )[0];
        assert_eq!(
            s.script,
            "npm install -g --prefix /app/.global '@scope/tool@^2' 'pm2@*' 'yarn@1.22.17'"
        );
        assert_eq!(s.tools, vec!["npm"]);

        let s = &steps_of("php", serde_json::json!({"composer/composer": "^2"}))[0];
        assert_eq!(s.script, "composer global require --no-interaction --no-progress --no-ansi 'composer/composer:^2'");
        assert_eq!(s.tools, vec!["composer"]);

        let s = &steps_of("ruby", serde_json::json!({"sass": "3.4.7", "rake": "*"}))[0];
        assert_eq!(
            s.script,
            "gem install --no-document --install-dir /app/.global --bindir /app/.global/bin 'rake' && \
             gem install --no-document --install-dir /app/.global --bindir /app/.global/bin 'sass' -v '3.4.7'"
        );
        assert_eq!(
            s.headline,
            "installing dependencies (ruby: rake, sass -v 3.4.7)"
        );

        assert_eq!(
            steps_of("python2", serde_json::json!({"x": "*"}))[0].tools,
            vec!["pip2"]
        );
        assert_eq!(
            steps_of("python", serde_json::json!({"x": "*"}))[0].tools,
            vec!["pip"]
        );
        for language in slipway_config::DEPENDENCY_LANGUAGES {
            assert!(installer(language).is_some(), "{language}");
        }
    }

    fn steps_of(language: &str, packages: serde_json::Value) -> Vec<Step> {
        steps(&app_with(language, packages), None)
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    }

    #[test]
    fn names_and_versions_are_quoted_for_the_shell() {
        let s = &steps_of("python3", serde_json::json!({"it's": "1; rm -rf /"}))[0];
        assert!(
            s.script.ends_with(r#"'it'\''s==1; rm -rf /'"#),
            "{}",
            s.script
        );
    }

    #[test]
    fn composer_constraints_follow_composer() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        let (v255, v288) = (v("2.5.5"), v("2.8.8"));
        for yes in [
            "*",
            "^2",
            "2.*",
            "^2.5",
            "~2.1",
            ">=2.2 <3",
            ">=2.2,<3.0",
            "^1 || ^2",
            "^1|^2",
            "~2.5.1",
            "2.5.5",
            "v2.5.5",
            "^2@stable",
            "!=2.0.1",
            ">2",
        ] {
            assert!(composer_satisfies(yes, &v255), "{yes}");
        }
        for no in [
            "^1",
            "1.*",
            "^2.6",
            "~2.6",
            "~2.4.1",
            ">=3",
            "2.5.4",
            "<2",
            "dev-main",
            "2.0 - 2.4",
            "",
            "!=2.5.5",
        ] {
            assert!(!composer_satisfies(no, &v255), "{no}");
        }
        assert!(composer_satisfies("^2.6", &v288));
    }

    #[test]
    fn composer_is_not_installed_when_the_stacks_satisfies_it() {
        let app = app_with(
            "php",
            serde_json::json!({"composer/composer": "^2", "drush/drush": "^12"}),
        );
        let (planned, notes) = steps(&app, Some(&semver::Version::new(2, 5, 5))).unwrap();
        assert_eq!(
            notes,
            vec!["dependencies.php: composer/composer:^2 is not installed: the stack's composer 2.5.5 satisfies it"]
        );
        assert_eq!(
            planned[0].script,
            "composer global require --no-interaction --no-progress --no-ansi 'drush/drush:^12'"
        );
        // composer 1 is asked for: installed as written.
        let app = app_with("php", serde_json::json!({"composer/composer": "^1"}));
        let (planned, notes) = steps(&app, Some(&semver::Version::new(2, 5, 5))).unwrap();
        assert!(notes.is_empty());
        assert_eq!(planned.len(), 1);
        // Alone and satisfied: no step at all.
        let app = app_with("php", serde_json::json!({"composer/composer": "2.*"}));
        assert!(steps(&app, Some(&semver::Version::new(2, 8, 8)))
            .unwrap()
            .0
            .is_empty());
    }

    #[test]
    fn a_stacks_package_version_comes_from_its_dpkg_status() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(
            root.path().join("var/lib/dpkg/status"),
            "Package: composer-x\nVersion: 9.9.9\n\nPackage: composer\nStatus: install ok installed\nVersion: 2.8.8-1+deb13u4\n\nPackage: php\nVersion: 2:8.4+96\n",
        )
        .unwrap();
        assert_eq!(
            stack_package_version(root.path(), "composer"),
            Some(semver::Version::new(2, 8, 8))
        );
        assert_eq!(
            stack_package_version(root.path(), "php"),
            Some(semver::Version::new(8, 4, 0))
        );
        assert_eq!(stack_package_version(root.path(), "nope"), None);
    }

    #[test]
    fn unknown_languages_and_option_like_names_are_refused() {
        let e = steps(&app_with("cobol", serde_json::json!({"x": "*"})), None)
            .err()
            .unwrap_or_default();
        assert!(
            e.contains("app web: dependencies.cobol") && e.contains("python3"),
            "{e}"
        );
        let e = steps(
            &app_with(
                "python3",
                serde_json::json!({"--index-url=http://evil": "*"}),
            ),
            None,
        )
        .err()
        .unwrap_or_default();
        assert!(e.contains("not valid"), "{e}");
        // No packages: nothing to do, whatever the language.
        assert!(steps(&app_with("cobol", serde_json::json!({})), None)
            .unwrap()
            .0
            .is_empty());
    }

    #[test]
    fn variables_only_for_the_languages_used() {
        assert!(env(&Application::default()).is_empty());
        let e = env(&app_with("python3", serde_json::json!({"x": "*"})));
        assert_eq!(
            e,
            vec![("PYTHONUSERBASE".to_string(), "/app/.global".to_string())]
        );
        let e = env(&app_with("ruby", serde_json::json!({"x": "*"})));
        assert!(e.contains(&("GEM_HOME".to_string(), "/app/.global".to_string())));
        assert!(PATH.starts_with("/app/.global/bin:/app/.global/vendor/bin:"));
    }
}
