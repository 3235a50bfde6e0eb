//! Heroku projects pushed as they are: a `Procfile` with its `app.json` (add-ons as
//! services with Heroku's variable names, `env` values, generated secrets and required
//! variables, `scripts.postdeploy` once), and Heroku's PHP boot scripts
//! (`heroku-php-apache2 public/`) served by PHP-FPM behind the router.

use slipway_e2e::{text, Server};

const PROCFILE: &str =
    "web: gunicorn gettingstarted.wsgi\nrelease: python manage.py migrate --noinput\n";

const REQUIREMENTS: &str = "Django>=4.2,<6\ngunicorn\ndj-database-url\npsycopg[binary]\n";

/// Heroku's app manifest: PostgreSQL and an add-on Slipway does not provide, a generated
/// secret, a value, a variable the user must set, and a seed script run once.
const APP_JSON: &str = r#"{
  "name": "Start on Heroku: Python",
  "description": "A barebones Django app",
  "addons": [
    "heroku-postgresql:essential-0",
    "papertrail:choklad"
  ],
  "env": {
    "DJANGO_SECRET_KEY": {"description": "Django's secret key", "generator": "secret"},
    "GREETING": {"value": "hello-from-app-json"},
    "API_TOKEN": {"description": "A token the user gives"}
  },
  "scripts": {
    "postdeploy": "python manage.py shell -c \"from hello.models import Visit; Visit.objects.create(note='seed')\""
  }
}
"#;

const MANAGE: &str = slipway_e2e::django_manage!("gettingstarted");

const SETTINGS: &str = r#"import os

import dj_database_url

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "build-time-only")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.staticfiles", "hello"]
MIDDLEWARE = []
ROOT_URLCONF = "gettingstarted.urls"
WSGI_APPLICATION = "gettingstarted.wsgi.application"
DATABASES = {"default": dj_database_url.config(conn_max_age=0, default="sqlite:////tmp/build.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
STATIC_URL = "/static/"
STATIC_ROOT = os.path.join(BASE_DIR, "staticfiles")
"#;

const URLS: &str = r#"from django.urls import path

from hello import views

urlpatterns = [path("", views.index)]
"#;

const WSGI: &str = slipway_e2e::django_wsgi!("gettingstarted");

const MODELS: &str = r#"from django.db import models


class Visit(models.Model):
    at = models.DateTimeField(auto_now_add=True)
    note = models.CharField(max_length=20, default="visit")
"#;

const MIGRATION: &str = r#"from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Visit",
            fields=[
                ("id", models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("at", models.DateTimeField(auto_now_add=True)),
                ("note", models.CharField(default="visit", max_length=20)),
            ],
        ),
    ]
"#;

const VIEWS: &str = r#"import base64
import hashlib
import json
import os

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from .models import Visit


def index(request):
    Visit.objects.create()
    url = os.environ.get("DATABASE_URL", "")
    rels = json.loads(base64.b64decode(os.environ["PLATFORM_RELATIONSHIPS"]))
    return JsonResponse({
        "vendor": connection.vendor,
        "visits": Visit.objects.filter(note="visit").count(),
        "seeds": Visit.objects.filter(note="seed").count(),
        "database_url": url.split("@")[-1],
        "database_scheme": url.split("://")[0],
        "secret": hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest()[:12],
        "secret_length": len(settings.SECRET_KEY),
        "greeting": os.environ.get("GREETING"),
        "token": os.environ.get("API_TOKEN"),
        "relationships": sorted(rels),
    })
"#;

fn django_files() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Procfile", PROCFILE),
        ("app.json", APP_JSON),
        ("requirements.txt", REQUIREMENTS),
        (".python-version", "3.11\n"),
        ("manage.py", MANAGE),
        ("gettingstarted/__init__.py", ""),
        ("gettingstarted/settings.py", SETTINGS),
        ("gettingstarted/urls.py", URLS),
        ("gettingstarted/wsgi.py", WSGI),
        ("hello/__init__.py", ""),
        ("hello/models.py", MODELS),
        ("hello/views.py", VIEWS),
        ("hello/migrations/__init__.py", ""),
        ("hello/migrations/0001_initial.py", MIGRATION),
        ("hello/static/hello/site.css", "body { color: #123456; }\n"),
    ]
}

