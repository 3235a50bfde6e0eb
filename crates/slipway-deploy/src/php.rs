//! PHP apps without a start command: PHP-FPM from the php stack runs in the app's
//! container, listening on the unix socket [`crate::sockets::SOCKET`] in the container's
//! own `/run` (`DATA/run/CONTAINER` on the host, 0700, the project's user: no other
//! container can reach it), and the router speaks FastCGI to it there. (Releases deployed
//! before had PHP-FPM on `127.0.0.1:$PORT` in the environment's network namespace; their
//! stored spec has no socket and they go on so.)
//!
//! The container's command writes the pool's configuration into its `/tmp` (a tmpfs) and
//! starts `php-fpm` in the foreground: one pool, sized as Platform.sh sizes it from the
//! container's memory and `runtime.sizing_hints`; the stack's extensions minus
//! `runtime.disabled_extensions` (through `PHP_INI_SCAN_DIR`); the app's own `php.ini`
//! (at its root), then `variables.php`, as `php.ini` settings. PHP runs as the container's user (the project's `web` user).

use std::collections::BTreeMap;

use slipway_config::Application;

/// Whether `app` is served by PHP-FPM: a `php` app with no start command.
pub fn serves(app: &Application) -> bool {
    slipway_config::php::served_by_fpm(app)
}

/// The shell command that starts PHP-FPM for `app` on its unix socket, in a container of
/// `memory_bytes` of memory.
pub fn start_command(app: &Application, memory_bytes: u64) -> String {
    let memory_mb = memory_bytes / (1024 * 1024);
    let children = app.runtime.max_children(memory_mb);
    let spare = children.min(4);
    let disabled: Vec<&str> = app
        .runtime
        .disabled_extensions
        .iter()
        .map(String::as_str)
        .collect();
    let ini = php_ini(app.variables.get("php"));
    let terminate = app
        .runtime
        .request_terminate_timeout_s
        .map_or(String::new(), |s| {
            format!("request_terminate_timeout = {s}s\n")
        });
    format!(
        r#"set -e
d=/tmp/.slipway-php
mkdir -p "$d/conf.d"
for f in /etc/php/*/fpm/conf.d/*.ini; do
  [ -e "$f" ] || continue
  n=$(basename "$f" .ini); n=${{n#*-}}
  case " {disabled} " in *" $n "*) continue;; esac
  ln -sf "$f" "$d/conf.d/"
done
[ -f /app/php.ini ] && ln -sf /app/php.ini "$d/conf.d/98-app.ini"
cat > "$d/conf.d/99-slipway.ini" <<'SLIPWAY_INI'
{ini}SLIPWAY_INI
cat > "$d/php-fpm.conf" <<'SLIPWAY_FPM'
[global]
error_log = /proc/self/fd/2
log_limit = 8192
daemonize = no

[web]
listen = {socket}
listen.mode = 0600
listen.backlog = 511
pm = dynamic
pm.max_children = {children}
pm.start_servers = {start}
pm.min_spare_servers = 1
pm.max_spare_servers = {spare}
{terminate}clear_env = no
catch_workers_output = yes
decorate_workers_output = no
SLIPWAY_FPM
export PHP_INI_SCAN_DIR="$d/conf.d"
for b in /usr/sbin/php-fpm*; do exec "$b" --nodaemonize --fpm-config "$d/php-fpm.conf"; done
echo "slipway: no php-fpm in this stack" >&2
exit 1
"#,
        disabled = disabled.join(" "),
        start = spare.min(2),
        socket = crate::sockets::SOCKET,
    )
}

/// `variables.php` as `php.ini` lines (`name = "value"`; nested maps joined with `.`).
/// A value holding a quote or a line break cannot be written to `php.ini` and is left out.
fn php_ini(vars: Option<&BTreeMap<String, serde_json::Value>>) -> String {
    let mut out = String::new();
    let Some(vars) = vars else { return out };
    let mut flat = Vec::new();
    for (k, v) in vars {
        flatten(k, v, &mut flat);
    }
    for (k, v) in flat {
        let ok = |s: &str| !s.contains(['"', '\n', '\r', '\0']);
        let name_ok = !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if name_ok && ok(&v) {
            out.push_str(&format!("{k} = \"{v}\"\n"));
        } else {
            tracing::warn!(setting = %k, "a variables.php setting that php.ini cannot hold is left out");
        }
    }
    out
}

fn flatten(key: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{key}.{k}"), v, out);
            }
        }
        serde_json::Value::String(s) => out.push((key.to_string(), s.clone())),
        serde_json::Value::Bool(b) => {
            out.push((key.to_string(), if *b { "1" } else { "0" }.into()))
        }
        serde_json::Value::Null => out.push((key.to_string(), String::new())),
        other => out.push((key.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn php_app() -> Application {
        Application {
            name: "app".into(),
            r#type: Some("php:8.4".into()),
            ..Application::default()
        }
    }

    #[test]
    fn only_php_apps_without_start_are_fpm() {
        let mut app = php_app();
        assert!(serves(&app));
        app.web.start = Some("php -S 127.0.0.1:$PORT".into());
        assert!(!serves(&app));
        app.web.start = None;
        app.r#type = Some("python:3.11".into());
        assert!(!serves(&app));
    }

    #[test]
    fn pool_settings_and_ini_are_written() {
        let mut app = php_app();
        app.runtime.disabled_extensions = vec!["redis".into()];
        let mut php = BTreeMap::new();
        php.insert("memory_limit".to_string(), serde_json::json!("256M"));
        php.insert(
            "opcache".to_string(),
            serde_json::json!({"enable": true, "bad": "a\"b"}),
        );
        app.variables.insert("php".into(), php);
        let cmd = start_command(&app, 1024 * 1024 * 1024);
        assert!(cmd.contains("listen = /run/app.sock\nlisten.mode = 0600\n"));
        assert!(cmd.contains(&format!("pm.max_children = {}", (1024 - 70) / 45)));
        assert!(cmd.contains("case \" redis \""));
        assert!(cmd.contains("memory_limit = \"256M\""));
        assert!(cmd.contains("opcache.enable = \"1\""));
        assert!(!cmd.contains("opcache.bad"));
        assert!(!cmd.contains("request_terminate_timeout"));
        app.runtime.request_terminate_timeout_s = Some(300);
        let cmd = start_command(&app, 1024 * 1024 * 1024);
        assert!(cmd.contains("pm.max_spare_servers = 4\nrequest_terminate_timeout = 300s\n"));
    }
}
