//! Hostile build input through the real CLI: Dockerfiles with a huge line, 100k continuation lines and
//! exponential ARG/ENV expansion; templates that loop, recurse, include themselves or blow up memory;
//! ADD of archives whose entries try to leave the image (`..`, absolute paths, symlink then write,
//! hardlinks out); ADD of a FIFO or a device; symlink loops in the build context; symlinks in a template
//! tree. Each ends in a clear error naming the file and line, or in a write confined to the image — in
//! bounded time and memory, with nothing written outside the roots (the host side is walked to prove it).

#[path = "support/hardening.rs"]
mod hardening;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hardening::{Bench, Run, assert_contains, run_bounded, tool};

const LIMIT: Duration = Duration::from_secs(60);
/// Peak memory a refused input may cost (the Dockerfile limits are 1 MiB per line, 16 MiB per word).
const SMALL_RSS_KIB: i64 = 1 << 20;
/// Peak memory a runaway template may cost: minijinja's fuel charges bytes produced, which bounds it.
const TEMPLATE_RSS_KIB: i64 = 2 << 20;

/// `build-file` of Dockerfile `text` written as `ctx/<name>`, on the bench's seed state (which holds
/// `bb-base:1`).
fn build(bench: &Bench, name: &str, text: &str) -> Run {
    let df = bench.ctx().join(name);
    fs::write(&df, text).unwrap();
    let ctx = bench.ctx();
    let args = ["build-file", "-f", df.to_str().unwrap(), ctx.to_str().unwrap(), "-t", "hostile:1"];
    run_bounded(&mut bench.kolla("seed", &args), LIMIT)
}

#[test]
fn huge_dockerfile_line_is_refused_with_its_location() {
    let bench = Bench::new();
    let run = build(&bench, "Df.huge", &format!("FROM bb-base:1\nLABEL big={}\n", "y".repeat(2 << 20)));
    assert_contains(run.failed(), &["Df.huge:2", "longer than 1048576 bytes"]);
    assert!(run.max_rss_kib < SMALL_RSS_KIB, "peak RSS {} KiB", run.max_rss_kib);
    // The same bytes split over continuation lines: the logical line is what counts.
    let mut text = String::from("FROM bb-base:1\nLABEL big=\\\n");
    for _ in 0..2100 {
        text.push_str(&"z".repeat(1000));
        text.push_str("\\\n");
    }
    text.push_str("end\n");
    let run = build(&bench, "Df.huge2", &text);
    assert_contains(run.failed(), &["Df.huge2:2", "longer than"]);
}

