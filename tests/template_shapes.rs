//! More template shapes (issues 13 and 17): small apps of our own written in the shapes of
//! further public Platform.sh templates (django4's pipenv and Poetry variants, flask,
//! fastapi, a WordPress-vanilla-like PHP app, nextjs- and yarn-like Node apps, a
//! pelican-like static site): the same config keys, build hooks, dependency tools, start
//! commands, `.environment`, relationships, mounts and `web.locations`, with their
//! dependencies from the real registries (PyPI, npm). Each test asserts what the user sees:
//! the push output, the app's pages, its relationship working, static files from locations.
//!
//! The lock files in `template_shapes/` were made with the tools themselves (`pipenv lock`,
//! `poetry lock`) against PyPI, as a user commits them. The Poetry projects name PyPI's
//! simple index as their source: the PyPI mirror reachable here answers the simple index but
//! not Poetry's per-version JSON API.

use slipway_e2e::{header_field, http_request, text, visit_number, Server};

// ---------------------------------------------------------------------------------------
// django4's pipenv and Poetry variants, as two apps of one project sharing one PostgreSQL
// service (as a user trying both variants would): pipenv from `dependencies.python3`,
// `pipenv install --deploy` of a committed Pipfile.lock, `pipenv run gunicorn`; Poetry
// installed by pip in the build hook, `poetry install` of a committed poetry.lock with the
// template's `POETRY_VIRTUALENVS_CREATE: false` (into the user site), `poetry run gunicorn`;
// collectstatic in the build, migrate in the deploy hook through the tool, /static through
// web.locations.

const DJANGOS_APPLICATIONS: &str = "- !include pipenv.app.yaml\n- !include poetry.app.yaml\n";

const DJANGO_PIPENV_APP: &str = r#"# The shape of django4's pipenv.app.yaml (TCP instead of its unix socket).
name: 'pipenv'
type: 'python:3.10'
source:
  root: pipenv
relationships:
  database: "db:postgresql"
disk: 512
mounts:
  'logs':
    source: local
    source_path: logs
  '.cache':
    source: local
    source_path: cache
web:
  commands:
    start: "pipenv run gunicorn -w 2 -b 127.0.0.1:$PORT myapp.wsgi:application"
  locations:
    "/":
      passthru: true
    "/static":
      root: "static"
      expires: 1h
      allow: true
dependencies:
  python3:
    pipenv: '2026.10.3'
hooks:
  build: |
    set -eu
    python3.10 -m pip install --upgrade pip
    pipenv install --deploy
    pipenv run python manage.py collectstatic
  deploy: pipenv run python manage.py migrate
"#;

const DJANGO_POETRY_APP: &str = r#"# The shape of django4's poetry.app.yaml (Poetry by pip from PyPI instead of its installer
# script, which makes its own virtualenv: so no PIP_USER=false around it).
name: 'poetry'
type: 'python:3.10'
source:
  root: poetry
relationships:
  database: "db:postgresql"
disk: 512
mounts:
  'logs':
    source: local
    source_path: logs
web:
  commands:
    start: "poetry run gunicorn -w 2 -b 127.0.0.1:$PORT myapp.wsgi:application"
  locations:
    "/":
      passthru: true
    "/static":
      root: "static"
      expires: 1h
      allow: true
variables:
  env:
    POETRY_VIRTUALENVS_IN_PROJECT: true
    POETRY_VIRTUALENVS_CREATE: false
hooks:
  build: |
    set -eu
    python3.10 -m pip install --upgrade pip
    pip install poetry==2.5.1
    export PATH="/app/.local/bin:$PATH"
    export PIP_USER=true
    poetry install
    poetry run python manage.py collectstatic
  deploy: poetry run python manage.py migrate
"#;

const DJANGOS_SERVICES: &str = "db:\n  type: postgresql:15\n  disk: 1024\n";

const DJANGOS_ROUTES: &str = r#""https://{default}/":
  type: upstream
  upstream: "pipenv:http"
"https://poetry.{default}/":
  type: upstream
  upstream: "poetry:http"
"#;

const POETRY_ENVIRONMENT: &str =
    "# As django4's: Poetry's command for the deploy hook, start command and shells.\nexport PATH=\"/app/.local/bin:$PATH\"\n";

const DJANGO_MANAGE: &str = slipway_e2e::django_manage!("myapp");

const DJANGO_SETTINGS: &str = r#"import base64
import json
import os

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET_KEY = os.environ.get("PLATFORM_PROJECT_ENTROPY", "local-only")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.staticfiles", "hello"]
MIDDLEWARE = []
ROOT_URLCONF = "myapp.urls"
WSGI_APPLICATION = "myapp.wsgi.application"
STATIC_URL = "/static/"
STATIC_ROOT = os.path.join(BASE_DIR, "static")
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/tmp/local.sqlite3"}}
if os.environ.get("PLATFORM_RELATIONSHIPS"):
    db = json.loads(base64.b64decode(os.environ["PLATFORM_RELATIONSHIPS"]))["database"][0]
    DATABASES["default"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": db["path"],
        "USER": db["username"],
        "PASSWORD": db["password"],
        "HOST": db["host"],
        "PORT": db["port"],
    }
"#;

const DJANGO_URLS: &str = r#"import os
import sys

import django
from django.db import connection
from django.http import HttpResponse
from django.urls import path


def home(request):
    app = os.environ["PLATFORM_APPLICATION_NAME"]
    with connection.cursor() as c:
        c.execute("INSERT INTO shape_visits (app) VALUES (%s)", [app])
        c.execute("SELECT count(*) FROM shape_visits")
        n = c.fetchone()[0]
    return HttpResponse(
        "Django via %s on %s: visit %d with django from %s\n"
        % (app, connection.vendor, n, os.path.dirname(django.__file__)),
        content_type="text/plain",
    )


urlpatterns = [path("", home)]
"#;

const DJANGO_WSGI: &str = slipway_e2e::django_wsgi!("myapp");

const DJANGO_MIGRATION: &str = r#"from django.db import migrations


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.RunSQL("CREATE TABLE shape_visits (id serial PRIMARY KEY, app text NOT NULL)"),
    ]
"#;

const DJANGO_CSS: &str = "body { color: #123456; }\n";

/// The files of one Django app under `root`.
fn django_files(root: &str) -> Vec<(String, &'static str)> {
    [
        ("manage.py", DJANGO_MANAGE),
        ("myapp/__init__.py", ""),
        ("myapp/settings.py", DJANGO_SETTINGS),
        ("myapp/urls.py", DJANGO_URLS),
        ("myapp/wsgi.py", DJANGO_WSGI),
        ("hello/__init__.py", ""),
        ("hello/migrations/__init__.py", ""),
        ("hello/migrations/0001_initial.py", DJANGO_MIGRATION),
        ("hello/static/hello/site.css", DJANGO_CSS),
    ]
    .into_iter()
    .map(|(p, c)| (format!("{root}/{p}"), c))
    .collect()
}

