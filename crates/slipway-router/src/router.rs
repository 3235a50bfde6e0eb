//! The router: the swappable route table and the operations on it.

use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;

use crate::config::RouterConfig;
use crate::route::{Route, Upstream};
use crate::table::{RouteTable, Target};

/// The HTTP router: Host header -> environment -> the environment's live release.
///
/// The route table is one immutable value swapped atomically; requests read it without
/// taking a lock. Changes are serialized among themselves by a mutex.
pub struct Router {
    pub(crate) config: RouterConfig,
    pub(crate) table: ArcSwap<RouteTable>,
    writer: Mutex<()>,
}

impl Router {
    /// A router with an empty route table.
    pub fn new(config: RouterConfig) -> Arc<Router> {
        Arc::new(Router {
            config,
            table: ArcSwap::from_pointee(RouteTable::default()),
            writer: Mutex::new(()),
        })
    }

    /// The router's settings.
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }

    /// Atomically route `hosts` (host names; port, case and a trailing dot are ignored) of
    /// environment `env` (e.g. `"demo/main"`) to `upstream`. The environment's previous
    /// hosts that are not in `hosts` stop routing; a host that belonged to another
    /// environment moves to this one.
    ///
    /// Returns the previously routed route of that environment, to drain and then stop.
    /// Returns `None` when there was none, or when it was the very same `upstream` (then
    /// only the hosts changed and nothing must be stopped).
    pub fn switch(&self, env: &str, hosts: Vec<String>, upstream: Upstream) -> Option<Arc<Route>> {
        let _writer = self.lock_writer();
        let table = self.table.load_full();
        if table.is_live(env, &upstream) {
            let same = table.route_of(env).cloned()?;
            self.table
                .store(Arc::new(table.with_env(env, hosts, Target::Live(same))));
            tracing::info!(env, release = %upstream.release, "routes updated, same release");
            return None;
        }
        let previous = table.route_of(env).cloned();
        tracing::info!(
            env,
            release = %upstream.release,
            port = upstream.port,
            previous = previous.as_ref().map(|r| r.upstream().release.as_str()).unwrap_or("-"),
            "switching routes"
        );
        let route = Route::new(upstream);
        self.table
            .store(Arc::new(table.with_env(env, hosts, Target::Live(route))));
        previous
    }

    /// Mark `hosts` of environment `env`, being deployed for the first time: they answer
    /// 503 with `Retry-After` until [`Router::switch`]. An environment that already has a
    /// live release is left unchanged (it keeps serving during its redeploy).
    pub fn set_deploying(&self, env: &str, hosts: Vec<String>) {
        let _writer = self.lock_writer();
        let table = self.table.load_full();
        if table.route_of(env).is_some() {
            tracing::debug!(env, "set_deploying ignored: environment is live");
            return;
        }
        self.table
            .store(Arc::new(table.with_env(env, hosts, Target::Deploying)));
    }

    /// Remove an environment's routes, live or deploying. Returns its live route, if any,
    /// to drain and then stop.
    pub fn remove(&self, env: &str) -> Option<Arc<Route>> {
        let _writer = self.lock_writer();
        let table = self.table.load_full();
        let previous = table.route_of(env).cloned();
        self.table.store(Arc::new(table.without_env(env)));
        previous
    }

    /// The upstream currently routed for `env`.
    pub fn current(&self, env: &str) -> Option<Upstream> {
        self.table
            .load()
            .route_of(env)
            .map(|r| r.upstream().clone())
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: a poisoned lock holds nothing inconsistent.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
