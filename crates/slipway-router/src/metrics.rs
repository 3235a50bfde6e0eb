//! The router's Prometheus metrics: per environment, requests by status class and by
//! status, a latency histogram, requests in flight, upgraded (WebSocket) connections open and upstream
//! connect errors.
//!
//! Counting costs a few relaxed atomic additions per request on counters the request's
//! release points to ([`EnvStats`], one per environment, kept across its releases): no
//! lock and no label lookup on the request path. The labels are written only when
//! Prometheus scrapes ([`RouterCollector`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::router::Router;

/// Upper bounds (seconds) of the request latency histogram's buckets (+Inf is implied).
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The environment label of requests no environment answered (unknown host, first
/// deploy in progress).
pub const ROUTER_ENVIRONMENT: &str = "";

/// The lowest status counted by its own value ([`EnvStats::statuses`]).
const FIRST_STATUS: u16 = 100;

/// How many statuses are counted by their own value: 100 to 599.
const STATUSES: usize = 500;

/// The request counters of one environment.
#[derive(Debug)]
pub(crate) struct EnvStats {
    /// Answers by status class: 1xx (and anything else), 2xx, 3xx, 4xx, 5xx.
    classes: [AtomicU64; 5],
    /// Answers by status, 100 to 599 (one counter each, made with the environment, so
    /// counting one is an index and an atomic addition); a status outside that range
    /// counts under its class only.
    statuses: Box<[AtomicU64; STATUSES]>,
    /// Requests per latency bucket (the last one: above every bound).
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of the latencies, in microseconds.
    sum_micros: AtomicU64,
    /// Upstream connections that could not be made.
    connect_errors: AtomicU64,
    /// Upgraded (WebSocket) connections open now, whichever release they are on.
    open_upgrades: AtomicU64,
}

/// Counts one upgraded connection as open on its environment until dropped.
pub(crate) struct OpenUpgrade(Arc<EnvStats>);

impl Drop for OpenUpgrade {
    fn drop(&mut self) {
        self.0.open_upgrades.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for EnvStats {
    fn default() -> Self {
        EnvStats {
            classes: Default::default(),
            statuses: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: Default::default(),
            sum_micros: AtomicU64::new(0),
            connect_errors: AtomicU64::new(0),
            open_upgrades: AtomicU64::new(0),
        }
    }
}

impl EnvStats {
    /// Count one answer with `status`, `elapsed` after the request head was read.
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        let class = match status / 100 {
            2 => 1,
            3 => 2,
            4 => 3,
            5 => 4,
            _ => 0,
        };
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = status
            .checked_sub(FIRST_STATUS)
            .and_then(|i| self.statuses.get(usize::from(i)))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Count an upstream connection that could not be made.
    pub(crate) fn connect_error(&self) {
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Count an upgraded connection of `stats`' environment as open until the returned
    /// value is dropped (when the connection closes).
    pub(crate) fn upgrade_opened(stats: &Arc<EnvStats>) -> OpenUpgrade {
        stats.open_upgrades.fetch_add(1, Ordering::Relaxed);
        OpenUpgrade(Arc::clone(stats))
    }
}

/// The counters of every environment the router routed since it started.
#[derive(Debug, Default)]
pub(crate) struct AllStats {
    by_env: Mutex<HashMap<String, Arc<EnvStats>>>,
    /// The router's own answers to requests of no environment.
    pub(crate) unrouted: Arc<EnvStats>,
}

impl AllStats {
    /// The counters of `env` (made on its first switch).
    pub(crate) fn of(&self, env: &str) -> Arc<EnvStats> {
        let mut map = self.by_env.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(map.entry(env.to_string()).or_default())
    }

    fn snapshot(&self) -> Vec<(String, Arc<EnvStats>)> {
        let map = self.by_env.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(String, Arc<EnvStats>)> = map
            .iter()
            .map(|(env, stats)| (env.clone(), Arc::clone(stats)))
            .collect();
        all.push((ROUTER_ENVIRONMENT.to_string(), Arc::clone(&self.unrouted)));
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// The router's metrics for a `prometheus_client` registry
/// (`registry.register_collector(Box::new(router.collector()))`).
#[derive(Debug)]
pub struct RouterCollector {
    router: Weak<Router>,
}

impl Router {
    /// A Prometheus collector of this router's metrics (`slipway_router_*`).
    pub fn collector(self: &Arc<Self>) -> RouterCollector {
        RouterCollector {
            router: Arc::downgrade(self),
        }
    }
}

impl Collector for RouterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(router) = self.router.upgrade() else {
            return Ok(());
        };
        let all = router.stats.snapshot();
        let table = router.table.load();
        const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        {
            let mut metric = encoder.encode_descriptor(
                "slipway_router_requests",
                "Requests answered, by environment (PROJECT/ENV; empty: no environment) and status class",
                None,
                MetricType::Counter,
            )?;
            for (env, stats) in &all {
                for (i, class) in CLASSES.iter().enumerate() {
                    let labels = [("environment", env.as_str()), ("class", class)];
                    let value = stats.classes[i].load(Ordering::Relaxed);
                    ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "slipway_router_responses",
                "Requests answered, by environment (PROJECT/ENV; empty: no environment) and status (those answered at least once)",
                None,
                MetricType::Counter,
            )?;
            for (env, stats) in &all {
                for (i, counter) in stats.statuses.iter().enumerate() {
                    let value = counter.load(Ordering::Relaxed);
                    if value == 0 {
                        continue;
                    }
                    let status = (FIRST_STATUS as usize + i).to_string();
                    let labels = [("environment", env.as_str()), ("status", status.as_str())];
                    ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "slipway_router_request_duration_seconds",
                "Time from a request's head to its answer's head, by environment",
                None,
                MetricType::Histogram,
            )?;
            for (env, stats) in &all {
                let labels = [("environment", env.as_str())];
                let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
                let mut count = 0;
                for (i, n) in stats.buckets.iter().enumerate() {
                    let n = n.load(Ordering::Relaxed);
                    count += n;
                    buckets.push((LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::MAX), n));
                }
                let sum = stats.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                metric
                    .encode_family(&labels)?
                    .encode_histogram::<[(&str, &str); 0]>(sum, count, &buckets, None)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "slipway_router_in_flight_requests",
                "Requests of an environment's live release not answered completely yet",
                None,
                MetricType::Gauge,
            )?;
            for (env, _) in all.iter().filter(|(env, _)| !env.is_empty()) {
                let in_flight = table.release_of(env).map_or(0, |r| r.in_flight());
                let labels = [("environment", env.as_str())];
                ConstGauge::new(in_flight as i64).encode(metric.encode_family(&labels)?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "slipway_router_open_upgrades",
                "Upgraded (WebSocket) connections of an environment open now",
                None,
                MetricType::Gauge,
            )?;
            for (env, stats) in all.iter().filter(|(env, _)| !env.is_empty()) {
                let labels = [("environment", env.as_str())];
                let open = stats.open_upgrades.load(Ordering::Relaxed);
                ConstGauge::new(i64::try_from(open).unwrap_or(i64::MAX))
                    .encode(metric.encode_family(&labels)?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "slipway_router_upstream_connect_errors",
                "Connections to an environment's apps that could not be made",
                None,
                MetricType::Counter,
            )?;
            for (env, stats) in all.iter().filter(|(env, _)| !env.is_empty()) {
                let labels = [("environment", env.as_str())];
                let value = stats.connect_errors.load(Ordering::Relaxed);
                ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Serve the metrics of `registry` in the text exposition format (OpenMetrics, which
/// Prometheus reads) at every path of `listener`, until `shutdown` resolves.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    registry: Arc<prometheus_client::registry::Registry>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper::header::{HeaderValue, CONTENT_TYPE};
    use hyper_util::rt::TokioIo;
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req| {
                let registry = Arc::clone(&registry);
                async move {
                    let mut text = String::new();
                    let mut resp =
                        match prometheus_client::encoding::text::encode(&mut text, &registry) {
                            Ok(()) => hyper::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(text),
                            )),
                            Err(_) => {
                                let mut resp = hyper::Response::new(http_body_util::Full::new(
                                    bytes::Bytes::from_static(b"encoding the metrics failed\n"),
                                ));
                                *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                                resp
                            }
                        };
                    resp.headers_mut().insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "metrics connection ended with an error");
            }
        });
    }
}