#[test]
fn django_pipenv_and_poetry_share_postgresql() {
    let server = Server::start();
    let mut files: Vec<(String, &str)> = vec![
        (".platform/applications.yaml".into(), DJANGOS_APPLICATIONS),
        (".platform/pipenv.app.yaml".into(), DJANGO_PIPENV_APP),
        (".platform/poetry.app.yaml".into(), DJANGO_POETRY_APP),
        (".platform/services.yaml".into(), DJANGOS_SERVICES),
        (".platform/routes.yaml".into(), DJANGOS_ROUTES),
        (
            "pipenv/Pipfile".into(),
            include_str!("template_shapes/django-pipenv.Pipfile"),
        ),
        (
            "pipenv/Pipfile.lock".into(),
            include_str!("template_shapes/django-pipenv.Pipfile.lock"),
        ),
        (
            "poetry/pyproject.toml".into(),
            include_str!("template_shapes/django-poetry.pyproject.toml"),
        ),
        (
            "poetry/poetry.lock".into(),
            include_str!("template_shapes/django-poetry.poetry.lock"),
        ),
        ("poetry/.environment".into(), POETRY_ENVIRONMENT),
    ];
    files.extend(django_files("pipenv"));
    files.extend(django_files("poetry"));
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), *c)).collect();
    let app = server.project("djangos", &files);
    let out = server.push_ok(&app, "djangos");

    // The builds: pipenv installed its lock into its virtualenv, Poetry into the user site
    // (no virtualenv, as the template asks); both collected the static files.
    assert!(
        out.contains("Installing dependencies from Pipfile.lock"),
        "{out}"
    );
    assert!(
        out.contains("Installing dependencies from lock file"),
        "{out}"
    );
    assert_eq!(
        out.matches("1 static file copied to '/app/static'").count(),
        2,
        "{out}"
    );
    // pip's and pipenv's caches stayed in the build cache, out of the pipenv app's slug.
    let slug = out
        .split("build pipenv: built sha256:")
        .nth(1)
        .and_then(|s| s.get(..64))
        .map(|hex| server.data.join("slugs").join(hex))
        .unwrap_or_else(|| panic!("no slug of pipenv in\n{out}"));
    assert!(slug.join(".local/share/virtualenvs").is_dir(), "{out}");
    for cache in [".cache/pip", ".cache/pipenv"] {
        assert!(!slug.join(cache).exists(), "{cache} is in the slug");
    }
    // One deploy hook created the table, the other found it migrated.
    assert_eq!(
        out.matches("Applying hello.0001_initial... OK").count(),
        1,
        "{out}"
    );

    // The pages: gunicorn through `pipenv run` and `poetry run`, Django from where each tool
    // put it, the visits of both apps counted in the one PostgreSQL database.
    let host = "main.djangos.localhost";
    let poetry_host = format!("poetry.{host}");
    let first = server.page(host, "/");
    assert!(
        first.starts_with("Django via pipenv on postgresql: visit ")
            && first.contains(" with django from /app/.local/share/virtualenvs/"),
        "{first}"
    );
    let second = server.page(&poetry_host, "/");
    assert!(
        second.starts_with("Django via poetry on postgresql: visit ")
            && second.contains(" with django from /app/.local/lib/python3.11/site-packages/"),
        "{second}"
    );
    assert_eq!(
        visit_number(&second),
        visit_number(&first) + 1,
        "{first}{second}"
    );

    // collectstatic's output through each app's /static location.
    for h in [host, poetry_host.as_str()] {
        let (status, head, body) = server.get_with_head(h, "/static/hello/site.css");
        assert_eq!((status, body.as_str()), (200, DJANGO_CSS), "{h}: {head}");
        assert_eq!(
            header_field(&head, "cache-control"),
            Some("max-age=3600"),
            "{head}"
        );
    }

    // An SSH shell finds the tools' environments as the start commands do.
    let o = server.ssh(
        &server.key,
        "pipenv.main.djangos",
        "pipenv run python -c 'import django, sys; print(sys.prefix)'",
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("/app/.local/share/virtualenvs/"),
        "{}",
        text(&o)
    );
    let o = server.ssh(
        &server.key,
        "poetry.main.djangos",
        "poetry run python -c 'import django; print(django.__file__)'",
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("/app/.local/lib/python3.11/site-packages/"),
        "{}",
        text(&o)
    );
}

// ---------------------------------------------------------------------------------------
// flask and fastapi, as two apps of one project sharing one MariaDB service. flask: the
// template's `./install-poetry.sh` (here a pip install of POETRY_VERSION) and `poetry
// install` into the in-project virtualenv, `poetry run flask run -p $PORT`. fastapi:
// pipenv from `dependencies.python3`, `pipenv --python 3.11` and `pipenv install --deploy`,
// `pipenv run python server.py` starting uvicorn, a `.cache` mount.

const PYWEB_APPLICATIONS: &str = "- !include flask.app.yaml\n- !include fastapi.app.yaml\n";

const FLASK_APP: &str = r#"# The shape of the flask template's .platform.app.yaml.
name: flask
type: "python:3.10"
source:
  root: flask
relationships:
  database: "db:mysql"
disk: 1024
web:
  commands:
    start: poetry run flask run -p $PORT
variables:
  env:
    POETRY_VERSION: 2.5.1
    POETRY_VIRTUALENVS_IN_PROJECT: true
    POETRY_VIRTUALENVS_CREATE: true
hooks:
  build: |
    set -e
    ./install-poetry.sh
    export PATH="/app/.local/bin:$PATH"
    poetry install
"#;

const FASTAPI_APP: &str = r#"# The shape of the fastapi template's .platform.app.yaml.
name: 'app'
type: 'python:3.11'
source:
  root: fastapi
relationships:
  database: "db:mysql"
disk: 1024
web:
  commands:
    start: "pipenv run python server.py"
dependencies:
  python3:
    pipenv: '2026.10.3'
hooks:
  build: |
    set -eu
    python3.11 -m pip install --upgrade pip
    pipenv --python 3.11
    pipenv install --deploy
mounts:
  '.cache':
    source: local
    source_path: cache
"#;

const PYWEB_SERVICES: &str = "db:\n    type: \"mariadb:10.4\"\n    disk: 1024\n";

const PYWEB_ROUTES: &str = r#""https://{default}/":
    type: upstream
    upstream: "app:http"
"https://flask.{default}/":
    type: upstream
    upstream: "flask:http"
"#;

const INSTALL_POETRY: &str = r#"#!/bin/sh
# Installs Poetry $POETRY_VERSION for this build (the template downloads Poetry's installer;
# the same Poetry comes from PyPI).
set -e
pip install --disable-pip-version-check "poetry==$POETRY_VERSION"
"#;

const FLASK_ENVIRONMENT: &str = "export PATH=\"/app/.local/bin:$PATH\"\n";

const FLASK_PY: &str = r#"import base64
import json
import os
import sys

import pymysql
from flask import Flask

app = Flask(__name__)


def database():
    db = json.loads(base64.b64decode(os.environ["PLATFORM_RELATIONSHIPS"]))["database"][0]
    return pymysql.connect(host=db["host"], port=db["port"], user=db["username"],
                           password=db["password"], database=db["path"])


@app.route("/")
def home():
    conn = database()
    with conn.cursor() as c:
        c.execute("CREATE TABLE IF NOT EXISTS flask_visits (id SERIAL PRIMARY KEY)")
        c.execute("INSERT INTO flask_visits () VALUES ()")
        c.execute("SELECT COUNT(*) FROM flask_visits")
        n = c.fetchone()[0]
        c.execute("SELECT VERSION()")
        version = c.fetchone()[0]
    conn.commit()
    conn.close()
    return ("Flask on %s: visit %d from %s\n" % (version, n, sys.prefix),
            {"Content-Type": "text/plain"})
"#;

const FASTAPI_SERVER: &str = r#"import base64
import json
import os
import sys

import pymysql
import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

app = FastAPI()


