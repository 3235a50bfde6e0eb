//! A bare `Procfile`: one app named `app`, on the stack its tree's language files name
//! ([`crate::detect`]), its dependencies installed as Heroku's buildpacks do.

use crate::checks::{finish, Files};
use crate::convert::AppRecord;
use crate::diag::Diagnostic;
use crate::files::read_text;
use crate::keypath::KeyPath;
use crate::model::{Application, Topology};
use crate::yaml::Pos;
use std::sync::Arc;

/// The file name.
pub(crate) const PROCFILE: &str = "Procfile";

/// Load a Procfile: `web:` is the start command, `release:` the deploy hook, other process types
/// workers (an app of workers only has no `web:`, as on Heroku).
pub(crate) fn load(src: &dyn ConfigSource, diags: &mut Vec<Diagnostic>) -> Topology {
    let text = match read_text(src, PROCFILE) {
        Ok(Some(t)) => t,
        Ok(None) => String::new(),
        Err(d) => {
            diags.push(d);
            String::new()
        }
    };
    let mut app = Application {
        name: "app".into(),
        ..Default::default()
    };
    let mut seen: Vec<(String, usize)> = Vec::new();
    let mut heroku_php_app = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let Some((name, cmd)) = trimmed.split_once(':') else {
            diags.push(Diagnostic::error(
                PROCFILE,
                line_no,
                indent + 1,
                "",
                "expected `TYPE: COMMAND` (e.g. `web: gunicorn app:app`)",
            ));
            continue;
        };
        let name = name.trim();
        let cmd = cmd.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            diags.push(Diagnostic::error(
                PROCFILE,
                line_no,
                indent + 1,
                "",
                format!("process type `{name}` may only hold letters, digits, `-` and `_`"),
            ));
            continue;
        }
        let col = indent + 1;
        if cmd.is_empty() {
            diags.push(Diagnostic::error(
                PROCFILE,
                line_no,
                col,
                name,
                format!("process type `{name}` has no command"),
            ));
            continue;
        }
        if let Some((_, first)) = seen.iter().find(|(n, _)| n == name) {
            diags.push(Diagnostic::error(
                PROCFILE,
                line_no,
                col,
                name,
                format!("process type `{name}` is already defined on line {first}"),
            ));
            continue;
        }
        seen.push((name.to_string(), line_no));
        match name {
            "web" => match heroku_php(cmd) {
                Some(mut php) => {
                    let htaccess = if php.root.is_empty() {
                        ".htaccess".to_string()
                    } else {
                        format!("{}/.htaccess", php.root)
                    };
                    if matches!(src.read_file(&htaccess), Ok(Some(_))) {
                        php.ignored.push(format!("`{htaccess}`"));
                    }
                    for ignored in &php.ignored {
                        diags.push(Diagnostic::warning(
                            PROCFILE,
                            line_no,
                            col,
                            "web",
                            format!("{ignored} is not read: the app is served by PHP-FPM behind Slipway's router, with `{}` as its document root and requests for missing files passed to /index.php", if php.root.is_empty() { "/" } else { &php.root }),
                        ));
                    }
                    heroku_php_app = true;
                    app.web.locations.insert(
                        "/".into(),
                        serde_json::json!({
                            "root": php.root,
                            "passthru": "/index.php",
                            "scripts": true,
                            "allow": true,
                        }),
                    );
                }
                None => app.web.start = Some(cmd.to_string()),
            },
            "release" => app.hooks.deploy = Some(cmd.to_string()),
            other => {
                app.workers.insert(
                    other.to_string(),
                    serde_json::json!({"commands": {"start": cmd}}),
                );
            }
        }
    }
    // Without `web:`, as on Heroku, the app runs its other process types (workers) only;
    // a Procfile with neither has nothing to run.
    if app.web.start.is_none()
        && !heroku_php_app
        && app.workers.is_empty()
        && !diags.iter().any(Diagnostic::is_error)
    {
        diags.push(Diagnostic::error(
            PROCFILE,
            1,
            1,
            "web",
            "the Procfile has no `web:` line and no other process type; add `web: COMMAND` that listens on $PORT",
        ));
    }
    // The stack and the dependency install, as Heroku's buildpacks detect and do them.
    match crate::detect::detect_stack(src) {
        Ok(d) => {
            if let Some(w) = d.resolution.warning() {
                let file = d.version_from.as_ref().map_or(d.detected_from, |v| v.0);
                diags.push(Diagnostic::warning(file, 1, 1, "", w));
            }
            app.r#type = Some(d.type_name());
            app.build_flavor = Some("none".into());
            app.hooks.build = Some(d.install_script(src));
        }
        Err(e) => diags.push(Diagnostic::error(e.file, 1, 1, "", e.message)),
    }
    if heroku_php_app && !crate::php::served_by_fpm(&app) {
        if let Some(t) = &app.r#type {
            diags.push(Diagnostic::error(
                PROCFILE,
                1,
                1,
                "web",
                format!("heroku-php-apache2 and heroku-php-nginx serve PHP apps, but this tree was detected as {t}; add a composer.json at the root"),
            ));
        }
    }
    // Heroku's app manifest: add-ons as services, `env`, `scripts.postdeploy`.
    let manifest = crate::app_json::load(src, &mut app, diags);
    let pos = Pos {
        file: Arc::from(PROCFILE),
        line: 1,
        col: 1,
    };
    let rec = AppRecord {
        app,
        name_pos: pos,
        name_path: KeyPath::new().with("name"),
        path: KeyPath::new(),
        relationships: manifest.relationships,
        source_root_pos: None,
        service_mounts: Vec::new(),
    };
    finish(
        src,
        Files {
            apps: PROCFILE,
            services: PROCFILE,
            routes: PROCFILE,
        },
        vec![rec],
        manifest.services,
        None,
        diags,
    )
}

