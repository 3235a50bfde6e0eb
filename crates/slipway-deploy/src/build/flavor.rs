//! `build.flavor`: the default build steps Platform.sh runs after `dependencies` and before
//! `hooks.build`, unless the app says `build.flavor: none`.
//!
//! | flavor | steps |
//! |---|---|
//! | `default` or absent | by the app's type: `php` as `composer`; `nodejs`: `npm prune --userconfig .npmrc && npm install --userconfig .npmrc` when `package.json` exists; other types: none |
//! | `default` for `lisp` | when `NAME.asd` exists (`NAME` the app's name): `sbcl --non-interactive` loading it with the ASDF SBCL bundles and running `(asdf:make :NAME)` ([`lisp_make`]); dependencies are found below the app folder (vendored systems) and SBCL's contribs, never fetched (no Quicklisp) |
//! | `composer` | `composer --no-ansi --no-interaction install --no-progress --prefer-dist --optimize-autoloader` when `composer.json` exists |
//! | `none` | none |

use std::path::Path;

use slipway_config::Application;

use super::Step;

/// The `composer install` of the composer flavor.
pub const COMPOSER_INSTALL: &str =
    "composer --no-ansi --no-interaction install --no-progress --prefer-dist --optimize-autoloader";

/// The npm steps of the nodejs default flavor.
pub const NPM_INSTALL: &str = "npm prune --userconfig .npmrc && npm install --userconfig .npmrc";

/// The default lisp flavor's step for app `name` (its ASDF system, `NAME.asd`): load it
/// with SBCL's bundled ASDF, every system below the app folder findable, and
/// `(asdf:make :NAME)` (its `:build-operation`, e.g. `program-op` writing an executable).
pub fn lisp_make(name: &str) -> String {
    format!(
        "sbcl --non-interactive --no-userinit --eval '(require :asdf)' --eval '(asdf:initialize-source-registry (list :source-registry (list :tree (uiop:getcwd)) :inherit-configuration))' --eval '(asdf:make \"{name}\")'"
    )
}

/// The runtime of an app's type: `nodejs` of `nodejs:20`.
fn runtime(app: &Application) -> &str {
    let t = app.r#type.as_deref().unwrap_or("");
    t.split_once(':').map(|(r, _)| r).unwrap_or(t)
}

/// Whether `name` exists in the checked-out app folder `dir` (a file or a link to one).
fn exists(dir: &Path, name: &str) -> bool {
    std::fs::symlink_metadata(dir.join(name)).is_ok()
}

/// The flavor's steps for `app` checked out in `dir` (none when its file is missing).
/// Err: a flavor Slipway does not know (the config's validation refuses those first).
pub(crate) fn steps(app: &Application, dir: &Path) -> Result<Vec<Step>, String> {
    let flavor = app.build_flavor.as_deref().unwrap_or("default");
    let composer = || Step {
        id: "flavor".into(),
        headline: "running build flavor composer (composer install)".into(),
        what: format!("build flavor composer of {}", app.name),
        tools: vec!["composer"],
        needer: "build flavor composer".into(),
        remedy: "use a `type` whose stack has it, or set `build.flavor: none`".into(),
        script: COMPOSER_INSTALL.into(),
    };
    let npm = || Step {
        id: "flavor".into(),
        headline: "running build flavor default (npm prune && npm install)".into(),
        what: format!("build flavor default of {}", app.name),
        tools: vec!["npm"],
        needer: "the nodejs build flavor".into(),
        remedy: "use a `type` whose stack has it, or set `build.flavor: none`".into(),
        script: NPM_INSTALL.into(),
    };
    let step = match (flavor, runtime(app)) {
        ("none", _) => None,
        ("composer", _) | ("default", "php") => exists(dir, "composer.json").then(composer),
        ("default", "nodejs") => exists(dir, "package.json").then(npm),
        ("default", "lisp") => exists(dir, &format!("{}.asd", app.name)).then(|| Step {
            id: "flavor".into(),
            headline: format!("running build flavor default (asdf:make :{})", app.name),
            what: format!("build flavor default of {}", app.name),
            tools: vec!["sbcl"],
            needer: "the lisp build flavor".into(),
            remedy: "use a `type` whose stack has it, or set `build.flavor: none`".into(),
            script: lisp_make(&app.name),
        }),
        ("default", _) => None,
        (other, _) => {
            return Err(format!(
                "app {}: unknown build flavor `{other}` (use one of: {})",
                app.name,
                slipway_config::BUILD_FLAVORS.join(", ")
            ))
        }
    };
    Ok(step.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(r#type: &str, flavor: Option<&str>) -> Application {
        Application {
            name: "web".into(),
            r#type: Some(r#type.into()),
            build_flavor: flavor.map(str::to_string),
            ..Default::default()
        }
    }

    fn scripts(app: &Application, dir: &Path) -> Vec<String> {
        steps(app, dir)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|s| s.script)
            .collect()
    }

    #[test]
    fn flavors_follow_the_type_and_the_files_present() {
        let empty = tempfile::tempdir().unwrap();
        let both = tempfile::tempdir().unwrap();
        std::fs::write(both.path().join("package.json"), "{}").unwrap();
        std::fs::write(both.path().join("composer.json"), "{}").unwrap();

        // No package.json / composer.json: nothing to run.
        for t in ["nodejs:20", "php:8.3", "python:3.11"] {
            assert!(scripts(&app(t, None), empty.path()).is_empty(), "{t}");
        }
        assert_eq!(
            scripts(&app("nodejs:20", None), both.path()),
            vec![NPM_INSTALL]
        );
        assert_eq!(
            scripts(&app("nodejs:20", Some("default")), both.path()),
            vec![NPM_INSTALL]
        );
        assert_eq!(
            scripts(&app("php:8.3", None), both.path()),
            vec![COMPOSER_INSTALL]
        );
        assert_eq!(
            scripts(&app("nodejs:20", Some("composer")), both.path()),
            vec![COMPOSER_INSTALL]
        );
        assert!(scripts(&app("python:3.11", None), both.path()).is_empty());
        // lisp: the app's own ASDF system, when its .asd is there.
        assert!(scripts(&app("lisp:2.2", None), both.path()).is_empty());
        std::fs::write(both.path().join("web.asd"), "").unwrap();
        assert_eq!(
            scripts(&app("lisp:2.2", None), both.path()),
            vec![lisp_make("web")]
        );
        assert!(lisp_make("web").ends_with("(asdf:make \"web\")'"));
        assert!(scripts(&app("nodejs:20", Some("none")), both.path()).is_empty());
        assert!(scripts(&app("php:8.3", Some("none")), both.path()).is_empty());
        let no_type = Application {
            name: "web".into(),
            ..Default::default()
        };
        assert!(scripts(&no_type, both.path()).is_empty());

        let e = steps(&app("php:8.3", Some("drupal")), both.path())
            .err()
            .unwrap_or_default();
        assert!(e.contains("unknown build flavor `drupal`"), "{e}");
        let s = &steps(&app("php:8.3", None), both.path()).unwrap()[0];
        assert_eq!(s.tools, vec!["composer"]);
        assert!(s.remedy.contains("build.flavor: none"));
    }
}
