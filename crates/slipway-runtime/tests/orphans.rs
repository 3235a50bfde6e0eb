//! A subreaper (`slipway serve`) and the processes a killed `runc exec` (or one racing its
//! container's exit) leaves to it, under the real runc (needs root; never skips when
//! `CI=true`). A test binary of its own: it makes its whole process a child subreaper.

use std::path::Path;
use std::time::{Duration, Instant};

use slipway_runtime::{RootFs, RunAs, Runtime, Status};

/// The parent pid and state letter of process `pid`, from `/proc/PID/stat`.
fn parent_and_state(pid: u32) -> Option<(u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut rest = stat.get(stat.rfind(')')? + 1..)?.split_ascii_whitespace();
    let state = rest.next()?.to_string();
    Some((rest.next()?.parse().ok()?, state))
}

/// The pid of a `sleep 1000` whose parent is `parent`.
fn sleep_under(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            parent_and_state(*pid).is_some_and(|(p, _)| p == parent)
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c == b"sleep\x001000\x00")
        })
}

/// The zombie children of this process.
fn zombies() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent_and_state(*pid) == Some((std::process::id(), "Z".into())))
        .collect()
}

/// What the tests here run containers with: a runtime whose process is a child subreaper
/// (as `serve`'s), its data folder, the app folder and the containers' user.
struct Subreaper {
    data: tempfile::TempDir,
    app: tempfile::TempDir,
    rt: std::sync::Arc<Runtime>,
    run_as: RunAs,
}

fn subreaper() -> Subreaper {
    let data = tempfile::tempdir().unwrap();
    let app = tempfile::tempdir().unwrap();
    let rt = Runtime::new(Path::new("runc"), data.path()).unwrap();
    rt.collect_exits().unwrap();
    let run_as = RunAs::for_project("runtime-orphans");
    run_as.own_tree(app.path()).unwrap();
    Subreaper {
        data,
        app,
        rt: std::sync::Arc::new(rt),
        run_as,
    }
}

/// The tests of this file one at a time: each counts the zombies of the whole process.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A test's start: None (it is skipped) without root, else its turn and its subreaper.
async fn start() -> Option<(tokio::sync::MutexGuard<'static, ()>, Subreaper)> {
    if !slipway_runtime::testing::root() {
        return None;
    }
    Some((ONE_AT_A_TIME.lock().await, subreaper()))
}

#[tokio::test]
async fn a_process_a_killed_exec_left_behind_does_not_keep_its_container_running() {
    let Some((_one, s)) = start().await else {
        return;
    };
    let (data, app, rt, run_as) = (s.data, s.app, s.rt, s.run_as);
    // Ends by itself a while after the exec below started.
    let spec = slipway_runtime::testing::spec(
        RootFs::Host,
        "orphans",
        &["/bin/sh", "-c", "sleep 4"],
        app.path(),
        run_as,
    );
    let id = spec.id.clone();
    rt.start(&spec, &data.path().join("orphans.log"))
        .await
        .unwrap();

    // An exec whose runc is killed while its command runs: the command is given to this
    // process, the subreaper.
    let mut exec = std::process::Command::new("runc")
        .arg("--root")
        .arg(rt.state_root())
        .args(["exec", &id, "sleep", "1000"])
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let sleep = loop {
        if let Some(pid) = sleep_under(exec.id()) {
            break pid;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "the exec never ran");
        std::thread::sleep(Duration::from_millis(50));
    };
    exec.kill().unwrap();
    exec.wait().unwrap();
    let t0 = Instant::now();
    while parent_and_state(sleep).map(|(p, _)| p) != Some(std::process::id()) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the exec's command was not given to the subreaper: {:?}",
            parent_and_state(sleep)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The container's first process ends; the kernel kills the orphan with it, and the
    // container stops once the subreaper reaps what is left.
    let t0 = Instant::now();
    loop {
        rt.reap_exited();
        match rt.state(&id).await.unwrap() {
            Some(s) if s.status == Status::Stopped => break,
            None => break,
            Some(s) => assert!(
                t0.elapsed() < Duration::from_secs(20),
                "the container still runs: {s:?}; its orphan: {:?}",
                parent_and_state(sleep)
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(parent_and_state(sleep), None, "the orphan was not reaped");
    rt.remove(&id, Duration::from_secs(2)).await.unwrap();
    // Its first process too, which only this runtime knows (the other test has its own).
    rt.reap_exited();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn execs_racing_their_containers_exit_leave_no_container_running_and_no_zombie() {
    let Some((_one, s)) = start().await else {
        return;
    };
    let (data, app, rt, run_as) = (s.data, s.app, s.rt, s.run_as);
    // As `serve` does, once a second.
    let reaper = {
        let rt = rt.clone();
        tokio::spawn(async move {
            loop {
                rt.reap_exited();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    // A readiness check's `runc exec` racing a service that exits at start, ten times over:
    // runc sometimes dies before the command it started (or its own setup stage).
    for round in 0..10 {
        let spec = slipway_runtime::testing::spec(
            RootFs::Host,
            "racing",
            &["/bin/sh", "-c", "sleep 0.5"],
            app.path(),
            run_as,
        );
        rt.start(&spec, &data.path().join("racing.log"))
            .await
            .unwrap();
        let t0 = Instant::now();
        let execs: Vec<_> = (0..4)
            .map(|_| {
                let (rt, id) = (rt.clone(), spec.id.clone());
                tokio::spawn(async move {
                    while t0.elapsed() < Duration::from_millis(1500) {
                        let _ = rt
                            .exec(
                                &id,
                                &["/bin/true".into()],
                                &[],
                                "",
                                Duration::from_secs(5),
                                &mut |_| {},
                            )
                            .await;
                    }
                })
            })
            .collect();
        for e in execs {
            e.await.unwrap();
        }
        let t1 = Instant::now();
        loop {
            match rt.state(&spec.id).await.unwrap() {
                Some(s) if s.status == Status::Running => assert!(
                    t1.elapsed() < Duration::from_secs(5),
                    "round {round}: the container still runs 5 s after its process ended; \
                     zombies of this process: {:?}",
                    zombies()
                ),
                _ => break,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        rt.remove(&spec.id, Duration::from_secs(2)).await.unwrap();
    }
    // Nothing is left a zombie (each would hold a pid for the server's lifetime).
    let t0 = Instant::now();
    loop {
        rt.reap_exited();
        let left = zombies();
        if left.is_empty() {
            break;
        }
        let mut names = std::collections::BTreeMap::<String, usize>::new();
        for p in &left {
            let name = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            *names.entry(name.trim().to_string()).or_default() += 1;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "zombies left: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reaper.abort();
}
