//! The web console (spec section 11) against a real server: one-time login links from
//! `ssh git@HOST console`, sessions, pages, rollback with its confirmation and CSRF token,
//! live push logs as server-sent events, and every bad input refused with nothing changed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use slipway_e2e::{header_field, text, App, Server};

const APP_HOST: &str = "main.demo.localhost";

/// Log in through a fresh link; the cookie to send.
fn log_in(server: &Server, key: &std::path::Path) -> String {
    let cookie = server.console_log_in(key);
    for part in ["HttpOnly", "SameSite=Strict", "Max-Age=", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure over plain HTTP: {cookie}"
    );
    cookie.split(';').next().unwrap().to_string()
}

/// Log in through a fresh link ([`log_in`]): the cookie to send and the CSRF token of the
/// console's home page for it.
fn session(server: &Server, key: &std::path::Path) -> (String, String) {
    let cookie = log_in(server, key);
    let (_, _, home) = server.console("GET", "/", Some(&cookie), None);
    let csrf = csrf_of(&home);
    (cookie, csrf)
}

/// The CSRF token in a page's form.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    page[at..at + 64].to_string()
}

fn app_body(server: &Server) -> String {
    server
        .get(APP_HOST, "/")
        .map(|(_, b)| b)
        .unwrap_or_default()
}

fn push(server: &Server, app: &App) {
    server.push_ok(app, "demo");
}

