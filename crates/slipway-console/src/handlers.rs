//! Requests to pages and actions: the session first, then (for a change) the CSRF token,
//! both in [`answer`] before a [`Cx`] exists, then the role through [`Cx::allowed`] (an
//! environment's) or [`Cx::member`] (a project's), exactly as the SSH admin commands check
//! it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use maud::{html, Markup};
use slipway_deploy::environment::ReleaseSpec;
use slipway_deploy::failure::{Failure, Kind, Refusal};
use slipway_deploy::operations::{self, Operation};
use slipway_deploy::{access, variables, Platform};
use slipway_router::ConsoleBody;
use slipway_state::{ConsoleSession, ReleaseAuthor, Role, VariableValue};

use crate::background::Started;
use crate::http::{page, see_other, with_cookie};
use crate::pages::{self, layout, refusal, short, time, Viewer};
use crate::sessions::{self, LoginRefused};

/// The largest form body read.
const MAX_FORM: usize = 64 * 1024;

pub(crate) type Answer = Response<ConsoleBody>;

/// Answer one request of the console.
pub(crate) async fn answer(
    platform: Arc<Platform>,
    started: Arc<Started>,
    req: Request<Incoming>,
    https: bool,
) -> Answer {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(parse_form).unwrap_or_default();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    if let (&Method::GET, ["login", link]) = (&method, segments.as_slice()) {
        return login(&platform, link, https);
    }
    let state = platform.state();
    let session_hash = sessions::session_id(req.headers()).map(crate::token::hash);
    let session = match sessions::session_of(state, req.headers()) {
        Ok(Some(s)) => s,
        Ok(None) => return no_session(sessions::session_id(req.headers()).is_some(), https),
        Err(e) => return failed(&e.to_string()),
    };
    let form = if method == Method::POST {
        match read_form(req.into_body()).await {
            Some(f) => f,
            None => {
                return page(
                    StatusCode::BAD_REQUEST,
                    refusal(
                        "Bad request",
                        "The form could not be read. Nothing was changed.",
                        None,
                    ),
                )
            }
        }
    } else {
        HashMap::new()
    };
    if method == Method::POST && !sessions::csrf_ok(&session, form.get("csrf").map(String::as_str))
    {
        return page(
            StatusCode::FORBIDDEN,
            refusal(
                "Request refused",
                "This form's security token is missing or wrong (it may come from another site, or from an old page). Nothing was changed: open the page again and retry.",
                None,
            ),
        );
    }
    let cx = Cx {
        platform: &platform,
        session: &session,
        started: &started,
    };
    match (&method, segments.as_slice()) {
        (&Method::GET, []) => cx.projects(),
        (&Method::POST, ["logout"]) => {
            if let Some(hash) = &session_hash {
                let _ = state.remove_console_session(hash);
            }
            with_cookie(
                page(
                    StatusCode::OK,
                    layout(
                        "Logged out",
                        None,
                        html! { h1 { "Logged out" } p { "Run " code { "ssh git@HOST console" } " for a new login link." } },
                    ),
                ),
                &sessions::cookie("", 0, https),
            )
        }
        (&Method::GET, ["p", project]) => cx.project(project),
        (&Method::GET, ["p", project, "activity"]) => cx.activity_list(project),
        (&Method::GET, ["p", project, "access"]) => cx.access(project),
        (&Method::POST, ["p", project, "access", "grant"]) => {
            let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
            cx.grant(
                project,
                field("user"),
                field("role"),
                field("confirmed") == "yes",
            )
        }
        (_, ["p", project, "access", "revoke", user]) => {
            cx.revoke(project, user, method == Method::POST)
        }
        (&Method::GET, ["p", project, "domains"]) => cx.domains(project),
        (&Method::POST, ["p", project, "domains", "add"]) => {
            let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
            cx.add_domain(project, field("host"), field("confirmed") == "yes")
        }
        (_, ["p", project, "domains", "rm", host]) => {
            cx.remove_domain(project, host, method == Method::POST)
        }
        (&Method::GET, ["p", project, "e", env, "crons"]) => cx.crons(project, env),
        (_, ["p", project, "e", env, "crons", "run", name]) => {
            cx.run_cron(project, env, name, method == Method::POST)
                .await
        }
        (&Method::GET, ["p", project, "e", env, "backups"]) => cx.backups(project, env),
        (_, ["p", project, "e", env, "backups", "create"]) => {
            cx.create_backup(project, env, method == Method::POST).await
        }
        (_, ["p", project, "e", env, "backups", "restore", id]) => match id.parse::<i64>() {
            Ok(id) => {
                cx.restore_backup(project, env, id, method == Method::POST)
                    .await
            }
            Err(_) => not_found(),
        },
        (_, ["p", project, "e", env, "sync"]) => {
            cx.sync(project, env, method == Method::POST).await
        }
        (&Method::GET, ["p", project, "e", env, "services"]) => cx.services(project, env),
        (&Method::GET, ["p", project, "e", env]) => cx.environment(project, env),
        (&Method::GET, ["p", project, "e", env, "vars"]) => cx.variables(project, env),
        (&Method::GET, ["p", project, "e", env, "logs"]) => {
            cx.app_logs(project, env, query.get("app").map(String::as_str))
        }
        (&Method::GET, ["p", project, "e", env, "logs", "events"]) => cx.app_log_events(
            project,
            env,
            query.get("app").map(String::as_str),
            query.get("from").and_then(|f| f.parse().ok()),
        ),
        (_, ["p", project, "e", env, "rollback", number]) => match number.parse::<i64>() {
            Ok(n) => {
                cx.operation(
                    project,
                    env,
                    Operation::Rollback(Some(n)),
                    method == Method::POST,
                )
                .await
            }
            Err(_) => not_found(),
        },
        (_, ["p", project, "e", env, "redeploy"]) => {
            cx.operation(project, env, Operation::Redeploy, method == Method::POST)
                .await
        }
        (&Method::POST, ["p", project, "e", env, "vars", "set"]) => {
            let field = |k: &str| form.get(k).map(String::as_str);
            let change = Change::Set {
                value: field("value").unwrap_or("").to_string(),
                sensitive: field("sensitive").is_some(),
            };
            cx.change_variable(
                project,
                env,
                field("key").unwrap_or(""),
                change,
                field("confirmed") == Some("yes"),
            )
            .await
        }
        (_, ["p", project, "e", env, "vars", "unset", key]) => {
            cx.change_variable(project, env, key, Change::Unset, method == Method::POST)
                .await
        }
        (&Method::GET, ["activity", id]) => match id.parse::<i64>() {
            Ok(id) => cx.activity(id),
            Err(_) => not_found(),
        },
        (&Method::GET, ["started", number]) => match number.parse::<i64>() {
            Ok(number) => cx.started_page(number),
            Err(_) => not_found(),
        },
        (&Method::GET, ["activity", id, "events"]) => match id.parse::<i64>() {
            Ok(id) => cx.activity_events(id, query.get("from").and_then(|f| f.parse().ok())),
            Err(_) => not_found(),
        },
        _ => not_found(),
    }
}

