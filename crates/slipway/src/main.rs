//! `slipway`: the one binary. `slipway serve` runs the whole server (SSH and
//! HTTP router) in one process; the other subcommands are operator commands
//! working on the data dir (spec sections 1, 2 and 7).
//!
//! Exit codes: 0 ok, 1 a user error, 2 bad usage, 3 an internal failure.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

mod activation;
mod advisories;
mod archive_listing;
mod handover;
mod lock;
mod reload;
mod reload_signal;

/// mimalloc: the router proxies a request in about 6 % fewer instructions than with the
/// system allocator (header maps, buffers, tasks; see docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Slipway: a self-hosted platform-as-a-service driven by `git push` and `ssh`.
#[derive(Parser)]
#[command(name = "slipway", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Args, Clone)]
struct DataDirArg {
    /// Where everything lives: repositories, slug archive, state database, logs.
    #[arg(
        long,
        env = "SLIPWAY_DATA_DIR",
        default_value = "./slipway-data",
        global = true
    )]
    data_dir: PathBuf,
}

/// The OCI runtime `serve` runs containers with; `down` and `archive gc` ask the same one.
#[derive(Args, Clone)]
struct RuntimeArg {
    /// The OCI runtime CLI (runc, crun, youki).
    #[arg(long, env = "SLIPWAY_RUNTIME", default_value = "runc")]
    runtime: PathBuf,
}

/// `slipway down`'s arguments.
#[derive(Args, Clone)]
struct DownArgs {
    #[command(flatten)]
    data: DataDirArg,
    #[command(flatten)]
    runtime: RuntimeArg,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server: SSH (git, admin commands) and the HTTP router.
    Serve(Box<ServeArgs>),
    /// Manage users and their keys (works whether or not the server runs).
    #[command(subcommand)]
    User(UserCmd),
    /// Check configuration files.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Pack slugs.
    #[command(subcommand)]
    Slug(SlugCmd),
    /// Inspect and maintain the slug archive.
    #[command(subcommand)]
    Archive(ArchiveCmd),
    /// Stop every container and network namespace of this data dir; all data stays.
    Down(DownArgs),
    /// Upgrade the running server to the binary at its path (graceful, like `serve
    /// --upgrade` with its flags) and wait: exits 0 once the new server serves, else 1
    /// saying why (the old server goes on serving). `systemctl reload slipway` runs this.
    Reload(DataDirArg),
    /// List and build stacks: the root file systems apps run on (`type: LANGUAGE:VERSION`).
    #[command(subcommand)]
    Stack(StackCmd),
    /// The OSV advisory database pushes are checked against (import, ls).
    #[command(subcommand)]
    Advisories(advisories::AdvisoriesCmd),
    /// Run PROGRAM as a child subreaper, then end and wait for whatever it left behind
    /// (`serve` runs host helpers that may daemonize, as a stack build's gpg-agent, so).
    #[command(hide = true)]
    ReapRun {
        /// The program.
        program: std::ffi::OsString,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// The server's stacks folder, as `serve --stacks-dir` names it: `serve`, `config check`
/// and the `stack` commands take the same option.
#[derive(Args, Clone)]
struct StacksDirArg {
    /// Where the server keeps its stacks (a folder with `archive/` and `stacks/`), as
    /// `serve --stacks-dir` names it; default: the data dir. A push needing a stack that is
    /// not built there builds it.
    #[arg(long, env = "SLIPWAY_STACKS_DIR")]
    stacks_dir: Option<PathBuf>,
}

impl StacksDirArg {
    /// The stacks folder's path: `--stacks-dir`, else the data dir.
    fn dir<'a>(&'a self, data: &'a DataDirArg) -> &'a Path {
        self.stacks_dir.as_deref().unwrap_or(&data.data_dir)
    }

    /// The stacks folder: `--stacks-dir`, else the data dir.
    fn store(&self, data: &DataDirArg) -> Result<slipway_stack::StackStore, Failure> {
        stack_store(self.dir(data))
    }
}

#[derive(Subcommand)]
enum StackCmd {
    /// Every stack this server can provide, and which are built, with their sizes.
    Ls {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        stacks: StacksDirArg,
    },
    /// Build a stack from Debian packages (ahead of the first push that needs it).
    Build {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        stacks: StacksDirArg,
        /// The stack, as an app's `type:` names it, e.g. `python:3.11`.
        stack: String,
        /// Build it again even if it is built.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        sources: StackSources,
    },
    /// Check that stacks would build, without building them: each one's Debian packages
    /// resolve on its suite and are served by the mirror, and its pinned npm tarballs are
    /// the registry's (every catalog stack, or the one named); exits 1 if one would not.
    Check {
        /// The stack, e.g. `postgresql:13`; none: every stack of the catalog.
        stack: Option<String>,
        #[command(flatten)]
        sources: StackSources,
    },
    /// Import a stack from an OCI image layout folder or OCI archive file (`PATH`, or
    /// `PATH:TAG` for one of several images), e.g. made by `skopeo copy docker://IMAGE
    /// oci:DIR:TAG` (or `oci-archive:FILE:TAG`); a version the catalog lacks becomes a
    /// stack of its own.
    Import {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        stacks: StacksDirArg,
        /// The stack it becomes: a version of the catalog (replaced), or another version of
        /// one of its languages (a stack of its own), e.g. `python:3.12`.
        stack: String,
        /// The OCI image layout (a folder) or OCI archive (a tar file): `PATH` or `PATH:TAG`.
        image: String,
    },
}

#[derive(Args)]
struct StackSources {
    /// The Debian mirror stacks are made from.
    #[arg(
        long,
        env = "SLIPWAY_DEBIAN_MIRROR",
        default_value = "http://deb.debian.org/debian"
    )]
    debian_mirror: String,
    /// The Debian security mirror (`none`: no security updates, e.g. with a local mirror).
    #[arg(
        long,
        env = "SLIPWAY_DEBIAN_SECURITY_MIRROR",
        default_value = "http://deb.debian.org/debian-security"
    )]
    debian_security_mirror: String,
    /// The npm registry, for Node.js majors Debian lacks.
    #[arg(
        long,
        env = "SLIPWAY_NPM_REGISTRY",
        default_value = "https://registry.npmjs.org"
    )]
    npm_registry: String,
}

