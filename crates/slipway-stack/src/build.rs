//! Building a stack's root file system with mmdebstrap into an uncompressed tar.
//!
//! `mmdebstrap --variant=minbase` installs the catalog's packages from the suite (and its
//! security updates) into a tar, with `SOURCE_DATE_EPOCH` fixed so the same packages give
//! the same bytes. A customize hook adds what a container needs (mount points `/app`,
//! `/cache`, empty `/etc/hosts` and `/etc/resolv.conf`, user `web`) and, for Node.js from
//! the npm registry, the pinned `node` and `npm` tarballs checked against their sha512, and
//! the stack's npm tools (yarn, corepack) likewise, each under
//! `/usr/local/lib/node_modules` with its commands linked into `/usr/local/bin`, and npm's
//! own node-gyp linked there too (yarn 1.x runs `node-gyp` from `PATH` for native addons).

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest as _, Sha512};

use crate::catalog::{NpmTarball, NpmTool, Stack};
use crate::error::StackError;

/// The `SOURCE_DATE_EPOCH` of every stack build (2025-01-01T00:00:00Z).
pub const SOURCE_DATE_EPOCH: u64 = 1_735_689_600;

/// Version of the build recipe (mmdebstrap options, hooks): part of every stack's
/// fingerprint, so a changed recipe does not reuse stacks built by the old one.
/// 2: man page folders made before packages install (OpenJDK's maintainer scripts).
pub const RECIPE: u32 = 2;

/// The uid and gid of user `web` in every stack.
pub const WEB_UID: u32 = 10000;

/// Where a build fetches from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// The Debian mirror (`http://deb.debian.org/debian`).
    pub mirror: String,
    /// The Debian security mirror (`http://deb.debian.org/debian-security`); `None`: none.
    pub security_mirror: Option<String>,
    /// The npm registry, for Node.js majors Debian lacks (`https://registry.npmjs.org`).
    pub npm_registry: String,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            mirror: "http://deb.debian.org/debian".into(),
            security_mirror: Some("http://deb.debian.org/debian-security".into()),
            npm_registry: "https://registry.npmjs.org".into(),
        }
    }
}

impl BuildOptions {
    /// Only `mirror`, no security mirror (tests, local mirrors).
    pub fn with_mirror(mirror: &str) -> BuildOptions {
        BuildOptions {
            mirror: mirror.to_string(),
            security_mirror: None,
            ..BuildOptions::default()
        }
    }
}

