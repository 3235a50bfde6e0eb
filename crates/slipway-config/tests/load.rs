//! Loading real files from temporary working trees: each format, the error rules, and the API shapes.

use slipway_config::{
    detect, load, ConfigSource, DirSource, Format, RouteKind, Severity, Topology,
};
use std::path::Path;

fn tree(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

fn errors_of(dir: &Path) -> Vec<String> {
    match load(&DirSource::new(dir)) {
        Ok(l) => panic!("expected errors, got {:?}", l.topology),
        Err(d) => {
            d.0.iter()
                .filter(|d| d.severity == Severity::Error)
                .map(|d| d.to_string())
                .collect()
        }
    }
}

#[test]
fn platform_app_at_root_with_services_and_routes() {
    let d = tree(&[
        (
            ".platform.app.yaml",
            b"name: app\ntype: 'python:3.13'\nsource:\n  root: src\nbuild:\n  flavor: none\n  caches:\n    npm: {directory: ./node_modules/, watch: [package.json, ./locks//npm.lock], allow_stale: true}\n    shared: {directory: .cache/pip, share_between_apps: true}\ndependencies:\n  python3: {poetry: '*'}\nhooks:\n  build: |\n    pip install -r requirements.txt\n  deploy: ./migrate\n  post_deploy: echo done\nweb:\n  commands: {start: 'gunicorn -b 127.0.0.1:$PORT app:app'}\n  locations:\n    /static: {root: static, allow: true}\nvariables:\n  env: {DEBUG: false, WORKERS: 4, RATIO: 1.5, NAME: demo, EMPTY: ~}\n  php: {memory_limit: 256M}\nmounts:\n  uploads: {source: local, source_path: uploads}\ndisk: 512\nrelationships:\n  database: 'db:postgresql'\n  cache:\n  search: {service: es, endpoint: memcached}\nworkers:\n  queue: {commands: {start: ./worker}}\ncrons:\n  nightly: {spec: '0 3 * * *', commands: {start: ./nightly}}\n",
        ),
        ("src/app.py", b"print(1)\n"),
        (".platform/services.yaml", b"db:\n  type: postgresql:16\n  disk: 1024\n  configuration: {extensions: [pg_trgm]}\ncache:\n  type: redis:7.0\nes:\n  type: memcached:1.6\n"),
        (".platform/routes.yaml", b"'https://{default}/':\n  type: upstream\n  upstream: 'app:http'\n  id: main\n'https://www.{default}/':\n  type: redirect\n  to: 'https://{default}/'\n"),
    ]);
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.format, Format::PlatformSh);
    // A service version the server lacks names the one used.
    let warnings: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    // A service's `disk` is enforced (its data is on a sized volume): no warning.
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains(".platform/services.yaml:2:9")
            && warnings[0]
                .contains("postgresql:16 is not available on this server; using postgresql:17"),
        "{warnings:?}"
    );
    let t = &l.topology;
    let a = &t.applications[0];
    assert_eq!(a.name, "app");
    assert_eq!(a.r#type.as_deref(), Some("python:3.13"));
    assert_eq!(a.source_root, "src");
    assert_eq!(a.build_flavor.as_deref(), Some("none"));
    assert_eq!(
        a.dependencies["python3"],
        serde_json::json!({"poetry": "*"})
    );
    let npm = &a.build_caches["npm"];
    assert_eq!(npm.directory, "node_modules", "normalized");
    assert_eq!(npm.watch, vec!["package.json", "locks/npm.lock"]);
    assert!(npm.allow_stale && !npm.share_between_apps);
    let shared = &a.build_caches["shared"];
    assert_eq!(
        (shared.directory.as_str(), shared.watch.len()),
        (".cache/pip", 0)
    );
    assert!(!shared.allow_stale && shared.share_between_apps);
    assert_eq!(
        a.hooks.build.as_deref(),
        Some("pip install -r requirements.txt\n")
    );
    assert_eq!(a.hooks.deploy.as_deref(), Some("./migrate"));
    assert_eq!(a.hooks.post_deploy.as_deref(), Some("echo done"));
    assert_eq!(
        a.web.start.as_deref(),
        Some("gunicorn -b 127.0.0.1:$PORT app:app")
    );
    assert_eq!(
        a.web.locations["/static"],
        serde_json::json!({"root": "static", "allow": true})
    );
    assert_eq!(a.disk, Some(512));
    assert_eq!(a.mounts["uploads"]["source"], "local");
    assert_eq!(a.relationships["database"], "db:postgresql");
    assert_eq!(
        a.relationships["cache"], "cache:redis",
        "null relationship = same-name service, default endpoint"
    );
    assert_eq!(a.relationships["search"], "es:memcached");
    assert_eq!(a.workers["queue"]["commands"]["start"], "./worker");
    assert_eq!(a.crons["nightly"]["spec"], "0 3 * * *");
    assert_eq!(a.variables["php"]["memory_limit"], "256M");
    let env = a.env_vars();
    assert_eq!(env["DEBUG"], "false");
    assert_eq!(env["WORKERS"], "4");
    assert_eq!(env["RATIO"], "1.5");
    assert_eq!(env["NAME"], "demo");
    assert_eq!(env["EMPTY"], "");
    let db = t.service("db").unwrap();
    assert_eq!(
        (db.r#type.as_str(), db.version.as_str(), db.disk),
        ("postgresql", "16", Some(1024))
    );
    assert_eq!(db.configuration["extensions"][0], "pg_trgm");
    assert_eq!(t.services.len(), 3);
    assert_eq!(t.routes.len(), 2);
    assert_eq!(
        t.routes[0].kind,
        RouteKind::Upstream {
            app: "app".into(),
            endpoint: "http".into()
        }
    );
    assert!(t.routes[0].primary && !t.routes[1].primary);
    assert_eq!(t.routes[0].id.as_deref(), Some("main"));
    assert_eq!(
        t.routes[1].kind,
        RouteKind::Redirect {
            to: "https://{default}/".into(),
            code: 301
        }
    );
    // The topology round-trips through JSON (stored in SQLite, printed by `config check --json`).
    let json = serde_json::to_string(t).unwrap();
    let back: Topology = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, t);
}

