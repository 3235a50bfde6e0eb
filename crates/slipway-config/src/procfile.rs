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

/// Load a Procfile: `web:` is the start command, `release:` the deploy hook, other process types workers.
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
            "web" => app.web.start = Some(cmd.to_string()),
            "release" => app.hooks.deploy = Some(cmd.to_string()),
            other => {
                app.workers.insert(
                    other.to_string(),
                    serde_json::json!({"commands": {"start": cmd}}),
                );
            }
        }
    }
    if app.web.start.is_none() && !diags.iter().any(Diagnostic::is_error) {
        diags.push(Diagnostic::error(
            PROCFILE,
            1,
            1,
            "web",
            "the Procfile has no `web:` line; add `web: COMMAND` that listens on $PORT",
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
    let pos = Pos {
        file: Arc::from(PROCFILE),
        line: 1,
        col: 1,
    };
    let rec = AppRecord {
        app,
        name_pos: pos,
        path: KeyPath::new(),
        relationships: Vec::new(),
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
        Vec::new(),
        None,
        diags,
    )
}

use crate::source::ConfigSource;
