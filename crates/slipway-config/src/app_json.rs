//! Heroku's app manifest `app.json` beside a `Procfile`: its `addons` become services of the
//! environment (with the variables each add-on sets on Heroku, e.g. `DATABASE_URL`), its
//! `env` the app's variables (a value, a secret generated once per environment, or a
//! variable that must be set), its `scripts.postdeploy` a script run once after the first
//! deploy of an environment. Keys Slipway does not act on are warnings; a file that is not
//! JSON is an error at `app.json:LINE:COL`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::convert::ServiceRecord;
use crate::diag::Diagnostic;
use crate::files::read_text;
use crate::model::{Application, Service};
use crate::source::ConfigSource;
use crate::yaml::Pos;

/// The file name.
pub const APP_JSON: &str = "app.json";

/// What an `app.json` asks of an environment beyond the topology's apps and services.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct HerokuManifest {
    /// The variables the add-ons set, by name (`DATABASE_URL`), each made at deploy time
    /// from the relationship to the add-on's service.
    #[serde(default)]
    pub addon_variables: BTreeMap<String, AddonVariable>,
    /// `env` keys with `generator: secret`: 64 hex characters made once per environment.
    #[serde(default)]
    pub generated_secrets: Vec<String>,
    /// `env` keys that must have a value (`required` not false, no `value`, no
    /// `generator`): a push is refused until `var set` gives them one.
    #[serde(default)]
    pub required: Vec<String>,
    /// `scripts.postdeploy`: run once, after the first successful deploy of an environment.
    #[serde(default)]
    pub postdeploy: Option<String>,
}

impl HerokuManifest {
    /// Whether the manifest asks for nothing.
    pub fn is_empty(&self) -> bool {
        self == &HerokuManifest::default()
    }
}

/// One variable an add-on sets: which relationship it is made from, and how.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AddonVariable {
    /// The app's relationship to the add-on's service.
    pub relationship: String,
    /// The shape of the value.
    pub form: AddonVariableForm,
}

/// The shape of an add-on's variable.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AddonVariableForm {
    /// `SCHEME://USER:PASSWORD@HOST:PORT/PATH` (`postgres`, `mysql`, `redis`).
    Url {
        /// The URL's scheme as Heroku's add-on writes it.
        scheme: String,
    },
    /// `HOST:PORT` (memcachier's `MEMCACHIER_SERVERS`).
    Servers,
}

/// An add-on Slipway provides as a service.
struct Addon {
    /// The add-on's name on Heroku (the part of `plan` before `:`).
    name: &'static str,
    /// The service type.
    service_type: &'static str,
    /// The service version: the catalog's Debian 12 (bookworm) stack of the type.
    version: &'static str,
    /// The attachment name without `as` (its variable is `NAME_URL` / `NAME_SERVERS`).
    attachment: &'static str,
    /// The start of a further attachment's name without `as`: Heroku names a second
    /// `heroku-postgresql` `HEROKU_POSTGRESQL_<COLOUR>` ([`COLOURS`]).
    further: &'static str,
    /// The variable's shape.
    form: fn() -> AddonVariableForm,
}

fn url(scheme: &'static str) -> AddonVariableForm {
    AddonVariableForm::Url {
        scheme: scheme.into(),
    }
}

/// The add-ons Slipway provides.
const ADDONS: &[Addon] = &[
    Addon {
        name: "heroku-postgresql",
        service_type: "postgresql",
        version: "15",
        attachment: "DATABASE",
        further: "HEROKU_POSTGRESQL",
        form: || url("postgres"),
    },
    Addon {
        name: "heroku-redis",
        service_type: "redis",
        version: "7.0",
        attachment: "REDIS",
        further: "HEROKU_REDIS",
        form: || url("redis"),
    },
    Addon {
        name: "jawsdb",
        service_type: "mariadb",
        version: "10.11",
        attachment: "JAWSDB",
        further: "JAWSDB",
        form: || url("mysql"),
    },
    Addon {
        name: "jawsdb-maria",
        service_type: "mariadb",
        version: "10.11",
        attachment: "JAWSDB_MARIA",
        further: "JAWSDB_MARIA",
        form: || url("mysql"),
    },
    Addon {
        name: "cleardb",
        service_type: "mariadb",
        version: "10.11",
        attachment: "CLEARDB_DATABASE",
        further: "CLEARDB_DATABASE",
        form: || url("mysql"),
    },
    Addon {
        name: "memcachier",
        service_type: "memcached",
        version: "1.6",
        attachment: "MEMCACHIER",
        further: "MEMCACHIER",
        form: || AddonVariableForm::Servers,
    },
];

