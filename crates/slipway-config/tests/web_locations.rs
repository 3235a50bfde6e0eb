//! `web.locations` at validate: bad roots, rules and durations are refused at the value's
//! FILE:LINE:COL; the legacy keys become a `/` location.

use slipway_config::{load, DirSource, Severity};

fn tree(app_yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".platform.app.yaml"), app_yaml).unwrap();
    std::fs::create_dir_all(dir.path().join(".platform")).unwrap();
    std::fs::write(
        dir.path().join(".platform/routes.yaml"),
        "'https://{default}/':\n  type: upstream\n  upstream: 'app:http'\n",
    )
    .unwrap();
    dir
}

fn errors(app_yaml: &str) -> Vec<String> {
    let d = tree(app_yaml);
    match load(&DirSource::new(d.path())) {
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
fn bad_locations_are_refused_at_their_values() {
    let errs = errors(concat!(
        "name: app\n",
        "type: 'python:3.13'\n",
        "web:\n",
        "  commands: {start: 'python -m http.server $PORT'}\n",
        "  locations:\n",
        "    '/':\n",
        "      root: '../../etc'\n",
        "      expires: soon\n",
        "      passthru: 'index.php'\n",
        "      rules:\n",
        "        '(unclosed': {allow: false}\n",
        "        '\\w{1000}\\w{1000}\\w{1000}': {expires: 1h}\n",
        "        '^/(a|aa)+$': {allow: true}\n",
        "    'static': {root: public}\n",
    ));
    let joined = errs.join("\n");
    for want in [
        ".platform.app.yaml:7:13: error: root `../../etc` leaves the app",
        ".platform.app.yaml:8:16: error: expires `soon` is not a duration",
        ".platform.app.yaml:9:17: error: passthru `index.php` must be",
        ".platform.app.yaml:11:9: error: `(unclosed` is not a valid regular expression",
        ".platform.app.yaml:12:9: error: the regular expression",
        ".platform.app.yaml:13:9: error: the regular expression `^/(a|aa)+$` could take exponential time",
        ".platform.app.yaml:14:5: error: location `static` must be a URL path",
    ] {
        assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
    }
}

#[test]
fn mistakes_inside_a_rule_are_refused_at_their_keys() {
    let errs = errors(concat!(
        "name: app\n",
        "type: 'python:3.13'\n",
        "web:\n",
        "  commands: {start: 'python -m http.server $PORT'}\n",
        "  locations:\n",
        "    '/':\n",
        "      root: public\n",
        "      rules:\n",
        "        '\\.css$': {expire: 1h}\n",
        "        '\\.env$': {allow: 'no'}\n",
        "        '\\.txt$': {root: other}\n",
        "        '\\.js$':\n",
        "          headers: {X-A: [1]}\n",
        "        '\\.map$': deny\n",
    ));
    let joined = errs.join("\n");
    for want in [
        ".platform.app.yaml:9:20: error: unknown key `expire`; did you mean `expires`?",
        ".platform.app.yaml:10:27: error: expected a boolean",
        ".platform.app.yaml:11:20: error: unknown key `root`",
        ".platform.app.yaml:13:26: error: expected a string",
        ".platform.app.yaml:14:19: error: expected a mapping",
    ] {
        assert!(joined.contains(want), "missing {want:?} in:\n{joined}");
    }
    assert!(
        joined.contains("(at web.locations.\"/\".rules.\"\\\\.css$\".expire)"),
        "{joined}"
    );
}

#[test]
fn legacy_keys_become_the_root_location() {
    let d = tree(concat!(
        "name: app\n",
        "type: 'php:8.2'\n",
        "web:\n",
        "  commands: {start: 'php -S 127.0.0.1:$PORT'}\n",
        "  document_root: '/web'\n",
        "  passthru: '/index.php'\n",
        "  index_files: [index.html]\n",
        "  expires: 1d\n",
        "  whitelist: ['\\.css$', '\\.js$']\n",
    ));
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    let web = &l.topology.applications[0].web;
    let root = &web.locations["/"];
    assert_eq!(root["root"], "web");
    assert_eq!(root["passthru"], "/index.php");
    assert_eq!(root["index"][0], "index.html");
    assert_eq!(root["expires"], "1d");
    assert_eq!(root["allow"], false);
    assert_eq!(root["rules"]["\\.css$"]["allow"], true);
    assert_eq!(web.rule_order["/"], vec!["\\.css$", "\\.js$"]);
    assert!(
        !l.warnings
            .iter()
            .any(|w| w.to_string().contains("whitelist")),
        "{:?}",
        l.warnings
    );
}

#[test]
fn rules_keep_their_written_order() {
    let d = tree(concat!(
        "name: app\n",
        "type: 'python:3.13'\n",
        "web:\n",
        "  commands: {start: 'python -m http.server $PORT'}\n",
        "  locations:\n",
        "    '/':\n",
        "      root: public\n",
        "      rules:\n",
        "        '^/z': {allow: false}\n",
        "        '^/a': {allow: true}\n",
        "        '\\.css$': {expires: 1h}\n",
    ));
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    let web = &l.topology.applications[0].web;
    assert_eq!(web.rule_order["/"], vec!["^/z", "^/a", "\\.css$"]);
}
