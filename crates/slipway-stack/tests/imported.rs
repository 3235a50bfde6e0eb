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
    assert_eq!(
        parse_tag("stack-redis-7.2"),
        Some((Language::Redis, "7.2")),
        "a service's software"
    );
    assert_eq!(
        parse_tag("stack-chrome-headless-150"),
        Some((Language::ChromeHeadless, "150"))
    );
    assert_eq!(parse_tag("stack-postgresql-15"), None, "a catalog version");
    assert_eq!(parse_tag("stack-php-8.3-rc"), None);
    assert_eq!(parse_tag("release-demo-main-1"), None);
    assert!(import_target("php:8.3").is_ok_and(is_imported));
    assert!(import_target("php:8.x").is_err());
    assert!(import_target("pyhton:3.12").is_err());
}

#[test]
fn an_imported_service_version_is_resolved_and_named_in_refusals() {
    // Versions no other test of this process resolves (the registry is process-wide).
    let asked = slipway_stack::resolve_service("influxdb", "1.8").unwrap();
    assert_eq!(
        asked.stack.version, "1.6",
        "before: the older one, with a warning"
    );
    assert!(asked.warning().is_some());
    let s = import_target("influxdb:1.8").unwrap();
    assert!(is_imported(s) && s.language == Language::Influxdb);
    let r = slipway_stack::resolve_service("influxdb", "1.8").unwrap();
    assert!(std::ptr::eq(r.stack, s));
    assert_eq!(r.warning(), None);
    // Refused (InfluxDB 2 is another program): the refusal names the imported version.
    let e = slipway_stack::resolve_service("influxdb", "2.7")
        .unwrap_err()
        .to_string();
    assert!(e.contains("influxdb:1.6, influxdb:1.8"), "{e}");
    // A version the server lacks resolves to the nearest newer one, imported or not.
    register(Language::Valkey, "9");
    let r = slipway_stack::resolve_service("valkey-persistent", "8.5").unwrap();
    assert_eq!(r.stack.type_name(), "valkey:9");
    assert!(r.warning().is_some_and(|w| w.contains("valkey:8.5")));
}
