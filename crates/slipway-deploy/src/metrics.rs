//! Prometheus metrics of pushes, deploys and builds (`slipway serve --metrics-listen`):
//! process-wide, counted where a push is handled, a deploy ends and the builds of a push
//! end. [`register`] adds them to a registry.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// How a deploy or a build ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// `success` or `failure`.
    pub result: &'static str,
}

impl Outcome {
    fn of(ok: bool) -> Outcome {
        Outcome {
            result: if ok { "success" } else { "failure" },
        }
    }
}

/// Upper bounds (seconds) of the deploy and build duration buckets.
const DURATION_BUCKETS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 900.0];

fn durations() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Duration histograms by outcome.
type Durations = Family<Outcome, Histogram, fn() -> Histogram>;

/// Pushes received (one per `git push`, whatever its refs).
static PUSHES: LazyLock<Counter> = LazyLock::new(Counter::default);
/// Deploys (one per branch deployed by a push) by result.
static DEPLOYS: LazyLock<Family<Outcome, Counter>> = LazyLock::new(Family::default);
/// Deploy durations by result.
static DEPLOY_SECONDS: LazyLock<Durations> =
    LazyLock::new(|| Family::new_with_constructor(durations as fn() -> Histogram));
/// Builds (the build phase of a deploy: every changed app) by result.
static BUILDS: LazyLock<Family<Outcome, Counter>> = LazyLock::new(Family::default);
/// Build durations by result.
static BUILD_SECONDS: LazyLock<Durations> =
    LazyLock::new(|| Family::new_with_constructor(durations as fn() -> Histogram));

/// Count a push received.
pub fn push_received() {
    PUSHES.inc();
}

/// Count a deploy that ended (`ok`: its release went live) after `took`.
pub fn deploy_ended(ok: bool, took: Duration) {
    DEPLOYS.get_or_create(&Outcome::of(ok)).inc();
    DEPLOY_SECONDS
        .get_or_create(&Outcome::of(ok))
        .observe(took.as_secs_f64());
}

/// Count a build phase that ended after `took`.
pub fn build_ended(ok: bool, took: Duration) {
    BUILDS.get_or_create(&Outcome::of(ok)).inc();
    BUILD_SECONDS
        .get_or_create(&Outcome::of(ok))
        .observe(took.as_secs_f64());
}

/// Add the metrics of pushes, deploys and builds to `registry` (prefix `slipway_`).
pub fn register(registry: &mut Registry) {
    registry.register("slipway_pushes", "Pushes received", PUSHES.clone());
    registry.register("slipway_deploys", "Deploys by result", DEPLOYS.clone());
    registry.register(
        "slipway_deploy_duration_seconds",
        "Deploy durations (push to live, or to failure) by result",
        DEPLOY_SECONDS.clone(),
    );
    registry.register(
        "slipway_builds",
        "Build phases of deploys by result",
        BUILDS.clone(),
    );
    registry.register(
        "slipway_build_duration_seconds",
        "Build phase durations by result",
        BUILD_SECONDS.clone(),
    );
}
