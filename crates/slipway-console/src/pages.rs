//! The console's HTML (maud, compiled in): a layout with a little CSS and a viewport meta
//! for phones, and one function per page. Pages work without JavaScript; only the live
//! log views carry a small inline script that follows a server-sent event stream.

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// The console's style: readable on a phone and a desktop.
const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;justify-content:space-between}
header a{color:#fff;text-decoration:none;font-weight:600}
header form{margin:0}
main{max-width:60rem;margin:0 auto;padding:1rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.5rem}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #dde1e6;vertical-align:top}
td code{word-break:break-all}
.scroll{overflow-x:auto}
pre.log{background:#0d1117;color:#e6edf3;padding:.75rem;overflow-x:auto;white-space:pre-wrap;word-break:break-word;min-height:4rem;max-height:70vh;overflow-y:auto}
button,.button{background:#1f6feb;color:#fff;border:0;border-radius:4px;padding:.4rem .8rem;font-size:1rem;cursor:pointer;text-decoration:none;display:inline-block}
button.danger,.button.danger{background:#cf222e}
.muted{color:#57606a}
.notice{background:#fff;border-left:4px solid #1f6feb;padding:.75rem 1rem}
.refused{background:#fff;border-left:4px solid #cf222e;padding:.75rem 1rem}
.live{color:#1a7f37;font-weight:600}
input[type=text]{font-size:1rem;padding:.3rem;max-width:100%}
nav.crumbs{margin-bottom:.5rem}
";

/// Who is looking, for the header.
pub struct Viewer<'a> {
    /// The user's name.
    pub user: &'a str,
    /// The session's CSRF token (for the logout form).
    pub csrf: &'a str,
}

/// A whole page: `title`, the header (with the user and a logout button when logged in)
/// and `body`.
pub fn layout(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Slipway" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/" { "Slipway console" }
                    @if let Some(v) = viewer {
                        form method="post" action="/logout" {
                            span { (v.user) " " }
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A refusal or an error: a clear sentence, what to do, no internals.
pub fn refusal(title: &str, message: &str, next: Option<Markup>) -> Markup {
    layout(
        title,
        None,
        html! {
            h1 { (title) }
            div class="refused" {
                p { (message) }
                @if let Some(next) = next { (next) }
            }
            p { a href="/" { "Back to the console" } }
        },
    )
}

/// A confirmation form: `question`, then a POST to `action` with the CSRF token and
/// `fields` (hidden).
pub fn confirm_form(
    question: &str,
    action: &str,
    csrf: &str,
    fields: &[(&str, &str)],
    button: &str,
    cancel: &str,
) -> Markup {
    html! {
        div class="notice" {
            p { (question) }
            form method="post" action=(action) {
                input type="hidden" name="csrf" value=(csrf);
                @for (name, value) in fields {
                    input type="hidden" name=(name) value=(value);
                }
                button class="danger" type="submit" { (button) }
                " "
                a href=(cancel) { "Cancel" }
            }
        }
    }
}

/// The script that follows a server-sent event stream at `events` into the element
/// `#log` (each event's data is a piece of text), and reloads the page on `end`.
pub fn follow_script(events: &str) -> Markup {
    // A JSON string, with `</` broken up so that it cannot end the script element.
    let events = serde_json::Value::String(events.to_string())
        .to_string()
        .replace("</", "<\\/");
    html! {
        script {
            (PreEscaped(format!(
                "(function(){{var log=document.getElementById('log');var s=new EventSource({events});\
                 s.onmessage=function(e){{var atEnd=log.scrollTop+log.clientHeight>=log.scrollHeight-4;\
                 log.textContent+=JSON.parse(e.data);if(atEnd)log.scrollTop=log.scrollHeight;}};\
                 s.addEventListener('end',function(e){{s.close();var st=document.getElementById('status');\
                 if(st)st.textContent=JSON.parse(e.data);}});}})();"
            )))
        }
    }
}

/// A unix time as an HTTP date (UTC).
pub fn time(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    httpdate::fmt_http_date(t)
}

/// The first 12 digits of a commit id.
pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show_and_fit_a_phone() {
        let page = layout("<x>", None, html! { p { ("<script>alert(1)</script>") } }).into_string();
        assert!(page.contains("&lt;script&gt;"), "{page}");
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("width=device-width"), "{page}");
        let script = follow_script("/a</script>").into_string();
        assert!(!script.contains("/a</script>\""), "{script}");
    }
}