@app.get("/", response_class=PlainTextResponse)
def home():
    db = json.loads(base64.b64decode(os.environ["PLATFORM_RELATIONSHIPS"]))["database"][0]
    conn = pymysql.connect(host=db["host"], port=db["port"], user=db["username"],
                           password=db["password"], database=db["path"])
    with conn.cursor() as c:
        c.execute("CREATE TABLE IF NOT EXISTS fastapi_visits (id SERIAL PRIMARY KEY)")
        c.execute("INSERT INTO fastapi_visits () VALUES ()")
        c.execute("SELECT COUNT(*) FROM fastapi_visits")
        n = c.fetchone()[0]
    conn.commit()
    conn.close()
    return "FastAPI on uvicorn: visit %d from %s\n" % (n, sys.prefix)


@app.get("/items/{item_id}")
def item(item_id: int):
    return {"item_id": item_id, "twice": item_id * 2}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]))
"#;

#[test]
fn flask_poetry_and_fastapi_pipenv_share_mariadb() {
    let server = Server::start();
    let app = server.project(
        "pyweb",
        &[
            (".platform/applications.yaml", PYWEB_APPLICATIONS),
            (".platform/flask.app.yaml", FLASK_APP),
            (".platform/fastapi.app.yaml", FASTAPI_APP),
            (".platform/services.yaml", PYWEB_SERVICES),
            (".platform/routes.yaml", PYWEB_ROUTES),
            ("flask/install-poetry.sh", INSTALL_POETRY),
            ("flask/.environment", FLASK_ENVIRONMENT),
            (
                "flask/pyproject.toml",
                include_str!("template_shapes/flask.pyproject.toml"),
            ),
            (
                "flask/poetry.lock",
                include_str!("template_shapes/flask.poetry.lock"),
            ),
            ("flask/app.py", FLASK_PY),
            (
                "fastapi/Pipfile",
                include_str!("template_shapes/fastapi.Pipfile"),
            ),
            (
                "fastapi/Pipfile.lock",
                include_str!("template_shapes/fastapi.Pipfile.lock"),
            ),
            ("fastapi/server.py", FASTAPI_SERVER),
        ],
    );
    // The template runs its installer script directly: it is committed executable.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        app.dir.join("flask/install-poetry.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod install-poetry.sh");
    app.commit("install-poetry.sh is executable");
    let out = server.push_ok(&app, "pyweb");
    assert!(
        out.contains("Installing dependencies from lock file"),
        "poetry install: {out}"
    );
    assert!(
        out.contains("Installing dependencies from Pipfile.lock"),
        "pipenv install --deploy: {out}"
    );

    let host = "main.pyweb.localhost";
    let flask_host = format!("flask.{host}");
    let first = server.page(&flask_host, "/");
    assert!(
        first.starts_with("Flask on ")
            && first.contains("MariaDB")
            && first.ends_with(" from /app/.venv\n"),
        "flask through `poetry run` in the in-project virtualenv, MariaDB through the relationship: {first:?}"
    );
    let again = server.page(&flask_host, "/");
    assert_eq!(
        visit_number(&again),
        visit_number(&first) + 1,
        "{first}{again}"
    );

    let first = server.page(host, "/");
    assert!(
        first.starts_with("FastAPI on uvicorn: visit ")
            && first.contains(" from /app/.local/share/virtualenvs/"),
        "{first:?}"
    );
    let again = server.page(host, "/");
    assert_eq!(
        visit_number(&again),
        visit_number(&first) + 1,
        "{first}{again}"
    );
    let item = server.page(host, "/items/21");
    let item: serde_json::Value =
        serde_json::from_str(&item).unwrap_or_else(|e| panic!("{e}: {item}"));
    assert_eq!(item, serde_json::json!({"item_id": 21, "twice": 42}));
    let (status, _, body) = server.get_with_head(host, "/items/twenty-one");
    assert_eq!(status, 422, "FastAPI validates the path parameter: {body}");
}

// ---------------------------------------------------------------------------------------
// WordPress-vanilla's shape without packagist: php:8.4 with no start command (PHP-FPM
// behind the router), `wordpress/` as the root with `passthru: /index.php`, `index.php` as
// index, `expires`, rules denying readme/license, MariaDB through mysqli from a
// wp-config.php reading PLATFORM_RELATIONSHIPS, the uploads and cache folders as mounts
// served by their own locations (`scripts: false`, `allow: false`, the template's
// look-behind rule allowing common static files for a week).

const WORDPRESS_APP: &str = r#"# The shape of wordpress-vanilla's .platform.app.yaml (no wp-cli: packagist is unreachable).
name: app
type: "php:8.4"
relationships:
    database: "db:mysql"
variables:
    php:
        session.gc_maxlifetime: '200000'
        pcre.backtrack_limit: '200000'
        pcre.recursion_limit: '200000'
web:
    locations:
        "/":
            root: "wordpress"
            passthru: "/index.php"
            index:
                - "index.php"
            expires: 600
            scripts: true
            allow: true
            rules:
                ^/composer\.json:
                    allow: false
                ^/license\.txt$:
                    allow: false
                ^/readme\.html$:
                    allow: false
        "/wp-content/cache":
            root: "wordpress/wp-content/cache"
            scripts: false
            allow: false
        "/wp-content/uploads":
            root: "wordpress/wp-content/uploads"
            scripts: false
            allow: false
            rules:
                '(?<!\-lock)\.(?i:jpe?g|gif|png|svg|bmp|ico|css|js(?:on)?|eot|ttf|woff|woff2|pdf|docx?|xlsx?|pp[st]x?|psd|odt|key|mp[2-5g]|m4[av]|og[gv]|wav|mov|wm[av]|avi|3g[p2])$':
                    allow: true
                    expires: 1w
disk: 1024
mounts:
    "wordpress/wp-content/cache":
        source: local
        source_path: "cache"
    "wordpress/wp-content/uploads":
        source: local
        source_path: "uploads"
hooks:
    deploy: |
        php wordpress/wp-install.php
"#;

const WORDPRESS_SERVICES: &str = "db:\n    type: mariadb:10.4\n    disk: 1024\n";

const WORDPRESS_ROUTES: &str = r#""https://{default}/":
    type: upstream
    upstream: "app:http"
"https://www.{default}/":
    type: redirect
    to: "https://{default}/"
"#;

const WP_CONFIG: &str = r#"<?php
// As wordpress-vanilla's wp-config.php: the database from PLATFORM_RELATIONSHIPS.
$relationships = json_decode(base64_decode(getenv('PLATFORM_RELATIONSHIPS')), true);
$database = $relationships['database'][0];
define('DB_NAME', $database['path']);
define('DB_USER', $database['username']);
define('DB_PASSWORD', $database['password']);
define('DB_HOST', $database['host']);
define('DB_PORT', (int) $database['port']);
"#;

const WP_INSTALL: &str = r#"<?php
// The deploy hook's `wp core update-db`: the table the pages write to.
require __DIR__ . '/wp-config.php';
$db = new mysqli(DB_HOST, DB_USER, DB_PASSWORD, DB_NAME, DB_PORT);
$db->query('CREATE TABLE IF NOT EXISTS wp_visits (id INT AUTO_INCREMENT PRIMARY KEY, uri VARCHAR(255) NOT NULL)');
echo "wp_visits ready on " . $db->server_info . "\n";
"#;

const WP_INDEX: &str = r#"<?php
// The front controller: every request without a file of its own lands here.
require __DIR__ . '/wp-config.php';
$db = new mysqli(DB_HOST, DB_USER, DB_PASSWORD, DB_NAME, DB_PORT);
$uri = $_SERVER['REQUEST_URI'];
$insert = $db->prepare('INSERT INTO wp_visits (uri) VALUES (?)');
$insert->bind_param('s', $uri);
$insert->execute();
$n = $db->query('SELECT COUNT(*) FROM wp_visits')->fetch_row()[0];
header('Content-Type: text/plain');
echo "WordPress-shaped on PHP " . PHP_VERSION . " and " . $db->server_info . ": visit $n of $uri\n";
"#;

