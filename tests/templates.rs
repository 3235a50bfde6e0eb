//! Template-shaped projects (issues 13 and 17): small apps written in the shapes of the public
//! Platform.sh templates (their config files, build hooks, `.environment`, start commands and
//! libraries), pushed as a user would, with their dependencies from the real package
//! registries (PyPI, npm) and their relationships to real services. Each test asserts what
//! the user sees: the push output, the app's pages, its relationship working, static files
//! and uploads served through `web.locations`.
//!
//! The builds reach the registries through the build proxy. Here the registries' names
//! resolve to addresses the proxy treats as non-public (a documentation range), and the
//! test server runs with no `SLIPWAY_BUILD_EGRESS_ALLOW`: the well-known registries pass by
//! name out of the box, as a user pushing a template expects.

use std::process::Command;

use slipway_e2e::{
    cached_stack, dechunk, header_field, raw_http, run, slipway_bin, text, visit_number, App,
    Server,
};

/// POST `body` to `path` on `host`: (status, body).
fn post(server: &Server, host: &str, path: &str, body: &str) -> (u16, String) {
    let (status, head, answer) = raw_http(
        server.http_port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    let answer = if header_field(&head, "transfer-encoding").is_some_and(|t| t.contains("chunked"))
    {
        dechunk(&answer)
    } else {
        answer
    };
    (status, String::from_utf8_lossy(&answer).to_string())
}

/// A JSON answer's field as text (strings unquoted).
fn field(json: &serde_json::Value, key: &str) -> String {
    match &json[key] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Django (django4's pip variant): requirements.txt installed by the build hook from PyPI,
// collectstatic into the slug, migrate in the deploy hook, gunicorn, PostgreSQL, the real
// `platformshconfig` library, static files and uploads through web.locations.

const DJANGO_APPLICATIONS: &str = "- !include pip.app.yaml\n";

const DJANGO_PIP_APP: &str = r#"# The shape of django4's pip.app.yaml (its python:3.10 runs on the 3.11 stack).
name: 'app'
type: 'python:3.10'
relationships:
  database: "db:postgresql"
disk: 512
mounts:
  'logs':
    source: local
    source_path: logs
  'media':
    source: local
    source_path: media
variables:
  django:
    greeting: hello-from-variables
web:
  commands:
    start: "gunicorn -w 2 -b 127.0.0.1:$PORT myapp.wsgi:application --access-logfile logs/access.log"
  locations:
    "/":
      passthru: true
    "/static":
      root: "static"
      expires: 1h
      allow: true
    "/media":
      root: "media"
      expires: 5m
      allow: true
      scripts: false
hooks:
  build: |
    set -eu
    python3.10 -m pip install --upgrade pip
    pip install -r requirements.txt
    python manage.py collectstatic
    python -c "import hashlib; from platformshconfig import Config; c = Config(); print('platformshconfig in build:', c.in_build(), c.applicationName, hashlib.sha256(c.projectEntropy.encode()).hexdigest()[:12])"
  deploy: python manage.py migrate
"#;

const DJANGO_SERVICES: &str = "db:\n  type: postgresql:15\n  disk: 1024\n";

const DJANGO_ROUTES: &str = r#""https://{default}/":
  type: upstream
  upstream: "app:http"
"https://www.{default}/":
  type: redirect
  to: "https://{default}/"
"#;

/// gunicorn as the templates' lock files pin it (wagtail's 21.2.0; django4's 20.1.0 is the
/// same here): before 22 it masks the worker's gid with `0x7FFF_FFFF` and calls `setgid`
/// when that differs, so its workers only boot when the project's gid is below 2^31.
const DJANGO_REQUIREMENTS: &str =
    "Django>=4.2,<6\ngunicorn==21.2.0\npsycopg2-binary\nplatformshconfig\n";

const DJANGO_ENVIRONMENT: &str =
    "# Sourced before the start command, hooks and shells.\nexport GREETING_SOURCE=dot-environment\nexport PATH=\"/app/.local/bin:$PATH\"\n";

const DJANGO_MANAGE: &str = slipway_e2e::django_manage!("myapp");

const DJANGO_SETTINGS: &str = r#"import os
from urllib.parse import urlparse

from platformshconfig import Config

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = "local-development-only"
DEBUG = False
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.staticfiles", "hello"]
MIDDLEWARE = []
ROOT_URLCONF = "myapp.urls"
WSGI_APPLICATION = "myapp.wsgi.application"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(BASE_DIR, "db.sqlite3")}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = os.path.join(BASE_DIR, "static")
MEDIA_ROOT = os.path.join(BASE_DIR, "media")

config = Config()
if config.is_valid_platform():
    SECRET_KEY = config.projectEntropy
    STATIC_ROOT = os.path.join(config.appDir, "static")
    MEDIA_ROOT = os.path.join(config.appDir, "media")
    if config.in_runtime():
        ALLOWED_HOSTS = [urlparse(url).hostname for url in config.routes()]
        db = config.credentials("database")
        DATABASES["default"] = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": db["path"],
            "USER": db["username"],
            "PASSWORD": db["password"],
            "HOST": db["host"],
            "PORT": db["port"],
        }
"#;

const DJANGO_URLS: &str = r#"from django.urls import path

from hello import views

urlpatterns = [
    path("", views.home),
    path("platform", views.platform),
    path("upload", views.upload),
]
"#;

const DJANGO_WSGI: &str = slipway_e2e::django_wsgi!("myapp");

const DJANGO_MODELS: &str = r#"from django.db import models


class Visit(models.Model):
    at = models.DateTimeField(auto_now_add=True)
"#;

const DJANGO_MIGRATION: &str = r#"from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Visit",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
    ]
