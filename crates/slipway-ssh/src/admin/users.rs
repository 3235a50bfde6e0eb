//! `user add|rm|ls` over SSH: server admins manage users and keys; the key comes on stdin.

use std::sync::Arc;

use slipway_deploy::Platform;
use slipway_state::User;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::Refusal;

/// The most bytes read from stdin for `user add` (a public key line is far shorter).
const MAX_KEY_INPUT: u64 = 16 * 1024;

/// The longest user name.
const MAX_NAME: usize = 64;

/// Whether `name` is acceptable as a user name: 1..=64 of letters, digits, `.`, `_`, `-`,
/// not starting with `-` or `.`.
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !name.starts_with(['-', '.'])
}

/// Runs `user ARGS` (args after `user`, `--json` removed).
pub(crate) async fn run<R: AsyncRead + Unpin + Send>(
    platform: &Arc<Platform>,
    connections: &crate::connections::Connections,
    me: &User,
    args: &[&str],
    json: bool,
    stdin: R,
) -> Result<String, Refusal> {
    if !me.admin {
        return Err((
            1,
            format!(
                "slipway: permission denied: only server admins manage users ({} is not one)\n",
                me.name
            ),
        ));
    }
    let state = platform.state();
    let internal = |e: slipway_state::StateError| (3, format!("slipway: {e}\n"));
    match args {
        ["ls"] => {
            let users = state.users().map_err(internal)?;
            if json {
                let list: Vec<_> = users
                    .iter()
                    .map(|(u, keys)| serde_json::json!({"name": u.name, "admin": u.admin, "keys": keys}))
                    .collect();
                return Ok(crate::admin::pretty(&list));
            }
            Ok(users
                .iter()
                .map(|(u, keys)| {
                    format!(
                        "{}\t{}\t{keys} key(s)\n",
                        u.name,
                        if u.admin { "admin" } else { "user" }
                    )
                })
                .collect())
        }
        ["add", name] | ["add", name, "--admin"] | ["add", "--admin", name] => {
            let admin = args.contains(&"--admin");
            if !valid_user_name(name) {
                return Err((
                    1,
                    format!("slipway: user name '{}' may hold only letters, digits, '.', '_' and '-' (at most {MAX_NAME}, not starting with '-' or '.')\n", shown(name)),
                ));
            }
            let mut text = Vec::new();
            if let Err(e) = stdin.take(MAX_KEY_INPUT).read_to_end(&mut text).await {
                return Err((1, format!("slipway: cannot read the key from stdin: {e}\n")));
            }
            let text = String::from_utf8_lossy(&text);
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or("");
            if line.is_empty() {
                return Err((
                    1,
                    "slipway: no key on stdin: ssh git@HOST user add NAME < NAME.pub\n".into(),
                ));
            }
            let key =
                crate::parse_public_key_line(line).map_err(|e| (1, format!("slipway: {e}\n")))?;
            state.add_user_key(name, &key, admin).map_err(|e| match e {
                slipway_state::StateError::Conflict(m) => (1, format!("slipway: {m}\n")),
                e => internal(e),
            })?;
            let kind = key.split_whitespace().next().unwrap_or("");
            if json {
                return Ok(crate::admin::pretty(
                    &serde_json::json!({"user": name, "admin": admin, "key_type": kind}),
                ));
            }
            Ok(format!(
                "user {name} added{} with key {kind}\n",
                if admin { " as server admin" } else { "" }
            ))
        }
        ["rm", name] => {
            if *name == me.name {
                return Err((
                    1,
                    "slipway: you cannot remove yourself; ask another server admin\n".into(),
                ));
            }
            match state.remove_user(name) {
                Ok(()) => {
                    // Its open connections end now, not at their next command.
                    let closed = connections.close_user(name);
                    if json {
                        return Ok(crate::admin::pretty(&serde_json::json!({
                            "user": name,
                            "removed": true,
                            "connections_closed": closed,
                        })));
                    }
                    Ok(format!(
                        "user {name} removed{}\n",
                        match closed {
                            0 => String::new(),
                            1 => ", its open connection closed".into(),
                            n => format!(", its {n} open connections closed"),
                        }
                    ))
                }
                Err(slipway_state::StateError::NotFound(_)) => {
                    Err((1, format!("slipway: user '{}' not found\n", shown(name))))
                }
                Err(e) => Err(internal(e)),
            }
        }
        _ => Err((
            2,
            "slipway: usage: user ls | user add NAME [--admin] < KEY.pub | user rm NAME\n".into(),
        )),
    }
}

/// A name as shown in messages: at most 80 characters.
pub(crate) fn shown(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::valid_user_name;

    #[test]
    fn user_names() {
        for ok in ["bob", "Bob.Smith", "a_b-c", "x1"] {
            assert!(valid_user_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-bob",
            ".bob",
            "a b",
            "a/b",
            "a'b",
            &"x".repeat(65),
            "é",
        ] {
            assert!(!valid_user_name(bad), "{bad:?}");
        }
    }
}
