use super::*;

fn open() -> (tempfile::TempDir, State) {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = State::open(&dir.path().join("state.db")).expect("open");
    (dir, st)
}

#[test]
fn users_keys_and_roles() {
    let (_d, st) = open();
    st.add_user_key("ann", "ssh-ed25519 AAAA1", true).unwrap();
    st.add_user_key("bob", "ssh-ed25519 AAAA2", false).unwrap();
    // A key belongs to one user only.
    assert!(matches!(
        st.add_user_key("bob", "ssh-ed25519 AAAA1", false),
        Err(StateError::Conflict(_))
    ));
    let ann = st.user_by_key("ssh-ed25519 AAAA1").unwrap().unwrap();
    let bob = st.user_by_key("ssh-ed25519 AAAA2").unwrap().unwrap();
    assert!(ann.admin && !bob.admin);
    assert!(st.user_by_key("ssh-ed25519 nope").unwrap().is_none());

    st.create_project("demo", "bob").unwrap();
    assert_eq!(st.role("demo", &bob).unwrap(), Some(Role::Admin));
    assert_eq!(
        st.role("demo", &ann).unwrap(),
        Some(Role::Admin),
        "server admin"
    );
    st.add_user_key("cid", "ssh-ed25519 AAAA3", false).unwrap();
    let cid = st.user("cid").unwrap().unwrap();
    assert_eq!(st.role("demo", &cid).unwrap(), None);
    st.grant("demo", "cid", Role::Viewer).unwrap();
    assert_eq!(st.role("demo", &cid).unwrap(), Some(Role::Viewer));
    st.revoke("demo", "cid").unwrap();
    assert_eq!(st.role("demo", &cid).unwrap(), None);
    st.remove_user("cid").unwrap();
    assert!(st.user_by_key("ssh-ed25519 AAAA3").unwrap().is_none());
}

#[test]
fn releases_go_live_one_at_a_time() {
    let (_d, st) = open();
    st.add_user_key("ann", "k", true).unwrap();
    st.create_project("demo", "ann").unwrap();
    st.ensure_environment("demo", "main", "main").unwrap();
    let v = serde_json::json!({});
    let ann = ReleaseAuthor::user("ann");
    let r1 = st
        .create_release("demo", "main", "aaa", &v, &v, &ann)
        .unwrap();
    let r2 = st
        .create_release("demo", "main", "bbb", &v, &v, &ReleaseAuthor::Server)
        .unwrap();
    assert_eq!((r1.number, r2.number), (1, 2));
    assert_eq!((&r1.author, &r2.author), (&ann, &ReleaseAuthor::Server));
    st.make_live(&r1).unwrap();
    st.make_live(&r2).unwrap();
    let env = st.environment("demo", "main").unwrap().unwrap();
    assert_eq!(env.current_release, Some(r2.id));
    assert_eq!(st.release(r1.id).unwrap().unwrap().status, "retired");
    assert_eq!(st.live_releases().unwrap().len(), 1);
    st.deactivate_environment("demo", "main").unwrap();
    assert!(st.live_releases().unwrap().is_empty());
    assert_eq!(
        st.environment("demo", "main")
            .unwrap()
            .unwrap()
            .current_release,
        None
    );
    st.make_live(&r2).unwrap();
    assert_eq!(st.releases("demo", "main").unwrap()[0].number, 2);
}

#[test]
fn activity_log_and_interrupted() {
    let (_d, st) = open();
    let id = st
        .start_activity("demo", Some("main"), "push", Some("ann"), "push main")
        .unwrap();
    st.append_log(id, "line 1\n").unwrap();
    st.append_log(id, "line 2\n").unwrap();
    assert_eq!(st.abort_running_activities().unwrap(), 1);
    let (a, log) = st.activity(id).unwrap().unwrap();
    assert_eq!(log, "line 1\nline 2\n");
    assert_eq!(a.status, "failure");
}

#[test]
fn reopen_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("state.db");
    State::open(&p)
        .unwrap()
        .add_user_key("ann", "k", true)
        .unwrap();
    let st = State::open(&p).unwrap();
    assert!(st.user("ann").unwrap().is_some());
}

#[test]
fn variables_per_environment() {
    let (_d, st) = open();
    st.add_user_key("ann", "k", true).unwrap();
    st.create_project("demo", "ann").unwrap();
    st.set_variable("demo", "main", "A", "1").unwrap();
    st.set_variable("demo", "main", "A", "2").unwrap();
    st.set_variable("demo", "dev", "B", "x").unwrap();
    assert_eq!(
        st.variables("demo", "main").unwrap(),
        vec![("A".to_string(), "2".to_string())]
    );
    assert!(st.unset_variable("demo", "main", "A").unwrap());
    assert!(!st.unset_variable("demo", "main", "A").unwrap());
    assert!(st.variables("demo", "main").unwrap().is_empty());
}

#[test]
fn activity_logs_of_older_databases_read_back_whole() {
    let (_d, st) = open();
    let id = st
        .start_activity("demo", None, "push", None, "push")
        .unwrap();
    // What a database from before the activity_lines table holds.
    st.db()
        .execute(
            "UPDATE activity SET log = 'old 1\nold 2\n' WHERE id = ?1",
            [id],
        )
        .unwrap();
    st.append_log(id, "new 3\n").unwrap();
    let (_, log) = st.activity(id).unwrap().unwrap();
    assert_eq!(log, "old 1\nold 2\nnew 3\n");
    assert!(st.activity(id + 1).unwrap().is_none());
}

#[test]
fn releases_recorded_before_authors_read_as_unknown_and_a_bad_author_is_an_error() {
    let (_d, st) = open();
    st.add_user_key("ann", "k", true).unwrap();
    st.create_project("demo", "ann").unwrap();
    st.ensure_environment("demo", "main", "main").unwrap();
    let v = serde_json::json!({});
    let r = st
        .create_release("demo", "main", "aaa", &v, &v, &ReleaseAuthor::user("ann"))
        .unwrap();
    // As a release of a database from before the migration: no author.
    st.db()
        .execute("UPDATE releases SET author = NULL WHERE id = ?1", [r.id])
        .unwrap();
    assert_eq!(
        st.release(r.id).unwrap().unwrap().author,
        ReleaseAuthor::Unknown
    );
    // The column refuses what is neither a user nor the server...
    assert!(st
        .db()
        .execute("UPDATE releases SET author = 'ann' WHERE id = ?1", [r.id])
        .is_err());
    // ...and a value that slipped past it is an error on reading, not a default.
    st.db()
        .execute_batch("PRAGMA ignore_check_constraints = ON")
        .unwrap();
    st.db()
        .execute("UPDATE releases SET author = 'ann' WHERE id = ?1", [r.id])
        .unwrap();
    assert!(st.release(r.id).is_err());
}