"#;

const DJANGO_VIEWS: &str = r#"import hashlib
import os

from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from platformshconfig import Config

from .models import Visit


def home(request):
    Visit.objects.create()
    return HttpResponse(
        "Hello from Django on %s: visit %d (%s)"
        % (connection.vendor, Visit.objects.count(), os.environ.get("GREETING_SOURCE", "no .environment"))
    )


def platform(request):
    c = Config()
    primary = c.get_primary_route()
    db = c.credentials("database")
    return JsonResponse({
        "valid": c.is_valid_platform(),
        "in_build": c.in_build(),
        "in_runtime": c.in_runtime(),
        "project": c.project,
        "branch": c.branch,
        "environment": c.environment,
        "application_name": c.applicationName,
        "application_type": c.application()["type"],
        "app_dir": c.appDir,
        "document_root": c.documentRoot,
        "tree_id": c.treeID,
        "entropy": hashlib.sha256(c.projectEntropy.encode()).hexdigest()[:12],
        "secret_key_is_entropy": settings.SECRET_KEY == c.projectEntropy,
        "port": c.port,
        "primary_upstream": primary["upstream"],
        "primary_original_url": primary["original_url"],
        "greeting": c.variable("django:greeting"),
        "db_host": db["host"],
        "db_scheme": db["scheme"],
        "dsn": c.formatted_credentials("database", "postgresql_dsn").split("@")[-1],
        "smtp_host": os.environ.get("PLATFORM_SMTP_HOST"),
    })


def upload(request):
    name = request.GET.get("name", "upload.txt")
    with open(os.path.join(settings.MEDIA_ROOT, os.path.basename(name)), "wb") as f:
        f.write(request.body)
    return HttpResponse("stored %s" % name)
"#;

const DJANGO_CSS: &str = "body { color: #123456; }\n";

fn django_files() -> Vec<(&'static str, &'static str)> {
    vec![
        (".platform/applications.yaml", DJANGO_APPLICATIONS),
        (".platform/pip.app.yaml", DJANGO_PIP_APP),
        (".platform/services.yaml", DJANGO_SERVICES),
        (".platform/routes.yaml", DJANGO_ROUTES),
        (".environment", DJANGO_ENVIRONMENT),
        ("requirements.txt", DJANGO_REQUIREMENTS),
        ("manage.py", DJANGO_MANAGE),
        ("myapp/__init__.py", ""),
        ("myapp/settings.py", DJANGO_SETTINGS),
        ("myapp/urls.py", DJANGO_URLS),
        ("myapp/wsgi.py", DJANGO_WSGI),
        ("hello/__init__.py", ""),
        ("hello/models.py", DJANGO_MODELS),
        ("hello/views.py", DJANGO_VIEWS),
        ("hello/migrations/__init__.py", ""),
        ("hello/migrations/0001_initial.py", DJANGO_MIGRATION),
        ("hello/static/hello/site.css", DJANGO_CSS),
    ]
}

