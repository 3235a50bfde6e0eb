//! Operator commands' refusals (spec section 7: exit 1 a user error, 2 bad usage): a
//! command that reads or stops what a server made refuses a data dir that does not exist,
//! naming it, and makes none (a typo in `--data-dir` must not say "ok"); an SSH address
//! that is not one is bad usage, as an HTTP one is.

use std::process::{Command, Output};

fn slipway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_slipway"))
        .args(args)
        .env_remove("SLIPWAY_DATA_DIR")
        .env_remove("SLIPWAY_RUNTIME")
        .output()
        .expect("running slipway")
}

#[test]
fn read_only_commands_refuse_a_missing_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("slipway-dta");
    let typo_arg = typo.to_str().unwrap();
    for command in [
        &["archive", "ls"][..],
        &["archive", "ls", "--json"],
        &["archive", "verify"],
        &["archive", "gc"],
        &["stack", "ls"],
        &["down"],
        &["user", "ls"],
        &["user", "rm", "bob"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--data-dir", typo_arg]);
        let o = slipway(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{command:?}: {err}");
        assert!(
            err.contains(&format!("no data dir at {typo_arg}")),
            "{command:?}: {err}"
        );
        assert!(!typo.exists(), "{command:?} made the data dir");
    }
}

#[test]
fn down_and_gc_take_the_runtime_serve_takes() {
    for command in [&["down"][..], &["archive", "gc"]] {
        let mut args = command.to_vec();
        args.push("--help");
        let o = slipway(&args);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{command:?}: {out}");
        assert!(
            out.contains("--runtime") && out.contains("SLIPWAY_RUNTIME"),
            "{command:?}: {out}"
        );
    }
}

#[test]
fn an_ssh_address_that_is_not_one_is_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = slipway(&[
        "serve",
        "--ssh-listen",
        "two-two-two-two",
        "--http-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--ssh-listen two-two-two-two"), "{err}");
}