const WP_ADMIN_INDEX: &str = "<?php\necho 'dashboard of ' . $_SERVER['SCRIPT_NAME'] . \"\\n\";\n";

const WP_UPLOAD: &str = r#"<?php
// As wp-admin/async-upload.php: the request body becomes a file in the uploads mount.
$name = basename($_GET['name'] ?? 'upload.bin');
file_put_contents(__DIR__ . '/../wp-content/uploads/' . $name, file_get_contents('php://input'));
echo "stored /wp-content/uploads/$name\n";
"#;

const WP_CSS: &str = ".dashicons { display: inline-block; }\n";

#[test]
fn wordpress_vanilla_shape_on_php_fpm_with_mariadb_and_uploads() {
    let server = Server::start();
    let app = server.project(
        "wordpress",
        &[
            (".platform.app.yaml", WORDPRESS_APP),
            (".platform/services.yaml", WORDPRESS_SERVICES),
            (".platform/routes.yaml", WORDPRESS_ROUTES),
            ("wordpress/index.php", WP_INDEX),
            ("wordpress/wp-config.php", WP_CONFIG),
            ("wordpress/wp-install.php", WP_INSTALL),
            ("wordpress/wp-admin/index.php", WP_ADMIN_INDEX),
            ("wordpress/wp-admin/async-upload.php", WP_UPLOAD),
            ("wordpress/wp-includes/css/dashicons.css", WP_CSS),
            ("wordpress/readme.html", "<h1>WordPress readme</h1>\n"),
            ("wordpress/license.txt", "GPL license text\n"),
        ],
    );
    let out = server.push_ok(&app, "wordpress");
    assert!(
        out.contains("wp_visits ready on "),
        "the deploy hook: {out}"
    );
    let host = "main.wordpress.localhost";

    // The front controller answers `/` and pretty permalinks (missing files), through mysqli.
    let first = server.page(host, "/");
    assert!(
        first.starts_with("WordPress-shaped on PHP 8.4.")
            && first.contains("-MariaDB")
            && first.contains(": visit ")
            && first.ends_with(" of /\n"),
        "{first:?}"
    );
    let permalink = server.page(host, "/2024/01/hello-world/?replytocom=3");
    assert_eq!(
        visit_number(&permalink),
        visit_number(&first) + 1,
        "{permalink}"
    );
    assert!(
        permalink.ends_with(" of /2024/01/hello-world/?replytocom=3\n"),
        "{permalink:?}"
    );
    // `index: [index.php]` for the wp-admin folder; a .php file runs where scripts are on.
    assert_eq!(
        server.page(host, "/wp-admin/"),
        "dashboard of /wp-admin/index.php\n"
    );
    // A static asset with the location's expires (600 s).
    let (status, head, body) = server.get_with_head(host, "/wp-includes/css/dashicons.css");
    assert_eq!((status, body.as_str()), (200, WP_CSS), "{head}");
    assert_eq!(
        header_field(&head, "cache-control"),
        Some("max-age=600"),
        "{head}"
    );
    // Files a rule disallows go to the front controller, never served as they are.
    for path in ["/readme.html", "/license.txt"] {
        let body = server.page(host, path);
        assert!(
            body.starts_with("WordPress-shaped") && body.ends_with(&format!(" of {path}\n")),
            "{path}: {body:?}"
        );
    }

    // Uploads: written by PHP into the uploads mount, served back by its own location as
    // static files for a week; a .php upload is never run nor shown, other types not served.
    let upload = |name: &str, bytes: &[u8]| {
        let (status, _, body) = http_request(
            server.http_port,
            "POST",
            host,
            &format!("/wp-admin/async-upload.php?name={name}"),
            bytes,
        );
        assert_eq!(
            (status, body),
            (200, format!("stored /wp-content/uploads/{name}\n")),
            "{}",
            server.server_log()
        );
    };
    upload("photo.png", b"not really a PNG");
    upload("shell.php", b"<?php echo 'exec' . 'uted';");
    upload("notes.txt", b"private notes");
    upload("export-lock.json", b"{\"locked\": true}");
    let (status, head, body) = server.get_with_head(host, "/wp-content/uploads/photo.png");
    assert_eq!((status, body.as_str()), (200, "not really a PNG"), "{head}");
    assert_eq!(
        header_field(&head, "content-type"),
        Some("image/png"),
        "{head}"
    );
    assert_eq!(
        header_field(&head, "cache-control"),
        Some("max-age=604800"),
        "{head}"
    );
    for path in ["shell.php", "notes.txt", "export-lock.json"] {
        let (status, head, body) =
            server.get_with_head(host, &format!("/wp-content/uploads/{path}"));
        assert!(
            (status == 403 || status == 404)
                && !body.contains("executed")
                && !body.contains("<?php")
                && !body.contains("private notes")
                && !body.contains("locked"),
            "{path}: {status}\n{head}\n{body}"
        );
    }
    // The uploads stay in their mount across a new release.
    app.write("wordpress/wp-includes/css/dashicons.css", ".dashicons {}\n");
    app.commit("css");
    server.push_ok(&app, "wordpress");
    let (status, _, body) = server.get_with_head(host, "/wp-content/uploads/photo.png");
    assert_eq!((status, body.as_str()), (200, "not really a PNG"));
    assert_eq!(
        server
            .get_with_head(host, "/wp-includes/css/dashicons.css")
            .2,
        ".dashicons {}\n"
    );
}

// ---------------------------------------------------------------------------------------
// pelican's shape: pipenv from `dependencies.python3`, `pipenv install --system --deploy`
// and `pelican content` in the build hook, the generated `output/` served by the `/`
// location alone, with the template's rules allowing common static file types and
// robots.txt and nothing else; its `start: sleep infinity` listens nowhere, and nothing
// reaches it (no passthru, no relationship): the health check only sees it keep running.

const PELICAN_APP: &str = r#"# The shape of the pelican template's .platform.app.yaml.
name: app
type: "python:3.11"
dependencies:
    python3:
       pipenv: "2026.10.3"
hooks:
    build: |
      pipenv install --system --deploy
      pelican content
disk: 128
web:
  commands:
    start: sleep infinity
  locations:
    "/":
      root: "output"
      index:
        - "index.html"
      expires: 300s
      scripts: false
      allow: false
      rules:
        \.(css|js|gif|jpe?g|png|ttf|eot|woff2?|otf|html|ico|svg?)$:
          allow: true
        ^/robots\.txt$:
          allow: true
"#;

const PELICAN_ROUTES: &str = r#""https://{default}/":
  type: upstream
  upstream: "app:http"
"https://www.{default}/":
  type: redirect
  to: "https://{default}/"
"#;

const PELICAN_CONF: &str = r#"AUTHOR = "Slipway"
SITENAME = "A Pelican-shaped site"
SITEURL = ""
PATH = "content"
TIMEZONE = "UTC"
DEFAULT_LANG = "en"
STATIC_PATHS = ["extra/robots.txt"]
EXTRA_PATH_METADATA = {"extra/robots.txt": {"path": "robots.txt"}}
"#;

const PELICAN_POST: &str = "Launching on Slipway\n####################\n\n:date: 2024-05-01 10:00\n:category: news\n:slug: launching-on-slipway\n\nThis article was generated by the build hook.\n";

