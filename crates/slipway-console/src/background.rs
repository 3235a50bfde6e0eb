//! Actions that outlive their request: backup create and restore, sync, rollback and
//! redeploy (also a variable change's redeploy). After the confirmation and the CSRF
//! check, [`Cx::start_in_env`] starts one on its own task (it runs to its end even if the
//! browser goes away) and answers with a 303 to its activity, whose page streams the log
//! live and replays it after (a reload shows it without JavaScript). The operation itself
//! tells the id of the activity it records ([`slipway_deploy::output::Watch`]), so the
//! answer goes to exactly that activity, whoever else starts one at the same moment.
//!
//! An action's activity exists only once it holds the environment's deploy lock. While it
//! waits for another deploy of the environment, the answer is its waiting page
//! (`/started/N`, its starter's only), which says so, reloads itself (no JavaScript
//! needed) and goes on to the activity once it exists. Where the action is lives in the
//! state database ([`slipway_state::ConsoleAction`]), so the waiting page survives a
//! restart and `serve --upgrade` (the old server runs its actions to their end while it
//! drains: [`crate::Console::wait_idle`]) and expires after [`ACTION_LIFETIME`]. An
//! action that failed before it began is answered as over SSH: a refusal (e.g. a sync of
//! the parent) with its message, an internal failure with
//! [`slipway_deploy::failure::INTERNAL_MESSAGE`], the failure itself in the server's log
//! ([`Failure::told`]).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use maud::html;
use slipway_deploy::failure::{Failure, Kind, Refusal, INTERNAL_MESSAGE};
use slipway_deploy::output::{ActivityStarted, Sink, Watch};
use slipway_state::{ActionOutcome, ActionProgress, ConsoleAction};

use crate::handlers::{failed, not_found, refusal_page, Answer, Cx, EnvJob};
use crate::http::{page, see_other};
use crate::pages::{layout, refusal};

/// How long a POST waits for its action's activity before answering with the waiting page.
const WAIT_FOR_ACTIVITY: Duration = Duration::from_secs(3);

/// How long a started action's waiting page is remembered (seconds).
pub(crate) const ACTION_LIFETIME: i64 = 86_400;

/// How many of an action's lines from before its activity existed are kept.
const EARLY_LINES: usize = 100;

/// The actions this server runs for the console.
#[derive(Default)]
pub(crate) struct Started {
    /// How many run now.
    running: AtomicUsize,
}

