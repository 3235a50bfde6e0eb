//! Hosts belong to one project (issue 12, finding 2): a push cannot take another
//! project's host, production environments (`main` and `master`) are protected, and
//! hosts outside `PROJECT.DOMAIN` are assigned by server admins with `domain add|rm|ls`.

use std::path::Path;

use slipway_e2e::{text, App, Server};

/// An admin SSH command that must succeed; its stdout.
/// The demo app of `project`, answering `built-VERSION`.
fn app(server: &Server, project: &str, version: &str) -> App {
    let app = App::demo(server.dir.path(), &format!("{project}-app"));
    app.write("VERSION", &format!("{version}\n"));
    app.commit(version);
    app
}

/// Routes `{default}` and `extra` (a route URL) to the demo app, committed.
fn route(app: &App, extra: &str) {
    app.write(
        ".platform/routes.yaml",
        &format!(
            "\"http://{{default}}/\":\n    type: upstream\n    upstream: \"hello:http\"\n\"{extra}\":\n    type: upstream\n    upstream: \"hello:http\"\n"
        ),
    );
    app.commit(&format!("route {extra}"));
}

/// `git push -f` of HEAD to `branch` of `project` with `key`: (success, output).
fn push(server: &Server, key: &Path, app: &App, project: &str, branch: &str) -> (bool, String) {
    let o = server.git_as(
        key,
        &app.dir,
        &[
            "push",
            "-f",
            &server.remote(project),
            &format!("HEAD:{branch}"),
        ],
    );
    (o.status.success(), text(&o))
}

/// The body at `host` through the router, or what went wrong.
fn body(server: &Server, host: &str) -> String {
    match server.get(host, "/") {
        Some((200, body)) => body,
        other => format!("GET {host}: {other:?}"),
    }
}

