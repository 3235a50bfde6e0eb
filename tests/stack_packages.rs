//! The real configs that were refused for their stack until stacks had packages, deno and
//! lisp, pushed as a user would and served by a real `slipway serve`: upsun demo-clamav's
//! `stack: ["clamav"]` (no language: the base stack with ClamAV's Debian packages),
//! demo-js's `deno_app` (`stack: [deno]`, Deno 2 from the npm registry) and the lisp
//! template's `type: lisp:2.1` (SBCL 2.2 with a warning, built by the default flavor's
//! `asdf:make`), and the same as an Upsun `stack: [sbcl]` (SBCL 2.5). Each app answers with the version of what it runs on.
//!
//! Their stacks are not in the tests' shared list (`TEST_STACKS`): a push builds them into
//! the test store (`SLIPWAY_TEST_STACKS_DIR`), minutes each the first time.

use slipway_e2e::{App, Server};

/// demo-clamav's app, with a web server (perl-base's sockets: the base stack has no
/// language) answering with what ClamAV's commands say their version is.
const CLAMAV_CONFIG: &str = r#"applications:
  in-app_clamav:
    source:
      root: "/"
    stack:
      - "clamav"
    hooks:
      build: |
        set -eu
        clamscan --version
    web:
      commands:
        start: perl server.pl
routes:
  "http://{default}/":
    type: upstream
    upstream: "in-app_clamav:http"
"#;

const PERL_SERVER: &str = r#"use strict;
use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ENV{PORT},
    Listen => 5, ReuseAddr => 1) or die "listen: $!";
while (my $c = $s->accept) {
    while (defined(my $l = <$c>)) { last if $l eq "\r\n" || $l eq "\n" }
    my $body = `clamscan --version` . `freshclam --version` . `ls /usr/sbin/clamd`;
    print $c "HTTP/1.0 200 OK\r\nContent-Length: " . length($body) . "\r\n\r\n" . $body;
    close $c;
}
"#;

#[test]
fn an_upsun_stack_of_clamav_only_runs_on_the_base_stack_with_clamavs_packages() {
    let server = Server::start_with(&[]);
    let app = server.project(
        "clamav",
        &[
            (".upsun/config.yaml", CLAMAV_CONFIG),
            ("server.pl", PERL_SERVER),
        ],
    );
    let out = server.push_ok(&app, "clamav");
    assert!(
        out.contains(&format!("stack {}", "base:13+clamav")),
        "{out}"
    );
    let body = server.page("main.clamav.localhost", "/");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines.len(), 3, "{body}");
    assert!(lines[0].starts_with("ClamAV 1."), "{body}");
    assert!(lines[1].starts_with("ClamAV 1."), "{body}");
    assert_eq!(lines[2], "/usr/sbin/clamd", "{body}");
}

/// demo-js's `deno_app` (its hook's `deno compile` left out: that downloads Deno's
/// runtime from a host not reachable here), started by `deno task start`.
const DENO_CONFIG: &str = r#"applications:
    deno_app:
        source:
            root: apps/deno
        stack:
            - deno
        variables:
            env:
                DENO_DIR: "cache"
        hooks:
            build: |
                set -e
                deno --version
                deno check main.ts
        web:
            commands:
                start: deno task start
routes:
    "http://{default}/":
        type: upstream
        upstream: "deno_app:http"
"#;

const DENO_JSON: &str = r#"{ "tasks": { "start": "deno run --allow-net --allow-env main.ts" } }
"#;

const DENO_MAIN: &str = r#"const port: number = Number(Deno.env.get("PORT"));
Deno.serve({ hostname: "127.0.0.1", port }, () => new Response(`deno ${Deno.version.deno}`));
"#;

#[test]
fn an_upsun_deno_app_runs_on_deno_2_from_the_npm_registry() {
    let server = Server::start_with(&[]);
    let app = server.project(
        "denojs",
        &[
            (".upsun/config.yaml", DENO_CONFIG),
            ("apps/deno/deno.json", DENO_JSON),
            ("apps/deno/main.ts", DENO_MAIN),
        ],
    );
    let out = server.push_ok(&app, "denojs");
    assert!(out.contains(&format!("stack {}", "deno:2")), "{out}");
    let body = server.page("main.denojs.localhost", "/");
    assert!(body.starts_with("deno 2."), "{body}\n{out}");
}

/// The lisp template's app (`type: lisp:2.1`, `start: ./example`, no build hook), with an
/// ASDF system `app` whose `program-op` (SBCL's `save-lisp-and-die :executable t`) writes
/// `example`: a web server on SBCL's sockets answering with the Lisp it runs on and the
/// push's `+version+` (`version.lisp`).
const LISP_APP_YAML: &str = r#"name: app
type: lisp:2.1
web:
    commands:
        start: ./example
    locations:
        /:
            allow: false
            passthru: true