#[test]
fn login_pages_rollback_and_every_bad_input() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    push(&server, &app);
    app.write("VERSION", "2\n");
    app.commit("v2");
    push(&server, &app);
    assert_eq!(app_body(&server), "built-2\n");
    let o = server.ssh(&server.key, "git", "var set demo main MODE=plain-value");
    assert!(o.status.success(), "{}", text(&o));
    let o = server.ssh(
        &server.key,
        "git",
        "var set --sensitive demo main TOKEN=s3cret-value",
    );
    assert!(o.status.success(), "{}", text(&o));

    // Not logged in: a page saying how, no stack trace.
    let (status, _, body) = server.console("GET", "/", None, None);
    assert_eq!(status, 401);
    assert!(body.contains("ssh git@HOST console"), "{body}");

    // A forged link, a malformed one.
    for path in [
        format!("/login/{}", "ab".repeat(32)),
        "/login/not-a-token".to_string(),
    ] {
        let (status, head, body) = server.console("GET", &path, None, None);
        assert_eq!(status, 403, "{path}: {body}");
        assert!(header_field(&head, "set-cookie").is_none(), "{head}");
        assert!(body.contains("login link is not valid"), "{body}");
    }

    // The link logs in once.
    let path = server.console_login_path(&server.key);
    let (status, head, _) = server.console("GET", &path, None, None);
    assert_eq!(status, 303, "{head}");
    let admin = header_field(&head, "set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (status, head, body) = server.console("GET", &path, None, None);
    assert_eq!(status, 403, "a reused link: {body}");
    assert!(header_field(&head, "set-cookie").is_none(), "{head}");
    assert!(body.contains("already used"), "{body}");

    // An expired link (its ten minutes passed). Only the hash of a link is stored.
    let path = server.console_login_path(&server.key);
    let token = path.trim_start_matches("/login/").to_string();
    let db = rusqlite::Connection::open(server.data.join("state.db")).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [&token], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM console_logins WHERE ?1 IS NOT NULL"),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM console_logins WHERE token_hash = ?1 OR user = ?1"),
        0
    );
    db.execute("UPDATE console_logins SET expires_at = 1", [])
        .unwrap();
    let (status, _, body) = server.console("GET", &path, None, None);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("expired"), "{body}");

    // Pages: projects, the project's environments, releases.
    let (status, head, body) = server.console("GET", "/", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(header_field(&head, "content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(body.contains("href=\"/p/demo\""), "{body}");
    assert!(body.contains("width=device-width"), "{body}");
    let (status, _, body) = server.console("GET", "/p/demo", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("release 4"), "{body}");
    assert!(
        body.contains(&format!("http://main.demo.localhost:{}/", server.http_port)),
        "{body}"
    );
    assert!(body.contains("live"), "{body}");
    let (status, _, body) = server.console("GET", "/p/demo/e/main", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Roll back to 1"), "{body}");
    assert!(body.contains("reused") && body.contains("built"), "{body}");
    assert!(body.contains(">me<"), "who pushed: {body}");
    // Variables: the plain value for an admin, never the sensitive one.
    let (status, _, body) = server.console("GET", "/p/demo/e/main/vars", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("plain-value") && body.contains("TOKEN"),
        "{body}"
    );
    assert!(!body.contains("s3cret-value"), "{body}");
    // The app's log, with the script that follows it.
    let (status, _, body) = server.console("GET", "/p/demo/e/main/logs", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("hello listening on"), "{body}");
    assert!(
        body.contains("/p/demo/e/main/logs/events?app=hello"),
        "{body}"
    );
    // Activity, replayed.
    let (status, _, body) = server.console("GET", "/p/demo/activity", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("href=\"/activity/1\""), "{body}");
    let (status, _, body) = server.console("GET", "/activity/1", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("-----&gt;") || body.contains("-----"),
        "{body}"
    );

    // Rollback: a confirmation page, then a POST with the CSRF token.
    let (status, _, confirm) =
        server.console("GET", "/p/demo/e/main/rollback/1", Some(&admin), None);
    assert_eq!(status, 200, "{confirm}");
    assert!(confirm.contains("method=\"post\""), "{confirm}");
    let csrf = csrf_of(&confirm);
    assert_eq!(
        app_body(&server),
        "built-2\n",
        "a confirmation page changes nothing"
    );
    // Without the token, with a wrong one, without a session: refused, nothing changed.
    for (cookie, form, want) in [
        (Some(admin.as_str()), String::new(), 403),
        (
            Some(admin.as_str()),
            format!("csrf={}", "0".repeat(64)),
            403,
        ),
        (Some(admin.as_str()), format!("csrf={}", &csrf[..63]), 403),
        (None, format!("csrf={csrf}"), 401),
        (Some("slipway_console=forged"), format!("csrf={csrf}"), 401),
    ] {
        let (status, _, body) =
            server.console("POST", "/p/demo/e/main/rollback/1", cookie, Some(&form));
        assert_eq!(status, want, "{cookie:?} {form}: {body}");
        assert!(
            !body.contains("panicked") && !body.contains("RUST_BACKTRACE"),
            "{body}"
        );
        assert_eq!(app_body(&server), "built-2\n");
    }
    // It runs in the background: the answer goes to its activity, which ends live.
    let (status, head, body) = server.console(
        "POST",
        "/p/demo/e/main/rollback/1",
        Some(&admin),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(status, 303, "{head}\n{body}");
    let (_, body) = ended_activity(&server, &admin, &head);
    assert!(
        body.contains("success: rollback of main to release 1: release 5 live"),
        "{body}"
    );
    assert!(
        body.contains("-----&gt; rollback of main to release 1"),
        "{body}"
    );
    assert_eq!(app_body(&server), "built-1\n");

    // Variables from the console: confirmed first, then set and redeployed; a platform
    // name refused.
    let form = format!("csrf={csrf}&key=FROM_CONSOLE&value=a+b%26c");
    let (status, _, body) =
        server.console("POST", "/p/demo/e/main/vars/set", Some(&admin), Some(&form));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Set FROM_CONSOLE on main of demo?"), "{body}");
    let var_ls = || text(&server.ssh(&server.key, "git", "var ls demo main"));
    assert!(
        !var_ls().contains("FROM_CONSOLE"),
        "a confirmation page changes nothing"
    );
    let (status, head, body) = server.console(
        "POST",
        "/p/demo/e/main/vars/set",
        Some(&admin),
        Some(&format!("{form}&confirmed=yes")),
    );
    assert_eq!(status, 303, "{head}\n{body}");
    assert!(var_ls().contains("FROM_CONSOLE=a b&c"), "{}", var_ls());
    let (_, body) = ended_activity(&server, &admin, &head);
    assert!(
        body.contains("success: redeploy of main (release 5): release 6 live"),
        "{body}"
    );
    assert!(var_ls().contains("FROM_CONSOLE=a b&c"), "{}", var_ls());
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/e/main/vars/set",
        Some(&admin),
        Some(&format!("csrf={csrf}&key=PORT&value=1&confirmed=yes")),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("belong to the platform"), "{body}");
    let (status, _, body) = server.console(
        "GET",
        "/p/demo/e/main/vars/unset/FROM_CONSOLE",
        Some(&admin),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, head, body) = server.console(
        "POST",
        "/p/demo/e/main/vars/unset/FROM_CONSOLE",
        Some(&admin),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(status, 303, "{head}\n{body}");
    let (_, body) = ended_activity(&server, &admin, &head);
    assert!(body.contains("release 7 live"), "{body}");
    assert!(!var_ls().contains("FROM_CONSOLE"), "{}", var_ls());
    assert_eq!(app_body(&server), "built-1\n");

    // A viewer sees, and is refused the button.
    let val = server.add_user_with_role("val", "demo", "viewer");
    let viewer = log_in(&server, &val);
    let (status, _, body) = server.console("GET", "/p/demo/e/main", Some(&viewer), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        !body.contains("Roll back to"),
        "no rollback button for a viewer: {body}"
    );
    let (status, _, body) = server.console("GET", "/p/demo/e/main/vars", Some(&viewer), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("MODE") && !body.contains("plain-value") && !body.contains("s3cret-value"),
        "{body}"
    );
    let (status, _, body) = server.console("GET", "/p/demo/e/main/rollback/4", Some(&viewer), None);
    assert_eq!(status, 403, "{body}");
    let (_, _, home) = server.console("GET", "/", Some(&viewer), None);
    let viewer_csrf = csrf_of(&home);
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/e/main/rollback/4",
        Some(&viewer),
        Some(&format!("csrf={viewer_csrf}")),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("permission denied: this needs the admin role on demo"),
        "{body}"
    );
    assert_eq!(app_body(&server), "built-1\n", "nothing changed");
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/e/main/vars/set",
        Some(&viewer),
        Some(&format!("csrf={viewer_csrf}&key=X&value=1&confirmed=yes")),
    );
    assert_eq!(status, 403, "{body}");
    assert!(!var_ls().contains("X="), "{}", var_ls());
    // Another session's token is no good either.
    let (status, _, _) = server.console(
        "POST",
        "/p/demo/e/main/rollback/4",
        Some(&viewer),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(status, 403);
    // A project the viewer has no access to does not exist for it.
    let (status, _, _) = server.console("GET", "/p/other", Some(&viewer), None);
    assert_eq!(status, 404);

    // A removed user's session is refused.
    let o = server.slipway(&["user", "rm", "val"]);
    assert!(o.status.success(), "{}", text(&o));
    let (status, head, body) = server.console("GET", "/p/demo", Some(&viewer), None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("session has ended"), "{body}");
    assert!(
        header_field(&head, "set-cookie").is_some_and(|c| c.contains("Max-Age=0")),
        "{head}"
    );

    // Logging out ends the session.
    let (status, _, _) = server.console(
        "POST",
        "/logout",
        Some(&admin),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(status, 200);
    let (status, _, _) = server.console("GET", "/", Some(&admin), None);
    assert_eq!(status, 401);
    assert_eq!(app_body(&server), "built-1\n");
}

/// Read a server-sent event stream until its `end` event; the data events' texts, each
/// with whether `running` still said yes when it arrived.
fn read_events(
    server: &Server,
    path: &str,
    cookie: &str,
    mut running: impl FnMut() -> bool,
) -> (Vec<(String, bool)>, String) {
    let mut s = TcpStream::connect(("127.0.0.1", server.http_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: console.localhost\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = String::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "no end event: {buf}");
        let n = s.read(&mut chunk).unwrap();
        if n == 0 {
            panic!("the stream ended without an end event: {buf}");
        }
        let alive = running();
        buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        while let Some(i) = buf.find("\n\n") {
            let ev: String = buf[..i].to_string();
            buf.drain(..i + 2);
            // (Chunk sizes of the chunked body may stand in front of an event.)
            if let Some(at) = ev.find("event: end\ndata: ") {
                return (got, serde_json::from_str(&ev[at + 17..]).unwrap());
            }
            if let Some(at) = ev.find("data: ") {
                let data: String =
                    serde_json::from_str(ev[at + 6..].lines().next().unwrap()).unwrap();
                got.push((data, alive));
            }
        }
    }
}

#[test]
fn a_push_log_streams_live_and_is_replayed_after() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    push(&server, &app);
    let admin = log_in(&server, &server.key);
    // A push whose build takes a while, printing as it goes.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    for i in 1 2 3 4 5 6; do echo slow-step-$i; sleep 1; done\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.write("VERSION", "2\n");
    app.commit("v2");
    let pusher = server.push_in_background(&app, "demo");
    // The running push shows up in the activity list.
    let db = rusqlite::Connection::open(server.data.join("state.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let id: i64 = loop {
        let id = db
            .query_row(
                "SELECT id FROM activity WHERE status = 'running' AND kind = 'push'",
                [],
                |r| r.get(0),
            )
            .ok();
        if let Some(id) = id {
            break id;
        }
        assert!(Instant::now() < deadline, "no running push");
        std::thread::sleep(Duration::from_millis(100));
    };
    let (status, _, page) = server.console("GET", &format!("/activity/{id}"), Some(&admin), None);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("EventSource"),
        "a running push's page follows it: {page}"
    );
    let (events, end) = read_events(&server, &format!("/activity/{id}/events"), &admin, || {
        !pusher.is_finished()
    });
    let o = pusher.join().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let streamed: String = events.iter().map(|(d, _)| d.as_str()).collect();
    assert!(
        streamed.contains("slow-step-1") && streamed.contains("slow-step-6"),
        "{streamed}"
    );
    assert!(
        events
            .iter()
            .any(|(d, running)| d.contains("slow-step") && *running),
        "build lines arrived while the push ran: {events:?}"
    );
    assert!(end.starts_with("success"), "{end}");
    assert_eq!(app_body(&server), "built-2\n");
    // Replayed afterwards: the page holds the whole log and follows nothing.
    let (_, _, page) = server.console("GET", &format!("/activity/{id}"), Some(&admin), None);
    assert!(page.contains("slow-step-6"), "{page}");
    assert!(!page.contains("EventSource"), "{page}");
    let (events, end) = read_events(&server, &format!("/activity/{id}/events"), &admin, || false);
    assert!(events
        .iter()
        .map(|(d, _)| d.as_str())
        .collect::<String>()
        .contains("slow-step-3"));
    assert!(end.starts_with("success"), "{end}");
}

/// A headless Chromium driven over its DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: commands on fd 3, answers on fd 4, each message a JSON
/// text ended by a NUL): no debugging port, and every host name resolves to 127.0.0.1.
mod browser {
    use std::fs::File;
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    /// The browser process and its protocol pipe.
    pub struct Browser {
        child: Child,
        to: File,
        from: mpsc::Receiver<Value>,
        next: u64,
        _profile: tempfile::TempDir,
    }

    /// One tab, in its own browser context (own cookies) unless said otherwise.
    pub struct Tab {
        session: String,
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0i32; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    impl Tab {
        /// The tab's protocol session.
        pub fn session(&self) -> &str {
            &self.session
        }
    }

    impl Browser {
        /// Start `chromium` (Debian's package; root needs `--no-sandbox`).
        pub fn start() -> Browser {
            let profile = tempfile::Builder::new()
                .prefix("slipway-chromium-")
                .tempdir()
                .unwrap();
            let (cmd_read, cmd_write) = pipe();
            let (out_read, out_write) = pipe();
            let (cmd_fd, out_fd) = (cmd_read.into_raw_fd(), out_write.into_raw_fd());
            let mut command = Command::new("chromium");
            command
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--remote-debugging-pipe",
                    "--host-resolver-rules=MAP * 127.0.0.1",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-default-apps",
                    "--disable-extensions",
                    "--disable-domain-reliability",
                    "--disable-client-side-phishing-detection",
                    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-gpu",
                    "--window-size=1100,900",
                ])
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                // Its own process group, so that its helper processes (zygote, renderers)
                // are killed with it and write nothing into the profile once it is removed.
                .process_group(0);
            unsafe {
                command.pre_exec(move || {
                    if libc::dup2(cmd_fd, 3) < 0 || libc::dup2(out_fd, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = command.spawn().unwrap_or_else(|e| {
                panic!("starting chromium ({e}): scripts/install-deps installs it")
            });
            unsafe {
                libc::close(cmd_fd);
                libc::close(out_fd);
            }
            let (tx, from) = mpsc::channel();
            let reader = File::from(out_read);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(reader);
                loop {
                    let mut msg = Vec::new();
                    match reader.read_until(0, &mut msg) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    msg.pop();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            });
            Browser {
                child,
                to: File::from(cmd_write),
                from,
                next: 0,
                _profile: profile,
            }
        }

        /// Send `method` (to a tab's session, if given) and wait for its result.
        pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
            self.try_call(session, method, params)
                .unwrap_or_else(|e| panic!("{method}: {e}"))
        }

        /// Send `method` and wait for its result or its error.
        fn try_call(
            &mut self,
            session: Option<&str>,
            method: &str,
            params: Value,
        ) -> Result<Value, Value> {
            self.next += 1;
            let id = self.next;
            let mut msg = json!({"id": id, "method": method, "params": params});
            if let Some(s) = session {
                msg["sessionId"] = json!(s);
            }
            let mut bytes = serde_json::to_vec(&msg).unwrap();
            bytes.push(0);
            self.to.write_all(&bytes).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let v = self
                    .from
                    .recv_timeout(left)
                    .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
                if v["id"] == json!(id) {
                    if let Some(e) = v.get("error") {
                        return Err(e.clone());
                    }
                    return Ok(v["result"].clone());
                }
            }
        }

        /// A new tab; `own_cookies`: in a browser context of its own.
        pub fn tab(&mut self, own_cookies: bool) -> Tab {
            let mut params = json!({"url": "about:blank"});
            if own_cookies {
                let ctx = self.call(None, "Target.createBrowserContext", json!({}));
                params["browserContextId"] = ctx["browserContextId"].clone();
            }
            let target = self.call(None, "Target.createTarget", params);
            let attached = self.call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            );
            let tab = Tab {
                session: attached["sessionId"].as_str().unwrap().to_string(),
            };
            self.call(Some(&tab.session), "Page.enable", json!({}));
            self.call(Some(&tab.session), "Runtime.enable", json!({}));
            tab
        }

        /// Open `url` in `tab` and wait for the page to be loaded.
        pub fn open(&mut self, tab: &Tab, url: &str) {
            self.call(Some(&tab.session), "Page.navigate", json!({"url": url}));
            self.wait(
                tab,
                "document.readyState === 'complete' && location.href !== 'about:blank'",
            );
        }

        /// The value of JavaScript `expression` in the tab (null while the tab is
        /// between two pages).
        pub fn eval(&mut self, tab: &Tab, expression: &str) -> Value {
            let Ok(r) = self.try_call(
                Some(&tab.session),
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            ) else {
                return Value::Null;
            };
            r["result"]["value"].clone()
        }

        /// Wait (up to 120 s) until `condition` (JavaScript) is true in the tab.
        pub fn wait(&mut self, tab: &Tab, condition: &str) {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if self.eval(
                    tab,
                    &format!(
                        "(function(){{try{{return !!({condition});}}catch(e){{return false;}}}})()"
                    ),
                ) == json!(true)
                {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "waited in vain for {condition}; the page says: {}",
                    self.text(tab)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }

        /// The page's visible text.
        pub fn text(&mut self, tab: &Tab) -> String {
            self.eval(tab, "document.body ? document.body.innerText : ''")
                .as_str()
                .unwrap_or("")
                .to_string()
        }

        /// Click the element `selector` names and wait for the next page to load.
        pub fn click_and_load(&mut self, tab: &Tab, selector: &str) {
            let marked = self.eval(
                tab,
                &format!("(function(){{var e=document.querySelector({sel});if(!e)return false;window.__old=true;e.click();return true;}})()", sel = json!(selector)),
            );
            // (Null: the click navigated before the answer came.)
            assert_ne!(marked, json!(false), "no {selector}: {}", self.text(tab));
            self.wait(
                tab,
                "window.__old === undefined && document.readyState === 'complete'",
            );
        }

        /// Save a PNG screenshot of the tab as `name` in target/console-screenshots/.
        pub fn screenshot(&mut self, tab: &Tab, name: &str) {
            use base64::Engine as _;
            let r = self.call(
                Some(&tab.session),
                "Page.captureScreenshot",
                json!({"format": "png"}),
            );
            let png = base64::engine::general_purpose::STANDARD
                .decode(r["data"].as_str().unwrap_or(""))
                .unwrap();
            let dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target")
                })
                .join("console-screenshots");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), png).unwrap();
        }
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            // SAFETY: a signal to the browser's own process group (`process_group(0)`).
            unsafe {
                libc::kill(-(self.child.id() as i32), libc::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            // Helpers of the group may take a moment to go.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn chromium_logs_in_watches_a_push_rolls_back_and_a_viewer_is_refused() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    with_cron_and_service(&app);
    push(&server, &app);
    app.write("VERSION", "2\n");
    app.commit("v2");
    push(&server, &app);
    let base = format!("http://console.localhost:{}", server.http_port);
    let mut b = browser::Browser::start();

    // Admin: the one-time link logs in and lands on the projects.
    let admin = b.tab(true);
    b.open(
        &admin,
        &format!("{base}{}", server.console_login_path(&server.key)),
    );
    b.wait(
        &admin,
        "location.pathname === '/' && document.body.innerText.includes('demo')",
    );
    b.screenshot(&admin, "projects.png");
    b.click_and_load(&admin, "a[href='/p/demo']");
    let t = b.text(&admin);
    assert!(t.contains("release 2") && t.contains("live"), "{t}");
    b.screenshot(&admin, "project.png");
    // The pages of what SSH shows beyond releases.
    for (path, shot, want) in [
        ("/p/demo/e/main/services", "services.png", "redis:7.0"),
        ("/p/demo/e/main/crons", "crons.png", "@yearly"),
        ("/p/demo/access", "access.png", "Grant a role"),
        ("/p/demo/domains", "domains.png", "Assign a host"),
        ("/p/demo/e/main/backups", "backups.png", "Create backup"),
    ] {
        b.open(&admin, &format!("{base}{path}"));
        let t = b.text(&admin);
        assert!(t.contains(want), "{path}: {t}");
        b.screenshot(&admin, shot);
    }
    // A grant through the form, its confirmation, then done.
    server.add_user("wes");
    b.open(&admin, &format!("{base}/p/demo/access"));
    b.eval(
        &admin,
        "document.querySelector('input[name=user]').value='wes';document.querySelector('select[name=role]').value='contributor'",
    );
    b.click_and_load(&admin, "form[action='/p/demo/access/grant'] button");
    assert!(
        b.text(&admin).contains("Make wes contributor of demo?"),
        "{}",
        b.text(&admin)
    );
    b.screenshot(&admin, "access-confirm.png");
    b.click_and_load(&admin, "form[action='/p/demo/access/grant'] button.danger");
    let t = b.text(&admin);
    assert!(t.contains("wes is now contributor of demo"), "{t}");
    let o = server.ssh(&server.key, "git", "access ls demo");
    assert!(text(&o).contains("wes\tcontributor"), "{}", text(&o));
    // The same page on a phone's screen.
    b.call(
        Some(admin.session()),
        "Emulation.setDeviceMetricsOverride",
        serde_json::json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    b.open(&admin, &format!("{base}/p/demo/e/main"));
    b.screenshot(&admin, "environment-phone.png");
    b.open(&admin, &format!("{base}/p/demo/e/main/crons"));
    b.screenshot(&admin, "crons-phone.png");
    b.call(
        Some(admin.session()),
        "Emulation.clearDeviceMetricsOverride",
        serde_json::json!({}),
    );

    // A push's log streams into the page while the push runs.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    for i in 1 2 3 4 5 6 7 8; do echo slow-step-$i; sleep 1; done\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.write("VERSION", "3\n");
    app.commit("v3");
    let pusher = server.push_in_background(&app, "demo");
    let db = rusqlite::Connection::open(server.data.join("state.db")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let id: i64 = loop {
        if let Ok(id) = db.query_row(
            "SELECT id FROM activity WHERE status = 'running' AND kind = 'push'",
            [],
            |r| r.get(0),
        ) {
            break id;
        }
        assert!(Instant::now() < deadline, "no running push");
        std::thread::sleep(Duration::from_millis(100));
    };
    b.open(&admin, &format!("{base}/activity/{id}"));
    b.wait(
        &admin,
        "document.getElementById('log').textContent.includes('slow-step-2')",
    );
    assert!(
        !pusher.is_finished(),
        "the log streamed in while the push ran"
    );
    b.screenshot(&admin, "push-log-live.png");
    b.wait(
        &admin,
        "document.getElementById('status').textContent.startsWith('success')",
    );
    let o = pusher.join().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let t = b.text(&admin);
    assert!(t.contains("slow-step-8"), "{t}");
    b.screenshot(&admin, "push-log-done.png");
    assert_eq!(app_body(&server), "built-3\n");

    // Rollback as admin: the button, the confirmation, then the old release live.
    b.open(&admin, &format!("{base}/p/demo/e/main"));
    b.screenshot(&admin, "environment.png");
    b.click_and_load(&admin, "a[href='/p/demo/e/main/rollback/1']");
    assert!(b
        .text(&admin)
        .contains("Roll main of demo back to release 1?"));
    b.screenshot(&admin, "rollback-confirm.png");
    b.click_and_load(&admin, "form[action='/p/demo/e/main/rollback/1'] button");
    // Off to its activity, whose log streams in until it ends.
    b.wait(
        &admin,
        "location.pathname.startsWith('/activity/') && document.getElementById('status').textContent.startsWith('success')",
    );
    let t = b.text(&admin);
    assert!(t.contains("release 4 live"), "{t}");
    assert!(t.contains("-----> switch"), "{t}");
    b.screenshot(&admin, "rollback-done.png");
    b.open(
        &admin,
        &format!("http://main.demo.localhost:{}/", server.http_port),
    );
    assert_eq!(b.text(&admin).trim(), "built-1");
    assert_eq!(app_body(&server), "built-1\n");

    // A viewer, in a browser context of its own: no button, and the action refused.
    let val = server.add_user_with_role("val", "demo", "viewer");
    let viewer = b.tab(true);
    b.open(
        &viewer,
        &format!("{base}{}", server.console_login_path(&val)),
    );
    b.wait(&viewer, "location.pathname === '/'");
    b.open(&viewer, &format!("{base}/p/demo/e/main"));
    assert!(
        !b.text(&viewer).contains("Roll back"),
        "{}",
        b.text(&viewer)
    );
    b.screenshot(&viewer, "viewer-environment.png");
    b.open(&viewer, &format!("{base}/p/demo/e/main/rollback/4"));
    assert!(
        b.text(&viewer).contains("permission denied"),
        "{}",
        b.text(&viewer)
    );
    // The same POST the admin's button sent, with the viewer's own CSRF token.
    b.open(&viewer, &format!("{base}/"));
    b.eval(
        &viewer,
        "(function(){var f=document.createElement('form');f.method='post';f.action='/p/demo/e/main/rollback/4';\
         var c=document.createElement('input');c.type='hidden';c.name='csrf';c.value=document.querySelector('input[name=csrf]').value;\
         f.appendChild(c);document.body.appendChild(f);window.__old=true;f.submit();})()",
    );
    b.wait(
        &viewer,
        "window.__old === undefined && document.readyState === 'complete'",
    );
    let t = b.text(&viewer);
    assert!(
        t.contains("permission denied: this needs the admin role on demo"),
        "{t}"
    );
    b.screenshot(&viewer, "viewer-refused.png");
    assert_eq!(app_body(&server), "built-1\n", "nothing changed");
}

#[test]
fn over_https_the_link_is_https_and_the_cookie_secure() {
    let https_port = slipway_e2e::free_port();
    let listen = format!("127.0.0.1:{https_port}");
    let server = Server::start_with(&[("SLIPWAY_HTTPS_LISTEN", &listen)]);
    let ca = server.data.join("ca").join("ca.pem");
    let o = server.ssh(&server.key, "git", "console");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let prefix = format!("https://console.localhost:{https_port}/login/");
    let url = out
        .split_whitespace()
        .find(|w| w.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no https login URL in {out}"))
        .to_string();
    let curl = |url: &str, cookie: Option<&str>| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "-D", "-", "--cacert"])
            .arg(&ca)
            .arg("--resolve")
            .arg(format!("console.localhost:{https_port}:127.0.0.1"));
        if let Some(c) = cookie {
            cmd.args(["-H", &format!("Cookie: {c}")]);
        }
        let o = slipway_e2e::run(cmd.arg(url));
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // The console's host gets a certificate of the local CA (curl checks it).
    let answer = curl(&url, None);
    assert!(
        answer.starts_with("HTTP/2 303") || answer.starts_with("HTTP/1.1 303"),
        "{answer}"
    );
    let cookie = header_field(&answer, "set-cookie").expect("a cookie");
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let page = curl(
        &format!("https://console.localhost:{https_port}/"),
        Some(&session),
    );
    assert!(page.contains("Projects"), "{page}");
    // An environment routed https:// is linked at its https:// URL.
    let app = App::demo(server.dir.path(), "app");
    app.write(
        ".platform/routes.yaml",
        "\"https://{default}/\":\n  type: upstream\n  upstream: \"hello:http\"\n",
    );
    app.commit("an https route");
    push(&server, &app);
    let url = format!("https://{APP_HOST}:{https_port}/");
    for path in ["/p/demo", "/p/demo/e/main"] {
        let page = curl(
            &format!("https://console.localhost:{https_port}{path}"),
            Some(&session),
        );
        assert!(page.contains(&format!("href=\"{url}\"")), "{path}: {page}");
    }
}

#[test]
fn releases_record_who_made_them_over_ssh_and_in_the_console() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    push(&server, &app);
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main:dev"]);
    assert!(o.status.success(), "push dev: {}", text(&o));
    // A contributor redeploys dev over SSH, then changes a variable in the console.
    let cora = server.add_user_with_role("cora", "demo", "contributor");
    let o = server.ssh(&cora, "git", "redeploy demo dev");
    assert!(o.status.success(), "{}", text(&o));
    let (session, csrf) = session(&server, &cora);
    let (status, head, body) = server.console(
        "POST",
        "/p/demo/e/dev/vars/set",
        Some(&session),
        Some(&format!("csrf={csrf}&key=FROM_CORA&value=1&confirmed=yes")),
    );
    assert_eq!(status, 303, "{body}");
    let (_, body) = ended_activity(&server, &session, &head);
    assert!(body.contains("release 3 live"), "{body}");
    assert!(body.contains("By cora,"), "{body}");
    // The first release of dev as one recorded before releases kept their author.
    let db = rusqlite::Connection::open(server.data.join("state.db")).unwrap();
    let n = db
        .execute(
            "UPDATE releases SET author = NULL WHERE environment = 'dev' AND number = 1",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);

    let releases = |env: &str| {
        let o = server.ssh(&server.key, "git", &format!("releases demo {env}"));
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let main = releases("main");
    assert!(
        main.lines().next().unwrap_or("").ends_with("\tby me"),
        "{main}"
    );
    let dev: Vec<String> = releases("dev").lines().map(str::to_string).collect();
    assert_eq!(dev.len(), 3, "{dev:?}");
    for (line, want) in dev.iter().zip(["3\tlive", "2\tretired", "1\tretired"]) {
        assert!(line.starts_with(want), "{dev:?}");
    }
    assert!(
        dev[0].ends_with("\tby cora"),
        "the console's variable change: {dev:?}"
    );
    assert!(dev[1].ends_with("\tby cora"), "the SSH redeploy: {dev:?}");
    assert!(dev[2].ends_with("\tby unknown"), "not recorded: {dev:?}");
    let o = server.ssh(&server.key, "git", "releases demo dev --json");
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        json[0]["author"],
        serde_json::json!({"kind": "user", "name": "cora"})
    );
    assert_eq!(json[2]["author"], serde_json::json!({"kind": "unknown"}));

    // The console's releases page shows the same.
    let (status, _, body) = server.console("GET", "/p/demo/e/dev", Some(&session), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<td>cora</td>"), "{body}");
    assert!(body.contains(">unknown<"), "{body}");
    assert!(
        !body.contains("<td>me</td>"),
        "nobody else is named: {body}"
    );
    let (_, _, body) = server.console("GET", "/p/demo/e/main", Some(&session), None);
    assert!(body.contains("<td>me</td>"), "{body}");
}

/// The demo app with a cron that exits 3 and a Redis service (a test stack).
fn with_cron_and_service(app: &App) {
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\ncrons:\n  report:\n    spec: '@yearly'\n    commands:\n      start: 'echo report ran; exit 3'\n",
    );
    app.write(".platform/services.yaml", "cache:\n  type: redis:7.0\n");
    app.commit("a cron and a service");
}

#[test]
fn crons_services_access_and_domains_pages_check_as_ssh_does() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    with_cron_and_service(&app);
    push(&server, &app);
    let o = server.ssh(&server.key, "git", "cron run demo main report");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("failed with exit status 3"),
        "{}",
        text(&o)
    );
    let (admin, csrf) = session(&server, &server.key);

    // Crons: schedule, next run, the last run's exit status and a link to its log.
    let (status, _, body) = server.console("GET", "/p/demo/e/main/crons", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("report") && body.contains("@yearly"),
        "{body}"
    );
    assert!(body.contains("failure: exit status 3"), "{body}");
    let at = body
        .find("href=\"/activity/")
        .expect("a link to the run's log")
        + 16;
    let id: String = body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let (status, _, log) = server.console("GET", &format!("/activity/{id}"), Some(&admin), None);
    assert_eq!(status, 200);
    assert!(log.contains("report ran"), "{log}");
    // Services: type, state, disk, as `services` says.
    let (status, _, body) = server.console("GET", "/p/demo/e/main/services", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("redis:7.0") && body.contains("running") && body.contains("MiB used of"),
        "{body}"
    );
    let ssh = text(&server.ssh(&server.key, "git", "services demo main"));
    assert!(ssh.contains("cache\tredis:7.0\trunning"), "{ssh}");

    // A viewer sees crons, services and domains (read-only), not access, and cannot grant.
    let val = server.add_user_with_role("val", "demo", "viewer");
    server.add_user("wes");
    let (viewer, vcsrf) = session(&server, &val);
    for path in ["/p/demo/e/main/crons", "/p/demo/e/main/services"] {
        let (status, _, body) = server.console("GET", path, Some(&viewer), None);
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, _, body) = server.console("GET", "/p/demo/access", Some(&viewer), None);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(
            "permission denied: val is viewer of project demo; only project admins manage access"
        ),
        "the SSH command's words: {body}"
    );
    let access_ls = || text(&server.ssh(&server.key, "git", "access ls demo"));
    for (path, form) in [
        (
            "/p/demo/access/grant",
            format!("csrf={vcsrf}&user=wes&role=admin&confirmed=yes"),
        ),
        (
            "/p/demo/access/grant",
            format!("csrf={vcsrf}&user=val&role=admin&confirmed=yes"),
        ),
        ("/p/demo/access/revoke/me", format!("csrf={vcsrf}")),
    ] {
        let (status, _, body) = server.console("POST", path, Some(&viewer), Some(&form));
        assert_eq!(status, 403, "{path} {form}: {body}");
    }
    let ls = access_ls();
    assert!(
        !ls.contains("wes") && ls.contains("val\tviewer"),
        "nothing changed: {ls}"
    );
    let (_, _, body) = server.console("GET", "/p/demo", Some(&viewer), None);
    assert!(body.contains("href=\"/p/demo/domains\""), "{body}");
    let (status, _, body) = server.console("GET", "/p/demo/domains", Some(&viewer), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("No host assigned"), "{body}");
    assert!(
        !body.contains("Assign a host"),
        "no form for a viewer: {body}"
    );
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/domains/add",
        Some(&viewer),
        Some(&format!("csrf={vcsrf}&host=www.shop.test&confirmed=yes")),
    );
    assert_eq!(status, 403);
    assert!(body.contains("only server admins manage domains"), "{body}");
    // A project the viewer has no role on is not found, whatever the page.
    for path in [
        "/p/other/access",
        "/p/other/domains",
        "/p/other/e/main/crons",
    ] {
        let (status, _, _) = server.console("GET", path, Some(&viewer), None);
        assert_eq!(status, 404, "{path}");
    }

    // The admin: the access list, a grant confirmed first, without a CSRF token refused.
    let (status, _, body) = server.console("GET", "/p/demo/access", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("val") && body.contains("viewer"), "{body}");
    let grant = "user=wes&role=contributor&confirmed=yes".to_string();
    for form in [grant.clone(), format!("csrf={}&{grant}", "0".repeat(64))] {
        let (status, _, body) =
            server.console("POST", "/p/demo/access/grant", Some(&admin), Some(&form));
        assert_eq!(status, 403, "{form}: {body}");
        assert!(body.contains("security token"), "{body}");
    }
    assert!(!access_ls().contains("wes"), "{}", access_ls());
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/access/grant",
        Some(&admin),
        Some(&format!("csrf={csrf}&user=wes&role=contributor")),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Make wes contributor of demo?"), "{body}");
    assert!(
        !access_ls().contains("wes"),
        "a confirmation changes nothing"
    );
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/access/grant",
        Some(&admin),
        Some(&format!("csrf={csrf}&{grant}")),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("wes is now contributor of demo"), "{body}");
    assert!(access_ls().contains("wes\tcontributor"), "{}", access_ls());
    // What SSH refuses, the console refuses with the same words.
    for (form, want) in [
        ("user=nobody&role=viewer", "user 'nobody' not found"),
        ("user=wes&role=owner", "unknown role 'owner'"),
    ] {
        let (status, _, body) = server.console(
            "POST",
            "/p/demo/access/grant",
            Some(&admin),
            Some(&format!("csrf={csrf}&{form}&confirmed=yes")),
        );
        assert_eq!(status, 400, "{form}: {body}");
        assert!(body.contains(want), "{body}");
    }
    let (status, _, body) = server.console("GET", "/p/demo/access/revoke/wes", Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        access_ls().contains("wes"),
        "a confirmation changes nothing"
    );
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/access/revoke/wes",
        Some(&admin),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(status, 200, "{body}");
    assert!(!access_ls().contains("wes"), "{}", access_ls());

    // Domains (a server admin): assigned, listed with their state, removed.
    let domain_ls = || text(&server.ssh(&server.key, "git", "domain ls demo"));
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/domains/add",
        Some(&admin),
        Some(&format!("csrf={csrf}&host=WWW.Shop.test&confirmed=yes")),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("www.shop.test is assigned to demo"), "{body}");
    assert!(
        domain_ls().contains("www.shop.test\tdemo\tnot routed"),
        "{}",
        domain_ls()
    );
    let (_, _, body) = server.console("GET", "/p/demo/domains", Some(&admin), None);
    assert!(
        body.contains("www.shop.test") && body.contains("not routed"),
        "{body}"
    );
    assert!(body.contains("/p/demo/domains/rm/www.shop.test"), "{body}");
    // The viewer reads the project's domain, without the actions, and cannot remove it.
    let (status, _, body) = server.console("GET", "/p/demo/domains", Some(&viewer), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("www.shop.test") && body.contains("not routed"),
        "{body}"
    );
    assert!(
        !body.contains("/domains/rm/") && !body.contains("Assign a host"),
        "{body}"
    );
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/domains/rm/www.shop.test",
        Some(&viewer),
        Some(&format!("csrf={vcsrf}")),
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("only server admins manage domains"), "{body}");
    assert!(domain_ls().contains("www.shop.test"), "{}", domain_ls());
    for (host, want) in [
        ("main.demo.localhost", "belongs to project demo by its name"),
        ("not_a_host", "is not a host name"),
    ] {
        let (status, _, body) = server.console(
            "POST",
            "/p/demo/domains/add",
            Some(&admin),
            Some(&format!("csrf={csrf}&host={host}&confirmed=yes")),
        );
        assert_eq!(status, 400, "{host}: {body}");
        assert!(body.contains(want), "{body}");
    }
    let (status, _, _) = server.console(
        "POST",
        "/p/demo/domains/rm/www.shop.test",
        Some(&admin),
        None,
    );
    assert_eq!(status, 403, "no CSRF token, no removal");
    assert!(domain_ls().contains("www.shop.test"));
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/domains/rm/www.shop.test",
        Some(&admin),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("no longer assigned to demo"), "{body}");
    assert!(!domain_ls().contains("www.shop.test"), "{}", domain_ls());
}

