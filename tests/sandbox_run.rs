//! `sandbox::run` with real namespaces and overlayfs over a busybox root: what lands in the upper dir,
//! exit codes, output, USER/cwd/env, stacked and many lowerdirs, binds, errors, and cleanup on kill.

#[path = "support/sandbox.rs"]
mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kolla_oci::sandbox::{self, Bind, RunSpec, SandboxError};
use support::{Fixture, expect, listing, run};

#[test]
fn upper_dir_holds_exactly_the_commands_changes() {
    support::init();
    let f = Fixture::new();
    let lower = f.lower();
    fs::create_dir_all(lower.join("data")).unwrap();
    fs::create_dir_all(lower.join("olddir")).unwrap();
    for (p, text) in [("data/keep", "keep\n"), ("data/modify", "orig\n"), ("data/delete", "x\n"), ("olddir/a", "a\n")] {
        fs::write(lower.join(p), text).unwrap();
    }
    // The image's /etc metadata must survive the sandbox's own /etc mount points.
    fs::set_permissions(lower.join("etc"), fs::Permissions::from_mode(0o751)).unwrap();
    std::os::unix::fs::chown(lower.join("etc"), Some(0), Some(42401)).unwrap();
    let script = r#"set -e
        echo new > /data/new
        echo changed >> /data/modify
        rm /data/delete
        rm -rf /olddir && mkdir /olddir && echo c > /olddir/c
        touch /owned && chown 42400:42400 /owned
        ln -s /data/new /link
        ln /data/new /hard
        echo 1 > /etc/newfile
        # the mounts are there, usable, and read-only where they must be
        cat /etc/resolv.conf /etc/hosts /etc/hostname /proc/self/status > /dev/null
        ls /sys/kernel /dev/pts /dev/shm > /dev/null
        head -c 4 /dev/urandom > /dev/null
        if echo x 2>/dev/null >> /etc/hosts; then echo "/etc/hosts is writable"; exit 9; fi
        if touch /sys/x 2>/dev/null; then echo "/sys is writable"; exit 9; fi
        echo done"#;
    let (code, out) = run(&f.spec(script));
    assert_eq!((code, out.as_str()), (0, "done\n"));
    let got = listing(&f.upper());
    assert_eq!(
        got,
        expect(&[
            ("data", "d 755 0:0"),
            ("data/delete", "c 0:0 whiteout"),
            ("data/modify", r#"f 644 0:0 "orig\nchanged\n""#),
            ("data/new", r#"f 644 0:0 n2 "new\n""#),
            ("etc", "d 751 0:42401"),
            ("etc/newfile", r#"f 644 0:0 "1\n""#),
            ("hard", r#"f 644 0:0 n2 "new\n""#),
            ("link", "l -> /data/new"),
            ("olddir", "d 755 0:0 opaque"),
            ("olddir/c", r#"f 644 0:0 "c\n""#),
            ("owned", r#"f 644 42400:42400 """#),
        ]),
        "upper dir: {got:#?}"
    );
    let ino = |p: &str| fs::metadata(f.upper().join(p)).unwrap().ino();
    assert_eq!(ino("hard"), ino("data/new"), "hard is a hardlink of data/new");
    // Nothing of the sandbox is left on the host.
    assert!(fs::read_dir(f.work()).unwrap().all(|e| e.unwrap().file_name() == "work"));
}

#[test]
fn exit_codes_signals_and_output() {
    support::init();
    let f = Fixture::new();
    assert_eq!(run(&f.spec("exit 7")).0, 7);
    assert_eq!(run(&f.spec("kill -9 $$")).0, 128 + 9);
    let (code, out) = run(&f.spec("echo out; echo err >&2; exit 3"));
    assert_eq!((code, out.as_str()), (3, "out\nerr\n"));
    // More than a pipe buffer, streamed while the command runs.
    let (code, out) = run(&f.spec("seq 1 200000"));
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 200000);
    assert!(out.ends_with("199999\n200000\n"));
    // A background process does not outlive the command (PID 1 exits, the namespace dies).
    let (code, out) = run(&f.spec("sleep 1000 & echo started"));
    assert_eq!((code, out.as_str()), (0, "started\n"));
}

#[test]
fn user_cwd_env_and_hostname_are_honoured() {
    support::init();
    let f = Fixture::new();
    let mut spec = f.spec(r#"id -u; id -g; id -G; pwd; echo "$FOO"; echo "$HOME"; touch mine; ls -n mine"#);
    spec.user = "kolla".into();
    spec.cwd = "/work/dir".into();
    spec.env.push("FOO=bar baz".into());
    fs::create_dir_all(f.lower().join("work/dir")).unwrap();
    fs::set_permissions(f.lower().join("work/dir"), fs::Permissions::from_mode(0o777)).unwrap();
    let (code, out) = run(&spec);
    let mut lines = out.lines();
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines.by_ref().take(6).collect::<Vec<_>>(),
        ["42400", "42400", "42400 42401", "/work/dir", "bar baz", "/var/lib/kolla"]
    );
    assert!(lines.next().unwrap().contains(" 42400 "), "{out}");
    assert_eq!(fs::metadata(f.upper().join("work/dir/mine")).unwrap().uid(), 42400);

    let g = Fixture::new();
    let mut spec = g.spec("id -u; id -g; id -G; pwd; hostname; cat /etc/hostname; grep -c sandbox-test /etc/hosts");
    spec.user = "42400:extra".into();
    spec.cwd = "/does/not/exist".into();
    spec.hostname = "sandbox-test".into();
    let (code, out) = run(&spec);
    assert_eq!((code, out.as_str()), (0, "42400\n42401\n42401\n/does/not/exist\nsandbox-test\nsandbox-test\n1\n"));
    // A missing working directory is created (a real change of the step, like Docker's WORKDIR).
    assert_eq!(
        listing(&g.upper()),
        expect(&[("does", "d 755 0:0"), ("does/not", "d 755 0:0"), ("does/not/exist", "d 755 0:0")])
    );

    let h = Fixture::new();
    let mut spec = h.spec("true");
    spec.user = "nobody-such".into();
    let err = sandbox::run(&spec, &mut Vec::new()).unwrap_err();
    assert!(matches!(&err, SandboxError::Setup(m) if m.contains("resolve user") && m.contains("nobody-such")), "{err}");
}

/// Makes a `c 0:0` whiteout, as a lower layer applied in overlay mode holds it.
fn whiteout(p: &Path) {
    rustix::fs::mknodat(rustix::fs::CWD, p, rustix::fs::FileType::CharacterDevice, rustix::fs::Mode::empty(), 0)
        .unwrap();
}

#[test]
fn stacked_lowerdirs_merge_top_first() {
    support::init();
    let f = Fixture::new();
    let bottom = f.lower();
    fs::write(bottom.join("a"), "bottom\n").unwrap();
    fs::write(bottom.join("b"), "bottom\n").unwrap();
    fs::create_dir(bottom.join("d")).unwrap();
    fs::write(bottom.join("d/old"), "").unwrap();
    let top = f.path().join("top");
    fs::create_dir_all(top.join("d")).unwrap();
    fs::write(top.join("a"), "top\n").unwrap();
    whiteout(&top.join("b"));
    xattr::set(top.join("d"), "user.overlay.opaque", b"y").unwrap();
    fs::write(top.join("d/new"), "").unwrap();
    let mut spec = f.spec("cat /a; test -e /b || echo no-b; ls /d");
    spec.lowerdirs = vec![top, bottom];
    let (code, out) = run(&spec);
    assert_eq!((code, out.as_str()), (0, "top\nno-b\nnew\n"));
    assert_eq!(listing(&f.upper()), expect(&[]));
}

#[test]
fn a_layer_repeated_in_the_stack_is_mounted_once() {
    support::init();
    let f = Fixture::new();
    let bottom = f.lower();
    let same = f.path().join("same");
    fs::create_dir_all(&same).unwrap();
    fs::write(same.join("x"), "same\n").unwrap();
    let middle = f.path().join("middle");
    fs::create_dir_all(&middle).unwrap();
    fs::write(middle.join("x"), "middle\n").unwrap();
    // An image whose first and third layers are identical (same diff_id, same extracted dir).
    let mut spec = f.spec("cat /x");
    spec.lowerdirs = vec![same.clone(), middle, same, bottom];
    let (code, out) = run(&spec);
    assert_eq!((code, out.as_str()), (0, "same\n"));
}

#[test]
fn sixty_lowerdirs_with_long_paths() {
    support::init();
    let f = Fixture::new();
    let mut lowerdirs: Vec<PathBuf> =
        (0..60).map(|i| f.path().join(format!("layer-{i:02}-{}", "long-path-component-".repeat(5)))).collect();
    // One path beyond fsconfig's 256-byte string limit.
    lowerdirs[30] = f.path().join(format!("deep/{}", "d".repeat(200))).join("e".repeat(60));
    for (i, l) in lowerdirs.iter().enumerate() {
        fs::create_dir_all(l.join("layers")).unwrap();
        fs::write(l.join("layers").join(format!("{i:02}")), format!("{i}\n")).unwrap();
    }
    assert!(lowerdirs[30].as_os_str().len() > 256);
    let total: usize = lowerdirs.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(total > 4096, "the legacy mount option string would not fit a page: {total}");
    lowerdirs.push(f.lower());
    let mut spec = f.spec("ls /layers | wc -l; cat /layers/00 /layers/30 /layers/59");
    spec.lowerdirs = lowerdirs;
    let (code, out) = run(&spec);
    assert_eq!((code, out.trim_start()), (0, "60\n0\n30\n59\n"));
}

#[test]
fn from_scratch_with_binds() {
    support::init();
    let f = Fixture::new();
    let shared = f.path().join("shared");
    fs::create_dir(&shared).unwrap();
    let spec = RunSpec {
        lowerdirs: vec![],
        upperdir: f.upper(),
        workdir: f.work(),
        argv: ["/busybox", "sh", "-c", "echo hi > /mnt/host/out; if echo x > /busybox; then exit 9; fi; echo ok"]
            .map(String::from)
            .to_vec(),
        env: vec![],
        binds: vec![
            Bind { source: support::BUSYBOX.into(), target: "/busybox".into(), readonly: true },
            Bind { source: shared.clone(), target: "/mnt/host".into(), readonly: false },
        ],
        ..RunSpec::default()
    };
    let (code, out) = run(&spec);
    assert_eq!(code, 0, "{out}");
    assert!(out.ends_with("ok\n"), "{out}");
    assert_eq!(fs::read_to_string(shared.join("out")).unwrap(), "hi\n");
    // Missing bind targets are created in the container (documented); nothing else is.
    assert_eq!(
        listing(&f.upper()),
        expect(&[("busybox", r#"f 644 0:0 """#), ("mnt", "d 755 0:0"), ("mnt/host", "d 755 0:0")])
    );
}

#[test]
fn setup_errors_name_the_step() {
    support::init();
    let f = Fixture::new();
    let mut spec = f.spec("true");
    spec.lowerdirs.push(f.path().join("missing"));
    let err = sandbox::run(&spec, &mut Vec::new()).unwrap_err();
    assert!(matches!(&err, SandboxError::InvalidSpec(m) if m.contains("missing")), "{err}");

    let mut spec = f.spec("true");
    spec.argv = vec!["no-such-command".into()];
    let err = sandbox::run(&spec, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(&err, SandboxError::Exec { code: 127, message: m }
            if m.contains("exec \"no-such-command\"") && m.contains("not found")),
        "{err}"
    );

    let mut spec = f.spec("true");
    let nested = f.upper().join("work");
    fs::create_dir(&nested).unwrap();
    spec.workdir = nested;
    let err = sandbox::run(&spec, &mut Vec::new()).unwrap_err();
    assert!(matches!(&err, SandboxError::Setup(m) if m.starts_with("mount overlay: ")), "{err}");
}

/// Processes whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .collect()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killing_the_caller_kills_the_sandbox() {
    let f = Fixture::new();
    let secs = format!("{}", 40000 + std::process::id() % 20000);
    let spec_path = f.path().join("spec.json");
    fs::write(&spec_path, serde_json::to_vec(&f.spec(&format!("sleep {secs}; echo never"))).unwrap()).unwrap();
    let mut caller = Command::new(support::kolla_oci())
        .env(sandbox::SELFTEST_ENV, &spec_path)
        .env("TMPDIR", f.path()) // the killed caller cannot remove its scratch dir: keep it in the fixture
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let sleeper = ["sleep", secs.as_str()];
    wait_until("the command runs", || !processes_running(&sleeper).is_empty());
    caller.kill().unwrap();
    caller.wait().unwrap();
    wait_until("the command is gone", || processes_running(&sleeper).is_empty());
}
