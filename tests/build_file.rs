//! `kolla-oci build-file`: one Dockerfile with every supported instruction, built without Docker, checked
//! with umoci and skopeo; cache, reproducibility, rootless parity and clear errors.

mod support {
    pub mod busybox;
    pub mod cli;
    pub mod rootless;
}

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::cli::ok;

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");

/// The Dockerfile under test: every instruction the interpreter supports.
const DOCKERFILE: &str = r#"# escape=\
ARG BASE=bb-base:1
FROM ${BASE}
ARG GREETING=hello
ENV LANG=C.UTF-8 \
    KOLLA_HOME=/var/lib/kolla
LABEL org.example.name="test image" version=1
RUN /bin/busybox --install -s /bin \
    && echo "$GREETING" > /hello \
    && echo more >> /etc/passwd \
    && rm /etc/gone \
    && rm -rf /olddir && mkdir /olddir && echo new > /olddir/g \
    && mkdir -p $KOLLA_HOME && touch $KOLLA_HOME/owned && chown 42400:42400 $KOLLA_HOME/owned \
    && ln -s /hello /hello-link && ln /hello /hello-hard
COPY --chown=kolla:kolla --chmod=0640 Dockerfile.base /etc/kolla/base.txt
ADD files.tar.gz /opt/unpacked/
COPY <<EOF /etc/kolla/inline.conf
greeting=${GREETING}
EOF
WORKDIR /var/lib/kolla
USER kolla
EXPOSE 5000/tcp 80
VOLUME /var/log/kolla
HEALTHCHECK --interval=30s --retries=3 CMD ["/bin/true"]
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-c"]
MAINTAINER kolla-oci tests
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo hi"]
"#;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Fixture {
    /// A world-readable fixture (the rootless test runs as another user).
    fn new() -> Fixture {
        let (tmp, dir) = support::busybox::shared_context("kolla-oci-bf-");
        let ctx = dir.join("ctx");
        fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
        // An archive for ADD to extract.
        let src = dir.join("archive-src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/a.txt"), "from the archive\n").unwrap();
        let st = Command::new("tar")
            .arg("-czf")
            .arg(ctx.join("files.tar.gz"))
            .arg("-C")
            .arg(&src)
            .arg("sub")
            .status()
            .unwrap();
        assert!(st.success());
        Fixture { _tmp: tmp, dir }
    }

    fn ctx(&self) -> PathBuf {
        self.dir.join("ctx")
    }

    /// Run kolla-oci with a store under the fixture.
    fn kolla(&self, store: &str, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("KOLLA_OCI_STORE", self.dir.join(store))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap()
    }

    /// Build base + test image; returns the test image's manifest digest.
    fn build_all(&self, store: &str) -> String {
        let ctx = self.ctx();
        let ctx = ctx.to_str().unwrap();
        let base = format!("{ctx}/Dockerfile.base");
        ok(self.kolla(store, &["build-file", "-f", &base, ctx, "-t", "bb-base:1"]));
        let out = ok(self.kolla(store, &["build-file", ctx, "-t", "bb-test:1"]));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }
}

fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} is not runnable ({e}): install it (tests/setup.sh)"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_instruction_gives_the_expected_tree_and_config() {
    let f = Fixture::new();
    let digest = f.build_all("state");
    assert!(digest.starts_with("sha256:"), "{digest}");
    let layout = f.dir.join("state/oci");
    let image = format!("{}:bb-test:1", layout.display());

    // bb-base's layer is kept once, as its extracted dir (bb-test is built on it): `gc --max-extracted 0`
    // writes its blob back, verified, for other tools to read the layout.
    let gc = ok(f.kolla("state", &["gc", "--max-extracted", "0"]));
    assert!(
        String::from_utf8_lossy(&gc.stdout).contains("restored sha256:"),
        "{}",
        String::from_utf8_lossy(&gc.stdout)
    );
    // umoci checks every diff_id while unpacking.
    let bundle = f.dir.join("bundle");
    tool("umoci", &["unpack", "--image", &image, bundle.to_str().unwrap()]);
    let root = bundle.join("rootfs");
    assert_eq!(fs::read_to_string(root.join("hello")).unwrap(), "hello\n");
    assert!(!root.join("etc/gone").exists(), "a file deleted by RUN must be whited out");
    assert!(fs::read_to_string(root.join("etc/passwd")).unwrap().ends_with("more\n"), "modified file");
    let olddir: Vec<_> = fs::read_dir(root.join("olddir")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(olddir, vec!["g"], "a replaced directory must be opaque: the lower file f is gone");
    let owned = fs::metadata(root.join("var/lib/kolla/owned")).unwrap();
    assert_eq!((owned.uid(), owned.gid()), (42400, 42400));
    assert_eq!(fs::read_link(root.join("hello-link")).unwrap(), Path::new("/hello"));
    let (a, b) = (fs::metadata(root.join("hello")).unwrap(), fs::metadata(root.join("hello-hard")).unwrap());
    assert_eq!(a.ino(), b.ino(), "hardlink must survive");
    let copied = fs::metadata(root.join("etc/kolla/base.txt")).unwrap();
    assert_eq!((copied.uid(), copied.gid(), copied.mode() & 0o7777), (42400, 42400, 0o640));
    assert_eq!(fs::read_to_string(root.join("opt/unpacked/sub/a.txt")).unwrap(), "from the archive\n");
    assert_eq!(fs::read_to_string(root.join("etc/kolla/inline.conf")).unwrap(), "greeting=hello\n");
    assert!(root.join("bin/ls").exists(), "busybox --install links");
    for leaked in ["etc/resolv.conf", "etc/hosts", "etc/hostname", "proc/self", "dev/null"] {
        assert!(!root.join(leaked).exists(), "{leaked} must not be captured into a layer");
    }

    let raw = tool("skopeo", &["inspect", "--raw", "--config", &format!("oci:{image}")]);
    let cfg: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let c = &cfg["config"];
    assert_eq!(c["User"], "kolla");
    assert_eq!(c["WorkingDir"], "/var/lib/kolla");
    assert_eq!(c["Env"], serde_json::json!(["PATH=/bin", "LANG=C.UTF-8", "KOLLA_HOME=/var/lib/kolla"]));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(c["Cmd"], serde_json::json!(["echo hi"]));
    assert_eq!(c["Labels"], serde_json::json!({"org.example.name": "test image", "version": "1"}));
    assert_eq!(c["ExposedPorts"], serde_json::json!({"5000/tcp": {}, "80/tcp": {}}));
    assert_eq!(c["Volumes"], serde_json::json!({"/var/log/kolla": {}}));
    let hc = serde_json::json!({"Test": ["CMD", "/bin/true"], "Interval": 30_000_000_000u64, "Retries": 3});
    assert_eq!(c["Healthcheck"], hc);
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(cfg["author"], "kolla-oci tests");
    assert_eq!(cfg["created"], "2023-11-14T22:13:20Z");
    // base: COPY; test: RUN, COPY, ADD, COPY here-document → 5 layers.
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 5);
    let history = cfg["history"].as_array().unwrap();
    assert_eq!(history.iter().filter(|h| h["empty_layer"] != true).count(), 5);
    let inspect: serde_json::Value =
        serde_json::from_str(&tool("skopeo", &["inspect", &format!("oci:{image}")])).unwrap();
    assert_eq!(inspect["Digest"], digest);

    // Nothing changed: everything from the cache, same digest.
    let again = ok(f.kolla("state", &["build-file", f.ctx().to_str().unwrap(), "-t", "bb-test:1"]));
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), digest);
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(log.contains("layers_built=0"), "{log}");
    ok(f.kolla("state", &["fsck"]));
}

#[test]
fn two_builds_of_the_same_inputs_give_the_same_digest() {
    let f = Fixture::new();
    let a = f.build_all("state-a");
    let b = f.build_all("state-b");
    assert_eq!(a, b);
}

#[test]
fn failing_run_reports_command_code_and_output() {
    let f = Fixture::new();
    let ctx = f.ctx();
    let base = ctx.join("Dockerfile.base");
    ok(f.kolla("state", &["build-file", "-f", base.to_str().unwrap(), ctx.to_str().unwrap(), "-t", "bb-base:1"]));
    fs::write(ctx.join("Dockerfile.fail"), "FROM bb-base:1\nRUN echo first-line; echo about-to-fail >&2; exit 3\n")
        .unwrap();
    let df = ctx.join("Dockerfile.fail");
    let out = f.kolla("state", &["build-file", "-f", df.to_str().unwrap(), ctx.to_str().unwrap(), "-t", "x:1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Dockerfile.fail:2"), "{err}");
    assert!(err.contains("returned a non-zero code: 3"), "{err}");
    assert!(err.contains("about-to-fail"), "the output tail belongs in the error: {err}");
}

