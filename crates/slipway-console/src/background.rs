//! Actions that outlive their request: backup create and restore, sync, rollback and
//! redeploy (also a variable change's redeploy). After the confirmation and the CSRF
//! check, [`Cx::start_in_env`] starts one on its own task (it runs to its end even if the
//! browser goes away) and answers with a 303 to its activity, whose page streams the log
//! live and replays it after (a reload shows it without JavaScript).
//!
//! An action's activity exists only once it holds the environment's deploy lock. While it
//! waits for another deploy of the environment, the answer is its waiting page
//! (`/started/N`, its starter's only), which says so, reloads itself (no JavaScript
//! needed) and goes on to the activity once it exists. An action refused before it began
//! (e.g. a sync of the parent) is answered with its message, as over SSH.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::StatusCode;
use maud::html;
use slipway_deploy::Platform;

use crate::handlers::{failed, not_found, Answer, Cx, EnvJob};
use crate::http::{page, see_other};
use crate::pages::{layout, refusal};

/// How long a POST waits for its action's activity before answering with the waiting page.
const WAIT_FOR_ACTIVITY: Duration = Duration::from_secs(3);

/// How often the activity is looked for meanwhile.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// How many started actions are remembered (the oldest finished ones go first).
const REMEMBERED: usize = 1000;

/// How many of an action's lines from before its activity existed are kept.
const EARLY_LINES: usize = 100;

/// The actions started from the console of one server, by number.
#[derive(Default)]
pub(crate) struct Started {
    next: AtomicU64,
    actions: Mutex<HashMap<u64, Arc<Action>>>,
}

/// One action started from the console.
struct Action {
    /// The user who started it (the only one who sees its waiting page).
    user: String,
    project: String,
    env: String,
    /// Its activity's kind (`backup`, `restore`, `sync`, `rollback`, `redeploy`).
    kind: &'static str,
    /// The newest activity of the environment when it started: its own comes after.
    after: i64,
    /// What it is, for its pages ("the backup").
    what: String,
    progress: Mutex<Progress>,
}

/// Where an action is.
#[derive(Default)]
struct Progress {
    /// What it said before its activity existed (e.g. that it waits for a deploy).
    early: Vec<String>,
    /// Its activity, once found.
    activity: Option<i64>,
    /// Its result (a summary or why it failed), once it ended.
    outcome: Option<Result<String, String>>,
}

/// What [`Started::look`] found.
enum Found {
    /// The action's activity.
    Activity(i64),
    /// It ended without an activity: refused before it began.
    Refused(String),
    /// It ended well without an activity (not expected; said as it is).
    Done(String),
    /// No activity yet: what it said so far.
    Waiting(Vec<String>),
}

impl Started {
    fn add(&self, action: Action) -> (u64, Arc<Action>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let action = Arc::new(action);
        let mut actions = self.actions.lock().unwrap_or_else(|e| e.into_inner());
        if actions.len() >= REMEMBERED {
            let mut ended: Vec<u64> = actions
                .iter()
                .filter(|(_, a)| a.progress().outcome.is_some())
                .map(|(id, _)| *id)
                .collect();
            ended.sort_unstable();
            for old in ended.iter().take(REMEMBERED / 2) {
                actions.remove(old);
            }
        }
        actions.insert(id, Arc::clone(&action));
        (id, action)
    }

    fn get(&self, id: u64) -> Option<Arc<Action>> {
        let actions = self.actions.lock().unwrap_or_else(|e| e.into_inner());
        actions.get(&id).cloned()
    }

    /// The activity ids other actions of `of` took already.
    fn claimed(&self, of: &Action) -> Vec<i64> {
        let actions = self.actions.lock().unwrap_or_else(|e| e.into_inner());
        actions
            .values()
            .filter(|a| !std::ptr::eq(Arc::as_ptr(a), of))
            .filter_map(|a| a.progress().activity)
            .collect()
    }

    /// Where `action` is: its activity (the first of its kind by its user in its
    /// environment after it started that no other action took), else its outcome.
    fn look(&self, platform: &Platform, action: &Action) -> Result<Found, String> {
        let (early, outcome) = {
            let p = action.progress();
            if let Some(id) = p.activity {
                return Ok(Found::Activity(id));
            }
            // Read before the activities: an outcome seen here came after its activity
            // (if any) was recorded, so none found below means there is none.
            (p.early.clone(), p.outcome.clone())
        };
        let claimed = self.claimed(action);
        let mine = platform
            .state()
            .activities(&action.project, Some(&action.env), 50)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|a| {
                a.id > action.after
                    && a.kind == action.kind
                    && a.user.as_deref() == Some(action.user.as_str())
                    && !claimed.contains(&a.id)
            })
            .map(|a| a.id)
            .min();
        if let Some(id) = mine {
            action.progress().activity = Some(id);
            return Ok(Found::Activity(id));
        }
        Ok(match outcome {
            Some(Err(m)) => Found::Refused(m),
            Some(Ok(summary)) => Found::Done(summary),
            None => Found::Waiting(early),
        })
    }
}

