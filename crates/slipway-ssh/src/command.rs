//! Parsing what an SSH client asks to run: the git services and admin commands.
//!
//! Everything here works on untrusted input. A command is accepted only when it
//! is exactly one of the known forms; anything else is refused with a message
//! that says what is accepted.

/// Which git service a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitService {
    /// `git-upload-pack`: clone, fetch, ls-remote.
    UploadPack,
    /// `git-receive-pack`: push.
    ReceivePack,
}

/// A parsed exec request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A git service on a project's repository.
    Git {
        /// Which service.
        service: GitService,
        /// The project (a DNS label).
        project: String,
    },
    /// An admin command, split into words.
    Admin(Vec<String>),
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The command line is not valid UTF-8 or holds control characters.
    #[error("the command holds bytes that are not printable UTF-8")]
    NotText,
    /// The repository path is not `PROJECT.git` or `/PROJECT.git`.
    #[error("'{0}' is not a repository of this server: use ssh://git@HOST:PORT/PROJECT.git where PROJECT is a DNS label (a-z, 0-9, '-', at most 63 characters)")]
    BadRepository(String),
    /// The git service line is malformed (missing or badly quoted path).
    #[error("malformed git command: {0}")]
    Malformed(&'static str),
    /// An admin command's quoting does not close (an odd `'` or `"`, a trailing `\\`).
    #[error("the command's quoting is unbalanced: quote a value with spaces as 'KEY=two words' inside the command (ssh git@HOST \"var set P E 'KEY=two words'\")")]
    Unbalanced,
}

impl CommandError {
    /// The exit status for this refusal (spec section 7): 1 for a repository that is not
    /// one of this server's (refused input), 2 for a command line that cannot be read as
    /// one (bad usage).
    pub fn exit_code(&self) -> i32 {
        match self {
            CommandError::BadRepository(_) => 1,
            CommandError::NotText | CommandError::Malformed(_) | CommandError::Unbalanced => 2,
        }
    }
}

/// The longest command line we look at.
const MAX_COMMAND: usize = 4096;

pub use slipway_deploy::environment::is_dns_label;

/// Parse an exec request's command line.
pub fn parse(raw: &[u8]) -> Result<Command, CommandError> {
    if raw.len() > MAX_COMMAND {
        return Err(CommandError::Malformed("command too long"));
    }
    let line = std::str::from_utf8(raw).map_err(|_| CommandError::NotText)?;
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err(CommandError::NotText);
    }
    let line = line.trim();
    for (prefix, service) in [
        ("git-upload-pack", GitService::UploadPack),
        ("git upload-pack", GitService::UploadPack),
        ("git-receive-pack", GitService::ReceivePack),
        ("git receive-pack", GitService::ReceivePack),
    ] {
        if let Some(rest) = line.strip_prefix(prefix) {
            if !rest.starts_with(' ') {
                // e.g. "git-upload-packx": not ours.
                continue;
            }
            let path = unquote(rest.trim_start())?;
            let project = project_of_path(&path)?;
            return Ok(Command::Git { service, project });
        }
    }
    // Split as the user's shell would have on a host with a login shell (OpenSSH hands the
    // command line to it): quotes keep a value with spaces in one word.
    let words = shlex::split(line).ok_or(CommandError::Unbalanced)?;
    Ok(Command::Admin(words))
}

/// Undo the shell quoting git applies to the path: `'path'`, with `'\''` for a
/// quote inside. An unquoted single word is accepted too.
fn unquote(s: &str) -> Result<String, CommandError> {
    if !s.starts_with('\'') {
        if s.is_empty() || s.contains(char::is_whitespace) || s.contains(['\'', '"', '\\']) {
            return Err(CommandError::Malformed(
                "expected one quoted repository path",
            ));
        }
        return Ok(s.to_string());
    }
    let mut out = String::new();
    let mut rest = s;
    loop {
        let Some(body) = rest.strip_prefix('\'') else {
            return Err(CommandError::Malformed(
                "bad quoting of the repository path",
            ));
        };
        let Some(end) = body.find('\'') else {
            return Err(CommandError::Malformed(
                "unterminated quote in the repository path",
            ));
        };
        out.push_str(&body[..end]);
        rest = &body[end + 1..];
        if rest.is_empty() {
            return Ok(out);
        }
        if let Some(r) = rest.strip_prefix("\\'") {
            out.push('\'');
            rest = r;
        } else {
            return Err(CommandError::Malformed(
                "trailing text after the repository path",
            ));
        }
    }
}

