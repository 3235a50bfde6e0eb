//! Where a service listens inside its environment's network namespace, chosen in one place.
//!
//! - Its relationship's port: each service has a loopback address of its own
//!   (`127.1.0.N`, [`address`]) and listens there on its type's port, the one
//!   `PLATFORM_RELATIONSHIPS` names ([`public`], from the config catalog). Two services of
//!   one type (two redis) are two addresses, never one port twice.
//! - Private ports on `127.0.0.1`, which every container of the environment shares (the
//!   apps' `$PORT`s, 10000 and up, [`crate::environment::port_for`]): one block of [`BLOCK`] ports per purpose ([`Private`]), one port per service
//!   address in it. The blocks are disjoint and below the apps' ports, so no two services
//!   (of one type or not) and no app ever want the same one.

use std::net::Ipv4Addr;

/// The last byte of the first service address, `127.1.0.2`.
pub const FIRST: u8 = 2;
/// The last byte of the last service address, `127.1.0.199`: every address has a port in
/// each private block.
pub const LAST: u8 = 199;
/// Ports per private block: one per last byte below it.
pub const BLOCK: u16 = 200;

/// The `n`th service address of an environment (`n` from [`FIRST`] to [`LAST`]).
pub fn address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, 0, n)
}

/// Every service address an environment may give, lowest first.
pub fn addresses() -> impl Iterator<Item = Ipv4Addr> {
    (FIRST..=LAST).map(address)
}

/// What a private port on `127.0.0.1` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Private {
    /// RabbitMQ's Erlang distribution port (its node registers it with its own epmd).
    RabbitmqDistribution,
    /// The Erlang port mapper (epmd) of one RabbitMQ service: its own, so that two nodes of
    /// one environment never meet in one name table (a node keeps the name its data was
    /// made under, which another service of the environment may have too).
    RabbitmqEpmd,
    /// Chromium's DevTools, published on the service's address by `socat`.
    ChromiumDevtools,
    /// Varnish's listener for the router (routes to a varnish service).
    VarnishRoute,
    /// Varnish's management interface (`varnishadm`).
    VarnishAdmin,
}

impl Private {
    /// Every purpose, in block order.
    pub const ALL: [Private; 5] = [
        Private::RabbitmqDistribution,
        Private::RabbitmqEpmd,
        Private::ChromiumDevtools,
        Private::VarnishRoute,
        Private::VarnishAdmin,
    ];

    /// The first port of its block (Chromium, Varnish: the ports they had before blocks
    /// were named, so a service started by an older Slipway is still reached).
    fn base(self) -> u16 {
        match self {
            Private::RabbitmqDistribution => 9100,
            Private::RabbitmqEpmd => 8900,
            Private::ChromiumDevtools => 9300,
            Private::VarnishRoute => 9500,
            Private::VarnishAdmin => 9700,
        }
    }
}

/// The private port of the service at `address` for `purpose`.
pub fn private(purpose: Private, address: Ipv4Addr) -> u16 {
    purpose.base() + u16::from(address.octets()[3])
}

/// The port a service of `service_type` listens on at its own address: its
/// relationships' port.
pub fn public(service_type: &str) -> Option<u16> {
    slipway_config::catalog::service_kind(service_type).map(|k| k.port)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn private_ports_never_collide_with_each_other_apps_or_epmd() {
        let mut seen: HashMap<u16, (Private, Ipv4Addr)> = HashMap::new();
        for purpose in Private::ALL {
            for a in addresses() {
                let p = private(purpose, a);
                assert!(p < 10_000, "{purpose:?} {a}: {p} is an app's port");
                assert_ne!(p, 4369, "epmd");
                if let Some(other) = seen.insert(p, (purpose, a)) {
                    panic!("{p}: {purpose:?} {a} and {other:?}");
                }
            }
        }
        assert_eq!(
            seen.len(),
            Private::ALL.len() * usize::from(LAST - FIRST + 1)
        );
        // The ports services had before: unchanged.
        assert_eq!(private(Private::VarnishRoute, address(3)), 9503);
        assert_eq!(private(Private::ChromiumDevtools, address(2)), 9302);
        // Below every app port.
        assert!(crate::environment::port_for(0, 0) >= 10_000);
    }

    #[test]
    fn public_ports_are_the_relationships_ports() {
        assert_eq!(public("redis"), Some(6379));
        assert_eq!(public("redis-persistent"), Some(6379));
        assert_eq!(public("postgresql"), Some(5432));
        assert_eq!(public("mysql"), Some(3306));
        assert_eq!(public("memcached"), Some(11211));
        assert_eq!(public("rabbitmq"), Some(5672));
        assert_eq!(public("chrome-headless"), Some(9222));
        assert_eq!(public("influxdb"), Some(8086));
        assert_eq!(public("varnish"), Some(8080));
        assert_eq!(public("nosuch"), None);
    }
}
