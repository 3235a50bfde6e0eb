//! Apps in the languages of the stack catalog beyond python and nodejs, pushed as a user
//! would and served by a real `slipway serve`: Go, Ruby and Java apps with a
//! `.platform.app.yaml` in the shape of the Platform.sh templates, and Procfile apps
//! (Heroku style) whose language is detected from go.mod, Gemfile, pom.xml or
//! composer.json. Only PyPI, npm, crates.io and Debian answer here, so every app uses its
//! language's standard library only; each answers with the version of the interpreter or
//! compiler it runs on (the one its `type` or its tree asked for) and `id -u` (never 0).

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

/// Push `app` as project `project`; asserts the push succeeded and returns its output.
fn push(server: &Server, app: &App, project: &str) -> String {
    let o = server.git(&app.dir, &["push", &server.remote(project), "main"]);
    let out = text(&o);
    assert!(o.status.success(), "push: {out}\n{}", server.server_log());
    out
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
    let out = push(&server, &app, "goapp");
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
    let cache = server.data.join("cache/goapp/main/app/go-build");
    assert!(
        std::fs::read_dir(&cache).is_ok_and(|mut d| d.next().is_some()),
        "{}",
        cache.display()
    );

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
    let check = config_check(&app);
    assert!(
        check.contains("app: stack golang:1.24 (detected from go.mod, 1.24 asked by go.mod)"),
        "{check}"
    );
    let started = std::time::Instant::now();
    push(&server, &app, "gohello");
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
/// `RUBY_VERSION UID`.
const RUBY_SERVER: &str = r##"require "socket"

server = TCPServer.new("127.0.0.1", Integer(ENV.fetch("PORT")))
loop do
  client = server.accept
  while (line = client.gets) && line != "\r\n"
  end
  body = "#{RUBY_VERSION} #{`id -u`.strip}\n"
  client.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}")
  client.close
end
"##;

/// A Gemfile without gems: `bundle install` needs no gem server.
const EMPTY_GEMFILE: &str = "source \"https://rubygems.org\"\n";

#[test]
fn a_ruby_app_installs_its_bundle_offline_and_reports_its_ruby_version_as_non_root() {
    cached_stack("ruby:3.3");
    let server = Server::start();
    let app = app_of(
        &server,
        "ruby-app",
        &[
            (
                ".platform.app.yaml",
                "name: app\ntype: ruby:3.3\nhooks:\n  build: |\n    set -e\n    ruby --version\n    bundle install\nweb:\n  commands:\n    start: ruby app.rb\n",
            ),
            ("Gemfile", EMPTY_GEMFILE),
            ("app.rb", RUBY_SERVER),
        ],
    );
    let out = push(&server, &app, "rubyapp");
    assert!(out.contains("app | ruby 3.3."), "{out}");
    assert!(out.contains("app | Bundle complete!"), "{out}");
    let (version, uid) = answer(&server, "rubyapp");
    assert!(version.starts_with("3.3."), "{version}");
    assert_ne!(uid, 0);
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
    let check = config_check(&app);
    assert!(
        check.contains("app: stack ruby:3.3 (detected from Gemfile, 3.3 asked by .ruby-version)"),
        "{check}"
    );
    let out = push(&server, &app, "rubyhello");
    assert!(out.contains("app | Bundle complete!"), "{out}");
    let (version, uid) = answer(&server, "rubyhello");
    assert!(version.starts_with("3.3."), "{version}");
    assert_ne!(uid, 0);
}

/// `slipway config check` of the app's tree; asserts it passed and returns its output.
fn config_check(app: &App) -> String {
    let check = slipway_e2e::run(
        std::process::Command::new(slipway_e2e::slipway_bin())
            .args(["config", "check"])
            .arg(&app.dir),
    );
    assert!(check.status.success(), "{}", text(&check));
    text(&check)
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
    let out = push(&server, &app, "javaapp");
    assert!(out.contains("app | javac 21."), "{out}");
    // Maven in the build hook packages offline too (Debian's repository first).
    assert!(out.contains("app | target/app-1.0.jar"), "{out}");
    let (version, uid) = answer(&server, "javaapp");
    assert!(version.starts_with("21."), "{version}");
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
    let check = config_check(&app);
    assert!(
        check.contains(
            "app: stack php:8.4 (detected from composer.json, ^8.4 asked by composer.json)"
        ),
        "{check}"
    );
    let out = push(&server, &app, "phphello");
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
    let check = config_check(&app);
    assert!(
        check.contains("app: stack java:21 (detected from pom.xml, 21 asked by system.properties)"),
        "{check}"
    );
    push(&server, &app, "javahello");
    let (version, uid) = answer(&server, "javahello");
    assert!(version.starts_with("21."), "{version}");
    assert_ne!(uid, 0);
}
