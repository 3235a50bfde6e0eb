//! Procfile apps: the stack detected from the tree, and the dependency install of
//! Heroku's buildpacks.
//!
//! The language comes from the first of these files at the root (Heroku's detection
//! files): `requirements.txt`, `Pipfile`, `pyproject.toml` (python), `package.json`
//! (nodejs), `composer.json` (php), `Gemfile` (ruby), `go.mod` (golang), `pom.xml` (java).
//! The version is the one the tree asks for where Heroku's buildpacks read it
//! (`.python-version` or `runtime.txt`; `package.json` `engines.node`; `composer.json`
//! `require.php`; `.ruby-version` or the Gemfile's `ruby` line; go.mod's `go` line;
//! `system.properties` `java.runtime.version`), resolved against the stack catalog like a
//! `type:` (the nearest newer one of the same major, with a warning); none asked, or a
//! range the newest satisfies: the newest of the language in the catalog.

use slipway_stack::{Language, Resolution};

use crate::source::ConfigSource;

/// The stack of a Procfile app and where it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedStack {
    /// The language.
    pub language: Language,
    /// The file that told the language, e.g. `requirements.txt`.
    pub detected_from: &'static str,
    /// The file and the version it asks for, when one does (`.python-version`, `3.11.4`).
    pub version_from: Option<(&'static str, String)>,
    /// The stack, with the version asked for when it is a substitute.
    pub resolution: Resolution,
}

impl DetectedStack {
    /// `LANGUAGE:VERSION` of the stack, as a `type:` names it.
    pub fn type_name(&self) -> String {
        self.resolution.stack.type_name()
    }

    /// One line for the user: `python:3.13 (detected from requirements.txt)`.
    pub fn describe(&self) -> String {
        let version = match &self.version_from {
            Some((file, asked)) => format!(", {asked} asked by {file}"),
            None => ", the newest".to_string(),
        };
        format!(
            "{} (detected from {}{version})",
            self.type_name(),
            self.detected_from
        )
    }