/// A service type Platform.sh offers but no stack of this server provides (spec section 9)
/// is refused at its `type`, naming the types the server runs, and so is the push (the
/// same `load`); a relationship to it is not what is blamed.
#[test]
fn a_service_type_the_server_cannot_run_is_refused_naming_those_it_can() {
    for kind in [
        "elasticsearch:8.5",
        "opensearch:2",
        "mongodb:3.6",
        "kafka:2.5",
        "solr:8.6",
    ] {
        let service = kind.split(':').next().unwrap();
        let app = format!("name: app\ntype: python:3.13\nweb:\n  commands: {{start: 'python3 -m http.server $PORT'}}\nrelationships:\n  database: 'db:postgresql'\n  search: 'search:{service}'\n");
        let services = format!(
            "db:\n  type: postgresql:15\n  disk: 256\nsearch:\n  type: {kind}\n  disk: 256\n"
        );
        let d = tree(&[
            (".platform.app.yaml", app.as_bytes()),
            (".platform/services.yaml", services.as_bytes()),
            (
                ".platform/routes.yaml",
                b"'https://{default}/':\n  type: upstream\n  upstream: 'app:http'\n",
            ),
        ]);
        let errors = errors_of(d.path());
        assert_eq!(errors.len(), 1, "{kind}: {errors:?}");
        assert!(
            errors[0].starts_with(".platform/services.yaml:5:9: error:")
                && errors[0].contains(&format!("this server cannot run `{service}` services"))
                && errors[0].contains("it runs postgresql, mariadb, mysql")
                && errors[0].contains("network-storage"),
            "{kind}: {errors:?}"
        );
    }
}

#[test]
fn upsun_and_slipway_single_file_and_priority() {
    let upsun = b"applications:\n  front:\n    type: nodejs:20\n    source: {root: front}\n    web: {commands: {start: npm start}}\n  api:\n    type: python:3.12\n    source: {root: api}\n    relationships: {db: 'db:mysql'}\n    web: {commands: {start: python3 main.py}}\nservices:\n  db: {type: 'mariadb:10.6'}\nroutes:\n  'https://{default}/': {type: upstream, upstream: 'front:http'}\n  'https://api.{default}/': {type: upstream, upstream: 'api:http', primary: true}\n";
    let d = tree(&[
        (".upsun/config.yaml", upsun),
        ("front/package.json", b"{}"),
        ("api/main.py", b""),
        ("Procfile", b"web: x\n"),
    ]);
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.format, Format::Upsun);
    let t = &l.topology;
    assert_eq!(
        t.applications
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        ["front", "api"]
    );
    assert_eq!(t.applications[0].source_root, "front");
    assert_eq!(t.services[0].r#type, "mariadb");
    assert!(
        !t.routes[0].primary && t.routes[1].primary,
        "explicit primary wins"
    );

    // .slipway/config.yaml takes precedence over everything.
    let d2 = tree(&[
        (
            ".slipway/config.yaml",
            b"applications:\n  app:\n    type: ruby:3.3\n    web: {commands: {start: x}}\n",
        ),
        (".upsun/config.yaml", upsun),
    ]);
    let l = load(&DirSource::new(d2.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.format, Format::Slipway);
    assert_eq!(l.topology.applications.len(), 1);
    assert_eq!(
        l.topology.routes[0].url, "http://{default}/",
        "default route to the only app"
    );
    assert!(l.topology.routes[0].primary);
}

#[test]
fn procfile_alone() {
    let d = tree(&[
        ("Procfile", b"# comment\nweb: gunicorn app:app --bind 127.0.0.1:$PORT\nrelease: python manage.py migrate\nworker: celery -A app worker\n"),
        ("requirements.txt", b"gunicorn\n"),
        (".python-version", b"3.11\n"),
    ]);
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.format, Format::Procfile);
    let a = &l.topology.applications[0];
    assert_eq!(a.name, "app");
    // The stack and the install come from the tree, as on Heroku.
    assert_eq!(a.r#type.as_deref(), Some("python:3.11"));
    assert_eq!(a.build_flavor.as_deref(), Some("none"));
    assert!(a
        .hooks
        .build
        .as_deref()
        .is_some_and(|b| b.contains("pip install -r requirements.txt")));
    assert_eq!(a.source_root, "");
    assert_eq!(
        a.web.start.as_deref(),
        Some("gunicorn app:app --bind 127.0.0.1:$PORT")
    );
    assert_eq!(a.hooks.deploy.as_deref(), Some("python manage.py migrate"));
    assert_eq!(
        a.workers["worker"]["commands"]["start"],
        "celery -A app worker"
    );
    assert_eq!(l.topology.routes.len(), 1);

    let d = tree(&[
        ("Procfile", b"release: ./migrate\n"),
        ("go.mod", b"go 1.24\n"),
    ]);
    assert_eq!(errors_of(d.path()), ["Procfile:1:1: error: the Procfile has no `web:` line and no other process type; add `web: COMMAND` that listens on $PORT (at web)"]);

    // Workers only, as Heroku allows: accepted, with no web process.
    let d = tree(&[
        (
            "Procfile",
            b"worker: python3 worker.py
release: ./migrate
",
        ),
        ("requirements.txt", b"\n"),
    ]);
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    let a = &l.topology.applications[0];
    assert_eq!(a.web.start, None);
    assert_eq!(
        a.workers["worker"]["commands"]["start"],
        "python3 worker.py"
    );
    assert!(slipway_config::php::no_web_process(a));

    // No language file: refused, naming the files to add.
    let d = tree(&[("Procfile", b"web: ./serve\n")]);
    let errors = errors_of(d.path());
    assert!(
        errors[0].starts_with("Procfile:1:1: error: cannot tell the language of this Procfile app: add one of requirements.txt, Pipfile"),
        "{errors:?}"
    );
}

#[test]
fn nothing_to_load() {
    let d = tree(&[("README.md", b"hi")]);
    let e = detect(&DirSource::new(d.path())).unwrap_err();
    assert!(
        e.to_string().starts_with("error: no configuration found"),
        "{e}"
    );
    assert!(load(&DirSource::new(d.path())).is_err());
}

#[test]
fn broken_yaml_in_each_priority_format_is_positioned() {
    for path in [
        ".platform.app.yaml",
        ".upsun/config.yaml",
        ".slipway/config.yaml",
    ] {
        let d = tree(&[(
            path,
            b"applications:\n  app:\n    type: \"python:3.12\n    hooks: {}\n",
        )]);
        let errs = errors_of(d.path());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with(&format!("{path}:")), "{errs:?}");
        assert!(errs[0].contains("error: invalid YAML"), "{errs:?}");
        // file:line:col with line >= 3 (the unterminated quote starts on line 3)
        let line: usize = errs[0].split(':').nth(1).unwrap().parse().unwrap();
        assert!(line >= 3, "{errs:?}");
    }
}