impl Action {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Cx<'_> {
    /// Start `work` (an action making an activity of `kind` on `env` of `project`) as this
    /// session's user on its own task, and answer with its activity (303), its waiting
    /// page (303) if it waits for another deploy, or, if it was refused before it began,
    /// its message under `refused_title` (409).
    pub(crate) async fn start_in_env<F, Fut>(
        &self,
        (kind, what, refused_title): (&'static str, &str, &str),
        project: &str,
        env: &str,
        work: F,
    ) -> Answer
    where
        F: FnOnce(EnvJob) -> Fut,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        let after = match self.platform.state().activities(project, Some(env), 1) {
            Ok(newest) => newest.first().map(|a| a.id).unwrap_or(0),
            Err(e) => return failed(&e.to_string()),
        };
        let (number, action) = self.started.add(Action {
            user: self.session.user.name.clone(),
            project: project.to_string(),
            env: env.to_string(),
            kind,
            after,
            what: what.to_string(),
            progress: Mutex::default(),
        });
        let sink: slipway_deploy::output::Sink = {
            let action = Arc::clone(&action);
            Arc::new(move |l: &str| {
                let mut p = action.progress();
                if p.activity.is_none() && p.early.len() < EARLY_LINES {
                    p.early.push(l.to_string());
                }
            })
        };
        let job = EnvJob {
            platform: Arc::clone(self.platform),
            project: project.to_string(),
            env: env.to_string(),
            user: self.session.user.name.clone(),
            sink,
        };
        let task = tokio::spawn(work(job));
        {
            let action = Arc::clone(&action);
            let what = what.to_string();
            tokio::spawn(async move {
                let outcome = task
                    .await
                    .unwrap_or_else(|_| Err(format!("{what} stopped unexpectedly")));
                action.progress().outcome = Some(outcome);
            });
        }
        let deadline = tokio::time::Instant::now() + WAIT_FOR_ACTIVITY;
        loop {
            match self.started.look(self.platform, &action) {
                Ok(Found::Waiting(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(LOOK_EVERY).await
                }
                Ok(Found::Waiting(_)) => return see_other(&format!("/started/{number}"), None),
                Ok(found) => return self.show_found(&action, found, refused_title),
                Err(e) => return failed(&e),
            }
        }
    }

    /// `/started/N`: the action's activity (303) once it has one; meanwhile what it said,
    /// reloading itself.
    pub(crate) fn started_page(&self, number: u64) -> Answer {
        let Some(action) = self
            .started
            .get(number)
            .filter(|a| a.user == self.session.user.name)
        else {
            return not_found();
        };
        match self.started.look(self.platform, &action) {
            Ok(found) => self.show_found(&action, found, "Not done"),
            Err(e) => failed(&e),
        }
    }

    fn show_found(&self, action: &Action, found: Found, refused_title: &str) -> Answer {
        let back = format!("/p/{}/e/{}", action.project, action.env);
        let activity = format!("/p/{}/activity", action.project);
        match found {
            Found::Activity(id) => see_other(&format!("/activity/{id}"), None),
            Found::Refused(m) => page(
                StatusCode::CONFLICT,
                refusal(
                    refused_title,
                    &format!("{m}."),
                    Some(html! { p { a href=(back) { "Back to " (action.env) } } }),
                ),
            ),
            Found::Done(summary) => self.show(
                "Done",
                html! { h1 { "Done" } div class="notice" { p id="status" { (summary) } } p { a href=(back) { "Back to " (action.env) } } },
            ),
            Found::Waiting(early) => page(
                StatusCode::OK,
                layout(
                    "Waiting",
                    Some(&self.viewer()),
                    html! {
                        meta http-equiv="refresh" content="2";
                        h1 { "Waiting" }
                        p id="status" { "Started: " (action.what) " of " (action.env) " of " (action.project)
                            " begins once the environment is free. This page goes on to its activity then." }
                        p { a href=(activity) { "Activity of " (action.project) } " · " a href=(back) { "Back to " (action.env) } }
                        @if !early.is_empty() { pre class="log" id="log" { @for l in &early { (l) "\n" } } }
                    },
                ),
            ),
        }
    }
}