#[test]
fn a_push_cannot_take_another_projects_host() {
    let server = Server::start();
    let me = server.key.clone();
    let b = app(&server, "b", "b");
    let (ok, out) = push(&server, &me, &b, "b", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert_eq!(body(&server, "main.b.localhost"), "built-b\n");

    // Project a: a project admin (dave) and a contributor (carol).
    let a = app(&server, "a", "a");
    let (ok, out) = push(&server, &me, &a, "a", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    let dave = server.add_user("dave");
    let carol = server.add_user("carol");
    server.admin_stdout("access grant a dave admin");
    server.admin_stdout("access grant a carol contributor");
    route(&a, "http://main.b.localhost/");

    // The audit's attack: a contributor of a pushes master routing b's host. master is
    // production, so it is protected.
    let (ok, out) = push(&server, &carol, &a, "a", "master");
    assert!(!ok, "{out}");
    assert!(
        out.contains("(validate failed: master is a protected environment"),
        "{out}"
    );
    // The same policy guards master's operations and shells.
    for command in ["redeploy a master", "var set a master X=1"] {
        let o = server.ssh(&carol, "git", command);
        assert_eq!(o.status.code(), Some(1), "{command}: {}", text(&o));
        assert!(
            text(&o)
                .contains("needs the admin role on a (master is protected); you are contributor"),
            "{command}: {}",
            text(&o)
        );
    }
    let o = server.ssh(&carol, "master.a", "true");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("(master is protected)"), "{}", text(&o));
    // An admin of a may push master, but not with b's host: refused at validate, with
    // the route's position and the owner.
    let (ok, out) = push(&server, &dave, &a, "a", "master");
    assert!(!ok, "{out}");
    assert!(
        out.contains("validate failed: .platform/routes.yaml:4:1: error: route `http://main.b.localhost/`: main.b.localhost belongs to project b"),
        "{out}"
    );
    let o = server.ssh(&me, "git", "envs a --json");
    assert!(!text(&o).contains("\"master\""), "{}", text(&o));
    assert_eq!(
        body(&server, "main.b.localhost"),
        "built-b\n",
        "b keeps serving"
    );

    // Any case, a trailing dot or a host deeper under b.localhost is b's too, and so is a
    // {default} pattern that lands under b.
    for host in [
        "http://MAIN.B.localhost./",
        "http://www.main.b.localhost/",
        "http://{default}.b.localhost/",
    ] {
        route(&a, host);
        let (ok, out) = push(&server, &dave, &a, "a", "master");
        assert!(!ok, "{host}: {out}");
        assert!(out.contains("belongs to project b"), "{host}: {out}");
    }
    // The server's own names belong to nobody.
    route(&a, "http://console.localhost/");
    let (ok, out) = push(&server, &dave, &a, "a", "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains("console.localhost is reserved for the server itself"),
        "{out}"
    );

    // A non-production environment's explicit host is rewritten under its own host
    // (HOST.ENV.PROJECT.DOMAIN): a contributor may push it, and b keeps its host.
    route(&a, "http://main.b.localhost/");
    let (ok, out) = push(&server, &carol, &a, "a", "feature");
    assert!(ok, "{out}\n{}", server.server_log());
    assert!(
        out.contains("main.b.localhost.feature.a.localhost"),
        "{out}"
    );
    assert_eq!(
        body(&server, "main.b.localhost.feature.a.localhost"),
        "built-a\n"
    );
    assert_eq!(
        body(&server, "main.b.localhost"),
        "built-b\n",
        "b keeps serving"
    );
    assert_eq!(body(&server, "main.a.localhost"), "built-a\n");
}

#[test]
fn server_admins_assign_hosts_to_projects() {
    let server = Server::start();
    let me = server.key.clone();
    let a = app(&server, "a", "a");
    let (ok, out) = push(&server, &me, &a, "a", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    let dave = server.add_user("dave");
    server.admin_stdout("access grant a dave admin");

    // A host outside the domain is nobody's until a server admin assigns it.
    route(&a, "http://www.shop.test/");
    let (ok, out) = push(&server, &dave, &a, "a", "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains("www.shop.test is not assigned to project a: a server admin assigns it with `domain add a www.shop.test`"),
        "{out}"
    );
    // A project admin is no server admin.
    let o = server.ssh(&dave, "git", "domain add a www.shop.test");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("only server admins manage domains"),
        "{}",
        text(&o)
    );
    let o = server.ssh(&dave, "git", "domain ls");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // What cannot be assigned.
    for (host, why) in [
        ("main.b.localhost", "belongs to project b by its name"),
        ("console.localhost", "reserved for the server itself"),
        ("www.shop.test:8080", "is not a host name"),
        ("*.shop.test", "is not a host name"),
    ] {
        let o = server.ssh(&me, "git", &format!("domain add a {host}"));
        assert_eq!(o.status.code(), Some(1), "{host}: {}", text(&o));
        assert!(text(&o).contains(why), "{host}: {}", text(&o));
    }
    let o = server.ssh(&me, "git", "domain add nope www.shop.test");
    assert!(
        text(&o).contains("project 'nope' not found"),
        "{}",
        text(&o)
    );

    // Assigned (in any case): a's production routes it and it is served.
    let out = server.admin_stdout("domain add a WWW.Shop.Test.");
    assert!(out.contains("www.shop.test is assigned to a"), "{out}");
    let (ok, out) = push(&server, &dave, &a, "a", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert_eq!(body(&server, "www.shop.test"), "built-a\n");
    assert_eq!(body(&server, "WWW.SHOP.TEST."), "built-a\n");
    // One environment of the project routes it: the other production one may not.
    let (ok, out) = push(&server, &dave, &a, "a", "master");
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "www.shop.test is routed by environment main of this project: remove it there first"
        ),
        "{out}"
    );

    // A second project cannot get it assigned, nor route it.
    let b = app(&server, "b", "b");
    let (ok, out) = push(&server, &me, &b, "b", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    let o = server.ssh(&me, "git", "domain add b www.shop.test");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("www.shop.test belongs to project a"),
        "{}",
        text(&o)
    );
    route(&b, "http://www.shop.test/");
    let (ok, out) = push(&server, &me, &b, "b", "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains("www.shop.test belongs to project a (a server admin assigned it)"),
        "{out}"
    );
    assert_eq!(body(&server, "www.shop.test"), "built-a\n");

    let ls = server.admin_stdout("domain ls --json");
    assert!(ls.contains("\"host\": \"www.shop.test\""), "{ls}");
    assert!(ls.contains("\"project\": \"a\""), "{ls}");
    assert!(ls.contains("\"assigned_by\": \"me\""), "{ls}");
    assert!(ls.contains("\"routed_by\": \"a/main\""), "{ls}");
    assert_eq!(server.admin_stdout("domain ls b --json").trim(), "[]");

    // domain rm: the assignment goes; a keeps serving until its next deploy, and while
    // it routes the host no other project takes it, even once assigned.
    let o = server.ssh(&me, "git", "domain rm b www.shop.test");
    assert!(
        text(&o).contains("belongs to project a, not b"),
        "{}",
        text(&o)
    );
    let out = server.admin_stdout("domain rm www.shop.test");
    assert!(
        out.contains("www.shop.test is no longer assigned to a (a/main still routes it"),
        "{out}"
    );
    assert_eq!(server.admin_stdout("domain ls --json").trim(), "[]");
    let o = server.ssh(&me, "git", "domain rm www.shop.test");
    assert!(text(&o).contains("assigned to no project"), "{}", text(&o));
    server.admin_stdout("domain add b www.shop.test");
    let (ok, out) = push(&server, &me, &b, "b", "main");
    assert!(!ok, "{out}");
    assert!(
        out.contains("www.shop.test belongs to project a (its environment main routes it)"),
        "{out}"
    );
    assert_eq!(body(&server, "www.shop.test"), "built-a\n");
    // a's redeploy is refused now that the host is b's; a keeps serving.
    let o = server.ssh(&me, "git", "redeploy a main");
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(
            "validate failed: route `http://www.shop.test/`: www.shop.test belongs to project b"
        ),
        "{}",
        text(&o)
    );
    assert_eq!(body(&server, "www.shop.test"), "built-a\n");
    // Once a stops routing it, b routes it.
    a.write(
        ".platform/routes.yaml",
        "\"http://{default}/\":\n    type: upstream\n    upstream: \"hello:http\"\n",
    );
    a.commit("no shop");
    let (ok, out) = push(&server, &dave, &a, "a", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    let (ok, out) = push(&server, &me, &b, "b", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert_eq!(body(&server, "www.shop.test"), "built-b\n");
    assert_eq!(body(&server, "main.a.localhost"), "built-a\n");
}

#[test]
fn an_atomic_push_cannot_give_one_host_to_two_environments() {
    let server = Server::start();
    let me = server.key.clone();
    let a = app(&server, "a", "a1");
    let (ok, out) = push(&server, &me, &a, "a", "main");
    assert!(ok, "{out}\n{}", server.server_log());

    // a.localhost is a's own host, but only one environment may route it.
    a.write("VERSION", "a2\n");
    route(&a, "http://a.localhost/");
    let o = server.git_as(
        &me,
        &a.dir,
        &[
            "push",
            "--atomic",
            &server.remote("a"),
            "HEAD:main",
            "HEAD:master",
        ],
    );
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("a.localhost is routed by both main and master in this push"),
        "{out}"
    );
    assert_eq!(
        body(&server, "main.a.localhost"),
        "built-a1\n",
        "main did not switch"
    );
    assert!(
        !matches!(server.get("a.localhost", "/"), Some((200, _))),
        "nobody routes a.localhost"
    );

    // One of them may route it.
    let (ok, out) = push(&server, &me, &a, "a", "main");
    assert!(ok, "{out}\n{}", server.server_log());
    assert_eq!(body(&server, "a.localhost"), "built-a2\n");
}
