//! Logins and sessions: `ssh git@HOST console` issues a one-time login link (valid
//! [`LOGIN_VALID`], single use); opening it starts a session of that SSH user, kept in a
//! cookie (HttpOnly, SameSite=Strict, Secure under TLS, expiring after
//! [`SESSION_LIFETIME`]). Each session has its own CSRF token for its forms. Only hashes
//! of the link token and of the session id are stored.

use std::time::Duration;

use hyper::header::{HeaderMap, COOKIE};
use slipway_deploy::Platform;
use slipway_state::{ConsoleLogin, ConsoleSession, State, StateError};

use crate::token;

/// How long a login link may wait before it is opened.
pub const LOGIN_VALID: Duration = Duration::from_secs(10 * 60);

/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// The name of the session cookie.
pub const COOKIE_NAME: &str = "slipway_console";

/// Now, in unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The console's host: `console.DOMAIN`.
pub fn console_host(platform: &Platform) -> String {
    format!("console.{}", platform.settings().domain)
}

/// Issue a one-time login link for `user`; returns the URL to open. Over HTTPS when the
/// server has an HTTPS listener, else over HTTP.
pub fn issue_login(platform: &Platform, user: &str) -> Result<String, StateError> {
    let token = token::new_token();
    platform.state().add_console_login(
        &token::hash(&token),
        user,
        now() + LOGIN_VALID.as_secs() as i64,
    )?;
    let settings = platform.settings();
    let host = console_host(platform);
    let base = match settings.https_port {
        Some(443) => format!("https://{host}"),
        Some(port) => format!("https://{host}:{port}"),
        None if settings.http_port == 80 => format!("http://{host}"),
        None => format!("http://{host}:{}", settings.http_port),
    };
    Ok(format!("{base}/login/{token}"))
}

/// Why a login link did not log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Its ten minutes passed.
    Expired,
    /// Never issued (forged or mistyped), already used, or its user was removed.
    Unknown,
}

/// A started session: the cookie value to send and the session's record.
pub struct Started {
    /// The session id (the cookie's value; only its hash is stored).
    pub id: String,
    /// The session.
    pub session: ConsoleSession,
}

/// Use up the login link `link_token` and start a session for its user.
pub fn redeem(
    state: &State,
    link_token: &str,
) -> Result<Result<Started, LoginRefused>, StateError> {
    if !token::well_formed(link_token) {
        return Ok(Err(LoginRefused::Unknown));
    }
    let user = match state.take_console_login(&token::hash(link_token), now())? {
        ConsoleLogin::Valid(user) => user,
        ConsoleLogin::Expired => return Ok(Err(LoginRefused::Expired)),
        ConsoleLogin::Unknown => return Ok(Err(LoginRefused::Unknown)),
    };
    let id = token::new_token();
    let csrf = token::new_token();
    let expires_at = now() + SESSION_LIFETIME.as_secs() as i64;
    state.add_console_session(&token::hash(&id), &user.name, &csrf, expires_at)?;
    Ok(Ok(Started {
        id,
        session: ConsoleSession {
            user,
            csrf,
            expires_at,
        },
    }))
}

/// The session id the request's cookies carry, if any.
pub fn session_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim())
}

/// The live session of the request, if its cookie names one (of a user who still exists).
pub fn session_of(
    state: &State,
    headers: &HeaderMap,
) -> Result<Option<ConsoleSession>, StateError> {
    match session_id(headers).filter(|id| token::well_formed(id)) {
        None => Ok(None),
        Some(id) => state.console_session(&token::hash(id), now()),
    }
}

/// The `Set-Cookie` value that keeps session `id` for `max_age` seconds (0: ends it).
pub fn cookie(id: &str, max_age: i64, https: bool) -> String {
    format!(
        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if https { "; Secure" } else { "" }
    )
}

/// Whether the CSRF token a form sent is the session's.
pub fn csrf_ok(session: &ConsoleSession, sent: Option<&str>) -> bool {
    sent.is_some_and(|sent| token::same(sent, &session.csrf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn state() -> (tempfile::TempDir, State) {
        let dir = tempfile::tempdir().unwrap();
        let state = State::open(&dir.path().join("state.db")).unwrap();
        state
            .add_user_key("ann", "ssh-ed25519 AAAA", false)
            .unwrap();
        (dir, state)
    }

    fn issue(state: &State, valid_for: i64) -> String {
        let t = token::new_token();
        state
            .add_console_login(&token::hash(&t), "ann", now() + valid_for)
            .unwrap();
        t
    }

    #[test]
    fn a_link_starts_one_session_and_then_is_spent() {
        let (_d, state) = state();
        let link = issue(&state, 600);
        let started = redeem(&state, &link).unwrap().ok().unwrap();
        assert_eq!(started.session.user.name, "ann");
        assert!(matches!(
            redeem(&state, &link).unwrap(),
            Err(LoginRefused::Unknown)
        ));
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE_NAME}={}", started.id)).unwrap(),
        );
        let s = session_of(&state, &headers).unwrap().unwrap();
        assert_eq!(s.user.name, "ann");
        assert!(csrf_ok(&s, Some(&started.session.csrf)));
        assert!(!csrf_ok(&s, Some(&token::new_token())));
        assert!(!csrf_ok(&s, None));
        // The stored hash is no session id.
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("{COOKIE_NAME}={}", token::hash(&started.id))).unwrap(),
        );
        assert!(session_of(&state, &headers).unwrap().is_none());
    }

    #[test]
    fn expired_forged_and_removed_users_links_are_refused() {
        let (_d, state) = state();
        let old = issue(&state, -1);
        assert!(matches!(
            redeem(&state, &old).unwrap(),
            Err(LoginRefused::Expired)
        ));
        assert!(matches!(
            redeem(&state, &token::new_token()).unwrap(),
            Err(LoginRefused::Unknown)
        ));
        assert!(matches!(
            redeem(&state, "../../etc").unwrap(),
            Err(LoginRefused::Unknown)
        ));
        let link = issue(&state, 600);
        let started = redeem(&state, &link).unwrap().ok().unwrap();
        state.remove_user("ann").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_str(&format!("{COOKIE_NAME}={}", started.id)).unwrap(),
        );
        assert!(session_of(&state, &headers).unwrap().is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_expiring_and_secure_under_tls() {
        let c = cookie("abc", 60, true);
        for part in [
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=60",
            "Secure",
            "Path=/",
        ] {
            assert!(c.contains(part), "{c}");
        }
        assert!(!cookie("abc", 60, false).contains("Secure"));
    }
}
