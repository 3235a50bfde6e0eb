//! The catalog of service types Slipway accepts (Platform.sh's, by name and version), and what an
//! app sees of each: the default endpoint, scheme, port and credentials in `PLATFORM_RELATIONSHIPS`,
//! and whether the service keeps data (which the infrastructure diff protects).

/// One kind of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceKind {
    /// The type name, e.g. `mariadb`.
    pub name: &'static str,
    /// The versions accepted, oldest first.
    pub versions: &'static [&'static str],
    /// The endpoint a relationship without one uses (its `rel`), e.g. `mysql`.
    pub endpoint: &'static str,
    /// Other endpoints every service of this kind has (besides `configuration.endpoints`).
    pub extra_endpoints: &'static [&'static str],
    /// Whether `configuration.endpoints` may define more endpoints (databases, Solr cores, ...).
    pub configurable_endpoints: bool,
    /// URL scheme in `PLATFORM_RELATIONSHIPS`.
    pub scheme: &'static str,
    /// Port in `PLATFORM_RELATIONSHIPS`.
    pub port: u16,
    /// Default user name (None: no authentication).
    pub username: Option<&'static str>,
    /// Default password (None: no authentication).
    pub password: Option<&'static str>,
    /// Default path (database name, Solr core...).
    pub path: Option<&'static str>,
    /// Whether the service keeps data on disk that a deploy must never lose.
    pub holds_data: bool,
    /// Whether apps can have relationships to it (network-storage is used through mounts instead).
    pub relatable: bool,
}

const MARIADB_VERSIONS: &[&str] = &[
    "10.0", "10.1", "10.2", "10.3", "10.4", "10.5", "10.6", "10.11", "11.0", "11.2", "11.4", "11.8",
];
const REDIS_VERSIONS: &[&str] = &[
    "2.8", "3.0", "3.2", "4.0", "5.0", "6.0", "6.2", "7.0", "7.2",
];
const VALKEY_VERSIONS: &[&str] = &["7.2", "8.0", "8.1"];
const ES_VERSIONS: &[&str] = &[
    "0.90", "1.4", "1.7", "2.4", "5.2", "5.4", "6.5", "6.8", "7.2", "7.5", "7.6", "7.7", "7.9",
    "7.10", "7.17", "8.5", "8.8", "8.15",
];

const fn kind(
    name: &'static str,
    versions: &'static [&'static str],
    endpoint: &'static str,
    scheme: &'static str,
    port: u16,
) -> ServiceKind {
    ServiceKind {
        name,
        versions,
        endpoint,
        extra_endpoints: &[],
        configurable_endpoints: false,
        scheme,
        port,
        username: None,
        password: None,
        path: None,
        holds_data: true,
        relatable: true,
    }
}