#[test]
fn django_pip_with_postgresql_and_platformshconfig() {
    let server = Server::start();
    let app = server.project("django", &django_files());
    let out = server.push_ok(&app, "demo");
    let host = "main.demo.localhost";

    // The build: python:3.10 runs on the 3.11 stack, named in a warning; the template's
    // `python3.10 -m pip` and `python manage.py` exist; pip installs from PyPI without
    // PEP 668 errors; platformshconfig sees the build (no runtime variables yet).
    assert!(
        out.contains("warning:") && out.contains("python:3.10") && out.contains("python:3.11"),
        "{out}"
    );
    assert!(out.contains("Successfully installed"), "{out}");
    assert!(
        out.contains("1 static file copied to '/app/static'"),
        "{out}"
    );
    let build_line = out
        .lines()
        .find(|l| l.contains("platformshconfig in build:"))
        .unwrap_or_else(|| panic!("no platformshconfig line in the build:\n{out}"));
    assert!(build_line.contains("in build: True app "), "{build_line}");
    let build_entropy = build_line.split_whitespace().last().unwrap().to_string();
    // The deploy hook migrated the PostgreSQL database.
    assert!(out.contains("Applying hello.0001_initial... OK"), "{out}");

    // The page: Django answers through gunicorn, counts visits in PostgreSQL, and sees what
    // `.environment` exported.
    let (status, _, body) = server.get_with_head(host, "/");
    assert_eq!(status, 200, "{body}\n{}", server.server_log());
    assert!(
        body.starts_with("Hello from Django on postgresql: visit ")
            && body.ends_with(" (dot-environment)"),
        "{body}"
    );
    let first = visit_number(&body);
    let (_, _, body) = server.get_with_head(host, "/");
    assert_eq!(visit_number(&body), first + 1, "{body}");

    // platformshconfig at run time: every variable it reads, in Platform.sh's shapes.
    let (status, _, body) = server.get_with_head(host, "/platform");
    assert_eq!(status, 200, "{body}");
    let p: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    for (key, want) in [
        ("valid", "true"),
        ("in_build", "false"),
        // platformshconfig's in_runtime() returns PLATFORM_ENVIRONMENT itself.
        ("in_runtime", "main"),
        ("project", "demo"),
        ("branch", "main"),
        ("environment", "main"),
        ("application_name", "app"),
        ("application_type", "python:3.10"),
        ("app_dir", "/app"),
        ("document_root", "/app"),
        ("secret_key_is_entropy", "true"),
        ("primary_upstream", "app"),
        ("primary_original_url", "https://{default}/"),
        ("greeting", "hello-from-variables"),
        ("db_host", "database.internal"),
        ("db_scheme", "pgsql"),
        ("dsn", "database.internal:5432/main"),
        ("smtp_host", ""),
    ] {
        assert_eq!(field(&p, key), want, "{key} in {body}");
    }
    assert_eq!(
        field(&p, "entropy"),
        build_entropy,
        "the same entropy in build and app"
    );
    assert_eq!(field(&p, "tree_id").len(), 40, "{body}");
    assert!(field(&p, "port").parse::<u16>().is_ok(), "{body}");

    // collectstatic's output, served by the /static location with its expires.
    let (status, head, body) = server.get_with_head(host, "/static/hello/site.css");
    assert_eq!((status, body.as_str()), (200, DJANGO_CSS), "{head}");
    assert_eq!(
        header_field(&head, "cache-control"),
        Some("max-age=3600"),
        "{head}"
    );
    assert!(
        header_field(&head, "content-type").is_some_and(|t| t.starts_with("text/css")),
        "{head}"
    );

    // An upload into the media mount, served back by the /media location (a mount's folder).
    assert_eq!(
        post(&server, host, "/upload?name=note.txt", "uploaded bytes"),
        (200, "stored note.txt".to_string())
    );
    let (status, _, body) = server.get_with_head(host, "/media/note.txt");
    assert_eq!(
        (status, body.as_str()),
        (200, "uploaded bytes"),
        "the /media location serves the mount's current files"
    );
    // gunicorn's access log went into the logs mount.
    let o = server.ssh(&server.key, "app.main.demo", "cat logs/access.log");
    assert!(text(&o).contains("GET /platform"), "{}", text(&o));
    // An SSH command sees .environment too.
    let o = server.ssh(&server.key, "app.main.demo", "echo \"$GREETING_SOURCE\"");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "dot-environment",
        "{}",
        text(&o)
    );

    // A code change redeploys with the same entropy, and the data stays.
    app.write("hello/static/hello/site.css", "body { color: red; }\n");
    app.commit("red");
    server.push_ok(&app, "demo");
    let (_, _, body) = server.get_with_head(host, "/platform");
    let p: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(field(&p, "entropy"), build_entropy, "{body}");
    let (_, _, body) = server.get_with_head(host, "/");
    assert!(
        visit_number(&body) > first + 1,
        "the visits stay in PostgreSQL: {body}"
    );
    let (_, _, body) = server.get_with_head(host, "/static/hello/site.css");
    assert_eq!(body, "body { color: red; }\n");
}

