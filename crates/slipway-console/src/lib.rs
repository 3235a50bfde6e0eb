//! The web console (spec section 11), served by the router at `console.DOMAIN` over the
//! HTTP (and HTTPS) listener: a login through a one-time link that `ssh git@HOST console`
//! prints ([`sessions`]), server-rendered pages ([`pages`], maud) of projects,
//! environments, releases (with who made each), activity with live push logs, app logs,
//! variables, crons, services, backups, access and domains (`project_pages`), and the
//! actions of the SSH admin commands (rollback, redeploy, variables, cron run, sync,
//! backup create and restore, access, domains) under the same checks
//! ([`slipway_deploy::access`]), each confirmed first and guarded by the session's CSRF
//! token.
//!
//! The router hands each request of the console's host to [`Console`] (a
//! [`slipway_router::ConsoleSite`]); the console answers it on the server's main runtime,
//! so the router's worker threads only pass bytes. A long action (backup, restore, sync,
//! rollback, redeploy) runs in the background and the answer goes to exactly its activity
//! (the operation hands its id over), which streams its log ([`background`]); it keeps
//! running if its client goes away, and its waiting page is kept in the state database.

#![warn(missing_docs)]

mod background;
mod backups;
mod env_actions;
mod events;
mod handlers;
mod http;
pub mod pages;
mod project_pages;
pub mod sessions;
pub mod token;

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use slipway_deploy::Platform;
use slipway_router::{ConsoleFuture, ConsoleSite};

pub use sessions::{console_host, issue_login, LOGIN_VALID, SESSION_LIFETIME};

/// The web console of one server.
pub struct Console {
    platform: Arc<Platform>,
    runtime: tokio::runtime::Handle,
    started: Arc<background::Started>,
}

impl Console {
    /// The console of `platform`, answering on `runtime` (the server's main runtime).
    pub fn new(platform: Arc<Platform>, runtime: tokio::runtime::Handle) -> Arc<Console> {
        Arc::new(Console {
            platform,
            runtime,
            started: Arc::default(),
        })
    }

    /// Wait until the actions this server runs for the console (backups, restores, syncs,
    /// rollbacks, redeploys) ended, at most `within`, as an upgraded server does before it
    /// exits; returns how many still run.
    pub async fn wait_idle(&self, within: std::time::Duration) -> usize {
        self.started.wait_idle(within).await
    }

    /// Serve the console at `console.DOMAIN` on the platform's router.
    pub fn install(self: &Arc<Self>) -> bool {
        let host = console_host(&self.platform);
        self.platform
            .router()
            .set_console(&host, Arc::clone(self) as Arc<dyn ConsoleSite>)
    }
}

impl ConsoleSite for Console {
    fn serve(&self, req: Request<Incoming>, https: bool) -> ConsoleFuture {
        let (platform, started) = (Arc::clone(&self.platform), Arc::clone(&self.started));
        let task = self
            .runtime
            .spawn(async move { handlers::answer(platform, started, req, https).await });
        Box::pin(async move {
            task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "console request failed");
                http::page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    pages::refusal(
                        "Something went wrong",
                        "The console could not answer this request. Nothing was changed; try again.",
                        None,
                    ),
                )
            })
        })
    }
}