#[test]
fn huge_and_non_utf8_files_are_refused() {
    let mut big = b"name: app\ntype: php:8.3\n#".to_vec();
    big.resize(slipway_config::MAX_FILE_SIZE + 10, b'x');
    let d = tree(&[(".platform.app.yaml", &big)]);
    let errs = errors_of(d.path());
    assert!(errs[0].contains("at most 1 MiB"), "{errs:?}");

    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: php:8.3\nvariables:\n  env:\n    X: caf\xe9\n",
    )]);
    assert_eq!(
        errors_of(d.path()),
        [".platform.app.yaml:5:11: error: the file is not valid UTF-8; save it as UTF-8"]
    );
}

#[test]
fn warnings_do_not_fail_and_errors_carry_warnings_too() {
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: php:8.4\nfirewall: {outbound: []}\naccess: {ssh: admin}\n",
    )]);
    let l = load(&DirSource::new(d.path())).unwrap();
    let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with(".platform.app.yaml:3:1: warning: `firewall`"),
        "{w:?}"
    );
    assert!(w[0].ends_with("(at firewall)"), "{w:?}");

    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: php:8.4\nfirewall: {}\ndisk: -1\n",
    )]);
    let all = load(&DirSource::new(d.path())).unwrap_err();
    assert!(all.has_errors());
    assert_eq!(all.0.len(), 2, "{all}");
    assert_eq!(all.0[0].severity, Severity::Warning);
    assert_eq!(all.to_string().lines().count(), 2);
}

#[test]
fn an_app_without_a_start_command_is_refused_unless_php() {
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: python:3.11\nweb:\n  commands:\n    start: ''\n",
    )]);
    assert_eq!(
        errors_of(d.path()),
        [".platform.app.yaml:5:12: error: app 'app' has no start command: set web.commands.start (or a `web:` line in the Procfile) (at web.commands.start)"]
    );
    let d = tree(&[(".platform.app.yaml", b"name: app\ntype: python:3.11\n")]);
    assert_eq!(
        errors_of(d.path()),
        [".platform.app.yaml:1:7: error: app 'app' has no start command: set web.commands.start (or a `web:` line in the Procfile) (at name)"]
    );
    // Upsun names an app by its key: the refusal is at that key, not at a `name` it lacks.
    let d = tree(&[(
        ".upsun/config.yaml",
        b"applications:\n  app:\n    type: python:3.11\nroutes:\n  'https://{default}/': {type: upstream, upstream: 'app:http'}\n",
    )]);
    assert_eq!(
        errors_of(d.path()),
        [".upsun/config.yaml:2:3: error: app 'app' has no start command: set web.commands.start (or a `web:` line in the Procfile) (at applications.app)"]
    );
    let d = tree(&[(".platform.app.yaml", b"name: app\ntype: php:8.4\n")]);
    assert!(load(&DirSource::new(d.path())).is_ok());
    // PHP-FPM is FastCGI on TCP: no warning for saying so.
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: php:8.4\nweb:\n  upstream: {socket_family: tcp, protocol: fastcgi}\n",
    )]);
    let l = load(&DirSource::new(d.path())).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

#[test]
fn a_static_site_that_passes_requests_through_to_no_process_is_warned_about() {
    let warnings = |app: &str| -> Vec<String> {
        let d = tree(&[(".platform.app.yaml", app.as_bytes())]);
        let l = load(&DirSource::new(d.path())).unwrap();
        l.warnings.iter().map(|w| w.to_string()).collect()
    };
    let site = |location: &str| {
        format!("name: site\ntype: nodejs:22\nweb:\n  locations:\n    '/':\n      root: public\n{location}")
    };
    // `passthru: true` on a location and on one of its rules, and no start command:
    // nothing answers what passes through.
    let w = warnings(&site(
        "      passthru: true\n      rules:\n        '\\.map$':\n          passthru: true\n        '\\.css$':\n          passthru: false\n",
    ));
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].starts_with(
            ".platform.app.yaml:1:7: warning: app `site` has no start command and is not PHP"
        ) && w[0].contains("those requests get 404")
            && w[0].ends_with(r#"(at web.locations."/".passthru)"#),
        "{w:?}"
    );
    assert!(
        w[1].ends_with(r#"(at web.locations."/".rules."\\.map$".passthru)"#),
        "{w:?}"
    );
    // A passthru path is a rewrite to that file on a static site (an SPA's `/index.html`),
    // `passthru: false` serves files only, and an app with a start command has a process.
    for quiet in [
        site("      passthru: /index.html\n"),
        site("      passthru: false\n"),
        format!(
            "{}  commands:\n    start: node server.js\n",
            site("      passthru: true\n")
        ),
    ] {
        let w = warnings(&quiet);
        assert!(w.is_empty(), "{quiet}: {w:?}");
    }
}

#[test]
fn socket_family_unix_is_acted_on_and_an_unknown_one_refused_at_its_position() {
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: python:3.11\nweb:\n  upstream:\n    socket_family: unix\n  commands:\n    start: gunicorn -b unix:$SOCKET app:app\n",
    )]);
    let l = load(&DirSource::new(d.path())).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(
        l.topology.applications[0].web.socket_family,
        slipway_config::SocketFamily::Unix
    );
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: python:3.11\nweb:\n  upstream: {socket_family: tcp}\n  commands: {start: x}\n",
    )]);
    let l = load(&DirSource::new(d.path())).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(
        l.topology.applications[0].web.socket_family,
        slipway_config::SocketFamily::Tcp
    );
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: python:3.11\nweb:\n  upstream:\n    socket_family: udp\n  commands: {start: x}\n",
    )]);
    assert_eq!(
        errors_of(d.path()),
        [".platform.app.yaml:5:20: error: unknown socket_family `udp`; use `tcp` (the app listens on $PORT) or `unix` (on the unix socket $SOCKET) (at web.upstream.socket_family)"]
    );
    // PHP-FPM stays Slipway's own pool on TCP whatever the family says.
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: php:8.4\nweb:\n  upstream: {socket_family: unix, protocol: fastcgi}\n",
    )]);
    let l = load(&DirSource::new(d.path())).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    assert_eq!(
        l.topology.applications[0].web.socket_family,
        slipway_config::SocketFamily::Tcp
    );
}

