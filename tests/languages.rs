//! Apps in the languages of the stack catalog, pushed as a user would and served by a real
//! `slipway serve`: Go, Ruby and Java apps with a `.platform.app.yaml` in the shape of the
//! Platform.sh templates, and Procfile apps (Heroku style) whose language is detected from
//! go.mod, Gemfile, pom.xml or composer.json; then the nodejs and python stacks' package
//! managers (yarn and corepack from the stack, yarn's and pip's caches in the build cache),
//! two Python versions side by side, and two PHP versions side by side (with a missing
//! `php:8.3` run on 8.4 with a warning, and a missing major refused), PHP 7.4 from Debian 11
//! (bullseye) with its no-security-updates warning, and an Upsun
//! `stack:` list of Python and Node.js giving one app both. Only PyPI, npm, crates.io and Debian answer here,
//! so the Go, Ruby and Java apps use their language's standard library only; each answers
//! with the version of the interpreter or compiler it runs on (the one its `type` or its
//! tree asked for) and `id -u` (never 0).

use slipway_e2e::{cached_stack, text, App, Server};

/// A git tree of `files` in the server's folder, committed on `main`.
fn app_of(server: &Server, name: &str, files: &[(&str, &str)]) -> App {
    let dir = server.dir.path().join(name);
    std::fs::create_dir_all(&dir).expect("app dir");
    let app = App { dir };
    for (path, content) in files {
        app.write(path, content);
    }
    app.git_ok(&["init", "-q", "-b", "main"]);
    app.commit(name);
    app
}

/// Push `app` to `project` as [`Server::push_ok`] does, and expect a `warning:` line saying `warning`.
fn push_warned(server: &Server, app: &App, project: &str, warning: &str) -> String {
    let out = server.push_ok(app, project);
    assert!(
        out.lines()
            .any(|l| l.contains("warning:") && l.contains(warning)),
        "{out}"
    );
    out
}

/// Expect `slipway config check` of `app` to pass, warning `warning` at line 2 of `file`
/// (the `type` key of the app files here).
fn config_check_warns(app: &App, file: &str, warning: &str) {
    let check = slipway_e2e::config_check_ok(&app.dir);
    let at = format!("{file}:2:");
    assert!(
        check
            .lines()
            .any(|l| l.starts_with(&at) && l.contains(": warning: ") && l.contains(warning)),
        "{check}"
    );
}

/// The app's answer on `/`: `(version, uid)` from its `VERSION UID` line.
fn answer(server: &Server, project: &str) -> (String, u32) {
    let (code, body) = server
        .get(&format!("main.{project}.localhost"), "/")
        .expect("the app answers");
    assert_eq!(code, 200, "{body}");
    let mut words = body.split_whitespace();
    let version = words.next().unwrap_or_default().to_string();
    let uid = words
        .next()
        .and_then(|u| u.parse().ok())
        .unwrap_or_else(|| panic!("no uid in {body:?}"));
    (version, uid)
}

/// A Go web server on 127.0.0.1:$PORT answering `GO_VERSION UID relationships=N db=HOST:PORT`
/// (uid from `id -u`, N the relationships decoded from `PLATFORM_RELATIONSHIPS`, the
/// database from the variables the golang template's start command exports).
const GO_SERVER: &str = r#"package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

func main() {
	raw, err := base64.StdEncoding.DecodeString(os.Getenv("PLATFORM_RELATIONSHIPS"))
	if err != nil {
		panic(err)
	}
	var rels map[string]any
	if err := json.Unmarshal(raw, &rels); err != nil {
		panic(err)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		uid, err := exec.Command("id", "-u").Output()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%s %s relationships=%d db=%s:%s\n", runtime.Version(), strings.TrimSpace(string(uid)), len(rels), os.Getenv("DATABASE_HOST"), os.Getenv("DATABASE_PORT"))
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		panic(err)
	}
}
"#;

/// The golang template's application (`go build -o bin/app`, a start command exporting the
/// database's credentials read from `PLATFORM_RELATIONSHIPS` with jq), on golang:1.24 and
/// with a line showing where Go's build cache went.
const GO_APPLICATIONS: &str = r#"app:
    type: golang:1.24
    hooks:
        build: |
            set -e
            go version
            go build -o bin/app
            [ -e /app/.cache ] || echo "go build cache: $(go env GOCACHE), none in /app"
    relationships:
        database: "db:mysql"
    web:
        upstream:
            socket_family: tcp
            protocol: http
        commands:
            start: |
                export DATABASE_USERNAME=$(echo $PLATFORM_RELATIONSHIPS | base64 --decode | jq -r '.database[0].username')
                export DATABASE_HOST=$(echo $PLATFORM_RELATIONSHIPS | base64 --decode | jq -r '.database[0].host')
                export DATABASE_PORT=$(echo $PLATFORM_RELATIONSHIPS | base64 --decode | jq -r '.database[0].port')
                ./bin/app
        locations:
            /:
                allow: false
                passthru: true
    disk: 1024
"#;