// ---------------------------------------------------------------------------------------
// Express (the express template's shape): no build hook, the nodejs flavor's `npm install`
// of express, mysql2 and the real `platformsh-config` from the npm registry, `node index.js`,
// MariaDB through the `database` relationship (mariadb:10.4 runs on the nearest the server
// has, with a warning), https routes with a www redirect.

const EXPRESS_APP: &str = r#"# The shape of the express template's .platform.app.yaml.
name: app
type: nodejs:22
relationships:
  database: "db:mysql"
disk: 512
web:
  commands:
    start: "node index.js"
"#;

const EXPRESS_SERVICES: &str = "db:\n    type: mariadb:10.4\n    disk: 1024\n";

const EXPRESS_ROUTES: &str = r#""https://{default}/":
    type: upstream
    upstream: "app:http"
"https://www.{default}/":
    type: redirect
    to: "https://{default}/"
"#;

const EXPRESS_PACKAGE: &str = r#"{
  "name": "express-template-shape",
  "version": "1.0.0",
  "private": true,
  "main": "index.js",
  "dependencies": {
    "express": "^4.19.2",
    "mysql2": "^3.9.7",
    "platformsh-config": "^2.4.1"
  }
}
"#;

const EXPRESS_INDEX: &str = r#"const express = require("express");
const mysql = require("mysql2/promise");
const config = require("platformsh-config").config();

const app = express();

app.get("/", async (req, res) => {
  const credentials = config.credentials("database");
  const conn = await mysql.createConnection({
    host: credentials.host,
    port: credentials.port,
    user: credentials.username,
    password: credentials.password,
    database: credentials.path,
  });
  await conn.query("CREATE TABLE IF NOT EXISTS visits (id SERIAL PRIMARY KEY, at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)");
  await conn.query("INSERT INTO visits () VALUES ()");
  const [rows] = await conn.query("SELECT COUNT(*) AS n FROM visits");
  await conn.end();
  res.set("Content-Type", "text/plain");
  res.send(`express on ${config.applicationName} (${config.branch}): visit ${rows[0].n} of ${credentials.scheme}://${credentials.host}:${credentials.port}/${credentials.path}\n`);
});

app.listen(config.port, () => console.log(`listening on ${config.port}`));
"#;

