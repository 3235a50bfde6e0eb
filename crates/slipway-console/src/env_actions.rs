//! Actions on an environment that SSH also has: running a cron now (`cron run`) and
//! copying the parent's data into a branch (`sync`). Each checks the role with
//! [`access::check`] and runs the same operation as the SSH command; GET shows the
//! confirmation, POST (its CSRF token checked before) acts.

use std::sync::Arc;

use maud::html;
use slipway_deploy::crons;
use slipway_deploy::failure::{Failure, Kind};
use slipway_deploy::{access, sync};

use crate::handlers::{failed, failure_page, refusal_page, Answer, Cx};
use crate::http::see_other;

impl Cx<'_> {
    /// `/p/PROJECT/e/ENV/crons/run/NAME`: run the cron now, then go to its activity,
    /// where its output streams as it comes.
    pub(crate) async fn run_cron(&self, project: &str, env: &str, name: &str, run: bool) -> Answer {
        if let Err(refusal) = self.allowed(project, env, access::RUN_CRONS) {
            return *refusal;
        }
        let cron = match crons::live_cron(self.platform, project, env, name) {
            Ok(c) => c,
            Err(e) => return failure_page(&e),
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
        // The run goes on after this answer, which goes to its activity once it is recorded.
        let (started, mut recorded) = tokio::sync::mpsc::unbounded_channel::<i64>();
        let watch = slipway_deploy::output::Watch {
            lines: None,
            started: Some(Arc::new(move |id: i64| {
                let _ = started.send(id);
            })),
        };
        let mut task = {
            let (platform, cron, user) = (
                Arc::clone(self.platform),
                cron.clone(),
                self.session.user.name.clone(),
            );
            tokio::spawn(async move { crons::run(&platform, &cron, Some(&user), watch).await })
        };
        let id = tokio::select! {
            biased;
            Some(id) = recorded.recv() => id,
            done = &mut task => match done {
                Ok(Ok((id, _))) => id,
                Ok(Err(e)) => return match e.kind() {
                    Kind::Refused(why) => refusal_page(why, Some("Not run"), &format!("{e}. Nothing was run."), Some(html! { p { a href=(back) { "Back to the crons" } } })),
                    Kind::Internal => failed(&e.to_string()),
                },
                Err(_) => return failed("the cron run stopped unexpectedly"),
            },
        };
        see_other(&format!("/activity/{id}"), None)
    }

    /// `/p/PROJECT/e/ENV/sync`: a fresh copy of the parent's mount and service data (a
    /// branch's only), in the background; off to its activity.
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
        self.start_in_env(("the sync", "Not synced"), project, env, |j| async move {
            sync::run(&j.platform, &j.project, &j.env, &j.user, j.watch).await
        })
        .await
    }
}