/// `GET /login/TOKEN`: use the link up, start a session, go to the projects.
fn login(platform: &Platform, link: &str, https: bool) -> Answer {
    match sessions::redeem(platform.state(), link) {
        Ok(Ok(started)) => {
            let cookie = sessions::cookie(
                &started.id,
                sessions::SESSION_LIFETIME.as_secs() as i64,
                https,
            );
            tracing::info!(user = %started.session.user.name, "console login");
            see_other("/", Some(&cookie))
        }
        Ok(Err(why)) => {
            let message = match why {
                LoginRefused::Expired => "This login link has expired: links are valid for 10 minutes.",
                LoginRefused::Unknown => "This login link is not valid: it was already used, was never issued, or its user was removed. Each link logs in once.",
            };
            page(
                StatusCode::FORBIDDEN,
                refusal(
                    "Login link refused",
                    message,
                    Some(html! { p { "Run " code { "ssh git@HOST console" } " for a new one." } }),
                ),
            )
        }
        Err(e) => failed(&e.to_string()),
    }
}

/// No session (or one that ended): a page that says how to log in.
fn no_session(had_cookie: bool, https: bool) -> Answer {
    let message = if had_cookie {
        "Your session has ended: it expired, you logged out, or your user was removed."
    } else {
        "You are not logged in."
    };
    let resp = page(
        StatusCode::UNAUTHORIZED,
        refusal(
            "Log in to the Slipway console",
            message,
            Some(
                html! { p { "Run " code { "ssh git@HOST console" } " and open the link it prints (valid 10 minutes, once)." } },
            ),
        ),
    );
    if had_cookie {
        with_cookie(resp, &sessions::cookie("", 0, https))
    } else {
        resp
    }
}

pub(crate) fn not_found() -> Answer {
    page(
        StatusCode::NOT_FOUND,
        refusal("Not found", "There is no such page.", None),
    )
}