#[test]
fn an_unknown_php_extension_is_refused_at_its_position() {
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: php:8.4\nruntime:\n  extensions:\n    - redis\n    - blackfire\n    - nosuchext\n  sizing_hints: {request_memory: 20}\n",
    )]);
    let errs = errors_of(d.path());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with(".platform.app.yaml:7:7: error: unknown PHP extension `nosuchext`"),
        "{errs:?}"
    );
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: php:8.4\nruntime:\n  extensions: [redis]\n  disabled_extensions: [opcache]\n  sizing_hints: {request_memory: 20}\n  request_terminate_timeout: 300\n",
    )]);
    let l = load(&DirSource::new(d.path())).unwrap();
    let app = &l.topology.applications[0];
    assert_eq!(app.runtime.extensions, ["redis"]);
    assert_eq!(app.runtime.disabled_extensions, ["opcache"]);
    assert_eq!(app.runtime.request_memory_mb, 20);
    assert_eq!(app.runtime.request_terminate_timeout_s, Some(300));
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: php:8.4\nruntime:\n  request_terminate_timeout: 0\n",
    )]);
    let errs = errors_of(d.path());
    assert!(
        errs.iter().any(|e| e
            .starts_with(".platform.app.yaml:4:30: error: `request_terminate_timeout` must be")),
        "{errs:?}"
    );
}

#[test]
fn includes_are_read_relative_to_the_including_file() {
    let d = tree(&[
        ("api/.platform.app.yaml", b"name: api\ntype: php:8.3\nhooks:\n  deploy: !include\n    type: string\n    path: scripts/deploy.sh\n"),
        ("api/scripts/deploy.sh", b"#!/bin/sh\necho deploy\n"),
        (".platform/applications.yaml", b"- !include web.app.yaml\n"),
        (".platform/web.app.yaml", b"name: web\ntype: nodejs:20\nsource: {root: web}\nweb: {commands: {start: x}}\n"),
        ("web/index.js", b""),
        (".platform/routes.yaml", b"'https://{default}/': {type: upstream, upstream: 'web:http'}\n'https://api.{default}/': {type: upstream, upstream: 'api:http'}\n"),
        (".platform/services.yaml", b"cache:\n  type: redis:7.0\n  configuration:\n    conf_dir: !archive \"solr-conf\"\n"),
    ]);
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    let t = &l.topology;
    assert_eq!(
        t.application("api").unwrap().hooks.deploy.as_deref(),
        Some("#!/bin/sh\necho deploy\n")
    );
    assert_eq!(t.application("api").unwrap().source_root, "api");
    assert_eq!(t.application("web").unwrap().source_root, "web");
    assert_eq!(t.services[0].configuration["conf_dir"], "solr-conf");
}

/// A source that is not a disk: the loader only goes through the trait.
struct MemSource(Vec<(&'static str, &'static str)>);

impl ConfigSource for MemSource {
    fn read_file(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self
            .0
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, c)| c.as_bytes().to_vec()))
    }
    fn list_dir(&self, path: &str) -> std::io::Result<Vec<slipway_config::DirEntry>> {
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut out: Vec<slipway_config::DirEntry> = Vec::new();
        for (p, _) in &self.0 {
            if let Some(rest) = p.strip_prefix(&prefix) {
                let (name, is_dir) = match rest.split_once('/') {
                    Some((d, _)) => (d, true),
                    None => (rest, false),
                };
                if !out.iter().any(|e| e.name == name) {
                    out.push(slipway_config::DirEntry {
                        name: name.to_string(),
                        is_dir,
                    });
                }
            }
        }
        Ok(out)
    }
}

#[test]
fn loads_from_any_config_source() {
    let src = MemSource(vec![
        ("shop/.platform.app.yaml", "name: shop\ntype: php:8.3\n"),
        ("blog/.platform.app.yaml", "name: blog\ntype: php:8.3\n"),
        (".platform/routes.yaml", "'https://{default}/': {upstream: 'shop:http'}\n'https://blog.{default}/': {upstream: 'blog'}\n"),
    ]);
    let l = load(&src).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = l
        .topology
        .applications
        .iter()
        .map(|a| (a.name.as_str(), a.source_root.as_str()))
        .collect();
    assert_eq!(names, [("blog", "blog"), ("shop", "shop")]);
    assert_eq!(
        l.topology.routes[1].kind,
        RouteKind::Upstream {
            app: "blog".into(),
            endpoint: "http".into()
        }
    );
}

#[test]
fn dir_source_contract() {
    let d = tree(&[("a/b.txt", b"x")]);
    let s = DirSource::new(d.path());
    assert_eq!(s.read_file("a/b.txt").unwrap(), Some(b"x".to_vec()));
    assert_eq!(
        s.read_file("a").unwrap(),
        None,
        "a directory reads as missing"
    );
    assert_eq!(s.read_file("nope").unwrap(), None);
    assert_eq!(
        s.read_file("../etc/passwd").unwrap(),
        None,
        "no escaping the root"
    );
    let root = s.list_dir("").unwrap();
    assert_eq!(
        root,
        [slipway_config::DirEntry {
            name: "a".into(),
            is_dir: true
        }]
    );
    assert!(s.list_dir("missing").unwrap().is_empty());
    assert!(s.list_dir("a/b.txt").unwrap().is_empty());
}

/// `type:` names a stack: a missing minor gets the nearest newer of the same major with a
/// warning naming both; a missing major or an unknown language is an error at the value's
/// `FILE:LINE:COL` with the versions there are and a did-you-mean.
#[test]
fn app_types_resolve_to_stacks() {
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: 'python:3.12'\nweb: {commands: {start: x}}\n",
    )]);
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        [".platform.app.yaml:2:7: warning: python:3.12 is not available on this server; using python:3.13, the nearest newer python 3.x (at type)"]
    );

    let d = tree(&[(
        ".upsun/config.yaml",
        b"applications:\n  web:\n    type: php:5.6\n  api:\n    type: pyhton:3.11\n  ok:\n    type: nodejs:22\n    web: {commands: {start: x}}\n",
    )]);
    let e = load(&DirSource::new(d.path())).unwrap_err().to_string();
    assert!(
        e.contains(".upsun/config.yaml:3:11: error: php:5.6 is not available: no php 5.x at or above 5.6 (did you mean `php:7.4`?); available: 7.4, 8.2, 8.4 (at applications.web.type)"),
        "{e}"
    );
    assert!(
        e.contains(".upsun/config.yaml:5:11: error: unknown language `pyhton` (did you mean `python`?); languages: python, php, nodejs, ruby, golang, java, lisp, deno (at applications.api.type)"),
        "{e}"
    );
    assert!(!e.contains("applications.ok"), "nodejs:22 is provided: {e}");
}