impl StackSources {
    fn options(&self) -> slipway_stack::BuildOptions {
        slipway_stack::BuildOptions {
            mirror: self.debian_mirror.clone(),
            security_mirror: (self.debian_security_mirror != "none")
                .then(|| self.debian_security_mirror.clone()),
            npm_registry: self.npm_registry.clone(),
        }
    }
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataDirArg,
    /// SSH address.
    #[arg(long, env = "SLIPWAY_SSH_LISTEN", default_value = "127.0.0.1:2222")]
    ssh_listen: String,
    /// HTTP address of the router.
    #[arg(long, env = "SLIPWAY_HTTP_LISTEN", default_value = "127.0.0.1:8080")]
    http_listen: String,
    /// Environments answer at ENV.PROJECT.DOMAIN.
    #[arg(long, env = "SLIPWAY_DOMAIN", default_value = "localhost")]
    domain: String,
    #[command(flatten)]
    runtime: RuntimeArg,
    /// Seconds an app may take to answer on $PORT after it starts.
    #[arg(long, env = "SLIPWAY_HEALTH_TIMEOUT", default_value_t = 30)]
    health_timeout: u64,
    /// Seconds requests on a retired release may take to finish.
    #[arg(long, env = "SLIPWAY_DRAIN_TIMEOUT", default_value_t = 30)]
    drain_timeout: u64,
    /// Seconds a build (hooks.build) may take before it is killed.
    #[arg(long, env = "SLIPWAY_BUILD_TIMEOUT", default_value_t = 3600)]
    build_timeout: u64,
    /// Largest compressed slug a build may produce: bytes, or with a K, M or G suffix (KiB, MiB, GiB).
    #[arg(long, env = "SLIPWAY_SLUG_MAX_SIZE", default_value = "2G", value_parser = parse_size)]
    slug_max_size: u64,
    /// Size of a build's disk, its writable /app: a build writing more fails (bytes, or
    /// with a K, M or G suffix).
    #[arg(long, env = "SLIPWAY_BUILD_DISK", default_value = "8G", value_parser = parse_size)]
    build_disk: u64,
    /// Size of an app's build cache disk, its builds' /cache, kept between builds (bytes,
    /// or with a K, M or G suffix).
    #[arg(long, env = "SLIPWAY_BUILD_CACHE_DISK", default_value = "4G", value_parser = parse_size)]
    build_cache_disk: u64,
    /// Cap on one project's `build.caches` entries, all its environments together: after a
    /// build the least recently used go until the rest fit, and the push says which (bytes,
    /// or with a K, M or G suffix).
    #[arg(long, env = "SLIPWAY_BUILD_CACHES_SIZE", default_value = "4G", value_parser = parse_size)]
    build_caches_size: u64,
    /// `HOST:PORT`s builds and apps (their hooks, workers, crons, shells) may reach through
    /// their egress proxy besides public addresses on ports 80 and 443 (comma-separated;
    /// e.g. a package mirror on this machine).
    #[arg(long, env = "SLIPWAY_EGRESS_ALLOW", value_delimiter = ',')]
    egress_allow: Vec<String>,
    /// The former name of `--egress-allow` (`SLIPWAY_BUILD_EGRESS_ALLOW`), still taken:
    /// both lists together are allowed.
    #[arg(
        long,
        env = "SLIPWAY_BUILD_EGRESS_ALLOW",
        value_delimiter = ',',
        hide = true
    )]
    build_egress_allow: Vec<String>,
    /// zstd level of slugs (1 to 22).
    #[arg(long, env = "SLIPWAY_SLUG_LEVEL", default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    slug_level: i32,
    /// Accepted and ignored: apps always build and run on the stacks their `type` names
    /// (kept for command lines written when stacks were opt-in).
    #[arg(long, hide = true)]
    #[allow(dead_code)]
    stacks: bool,
    /// UNSAFE, for debugging only: build and run apps on the host's own /usr, /etc and
    /// /lib instead of on the stacks their `type` names. Every container then sees the
    /// host's programs and configuration and gets whatever language version the host
    /// has; never use it on a server that runs anyone else's code.
    #[arg(long, env = "SLIPWAY_UNSAFE_HOST_ROOT")]
    unsafe_host_root: bool,
    #[command(flatten)]
    stacks_dir: StacksDirArg,
    #[command(flatten)]
    stack_sources: StackSources,
    /// An app log (logs/PROJECT/ENV/APP.log) bigger than this is rotated to APP.log.1
    /// (two kept): bytes, or with a K, M or G suffix.
    #[arg(long, env = "SLIPWAY_APP_LOG_MAX_SIZE", default_value = "10M", value_parser = parse_size)]
    app_log_max_size: u64,
    /// Worker threads of the HTTP router (1 to 256; default: one per CPU, at most 16, like
    /// nginx's `worker_processes auto`).
    #[arg(long, env = "SLIPWAY_ROUTER_WORKERS", value_parser = clap::value_parser!(u16).range(1..=256))]
    router_workers: Option<u16>,
    /// Client connections the HTTP router keeps open at once; beyond, new ones wait in the
    /// listening socket's backlog until one closes.
    #[arg(long, env = "SLIPWAY_ROUTER_MAX_CONNECTIONS", default_value_t = slipway_router::DEFAULT_MAX_CLIENT_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    router_max_connections: u32,
    /// Largest request body the HTTP router takes, for a PHP script or an app, on HTTP/1.1
    /// and HTTP/2 (like nginx's `client_max_body_size`; larger: 413): bytes, or with a K, M
    /// or G suffix.
    #[arg(long, env = "SLIPWAY_ROUTER_MAX_BODY", default_value = "250M", value_parser = parse_size)]
    router_max_body: u64,
    /// Seconds the HTTP router waits for the next bytes of a request body for a PHP script
    /// (like nginx's `client_body_timeout`); then 408.
    #[arg(long, env = "SLIPWAY_ROUTER_BODY_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    router_body_timeout: u64,
    /// Take over from the server running on this data dir (pass the same flags): receive
    /// its listening sockets, restore, then let it drain and exit. No request is lost.
    /// Without a running server, start as usual.
    #[arg(long)]
    upgrade: bool,
    /// Seconds a server that was upgraded gives its open SSH sessions (running pushes and
    /// their deploys, shells) to end before it closes them.
    #[arg(long, env = "SLIPWAY_UPGRADE_GRACE", default_value_t = 600)]
    upgrade_grace: u64,
    /// Seconds a push (or sync, backup, restore, rollback) waits for its environment's
    /// deploy lock held by another process on the data dir (the other server during an
    /// upgrade) before it gives up, changing nothing and naming the holder; default: the
    /// upgrade grace plus a minute.
    #[arg(long, env = "SLIPWAY_LOCK_WAIT_TIMEOUT")]
    lock_wait_timeout: Option<u64>,
    /// Where to refresh the advisory database from, at start and then daily: URLs (or
    /// paths) of OSV JSON files or `all.zip` dumps, comma-separated, fetched with curl.
    /// Without it the database changes only by `slipway advisories import`.
    #[arg(long, env = "SLIPWAY_ADVISORIES_URL", value_delimiter = ',')]
    advisories_url: Vec<String>,
    /// HTTPS address of the router (off unless given): `https://` routes are served there
    /// with certificates from DATA/certs/HOST.pem + HOST.key, or else issued by a local CA
    /// made on first start (DATA/ca/ca.pem, printed at start: trust it in clients).
    #[arg(long, env = "SLIPWAY_HTTPS_LISTEN")]
    https_listen: Option<String>,
    /// ACME directory URL (off unless given; needs --https-listen), e.g.
    /// https://acme-v02.api.letsencrypt.org/directory: hosts of `https://` routes and the
    /// console without a file in DATA/certs get certificates ordered there (the challenge
    /// of --acme-challenge), kept in DATA/acme and renewed; the local CA's meanwhile.
    #[cfg(feature = "acme")]
    #[arg(long, env = "SLIPWAY_ACME_DIRECTORY")]
    acme_directory: Option<String>,
    /// Contact address of the ACME account (with --acme-directory).
    #[cfg(feature = "acme")]
    #[arg(long, env = "SLIPWAY_ACME_EMAIL", requires = "acme_directory")]
    acme_email: Option<String>,
    /// PEM file of the CA to trust for the ACME server's own HTTPS (a private or test
    /// ACME server), instead of the system's.
    #[cfg(feature = "acme")]
    #[arg(long, env = "SLIPWAY_ACME_CA_CERT", requires = "acme_directory")]
    acme_ca_cert: Option<PathBuf>,
    /// The ACME challenge answered (with --acme-directory): http-01 (on the HTTP
    /// listener: the ACME server must reach its port 80) or tls-alpn-01 (on the HTTPS
    /// listener: its port 443).
    #[cfg(feature = "acme")]
    #[arg(
        long,
        env = "SLIPWAY_ACME_CHALLENGE",
        default_value = "http-01",
        requires = "acme_directory"
    )]
    acme_challenge: slipway_router::ChallengeKind,
    /// Address serving Prometheus metrics (off unless given), e.g. 127.0.0.1:9100: the
    /// router's requests, latencies and upstream errors per environment, pushes, deploys
    /// and builds.
    #[arg(long, env = "SLIPWAY_METRICS_LISTEN")]
    metrics_listen: Option<String>,
    /// The newest this many activities of each environment keep their logs (older logs
    /// are pruned, their activities listed still, saying "log pruned").
    #[arg(long, env = "SLIPWAY_ACTIVITY_KEEP", default_value_t = slipway_deploy::activity_prune::KEEP_NEWEST)]
    activity_keep: usize,
    /// Every activity that ended less than this many days ago keeps its log too.
    #[arg(long, env = "SLIPWAY_ACTIVITY_KEEP_DAYS", default_value_t = slipway_deploy::activity_prune::KEEP_DAYS)]
    activity_keep_days: u32,
    /// Seconds between two prunings of old activity logs (the first at start).
    #[arg(long, env = "SLIPWAY_ACTIVITY_PRUNE_EVERY", default_value_t = slipway_deploy::activity_prune::PRUNE_EVERY, value_parser = clap::value_parser!(u64).range(1..))]
    activity_prune_every: u64,
    /// How the server logs to stderr: `human` lines or `json` objects (one a line, for log
    /// shippers).
    #[arg(long, env = "SLIPWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

/// The format of the server's log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object a line.
    Json,
}

/// `1234`, `500K`, `20M`, `2G` (binary units).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => return Err(format!("{s:?}: use bytes, or a K, M or G suffix")),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?}: use a positive number of bytes, or with a K, M or G suffix"))
}