    /// The build script installing the app's dependencies as Heroku's buildpack of its
    /// language does, run as the app's build hook (in `/app`, on the stack).
    pub fn install_script(&self, src: &dyn ConfigSource) -> String {
        let has = |f: &str| matches!(src.read_file(f), Ok(Some(_)));
        let lines: Vec<&str> = match self.language {
            // A virtualenv at /app/.global, whose bin/ is first on PATH in builds and apps.
            Language::Python => {
                let mut l = vec![
                    "export PIP_CACHE_DIR=\"$PLATFORM_CACHE_DIR/pip\" PIP_DISABLE_PIP_VERSION_CHECK=1",
                    "python3 -m venv /app/.global",
                    ". /app/.global/bin/activate",
                ];
                if has("requirements.txt") {
                    l.push("pip install -r requirements.txt");
                } else if has("Pipfile") {
                    l.push("pip install pipenv");
                    l.push(if has("Pipfile.lock") {
                        "pipenv install --system --deploy"
                    } else {
                        "pipenv install --system --skip-lock"
                    });
                } else {
                    l.push("pip install .");
                }
                // Heroku's Python buildpack: Django's static files, then the app's own hook.
                if has("manage.py") {
                    l.push("if [ -z \"${DISABLE_COLLECTSTATIC:-}\" ] && python -c 'import django' 2>/dev/null; then python manage.py collectstatic --noinput; fi");
                }
                if has("bin/post_compile") {
                    l.push("chmod +x bin/post_compile && bin/post_compile");
                }
                l
            }
            // yarn.lock: yarn 1.x, which every nodejs stack has, as the Node buildpack does.
            // Heroku's Node buildpack: `heroku-prebuild` before the install, then
            // `heroku-postbuild` instead of `build` when package.json has it.
            Language::Nodejs => {
                let script = |name: &str| {
                    read(src, "package.json")
                        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                        .is_some_and(|j| j.pointer(&format!("/scripts/{name}")).is_some())
                };
                let mut l = vec![
                    "export npm_config_cache=\"$PLATFORM_CACHE_DIR/npm\" NPM_CONFIG_FUND=false NPM_CONFIG_AUDIT=false NPM_CONFIG_UPDATE_NOTIFIER=false",
                ];
                if script("heroku-prebuild") {
                    l.push("npm run heroku-prebuild");
                }
                l.push(if has("yarn.lock") && !has("package-lock.json") {
                    "yarn install --frozen-lockfile"
                } else if has("package-lock.json") || has("npm-shrinkwrap.json") {
                    "npm ci"
                } else {
                    "npm install"
                });
                l.push(if script("heroku-postbuild") {
                    "npm run heroku-postbuild"
                } else {
                    "npm run build --if-present"
                });
                l
            }
            Language::Php => vec![
                "export COMPOSER_CACHE_DIR=\"$PLATFORM_CACHE_DIR/composer\"",
                "composer install --no-dev --prefer-dist --optimize-autoloader --no-interaction --no-progress",
            ],
            Language::Ruby => vec![
                "bundle config set --local path vendor/bundle",
                "bundle config set --local without 'development:test'",
                "bundle install --jobs 4",
            ],
            // Every main package into bin/ (as the Go buildpack's `go install` with
            // GOBIN=bin does); the module cache and build cache are in the build cache
            // (set for every golang build), and `-mod=mod` lets a module without a go.sum
            // or vendor folder build.
            Language::Golang => vec![
                "export GOFLAGS=\"${GOFLAGS:--mod=mod}\"",
                "go version",
                "mkdir -p bin",
                "go build -o bin/ ./...",
            ],
            // The global settings every java build gets in its cache put Debian's Maven
            // repository (the stack's plugins) before Maven Central: a pom.xml needing
            // nothing else builds offline (named here too for Maven before 3.9, which
            // ignores MAVEN_ARGS).
            Language::Java => vec![
                "mvn -B -q -gs \"$PLATFORM_CACHE_DIR/.slipway-maven-settings.xml\" -Dmaven.repo.local=\"$PLATFORM_CACHE_DIR/m2\" -DskipTests clean package",
            ],
            // Never detected for an app (DETECTORS names none of these).
            Language::Lisp
            | Language::Deno
            | Language::Base
            | Language::Postgresql
            | Language::Mariadb
            | Language::Redis
            | Language::Valkey
            | Language::Memcached
            | Language::Rabbitmq
            | Language::ChromeHeadless
            | Language::Influxdb
            | Language::Varnish => Vec::new(),
        };
        let mut script = String::from("set -e\n");
        for l in lines {
            script.push_str(l);
            script.push('\n');
        }
        script
    }
}

/// Why no stack could be detected; the message says what to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectError {
    /// The file the message is about (`Procfile`, or the version file).
    pub file: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

/// The language files, in the order they are looked for.
const LANGUAGE_FILES: &[(&str, Language)] = &[
    ("requirements.txt", Language::Python),
    ("Pipfile", Language::Python),
    ("pyproject.toml", Language::Python),
    ("package.json", Language::Nodejs),
    ("composer.json", Language::Php),
    ("Gemfile", Language::Ruby),
    ("go.mod", Language::Golang),
    ("pom.xml", Language::Java),
];

fn read(src: &dyn ConfigSource, file: &str) -> Option<String> {
    match src.read_file(file) {
        Ok(Some(b)) if b.len() <= crate::files::MAX_FILE_SIZE => {
            Some(String::from_utf8_lossy(&b).into_owned())
        }
        _ => None,
    }
}

/// The first non-empty, non-comment line of a file.
fn first_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
}

