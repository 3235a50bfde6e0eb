//! `runtime` of a PHP app: which extensions PHP-FPM loads (`extensions`,
//! `disabled_extensions`) and how its pool is sized (`sizing_hints`), as Platform.sh reads
//! them. An extension name that no PHP knows is refused at `FILE:LINE:COL`; one that PHP
//! knows but the stack does not ship is accepted with a warning (nothing loads it).

use crate::diag::Diagnostic;
use crate::keypath::KeyPath;
use crate::yaml::{Kind, Node};

/// `sizing_hints.request_memory` when unset, in MB (Platform.sh's default).
pub const DEFAULT_REQUEST_MEMORY_MB: u64 = 45;
/// `sizing_hints.reserved_memory` when unset, in MB (Platform.sh's default).
pub const DEFAULT_RESERVED_MEMORY_MB: u64 = 70;

/// Extensions the PHP stacks ship (Debian's `php8.x-*` packages of the catalog and PHP's
/// built-in ones): these can be enabled and disabled.
pub const STACK_EXTENSIONS: &[&str] = &[
    "apcu",
    "bcmath",
    "calendar",
    "ctype",
    "curl",
    "dom",
    "exif",
    "ffi",
    "fileinfo",
    "ftp",
    "gd",
    "gettext",
    "gmp",
    "iconv",
    "igbinary",
    "imagick",
    "intl",
    "ldap",
    "mbstring",
    "mysqli",
    "mysqlnd",
    "opcache",
    "pdo",
    "pdo_mysql",
    "pdo_pgsql",
    "pdo_sqlite",
    "pgsql",
    "phar",
    "posix",
    "readline",
    "redis",
    "shmop",
    "simplexml",
    "soap",
    "sockets",
    "sodium",
    "sqlite3",
    "sysvmsg",
    "sysvsem",
    "sysvshm",
    "tokenizer",
    "xml",
    "xmlreader",
    "xmlwriter",
    "xsl",
    "zip",
    "json",
    "openssl",
    "zlib",
    "hash",
    "pcre",
    "session",
    "filter",
    "date",
];

/// Extensions Platform.sh offers that the stacks do not ship: accepted with a warning.
pub const OTHER_EXTENSIONS: &[&str] = &[
    "amqp",
    "apcu_bc",
    "blackfire",
    "bz2",
    "dba",
    "enchant",
    "event",
    "gearman",
    "geoip",
    "gnupg",
    "http",
    "imap",
    "interbase",
    "ioncube",
    "mailparse",
    "memcache",
    "memcached",
    "mongo",
    "mongodb",
    "msgpack",
    "mysql",
    "newrelic",
    "oauth",
    "odbc",
    "openswoole",
    "pcntl",
    "pdo_dblib",
    "pdo_firebird",
    "pdo_odbc",
    "pdo_sqlsrv",
    "phpdbg",
    "pinba",
    "propro",
    "protobuf",
    "pspell",
    "raphf",
    "rdkafka",
    "recode",
    "snmp",
    "sourceguardian",
    "sqlsrv",
    "ssh2",
    "swoole",
    "sybase",
    "tideways",
    "tideways_xhprof",
    "tidy",
    "uploadprogress",
    "uuid",
    "wddx",
    "xcache",
    "xdebug",
    "xhprof",
    "xmlrpc",
    "yaml",
    "zbarcode",
    "zendopcache",
];

/// The `runtime` of an app, typed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PhpRuntime {
    /// `extensions`: to load (all those the stack ships are loaded anyway).
    pub extensions: Vec<String>,
    /// `disabled_extensions`: not loaded.
    pub disabled_extensions: Vec<String>,
    /// `sizing_hints.request_memory`: MB one PHP-FPM worker is expected to use.
    pub request_memory_mb: u64,
    /// `sizing_hints.reserved_memory`: MB of the container kept for everything else.
    pub reserved_memory_mb: u64,
    /// `request_terminate_timeout`: seconds one request may run before PHP-FPM kills its
    /// worker (`None`: PHP-FPM's default, off; `max_execution_time` still applies).
    pub request_terminate_timeout_s: Option<u64>,
}

impl Default for PhpRuntime {
    fn default() -> Self {
        PhpRuntime {
            extensions: Vec::new(),
            disabled_extensions: Vec::new(),
            request_memory_mb: DEFAULT_REQUEST_MEMORY_MB,
            reserved_memory_mb: DEFAULT_RESERVED_MEMORY_MB,
            request_terminate_timeout_s: None,
        }
    }
}

impl PhpRuntime {
    /// How many PHP-FPM workers fit in `memory_mb`, as Platform.sh sizes the pool:
    /// `(memory - reserved) / request`, at least 1.
    pub fn max_children(&self, memory_mb: u64) -> u64 {
        (memory_mb.saturating_sub(self.reserved_memory_mb) / self.request_memory_mb.max(1)).max(1)
    }
}