#[test]
fn pelican_static_site_served_by_locations_only() {
    let server = Server::start();
    let app = server.project(
        "pelican",
        &[
            (".platform.app.yaml", PELICAN_APP),
            (".platform/routes.yaml", PELICAN_ROUTES),
            (".platform/services.yaml", ""),
            ("Pipfile", include_str!("template_shapes/pelican.Pipfile")),
            (
                "Pipfile.lock",
                include_str!("template_shapes/pelican.Pipfile.lock"),
            ),
            ("pelicanconf.py", PELICAN_CONF),
            ("content/launching.rst", PELICAN_POST),
            ("content/extra/robots.txt", "User-agent: *\nDisallow:\n"),
        ],
    );
    let out = server.push_ok(&app, "pelican");
    assert!(out.contains("Done: Processed 1 article"), "{out}");
    assert!(out.contains("not probed on $PORT"), "{out}");
    let host = "main.pelican.localhost";

    let index = server.page(host, "/");
    assert!(
        index.contains("A Pelican-shaped site") && index.contains("Launching on Slipway"),
        "{index}"
    );
    let (status, head, article) = server.get_with_head(host, "/launching-on-slipway.html");
    assert_eq!(status, 200, "{head}");
    assert!(
        article.contains("This article was generated by the build hook."),
        "{article}"
    );
    assert_eq!(
        header_field(&head, "cache-control"),
        Some("max-age=300"),
        "{head}"
    );
    assert!(
        header_field(&head, "content-type").is_some_and(|t| t.starts_with("text/html")),
        "{head}"
    );
    let (status, head, _) = server.get_with_head(host, "/theme/css/main.css");
    assert_eq!(status, 200, "{head}");
    assert!(
        header_field(&head, "content-type").is_some_and(|t| t.starts_with("text/css")),
        "{head}"
    );
    assert_eq!(
        server.page(host, "/robots.txt"),
        "User-agent: *\nDisallow:\n"
    );
    // What the rules do not allow (the feeds' XML) and what does not exist: not served.
    for path in ["/feeds/all.atom.xml", "/no-such-page.html"] {
        let (status, head, body) = server.get_with_head(host, path);
        assert!(
            status == 403 || status == 404,
            "{path}: {status}\n{head}\n{body}"
        );
    }
    assert!(
        std::fs::metadata(app.dir.join("output")).is_err(),
        "the site is generated by the build, not committed"
    );
}

// ---------------------------------------------------------------------------------------
// bigfoot's static apps: the admin (a React build under `build/`, `passthru:
// "/admin/index.html"` on its `/admin` location, no start command: a single-page app whose
// routes are no files), upsun demo-js's main_app (`passthru: true` on `/` with a `dist`
// root and no process), and the `update-submodule` app whose `start: sleep infinity`
// listens nowhere and that no route nor relationship reaches. Platform.sh serves the first
// two as static sites (a passthru path is an internal rewrite to that file; `passthru: true`
// with nothing behind it is 404, and warned about) and expects nothing of the third but to
// keep running.

const BIGFOOT_APPLICATIONS: &str = r#"admin:
  type: nodejs:22
  source:
    root: admin
  build:
    flavor: none
  hooks:
    build: |
      set -eu
      mkdir -p build/static
      echo '<div id="root">bigfoot admin</div>' > build/index.html
      echo 'render(document.getElementById("root"))' > build/static/main.js
  web:
    locations:
      "/admin":
        passthru: "/admin/index.html"
        root: "build"
        index:
          - "index.html"
        expires: 300s
        scripts: true
        allow: true
        rules:
          \.(css|js|gif|jpe?g|png|ttf|eot|woff2?|otf|html|ico|svg?)$:
            allow: true
          ^/admin/robots\.txt$:
            allow: true
        headers:
          Access-Control-Allow-Origin: "*"

main_app:
  type: nodejs:22
  source:
    root: main
  build:
    flavor: none
  hooks:
    build: |
      set -e
      mkdir -p dist
      echo '<h1>demo-js main</h1>' > dist/index.html
  web:
    locations:
      /:
        root: "dist"
        passthru: true
        index:
          - index.html

update-submodule:
  type: "nodejs:22"
  source:
    root: tools
  web:
    commands:
      start: |
        sleep infinity
"#;

const BIGFOOT_ROUTES: &str = r#"http://{default}:
  type: upstream
  upstream: "main_app:http"
  id: main

http://{default}/admin:
  type: upstream
  upstream: admin:http
  id: admin
"#;

