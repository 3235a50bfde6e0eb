//! Variables the compilers and package managers of an app's stack language get in its
//! build containers (Slipway's steps and `hooks.build`), so that builds keep their
//! downloads and compile caches in the persistent build cache ([`CACHE_MOUNT`]) rather than
//! in the slug (`HOME` is `/app` in builds), and never fetch a toolchain of their own:
//!
//! | language | variables |
//! |---|---|
//! | `golang` | `GOCACHE`, `GOMODCACHE` in the cache; `GOTOOLCHAIN=local` (a go.mod asking for a newer Go fails at once, naming both versions, instead of downloading one) |
//! | `ruby` | `BUNDLE_USER_CACHE`, `GEM_SPEC_CACHE` in the cache |
//! | `java` | `MAVEN_OPTS=-Dmaven.repo.local=…` (Maven's local repository in the cache); `MAVEN_ARGS=-gs …` ([`MAVEN_SETTINGS`], read by Maven 3.9 and later) |
//! | `python` | `PIP_CACHE_DIR`, `PIPENV_CACHE_DIR` in the cache (pip's downloads and built wheels, pipenv's) |
//! | `lisp` | `XDG_CACHE_HOME` in the cache (ASDF's compiled files, otherwise `~/.cache/common-lisp`) |
//! | `nodejs` | `npm_config_cache`, `YARN_CACHE_FOLDER`, `BUN_INSTALL_CACHE_DIR` (bun's packages, otherwise `~/.bun/install/cache`) in the cache; `YARN_DISABLE_SELF_UPDATE_CHECK=true`; `COREPACK_ENABLE_DOWNLOAD_PROMPT=0` |
//!
//! Any stack with Node.js from the npm registry (a `nodejs` type, or a composed stack that
//! has one) also gets node-gyp's `nodedir` pointing at the headers in the stack
//! ([`slipway_stack::Stack::node_gyp_env`]), so native addons compile without fetching
//! headers from nodejs.org.
//!
//! Poetry's cache is left where it is (`$HOME/.cache/pypoetry`): its virtualenvs live below
//! it and must ship in the slug. So does corepack's
//! ([`crate::environment::COREPACK_HOME`]): the yarn or pnpm it fetched runs again in deploy
//! hooks and start commands (`corepack yarn start`), where the build cache is not mounted.
//!
//! They are the lowest layer of the build's variables: the app's `variables.env` wins.
//!
//! Maven's global settings ([`prepare_cache`] writes them into the cache before every java
//! build) add Debian's `/usr/share/maven-repo`, where the java stacks' Maven plugins are,
//! as a repository tried before Maven Central: a pom.xml without dependencies builds with
//! no network.

use slipway_config::Application;

use super::CACHE_MOUNT;

