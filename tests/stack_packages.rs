//! The real configs that were refused for their stack until stacks had packages, deno and
//! lisp, pushed as a user would and served by a real `slipway serve`: upsun demo-clamav's
//! `stack: ["clamav"]` (no language: the base stack with ClamAV's Debian packages),
//! demo-js's `deno_app` (`stack: [deno]`, Deno 2 from the npm registry) and the lisp
//! template's `type: lisp:2.1` (SBCL 2.2 with a warning, built by the default flavor's
//! `asdf:make`), and the same as an Upsun `stack: [sbcl]` (SBCL 2.5). Each app answers with the version of what it runs on.
//!
//! Their stacks are not in the tests' shared list (`TEST_STACKS`): a push builds them into
//! the test store (`SLIPWAY_TEST_STACKS_DIR`), minutes each the first time.

use slipway_e2e::Server;

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

/// The lisp template's app shape (`type: lisp:2.1`, no build hook), with an ASDF system
/// `app`, compiled by the build (`asdf:make`) and loaded by `start.sh`: a web server on SBCL's
/// sockets answering with the Lisp it runs on.
const LISP_APP_YAML: &str = r#"name: app
type: lisp:2.1
web:
    commands:
        start: sh start.sh
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
  :components ((:file "app")))
"#;

/// The start command's script: SBCL loads the system the build compiled and runs it. (Not
/// an executable saved by `program-op`: SBCL's `save-lisp-and-die` crashes in most builds
/// inside Slipway's containers, "interrupt already pending when sig23 received"; see
/// CRATE-STATUS.)
const LISP_START: &str = r#"exec sbcl --non-interactive --no-userinit --eval '(require :asdf)' --eval '(asdf:initialize-source-registry (list :source-registry (list :tree (uiop:getcwd)) :inherit-configuration))' --eval '(asdf:load-system "app")' --eval '(app:main)'
"#;

const LISP_APP: &str = r#"(defpackage :app (:use :cl) (:export #:main))
(in-package :app)

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
               (let ((body (format nil "~a ~a" (lisp-implementation-type)
                                   (lisp-implementation-version))))
                 (format stream "HTTP/1.0 200 OK~aContent-Length: ~d~a~a~a"
                         crlf (length body) crlf crlf body)
                 (finish-output stream)))
          (sb-bsd-sockets:socket-close client))))))
"#;

#[test]
fn the_lisp_template_runs_on_sbcl_2_2_built_by_asdf_make_with_a_warning() {
    let server = Server::start_with(&[]);
    let app = server.project(
        "lisp",
        &[
            (".platform.app.yaml", LISP_APP_YAML),
            (".platform/routes.yaml", LISP_ROUTES),
            ("app.asd", LISP_ASD),
            ("app.lisp", LISP_APP),
            ("start.sh", LISP_START),
        ],
    );
    let out = server.push_ok(&app, "lisp");
    assert!(
        out.lines().any(|l| l.contains("warning:")
            && l.contains("lisp:2.1 is not available on this server; using lisp:2.2")),
        "{out}"
    );
    assert!(out.contains(&format!("stack {}", "lisp:2.2")), "{out}");
    assert!(out.contains("asdf:make :app"), "{out}");
    let body = server.page("main.lisp.localhost", "/");
    assert!(body.starts_with("SBCL 2.2."), "{body}\n{out}");
    // The same app as an Upsun `stack: [sbcl]`: trixie's SBCL 2.5.
    let app = server.project(
        "sbcl",
        &[
            (".upsun/config.yaml", SBCL_CONFIG),
            ("app.asd", LISP_ASD),
            ("app.lisp", LISP_APP),
            ("start.sh", LISP_START),
        ],
    );
    let out = server.push_ok(&app, "sbcl");
    assert!(out.contains(&format!("stack {}", "lisp:2.5")), "{out}");
    let body = server.page("main.sbcl.localhost", "/");
    assert!(body.starts_with("SBCL 2.5."), "{body}\n{out}");
}

const SBCL_CONFIG: &str = r#"applications:
    app:
        stack: [sbcl]
        web:
            commands:
                start: sh start.sh
routes:
    "http://{default}/":
        type: upstream
        upstream: "app:http"
"#;