#[test]
fn bigfoot_static_apps_answer_their_passthru_file_and_a_process_nobody_reaches_only_runs() {
    let server = Server::start();
    let app = server.project(
        "bigfoot",
        &[
            (".platform/applications.yaml", BIGFOOT_APPLICATIONS),
            (".platform/routes.yaml", BIGFOOT_ROUTES),
            (".platform/services.yaml", ""),
            (
                "admin/package.json",
                "{\"name\": \"admin\", \"private\": true}\n",
            ),
            (
                "main/package.json",
                "{\"name\": \"main\", \"private\": true}\n",
            ),
            ("tools/README.md", "git submodule updates\n"),
        ],
    );
    let out = server.push_ok(&app, "bigfoot");
    // One thing to warn about: main_app's `passthru: true`, which nothing answers.
    let warnings: Vec<&str> = out.lines().filter(|l| l.contains("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{out}");
    assert!(
        warnings[0].contains(".platform/applications.yaml:")
            && warnings[0].contains("app `main_app` has no start command and is not PHP")
            && warnings[0].contains(r#"(at main_app.web.locations."/".passthru)"#),
        "{out}"
    );
    assert!(
        out.contains("health check update-submodule")
            && out
                .contains("not probed on $PORT: no route's locations pass requests through to it"),
        "{out}"
    );
    let host = "main.bigfoot.localhost";

    // The admin's client-side routes are no files: its index.html answers them.
    for path in ["/admin/users/42", "/admin/settings?tab=2", "/admin/"] {
        let (status, head, body) = server.get_with_head(host, path);
        assert_eq!(
            (status, body.as_str()),
            (200, "<div id=\"root\">bigfoot admin</div>\n"),
            "{path}: {head}\nserver log:\n{}",
            server.server_log()
        );
        assert_eq!(
            header_field(&head, "access-control-allow-origin"),
            Some("*"),
            "{path}: {head}"
        );
    }
    let (status, head, js) = server.get_with_head(host, "/admin/static/main.js");
    assert_eq!(status, 200, "{head}");
    assert_eq!(js, "render(document.getElementById(\"root\"))\n");
    assert_eq!(
        header_field(&head, "cache-control"),
        Some("max-age=300"),
        "{head}"
    );

    // main_app: its files, and 404 (not a dead upstream's 502) for what is no file.
    assert_eq!(server.page(host, "/"), "<h1>demo-js main</h1>\n");
    for path in ["/no-such-page", "/api/items"] {
        let (status, head, _) = server.get_with_head(host, path);
        assert_eq!(status, 404, "{path}: {head}");
    }
    let (status, head, _) = http_request(server.http_port, "POST", host, "/admin/users", b"x=1");
    assert_eq!(status, 405, "{head}");
}

// ---------------------------------------------------------------------------------------
// akeneo's shape: a PHP app whose `database` relationship is an `oracle-mysql:8.0` service
// (run on MariaDB, with a warning saying so) beside an `elasticsearch` service the server
// cannot run (refused at validate, naming the types it runs; the push without it deploys), and
// `dependencies.php: composer/composer: "^2"` as the PHP templates write it: the stack's
// composer 2 satisfies it, so nothing asks packagist (unreachable here) for it.

const AKENEO_APP: &str = r#"# The shape of akeneo's .platform.app.yaml.
name: app
type: php:8.4
dependencies:
    php:
        composer/composer: "^2"
build:
    flavor: none
relationships:
    database: "db:mysql"
    essearch: "search:elasticsearch"
web:
    locations:
        "/":
            root: "public"
            passthru: "/index.php"
disk: 1024
"#;

const AKENEO_SERVICES: &str = r#"db:
    type: oracle-mysql:8.0
    disk: 1024
search:
    type: elasticsearch:7.5
    disk: 512
"#;

const AKENEO_INDEX: &str = r#"<?php
// The database as akeneo's parameters read it: a PDO DSN from the relationship's scheme.
$relationships = json_decode(base64_decode(getenv('PLATFORM_RELATIONSHIPS')), true);
$db = $relationships['database'][0];
$dsn = sprintf('%s:host=%s;port=%d;dbname=%s', $db['scheme'], $db['host'], $db['port'], $db['path']);
$pdo = new PDO($dsn, $db['username'], $db['password']);
$pdo->exec('CREATE TABLE IF NOT EXISTS pim_visits (id INT AUTO_INCREMENT PRIMARY KEY)');
$pdo->exec('INSERT INTO pim_visits () VALUES ()');
$n = $pdo->query('SELECT COUNT(*) FROM pim_visits')->fetchColumn();
$server = $pdo->query('SELECT VERSION()')->fetchColumn();
header('Content-Type: text/plain');
echo "{$db['scheme']} {$db['type']} {$db['host']} visit $n on $server\n";
"#;

#[test]
fn akeneo_shape_reaches_oracle_mysql_run_on_mariadb_and_keeps_the_stacks_composer() {
    let server = Server::start();
    let app = server.project(
        "akeneo",
        &[
            (".platform.app.yaml", AKENEO_APP),
            (".platform/services.yaml", AKENEO_SERVICES),
            (
                ".platform/routes.yaml",
                "\"https://{default}/\":\n    type: upstream\n    upstream: \"app:http\"\n",
            ),
            ("public/index.php", AKENEO_INDEX),
        ],
    );
    // As written, with `elasticsearch`: refused before anything is built, at the service's
    // `type`, naming what the server runs.
    let refused = server.push_with(&app, "akeneo", "main", &[]);
    let out = text(&refused);
    assert!(!refused.status.success(), "{out}");
    assert!(
        out.contains(".platform/services.yaml:5:11: error: this server cannot run `elasticsearch` services; it runs postgresql, mariadb")
            && !out.contains("-----> build"),
        "{out}"
    );
    assert_eq!(
        server.get("main.akeneo.localhost", "/").map(|(s, _)| s),
        Some(404),
        "nothing deployed"
    );
    // Without the search service (and its relationship), it deploys.
    app.write(
        ".platform.app.yaml",
        &AKENEO_APP.replace("    essearch: \"search:elasticsearch\"\n", ""),
    );
    app.write(
        ".platform/services.yaml",
        AKENEO_SERVICES.split("search:").next().unwrap(),
    );
    app.commit("no search");
    let out = server.push_ok(&app, "akeneo");
    assert!(
        out.contains("warning: this server runs `oracle-mysql:8.0` on MariaDB (mariadb:10.11)"),
        "{out}"
    );
    assert!(
        out.contains(
            "dependencies.php: composer/composer:^2 is not installed: the stack's composer 2."
        ),
        "{out}"
    );
    assert!(!out.contains("composer global require"), "{out}");
    let host = "main.akeneo.localhost";
    let first = server.page(host, "/");
    assert!(
        first.starts_with("mysql oracle-mysql:8.0 database.internal visit 1 on 10.11.")
            && first.contains("MariaDB"),
        "{first:?}"
    );
    assert_eq!(visit_number(&server.page(host, "/products/1")), 2);
}

// ---------------------------------------------------------------------------------------
// Node: the nextjs template's shape with yarn (`build.flavor: none`, yarn from
// `dependencies.nodejs`, `yarn` and `yarn build` in the build hook, the build's `.next`
// moved aside by `handle_mounts.sh` because `.next` is a mount at run time, and copied into
// the mount by the deploy hook), beside an app of the `npm run build` + `npm run start`
// shape (the default nodejs flavor's npm install, assets from the build served by a
// location). A build step of next's shape stands in for the real `next` package, whose
// install and build take minutes here and make a 330 MB slug.

const NODE_APPLICATIONS: &str = "- !include next.app.yaml\n- !include shop.app.yaml\n";

const NEXT_APP: &str = r#"# The shape of the nextjs template's .platform.app.yaml.
name: app
type: 'nodejs:22'
source:
    root: next
disk: 512
mounts:
    '/.next':
        source: local
        source_path: 'next'
web:
    commands:
        start: yarn start -p $PORT
build:
    flavor: none
dependencies:
    nodejs:
        yarn: "^1.22.0"
hooks:
    build: |
        yarn
        yarn build
        # Move what the build made in soon-to-be mounts aside.
        chmod +x handle_mounts.sh
        ./handle_mounts.sh
    deploy: |
        # Move it into the mounts.
        ./handle_mounts.sh
"#;

const SHOP_APP: &str = r#"# An app of the `npm run build` + `npm run start` shape.
name: shop
type: 'nodejs:22'
source:
    root: shop
disk: 256
web:
    commands:
        start: npm run start
    locations:
        "/":
            passthru: true
        "/assets":
            root: "dist/assets"
            expires: 1d
            allow: true
hooks:
    build: npm run build
"#;

const NODE_ROUTES: &str = r#""https://{default}/":
    type: upstream
    upstream: "app:http"
"https://shop.{default}/":
    type: upstream
    upstream: "shop:http"
"#;

const MARKED_PACKAGE: &str = r#"{
  "name": "NAME",
  "version": "1.0.0",
  "private": true,
  "scripts": {
    "build": "node build.js",
    "start": "node server.js"
  },
  "dependencies": {
    "marked": "^12.0.0"
  }
}
"#;

const NEXT_YARN_LOCK: &str = r#"# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.
# yarn lockfile v1


marked@^12.0.0:
  version "12.0.2"
  resolved "https://registry.yarnpkg.com/marked/-/marked-12.0.2.tgz#b31578fe608b599944c69807b00f18edab84647e"
  integrity sha512-qXUm7e/YKFoqFPYPa3Ukg9xlI5cyAtGmyEIzMfW//m6kXwCy2Ps9DYf5ioijFKQ8qyuscrHoY04iJGctu2Kg0Q==
"#;

const SHOP_PACKAGE_LOCK: &str = r#"{
  "name": "shop",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "shop",
      "version": "1.0.0",
      "dependencies": {
        "marked": "^12.0.0"
      }
    },
    "node_modules/marked": {
      "version": "12.0.2",
      "resolved": "https://registry.npmjs.org/marked/-/marked-12.0.2.tgz",
      "integrity": "sha512-qXUm7e/YKFoqFPYPa3Ukg9xlI5cyAtGmyEIzMfW//m6kXwCy2Ps9DYf5ioijFKQ8qyuscrHoY04iJGctu2Kg0Q==",
      "license": "MIT",
      "bin": {
        "marked": "bin/marked.js"
      },
      "engines": {
        "node": ">= 18"
      }
    }
  }
}
"#;

const NEXT_BUILD: &str = r#"// `next build`'s shape: the pages rendered into .next, with a build id.
const crypto = require("crypto");
const fs = require("fs");
const { marked } = require("marked");