#[test]
fn bad_input_is_refused_with_file_and_line() {
    let f = Fixture::new();
    let ctx = f.ctx();
    let c = ctx.to_str().unwrap();
    let build = |name: &str, text: &str| {
        fs::write(ctx.join(name), text).unwrap();
        let out = f.kolla("state", &["build-file", "-f", ctx.join(name).to_str().unwrap(), c, "-t", "x:1"]);
        assert!(!out.status.success(), "{name} must fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = build("Df.unknown", "FROM scratch\nFROBNICATE now\n");
    assert!(err.contains("Df.unknown:2") && err.to_lowercase().contains("unknown instruction"), "{err}");
    fs::write(f.dir.join("secret"), "outside").unwrap();
    let err = build("Df.dotdot", "FROM scratch\nCOPY ../secret /\n");
    assert!(err.contains("Df.dotdot:2") && err.contains("outside the build context"), "{err}");
    symlink(f.dir.join("secret"), ctx.join("escape")).unwrap();
    let err = build("Df.link", "FROM scratch\nCOPY escape /\n");
    assert!(err.contains("Df.link:2") && err.contains("outside the build context"), "{err}");
    let err = build("Df.missing", "FROM scratch\nCOPY nothing-here /\n");
    assert!(err.contains("Df.missing:2"), "{err}");
}

/// Create (once) an unprivileged user with a subordinate id range, as a rootless CI runner has.
#[test]
fn rootless_build_gives_the_same_digest_as_root() {
    let f = Fixture::new();
    let as_root = f.build_all("state-root");
    let user = support::rootless::rootless_user();
    let subuid = fs::read_to_string("/etc/subuid").unwrap();
    let base: u32 =
        subuid.lines().find_map(|l| l.strip_prefix(&format!("{user}:"))?.split(':').next()?.parse().ok()).unwrap();
    // The binary must be reachable by the user: copy it next to the fixture.
    let bin = f.dir.join("kolla-oci");
    support::rootless::copy_binary(&bin);
    let state = f.dir.join("state-user");
    fs::create_dir(&state).unwrap();
    tool("chown", &[&format!("{user}:{user}"), state.to_str().unwrap()]);
    let ctx = f.ctx();
    let c = ctx.to_str().unwrap();
    let run = |args: &[&str]| {
        let vars = [format!("KOLLA_OCI_STORE={}", state.display()), "SOURCE_DATE_EPOCH=1700000000".into()];
        let out = support::rootless::as_user(user, &vars, &bin).args(args).current_dir(&f.dir).output().unwrap();
        assert!(out.status.success(), "rootless kolla-oci {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    run(&["build-file", "-f", &format!("{c}/Dockerfile.base"), c, "-t", "bb-base:1"]);
    let rootless = run(&["build-file", c, "-t", "bb-test:1"]);
    assert_eq!(rootless, as_root, "rootless and root builds must give the same image");
    // bb-test's own layers are kept as blobs: running it extracts them again, in the user's namespace.
    run(&["run", "bb-test:1"]);
    // Inside the user's namespace 42400 is 42400; on the host it is the subordinate id.
    let owned = walkdir::WalkDir::new(state.join("layers"))
        .into_iter()
        .filter_map(Result::ok)
        .find(|e| e.file_name() == "owned")
        .expect("the RUN layer dir holds the chowned file");
    assert_eq!(owned.metadata().unwrap().uid(), base + 42400 - 1);
}

#[test]
fn shebang_heredoc_runs_as_an_executable_file() {
    let f = Fixture::new();
    f.build_all("state");
    let ctx = f.ctx();
    let df = ctx.join("Dockerfile.heredoc");
    fs::write(
        &df,
        "FROM bb-test:1\nUSER root\nRUN <<EOT\n#!/bin/sh\necho \"from $0\" > /shebang.txt\nEOT\nRUN test ! -e /dev/pipes\n",
    )
    .unwrap();
    ok(f.kolla("state", &["build-file", "-f", df.to_str().unwrap(), ctx.to_str().unwrap(), "-t", "hd:1"]));
    let out = ok(f.kolla("state", &["run", "hd:1", "--entrypoint", "", "--", "/bin/cat", "/shebang.txt"]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from /dev/pipes/EOT\n");
}

/// `.dockerignore` as `docker build` applies it: ignored files are not in the layer, a `!` line takes
/// one back, changing an ignored file keeps the step cached, and `.containerignore` wins over it.
#[test]
fn dockerignore_leaves_files_out_of_the_layer_and_the_step_key() {
    let f = Fixture::new();
    let ctx = f.dir.join("ignore-ctx");
    fs::create_dir_all(ctx.join("docs")).unwrap();
    fs::create_dir_all(ctx.join("node_modules/pkg")).unwrap();
    for (name, text) in [
        ("secret.txt", "s3cret"),
        ("app.py", "print()"),
        ("docs/README.md", "read me"),
        ("docs/other.md", "not me"),
        ("node_modules/pkg/index.js", "js"),
        ("Dockerfile", "FROM scratch\nCOPY . /ctx/\n"),
        (".dockerignore", "# Docker's rules\nsecret.txt\n/docs\n!docs/README.md\nnode_modules/\n"),
    ] {
        fs::write(ctx.join(name), text).unwrap();
    }
    let c = ctx.to_str().unwrap();
    let build = || ok(f.kolla("state", &["build-file", c, "-t", "ignored:1"]));
    let first = build();
    let layout = f.dir.join("state/oci");
    let files = |tag: &str| {
        let bundle = f.dir.join(format!("bundle-{tag}"));
        let _ = fs::remove_dir_all(&bundle);
        tool("umoci", &["unpack", "--image", &format!("{}:{tag}", layout.display()), bundle.to_str().unwrap()]);
        let root = bundle.join("rootfs/ctx");
        let mut v: Vec<String> =
            walk(&root).iter().map(|p| p.strip_prefix(&root).unwrap().display().to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(files("ignored:1"), [".dockerignore", "Dockerfile", "app.py", "docs", "docs/README.md"]);

    // An ignored file's change does not touch the step; an included one's does.
    fs::write(ctx.join("secret.txt"), "rotated").unwrap();
    fs::write(ctx.join("node_modules/pkg/index.js"), "changed").unwrap();
    let again = build();
    assert_eq!(again.stdout, first.stdout, "same image");
    let log = String::from_utf8_lossy(&again.stderr);
    assert!(log.contains("layers_built=0"), "{log}");
    fs::write(ctx.join("docs/README.md"), "read me again").unwrap();
    let log = String::from_utf8_lossy(&build().stderr).into_owned();
    assert!(log.contains("layers_built=1"), "{log}");

    // COPY of an ignored file: not in the context, and the message says why.
    fs::write(ctx.join("Dockerfile.secret"), "FROM scratch\nCOPY secret.txt /\n").unwrap();
    let df = ctx.join("Dockerfile.secret");
    let out = f.kolla("state", &["build-file", "-f", df.to_str().unwrap(), c, "-t", "x:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("Dockerfile.secret:2") && err.contains(".dockerignore"), "{err}");

    // podman and buildah read .containerignore first.
    fs::write(ctx.join(".containerignore"), "app.py\n").unwrap();
    ok(f.kolla("state", &["build-file", c, "-t", "ignored:2"]));
    let v = files("ignored:2");
    assert!(!v.contains(&"app.py".to_string()) && v.contains(&"secret.txt".to_string()), "{v:?}");
}

/// Every path under `root`.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Without subordinate ids, a COPY --chown to an id the user namespace does not map says what to check (as
/// podman does); a store the user cannot write is named, with its cause said once.
#[test]
fn rootless_errors_name_the_subuid_files_and_the_store() {
    const USER: &str = "kolla-oci-nosubid";
    assert_eq!(rustix::process::geteuid().as_raw(), 0, "this test sets up its user as root (CI runs as root)");
    if !Command::new("id").arg(USER).output().unwrap().status.success() {
        let st = Command::new("useradd")
            .args(["-M", "-s", "/bin/sh", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", USER])
            .status()
            .unwrap();
        assert!(st.success() || Command::new("id").arg(USER).output().unwrap().status.success());
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let text = fs::read_to_string(file).unwrap_or_default();
        assert!(!text.lines().any(|l| l.starts_with(&format!("{USER}:"))), "{USER} must have no range in {file}");
    }
    let f = Fixture::new();
    let bin = f.dir.join("kolla-oci");
    fs::copy(BIN, &bin).unwrap();
    let ctx = f.dir.join("chown-ctx");
    fs::create_dir(&ctx).unwrap();
    fs::write(ctx.join("f"), "x").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY --chown=42400:42400 f /f\n").unwrap();
    let writable = f.dir.join("state-user");
    fs::create_dir(&writable).unwrap();
    tool("chown", &[USER, writable.to_str().unwrap()]);
    let read_only = f.dir.join("read-only");
    fs::create_dir(&read_only).unwrap();
    let run = |store: &Path| {
        let out = Command::new("runuser")
            .args(["-u", USER, "--", "env", &format!("KOLLA_OCI_STORE={}", store.display())])
            .arg(&bin)
            .args(["build-file", "-q", ctx.to_str().unwrap(), "-t", "x:1"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let err = run(&writable);
    assert!(err.contains("Dockerfile:2: chown") && err.contains("42400:42400"), "{err}");
    assert!(err.contains("insufficient UIDs or GIDs") && err.contains("/etc/subuid"), "{err}");
    let store = read_only.join("store");
    let err = run(&store);
    assert!(err.contains(&format!("opening the store {}", store.display())), "{err}");
    assert_eq!(err.matches("Permission denied").count(), 1, "the cause once: {err}");
}