disk: 512
"#;

const LISP_ROUTES: &str = r#""http://{default}/":
    type: upstream
    upstream: "app:http"
"#;

const LISP_ASD: &str = r#"(defsystem "app"
  :depends-on ((:require "sb-bsd-sockets"))
  :components ((:file "version") (:file "app"))
  :build-operation "program-op"
  :build-pathname "example"
  :entry-point "app:main")
"#;

const LISP_APP: &str = r#"(in-package :app)

(defun main ()
  (let ((port (parse-integer (sb-ext:posix-getenv "PORT")))
        (socket (make-instance 'sb-bsd-sockets:inet-socket :type :stream :protocol :tcp))
        (crlf (format nil "~c~c" #\Return #\Linefeed)))
    (setf (sb-bsd-sockets:sockopt-reuse-address socket) t)
    (sb-bsd-sockets:socket-bind socket #(127 0 0 1) port)
    (sb-bsd-sockets:socket-listen socket 16)
    (loop
      (let* ((client (sb-bsd-sockets:socket-accept socket))
             (stream (sb-bsd-sockets:socket-make-stream
                      client :input t :output t :element-type 'character
                      :external-format :latin-1 :buffering :full)))
        (unwind-protect
             (progn
               (loop for line = (read-line stream nil "")
                     until (or (string= line "") (string= line (string #\Return))))
               (let ((body (format nil "~a ~a, push ~a" (lisp-implementation-type)
                                   (lisp-implementation-version) +version+)))
                 (format stream "HTTP/1.0 200 OK~aContent-Length: ~d~a~a~a"
                         crlf (length body) crlf crlf body)
                 (finish-output stream)))
          (sb-bsd-sockets:socket-close client))))))
"#;

/// The `version.lisp` of push `n`: the package, and `+version+` the app answers with.
fn lisp_version(n: u32) -> String {
    format!("(defpackage :app (:use :cl) (:export #:main))\n(in-package :app)\n(defparameter +version+ {n})\n")
}

/// Pushes `app` (project `name`) twice, the second time with a changed `version.lisp` so that
/// it builds again: each build saves `./example` (`program-op`) and the app started by
/// `./example` answers `SBCL <sbcl>` with that push's number. Returns the first push's output.
fn push_lisp_twice(server: &Server, app: &App, name: &str, sbcl: &str) -> String {
    let mut first = String::new();
    for n in 1..=2 {
        if n > 1 {
            app.write("version.lisp", &lisp_version(n));
            app.commit(&format!("v{n}"));
        }
        let out = server.push_ok(app, name);
        assert!(out.contains("asdf:make :app"), "{out}");
        let body = server.page(&format!("main.{name}.localhost"), "/");
        assert!(
            body.starts_with(&format!("SBCL {sbcl}")) && body.ends_with(&format!(", push {n}")),
            "{body}\n{out}"
        );
        if n == 1 {
            first = out;
        }
    }
    first
}

/// The lisp template as it is: `program-op` saves an executable in the build container, started
/// by `web.commands.start`, twice per SBCL version. (SBCL's `save-lisp-and-die` aborted when a
/// SIGURG of runc's Go runtime, forwarded by the foreground `runc run`, reached it; see
/// `RUNTIME_GODEBUG` in slipway-runtime.)
#[test]
fn the_lisp_template_runs_on_sbcl_2_2_built_by_asdf_make_with_a_warning() {
    let server = Server::start_with(&[]);
    let version = lisp_version(1);
    let app = server.project(
        "lisp",
        &[
            (".platform.app.yaml", LISP_APP_YAML),
            (".platform/routes.yaml", LISP_ROUTES),
            ("app.asd", LISP_ASD),
            ("version.lisp", &version),
            ("app.lisp", LISP_APP),
        ],
    );
    let out = push_lisp_twice(&server, &app, "lisp", "2.2.");
    assert!(
        out.lines().any(|l| l.contains("warning:")
            && l.contains("lisp:2.1 is not available on this server; using lisp:2.2")),
        "{out}"
    );
    assert!(out.contains(&format!("stack {}", "lisp:2.2")), "{out}");
    // The same app as an Upsun `stack: [sbcl]`: trixie's SBCL 2.5.
    let app = server.project(
        "sbcl",
        &[
            (".upsun/config.yaml", SBCL_CONFIG),
            ("app.asd", LISP_ASD),
            ("version.lisp", &version),
            ("app.lisp", LISP_APP),
        ],
    );
    let out = push_lisp_twice(&server, &app, "sbcl", "2.5.");
    assert!(out.contains(&format!("stack {}", "lisp:2.5")), "{out}");
}

const SBCL_CONFIG: &str = r#"applications:
    app:
        stack: [sbcl]
        web:
            commands:
                start: ./example
routes:
    "http://{default}/":
        type: upstream
        upstream: "app:http"
"#;