/// The version the tree asks for, and the file asking.
fn asked_version(src: &dyn ConfigSource, language: Language) -> Option<(&'static str, String)> {
    match language {
        Language::Python => read(src, ".python-version")
            .and_then(|t| first_line(&t))
            .map(|v| (".python-version", v))
            .or_else(|| {
                read(src, "runtime.txt")
                    .and_then(|t| first_line(&t))
                    .map(|v| ("runtime.txt", v.trim_start_matches("python-").to_string()))
            }),
        Language::Nodejs => read(src, "package.json")
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|j| j.pointer("/engines/node")?.as_str().map(str::to_string))
            .map(|v| ("package.json", v)),
        Language::Php => read(src, "composer.json")
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|j| j.pointer("/require/php")?.as_str().map(str::to_string))
            .map(|v| ("composer.json", v)),
        Language::Ruby => read(src, ".ruby-version")
            .and_then(|t| first_line(&t))
            .map(|v| (".ruby-version", v.trim_start_matches("ruby-").to_string()))
            .or_else(|| {
                let gemfile = read(src, "Gemfile")?;
                gemfile.lines().find_map(|l| {
                    let rest = l.trim().strip_prefix("ruby ")?;
                    let v = rest.trim().trim_matches(|c| c == '"' || c == '\'');
                    let v = v.split(['"', '\'']).next()?;
                    Some(("Gemfile", v.to_string()))
                })
            }),
        Language::Golang => read(src, "go.mod").and_then(|t| {
            t.lines().find_map(|l| {
                let v = l.trim().strip_prefix("go ")?;
                Some(("go.mod", v.trim().to_string()))
            })
        }),
        Language::Java => read(src, "system.properties").and_then(|t| {
            t.lines().find_map(|l| {
                let v = l.trim().strip_prefix("java.runtime.version")?;
                let v = v.trim_start().strip_prefix('=')?;
                Some(("system.properties", v.trim().to_string()))
            })
        }),
        Language::Lisp
        | Language::Deno
        | Language::Base
        | Language::Postgresql
        | Language::Mariadb
        | Language::Redis
        | Language::Valkey
        | Language::Memcached
        | Language::Rabbitmq
        | Language::ChromeHeadless
        | Language::Influxdb
        | Language::Varnish => None,
    }
}

/// How many leading parts of a version name a stack of `language` (`3.11` for python,
/// `22` for nodejs).
fn stack_parts(language: Language) -> usize {
    match language {
        Language::Nodejs | Language::Java | Language::Deno => 1,
        _ => 2,
    }
}

