//! `console`: a one-time login link to the web console (spec section 11), valid 10
//! minutes, for the user running the command.

use slipway_deploy::Platform;
use slipway_state::User;

/// The command's output, or (exit status, message).
pub(super) fn run(platform: &Platform, user: &User, json: bool) -> Result<String, (i32, String)> {
    let url = slipway_console::issue_login(platform, &user.name).map_err(crate::ops::failure)?;
    let minutes = slipway_console::LOGIN_VALID.as_secs() / 60;
    if json {
        return Ok(super::pretty(
            &serde_json::json!({"user": user.name, "url": url, "valid_seconds": minutes * 60}),
        ));
    }
    Ok(format!(
        "Open this link to log in to the web console as {} (valid {minutes} minutes, once):\n{url}\n",
        user.name
    ))
}