/// An Upsun app's `stack:` entries that name no language are packages: demo-clamav's
/// `[clamav]` runs on the base stack with ClamAV's Debian packages, demo-js's `[deno]` on
/// the deno stack, a package beside a language on that language's stack with the package;
/// `nodePackages.npm` is the Node.js stack's npm. An entry in neither the languages nor the
/// packages is refused at its entry with a did-you-mean; a language without a version is
/// refused when nothing else gives the app a stack. Never accepted to fail mid-push.
#[test]
fn an_upsun_stack_of_packages_runs_on_the_base_stack_and_unknown_entries_are_refused() {
    let newest = slipway_stack::resolve::available(slipway_stack::Language::Nodejs)
        .rsplit(", ")
        .next()
        .unwrap()
        .to_string();
    for (list, want) in [
        ("[clamav]", "base:13+clamav".to_string()),
        ("[deno]", "deno:2".to_string()),
        ("[deno@2, imagemagick]", "deno:2+imagemagick".to_string()),
        ("[sbcl]", "lisp:2.5".to_string()),
        (
            "[clamav, nodePackages.npm]",
            format!("nodejs:{newest}+clamav"),
        ),
        ("[clamav, nodejs@22]", "nodejs:22+clamav".to_string()),
        ("[nodejs@22, nodePackages.npm]", "nodejs:22".to_string()),
    ] {
        let config = format!(
            "applications:\n  app:\n    stack: {list}\n    web: {{commands: {{start: x}}}}\n"
        );
        let d = tree(&[(".upsun/config.yaml", config.as_bytes())]);
        let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{list}: {e}"));
        assert_eq!(
            l.topology.application("app").unwrap().r#type.as_deref(),
            Some(want.as_str()),
            "{list}"
        );
        assert!(l.warnings.is_empty(), "{list}: {:?}", l.warnings);
    }
    for (list, col, start) in [
        (
            "[clamv]",
            13,
            "`clamv` is neither a language (LANGUAGE@VERSION with one of python, php, nodejs, ruby, golang, java, lisp, deno) nor a package Slipway installs (did you mean `clamav`?); packages: clamav, curl,",
        ),
        (
            "[nodejs@22, popler_utils]",
            24,
            "`popler_utils` is neither a language",
        ),
        (
            "[pyhton@3.13]",
            13,
            "unknown language `pyhton` (did you mean `python`?)",
        ),
        ("[nodejs]", 13, "`nodejs` names no version (e.g. `nodejs@"),
    ] {
        let config = format!(
            "applications:\n  app:\n    stack: {list}\n    web: {{commands: {{start: x}}}}\n"
        );
        let d = tree(&[(".upsun/config.yaml", config.as_bytes())]);
        let e = load(&DirSource::new(d.path())).unwrap_err();
        let errors: Vec<String> = e.errors().map(|d| d.to_string()).collect();
        assert_eq!(errors.len(), 1, "{list}: {e}");
        assert!(
            errors[0].starts_with(&format!(".upsun/config.yaml:3:{col}: error: {start}")),
            "{list}: {e}"
        );
        if list == "[nodejs]" {
            assert!(errors[0].contains("app app has no stack to run on"), "{e}");
        }
    }
}

/// Upsun's `stack:` list: its `LANGUAGE@VERSION` entries make the app's stack (each resolved
/// like `type:`, the first the app's language); Nix packages are the stack's packages;
/// languages that cannot share one stack are refused at the entry.
#[test]
fn upsun_stack_lists_name_the_stack() {
    let d = tree(&[(
        ".upsun/config.yaml",
        b"applications:\n  app:\n    type: composable:25.05\n    stack:\n      - php@8.3:\n          extensions: [redis]\n      - nodejs@22\n      - clamav\n  tool:\n    stack: [python@3.13]\n    web: {commands: {start: x}}\nroutes:\n  'http://{default}/': {type: upstream, upstream: 'app:http'}\n",
    )]);
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    let t = &l.topology;
    assert_eq!(
        t.application("app").unwrap().r#type.as_deref(),
        Some("php:8.3+nodejs:22+clamav")
    );
    assert_eq!(
        t.application("tool").unwrap().r#type.as_deref(),
        Some("python:3.13")
    );
    let w: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        w,
        [
            ".upsun/config.yaml:5:9: warning: php:8.3 is not available on this server; using php:8.4, the nearest newer php 8.x (at applications.app.stack.0)",
        ]
    );
    let d = tree(&[(
        ".upsun/config.yaml",
        b"applications:\n  app:\n    stack: ['ruby@1.9']\n",
    )]);
    let e = load(&DirSource::new(d.path())).unwrap_err().to_string();
    assert!(
        e.contains(".upsun/config.yaml:3:13: error: ruby:1.9 is not available"),
        "{e}"
    );
    // php 8.2 is bookworm's, python 3.13 trixie's: not one stack; a language twice neither.
    for (list, col, why) in [
        ("['php@8.2', 'python@3.13']", 24, "php:8.2 comes from Debian bookworm and python:3.13 from Debian trixie: the languages of one stack come from one Debian release"),
        ("['nodejs@22', 'nodejs@24']", 26, "nodejs is named twice: a stack has one version of a language"),
    ] {
        let config = format!("applications:\n  app:\n    stack: {list}\n");
        let d = tree(&[(".upsun/config.yaml", config.as_bytes())]);
        let e = load(&DirSource::new(d.path())).unwrap_err().to_string();
        assert!(
            e.contains(&format!(".upsun/config.yaml:3:{col}: error: {why} (at applications.app.stack.1)")),
            "{e}"
        );
    }
    // Node.js from the npm registry fits either release.
    let d = tree(&[(
        ".upsun/config.yaml",
        b"applications:\n  app:\n    stack: [python@3.13, nodejs@22]\n    web: {commands: {start: x}}\n",
    )]);
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        l.topology.application("app").unwrap().r#type.as_deref(),
        Some("python:3.13+nodejs:22")
    );
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}

/// A mount's `source_path` names a folder inside the mount's source: one that climbs out with
/// `..` or is absolute is refused where it is written (file:line:col of the value), before any
/// mount exists; a folder inside the source loads.
#[test]
fn mount_source_paths_that_leave_their_source_are_refused() {
    for (hostile, why) in [
        ("../../../../etc", "leaves the mount's source"),
        ("/root", "is absolute"),
        ("a/../../x", "leaves the mount's source"),
    ] {
        let app = format!(
            "name: app\ntype: 'python:3.12'\nmounts:\n  uploads:\n    source: local\n    source_path: '{hostile}'\nweb: {{commands: {{start: x}}}}\n"
        );
        let d = tree(&[(".platform.app.yaml", app.as_bytes())]);
        let errs = errors_of(d.path());
        assert_eq!(errs.len(), 1, "{hostile}: {errs:?}");
        assert!(
            errs[0].starts_with(".platform.app.yaml:6:18: error: mount source_path"),
            "{hostile}: {errs:?}"
        );
        assert!(errs[0].contains(hostile), "{errs:?}");
        assert!(errs[0].contains(why), "{errs:?}");
        assert!(errs[0].contains("mounts.uploads.source_path"), "{errs:?}");
    }
    for legit in ["uploads", "files/a/../b", "./data"] {
        let app = format!(
            "name: app\ntype: 'python:3.12'\nmounts:\n  uploads:\n    source: local\n    source_path: '{legit}'\nweb: {{commands: {{start: x}}}}\n"
        );
        let d = tree(&[(".platform.app.yaml", app.as_bytes())]);
        let loaded = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{legit}: {e}"));
        let app = &loaded.topology.applications[0];
        assert_eq!(app.mounts["uploads"]["source_path"], legit);
    }
}

