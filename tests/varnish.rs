//! Varnish in front of an app (issue 14, spec sections 3 and 9): a route leads to the
//! varnish service (`upstream: "varnish:http"`), the service's VCL (Platform.sh's shape:
//! `!include`d, a director per relationship) sends requests to the app, cacheable answers
//! come from the cache, a deploy moves varnish's backend to the new release without a
//! failed request, and a VCL that does not compile is refused with the running release and
//! its varnish untouched. The varnish stack is built once into the shared stacks folder.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slipway_e2e::{cached_stack, header_field, http_get, raw_http, text, App, Server};

/// The app: `/cached` is cacheable (max-age 60) and says how many times the app itself
/// answered it; `/release` is never cached and says which code answers;
/// `/invalidate?method=M&host=H` sends `M /cached` (Host `H`) to varnish through the
/// app's relationship `cache` and answers varnish's status line.
const APP_SERVER: &str = r#"import base64, http.client, http.server, json, os, urllib.parse
hits = {}
release = open("release.txt").read().strip()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        hits[self.path] = hits.get(self.path, 0) + 1
        u = urllib.parse.urlparse(self.path)
        if self.path == "/cached":
            body, cache = "app answered %d times" % hits[self.path], "public, max-age=60"
        elif u.path == "/invalidate":
            # METHOD /cached to varnish through the app's relationship `cache`, for HOST.
            q = dict(urllib.parse.parse_qsl(u.query))
            r = json.loads(base64.b64decode(os.environ["PLATFORM_RELATIONSHIPS"]))["cache"][0]
            c = http.client.HTTPConnection(r["host"], r["port"], timeout=10)
            c.request(q["method"], "/cached", headers={"Host": q["host"]})
            got = c.getresponse()
            got.read()
            body, cache = "%d %s" % (got.status, got.reason), "no-store"
        else:
            body, cache = release, "no-store"
        body = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Cache-Control", cache)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

/// The user's VCL, as on Platform.sh: no preamble, no `vcl_init`, the director named
/// after the service's relationship.
const VCL: &str = r#"sub vcl_recv {
    set req.backend_hint = application.backend();
}

sub vcl_deliver {
    set resp.http.X-Served-By = "varnish";
}
"#;

const SERVICES: &str = "varnish:\n  type: varnish:7.1\n  relationships:\n    application: 'hello:http'\n  configuration:\n    vcl: !include\n      type: string\n      path: config.vcl\n";

const HOST: &str = "main.demo.localhost";

/// The app's `.platform.app.yaml`: the app `hello` on python:3.11, with `relationships`
/// (top-level YAML lines, or "").
fn app_yaml(relationships: &str) -> String {
    format!("name: hello\ntype: python:3.11\n{relationships}web:\n  commands:\n    start: python3 server.py\n")
}

/// A demo app in `server`'s folder, not committed yet, behind varnish: the app `hello`
/// ([`app_yaml`] with `relationships`, [`APP_SERVER`] at `release one`), the varnish
/// service [`SERVICES`] on `vcl`, and the route `http://{default}/` to varnish.
fn behind_varnish(server: &Server, relationships: &str, vcl: &str) -> App {
    let app = App::demo(server.dir.path(), "app");
    app.write(".platform.app.yaml", &app_yaml(relationships));
    app.write(".platform/services.yaml", SERVICES);
    app.write(".platform/config.vcl", vcl);
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'varnish:http'}\n",
    );
    app.write("server.py", APP_SERVER);
    app.write("release.txt", "release one\n");
    app
}