#[test]
fn a_go_app_builds_with_go_build_and_reports_its_go_version_as_non_root() {
    cached_stack("golang:1.24");
    let server = Server::start();
    let app = app_of(
        &server,
        "go-app",
        &[
            (".platform/applications.yaml", GO_APPLICATIONS),
            (
                ".platform/services.yaml",
                "db:\n    type: mariadb:10.11\n    disk: 1024\n",
            ),
            ("go.mod", "module example.com/app\n\ngo 1.24\n"),
            ("server.go", GO_SERVER),
        ],
    );
    let out = server.push_ok(&app, "goapp");
    assert!(out.contains("app | go version go1.24"), "{out}");
    let (version, uid) = answer(&server, "goapp");
    assert!(version.starts_with("go1.24"), "{version}");
    assert_ne!(uid, 0);
    let (_, body) = server.get("main.goapp.localhost", "/").unwrap();
    assert!(body.contains(" relationships=1 db="), "{body}");
    assert!(
        body.ends_with(":3306\n") && !body.contains("db=:"),
        "{body}"
    );

    // Go's build cache is in the app's persistent build cache on the host, not in the slug.
    assert!(
        out.contains("app | go build cache: /cache/go-build, none in /app"),
        "{out}"
    );
    let build_cache = server.build_cache("goapp", "main", "app");
    let cache = build_cache.path.join("go-build");
    assert!(
        std::fs::read_dir(&cache).is_ok_and(|mut d| d.next().is_some()),
        "{}",
        cache.display()
    );
    // Unmounted before the next build mounts it.
    drop(build_cache);

    // A go.mod asking for a newer Go than the stack's fails the build at once, naming both
    // versions, instead of downloading a toolchain; the running release keeps serving.
    app.write("go.mod", "module example.com/app\n\ngo 1.99\n");
    app.commit("a newer go");
    let o = server.git(&app.dir, &["push", &server.remote("goapp"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("go.mod requires go >= 1.99 (running go 1.24"),
        "{out}"
    );
    let (version, _) = answer(&server, "goapp");
    assert!(version.starts_with("go1.24"), "{version}");
}

#[test]
fn a_go_procfile_app_is_detected_from_go_mod_and_built_offline() {
    cached_stack("golang:1.24");
    let server = Server::start();
    let app = app_of(
        &server,
        "go-procfile",
        &[
            ("go.mod", "module example.com/hello\n\ngo 1.24\n"),
            ("main.go", GO_SERVER),
            ("Procfile", "web: bin/hello\n"),
        ],
    );
    let check = slipway_e2e::config_check_ok(&app.dir);
    assert!(
        check.contains("app: stack golang:1.24 (detected from go.mod, 1.24 asked by go.mod)"),
        "{check}"
    );
    let started = std::time::Instant::now();
    server.push_ok(&app, "gohello");
    // A stdlib-only module never waits on the Go module proxy.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(240),
        "{:?}",
        started.elapsed()
    );
    let (version, uid) = answer(&server, "gohello");
    assert!(version.starts_with("go1.24"), "{version}");
    assert_ne!(uid, 0);

    // A module needing a download fails the build at once where the Go module proxy does
    // not answer (as on this machine and its CI: the build's egress proxy answers Bad
    // Gateway), naming the module; the running release keeps serving.
    app.write(
        "go.mod",
        "module example.com/hello\n\ngo 1.24\n\nrequire golang.org/x/text v0.14.0\n",
    );
    app.write(
        "main.go",
        &GO_SERVER.replace(
            "\"strings\"\n",
            "\"strings\"\n\n\t_ \"golang.org/x/text/language\"\n",
        ),
    );
    app.commit("a dependency from the module proxy");
    let started = std::time::Instant::now();
    let o = server.git(&app.dir, &["push", &server.remote("gohello"), "main"]);
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(out.contains("golang.org/x/text"), "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(180),
        "{:?}",
        started.elapsed()
    );
    let (version, _) = answer(&server, "gohello");
    assert!(version.starts_with("go1.24"), "{version}");
}

/// A Ruby web server (stdlib `socket` only) on 127.0.0.1:$PORT answering
/// `RUBY_VERSION UID GEM`, GEM the file the `slipway_hello` gem was loaded from (`-` when the
/// bundle has no such gem).
const RUBY_SERVER: &str = r##"require "socket"
begin
  require "slipway_hello"
  gem = SlipwayHello.file
rescue LoadError
  gem = "-"
end

server = TCPServer.new("127.0.0.1", Integer(ENV.fetch("PORT")))
loop do
  client = server.accept
  while (line = client.gets) && line != "\r\n"
  end
  body = "#{RUBY_VERSION} #{`id -u`.strip} #{gem}\n"
  client.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}")
  client.close
end
"##;

/// A Gemfile without gems: `bundle install` needs no gem server.
const EMPTY_GEMFILE: &str = "source \"https://rubygems.org\"\n";

/// A gem of the app's own, `slipway_hello`: its gemspec and code, below `hello/`.
const HELLO_GEM: [(&str, &str); 2] = [
    (
        "hello/slipway_hello.gemspec",
        "Gem::Specification.new do |s|\n  s.name = \"slipway_hello\"\n  s.version = \"1.0.0\"\n  s.summary = \"hello\"\n  s.authors = [\"slipway\"]\n  s.files = [\"lib/slipway_hello.rb\"]\nend\n",
    ),
    (
        "hello/lib/slipway_hello.rb",
        "module SlipwayHello\n  def self.file\n    __FILE__\n  end\nend\n",
    ),
];

/// A Gemfile asking for `slipway_hello`, which the build finds in `vendor/cache`.
const HELLO_GEMFILE: &str = "source \"https://rubygems.org\"\ngem \"slipway_hello\"\n";

/// The app of [`a_ruby_bundle_installs_into_the_slug`] on `ruby`: its build hook makes
/// `slipway_hello`'s `.gem` and vendors it in `vendor/cache` (rubygems.org does not answer
/// here), then runs a `bundle install` with no bundle path of its own; the start command
/// runs under `bundle exec`.
fn vendored_gem_app(server: &Server, name: &str, ruby: &str) -> App {
    let yaml = format!(
        "name: app\ntype: ruby:{ruby}\nhooks:\n  build: |\n    set -e\n    ruby --version\n    (cd hello && gem build slipway_hello.gemspec)\n    mkdir -p vendor/cache\n    mv hello/slipway_hello-1.0.0.gem vendor/cache/\n    bundle install --local\nweb:\n  commands:\n    start: bundle exec ruby app.rb\n"
    );
    let mut files = vec![
        (".platform.app.yaml", yaml.as_str()),
        ("Gemfile", HELLO_GEMFILE),
        ("app.rb", RUBY_SERVER),
    ];
    files.extend(HELLO_GEM);
    app_of(server, name, &files)
}

