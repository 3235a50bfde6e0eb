//! Creating bare repositories.

use std::path::Path;

use crate::GitError;

/// Configuration written into every repository by [`init_bare`] (key, value).
///
/// - `core.logAllRefUpdates`: keep reflogs in the bare repository, so every ref move
///   (deploys, rollbacks) leaves a trace.
/// - `receive.advertisePushOptions`, `receive.denyDeleteCurrent=false`: consistent behaviour
///   if the stock `git receive-pack` is ever pointed at the repository.
/// - `gc.autoDetach=false`: an automatic gc never races a push in the background.
/// - `uploadpack.allowFilter`, `uploadpack.allowReachableSHA1InWant`: partial clones
///   (`--filter=blob:none`) and their lazy fetches of missing blobs.
/// - `receive.fsckObjects`, `transfer.fsckObjects`: the stock git tools check objects too.
pub const CONFIG: &[(&str, &str)] = &[
    ("core.logAllRefUpdates", "true"),
    ("receive.advertisePushOptions", "true"),
    ("receive.denyDeleteCurrent", "false"),
    ("gc.autoDetach", "false"),
    ("uploadpack.allowFilter", "true"),
    ("uploadpack.allowReachableSHA1InWant", "true"),
    ("receive.fsckObjects", "true"),
    ("transfer.fsckObjects", "true"),
];

/// Creates a bare repository at `path` if missing (idempotent): `HEAD` points at
/// `refs/heads/main`, and the receive-related configuration is set (see the module source).
///
/// An existing repository is left as it is, except that its configuration is brought to these
/// values.
pub fn init_bare(path: &Path) -> Result<(), GitError> {
    let is_repo = path.join("HEAD").is_file() && path.join("objects").is_dir();
    if !is_repo {
        std::fs::create_dir_all(path).map_err(GitError::io("cannot create", path))?;
        gix::ThreadSafeRepository::init(
            path,
            gix::create::Kind::Bare,
            gix::create::Options::default(),
        )
        .map_err(GitError::gix(format!(
            "cannot initialise a bare repository at {}",
            path.display()
        )))?;
        let head = path.join("HEAD");
        std::fs::write(&head, b"ref: refs/heads/main\n")
            .map_err(GitError::io("cannot write", head))?;
    }
    let pack_dir = path.join("objects").join("pack");
    std::fs::create_dir_all(&pack_dir).map_err(GitError::io("cannot create", pack_dir))?;
    configure(path)
}

/// Sets the [`CONFIG`] values in `path/config` (the file is rewritten only if one differs).
fn configure(path: &Path) -> Result<(), GitError> {
    let config_path = path.join("config");
    let mut file =
        gix::config::File::from_path_no_includes(config_path.clone(), gix::config::Source::Local)
            .map_err(GitError::gix(format!(
            "cannot read {}",
            config_path.display()
        )))?;
    let mut changed = false;
    for (key, value) in CONFIG {
        let current = file.raw_value(*key).ok().map(|v| v.to_vec());
        if current.as_deref() != Some(value.as_bytes()) {
            file.set_raw_value(*key, *value)
                .map_err(GitError::gix(format!(
                    "cannot set {key} in {}",
                    config_path.display()
                )))?;
            changed = true;
        }
    }
    if changed {
        let mut out = Vec::new();
        file.write_to(&mut out)
            .map_err(GitError::io("cannot serialise", &config_path))?;
        let tmp = path.join("config.slipway-tmp");
        std::fs::write(&tmp, &out).map_err(GitError::io("cannot write", &tmp))?;
        std::fs::rename(&tmp, &config_path)
            .map_err(GitError::io("cannot replace", &config_path))?;
    }
    Ok(())
}
