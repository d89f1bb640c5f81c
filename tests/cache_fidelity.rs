//! The step cache never hands back a layer that a fresh build would not make: for every mix of the
//! inputs that shape layer bytes without being part of the Dockerfile — the umask a context was checked
//! out (and kolla-oci runs) with, the compression, `SOURCE_DATE_EPOCH` — a build that meets the entries
//! of all the others, in its local cache and in a `--cache-repo`, gives the layers (compressed blobs
//! and diff_ids) of a `--nocache` build in a fresh store — and with `SOURCE_DATE_EPOCH`, the very image
//! digest. (Without it an image's `created` is when its newest layer was built, as kolla-build labels
//! it: a fresh build made later differs there, and only there.)

mod support {
    pub mod busybox;
    pub mod cli;
    pub mod registry;
}

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::cli::ok;
use support::registry::TestRegistry;

/// A COPY of the context and a RUN whose file time lies after the pinned epoch, so that clamping shows.
const DOCKERFILE: &str = "FROM scratch
COPY rootfs/ /
COPY app/ /app/
ENV PATH=/bin
RUN busybox sh -c 'cat /app/f > /app/out && busybox touch -t 203001010000 /app/out /app'
";

/// One mix of the inputs.
#[derive(Clone, Copy, Debug)]
struct Mix {
    umask: u32,
    compression: &'static str,
    epoch: Option<&'static str>,
}

/// A context as checked out under `umask`: the same names and bytes, modes as that umask leaves them.
fn context(dir: &Path, umask: u32) -> PathBuf {
    let ctx = dir.join(format!("ctx-{umask:03o}"));
    fs::create_dir_all(ctx.join("app/sub")).unwrap();
    support::busybox::write_busybox_context(&ctx);
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    fs::write(ctx.join("app/f"), "config\n").unwrap();
    fs::write(ctx.join("app/sub/g"), "more\n").unwrap();
    for entry in walkdir::WalkDir::new(&ctx).min_depth(1) {
        let entry = entry.unwrap();
        let ft = entry.file_type();
        if ft.is_symlink() {
            continue;
        }
        let full = if ft.is_dir() || entry.path().ends_with("bin/busybox") { 0o777 } else { 0o666 };
        fs::set_permissions(entry.path(), fs::Permissions::from_mode(full & !umask)).unwrap();
    }
    ctx
}

/// What a build made: the image digest, and its layers (compressed digest, diff_id).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Made {
    image: String,
    layers: Vec<(String, String)>,
}

impl Made {
    /// What must be the same as a fresh build's: everything with an epoch, else the layers.
    fn comparable(&self, mix: Mix) -> Made {
        if mix.epoch.is_some() { self.clone() } else { Made { image: String::new(), ..self.clone() } }
    }
}

/// A JSON document of the store's layout, by digest.
fn blob(store: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    serde_json::from_slice(&fs::read(store.join("oci/blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// `build-file` of `mix` into `store`; what it made.
fn build(store: &Path, ctx: &Path, mix: Mix, extra: &[&str]) -> Made {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kolla-oci"));
    cmd.arg("--store").arg(store);
    cmd.args(["build-file", "-t", "app:1", "--no-attestations", "--compression", mix.compression]);
    cmd.args(extra).arg(ctx).env("HOME", store).env("DOCKER_CONFIG", store).env_remove("KOLLA_OCI_LOG");
    match mix.epoch {
        Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
        None => cmd.env_remove("SOURCE_DATE_EPOCH"),
    };
    let umask = mix.umask;
    // SAFETY: umask(2) only, between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(umask);
            Ok(())
        })
    };
    let image = String::from_utf8(ok(cmd.output().unwrap()).stdout).unwrap().trim().to_owned();
    let manifest = blob(store, &image);
    let config = blob(store, manifest["config"]["digest"].as_str().unwrap());
    let digests = manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_owned());
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_owned());
    Made { image, layers: digests.zip(diff_ids).collect() }
}

#[test]
fn a_cache_hit_is_the_layer_a_fresh_build_makes() {
    let reg = TestRegistry::start();
    let cache = format!("{}/ci/fidelity", reg.addr());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut mixes = Vec::new();
    for umask in [0o022, 0o000] {
        for compression in ["gzip", "zstd"] {
            for epoch in [None, Some("1700000000")] {
                mixes.push(Mix { umask, compression, epoch });
            }
        }
    }
    // Made once: a context's mtimes are part of its COPY layers when no epoch clamps them.
    let contexts = [(0o022, context(dir, 0o022)), (0o000, context(dir, 0o000))];
    let ctx_of = |mix: Mix| contexts.iter().find(|(u, _)| *u == mix.umask).map(|(_, c)| c.clone()).unwrap();
    let shared = dir.join("shared");
    let mut seen = Vec::new();
    for (i, &mix) in mixes.iter().enumerate() {
        let ctx = ctx_of(mix);
        let fresh = build(&dir.join(format!("fresh-{i}")), &ctx, mix, &["--no-cache"]).comparable(mix);
        // Meets the local and remote entries of every mix built before it.
        let cached = build(&shared, &ctx, mix, &["--cache-repo", &cache]);
        assert_eq!(cached.comparable(mix), fresh, "{mix:?}: a cached build differs from a fresh one");
        // Takes every step it can from the registry alone.
        let remote = build(&dir.join(format!("remote-{i}")), &ctx, mix, &["--cache-repo", &cache]);
        assert_eq!(remote.comparable(mix), fresh, "{mix:?}: a build from --cache-repo differs from a fresh one");
        seen.push(cached);
    }
    let mut distinct: Vec<_> = seen.iter().map(|m| &m.layers).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), mixes.len(), "every mix makes layers of its own: {seen:?}");
    // Once more, every step now in the local cache: the very same images.
    for (&mix, want) in mixes.iter().zip(&seen) {
        assert_eq!(&build(&shared, &ctx_of(mix), mix, &[]), want, "{mix:?}: second pass");
    }
}
