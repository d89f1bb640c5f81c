//! Concurrency: several `kolla-oci` processes on one state directory at once — two `build-file` runs of
//! the same image, of different images sharing a base, two `build --all` runs of one tree, and `fsck` /
//! `images` while a build writes. Each must finish correctly with the digests a lone run gives, no tag may
//! be lost, and the store stays consistent.

#[path = "support/hardening.rs"]
mod hardening;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hardening::{Bench, Run, assert_blobs_intact, list, run_bounded, tag_digests};

const LIMIT: Duration = Duration::from_secs(120);
/// Rounds per pairing: races need a few tries to show.
const ROUNDS: usize = 3;

/// Run all `cmds` at the same time; every one must succeed.
fn together(cmds: Vec<Command>) -> Vec<Run> {
    let handles: Vec<_> =
        cmds.into_iter().map(|mut c| std::thread::spawn(move || run_bounded(&mut c, LIMIT))).collect();
    handles.into_iter().map(|h| h.join().unwrap().ok()).collect()
}

/// Two images from bb-base:1 that share nothing but the base; both RUNs take a while so they overlap.
fn write_dockerfiles(bench: &Bench) -> (PathBuf, PathBuf) {
    let ctx = bench.ctx();
    std::fs::write(ctx.join("shared.bin"), hardening::noise(11, 1_000_000)).unwrap();
    let a = ctx.join("Dockerfile.a");
    let b = ctx.join("Dockerfile.b");
    std::fs::write(
        &a,
        "FROM bb-base:1\nCOPY shared.bin /opt/shared.bin\nRUN busybox sleep 0.3 && busybox cp /opt/shared.bin /opt/a.bin\n",
    )
    .unwrap();
    std::fs::write(
        &b,
        "FROM bb-base:1\nCOPY shared.bin /opt/shared.bin\nRUN busybox sleep 0.3 && echo b > /opt/b.txt\nLABEL who=b\n",
    )
    .unwrap();
    (a, b)
}

fn build_file_cmd(bench: &Bench, state: &str, df: &Path, tag: &str) -> Command {
    let ctx = bench.ctx();
    bench.kolla(state, &["build-file", "-f", df.to_str().unwrap(), ctx.to_str().unwrap(), "-t", tag])
}

/// The store of `state` is consistent: fsck, blobs, no stale temp files.
fn consistent(bench: &Bench, state: &str) {
    bench.fsck_ok(state);
    assert_blobs_intact(&bench.state(state).join("oci"));
    assert_eq!(list(&bench.state(state).join("oci/.tmp")), Vec::<String>::new());
    assert_eq!(list(&bench.state(state).join("tmp")), Vec::<String>::new());
}

#[test]
fn two_build_files_of_the_same_image_at_once() {
    let bench = Bench::new();
    let (a, _) = write_dockerfiles(&bench);
    bench.fresh_state("ref");
    let reference = bench.build_file("ref", &a, "img:a").ok().stdout.trim().to_owned();
    for round in 0..ROUNDS {
        let state = format!("same-{round}");
        bench.fresh_state(&state);
        let runs =
            together(vec![build_file_cmd(&bench, &state, &a, "img:a"), build_file_cmd(&bench, &state, &a, "img:a")]);
        for r in &runs {
            assert_eq!(r.stdout.trim(), reference, "round {round}: {}", r.stderr);
        }
        assert_eq!(tag_digests(&bench.state(&state).join("oci"))["img:a"], reference);
        consistent(&bench, &state);
    }
}

#[test]
fn two_build_files_of_different_images_sharing_a_base_at_once() {
    let bench = Bench::new();
    let (a, b) = write_dockerfiles(&bench);
    bench.fresh_state("ref");
    let ref_a = bench.build_file("ref", &a, "img:a").ok().stdout.trim().to_owned();
    let ref_b = bench.build_file("ref", &b, "img:b").ok().stdout.trim().to_owned();
    for round in 0..ROUNDS {
        let state = format!("diff-{round}");
        bench.fresh_state(&state);
        let runs = together(vec![
            build_file_cmd(&bench, &state, &a, "img:a"),
            build_file_cmd(&bench, &state, &b, "img:b"),
            // A third writer on the index: tags must not be lost to a read-modify-write race.
            build_file_cmd(&bench, &state, &a, "img:a2"),
        ]);
        assert_eq!((runs[0].stdout.trim(), runs[1].stdout.trim()), (ref_a.as_str(), ref_b.as_str()), "round {round}");
        let tags = tag_digests(&bench.state(&state).join("oci"));
        assert_eq!(tags.get("img:a"), Some(&ref_a), "round {round}: {tags:?}");
        assert_eq!(tags.get("img:a2"), Some(&ref_a), "round {round}: {tags:?}");
        assert_eq!(tags.get("img:b"), Some(&ref_b), "round {round}: {tags:?}");
        assert!(tags.contains_key("bb-base:1"), "round {round}: {tags:?}");
        // The shared COPY layer is stored (and extracted) once.
        let layers = list(&bench.state(&state).join("layers"));
        let ref_layers = list(&bench.state("ref").join("layers"));
        assert_eq!(layers, ref_layers, "round {round}: the same extracted layers as one build after the other");
        consistent(&bench, &state);
    }
}

#[test]
fn two_build_all_runs_of_one_tree_at_once() {
    let bench = Bench::new();
    let args = bench.build_all_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reference = bench.clean_build_all("ref", &args, LIMIT);
    for round in 0..ROUNDS {
        let state = format!("all-{round}");
        bench.fresh_state(&state);
        let runs = together(vec![bench.kolla(&state, &args), bench.kolla(&state, &args)]);
        for r in &runs {
            assert!(r.stderr.contains("built 4, failed 0"), "round {round}: {}", r.stderr);
        }
        assert_eq!(bench.tree_digests(&state), reference, "round {round}");
        consistent(&bench, &state);
    }
}

#[test]
fn fsck_and_images_while_a_build_writes() {
    let bench = Bench::new();
    let args = bench.build_all_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let reference = bench.clean_build_all("ref", &args, LIMIT);
    bench.fresh_state("live");
    let mut build = bench.kolla("live", &args);
    let builder = std::thread::spawn(move || run_bounded(&mut build, LIMIT));
    // Readers never see a torn or inconsistent store, whatever the writer is doing.
    let start = Instant::now();
    let mut checks = 0;
    while !builder.is_finished() && start.elapsed() < LIMIT {
        let fsck = run_bounded(&mut bench.kolla("live", &["fsck"]), LIMIT);
        assert!(fsck.status.success(), "fsck during a build:\n{}\n{}", fsck.stdout, fsck.stderr);
        run_bounded(&mut bench.kolla("live", &["images"]), LIMIT).ok();
        checks += 1;
    }
    builder.join().unwrap().ok();
    assert!(checks >= 3, "only {checks} fsck runs overlapped the build");
    assert_eq!(bench.tree_digests("live"), reference);
    consistent(&bench, "live");
    assert_eq!(tag_digests(&bench.state("live").join("oci")).len(), 5, "bb-base and the four images");
}
