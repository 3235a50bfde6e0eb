//! The router: the swappable route table and the operations on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use arc_swap::ArcSwap;

use crate::config::RouterConfig;
use crate::console::{Console, ConsoleSite};
use crate::gate::{Gate, Hold};
use crate::gzip_store::GzipStore;
use crate::locations::WebSite;
use crate::metrics::AllStats;
use crate::release::LiveRelease;
use crate::routes::{EnvRoutes, RouteError};
use crate::table::RouteTable;

/// The HTTP router: Host header and path -> environment -> the environment's live release.
///
/// The route table is one immutable value swapped atomically; requests read it without
/// taking a lock. Changes are serialized among themselves by a mutex.
pub struct Router {
    pub(crate) config: RouterConfig,
    pub(crate) table: ArcSwap<RouteTable>,
    writer: Mutex<HashMap<String, Arc<Gate>>>,
    /// Request counters per environment ([`crate::metrics`]).
    pub(crate) stats: AllStats,
    /// The router's own site at one host (the web console), once set.
    console: OnceLock<Console>,
    /// The gzipped copies of static files, if [`RouterConfig::gzip_dir`] is set.
    gzip_store: Option<Arc<GzipStore>>,
    /// The answers to ACME HTTP-01 challenges, once the server orders certificates.
    acme: OnceLock<Arc<crate::acme_challenges::Challenges>>,
    /// Apps' relationship addresses the router listens on ([`Router::listen_app`]).
    pub(crate) app_listeners: crate::app_listener::AppListeners,
}

impl Router {
    /// A router with an empty route table.
    pub fn new(config: RouterConfig) -> Arc<Router> {
        let gzip_store = config.gzip_dir.as_deref().and_then(|dir| {
            match GzipStore::open(dir, config.gzip_dir_max_bytes) {
                Ok(store) => Some(Arc::new(store)),
                Err(e) => {
                    tracing::warn!(
                        dir = %dir.display(),
                        "no gzipped copies of static files (compressed at each request): {e}"
                    );
                    None
                }
            }
        });
        Arc::new(Router {
            gzip_store,
            config,
            table: ArcSwap::from_pointee(RouteTable::default()),
            writer: Mutex::new(HashMap::new()),
            stats: AllStats::default(),
            console: OnceLock::new(),
            acme: OnceLock::new(),
            app_listeners: Default::default(),
        })
    }

    /// The router's settings.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Serve `site` at `host` (e.g. `console.localhost`), over HTTP and HTTPS, before
    /// the route table is looked at. Set once: false if a console was set already.
    pub fn set_console(&self, host: &str, site: Arc<dyn ConsoleSite>) -> bool {
        self.console.set(Console::new(host, site)).is_ok()
    }

    /// The console, if `host` (as a client sent it) is its host.
    pub(crate) fn console_for(&self, host: &str) -> Option<&Console> {
        self.console.get().filter(|c| c.is_for(host))
    }

    /// Answer ACME HTTP-01 challenges from `challenges` on plain HTTP, for any host,
    /// before the console and the route table. Set once: false if set already.
    pub fn answer_acme_challenges(
        &self,
        challenges: Arc<crate::acme_challenges::Challenges>,
    ) -> bool {
        self.acme.set(challenges).is_ok()
    }

    /// The key authorization answering a plain HTTP request for `path`, if it is an ACME
    /// challenge in progress.
    pub(crate) fn acme_answer(&self, path: &str) -> Option<String> {
        self.acme.get()?.answer(path)
    }