const fn mysql_like(name: &'static str, versions: &'static [&'static str]) -> ServiceKind {
    ServiceKind {
        configurable_endpoints: true,
        username: Some("user"),
        password: Some(""),
        path: Some("main"),
        ..kind(name, versions, "mysql", "mysql", 3306)
    }
}

const fn volatile(k: ServiceKind) -> ServiceKind {
    ServiceKind {
        holds_data: false,
        ..k
    }
}

/// Every service kind, by name.
pub const SERVICES: &[ServiceKind] = &[
    mysql_like("mariadb", MARIADB_VERSIONS),
    mysql_like("mysql", MARIADB_VERSIONS),
    mysql_like("oracle-mysql", &["5.7", "8.0", "8.4"]),
    ServiceKind {
        configurable_endpoints: true,
        username: Some("main"),
        password: Some("main"),
        path: Some("main"),
        ..kind(
            "postgresql",
            &[
                "9.3", "9.5", "9.6", "10", "11", "12", "13", "14", "15", "16", "17",
            ],
            "postgresql",
            "pgsql",
            5432,
        )
    },
    volatile(ServiceKind {
        extra_endpoints: &["redis-replica"],
        ..kind("redis", REDIS_VERSIONS, "redis", "redis", 6379)
    }),
    ServiceKind {
        extra_endpoints: &["redis-replica"],
        ..kind("redis-persistent", REDIS_VERSIONS, "redis", "redis", 6379)
    },
    volatile(ServiceKind {
        extra_endpoints: &["valkey-replica"],
        ..kind("valkey", VALKEY_VERSIONS, "valkey", "redis", 6379)
    }),
    ServiceKind {
        extra_endpoints: &["valkey-replica"],
        ..kind(
            "valkey-persistent",
            VALKEY_VERSIONS,
            "valkey",
            "redis",
            6379,
        )
    },
    volatile(kind(
        "memcached",
        &["1.4", "1.5", "1.6"],
        "memcached",
        "memcached",
        11211,
    )),
    kind("elasticsearch", ES_VERSIONS, "elasticsearch", "http", 9200),
    kind(
        "elasticsearch-enterprise",
        ES_VERSIONS,
        "elasticsearch",
        "http",
        9200,
    ),
    kind(
        "opensearch",
        &["1", "1.1", "1.2", "2", "2.5", "3"],
        "opensearch",
        "http",
        9200,
    ),
    ServiceKind {
        configurable_endpoints: true,
        path: Some("solr/collection1"),
        ..kind(
            "solr",
            &[
                "3.6", "4.10", "6.3", "6.6", "7.6", "7.7", "8.0", "8.4", "8.6", "8.11", "9.1",
                "9.2", "9.4", "9.6", "9.9",
            ],
            "solr",
            "solr",
            8080,
        )
    },
    ServiceKind {
        configurable_endpoints: true,
        username: Some("guest"),
        password: Some("guest"),
        ..kind(
            "rabbitmq",
            &[
                "3.5", "3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13", "4.0", "4.1",
            ],
            "rabbitmq",
            "amqp",
            5672,
        )
    },
    ServiceKind {
        username: Some("main"),
        password: Some("main"),
        path: Some("main"),
        ..kind(
            "mongodb",
            &[
                "3.0", "3.2", "3.4", "3.6", "4.0", "4.2", "4.4", "5.0", "6.0", "7.0",
            ],
            "mongodb",
            "mongodb",
            27017,
        )
    },
    ServiceKind {
        username: Some("main"),
        password: Some("main"),
        path: Some("main"),
        ..kind(
            "mongodb-enterprise",
            &["4.0", "4.2", "4.4", "5.0", "6.0", "7.0"],
            "mongodb",
            "mongodb",
            27017,
        )
    },
    kind(
        "influxdb",
        &["1.2", "1.3", "1.7", "1.8", "2.2", "2.3", "2.7"],
        "influxdb",
        "http",
        8086,
    ),
    kind(
        "kafka",
        &[
            "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "3.0", "3.1", "3.2", "3.4", "3.6",
            "3.7",
        ],
        "kafka",
        "kafka",
        9092,
    ),
    ServiceKind {
        relatable: false,
        ..kind(
            "network-storage",
            &["1.0", "2.0"],
            "network-storage",
            "nfs",
            2049,
        )
    },
    volatile(kind(
        "chrome-headless",
        &[
            "73", "80", "81", "83", "84", "86", "90", "91", "95", "113", "120",
        ],
        "http",
        "http",
        9222,
    )),
    ServiceKind {
        extra_endpoints: &["http-admin"],
        ..volatile(kind(
            "varnish",
            &[
                "5.1", "5.2", "6.0", "6.3", "6.4", "7.1", "7.2", "7.3", "7.6",
            ],
            "http",
            "http",
            8080,
        ))
    },
    ServiceKind {
        configurable_endpoints: true,
        ..kind(
            "vault-kms",
            &["1.6", "1.8", "1.11", "1.12"],
            "manage_keys",
            "http",
            8200,
        )
    },
    kind(
        "clickhouse",
        &["23", "24", "25"],
        "clickhouse",
        "http",
        8123,
    ),
    volatile(kind("gotenberg", &["8"], "http", "http", 3000)),
];

/// The kind of that name.
pub fn service_kind(name: &str) -> Option<&'static ServiceKind> {
    SERVICES.iter().find(|k| k.name == name)
}

