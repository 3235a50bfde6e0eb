//! Pages of what the SSH side shows beyond releases: an environment's crons (`cron ls`)
//! and services (`services PROJECT ENV`), a project's access (`access ls|grant|revoke`)
//! and domains (`domain ls|add|rm`). Every check and change goes through the functions
//! the SSH commands use ([`slipway_deploy::access`], [`project_access`], [`domain_admin`]);
//! changes are confirmed on a page of their own, then POSTed with the CSRF token.

use maud::{html, Markup};
use slipway_deploy::domain_admin;
use slipway_deploy::project_access::{self, AccessError};
use slipway_deploy::{access, crons};
use slipway_state::Role;

use crate::handlers::{failed, failure_page, Answer, Cx};
use crate::pages::time;

/// Crumbs: Projects / PROJECT[ / ENV] / what.
fn crumbs(project: &str, env: Option<&str>, what: &str) -> Markup {
    html! {
        nav class="crumbs" {
            a href="/" { "Projects" } " / " a href={ "/p/" (project) } { (project) } " / "
            @if let Some(env) = env { a href={ "/p/" (project) "/e/" (env) } { (env) } " / " }
            (what)
        }
    }
}

impl Cx<'_> {
    /// `/p/PROJECT/e/ENV/crons`: each cron's schedule, next run, and last run with its
    /// exit status and a link to its log (every role, as `cron ls`).
    pub(crate) fn crons(&self, project: &str, env: &str) -> Answer {
        let role = match self.allowed(project, env, Role::Viewer) {
            Ok(r) => r,
            Err(refusal) => return *refusal,
        };
        let may_run = role >= slipway_deploy::protection::role_needed(env, access::RUN_CRONS);
        let list = match crons::live_crons(self.platform, project, env) {
            Ok(l) => l,
            Err(e) => return failed(&e.to_string()),
        };
        let now = crons::minute_now();
        self.show(
            &format!("Crons · {env} · {project}"),
            html! {
                (crumbs(project, Some(env), "crons"))
                h1 { "Crons of " (env) }
                @if list.is_empty() { p class="muted" { (env) " has no crons in its live release." } }
                @else {
                    div class="scroll" { table {
                        tr { th { "Name" } th { "App" } th { "Schedule" } th { "Next run" } th { "Last run" } th { "Exit status" } th {} }
                        @for c in &list {
                            @let last = crons::last_run(self.platform, c);
                            tr {
                                td { code { (c.cron.name) } }
                                td { (c.app.name) }
                                td { code { (c.cron.spec) } " " span class="muted" { (c.zone_name) } }
                                td { (crons::next_run(c, now).unwrap_or_else(|| "never".into())) }
                                td { @match &last {
                                    Some(a) => a href={ "/activity/" (a.id) } { (time(a.started_at)) },
                                    None => span class="muted" { "not run yet" },
                                } }
                                td { @match &last {
                                    Some(a) if a.status == "running" => "running",
                                    Some(a) => {
                                        (a.status) ": "
                                        (a.summary.strip_prefix(&format!("cron {}: ", c.cron.name)).unwrap_or(&a.summary))
                                    },
                                    None => "",
                                } }
                                td { @if may_run {
                                    a class="button" href={ "/p/" (project) "/e/" (env) "/crons/run/" (c.cron.name) } { "Run now" }
                                } }
                            }
                        }
                    } }
                    p class="muted" { code { "ssh git@HOST cron run " (project) " " (env) " NAME" } " runs one now, as " b { "Run now" } " does (contributors; admins on production)." }
                }
            },
        )
    }

    /// `/p/PROJECT/e/ENV/services`: type, state and disk used of its size (every role, as
    /// `services PROJECT ENV`).
    pub(crate) fn services(&self, project: &str, env: &str) -> Answer {
        if let Err(refusal) = self.allowed(project, env, Role::Viewer) {
            return *refusal;
        }
        let list = match self.platform.state().services(project, env) {
            Ok(l) => l,
            Err(e) => return failed(&e.to_string()),
        };
        self.show(
            &format!("Services · {env} · {project}"),
            html! {
                (crumbs(project, Some(env), "services"))
                h1 { "Services of " (env) }
                @if list.is_empty() { p class="muted" { (env) " has no services." } }
                @else {
                    div class="scroll" { table {
                        tr { th { "Name" } th { "Type" } th { "State" } th { "Restarts" } th { "Disk" } }
                        @for s in &list {
                            @let health = slipway_deploy::supervise::service_health(self.platform, project, env, &s.name);
                            tr {
                                td { code { (s.name) } }
                                td { (s.service_type) ":" (s.version) }
                                td { (s.state.as_str()) }
                                td { @match &health {
                                    Some(h) if h.restarts > 0 => { (h.restarts) " (last exit " (h.last_exit.as_deref().unwrap_or("unknown")) ")" },
                                    _ => "0",
                                } }
                                td { @match slipway_deploy::services::data::disk(self.platform, s) {
                                    Some((used, size)) => { (format!("{:.1}", used as f64 / (1024.0 * 1024.0))) " MiB used of " (size) " MiB" },
                                    None => span class="muted" { "disk not mounted" },
                                } }
                            }
                        }
                    } }
                }
            },
        )
    }

    /// `/p/PROJECT/access`: who has which role (project admins only, as `access ls`), a
    /// form to grant one and a link to revoke each.
    pub(crate) fn access(&self, project: &str) -> Answer {
        let list = match project_access::list(self.platform, &self.session.user, project) {
            Ok(l) => l,
            Err(e) => return failure_page(&e),
        };
        let csrf = &self.session.csrf;
        self.show(
            &format!("Access · {project}"),
            html! {
                (crumbs(project, None, "access"))
                h1 { "Access to " (project) }
                div class="scroll" { table {
                    tr { th { "User" } th { "Role" } th {} }
                    @for e in &list {
                        tr {
                            td { (e.user) }
                            td { (e.role.as_str()) @if e.server_admin { span class="muted" { " (server admin)" } } }
                            td { @if !e.server_admin {
                                a class="button danger" href={ "/p/" (project) "/access/revoke/" (e.user) } { "Revoke" }
                            } }
                        }
                    }
                } }
                h2 { "Grant a role" }
                form method="post" action={ "/p/" (project) "/access/grant" } {
                    input type="hidden" name="csrf" value=(csrf);
                    p { label { "User " input type="text" name="user" required; } }
                    p { label { "Role " select name="role" {
                        option value="viewer" { "viewer: clone, logs, activity" }
                        option value="contributor" { "contributor: also push (not to main/master)" }
                        option value="admin" { "admin: everything" }
                    } } }
                    button type="submit" { "Grant…" }
                }
                p class="muted" { "Users are added by a server admin (" code { "user add" } ")." }
            },
        )
    }

    /// `access grant`: checked, confirmed, then granted.
    pub(crate) fn grant(&self, project: &str, user: &str, role: &str, confirmed: bool) -> Answer {
        let me = &self.session.user;
        if !confirmed {
            // The same checks before the question: a non-admin is refused here already.
            if let Err(e) = project_access::check_admin(self.platform, me, project) {
                return failure_page(&e);
            }
            if Role::parse(role).is_none() {
                return failure_page(&AccessError::UnknownRole(role.chars().take(80).collect()));
            }
            let question = format!("Make {user} {role} of {project}?");
            return self.confirm(
                &question,
                &format!("/p/{project}/access/grant"),
                &[("user", user), ("role", role), ("confirmed", "yes")],
                "Grant",
                &format!("/p/{project}/access"),
            );
        }
        match project_access::grant(self.platform, me, project, user, role) {
            Ok(role) => self.done(
                &format!("{user} is now {} of {project}.", role.as_str()),
                &format!("/p/{project}/access"),
                "Back to access",
            ),
            Err(e) => failure_page(&e),
        }
    }

    /// `access revoke`: GET asks, POST (CSRF checked before) revokes.
    pub(crate) fn revoke(&self, project: &str, user: &str, run: bool) -> Answer {
        let me = &self.session.user;
        if !run {
            if let Err(e) = project_access::check_admin(self.platform, me, project) {
                return failure_page(&e);
            }
            let question = format!("Revoke {user}'s role on {project}?");
            return self.confirm(
                &question,
                &format!("/p/{project}/access/revoke/{user}"),
                &[],
                "Revoke",
                &format!("/p/{project}/access"),
            );
        }
        match project_access::revoke(self.platform, me, project, user) {
            Ok(server_admin) => self.done(
                &format!(
                    "{user} has no role on {project} any more{}.",
                    if server_admin {
                        " (still admin of every project as a server admin)"
                    } else {
                        ""
                    }
                ),
                &format!("/p/{project}/access"),
                "Back to access",
            ),
            Err(e) => failure_page(&e),
        }
    }

    /// `/p/PROJECT/domains`: the hosts assigned to the project and whether they are routed
    /// now (every member reads them), with forms to add and remove for server admins (as
    /// `domain add|rm`).
    pub(crate) fn domains(&self, project: &str) -> Answer {
        if let Err(refusal) = self.member(project) {
            return *refusal;
        }
        let list = match domain_admin::of_project(self.platform, &self.session.user, project) {
            Ok(l) => l,
            Err(e) => return failure_page(&e),
        };
        let manage = domain_admin::check_admin(&self.session.user).is_ok();
        let domain = &self.platform.settings().domain;
        let csrf = &self.session.csrf;
        self.show(
            &format!("Domains · {project}"),
            html! {
                (crumbs(project, None, "domains"))
                h1 { "Domains of " (project) }
                p class="muted" { "Hosts under " code { (project) "." (domain) } " are the project's by its name. Other hosts are assigned here, then routed by its production environments." }
                @if list.is_empty() { p class="muted" { "No host assigned." } }
                @else {
                    div class="scroll" { table {
                        tr { th { "Host" } th { "State" } th { "Assigned" } th {} }
                        @for d in &list {
                            tr {
                                td { code { (d.domain.host) } }
                                td { @match &d.routed_by {
                                    Some(env) => span class="live" { "routed by " (env) },
                                    None => span class="muted" { "not routed" },
                                } }
                                td { "by " (d.domain.assigned_by) ", " (time(d.domain.assigned_at)) }
                                td { @if manage { a class="button danger" href={ "/p/" (project) "/domains/rm/" (d.domain.host) } { "Remove" } } }
                            }
                        }
                    } }
                }
                @if manage {
                    h2 { "Assign a host" }
                    form method="post" action={ "/p/" (project) "/domains/add" } {
                        input type="hidden" name="csrf" value=(csrf);
                        p { label { "Host " input type="text" name="host" required placeholder="www.example.com"; } }
                        button type="submit" { "Assign…" }
                    }
                } @else {
                    p class="muted" { "Server admins assign and remove hosts (" code { "domain add|rm" } ")." }
                }
            },
        )
    }

    /// `domain add`: checked, confirmed, then assigned.
    pub(crate) fn add_domain(&self, project: &str, host: &str, confirmed: bool) -> Answer {
        let me = &self.session.user;
        if !confirmed {
            if let Err(e) = domain_admin::check_admin(me) {
                return failure_page(&e);
            }
            let question = format!(
                "Assign {host} to {project}? Its production environments may then route it."
            );
            return self.confirm(
                &question,
                &format!("/p/{project}/domains/add"),
                &[("host", host), ("confirmed", "yes")],
                "Assign",
                &format!("/p/{project}/domains"),
            );
        }
        match domain_admin::add(self.platform, me, project, host) {
            Ok((host, true)) => self.done(
                &format!(
                    "{host} is assigned to {project}: its production environments may route it."
                ),
                &format!("/p/{project}/domains"),
                "Back to domains",
            ),
            Ok((host, false)) => self.done(
                &format!("{host} was already assigned to {project}."),
                &format!("/p/{project}/domains"),
                "Back to domains",
            ),
            Err(e) => failure_page(&e),
        }
    }

    /// `domain rm PROJECT HOST`: GET asks, POST (CSRF checked before) removes.
    pub(crate) fn remove_domain(&self, project: &str, host: &str, run: bool) -> Answer {
        let me = &self.session.user;
        if !run {
            if let Err(e) = domain_admin::check_admin(me) {
                return failure_page(&e);
            }
            let question = format!("Take {host} back from {project}? An environment routing it keeps it until its next deploy, which will be refused.");
            return self.confirm(
                &question,
                &format!("/p/{project}/domains/rm/{host}"),
                &[],
                "Remove",
                &format!("/p/{project}/domains"),
            );
        }
        match domain_admin::remove(self.platform, me, Some(project), host) {
            Ok(r) => self.done(
                &format!(
                    "{} is no longer assigned to {}{}.",
                    r.host,
                    r.project,
                    r.routed_by
                        .map(|env| format!(
                            " ({env} still routes it until its next deploy, which will be refused)"
                        ))
                        .unwrap_or_default()
                ),
                &format!("/p/{project}/domains"),
                "Back to domains",
            ),
            Err(e) => failure_page(&e),
        }
    }

    /// A change went through: what it did and the way back.
    fn done(&self, what: &str, back: &str, back_label: &str) -> Answer {
        self.show(
            "Done",
            html! { h1 { "Done" } div class="notice" { p id="status" { (what) } } p { a href=(back) { (back_label) } } },
        )
    }
}