#[derive(Subcommand)]
enum UserCmd {
    /// Add a user with a public key, or add a key to a user.
    Add {
        /// User name.
        name: String,
        /// An OpenSSH public key file (`-` for standard input).
        #[arg(long)]
        key: PathBuf,
        /// Make the user a server admin (admin of every project, may create projects).
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List users.
    Ls(DataDirArg),
    /// Remove a user and its keys.
    Rm {
        /// User name.
        name: String,
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate the configuration of a working tree.
    Check {
        /// The working tree (default: the current directory).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Print the normalized topology as JSON instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDirArg,
        /// Skip the check of the apps' lockfiles against the advisory database of
        /// `--data-dir`.
        #[arg(long)]
        no_advisories: bool,
        // The server's stacks: the versions imported there are accepted as the push
        // accepts them. Without an archive there, only the catalog's versions are known.
        #[command(flatten)]
        stacks: StacksDirArg,
        /// Advisory ids (or aliases) not to fail on, like `git push -o allow-vulnerable=ID`.
        #[arg(long, value_delimiter = ',')]
        allow_vulnerable: Vec<String>,
        /// Committed secrets not to fail on, `FILE:LINE`, like `git push -o
        /// allow-secret=FILE:LINE`.
        #[arg(long, value_delimiter = ',')]
        allow_secret: Vec<String>,
    },
}

#[derive(Subcommand)]
enum SlugCmd {
    /// Pack a folder into a slug exactly as a build does; prints its digest.
    Pack {
        /// The folder.
        dir: PathBuf,
        /// The slug file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// zstd level.
        #[arg(long, default_value_t = 3)]
        level: i32,
    },
}

#[derive(Subcommand)]
enum ArchiveCmd {
    /// List the slugs (with the releases using each), the releases (with their slugs),
    /// the stack images and the backups in the archive.
    Ls {
        #[command(flatten)]
        data: DataDirArg,
        /// Print one JSON object instead.
        #[arg(long)]
        json: bool,
    },
    /// Re-check the digest of every blob.
    Verify(DataDirArg),
    /// Drop what no kept release needs.
    Gc {
        #[command(flatten)]
        data: DataDirArg,
        #[command(flatten)]
        runtime: RuntimeArg,
        /// Releases kept per environment: the newest ones that went live (rollback targets),
        /// besides the live one, a deploy in progress, and any release still running.
        #[arg(long, default_value_t = 10)]
        keep: usize,
        /// Backups kept per environment: the newest ones...
        #[arg(long, default_value_t = slipway_deploy::backups::KEEP_NEWEST)]
        keep_backups: usize,
        /// ...and every backup younger than this many days.
        #[arg(long, default_value_t = slipway_deploy::backups::KEEP_DAYS)]
        keep_backup_days: i64,
    },
}

/// An error with the exit code it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn user_error(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 1,
        error: e.into(),
    }
}
fn internal(e: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 3,
        error: e.into(),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLIPWAY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match &cli.command {
        Cmd::Serve(args) if args.log_format == LogFormat::Json => logs.json().init(),
        _ => logs.init(),
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("slipway: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// Files and folders this process creates are its owner's only (the data dir holds
/// variable values; issue 12). Set for the operator commands that write into the data
/// dir. Not for `serve`: it makes what containers read as the project's unprivileged
/// user (bundle root folders, `/etc/passwd`, unpacked slugs), which must stay readable
/// to that user; there the data dir's own 0700 keeps every other local user out, and
/// files holding secrets (`state.db`, its WAL, bundles' `config.json`) are written 0600
/// explicitly.
fn private_umask() {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
}

fn run(cli: Cli) -> Result<u8, Failure> {
    if matches!(
        cli.command,
        Cmd::User(_) | Cmd::Archive(_) | Cmd::Down(_) | Cmd::Advisories(_)
    ) {
        private_umask();
    }
    match cli.command {
        Cmd::Serve(args) => {
            reload::take_report();
            let rt = tokio::runtime::Runtime::new().map_err(internal)?;
            rt.block_on(serve(*args))
        }
        Cmd::User(cmd) => user(cmd),
        Cmd::Config(ConfigCmd::Check {
            dir,
            json,
            data,
            no_advisories,
            allow_vulnerable,
            allow_secret,
            stacks,
        }) => config_check(
            &dir,
            json,
            stacks.dir(&data),
            (!no_advisories).then_some((data.data_dir.as_path(), allow_vulnerable.as_slice())),
            &allow_secret,
        ),
        Cmd::Slug(SlugCmd::Pack { dir, output, level }) => slug_pack(&dir, &output, level),
        Cmd::Archive(cmd) => archive(cmd),
        Cmd::Stack(cmd) => stack(cmd),
        Cmd::Advisories(cmd) => advisories::run(cmd),
        Cmd::Reload(data) => {
            let said = reload::request(&data.data_dir).map_err(user_error)?;
            println!("{said}");
            Ok(0)
        }
        Cmd::ReapRun { program, args } => slipway_runtime::reaper::run_reaped(&program, &args)
            .map(|code| u8::try_from(code).unwrap_or(u8::MAX))
            .map_err(|e| internal(anyhow::anyhow!("{}: {e}", program.to_string_lossy()))),
        Cmd::Down(DownArgs { data, runtime }) => {
            existing_data_dir(&data.data_dir)?;
            // A running server is stopped first (it would start again what this stops),
            // and its lock held meanwhile.
            let _serve_lock = down_lock(&data.data_dir)?;
            let rt = tokio::runtime::Runtime::new().map_err(internal)?;
            rt.block_on(async {
                let mut settings = slipway_deploy::Settings::new(data.data_dir);
                settings.runtime = runtime.runtime;
                let platform =
                    open_platform(settings, slipway_router::RouterConfig::default())?;
                let n = slipway_deploy::restore::down(&platform)
                    .await
                    .map_err(internal)?;
                println!("stopped {n} container(s); all data stays; `slipway serve` brings the environments back");
                Ok(0)
            })
        }
    }
}

/// Refuses a data dir that does not exist (exit 1): a command that reads or stops what a
/// server made must not make an empty one and report on it (a typo in `--data-dir`).
fn existing_data_dir(dir: &Path) -> Result<(), Failure> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(user_error(anyhow::anyhow!(
        "no data dir at {}: pass the server's --data-dir (or set SLIPWAY_DATA_DIR)",
        dir.display()
    )))
}

/// The platform on the data dir of `settings`, its HTTP router made from `router` (its
/// drain timeout taken from `settings`).
fn open_platform(
    settings: slipway_deploy::Settings,
    router: slipway_router::RouterConfig,
) -> Result<Arc<slipway_deploy::Platform>, Failure> {
    let router = slipway_router::Router::new(slipway_router::RouterConfig {
        drain_timeout: settings.drain_timeout,
        ..router
    });
    slipway_deploy::Platform::open(settings, router)
        .context("opening the data dir")
        .map_err(internal)
}

/// `slipway serve`: [`serve_until_stopped`]; a server taking over with `--upgrade` that
/// fails before the old one stops accepting says that the old one goes on serving.
/// A server started by a reload reports how its start ended to the server that started
/// it ([`reload::report`]).
async fn serve(args: ServeArgs) -> Result<u8, Failure> {
    let mut taking_over_from = None;
    serve_until_stopped(args, &mut taking_over_from)
        .await
        .map_err(|mut f| {
            reload::report(Err(&format!("{:#}", f.error)));
            if let Some(pid) = taking_over_from {
                f.error = f.error.context(format!(
                    "the upgrade failed; slipway serve (pid {pid}) goes on serving"
                ));
            }
            f
        })
}

/// The data dir's server lock for `slipway down`: a server running on it is sent SIGTERM
/// and waited for (at most two minutes: its drain of requests and SSH sessions), since it
/// would start again the containers `down` stops. Held while stopping, so no server starts
/// meanwhile either.
fn down_lock(data_dir: &std::path::Path) -> Result<lock::ServeLock, Failure> {
    let path = lock::lock_path(data_dir);
    let acquire = || {
        lock::ServeLock::acquire(data_dir)
            .with_context(|| format!("locking {}", path.display()))
            .map_err(internal)
    };
    let pid = match acquire()? {
        lock::Acquired::Locked(l) => return Ok(l),
        lock::Acquired::HeldBy(Some(pid)) => pid,
        lock::Acquired::HeldBy(None) => {
            return Err(user_error(anyhow::anyhow!(
                "a slipway serve holds {} and its pid is not in it: stop it first (it starts again the containers that exit)",
                path.display()
            )))
        }
    };
    println!(
        "stopping slipway serve (pid {pid}) on {} first",
        data_dir.display()
    );
    let target = i32::try_from(pid)
        .map(nix::unistd::Pid::from_raw)
        .map_err(|_| {
            user_error(anyhow::anyhow!(
                "{} names pid {pid}, which is no pid",
                path.display()
            ))
        })?;
    if let Err(e) = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM) {
        return Err(user_error(anyhow::anyhow!(
            "slipway serve (pid {pid}) runs on {} and could not be stopped ({e}): stop it first",
            data_dir.display()
        )));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if let lock::Acquired::Locked(l) = acquire()? {
            println!("slipway serve (pid {pid}) stopped");
            return Ok(l);
        }
        if std::time::Instant::now() > deadline {
            return Err(user_error(anyhow::anyhow!(
                "slipway serve (pid {pid}) on {} did not stop within 2 minutes of SIGTERM: nothing was stopped",
                data_dir.display()
            )));
        }
    }
}

/// Run the server until SIGTERM, an interrupt or an upgrade; `taking_over_from` is the
/// old server's pid while this one takes over and has not yet told it to stop.
async fn serve_until_stopped(
    args: ServeArgs,
    taking_over_from: &mut Option<u32>,
) -> Result<u8, Failure> {
    // Taken first, while the binary at this path is still the one running: the path is
    // replaced by an install as soon as the server says it serves.
    let relauncher = Arc::new(reload::Relauncher::capture().map_err(internal)?);
    let mut settings = slipway_deploy::Settings::new(args.data.data_dir.clone());
    settings.domain = args.domain.clone();
    settings.runtime = args.runtime.runtime.clone();
    settings.health_timeout = std::time::Duration::from_secs(args.health_timeout);
    settings.drain_timeout = std::time::Duration::from_secs(args.drain_timeout);
    settings.lock_wait = std::time::Duration::from_secs(
        args.lock_wait_timeout
            .unwrap_or_else(|| args.upgrade_grace.saturating_add(60)),
    );
    settings.build_timeout = std::time::Duration::from_secs(args.build_timeout.max(1));
    settings.slug_max_size = args.slug_max_size;
    settings.build_disk = args.build_disk;
    settings.build_cache_disk = args.build_cache_disk;
    settings.build_caches_size = args.build_caches_size;
    settings.slug_level = args.slug_level;
    if args.unsafe_host_root {
        tracing::warn!(
            "--unsafe-host-root: apps build and run on this host's /usr, /etc and /lib, not on their stacks"
        );
    } else {
        settings.stacks = Some(slipway_deploy::StackSettings {
            store: args.stacks_dir.dir(&args.data).to_path_buf(),
            build: args.stack_sources.options(),
        });
    }
    settings.app_log_max_size = args.app_log_max_size;
    settings.activity_retention = slipway_state::ActivityRetention {
        keep_newest: args.activity_keep,
        keep_days: args.activity_keep_days,
    };
    settings.egress.allowed = args
        .egress_allow
        .iter()
        .chain(&args.build_egress_allow)
        .cloned()
        .collect();
    let http_addr: std::net::SocketAddr = args
        .http_listen
        .parse()
        .with_context(|| {
            format!(
                "--http-listen {}: not an address like 127.0.0.1:8080",
                args.http_listen
            )
        })
        .map_err(|e| Failure { code: 2, error: e })?;
    settings.http_port = http_addr.port();
    let ssh_addr: std::net::SocketAddr = args
        .ssh_listen
        .parse()
        .with_context(|| {
            format!(
                "--ssh-listen {}: not an address like 127.0.0.1:2222",
                args.ssh_listen
            )
        })
        .map_err(|e| Failure { code: 2, error: e })?;
    let https_addr: Option<std::net::SocketAddr> = match &args.https_listen {
        None => None,
        Some(addr) => Some(
            addr.parse()
                .with_context(|| {
                    format!("--https-listen {addr}: not an address like 127.0.0.1:8443")
                })
                .map_err(|e| Failure { code: 2, error: e })?,
        ),
    };
    settings.https_port = https_addr.map(|a| a.port());
    #[cfg(feature = "acme")]
    let acme =
        acme_settings(&args, https_addr.is_some()).map_err(|e| Failure { code: 2, error: e })?;
    let metrics_addr: Option<std::net::SocketAddr> = match &args.metrics_listen {
        None => None,
        Some(addr) => Some(
            addr.parse()
                .with_context(|| {
                    format!("--metrics-listen {addr}: not an address like 127.0.0.1:9100")
                })
                .map_err(|e| Failure { code: 2, error: e })?,
        ),
    };
    if which(&settings.runtime).is_none() {
        return Err(user_error(anyhow::anyhow!(
            "the OCI runtime '{}' was not found: install runc (apt-get install runc) or pass --runtime PATH",
            settings.runtime.display()
        )));
    }
    match slipway_ssh::raise_open_files_limit() {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(e) => tracing::warn!("raising the open files limit: {e}"),
    }
    // One server per data dir: the lock first, before anything else touches the data dir.
    let data_dir = args.data.data_dir.clone();
    slipway_deploy::private::make_private(&data_dir)
        .with_context(|| format!("creating {} (private)", data_dir.display()))
        .map_err(internal)?;
    let (serve_lock, taken) = match lock::ServeLock::acquire(&data_dir)
        .with_context(|| format!("locking {}", lock::lock_path(&data_dir).display()))
        .map_err(internal)?
    {
        lock::Acquired::Locked(l) => {
            if args.upgrade {
                println!("no server runs on {}: starting", data_dir.display());
            }
            (l, None)
        }
        lock::Acquired::HeldBy(pid) if !args.upgrade => {
            return Err(user_error(anyhow::anyhow!(
                "another slipway serve{} runs on the data dir {}: stop it, or take over from it with `slipway serve --upgrade` (same flags)",
                pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
                data_dir.display()
            )));
        }
        lock::Acquired::HeldBy(_) => {
            let t = handover::take_over(&data_dir).map_err(user_error)?;
            let handover::TakenOver {
                handshake,
                old_pid,
                lock,
                http,
                ssh,
                https,
                metrics,
            } = t;
            *taking_over_from = Some(old_pid);
            let l = lock::ServeLock::handed_over(lock)
                .context("taking the data dir's lock over")
                .map_err(internal)?;
            println!("taking over from slipway serve (pid {old_pid})");
            (l, Some((handshake, old_pid, http, ssh, https, metrics)))
        }
    };
    // Gzipped copies of static files (mounts' text, files over 1 MiB), emptied here.
    let gzip_dir = settings.data_dir.join("router").join("gzip");
    let https_redirect_port = settings.https_port;
    let platform = open_platform(
        settings,
        slipway_router::RouterConfig {
            gzip_dir: Some(gzip_dir),
            https_redirect_port,
            workers: args.router_workers.map(usize::from),
            max_client_connections: args.router_max_connections as usize,
            max_request_body: args.router_max_body,
            request_body_timeout: std::time::Duration::from_secs(args.router_body_timeout),
            ..Default::default()
        },
    )?;
    let (host_key, created) =
        slipway_ssh::load_or_create_host_key(&platform.data().host_key()).map_err(internal)?;
    let fp = slipway_ssh::fingerprint(&host_key);
    if created {
        println!(
            "created host key {} ({fp})",
            platform.data().host_key().display()
        );
    }
    let (ssh, http, handed_https, handed_metrics, handshake) = match taken {
        Some((handshake, old_pid, http, ssh, https, metrics)) => {
            (ssh, http, https, metrics, Some((handshake, old_pid)))
        }
        None => {
            let mut activated = activation::systemd_listeners()
                .context("systemd socket activation")
                .map_err(internal)?;
            let ssh = match activation::take(&mut activated, ssh_addr) {
                Some(l) => l,
                None => std::net::TcpListener::bind(ssh_addr)
                    .with_context(|| format!("listening for SSH on {ssh_addr}"))
                    .map_err(user_error)?,
            };
            let http = match activation::take(&mut activated, http_addr) {
                Some(l) => l,
                None => std::net::TcpListener::bind(http_addr)
                    .with_context(|| format!("listening for HTTP on {http_addr}"))
                    .map_err(user_error)?,
            };
            let https = https_addr.and_then(|a| activation::take(&mut activated, a));
            let metrics = metrics_addr.and_then(|a| activation::take(&mut activated, a));
            for l in &activated {
                tracing::warn!(addr = ?l.local_addr().ok(), "a socket passed by systemd matches none of --ssh-listen, --http-listen, --https-listen, --metrics-listen; unused");
            }
            (ssh, http, https, metrics, None)
        }
    };
    // HTTPS and metrics: the socket handed over (by the old server or systemd) when it
    // listens on the address asked for, else a new one.
    let https = https_addr
        .map(|addr| listener_on(addr, handed_https, "HTTPS"))
        .transpose()
        .map_err(user_error)?;
    let metrics = metrics_addr
        .map(|addr| listener_on(addr, handed_metrics, "metrics"))
        .transpose()
        .map_err(user_error)?;
    let sockets = {
        use std::os::fd::AsFd as _;
        handover::Sockets::copy(handover::Listening {
            lock: serve_lock.fd(),
            http: http.as_fd(),
            ssh: ssh.as_fd(),
            https: https.as_ref().map(|l| l.as_fd()),
            metrics: metrics.as_ref().map(|l| l.as_fd()),
        })
        .map_err(internal)?
    };
    let to_tokio = |l: std::net::TcpListener| {
        l.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(l)
    };
    let ssh = to_tokio(ssh).map_err(internal)?;
    let http = to_tokio(http).map_err(internal)?;
    let addresses = (
        ssh.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        http.local_addr().map(|a| a.to_string()).unwrap_or_default(),
    );

    // Hosts of live environments are held (never "nothing deployed") until restored.
    let restore_mode = if handshake.is_some() {
        slipway_deploy::restore::RestoreMode::Upgrade
    } else {
        slipway_deploy::restore::RestoreMode::Start
    };
    // Containers this server starts stay its children: the supervisor learns how they exit.
    if let Err(e) = platform.runtime().collect_exits() {
        tracing::warn!("exit codes of containers that crash will be unknown: {e}");
    }
    // So host helpers that may daemonize (a stack build's gpg-agent) leave no zombie here.
    match std::env::current_exe() {
        Ok(exe) => slipway_runtime::reaper::use_reaper(exe, vec!["reap-run".into(), "--".into()]),
        Err(e) => tracing::warn!("host helpers run without a reaper: {e}"),
    }
    let held =
        slipway_deploy::restore::hold_live_routes(&platform, restore_mode).map_err(internal)?;
    let (restored_tx, restored_rx) = tokio::sync::oneshot::channel::<()>();
    let restore = tokio::spawn({
        let p = platform.clone();
        async move {
            if let Err(e) = slipway_deploy::restore::restore(&p, held, restore_mode).await {
                tracing::error!("bringing environments back: {e}");
            }
            let _ = restored_tx.send(());
        }
    });
    // Containers that exit are started again, once every environment is back.
    let supervisor = tokio::spawn({
        let p = platform.clone();
        async move {
            if restored_rx.await.is_ok() {
                slipway_deploy::supervise::run_forever(p).await;
            }
        }
    });
    let mut restore = Some(restore);
    if handshake.is_some() {
        // The old server serves meanwhile: accept only once every environment is back.
        if let Some(r) = restore.take() {
            let _ = r.await;
        }
    }

    // None while serving; the grace period of open SSH sessions once stopping.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None::<std::time::Duration>);
    let stopped = |mut rx: tokio::sync::watch::Receiver<Option<std::time::Duration>>| async move {
        match rx.wait_for(Option::is_some).await {
            Ok(grace) => grace.unwrap_or_default(),
            Err(_) => std::time::Duration::ZERO,
        }
    };
    // The web console at console.DOMAIN, on both listeners.
    let console =
        slipway_console::Console::new(platform.clone(), tokio::runtime::Handle::current());
    console.install();
    let router = platform.router().clone();
    let http_task = tokio::spawn({
        let s = stopped(stop_rx.clone());
        async move {
            router
                .serve(http, async move {
                    s.await;
                })
                .await
        }
    });
    let mut https_note = String::new();
    let https_task = match https {
        None => None,
        Some(listener) => {
            let listener = to_tokio(listener).map_err(internal)?;
            let certificates = https_certificates(&data_dir).map_err(user_error)?;
            https_note = format!(
                ", https {} (local CA {})",
                listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                certificates.ca_cert_path().display()
            );
            #[cfg(feature = "acme")]
            let certificates: Arc<dyn slipway_router::CertificateSource> = match acme {
                None => certificates,
                Some(settings) => {
                    https_note.push_str(&format!(
                        ", ACME {} ({})",
                        settings.directory, settings.challenge
                    ));
                    let acme =
                        slipway_router::Acme::new(settings, data_dir.join("acme"), certificates)
                            .context("the ACME folder")
                            .map_err(user_error)?;
                    platform.router().answer_acme_challenges(acme.challenges());
                    let s = stopped(stop_rx.clone());
                    tokio::spawn(Arc::clone(&acme).run(
                        platform.router().clone(),
                        Vec::new(),
                        async move {
                            s.await;
                        },
                    ));
                    acme.certificates()
                }
            };
            let router = platform.router().clone();
            let s = stopped(stop_rx.clone());
            Some(tokio::spawn(async move {
                router
                    .serve_tls(listener, certificates, async move {
                        s.await;
                    })
                    .await
            }))
        }
    };
    let mut metrics_note = String::new();
    if let Some(listener) = metrics {
        let listener = to_tokio(listener).map_err(internal)?;
        metrics_note = format!(
            ", metrics {}",
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        );
        let mut registry = prometheus_client::registry::Registry::default();
        slipway_deploy::metrics::register(&mut registry);
        registry.register_collector(Box::new(platform.router().collector()));
        registry.register_collector(Box::new(slipway_deploy::metrics::DiskCollector::new(
            &platform,
        )));
        let s = stopped(stop_rx.clone());
        tokio::spawn(slipway_router::serve_metrics(
            listener,
            Arc::new(registry),
            async move {
                s.await;
            },
        ));
    }
    let log_rotation = tokio::spawn(slipway_deploy::app_logs::rotate_forever(platform.clone()));
    let activity_pruning = tokio::spawn(slipway_deploy::activity_prune::prune_forever(
        platform.clone(),
        platform.settings().activity_retention,
        std::time::Duration::from_secs(args.activity_prune_every),
    ));
    let advisories_refresh = tokio::spawn(advisories::refresh_forever(
        platform.data().root().to_path_buf(),
        args.advisories_url.clone(),
    ));
    let mut ssh_task = tokio::spawn(slipway_ssh::serve_until(
        ssh,
        host_key,
        platform.clone(),
        slipway_ssh::SshLimits::from_env(),
        stopped(stop_rx.clone()),
    ));
    // SIGTERM and SIGHUP are taken before the server says it serves: one sent as soon as
    // it said so (a supervisor, a test) stops or upgrades it instead of killing it.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(internal)?;
    let mut hup =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).map_err(internal)?;
    let workers = platform.router().config().worker_count();
    println!(
        "slipway serving: ssh {} (host key {fp}), http {} ({workers} router worker{}){https_note}{metrics_note}, data dir {}",
        addresses.0,
        addresses.1,
        if workers == 1 { "" } else { "s" },
        platform.data().root().display()
    );
    let _ = std::io::stdout().flush();

    let handed_over = Arc::new(tokio::sync::Notify::new());
    let mut follow = None;
    match handshake {
        None => {
            handover::listen(&data_dir, sockets, handed_over.clone(), relauncher.clone())
                .map_err(internal)?;
            reload::notify_ready(false);
            reload::report(Ok(()));
        }
        Some((handshake, old_pid)) => {
            let old_exited = handshake
                .ready()
                .context("telling the old server to stop")
                .map_err(internal)?;
            *taking_over_from = None;
            tracing::info!(old_pid, "upgrade: serving; the old server drains");
            reload::notify_ready(true);
            reload::report(Ok(()));
            let p = platform.clone();
            let data_dir = data_dir.clone();
            let handed_over = handed_over.clone();
            let relauncher = relauncher.clone();
            follow = Some(tokio::spawn(async move {
                let (left, replaced) = slipway_deploy::restore::follow(&p, async move {
                    old_exited.await.unwrap_or_default()
                })
                .await;
                tracing::info!(old_pid, "upgrade: the old server exited");
                // What the old server retired while it drained, and what this server
                // routed until its deploys completed, stop here, after their drain.
                slipway_deploy::restore::retire_for_old_server(&p, replaced, left);
                if let Err(e) = handover::listen(&data_dir, sockets, handed_over, relauncher) {
                    tracing::error!("serving upgrade requests: {e:#}");
                }
            }));
        }
    }

    // Crons start once this server is the one serving: during an upgrade, after `ready`,
    // when the old server stops its own scheduler (below), so one cron never runs in both.
    let cron_scheduler = tokio::spawn(slipway_deploy::crons::run_forever(platform.clone()));

    let upgrade_grace = std::time::Duration::from_secs(args.upgrade_grace);
    let (ssh_failed, grace) = loop {
        break tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: upgrading to a new server");
                let relauncher = relauncher.clone();
                std::thread::spawn(move || match relauncher.upgrade() {
                    Ok(up) => tracing::info!(pid = up.pid, "SIGHUP: the new server serves"),
                    Err(e) => tracing::error!("SIGHUP: the upgrade failed: {e:#}; still serving"),
                });
                continue;
            }
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); (None, std::time::Duration::ZERO) }
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupt: stopping"); (None, std::time::Duration::ZERO) }
            () = handed_over.notified() => {
                tracing::info!("upgraded: stopping accepting; draining");
                // The new server schedules crons and restarts crashed containers from now on.
                cron_scheduler.abort();
                supervisor.abort();
                // The new server's egress proxies take the environments' new connections.
                platform.close_egress();
                // A release a deploy completing here retires from now on is left to the
                // new server once drained here (`slipway_deploy::retire::hand_over`).
                (None, upgrade_grace)
            }
            // The SSH listener never ends on its own: if it does, the server must not go on
            // without it.
            r = &mut ssh_task => (Some(match r {
                Ok(Ok(())) => "it stopped".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            }), std::time::Duration::ZERO),
        };
    };
    if let Some(why) = &ssh_failed {
        tracing::error!("the SSH listener ended ({why}): stopping");
    }
    let _ = stop_tx.send(Some(grace));
    if let Some(r) = restore {
        r.abort();
    }
    if let Some(f) = follow {
        f.abort();
    }
    log_rotation.abort();
    activity_pruning.abort();
    advisories_refresh.abort();
    cron_scheduler.abort();
    supervisor.abort();
    let extra = std::time::Duration::from_secs(10);
    // Open SSH sessions (running pushes and their deploys, shells) and cron runs going
    // here (each holds its cron's lock file: the new server does not start the same cron
    // meanwhile) drain together, under one grace period from now.
    let wait_ssh = ssh_failed.is_none();
    let sessions = async move {
        if wait_ssh {
            let _ = tokio::time::timeout(grace + extra, ssh_task).await;
        }
    };
    let ((), still, actions) = tokio::join!(
        sessions,
        slipway_deploy::crons::wait_idle(&platform, grace),
        console.wait_idle(grace)
    );
    if still > 0 {
        tracing::warn!(runs = still, "cron runs still going at exit are cut short");
    }
    if actions > 0 {
        tracing::warn!(actions, "console actions still going at exit are cut short");
    }
    let drain = platform.settings().drain_timeout;
    // The releases that deploys completing here replaced drain before this server exits,
    // and stop (after an upgrade: are left to the new server, which stops them).
    let retiring = slipway_deploy::retire::wait_idle(drain + extra).await;
    if retiring > 0 {
        tracing::warn!(
            retiring,
            "retired releases whose containers still run at exit are removed at the next start"
        );
    }
    let _ = tokio::time::timeout(drain + extra, http_task).await;
    if let Some(task) = https_task {
        let _ = tokio::time::timeout(drain + extra, task).await;
    }
    // A `slipway reload` that upgraded this server gets its answer before this one exits.
    tokio::task::spawn_blocking(move || reload::wait_answered(extra))
        .await
        .map_err(internal)?;
    if let Some(why) = ssh_failed {
        return Err(internal(anyhow::anyhow!(
            "the SSH listener ended ({why}); containers keep running and are adopted at the next start"
        )));
    }
    println!("slipway stopped; containers keep running and are adopted at the next start");
    Ok(0)
}

