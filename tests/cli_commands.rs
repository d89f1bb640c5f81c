//! The command line as docker and podman users know it: `run IMAGE [CMD…]` with its everyday options and
//! a pull of a missing image; `tag`, `rmi` (then `gc`), `inspect`, `history`, `images` filters; and the
//! console of `build` — RUN output once, prefixed with the image, a failure naming the template, `-q`,
//! and a selection that matches nothing.

mod support {
    pub mod busybox;
    pub mod cli;
    pub mod registry;
}

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use support::cli::ok;

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");

struct Bench {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Bench {
    /// An empty store.
    fn empty() -> Bench {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        Bench { _tmp: tmp, dir }
    }

    /// A store holding `bb:1` (busybox, `FROM scratch`).
    fn new() -> Bench {
        let b = Bench::empty();
        support::busybox::write_busybox_context(&b.dir.join("bb"));
        let bb = b.dir.join("bb");
        let df = bb.join("Dockerfile.base");
        ok(b.kolla(&["build-file", "-q", "-f", df.to_str().unwrap(), bb.to_str().unwrap(), "-t", "bb:1"]));
        b
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("KOLLA_OCI_STORE", self.dir.join("state"))
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env("HOME", &self.dir)
            .env("REGISTRY_AUTH_FILE", self.dir.join("auth.json"))
            .env_remove("KOLLA_OCI_LOG")
            .env_remove("RUST_LOG");
        cmd
    }

