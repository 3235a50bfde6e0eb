//! Which of the environment's variables (`var set`) a release's containers started with:
//! each name with a digest of its value, never the value, so that the next deploy can say
//! which variables changed since the live release without showing any value.

use std::collections::BTreeMap;

use rusqlite::OptionalExtension;

use crate::{Result, State, StateError};

impl State {
    /// Record the variables release `release` starts with: name -> digest of the value
    /// (computed by the caller). Recording again replaces them.
    pub fn record_release_variables(
        &self,
        release: i64,
        digests: &BTreeMap<String, String>,
    ) -> Result<()> {
        let json = serde_json::to_string(digests)?;
        self.db().execute(
            "INSERT INTO release_variables(release, digests) VALUES (?1, ?2)
             ON CONFLICT(release) DO UPDATE SET digests = excluded.digests",
            rusqlite::params![release, json],
        )?;
        Ok(())
    }

    /// The variables release `release` started with (name -> digest), or None for a
    /// release recorded before they were kept. A record that does not decode is an error.
    pub fn release_variables(&self, release: i64) -> Result<Option<BTreeMap<String, String>>> {
        let json: Option<String> = self
            .db()
            .query_row(
                "SELECT digests FROM release_variables WHERE release = ?1",
                [release],
                |r| r.get(0),
            )
            .optional()?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| StateError::Invalid(format!("variables of release id {release}: {e}")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReleaseAuthor;

    #[test]
    fn a_release_keeps_its_variable_digests_and_a_bad_record_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let st = State::open(&dir.path().join("state.db")).expect("open");
        st.add_user_key("ann", "k", true).unwrap();
        st.create_project("demo", "ann").unwrap();
        st.ensure_environment("demo", "main", "main").unwrap();
        let r = st
            .create_release(
                "demo",
                "main",
                "abc",
                &serde_json::json!({}),
                &serde_json::json!({}),
                &ReleaseAuthor::user("ann"),
            )
            .unwrap();
        assert_eq!(st.release_variables(r.id).unwrap(), None);
        let digests: BTreeMap<String, String> = [("MODE".to_string(), "d1".to_string())].into();
        st.record_release_variables(r.id, &digests).unwrap();
        assert_eq!(st.release_variables(r.id).unwrap(), Some(digests));
        st.record_release_variables(r.id, &BTreeMap::new()).unwrap();
        assert_eq!(st.release_variables(r.id).unwrap(), Some(BTreeMap::new()));
        st.db()
            .execute("UPDATE release_variables SET digests = '[1]'", [])
            .unwrap();
        assert!(st.release_variables(r.id).is_err());
    }
}
