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

/// What a deploy was and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeployLabels {
    /// `push`, `rollback` or `redeploy` (a `var set|unset` redeploys too).
    pub kind: &'static str,
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Upper bounds (seconds) of the deploy and build duration buckets.
const DURATION_BUCKETS: [f64; 10] = [1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 900.0];

fn durations() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Duration histograms by labels.
type Durations<L = Outcome> = Family<L, Histogram, fn() -> Histogram>;

/// Pushes received (one per `git push`, whatever its refs).
static PUSHES: LazyLock<Counter> = LazyLock::new(Counter::default);
/// Deploys (one per branch deployed by a push, and each rollback and redeploy) by kind and
/// result.
static DEPLOYS: LazyLock<Family<DeployLabels, Counter>> = LazyLock::new(Family::default);
/// Deploy durations by kind and result.
static DEPLOY_SECONDS: LazyLock<Durations<DeployLabels>> =
    LazyLock::new(|| Family::new_with_constructor(durations as fn() -> Histogram));
/// Builds (the build phase of a deploy: every changed app) by result.
static BUILDS: LazyLock<Family<Outcome, Counter>> = LazyLock::new(Family::default);
/// Build durations by result.
static BUILD_SECONDS: LazyLock<Durations> =
    LazyLock::new(|| Family::new_with_constructor(durations as fn() -> Histogram));

/// The environment (`PROJECT/ENV`) and kind (`app`, `worker`, `service`) of a restarted
/// container.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RestartLabels {
    /// `PROJECT/ENV`.
    pub environment: String,
    /// `app`, `worker` or `service`.
    pub kind: &'static str,
}

/// Containers that exited while serving and were started again ([`crate::supervise`]).
static CONTAINER_RESTARTS: LazyLock<Family<RestartLabels, Counter>> =
    LazyLock::new(Family::default);

/// Count a container of `environment` (`PROJECT/ENV`) of `kind` started again after it
/// exited.
pub fn container_restarted(environment: &str, kind: &'static str) {
    CONTAINER_RESTARTS
        .get_or_create(&RestartLabels {
            environment: environment.to_string(),
            kind,
        })
        .inc();
}

/// Count a push received.
pub fn push_received() {
    PUSHES.inc();
}

/// Count a deploy of `kind` (`push`, `rollback`, `redeploy`) that ended (`ok`: its release
/// went live) after `took`.
pub fn deploy_ended(kind: &'static str, ok: bool, took: Duration) {
    let labels = DeployLabels {
        kind,
        result: Outcome::of(ok).result,
    };
    DEPLOYS.get_or_create(&labels).inc();
    DEPLOY_SECONDS
        .get_or_create(&labels)
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
    registry.register(
        "slipway_deploys",
        "Deploys by kind (push, rollback, redeploy) and result",
        DEPLOYS.clone(),
    );
    registry.register(
        "slipway_deploy_duration_seconds",
        "Deploy durations (start to live, or to failure) by kind and result",
        DEPLOY_SECONDS.clone(),
    );
    registry.register(
        "slipway_container_restarts",
        "Containers that exited while serving and were started again, by environment and kind (app, worker, service)",
        CONTAINER_RESTARTS.clone(),
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

/// What is measured on disk at each scrape: the slug archive's blobs and the volumes'
/// disk use. Register with `registry.register_collector(Box::new(DiskCollector::new(..)))`.
#[derive(Debug)]
pub struct DiskCollector {
    blobs: std::path::PathBuf,
    volumes: crate::volumes::VolumeStore,
}

impl DiskCollector {
    /// The collector of `platform`'s archive and volumes.
    pub fn new(platform: &crate::Platform) -> DiskCollector {
        DiskCollector {
            blobs: platform.archive().root().join("blobs").join("sha256"),
            volumes: platform.data().volumes(),
        }
    }
}

/// The files directly in `dir`: (how many, bytes of their contents).
fn files_in(dir: &std::path::Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .fold((0, 0), |(n, bytes), m| (n + 1, bytes + m.len()))
}

/// Each volume of every environment (`PROJECT/ENV/NAME.img`, listed by the store):
/// (environment, volume, bytes the image takes on disk).
fn volume_images(store: &crate::volumes::VolumeStore) -> Vec<(String, String, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let dirs = |p: &std::path::Path| -> Vec<String> {
        std::fs::read_dir(p)
            .map(|it| {
                it.filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for project in dirs(store.root()) {
        for env in dirs(&store.root().join(&project)) {
            for volume in store.volumes(&project, &env).unwrap_or_default() {
                if let Ok(meta) = std::fs::metadata(&volume.image) {
                    out.push((format!("{project}/{env}"), volume.name, meta.blocks() * 512));
                }
            }
        }
    }
    out.sort();
    out
}

impl prometheus_client::collector::Collector for DiskCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::MetricType;
        let (blobs, bytes) = files_in(&self.blobs);
        let gauge = |v: u64| ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
        gauge(bytes).encode(encoder.encode_descriptor(
            "slipway_archive_bytes",
            "Bytes of the slug archive's blobs (slugs, layers, release images)",
            None,
            MetricType::Gauge,
        )?)?;
        gauge(blobs).encode(encoder.encode_descriptor(
            "slipway_archive_blobs",
            "Blobs in the slug archive",
            None,
            MetricType::Gauge,
        )?)?;
        let mut metric = encoder.encode_descriptor(
            "slipway_volume_disk_bytes",
            "Bytes a volume's image takes on disk, by environment and volume",
            None,
            MetricType::Gauge,
        )?;
        for (env, volume, bytes) in volume_images(&self.volumes) {
            let labels = [("environment", env.as_str()), ("volume", volume.as_str())];
            gauge(bytes).encode(metric.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