/// Asserts that the public, through the route, neither purges nor bans: `PURGE` and `BAN`
/// of `/cached` are answered 405, though they reach varnishd from the loopback (which
/// the purge test's ACL allows).
fn assert_the_public_neither_purges_nor_bans(server: &Server) {
    for method in ["PURGE", "BAN"] {
        let (status, head, _) = raw_http(
            server.http_port,
            &format!("{method} /cached HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 405, "{method} through the route: {head}");
    }
}

fn push(server: &Server, app: &App) -> (bool, String) {
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    (o.status.success(), text(&o))
}

fn get(server: &Server, path: &str) -> (u16, String) {
    server
        .get(HOST, path)
        .unwrap_or_else(|| panic!("no answer to {path}:\n{}", server.server_log()))
}

#[test]
fn an_app_behind_varnish_is_cached_follows_deploys_without_a_failed_request_and_a_broken_vcl_is_refused(
) {
    cached_stack("varnish:7.1");
    let mut server = Server::start();
    let app = behind_varnish(&server, "", VCL);
    // A route to a service that does not exist is refused where it is written.
    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'varnsh:http'}\n",
    );
    app.commit("varnish in front, a typo in the route");
    let (ok, out) = push(&server, &app);
    assert!(!ok, "a route to no app or service was accepted:\n{out}");
    assert!(
        out.contains(".platform/routes.yaml:1:")
            && out.contains("no application or varnish service")
            && out.contains("did you mean `varnish`"),
        "{out}"
    );

    app.write(
        ".platform/routes.yaml",
        "'http://{default}/': {type: upstream, upstream: 'varnish:http'}\n",
    );
    app.commit("route to varnish");
    let (ok, out) = push(&server, &app);
    assert!(ok, "push failed:\n{out}\n{}", server.server_log());
    assert!(out.contains("varnish:7.1 started"), "{out}");

    // Through the route, varnish answers with the app's answer.
    let (status, head, body) = raw_http(
        server.http_port,
        &format!("GET /release HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 200, "{head}");
    assert_eq!(String::from_utf8_lossy(&body), "release one");
    assert_eq!(
        header_field(&head, "x-served-by"),
        Some("varnish"),
        "{head}"
    );

    // A cacheable answer comes from the cache: the app answered once, the second answer
    // is varnish's copy (two transaction ids in X-Varnish).
    let http_port = server.http_port;
    let cached = || {
        let (status, head, body) = raw_http(
            http_port,
            &format!("GET /cached HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"),
        );
        assert_eq!(status, 200, "{head}");
        (head, String::from_utf8_lossy(&body).to_string())
    };
    let (_, first) = cached();
    assert_eq!(first, "app answered 1 times");
    let (head, second) = cached();
    assert_eq!(second, "app answered 1 times", "not served from the cache");
    let ids = header_field(&head, "x-varnish").unwrap_or_default();
    assert_eq!(ids.split_whitespace().count(), 2, "a cache hit: {head}");
    // The uncacheable path reaches the app every time.
    assert_eq!(get(&server, "/release"), (200, "release one".into()));

    // A deploy under load: varnish's backend moves to the new release, no request fails.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok_count, new_count, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let port = server.http_port;
    let loaders: Vec<_> = (0..3)
        .map(|_| {
            let (stop, ok_count, new_count, failed) = (
                stop.clone(),
                ok_count.clone(),
                new_count.clone(),
                failed.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match http_get(port, HOST, "/release") {
                        Some((200, b)) if b.starts_with("release ") => {
                            ok_count.fetch_add(1, Ordering::SeqCst);
                            if b == "release two" {
                                new_count.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        other => failed.lock().unwrap().push(format!("{other:?}")),
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    app.write("release.txt", "release two\n");
    app.commit("release two");
    let (ok, out) = push(&server, &app);
    // Let the old release retire under load too.
    std::thread::sleep(Duration::from_secs(4));
    stop.store(true, Ordering::SeqCst);
    for l in loaders {
        l.join().unwrap();
    }
    assert!(ok, "push failed:\n{out}\n{}", server.server_log());
    assert!(
        out.contains("service varnish: backends -> application (hello on port"),
        "{out}"
    );
    let failed = failed.lock().unwrap().clone();
    let served = ok_count.load(Ordering::SeqCst);
    assert!(
        failed.is_empty(),
        "{} of {} requests through varnish failed during the deploy: {:?}",
        failed.len(),
        served + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(served > 20, "too few requests during the deploy: {served}");
    // The load saw the switch: the new release answered through varnish before it ended.
    let new = new_count.load(Ordering::SeqCst);
    assert!(
        new > 0 && new < served,
        "{new} of {served} from the new release"
    );
    eprintln!("{served} requests through varnish during the deploy ({new} from the new release), 0 failed");
    assert_eq!(get(&server, "/release"), (200, "release two".into()));
    // The cache outlives the release (varnish was not restarted).
    assert_eq!(cached().1, "app answered 1 times");

    // A VCL that does not compile: the push is refused in the services phase with the
    // compiler's message, and the running release and its varnish go on unchanged.
    app.write(
        ".platform/config.vcl",
        "sub vcl_recv {\n    set req.backend_hint = nosuchdirector.backend();\n}\n",
    );
    app.write("release.txt", "release three\n");
    app.commit("broken vcl");
    let (ok, out) = push(&server, &app);
    assert!(!ok, "a VCL that does not compile was accepted:\n{out}");
    assert!(
        out.contains("(provision failed: service varnish") && out.contains("VCL does not compile"),
        "{out}"
    );
    assert!(
        out.contains("nosuchdirector") && out.contains("(configuration.vcl line 2 Pos 28)"),
        "the compiler's message: {out}"
    );
    assert_eq!(get(&server, "/release"), (200, "release two".into()));
    assert_eq!(cached().1, "app answered 1 times");

    // A VCL that compiles goes live with its release.
    app.write(
        ".platform/config.vcl",
        &VCL.replace("\"varnish\"", "\"varnish, second vcl\""),
    );
    app.commit("second vcl");
    let (ok, out) = push(&server, &app);
    assert!(ok, "push failed:\n{out}\n{}", server.server_log());
    let (head, body) = cached();
    assert_eq!(body, "app answered 1 times");
    assert_eq!(
        header_field(&head, "x-served-by"),
        Some("varnish, second vcl"),
        "{head}"
    );
    assert_eq!(get(&server, "/release"), (200, "release three".into()));

    // A rollback moves varnish's backend and VCL back too.
    let o = server.ssh(&server.key, "git", "rollback demo main");
    assert!(o.status.success(), "rollback: {}", text(&o));
    assert_eq!(get(&server, "/release"), (200, "release two".into()));
    let (head, _) = cached();
    assert_eq!(
        header_field(&head, "x-served-by"),
        Some("varnish"),
        "{head}"
    );

    // `down` stops varnish; `serve` starts it again on the live release's backend.
    server.stop();
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "down: {}", text(&o));
    server.serve();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while server.get(HOST, "/release") != Some((200, "release two".into())) {
        assert!(
            std::time::Instant::now() < deadline,
            "not back through varnish within 90s: {:?}\n{}",
            server.get(HOST, "/release"),
            server.server_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (head, _) = cached();
    assert_eq!(
        header_field(&head, "x-served-by"),
        Some("varnish"),
        "{head}"
    );
}

#[test]
fn a_new_varnish_on_a_vcl_that_does_not_compile_is_refused_and_nothing_starts() {
    cached_stack("varnish:7.1");
    let server = Server::start();
    let app = behind_varnish(&server, "", VCL);
    // A relationship of the service to an app that does not exist is refused first.
    app.write(
        ".platform/services.yaml",
        &SERVICES.replace("'hello:http'", "'helo:http'"),
    );
    app.write(
        ".platform/config.vcl",
        "sub vcl_recv {\n    set req.backend_hint = application.backend()\n}\n",
    );
    app.commit("varnish with a typo");
    let (ok, out) = push(&server, &app);
    assert!(!ok, "{out}");
    assert!(
        out.contains(".platform/services.yaml:4:")
            && out.contains("names `helo`, which is no application; did you mean `hello`?"),
        "{out}"
    );
    app.write(".platform/services.yaml", SERVICES);
    app.commit("varnish with a VCL missing a semicolon");
    let (ok, out) = push(&server, &app);
    assert!(!ok, "a VCL that does not compile was accepted:\n{out}");
    assert!(
        out.contains("service varnish exited at start")
            && out.contains("VCL compilation failed")
            && out.contains("(configuration.vcl line 3 Pos 1)"),
        "{out}"
    );
    // Nothing runs: no app, no varnish, and the host is not routed.
    let containers = server.containers();
    assert!(containers.is_empty(), "{containers:?}");
    assert_ne!(get(&server, "/release").0, 200);

    app.write(".platform/config.vcl", VCL);
    app.commit("varnish with a VCL that compiles");
    let (ok, out) = push(&server, &app);
    assert!(ok, "push failed:\n{out}\n{}", server.server_log());
    assert_eq!(get(&server, "/release"), (200, "release one".into()));

    // A branch gets its own varnish (a copy of main's service) in front of its own app,
    // and keeps it there after `sync` copies main's service data again.
    app.git_ok(&["checkout", "-q", "-b", "dev"]);
    app.write("release.txt", "dev release\n");
    app.commit("dev");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "dev"]);
    assert!(o.status.success(), "push dev:\n{}", text(&o));
    let dev = "dev.demo.localhost";
    assert_eq!(
        server.get(dev, "/release"),
        Some((200, "dev release".into()))
    );
    let o = server.ssh(&server.key, "git", "sync demo dev");
    assert!(o.status.success(), "sync: {}", text(&o));
    assert_eq!(
        server.get(dev, "/release"),
        Some((200, "dev release".into()))
    );
    assert_eq!(get(&server, "/release"), (200, "release one".into()));
}

/// The user's VCL of the purge test: purges allowed by an ACL of the loopback, as
/// Platform.sh's users write it.
const PURGE_VCL: &str = r#"acl purge {
    "localhost";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purge) {
            return (synth(405, "Not in the purge ACL"));
        }
        return (purge);
    }
    set req.backend_hint = application.backend();
}
"#;

#[test]
fn an_app_purges_a_url_through_its_relationship_to_varnish_and_no_one_else_does() {
    cached_stack("varnish:7.1");
    let server = Server::start();
    let app = behind_varnish(
        &server,
        "relationships:\n  cache: 'varnish:http'\n",
        PURGE_VCL,
    );
    app.commit("varnish in front, the app purges");
    let (ok, out) = push(&server, &app);
    assert!(ok, "push failed:\n{out}\n{}", server.server_log());
    let cached = || get(&server, "/cached");
    assert_eq!(cached(), (200, "app answered 1 times".into()));
    assert_eq!(cached(), (200, "app answered 1 times".into()), "cached");

    // The public, through the route, neither purges nor bans, though the request reaches
    // varnishd from the loopback, which the user's ACL allows.
    assert_the_public_neither_purges_nor_bans(&server);
    assert_eq!(cached(), (200, "app answered 1 times".into()), "not purged");

    // The app purges the URL through its relationship: the next request reaches the app.
    assert_eq!(
        get(&server, &format!("/invalidate?method=PURGE&host={HOST}")),
        (200, "200 Purged".into())
    );
    assert_eq!(cached(), (200, "app answered 2 times".into()), "purged");
    assert_eq!(
        cached(),
        (200, "app answered 2 times".into()),
        "cached again"
    );

    // Another environment's app reaches its own varnish only: its purge of main's URL
    // leaves main's cache as it was.
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main:dev"]);
    assert!(o.status.success(), "push dev:\n{}", text(&o));
    let (status, body) = server
        .get(
            "dev.demo.localhost",
            &format!("/invalidate?method=PURGE&host={HOST}"),
        )
        .unwrap_or_else(|| panic!("no answer from dev:\n{}", server.server_log()));
    assert_eq!(
        (status, body.as_str()),
        (200, "200 Purged"),
        "dev's own varnish"
    );
    assert_eq!(
        cached(),
        (200, "app answered 2 times".into()),
        "main's cache kept"
    );
}

#[test]
fn an_app_given_a_relationship_to_a_running_varnish_purges_right_after_its_push() {
    cached_stack("varnish:7.1");
    let server = Server::start();
    let app = behind_varnish(&server, "", PURGE_VCL);
    app.commit("varnish in front, no relationship to it yet");
    let (ok, out) = push(&server, &app);
    assert!(ok, "push failed:\n{out}\n{}", server.server_log());
    assert_eq!(get(&server, "/release"), (200, "release one".into()));

    // The app's relationship to the varnish already running: nothing but the app changes.
    app.write(
        ".platform.app.yaml",
        &app_yaml("relationships:\n  cache: 'varnish:http'\n"),
    );
    app.write("release.txt", "release two\n");
    app.commit("the app may purge");
    let (ok, out) = push(&server, &app);
    assert!(ok, "push failed:\n{out}\n{}", server.server_log());
    assert!(!out.contains("restarted on"), "varnish restarted:\n{out}");
    assert_eq!(get(&server, "/release"), (200, "release two".into()));
    let cached = || get(&server, "/cached");
    assert_eq!(cached(), (200, "app answered 1 times".into()));
    assert_eq!(cached(), (200, "app answered 1 times".into()), "cached");

    // The public still neither purges nor bans.
    assert_the_public_neither_purges_nor_bans(&server);
    assert_eq!(cached(), (200, "app answered 1 times".into()), "not purged");
    // The app purges at once, through its new relationship.
    assert_eq!(
        get(&server, &format!("/invalidate?method=PURGE&host={HOST}")),
        (200, "200 Purged".into())
    );
    assert_eq!(cached(), (200, "app answered 2 times".into()), "purged");
}
