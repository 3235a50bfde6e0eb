//! The data dir is private to the user running Slipway (issue 12): it holds variable
//! values (state database, runtime bundles, image configs) and build caches that builds
//! write as root, so no other local user may read or run anything in it.

use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

/// Mode of the data dir: only its owner may enter it.
pub const DATA_DIR_MODE: u32 = 0o700;

/// Mode of the state database's files.
pub const STATE_DB_MODE: u32 = 0o600;

/// Create the data dir `root` if it is missing (with its parents) and make it private:
/// the folder itself mode 0700, the state database and its WAL files (when they exist)
/// mode 0600, including those an older version created readable by others.
pub fn make_private(root: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DATA_DIR_MODE)
        .create(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(DATA_DIR_MODE))?;
    for name in ["state.db", "state.db-wal", "state.db-shm"] {
        let file = root.join(name);
        match std::fs::symlink_metadata(&file) {
            Ok(m) if m.is_file() => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(STATE_DB_MODE))?
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dirs_old_and_new_become_private() {
        let t = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let fresh = t.path().join("a/b/data");
        make_private(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);

        let old = t.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(old.join("state.db"), "").unwrap();
        std::fs::set_permissions(old.join("state.db"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        make_private(&old).unwrap();
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&old.join("state.db")), 0o600);
    }
}