/// The activity id in a `303` to `/activity/ID`.
fn activity_of(head: &str) -> String {
    let location = header_field(head, "location").unwrap_or_else(|| panic!("no redirect: {head}"));
    location
        .strip_prefix("/activity/")
        .unwrap_or_else(|| panic!("not an activity: {location}"))
        .to_string()
}

/// Follow an action's 303 (to its activity, or to its waiting page until that goes on to
/// the activity) and read the activity's page until the activity ended; (its id, the page).
fn ended_activity(server: &Server, cookie: &str, head: &str) -> (String, String) {
    let mut location = header_field(head, "location")
        .unwrap_or_else(|| panic!("no redirect: {head}"))
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "{location} did not end");
        let (status, head, body) = server.console("GET", &location, Some(cookie), None);
        if status == 303 {
            location = activity_of(&head);
            location.insert_str(0, "/activity/");
            continue;
        }
        assert_eq!(status, 200, "{location}: {body}");
        if let Some(id) = location.strip_prefix("/activity/") {
            if !body.contains("running:") {
                return (id.to_string(), body);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn run_a_cron_now_and_sync_a_branch_from_the_console_as_over_ssh() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    with_cron_and_service(&app);
    push(&server, &app);
    let (admin, csrf) = session(&server, &server.key);
    let crons_page = |cookie: &str| {
        server
            .console("GET", "/p/demo/e/main/crons", Some(cookie), None)
            .2
    };
    let run = "/p/demo/e/main/crons/run/report";

    // The crons page has a "Run now" button; it asks first, and asking runs nothing.
    let body = crons_page(&admin);
    assert!(body.contains(&format!("href=\"{run}\"")), "{body}");
    assert!(body.contains("not run yet"), "{body}");
    let (status, _, body) = server.console("GET", run, Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Run cron report of main of demo now"),
        "{body}"
    );
    assert!(crons_page(&admin).contains("not run yet"));

    // Without a CSRF token, or with a wrong one: refused, nothing run.
    for form in [String::new(), format!("csrf={}", "0".repeat(64))] {
        let (status, _, body) = server.console("POST", run, Some(&admin), Some(&form));
        assert_eq!(status, 403, "{form}: {body}");
        assert!(body.contains("security token"), "{body}");
    }
    // A viewer sees no button and is refused as `cron run` refuses over SSH, nothing run.
    let val = server.add_user_with_role("val", "demo", "viewer");
    let (viewer, vcsrf) = session(&server, &val);
    assert!(!crons_page(&viewer).contains(&format!("href=\"{run}\"")));
    let (status, _, body) =
        server.console("POST", run, Some(&viewer), Some(&format!("csrf={vcsrf}")));
    assert_eq!(status, 403, "{body}");
    let o = server.ssh(&val, "git", "cron run demo main report");
    assert!(!o.status.success());
    let ssh_words = text(&o);
    let words = ssh_words.trim().trim_start_matches("slipway: ");
    assert!(
        body.contains(words),
        "SSH said {ssh_words}; the console: {body}"
    );
    assert!(crons_page(&admin).contains("not run yet"), "nothing ran");
    // An unknown cron is not found.
    let (status, _, _) = server.console(
        "POST",
        "/p/demo/e/main/crons/run/nope",
        Some(&admin),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(status, 404);

    // The admin runs it: off to its activity, which ends with the exit status and output.
    let (status, head, body) =
        server.console("POST", run, Some(&admin), Some(&format!("csrf={csrf}")));
    assert_eq!(status, 303, "{head}\n{body}");
    let id = activity_of(&head);
    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let (status, _, log) =
            server.console("GET", &format!("/activity/{id}"), Some(&admin), None);
        assert_eq!(status, 200, "{log}");
        if !log.contains("running:") {
            break log;
        }
        assert!(Instant::now() < deadline, "the run did not end: {log}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(log.contains("failure: cron report: exit status 3"), "{log}");
    assert!(log.contains("report ran"), "{log}");
    assert!(log.contains("By me,"), "who ran it: {log}");
    let (_, _, list) = server.console("GET", "/p/demo/activity", Some(&admin), None);
    assert!(
        list.contains(&format!("href=\"/activity/{id}\""))
            && list.contains("cron report: exit status 3"),
        "{list}"
    );
    assert!(crons_page(&admin).contains("failure: exit status 3"));

    // Sync: main has no button and is refused with the SSH command's words.
    let (_, _, body) = server.console("GET", "/p/demo/e/main", Some(&admin), None);
    assert!(!body.contains("Sync from parent"), "{body}");
    let o = server.ssh(&server.key, "git", "sync demo main");
    assert!(!o.status.success());
    let ssh_words = text(&o);
    let words = ssh_words.trim().trim_start_matches("slipway: ");
    assert!(
        words.contains("main is a production environment"),
        "{ssh_words}"
    );
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/e/main/sync",
        Some(&admin),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains(words),
        "SSH said {ssh_words}; the console: {body}"
    );

    // A branch: the button, a confirmation; a viewer and a missing token refused; then the copy.
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main:feature"]);
    assert!(o.status.success(), "push: {}", text(&o));
    let sync = "/p/demo/e/feature/sync";
    let (_, _, body) = server.console("GET", "/p/demo/e/feature", Some(&admin), None);
    assert!(body.contains(&format!("href=\"{sync}\"")), "{body}");
    let (status, _, body) = server.console("GET", sync, Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("fresh copy of its parent"), "{body}");
    let (status, _, body) = server.console("POST", sync, Some(&admin), None);
    assert_eq!(status, 403, "{body}");
    let (status, _, body) =
        server.console("POST", sync, Some(&viewer), Some(&format!("csrf={vcsrf}")));
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("permission denied: this needs the admin role on demo"),
        "{body}"
    );
    let (status, head, body) =
        server.console("POST", sync, Some(&admin), Some(&format!("csrf={csrf}")));
    // It runs in the background: the answer goes to its activity, by the admin, with its
    // log: shown, listed, replayed.
    assert_eq!(status, 303, "{head}\n{body}");
    let (id, log) = ended_activity(&server, &admin, &head);
    assert!(
        log.contains("feature now has a copy of main&#39;s mount data and service data")
            || log.contains("feature now has a copy of main's mount data and service data"),
        "{log}"
    );
    assert!(
        log.contains("-----&gt; copied 1 volume(s) of main"),
        "its output: {log}"
    );
    assert!(
        log.contains("sync feature") && log.contains("By me,"),
        "{log}"
    );
    assert!(log.contains("copied 1 volume(s) of main"), "{log}");
    assert!(log.contains("success: feature now has a copy"), "{log}");
    let (_, _, list) = server.console("GET", "/p/demo/activity", Some(&admin), None);
    assert!(list.contains(&format!("href=\"/activity/{id}\"")), "{list}");
    // Over SSH too: a sync there is listed beside it, and its log replays.
    let o = server.ssh(&server.key, "git", "sync demo feature");
    assert!(o.status.success(), "{}", text(&o));
    let activity = text(&server.ssh(&server.key, "git", "activity demo feature"));
    let syncs: Vec<&str> = activity
        .lines()
        .filter(|l| l.contains("\tsync\tfeature\tsuccess\tfeature now has a copy of main"))
        .collect();
    assert_eq!(syncs.len(), 2, "{activity}");
    let newest: String = syncs[0].chars().take_while(char::is_ascii_digit).collect();
    assert_ne!(newest, id, "{activity}");
    let replay = text(&server.ssh(&server.key, "git", &format!("activity log {newest}")));
    assert!(replay.contains("copied 1 volume(s) of main"), "{replay}");
}

/// An app with a PostgreSQL 15 service `db` (a test stack).
fn with_postgresql(app: &App) {
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\nrelationships:\n  database: 'db:postgresql'\nhooks:\n  build: echo built > build.txt\nweb:\n  commands:\n    start: python3 -m http.server $PORT --bind 127.0.0.1\n",
    );
    app.write(".platform/services.yaml", "db:\n  type: postgresql:15\n");
    app.commit("a postgresql service");
}

