//! A version imported into the server's stacks (`slipway stack import php:8.5 ...`) is one
//! the config knows, as the catalog's are: for a `type:` and for a Procfile app's version
//! constraint. In a file of its own: the registry of imported versions is process-wide.

use slipway_config::detect::resolve_constraint;
use slipway_config::{load, DirSource};
use slipway_stack::Language;

#[test]
fn an_imported_version_is_a_type_and_a_constraint_target() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join(".platform.app.yaml"),
        "name: app\ntype: php:8.5\n",
    )
    .unwrap();
    // Before: the catalog has no PHP 8.5 nor anything newer in 8.x.
    let e = load(&DirSource::new(d.path())).unwrap_err().to_string();
    assert!(e.contains("php:8.5 is not available"), "{e}");
    assert!(resolve_constraint(Language::Php, "^8.5").is_err());

    slipway_stack::imported::register(Language::Php, "8.5");
    let l = load(&DirSource::new(d.path())).unwrap_or_else(|e| panic!("{e}"));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let r = resolve_constraint(Language::Php, "^8.5").unwrap();
    assert_eq!(r.stack.type_name(), "php:8.5");
    // `*` is the newest the server has.
    let r = resolve_constraint(Language::Php, "*").unwrap();
    assert_eq!(r.stack.type_name(), "php:8.5");
}