#[test]
fn workers_without_start_and_crons_that_never_fire_are_refused_with_positions() {
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: 'python:3.13'\nweb:\n  commands: {start: ./serve}\nworkers:\n  queue:\n    size: S\n  mail:\n    commands: {start: ./mail}\ncrons:\n  never:\n    spec: '0 0 31 2 *'\n    commands: {start: ./x}\n  nocommand:\n    spec: '@daily'\n  legacy:\n    spec: '*/5 * * * *'\n    cmd: ./legacy\n",
    )]);
    let errors = errors_of(d.path());
    assert!(
        errors.iter().any(|e| e.contains(".platform.app.yaml:6:3")
            && e.contains("worker `queue` has no start command")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains(".platform.app.yaml:12:11") && e.contains("never fires")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains(":14:3") && e.contains("cron `nocommand` has no command")),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 3, "{errors:?}");

    let ok = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: 'python:3.13'\nweb:\n  commands: {start: ./serve}\nworkers:\n  mail:\n    size: S\n    commands: {start: ./mail}\ncrons:\n  legacy:\n    spec: '*/5 * * * *'\n    cmd: ./legacy\n    timeout: 30\n",
    )]);
    let loaded = load(&DirSource::new(ok.path())).expect("loads");
    let app = &loaded.topology.applications[0];
    let workers = slipway_config::background::workers(app).unwrap();
    assert_eq!(workers[0].start, "./mail");
    assert_eq!(workers[0].size, slipway_config::ContainerSize::parse("S"));
    let crons = slipway_config::background::crons(app).unwrap();
    assert_eq!(
        (crons[0].start.as_str(), crons[0].timeout),
        ("./legacy", 30)
    );
}

#[test]
fn worker_names_must_be_well_formed_and_unique_among_apps_and_workers() {
    let d = tree(&[(
        ".platform/applications.yaml",
        b"- name: app\n  type: 'python:3.13'\n  web:\n    commands: {start: ./serve}\n  workers:\n    Bad.Name: {commands: {start: ./w}}\n    other: {commands: {start: ./w}}\n    queue: {commands: {start: ./w}}\n- name: other\n  type: 'python:3.13'\n  web:\n    commands: {start: ./serve}\n  workers:\n    queue: {commands: {start: ./w}}\n",
    )]);
    let errors = errors_of(d.path());
    assert!(
        errors
            .iter()
            .any(|e| e.contains("worker name `Bad.Name` must be")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e
                .contains("worker name `other` of app `app` is already the name of app `other`")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains(
            "worker name `queue` of app `other` is already the name of a worker of app `app`"
        )),
        "{errors:?}"
    );
}

#[test]
fn an_unknown_time_zone_is_refused_with_its_position() {
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: 'python:3.13'\nweb:\n  commands: {start: ./serve}\ntimezone: Mars/Olympus\n",
    )]);
    let errors = errors_of(d.path());
    assert!(
        errors
            .iter()
            .any(|e| e.contains(":5:11") && e.contains("unknown time zone `Mars/Olympus`")),
        "{errors:?}"
    );
    let ok = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: 'python:3.13'\nweb:\n  commands: {start: ./serve}\ntimezone: Europe/Paris\n",
    )]);
    let loaded = load(&DirSource::new(ok.path())).expect("loads");
    assert_eq!(
        loaded.topology.applications[0].timezone.as_deref(),
        Some("Europe/Paris")
    );
}

/// A service `configuration` key Slipway does not act on is warned at its position (no
/// key is silently dropped); the keys it acts on, and services it does not run, are not.
#[test]
fn service_configuration_keys_not_acted_on_are_warned() {
    let dir = tree(&[
        (
            ".platform.app.yaml",
            b"name: app\ntype: python:3.11\nweb:\n  commands:\n    start: python3 -m http.server $PORT\n",
        ),
        (
            ".platform/services.yaml",
            b"db:\n  type: postgresql:15\n  configuration:\n    extensions: [vector]\n    databases: [main, legacy]\n    max_connections: 20\nm:\n  type: mariadb:10.11\n  configuration:\n    schemas: [main]\n    endpoints: {main: {default_schema: main}}\n    properties: {x: 1}\n",
        ),
    ]);
    let l = load(&DirSource::new(dir.path())).expect("loads");
    let warnings: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    let ignored: Vec<&String> = warnings
        .iter()
        .filter(|w| w.contains("does not act on `configuration."))
        .collect();
    assert_eq!(ignored.len(), 2, "{warnings:?}");
    assert!(
        ignored[0].contains(".platform/services.yaml:6:5")
            && ignored[0].contains("`configuration.max_connections` of a postgresql service")
            && ignored[0].contains("(at db.configuration.max_connections)"),
        "{warnings:?}"
    );
    assert!(
        ignored[1].contains(".platform/services.yaml:12:5")
            && ignored[1].contains("`configuration.properties` of a mariadb service"),
        "{warnings:?}"
    );
}