    fn kolla(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn stdout(&self, args: &[&str]) -> String {
        String::from_utf8(ok(self.kolla(args)).stdout).unwrap()
    }

    /// Build `text` as a Dockerfile in its own context holding `files`; the image's digest.
    fn build(&self, tag: &str, text: &str, files: &[(&str, &str)]) -> String {
        let ctx = self.dir.join(format!("ctx-{}", tag.replace([':', '/'], "-")));
        fs::create_dir_all(&ctx).unwrap();
        fs::write(ctx.join("Dockerfile"), text).unwrap();
        for (name, content) in files {
            fs::write(ctx.join(name), content).unwrap();
        }
        self.stdout(&["build-file", "-q", ctx.to_str().unwrap(), "-t", tag]).trim().to_owned()
    }
}

/// `run IMAGE CMD…` without `--`, and with it; `-w`, `--entrypoint` (a JSON array too), `--user`, `-e VAR`
/// taking the host's value, `--rm`; a name without a tag means `:latest`.
#[test]
fn run_takes_podmans_shape() {
    let b = Bench::new();
    let app = "FROM bb:1\nRUN /bin/busybox --install -s /bin\nWORKDIR /srv\nENV GREETING=image\nCMD [\"echo\", \"default\"]\n";
    b.build("app", app, &[]);
    assert_eq!(b.stdout(&["run", "app"]), "default\n", "the image's CMD, `app` meaning app:latest");
    assert_eq!(b.stdout(&["run", "--rm", "app", "sh", "-c", "echo $GREETING in $(pwd)"]), "image in /srv\n");
    assert_eq!(b.stdout(&["run", "app:latest", "--", "sh", "-c", "echo dashes"]), "dashes\n");
    let out = b
        .cmd(&["run", "-e", "FROM_HOST", "-e", "UNSET_HERE", "-w", "/tmp", "--user", "42400:42400", "app"])
        .args(["sh", "-c", "echo $FROM_HOST ${UNSET_HERE-unset} $(pwd) $(id -u):$(id -g)"])
        .env("FROM_HOST", "host-value")
        .env_remove("UNSET_HERE")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(ok(out).stdout).unwrap(), "host-value unset /tmp 42400:42400\n");
    assert_eq!(
        b.stdout(&["run", "--entrypoint", r#"["/bin/sh","-c"]"#, "app", "echo from entrypoint"]),
        "from entrypoint\n"
    );
    assert_eq!(b.stdout(&["run", "--entrypoint", "/bin/echo", "app", "plain"]), "plain\n");
    // The command's exit code is `run`'s.
    assert_eq!(b.kolla(&["run", "app", "sh", "-c", "exit 7"]).status.code(), Some(7));
    // Not in the store and `--pull never`: named with the store.
    let out = b.kolla(&["run", "--pull", "never", "nothere"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nothere") && err.contains("not known in the store"), "{err}");
}

/// `run` of an image the store does not have pulls it first, as podman does.
#[test]
fn run_pulls_a_missing_image() {
    let b = Bench::new();
    let digest = b.build("hello:1", "FROM bb:1\nCMD [\"sh\", \"-c\", \"echo pulled and run\"]\n", &[]);
    let reg = support::registry::TestRegistry::start();
    ok(b.kolla(&["push", "hello:1", "--registry", &reg.addr(), "--namespace", "demo", "--no-attestations"]));
    let other = Bench::empty();
    let image = format!("{}/demo/hello:1", reg.addr());
    assert_eq!(other.stdout(&["run", &image]), "pulled and run\n");
    let inspect: Value = serde_json::from_str(&other.stdout(&["inspect", &image])).unwrap();
    assert_eq!(inspect[0]["Digest"], digest);
    // Now it is there: no second pull (the registry may be gone).
    drop(reg);
    assert_eq!(other.stdout(&["run", &image]), "pulled and run\n");
}

/// `tag` gives names, `rmi` takes them away, and `gc` then frees the blobs only that image had; `inspect`
/// prints the config JSON, `history` the steps, `images` filters and lists digests.
#[test]
fn tag_rmi_gc_inspect_history_images() {
    let b = Bench::new();
    let digest = b.build(
        "app:1",
        "FROM bb:1\nLABEL org.example.role=web\nCOPY unique.txt /unique.txt\nUSER 42400\n",
        &[("unique.txt", "only this image has this layer\n")],
    );
    ok(b.kolla(&["tag", "app:1", "app", "registry.example/team/app:2"]));
    let names = b.stdout(&["images", "--filter", "reference=app*"]);
    assert!(names.contains("app:1") && names.contains("app:latest") && !names.contains("bb:1"), "{names}");
    let team = b.stdout(&["images", "--filter", "reference=registry.example/*/*", "-q"]);
    assert_eq!(team.trim(), &digest["sha256:".len()..][..12]);
    let labelled = b.stdout(&["images", "--filter", "label=org.example.role=web", "--format", "json"]);
    let labelled: Value = serde_json::from_str(&labelled).unwrap();
    assert_eq!(labelled.as_array().unwrap().len(), 1, "{labelled}");
    assert_eq!(labelled[0]["Digest"], digest);
    assert_eq!(labelled[0]["Names"], serde_json::json!(["app:1", "app:latest", "registry.example/team/app:2"]));

    let inspect: Value = serde_json::from_str(&b.stdout(&["inspect", "app"])).unwrap();
    let doc = &inspect[0];
    assert_eq!(doc["Digest"], digest);
    assert_eq!(doc["Config"]["User"], "42400");
    assert_eq!(doc["Config"]["Env"], serde_json::json!(["PATH=/bin"]));
    assert_eq!(doc["Labels"]["org.example.role"], "web");
    assert_eq!(doc["RootFS"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        b.stdout(&["inspect", "--format", "{{.Config.User}} {{.Digest}}", "app:1"]).trim(),
        format!("42400 {digest}")
    );
    let history = b.stdout(&["history", "app:1"]);
    let steps: Vec<&str> = history.lines().skip(1).collect();
    assert_eq!(steps.len(), 5, "{history}");
    assert!(steps[0].contains("USER 42400") && steps[1].contains("COPY unique.txt /unique.txt"), "{history}");

    // Remove every name of app: its unique layer goes with gc, busybox's stays.
    let layout = b.dir.join("state/oci/blobs/sha256");
    let unique = doc["Layers"][1].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let shared = doc["Layers"][0].as_str().unwrap().trim_start_matches("sha256:").to_owned();
    let out = b.stdout(&["rmi", "app:1", "app", "registry.example/team/app:2"]);
    assert_eq!(out, "Untagged: app:1\nUntagged: app:latest\nUntagged: registry.example/team/app:2\n");
    assert!(layout.join(&unique).exists(), "rmi only untags");
    let missing = b.kolla(&["rmi", "app:1"]);
    assert_eq!(missing.status.code(), Some(1));
    ok(b.kolla(&["gc", "--grace", "0"]));
    assert!(!layout.join(&unique).exists(), "gc must free the layer only the removed image had");
    assert!(layout.join(&shared).exists(), "the base layer is still used by bb:1");
    assert!(!b.stdout(&["images"]).contains("app"));
}

/// A tree whose `svc` image fails in a RUN: the console shows the RUN's output once, each line prefixed
/// with the image, and the error names the template and its line; the rendered Dockerfile is kept in
/// `--logs-dir`. `-q` shows no output and no INFO lines, and the error then carries the output's tail.
#[test]
fn failed_run_in_build_names_the_template_and_shows_its_output_once() {
    let b = Bench::new();
    let tree = b.dir.join("tree");
    for (dir, text) in [
        ("base", "FROM bb:1\nRUN echo base-ok > /base\n"),
        // Rendered, the failing RUN is on line 3; in the template, on line 4.
        (
            "svc",
            "FROM {{ namespace }}/{{ image_prefix }}base:{{ tag }}\n{# a comment\nover two lines #}RUN echo first-line\nRUN echo broken-output; exit 4\n",
        ),
    ] {
        fs::create_dir_all(tree.join(dir)).unwrap();
        fs::write(tree.join(dir).join("Dockerfile.j2"), text).unwrap();
    }
    let logs = b.dir.join("logs");
    let t = tree.to_str().unwrap();
    // One attempt (kolla's default --retries 3 shows a failing image's output once per attempt).
    let common = ["build", "--template-tree", t, "--tag", "t", "--no-attestations", "--threads", "1", "--retries", "0"];
    let out = b.kolla(&[&common[..], &["--logs-dir", logs.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // Its STEP line, its output (once), the error naming it.
    assert_eq!(err.matches("broken-output").count(), 3, "{err}");
    assert!(err.contains("svc | broken-output") && err.contains("svc | STEP 3/3: RUN echo broken-output"), "{err}");
    assert!(err.contains("base | STEP 2/2: RUN echo base-ok > /base"), "{err}");
    let template = tree.join("svc/Dockerfile.j2");
    let line = err.lines().find(|l| l.contains("ERROR")).unwrap_or_default();
    assert!(line.contains(&format!("svc failed: {}:4: `RUN echo broken-output; exit 4`", template.display())), "{err}");
    let kept = logs.join("svc.Dockerfile");
    assert!(line.contains(&format!("line 3 of the rendered {}", kept.display())), "{err}");
    assert!(fs::read_to_string(&kept).unwrap().lines().nth(2).unwrap().contains("broken-output"));
    assert!(!line.contains("image=") && !err.contains("/tmp/kolla-"), "{err}");
    assert!(fs::read_to_string(logs.join("svc.log")).unwrap().contains("broken-output"));

    // -q: no image output, no INFO; the error brings the output's last lines itself.
    let out = b.kolla(&[&common[..], &["-q"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains(" INFO ") && !err.contains("svc |"), "{err}");
    assert!(err.contains("--- last lines of its output ---\nbroken-output"), "{err}");
    assert!(err.contains("line 3 of the rendered Dockerfile; --logs-dir keeps it"), "{err}");

    // A selection that matches nothing (a typo) warns and fails, rather than building nothing.
    let out = b.kolla(&[&common[..], &["svcc"]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing to build") && err.contains("svcc"), "{err}");
}
