//! Prometheus metrics (issue 15, spec section 11): `serve --metrics-listen` serves the
//! router's requests by environment and status class, latencies, in-flight requests and
//! upstream connect errors, pushes, deploys by kind (push, rollback, redeploy) and result,
//! and builds by result.

use std::time::Duration;

use slipway_e2e::{free_port, metric_sample, scrape_metrics, text, App, Server};

#[test]
fn metrics_count_pushes_deploys_builds_and_router_requests() {
    let metrics_port = free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let server = Server::start_with(&[("SLIPWAY_METRICS_LISTEN", &listen)]);
    let before = scrape_metrics(metrics_port);
    assert!(
        before.contains("content-type: application/openmetrics-text"),
        "{before}"
    );
    assert_eq!(
        metric_sample(&before, "slipway_pushes_total"),
        Some(0.0),
        "{before}"
    );

    let app = App::demo(server.dir.path(), "m-app");
    // With a volume (disk + a local mount), for its disk use.
    app.write(
        ".platform.app.yaml",
        "name: hello\ntype: python:3.11\ndisk: 64\nmounts:\n  data:\n    source: local\n    source_path: data\nhooks:\n  build: |\n    set -e\n    echo \"built-$(cat VERSION)\" > build.txt\nweb:\n  commands:\n    start: python3 server.py\n",
    );
    app.write(
        ".platform/routes.yaml",
        "\"http://{default}/\":\n    type: upstream\n    upstream: \"hello:http\"\n\"http://{default}/old\":\n    type: redirect\n    to: \"http://{default}/\"\n",
    );
    app.commit("with a volume and a redirect");
    server.push_ok(&app, "m");
    for _ in 0..3 {
        assert_eq!(
            server.get("main.m.localhost", "/"),
            Some((200, "built-1\n".to_string()))
        );
    }
    assert_eq!(server.get("nobody.localhost", "/").map(|a| a.0), Some(404));
    assert_eq!(
        server.get("main.m.localhost", "/old").map(|a| a.0),
        Some(301)
    );

    let m = scrape_metrics(metrics_port);
    assert_eq!(metric_sample(&m, "slipway_pushes_total"), Some(1.0), "{m}");
    assert_eq!(
        metric_sample(
            &m,
            "slipway_deploys_total{kind=\"push\",result=\"success\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_sample(&m, "slipway_builds_total{result=\"success\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_sample(
            &m,
            "slipway_deploy_duration_seconds_count{kind=\"push\",result=\"success\"}"
        ),
        Some(1.0),
        "{m}"
    );
    let env = "environment=\"m/main\"";
    assert_eq!(
        metric_sample(
            &m,
            &format!("slipway_router_requests_total{{{env},class=\"2xx\"}}")
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric_sample(
            &m,
            &format!("slipway_router_requests_total{{{env},class=\"5xx\"}}")
        ),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric_sample(
            &m,
            &format!("slipway_router_requests_total{{{env},class=\"3xx\"}}")
        ),
        Some(1.0),
        "the redirect counts on its environment: {m}"
    );
    assert_eq!(
        metric_sample(
            &m,
            "slipway_router_requests_total{environment=\"\",class=\"4xx\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // By status too: the same answers, each under its own status.
    assert_eq!(
        metric_sample(
            &m,
            &format!("slipway_router_responses_total{{{env},status=\"200\"}}")
        ),
        Some(3.0),
        "{m}"
    );
    assert!(
        m.lines().any(|l| l.starts_with(&format!(
            "slipway_router_responses_total{{{env},status=\"30"
        ))),
        "the redirect under its own 3xx status: {m}"
    );
    assert_eq!(
        metric_sample(
            &m,
            "slipway_router_responses_total{environment=\"\",status=\"404\"}"
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric_sample(
            &m,
            &format!("slipway_router_responses_total{{{env},status=\"500\"}}")
        ),
        None,
        "a status never answered has no series: {m}"
    );
    assert_eq!(
        metric_sample(
            &m,
            &format!("slipway_router_request_duration_seconds_count{{{env}}}")
        ),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        metric_sample(
            &m,
            &format!("slipway_router_request_duration_seconds_bucket{{le=\"+Inf\",{env}}}")
        )
        .or_else(|| metric_sample(
            &m,
            &format!("slipway_router_request_duration_seconds_bucket{{{env},le=\"+Inf\"}}")
        )),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        metric_sample(&m, &format!("slipway_router_in_flight_requests{{{env}}}")),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric_sample(
            &m,
            &format!("slipway_router_upstream_connect_errors_total{{{env}}}")
        ),
        Some(0.0),
        "{m}"
    );
    // The archive holds the slug (and the release image); the volume takes some disk.
    assert!(
        metric_sample(&m, "slipway_archive_blobs").unwrap_or(0.0) >= 2.0,
        "{m}"
    );
    assert!(
        metric_sample(&m, "slipway_archive_bytes").unwrap_or(0.0) > 0.0,
        "{m}"
    );
    let volume = m
        .lines()
        .find(|l| l.starts_with(&format!("slipway_volume_disk_bytes{{{env},volume=")))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(volume.unwrap_or(0.0) > 0.0, "volume disk use: {m}");
    assert!(m.trim_end().ends_with("# EOF"), "{m}");

    // Redeploys (one asked for, one a variable change makes) and a rollback are deploys too.
    for command in ["redeploy m main", "var set m main X=1", "rollback m main"] {
        let o = server.ssh(&server.key, "git", command);
        assert!(o.status.success(), "{command}: {}", text(&o));
    }
    let m = scrape_metrics(metrics_port);
    for (kind, n) in [("push", 1.0), ("redeploy", 2.0), ("rollback", 1.0)] {
        let labels = format!("{{kind=\"{kind}\",result=\"success\"}}");
        assert_eq!(
            metric_sample(&m, &format!("slipway_deploys_total{labels}")),
            Some(n),
            "{kind}: {m}"
        );
        assert_eq!(
            metric_sample(
                &m,
                &format!("slipway_deploy_duration_seconds_count{labels}")
            ),
            Some(n),
            "{kind}: {m}"
        );
    }
    assert_eq!(metric_sample(&m, "slipway_pushes_total"), Some(1.0), "{m}");

    // Containers stopped on purpose (`down`) and started again by the next serve are no
    // restarts: only a container that exits while serving counts (tests/supervise.rs).
    let mut server = server;
    server.stop();
    let o = server.slipway(&["down"]);
    assert!(o.status.success(), "down: {}", text(&o));
    server.serve();
    server.wait_for_page("main.m.localhost", "/", Duration::from_secs(60));
    let m = scrape_metrics(metrics_port);
    assert!(!m.contains("slipway_container_restarts_total{"), "{m}");
}

#[test]
fn metrics_are_served_after_serve_upgrade() {
    let metrics_port = free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let mut server = Server::start_with(&[("SLIPWAY_METRICS_LISTEN", &listen)]);
    assert!(scrape_metrics(metrics_port).contains("slipway_pushes_total 0"));
    // The new server takes the metrics socket over from the old one.
    let code = server.upgrade(Duration::from_secs(60), |_| {});
    assert_eq!(code, Some(0), "{}", server.server_log());
    let m = scrape_metrics(metrics_port);
    assert!(m.contains("slipway_pushes_total 0"), "{m}");
}