/// The build variables of `app`'s stack language (from its `type`, `golang:1.24`); none
/// for other languages or an app without a type.
pub fn env(app: &Application) -> Vec<(String, String)> {
    let language = app
        .r#type
        .as_deref()
        .and_then(|t| t.split(':').next())
        .unwrap_or_default();
    let vars: Vec<(&str, String)> = match language {
        "golang" => vec![
            ("GOCACHE", format!("{CACHE_MOUNT}/go-build")),
            ("GOMODCACHE", format!("{CACHE_MOUNT}/go-mod")),
            ("GOTOOLCHAIN", "local".to_string()),
        ],
        "ruby" => vec![
            ("BUNDLE_USER_CACHE", format!("{CACHE_MOUNT}/bundler")),
            ("GEM_SPEC_CACHE", format!("{CACHE_MOUNT}/gem-specs")),
        ],
        "java" => vec![
            ("MAVEN_OPTS", format!("-Dmaven.repo.local={CACHE_MOUNT}/m2")),
            ("MAVEN_ARGS", format!("-gs {CACHE_MOUNT}/{MAVEN_SETTINGS}")),
        ],
        "python" => vec![
            ("PIP_CACHE_DIR", format!("{CACHE_MOUNT}/pip")),
            ("PIPENV_CACHE_DIR", format!("{CACHE_MOUNT}/pipenv")),
        ],
        "lisp" => vec![("XDG_CACHE_HOME", format!("{CACHE_MOUNT}/xdg"))],
        "nodejs" => vec![
            ("npm_config_cache", format!("{CACHE_MOUNT}/npm")),
            ("YARN_CACHE_FOLDER", format!("{CACHE_MOUNT}/yarn")),
            ("BUN_INSTALL_CACHE_DIR", format!("{CACHE_MOUNT}/bun")),
            ("YARN_DISABLE_SELF_UPDATE_CHECK", "true".to_string()),
            ("COREPACK_ENABLE_DOWNLOAD_PROMPT", "0".to_string()),
        ],
        _ => Vec::new(),
    };
    let node_gyp = app
        .r#type
        .as_deref()
        .and_then(|t| slipway_stack::resolve_type(t).ok())
        .map(|r| r.stack.node_gyp_env())
        .unwrap_or_default();
    vars.into_iter()
        .chain(node_gyp.into_iter().map(|(k, v)| (k, v.to_string())))
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Maven's global settings file of java builds, in the build cache.
pub const MAVEN_SETTINGS: &str = ".slipway-maven-settings.xml";

/// What Maven's global settings say: an always active profile adding Debian's Maven
/// repository as a repository and a plugin repository.
const MAVEN_SETTINGS_XML: &str = concat!(
    "<settings><profiles><profile><id>debian</id>\n",
    "<repositories><repository><id>debian</id><url>file:///usr/share/maven-repo</url></repository></repositories>\n",
    "<pluginRepositories><pluginRepository><id>debian</id><url>file:///usr/share/maven-repo</url></pluginRepository></pluginRepositories>\n",
    "</profile></profiles><activeProfiles><activeProfile>debian</activeProfile></activeProfiles></settings>\n",
);

/// Write what `app`'s build needs in its build cache folder `cache` (on the host) before
/// its build runs: Maven's global settings for a java app (rewritten every build, so a
/// build cannot leave other settings for the next one); nothing for other languages.
pub fn prepare_cache(app: &Application, cache: &std::path::Path) -> std::io::Result<()> {
    let java = app
        .r#type
        .as_deref()
        .is_some_and(|t| t.split(':').next() == Some("java"));
    if java {
        let path = cache.join(MAVEN_SETTINGS);
        // Never through a link a build left there.
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&path)?,
            Ok(_) => std::fs::remove_file(&path)?,
            Err(_) => {}
        }
        std::fs::write(&path, MAVEN_SETTINGS_XML)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(type_name: &str) -> std::collections::BTreeMap<String, String> {
        let app = Application {
            name: "app".into(),
            r#type: Some(type_name.into()),
            ..Default::default()
        };
        env(&app).into_iter().collect()
    }

    #[test]
    fn toolchain_caches_live_in_the_build_cache_and_no_toolchain_is_fetched() {
        let go = env_of("golang:1.24");
        assert_eq!(go["GOCACHE"], "/cache/go-build");
        assert_eq!(go["GOMODCACHE"], "/cache/go-mod");
        assert_eq!(go["GOTOOLCHAIN"], "local");
        assert_eq!(env_of("ruby:3.3")["BUNDLE_USER_CACHE"], "/cache/bundler");
        assert_eq!(
            env_of("java:21")["MAVEN_OPTS"],
            "-Dmaven.repo.local=/cache/m2"
        );
        assert_eq!(
            env_of("java:21")["MAVEN_ARGS"],
            "-gs /cache/.slipway-maven-settings.xml"
        );
        let python = env_of("python:3.11");
        assert_eq!(python["PIP_CACHE_DIR"], "/cache/pip");
        assert_eq!(python["PIPENV_CACHE_DIR"], "/cache/pipenv");
        assert!(
            !python.contains_key("POETRY_CACHE_DIR"),
            "poetry's virtualenvs ship"
        );
        let node = env_of("nodejs:22");
        assert_eq!(node["YARN_CACHE_FOLDER"], "/cache/yarn");
        assert_eq!(node["npm_config_cache"], "/cache/npm");
        assert_eq!(node["BUN_INSTALL_CACHE_DIR"], "/cache/bun");
        assert!(
            !node.contains_key("COREPACK_HOME"),
            "corepack's yarn runs at run time"
        );
        assert_eq!(node["npm_package_config_node_gyp_nodedir"], "/usr/local");
        assert_eq!(node["npm_config_nodedir"], "/usr/local");
        // npm 11 warns about `npm_config_nodedir`; its node-gyp reads the other name.
        let node24 = env_of("nodejs:24");
        assert_eq!(node24["npm_package_config_node_gyp_nodedir"], "/usr/local");
        assert!(!node24.contains_key("npm_config_nodedir"));
        // Debian's Node.js: Debian's node-gyp finds Debian's headers itself.
        assert!(!env_of("nodejs:18").contains_key("npm_package_config_node_gyp_nodedir"));
        // A composed stack with Node.js from the npm registry gets it too.
        assert_eq!(
            env_of("python:3.13+nodejs:22")["npm_package_config_node_gyp_nodedir"],
            "/usr/local"
        );
        assert!(env_of("php:8.4").is_empty());
        assert!(env(&Application::default()).is_empty());
    }

    #[test]
    fn java_builds_get_maven_settings_with_the_debian_repository_first() {
        let cache = tempfile::tempdir().unwrap();
        let java = Application {
            r#type: Some("java:21".into()),
            ..Default::default()
        };
        // A link a build left in the cache is replaced, not followed.
        let target = cache.path().join("elsewhere");
        std::os::unix::fs::symlink(&target, cache.path().join(MAVEN_SETTINGS)).unwrap();
        prepare_cache(&java, cache.path()).unwrap();
        let xml = std::fs::read_to_string(cache.path().join(MAVEN_SETTINGS)).unwrap();
        assert!(
            xml.contains("<url>file:///usr/share/maven-repo</url>"),
            "{xml}"
        );
        assert!(!target.exists());
        let go = Application {
            r#type: Some("golang:1.24".into()),
            ..Default::default()
        };
        let empty = tempfile::tempdir().unwrap();
        prepare_cache(&go, empty.path()).unwrap();
        assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    }
}