/// The stack a version constraint (`3.11.4`, `^8.1`, `>=18`, `20.x`, `~> 3.1`, `*`) of
/// `language` gets, among the catalog's versions and the imported ones the process knows.
pub fn resolve_constraint(language: Language, constraint: &str) -> Result<Resolution, String> {
    let newest = || {
        let stack = slipway_stack::imported::versions(language)
            .last()
            .copied()
            .ok_or_else(|| format!("no {language} stack in the catalog"))?;
        Ok(Resolution {
            stack,
            substituted_for: None,
        })
    };
    if let Some(stack) = range_pick(language, constraint) {
        return Ok(Resolution {
            stack,
            substituted_for: None,
        });
    }
    // The first alternative of `A || B`.
    let first = constraint.split("||").next().unwrap_or("").trim();
    let (op, rest) = [">=", "~>", "^", "~", ">", "==", "=", "v"]
        .iter()
        .find_map(|op| first.strip_prefix(op).map(|r| (*op, r.trim())))
        .unwrap_or(("", first));
    let rest = rest.trim_start_matches('v');
    let numbers: Vec<&str> = rest
        .split(['.', ' ', ','])
        .take_while(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .take(stack_parts(language))
        .collect();
    if numbers.is_empty() {
        // `*`, `x`, `latest`, `lts/*`: any version.
        return newest();
    }
    let version = numbers.join(".");
    let key = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let same_major = |s: &&slipway_stack::Stack| s.version.split('.').next() == Some(numbers[0]);
    // The catalog's versions and those imported into the server's stacks.
    let known = slipway_stack::imported::versions(language);
    let pick = match op {
        ">=" | ">" => known
            .iter()
            .rfind(|s| key(s.version) >= key(&version))
            .copied(),
        // A range within the major: the newest of that major at or above the version.
        "^" | "~" | "~>" => known
            .iter()
            .rfind(|s| same_major(s) && key(s.version) >= key(&version))
            .copied(),
        _ => None,
    };
    match pick {
        Some(stack) => Ok(Resolution {
            stack,
            substituted_for: None,
        }),
        None => slipway_stack::resolve(language.name(), &version).map_err(|e| e.to_string()),
    }
}

/// The newest stack of `language` that a range (`>=18 <21`, `^8.1 || ^8.2`, `~> 3.1`,
/// `18 - 20`, `20.x`) allows, each stack standing for the newest release of its line
/// (`3.11` as 3.11.x, `22` as 22.x.y). None for a bare version (`3.11.4` means that line,
/// not "3.11.4 or newer"), a range no stack satisfies, or one that does not parse: the
/// caller's nearest-version rules decide those.
fn range_pick(language: Language, constraint: &str) -> Option<&'static slipway_stack::Stack> {
    let is_range = constraint
        .chars()
        .any(|c| matches!(c, '<' | '>' | '^' | '~' | '*' | '|' | 'x' | 'X' | ' ' | ','));
    if !is_range {
        return None;
    }
    let reqs: Vec<semver::VersionReq> = constraint
        .split("||")
        .map(|alt| semver_req(language, alt))
        .collect::<Option<_>>()?;
    let newest_of_line = |s: &slipway_stack::Stack| -> Option<semver::Version> {
        let mut parts = s.version.split('.').map(|p| p.parse::<u64>().ok());
        let major = parts.next()??;
        let minor = parts.next().unwrap_or(Some(u64::from(u32::MAX)))?;
        Some(semver::Version::new(major, minor, u64::from(u32::MAX)))
    };
    slipway_stack::imported::versions(language)
        .iter()
        .rfind(|s| newest_of_line(s).is_some_and(|v| reqs.iter().any(|r| r.matches(&v))))
        .copied()
}

/// One alternative of a range as a [`semver::VersionReq`]: the comparators npm separates by
/// spaces joined by commas, `A - B` as `>=A, <=B`, and the tilde of Ruby (`~> 3.1`) and
/// composer (`~8.1`), which on two parts allows the rest of the major, as a caret.
fn semver_req(language: Language, alternative: &str) -> Option<semver::VersionReq> {
    let alt = alternative.trim();
    if let Some((low, high)) = alt.split_once(" - ") {
        return semver::VersionReq::parse(&format!(">={}, <={}", low.trim(), high.trim())).ok();
    }
    // Tokens, an operator written apart from its version (`>= 18`) joined to it.
    let mut comparators: Vec<String> = Vec::new();
    let mut pending = String::new();
    for token in alt.split([' ', ',']).filter(|t| !t.is_empty()) {
        let token = format!("{pending}{token}");
        if token
            .bytes()
            .all(|b| matches!(b, b'<' | b'>' | b'=' | b'^' | b'~'))
        {
            pending = token;
            continue;
        }
        pending.clear();
        let whole_major_tilde = |rest: &str| rest.trim().split('.').count() <= 2;
        let token = match token.strip_prefix("~>") {
            Some(rest) if whole_major_tilde(rest) => format!("^{}", rest.trim()),
            Some(rest) => format!("~{}", rest.trim()),
            None => match token.strip_prefix('~') {
                Some(rest) if language == Language::Php && whole_major_tilde(rest) => {
                    format!("^{rest}")
                }
                _ => token,
            },
        };
        comparators.push(token.replace(['v', 'V'], ""));
    }
    if comparators.is_empty() {
        return None;
    }
    semver::VersionReq::parse(&comparators.join(", ")).ok()
}