#[cfg(feature = "acme")]
/// The ACME settings of `serve`, if `--acme-directory` is given (it needs the HTTPS
/// listener, and a CA file given must be readable).
fn acme_settings(args: &ServeArgs, https: bool) -> Result<Option<slipway_router::AcmeSettings>> {
    let Some(directory) = &args.acme_directory else {
        return Ok(None);
    };
    if !https {
        anyhow::bail!("--acme-directory {directory}: needs --https-listen (certificates are for the HTTPS listener)");
    }
    if !directory.starts_with("https://") {
        anyhow::bail!(
            "--acme-directory {directory}: not a URL like https://acme.example/directory"
        );
    }
    if let Some(ca) = &args.acme_ca_cert {
        std::fs::metadata(ca).with_context(|| format!("--acme-ca-cert {}", ca.display()))?;
    }
    Ok(Some(slipway_router::AcmeSettings {
        directory: directory.clone(),
        email: args.acme_email.clone(),
        ca_cert: args.acme_ca_cert.clone(),
        challenge: args.acme_challenge,
    }))
}

/// The certificates the HTTPS listener serves: files in DATA/certs, else issued by the
/// local CA in DATA/ca (made on first start).
fn https_certificates(data_dir: &Path) -> Result<Arc<slipway_router::Certificates>> {
    let ca = slipway_router::LocalCa::open_or_create(&data_dir.join("ca"))
        .context("the local certificate authority")?;
    let certificates = slipway_router::Certificates::new(data_dir.join("certs"), ca)
        .context("the certificates folder")?;
    Ok(Arc::new(certificates))
}