#[test]
fn hundred_thousand_continuation_lines() {
    let bench = Bench::new();
    // 100k continuation lines of comments: valid, and cheap.
    let mut text = String::from("FROM bb-base:1\nRUN echo \\\n");
    for i in 0..100_000 {
        text.push_str(&format!("# comment {i} \\\n"));
    }
    text.push_str("  continued > /out.txt\n");
    let run = build(&bench, "Df.comments", &text).ok();
    let digest = run.stdout.trim().to_owned();
    let bundle = bench.dir.join("bundle-comments");
    let layout = bench.plain_layout("seed");
    tool("umoci", &["unpack", "--image", &format!("{}:hostile:1", layout.display()), bundle.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(bundle.join("rootfs/out.txt")).unwrap(), "continued\n", "{digest}");

    // 100k continuation lines of shell: a 1 MB `sh -c` argument, over the kernel's 128 KiB limit for one
    // argument — a clear error, not a hang or a crash.
    let mut text = String::from("FROM bb-base:1\nRUN true \\\n");
    for _ in 0..100_000 {
        text.push_str("  && true \\\n");
    }
    text.push_str("  && echo done\n");
    let run = build(&bench, "Df.cont", &text);
    assert_contains(run.failed(), &["Df.cont:2", "Argument list too long"]);
    assert!(run.max_rss_kib < SMALL_RSS_KIB, "peak RSS {} KiB", run.max_rss_kib);
}

#[test]
fn exponential_arg_and_env_expansion_is_refused_in_bounded_memory() {
    let bench = Bench::new();
    // ENV A_n = A_{n-1} twice: 16 bytes · 2^39 if nothing stopped it.
    let mut text = String::from("FROM bb-base:1\nENV A0=xxxxxxxxxxxxxxxx\n");
    for i in 1..40 {
        text.push_str(&format!("ENV A{i}=$A{}$A{}\n", i - 1, i - 1));
    }
    text.push_str("RUN echo $A39\n");
    let run = build(&bench, "Df.env", &text);
    let err = run.failed();
    assert_contains(err, &["Df.env:", "larger than"]);
    assert!(run.max_rss_kib < SMALL_RSS_KIB, "peak RSS {} KiB", run.max_rss_kib);

    // The same with ARG before FROM (global scope, `${}` form), consumed after it.
    let mut text = String::from("ARG A0=xxxxxxxxxxxxxxxx\n");
    for i in 1..40 {
        text.push_str(&format!("ARG A{i}=${{A{}}}${{A{}}}\n", i - 1, i - 1));
    }
    text.push_str("FROM bb-base:1\nARG A39\nRUN echo $A39\n");
    let run = build(&bench, "Df.arg", &text);
    assert_contains(run.failed(), &["Df.arg:", "larger than"]);
    assert!(run.max_rss_kib < SMALL_RSS_KIB, "peak RSS {} KiB", run.max_rss_kib);

    // Deep but linear: 5000 chained ENVs, each using the last, build fine.
    let mut text = String::from("FROM bb-base:1\nENV B0=b\n");
    for i in 1..5000 {
        text.push_str(&format!("ENV B{i}=${{B{}}}\n", i - 1));
    }
    text.push_str("RUN test \"$B4999\" = b\n");
    build(&bench, "Df.chain", &text).ok();
}

/// `build --template-only --docker-dir <tree>` where `tree/evil/Dockerfile.j2` (plus `extra` files) is
/// hostile; returns the run.
fn render(bench: &Bench, name: &str, template: &str, extra: &[(&str, &str)]) -> Run {
    let tree = bench.dir.join(format!("dd-{name}"));
    fs::create_dir_all(tree.join("evil")).unwrap();
    let header = "FROM {{ namespace }}/{{ image_prefix }}base:{{ tag }}\n";
    fs::write(tree.join("evil/Dockerfile.j2"), format!("{header}{template}")).unwrap();
    for (rel, text) in extra {
        fs::write(tree.join(rel), text).unwrap();
    }
    let work = bench.dir.join(format!("work-{name}"));
    let args =
        ["build", "--template-only", "--docker-dir", tree.to_str().unwrap(), "--work-dir", work.to_str().unwrap()];
    run_bounded(&mut bench.kolla("seed", &args), LIMIT)
}

/// Extra files of a template tree: (path, content).
type Extra<'a> = &'a [(&'a str, &'a str)];

#[test]
fn runaway_templates_fail_fast_with_their_location() {
    let bench = Bench::new();
    let cases: [(&str, &str, Extra, &str); 7] = [
        ("range", "{% for i in range(100000000) %}{{ i }}{% endfor %}\n", &[], "range has too many elements"),
        (
            "nested",
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}\n",
            &[],
            // Its output reaches the 8 MiB cap before the fuel runs out (the error has no line then).
            "rendered output passes the 8 MiB cap",
        ),
        ("macro", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}\n", &[], "recursion limit"),
        ("include", "{% include \"evil/Dockerfile.j2\" %}\n", &[], "recursion limit"),
        (
            "extends",
            "{% extends \"evil/b.j2\" %}\n",
            &[("evil/b.j2", "{% extends \"evil/Dockerfile.j2\" %}\n")],
            "cycle in template inheritance",
        ),
        // A string doubled 40 times would be 1 TiB, in a few hundred instructions of fuel: the render
        // memory cap stops it.
        (
            "doubling",
            "{% macro d(s, n) %}{% if n > 0 %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}\
             {{ d(\"x\", 40) }}\n",
            &[],
            "needs more than the 256 MiB render memory cap",
        ),
        ("repeat", "{{ \"x\" * 100000000000 }}\n", &[], "fuel"),
    ];
    for (name, template, extra, message) in cases {
        let run = render(&bench, name, template, extra);
        let location = if message.contains("MiB") { "evil/Dockerfile.j2" } else { "evil/Dockerfile.j2:2" };
        let failed = run.failed();
        assert!(failed.contains(location) && failed.contains(message), "{name}: {failed}");
        assert!(run.max_rss_kib < TEMPLATE_RSS_KIB, "{name}: peak RSS {} KiB", run.max_rss_kib);
    }
}

