//! Imported stacks of versions the catalog lacks, registered for resolution. In a file of
//! its own: the registry is process-wide, and registering a version changes what the other
//! tests of a process would resolve.

use slipway_stack::imported::{import_target, is_imported, parse_tag, register};
use slipway_stack::Language;

#[test]
fn an_imported_version_is_resolved_beside_the_catalog() {
    // Before: java:19 is refused (no java 19.x), suggesting 21. (A version no other
    // test of this process resolves: the registry is process-wide.)
    assert!(slipway_stack::resolve("java", "19").is_err());
    let s = register(Language::Java, "19");
    assert!(std::ptr::eq(s, register(Language::Java, "19")));
    assert!(is_imported(s));
    let r = slipway_stack::resolve("java", "19").unwrap();
    assert!(std::ptr::eq(r.stack, s));
    assert_eq!(r.warning(), None);
    assert_eq!(
        slipway_stack::resolve::available(Language::Java),
        "11, 17, 19, 21, 25"
    );
    // A catalog version stays the catalog's.
    assert!(!is_imported(register(Language::Java, "21")));
}

#[test]
fn tags_of_imported_versions_are_recognised() {
    assert_eq!(parse_tag("stack-nodejs-23"), Some((Language::Nodejs, "23")));
    assert_eq!(parse_tag("stack-nodejs-22"), None, "a catalog version");
    assert_eq!(parse_tag("stack-redis-7.2"), None, "not an app language");
    assert_eq!(parse_tag("stack-php-8.3-rc"), None);
    assert_eq!(parse_tag("release-demo-main-1"), None);
    assert!(import_target("php:8.3").is_ok_and(is_imported));
    assert!(import_target("php:8.x").is_err());
    assert!(import_target("pyhton:3.12").is_err());
}