/// The page's JSON.
fn page(server: &Server, host: &str) -> serde_json::Value {
    let (status, _, body) = server.get_with_head(host, "/");
    assert_eq!(status, 200, "{body}\n{}", server.server_log());
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[test]
fn a_heroku_django_app_with_app_json_runs_as_is() {
    let server = Server::start();
    let app = server.project("heroku-django", &django_files());
    let host = "main.getting-started.localhost";
    let papertrail = "add-on `papertrail` is not provided by Slipway and is ignored";

    // config check: the add-on Slipway does not provide is a warning at its line.
    let check = slipway_e2e::config_check_ok(&app.dir);
    assert!(
        check.lines().any(|l| l.starts_with("app.json:6:")
            && l.contains("warning:")
            && l.contains(papertrail)),
        "{check}"
    );

    // A required variable without a value refuses the push, naming it and the command;
    // nothing of the environment was made.
    let o = server.git(
        &app.dir,
        &["push", &server.remote("getting-started"), "main"],
    );
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("app.json requires API_TOKEN")
            && out.contains("var set getting-started main API_TOKEN=VALUE"),
        "{out}"
    );
    assert!(server.containers().is_empty(), "{:?}", server.containers());
    assert_ne!(server.get_with_head(host, "/").0, 200);
    // Bad input changed nothing: the project has no environment to list.
    let o = server.ssh(&server.key, "git", "envs getting-started --json");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&o.stdout).ok(),
        Some(serde_json::json!([])),
        "{}",
        text(&o)
    );
    // A name no environment can have is still refused, and a viewer still cannot set.
    let o = server.ssh(
        &server.key,
        "git",
        "var set getting-started Main API_TOKEN=x",
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("not found"), "{}", text(&o));
    let viewer = server.add_user_with_role("val", "getting-started", "viewer");
    let o = server.ssh(
        &viewer,
        "git",
        "var set getting-started main API_TOKEN=from-a-viewer",
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("permission denied"), "{}", text(&o));

    // Set on the environment not deployed yet: said so, still no environment; then the
    // same push deploys, its log naming the variables set before it (never a value).
    let o = server.ssh(
        &server.key,
        "git",
        "var set getting-started main API_TOKEN=given-by-user",
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("main has not been deployed yet: it applies from its first deploy"),
        "{}",
        text(&o)
    );
    let o = server.ssh(&server.key, "git", "envs getting-started");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "", "{}", text(&o));
    let o = server.ssh(&server.key, "git", "var ls getting-started main");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "API_TOKEN=given-by-user\n",
        "{}",
        text(&o)
    );
    let out = server.push_ok(&app, "getting-started");
    assert!(
        out.contains("variables set on main before its first deploy: API_TOKEN, DJANGO_SECRET_KEY"),
        "{out}"
    );
    assert!(!out.contains("given-by-user"), "{out}");
    // The push warns exactly as config check did.
    assert!(
        out.lines()
            .any(|l| l.contains("app.json:6:") && l.contains("warning:") && l.contains(papertrail)),
        "{out}"
    );
    assert!(
        out.contains("DJANGO_SECRET_KEY generated for main"),
        "{out}"
    );
    // The plan picks nothing: the catalog's version, named in the diff.
    assert!(
        out.contains("service postgresql added (postgresql:15)"),
        "{out}"
    );
    // Heroku's Python build: collectstatic; the release process migrated PostgreSQL; the
    // postdeploy script ran.
    assert!(out.contains("static file"), "{out}");
    assert!(out.contains("Applying hello.0001_initial... OK"), "{out}");
    assert!(out.contains("running app.json scripts.postdeploy"), "{out}");

    let first = page(&server, host);
    assert_eq!(first["vendor"], "postgresql", "{first}");
    assert_eq!(first["database_scheme"], "postgres", "{first}");
    assert_eq!(
        first["database_url"], "postgresql.internal:5432/main",
        "{first}"
    );
    assert_eq!(first["relationships"], serde_json::json!(["postgresql"]));
    assert_eq!(first["secret_length"], 64, "{first}");
    assert_eq!(first["greeting"], "hello-from-app-json");
    assert_eq!(first["token"], "given-by-user");
    assert_eq!(first["seeds"], 1, "{first}");
    let visits = first["visits"].as_u64().expect("visits");

    // A redeploy: the rows are kept, the secret is the same, postdeploy does not run again.
    app.write("hello/static/hello/site.css", "body { color: #654321; }\n");
    app.commit("a change");
    let out = server.push_ok(&app, "getting-started");
    assert!(!out.contains("scripts.postdeploy"), "{out}");
    assert!(!out.contains("generated for"), "{out}");
    let second = page(&server, host);
    // (Health checks of the deploy visit `/` too: at least this visit was added.)
    assert!(
        second["visits"].as_u64().is_some_and(|v| v > visits),
        "{first} then {second}"
    );
    assert_eq!(second["seeds"], 1, "{second}");
    assert_eq!(second["secret"], first["secret"]);
}