/// The stack of a Procfile app in the tree `src`.
pub fn detect_stack(src: &dyn ConfigSource) -> Result<DetectedStack, DetectError> {
    let found = LANGUAGE_FILES
        .iter()
        .find(|(f, _)| matches!(src.read_file(f), Ok(Some(_))));
    let Some(&(detected_from, language)) = found else {
        return Err(DetectError {
            file: crate::procfile::PROCFILE,
            message: format!(
                "cannot tell the language of this Procfile app: add one of {} at the root (or a .platform.app.yaml with `type:`)",
                LANGUAGE_FILES
                    .iter()
                    .map(|(f, _)| *f)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let version_from = asked_version(src, language);
    let resolution = match &version_from {
        Some((file, asked)) => resolve_constraint(language, asked).map_err(|e| DetectError {
            file,
            message: format!("{file} asks for {language} {asked}: {e}"),
        })?,
        None => resolve_constraint(language, "*").map_err(|e| DetectError {
            file: detected_from,
            message: e,
        })?,
    };
    Ok(DetectedStack {
        language,
        detected_from,
        version_from,
        resolution,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemSource;

    fn tree(files: &[(&str, &str)]) -> MemSource {
        let mut m = MemSource::default();
        for (f, c) in files {
            m.insert(f, *c);
        }
        m
    }

    fn type_of(files: &[(&str, &str)]) -> String {
        detect_stack(&tree(files)).unwrap().type_name()
    }

    #[test]
    fn languages_come_from_heroku_detection_files() {
        let newest = |l| {
            slipway_stack::catalog::versions(l)
                .last()
                .unwrap()
                .type_name()
        };
        assert_eq!(
            type_of(&[("requirements.txt", "flask\n")]),
            newest(Language::Python)
        );
        assert_eq!(type_of(&[("Pipfile", "")]), newest(Language::Python));
        assert_eq!(type_of(&[("package.json", "{}")]), newest(Language::Nodejs));
        assert_eq!(type_of(&[("composer.json", "{}")]), newest(Language::Php));
        assert_eq!(type_of(&[("Gemfile", "")]), newest(Language::Ruby));
        assert_eq!(type_of(&[("pom.xml", "")]), newest(Language::Java));
        // Python wins over a frontend's package.json.
        assert_eq!(
            type_of(&[("package.json", "{}"), ("requirements.txt", "")]),
            newest(Language::Python)
        );
        let e = detect_stack(&tree(&[("README", "")])).unwrap_err();
        assert!(
            e.message.contains("add one of requirements.txt"),
            "{}",
            e.message
        );
    }

    #[test]
    fn versions_come_from_where_heroku_reads_them() {
        assert_eq!(
            type_of(&[("requirements.txt", ""), (".python-version", "3.11.4\n")]),
            "python:3.11"
        );
        assert_eq!(
            type_of(&[("requirements.txt", ""), ("runtime.txt", "python-3.11.9\n")]),
            "python:3.11"
        );
        for (engines, want) in [
            ("22.x", "nodejs:22"),
            ("^20.11.0", "nodejs:20"),
            ("18", "nodejs:18"),
            ("22.3.0", "nodejs:22"),
        ] {
            let pkg = format!("{{\"engines\": {{\"node\": \"{engines}\"}}}}");
            assert_eq!(type_of(&[("package.json", &pkg)]), want, "{engines}");
        }
        assert_eq!(
            type_of(&[("package.json", "{\"engines\": {\"node\": \">=18\"}}")]),
            "nodejs:24"
        );
        // Ranges with an upper bound: the newest stack inside them.
        for (engines, want) in [
            (">=18 <21", "nodejs:20"),
            (">= 18.17.0 < 22", "nodejs:21"),
            ("18 - 20", "nodejs:20"),
            ("^16 || ^18", "nodejs:18"),
            ("~20.11", "nodejs:20"),
            (">=14, <17", "nodejs:16"),
        ] {
            let pkg = format!("{{\"engines\": {{\"node\": \"{engines}\"}}}}");
            assert_eq!(type_of(&[("package.json", &pkg)]), want, "{engines}");
        }
        for (php, want) in [
            ("~8.1", "php:8.4"),
            ("~8.2.0", "php:8.2"),
            (">=7.4 <8.3", "php:8.2"),
        ] {
            let composer = format!("{{\"require\": {{\"php\": \"{php}\"}}}}");
            assert_eq!(type_of(&[("composer.json", &composer)]), want, "{php}");
        }
        assert_eq!(
            type_of(&[("Gemfile", "source 'x'\nruby '~> 3.1.0'\n")]),
            "ruby:3.1"
        );
        assert_eq!(
            type_of(&[("composer.json", "{\"require\": {\"php\": \"^8.1\"}}")]),
            "php:8.4"
        );
        assert_eq!(
            type_of(&[("Gemfile", "source 'x'\nruby '3.1.2'\n")]),
            "ruby:3.1"
        );
        assert_eq!(
            type_of(&[("go.mod", "module x\n\ngo 1.21\n")]),
            "golang:1.24"
        );
        assert_eq!(
            type_of(&[
                ("pom.xml", ""),
                ("system.properties", "java.runtime.version=17\n")
            ]),
            "java:17"
        );
        // A substitute carries the asked version for the warning.
        let d = detect_stack(&tree(&[("go.mod", "go 1.21\n")])).unwrap();
        assert_eq!(d.resolution.substituted_for.as_deref(), Some("1.21"));
        // A version nothing satisfies is refused, naming the file.
        let e = detect_stack(&tree(&[
            ("requirements.txt", ""),
            (".python-version", "2.7\n"),
        ]))
        .unwrap_err();
        assert_eq!(e.file, ".python-version");
        assert!(
            e.message.contains("python:2.7 is not available"),
            "{}",
            e.message
        );
    }

    #[test]
    fn installs_follow_the_buildpacks() {
        let script = |files: &[(&str, &str)]| {
            let t = tree(files);
            detect_stack(&t).unwrap().install_script(&t)
        };
        let py = script(&[("requirements.txt", "")]);
        assert!(py.contains("python3 -m venv /app/.global\n"), "{py}");
        assert!(py.contains("pip install -r requirements.txt\n"), "{py}");
        assert!(
            script(&[("package.json", "{}"), ("package-lock.json", "{}")]).contains("npm ci\n")
        );
        assert!(script(&[("package.json", "{}")]).contains("npm install\n"));
        let yarn = script(&[("package.json", "{}"), ("yarn.lock", "")]);
        assert!(yarn.contains("yarn install --frozen-lockfile\n"), "{yarn}");
        assert!(!yarn.contains("npm install"), "{yarn}");
        let django = script(&[("requirements.txt", ""), ("manage.py", "")]);
        assert!(
            django.contains("python manage.py collectstatic --noinput"),
            "{django}"
        );
        assert!(django.contains("DISABLE_COLLECTSTATIC"), "{django}");
        assert!(!py.contains("collectstatic"), "{py}");
        let hook = script(&[("requirements.txt", ""), ("bin/post_compile", "")]);
        assert!(hook.contains("bin/post_compile\n"), "{hook}");
        let post = script(&[(
            "package.json",
            r#"{"scripts": {"heroku-postbuild": "x", "build": "y"}}"#,
        )]);
        assert!(post.contains("npm run heroku-postbuild\n"), "{post}");
        assert!(!post.contains("npm run build"), "{post}");
        let go = script(&[("go.mod", "go 1.24\n")]);
        assert!(go.contains("go build -o bin/ ./...\n"), "{go}");
        assert!(go.contains("GOFLAGS=\"${GOFLAGS:--mod=mod}\""), "{go}");
        let java = script(&[("pom.xml", "")]);
        assert!(
            java.contains("mvn -B -q -gs \"$PLATFORM_CACHE_DIR/.slipway-maven-settings.xml\""),
            "{java}"
        );
    }
}