/// One running action, counted in [`Started::running`] while it lives.
struct Running(Arc<Started>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Started {
    /// Wait until no action runs here, at most `within`; returns how many still run.
    pub(crate) async fn wait_idle(&self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let running = self.running.load(Ordering::Acquire);
            if running == 0 || tokio::time::Instant::now() >= deadline {
                return running;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Whether the server with process id `pid` still runs (the action it runs may go on).
fn server_runs(pid: u32) -> bool {
    pid == std::process::id() || std::path::Path::new(&format!("/proc/{pid}")).exists()
}

impl Cx<'_> {
    /// Start `work` (an action making an activity on `env` of `project`) as this session's
    /// user on its own task, and answer with its activity (303), its waiting page (303)
    /// if it waits for another deploy, or, if it was refused before it began, its message
    /// under `refused_title` (403, 404, 400 or 409 by its kind), or the words for an internal failure (500).
    pub(crate) async fn start_in_env<F, Fut, E>(
        &self,
        (what, refused_title): (&str, &str),
        project: &str,
        env: &str,
        work: F,
    ) -> Answer
    where
        F: FnOnce(EnvJob) -> Fut,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Failure + Send + 'static,
    {
        let user = self.session.user.name.clone();
        let number = match self.platform.state().start_console_action(
            &user,
            (project, env),
            what,
            std::process::id(),
            crate::sessions::now() + ACTION_LIFETIME,
        ) {
            Ok(n) => n,
            Err(e) => return failed(&e.to_string()),
        };
        let (progress, mut seen) = tokio::sync::watch::channel(ActionProgress::Waiting);
        let progress = Arc::new(progress);
        let lines: Sink = {
            let (platform, progress) = (Arc::clone(self.platform), Arc::clone(&progress));
            let said = AtomicUsize::new(0);
            Arc::new(move |l: &str| {
                if *progress.borrow() == ActionProgress::Waiting
                    && said.fetch_add(1, Ordering::Relaxed) < EARLY_LINES
                {
                    if let Err(e) = platform.state().console_action_line(number, l) {
                        tracing::warn!(action = number, "console action: {e}");
                    }
                }
            })
        };
        let started: ActivityStarted = {
            let (platform, progress) = (Arc::clone(self.platform), Arc::clone(&progress));
            Arc::new(move |activity: i64| {
                if let Err(e) = platform.state().console_action_activity(number, activity) {
                    tracing::warn!(action = number, "console action: {e}");
                }
                progress.send_replace(ActionProgress::Activity(activity));
            })
        };
        let job = EnvJob {
            platform: Arc::clone(self.platform),
            project: project.to_string(),
            env: env.to_string(),
            user,
            watch: Watch {
                lines: Some(lines),
                started: Some(started),
            },
        };
        self.started.running.fetch_add(1, Ordering::AcqRel);
        let running = Running(Arc::clone(self.started));
        let task = tokio::spawn(work(job));
        {
            let (platform, progress) = (Arc::clone(self.platform), Arc::clone(&progress));
            let what = what.to_string();
            tokio::spawn(async move {
                let _running = running;
                let outcome = match task.await {
                    Ok(Ok(summary)) => ActionOutcome::Done(summary),
                    Ok(Err(e)) => {
                        let told = e.told(&format!("console action {number}: {what}"));
                        match e.kind() {
                            Kind::Refused(why) => ActionOutcome::Refused(why, told),
                            Kind::Internal => ActionOutcome::Failed,
                        }
                    }
                    Err(e) => {
                        tracing::error!(action = number, "console action: {what} stopped: {e}");
                        ActionOutcome::Failed
                    }
                };
                if let Err(e) = platform.state().console_action_ended(number, &outcome) {
                    tracing::warn!(action = number, "console action: {e}");
                }
                progress.send_modify(|p| {
                    if *p == ActionProgress::Waiting {
                        *p = match outcome {
                            ActionOutcome::Done(summary) => ActionProgress::Done(summary),
                            ActionOutcome::Refused(kind, why) => ActionProgress::Refused(kind, why),
                            ActionOutcome::Failed => ActionProgress::Failed,
                        };
                    }
                });
            });
        }
        let found = tokio::time::timeout(
            WAIT_FOR_ACTIVITY,
            seen.wait_for(|p| *p != ActionProgress::Waiting),
        )
        .await;
        match found {
            Ok(Ok(p)) => {
                let progress = p.clone();
                drop(p);
                match self
                    .platform
                    .state()
                    .console_action(number, &self.session.user.name)
                {
                    Ok(Some(action)) => self.show_action(&action, &progress, refused_title),
                    Ok(None) => not_found(),
                    Err(e) => failed(&e.to_string()),
                }
            }
            _ => see_other(&format!("/started/{number}"), None),
        }
    }

    /// `/started/N`: the action's activity (303) once it has one; meanwhile what it said,
    /// reloading itself. Only its starter's; gone once expired.
    pub(crate) fn started_page(&self, number: i64) -> Answer {
        match self
            .platform
            .state()
            .console_action(number, &self.session.user.name)
        {
            Ok(Some(action)) => {
                let progress = action.progress.clone();
                self.show_action(&action, &progress, "Not done")
            }
            Ok(None) => not_found(),
            Err(e) => failed(&e.to_string()),
        }
    }

    fn show_action(
        &self,
        action: &ConsoleAction,
        progress: &ActionProgress,
        refused_title: &str,
    ) -> Answer {
        let env = &action.environment;
        let back = format!("/p/{}/e/{env}", action.project);
        let activity = format!("/p/{}/activity", action.project);
        match progress {
            ActionProgress::Activity(id) => see_other(&format!("/activity/{id}"), None),
            // Refused before it began: the refusal's own kind (403, 404, 400 or 409).
            ActionProgress::Refused(kind, m) => refusal_page(
                *kind,
                Some(refused_title),
                &format!("{m}."),
                Some(html! { p { a href=(back) { "Back to " (env) } } }),
            ),
            ActionProgress::Failed => page(
                StatusCode::INTERNAL_SERVER_ERROR,
                refusal(
                    refused_title,
                    &format!("{INTERNAL_MESSAGE}."),
                    Some(html! { p { a href=(back) { "Back to " (env) } } }),
                ),
            ),
            ActionProgress::Done(summary) => self.show(
                "Done",
                html! { h1 { "Done" } div class="notice" { p id="status" { (summary) } } p { a href=(back) { "Back to " (env) } } },
            ),
            ActionProgress::Waiting if !server_runs(action.server_pid) => refusal_page(
                Refusal::Conflict,
                Some("Not done"),
                &format!(
                    "{} of {env} of {} never began: the server running it (pid {}) stopped before the environment was free. Nothing was done; start it again.",
                    action.what, action.project, action.server_pid
                ),
                Some(html! { p { a href=(back) { "Back to " (env) } } }),
            ),
            ActionProgress::Waiting => page(
                StatusCode::OK,
                layout(
                    "Waiting",
                    Some(&self.viewer()),
                    html! {
                        meta http-equiv="refresh" content="2";
                        h1 { "Waiting" }
                        p id="status" { "Started: " (action.what) " of " (env) " of " (action.project)
                            " begins once the environment is free. This page goes on to its activity then." }
                        p { a href=(activity) { "Activity of " (action.project) } " · " a href=(back) { "Back to " (env) } }
                        @if !action.early.is_empty() { pre class="log" id="log" { @for l in &action.early { (l) "\n" } } }
                    },
                ),
            ),
        }
    }
}
