//! Writing an OCI bundle for a [`ContainerSpec`]: `config.json`, and the file systems of the
//! container's own its mounts come from (`ownfs`): the root (a read-only overlay of the
//! stack, or a tmpfs with mount points for the host stack), the generated files' tmpfs,
//! read-only overlays of `/app` and of other read-only host folders (writable ones are
//! bound as they are).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    get_default_maskedpaths, get_default_mounts, get_default_readonly_paths, Capabilities,
    LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::error::RuntimeError;
use crate::ownfs::Staging;
use crate::spec::{destination_parts, ContainerSpec, RootFs};
use crate::tenancy::{seccomp, CPU_PERIOD_US, INIT_PATH};

/// Host folders that merged-usr systems have as symlinks into `/usr`.
const LIB_DIRS: &[&str] = &["bin", "sbin", "lib", "lib64", "lib32", "libx32"];
/// `PATH` when the spec sets none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Host files and folders hidden from every container (besides the OCI defaults under `/proc`
/// and `/sys`): password hashes and the host's SSH keys.
const MASKED_HOST_PATHS: &[&str] = &["/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/sudoers"];

/// Where one container's files live.
pub(crate) struct BundlePaths {
    /// The bundle folder (holds `config.json`).
    pub bundle: PathBuf,
    /// The mount point of the container's root (unmounted once the container started;
    /// the empty folder stays, `runc exec` starts in it).
    pub rootfs: PathBuf,
}

impl BundlePaths {
    /// Unmounts the root's mount point (nothing mounted is fine).
    pub fn unmount_root(&self) -> Result<(), RuntimeError> {
        crate::ownfs::unmount_all(&self.rootfs)
    }

    /// Removes the bundle and root folders (missing is fine).
    pub fn remove(&self) -> Result<(), RuntimeError> {
        self.unmount_root()?;
        for dir in [&self.bundle, &self.rootfs] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(RuntimeError::io(format!("removing {}", dir.display()), e)),
            }
        }
        Ok(())
    }
}

/// How a host top-level folder like `/lib64` appears in the container.
enum HostDir {
    /// A symlink with this target: recreate it in the rootfs.
    Symlink(PathBuf),
    /// A real folder: bind-mount it read-only.
    Dir,
}

fn host_dir(name: &str) -> Option<HostDir> {
    let path = Path::new("/").join(name);
    let meta = std::fs::symlink_metadata(&path).ok()?;
    if meta.file_type().is_symlink() {
        std::fs::read_link(&path).ok().map(HostDir::Symlink)
    } else if meta.is_dir() {
        Some(HostDir::Dir)
    } else {
        None
    }
}

fn mkdirs(path: &Path) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(path)
        .map_err(|e| RuntimeError::io(format!("creating {}", path.display()), e))
}

/// Creates a mount point at `target` for `source` (an empty file for a file source, else a folder).
fn mount_point(target: &Path, source: &Path) -> Result<(), RuntimeError> {
    if std::fs::symlink_metadata(target).is_ok() {
        return Ok(());
    }
    if source.is_dir() {
        return mkdirs(target);
    }
    if let Some(parent) = target.parent() {
        mkdirs(parent)?;
    }
    std::fs::File::create(target)
        .map(drop)
        .map_err(|e| RuntimeError::io(format!("creating {}", target.display()), e))
}