/// The colours Heroku names a further attachment of an add-on by
/// (`HEROKU_POSTGRESQL_AMBER_URL`): the second add-on of a kind without `as` gets the first,
/// the third the next, and so on, in the order of `addons` (the same on every push).
pub const COLOURS: &[&str] = &[
    "AMBER", "BLACK", "BLUE", "BRONZE", "CHARCOAL", "COBALT", "COPPER", "CRIMSON", "CYAN", "GOLD",
    "GRAY", "GREEN", "IVORY", "JADE", "MAROON", "MAUVE", "NAVY", "OLIVE", "ONYX", "ORANGE", "PINK",
    "PUCE", "PURPLE", "RED", "ROSE", "SILVER", "TEAL", "VIOLET", "WHITE", "YELLOW",
];

/// Top-level keys that only describe the app (shown by Heroku's deploy button): accepted.
const DESCRIPTIVE_KEYS: &[&str] = &[
    "name",
    "description",
    "keywords",
    "website",
    "repository",
    "logo",
    "success_url",
];

/// Top-level keys Slipway accepts but does not act on, with why.
const IGNORED_KEYS: &[(&str, &str)] = &[
    ("formation", "process counts and sizes are not acted on: each Procfile process runs once, sized by the server"),
    ("buildpacks", "buildpacks are not run: the language and its install come from the tree's files"),
    ("stack", "Heroku stacks are not used: the app runs on the Slipway stack of its language"),
    ("image", "Heroku images are not used: the app runs on the Slipway stack of its language"),
    ("environments", "per-environment overrides (review apps, CI) are not acted on"),
    ("cron", "app.json cron entries are not acted on"),
    ("healthchecks", "app.json health checks are not acted on"),
];

/// Finds where keys and values are written in the JSON text, for positions.
struct Locator<'a> {
    text: &'a str,
}

impl Locator<'_> {
    /// The byte offset of the quoted string `s` at or after `from`, or `from` when absent.
    fn find(&self, from: usize, s: &str) -> usize {
        let quoted = serde_json::to_string(s).unwrap_or_default();
        self.text
            .get(from..)
            .and_then(|rest| rest.find(&quoted))
            .map_or(from, |i| from + i)
    }

    /// The 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// Collects the manifest's diagnostics at positions.
struct Reader<'a> {
    at: Locator<'a>,
    diags: &'a mut Vec<Diagnostic>,
}

impl Reader<'_> {
    fn warn(&mut self, offset: usize, key_path: &str, message: impl Into<String>) {
        let (line, col) = self.at.line_col(offset);
        self.diags
            .push(Diagnostic::warning(APP_JSON, line, col, key_path, message));
    }

    fn error(&mut self, offset: usize, key_path: &str, message: impl Into<String>) {
        let (line, col) = self.at.line_col(offset);
        self.diags
            .push(Diagnostic::error(APP_JSON, line, col, key_path, message));
    }

    fn pos(&self, offset: usize) -> Pos {
        let (line, col) = self.at.line_col(offset);
        Pos {
            file: Arc::from(APP_JSON),
            line,
            col,
        }
    }
}

/// What an `app.json` adds to the Procfile's app: its services (with the app's
/// relationships to them) and its variables. Nothing when the tree has no `app.json`.
pub(crate) struct Manifest {
    /// The add-ons' services.
    pub services: Vec<ServiceRecord>,
    /// The app's relationships to them: (name, position, service name).
    pub relationships: Vec<(String, Pos, Option<String>)>,
}