/// `/demo.git` (what git sends for `ssh://git@HOST:PORT/demo.git`) and `demo.git` (for
/// `git@HOST:demo.git`) -> `demo`; anything else (`/demo`, `demo/`, `/demo.git/`, ...) is
/// refused, as spec section 3 says: one spelling of each repository, so no two remotes
/// name one project differently.
fn project_of_path(path: &str) -> Result<String, CommandError> {
    let shown: String = path.chars().take(80).collect();
    let p = path.strip_prefix('/').unwrap_or(path);
    match p.strip_suffix(".git") {
        Some(p) if is_dns_label(p) => Ok(p.to_string()),
        _ => Err(CommandError::BadRepository(shown)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(service: GitService, project: &str) -> Command {
        Command::Git {
            service,
            project: project.into(),
        }
    }

    #[test]
    fn git_services() {
        use GitService::*;
        assert_eq!(
            parse(b"git-receive-pack '/demo.git'").unwrap(),
            git(ReceivePack, "demo")
        );
        assert_eq!(
            parse(b"git-upload-pack 'demo.git'").unwrap(),
            git(UploadPack, "demo")
        );
        assert_eq!(
            parse(b"git upload-pack '/my-app.git'").unwrap(),
            git(UploadPack, "my-app")
        );
        assert_eq!(
            parse(b"git-upload-pack demo.git").unwrap(),
            git(UploadPack, "demo")
        );
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            &b"git-receive-pack '/../etc.git'"[..],
            b"git-receive-pack '/etc/passwd'",
            b"git-receive-pack '-demo.git'",
            b"git-upload-pack '--help'",
            b"git-upload-pack '/a'\\''b.git'",
            b"git-upload-pack '/Demo.git'",
            b"git-upload-pack '/de mo.git'",
            b"git-upload-pack 'demo.git' extra",
            b"git-upload-pack 'demo.git",
            b"git-upload-pack \"demo.git\"",
            b"git-upload-pack ''",
            b"git-upload-pack '/demo\0.git'",
            // One spelling per repository: PROJECT.git, with or without the leading `/`.
            b"git-upload-pack '/demo'",
            b"git-upload-pack 'demo'",
            b"git-upload-pack 'demo/'",
            b"git-upload-pack '/demo.git/'",
            b"git-upload-pack '//demo.git'",
            b"git-upload-pack '/demo.git.git'",
        ] {
            assert!(
                parse(bad).is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("git-upload-pack '/{}.git'", "a".repeat(64));
        assert!(matches!(
            parse(long.as_bytes()),
            Err(CommandError::BadRepository(_))
        ));
        assert!(matches!(parse(&[0xff, 0xfe]), Err(CommandError::NotText)));
    }

    #[test]
    fn other_commands_are_admin_words() {
        assert_eq!(
            parse(b"releases demo main").unwrap(),
            Command::Admin(vec!["releases".into(), "demo".into(), "main".into()])
        );
        assert_eq!(parse(b"").unwrap(), Command::Admin(vec![]));
        // Quoted as a shell would: a value with spaces (or quotes) is one word.
        assert_eq!(
            parse(b"var set demo main 'GREETING=hello   world' ").unwrap(),
            Command::Admin(vec![
                "var".into(),
                "set".into(),
                "demo".into(),
                "main".into(),
                "GREETING=hello   world".into()
            ])
        );
        assert_eq!(
            parse(br#"var set demo main "Q=it's \"x\"""#).unwrap(),
            Command::Admin(vec![
                "var".into(),
                "set".into(),
                "demo".into(),
                "main".into(),
                "Q=it's \"x\"".into()
            ])
        );
        for bad in [
            &b"var set demo main 'A=b"[..],
            b"var set demo main \"A=b",
            b"x \\",
        ] {
            assert_eq!(parse(bad), Err(CommandError::Unbalanced), "{bad:?}");
            assert_eq!(CommandError::Unbalanced.exit_code(), 2);
        }
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("a"));
        assert!(is_dns_label("a-1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("a-"));
        assert!(!is_dns_label("a_b"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
