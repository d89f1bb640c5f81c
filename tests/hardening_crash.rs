//! Crash consistency: `kolla-oci build --all`, `build-file` and `push` are killed with SIGKILL at many
//! points — after fixed delays, and the moment the n-th temp file, blob, extracted layer, step-cache entry
//! or RUN directory appears. After each kill: no process of the run survives it (the sandbox helper and
//! the RUN command die with it), every blob holds exactly its digest's bytes, `kolla-oci fsck` passes,
//! and a re-run finishes with the digests of an uninterrupted run (`SOURCE_DATE_EPOCH` makes them
//! reproducible), leaving no stale temp file behind.

#[path = "support/hardening.rs"]
mod hardening;
#[path = "support/registry.rs"]
mod registry;

use std::path::Path;
use std::time::Duration;

use hardening::{Bench, KillPoint, assert_blobs_intact, assert_no_strays, list, run_bounded, run_killed};

const LIMIT: Duration = Duration::from_secs(120);

/// Kill points for a build on `state`: fixed delays, and the n-th entry created in each state directory.
fn kill_points(state: &Path) -> Vec<KillPoint> {
    let mut points: Vec<KillPoint> =
        [5, 40, 120, 250, 400, 600].into_iter().map(|ms| KillPoint::After(Duration::from_millis(ms))).collect();
    for (dir, nths) in [
        ("oci/.tmp", &[1, 2, 4, 7][..]),
        ("oci/blobs/sha256", &[1, 3, 6]),
        ("layers", &[1, 3]),
        ("cache", &[1, 4]),
        ("tmp", &[1, 2, 5]),
    ] {
        for &nth in nths {
            points.push(KillPoint::Created { dir: state.join(dir), nth });
        }
    }
    points
}

/// After a kill: nothing of the run is left running, the store is consistent on disk and by fsck.
fn check_after_kill(bench: &Bench, state: &str, what: &str) {
    assert_no_strays(&bench.marker, what);
    assert_blobs_intact(&bench.state(state).join("oci"));
    bench.fsck_ok(state);
}

/// After a completed re-run: the same digests as the reference, and no stale temp file in the store.
fn check_rerun(bench: &Bench, state: &str, reference: &std::collections::BTreeMap<String, String>, what: &str) {
    assert_eq!(&bench.tree_digests(state), reference, "{what}: re-run digests differ from an uninterrupted run");
    assert_blobs_intact(&bench.state(state).join("oci"));
    bench.fsck_ok(state);
    let root = bench.state(state);
    assert_eq!(list(&root.join("oci/.tmp")), Vec::<String>::new(), "{what}: stale temp files in the store");
    assert_eq!(list(&root.join("tmp")), Vec::<String>::new(), "{what}: stale run/stage directories in tmp/");
    let stale_cache: Vec<String> = list(&root.join("cache")).into_iter().filter(|n| !n.ends_with(".json")).collect();
    assert_eq!(stale_cache, Vec::<String>::new(), "{what}: stale temp files in the step cache");
}

#[test]
fn build_all_killed_at_many_points_recovers_with_identical_digests() {
    let bench = Bench::new();
    let args = bench.build_all_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reference = bench.clean_build_all("ref", &args, LIMIT);
    assert_eq!(reference.len(), 4, "{reference:?}");

    let mut killed = 0;
    for (i, point) in kill_points(&bench.state("kill-template")).into_iter().enumerate() {
        let name = format!("kill-{i}");
        let state = bench.fresh_state(&name);
        let point = match point {
            KillPoint::Created { dir, nth } => {
                KillPoint::Created { dir: state.join(dir.strip_prefix(bench.state("kill-template")).unwrap()), nth }
            }
            p => p,
        };
        let what = format!("build --all killed at {point:?}");
        let run = run_killed(&mut bench.kolla(&name, &args), Some(&point), LIMIT);
        if run.killed {
            killed += 1;
        } else {
            run.ok();
        }
        check_after_kill(&bench, &name, &what);
        run_bounded(&mut bench.kolla(&name, &args), LIMIT).ok();
        check_rerun(&bench, &name, &reference, &what);
        std::fs::remove_dir_all(&state).unwrap();
    }
    assert!(killed >= 12, "only {killed} runs were killed before they finished: the kill points are too late");
}

#[test]
fn repeated_kills_on_one_store_still_converge() {
    let bench = Bench::new();
    let args = bench.build_all_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reference = bench.clean_build_all("ref", &args, LIMIT);

    // Each run is killed a little later than the last, on the same store, without a clean run between;
    // every run resumes from what the killed ones left.
    bench.fresh_state("s");
    let mut killed = 0;
    for ms in [30u64, 60, 100, 150, 220, 300, 400, 520, 700, 1000] {
        let what = format!("run killed after {ms} ms");
        let run = run_killed(&mut bench.kolla("s", &args), Some(&KillPoint::After(Duration::from_millis(ms))), LIMIT);
        check_after_kill(&bench, "s", &what);
        if !run.killed {
            run.ok();
            break;
        }
        killed += 1;
    }
    assert!(killed >= 5, "only {killed} runs were killed before one finished");
    run_bounded(&mut bench.kolla("s", &args), LIMIT).ok();
    check_rerun(&bench, "s", &reference, "after repeated kills");
    // A further run builds nothing: everything the killed runs recorded is valid.
    let again = run_bounded(&mut bench.kolla("s", &args), LIMIT).ok();
    assert!(again.stderr.contains("layers built 0"), "{}", again.stderr);
}