/// Ruby's answer: its version, its uid, and where `slipway_hello` was loaded from, which
/// must be the slug's bundle (Slipway's default `BUNDLE_PATH`, `/app/vendor/bundle`)
/// for ruby `abi` (`3.3.0`).
fn assert_gem_from_the_slug(server: &Server, project: &str, ruby: &str, abi: &str) {
    let (code, body) = server
        .get(&format!("main.{project}.localhost"), "/")
        .expect("the app answers");
    assert_eq!(code, 200, "{body}");
    let (version, uid) = answer(server, project);
    assert!(version.starts_with(&format!("{ruby}.")), "{version}");
    assert_ne!(uid, 0);
    assert_eq!(
        body.split_whitespace().nth(2),
        Some(
            format!("/app/vendor/bundle/ruby/{abi}/gems/slipway_hello-1.0.0/lib/slipway_hello.rb")
                .as_str()
        ),
        "{body}"
    );
}

#[test]
fn a_ruby_bundle_installs_into_the_slug_and_is_found_at_run_time() {
    cached_stack("ruby:3.3");
    let server = Server::start();
    let app = vendored_gem_app(&server, "ruby-app", "3.3");
    let out = server.push_ok(&app, "rubyapp");
    assert!(out.contains("app | ruby 3.3."), "{out}");
    assert!(out.contains("app | Bundle complete!"), "{out}");
    assert_gem_from_the_slug(&server, "rubyapp", "3.3", "3.3.0");
}

/// Ruby 2.7, which only Debian 11 (bullseye) has (the Rails template asks for it): built on
/// demand, and the push warns that bullseye gets no security updates any more. Bundler 2.2
/// takes a lock in the gem folder it installs to, which a plain `bundle install` into the
/// stack's read-only gem folder fails on: the default `BUNDLE_PATH` in the slug lets it
/// install, and `bundle exec` find the gems at run time.
#[test]
fn a_ruby_2_7_app_runs_on_bullseyes_ruby_with_a_warning_that_it_gets_no_security_updates() {
    cached_stack("ruby:2.7");
    let server = Server::start();
    let app = vendored_gem_app(&server, "ruby27-app", "2.7");
    let warning = "ruby:2.7 comes from Debian 11 (bullseye), which no longer receives security updates; move to a newer version (ruby:3.1, ruby:3.3)";
    let out = push_warned(&server, &app, "ruby27", warning);
    assert!(out.contains("app | ruby 2.7."), "{out}");
    assert!(out.contains("app | Bundle complete!"), "{out}");
    assert_gem_from_the_slug(&server, "ruby27", "2.7", "2.7.0");
}

#[test]
fn a_ruby_procfile_app_is_detected_from_its_gemfile_and_runs_under_bundle_exec() {
    cached_stack("ruby:3.3");
    let server = Server::start();
    let app = app_of(
        &server,
        "ruby-procfile",
        &[
            ("Gemfile", EMPTY_GEMFILE),
            (".ruby-version", "3.3\n"),
            ("app.rb", RUBY_SERVER),
            ("Procfile", "web: bundle exec ruby app.rb\n"),
        ],
    );
    let check = slipway_e2e::config_check_ok(&app.dir);
    assert!(
        check.contains("app: stack ruby:3.3 (detected from Gemfile, 3.3 asked by .ruby-version)"),
        "{check}"
    );
    let out = server.push_ok(&app, "rubyhello");
    assert!(out.contains("app | Bundle complete!"), "{out}");
    let (version, uid) = answer(&server, "rubyhello");
    assert!(version.starts_with("3.3."), "{version}");
    assert_ne!(uid, 0);
}

/// A Java web server (`com.sun.net.httpserver`) on 127.0.0.1:$PORT answering
/// `java.version UID`.
const JAVA_SERVER: &str = r#"import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;

public class App {
    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(System.getenv("PORT"));
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 0);
        server.createContext("/", exchange -> {
            Process id = new ProcessBuilder("id", "-u").start();
            String uid = new String(id.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
            byte[] body = (System.getProperty("java.version") + " " + uid + "\n").getBytes(StandardCharsets.UTF_8);
            exchange.sendResponseHeaders(200, body.length);
            exchange.getResponseBody().write(body);
            exchange.close();
        });
        server.start();
    }
}
"#;

#[test]
fn a_java_app_compiled_with_javac_and_packaged_by_maven_reports_its_java_version_as_non_root() {
    cached_stack("java:21");
    let server = Server::start();
    let app = app_of(
        &server,
        "java-app",
        &[
            (
                ".platform.app.yaml",
                "name: app\ntype: java:21\nhooks:\n  build: |\n    set -e\n    javac -version\n    javac -d classes App.java\n    mvn -B -q -DskipTests package\n    ls target/*.jar\nweb:\n  commands:\n    start: java -cp classes App\n",
            ),
            ("App.java", JAVA_SERVER),
            ("pom.xml", POM),
            ("src/main/java/App.java", JAVA_SERVER),
        ],
    );
    let out = server.push_ok(&app, "javaapp");
    assert!(out.contains("app | javac 21."), "{out}");
    // Maven in the build hook packages offline too (Debian's repository first).
    assert!(out.contains("app | target/app-1.0.jar"), "{out}");
    let (version, uid) = answer(&server, "javaapp");
    assert!(version.starts_with("21."), "{version}");
    assert_ne!(uid, 0);
}