/// Whether a service of `service_type` holds data a user wrote (a type the catalog does not
/// know counts as holding data: nothing is deleted on a guess).
pub fn holds_data(service_type: &str) -> bool {
    service_kind(service_type).is_none_or(|k| k.holds_data)
}

/// Whether a service of `service_type` is a MariaDB server (`mariadb`, `mysql`, and
/// `oracle-mysql`, which Slipway runs on MariaDB: the same wire protocol, clients and dump
/// tools), with its schemas, endpoints and accounts.
pub fn runs_mariadb(service_type: &str) -> bool {
    matches!(service_type, "mariadb" | "mysql" | "oracle-mysql")
}

/// Whether two service kinds store data the same way (`mysql` is a name of `mariadb`).
pub fn same_family(a: &str, b: &str) -> bool {
    let family = |n: &str| {
        match n {
            "mysql" => "mariadb",
            "redis-persistent" => "redis",
            "valkey-persistent" => "valkey",
            other => other,
        }
        .to_string()
    };
    a == b || family(a) == family(b)
}

/// The endpoints a service of `kind` offers, given its `configuration` value.
pub fn endpoints(kind: &ServiceKind, configuration: &serde_json::Value) -> Vec<String> {
    let mut out = vec![kind.endpoint.to_string()];
    out.extend(kind.extra_endpoints.iter().map(|e| e.to_string()));
    if kind.configurable_endpoints {
        if let Some(map) = configuration
            .get("endpoints")
            .and_then(serde_json::Value::as_object)
        {
            out.extend(map.keys().cloned());
        }
        // Solr cores are endpoints too in old configurations.
        if let Some(map) = configuration
            .get("cores")
            .and_then(serde_json::Value::as_object)
        {
            out.extend(map.keys().cloned());
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A version's numeric parts (`10.11` -> [10, 11]); None when not numeric.
pub fn version_parts(v: &str) -> Option<Vec<u64>> {
    v.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

/// Compare two versions numerically part by part (`10.11` > `10.6`); by text when not numeric.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    match (version_parts(a), version_parts(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// The major version: the first part (`10.6` -> `10`, `16` -> `16`).
pub fn major(v: &str) -> &str {
    v.split('.').next().unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("10.11", "10.6"), Ordering::Greater);
        assert_eq!(compare_versions("9.6", "10"), Ordering::Less);
        assert_eq!(compare_versions("7.2", "7.2"), Ordering::Equal);
        assert_eq!(major("10.6"), "10");
        assert_eq!(major("16"), "16");
    }

    #[test]
    fn catalog_is_consistent() {
        for k in SERVICES {
            assert!(!k.versions.is_empty(), "{}", k.name);
            let mut sorted = k.versions.to_vec();
            sorted.sort_by(|a, b| compare_versions(a, b));
            assert_eq!(sorted, k.versions, "{} versions are oldest first", k.name);
            assert_eq!(
                SERVICES.iter().filter(|o| o.name == k.name).count(),
                1,
                "{} listed once",
                k.name
            );
        }
        assert!(service_kind("mariadb").unwrap().holds_data);
        assert!(!service_kind("redis").unwrap().holds_data);
        assert!(same_family("mysql", "mariadb"));
        assert!(!same_family("mysql", "postgresql"));
    }

    #[test]
    fn endpoints_include_configured_ones() {
        let k = service_kind("mariadb").unwrap();
        let conf = serde_json::json!({"schemas": ["main", "legacy"], "endpoints": {"admin": {}, "reporter": {}}});
        assert_eq!(endpoints(k, &conf), vec!["admin", "mysql", "reporter"]);
        assert_eq!(
            endpoints(service_kind("redis").unwrap(), &serde_json::Value::Null),
            vec!["redis", "redis-replica"]
        );
    }
}