/// The listening socket for `what` on `addr`: `handed` (from the server this one takes
/// over from, or from systemd) if it listens on `addr`, else a new one.
fn listener_on(
    addr: std::net::SocketAddr,
    handed: Option<std::net::TcpListener>,
    what: &str,
) -> Result<std::net::TcpListener> {
    if let Some(l) = handed {
        match l.local_addr() {
            Ok(a) if a == addr => return Ok(l),
            Ok(a) => tracing::warn!(
                "the {what} socket handed over listens on {a}, not {addr}: listening on {addr} anew"
            ),
            Err(e) => tracing::warn!("the {what} socket handed over: {e}; listening anew"),
        }
    }
    reuseport_listener(addr)
        .and_then(|l| Ok(l.into_std()?))
        .with_context(|| format!("listening for {what} on {addr}"))
}

/// A listening socket on `addr` with `SO_REUSEPORT`, so that a server taking over with
/// `--upgrade` from a server that did not hand this socket over can listen on it while
/// the old one drains.
fn reuseport_listener(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .with_context(|| format!("a socket for {addr}"))?;
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("listening on {addr}"))?;
    socket
        .listen(1024)
        .with_context(|| format!("listening on {addr}"))
}

fn which(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.exists().then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(p))
            .find(|c| c.is_file())
    })
}