/// Read `app.json` (if the tree has one) into `app` (its `variables.env` and its
/// [`HerokuManifest`]), returning the add-ons' services.
pub(crate) fn load(
    src: &dyn ConfigSource,
    app: &mut Application,
    diags: &mut Vec<Diagnostic>,
) -> Manifest {
    let mut out = Manifest {
        services: Vec::new(),
        relationships: Vec::new(),
    };
    let text = match read_text(src, APP_JSON) {
        Ok(Some(t)) => t,
        Ok(None) => return out,
        Err(d) => {
            diags.push(d);
            return out;
        }
    };
    let root: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            let msg = e.to_string();
            // serde_json appends " at line L column C"; the position is the diagnostic's.
            let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
            diags.push(Diagnostic::error(
                APP_JSON,
                e.line().max(1),
                e.column().max(1),
                "",
                format!("app.json is not valid JSON: {msg}"),
            ));
            return out;
        }
    };
    let mut r = Reader {
        at: Locator { text: &text },
        diags,
    };
    let Some(top) = root.as_object() else {
        r.error(
            0,
            "",
            "app.json must be a JSON object (Heroku's app manifest)",
        );
        return out;
    };
    let mut manifest = HerokuManifest::default();
    for (key, value) in top {
        let off = r.at.find(0, key);
        match key.as_str() {
            "addons" => read_addons(&mut r, off, value, &mut manifest, &mut out),
            "env" => read_env(&mut r, off, value, app, &mut manifest),
            "scripts" => read_scripts(&mut r, off, value, &mut manifest),
            k if DESCRIPTIVE_KEYS.contains(&k) => {}
            k => match IGNORED_KEYS.iter().find(|(n, _)| *n == k) {
                Some((_, why)) => r.warn(off, k, format!("`{k}` is ignored: {why}")),
                None => r.warn(off, k, format!("unknown app.json key `{k}`; it is ignored")),
            },
        }
    }
    if !manifest.is_empty() {
        app.heroku = Some(manifest);
    }
    out
}

/// Whether `name` is a variable name a shell accepts.
fn valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The service (and relationship) an attachment names: lower-case, `_` as `-`, since it
/// is a host name too (`heroku-postgresql-amber.internal`).
fn service_name(attachment: &str) -> String {
    attachment.to_ascii_lowercase().replace('_', "-")
}