/// Creates the mount point `relative` of a declared mount below the app folder `app_dir`
/// (the slug, whose content the tenant's build chose) without following a symbolic link on
/// the way: a slug with `x -> /etc` and a mount `x/y` would otherwise have the host's
/// `/etc/y` made. A link as the last part is left to runc, which resolves a destination
/// inside the container's root.
fn app_mount_point(
    id: &str,
    app_dir: &Path,
    relative: &Path,
    source: &Path,
) -> Result<(), RuntimeError> {
    let mut at = app_dir.to_path_buf();
    let mut parts = relative.components().peekable();
    while let Some(part) = parts.next() {
        at.push(part);
        if parts.peek().is_none() {
            // The last part: as any other mount point.
            return mount_point(&at, source);
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(RuntimeError::InvalidSpec {
                    id: id.to_string(),
                    reason: format!(
                        "mount point /app/{} goes through {}, which is not a folder (a symbolic link?) in the app",
                        relative.display(),
                        at.strip_prefix(app_dir).unwrap_or(&at).display()
                    ),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir(&at)
                .map_err(|e| RuntimeError::io(format!("creating {}", at.display()), e))?,
            Err(e) => return Err(RuntimeError::io(format!("reading {}", at.display()), e)),
        }
    }
    Ok(())
}

fn bind(dest: &str, source: &Path, writable: bool) -> Result<Mount, RuntimeError> {
    let mut options = vec![
        "rbind".to_string(),
        "nosuid".to_string(),
        "nodev".to_string(),
    ];
    if !writable {
        // `rro` makes sub-mounts read-only too (kernel >= 5.12).
        options.push("ro".to_string());
        options.push("rro".to_string());
    }
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
        .map_err(oci_err)
}

/// The open-files limit for containers: this process's hard limit (raising it needs privileges
/// the runtime may lack), capped at 1048576.
fn nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    if ok {
        lim.rlim_max.min(1 << 20)
    } else {
        1024
    }
}

fn oci_err(e: oci_spec::OciSpecError) -> RuntimeError {
    RuntimeError::Parse {
        command: "building config.json".into(),
        message: e.to_string(),
    }
}

/// Where a container finds [`run_config`]'s text, as on Platform.sh.
pub(crate) const RUN_CONFIG: &str = "/run/config.json";

/// The text of a container's `/run/config.json`: what the kernel allows it, in
/// Platform.sh's shape (`info.limits.memory` in MiB, `info.limits.cpu` in CPUs), so that a
/// start command such as `java -Xmx$(jq .info.limits.memory /run/config.json)m` sizes
/// itself from the limits really applied ([`Limits`](crate::Limits)).
pub(crate) fn run_config(limits: &crate::Limits) -> String {
    // Whole CPUs as integers (`2`, not `2.0`), as every `jq` prints them.
    let cpu: serde_json::Value = if limits.cpu_millis.is_multiple_of(1000) {
        (limits.cpu_millis / 1000).into()
    } else {
        (f64::from(limits.cpu_millis) / 1000.0).into()
    };
    serde_json::json!({
        "info": {
            "limits": {
                "cpu": cpu,
                "memory": limits.memory_bytes / (1024 * 1024),
            }
        }
    })
    .to_string()
}

/// The text of a container's `/etc/hosts`: `localhost`, then the given names.
fn hosts_file(hosts: &[(String, std::net::IpAddr)]) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost\n");
    for (name, ip) in hosts {
        s.push_str(&format!("{ip}\t{name}\n"));
    }
    s
}

fn write_file(path: &Path, text: &str) -> Result<(), RuntimeError> {
    std::fs::write(path, text)
        .map_err(|e| RuntimeError::io(format!("writing {}", path.display()), e))
}

/// Makes the container's root (a read-only overlay of its stack, or for the host stack a
/// tmpfs with mount points and merged-usr symlinks), its tmpfs of generated files (the `web`
/// user's `/etc/passwd` and `/etc/group`, `/etc/hosts`), the mounts of `/app` and the
/// declared mounts, each read-only one from a file system of its own where the kernel
/// allows (`ownfs`), and writes `config.json`.
/// `init` is the host's tini.
/// The annotation naming the stack folder a container's root is (absent on the host root):
/// `slipway archive gc` keeps every unpacked stack a container uses.
pub const STACK_ROOT_ANNOTATION: &str = "dev.slipway.stack-root";

