//! Hostile and mangled input never panics: every fixture, mutated many times with a fixed-seed
//! generator, runs through the whole reader (the same driver as the cargo-fuzz target in fuzz/).
//! Hostile shapes that could hang (alias bombs, deep nesting, include loops) end in a bound error.

use slipway_config::{fuzzing, load, MemSource};
use std::path::Path;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "&a ",
    "*a",
    "\t",
    "---\n",
    "!include ",
    "!archive ",
    "[",
    "]",
    "{",
    "}",
    ":",
    "- ",
    "\n  ",
    "<<: *a\n",
    "'",
    "\"",
    "|\n",
    "?",
    "~",
    "\u{feff}",
    "\u{0}",
    "\u{ff}",
    "type: mariadb:10.6\n",
    "relationships:\n  db: 'db:mysql'\n",
    "spec: '61 * * *'\n",
    "disk: 0\n",
    "../../",
    "{default}",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(4) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let end = (at + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                v.splice(at..at, t.iter().copied());
            }
        }
    }
    v
}

/// Seeds: every fixture tree, as fuzz inputs (path index byte + content, NUL-separated).
fn seeds() -> Vec<Vec<u8>> {
    let paths = [
        ".platform.app.yaml",
        ".platform/services.yaml",
        ".platform/routes.yaml",
        ".platform/applications.yaml",
        ".upsun/config.yaml",
        ".slipway/config.yaml",
        "Procfile",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for d in dirs {
        let mut input = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            if let Ok(bytes) = std::fs::read(d.join(p)) {
                if bytes.len() > 64 * 1024 {
                    continue;
                }
                input.push(i as u8);
                input.extend(bytes.iter().filter(|b| **b != 0));
                input.push(0);
            }
        }
        out.push(input);
    }
    out
}

#[test]
fn mutated_fixtures_never_panic() {
    let seeds = seeds();
    assert!(seeds.len() >= 10);
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    for round in 0..1500 {
        let seed = &seeds[round % seeds.len()];
        let input = mutate(&mut rng, seed);
        let outcome = std::panic::catch_unwind(|| fuzzing::exercise(&input));
        assert!(
            outcome.is_ok(),
            "panic on input {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

fn errors(files: &[(&str, &str)]) -> String {
    let mut src = MemSource::new();
    for (p, c) in files {
        src.insert(p, c.as_bytes().to_vec());
    }
    match load(&src) {
        Ok(l) => panic!("expected an error, loaded {:?}", l.topology),
        Err(d) => d.to_string(),
    }
}

#[test]
fn hostile_shapes_end_in_a_bound_error() {
    // A wide alias bomb: many aliases of one big anchor.
    let mut wide = String::from("name: app\ntype: 'python:3.12'\nvariables:\n  env:\n    a: &a [");
    wide.push_str(&vec!["x"; 1000].join(","));
    wide.push_str("]\n    b: [");
    wide.push_str(&vec!["*a"; 200].join(","));
    wide.push_str("]\n");
    assert!(errors(&[(".platform.app.yaml", &wide)]).contains("expand to more than 100000 values"));
    // Deep block nesting (no flow brackets).
    let mut deep = String::from("name: app\ntype: 'python:3.12'\nvariables:\n");
    for i in 0..200 {
        deep.push_str(&" ".repeat(2 * (i + 1)));
        deep.push_str("k:\n");
    }
    assert!(errors(&[(".platform.app.yaml", &deep)]).contains("nests deeper than 64 levels"));
    // An include that includes itself.
    let e = errors(&[
        (
            ".platform.app.yaml",
            "name: app\ntype: 'python:3.12'\nvariables: !include inc.yaml\n",
        ),
        ("inc.yaml", "env: !include inc.yaml\n"),
    ]);
    assert!(e.contains("nests deeper than 8 files"), "{e}");
    // Includes that together read more than the budget.
    let big = format!("x: '{}'\n", "y".repeat(900 * 1024));
    let mut app = String::from("name: app\ntype: 'python:3.12'\nvariables:\n  env:\n");
    for i in 0..8 {
        app.push_str(&format!(
            "    v{i}: !include {{type: string, path: big.yaml}}\n"
        ));
    }
    let e = errors(&[(".platform.app.yaml", &app), ("big.yaml", &big)]);
    assert!(e.contains("read more than 4 MiB in all"), "{e}");
}

#[test]
fn anchors_and_aliases_within_bounds_are_fine() {
    let text = "name: app\ntype: 'python:3.12'\nweb:\n  commands: {start: ./serve}\n  locations:\n    '/': &loc {root: public, passthru: true}\n    '/static': *loc\n";
    let mut src = MemSource::new();
    src.insert(".platform.app.yaml", text);
    let l = load(&src).unwrap_or_else(|e| panic!("{e}"));
    let a = &l.topology.applications[0];
    assert_eq!(a.web.locations["/static"], a.web.locations["/"]);
}