#[test]
fn templates_cannot_include_files_outside_the_tree() {
    let bench = Bench::new();
    fs::write(bench.dir.join("host-secret.txt"), "HOST-SECRET-IN-TEMPLATE\n").unwrap();
    for (name, path) in [
        ("abs", bench.dir.join("host-secret.txt").display().to_string()),
        ("dotdot", "../../../../../../../../etc/passwd".into()),
    ] {
        let run = render(&bench, name, &format!("{{% include \"{path}\" %}}\n"), &[]);
        assert_contains(run.failed(), &["evil/Dockerfile.j2:2", "template not found"]);
    }
}

#[test]
fn symlinks_in_a_template_tree_do_not_pull_host_files_into_the_context() {
    // A docker-dir from someone else's repository: `evil/leak` points at a file of the build host (think
    // ~/.docker/config.json). Rendering must not turn it into a regular file of the build context, where
    // `COPY leak /` would put the host's file into the image.
    let bench = Bench::new();
    let secret = bench.dir.join("host-secret.txt");
    fs::write(&secret, "HOST-SECRET-IN-TREE\n").unwrap();
    let tree = bench.dir.join("dd-leak");
    fs::create_dir_all(tree.join("evil")).unwrap();
    fs::write(
        tree.join("evil/Dockerfile.j2"),
        "FROM {{ namespace }}/{{ image_prefix }}base:{{ tag }}\nCOPY leak /leak\n",
    )
    .unwrap();
    symlink(&secret, tree.join("evil/leak")).unwrap();
    let work = bench.dir.join("work-leak");
    let args =
        ["build", "--template-only", "--docker-dir", tree.to_str().unwrap(), "--work-dir", work.to_str().unwrap()];
    let run = run_bounded(&mut bench.kolla("seed", &args), LIMIT);
    if run.status.success() {
        for entry in walkdir::WalkDir::new(&work).into_iter().filter_map(Result::ok) {
            if entry.file_type().is_file() {
                let bytes = fs::read(entry.path()).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains("HOST-SECRET-IN-TREE"),
                    "the host file behind a template-tree symlink was copied into the build context as {}",
                    entry.path().display()
                );
            }
        }
    } else {
        assert_contains(run.failed(), &["evil/leak"]);
    }
}

/// A tar entry for [`raw_tar`]: name, kind, and data or link target — written verbatim (no sanitizing).
enum E<'a> {
    File(&'a str, &'a str),
    Dir(&'a str),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
}