#[test]
fn express_with_mariadb_and_platformsh_config() {
    let server = Server::start();
    let app = server.project(
        "express",
        &[
            (".platform.app.yaml", EXPRESS_APP),
            (".platform/services.yaml", EXPRESS_SERVICES),
            (".platform/routes.yaml", EXPRESS_ROUTES),
            ("package.json", EXPRESS_PACKAGE),
            ("index.js", EXPRESS_INDEX),
        ],
    );
    let out = server.push_ok(&app, "express");
    assert!(
        out.contains("warning:") && out.contains("mariadb"),
        "the push names the MariaDB version it runs instead of 10.4:\n{out}"
    );
    assert!(
        out.contains("npm install"),
        "the nodejs flavor installs the dependencies:\n{out}"
    );

    let host = "main.express.localhost";
    let (status, _, first) = server.get_with_head(host, "/");
    assert_eq!(status, 200, "{first}\nserver log:\n{}", server.server_log());
    // (The health check's requests count visits too.)
    assert!(
        first.starts_with("express on app (main): visit ")
            && first.contains(" of mysql://database.internal:3306/main"),
        "the real platformsh-config library finds the app, branch, port and credentials: {first:?}"
    );
    let (_, _, second) = server.get_with_head(host, "/");
    assert_eq!(
        visit_number(&second),
        visit_number(&first) + 1,
        "rows are kept in MariaDB: {first:?} then {second:?}"
    );

    // The www route redirects to the default one.
    let (status, head, _) = server.get_with_head(&format!("www.{host}"), "/");
    assert!(
        status == 301 || status == 302,
        "www redirects: {status}\n{head}"
    );
}

// ---------------------------------------------------------------------------------------
// A template's first push on a new server: its database's stack is built during the push
// (minutes), and the push output shows that build as it does an app's stack's, instead of
// minutes of silence after `service db: ... new`.

/// The demo app with a Redis relationship (a template's database, on a stack of its own).
const WITH_REDIS_APP: &str = "name: hello\ntype: python:3.11\nrelationships:\n  rediscache: \"cache:redis\"\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n";

#[test]
fn a_first_push_shows_the_build_of_its_services_stack() {
    // The server's stacks: the app's python:3.11 (imported from the shared build), no
    // redis:7.0. Its Debian mirror does not answer, so the redis stack's build fails fast
    // after its first steps; the push shows them, then the failure, and moves nothing.
    let shared = cached_stack("python:3.11");
    let work = tempfile::tempdir().unwrap();
    let stacks = work.path().join("stacks");
    let o = run(Command::new(slipway_bin())
        .args(["stack", "import", "python:3.11"])
        .arg(format!(
            "{}:stack-python-3.11",
            shared.join("archive").display()
        ))
        .arg("--data-dir")
        .arg(&stacks));
    assert!(o.status.success(), "stack import: {}", text(&o));
    let server = Server::start_with(&[
        ("SLIPWAY_STACKS_DIR", &stacks.to_string_lossy()),
        ("SLIPWAY_DEBIAN_MIRROR", "http://127.0.0.1:1/"),
        ("SLIPWAY_DEBIAN_SECURITY_MIRROR", "none"),
    ]);
    let app = App::demo(server.dir.path(), "app");
    app.write(".platform.app.yaml", WITH_REDIS_APP);
    app.write(".platform/services.yaml", "cache:\n  type: redis:7.0\n");
    app.commit("with redis");
    let o = server.git(&app.dir, &["push", &server.remote("demo"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("remote: -----> build hello: built"),
        "the app builds on its stack first:\n{out}\n{}",
        server.server_log()
    );
    let build = out
        .find("remote: -----> stack redis:7.0: building stack redis:7.0 from Debian bookworm")
        .unwrap_or_else(|| panic!("the push does not show the redis stack's build:\n{out}"));
    let service = out
        .find("service cache: 512 MB disk, new")
        .unwrap_or_else(|| panic!("no services phase:\n{out}"));
    assert!(
        service < build,
        "the build is shown in the services phase:\n{out}"
    );
    for want in [
        "remote: -----> stack redis:7.0: running apt-get update...",
        "remote: -----> stack redis:7.0: failed: building stack redis:7.0: mmdebstrap failed: ",
    ] {
        assert!(out.contains(want), "push output lacks {want:?}:\n{out}");
    }
    // A refused first push leaves no project, so no branch of it either.
    assert!(out.contains("project demo was not created"), "{out}");
    let o = server.git(
        &app.dir,
        &["ls-remote", &server.remote("demo"), "refs/heads/main"],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "",
        "the branch moved"
    );
}