/// SQL on the `main` database of `env`'s PostgreSQL 15 in project demo; its output.
fn psql(server: &Server, env: &str, sql: &str) -> String {
    let o = slipway_e2e::run(
        server
            .runc()
            .arg("exec")
            .arg(format!("demo.{env}.db.service"))
            .args([
                "/usr/lib/postgresql/15/bin/psql",
                "-h",
                "/tmp",
                "-U",
                "main",
                "-d",
                "main",
                "-AtX",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ]),
    );
    assert!(o.status.success(), "{sql}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn backups_are_listed_created_and_restored_from_the_console_as_over_ssh() {
    // python:3.11 and postgresql:15 are test stacks.
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    with_postgresql(&app);
    push(&server, &app);
    psql(
        &server,
        "main",
        "CREATE TABLE rows (n int PRIMARY KEY, t text); INSERT INTO rows VALUES (1, 'before')",
    );
    let rows = || {
        psql(
            &server,
            "main",
            "SELECT string_agg(n || '=' || t, ',' ORDER BY n) FROM rows",
        )
    };
    let backup_ls = || text(&server.ssh(&server.key, "git", "backup ls demo main"));
    let (admin, csrf) = session(&server, &server.key);
    let val = server.add_user_with_role("val", "demo", "viewer");
    let cody = server.add_user_with_role("cody", "demo", "contributor");
    let viewer = log_in(&server, &val);
    let contributor = log_in(&server, &cody);
    let vcsrf = csrf_of(&server.console("GET", "/", Some(&viewer), None).2);
    let ccsrf = csrf_of(&server.console("GET", "/", Some(&contributor), None).2);
    let page = "/p/demo/e/main/backups";
    let create = "/p/demo/e/main/backups/create";

    // The environment links its backups; a viewer sees the list, without buttons.
    let (_, _, body) = server.console("GET", "/p/demo/e/main", Some(&viewer), None);
    assert!(body.contains(&format!("href=\"{page}\"")), "{body}");
    let (status, _, body) = server.console("GET", page, Some(&viewer), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("main has no backups"), "{body}");
    assert!(!body.contains(&format!("href=\"{create}\"")), "{body}");
    // A viewer, and a contributor on production, are refused as SSH refuses them.
    for (key, cookie, token) in [(&val, &viewer, &vcsrf), (&cody, &contributor, &ccsrf)] {
        let o = server.ssh(key, "git", "backup create demo main");
        assert!(!o.status.success(), "{}", text(&o));
        let ssh_words = text(&o);
        let words = ssh_words.trim().trim_start_matches("slipway: ");
        assert!(words.starts_with("permission denied"), "{ssh_words}");
        let (status, _, body) =
            server.console("POST", create, Some(cookie), Some(&format!("csrf={token}")));
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains(words),
            "SSH said {ssh_words}; the console: {body}"
        );
    }
    // A missing or forged token is refused; a confirmation takes nothing.
    for form in [String::new(), format!("csrf={}", "0".repeat(64))] {
        let (status, _, body) = server.console("POST", create, Some(&admin), Some(&form));
        assert_eq!(status, 403, "{form}: {body}");
        assert!(body.contains("security token"), "{body}");
    }
    let (status, _, body) = server.console("GET", create, Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Take a backup of main of demo now"), "{body}");
    assert!(
        backup_ls().contains("main has no backups"),
        "{}",
        backup_ls()
    );

    // While another deploy of main holds its lock (here: another server's, the lock file
    // held by flock(1)), the admin's backup waits in the background: the answer does not
    // wait with it but goes to its waiting page, the admin's only, which says so.
    let mut holder = hold_deploy_lock(&server);
    let (status, head, body) =
        server.console("POST", create, Some(&admin), Some(&format!("csrf={csrf}")));
    assert_eq!(status, 303, "{head}\n{body}");
    let waiting = header_field(&head, "location").unwrap().to_string();
    assert!(waiting.starts_with("/started/"), "{head}");
    let (status, _, body) = server.console("GET", &waiting, Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Waiting") && body.contains("waiting: another deploy of main"),
        "{body}"
    );
    assert!(
        body.contains("http-equiv=\"refresh\""),
        "no JavaScript needed: {body}"
    );
    let (status, _, body) = server.console("GET", &waiting, Some(&contributor), None);
    assert_eq!(status, 404, "another user's waiting page: {body}");
    assert!(
        backup_ls().contains("main has no backups"),
        "{}",
        backup_ls()
    );
    // The deploy ends: the backup runs, its waiting page goes on to its activity, which
    // ends with the SSH command's words and its output; listed on both sides.
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    let (id, body) = ended_activity(&server, &admin, &head);
    assert!(body.contains("success: backup 1 of main"), "{body}");
    assert!(body.contains("-----&gt; backup db"), "its output: {body}");
    assert!(body.contains("By me,"), "{body}");
    let (status, head, _) = server.console("GET", &waiting, Some(&admin), None);
    assert_eq!(status, 303);
    assert_eq!(activity_of(&head), id);
    assert!(backup_ls().starts_with("1\t"), "{}", backup_ls());
    let (_, _, body) = server.console("GET", page, Some(&admin), None);
    assert!(
        body.contains("db/main") && body.contains("<td>me</td>"),
        "{body}"
    );
    assert!(
        body.contains(&format!("href=\"{page}/restore/1\"")),
        "{body}"
    );
    let (_, _, body) = server.console("GET", page, Some(&contributor), None);
    assert!(body.contains("db/main"), "{body}");
    assert!(
        !body.contains("/restore/1"),
        "no restore for a contributor: {body}"
    );

    // The data changes after the backup.
    psql(
        &server,
        "main",
        "UPDATE rows SET t = 'after'; INSERT INTO rows VALUES (2, 'later')",
    );
    assert_eq!(rows(), "1=after,2=later");
    let restore = format!("{page}/restore/1");
    // Restoring is an admin's: a viewer and a contributor are refused, nothing restored.
    for (cookie, token) in [(&viewer, &vcsrf), (&contributor, &ccsrf)] {
        let (status, _, body) = server.console(
            "POST",
            &restore,
            Some(cookie),
            Some(&format!("csrf={token}")),
        );
        assert_eq!(status, 403, "{body}");
        assert!(
            body.contains("permission denied: this needs the admin role on demo"),
            "{body}"
        );
    }
    for form in [String::new(), format!("csrf={}", "1".repeat(64))] {
        let (status, _, body) = server.console("POST", &restore, Some(&admin), Some(&form));
        assert_eq!(status, 403, "{form}: {body}");
    }
    assert_eq!(rows(), "1=after,2=later", "nothing restored");
    // No such backup (or one of another project, below) is not found, with the SSH
    // command's words.
    let (status, _, body) = server.console(
        "POST",
        &format!("{page}/restore/99"),
        Some(&admin),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(status, 404, "{body}");
    let o = server.ssh(&server.key, "git", "backup restore demo main 99");
    let ssh_words = text(&o);
    assert!(
        ssh_words.contains("backup 99 is not a backup of project demo")
            && body.contains("backup 99 is not a backup of project demo"),
        "SSH said {ssh_words}; the console: {body}"
    );
    // The confirmation names what is overwritten, and restores nothing.
    let (status, _, body) = server.console("GET", &restore, Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("the data of service db (postgresql:15): database main"),
        "{body}"
    );
    assert_eq!(rows(), "1=after,2=later");
    // The restore runs in the background; its activity's log streams live, then ends.
    let (status, head, body) = server.console(
        "POST",
        &restore,
        Some(&admin),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(status, 303, "{head}\n{body}");
    let id = activity_of(&head);
    let (events, end) = read_events(&server, &format!("/activity/{id}/events"), &admin, || true);
    assert!(
        end.starts_with("success: main restored from backup 1"),
        "{end}: {events:?}"
    );
    let streamed: String = events.iter().map(|(t, _)| t.as_str()).collect();
    assert!(streamed.contains("-----> "), "{streamed}");
    let (_, body) = ended_activity(&server, &admin, &head);
    assert!(
        body.contains("success: main restored from backup 1"),
        "{body}"
    );
    assert_eq!(
        rows(),
        "1=before",
        "the backed-up row is back, the later one gone"
    );
    assert_eq!(server.get(APP_HOST, "/").map(|(s, _)| s), Some(200));
    // Both are activities, by the admin, over SSH and in the console.
    let activity = text(&server.ssh(&server.key, "git", "activity demo main"));
    assert!(
        activity.contains("backup\tmain\tsuccess\tbackup 1 of main")
            && activity.contains("restore\tmain\tsuccess\tmain restored from backup 1"),
        "{activity}"
    );

    // On a branch, a contributor takes a backup (as over SSH) but restores none.
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main:feature"]);
    assert!(o.status.success(), "push: {}", text(&o));
    let page = "/p/demo/e/feature/backups";
    let (status, _, body) = server.console("GET", page, Some(&contributor), None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("href=\"{page}/create\"")), "{body}");
    let (status, head, body) = server.console(
        "POST",
        &format!("{page}/create"),
        Some(&contributor),
        Some(&format!("csrf={ccsrf}")),
    );
    assert_eq!(status, 303, "{head}\n{body}");
    let (_, body) = ended_activity(&server, &contributor, &head);
    assert!(body.contains("success: backup 2 of feature"), "{body}");
    let (_, _, body) = server.console("GET", page, Some(&contributor), None);
    assert!(
        body.contains("<td>cody</td>") && !body.contains("/restore/2"),
        "{body}"
    );
    let (status, _, body) = server.console(
        "POST",
        &format!("{page}/restore/2"),
        Some(&contributor),
        Some(&format!("csrf={ccsrf}")),
    );
    assert_eq!(status, 403, "{body}");
    // Backup 1 is main's: the feature branch lists it among the project's other
    // environments' backups, named with its environment, and an admin restores the branch
    // from it (production's data into a staging branch), as `backup restore demo feature 1`.
    psql(&server, "feature", "UPDATE rows SET t = 'feature'");
    let feature_rows = || {
        psql(
            &server,
            "feature",
            "SELECT string_agg(n || '=' || t, ',' ORDER BY n) FROM rows",
        )
    };
    assert_eq!(feature_rows(), "1=feature");
    let (_, _, body) = server.console("GET", page, Some(&admin), None);
    let others = body
        .split("Backups of other environments of demo")
        .nth(1)
        .unwrap_or_else(|| panic!("no other environments' backups: {body}"));
    assert!(
        others.contains("<td>1</td><td>main</td>")
            && others.contains(&format!("href=\"{page}/restore/1\"")),
        "{body}"
    );
    let (_, _, body) = server.console("GET", page, Some(&contributor), None);
    assert!(
        body.contains("<td>1</td><td>main</td>") && !body.contains("/restore/1"),
        "listed, but no restore for a contributor: {body}"
    );
    let restore = format!("{page}/restore/1");
    for (cookie, token) in [(&viewer, &vcsrf), (&contributor, &ccsrf)] {
        let (status, _, body) = server.console(
            "POST",
            &restore,
            Some(cookie),
            Some(&format!("csrf={token}")),
        );
        assert_eq!(status, 403, "{body}");
    }
    let (status, _, body) = server.console("POST", &restore, Some(&admin), Some(""));
    assert_eq!(status, 403, "no token: {body}");
    let (status, _, body) = server.console("GET", &restore, Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Restoring backup 1 of main (")
            && body.contains("replaces, in feature of demo:")
            && body.contains("the data of service db (postgresql:15): database main"),
        "{body}"
    );
    assert_eq!(
        feature_rows(),
        "1=feature",
        "a confirmation restores nothing"
    );
    let (status, head, body) = server.console(
        "POST",
        &restore,
        Some(&admin),
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(status, 303, "{head}\n{body}");
    let (_, body) = ended_activity(&server, &admin, &head);
    assert!(
        body.contains("success: feature restored from backup 1"),
        "{body}"
    );
    assert_eq!(feature_rows(), "1=before", "main's backed-up row");
    assert_eq!(rows(), "1=before", "main untouched");

    // A backup of another project is not offered and not restored, as over SSH.
    let other = App::demo(server.dir.path(), "other");
    let o = server.git(&other.dir, &["push", &server.remote("other"), "main"]);
    assert!(o.status.success(), "push: {}", text(&o));
    let o = server.ssh(&server.key, "git", "backup create other main");
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("backup 3 of main"), "{}", text(&o));
    let (_, _, body) = server.console("GET", page, Some(&admin), None);
    assert!(!body.contains("/restore/3"), "{body}");
    let o = server.ssh(&server.key, "git", "backup restore demo feature 3");
    assert!(!o.status.success());
    let token = format!("csrf={csrf}");
    for (method, form) in [("GET", None), ("POST", Some(token.as_str()))] {
        let (status, _, body) =
            server.console(method, &format!("{page}/restore/3"), Some(&admin), form);
        assert_eq!(status, 404, "{body}");
        assert!(
            body.contains("backup 3 is not a backup of project demo")
                && text(&o).contains("backup 3 is not a backup of project demo"),
            "{body}"
        );
    }
    assert_eq!(feature_rows(), "1=before");
}

/// The app of the activity test: `/routes` answers its `PLATFORM_ROUTES` (JSON), `/go`
/// lets its `slow` cron end (a file in the container's /tmp), anything else `ok`.
const ROUTES_SERVER: &str = slipway_e2e::py_app!(
    "",
    r#"        body = b"ok"
        if self.path == "/routes":
            body = base64.b64decode(os.environ["PLATFORM_ROUTES"])
        if self.path == "/go":
            open("/tmp/go", "w").close()
"#
);

/// Hold `server`'s deploy lock of demo/main as another server's deploy would (flock(1) on
/// its lock file) until the returned child's stdin closes.
fn hold_deploy_lock(server: &Server) -> std::process::Child {
    let lock = server.data.join("locks/demo/main/deploy.lock");
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let holder = std::process::Command::new("flock")
        .arg(&lock)
        .arg("cat")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("flock(1)");
    let held = Instant::now() + Duration::from_secs(30);
    // (`flock -n -E 9` exits 9 while another holds the lock.)
    while std::process::Command::new("flock")
        .args(["-n", "-E", "9"])
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap()
        .code()
        != Some(9)
    {
        assert!(Instant::now() < held, "flock(1) did not take the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    holder
}

/// Whether activity `id`'s page says its log was pruned (and shows no log).
fn log_pruned(server: &Server, cookie: &str, id: &str) -> bool {
    let (status, _, body) = server.console("GET", &format!("/activity/{id}"), Some(cookie), None);
    assert_eq!(status, 200, "{body}");
    let pruned = body.contains("id=\"pruned\"") && body.contains("Log pruned");
    assert_eq!(pruned, !body.contains("id=\"log\""), "{body}");
    pruned
}

/// Wait (at most a minute) until `what` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn actions_go_to_their_own_activity_waiting_pages_survive_an_upgrade_and_old_logs_are_pruned() {
    // Logs kept: the newest 3 of each environment, whatever their age; pruned every second.
    let mut server = Server::start_with(&[
        ("SLIPWAY_ACTIVITY_KEEP", "3"),
        ("SLIPWAY_ACTIVITY_KEEP_DAYS", "0"),
        ("SLIPWAY_ACTIVITY_PRUNE_EVERY", "1"),
        ("SLIPWAY_DRAIN_TIMEOUT", "2"),
    ]);
    let app = server.project(
        "demo",
        &[
            (
                ".platform.app.yaml",
                "name: hello\ntype: python:3.11\nweb:\n  commands:\n    start: python3 server.py\ncrons:\n  slow:\n    spec: '@yearly'\n    commands:\n      start: 'echo slow began; while [ ! -e /tmp/go ]; do sleep 0.2; done; echo slow ended'\n  quick:\n    spec: '@yearly'\n    commands:\n      start: 'echo quick ran'\n",
            ),
            (
                ".platform/routes.yaml",
                "\"http://{default}/\":\n  type: upstream\n  upstream: hello:http\n  tls:\n    min_version: TLSv1.3\n    strict_transport_security:\n      include_subdomains: true\n\"http://www.{default}/\":\n  type: redirect\n  to: \"http://{default}/\"\n",
            ),
            ("server.py", ROUTES_SERVER),
        ],
    );
    push(&server, &app);
    let newest_ids = |server: &Server, n: usize| -> Vec<String> {
        text(&server.ssh(&server.key, "git", "activity demo main"))
            .lines()
            .take(n)
            .map(|l| l.split('\t').next().unwrap().to_string())
            .collect()
    };
    let pushed = newest_ids(&server, 1).remove(0);

    // PLATFORM_ROUTES gives each route its `tls` in Platform.sh's shape, from the config.
    let (status, body) = server.get(APP_HOST, "/routes").expect("the app answers");
    assert_eq!(status, 200, "{body}");
    let routes: serde_json::Value = serde_json::from_str(&body).expect("JSON routes");
    let url = format!("http://{APP_HOST}:{}/", server.http_port);
    assert_eq!(
        routes[&url]["tls"],
        serde_json::json!({
            "client_authentication": null,
            "min_version": "TLSv1.3",
            "client_certificate_authorities": [],
            "strict_transport_security": {"enabled": null, "include_subdomains": true, "preload": null},
        }),
        "{routes:#}"
    );
    let www = format!("http://www.{APP_HOST}:{}/", server.http_port);
    assert_eq!(routes[&www]["type"], "redirect", "{routes:#}");
    assert_eq!(
        routes[&www]["tls"]["strict_transport_security"],
        serde_json::json!({"enabled": null, "include_subdomains": null, "preload": null}),
        "{routes:#}"
    );

    let (admin, csrf) = session(&server, &server.key);
    let ada_key = server.add_user_with_role("ada", "demo", "admin");
    let (ada, ada_csrf) = session(&server, &ada_key);

    // While another deploy holds main, two users redeploy from the console and the admin
    // over SSH at the same moment: all three wait.
    let mut holder = hold_deploy_lock(&server);
    let ssh = {
        let mut cmd = std::process::Command::new("ssh");
        for a in server.ssh_command(&server.key).split_whitespace().skip(1) {
            cmd.arg(a);
        }
        cmd.args(["-p", &server.ssh_port.to_string(), "git@127.0.0.1"])
            .arg("redeploy demo main")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ssh")
    };
    let post = |cookie: &str, token: &str| {
        let (status, head, body) = server.console(
            "POST",
            "/p/demo/e/main/redeploy",
            Some(cookie),
            Some(&format!("csrf={token}")),
        );
        assert_eq!(status, 303, "{head}\n{body}");
        head
    };
    let (mine, hers) = std::thread::scope(|s| {
        let mine = s.spawn(|| post(&admin, &csrf));
        let hers = s.spawn(|| post(&ada, &ada_csrf));
        (mine.join().unwrap(), hers.join().unwrap())
    });
    // Each answer is its waiting page, its starter's only.
    let waiting = |head: &str| header_field(head, "location").unwrap().to_string();
    let (my_page, her_page) = (waiting(&mine), waiting(&hers));
    for page in [&my_page, &her_page] {
        assert!(page.starts_with("/started/"), "{page}");
    }
    assert_ne!(my_page, her_page);
    let (status, _, body) = server.console("GET", &my_page, Some(&admin), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Waiting") && body.contains("waiting: another deploy of main"),
        "{body}"
    );
    assert_eq!(server.console("GET", &my_page, Some(&ada), None).0, 404);

    // `serve --upgrade`: the new server shows the same waiting pages (each to its starter
    // only); the old one runs the actions once main is free, then exits.
    let mut ended = None;
    server.upgrade(Duration::from_secs(300), |server| {
        let (status, _, body) = server.console("GET", &my_page, Some(&admin), None);
        assert_eq!(status, 200, "after the upgrade: {body}");
        assert!(
            body.contains("Waiting") && body.contains("waiting: another deploy of main"),
            "{body}"
        );
        assert_eq!(server.console("GET", &her_page, Some(&admin), None).0, 404);
        assert_eq!(server.console("GET", &her_page, Some(&ada), None).0, 200);
        drop(holder.stdin.take());
        assert!(holder.wait().unwrap().success());
        ended = Some((
            ended_activity(server, &admin, &mine),
            ended_activity(server, &ada, &hers),
        ));
    });
    let ((mine, my_activity), (hers, her_activity)) = ended.expect("both ended");
    let o = ssh.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    // Each answer went to exactly its own activity: by its starter, none the SSH one.
    assert!(my_activity.contains("By me,"), "{my_activity}");
    assert!(her_activity.contains("By ada,"), "{her_activity}");
    for page in [&my_activity, &her_activity] {
        assert!(page.contains("success: redeploy of main"), "{page}");
    }
    assert_ne!(mine, hers);
    for id in [&mine, &hers] {
        assert!(!said.contains(&format!("(activity {id})")), "{id}: {said}");
    }
    assert!(said.contains("(activity "), "{said}");
    // A waiting page expires with its action's record; a number never issued is not found.
    assert_eq!(
        server.console("GET", "/started/999", Some(&admin), None).0,
        404
    );

    // Pruning: the push's log (the 4th newest) went; its page says so, as `activity log`.
    eventually("the push's log pruned", || {
        log_pruned(&server, &admin, &pushed)
    });
    let o = server.ssh(&server.key, "git", &format!("activity log {pushed}"));
    assert!(text(&o).contains("log pruned"), "{}", text(&o));
    for id in [&mine, &hers] {
        assert!(!log_pruned(&server, &admin, id), "{id}");
    }
    // A cron run that runs on while three newer activities end keeps its log while it
    // runs, and loses it once it ended.
    let mut slow = {
        let mut cmd = std::process::Command::new("ssh");
        for a in server.ssh_command(&server.key).split_whitespace().skip(1) {
            cmd.arg(a);
        }
        cmd.args(["-p", &server.ssh_port.to_string(), "git@127.0.0.1"])
            .arg("cron run demo main slow")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh")
    };
    let activities = || text(&server.ssh(&server.key, "git", "activity demo main"));
    let mut slow_id = String::new();
    eventually("the slow cron runs", || {
        let list = activities();
        match list
            .lines()
            .find(|l| l.contains("\tcron\t") && l.contains("\trunning\t"))
        {
            Some(l) => {
                slow_id = l.split('\t').next().unwrap().to_string();
                true
            }
            None => false,
        }
    });
    for _ in 0..3 {
        let o = server.ssh(&server.key, "git", "cron run demo main quick");
        assert!(o.status.success(), "{}", text(&o));
    }
    eventually("the redeploys' logs pruned", || {
        [&mine, &hers]
            .iter()
            .all(|id| log_pruned(&server, &admin, id))
    });
    let (_, _, body) = server.console("GET", &format!("/activity/{slow_id}"), Some(&admin), None);
    assert!(
        body.contains("running:") && body.contains("slow began") && !body.contains("Log pruned"),
        "the running cron keeps its log: {body}"
    );
    assert_eq!(server.get(APP_HOST, "/go").map(|(s, _)| s), Some(200));
    assert!(slow.wait().unwrap().success());
    eventually("the slow cron's log pruned once it ended", || {
        log_pruned(&server, &admin, &slow_id)
    });
    for id in &newest_ids(&server, 3) {
        assert!(
            !log_pruned(&server, &admin, id),
            "{id} is among the newest 3"
        );
    }
}

/// `var set` in the console on an environment not deployed yet does what it does over SSH
/// (issue 15): the variables page shows, the variable is set and waits for the branch's
/// first push, which names it; a name no environment can have is refused as over SSH.
#[test]
fn console_var_set_works_on_an_environment_not_deployed_yet() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    push(&server, &app);
    let session = log_in(&server, &server.key);
    let (status, _, page) = server.console("GET", "/p/demo/e/later/vars", Some(&session), None);
    assert_eq!(status, 200, "{page}");
    let csrf = csrf_of(&page);
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/e/later/vars/set",
        Some(&session),
        Some(&format!("csrf={csrf}&key=EARLY&value=1&confirmed=yes")),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("first deploy"), "{body}");
    let o = server.ssh(&server.key, "git", "var ls demo later");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("EARLY=1"),
        "{}",
        text(&o)
    );
    // As over SSH: no environment can be named so.
    let (status, _, body) = server.console(
        "POST",
        "/p/demo/e/Not_A_Label/vars/set",
        Some(&session),
        Some(&format!("csrf={csrf}&key=EARLY&value=1&confirmed=yes")),
    );
    assert_ne!(status, 200, "{body}");
    assert!(body.contains("no environment can have that name"), "{body}");
}

/// A console action that fails before it began (issue 15): a refusal with its own
/// message, as SSH says it, and its kind's status (a release that is not there: 404; the
/// sync of production, in `run_a_cron_now_and_sync...`: 409); an internal failure (here the environment's deploy lock
/// cannot be opened: a folder sits where its file goes) with "internal error, see the
/// server log" (500), the failure itself in the server's log and never on the page, while
/// SSH exits 3 with the failure's own words; once the lock is back the same redeploy works.
#[test]
fn a_failed_console_action_says_what_ssh_says_refused_or_internal() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    push(&server, &app);
    let (session, csrf) = session(&server, &server.key);
    let post =
        |path: &str| server.console("POST", path, Some(&session), Some(&format!("csrf={csrf}")));

    // Refused: the message, as over SSH, and what kind of refusal it is (nothing there).
    let (status, _, body) = post("/p/demo/e/main/rollback/9");
    assert_eq!(status, 404, "{body}");
    let o = server.admin("rollback demo main 9");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let said = "release 9 of main not found";
    assert!(body.contains(said), "{body}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(said),
        "{}",
        text(&o)
    );

    // Internal: the same words in both, the detail only in the server's log.
    let lock = server.data.join("locks/demo/main/deploy.lock");
    let _ = std::fs::remove_file(&lock);
    std::fs::create_dir_all(&lock).expect("a folder where the lock file goes");
    let (status, _, body) = post("/p/demo/e/main/redeploy");
    let o = server.admin("redeploy demo main");
    std::fs::remove_dir(&lock).expect("the folder away");
    assert_eq!(status, 500, "{body}\n{}", server.server_log());
    assert!(
        body.contains("internal error, see the server log"),
        "{body}"
    );
    assert!(
        !body.contains("deploy.lock"),
        "no detail on the page: {body}"
    );
    // Over SSH the same failure exits 3 with its own words: the user at the terminal acts
    // on them; the page keeps them to the server's log.
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("slipway: ") && err.contains("deploy.lock"),
        "{}",
        text(&o)
    );
    let log = server.server_log();
    assert!(
        log.lines()
            .any(|l| l.contains("internal failure") && l.contains("deploy.lock")),
        "the detail in the server's log: {log}"
    );

    let (status, head, body) = post("/p/demo/e/main/redeploy");
    assert_eq!(status, 303, "{body}");
    let (_, body) = ended_activity(&server, &session, &head);
    assert!(body.contains("release 2 live"), "{body}");
}