pub(crate) fn write_bundle(
    spec: &ContainerSpec,
    paths: &BundlePaths,
    stage: &Staging,
    cgroups_path: &str,
    init: &Path,
) -> Result<(), RuntimeError> {
    paths.remove()?;
    mkdirs(&paths.bundle)?;
    // A stack is the root (read-only, shared: its mount points are made when it is built);
    // the host stack is bound into a tmpfs root of the container's own, made here.
    let stack_root = match &spec.root {
        RootFs::Stack(dir) => Some(dir.as_path()),
        RootFs::Host => None,
    };
    let root_dir = match stack_root {
        Some(dir) => dir.to_path_buf(),
        None => {
            let root = stage.tmpfs(0o755, Some(&paths.rootfs))?;
            for d in ["usr", "etc", "proc", "dev", "sys", "tmp", "run", "app"] {
                mkdirs(&root.join(d))?;
            }
            // runc gives a tmpfs the mode of its mount point: `/tmp` must be world-writable
            // and sticky.
            let tmp = root.join("tmp");
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).map_err(
                |e| RuntimeError::io(format!("setting the mode of {}", tmp.display()), e),
            )?;
            root
        }
    };
    // The init's mount point: in the per-container root, or once in a stack's shared root.
    let init_point = root_dir.join(INIT_PATH.trim_start_matches('/'));
    if !init_point.exists() {
        mount_point(&init_point, init)?;
    }

    // Declared mounts, parents before children; their mount points first (in the slug
    // before its overlay is made, so that the overlay has them).
    let mut declared: Vec<_> = spec
        .mounts
        .iter()
        .filter_map(|m| destination_parts(&m.destination).map(|p| (p, m)))
        .collect();
    declared.sort_by_key(|(parts, _)| parts.len());
    for (parts, m) in &declared {
        let rel: PathBuf = parts.iter().collect();
        match parts[0].as_str() {
            // Inside /app: the mount point has to exist in the app folder itself.
            "app" => app_mount_point(
                &spec.id,
                &spec.app_dir,
                &parts[1..].iter().collect::<PathBuf>(),
                &m.source,
            )?,
            // Inside /tmp (a tmpfs): the runtime creates it.
            "tmp" => {}
            _ => {
                // Not below another declared mount: create it in the root.
                let below_other = declared
                    .iter()
                    .any(|(p, _)| p.len() < parts.len() && parts.starts_with(p));
                if below_other {
                } else if stack_root.is_none() {
                    mount_point(&root_dir.join(&rel), &m.source)?;
                } else if std::fs::symlink_metadata(root_dir.join(&rel)).is_err() {
                    // Never write into a shared stack: its mount points are made at build.
                    return Err(RuntimeError::InvalidSpec {
                        id: spec.id.clone(),
                        reason: format!("mount point /{} is not in the stack", rel.display()),
                    });
                }
            }
        }
    }

    let root_path = match stack_root {
        Some(stack) => stage.read_only(stack, Some(&paths.rootfs))?,
        None => root_dir,
    };
    // Generated and copied files, on a tmpfs of the container's own.
    let files = stage.tmpfs(0o755, None)?;
    let generated = |name: &str, text: &str| -> Result<PathBuf, RuntimeError> {
        let path = files.join(name);
        write_file(&path, text)?;
        Ok(path)
    };
    let passwd = generated("passwd", &spec.run_as.passwd())?;
    let run_config = generated("run-config.json", &run_config(&spec.limits))?;
    let group = generated("group", &spec.run_as.group())?;
    let source = |path: &Path, writable: bool, name: &str| -> Result<PathBuf, RuntimeError> {
        stage.source(path, writable, &files, name)
    };

    let mut mounts = get_default_mounts();
    if stack_root.is_none() {
        mounts.push(bind("/usr", Path::new("/usr"), false)?);
        mounts.push(bind("/etc", Path::new("/etc"), false)?);
    } else if spec.netns.is_none() && Path::new("/etc/resolv.conf").exists() {
        // On the host network (builds) names resolve as on the host: its resolv.conf,
        // read-only, over the stack's empty one; nothing else of the host's /etc.
        let copy = source(Path::new("/etc/resolv.conf"), false, "resolv.conf")?;
        mounts.push(bind("/etc/resolv.conf", &copy, false)?);
    }
    if !spec.hosts.is_empty() {
        let hosts = generated("hosts", &hosts_file(&spec.hosts))?;
        mounts.push(bind("/etc/hosts", &hosts, false)?);
    }
    mounts.push(bind("/etc/passwd", &passwd, false)?);
    mounts.push(bind("/etc/group", &group, false)?);
    // The init's folder in an overlay of its own: the container binds only the init of it.
    let init_name = init.file_name().unwrap_or_default();
    let init_dir = init.parent().unwrap_or(Path::new("/"));
    mounts.push(bind(
        INIT_PATH,
        &stage.read_only(init_dir, None)?.join(init_name),
        false,
    )?);
    for name in LIB_DIRS.iter().filter(|_| stack_root.is_none()) {
        match host_dir(name) {
            Some(HostDir::Symlink(target)) => {
                let link = root_path.join(name);
                std::os::unix::fs::symlink(&target, &link).map_err(|e| {
                    RuntimeError::io(format!("creating symlink {}", link.display()), e)
                })?;
            }
            Some(HostDir::Dir) => {
                mkdirs(&root_path.join(name))?;
                let host = Path::new("/").join(name);
                mounts.push(bind(&format!("/{name}"), &host, false)?);
            }
            None => {}
        }
    }
    mounts.push(
        MountBuilder::default()
            .destination("/tmp")
            .typ("tmpfs")
            .source("tmpfs")
            .options(vec![
                "nosuid".to_string(),
                "nodev".to_string(),
                "mode=1777".to_string(),
                format!("size={}", spec.limits.tmp_bytes),
            ])
            .build()
            .map_err(oci_err)?,
    );
    // `/run`: the container's own (sockets) or a small root-owned tmpfs over the stack's
    // empty folder, so that `/run/config.json` has a mount point; `web` writes neither.
    if !declared
        .iter()
        .any(|(parts, _)| parts.len() == 1 && parts[0] == "run")
    {
        mounts.push(
            MountBuilder::default()
                .destination("/run")
                .typ("tmpfs")
                .source("tmpfs")
                .options(vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "noexec".to_string(),
                    "mode=755".to_string(),
                    "size=64k".to_string(),
                ])
                .build()
                .map_err(oci_err)?,
        );
    }
    let app = source(&spec.app_dir, spec.app_writable, "app")?;
    mounts.push(bind("/app", &app, spec.app_writable)?);
    for (n, (parts, m)) in declared.iter().enumerate() {
        let name = format!(
            "{n}-{}",
            parts.last().map(String::as_str).unwrap_or("mount")
        );
        mounts.push(bind(
            &format!("/{}", parts.join("/")),
            &source(&m.source, m.writable, &name)?,
            m.writable,
        )?);
    }

    // After the declared mounts: over a `/run` of the container's own too.
    mounts.push(bind(RUN_CONFIG, &run_config, false)?);

    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !spec.env.iter().any(|(k, _)| k == "HOME") {
        env.push("HOME=/tmp".to_string());
    }

    // No capability at all, in any set: `web` is an ordinary user.
    let caps = Capabilities::new();
    // tini as pid 1: forwards signals to the app's process group (-g) and reaps orphans.
    let mut args = vec![INIT_PATH.to_string(), "-g".to_string(), "--".to_string()];
    args.extend(spec.args.iter().cloned());
    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(spec.run_as.uid)
                .gid(spec.run_as.gid)
                .additional_gids(Vec::<u32>::new())
                .build()
                .map_err(oci_err)?,
        )
        .args(args)
        .env(env)
        .cwd(spec.cwd.as_str())
        .no_new_privileges(true)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps.clone())
                .inheritable(caps.clone())
                .ambient(caps)
                .build()
                .map_err(oci_err)?,
        )
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(nofile_limit())
            .hard(nofile_limit())
            .build()
            .map_err(oci_err)?])
        .build()
        .map_err(oci_err)?;

    let mut namespaces = Vec::new();
    for typ in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        // Its own cgroup as `/` in /proc/self/cgroup: the host's cgroup layout is not shown.
        LinuxNamespaceType::Cgroup,
    ] {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(typ)
                .build()
                .map_err(oci_err)?,
        );
    }
    if let Some(ns) = &spec.netns {
        namespaces.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(ns.clone())
                .build()
                .map_err(oci_err)?,
        );
    }
    let mut masked = get_default_maskedpaths();
    masked.extend(MASKED_HOST_PATHS.iter().map(|p| p.to_string()));
    let limits = &spec.limits;
    let memory = i64::try_from(limits.memory_bytes).unwrap_or(i64::MAX);
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(masked)
        .seccomp(seccomp()?)
        .readonly_paths(get_default_readonly_paths())
        .cgroups_path(PathBuf::from(cgroups_path))
        .resources(
            LinuxResourcesBuilder::default()
                .devices(vec![LinuxDeviceCgroupBuilder::default()
                    .allow(false)
                    .access("rwm")
                    .build()
                    .map_err(oci_err)?])
                .pids(
                    LinuxPidsBuilder::default()
                        .limit(i64::from(limits.pids))
                        .build()
                        .map_err(oci_err)?,
                )
                .memory(
                    LinuxMemoryBuilder::default()
                        .limit(memory)
                        .swap(memory)
                        .build()
                        .map_err(oci_err)?,
                )
                .cpu(
                    LinuxCpuBuilder::default()
                        .shares(limits.cpu_shares())
                        .quota(limits.cpu_quota_us())
                        .period(CPU_PERIOD_US)
                        .build()
                        .map_err(oci_err)?,
                )
                .build()
                .map_err(oci_err)?,
        )
        .build()
        .map_err(oci_err)?;

    let hostname = if spec.hostname.is_empty() {
        "slipway"
    } else {
        spec.hostname.as_str()
    };
    let config: Spec = SpecBuilder::default()
        .version("1.0.2-dev")
        .root(
            RootBuilder::default()
                .path(root_path)
                .readonly(true)
                .build()
                .map_err(oci_err)?,
        )
        .mounts(mounts)
        .process(process)
        .hostname(hostname)
        .annotations({
            let mut a = spec
                .annotations
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>();
            // Which unpacked stack this container's root is: `archive gc` keeps it.
            if let Some(dir) = stack_root {
                a.insert(STACK_ROOT_ANNOTATION.to_string(), dir.display().to_string());
            }
            a
        })
        .linux(linux)
        .build()
        .map_err(oci_err)?;
    let json = serde_json::to_vec_pretty(&config).map_err(|e| RuntimeError::Parse {
        command: "writing config.json".into(),
        message: e.to_string(),
    })?;
    // Owner-only: until its container runs, it holds the process's variables.
    crate::process::write_private(&paths.bundle.join("config.json"), &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/run/config.json` names the memory in MiB and the CPUs, as applied.
    #[test]
    fn run_config_names_the_limits_applied() {
        let limits = crate::Limits {
            pids: 512,
            memory_bytes: 768 * 1024 * 1024,
            cpu_millis: 500,
            tmp_bytes: 1,
        };
        let v: serde_json::Value = serde_json::from_str(&run_config(&limits)).unwrap();
        assert_eq!(v["info"]["limits"]["memory"], 768);
        assert_eq!(v["info"]["limits"]["cpu"], 0.5);
        let two = crate::Limits {
            cpu_millis: 2000,
            ..limits
        };
        assert_eq!(
            run_config(&two),
            r#"{"info":{"limits":{"cpu":2,"memory":768}}}"#
        );
    }

    /// A mount point below a link in the app is refused, never made through it; a plain
    /// path is made, folders for a folder source and a file for a file.
    #[test]
    fn an_app_mount_point_is_never_made_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let (app, outside) = (tmp.path().join("app"), tmp.path().join("outside"));
        std::fs::create_dir_all(&app).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, app.join("x")).unwrap();
        let err = app_mount_point("c", &app, Path::new("x/y"), tmp.path()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(!outside.join("y").exists());
        // A link as the last part is left as it is.
        app_mount_point("c", &app, Path::new("x"), tmp.path()).unwrap();
        app_mount_point("c", &app, Path::new("a/b"), tmp.path()).unwrap();
        assert!(app.join("a/b").is_dir());
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        app_mount_point("c", &app, Path::new("a/f"), &file).unwrap();
        assert!(app.join("a/f").is_file());
    }
}
