//! Actions on an environment that SSH also has: running a cron now (`cron run`) and
//! copying the parent's data into a branch (`sync`). Each checks the role with
//! [`access::check`] and runs the same operation as the SSH command; GET shows the
//! confirmation, POST (its CSRF token checked before) acts.

use std::sync::Arc;

use hyper::StatusCode;
use maud::html;
use slipway_deploy::crons::{self, CronError};
use slipway_deploy::{access, sync};

use crate::handlers::{failed, refused, Answer, Cx};
use crate::http::{page, see_other};
use crate::pages::{layout, refusal};

impl Cx<'_> {
    /// `/p/PROJECT/e/ENV/crons/run/NAME`: run the cron now, then go to its activity,
    /// where its output streams as it comes.
    pub(crate) async fn run_cron(&self, project: &str, env: &str, name: &str, run: bool) -> Answer {
        if let Err(refusal) = self.allowed(project, env, access::RUN_CRONS) {
            return *refusal;
        }
        let cron = match crons::live_cron(self.platform, project, env, name) {
            Ok(c) => c,
            Err(CronError::NotFound(m)) => return refused(&m),
            Err(e) => return failed(&e.to_string()),
        };
        let back = format!("/p/{project}/e/{env}/crons");
        if !run {
            let question = format!(
                "Run cron {name} of {env} of {project} now (`{}` in app {})?",
                cron.cron.start, cron.app.name
            );
            return self.confirm(
                &question,
                &format!("{back}/run/{name}"),
                &[],
                "Run now",
                &back,
            );
        }
        // The run goes on after this answer; its first line comes once its activity exists.
        let (started, mut first_line) = tokio::sync::mpsc::unbounded_channel::<()>();
        let sink: slipway_deploy::output::Sink = Arc::new(move |_: &str| {
            let _ = started.send(());
        });
        let mut task = {
            let (platform, cron, user) = (
                Arc::clone(self.platform),
                cron.clone(),
                self.session.user.name.clone(),
            );
            tokio::spawn(async move { crons::run(&platform, &cron, Some(&user), Some(sink)).await })
        };
        let id = tokio::select! {
            done = &mut task => match done {
                Ok(Ok((id, _))) => Some(id),
                Ok(Err(e)) => return page(
                    StatusCode::CONFLICT,
                    refusal("Not run", &format!("{e}. Nothing was run."), Some(html! { p { a href=(back) { "Back to the crons" } } })),
                ),
                Err(_) => return failed("the cron run stopped unexpectedly"),
            },
            _ = first_line.recv() => None,
        };
        // Never two runs of one cron at once: the last run is this one.
        match id.or_else(|| crons::last_run(self.platform, &cron).map(|a| a.id)) {
            Some(id) => see_other(&format!("/activity/{id}"), None),
            None => failed("the cron run's activity was not found"),
        }
    }

    /// `/p/PROJECT/e/ENV/sync`: a fresh copy of the parent's mount and service data (a
    /// branch's only); the result page shows its output.
    pub(crate) async fn sync(&self, project: &str, env: &str, run: bool) -> Answer {
        if let Err(refusal) = self.allowed(project, env, access::SYNC) {
            return *refusal;
        }
        let back = format!("/p/{project}/e/{env}");
        if !run {
            let question = format!(
                "Replace the mount and service data of {env} of {project} with a fresh copy of its parent's? Its services restart, and what {env} wrote is lost."
            );
            return self.confirm(
                &question,
                &format!("{back}/sync"),
                &[],
                "Sync from parent",
                &back,
            );
        }
        let (result, log) = self
            .run_in_env("the sync", project, env, |j| async move {
                sync::run(&j.platform, &j.project, &j.env, &j.user, Some(j.sink)).await
            })
            .await;
        // Its activity: the newest sync of this environment by this user.
        let activity = self
            .platform
            .state()
            .activities(project, Some(env), 20)
            .unwrap_or_default()
            .into_iter()
            .find(|a| a.kind == "sync" && a.user.as_deref() == Some(&self.session.user.name))
            .map(|a| a.id);
        let (status, title, line) = match &result {
            Ok(summary) => (StatusCode::OK, "Synced", summary.clone()),
            Err(m) => (StatusCode::CONFLICT, "Not synced", format!("{m}.")),
        };
        page(
            status,
            layout(
                title,
                Some(&self.viewer()),
                html! {
                    h1 { (title) }
                    div class=(if result.is_ok() { "notice" } else { "refused" }) { p id="status" { (line) } }
                    p { a href=(back) { "Back to " (env) } @if let Some(id) = activity { " · " a href={ "/activity/" (id) } { "Activity " (id) } } }
                    @if !log.is_empty() { pre class="log" id="log" { (log) } }
                },
            ),
        )
    }
}