fn open_state(data_dir: &Path) -> Result<slipway_state::State, Failure> {
    slipway_deploy::private::make_private(data_dir)
        .with_context(|| format!("creating {} (private)", data_dir.display()))
        .map_err(internal)?;
    slipway_state::State::open(&data_dir.join("state.db")).map_err(internal)
}

fn user(cmd: UserCmd) -> Result<u8, Failure> {
    match cmd {
        UserCmd::Add {
            name,
            key,
            admin,
            data,
        } => {
            // The same rule as `user add` over SSH.
            if !slipway_ssh::valid_user_name(&name) {
                return Err(user_error(anyhow::anyhow!(
                    "user name '{name}' may hold only letters, digits, '.', '_' and '-' (1 to 64, not starting with '-' or '.')"
                )));
            }
            let text = if key == Path::new("-") {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(user_error)?;
                s
            } else {
                std::fs::read_to_string(&key)
                    .with_context(|| format!("reading the key file {}", key.display()))
                    .map_err(user_error)?
            };
            let line = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'))
                .unwrap_or("");
            let normalized = slipway_ssh::parse_public_key_line(line)
                .with_context(|| format!("{}", key.display()))
                .map_err(user_error)?;
            let state = open_state(&data.data_dir)?;
            state
                .add_user_key(&name, &normalized, admin)
                .map_err(user_error)?;
            println!(
                "user {name} added{} with key {}",
                if admin { " as server admin" } else { "" },
                normalized.split_whitespace().next().unwrap_or("")
            );
            Ok(0)
        }
        UserCmd::Ls(data) => {
            existing_data_dir(&data.data_dir)?;
            let state = open_state(&data.data_dir)?;
            for (u, keys) in state.users().map_err(internal)? {
                println!(
                    "{}\t{}\t{keys} key(s)",
                    u.name,
                    if u.admin { "admin" } else { "user" }
                );
            }
            Ok(0)
        }
        UserCmd::Rm { name, data } => {
            existing_data_dir(&data.data_dir)?;
            let state = open_state(&data.data_dir)?;
            state.remove_user(&name).map_err(user_error)?;
            println!("user {name} removed");
            Ok(0)
        }
    }
}

/// `advisories`: the data dir whose advisory database the apps' lockfiles are checked
/// against, and the advisory ids allowed.
/// `stacks`: the server's stacks folder, whose imported versions are known as the push
/// knows them.
fn config_check(
    dir: &Path,
    json: bool,
    stacks: &Path,
    advisories: Option<(&Path, &[String])>,
    allowed_secrets: &[String],
) -> Result<u8, Failure> {
    if !dir.is_dir() {
        return Err(user_error(anyhow::anyhow!(
            "{} is not a folder",
            dir.display()
        )));
    }
    // Only an existing archive is read: a check never creates a data dir.
    if stacks.join("archive/index.json").is_file() {
        let archive = slipway_slug::Archive::open(&stacks.join("archive")).map_err(internal)?;
        slipway_stack::StackStore::new(archive, &stacks.join("stacks"))
            .register_imported()
            .map_err(internal)?;
    }
    let source = slipway_config::DirSource::new(dir);
    match slipway_config::load(&source) {
        Ok(loaded) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&loaded.topology).map_err(internal)?
                );
            }
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            if let Some((data_dir, allowed)) = advisories {
                if advisories::check_working_tree(
                    &source,
                    data_dir,
                    &loaded.topology,
                    allowed,
                    json,
                )? {
                    eprintln!("error: a critical advisory affects a pinned package: a push would be refused");
                    return Ok(1);
                }
            }
            // Committed secrets, as a first push of this tree would find them.
            let mut found = source
                .files()
                .and_then(|files| slipway_advisories::secrets::scan_files(dir, &files))
                .map_err(|e| {
                    internal(anyhow::anyhow!(
                        "scanning {} for secrets: {e}",
                        dir.display()
                    ))
                })?;
            for f in &mut found {
                f.allowed = allowed_secrets.contains(&f.location());
                eprintln!("{}", f.message());
            }
            let refusing = found.iter().filter(|f| !f.allowed).count();
            if refusing > 0 {
                eprintln!(
                    "error: {refusing} committed secret{}: a push would be refused (remove {}, or --allow-secret FILE:LINE as -o allow-secret=FILE:LINE)",
                    if refusing == 1 { "" } else { "s" },
                    if refusing == 1 { "it" } else { "them" },
                );
                return Ok(1);
            }
            if !json && loaded.format == slipway_config::Format::Procfile {
                if let Ok(d) = slipway_config::detect::detect_stack(&source) {
                    println!("app: stack {}", d.describe());
                }
            }
            if !json {
                println!(
                    "ok: {} config, {} app(s), {} service(s), {} route(s)",
                    loaded.format,
                    loaded.topology.applications.len(),
                    loaded.topology.services.len(),
                    loaded.topology.routes.len()
                );
            }
            Ok(0)
        }
        Err(diags) => {
            for d in &diags.0 {
                eprintln!("{d}");
            }
            Ok(1)
        }
    }
}