/// What [`Cx::start_in_env`] hands its work: owned copies of what it needs, so that it
/// runs on in its own task after the answer.
pub(crate) struct EnvJob {
    /// The server.
    pub platform: Arc<Platform>,
    /// The project the action is on.
    pub project: String,
    /// Its environment.
    pub env: String,
    /// The logged-in user who asked for it.
    pub user: String,
    /// Where its output lines go (kept for its waiting page until its activity exists)
    /// and who is told its activity's id.
    pub watch: slipway_deploy::output::Watch,
}

pub(crate) fn failed(why: &str) -> Answer {
    tracing::error!(error = why, "console");
    page(
        StatusCode::INTERNAL_SERVER_ERROR,
        refusal(
            "Something went wrong",
            "The console could not read the server's state. Nothing was changed; try again.",
            None,
        ),
    )
}

/// The status and title of a refusal of kind `why`: the one place the console turns
/// refusals into HTTP statuses (the SSH commands exit 1 for all of them).
fn refusal_status(why: Refusal) -> (StatusCode, &'static str) {
    match why {
        Refusal::Forbidden => (StatusCode::FORBIDDEN, "Not allowed"),
        Refusal::NotFound => (StatusCode::NOT_FOUND, "Not found"),
        Refusal::Invalid => (StatusCode::BAD_REQUEST, "Refused"),
        Refusal::Conflict => (StatusCode::CONFLICT, "Refused"),
    }
}

/// A refusal of kind `why` as a page: `message` as it is, under `title` (else the kind's
/// own), then `next` (where to go from here).
pub(crate) fn refusal_page(
    why: Refusal,
    title: Option<&str>,
    message: &str,
    next: Option<Markup>,
) -> Answer {
    let (status, own_title) = refusal_status(why);
    page(status, refusal(title.unwrap_or(own_title), message, next))
}

/// A refusal of kind `why` saying `message`, as over SSH, and that nothing was changed.
pub(crate) fn refused(why: Refusal, message: &str) -> Answer {
    refusal_page(why, None, &format!("{message}. Nothing was changed."), None)
}

/// A command's typed failure as a page: a refusal in its own words under the status its
/// kind says ([`refused`]), an internal failure as [`failed`].
pub(crate) fn failure_page(e: &impl Failure) -> Answer {
    match e.kind() {
        Kind::Refused(why) => refused(why, &e.to_string()),
        Kind::Internal => failed(&e.to_string()),
    }
}

async fn read_form(body: Incoming) -> Option<HashMap<String, String>> {
    let bytes: Bytes = Limited::new(body, MAX_FORM)
        .collect()
        .await
        .ok()?
        .to_bytes();
    Some(parse_form(std::str::from_utf8(&bytes).ok()?))
}

fn parse_form(s: &str) -> HashMap<String, String> {
    form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

/// A request with a session: one exists only once the session was found and, for a
/// POST, its CSRF token matched ([`answer`] checks both before making one), so
/// [`Cx::allowed`] adds the role for the whole check.
pub(crate) struct Cx<'a> {
    pub(crate) platform: &'a Arc<Platform>,
    pub(crate) session: &'a ConsoleSession,
    /// The actions started from this console ([`Cx::start_in_env`]).
    pub(crate) started: &'a Arc<Started>,
}

