//! Hosts outside the server's domain assigned to projects: the checks and effects of
//! `domain add|rm|ls` over SSH and of the console's domains page, in one place so both
//! refuse alike. Only server admins manage them and list them all; a project's members
//! read its own ([`of_project`]). Hosts under `PROJECT.DOMAIN`
//! need no assignment: they are their project's by name ([`crate::tenancy`]).
//!
//! Removing an assignment does not stop an environment that routes the host now: it
//! keeps serving it until its next deploy (which is then refused) or until its branch
//! is deleted; no other project can take the host before that.

use serde::Serialize;
use slipway_state::{Domain, StateError, User};

use crate::tenancy::{self, HostError, HostOwner};
use crate::Platform;

/// Why a domain command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Only server admins manage domains.
    #[error("permission denied: only server admins manage domains ({0} is not one)")]
    NotServerAdmin(String),
    /// No such project.
    #[error("project '{0}' not found")]
    NoProject(String),
    /// Not a host name.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A host under `PROJECT.DOMAIN`: that project's by its name.
    #[error("{host} is under {project}.{domain}: it belongs to project {project} by its name and cannot be assigned")]
    ByName {
        /// The host.
        host: String,
        /// Its project.
        project: String,
        /// The server's domain.
        domain: String,
    },
    /// One of the server's own names.
    #[error("{0} is reserved for the server itself: it cannot be assigned")]
    Reserved(String),
    /// Assigned to another project already.
    #[error("{message}: remove it there first (domain rm {host})")]
    Taken {
        /// The state's words (naming the owner).
        message: String,
        /// The host.
        host: String,
    },
    /// `rm` of a host no project has.
    #[error("{0} is assigned to no project")]
    Unassigned(String),
    /// `rm PROJECT HOST` where HOST is another project's.
    #[error("{host} belongs to project {owner}, not {project}")]
    OtherProject {
        /// The host.
        host: String,
        /// Its owner.
        owner: String,
        /// The project named.
        project: String,
    },
    /// The state database failed.
    #[error(transparent)]
    State(StateError),
}

impl From<StateError> for DomainError {
    fn from(e: StateError) -> DomainError {
        DomainError::State(e)
    }
}

/// An assigned host and the environment routing it now, if any.
#[derive(Debug, Clone, Serialize)]
pub struct DomainEntry {
    /// The assignment.
    #[serde(flatten)]
    pub domain: Domain,
    /// The environment (`ENV.PROJECT`) whose routes serve it now.
    pub routed_by: Option<String>,
}

/// What `rm` did.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    /// The host.
    pub host: String,
    /// The project it was assigned to.
    pub project: String,
    /// The environment that still routes it until its next deploy, if any.
    pub routed_by: Option<String>,
}

fn shown(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Whether `me` may manage domains (a server admin).
pub fn check_admin(me: &User) -> Result<(), DomainError> {
    if me.admin {
        Ok(())
    } else {
        Err(DomainError::NotServerAdmin(me.name.clone()))
    }
}

fn project_exists(platform: &Platform, project: &str) -> Result<(), DomainError> {
    if platform.state().project_exists(project)? {
        Ok(())
    } else {
        Err(DomainError::NoProject(shown(project)))
    }
}

/// `domain add PROJECT HOST`; Ok is (the normalized host, whether it was newly added).
pub fn add(
    platform: &Platform,
    me: &User,
    project: &str,
    host: &str,
) -> Result<(String, bool), DomainError> {
    check_admin(me)?;
    project_exists(platform, project)?;
    let host = tenancy::parse_host(host)?;
    let domain = &platform.settings().domain;
    match tenancy::owner_by_name(domain, &host) {
        None => {}
        Some(HostOwner::Project(p)) => {
            return Err(DomainError::ByName {
                host,
                project: p,
                domain: domain.clone(),
            })
        }
        Some(_) => return Err(DomainError::Reserved(host)),
    }
    let added = platform
        .state()
        .assign_domain(&host, project, &me.name)
        .map_err(|e| match e {
            StateError::Conflict(message) => DomainError::Taken {
                message,
                host: host.clone(),
            },
            e => DomainError::State(e),
        })?;
    Ok((host, added))
}

/// `domain rm [PROJECT] HOST`.
pub fn remove(
    platform: &Platform,
    me: &User,
    project: Option<&str>,
    host: &str,
) -> Result<Removed, DomainError> {
    check_admin(me)?;
    let host = tenancy::parse_host(host)?;
    let state = platform.state();
    let owner = match (state.domain_owner(&host)?, project) {
        (None, _) => return Err(DomainError::Unassigned(host)),
        (Some(owner), Some(p)) if owner != p => {
            return Err(DomainError::OtherProject {
                host,
                owner,
                project: shown(p),
            })
        }
        (Some(owner), _) => owner,
    };
    state.unassign_domain(&host)?;
    let routed_by = platform.router().owner(&host);
    Ok(Removed {
        host,
        project: owner,
        routed_by,
    })
}

/// `domain ls [PROJECT]`.
pub fn list(
    platform: &Platform,
    me: &User,
    project: Option<&str>,
) -> Result<Vec<DomainEntry>, DomainError> {
    check_admin(me)?;
    if let Some(p) = project {
        project_exists(platform, p)?;
    }
    entries(platform, project)
}

/// The hosts assigned to `project`, for its members to read (the console's domains page
/// shows them to every role; changing them stays a server admin's). A project `me` has
/// no role on is not found, as one that does not exist.
pub fn of_project(
    platform: &Platform,
    me: &User,
    project: &str,
) -> Result<Vec<DomainEntry>, DomainError> {
    if crate::access::visible_role(platform, me, project).is_none() {
        return Err(DomainError::NoProject(shown(project)));
    }
    entries(platform, Some(project))
}

fn entries(platform: &Platform, project: Option<&str>) -> Result<Vec<DomainEntry>, DomainError> {
    Ok(platform
        .state()
        .domains(project)?
        .into_iter()
        .map(|d| {
            let routed_by = platform.router().owner(&d.host);
            DomainEntry {
                domain: d,
                routed_by,
            }
        })
        .collect())
}