/// Quote `s` for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Download `tarball` from `registry` into `dir` and check its sha512.
fn fetch_npm(registry: &str, tarball: &NpmTarball, dir: &Path) -> Result<PathBuf, StackError> {
    let url = format!("{}/{}", registry.trim_end_matches('/'), tarball.path());
    // A scoped package's `/` is no folder here.
    let dest = dir.join(format!(
        "{}-{}.tgz",
        tarball.package.replace('/', "+"),
        tarball.version
    ));
    let out = Command::new("curl")
        .args(["-fsSL", "--retry", "2", "--connect-timeout", "20", "-o"])
        .arg(&dest)
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StackError::ToolMissing {
            tool: "curl".into(),
            hint: format!("{e}; install curl"),
        })?;
    if !out.status.success() {
        return Err(StackError::Download {
            url,
            cause: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let mut f = fs::File::open(&dest).map_err(StackError::io(&dest))?;
    let mut h = Sha512::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(StackError::io(&dest))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let actual = hex::encode(h.finalize());
    if actual != tarball.sha512 {
        return Err(StackError::Checksum {
            url,
            expected: tarball.sha512.to_string(),
            actual,
        });
    }
    Ok(dest)
}

/// The customize hook: a shell script run on the host with the root file system as `$1`;
/// `npm_files` are the fetched node and npm tarballs, `tools` each npm tool of the stack
/// with its fetched tarball.
fn customize_script(
    stack: &Stack,
    npm_files: Option<(&Path, &Path)>,
    tools: &[(&NpmTool, PathBuf)],
) -> String {
    let mut s = String::from(
        "set -eu\nR=\"$1\"\n\
         mkdir -p \"$R/app\" \"$R/cache\" \"$R/home/web\" \"$R/run\" \"$R/tmp\"\n\
         : > \"$R/etc/hosts\"\n: > \"$R/etc/resolv.conf\"\nrm -f \"$R/etc/hostname\"\n",
    );
    let _ = writeln!(
        s,
        "grep -q '^web:' \"$R/etc/passwd\" || echo 'web:x:{WEB_UID}:{WEB_UID}:web:/home/web:/bin/sh' >> \"$R/etc/passwd\"\n\
         grep -q '^web:' \"$R/etc/group\" || echo 'web:x:{WEB_UID}:' >> \"$R/etc/group\"\n\
         chown {WEB_UID}:{WEB_UID} \"$R/home/web\""
    );
    if !stack.language.is_service() {
        let _ = writeln!(
            s,
            "mkdir -p \"$R/etc/mysql/mariadb.conf.d\"\nprintf '%s' {} > \"$R/etc/mysql/mariadb.conf.d/90-slipway-client.cnf\"",
            sh_quote(crate::catalog::MARIADB_CLIENT_CNF)
        );
    }
    if stack.packages.contains(&"yarnpkg") {
        s.push_str("[ -e \"$R/usr/bin/yarn\" ] || ln -s yarnpkg \"$R/usr/bin/yarn\"\n");
    }
    if let Some((node, npm)) = npm_files {
        let _ = writeln!(
            s,
            "tar -xzf {node} -C \"$R/usr/local\" --strip-components=1 --no-same-owner package/bin package/include package/share\n\
             mkdir -p \"$R/usr/local/lib/node_modules/npm\"\n\
             tar -xzf {npm} -C \"$R/usr/local/lib/node_modules/npm\" --strip-components=1 --no-same-owner\n\
             ln -sf ../lib/node_modules/npm/bin/npm-cli.js \"$R/usr/local/bin/npm\"\n\
             ln -sf ../lib/node_modules/npm/bin/npx-cli.js \"$R/usr/local/bin/npx\"\n\
             chmod 755 \"$R/usr/local/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js\"\n\
             ln -sf ../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js \"$R/usr/local/bin/node-gyp\"",
            node = sh_quote(&node.to_string_lossy()),
            npm = sh_quote(&npm.to_string_lossy()),
        );
    }
    for (tool, file) in tools {
        let dir = format!("/usr/local/lib/node_modules/{}", tool.tarball.package);
        let _ = writeln!(
            s,
            "mkdir -p \"$R\"{dir} \"$R/usr/local/bin\"\n\
             tar -xzf {file} -C \"$R\"{dir} --strip-components=1 --no-same-owner\n\
             chmod -R u+rwX,go+rX,go-w \"$R\"{dir}",
            dir = sh_quote(&dir),
            file = sh_quote(&file.to_string_lossy()),
        );
        for (command, script) in tool.commands {
            let _ = writeln!(
                s,
                "chmod 755 \"$R\"{script}\nln -sf {target} \"$R\"{link}",
                script = sh_quote(&format!("{dir}/{script}")),
                target = sh_quote(&format!(
                    "../lib/node_modules/{}/{script}",
                    tool.tarball.package
                )),
                link = sh_quote(&format!("/usr/local/bin/{command}")),
            );
        }
    }
    s
}

/// The cause of a failed mmdebstrap run, from its output: a missing package, or the error
/// lines (a mirror that cannot be reached names it).
fn failure(stack: &Stack, lines: &[String]) -> StackError {
    for l in lines {
        for prefix in ["E: Unable to locate package ", "E: Package '"] {
            if let Some(rest) = l.strip_prefix(prefix) {
                let package = rest.split(['\'', ' ']).next().unwrap_or(rest).to_string();
                return StackError::PackageMissing {
                    stack: stack.type_name(),
                    suite: stack.suite.to_string(),
                    package,
                };
            }
        }
    }
    let errors: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| {
            l.starts_with("E:")
                || l.starts_with("Err:")
                || l.starts_with("W: Failed")
                || l.starts_with("dpkg: error")
                || l.contains(": error:")
        })
        .collect();
    let cause = if errors.is_empty() {
        lines
            .iter()
            .rev()
            .take(5)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        errors.join("; ")
    };
    StackError::BuildFailed {
        stack: stack.type_name(),
        cause: format!("mmdebstrap failed: {cause}"),
    }
}

/// Build `stack` into the tar `out` (in `work`, a folder the caller removes), calling
/// `progress` with each line of mmdebstrap's progress.
pub fn build_tar(
    stack: &Stack,
    options: &BuildOptions,
    work: &Path,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), StackError> {
    let npm_files = match stack.node_from_npm {
        Some(n) => {
            progress(&format!(
                "fetching node {} and npm {} from {}",
                n.node.version, n.npm.version, options.npm_registry
            ));
            let node = fetch_npm(&options.npm_registry, &n.node, work)?;
            let npm = fetch_npm(&options.npm_registry, &n.npm, work)?;
            Some((node, npm))
        }
        None => None,
    };
    let mut tools = Vec::new();
    for tool in stack.npm_tools {
        progress(&format!(
            "fetching {} {} from {}",
            tool.tarball.package, tool.tarball.version, options.npm_registry
        ));
        tools.push((tool, fetch_npm(&options.npm_registry, &tool.tarball, work)?));
    }
    let script = work.join("customize.sh");
    fs::write(
        &script,
        customize_script(
            stack,
            npm_files.as_ref().map(|(a, b)| (a.as_path(), b.as_path())),
            &tools,
        ),
    )
    .map_err(StackError::io(&script))?;
    let suite = stack.suite.codename();
    let packages = stack.debian_packages();
    // Under `serve`, in its reaper: mmdebstrap's gpg-agent would stay a zombie below it.
    let mut cmd = slipway_runtime::reaper::host_command("mmdebstrap");
    cmd.args([
        "--variant=minbase",
        "--mode=root",
        "--format=tar",
        "--aptopt=Acquire::Retries \"2\"",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
    ])
    .arg(format!("--include={}", packages.join(",")))
    // Man pages are not installed, but maintainer scripts (OpenJDK's update-alternatives)
    // link into these folders: they must exist.
    .arg("--essential-hook=mkdir -p \"$1/usr/share/man/man1\" \"$1/usr/share/man/man7\"")
    .arg(format!(
        "--customize-hook=sh {} \"$1\"",
        sh_quote(&script.to_string_lossy())
    ))
    .arg(suite)
    .arg(out)
    .arg(format!("deb {} {suite} main", options.mirror));
    if let Some(sec) = &options.security_mirror {
        cmd.arg(format!("deb {sec} {suite}-security main"));
    }
    cmd.env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| StackError::ToolMissing {
        tool: "mmdebstrap".into(),
        hint: format!("{e}; install it with `apt-get install mmdebstrap` (scripts/install-deps)"),
    })?;
    // stdout and stderr both carry progress and errors; read stdout on a thread.
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        if let Some(o) = stdout {
            for l in BufReader::new(o).lines().map_while(Result::ok) {
                lines.push(l);
            }
        }
        lines
    });
    let mut lines = Vec::new();
    if let Some(err) = child.stderr.take() {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if l.starts_with("I: ") {
                progress(l.trim_start_matches("I: "));
            }
            lines.push(l);
        }
    }
    let status = child.wait().map_err(StackError::io(out))?;
    lines.extend(reader.join().unwrap_or_default());
    if !status.success() {
        return Err(failure(stack, &lines));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::find;
    use crate::Language;

    #[test]
    fn failures_name_the_package_or_the_cause() {
        let s = find(Language::Python, "3.11").unwrap();
        let e = failure(s, &["E: Unable to locate package python3-nope".into()]);
        assert_eq!(
            e.to_string(),
            "building stack python:3.11: Debian bookworm has no package `python3-nope`"
        );
        let e = failure(
            s,
            &[
                "I: running apt-get update...".into(),
                "E: Failed to fetch http://127.0.0.1:1/dists/bookworm/InRelease  Could not connect to 127.0.0.1:1".into(),
                "E: apt-get update failed".into(),
            ],
        );
        let m = e.to_string();
        assert!(m.contains("Could not connect to 127.0.0.1:1"), "{m}");
    }

    #[test]
    fn npm_node_stacks_unpack_the_pinned_tarballs() {
        let s = find(Language::Nodejs, "22").unwrap();
        let script = customize_script(
            s,
            Some((Path::new("/w/n.tgz"), Path::new("/w/it's.tgz"))),
            &[],
        );
        assert!(
            script.contains("tar -xzf '/w/n.tgz' -C \"$R/usr/local\""),
            "{script}"
        );
        assert!(script.contains("'/w/it'\\''s.tgz'"), "{script}");
        assert!(
            script.contains("ln -sf ../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js \"$R/usr/local/bin/node-gyp\""),
            "{script}"
        );
        assert!(script.contains("web:x:10000:10000"), "{script}");
    }

    #[test]
    fn npm_tools_are_unpacked_and_their_commands_linked() {
        let s = find(Language::Nodejs, "22").unwrap();
        let tools: Vec<(&NpmTool, PathBuf)> = s
            .npm_tools
            .iter()
            .map(|t| (t, PathBuf::from(format!("/w/{}.tgz", t.tarball.package))))
            .collect();
        let script = customize_script(s, None, &tools);
        for line in [
            "tar -xzf '/w/yarn.tgz' -C \"$R\"'/usr/local/lib/node_modules/yarn' --strip-components=1 --no-same-owner",
            "ln -sf '../lib/node_modules/yarn/bin/yarn.js' \"$R\"'/usr/local/bin/yarn'",
            "ln -sf '../lib/node_modules/yarn/bin/yarn.js' \"$R\"'/usr/local/bin/yarnpkg'",
            "ln -sf '../lib/node_modules/corepack/dist/corepack.js' \"$R\"'/usr/local/bin/corepack'",
        ] {
            assert!(script.contains(line), "{line} missing from:\n{script}");
        }
        // corepack's own yarn and pnpm shims are not put on PATH: `yarn` stays yarn 1.x.
        assert!(!script.contains("dist/yarn.js"), "{script}");
        // A Debian Node.js stack links `yarn` to Debian's yarnpkg and adds corepack.
        let debian = find(Language::Nodejs, "18").unwrap();
        let tools: Vec<(&NpmTool, PathBuf)> = debian
            .npm_tools
            .iter()
            .map(|t| (t, PathBuf::from("/w/c.tgz")))
            .collect();
        let script = customize_script(debian, None, &tools);
        assert!(
            script.contains("ln -s yarnpkg \"$R/usr/bin/yarn\""),
            "{script}"
        );
        assert!(script.contains("/usr/local/bin/corepack"), "{script}");
    }
}