#[test]
fn a_heroku_php_procfile_is_served_by_php_fpm_with_a_front_controller() {
    let server = Server::start();
    let app = server.project(
        "heroku-php",
        &[
            (
                "composer.json",
                "{\"name\": \"slipway/heroku-php\", \"require\": {\"php\": \"^8.4\"}}\n",
            ),
            ("Procfile", "web: heroku-php-apache2 public/\n"),
            (
                "public/index.php",
                "<?php\necho 'front controller ', $_SERVER['REQUEST_URI'], ' ', PHP_VERSION;\n",
            ),
            ("public/style.css", "body { color: #abcdef; }\n"),
            ("public/.htaccess", "RewriteEngine On\n"),
        ],
    );
    let out = server.push_ok(&app, "heroku-php");
    assert!(
        out.lines().any(|l| l.contains("Procfile:1:")
            && l.contains("warning:")
            && l.contains("`public/.htaccess` is not read")),
        "{out}"
    );
    let host = "main.heroku-php.localhost";
    let (status, _, body) = server.get_with_head(host, "/some/path?x=1");
    assert_eq!(status, 200, "{body}\n{}", server.server_log());
    assert!(
        body.starts_with("front controller /some/path?x=1 8.4."),
        "{body}"
    );
    let (status, head, body) = server.get_with_head(host, "/style.css");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "body { color: #abcdef; }\n");
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/css"),
        "{head}"
    );
    // PHP source is run, never sent.
    let (status, _, body) = server.get_with_head(host, "/index.php");
    assert_eq!(status, 200);
    assert!(!body.contains("<?php"), "{body}");
}

/// Two databases as Heroku names them: the app's `/` answers, for each of its two URLs,
/// the server it reaches and the rows that database holds.
const TWO_DATABASES_APP: &str = slipway_e2e::py_app!(
    r#"import psycopg
NAMES = ["DATABASE_URL", "HEROKU_POSTGRESQL_AMBER_URL"]
for name in NAMES:
    with psycopg.connect(os.environ[name]) as c:
        c.execute("CREATE TABLE IF NOT EXISTS seen (name text)")
        c.execute("DELETE FROM seen")
        c.execute("INSERT INTO seen VALUES (%s)", (name,))
"#,
    r#"        out = {}
        for name in NAMES:
            with psycopg.connect(os.environ[name]) as c:
                server = c.execute("SELECT inet_server_addr()::text").fetchone()[0]
                rows = [r[0] for r in c.execute("SELECT name FROM seen")]
            out[name] = {"server": server, "rows": rows}
        out["colour_vars"] = sorted(k for k in os.environ if k.startswith("HEROKU_POSTGRESQL_"))
        body = json.dumps(out).encode()
"#
);

#[test]
fn two_heroku_postgresql_addons_without_as_get_heroku_colour_names() {
    let server = Server::start();
    let app = server.project(
        "two-dbs",
        &[
            ("Procfile", "web: python app.py\n"),
            (
                "app.json",
                r#"{"addons": ["heroku-postgresql", "heroku-postgresql:essential-0"]}"#,
            ),
            ("requirements.txt", "psycopg[binary]\n"),
            (".python-version", "3.11\n"),
            ("app.py", TWO_DATABASES_APP),
        ],
    );
    slipway_e2e::config_check_ok(&app.dir);
    let out = server.push_ok(&app, "two-dbs");
    assert!(
        out.contains("service postgresql added (postgresql:15)")
            && out.contains("service heroku-postgresql-amber added (postgresql:15)"),
        "{out}"
    );
    let host = "main.two-dbs.localhost";
    let first = page(&server, host);
    let (main, amber) = (
        &first["DATABASE_URL"],
        &first["HEROKU_POSTGRESQL_AMBER_URL"],
    );
    // Two servers, each holding only what was written through its own URL.
    assert_ne!(main["server"], amber["server"], "{first}");
    assert_eq!(main["rows"], serde_json::json!(["DATABASE_URL"]), "{first}");
    assert_eq!(
        amber["rows"],
        serde_json::json!(["HEROKU_POSTGRESQL_AMBER_URL"]),
        "{first}"
    );
    assert_eq!(
        first["colour_vars"],
        serde_json::json!(["HEROKU_POSTGRESQL_AMBER_URL"]),
        "{first}"
    );

    // The same names on the next push: no service is added or removed.
    app.write("VERSION", "2\n");
    app.commit("again");
    let out = server.push_ok(&app, "two-dbs");
    assert!(
        !out.contains("service postgresql") && !out.contains("service heroku-postgresql"),
        "{out}"
    );
    assert_eq!(page(&server, host)["HEROKU_POSTGRESQL_AMBER_URL"], *amber);
}

#[test]
fn a_procfile_of_workers_only_deploys_and_its_worker_runs() {
    let server = Server::start();
    let app = server.project(
        "jobs",
        &[
            ("Procfile", "worker: python3 -u worker.py\n"),
            ("requirements.txt", "\n"),
            (".python-version", "3.11\n"),
            (
                "worker.py",
                "import time\nn = 0\nwhile True:\n    n += 1\n    print(f\"tick {n}\")\n    time.sleep(0.5)\n",
            ),
        ],
    );
    slipway_e2e::config_check_ok(&app.dir);
    server.push_ok(&app, "jobs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = server.admin_stdout("logs jobs main worker");
        if log.contains("tick 2") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no ticks: {log}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