/// Java 11, which only Debian 11 (bullseye) has (Jenkins', Keycloak's and Spring Kotlin's
/// templates ask for it): built on demand, compiled with its javac, with its Maven, and the
/// push warns that bullseye gets no security updates any more.
#[test]
fn a_java_11_app_runs_on_bullseyes_jdk_with_a_warning_that_it_gets_no_security_updates() {
    cached_stack("java:11");
    let server = Server::start();
    let app = app_of(
        &server,
        "java11-app",
        &[
            (
                ".platform.app.yaml",
                "name: app\ntype: java:11\nhooks:\n  build: |\n    set -e\n    javac -version\n    mvn -B -v | head -n 1\n    javac -d classes App.java\nweb:\n  commands:\n    start: java -cp classes App\n",
            ),
            ("App.java", JAVA_SERVER),
        ],
    );
    let warning = "java:11 comes from Debian 11 (bullseye), which no longer receives security updates; move to a newer version (java:17, java:21, java:25)";
    let out = push_warned(&server, &app, "java11", warning);
    assert!(out.contains("app | javac 11."), "{out}");
    // (Bullseye's Maven 3.6 colours its banner even in batch mode.)
    assert!(out.contains("Apache Maven 3.6."), "{out}");
    let (version, uid) = answer(&server, "java11");
    assert!(version.starts_with("11."), "{version}");
    assert_ne!(uid, 0);
}

#[test]
fn a_php_procfile_app_is_detected_from_composer_json_and_runs_the_builtin_server() {
    cached_stack("php:8.4");
    let server = Server::start();
    let app = app_of(
        &server,
        "php-procfile",
        &[
            (
                "composer.json",
                "{\"name\": \"slipway/hello\", \"require\": {\"php\": \"^8.4\"}}\n",
            ),
            (
                "public/index.php",
                "<?php\n$body = PHP_VERSION . ' ' . trim(shell_exec('id -u')) . \"\\n\";\nheader('Content-Length: ' . strlen($body));\necho $body;\n",
            ),
            ("Procfile", "web: php -S 127.0.0.1:$PORT -t public\n"),
        ],
    );
    let check = slipway_e2e::config_check_ok(&app.dir);
    assert!(
        check.contains(
            "app: stack php:8.4 (detected from composer.json, ^8.4 asked by composer.json)"
        ),
        "{check}"
    );
    let out = server.push_ok(&app, "phphello");
    assert!(
        out.contains("app | Generating optimized autoload files"),
        "{out}"
    );
    let (version, uid) = answer(&server, "phphello");
    assert!(version.starts_with("8.4."), "{version}");
    assert_ne!(uid, 0);
}

/// A pom.xml without dependencies: Maven's plugins come from the stack's Debian repository.
const POM: &str = r#"<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>example</groupId>
  <artifactId>app</artifactId>
  <version>1.0</version>
  <packaging>jar</packaging>
  <properties>
    <maven.compiler.release>21</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
  </properties>
</project>
"#;

#[test]
fn a_java_procfile_app_is_detected_from_pom_xml_and_packaged_by_maven_offline() {
    cached_stack("java:21");
    let server = Server::start();
    let app = app_of(
        &server,
        "java-procfile",
        &[
            ("pom.xml", POM),
            ("system.properties", "java.runtime.version=21\n"),
            ("src/main/java/App.java", JAVA_SERVER),
            ("Procfile", "web: java -cp target/app-1.0.jar App\n"),
        ],
    );
    let check = slipway_e2e::config_check_ok(&app.dir);
    assert!(
        check.contains("app: stack java:21 (detected from pom.xml, 21 asked by system.properties)"),
        "{check}"
    );
    server.push_ok(&app, "javahello");
    let (version, uid) = answer(&server, "javahello");
    assert!(version.starts_with("21."), "{version}");
    assert_ne!(uid, 0);
}

// ---------------------------------------------------------------------------------------
// The nodejs and python stacks as templates use them (issue 13): yarn 1.x and corepack on
// nodejs:22 with yarn's cache in the build cache; pip's cache in the build cache, never in
// the slug; python:3.11 (bookworm) and python:3.13 (trixie) side by side in one project.

/// The slug a push built for `app`: its unpacked folder in the server's data dir.
fn slug_of(server: &Server, out: &str, app: &str) -> std::path::PathBuf {
    let hex = out
        .lines()
        .find(|l| l.contains(&format!("build {app}: built sha256:")))
        .and_then(|l| l.split("built sha256:").nth(1))
        .and_then(|s| s.get(..64))
        .unwrap_or_else(|| panic!("no slug built for {app} in\n{out}"));
    let slug = server.data.join("slugs").join(hex);
    assert!(slug.is_dir(), "{}", slug.display());
    slug
}

