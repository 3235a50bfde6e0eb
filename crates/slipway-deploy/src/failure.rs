//! What kind of failure an error is, and the exit status each kind gives (spec section 7:
//! 0 ok, 1 a user error, 2 bad usage, 3 an internal failure). Every command's typed error
//! says its [`Kind`]; [`Kind::exit_code`] is the one place kinds become exit statuses
//! (bad usage is found by the commands' parsers, before any of these errors exists).

/// Whether a failure is the user's to fix or the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Refused input: an unknown project, environment, release or backup, a role the user
    /// lacks, an operation that does not apply to the environment as it is; which of
    /// these, in the [`Refusal`].
    Refused(Refusal),
    /// The server failed: the state database, I/O, the OCI runtime, a service that fails
    /// to dump or load, a stored record that does not decode.
    Internal,
}

/// Why a request was refused (403, 404, 400 or 409 in the web console, exit 1 over SSH).
/// Defined in the state, which keeps it for a console action refused before it began.
pub use slipway_state::Refusal;

impl Kind {
    /// The exit status of a command that failed so: 1 refused, 3 internal.
    pub fn exit_code(self) -> i32 {
        match self {
            Kind::Refused(_) => 1,
            Kind::Internal => 3,
        }
    }
}

/// Why an operation on an environment failed (`rollback`, `redeploy`, `sync`,
/// `backup create|restore`): refused, or an internal failure, with the message for the
/// user.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The operation does not apply: unknown release or backup ([`Refusal::NotFound`]),
    /// nothing to roll back to, production has no parent, a backup of services the
    /// environment no longer has, an app that fails its deploy hook or health check
    /// ([`Refusal::Conflict`]).
    #[error("{1}")]
    Refused(Refusal, String),
    /// The state database failed.
    #[error("reading the state database: {0}")]
    State(#[from] slipway_state::StateError),
    /// Anything else failed inside the operation: I/O, the OCI runtime, a service that
    /// fails to dump or load, a stored record that does not decode.
    #[error("{0}")]
    Internal(String),
}

impl OpError {
    /// A refusal saying `m`: the operation does not apply to the environment as it is
    /// ([`Refusal::Conflict`]).
    pub fn refused(m: impl Into<String>) -> OpError {
        OpError::Refused(Refusal::Conflict, m.into())
    }

    /// A refusal saying `m`: what it names is not there ([`Refusal::NotFound`]).
    pub fn not_found(m: impl Into<String>) -> OpError {
        OpError::Refused(Refusal::NotFound, m.into())
    }

    /// Which kind of failure it is.
    pub fn kind(&self) -> Kind {
        match self {
            OpError::Refused(r, _) => Kind::Refused(*r),
            OpError::State(_) | OpError::Internal(_) => Kind::Internal,
        }
    }

    /// The exit status ([`Kind::exit_code`]).
    pub fn exit_code(&self) -> i32 {
        self.kind().exit_code()
    }

    /// The same kind of failure with `context` before its message.
    pub fn context(self, context: &str) -> OpError {
        match self {
            OpError::Refused(r, m) => OpError::Refused(r, format!("{context}{m}")),
            e => OpError::Internal(format!("{context}{e}")),
        }
    }

    /// The same kind of failure with `suffix` after its message.
    pub fn suffixed(self, suffix: &str) -> OpError {
        match self {
            OpError::Refused(r, m) => OpError::Refused(r, format!("{m}{suffix}")),
            e => OpError::Internal(format!("{e}{suffix}")),
        }
    }
}

/// A failure below an operation, told as a message (I/O, the runtime, a service's dump):
/// internal. Refusals are made with [`OpError::refused`] where they are decided.
impl From<String> for OpError {
    fn from(m: String) -> OpError {
        OpError::Internal(m)
    }
}

/// What the web console tells a user of an internal failure; the failure itself goes to
/// the server's log ([`Failure::told`]). (SSH tells the failure's own words, exit 3.)
pub const INTERNAL_MESSAGE: &str = "internal error, see the server log";

/// A typed error that says which [`Kind`] of failure it is: what a command's exit status
/// is made from.
pub trait Failure: std::fmt::Display {
    /// Which kind of failure it is.
    fn kind(&self) -> Kind;

    /// What the console's page tells the user of it: a refusal's own
    /// message, or for an internal failure [`INTERNAL_MESSAGE`], the failure itself logged
    /// at error level with `what` (the command or action that failed).
    fn told(&self, what: &str) -> String {
        match self.kind() {
            Kind::Refused(_) => self.to_string(),
            Kind::Internal => {
                tracing::error!(what, error = %self, "internal failure");
                INTERNAL_MESSAGE.to_string()
            }
        }
    }
}