/// A tar archive with exactly these entries, names and link targets as given (the `tar` crate's
/// builder refuses `..` and absolute names, so headers are filled by hand).
fn raw_tar(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let (name, kind, data, link) = match e {
            E::File(n, d) => (*n, tar::EntryType::Regular, d.as_bytes(), ""),
            E::Dir(n) => (*n, tar::EntryType::Directory, &b""[..], ""),
            E::Sym(n, l) => (*n, tar::EntryType::Symlink, &b""[..], *l),
            E::Hard(n, l) => (*n, tar::EntryType::Link, &b""[..], *l),
        };
        let mut h = tar::Header::new_ustar();
        {
            let raw = h.as_ustar_mut().unwrap();
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            raw.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if matches!(e, E::Dir(_)) { 0o755 } else { 0o644 });
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// Regular files under `dir` whose content contains `needle`.
fn files_containing(dir: &Path, needle: &str, skip: &[PathBuf]) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| !skip.iter().any(|s| e.path() == s))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .filter(|e| String::from_utf8_lossy(&fs::read(e.path()).unwrap_or_default()).contains(needle))
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[test]
fn add_archives_that_try_to_escape_are_refused_or_confined() {
    let bench = Bench::new();
    let victim = bench.dir.join("victim");
    fs::create_dir(&victim).unwrap();
    let v = victim.to_str().unwrap().to_owned();
    let host_abs = format!("/tmp/{}-abs-escape", bench.dir.file_name().unwrap().to_string_lossy());
    let up = "../../../../../../../../../../../..";
    let (dotdot, mid) = (format!("{up}{v}/dotdot"), format!("a/{up}{v}/mid"));
    let (up_v, v_target, up_passwd) = (format!("{up}{v}"), format!("{v}/target"), format!("{up}/etc/passwd"));
    let via = format!("{v}/via-hardlink");
    let cases: Vec<(&str, Vec<E>)> = vec![
        ("dotdot", vec![E::File("ok.txt", "fine\n"), E::File(&dotdot, "ESCAPED\n")]),
        ("dotdot-mid", vec![E::Dir("a"), E::File(&mid, "ESCAPED\n")]),
        ("abs", vec![E::File(&host_abs, "ESCAPED\n")]),
        ("sym-abs", vec![E::Sym("link", &v), E::File("link/through", "ESCAPED\n")]),
        ("sym-rel", vec![E::Dir("d"), E::Sym("d/link", &up_v), E::File("d/link/rel", "ESCAPED\n")]),
        ("sym-chain", vec![E::Sym("a", "b"), E::Sym("b", "c"), E::Sym("c", &v), E::File("a/chained", "ESCAPED\n")]),
        ("sym-loop", vec![E::Sym("a", "b"), E::Sym("b", "a"), E::File("a/x", "ESCAPED\n")]),
        ("sym-file", vec![E::Sym("f", &v_target), E::File("f", "ESCAPED\n")]),
        ("hard-abs", vec![E::Hard("h", "/etc/passwd")]),
        ("hard-dotdot", vec![E::Hard("h", &up_passwd)]),
        ("hard-to-sym", vec![E::Sym("s", &via), E::Hard("h", "s"), E::File("h", "ESCAPED\n")]),
    ];
    for (name, entries) in &cases {
        let archive = format!("{name}.tar");
        fs::write(bench.ctx().join(&archive), raw_tar(entries)).unwrap();
        let df = format!("Df.add-{name}");
        let run = build(&bench, &df, &format!("FROM bb-base:1\nADD {archive} /opt/x/\n"));
        if run.status.success() {
            // Confined: every escaping byte landed inside the image, under the ADD destination.
            let bundle = bench.dir.join(format!("bundle-{name}"));
            let layout = bench.plain_layout("seed");
            tool("umoci", &["unpack", "--image", &format!("{}:hostile:1", layout.display()), bundle.to_str().unwrap()]);
            for f in files_containing(&bundle.join("rootfs"), "ESCAPED", &[]) {
                assert!(f.starts_with(bundle.join("rootfs/opt/x")), "{name}: {} is outside /opt/x", f.display());
            }
        } else {
            assert_contains(run.failed(), &[&format!("{df}:2"), &archive]);
        }
        assert!(fs::read_dir(&victim).unwrap().next().is_none(), "{name}: wrote into {}", victim.display());
        assert!(!Path::new(&host_abs).exists(), "{name}: wrote {host_abs}");
    }
    // The host side: nothing outside the context, the state and the unpacked bundles holds the bytes.
    let skip: Vec<PathBuf> = fs::read_dir(&bench.dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().is_some_and(|n| n == "ctx" || n == "seed" || n.to_string_lossy().starts_with("bundle-"))
        })
        .collect();
    assert_eq!(files_containing(&bench.dir, "ESCAPED", &skip), Vec::<PathBuf>::new());
    assert!(!Path::new("/etc/passwd").symlink_metadata().unwrap().file_type().is_symlink());

    // The destination itself is a symlink out of the image (made by a RUN): COPY and ADD follow it inside
    // the image root, never on the host.
    fs::write(bench.ctx().join("plain.txt"), "ESCAPED via dest\n").unwrap();
    fs::write(bench.ctx().join("ok.tar"), raw_tar(&[E::File("in-archive.txt", "ESCAPED via dest\n")])).unwrap();
    let text = format!(
        "FROM bb-base:1\nRUN busybox ln -s {up}{v} /evil && busybox ln -s {v} /evil2\n\
         COPY plain.txt /evil/\nADD ok.tar /evil2/\nCOPY plain.txt /evil2/sub/deeper/x\n"
    );
    build(&bench, "Df.destlink", &text).ok();
    assert!(fs::read_dir(&victim).unwrap().next().is_none(), "a destination symlink wrote into {}", victim.display());
    let bundle = bench.dir.join("bundle-destlink");
    let layout = bench.plain_layout("seed");
    tool("umoci", &["unpack", "--image", &format!("{}:hostile:1", layout.display()), bundle.to_str().unwrap()]);
    let inside = bundle.join("rootfs").join(v.trim_start_matches('/'));
    for f in ["plain.txt", "in-archive.txt", "sub/deeper/x"] {
        assert!(inside.join(f).is_file(), "{f} must land at {v}/{f} inside the image");
    }
}