/// Whether the folder `dir` exists and holds something.
fn non_empty(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// A yarn.lock app: `marked` from the npm registry, installed by the stack's own yarn (no
/// `dependencies.nodejs`); the build shows yarn's cache folder, corepack's version and,
/// through `corepack yarn`, the yarn corepack fetched, which then starts the app with no
/// network (`corepack yarn start`, as the nuxtjs template's commands run).
const YARN_APP: &str = r#"name: app
type: 'nodejs:22'
build:
    flavor: none
web:
    commands:
        start: corepack yarn start
hooks:
    build: |
        set -e
        echo "yarn $(yarn --version) at $(command -v yarn), corepack $(corepack --version)"
        yarn install --frozen-lockfile $YARN_FLAGS
        yarn build
        [ -e /app/.cache/yarn ] || echo "yarn cache: $(yarn cache dir), none in /app"
        echo "corepack yarn $(corepack yarn --version)"
"#;

const YARN_PACKAGE: &str = r#"{
  "name": "yarn-shape",
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

const YARN_LOCK: &str = r#"# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.
# yarn lockfile v1


marked@^12.0.0:
  version "12.0.2"
  resolved "https://registry.yarnpkg.com/marked/-/marked-12.0.2.tgz#b31578fe608b599944c69807b00f18edab84647e"
  integrity sha512-qXUm7e/YKFoqFPYPa3Ukg9xlI5cyAtGmyEIzMfW//m6kXwCy2Ps9DYf5ioijFKQ8qyuscrHoY04iJGctu2Kg0Q==
"#;

const YARN_BUILD: &str = r#"const fs = require("fs");
const { marked } = require("marked");
fs.writeFileSync("page.html", marked.parse(fs.readFileSync("README.md", "utf8")));
console.log("rendered page.html");
"#;

/// Answers `VERSION UID PAGE` (node's version, `id -u`, the page the build rendered).
const YARN_SERVER: &str = r#"const fs = require("fs");
const http = require("http");
const { execSync } = require("child_process");
const page = fs.readFileSync("page.html", "utf8").trim();
const uid = execSync("id -u").toString().trim();
http.createServer((req, res) => {
  const body = `${process.version} ${uid} ${page}\n`;
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}).listen(Number(process.env.PORT), "127.0.0.1");
"#;

#[test]
fn a_yarn_lock_app_builds_with_the_stacks_yarn_and_its_second_push_uses_the_yarn_cache() {
    cached_stack("nodejs:22");
    let server = Server::start();
    let app = app_of(
        &server,
        "yarn-app",
        &[
            (".platform.app.yaml", YARN_APP),
            ("package.json", YARN_PACKAGE),
            ("yarn.lock", YARN_LOCK),
            ("build.js", YARN_BUILD),
            ("server.js", YARN_SERVER),
            ("README.md", "# Hello from yarn\n"),
        ],
    );
    let out = server.push_ok(&app, "yarnapp");
    // yarn 1.x and corepack come with the stack, from the npm registry.
    assert!(
        out.contains("app | yarn 1.22.22 at /usr/local/bin/yarn, corepack 0.34.6"),
        "{out}"
    );
    assert!(out.contains("app | rendered page.html"), "{out}");
    assert!(out.contains("app | corepack yarn 1.22.22"), "{out}");
    // yarn's cache is in the app's build cache on the host, not in the slug.
    assert!(
        out.contains("app | yarn cache: /cache/yarn/v6, none in /app"),
        "{out}"
    );
    assert!(non_empty(
        &server
            .build_cache("yarnapp", "main", "app")
            .path
            .join("yarn")
    ));
    let slug = slug_of(&server, &out, "app");
    assert!(slug.join("node_modules/marked/package.json").is_file());
    assert!(!slug.join(".cache/yarn").exists());
    assert!(
        slug.join(".cache/node/corepack").is_dir(),
        "corepack's yarn"
    );
    let (_, body) = server.get("main.yarnapp.localhost", "/").expect("answers");
    assert!(body.contains("<h1>Hello from yarn</h1>"), "{body}");
    let (version, uid) = answer(&server, "yarnapp");
    assert!(version.starts_with("v22."), "{version}");
    assert_ne!(uid, 0);

    // The second push installs from yarn's cache alone (`--offline` fails on a miss).
    app.write(
        ".platform.app.yaml",
        &YARN_APP.replace(
            "build:\n    flavor: none\n",
            "build:\n    flavor: none\nvariables:\n    env:\n        YARN_FLAGS: --offline\n",
        ),
    );
    app.write("README.md", "# Hello again\n");
    app.commit("offline");
    let out = server.push_ok(&app, "yarnapp");
    assert!(out.contains("app | rendered page.html"), "{out}");
    let (_, body) = server.get("main.yarnapp.localhost", "/").expect("answers");
    assert!(body.contains("<h1>Hello again</h1>"), "{body}");
}

#[test]
fn a_yarn_procfile_app_is_installed_by_yarn_from_its_lock_file() {
    cached_stack("nodejs:22");
    let server = Server::start();
    let package = YARN_PACKAGE.replace(
        "  \"dependencies\"",
        "  \"engines\": { \"node\": \"22.x\" },\n  \"dependencies\"",
    );
    let app = app_of(
        &server,
        "yarn-procfile",
        &[
            ("package.json", &package),
            ("yarn.lock", YARN_LOCK),
            ("build.js", YARN_BUILD),
            ("server.js", YARN_SERVER),
            ("README.md", "# Hello from a Procfile\n"),
            ("Procfile", "web: node server.js\n"),
        ],
    );
    let check = slipway_e2e::config_check_ok(&app.dir);
    assert!(check.contains("app: stack nodejs:22"), "{check}");
    let out = server.push_ok(&app, "yarnproc");
    assert!(out.contains("app | yarn install v1.22.22"), "{out}");
    assert!(!out.contains("app | added "), "npm installed: {out}");
    assert!(out.contains("app | rendered page.html"), "{out}");
    let (_, body) = server.get("main.yarnproc.localhost", "/").expect("answers");
    assert!(body.contains("<h1>Hello from a Procfile</h1>"), "{body}");
}

const PYTHONS_APPLICATIONS: &str = "- !include py311.app.yaml\n- !include py313.app.yaml\n";

/// One app of the python project: `pip install -r requirements.txt` in the build hook, as
/// the python templates do, and where pip's cache went.
const PYTHON_APP: &str = r#"name: NAME
type: 'python:VERSION'
source:
    root: NAME
web:
    commands:
        start: python3 server.py
hooks:
    build: |
        set -e
        pip install --disable-pip-version-check -r requirements.txt
        [ -e /app/.cache ] || echo "pip cache: $(pip cache dir), none in /app"
"#;

const PYTHONS_ROUTES: &str = r#""https://{default}/":
    type: upstream
    upstream: "py311:http"
"https://new.{default}/":
    type: upstream
    upstream: "py313:http"
"#;

/// Answers `PYTHON_VERSION UID termcolor=VERSION`.
const PYTHON_SERVER: &str = slipway_e2e::py_app!(
    r#"import importlib.metadata, platform, termcolor
"#,
    r#"        version = importlib.metadata.version("termcolor")
        body = f"{platform.python_version()} {os.getuid()} termcolor={version}\n".encode()
"#
);

/// termcolor 1.1.0 is a source distribution only: pip builds its wheel and keeps it in its
/// cache (PyPI's mirror here sends no caching headers, so downloads are never cached).
const REQUIREMENTS: &str = "termcolor==1.1.0\n";

#[test]
fn python_3_11_and_3_13_side_by_side_with_pips_cache_outside_the_slug() {
    cached_stack("python:3.11");
    cached_stack("python:3.13");
    let server = Server::start();
    let py311 = PYTHON_APP
        .replace("NAME", "py311")
        .replace("VERSION", "3.11");
    let py313 = PYTHON_APP
        .replace("NAME", "py313")
        .replace("VERSION", "3.13");
    let app = app_of(
        &server,
        "pythons",
        &[
            (".platform/applications.yaml", PYTHONS_APPLICATIONS),
            (".platform/py311.app.yaml", &py311),
            (".platform/py313.app.yaml", &py313),
            (".platform/routes.yaml", PYTHONS_ROUTES),
            ("py311/requirements.txt", REQUIREMENTS),
            ("py311/server.py", PYTHON_SERVER),
            ("py313/requirements.txt", REQUIREMENTS),
            ("py313/server.py", PYTHON_SERVER),
        ],
    );
    let out = server.push_ok(&app, "pythons");
    for name in ["py311", "py313"] {
        for line in [
            format!("{name} |   Stored in directory: /cache/pip/wheels/"),
            format!("{name} | Successfully installed termcolor-1.1.0"),
            format!("{name} | pip cache: /cache/pip, none in /app"),
        ] {
            assert!(out.contains(&line), "{line} missing:\n{out}");
        }
        let slug = slug_of(&server, &out, name);
        assert!(!slug.join(".cache").exists(), "pip's cache is in the slug");
        assert!(
            slug.join(".local/lib").is_dir(),
            "termcolor is not in the slug"
        );
        let build_cache = server.build_cache("pythons", "main", name);
        let cache = build_cache.path.join("pip/wheels");
        assert!(non_empty(&cache), "{} is empty:\n{out}", cache.display());
    }
    // Each app runs on its own Python, from its own Debian release.
    let (old, uid) = answer(&server, "pythons");
    assert!(old.starts_with("3.11."), "{old}");
    assert_ne!(uid, 0);
    let (code, new) = server
        .get("new.main.pythons.localhost", "/")
        .expect("py313 answers");
    assert_eq!(code, 200, "{new}");
    assert!(
        new.starts_with("3.13.") && new.ends_with(" termcolor=1.1.0\n"),
        "{new}"
    );

    // A changed requirements file: the wheel built before comes from pip's cache.
    app.write("py311/requirements.txt", "termcolor==1.1.0\nsix==1.16.0\n");
    app.commit("six");
    let out = server.push_ok(&app, "pythons");
    assert!(
        out.contains("py311 |   Using cached termcolor-1.1.0-py3-none-any.whl"),
        "{out}"
    );
    assert!(!out.contains("Building wheel for termcolor"), "{out}");
    assert!(
        out.contains("Successfully installed six-1.16.0 termcolor-1.1.0"),
        "{out}"
    );
    let slug = slug_of(&server, &out, "py311");
    assert!(!slug.join(".cache").exists(), "pip's cache is in the slug");
    let (old, _) = answer(&server, "pythons");
    assert!(old.starts_with("3.11."), "{old}");
}

// ---------------------------------------------------------------------------------------
// A second language in two versions (issue 13): php:8.2 (bookworm) beside php:8.4
// (trixie) in one project, and a version the server lacks resolved by the spec's rule.

/// One app of the PHP project: PHP-FPM behind a front controller; its build hook shows
/// the CLI's version (`php -v`) in the push output.
const PHP_APP: &str = r#"name: NAME
type: 'php:VERSION'
source:
    root: NAME
web:
    locations:
        '/':
            root: web
            passthru: /index.php
hooks:
    build: |
        set -e
        php -v | head -n 1
"#;

/// Answers `PHP_VERSION UID` (the FPM's PHP, `id -u`).
const PHP_INDEX: &str = "<?php\necho PHP_VERSION . ' ' . trim(shell_exec('id -u')) . \"\\n\";\n";

const PHPS_APPLICATIONS: &str = "- !include php82.app.yaml\n- !include php83.app.yaml\n";

const PHPS_ROUTES: &str = r#""https://{default}/":
    type: upstream
    upstream: "php82:http"
"https://new.{default}/":
    type: upstream
    upstream: "php83:http"
"#;

/// The `PHP X.Y.Z` line the build hook of `app` printed (`app | PHP 8.2.29 (cli) ...`).
fn php_cli_version(out: &str, app: &str) -> String {
    out.lines()
        .find_map(|l| l.split(&format!("{app} | PHP ")).nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `php -v` of {app} in\n{out}"))
        .to_string()
}

#[test]
fn php_8_2_and_8_4_side_by_side_and_php_8_3_runs_on_8_4_with_a_warning() {
    cached_stack("php:8.2");
    cached_stack("php:8.4");
    let server = Server::start();
    let php82 = PHP_APP.replace("NAME", "php82").replace("VERSION", "8.2");
    // Debian has no PHP 8.3: the nearest newer 8.x the server has (8.4) runs it.
    let php83 = PHP_APP.replace("NAME", "php83").replace("VERSION", "8.3");
    let app = app_of(
        &server,
        "phps",
        &[
            (".platform/applications.yaml", PHPS_APPLICATIONS),
            (".platform/php82.app.yaml", &php82),
            (".platform/php83.app.yaml", &php83),
            (".platform/routes.yaml", PHPS_ROUTES),
            ("php82/web/index.php", PHP_INDEX),
            ("php83/web/index.php", PHP_INDEX),
        ],
    );
    let warning =
        "php:8.3 is not available on this server; using php:8.4, the nearest newer php 8.x";
    config_check_warns(&app, ".platform/php83.app.yaml", warning);
    let out = push_warned(&server, &app, "phps", warning);
    // Each app's build ran on its own PHP CLI, and its FPM answers with the same version.
    let cli82 = php_cli_version(&out, "php82");
    let cli84 = php_cli_version(&out, "php83");
    assert!(cli82.starts_with("8.2."), "{cli82}");
    assert!(cli84.starts_with("8.4."), "{cli84}");
    let (old, uid) = answer(&server, "phps");
    assert_eq!(old, cli82);
    assert_ne!(uid, 0);
    let (code, new) = server
        .get("new.main.phps.localhost", "/")
        .expect("php83 answers");
    assert_eq!(code, 200, "{new}");
    assert!(new.starts_with(&format!("{cli84} ")), "{new}");
    assert!(!new.starts_with("0 ") && !new.ends_with(" 0\n"), "{new}");

    // A major the server has no version of: refused by config check and the push alike,
    // naming the versions there are; the running apps keep serving.
    app.write(
        ".platform/php83.app.yaml",
        &PHP_APP.replace("NAME", "php83").replace("VERSION", "9.1"),
    );
    app.commit("php 9.1");
    let refusal = "php:9.1 is not available: no php 9.x at or above 9.1 (did you mean `php:8.4`?); available: 7.4, 8.2, 8.4";
    let check = slipway_e2e::config_check(&app.dir);
    let check_out = text(&check);
    assert_eq!(check.status.code(), Some(1), "{check_out}");
    assert!(
        check_out
            .lines()
            .any(|l| l.starts_with(".platform/php83.app.yaml:2:")
                && l.contains(": error: ")
                && l.contains(refusal)),
        "{check_out}"
    );
    let o = server.git(&app.dir, &["push", &server.remote("phps"), "main"]);
    let refused = text(&o);
    assert!(!o.status.success(), "{refused}");
    assert!(refused.contains("validate failed"), "{refused}");
    assert!(refused.contains(refusal), "{refused}");
    let (again, _) = answer(&server, "phps");
    assert_eq!(again, cli82);
}

/// PHP 7.4, which only Debian 11 (bullseye) has: built on demand (not in the shared test
/// stacks), served by the router through PHP-FPM like the other PHP apps, with a warning in
/// config check and the push that bullseye gets no security updates any more.
#[test]
fn a_php_7_4_app_runs_on_bullseyes_php_fpm_with_a_warning_that_it_gets_no_security_updates() {
    cached_stack("php:7.4");
    let server = Server::start();
    let php74 = PHP_APP.replace("NAME", "php74").replace("VERSION", "7.4");
    let app = app_of(
        &server,
        "php74",
        &[
            (".platform/applications.yaml", "- !include php74.app.yaml\n"),
            (".platform/php74.app.yaml", &php74),
            (
                ".platform/routes.yaml",
                "\"https://{default}/\":\n    type: upstream\n    upstream: \"php74:http\"\n",
            ),
            ("php74/web/index.php", PHP_INDEX),
        ],
    );
    let warning = "php:7.4 comes from Debian 11 (bullseye), which no longer receives security updates; move to a newer version (php:8.2, php:8.4)";
    config_check_warns(&app, ".platform/php74.app.yaml", warning);
    let out = push_warned(&server, &app, "php74", warning);
    // The build ran on PHP 7.4's CLI, and the router's PHP-FPM answers with the same PHP.
    let cli = php_cli_version(&out, "php74");
    assert!(cli.starts_with("7.4."), "{cli}");
    let (fpm, uid) = answer(&server, "php74");
    assert_eq!(fpm, cli);
    assert_ne!(uid, 0);
}

// ---------------------------------------------------------------------------------------
// An Upsun `stack:` list of two languages: one stack with both (built on demand here, into
// the shared folder, like the other stacks of one test).

/// A Python app whose build renders a page with Node.js: the stack list gives it both.
const PY_NODE_CONFIG: &str = r#"applications:
    app:
        type: 'composable:25.05'
        stack:
            - python@3.13
            - nodejs@22
        hooks:
            build: |
                set -e
                echo "build on $(python3 --version) and node $(node --version), npm $(npm --version)"
                node -e 'require("fs").writeFileSync("node.txt", process.version)'
        web:
            commands:
                start: python3 server.py
"#;

/// Answers `PYTHON_VERSION UID NODE_VERSION` (node's from the build and from a run now).
const PY_NODE_SERVER: &str = slipway_e2e::py_app!(
    r#"import platform
"#,
    r#"        built = open("node.txt").read().strip()
        now = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        body = f"{platform.python_version()} {os.getuid()} {built} {now}\n".encode()
"#
);

#[test]
fn an_upsun_stack_list_of_python_and_nodejs_gives_the_app_both() {
    let stacks = cached_stack("python:3.13+nodejs:22");
    let ls = slipway_e2e::run(
        std::process::Command::new(slipway_e2e::slipway_bin())
            .args(["stack", "ls", "--data-dir"])
            .arg(&stacks),
    );
    assert!(
        text(&ls).lines().any(|l| l
            .starts_with("python:3.13+nodejs:22\ttrixie + npm registry (node ")
            && l.contains("\tbuilt\t")),
        "{}",
        text(&ls)
    );
    let node = slipway_stack::resolve_type("nodejs:22")
        .unwrap()
        .stack
        .node_from_npm
        .expect("nodejs:22 is the npm registry's")
        .node
        .version;
    let server = Server::start();
    let app = app_of(
        &server,
        "pynode",
        &[
            (".upsun/config.yaml", PY_NODE_CONFIG),
            ("server.py", PY_NODE_SERVER),
        ],
    );
    let check = slipway_e2e::config_check_ok(&app.dir);
    assert!(!check.contains("ignored"), "{check}");
    let out = server.push_ok(&app, "pynode");
    assert!(
        out.contains("app | build on Python 3.13.")
            && out.contains(&format!(" and node v{node}, npm ")),
        "{out}"
    );
    let (code, body) = server
        .get("main.pynode.localhost", "/")
        .expect("the app answers");
    assert_eq!(code, 200, "{body}");
    let words: Vec<&str> = body.split_whitespace().collect();
    assert!(words[0].starts_with("3.13."), "{body}");
    assert_ne!(words[1], "0", "{body}");
    assert_eq!(
        words[2..],
        [format!("v{node}"), format!("v{node}")],
        "{body}"
    );
}

// Native addons (issue 13): the nodejs stacks carry a C/C++ toolchain, make and python3, and
// node-gyp compiles against the Node.js headers in the stack, as on Platform.sh's images.

/// An app whose dependency is a native addon from the npm registry: bcrypt 5, whose install
/// script (node-pre-gyp) tries a prebuilt binary from GitHub, which builds cannot reach, and
/// falls back to compiling it with node-gyp; `.npmrc` shows the install scripts' output.
const NATIVE_APP: &str = r#"name: app
type: 'nodejs:22'
web:
    commands:
        start: node server.js
hooks:
    build: |
        set -e
        echo "toolchain: $(command -v g++) $(command -v make) $(command -v python3) $(command -v node-gyp)"
"#;

const NATIVE_PACKAGE: &str = r#"{
  "name": "native-shape",
  "version": "1.0.0",
  "private": true,
  "dependencies": {
    "bcrypt": "5.1.1"
  }
}
"#;

/// Answers `MATCHES WRONG_MATCHES PREFIX` for a hash bcrypt made at start.
const NATIVE_SERVER: &str = r#"const bcrypt = require("bcrypt");
const http = require("http");
const hash = bcrypt.hashSync("correct horse", 4);
http.createServer((req, res) => {
  const body = `${bcrypt.compareSync("correct horse", hash)} ${bcrypt.compareSync("wrong", hash)} ${hash.slice(0, 4)}\n`;
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}).listen(Number(process.env.PORT), "127.0.0.1");
"#;

#[test]
fn a_native_addon_from_npm_compiles_with_node_gyp_against_the_stacks_headers_and_runs() {
    cached_stack("nodejs:22");
    let server = Server::start();
    let app = app_of(
        &server,
        "native-app",
        &[
            (".platform.app.yaml", NATIVE_APP),
            ("package.json", NATIVE_PACKAGE),
            (".npmrc", "foreground-scripts=true\n"),
            ("server.js", NATIVE_SERVER),
        ],
    );
    let out = server.push_ok(&app, "native");
    assert!(
        out.contains(
            "app | toolchain: /usr/bin/g++ /usr/bin/make /usr/bin/python3 /usr/local/bin/node-gyp"
        ),
        "{out}"
    );
    // The prebuilt binary's download failed (GitHub is not a registry builds reach) and
    // node-gyp compiled the addon against the stack's headers, downloading none.
    assert!(out.contains("falling back to source compile"), "{out}");
    assert!(out.contains("gyp info ok"), "{out}");
    let slug = slug_of(&server, &out, "app");
    assert!(slug
        .join("node_modules/bcrypt/lib/binding/napi-v3/bcrypt_lib.node")
        .is_file());
    assert!(!slug.join(".cache/node-gyp").exists(), "headers downloaded");
    let (_, body) = server.get("main.native.localhost", "/").expect("answers");
    assert_eq!(body.trim(), "true false $2b$", "{body}");

    // yarn 1.x as the strapi templates install (`build.flavor: none`): node-pre-gyp under
    // yarn runs `node-gyp` from PATH, which gets the same headers.
    app.write(
        ".platform.app.yaml",
        &NATIVE_APP
            .replace(
                "type: 'nodejs:22'\n",
                "type: 'nodejs:22'\nbuild:\n    flavor: none\n",
            )
            .replace(
                "        set -e\n",
                "        set -e\n        yarn install\n        ls yarn.lock\n",
            ),
    );
    app.commit("yarn");
    let out = server.push_ok(&app, "native");
    assert!(out.contains("app | yarn.lock"), "{out}");
    let slug = slug_of(&server, &out, "app");
    assert!(slug
        .join("node_modules/bcrypt/lib/binding/napi-v3/bcrypt_lib.node")
        .is_file());
    assert!(!slug.join(".cache/node-gyp").exists(), "headers downloaded");
    let (_, body) = server.get("main.native.localhost", "/").expect("answers");
    assert_eq!(body.trim(), "true false $2b$", "{body}");
}

// Image resizing with sharp (issue 13), as the strapi, directus and gatsby templates need:
// sharp 0.33 and later install prebuilt libvips from the npm registry
// (`@img/sharp-libvips-linux-x64`), which builds reach.

/// An app whose dependency is sharp 0.33.
const SHARP_PACKAGE: &str = r#"{
  "name": "sharp-shape",
  "version": "1.0.0",
  "private": true,
  "dependencies": {
    "sharp": "0.33.5"
  }
}
"#;