fn slug_pack(dir: &Path, output: &Path, level: i32) -> Result<u8, Failure> {
    if !dir.is_dir() {
        return Err(user_error(anyhow::anyhow!(
            "{} is not a folder",
            dir.display()
        )));
    }
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(parent)
        .with_context(|| format!("creating a file in {}", parent.display()))
        .map_err(user_error)?;
    let info = slipway_slug::pack_dir(dir, std::io::BufWriter::new(tmp.as_file()), level)
        .map_err(user_error)?;
    // Written whole, then renamed into place (no half-written FILE). No fsync:
    // like tar or cp, this writes a file for the user; the archive's own
    // writes are the ones that fsync. An existing FILE is removed first, as
    // `zstd -f` does: renaming over it would make ext4 write the new file out
    // before the rename returns (its auto_da_alloc rule for replace-by-rename),
    // tens of milliseconds for a big slug. A crash in between leaves no FILE,
    // never a half-written one.
    use std::os::unix::fs::PermissionsExt as _;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("writing {}", output.display()))
        .map_err(user_error)?;
    match std::fs::remove_file(output) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(user_error(
                anyhow::Error::new(e).context(format!("replacing {}", output.display())),
            ))
        }
    }
    tmp.persist(output)
        .with_context(|| format!("writing {}", output.display()))
        .map_err(user_error)?;
    println!("{}", info.digest);
    Ok(0)
}

fn stack_store(data_dir: &Path) -> Result<slipway_stack::StackStore, Failure> {
    let dir = slipway_deploy::DataDir::new(data_dir.to_path_buf());
    let archive = slipway_slug::Archive::open(&dir.archive()).map_err(internal)?;
    Ok(slipway_stack::StackStore::new(archive, &dir.stacks()))
}

/// `slipway stack ls|build|check|import`.
fn stack(cmd: StackCmd) -> Result<u8, Failure> {
    match cmd {
        StackCmd::Ls { data, stacks } => {
            // It reads the stacks folder: the data dir unless `--stacks-dir` names another.
            existing_data_dir(stacks.dir(&data))?;
            let store = stacks.store(&data)?;
            println!("STACK\tSOURCE\tBUILT\tARCHIVE\tUNPACKED");
            for (stack, built) in store.list().map_err(internal)? {
                let (state, archive, unpacked) = match &built {
                    Some(b) => (
                        "built".to_string(),
                        slipway_slug::human_size(b.archive_size()),
                        store
                            .unpacked_size(b)
                            .map(slipway_slug::human_size)
                            .unwrap_or_else(|| "-".into()),
                    ),
                    None => ("-".to_string(), "-".into(), "-".into()),
                };
                // Where the built stack came from (an import says so), else where it would.
                let source = built
                    .as_ref()
                    .and_then(|b| b.labels.get("org.slipway.source").cloned())
                    .unwrap_or_else(|| stack.source());
                println!("{stack}\t{source}\t{state}\t{archive}\t{unpacked}");
            }
            Ok(0)
        }
        StackCmd::Build {
            data,
            stacks,
            stack,
            force,
            sources,
        } => {
            let store = stacks.store(&data)?;
            store.register_imported().map_err(internal)?;
            let resolved = slipway_stack::resolve_any(&stack).map_err(user_error)?;
            if let Some(w) = resolved.warning() {
                eprintln!("warning: {w}");
            }
            let options = sources.options();
            let mut progress = |line: &str| eprintln!("{}: {line}", resolved.stack);
            let (built, root) = if force {
                store.build(resolved.stack, &options, &mut progress)
            } else {
                store.ensure(resolved.stack, &options, &mut progress)
            }
            .map_err(|e| match e {
                slipway_stack::StackError::ImportedOnly { .. } => user_error(e),
                other => internal(other),
            })?;
            println!(
                "{}\t{}\t{}\t{}",
                resolved.stack,
                built.layers[0].digest,
                slipway_slug::human_size(built.archive_size()),
                root.display()
            );
            Ok(0)
        }
        StackCmd::Check { stack, sources } => {
            let stacks: Vec<&slipway_stack::Stack> = match &stack {
                Some(name) => {
                    let resolved = slipway_stack::resolve_any(name).map_err(user_error)?;
                    if let Some(w) = resolved.warning() {
                        eprintln!("warning: {w}");
                    }
                    vec![resolved.stack]
                }
                None => slipway_stack::CATALOG.iter().collect(),
            };
            let work = tempfile::tempdir().map_err(internal)?;
            let checks = slipway_stack::check::check(
                &stacks,
                &sources.options(),
                work.path(),
                &mut |line| eprintln!("{line}"),
            )
            .map_err(internal)?;
            for c in &checks {
                println!("{c}");
            }
            Ok(if checks.iter().all(|c| c.ok()) { 0 } else { 1 })
        }
        StackCmd::Import {
            data,
            stacks,
            stack,
            image,
        } => {
            // A catalog version is replaced; another version of a catalog language becomes
            // a stack of its own, which config validation and pushes then accept.
            let target = slipway_stack::imported::import_target(&stack).map_err(user_error)?;
            let (dir, tag) = match image.rsplit_once(':') {
                Some((d, t)) if !Path::new(&image).exists() => (PathBuf::from(d), Some(t)),
                _ => (PathBuf::from(&image), None),
            };
            // A folder is an image layout; a file, an OCI archive (checked as it unpacks).
            if !dir.is_file() && !dir.join("index.json").is_file() {
                return Err(user_error(anyhow::anyhow!(
                    "{} is not an OCI image layout (no index.json) nor an OCI archive",
                    dir.display()
                )));
            }
            let store = stacks.store(&data)?;
            let mut progress = |line: &str| eprintln!("{target}: {line}");
            let (built, root) =
                store
                    .import(target, &dir, tag, &mut progress)
                    .map_err(|e| match e {
                        slipway_stack::StackError::Import { .. } => user_error(e),
                        other => internal(other),
                    })?;
            println!(
                "{target}\t{}\t{}\t{}",
                built.layers[0].digest,
                slipway_slug::human_size(built.archive_size()),
                root.display()
            );
            Ok(0)
        }
    }
}

fn archive(cmd: ArchiveCmd) -> Result<u8, Failure> {
    let data_dir = match &cmd {
        ArchiveCmd::Ls { data, .. } | ArchiveCmd::Verify(data) | ArchiveCmd::Gc { data, .. } => {
            data.data_dir.clone()
        }
    };
    existing_data_dir(&data_dir)?;
    let dir = slipway_deploy::DataDir::new(data_dir);
    let archive = slipway_slug::Archive::open(&dir.archive()).map_err(internal)?;
    match cmd {
        ArchiveCmd::Ls { json, .. } => {
            let state = open_state(dir.root())?;
            let listing = archive_listing::list(&archive, &state).map_err(internal)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&listing).map_err(internal)?
                );
            } else {
                print!("{}", listing.text());
            }
            Ok(0)
        }
        ArchiveCmd::Verify(_) => {
            let mut problems: Vec<String> = archive
                .verify()
                .map_err(internal)?
                .iter()
                .map(|p| p.to_string())
                .collect();
            // Every backup the state knows: its tag is there and each part is one of its
            // blobs (their digests were checked just above).
            let state = open_state(dir.root())?;
            let tags = archive.list().map_err(internal)?;
            for b in state.all_backups().map_err(internal)? {
                if !tags.iter().any(|t| t.tag == b.tag) {
                    problems.push(format!(
                        "backup {} of {}/{}: its tag {} is not in the archive",
                        b.id, b.project, b.environment, b.tag
                    ));
                }
                for part in &b.manifest.parts {
                    let missing = slipway_slug::Digest::parse(&part.digest)
                        .map(|d| !archive.has_blob(&d))
                        .unwrap_or(true);
                    if missing {
                        problems.push(format!(
                            "backup {} of {}/{}: part {} ({}) is not in the archive",
                            b.id, b.project, b.environment, part.name, part.digest
                        ));
                    }
                }
            }
            for p in &problems {
                println!("{p}");
            }
            if problems.is_empty() {
                println!("ok: every blob matches its digest");
                Ok(0)
            } else {
                Ok(1)
            }
        }
        ArchiveCmd::Gc {
            keep,
            keep_backups,
            keep_backup_days,
            runtime,
            ..
        } => {
            // What runs first: a gc that cannot see it refuses before it forgets any backup.
            let running = running(&dir, &runtime.runtime)?;
            let dropped = backups_gc(&dir, keep_backups, keep_backup_days)?;
            archive_gc(&dir, &archive, running, keep, &dropped)
        }
    }
}

