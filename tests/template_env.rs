//! What templates read from their environment (issue 13): `/run/config.json` (the Java
//! templates size their heap with `jq .info.limits.memory /run/config.json`), a writable
//! `HOME` in every kind of process, the stacks' tools. Small apps of our own in the shapes
//! of the real configs, pushed as a user would.

use slipway_e2e::{py_app, py_socket_app, Server};

// ---------------------------------------------------------------------------------------
// /run/config.json: jenkins', microprofile-payara's and microprofile-piranha's start
// commands are `java -jar -Xmx$(jq .info.limits.memory /run/config.json)m ...`. Two apps
// in that shape: one on $PORT (`size: S`), one on a unix socket (`size: L`, whose `/run`
// is its own); each gets its arguments from the file, and a deploy hook reads it too.

const SIZED_APPS: &str = r#"- name: sized
  type: python:3.11
  size: S
  web:
    commands:
      start: exec python3 server.py -Xmx$(jq .info.limits.memory /run/config.json)m $(jq .info.limits.cpu /run/config.json)
  hooks:
    deploy: echo "deploy hook sees $(jq .info.limits.memory /run/config.json) MiB"
- name: sock
  type: python:3.11
  size: L
  web:
    upstream:
      socket_family: unix
    commands:
      start: exec python3 sock.py -Xmx$(jq .info.limits.memory /run/config.json)m $(jq .info.limits.cpu /run/config.json)
"#;

const SIZED_ROUTES: &str = r#""http://{default}/":
  type: upstream
  upstream: "sized:http"
"http://sock.{default}/":
  type: upstream
  upstream: "sock:http"
"#;

/// The answer of both apps: their arguments, and whether `/run/config.json` can be written.
macro_rules! sized_answer {
    () => {
        r#"        try:
            open("/run/config.json", "w").close()
            writable = "writable"
        except OSError:
            writable = "read-only"
        body = ("args " + " ".join(sys.argv[1:]) + " " + writable).encode()
"#
    };
}

const SIZED_SERVER: &str = py_app!("", sized_answer!());

/// The same answer on `$SOCKET`.
const SOCK_SERVER: &str = py_socket_app!("", sized_answer!());

#[test]
fn start_commands_size_themselves_from_run_config_json() {
    let server = Server::start_with(&[]);
    let app = server.project(
        "sized",
        &[
            (".platform/applications.yaml", SIZED_APPS),
            (".platform/routes.yaml", SIZED_ROUTES),
            ("server.py", SIZED_SERVER),
            ("sock.py", SOCK_SERVER),
        ],
    );
    let out = server.push_ok(&app, "sized");
    // `size: S`: 512 MiB and half a CPU, the limits the container really has.
    assert!(out.contains("deploy hook sees 512 MiB"), "{out}");
    let host = "main.sized.localhost";
    assert_eq!(
        server.page(host, "/"),
        "args -Xmx512m 0.5 read-only",
        "{out}"
    );
    // `size: L`: 2 GiB and 2 CPUs, with the file over the app's own `/run`.
    assert_eq!(
        server.page(&format!("sock.{host}"), "/"),
        "args -Xmx2048m 2 read-only",
        "{out}"
    );
}

// ---------------------------------------------------------------------------------------
// django3: `type: python:3.10` (Debian has 3.11: the type's warning), its Pipfile's
// `[requires] python_version = "3.10"`, pipenv 2023.7.23 from `dependencies.python3`,
// `pipenv install --deploy` in the build hook, `pipenv run gunicorn` on a unix socket.
// pipenv refuses `--deploy` with a virtualenv of another Python; the user's files stay as
// they are and the app deploys on 3.11, as it would on Platform.sh's 3.10.

const DJANGO3_APP: &str = r#"name: app
type: 'python:3.10'
disk: 512
web:
  commands:
    start: "pipenv run gunicorn -w 2 -b unix:$SOCKET myapp:application"
  upstream:
    socket_family: unix
  locations:
    "/":
      passthru: true
dependencies:
  python3:
    pipenv: '2023.7.23'
hooks:
  build: |
    pipenv install --deploy
    pipenv run python -c 'import gunicorn, sys; print("build runs", sys.version_info[:2], "in", sys.prefix)'
  deploy: |
    pipenv run python -c 'import sys; print("deploy runs", sys.version_info[:2], "in", sys.prefix)'