fn read_addons(
    r: &mut Reader<'_>,
    off: usize,
    value: &Value,
    manifest: &mut HerokuManifest,
    out: &mut Manifest,
) {
    let Some(list) = value.as_array() else {
        r.error(
            off,
            "addons",
            "`addons` must be a list of add-on names or `{\"plan\": ..., \"as\": ...}` objects",
        );
        return;
    };
    let mut cursor = off;
    let mut has_database = false;
    // How many add-ons of each kind (`plan` before `:`) came without `as` so far.
    let mut plain: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (i, item) in list.iter().enumerate() {
        let kp = format!("addons.{i}");
        let (plan, attach_as) = match item {
            Value::String(p) => (p.clone(), None),
            Value::Object(o) => {
                let Some(plan) = o.get("plan").and_then(Value::as_str) else {
                    r.error(
                        cursor,
                        &kp,
                        "an add-on object needs `plan` (e.g. `\"plan\": \"heroku-postgresql\"`)",
                    );
                    continue;
                };
                let plan_off = r.at.find(cursor, plan);
                for k in o.keys() {
                    match k.as_str() {
                        "plan" | "as" => {}
                        "options" => r.warn(
                            plan_off,
                            &format!("{kp}.options"),
                            "add-on `options` are ignored",
                        ),
                        other => r.warn(
                            plan_off,
                            &format!("{kp}.{other}"),
                            format!("unknown add-on key `{other}`; it is ignored"),
                        ),
                    }
                }
                let attach_as = match o.get("as") {
                    None => None,
                    Some(Value::String(a)) => Some(a.clone()),
                    Some(_) => {
                        r.error(plan_off, &format!("{kp}.as"), "`as` must be a string");
                        continue;
                    }
                };
                (plan.to_string(), attach_as)
            }
            _ => {
                r.error(
                    cursor,
                    &kp,
                    "an add-on is a name (`\"heroku-postgresql\"`) or an object with `plan`",
                );
                continue;
            }
        };
        cursor = r.at.find(cursor, &plan);
        let at = cursor;
        let name = plan.split(':').next().unwrap_or_default();
        let Some(addon) = ADDONS.iter().find(|a| a.name == name) else {
            r.warn(
                at,
                &kp,
                format!(
                    "add-on `{name}` is not provided by Slipway and is ignored (provided: {})",
                    ADDONS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
                ),
            );
            continue;
        };
        if let Some(a) = &attach_as {
            let ok = a.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && a.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if !ok {
                r.error(
                    at,
                    &format!("{kp}.as"),
                    format!("`as: {a}` must be upper-case letters, digits and `_`, starting with a letter (e.g. `DATABASE`)"),
                );
                continue;
            }
        }
        let taken = |name: &str| out.services.iter().any(|s| s.service.name == name);
        // The relationship (and the service) is named after `as`; else the first add-on of
        // a kind after the service type (its attachment's name when another kind has that
        // name) and each further one after its colour attachment, as Heroku names it.
        let (attachment, rel) = match &attach_as {
            Some(a) => (a.clone(), service_name(a)),
            None => {
                let seen = plain.entry(addon.name).or_default();
                *seen += 1;
                if *seen == 1 {
                    let rel = if taken(addon.service_type) {
                        service_name(addon.attachment)
                    } else {
                        addon.service_type.to_string()
                    };
                    (addon.attachment.to_string(), rel)
                } else {
                    let free = COLOURS
                        .iter()
                        .skip(*seen - 2)
                        .map(|c| format!("{}_{c}", addon.further))
                        .find(|a| !taken(&service_name(a)));
                    let Some(a) = free else {
                        r.error(
                            at,
                            &kp,
                            format!("more add-ons `{}` without `as` than Heroku has colours ({}): give them `as`", addon.name, COLOURS.len() + 1),
                        );
                        continue;
                    };
                    let rel = service_name(&a);
                    (a, rel)
                }
            }
        };
        if taken(&rel) {
            r.error(
                at,
                &kp,
                format!("a second add-on named `{rel}`: give each add-on its own `as` (e.g. `\"as\": \"SECOND_DATABASE\"`)"),
            );
            continue;
        }
        let form = (addon.form)();
        let suffix = match form {
            AddonVariableForm::Url { .. } => "URL",
            AddonVariableForm::Servers => "SERVERS",
        };
        let mut names = vec![format!("{attachment}_{suffix}")];
        // The first database is the app's DATABASE_URL too, as on Heroku.
        if addon.service_type == "postgresql" && !has_database {
            has_database = true;
            names.push("DATABASE_URL".to_string());
        }
        for n in names {
            manifest.addon_variables.entry(n).or_insert(AddonVariable {
                relationship: rel.clone(),
                form: form.clone(),
            });
        }
        let pos = r.pos(at);
        out.services.push(ServiceRecord {
            service: Service {
                name: rel.clone(),
                r#type: addon.service_type.into(),
                version: addon.version.into(),
                disk: None,
                configuration: Value::Null,
                relationships: BTreeMap::new(),
            },
            relationships: Vec::new(),
        });
        out.relationships.push((rel.clone(), pos, Some(rel)));
    }
}

fn read_env(
    r: &mut Reader<'_>,
    off: usize,
    value: &Value,
    app: &mut Application,
    manifest: &mut HerokuManifest,
) {
    let Some(map) = value.as_object() else {
        r.error(off, "env", "`env` must be an object of variable names");
        return;
    };
    for (name, spec) in map {
        let at = r.at.find(off, name);
        let kp = format!("env.{name}");
        if !valid_variable_name(name) {
            r.error(
                at,
                &kp,
                format!("`{name}` is not a variable name (letters, digits and `_`)"),
            );
            continue;
        }
        let (value, required, generator) = match spec {
            Value::String(s) => (Some(s.clone()), false, None),
            Value::Object(o) => {
                for k in o.keys() {
                    if !["description", "value", "required", "generator"].contains(&k.as_str()) {
                        r.warn(
                            at,
                            &format!("{kp}.{k}"),
                            format!("unknown key `{k}` of variable `{name}`; it is ignored"),
                        );
                    }
                }
                let value = match o.get("value") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
                    Some(_) => {
                        r.error(at, &format!("{kp}.value"), "`value` must be a string");
                        continue;
                    }
                };
                let required = match o.get("required") {
                    None => true,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        r.error(
                            at,
                            &format!("{kp}.required"),
                            "`required` must be true or false",
                        );
                        continue;
                    }
                };
                let generator = match o.get("generator") {
                    None => None,
                    Some(Value::String(g)) if g == "secret" => Some(()),
                    Some(g) => {
                        r.warn(
                            at,
                            &format!("{kp}.generator"),
                            format!("generator {g} is not known (only `secret` is); `{name}` gets no generated value"),
                        );
                        None
                    }
                };
                (value, required, generator)
            }
            _ => {
                r.error(
                    at,
                    &kp,
                    "a variable is a string or an object with `value`, `required`, `generator`",
                );
                continue;
            }
        };
        if let Some(v) = value {
            app.variables
                .entry("env".into())
                .or_default()
                .insert(name.clone(), Value::String(v));
        } else if generator.is_some() {
            manifest.generated_secrets.push(name.clone());
        } else if required {
            manifest.required.push(name.clone());
        }
    }
}