fs.mkdirSync(".next/server/pages", { recursive: true });
const pages = fs.readdirSync("pages");
for (const page of pages) {
  const html = marked.parse(fs.readFileSync(`pages/${page}`, "utf8"));
  fs.writeFileSync(`.next/server/pages/${page.replace(/\.md$/, ".html")}`, html);
}
const id = crypto.randomBytes(8).toString("hex");
fs.writeFileSync(".next/BUILD_ID", id);
console.log(`Compiled successfully: ${pages.length} pages, build ${id}`);
"#;

const NEXT_SERVER: &str = r#"// `next start -p PORT`'s shape: the pages from .next, a cache written into it at run time.
const fs = require("fs");
const http = require("http");

const args = process.argv.slice(2);
const port = Number(args[args.indexOf("-p") + 1] || process.env.PORT);
// Read at start (it exits when the mount has none yet), and again per answer: the deploy
// hook may copy a new one in after the start.
const buildId = () => fs.readFileSync(".next/BUILD_ID", "utf8");
buildId();

http.createServer((req, res) => {
  const name = req.url === "/" ? "index" : req.url.slice(1).replace(/[^a-z0-9-]/g, "");
  fs.mkdirSync(".next/cache", { recursive: true });
  fs.appendFileSync(".next/cache/requests.log", `${req.url}\n`);
  const served = fs.readFileSync(".next/cache/requests.log", "utf8").split("\n").length - 1;
  try {
    const html = fs.readFileSync(`.next/server/pages/${name}.html`, "utf8");
    res.writeHead(200, { "Content-Type": "text/html", "X-Build-Id": buildId(), "X-Served": String(served) });
    res.end(html);
  } catch (e) {
    res.writeHead(404, { "Content-Type": "text/plain" });
    res.end("404: This page could not be found.\n");
  }
}).listen(port, "127.0.0.1", () => console.log(`ready on ${port}, build ${buildId()}`));
"#;