#[test]
fn a_route_may_lead_to_a_varnish_service_whose_relationships_name_apps() {
    let files = |routes: &'static [u8], services: &'static [u8]| {
        tree(&[
            (
                ".platform.app.yaml",
                b"name: app\ntype: 'python:3.11'\nweb:\n  commands: {start: 'python3 -m http.server $PORT'}\n",
            ),
            (".platform/services.yaml", services),
            (".platform/config.vcl", b"sub vcl_recv {\n    set req.backend_hint = application.backend();\n}\n"),
            (".platform/routes.yaml", routes),
        ])
    };
    let varnish: &[u8] = b"varnish:\n  type: varnish:7.1\n  relationships:\n    application: 'app:http'\n  configuration:\n    vcl: !include\n      type: string\n      path: config.vcl\n";
    let d = files(
        b"'https://{default}/': {type: upstream, upstream: 'varnish:http'}\n",
        varnish,
    );
    let t: Topology = load(&DirSource::new(d.path())).unwrap().topology;
    assert!(matches!(&t.routes[0].kind, RouteKind::Upstream { app, .. } if app == "varnish"));
    let svc = t.service("varnish").unwrap();
    assert_eq!(svc.relationships["application"], "app:http");
    assert!(svc.configuration["vcl"]
        .as_str()
        .unwrap()
        .contains("application.backend()"));

    // Neither an app nor a routable service: refused where it is written.
    let d = files(
        b"'https://{default}/': {type: upstream, upstream: 'varnsh:http'}\n",
        varnish,
    );
    let e = errors_of(d.path());
    assert!(
        e.iter().any(|m| m.starts_with(".platform/routes.yaml:1:")
            && m.contains("no application or varnish service; did you mean `varnish`?")),
        "{e:?}"
    );
    // A database is no route target.
    let d = files(
        b"'https://{default}/': {type: upstream, upstream: 'db:http'}\n",
        b"db:\n  type: postgresql:15\n",
    );
    let e = errors_of(d.path());
    assert!(
        e.iter()
            .any(|m| m.contains("route upstream `db` is no application")),
        "{e:?}"
    );
    // Varnish's relationships name apps.
    let d = files(
        b"'https://{default}/': {type: upstream, upstream: 'varnish:http'}\n",
        b"varnish:\n  type: varnish:7.1\n  relationships:\n    application: 'nope:http'\n",
    );
    let e = errors_of(d.path());
    assert!(
        e.iter().any(|m| m.starts_with(".platform/services.yaml:4:")
            && m.contains("relationship `application` of service `varnish` names `nope`, which is no application")),
        "{e:?}"
    );
    // Varnish reaches its apps over TCP: an app on a unix socket is refused as a backend.
    let d = tree(&[
        (
            ".platform.app.yaml",
            b"name: app\ntype: 'python:3.11'\nweb:\n  upstream: {socket_family: unix}\n  commands: {start: 'gunicorn -b unix:$SOCKET app:app'}\n",
        ),
        (".platform/services.yaml", varnish),
        (".platform/config.vcl", b"sub vcl_recv {\n    set req.backend_hint = application.backend();\n}\n"),
        (".platform/routes.yaml", b"'https://{default}/': {type: upstream, upstream: 'varnish:http'}\n"),
    ]);
    let e = errors_of(d.path());
    assert!(
        e.iter().any(|m| m.starts_with(".platform/services.yaml:4:")
            && m.contains("names app `app`, which listens on a unix socket")),
        "{e:?}"
    );
}

#[test]
fn a_workers_relationship_to_nothing_is_refused_and_its_own_mounts_are_not_warned_about() {
    let d = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: 'python:3.13'\nweb:\n  commands: {start: ./serve}\nworkers:\n  queue:\n    commands: {start: ./w}\n    disk: 256\n    mounts:\n      q: {source: local, source_path: q}\n    relationships:\n      db: 'nowhere:mysql'\n",
    )]);
    let errors = errors_of(d.path());
    assert!(
        errors
            .iter()
            .any(|e| e.contains("workers.queue.relationships.db")
                && e.contains("names `nowhere`, which is no service or app")),
        "{errors:?}"
    );
    assert_eq!(errors.len(), 1, "{errors:?}");

    let ok = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: 'python:3.13'\nweb:\n  commands: {start: ./serve}\nworkers:\n  queue:\n    commands: {start: ./w}\n    disk: 256\n    mounts:\n      q: {source: local, source_path: q}\n    relationships:\n      me: 'app:http'\n",
    )]);
    let loaded = load(&DirSource::new(ok.path())).expect("loads");
    assert!(
        !loaded
            .warnings
            .iter()
            .any(|d| d.to_string().contains("does not act on")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn route_hsts_is_acted_on_typed_and_client_certificates_stay_warned() {
    let app = b"name: app\ntype: python:3.11\nweb:\n  commands:\n    start: x\n" as &[u8];
    // Platform.sh's shape (as the Nextcloud template writes it): no warning, HSTS kept.
    let d = tree(&[
        (".platform.app.yaml", app),
        (
            ".platform/routes.yaml",
            b"\"https://{default}/\":\n  type: upstream\n  upstream: app:http\n  tls:\n    strict_transport_security:\n      enabled: true\n      include_subdomains: true\n      preload: true\n\"https://www.{default}/\":\n  type: redirect\n  to: https://{default}/\n",
        ),
    ]);
    let l = load(&DirSource::new(d.path())).unwrap();
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let hsts = l.topology.routes[0].hsts.expect("HSTS on the https route");
    assert_eq!(
        hsts.header_value(),
        "max-age=31536000; includeSubDomains; preload"
    );
    assert_eq!(l.topology.routes[1].hsts, None);
    // Disabled: none; client certificates and min_version: warned as ignored, by position.
    let d = tree(&[
        (".platform.app.yaml", app),
        (
            ".platform/routes.yaml",
            b"\"https://{default}/\":\n  upstream: app:http\n  tls:\n    strict_transport_security: {enabled: false}\n    min_version: TLSv1.3\n    client_authentication: require\n",
        ),
    ]);
    let l = load(&DirSource::new(d.path())).unwrap();
    assert_eq!(l.topology.routes[0].hsts, None);
    let warnings: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with(".platform/routes.yaml:5:5: warning: `min_version`")
            && warnings[1]
                .starts_with(".platform/routes.yaml:6:5: warning: `client_authentication`"),
        "{warnings:?}"
    );
    // Wrong types and unknown keys are refused at their position.
    let d = tree(&[
        (".platform.app.yaml", app),
        (
            ".platform/routes.yaml",
            b"\"https://{default}/\":\n  upstream: app:http\n  tls:\n    strict_transport_security:\n      enabled: yes please\n      max_age: 10\n",
        ),
    ]);
    let errors = errors_of(d.path());
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors[0].starts_with(
            ".platform/routes.yaml:5:16: error: expected a boolean (true or false), found"
        ) && errors[1].starts_with(".platform/routes.yaml:6:7: error:")
            && errors[1].contains("max_age"),
        "{errors:?}"
    );
    // On an http:// route, or preload without subdomains: kept, with a warning saying why.
    let d = tree(&[
        (".platform.app.yaml", app),
        (
            ".platform/routes.yaml",
            b"\"http://{default}/\":\n  upstream: app:http\n  tls:\n    strict_transport_security: {enabled: true, preload: true}\n",
        ),
    ]);
    let l = load(&DirSource::new(d.path())).unwrap();
    let warnings: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert!(
        warnings.len() == 2
            && warnings[0].contains("HSTS is sent on HTTPS answers only")
            && warnings[1].contains("`preload` without `include_subdomains: true`")
            && warnings
                .iter()
                .all(|w| w.starts_with(".platform/routes.yaml:4:")),
        "{warnings:?}"
    );
}

