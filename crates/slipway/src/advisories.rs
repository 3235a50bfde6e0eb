//! `slipway advisories import|ls`, the advisory check of `slipway config check`, and the
//! daily refresh of `serve --advisories-url`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Subcommand;
use slipway_advisories::{lockfiles, Database, Lockfile};

use crate::{internal, user_error, DataDirArg, Failure};

/// How often `serve --advisories-url` refreshes the database.
pub const REFRESH_EVERY: Duration = Duration::from_secs(24 * 3600);

/// `slipway advisories ...`
#[derive(Subcommand)]
pub enum AdvisoriesCmd {
    /// Import OSV advisories: a JSON file, a folder of them, or an OSV `all.zip` dump
    /// (e.g. the per-ecosystem dumps OSV publishes). All or nothing: a corrupt file refuses
    /// the whole import and the database stays as it was.
    Import {
        #[command(flatten)]
        data: DataDirArg,
        /// `FILE.json`, `FILE.zip` or a folder (read recursively).
        path: PathBuf,
        /// Print what was imported as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Scan files or folders (recursively, `.git` skipped) for committed secrets with the
    /// rules a push is checked with; exits 1 when one is found.
    ScanSecrets {
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// The ecosystems of the advisory database, with counts and ages.
    Ls {
        #[command(flatten)]
        data: DataDirArg,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `1d 3h`, `5m`: how long ago `at` (seconds since the epoch) was.
fn age(at: i64) -> String {
    let s = (now() - at).max(0);
    if s >= 86_400 {
        format!("{}d {}h", s / 86_400, (s % 86_400) / 3600)
    } else if s >= 3600 {
        format!("{}h {}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m", s / 60)
    }
}

/// Run `slipway advisories ...`.
pub fn run(cmd: AdvisoriesCmd) -> Result<u8, Failure> {
    match cmd {
        AdvisoriesCmd::Import { data, path, json } => {
            slipway_deploy::private::make_private(&data.data_dir)
                .with_context(|| format!("creating {} (private)", data.data_dir.display()))
                .map_err(internal)?;
            let (advisories, mut stats) = slipway_advisories::load_path(&path)
                .map_err(|e| user_error(anyhow::anyhow!("nothing imported: {e}")))?;
            let mut db = Database::open(&data.data_dir).map_err(internal)?;
            let written = db.import(&advisories).map_err(internal)?;
            stats.advisories = written.advisories;
            stats.withdrawn = written.withdrawn;
            if json {
                println!("{}", serde_json::to_string(&stats).map_err(internal)?);
            } else {
                println!(
                    "imported {} advisor{} from {} file{} ({} withdrawn) into {}",
                    stats.advisories,
                    if stats.advisories == 1 { "y" } else { "ies" },
                    stats.files,
                    if stats.files == 1 { "" } else { "s" },
                    stats.withdrawn,
                    Database::path_in(&data.data_dir).display()
                );
            }
            Ok(0)
        }
        AdvisoriesCmd::ScanSecrets { paths } => scan_secrets(&paths),
        AdvisoriesCmd::Ls { data, json } => {
            let summary = if Database::exists_in(&data.data_dir) {
                Database::open(&data.data_dir)
                    .and_then(|db| db.summary())
                    .map_err(internal)?
            } else {
                Vec::new()
            };
            if json {
                println!("{}", serde_json::to_string(&summary).map_err(internal)?);
                return Ok(0);
            }
            if summary.is_empty() {
                println!("no advisories: import some with `slipway advisories import FILE|DIR`");
                return Ok(0);
            }
            println!("ECOSYSTEM\tADVISORIES\tPACKAGES\tNEWEST\tIMPORTED");
            for s in summary {
                println!(
                    "{}\t{}\t{}\t{}\t{} ago",
                    s.ecosystem,
                    s.advisories,
                    s.packages,
                    s.newest_modified,
                    age(s.imported_at)
                );
            }
            Ok(0)
        }
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        if path.file_name().is_some_and(|n| n == ".git") {
            return Ok(());
        }
        for e in std::fs::read_dir(path)? {
            collect_files(&e?.path(), out)?;
        }
    } else if meta.is_file() {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// `slipway advisories scan-secrets PATH...`
fn scan_secrets(paths: &[PathBuf]) -> Result<u8, Failure> {
    let mut files = Vec::new();
    for p in paths {
        collect_files(p, &mut files)
            .with_context(|| format!("reading {}", p.display()))
            .map_err(user_error)?;
    }
    let started = std::time::Instant::now();
    let (mut bytes, mut found) = (0u64, 0usize);
    for f in &files {
        let content = std::fs::read(f)
            .with_context(|| format!("reading {}", f.display()))
            .map_err(user_error)?;
        bytes += content.len() as u64;
        for s in slipway_advisories::secrets::scan(&f.display().to_string(), &content) {
            println!("{}", s.message());
            found += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "scanned {} files, {:.1} MB in {secs:.3}s ({:.0} MB/s): {found} secret{}",
        files.len(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs.max(1e-9),
        if found == 1 { "" } else { "s" }
    );
    Ok(u8::from(found > 0))
}

/// The lockfiles of each app root of a working tree, as a push of it would carry them
/// (`source`'s walk: what `.gitignore` leaves out is not there); paths relative to its root.
fn working_tree_lockfiles(
    source: &slipway_config::DirSource,
    topology: &slipway_config::Topology,
) -> Result<Vec<Lockfile>, Failure> {
    use slipway_config::ConfigSource;
    let mut roots: Vec<String> = topology
        .applications
        .iter()
        .map(|a| a.source_root.trim_matches('/').to_string())
        .collect();
    roots.sort();
    roots.dedup();
    let mut out = Vec::new();
    for root in roots {
        for (name, _) in lockfiles::LOCKFILES {
            let rel = if root.is_empty() || root == "." {
                name.to_string()
            } else {
                format!("{root}/{name}")
            };
            let read = source
                .read_file(&rel)
                .with_context(|| format!("reading {rel}"))
                .map_err(user_error)?;
            if let Some(bytes) = read {
                out.push(Lockfile { path: rel, bytes });
            }
        }
    }
    Ok(out)
}

/// The advisory check of `slipway config check` of the working tree `source`: prints the
/// findings; `Ok(true)` when a critical one (not named by `allowed`) would refuse a push.
pub fn check_working_tree(
    source: &slipway_config::DirSource,
    data_dir: &Path,
    topology: &slipway_config::Topology,
    allowed: &[String],
    json: bool,
) -> Result<bool, Failure> {
    if !Database::exists_in(data_dir) {
        eprintln!(
            "note: no advisory database in {} (import one with `slipway advisories import`); lockfiles not checked",
            data_dir.display()
        );
        return Ok(false);
    }
    let files = working_tree_lockfiles(source, topology)?;
    let db = Database::open(data_dir).map_err(internal)?;
    let report = slipway_advisories::audit(&db, &files, allowed).map_err(internal)?;
    if json {
        eprintln!("{}", serde_json::to_string(&report).map_err(internal)?);
    } else {
        for m in &report.malformed {
            eprintln!("{m}");
        }
        for f in &report.findings {
            eprintln!("{}", f.line());
        }
    }
    Ok(report.refuses())
}

/// `serve --advisories-url URL`: fetch each URL (an OSV JSON file or `all.zip`, `file://`
/// or a path also work) with curl and import it, now and then every [`REFRESH_EVERY`].
/// A failure is logged and the database stays as it was.
pub async fn refresh_forever(data_dir: PathBuf, urls: Vec<String>) {
    if urls.is_empty() {
        return;
    }
    loop {
        for url in &urls {
            let data_dir = data_dir.clone();
            let url2 = url.clone();
            let r = tokio::task::spawn_blocking(move || refresh_once(&data_dir, &url2)).await;
            match r {
                Ok(Ok(n)) => tracing::info!(url = %url, advisories = n, "advisories refreshed"),
                Ok(Err(e)) => tracing::warn!(url = %url, "advisories not refreshed: {e:#}"),
                Err(e) => tracing::warn!(url = %url, "advisories not refreshed: {e}"),
            }
        }
        tokio::time::sleep(REFRESH_EVERY).await;
    }
}

fn refresh_once(data_dir: &Path, url: &str) -> anyhow::Result<usize> {
    let local = url.strip_prefix("file://").unwrap_or(url);
    let tmp;
    let path = if Path::new(local).exists() {
        PathBuf::from(local)
    } else {
        let dir = data_dir.join("advisories");
        std::fs::create_dir_all(&dir)?;
        let ext = if url.ends_with(".json") {
            ".json"
        } else {
            ".zip"
        };
        tmp = tempfile::Builder::new().suffix(ext).tempfile_in(&dir)?;
        let status = std::process::Command::new("curl")
            .args(["-fsSL", "--max-time", "900", "-o"])
            .arg(tmp.path())
            .arg(url)
            .status()
            .context("running curl")?;
        anyhow::ensure!(status.success(), "curl {url}: {status}");
        tmp.path().to_path_buf()
    };
    let (advisories, _) = slipway_advisories::load_path(&path)?;
    let mut db = Database::open(data_dir)?;
    Ok(db.import(&advisories)?.advisories)
}