const HANDLE_MOUNTS: &str = r#"#!/usr/bin/env bash
# The nextjs template's way with mounts: the build's files in a soon-to-be mount are moved
# aside (the build has no PLATFORM_BRANCH) and copied back into the mount by the deploy
# hook. The mounts come from PLATFORM_APPLICATION, read with jq as the template does.
MOUNT_TMP=platformsh-mounts
clean_mount_defn() {
    MOUNT=$1
    if [[ ${MOUNT:0:1} == "/" ]]; then echo "${MOUNT:1}"; else echo "$MOUNT"; fi
}
MOUNTS=$(echo "$PLATFORM_APPLICATION" | base64 --decode | jq '.mounts | keys')
for mount in $(echo "${MOUNTS}" | jq -r '.[]'); do
    MOUNT=$(clean_mount_defn "$mount")
    if [ -z "${PLATFORM_BRANCH}" ]; then
        mkdir -p "$PLATFORM_APP_DIR/$MOUNT_TMP/$MOUNT-tmp"
        mv "$PLATFORM_APP_DIR/$MOUNT"/* "$PLATFORM_APP_DIR/$MOUNT_TMP/$MOUNT-tmp"
        echo "staged $MOUNT"
    elif [ -d "$PLATFORM_APP_DIR/$MOUNT_TMP/$MOUNT-tmp" ]; then
        find "$PLATFORM_APP_DIR/$MOUNT" -mindepth 1 -maxdepth 1 ! -name cache -exec rm -rf {} +
        cp -r "$PLATFORM_APP_DIR/$MOUNT_TMP/$MOUNT-tmp"/* "$PLATFORM_APP_DIR/$MOUNT"
        echo "copied the build's $MOUNT into the mount"
    fi
done
"#;

const SHOP_BUILD: &str = r#"// The build: README.md rendered into dist/, with its stylesheet.
const fs = require("fs");
const { marked } = require("marked");

fs.mkdirSync("dist/assets", { recursive: true });
fs.writeFileSync("dist/index.html", marked.parse(fs.readFileSync("README.md", "utf8")));
fs.writeFileSync("dist/assets/shop.css", "h1 { color: teal; }\n");
console.log("built dist/index.html and dist/assets/shop.css");
"#;

const SHOP_SERVER: &str = r#"const fs = require("fs");
const http = require("http");

const page = fs.readFileSync("dist/index.html", "utf8");
http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/html" });
  res.end(`${page}<p>served by ${process.env.npm_lifecycle_event} at ${req.url}</p>\n`);
}).listen(Number(process.env.PORT), "127.0.0.1");
"#;

/// The Build id a push's output names for the next-shaped app.
fn build_id(out: &str) -> String {
    out.split("Compiled successfully: 2 pages, build ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no build id in\n{out}"))
        .to_string()
}

#[test]
fn nextjs_with_yarn_and_npm_build_start_shapes() {
    let server = Server::start();
    let next_package = MARKED_PACKAGE.replace("NAME", "nextjs-shape");
    let shop_package = MARKED_PACKAGE.replace("NAME", "shop");
    let app = server.project(
        "node",
        &[
            (".platform/applications.yaml", NODE_APPLICATIONS),
            (".platform/next.app.yaml", NEXT_APP),
            (".platform/shop.app.yaml", SHOP_APP),
            (".platform/routes.yaml", NODE_ROUTES),
            ("next/package.json", &next_package),
            ("next/yarn.lock", NEXT_YARN_LOCK),
            ("next/build.js", NEXT_BUILD),
            ("next/server.js", NEXT_SERVER),
            ("next/handle_mounts.sh", HANDLE_MOUNTS),
            ("next/pages/index.md", "# Hello from a Next-shaped app\n"),
            ("next/pages/about.md", "# About\n\nBuilt by `yarn build`.\n"),
            ("shop/package.json", &shop_package),
            ("shop/package-lock.json", SHOP_PACKAGE_LOCK),
            ("shop/build.js", SHOP_BUILD),
            ("shop/server.js", SHOP_SERVER),
            ("shop/README.md", "# The shop\n"),
        ],
    );
    let out = server.push_ok(&app, "node");
    // yarn from `dependencies`, then the build hook's yarn install and build; npm's flavor.
    assert!(out.contains("yarn@^1.22.0"), "{out}");
    assert!(
        out.contains("success Saved lockfile") || out.contains("Done in"),
        "yarn ran: {out}"
    );
    assert!(
        out.contains("running build flavor default (npm prune && npm install)"),
        "{out}"
    );
    assert!(out.contains("built dist/index.html"), "{out}");
    assert!(
        out.contains("staged .next") && out.contains("copied the build's .next into the mount"),
        "the template's handle_mounts.sh finds the mounts with jq: {out}"
    );
    let first_build = build_id(&out);

    let host = "main.node.localhost";
    let (status, head, body) = server.get_with_head(host, "/");
    assert_eq!(status, 200, "{head}\n{body}\n{}", server.server_log());
    assert!(
        body.contains("<h1>Hello from a Next-shaped app</h1>"),
        "{body}"
    );
    assert_eq!(
        header_field(&head, "x-build-id"),
        Some(first_build.as_str()),
        "{head}"
    );
    let (_, _, about) = server.get_with_head(host, "/about");
    assert!(
        about.contains("Built by <code>yarn build</code>."),
        "{about}"
    );
    let (status, _, _) = server.get_with_head(host, "/missing");
    assert_eq!(status, 404);

    let shop_host = format!("shop.{host}");
    let shop = server.page(&shop_host, "/cart");
    assert!(
        shop.starts_with("<h1>The shop</h1>") && shop.contains("served by start at /cart"),
        "{shop}"
    );
    let (status, head, css) = server.get_with_head(&shop_host, "/assets/shop.css");
    assert_eq!(
        (status, css.as_str()),
        (200, "h1 { color: teal; }\n"),
        "{head}"
    );
    assert_eq!(
        header_field(&head, "cache-control"),
        Some("max-age=86400"),
        "{head}"
    );

    // A new build reaches the mount through the deploy hook; the run-time cache stays.
    app.write("next/pages/index.md", "# Hello again\n");
    app.commit("new index");
    let out = server.push_ok(&app, "node");
    let second_build = build_id(&out);
    assert_ne!(first_build, second_build);
    let (status, head, body) = server.get_with_head(host, "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<h1>Hello again</h1>"), "{body}");
    assert_eq!(
        header_field(&head, "x-build-id"),
        Some(second_build.as_str()),
        "{head}"
    );
    let served: u32 = header_field(&head, "x-served")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        served >= 4,
        "the cache in the .next mount kept the earlier requests: {head}"
    );
}

/// The nextjs template's start command reads what its deploy hook copies into a mount: on a
/// first deploy it exits, as the mount is still empty. Platform.sh starts it again; so does
/// Slipway while the app's deploy hook runs (before, the exit ended the container and the
/// hook running in it, and the push failed). Here the hook takes 3 s and the start command
/// exits at once until the file is there.
#[test]
fn a_start_command_that_needs_what_the_deploy_hook_writes_is_started_again_until_it_is_there() {
    let server = Server::start();
    let app = server.project(
        "demo",
        &[
            (
                ".platform.app.yaml",
                "name: app\ntype: python:3.11\ndisk: 64\nmounts:\n  data:\n    source: local\n    source_path: data\nhooks:\n  deploy: |\n    sleep 3\n    echo \"written by the deploy hook\" > data/ready.txt\nweb:\n  commands:\n    start: |\n      test -e data/ready.txt || { echo \"data/ready.txt is not there yet\"; exit 1; }\n      exec python3 -m http.server $PORT --bind 127.0.0.1 --directory data\n",
            ),
            (
                ".platform/routes.yaml",
                "'https://{default}/':\n  type: upstream\n  upstream: 'app:http'\n",
            ),
        ],
    );
    let out = server.push_ok(&app, "demo");
    assert!(out.contains("deploy hook app: done"), "{out}");
    assert_eq!(
        server.page("main.demo.localhost", "/ready.txt"),
        "written by the deploy hook\n"
    );
    let log = server.admin_stdout("logs demo main app");
    assert!(log.contains("data/ready.txt is not there yet"), "{log}");
    assert!(
        log.contains("exited with status 1 while the deploy hook runs; starting it again in 1 s"),
        "{log}"
    );
    // Once the hook is done, an exit is the app's own failure: a start command that exits
    // fails the deploy as before, and the live release stays.
    app.write(".platform.app.yaml", "name: app\ntype: python:3.11\ndisk: 64\nmounts:\n  data:\n    source: local\n    source_path: data\nhooks:\n  deploy: echo hook done\nweb:\n  commands:\n    start: exit 4\n");
    app.commit("a start command that exits");
    let o = server.push_with(&app, "demo", "main", &[]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("app app exited at start"), "{out}");
    assert_eq!(
        server.page("main.demo.localhost", "/ready.txt"),
        "written by the deploy hook\n"
    );
}

// ---------------------------------------------------------------------------------------
// pink-rabbit's shape: a PHP app whose build hook renders its front end with `npm install`
// and `npm run build` on the Node.js every PHP stack carries (as Platform.sh's PHP images
// do), and whose deploy hook loads its MariaDB with the `mysql` client, its credentials
// read from `PLATFORM_RELATIONSHIPS` with `jq`. The build also checks the tools every app
// stack has (curl, wget, rsync, unzip, xz, jq, git, file, ps, mysql, psql).

const PINK_RABBIT_APP: &str = r#"name: app
type: 'php:8.4'
relationships:
    database: 'db:mysql'
web:
    locations:
        '/':
            root: 'public'
            passthru: '/index.php'
hooks:
    build: |
        set -e
        echo "node $(node --version), npm $(npm --version), yarn $(yarn --version)"
        npm install
        npm run build
        for tool in curl wget rsync unzip xz jq git file ps mysql psql; do
            command -v "$tool" > /dev/null || { echo "no $tool on the stack"; exit 1; }
        done
        echo "every tool is there"
    deploy: |
        set -e
        db() { echo "$PLATFORM_RELATIONSHIPS" | base64 -d | jq -r ".database[0].$1"; }
        mysql --host="$(db host)" --port="$(db port)" --user="$(db username)" \
            --password="$(db password)" "$(db path)" \
            -e 'CREATE TABLE IF NOT EXISTS carrots (n INT); INSERT INTO carrots VALUES (42);'
        echo "carrots loaded by $(mysql --version | cut -d' ' -f1-3)"
"#;

const PINK_RABBIT_PACKAGE: &str = r#"{
  "name": "pink-rabbit-shape",
  "version": "1.0.0",
  "private": true,
  "scripts": { "build": "node build.js" },
  "dependencies": { "marked": "^12.0.0" }
}
"#;

const PINK_RABBIT_BUILD: &str = r##"const fs = require("fs");
const { marked } = require("marked");
fs.writeFileSync("public/page.html", marked.parse("# Hello from *npm*"));
console.log("rendered public/page.html on node " + process.version);
"##;

const PINK_RABBIT_INDEX: &str = r#"<?php
$db = json_decode(base64_decode(getenv('PLATFORM_RELATIONSHIPS')), true)['database'][0];
$pdo = new PDO("mysql:host={$db['host']};port={$db['port']};dbname={$db['path']}", $db['username'], $db['password']);
$carrots = $pdo->query('SELECT SUM(n) FROM carrots')->fetchColumn();
header('Content-Type: text/plain');
echo trim(file_get_contents(__DIR__ . '/page.html')) . " and $carrots carrots\n";
"#;

#[test]
fn pink_rabbit_shape_builds_its_front_end_with_npm_and_loads_mariadb_with_the_mysql_client() {
    let server = Server::start();
    let app = server.project(
        "rabbit",
        &[
            (".platform.app.yaml", PINK_RABBIT_APP),
            (".platform/services.yaml", "db:\n    type: mariadb:10.11\n"),
            (
                ".platform/routes.yaml",
                "\"https://{default}/\":\n    type: upstream\n    upstream: \"app:http\"\n",
            ),
            ("package.json", PINK_RABBIT_PACKAGE),
            ("build.js", PINK_RABBIT_BUILD),
            ("public/index.php", PINK_RABBIT_INDEX),
        ],
    );
    let out = server.push_ok(&app, "rabbit");
    // Trixie's Node.js 20 with npm 10 and yarn 1 from the npm registry.
    assert!(out.contains("app | node v20."), "{out}");
    assert!(out.contains(", npm 10.9.4, yarn 1.22.22"), "{out}");
    assert!(
        out.contains("app | rendered public/page.html on node v20."),
        "{out}"
    );
    assert!(out.contains("app | every tool is there"), "{out}");
    // Trixie's client: `mysql from 11.8.x-MariaDB, client 15.2 ...`.
    assert!(out.contains("carrots loaded by mysql from 11."), "{out}");
    let host = "main.rabbit.localhost";
    assert_eq!(
        server.page(host, "/"),
        "<h1>Hello from <em>npm</em></h1> and 42 carrots\n"
    );
    // The rendered page is a static file of the root too.
    assert_eq!(
        server.page(host, "/page.html"),
        "<h1>Hello from <em>npm</em></h1>\n"
    );
}