/// Undo the escaping maud does of a page's text.
fn unescaped(html: &str) -> String {
    html.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Issue 15: an operation that fails once its activity exists sums it up in one short
/// line, what failed and the start of why ("rollback of main to release 1 failed: ..."),
/// on `ssh git@HOST activity` and the console's activity pages; the whole failure is in
/// its log (`activity log ID`, the activity's page). Here release 1's slug is damaged in
/// the archive (and no longer unpacked), so the rollback to it fails starting its
/// containers, with a message naming both digests; the live release stays.
#[test]
fn a_failed_rollback_is_summed_up_in_one_line_and_its_log_has_the_whole_failure() {
    let server = Server::start();
    let app = App::demo(server.dir.path(), "app");
    push(&server, &app);
    app.write("VERSION", "2\n");
    app.commit("v2");
    push(&server, &app);
    let o = server.admin("releases demo main --json");
    assert!(o.status.success(), "{}", text(&o));
    let releases: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let first = releases
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["number"] == 1)
        .unwrap_or_else(|| panic!("release 1 in {releases}"));
    let slug = first["apps"][0]["slug"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let blob = server.data.join("archive/blobs/sha256").join(&slug);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let unpacked = server.data.join("slugs").join(&slug);
    if unpacked.exists() {
        std::fs::remove_dir_all(&unpacked).unwrap();
    }

    let o = server.admin("rollback demo main 1");
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    // SSH tells the whole failure at once.
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let whole = err
        .lines()
        .find_map(|l| l.strip_prefix("slipway: "))
        .unwrap_or_else(|| panic!("no failure in {}", text(&o)))
        .to_string();
    assert!(whole.len() > 150, "a failure with its detail: {whole}");
    assert_eq!(app_body(&server), "built-2\n", "release 2 stays live");

    let o = server.admin("activity demo main --json");
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rollback = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "rollback")
        .unwrap_or_else(|| panic!("a rollback in {list}"));
    assert_eq!(rollback["status"], "failure", "{rollback}");
    let id = rollback["id"].as_i64().unwrap();
    let summary = rollback["summary"].as_str().unwrap().to_string();
    assert!(
        summary.starts_with("rollback of main to release 1 failed: "),
        "{summary}"
    );
    assert!(
        !summary.contains('\n') && summary.chars().count() <= 150 && summary.ends_with("..."),
        "one short line: {summary}"
    );
    // The text listing keeps one line per activity.
    let listing = server.admin_ok("activity demo main");
    assert!(
        listing.lines().all(|l| l
            .split('\t')
            .next()
            .is_some_and(|id| id.parse::<i64>().is_ok())),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("{id}\trollback\tmain\tfailure\t{summary}\n")),
        "{listing}"
    );
    let log = server.admin_ok(&format!("activity log {id}"));
    assert!(log.contains(&whole), "the whole failure in the log:\n{log}");

    // The console: the list shows the line, the activity's page the whole failure too.
    let admin = log_in(&server, &server.key);
    let (status, _, page) = server.console("GET", "/p/demo/activity", Some(&admin), None);
    assert_eq!(status, 200, "{page}");
    let page = unescaped(&page);
    assert!(page.contains(&summary), "{page}");
    assert!(!page.contains(&whole), "{page}");
    let (status, _, page) = server.console("GET", &format!("/activity/{id}"), Some(&admin), None);
    assert_eq!(status, 200, "{page}");
    let page = unescaped(&page);
    assert!(page.contains(&format!("failure: {summary}")), "{page}");
    assert!(page.contains(&whole), "{page}");
}
