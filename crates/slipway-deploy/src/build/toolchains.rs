//! Variables the compilers and package managers of an app's stack language get in its
//! build containers (Slipway's steps and `hooks.build`), so that builds keep their
//! downloads and compile caches in the persistent build cache ([`CACHE_MOUNT`]) rather than
//! in the slug (`HOME` is `/app` in builds), and never fetch a toolchain of their own:
//!
//! | language | variables |
//! |---|---|
//! | `golang` | `GOCACHE`, `GOMODCACHE` in the cache; `GOTOOLCHAIN=local` (a go.mod asking for a newer Go fails at once, naming both versions, instead of downloading one) |
//! | `ruby` | `BUNDLE_USER_CACHE`, `GEM_SPEC_CACHE` in the cache |
//! | `java` | `MAVEN_OPTS=-Dmaven.repo.local=…` (Maven's local repository in the cache) |
//!
//! They are the lowest layer of the build's variables: the app's `variables.env` wins.

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
        "java" => vec![("MAVEN_OPTS", format!("-Dmaven.repo.local={CACHE_MOUNT}/m2"))],
        _ => Vec::new(),
    };
    vars.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
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
        assert!(env_of("python:3.11").is_empty());
        assert!(env(&Application::default()).is_empty());
    }
}