#[test]
fn build_file_killed_during_run_steps_recovers() {
    let bench = Bench::new();
    let df = bench.ctx().join("Dockerfile.crash");
    std::fs::write(bench.ctx().join("data.bin"), hardening::noise(3, 2_000_000)).unwrap();
    std::fs::write(
        &df,
        format!(
            "FROM bb-base:1\nENV {}\nCOPY data.bin /data/a.bin\n\
             RUN busybox sleep 0.3 && busybox cp /data/a.bin /data/b.bin\n\
             RUN busybox sleep 0.3 && busybox rm /data/a.bin && echo done > /data/done\n",
            bench.marker
        ),
    )
    .unwrap();
    bench.fresh_state("ref");
    let reference = bench.build_file("ref", &df, "crash:1").ok().stdout.trim().to_owned();
    let args =
        ["build-file", "-f", df.to_str().unwrap(), bench.ctx().to_str().unwrap(), "-t", "crash:1"].map(String::from);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Kill while a RUN is in the sandbox: the helper, its PID 1 and `sleep` must die with kolla-oci.
    let points = [
        KillPoint::After(Duration::from_millis(150)),
        KillPoint::After(Duration::from_millis(500)),
        KillPoint::After(Duration::from_millis(900)),
        KillPoint::Created { dir: bench.state("STATE").join("tmp"), nth: 2 },
        KillPoint::Created { dir: bench.state("STATE").join("tmp"), nth: 3 },
        KillPoint::Created { dir: bench.state("STATE").join("oci/.tmp"), nth: 3 },
    ];
    let mut killed = 0;
    for (i, point) in points.into_iter().enumerate() {
        let name = format!("bf-{i}");
        let state = bench.fresh_state(&name);
        let point = match point {
            KillPoint::Created { dir, nth } => {
                KillPoint::Created { dir: state.join(dir.strip_prefix(bench.state("STATE")).unwrap()), nth }
            }
            p => p,
        };
        let what = format!("build-file killed at {point:?}");
        let run = run_killed(&mut bench.kolla(&name, &args), Some(&point), LIMIT);
        killed += usize::from(run.killed);
        check_after_kill(&bench, &name, &what);
        let again = run_bounded(&mut bench.kolla(&name, &args), LIMIT).ok();
        assert_eq!(again.stdout.trim(), reference, "{what}");
        let root = bench.state(&name);
        bench.fsck_ok(&name);
        assert_eq!(list(&root.join("oci/.tmp")), Vec::<String>::new(), "{what}: stale temp files in the store");
        assert_eq!(list(&root.join("tmp")), Vec::<String>::new(), "{what}: stale run/stage directories in tmp/");
    }
    assert!(killed >= 5, "only {killed} runs were killed before they finished");
}

#[test]
fn push_killed_mid_upload_then_repush_completes() {
    let bench = Bench::new();
    let args = bench.build_all_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let local = bench.clean_build_all("s", &args, LIMIT);
    let reg = registry::TestRegistry::start();
    let proxy = registry::Proxy::start(reg.port);
    // 2 MB/s through the proxy: the push takes seconds, so every kill lands in the middle of it.
    proxy.throttle_request_bodies(Some(2 << 20));
    let points = [
        KillPoint::After(Duration::from_millis(80)),
        KillPoint::After(Duration::from_millis(250)),
        KillPoint::After(Duration::from_millis(500)),
        KillPoint::After(Duration::from_millis(900)),
        KillPoint::After(Duration::from_millis(1400)),
    ];
    let mut partial = 0;
    for (i, point) in points.iter().enumerate() {
        let ns = format!("crash{i}");
        let addr = proxy.addr();
        let mut push = vec!["push", "--registry", &addr, "--namespace", &ns, "--push-threads", "2"];
        push.extend(local.keys().map(String::as_str));
        let what = format!("push killed at {point:?}");
        let before = std::fs::read(bench.state("s").join("oci/index.json")).unwrap();
        proxy.clear();
        let run = run_killed(&mut bench.kolla("s", &push), Some(point), LIMIT);
        assert!(run.killed, "{what}: the push finished before the kill: make the kill earlier\n{}", run.stdout);
        let manifests = proxy.events().iter().filter(|e| e.path.contains("/manifests/") && e.status == 201).count();
        partial += usize::from(manifests < local.len());
        assert_no_strays(&bench.marker, &what);
        assert_eq!(
            std::fs::read(bench.state("s").join("oci/index.json")).unwrap(),
            before,
            "{what}: push changed the index"
        );
        check_after_kill(&bench, "s", &what);
        // Re-push (full speed) completes; the registry serves exactly our manifests.
        proxy.throttle_request_bodies(None);
        let again = run_bounded(&mut bench.kolla("s", &push), LIMIT).ok();
        assert!(again.stdout.contains("pushed 4 image(s)"), "{what}: {}", again.stdout);
        for (tag, digest) in &local {
            let name = tag.strip_prefix("kolla/").unwrap();
            let remote = registry::skopeo_digest(&format!("{}/{ns}/{name}", reg.addr()), &[]);
            assert_eq!(&remote, digest, "{what}: {tag}");
        }
        proxy.throttle_request_bodies(Some(2 << 20));
    }
    // Every killed run was cut short: it had not put all four manifests.
    assert_eq!(partial, points.len(), "some killed pushes had already finished");
}
