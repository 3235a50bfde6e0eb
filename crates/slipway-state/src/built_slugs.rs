//! Slugs remembered under their build key, per project (issue 12: no project reuses
//! another's slug). Each record also says which environment's build made the slug and
//! whether a build cache fed that build: such a slug is only as trustworthy as the
//! environment whose caches fed it, and the build layer decides where it may be reused.

use rusqlite::params;

use crate::{now, Result, State};

/// A slug a build of a project made, under its build key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltSlug {
    /// The project whose build made it.
    pub project: String,
    /// The build key it was built under.
    pub build_key: String,
    /// The environment whose build made it.
    pub environment: String,
    /// Whether a build cache (the persistent `/cache` or a `build.caches` entry) held
    /// something when the build started, so that the slug may depend on more than its key.
    pub cache_fed: bool,
    /// The slug, as the build layer encodes it.
    pub slug: String,
}

impl State {
    /// Every slug the project built under `build_key` (at most one per environment), the
    /// newest first.
    pub fn built_slugs(&self, project: &str, build_key: &str) -> Result<Vec<BuiltSlug>> {
        let db = self.db();
        let mut st = db.prepare(
            "SELECT project, build_key, environment, cache_fed, slug FROM built_slugs
             WHERE project = ?1 AND build_key = ?2 ORDER BY created_at DESC, environment",
        )?;
        let rows = st.query_map([project, build_key], |r| {
            Ok(BuiltSlug {
                project: r.get(0)?,
                build_key: r.get(1)?,
                environment: r.get(2)?,
                cache_fed: r.get(3)?,
                slug: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remember a slug a build made (replacing what the same environment built under
    /// the same key before).
    pub fn record_built_slug(&self, built: &BuiltSlug) -> Result<()> {
        self.db().execute(
            "INSERT INTO built_slugs(project, build_key, environment, cache_fed, slug, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(project, build_key, environment) DO UPDATE SET
                 cache_fed = excluded.cache_fed, slug = excluded.slug,
                 created_at = excluded.created_at",
            params![
                built.project,
                built.build_key,
                built.environment,
                built.cache_fed,
                built.slug,
                now()
            ],
        )?;
        Ok(())
    }

    /// Forget a slug (it is gone from the archive or unreadable).
    pub fn forget_built_slug(&self, built: &BuiltSlug) -> Result<()> {
        self.db().execute(
            "DELETE FROM built_slugs WHERE project = ?1 AND build_key = ?2 AND environment = ?3",
            params![built.project, built.build_key, built.environment],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_kept_per_project_and_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = State::open(&dir.path().join("state.db")).expect("open");
        st.add_user_key("ann", "ssh-ed25519 AAAA1", true).unwrap();
        st.create_project("a", "ann").unwrap();
        st.create_project("b", "ann").unwrap();
        let built = |project: &str, env: &str, cache_fed: bool, slug: &str| BuiltSlug {
            project: project.into(),
            build_key: "sha256:k".into(),
            environment: env.into(),
            cache_fed,
            slug: slug.into(),
        };
        st.record_built_slug(&built("a", "main", true, "s1"))
            .unwrap();
        assert_eq!(
            st.built_slugs("a", "sha256:k").unwrap(),
            vec![built("a", "main", true, "s1")]
        );
        assert!(
            st.built_slugs("b", "sha256:k").unwrap().is_empty(),
            "another project's slug"
        );
        assert!(st.built_slugs("a", "sha256:other").unwrap().is_empty());
        // Per environment; the same environment replaces its record.
        st.record_built_slug(&built("a", "dev", false, "s2"))
            .unwrap();
        st.record_built_slug(&built("a", "main", false, "s3"))
            .unwrap();
        let mut all = st.built_slugs("a", "sha256:k").unwrap();
        all.sort_by(|x, y| x.environment.cmp(&y.environment));
        assert_eq!(
            all,
            vec![
                built("a", "dev", false, "s2"),
                built("a", "main", false, "s3")
            ]
        );
        st.forget_built_slug(&built("a", "dev", false, "s2"))
            .unwrap();
        assert_eq!(
            st.built_slugs("a", "sha256:k").unwrap(),
            vec![built("a", "main", false, "s3")]
        );
        // A project that does not exist cannot own a slug.
        assert!(st
            .record_built_slug(&built("nope", "main", false, "s4"))
            .is_err());
    }

    #[test]
    fn a_record_with_a_bad_flag_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = State::open(&dir.path().join("state.db")).expect("open");
        st.add_user_key("ann", "ssh-ed25519 AAAA1", true).unwrap();
        st.create_project("a", "ann").unwrap();
        // The CHECK constraint refuses anything but 0 and 1.
        let bad = st.db().execute(
            "INSERT INTO built_slugs VALUES ('a', 'k', 'main', 2, 's', 0)",
            [],
        );
        assert!(bad.is_err());
    }
    #[test]
    fn the_migration_keeps_the_slugs_of_existing_releases_in_their_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            // A database as it was before this migration, with a release and its build.
            let conn = rusqlite::Connection::open(&path).unwrap();
            for sql in &crate::schema::MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            conn.execute_batch(
                r#"
INSERT INTO projects VALUES ('a', 0);
INSERT INTO environments VALUES ('a', 'main', 'main', NULL);
INSERT INTO releases(project, environment, number, commit_id, status, spec, topology, created_at)
    VALUES ('a', 'main', 1, 'c', 'live', '{"apps":[{"build_key":"sha256:old"}]}', '{}', 0),
           ('a', 'main', 2, 'c', 'failed', 'not json', '{}', 0);
INSERT INTO builds VALUES ('sha256:old', 'slug-old', 5), ('sha256:orphan', 'slug-x', 5);
"#,
            )
            .unwrap();
        }
        let st = State::open(&path).expect("migrating");
        assert_eq!(
            st.built_slugs("a", "sha256:old").unwrap(),
            vec![BuiltSlug {
                project: "a".into(),
                build_key: "sha256:old".into(),
                environment: "main".into(),
                cache_fed: true,
                slug: "slug-old".into(),
            }]
        );
        assert!(st.built_slugs("a", "sha256:orphan").unwrap().is_empty());
    }
}