"#;

const DJANGO3_WSGI: &str = r#"import sys

def application(environ, start_response):
    body = ("gunicorn on %d.%d from %s" % (sys.version_info[0], sys.version_info[1], sys.prefix)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"#;

#[test]
fn django3_pipfile_asking_python_3_10_deploys_on_3_11() {
    let server = Server::start_with(&[]);
    let app = server.project(
        "django3",
        &[
            (".platform.app.yaml", DJANGO3_APP),
            (
                ".platform/routes.yaml",
                "\"http://{default}/\":\n  type: upstream\n  upstream: \"app:http\"\n",
            ),
            ("Pipfile", include_str!("template_env/django3.Pipfile")),
            (
                "Pipfile.lock",
                include_str!("template_env/django3.Pipfile.lock"),
            ),
            ("myapp.py", DJANGO3_WSGI),
        ],
    );
    let out = server.push_ok(&app, "django3");
    assert!(
        out.contains("python:3.10 is not available on this server; using python:3.11"),
        "{out}"
    );
    assert!(
        out.contains("warning: the Pipfile asks for python_version 3.10, which this server stands in for with Python 3.11"),
        "{out}"
    );
    assert!(
        out.contains("Installing dependencies from Pipfile.lock"),
        "{out}"
    );
    assert!(out.contains("build runs (3, 11) in /app/.venv"), "{out}");
    assert!(out.contains("deploy runs (3, 11) in /app/.venv"), "{out}");
    assert_eq!(
        server.page("main.django3.localhost", "/"),
        "gunicorn on 3.11 from /app/.venv"
    );
    // The user's files are as they were committed.
    let slug = out
        .split("build app: built sha256:")
        .nth(1)
        .and_then(|s| s.get(..64))
        .map(|hex| server.data.join("slugs").join(hex))
        .unwrap_or_else(|| panic!("no slug in\n{out}"));
    assert_eq!(
        std::fs::read_to_string(slug.join("Pipfile")).unwrap(),
        include_str!("template_env/django3.Pipfile")
    );
}

// ---------------------------------------------------------------------------------------
// HOME: tools write `~/.cache`, `~/.npm`, `~/.config` (npm, pip, yarn, composer, the
// Platform.sh CLI) from build hooks, deploy hooks, start commands, workers, crons and
// shells. The build's HOME is `/app` (its files are being made there, as on Platform.sh);
// every process of a running app has the private, writable `/tmp` (its `/app` is
// read-only), the same in each kind.

/// Says where HOME is and whether the tools' folders can be made in it.
const PROBE: &str = r#"kind=$1
echo "$kind HOME=$HOME"
for d in .cache/probe .npm .config/probe; do
  mkdir -p "$HOME/$d" && touch "$HOME/$d/$kind" || exit 1
done
echo "$kind HOME writable"
"#;

const HOME_APP: &str = r#"name: home
type: python:3.11
web:
  commands:
    start: sh probe.sh app > /app/data/app.txt 2>&1; exec python3 server.py
mounts:
  data: {source: local, source_path: data}
hooks:
  build: sh probe.sh build
  deploy: sh probe.sh deploy
  post_deploy: sh probe.sh post_deploy
workers:
  queue:
    commands:
      start: sh probe.sh worker > /app/data/worker.txt 2>&1; exec sleep infinity
crons:
  probe:
    spec: '@yearly'
    commands:
      start: sh /app/probe.sh cron
"#;

const HOME_SERVER: &str = py_app!(
    "",
    "        body = open(\"/app/data/app.txt\", \"rb\").read()\n"
);

#[test]
fn home_is_writable_and_the_same_in_every_kind_of_process() {
    let server = Server::start_with(&[]);
    let app = server.project(
        "home",
        &[
            (".platform.app.yaml", HOME_APP),
            ("probe.sh", PROBE),
            ("server.py", HOME_SERVER),
        ],
    );
    let out = server.push_ok(&app, "home");
    for line in [
        "build HOME=/app",
        "build HOME writable",
        "deploy HOME=/tmp",
        "deploy HOME writable",
        "post_deploy HOME=/tmp",
        "post_deploy HOME writable",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    let app_page = server.page("main.home.localhost", "/");
    assert_eq!(app_page, "app HOME=/tmp\napp HOME writable\n");
    let shell = |command: &str| {
        let o = server.ssh(&server.key, "main.home", command);
        assert!(o.status.success(), "{command}: {}", slipway_e2e::text(&o));
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert_eq!(
        shell("sh /app/probe.sh ssh"),
        "ssh HOME=/tmp\nssh HOME writable\n"
    );
    // The worker wrote its answer into the mount it shares with the app.
    let mut worker = String::new();
    for _ in 0..100 {
        worker = shell("cat /app/data/worker.txt 2>/dev/null || true");
        if worker.contains("writable") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(worker, "worker HOME=/tmp\nworker HOME writable\n");
    let o = server.admin("cron run home main probe");
    let cron = slipway_e2e::text(&o);
    assert!(o.status.success(), "{cron}");
    assert!(
        cron.contains("cron HOME=/tmp") && cron.contains("cron HOME writable"),
        "{cron}"
    );
}

// ---------------------------------------------------------------------------------------
// bun: upsun demo-js's `bun_app` (`stack: [bun@1]`, `bun install` in the build hook,
// `start: bun start`) and upsun demo's front end (`type: nodejs:*`, `build.flavor: none`,
// `bun install` and `bun run build` in the build hook, served from `build/` by locations).
// Both run on nodejs:24, the newest Node.js stack, which `bun@1` names.

const BUN_CONFIG: &str = r#"applications:
    bun_app:
        source:
            root: apps/bun
        stack:
            - bun@1
        hooks:
            build: |
                set -e
                bun install
        web:
            commands:
                start: bun start
    frontend:
        source:
            root: frontend
        type: "nodejs:24"
        build:
            flavor: none
        hooks:
            build: |
                set -eux
                bun install
                bun run build
        web:
            locations:
                /:
                    root: build
                    index:
                        - index.html
                    scripts: false
routes:
    "http://{default}/":
        type: upstream
        upstream: "frontend:http"
    "http://bun.{default}/":
        type: upstream
        upstream: "bun_app:http"
"#;

const BUN_PACKAGE: &str = r#"{
  "name": "bun-app",
  "private": true,
  "scripts": { "start": "bun server.js" },
  "dependencies": { "ms": "2.1.3" }
}
"#;

const BUN_SERVER: &str = r#"import ms from "ms";
Bun.serve({
  hostname: "127.0.0.1",
  port: Number(process.env.PORT),
  fetch() {
    return new Response(`bun ${Bun.version} says a day is ${ms(86400000)}`);
  },
});
"#;

const FRONTEND_PACKAGE: &str = r#"{
  "name": "frontend",
  "private": true,
  "scripts": { "build": "bun build.js" },
  "dependencies": { "ms": "2.1.3" }
}
"#;

const FRONTEND_BUILD: &str = r#"import ms from "ms";
import { mkdirSync, writeFileSync } from "fs";
mkdirSync("build", { recursive: true });
writeFileSync("build/index.html", `built by bun ${Bun.version}: ${ms(60000)}\n`);
"#;

#[test]
fn bun_runs_an_upsun_bun_stack_and_a_nodejs_front_end_build() {
    let server = Server::start_with(&[]);
    let app = server.project(
        "bunjs",
        &[
            (".upsun/config.yaml", BUN_CONFIG),
            ("apps/bun/package.json", BUN_PACKAGE),
            ("apps/bun/server.js", BUN_SERVER),
            ("frontend/package.json", FRONTEND_PACKAGE),
            ("frontend/build.js", FRONTEND_BUILD),
        ],
    );
    let out = server.push_ok(&app, "bunjs");
    let host = "main.bunjs.localhost";
    let front = server.page(host, "/");
    assert!(
        front.starts_with("built by bun 1.") && front.ends_with(": 1m\n"),
        "{front}\n{out}"
    );
    let bun = server.page(&format!("bun.{host}"), "/");
    assert!(
        bun.starts_with("bun 1.") && bun.ends_with(" says a day is 1d"),
        "{bun}\n{out}"
    );
    // bun's package cache stayed in the build cache, out of the slugs.
    for slug in out
        .split(": built sha256:")
        .skip(1)
        .filter_map(|s| s.get(..64))
    {
        let slug = server.data.join("slugs").join(slug);
        assert!(!slug.join(".bun").exists(), "{} has .bun", slug.display());
    }
}