/// Read and check the `runtime` node of an app (`path` is its key path).
pub(crate) fn runtime(
    node: Option<&Node>,
    path: &KeyPath,
    diags: &mut Vec<Diagnostic>,
) -> PhpRuntime {
    let mut rt = PhpRuntime::default();
    let Some(node) = node else { return rt };
    for (key, list) in [
        ("extensions", &mut rt.extensions),
        ("disabled_extensions", &mut rt.disabled_extensions),
    ] {
        let Some(Kind::Seq(items)) = node.get(key).map(|n| &n.kind) else {
            continue;
        };
        for item in items {
            // An entry is a name, or a map with `name` (and its `configuration`).
            let name_node = match &item.kind {
                Kind::Map(_) => item.get("name"),
                _ => Some(item),
            };
            let Some(n) = name_node else { continue };
            let Some(name) = n.as_str() else { continue };
            let p = path.with(key);
            if STACK_EXTENSIONS.contains(&name) {
                list.push(name.to_string());
            } else if OTHER_EXTENSIONS.contains(&name) {
                if key == "extensions" {
                    diags.push(p.warning(
                        &n.pos,
                        format!("PHP extension `{name}` is not shipped by Slipway's PHP stacks; it is not loaded"),
                    ));
                }
            } else {
                let hint = match crate::suggest::closest(
                    name,
                    STACK_EXTENSIONS.iter().chain(OTHER_EXTENSIONS).copied(),
                ) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("known: {}", STACK_EXTENSIONS.join(", ")),
                };
                diags.push(p.error(&n.pos, format!("unknown PHP extension `{name}`; {hint}")));
            }
        }
    }
    if let Some(v) = node.get("request_terminate_timeout") {
        match v.kind {
            Kind::Int(i) if i >= 1 => rt.request_terminate_timeout_s = Some(i as u64),
            _ => diags.push(path.with("request_terminate_timeout").error(
                &v.pos,
                "`request_terminate_timeout` must be a whole number of seconds, at least 1",
            )),
        }
    }
    if let Some(h) = node.get("sizing_hints") {
        for (key, field) in [
            ("request_memory", &mut rt.request_memory_mb),
            ("reserved_memory", &mut rt.reserved_memory_mb),
        ] {
            if let Some(v) = h.get(key) {
                match v.kind {
                    Kind::Int(i) if i >= 1 => *field = i as u64,
                    _ => diags.push(path.with("sizing_hints").with(key).error(
                        &v.pos,
                        format!("`{key}` must be a whole number of MB, at least 1"),
                    )),
                }
            }
        }
    }
    rt
}

/// Whether an app of type `type_name` (`php:8.4`, `php@8.4`, `php`) runs PHP.
pub fn is_php_type(type_name: Option<&str>) -> bool {
    type_name.is_some_and(|t| t == "php" || t.starts_with("php:") || t.starts_with("php@"))
}

/// Whether `app` has a start command (`web.commands.start`, not blank).
fn has_start_command(app: &crate::Application) -> bool {
    !app.web
        .start
        .as_deref()
        .map(str::trim)
        .unwrap_or("")
        .is_empty()
}

/// Whether `app` is served by PHP-FPM: a PHP app with no start command.
pub fn served_by_fpm(app: &crate::Application) -> bool {
    is_php_type(app.r#type.as_deref()) && !has_start_command(app)
}

/// Whether `app` runs no web process: no start command and not served by PHP-FPM. That is a
/// static site (the router serves its `web.locations`) or an app of workers and crons
/// only; validation refuses the others (a missing start command), and the deploy starts such an
/// app's container only to hold the release's place.
pub fn no_web_process(app: &crate::Application) -> bool {
    !served_by_fpm(app) && !has_start_command(app)
}

/// The refusal of an app that is not PHP, has no start command, no `web.locations` to
/// serve (a static site) and is not a background-only app (no `web`, workers or crons),
/// at the deepest of
/// `web.commands.start`, `web.commands`, `web` that is written (else at the app's name, or
/// its key in an Upsun config).
pub(crate) fn missing_start(
    app: &crate::Application,
    node: &Node,
    name_pos: &crate::yaml::Pos,
    path: &KeyPath,
) -> Option<Diagnostic> {
    // A static site (the router serves its locations) or an app with no `web` that only
    // runs workers and crons: no web process runs (see `slipway_deploy::provision`).
    if !no_web_process(app)
        || !app.web.locations.is_empty()
        || (node.get("web").is_none() && (!app.workers.is_empty() || !app.crons.is_empty()))
    {
        return None;
    }
    let web = node.get("web");
    let commands = web.and_then(|w| w.get("commands"));
    let start = commands.and_then(|c| c.get("start"));
    // A start of the wrong shape is already refused by the schema, at the same place.
    if start.is_some_and(|s| !matches!(s.kind, Kind::Str(_) | Kind::Null)) {
        return None;
    }
    let (pos, kp) = match (web, commands, start) {
        (_, _, Some(s)) => (&s.pos, path.with("web").with("commands").with("start")),
        (_, Some(c), None) => (&c.pos, path.with("web").with("commands")),
        (Some(w), None, None) => (&w.pos, path.with("web")),
        // Upsun's apps are named by their key, not a `name:`: the app's own key then.
        (None, None, None) if node.get("name").is_none() => (name_pos, path.clone()),
        (None, None, None) => (name_pos, path.with("name")),
    };
    Some(kp.error(
        pos,
        format!(
            "app '{}' has no start command: set web.commands.start (or a `web:` line in the Procfile)",
            app.name
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_sized_as_platform_sh_does() {
        let rt = PhpRuntime::default();
        assert_eq!(rt.max_children(1024), (1024 - 70) / 45);
        assert_eq!(rt.max_children(64), 1);
    }
}