impl Cx<'_> {
    pub(crate) fn viewer(&self) -> Viewer<'_> {
        Viewer {
            user: &self.session.user.name,
            csrf: &self.session.csrf,
        }
    }

    /// The user's role on `project` if it holds `need` on `env` there (raised on production
    /// environments), as [`access::check`] says for the SSH commands; else the refusal to
    /// answer with, in its words (boxed: an answer is large).
    pub(crate) fn allowed(
        &self,
        project: &str,
        env: &str,
        need: Role,
    ) -> Result<Role, Box<Answer>> {
        access::check(self.platform, &self.session.user, project, env, need)
            .map_err(|e| Box::new(failure_page(&e)))
    }

    /// The user's role on `project` if the project exists and the user has one (for the
    /// pages of a whole project); else the refusal to answer with: not found, as a
    /// project that does not exist.
    pub(crate) fn member(&self, project: &str) -> Result<Role, Box<Answer>> {
        access::visible_role(self.platform, &self.session.user, project).ok_or_else(|| {
            Box::new(refused(
                Refusal::NotFound,
                &format!("project '{project}' not found (or you have no access to it)"),
            ))
        })
    }

    pub(crate) fn show(&self, title: &str, body: Markup) -> Answer {
        page(StatusCode::OK, layout(title, Some(&self.viewer()), body))
    }

    /// The confirmation page of a state-changing action: `question`, and a form that posts
    /// `fields` with the session's CSRF token to `action` (button `button`), or goes back
    /// to `cancel`.
    pub(crate) fn confirm(
        &self,
        question: &str,
        action: &str,
        fields: &[(&str, &str)],
        button: &str,
        cancel: &str,
    ) -> Answer {
        self.show(
            "Confirm",
            html! { h1 { "Confirm" } (pages::confirm_form(question, action, &self.session.csrf, fields, button, cancel)) },
        )
    }

    /// The URL of `env` as its live release `live` routes it (`https://` when its default
    /// host is routed so and the server serves HTTPS), else the plain one.
    fn env_url(&self, project: &str, env: &str, live: Option<&slipway_state::Release>) -> String {
        slipway_deploy::https::live_env_url(self.platform, project, env, live)
    }

    /// `/`: the projects the user may see.
    fn projects(&self) -> Answer {
        let state = self.platform.state();
        let projects: Vec<(String, Role)> = match state.projects() {
            Ok(p) => p
                .into_iter()
                .filter_map(|p| {
                    access::visible_role(self.platform, &self.session.user, &p).map(|r| (p, r))
                })
                .collect(),
            Err(e) => return failed(&e.to_string()),
        };
        self.show(
            "Projects",
            html! {
                h1 { "Projects" }
                @if projects.is_empty() {
                    p class="muted" { "No project yet: push one with git to create it." }
                } @else {
                    div class="scroll" { table {
                        tr { th { "Project" } th { "Your role" } }
                        @for (p, role) in &projects {
                            tr { td { a href={ "/p/" (p) } { (p) } } td { (role.as_str()) } }
                        }
                    } }
                }
            },
        )
    }

    /// `/p/PROJECT`: environments with their live release, URL, services and state.
    fn project(&self, project: &str) -> Answer {
        let role = match self.member(project) {
            Ok(r) => r,
            Err(refusal) => return *refusal,
        };
        let state = self.platform.state();
        let envs = match state.environments(Some(project)) {
            Ok(e) => e,
            Err(e) => return failed(&e.to_string()),
        };
        let running: Vec<String> = state
            .activities(project, None, 50)
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.status == "running")
            .filter_map(|a| a.environment)
            .collect();
        self.show(
            project,
            html! {
                nav class="crumbs" { a href="/" { "Projects" } " / " (project) }
                h1 { (project) }
                p class="muted" { "Your role: " (role.as_str()) " · " a href={ "/p/" (project) "/activity" } { "Activity" }
                    @if role == Role::Admin { " · " a href={ "/p/" (project) "/access" } { "Access" } }
                    " · " a href={ "/p/" (project) "/domains" } { "Domains" } }
                h2 { "Environments" }
                div class="scroll" { table {
                    tr { th { "Environment" } th { "Live release" } th { "URL" } th { "Services" } th { "State" } }
                    @for e in &envs {
                        @let live = e.current_release.and_then(|id| state.release(id).ok().flatten());
                        @let url = self.env_url(project, &e.name, live.as_ref());
                        @let services = state.services(project, &e.name).unwrap_or_default();
                        tr {
                            td { a href={ "/p/" (project) "/e/" (e.name) } { (e.name) } }
                            td { @match &live {
                                Some(r) => { "release " (r.number) " " code { (short(&r.commit)) } },
                                None => span class="muted" { "none" },
                            } }
                            td { @if live.is_some() { a href=(url) { (url) } } @else { span class="muted" { (url) } } }
                            td { @if services.is_empty() { span class="muted" { "none" } }
                                 @for s in &services { div { (s.name) " (" (s.service_type) ":" (s.version) ") " (s.state.as_str()) } } }
                            td { @if running.contains(&e.name) { "deploying" }
                                 @else if live.is_some() { span class="live" { "live" } }
                                 @else { "not deployed" } }
                        }
                    }
                } }
            },
        )
    }

    /// `/p/PROJECT/e/ENV`: the environment's releases, with rollback and redeploy.
    fn environment(&self, project: &str, env: &str) -> Answer {
        let role = match self.allowed(project, env, Role::Viewer) {
            Ok(r) => r,
            Err(refusal) => return *refusal,
        };
        let state = self.platform.state();
        let (releases, environment) = match (
            state.releases(project, env),
            state.environment(project, env),
        ) {
            (Ok(r), Ok(Some(e))) => (r, e),
            (Err(e), _) | (_, Err(e)) => return failed(&e.to_string()),
            (_, Ok(None)) => return not_found(),
        };
        let may_rollback =
            role >= slipway_deploy::protection::role_needed(env, Operation::Rollback(None).role());
        let may_redeploy =
            role >= slipway_deploy::protection::role_needed(env, Operation::Redeploy.role());
        let may_sync = !slipway_deploy::protection::is_production(env)
            && role >= slipway_deploy::protection::role_needed(env, access::SYNC);
        let live = releases
            .iter()
            .find(|r| Some(r.id) == environment.current_release);
        let url = self.env_url(project, env, live);
        // The supervisor's word on the live release's containers and the services: their
        // restarts and last exit, kept across server restarts.
        let containers: Vec<(String, slipway_deploy::supervise::Health)> = live
            .map(|r| slipway_deploy::supervise::release_health(self.platform, r))
            .unwrap_or_default()
            .into_iter()
            .chain(
                state
                    .services(project, env)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|s| {
                        slipway_deploy::supervise::service_health(
                            self.platform,
                            project,
                            env,
                            &s.name,
                        )
                        .map(|h| (format!("service {}", s.name), h))
                    }),
            )
            .filter(|(_, h)| {
                h.restarts > 0 || h.condition == slipway_deploy::supervise::Condition::Restarting
            })
            .collect();
        // Slugs seen in earlier releases (releases are listed newest first).
        let slugs_of = |r: &slipway_state::Release| -> Vec<(String, String)> {
            ReleaseSpec::from_json(&r.spec)
                .map(|s| s.apps.into_iter().map(|a| (a.name, a.slug)).collect())
                .unwrap_or_default()
        };
        self.show(
            &format!("{env} · {project}"),
            html! {
                nav class="crumbs" { a href="/" { "Projects" } " / " a href={ "/p/" (project) } { (project) } " / " (env) }
                h1 { (env) }
                p { a href=(url) { (url) } " · " a href={ "/p/" (project) "/e/" (env) "/logs" } { "App logs" }
                    " · " a href={ "/p/" (project) "/e/" (env) "/vars" } { "Variables" }
                    " · " a href={ "/p/" (project) "/e/" (env) "/services" } { "Services" }
                    " · " a href={ "/p/" (project) "/e/" (env) "/crons" } { "Crons" }
                    " · " a href={ "/p/" (project) "/e/" (env) "/backups" } { "Backups" }
                    " · " a href={ "/p/" (project) "/activity" } { "Activity" } }
                @if environment.current_release.is_some() && may_redeploy {
                    p { a class="button" href={ "/p/" (project) "/e/" (env) "/redeploy" } { "Redeploy" } }
                }
                @if may_sync {
                    p { a class="button danger" href={ "/p/" (project) "/e/" (env) "/sync" } { "Sync from parent" } }
                }
                @if !containers.is_empty() {
                    h2 { "Restarts" }
                    div class="scroll" { table {
                        tr { th { "Container" } th { "Now" } th { "Restarts" } th { "Last exit" } }
                        @for (name, h) in &containers {
                            tr {
                                td { code { (name) } }
                                td { (h.condition.as_str()) }
                                td { (h.restarts) }
                                td { (h.last_exit.as_deref().unwrap_or("unknown")) }
                            }
                        }
                    } }
                }
                h2 { "Releases" }
                div class="scroll" { table {
                    tr { th { "#" } th { "Commit" } th { "Time" } th { "Who" } th { "Slugs" } th { "Status" } th {} }
                    @for (i, r) in releases.iter().enumerate() {
                        @let earlier: Vec<String> = releases[i + 1..].iter().flat_map(|e| slugs_of(e).into_iter().map(|(_, s)| s)).collect();
                        tr {
                            td { (r.number) }
                            td { code { (short(&r.commit)) } }
                            td { (time(r.created_at)) }
                            td { @match &r.author {
                                ReleaseAuthor::User { name } => (name),
                                other => span class="muted" { (other) },
                            } }
                            td { @for (app, slug) in slugs_of(r) {
                                div { (app) " " code { (short(slug.trim_start_matches("sha256:"))) } " "
                                      span class="muted" { @if earlier.contains(&slug) { "reused" } @else { "built" } } }
                            } }
                            td { @if environment.current_release == Some(r.id) { span class="live" { "live" } } @else { (r.status) } }
                            td { @if may_rollback && environment.current_release != Some(r.id) && r.status == "retired" {
                                a class="button danger" href={ "/p/" (project) "/e/" (env) "/rollback/" (r.number) } { "Roll back to " (r.number) }
                            } }
                        }
                    }
                } }
            },
        )
    }

    /// Rollback or redeploy: GET shows the confirmation, POST (CSRF checked before) starts
    /// it in the background and goes to its activity.
    async fn operation(&self, project: &str, env: &str, op: Operation, run: bool) -> Answer {
        if let Err(refusal) = self.allowed(project, env, op.role()) {
            return *refusal;
        }
        let here = match op {
            Operation::Rollback(Some(n)) => format!("/p/{project}/e/{env}/rollback/{n}"),
            _ => format!("/p/{project}/e/{env}/redeploy"),
        };
        let back = format!("/p/{project}/e/{env}");
        let what = match op {
            Operation::Rollback(Some(n)) => format!("Roll {env} of {project} back to release {n}?"),
            _ => format!("Redeploy the live release of {env} of {project} in fresh containers?"),
        };
        if !run {
            return self.show(
                "Confirm",
                html! {
                    h1 { "Confirm" }
                    (pages::confirm_form(&what, &here, &self.session.csrf, &[], if matches!(op, Operation::Redeploy) { "Redeploy" } else { "Roll back" }, &back))
                },
            );
        }
        self.start_operation(project, env, op).await
    }

    /// Start `op` as this session's user ([`Cx::start_in_env`]): off to its activity.
    async fn start_operation(&self, project: &str, env: &str, op: Operation) -> Answer {
        let kind = match op {
            Operation::Rollback(_) => ("the rollback", "Not rolled back"),
            Operation::Redeploy => ("the redeploy", "Not redeployed"),
        };
        self.start_in_env(kind, project, env, move |j| async move {
            let author = slipway_state::ReleaseAuthor::user(&j.user);
            operations::run(&j.platform, &j.project, &j.env, op, &author, j.watch)
                .await
                .map(|n| format!("release {n} of {} is live", j.env))
        })
        .await
    }

    /// `/p/PROJECT/e/ENV/vars`: names for viewers, values for contributors and admins,
    /// never the values of sensitive variables.
    fn variables(&self, project: &str, env: &str) -> Answer {
        // As `var ls`: also of an environment not deployed yet.
        let user = &self.session.user;
        let role = match access::check_variables(self.platform, user, project, env, Role::Viewer) {
            Ok((r, _)) => r,
            Err(e) => return failure_page(&e),
        };
        let vars = match self.platform.state().variable_list(project, env) {
            Ok(v) => v,
            Err(e) => return failed(&e.to_string()),
        };
        let may_read = role >= Role::Contributor;
        let may_change =
            role >= slipway_deploy::protection::role_needed(env, access::CHANGE_VARIABLES);
        let csrf = &self.session.csrf;
        self.show(
            &format!("Variables · {env} · {project}"),
            html! {
                nav class="crumbs" { a href="/" { "Projects" } " / " a href={ "/p/" (project) } { (project) } " / " a href={ "/p/" (project) "/e/" (env) } { (env) } " / variables" }
                h1 { "Variables of " (env) }
                @if vars.is_empty() { p class="muted" { "None. " code { "ssh git@HOST var set " (project) " " (env) " KEY=VALUE" } " sets one." } }
                @else {
                    div class="scroll" { table {
                        tr { th { "Name" } th { "Value" } th {} }
                        @for v in &vars {
                            tr { td { code { (v.name) } } td { @match &v.value {
                                VariableValue::Plain(value) if may_read => code { (value) },
                                VariableValue::Sensitive(_) => span class="muted" { "sensitive: value hidden" },
                                _ => span class="muted" { "hidden (viewers see names only)" },
                            } }
                            td { @if may_change { a href={ "/p/" (project) "/e/" (env) "/vars/unset/" (v.name) } { "Unset" } } } }
                        }
                    } }
                }
                @if may_change {
                    h2 { "Set a variable" }
                    form method="post" action={ "/p/" (project) "/e/" (env) "/vars/set" } {
                        input type="hidden" name="csrf" value=(csrf);
                        p { label { "Name " input type="text" name="key" required; } }
                        p { label { "Value " input type="text" name="value"; } }
                        p { label { input type="checkbox" name="sensitive"; " sensitive (reaches the apps, never shown again)" } }
                        button type="submit" { "Set…" }
                    }
                    p class="muted" { "A live environment is redeployed with the change." }
                }
            },
        )
    }

    /// `var set|unset` as over SSH: the role, the name, a confirmation, then the change
    /// and, for a live environment, a redeploy.
    async fn change_variable(
        &self,
        project: &str,
        env: &str,
        key: &str,
        change: Change,
        confirmed: bool,
    ) -> Answer {
        // The checks `var set|unset` makes over SSH: also on an environment not deployed
        // yet (its variables wait for the branch's first push).
        if let Err(e) = variables::may_change(self.platform, &self.session.user, project, env, key)
        {
            return variable_refused(e);
        }
        let back = format!("/p/{project}/e/{env}/vars");
        if !confirmed {
            let (question, action, fields): (String, String, Vec<(&str, &str)>) = match &change {
                Change::Set { value, sensitive } => (
                    format!(
                        "Set {key} on {env} of {project}{}? A live environment is redeployed with it.",
                        if *sensitive { " (sensitive: never shown again)" } else { "" }
                    ),
                    format!("/p/{project}/e/{env}/vars/set"),
                    {
                        let mut f = vec![("key", key), ("value", value.as_str()), ("confirmed", "yes")];
                        if *sensitive {
                            f.push(("sensitive", "on"));
                        }
                        f
                    },
                ),
                Change::Unset => (
                    format!("Unset {key} on {env} of {project}? A live environment is redeployed without it."),
                    format!("/p/{project}/e/{env}/vars/unset/{key}"),
                    Vec::new(),
                ),
            };
            return self.confirm(&question, &action, &fields, "Confirm", &back);
        }
        let done = match &change {
            Change::Set { .. } => format!("{key} set on {env}."),
            Change::Unset => format!("{key} unset on {env}."),
        };
        let changed = match &change {
            Change::Set { value, sensitive } => variables::Change::Set {
                value,
                sensitive: *sensitive,
            },
            Change::Unset => variables::Change::Unset,
        };
        let user = &self.session.user;
        let later = match variables::change(self.platform, user, project, env, key, changed) {
            Err(e) => return variable_refused(e),
            Ok(variables::Applies::Now) => None,
            Ok(variables::Applies::NextDeploy) => Some("It applies from the next deploy."),
            Ok(variables::Applies::FirstDeploy) => {
                Some("The environment has not been deployed yet: it applies from its first deploy.")
            }
        };
        if let Some(later) = later {
            return self.show(
                "Done",
                html! { h1 { "Done" } div class="notice" { p { (done) " " (later) } } p { a href=(back) { "Back to the variables" } } },
            );
        }
        // The change is in the variables list; the redeploy's activity shows it applied.
        self.start_operation(project, env, Operation::Redeploy)
            .await
    }

    /// `/p/PROJECT/activity`: pushes and deploys, newest first.
    fn activity_list(&self, project: &str) -> Answer {
        if let Err(refusal) = self.member(project) {
            return *refusal;
        }
        let list = match self.platform.state().activities(project, None, 100) {
            Ok(l) => l,
            Err(e) => return failed(&e.to_string()),
        };
        self.show(
            &format!("Activity · {project}"),
            html! {
                nav class="crumbs" { a href="/" { "Projects" } " / " a href={ "/p/" (project) } { (project) } " / activity" }
                h1 { "Activity of " (project) }
                div class="scroll" { table {
                    tr { th { "#" } th { "What" } th { "Environment" } th { "Who" } th { "Started" } th { "Status" } th { "Summary" } }
                    @for a in &list {
                        tr {
                            td { a href={ "/activity/" (a.id) } { (a.id) } }
                            td { (a.kind) }
                            td { (a.environment.as_deref().unwrap_or("-")) }
                            td { (a.user.as_deref().unwrap_or("-")) }
                            td { (time(a.started_at)) }
                            td { (a.status) }
                            td { (a.summary) }
                        }
                    }
                } }
            },
        )
    }

    /// `/activity/ID`: the stored log, and, while it runs, the rest as it comes (or, without
    /// JavaScript, on a reload every few seconds).
    fn activity(&self, id: i64) -> Answer {
        let Some((a, log)) = self.visible_activity(id) else {
            return refused(Refusal::NotFound, &format!("activity {id} not found"));
        };
        let running = a.status == "running";
        let pruned = match self.platform.state().activity_log_pruned_at(id) {
            Ok(p) => p,
            Err(e) => return failed(&e.to_string()),
        };
        self.show(
            &format!("Activity {id}"),
            html! {
                nav class="crumbs" { a href="/" { "Projects" } " / " a href={ "/p/" (a.project) } { (a.project) } " / " a href={ "/p/" (a.project) "/activity" } { "activity" } " / " (id) }
                h1 { (a.kind) " " (a.environment.as_deref().unwrap_or("")) " · activity " (id) }
                p { "By " (a.user.as_deref().unwrap_or("-")) ", started " (time(a.started_at)) ". "
                    span id="status" { (a.status) ": " (a.summary) } }
                @if let Some(at) = pruned {
                    div class="notice" id="pruned" { p { "Log pruned " (time(at)) ": the server keeps the logs of the newest activities of each environment and of the last days only." } }
                } @else {
                    pre class="log" id="log" { (log) }
                }
                @if running {
                    (pages::follow_script(&format!("/activity/{id}/events?from={}", log.len())))
                    // Without JavaScript the page reloads itself until the activity ends.
                    noscript { meta http-equiv="refresh" content="5"; }
                }
            },
        )
    }

    fn visible_activity(&self, id: i64) -> Option<(slipway_state::Activity, String)> {
        let (a, log) = self.platform.state().activity(id).ok().flatten()?;
        access::visible_role(self.platform, &self.session.user, &a.project)?;
        Some((a, log))
    }

    /// `/activity/ID/events?from=N`: the log from byte N on, as server-sent events, until
    /// the activity ends.
    fn activity_events(&self, id: i64, from: Option<usize>) -> Answer {
        if self.visible_activity(id).is_none() {
            return refused(Refusal::NotFound, &format!("activity {id} not found"));
        }
        crate::events::activity(Arc::clone(self.platform), id, from.unwrap_or(0))
    }

    /// `/p/PROJECT/e/ENV/logs?app=APP`: the end of the app's output, then following.
    fn app_logs(&self, project: &str, env: &str, app: Option<&str>) -> Answer {
        if let Err(refusal) = self.allowed(project, env, Role::Viewer) {
            return *refusal;
        }
        let apps = live_apps(self.platform, project, env);
        let Some(app) = app.map(str::to_string).or_else(|| apps.first().cloned()) else {
            return self.show(
                "App logs",
                html! { h1 { "App logs of " (env) } p class="muted" { (env) " has no live release yet: push first." } },
            );
        };
        if !apps.contains(&app) {
            return refused(Refusal::NotFound, &format!("no app '{app}' in {env}"));
        }
        let path = self.platform.data().app_log(project, env, &app);
        let (text, end) = crate::events::log_tail(&path);
        self.show(
            &format!("Logs · {env} · {project}"),
            html! {
                nav class="crumbs" { a href="/" { "Projects" } " / " a href={ "/p/" (project) } { (project) } " / " a href={ "/p/" (project) "/e/" (env) } { (env) } " / logs" }
                h1 { "Logs of " (app) " in " (env) }
                @if apps.len() > 1 { p { @for a in &apps { a href={ "?app=" (a) } { (a) } " " } } }
                p class="muted" id="status" { "Following: new lines appear as the app writes them." }
                pre class="log" id="log" { (text) }
                (pages::follow_script(&format!("/p/{project}/e/{env}/logs/events?app={app}&from={end}")))
            },
        )
    }

    fn app_log_events(
        &self,
        project: &str,
        env: &str,
        app: Option<&str>,
        from: Option<u64>,
    ) -> Answer {
        if let Err(refusal) = self.allowed(project, env, Role::Viewer) {
            return *refusal;
        }
        let apps = live_apps(self.platform, project, env);
        let Some(app) = app.filter(|a| apps.iter().any(|x| x == a)) else {
            return refused(Refusal::NotFound, &format!("no such app in {env}"));
        };
        let path = self.platform.data().app_log(project, env, app);
        crate::events::app_log(path, from)
    }
}