/// Makes a 64x48 PNG and resizes it to 16 pixels wide at each request; answers
/// `FORMAT WIDTHxHEIGHT LIBVIPS_VERSION`.
const SHARP_SERVER: &str = r#"const http = require("http");
const sharp = require("sharp");
http.createServer(async (req, res) => {
  const png = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 51, g: 102, b: 255 } } }).png().toBuffer();
  const { info } = await sharp(png).resize(16).toBuffer({ resolveWithObject: true });
  const body = `${info.format} ${info.width}x${info.height} ${sharp.versions.vips}\n`;
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}).listen(Number(process.env.PORT), "127.0.0.1");
"#;

#[test]
fn a_sharp_app_installs_prebuilt_libvips_from_the_npm_registry_and_resizes_an_image() {
    cached_stack("nodejs:22");
    let server = Server::start();
    let app = app_of(
        &server,
        "sharp-app",
        &[
            (
                ".platform.app.yaml",
                "name: app\ntype: 'nodejs:22'\nweb:\n    commands:\n        start: node server.js\n",
            ),
            ("package.json", SHARP_PACKAGE),
            ("server.js", SHARP_SERVER),
        ],
    );
    let out = server.push_ok(&app, "sharp");
    let slug = slug_of(&server, &out, "app");
    assert!(slug
        .join("node_modules/@img/sharp-libvips-linux-x64/package.json")
        .is_file());
    let (code, body) = server.get("main.sharp.localhost", "/").expect("answers");
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("png 16x12 8."), "{body}");
}