#[test]
fn an_app_relationship_names_an_app_and_its_http_endpoint() {
    let config = |rels: &str| {
        format!(
            "applications:\n  front:\n    type: 'python:3.13'\n    web: {{commands: {{start: ./serve}}}}\n    relationships:\n{rels}  back:\n    type: 'python:3.13'\n    web: {{commands: {{start: ./serve}}}}\nroutes:\n  'http://{{default}}/': {{type: upstream, upstream: 'front:http'}}\n"
        )
    };
    // An app has one endpoint, `http`: any other is refused where it is written.
    let d = tree(&[(
        ".upsun/config.yaml",
        config("      api: 'back:api'\n").as_bytes(),
    )]);
    let e = errors_of(d.path());
    assert!(
        e.iter().any(|m| m.starts_with(".upsun/config.yaml:6:")
            && m.contains("names endpoint `api` of app `back`")
            && m.contains("did you mean `back:http`?")),
        "{e:?}"
    );
    // An app that does not exist: the nearest name.
    let d = tree(&[(
        ".upsun/config.yaml",
        config("      api: 'bakc:http'\n").as_bytes(),
    )]);
    let e = errors_of(d.path());
    assert!(
        e.iter().any(|m| m.starts_with(".upsun/config.yaml:6:")
            && m.contains("names `bakc`, which is no service or app; did you mean `back`?")),
        "{e:?}"
    );
    // Circular relationships between apps are refused, as on Platform.sh.
    let d = tree(&[(
        ".upsun/config.yaml",
        b"applications:\n  front:\n    type: 'python:3.13'\n    web: {commands: {start: ./serve}}\n    relationships:\n      api: 'back:http'\n  back:\n    type: 'python:3.13'\n    web: {commands: {start: ./serve}}\n    relationships:\n      front: 'front:http'\n",
    )]);
    let e = errors_of(d.path());
    assert!(
        e.iter().any(|m| m.starts_with(".upsun/config.yaml:6:")
            && m.contains("(front -> back -> front)")
            && m.contains("cannot be circular")),
        "{e:?}"
    );
    // `back:http` and the long form both load, as `back:http`.
    for rels in [
        "      api: 'back:http'\n",
        "      api: {service: back, endpoint: http}\n",
    ] {
        let d = tree(&[(".upsun/config.yaml", config(rels).as_bytes())]);
        let loaded = load(&DirSource::new(d.path())).expect("loads");
        let front = loaded.topology.application("front").unwrap();
        assert_eq!(front.relationships["api"], "back:http");
    }
}

/// bun is on every Node.js stack: demo-js's `stack: [bun@1]` runs on the newest Node.js
/// stack, a list with `nodejs@VERSION` runs on that one (bun's entry wherever it is), a
/// `nodejs` type keeps its stack; a bun of another major is refused at its entry.
#[test]
fn an_upsun_bun_stack_runs_on_a_nodejs_stack() {
    let newest = slipway_stack::resolve::available(slipway_stack::Language::Nodejs)
        .rsplit(", ")
        .next()
        .unwrap()
        .to_string();
    for (stack, want) in [
        ("[bun@1]".to_string(), format!("nodejs:{newest}")),
        ("[bun]".to_string(), format!("nodejs:{newest}")),
        ("[bun@1, nodejs@22]".to_string(), "nodejs:22".to_string()),
        ("[nodejs@20, bun@1.2]".to_string(), "nodejs:20".to_string()),
        (
            "[python@3.13, bun@1]".to_string(),
            format!("python:3.13+nodejs:{newest}"),
        ),
    ] {
        let config = format!(
            "applications:\n  app:\n    stack: {stack}\n    web: {{commands: {{start: bun start}}}}\n"
        );
        let d = tree(&[(".upsun/config.yaml", config.as_bytes())]);
        let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{stack}: {e}"));
        assert_eq!(
            l.topology.application("app").unwrap().r#type.as_deref(),
            Some(want.as_str()),
            "{stack}"
        );
        let warnings: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
        assert!(warnings.is_empty(), "{stack}: {warnings:?}");
    }
    let d = tree(&[(
        ".upsun/config.yaml",
        b"applications:\n  app:\n    type: nodejs:22\n    stack: [bun@1]\n    web: {commands: {start: x}}\n",
    )]);
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        l.topology.application("app").unwrap().r#type.as_deref(),
        Some("nodejs:22")
    );
    let d = tree(&[(
        ".upsun/config.yaml",
        b"applications:\n  app:\n    stack: [bun@2]\n    web: {commands: {start: x}}\n",
    )]);
    let e = load(&DirSource::new(d.path())).unwrap_err().to_string();
    assert!(
        e.contains(".upsun/config.yaml:3:13: error: `bun@2`: the Node.js stacks carry bun 1.x"),
        "{e}"
    );
}

#[test]
fn variables_the_platform_sets_are_warned_about_at_their_key() {
    let dir = tree(&[(
        ".platform.app.yaml",
        b"name: app\ntype: python:3.11\nvariables:\n  env:\n    MODE: fast\n    PORT: '8888'\n    PLATFORM_RELATIONSHIPS: x\n  php:\n    PORT: 1\nweb:\n  commands:\n    start: python3 -m http.server $PORT\n",
    )]);
    let l = load(&DirSource::new(dir.path())).expect("loads");
    let warnings: Vec<String> = l.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with(".platform.app.yaml:6:5: warning: `PORT` is set by the platform")
            && warnings[0].ends_with("(at variables.env.PORT)"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with(".platform.app.yaml:7:5:")
            && warnings[1].contains("`PLATFORM_RELATIONSHIPS`"),
        "{warnings:?}"
    );
}

#[test]
fn a_bad_upstream_and_a_second_primary_are_refused_where_they_are_written() {
    let dir = tree(&[
        (
            ".platform.app.yaml",
            b"name: app\ntype: python:3.11\nweb:\n  commands:\n    start: python3 -m http.server $PORT\n",
        ),
        (
            ".platform/routes.yaml",
            b"'https://{default}/':\n  type: upstream\n  upstream: 'nope:http'\n'https://www.{default}/':\n  type: upstream\n  upstream: 'app:http'\n  primary: true\n'https://api.{default}/':\n  type: upstream\n  upstream: 'app:http'\n  primary: true\n",
        ),
    ]);
    let e = errors_of(dir.path());
    assert!(
        e.iter()
            .any(|m| m.starts_with(".platform/routes.yaml:3:13:")
                && m.contains("route upstream `nope` is no application")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|m| m.starts_with(".platform/routes.yaml:11:12:")
                && m.contains("only one route may be primary")),
        "{e:?}"
    );
}