use crate::source::ConfigSource;

/// What a Heroku PHP web command (`heroku-php-apache2 [OPTIONS] [DOCROOT]` or
/// `heroku-php-nginx ...`) asks for.
#[derive(Debug, PartialEq, Eq)]
struct HerokuPhp {
    /// The document root, relative to the app (`""`: the app's root).
    root: String,
    /// What the command names that Slipway does not read (`-C nginx_app.conf`, `.htaccess`).
    ignored: Vec<String>,
}

/// The Heroku PHP boot script a `web:` command runs, if it is one: there is no such program
/// on a Slipway stack, so the app is served by PHP-FPM behind the router instead.
fn heroku_php(cmd: &str) -> Option<HerokuPhp> {
    let mut words = cmd.split_whitespace();
    let program = words.next()?;
    let program = program.rsplit('/').next().unwrap_or(program);
    let server = match program {
        "heroku-php-apache2" => "Apache",
        "heroku-php-nginx" => "Nginx",
        _ => return None,
    };
    let mut ignored = Vec::new();
    let mut root = String::new();
    while let Some(w) = words.next() {
        match w {
            // Options with a file or value: -C (server config include), -F (PHP-FPM config
            // include), -i (php.ini include), -l (log file to tail), -p (port).
            "-C" | "-F" | "-i" | "-l" | "-p" => {
                let file = words.next().unwrap_or_default();
                ignored.push(format!("`{w} {file}` (a {server} or PHP option)"));
            }
            w if w.starts_with('-') => ignored.push(format!("`{w}`")),
            w => root = w.trim_matches('/').trim_start_matches("./").to_string(),
        }
    }
    Some(HerokuPhp { root, ignored })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heroku_php_commands_name_a_document_root() {
        let p = heroku_php("heroku-php-apache2 public/").unwrap();
        assert_eq!(p.root, "public");
        assert!(p.ignored.is_empty());
        let p = heroku_php("vendor/bin/heroku-php-nginx -C nginx_app.conf web/").unwrap();
        assert_eq!(p.root, "web");
        assert_eq!(p.ignored.len(), 1);
        assert!(p.ignored[0].contains("-C nginx_app.conf"));
        assert_eq!(heroku_php("heroku-php-nginx").unwrap().root, "");
        assert_eq!(heroku_php("gunicorn app:app"), None);
    }
}