fn read_scripts(r: &mut Reader<'_>, off: usize, value: &Value, manifest: &mut HerokuManifest) {
    let Some(map) = value.as_object() else {
        r.error(off, "scripts", "`scripts` must be an object");
        return;
    };
    for (key, script) in map {
        let at = r.at.find(off, key);
        let kp = format!("scripts.{key}");
        match key.as_str() {
            "postdeploy" => {
                // A command, or Heroku's `{"command": ..., "size": ...}`.
                let command = match script {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) => o.get("command").and_then(Value::as_str).map(String::from),
                    _ => None,
                };
                match command.filter(|c| !c.trim().is_empty()) {
                    Some(c) => manifest.postdeploy = Some(c),
                    None => r.error(
                        at,
                        &kp,
                        "`postdeploy` must be a command (or an object with `command`)",
                    ),
                }
            }
            "pr-predestroy" => r.warn(
                at,
                &kp,
                "`pr-predestroy` is ignored: Slipway has no review apps to destroy",
            ),
            other => r.warn(
                at,
                &kp,
                format!("unknown script `{other}`; it is ignored (Slipway runs `postdeploy`)"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Severity;
    use crate::source::MemSource;

    fn read(json: &str) -> (Application, Manifest, Vec<Diagnostic>) {
        let mut src = MemSource::new();
        src.insert(APP_JSON, json);
        let mut app = Application::default();
        let mut diags = Vec::new();
        let m = load(&src, &mut app, &mut diags);
        (app, m, diags)
    }

    #[test]
    fn bad_json_is_an_error_at_its_position() {
        let (_, _, d) = read("{\n  \"name\": \"x\",\n  \"env\": {,}\n}\n");
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].severity, Severity::Error);
        assert_eq!((d[0].line, d[0].column), (3, 11), "{}", d[0]);
        assert!(d[0].message.contains("not valid JSON"), "{}", d[0]);
        assert!(!d[0].message.contains(" at line "), "{}", d[0]);
        let (_, _, d) = read("[1]");
        assert!(d[0].message.contains("must be a JSON object"), "{}", d[0]);
    }

    #[test]
    fn unknown_and_ignored_keys_are_warnings_at_their_line() {
        let (_, _, d) = read(
            "{\n  \"name\": \"x\",\n  \"formation\": {},\n  \"colour\": 1,\n  \"scripts\": {\"pr-predestroy\": \"x\"}\n}\n",
        );
        assert!(d.iter().all(|d| d.severity == Severity::Warning), "{d:?}");
        let at = |k: &str| d.iter().find(|d| d.key_path == k).map(|d| d.line);
        assert_eq!(at("formation"), Some(3));
        assert_eq!(at("colour"), Some(4));
        assert_eq!(at("scripts.pr-predestroy"), Some(5));
        assert!(d
            .iter()
            .any(|d| d.message == "unknown app.json key `colour`; it is ignored"));
        assert_eq!(d.len(), 3, "{d:?}");
    }

    #[test]
    fn addons_become_services_with_heroku_variable_names() {
        let (app, m, d) = read(
            r#"{"addons": ["heroku-postgresql:essential-0", {"plan": "heroku-postgresql", "as": "ANALYTICS"},
               "heroku-redis", "jawsdb-maria", "memcachier:dev", "papertrail"]}"#,
        );
        let names: Vec<(&str, &str, &str)> = m
            .services
            .iter()
            .map(|s| {
                (
                    s.service.name.as_str(),
                    s.service.r#type.as_str(),
                    s.service.version.as_str(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                ("postgresql", "postgresql", "15"),
                ("analytics", "postgresql", "15"),
                ("redis", "redis", "7.0"),
                ("mariadb", "mariadb", "10.11"),
                ("memcached", "memcached", "1.6"),
            ]
        );
        let h = app.heroku.unwrap();
        let var = |n: &str| h.addon_variables.get(n).map(|v| v.relationship.as_str());
        assert_eq!(var("DATABASE_URL"), Some("postgresql"));
        assert_eq!(var("ANALYTICS_URL"), Some("analytics"));
        assert_eq!(var("REDIS_URL"), Some("redis"));
        assert_eq!(var("JAWSDB_MARIA_URL"), Some("mariadb"));
        assert_eq!(var("MEMCACHIER_SERVERS"), Some("memcached"));
        assert_eq!(h.addon_variables.len(), 5);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("add-on `papertrail` is not provided"));
        // An `as` naming an add-on's service twice is refused.
        let (_, _, d) =
            read(r#"{"addons": ["heroku-redis", {"plan": "heroku-redis", "as": "REDIS"}]}"#);
        assert!(
            d[0].message.contains("second add-on named `redis`"),
            "{d:?}"
        );
    }

    #[test]
    fn further_addons_of_a_kind_get_heroku_colour_names() {
        let json = r#"{"addons": ["heroku-postgresql", "heroku-redis", "heroku-postgresql:standard-0",
            {"plan": "heroku-postgresql", "as": "HEROKU_POSTGRESQL_BLACK"}, "heroku-postgresql",
            "heroku-redis", "jawsdb", "cleardb", "jawsdb", "memcachier", "memcachier"]}"#;
        let (app, m, d) = read(json);
        assert!(d.is_empty(), "{d:?}");
        let names: Vec<&str> = m.services.iter().map(|s| s.service.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "postgresql",
                "redis",
                "heroku-postgresql-amber",
                "heroku-postgresql-black",
                // BLACK is taken by the `as`: the next colour.
                "heroku-postgresql-blue",
                "heroku-redis-amber",
                "mariadb",
                // Another kind of the same service type: its own attachment's name.
                "cleardb-database",
                "jawsdb-amber",
                "memcached",
                "memcachier-amber",
            ]
        );
        let h = app.heroku.unwrap();
        let var = |n: &str| h.addon_variables.get(n).map(|v| v.relationship.as_str());
        assert_eq!(var("DATABASE_URL"), Some("postgresql"));
        assert_eq!(
            var("HEROKU_POSTGRESQL_AMBER_URL"),
            Some("heroku-postgresql-amber")
        );
        assert_eq!(
            var("HEROKU_POSTGRESQL_BLUE_URL"),
            Some("heroku-postgresql-blue")
        );
        assert_eq!(var("REDIS_URL"), Some("redis"));
        assert_eq!(var("HEROKU_REDIS_AMBER_URL"), Some("heroku-redis-amber"));
        assert_eq!(var("JAWSDB_URL"), Some("mariadb"));
        assert_eq!(var("CLEARDB_DATABASE_URL"), Some("cleardb-database"));
        assert_eq!(var("JAWSDB_AMBER_URL"), Some("jawsdb-amber"));
        assert_eq!(var("MEMCACHIER_AMBER_SERVERS"), Some("memcachier-amber"));
        // The same names on every read (every push).
        let (again, _, _) = read(json);
        assert_eq!(again.heroku.unwrap(), h);
    }

    #[test]
    fn env_values_secrets_and_required() {
        let (app, _, d) = read(
            r#"{"env": {"A": "1", "B": {"value": "2", "description": "b"}, "S": {"generator": "secret"},
               "R": {"description": "needed"}, "O": {"required": false}, "N": {"value": 3}}}"#,
        );
        assert!(d.is_empty(), "{d:?}");
        let env = app.env_vars();
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some("2"));
        assert_eq!(env.get("N").map(String::as_str), Some("3"));
        let h = app.heroku.unwrap();
        assert_eq!(h.generated_secrets, vec!["S".to_string()]);
        assert_eq!(h.required, vec!["R".to_string()]);
    }

    #[test]
    fn postdeploy_is_a_command_or_an_object() {
        let (app, _, _) = read(r#"{"scripts": {"postdeploy": "python seed.py"}}"#);
        assert_eq!(
            app.heroku.unwrap().postdeploy.as_deref(),
            Some("python seed.py")
        );
        let (app, _, _) =
            read(r#"{"scripts": {"postdeploy": {"command": "x", "size": "standard-1x"}}}"#);
        assert_eq!(app.heroku.unwrap().postdeploy.as_deref(), Some("x"));
    }
}
