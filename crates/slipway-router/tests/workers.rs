//! The router with several worker threads, whatever the CPU count of the machine: one
//! route table seen by every worker at once, a hold that holds the requests of every
//! worker, draining and stopping that wait for requests on every worker, and metrics that
//! count the requests of all workers.
//!
//! Client connections are handed to the workers in turn, in the order they are accepted:
//! the tests open their connections one after the other (each answered once before the
//! next is opened), so consecutive connections are served by different workers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hyper::client::conn::http1::SendRequest;
use hyper::StatusCode;
use slipway_router::{EnvRoutes, RouterConfig};

const ENV: &str = "demo/main";
const HOST: &str = "main.demo.localhost";

fn hosts() -> Vec<String> {
    vec![HOST.to_string()]
}

fn with_workers(workers: usize) -> RouterConfig {
    RouterConfig {
        workers: Some(workers),
        ..RouterConfig::default()
    }
}

/// `n` kept-alive client connections, opened one after the other, each answered once by
/// `expect` (so the router accepted it, in this order, before the next one is opened).
async fn connections(
    addr: std::net::SocketAddr,
    n: usize,
    expect: &str,
) -> Vec<SendRequest<TestBody>> {
    let mut all = Vec::new();
    for _ in 0..n {
        let mut c = client(addr).await;
        let answer = within(10, get(&mut c, HOST, "/")).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, expect);
        all.push(c);
    }
    all
}

/// The names of this process's threads that are router workers of plain HTTP.
fn worker_threads() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(name) = std::fs::read_to_string(task.path().join("comm")) {
                let name = name.trim().to_string();
                if name.starts_with("router-") && !name.starts_with("router-tls") {
                    names.push(name);
                }
            }
        }
    }
    names
}

/// The value of the sample `series` (exactly as written) in a text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_and_a_switch_reach_the_requests_of_every_worker() {
    let a = upstream("upstream-a").await;
    let b = upstream("upstream-b").await;
    let r = start_router(with_workers(2)).await;
    r.router
        .switch(ENV, EnvRoutes::single(hosts(), up("r-a", a.port)))
        .unwrap();
    let conns = connections(r.addr, 4, "upstream-a").await;
    let threads = worker_threads();
    for name in ["router-0", "router-1"] {
        assert!(
            threads.iter().any(|t| t == name),
            "no worker thread {name}: {threads:?}"
        );
    }

    // Held: a request on each connection (two on each worker) waits, none reaches an app.
    let hold = r.router.hold(ENV);
    let mut held = Vec::new();
    for mut c in conns {
        held.push(tokio::spawn(async move {
            let answer = get(&mut c, HOST, "/").await;
            (answer, c)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        held.iter().all(|h| !h.is_finished()),
        "a request went on during the hold"
    );
    assert_eq!(a.hits(), 4, "a held request reached the old release");
    assert_eq!(b.hits(), 0);

    // The switch under the hold, then the hold ends: every worker's held request goes to
    // the new release, none to the old one.
    let old = r
        .router
        .switch(ENV, EnvRoutes::single(hosts(), up("r-b", b.port)))
        .unwrap()
        .expect("the old release");
    drop(hold);
    let mut conns = Vec::new();
    for h in held {
        let (answer, c) = within(10, h).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "upstream-b");
        conns.push(c);
    }
    assert_eq!(a.hits(), 4);
    assert_eq!(b.hits(), 4);
    assert!(old.drained(Duration::from_secs(2)).await);

    // And without a hold, the next request of every connection sees the next switch.
    r.router
        .switch(ENV, EnvRoutes::single(hosts(), up("r-a2", a.port)))
        .unwrap();
    for c in &mut conns {
        assert_eq!(within(10, get(c, HOST, "/")).await.body, "upstream-a");
    }
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_release_drains_the_requests_of_every_worker() {
    let a = upstream("upstream-a").await;
    let b = upstream("upstream-b").await;
    let r = start_router(with_workers(2)).await;
    r.router
        .switch(ENV, EnvRoutes::single(hosts(), up("r-a", a.port)))
        .unwrap();
    let conns = connections(r.addr, 4, "upstream-a").await;

    // A slow request on each connection: two in flight on each worker.
    let mut slow = Vec::new();
    for mut c in conns {
        slow.push(tokio::spawn(
            async move { get(&mut c, HOST, "/slow").await },
        ));
    }
    within(10, async {
        while a.hits() < 8 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    let old = r
        .router
        .switch(ENV, EnvRoutes::single(hosts(), up("r-b", b.port)))
        .unwrap()
        .expect("the old release");
    assert_eq!(
        old.in_flight(),
        4,
        "in flight on the old release, all workers"
    );
    assert!(!old.drained(Duration::from_millis(200)).await);
    // New connections, on both workers, go to the new release meanwhile.
    let fresh = connections(r.addr, 2, "upstream-b").await;
    assert_eq!(old.in_flight(), 4);

    release_all(&a, &slow).await;
    for s in slow {
        let answer = within(10, s).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "upstream-a", "finished on the old release");
    }
    assert!(old.drained(Duration::from_secs(2)).await);
    assert_eq!(old.in_flight(), 0);
    drop(fresh);
    r.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_router_lets_the_requests_of_every_worker_finish() {
    let a = upstream("upstream-a").await;
    let mut r = start_router(with_workers(2)).await;
    r.router
        .switch(ENV, EnvRoutes::single(hosts(), up("r-a", a.port)))
        .unwrap();
    let conns = connections(r.addr, 4, "upstream-a").await;
    let mut slow = Vec::new();
    for mut c in conns {
        slow.push(tokio::spawn(
            async move { get(&mut c, HOST, "/slow").await },
        ));
    }
    within(10, async {
        while a.hits() < 8 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;

    r.trigger_stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !r.served.is_finished(),
        "serve returned with requests in flight"
    );
    release_all(&a, &slow).await;
    for s in slow {
        let answer = within(10, s).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body, "upstream-a");
    }
    within(10, &mut r.served).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_requests_of_every_worker() {
    let a = upstream("upstream-a").await;
    let r = start_router(with_workers(3)).await;
    r.router
        .switch(ENV, EnvRoutes::single(hosts(), up("r-a", a.port)))
        .unwrap();
    // Six connections, two on each worker, 20 requests each from concurrent tasks.
    let conns = connections(r.addr, 6, "upstream-a").await;
    let mut tasks = Vec::new();
    for mut c in conns {
        tasks.push(tokio::spawn(async move {
            for _ in 0..20 {
                assert_eq!(get(&mut c, HOST, "/").await.status, StatusCode::OK);
            }
        }));
    }
    for t in tasks {
        within(30, t).await.unwrap();
    }
    let unknown = get_once(r.addr, "nowhere.localhost", "/").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(r.router.collector()));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let env = "environment=\"demo/main\"";
    assert_eq!(
        sample(
            &text,
            &format!("slipway_router_requests_total{{{env},class=\"2xx\"}}")
        ),
        Some(126.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("slipway_router_request_duration_seconds_count{{{env}}}")
        ),
        Some(126.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "slipway_router_requests_total{environment=\"\",class=\"4xx\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(a.hits(), 126);
    r.stop().await.unwrap();
}

/// Let every `/slow` request of `a` finish: wake its waiting answers until all of
/// `requests` are done (a wake-up before an answer waits is not kept).
async fn release_all<T>(a: &TestUpstream, requests: &[tokio::task::JoinHandle<T>]) {
    let state = Arc::clone(&a.state);
    within(10, async {
        while !requests.iter().all(|r| r.is_finished()) {
            state.release.notify_waiters();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}