    /// The hosts the HTTPS listener needs a certificate for: those with a route written
    /// `https://`, and the console's (normalized, sorted).
    pub fn https_hosts(&self) -> Vec<String> {
        let mut hosts = self.table.load().https_hosts();
        if let Some(console) = self.console.get() {
            hosts.push(console.host().to_string());
        }
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// The `Strict-Transport-Security` value of a request over TLS for `path` on `host`,
    /// if its route has HSTS.
    pub(crate) fn hsts(&self, host: &str, path: &str) -> Option<hyper::header::HeaderValue> {
        self.table.load().hsts_for(host, path).cloned()
    }

    /// Hold new requests for environment `env` until the returned value is dropped (or
    /// the router's `hold_timeout` passed for a request). Use it around a switch that
    /// must look atomic from outside, e.g. moving a branch ref and then the routes.
    pub fn hold(&self, env: &str) -> Hold {
        let mut gates = self.lock_writer();
        gate_of(&mut gates, env).hold()
    }

    /// Atomically route environment `env` (e.g. `"demo/main"`) as `routes` says. The
    /// environment's previous hosts that are not in `routes` stop routing; a host that
    /// another environment routes stays with it (see [`Router::owner`] to refuse first).
    ///
    /// Returns the previously live release of the environment, to drain and then stop: it
    /// gets no new request from now on, and its idle upstream connections are closed
    /// (busy ones after their current request). Returns `None` when there was none, or
    /// when it had the very same upstreams (then only the rules changed, and the release
    /// keeps its connections).
    pub fn switch(
        &self,
        env: &str,
        routes: EnvRoutes,
    ) -> Result<Option<Arc<LiveRelease>>, RouteError> {
        routes.validate()?;
        // Roots opened and rules compiled before anything changes: a bad location
        // refuses the switch.
        let sites = routes
            .sites
            .iter()
            .map(|(app, site)| Ok((app.clone(), self.compile_site(app, site)?)))
            .collect::<Result<Vec<_>, RouteError>>()?;
        let mut gates = self.lock_writer();
        let gate = gate_of(&mut gates, env);
        let table = self.table.load_full();
        let previous = table.release_of(env).cloned();
        if let Some(same) = previous
            .as_ref()
            .filter(|p| p.same_upstreams(&routes.upstreams))
        {
            self.table
                .store(Arc::new(table.with_live(env, &gate, same, &routes, &sites)));
            tracing::info!(env, release = %routes.release, "routes updated, same release");
            return Ok(None);
        }
        tracing::info!(
            env,
            release = %routes.release,
            previous = previous.as_ref().map(|r| r.name()).unwrap_or("-"),
            hosts = ?routes.hosts(),
            "switching routes"
        );
        let release = LiveRelease::with_stats(
            routes.release.clone(),
            &routes.upstreams,
            &self.config,
            self.stats.of(env),
        );
        self.table.store(Arc::new(
            table.with_live(env, &gate, &release, &routes, &sites),
        ));
        // After the store: a request that counted itself in on the old release before this
        // point is seen by `drained`; one that does it later sees the flag and re-reads
        // the table.
        if let Some(old) = &previous {
            old.retire();
        }
        Ok(previous)
    }

    /// App `app`'s locations compiled to be served (roots opened, rules compiled).
    pub(crate) fn compile_site(
        &self,
        app: &str,
        site: &crate::site::Site,
    ) -> Result<Arc<WebSite>, RouteError> {
        Ok(Arc::new(
            WebSite::compile(app, site, self.config.open_file_cache)?
                .with_gzip_store(self.gzip_store.clone()),
        ))
    }

    /// Mark `hosts` of environment `env`, being deployed for the first time: they answer
    /// 503 with `Retry-After` until [`Router::switch`]. An environment that already has a
    /// live release is left unchanged (it keeps serving during its redeploy); a host that
    /// another environment routes stays with it.
    pub fn set_deploying(&self, env: &str, hosts: Vec<String>) {
        let mut gates = self.lock_writer();
        let gate = gate_of(&mut gates, env);
        let table = self.table.load_full();
        if table.release_of(env).is_some() {
            tracing::debug!(env, "set_deploying ignored: environment is live");
            return;
        }
        self.table
            .store(Arc::new(table.with_deploying(env, &gate, &hosts)));
    }

    /// Remove an environment's routes, live or deploying. Returns its live release, if
    /// any, to drain and then stop.
    pub fn remove(&self, env: &str) -> Option<Arc<LiveRelease>> {
        let mut gates = self.lock_writer();
        let table = self.table.load_full();
        let previous = table.release_of(env).cloned();
        self.table.store(Arc::new(table.without_env(env)));
        if let Some(old) = &previous {
            old.retire();
        }
        // A hold still alive keeps its gate; later holds get a fresh one.
        gates.remove(env);
        previous
    }

    /// The release currently live for `env`.
    pub fn current(&self, env: &str) -> Option<Arc<LiveRelease>> {
        self.table.load().release_of(env).cloned()
    }

    /// The environment (e.g. `"demo/main"`) that routes `host` now, live or being
    /// deployed; `host` is compared as clients send it (case, port, trailing dot ignored).
    pub fn owner(&self, host: &str) -> Option<String> {
        let host = crate::table::normalize_host(host);
        self.table.load().owner_of(&host).map(str::to_string)
    }

    /// The hosts `env` currently owns (normalized, sorted).
    pub fn hosts(&self, env: &str) -> Vec<String> {
        self.table.load().hosts_of(env)
    }

    fn lock_writer(&self) -> MutexGuard<'_, HashMap<String, Arc<Gate>>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn gate_of(gates: &mut HashMap<String, Arc<Gate>>, env: &str) -> Arc<Gate> {
    Arc::clone(gates.entry(env.to_string()).or_default())
}