impl Failure for OpError {
    fn kind(&self) -> Kind {
        OpError::kind(self)
    }
}

impl Failure for crate::access::CheckError {
    fn kind(&self) -> Kind {
        crate::access::CheckError::kind(self)
    }
}

impl Failure for crate::crons::CronError {
    fn kind(&self) -> Kind {
        use crate::crons::CronError;
        match self {
            CronError::NotFound(_) => Kind::Refused(Refusal::NotFound),
            CronError::Ambiguous(..) => Kind::Refused(Refusal::Invalid),
            CronError::Busy(_) | CronError::Deploying(_) | CronError::NotRunning(_) => {
                Kind::Refused(Refusal::Conflict)
            }
            CronError::State(_) | CronError::Record(_) | CronError::Lock(_) => Kind::Internal,
        }
    }
}

impl Failure for crate::project_access::AccessError {
    fn kind(&self) -> Kind {
        use crate::project_access::AccessError;
        match self {
            AccessError::NotFound(_) => Kind::Refused(Refusal::NotFound),
            AccessError::NotAdmin { .. } => Kind::Refused(Refusal::Forbidden),
            AccessError::UnknownRole(_)
            | AccessError::UnknownUser(_)
            | AccessError::NoRole { .. }
            | AccessError::LastAdmin(_) => Kind::Refused(Refusal::Invalid),
            AccessError::State(_) => Kind::Internal,
        }
    }
}

impl Failure for crate::domain_admin::DomainError {
    fn kind(&self) -> Kind {
        use crate::domain_admin::DomainError;
        match self {
            DomainError::NotServerAdmin(_) => Kind::Refused(Refusal::Forbidden),
            DomainError::NoProject(_) => Kind::Refused(Refusal::NotFound),
            DomainError::Host(_)
            | DomainError::ByName { .. }
            | DomainError::Reserved(_)
            | DomainError::Taken { .. }
            | DomainError::Unassigned(_)
            | DomainError::OtherProject { .. } => Kind::Refused(Refusal::Invalid),
            DomainError::State(_) => Kind::Internal,
        }
    }
}

impl Failure for slipway_state::StateError {
    fn kind(&self) -> Kind {
        Kind::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crons::CronError;
    use crate::domain_admin::DomainError;
    use crate::project_access::AccessError;

    #[test]
    fn each_refusal_says_why_and_every_refusal_exits_1() {
        let cases = [
            (
                Failure::kind(&AccessError::NotFound("demo".into())),
                Refusal::NotFound,
            ),
            (
                Failure::kind(&AccessError::NotAdmin {
                    user: "ada".into(),
                    role: "viewer",
                    project: "demo".into(),
                }),
                Refusal::Forbidden,
            ),
            (
                Failure::kind(&AccessError::UnknownRole("owner".into())),
                Refusal::Invalid,
            ),
            (
                Failure::kind(&DomainError::NotServerAdmin("ada".into())),
                Refusal::Forbidden,
            ),
            (
                Failure::kind(&DomainError::NoProject("demo".into())),
                Refusal::NotFound,
            ),
            (
                Failure::kind(&DomainError::Reserved("console.example".into())),
                Refusal::Invalid,
            ),
            (
                Failure::kind(&CronError::NotFound("no cron 'x'".into())),
                Refusal::NotFound,
            ),
            (
                Failure::kind(&CronError::Ambiguous("x".into(), "a/x, b/x".into())),
                Refusal::Invalid,
            ),
            (
                Failure::kind(&CronError::Busy("x".into())),
                Refusal::Conflict,
            ),
            (
                OpError::not_found("release 9 of main not found").kind(),
                Refusal::NotFound,
            ),
            (
                OpError::refused("main has no earlier release to roll back to").kind(),
                Refusal::Conflict,
            ),
            // Context keeps the kind of refusal.
            (
                OpError::not_found("backup 9 not found")
                    .context("restore: ")
                    .kind(),
                Refusal::NotFound,
            ),
        ];
        for (i, (kind, why)) in cases.into_iter().enumerate() {
            assert_eq!(kind, Kind::Refused(why), "case {i}");
            assert_eq!(kind.exit_code(), 1, "case {i}");
        }
        let internal = OpError::Internal("the archive failed".into());
        assert_eq!(internal.kind(), Kind::Internal);
        assert_eq!(internal.exit_code(), 3);
        assert_eq!(
            OpError::not_found("x")
                .suffixed("; nothing was changed")
                .to_string(),
            "x; nothing was changed"
        );
    }
}
