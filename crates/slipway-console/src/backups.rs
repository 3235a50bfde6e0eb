//! An environment's backups, as `backup ls|create|restore` over SSH: the list (every role),
//! "Create backup" ([`access::CREATE_BACKUPS`]) and "Restore" ([`access::RESTORE_BACKUPS`],
//! after a page naming what it overwrites) from any backup of the project, another
//! environment's too (production's into a staging branch), as `backup restore` takes. Both run [`slipway_deploy::backups`]'
//! `create` and `restore`, the SSH commands' own, in the background to their end even if
//! the browser goes away; the answer goes to their activity, which streams the log.

use maud::{html, Markup};
use slipway_deploy::failure::OpError;
use slipway_deploy::{access, backups, protection};
use slipway_state::Backup;

use crate::handlers::{failed, refused, Answer, Cx};
use crate::pages::{self, time};

/// Crumbs: Projects / PROJECT / ENV / backups.
fn crumbs(project: &str, env: &str) -> Markup {
    html! {
        nav class="crumbs" {
            a href="/" { "Projects" } " / " a href={ "/p/" (project) } { (project) } " / "
            a href={ "/p/" (project) "/e/" (env) } { (env) } " / backups"
        }
    }
}

/// A table of `list`: id, the environment each was taken of (`with_env`), time, size,
/// parts and who took it, and a "Restore" link under `restore` (the backups page, for
/// those who may restore).
fn table(list: &[Backup], with_env: bool, restore: Option<&str>) -> Markup {
    html! {
        div class="scroll" { table {
            tr {
                th { "#" } @if with_env { th { "Environment" } }
                th { "Time" } th { "Size" } th { "Services and mounts" } th { "Who" } th {}
            }
            @for b in list {
                tr {
                    td { (b.id) }
                    @if with_env { td { (b.environment) } }
                    td { (time(b.created_at)) }
                    td { (backups::size(b)) }
                    td { @for p in backups::part_names(b) { div { code { (p) } } } }
                    td { (b.created_by) }
                    td { @if let Some(here) = restore {
                        a class="button danger" href={ (here) "/restore/" (b.id) } { "Restore" }
                    } }
                }
            }
        } }
    }
}

impl Cx<'_> {
    /// `/p/PROJECT/e/ENV/backups`: id, time, size, parts and who took each, newest first;
    /// then the other environments' backups of the project, each named with its
    /// environment, which restore into this one as well (`backup restore` takes any
    /// backup of the project).
    pub(crate) fn backups(&self, project: &str, env: &str) -> Answer {
        let role = match self.allowed(project, env, access::LIST_BACKUPS) {
            Ok(r) => r,
            Err(refusal) => return *refusal,
        };
        let (own, others): (Vec<Backup>, Vec<Backup>) =
            match self.platform.state().project_backups(project) {
                Ok(l) => l.into_iter().partition(|b| b.environment == env),
                Err(e) => return failed(&e.to_string()),
            };
        let may_create = role >= protection::role_needed(env, access::CREATE_BACKUPS);
        let may_restore = role >= protection::role_needed(env, access::RESTORE_BACKUPS);
        let here = format!("/p/{project}/e/{env}/backups");
        let restore = may_restore.then_some(here.as_str());
        self.show(
            &format!("Backups · {env} · {project}"),
            html! {
                (crumbs(project, env))
                h1 { "Backups of " (env) }
                @if may_create { p { a class="button" href={ (here) "/create" } { "Create backup" } } }
                @if own.is_empty() { p class="muted" { (backups::none_yet(project, env)) "." } }
                @else { (table(&own, false, restore)) }
                @if !others.is_empty() {
                    h2 { "Backups of other environments of " (project) }
                    p class="muted" { "Each restores into " (env) " too: its services must be in " (env) ", of the same type and version." }
                    (table(&others, true, restore))
                }
                p class="muted" { code { "ssh git@HOST backup create " (project) " " (env) } " takes one too (contributors; admins on production); restoring is for admins." }
            },
        )
    }

    /// `backup create`: GET asks, POST (CSRF checked before) starts the backup and goes to
    /// its activity.
    pub(crate) async fn create_backup(&self, project: &str, env: &str, run: bool) -> Answer {
        if let Err(refusal) = self.allowed(project, env, access::CREATE_BACKUPS) {
            return *refusal;
        }
        let here = format!("/p/{project}/e/{env}/backups");
        if !run {
            let question = format!(
                "Take a backup of {env} of {project} now (a dump of each service and a copy of each mount)? Everything keeps running."
            );
            return self.confirm(
                &question,
                &format!("{here}/create"),
                &[],
                "Create backup",
                &here,
            );
        }
        self.start_in_env(("the backup", "No backup"), project, env, |j| async move {
            backups::create(&j.platform, &j.project, &j.env, &j.user, j.watch)
                .await
                .map(|b| backups::taken(&b))
        })
        .await
    }

    /// `backup restore`: GET names what the restore overwrites, POST (CSRF checked
    /// before) starts the restore and goes to its activity.
    pub(crate) async fn restore_backup(
        &self,
        project: &str,
        env: &str,
        id: i64,
        run: bool,
    ) -> Answer {
        if let Err(refusal) = self.allowed(project, env, access::RESTORE_BACKUPS) {
            return *refusal;
        }
        let backup = match backups::of_project(self.platform, project, id) {
            Ok(b) => b,
            Err(OpError::Refused(why, m)) => {
                return refused(why, m.trim_end_matches("; nothing was changed"))
            }
            Err(e) => return failed(&e.to_string()),
        };
        let here = format!("/p/{project}/e/{env}/backups");
        if !run {
            let replaced = backups::overwritten(&backup);
            let of = &backup.environment;
            return self.show(
                "Confirm",
                html! {
                    h1 { "Confirm" }
                    p { "Restoring backup " (id) " of " (of) " (" (time(backup.created_at)) ", by " (backup.created_by) ") replaces, in " (env) " of " (project) ":" }
                    ul id="overwritten" { @for r in &replaced { li { (r) } } }
                    p { "What was written there since is lost. The apps stop while the data is put back, then start again." }
                    (pages::confirm_form(&format!("Restore {env} of {project} from backup {id}?"), &format!("{here}/restore/{id}"), &self.session.csrf, &[], "Restore", &here))
                },
            );
        }
        self.start_in_env(
            ("the restore", "Not restored"),
            project,
            env,
            move |j| async move {
                backups::restore(&j.platform, &j.project, &j.env, id, &j.user, j.watch).await
            },
        )
        .await
    }
}