/// A refused or failed variable change as a page, in the words `var set|unset` uses.
fn variable_refused(e: variables::VariableError) -> Answer {
    use variables::VariableError;
    let title = match &e {
        VariableError::Name(_) => "Not a variable name",
        VariableError::NotSet { .. } => "Not set",
        VariableError::Check(_) | VariableError::State(_) => return failure_page(&e),
    };
    match e.kind() {
        Kind::Refused(why) => refusal_page(
            why,
            Some(title),
            &format!("{e}. Nothing was changed."),
            None,
        ),
        Kind::Internal => failed(&e.to_string()),
    }
}

/// A change of a variable.
enum Change {
    /// Set it to `value`.
    Set { value: String, sensitive: bool },
    /// Remove it.
    Unset,
}

/// The apps and workers of the live release of `env`.
fn live_apps(platform: &Platform, project: &str, env: &str) -> Vec<String> {
    let state = platform.state();
    state
        .environment(project, env)
        .ok()
        .flatten()
        .and_then(|e| e.current_release)
        .and_then(|id| state.release(id).ok().flatten())
        // An unreadable release lists no apps here; its page says why.
        .and_then(|r| ReleaseSpec::from_json(&r.spec).ok())
        .map(|s| {
            s.apps
                .iter()
                .map(|a| a.name.clone())
                .chain(s.workers.iter().map(|w| w.instance.name.clone()))
                .collect()
        })
        .unwrap_or_default()
}