#[test]
fn add_of_a_fifo_or_a_device_does_not_hang() {
    let bench = Bench::new();
    let ctx = bench.ctx();
    let fifo = std::ffi::CString::new(ctx.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo/mknod with valid paths.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "{}", std::io::Error::last_os_error());
    let zero = std::ffi::CString::new(ctx.join("zero").to_str().unwrap()).unwrap();
    let rc = unsafe { libc::mknod(zero.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 5)) };
    assert_eq!(rc, 0, "mknod (the tests run as root): {}", std::io::Error::last_os_error());
    // ADD sniffs local files for archives: a FIFO nobody writes to must not block it forever.
    for (name, text) in [
        ("Df.add-fifo", "FROM bb-base:1\nADD fifo /x\n"),
        ("Df.copy-fifo", "FROM bb-base:1\nCOPY fifo /x\n"),
        ("Df.add-zero", "FROM bb-base:1\nADD zero /z\n"),
        ("Df.add-dir", "FROM bb-base:1\nADD . /ctx/\n"),
    ] {
        let run = build(&bench, name, text);
        // Special files are skipped with a warning (as BuildKit does) or refused — either way, promptly.
        if !run.status.success() {
            assert_contains(run.failed(), &[&format!("{name}:2")]);
        }
    }
}

#[test]
fn symlink_loops_in_the_context_are_clear_errors() {
    let bench = Bench::new();
    let ctx = bench.ctx();
    fs::create_dir(ctx.join("loops")).unwrap();
    symlink("self", ctx.join("loops/self")).unwrap();
    symlink("b", ctx.join("loops/a")).unwrap();
    symlink("a", ctx.join("loops/b")).unwrap();
    symlink("..", ctx.join("loops/up")).unwrap();
    for (name, text) in [
        ("Df.self", "FROM bb-base:1\nCOPY loops/self /x\n"),
        ("Df.pair", "FROM bb-base:1\nCOPY loops/a /x\n"),
        ("Df.glob", "FROM bb-base:1\nCOPY loops/* /x/\n"),
        ("Df.through", "FROM bb-base:1\nCOPY loops/up/loops/up/loops/self /x\n"),
    ] {
        let run = build(&bench, name, text);
        assert_contains(run.failed(), &[&format!("{name}:2"), "Too many levels of symbolic links"]);
    }
    // Copying the directory copies the links as links: the image holds the same loops, nothing followed.
    build(&bench, "Df.dir", "FROM bb-base:1\nCOPY loops /loops/\n").ok();
    let bundle = bench.dir.join("bundle-loops");
    let layout = bench.plain_layout("seed");
    tool("umoci", &["unpack", "--image", &format!("{}:hostile:1", layout.display()), bundle.to_str().unwrap()]);
    let root = bundle.join("rootfs/loops");
    for (link, target) in [("self", "self"), ("a", "b"), ("b", "a"), ("up", "..")] {
        assert_eq!(fs::read_link(root.join(link)).unwrap(), Path::new(target), "{link}");
    }
}