/// `archive gc`'s retention of backups: per environment the `keep` newest and any younger
/// than `days` days are kept; the others are forgotten (their tags, returned, are dropped
/// with their blobs by the archive's gc).
fn backups_gc(
    dir: &slipway_deploy::DataDir,
    keep: usize,
    days: i64,
) -> Result<std::collections::HashSet<String>, Failure> {
    let state = open_state(dir.root())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut rank: std::collections::HashMap<(String, String), usize> = Default::default();
    let mut dropped = std::collections::HashSet::new();
    // Newest first: the rank is the backup's place among its environment's.
    for b in state.all_backups().map_err(internal)? {
        let r = rank
            .entry((b.project.clone(), b.environment.clone()))
            .or_default();
        let kept = slipway_deploy::backups::retained(&b, *r, now, keep, days);
        *r += 1;
        if !kept {
            state.remove_backup(b.id).map_err(internal)?;
            println!(
                "dropped backup {} of {}/{} ({})",
                b.id, b.project, b.environment, b.tag
            );
            dropped.insert(b.tag);
        }
    }
    Ok(dropped)
}

/// Unreferenced blobs younger than this are kept by `archive gc`: a build or a deploy
/// running now may not have tagged its slug yet.
const GC_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// `slipway archive gc`: per environment keep the `keep` newest releases that went live
/// (rollback targets), the live one, a deploy in progress and every release with a
/// container still running; drop the other release tags, every blob no kept release needs,
/// the unpacked slug folders whose slug is gone and that no container uses, and the
/// unpacked stack folders whose layer is gone and that no container's root is. Reports
/// what it freed. `running` is what [`running`] says runs: the containers and their slugs.
fn archive_gc(
    dir: &slipway_deploy::DataDir,
    archive: &slipway_slug::Archive,
    running: Running,
    keep: usize,
    dropped_backups: &std::collections::HashSet<String>,
) -> Result<u8, Failure> {
    use std::collections::HashSet;
    let state = open_state(dir.root())?;
    // Backups the state knows (and was not told to drop), and those being written now (a
    // tag is written just before its state row).
    let backup_tags: HashSet<String> = state
        .all_backups()
        .map_err(internal)?
        .into_iter()
        .map(|b| b.tag)
        .filter(|t| !dropped_backups.contains(t))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let young_backup = |tag: &str| {
        tag.rsplit('.')
            .next()
            .and_then(|last| last.split('-').next())
            .and_then(|t| t.parse::<u64>().ok())
            .is_some_and(|t| now.saturating_sub(t) < GC_GRACE.as_secs())
    };
    let mut kept = HashSet::new();
    for env in state.environments(None).map_err(internal)? {
        let mut went_live = 0;
        for r in state.releases(&env.project, &env.name).map_err(internal)? {
            // A release whose record does not decode may run: its slug is kept.
            let runs = match slipway_deploy::release_record::spec_of(&r) {
                Ok(s) => s
                    .apps
                    .iter()
                    .any(|a| running.containers.contains(&a.container)),
                Err(e) => {
                    eprintln!("slipway: its slug is kept: {e}");
                    true
                }
            };
            let rollback = matches!(r.status.as_str(), "live" | "retired") && went_live < keep;
            if matches!(r.status.as_str(), "live" | "retired") {
                went_live += 1;
            }
            if rollback || runs || r.status == "pending" || Some(r.id) == env.current_release {
                kept.insert(format!("{}.{}.r{}.", r.project, r.environment, r.number));
            }
        }
    }
    let report = archive
        .gc_with(
            &|tag: &str| {
                if tag.starts_with(slipway_deploy::backups::TAG_PREFIX) {
                    return backup_tags.contains(tag)
                        || (!dropped_backups.contains(tag) && young_backup(tag));
                }
                tag.starts_with("stack-") || kept.iter().any(|k| tag.starts_with(k.as_str()))
            },
            GC_GRACE,
        )
        .map_err(internal)?;
    for t in &report.tags_removed {
        println!("dropped {t}");
    }

    // Unpacked slugs: a folder per digest; drop those whose blob is gone, unless in use.
    let mut unpacked_removed = 0usize;
    let mut unpacked_bytes = 0u64;
    let unpacked = dir.unpacked_slugs();
    if let Ok(entries) = std::fs::read_dir(&unpacked) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            let Ok(digest) = slipway_slug::Digest::parse(&format!("sha256:{name}")) else {
                continue; // a temp folder of an unpack in progress, or not ours
            };
            if archive.has_blob(&digest) || running.slugs.contains(digest.as_str()) {
                continue;
            }
            let path = entry.path();
            let size = dir_size(&path);
            match std::fs::remove_dir_all(&path) {
                Ok(()) => {
                    unpacked_removed += 1;
                    unpacked_bytes += size;
                }
                Err(e) => eprintln!("slipway: could not remove {}: {e}", path.display()),
            }
        }
    }
    // Unpacked stacks: a folder per layer; a stack built anew leaves its old one.
    let (stacks_removed, stacks_bytes) =
        sweep_unpacked_stacks(&dir.root().join("stacks"), archive, &running);
    println!(
        "gc: dropped {} release tag(s), kept {}; removed {} blob(s) ({}), {} unpacked slug folder(s) ({}) \
         and {} unpacked stack folder(s) ({}); freed {} in all{}",
        report.tags_removed.len(),
        archive.list().map_err(internal)?.len(),
        report.blobs_removed,
        slipway_slug::human_size(report.bytes_freed),
        unpacked_removed,
        slipway_slug::human_size(unpacked_bytes),
        stacks_removed,
        slipway_slug::human_size(stacks_bytes),
        slipway_slug::human_size(report.bytes_freed + unpacked_bytes + stacks_bytes),
        if report.young_blobs_kept > 0 {
            format!(
                "; kept {} unreferenced blob(s) younger than an hour (a deploy may be writing them)",
                report.young_blobs_kept
            )
        } else {
            String::new()
        }
    );
    Ok(0)
}

/// What runs in a data dir, as `archive gc` must keep it.
#[derive(Debug, Default)]
struct Running {
    /// Ids of the running containers.
    containers: std::collections::HashSet<String>,
    /// The slugs they use (digests).
    slugs: std::collections::HashSet<String>,
    /// The unpacked stack folders their roots are.
    stack_roots: std::collections::HashSet<PathBuf>,
}

/// What runs in this data dir ([`Running`]), as the OCI runtime `runtime` lists it; refused
/// (exit 1) when containers ran here and the runtime cannot be asked.
fn running(dir: &slipway_deploy::DataDir, runtime: &Path) -> Result<Running, Failure> {
    let mut running = Running::default();
    if !dir.root().join("runtime").is_dir() {
        return Ok(running);
    }
    // Containers ran here: one may still run. A gc that cannot ask the runtime which could
    // drop a live release's slug, so it refuses.
    let runtime = slipway_runtime::Runtime::new(runtime, dir.root()).map_err(|e| {
        user_error(anyhow::anyhow!(
            "archive gc refused: it cannot see which containers run, and could drop the slug of one that does: {e}"
        ))
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(internal)?;
    let list = rt.block_on(runtime.list()).map_err(internal)?;
    for c in list {
        if c.status != slipway_runtime::Status::Stopped {
            if let Some(s) = c.annotations.get("dev.slipway.slug") {
                running.slugs.insert(s.clone());
            }
            if let Some(r) = c.annotations.get(slipway_runtime::STACK_ROOT_ANNOTATION) {
                running.stack_roots.insert(PathBuf::from(r));
            }
            running.containers.insert(c.id);
        }
    }
    Ok(running)
}

/// Remove the unpacked stack folders (`stacks/HEX`) of `stacks` whose layer is no longer in
/// `archive` (a stack built anew, or gone with the last release using it) and that no
/// running container's root is. Returns how many folders and bytes went.
fn sweep_unpacked_stacks(
    stacks: &Path,
    archive: &slipway_slug::Archive,
    running: &Running,
) -> (usize, u64) {
    let mut removed = (0usize, 0u64);
    let Ok(entries) = std::fs::read_dir(stacks) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Ok(digest) = slipway_slug::Digest::parse(&format!("sha256:{name}")) else {
            continue; // a lock, a build or unpack in progress, or not ours
        };
        let path = entry.path();
        if archive.has_blob(&digest) || running.stack_roots.contains(&path) {
            continue;
        }
        let size = dir_size(&path);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                removed.0 += 1;
                removed.1 += size;
            }
            Err(e) => eprintln!("slipway: could not remove {}: {e}", path.display()),
        }
    }
    removed
}

/// Bytes of the regular files below `path` (symlinks not followed).
fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}
