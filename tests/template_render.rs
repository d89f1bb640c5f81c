//! Rendering behaviour beyond byte conformance: the work dir (`--docker-dir` merging, context
//! files, `patches/`, removal of unselected images, temporary dirs), errors that name the file
//! and line, bounded execution of a looping template, and path safety.

#[path = "support/template.rs"]
mod support;

use std::time::{Duration, Instant};

use kolla_oci::template::{TemplateError, render, render_all};
use support::{config, kolla_oci_build, run, run_ok, small_tree, write_tree};

fn opts<'a>(tree: &'a str, work: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--template-tree", tree, "--work-dir", work];
    v.extend_from_slice(extra);
    v
}

#[test]
fn docker_dirs_merge_over_the_tree_and_context_files_are_copied() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, extra, work) = (tmp.path().join("tree"), tmp.path().join("extra"), tmp.path().join("work"));
    small_tree(&tree);
    write_tree(
        &extra,
        &[
            ("cron/Dockerfile.j2", "FROM {{ namespace }}/base:{{ tag }}\nRUN echo overridden {{ image_name }}\n"),
            ("mine/mine-svc/Dockerfile.j2", "FROM {{ namespace }}/cron:{{ tag }}\nCOPY app /app\n"),
            ("mine/mine-svc/app", "payload"),
        ],
    );
    let (t, w, e) = (tree.to_str().unwrap(), work.to_str().unwrap(), extra.to_str().unwrap());
    let cfg = config(&opts(t, w, &["-D", e]));
    let rendered = render_all(&cfg).unwrap();
    assert_eq!(rendered.images.len(), 8);
    let cron = rendered.image("cron").unwrap();
    assert_eq!(cron.dockerfile, "FROM kolla/base:2026.2-debian-trixie\nRUN echo overridden cron");
    assert_eq!(std::fs::read_to_string(work.join("docker/cron/Dockerfile")).unwrap(), cron.dockerfile);
    assert_eq!(cron.context_dir, work.join("docker/cron"));
    assert_eq!(std::fs::read_to_string(cron.context_dir.join("extend_start.sh")).unwrap(), "#!/bin/sh\n");
    assert!(cron.context_dir.join("patches").is_dir(), "every image gets a patches/ dir");
    let svc = rendered.image("mine-svc").unwrap();
    assert_eq!(svc.rel_path, "mine/mine-svc");
    assert_eq!(std::fs::read_to_string(svc.context_dir.join("app")).unwrap(), "payload");
    // the source trees are untouched
    assert!(!tree.join("cron/Dockerfile").exists() && !tree.join("cron/patches").exists());
}

#[test]
fn a_build_writes_only_the_directories_of_its_images() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, extra) = (tmp.path().join("tree"), tmp.path().join("extra"));
    small_tree(&tree);
    write_tree(
        &extra,
        &[
            ("cron/Dockerfile.j2", "FROM {{ namespace }}/base:{{ tag }}\nCOPY extend_start.sh own /\n"),
            ("cron/own", "from the docker dir"),
            ("mine/mine-svc/Dockerfile.j2", "FROM {{ namespace }}/cron:{{ tag }}\nCOPY app /app\n"),
            ("mine/mine-svc/app", "payload"),
            ("glance/glance-api/only-here", "not for this build"),
        ],
    );
    let (t, e) = (tree.to_str().unwrap(), extra.to_str().unwrap());
    let (full, part) = (tmp.path().join("full"), tmp.path().join("part"));
    let everything = render_all(&config(&opts(t, full.to_str().unwrap(), &["-D", e]))).unwrap();

    let rendered = render(&config(&opts(t, part.to_str().unwrap(), &["-D", e]))).unwrap();
    assert!(!part.exists(), "rendering alone writes nothing");
    assert_eq!(rendered.images.len(), everything.images.len());
    rendered.write_work_dir(Some(&["cron", "mine-svc"])).unwrap();
    let listing = |root: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = walkdir::WalkDir::new(root)
            .into_iter()
            .map(|e| e.unwrap().path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let expected = [
        "",
        "cron",
        "cron/Dockerfile",
        "cron/Dockerfile.j2",
        "cron/extend_start.sh",
        "cron/own",
        "cron/patches",
        "mine",
        "mine/mine-svc",
        "mine/mine-svc/Dockerfile",
        "mine/mine-svc/Dockerfile.j2",
        "mine/mine-svc/app",
        "mine/mine-svc/patches",
    ];
    assert_eq!(listing(&part.join("docker")), expected, "only the two images' directories, merged");
    for (name, rel) in [("cron", "cron"), ("mine-svc", "mine/mine-svc")] {
        let dir = part.join("docker").join(rel);
        for f in listing(&dir).iter().filter(|f| dir.join(f).is_file()) {
            let (a, b) = (dir.join(f), full.join("docker").join(rel).join(f));
            assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "{name}: {f} as in the whole work dir");
        }
        assert_eq!(rendered.image(name).unwrap().context_dir, dir);
    }
    // Links are still checked in the whole tree, not only in the directories written.
    std::os::unix::fs::symlink("/etc/passwd", extra.join("glance/glance-api/passwd")).unwrap();
    let e = render(&config(&opts(t, tmp.path().join("p2").to_str().unwrap(), &["-D", e]))).unwrap_err();
    assert!(
        matches!(&e, TemplateError::LinkOutside { link, .. } if *link == extra.join("glance/glance-api/passwd")),
        "{e}"
    );
}

#[test]
fn template_only_keeps_selected_images_and_kolla_context() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    small_tree(&tree);
    write_tree(
        &tree,
        &[(
            "base/Dockerfile.j2",
            "FROM {{ base_image }}:{{ base_distro_tag }}\nLABEL v=\"{{ kolla_version }}\" d=\"{{ supported_distro_name }}\"\n\
             ENV P={{ env.KOLLA_OCI_TEST_VAR }} U={{ users.nova.uid }}:{{ users.hacluster.group }}\n",
        )],
    );
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let work = tmp.path().join("work");
    run_ok(
        kolla_oci_build(&home)
            .env("KOLLA_OCI_TEST_VAR", "from-env")
            .arg("--template-tree")
            .arg(&tree)
            .arg("--work-dir")
            .arg(&work)
            .args(["--template-only", "glance"]),
    );
    let docker = work.join("docker");
    for kept in ["base", "openstack-base", "glance/glance-api"] {
        assert!(docker.join(kept).join("Dockerfile").is_file(), "{kept} kept");
    }
    for removed in ["cron", "nova/nova-api", "nova/nova-base", "nova/nova-compute"] {
        assert!(!docker.join(removed).exists(), "{removed} removed");
    }
    assert!(docker.join("nova").is_dir(), "like kolla, only image directories are removed");
    let base = std::fs::read_to_string(docker.join("base/Dockerfile")).unwrap();
    assert_eq!(
        base,
        "FROM debian:trixie\nLABEL v=\"23.0.0\" d=\"Debian GNU/Linux 13 (trixie)\"\nENV P=from-env U=42436:haclient"
    );
}

#[test]
fn temporary_work_dir_is_removed_unless_persisted() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    small_tree(&tree);
    let cfg = config(&["--template-tree", tree.to_str().unwrap()]);
    let rendered = render_all(&cfg).unwrap();
    let root = rendered.root.clone();
    assert!(root.join("cron/Dockerfile").is_file());
    drop(rendered);
    assert!(!root.exists(), "temporary work dir removed on drop");
    let mut rendered = render_all(&cfg).unwrap();
    let kept = rendered.persist();
    drop(rendered);
    assert!(kept.join("cron/Dockerfile").is_file());
    std::fs::remove_dir_all(kept.parent().unwrap()).unwrap();
}

fn render_error(files: &[(&str, &str)], extra: &[&str]) -> TemplateError {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    small_tree(&tree);
    write_tree(&tree, files);
    let work = tmp.path().join("w");
    let mut o = opts(tree.to_str().unwrap(), work.to_str().unwrap(), &[]);
    o.extend_from_slice(extra);
    render_all(&config(&o)).expect_err("render must fail")
}

#[test]
fn errors_name_file_line_and_problem() {
    let e = render_error(&[("cron/Dockerfile.j2", "FROM x\nRUN a\n{% if %}\n")], &[]).to_string();
    assert!(e.contains("cron/Dockerfile.j2:3") && e.contains("syntax error"), "{e}");

    let e = render_error(&[("cron/Dockerfile.j2", "FROM x\n\nRUN {{ no_such_thing.attr }}\n")], &[]).to_string();
    assert!(e.contains("cron/Dockerfile.j2:3") && e.contains("no_such_thing"), "{e}");

    let e = render_error(&[("cron/Dockerfile.j2", "FROM x\n{{ raise_error('cron is broken') }}\n")], &[]).to_string();
    assert!(e.contains("cron/Dockerfile.j2:2") && e.contains("cron is broken"), "{e}");

    // a macro failing inside macros.j2 is reported there, with the image being rendered
    let e = render_error(
        &[
            ("macros.j2", "{% macro user(name) %}\n{{ raise_error('no user ' + name) }}\n{% endmacro %}\n"),
            (
                "cron/Dockerfile.j2",
                "FROM x\n{% import \"macros.j2\" as macros with context %}\n{{ macros.user('zz') }}\n",
            ),
        ],
        &[],
    )
    .to_string();
    assert!(e.contains("macros.j2:2") && e.contains("no user zz") && e.contains("cron/Dockerfile.j2"), "{e}");

    // an override's error points into the override file that holds the line
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one.j2"), tmp.path().join("two.j2"));
    std::fs::write(&one, "{% extends parent_template %}\n{% block footer %}x{% endblock %}\n").unwrap();
    std::fs::write(&two, "{% extends parent_template %}\n{% set a = 1 %}\n{{ broken.attr }}\n").unwrap();
    let e = render_error(
        &[],
        &["--template-override", one.to_str().unwrap(), "--template-override", two.to_str().unwrap()],
    )
    .to_string();
    // two.j2 loses its extends line when merged: `{{ broken.attr }}` is its line 3
    assert!(e.contains("two.j2:3") && e.contains("broken"), "{e}");

    let e = render_error(&[("other/nova-api/Dockerfile.j2", "FROM x\n")], &[]);
    assert!(matches!(e, TemplateError::DuplicateImage { ref name, .. } if name == "nova-api"), "{e}");
}

#[test]
fn looping_template_fails_quickly() {
    let start = Instant::now();
    let e = render_error(
        &[(
            "cron/Dockerfile.j2",
            "FROM x\n{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}\n",
        )],
        &[],
    )
    .to_string();
    assert!(e.contains("cron/Dockerfile.j2") && e.contains("fuel"), "{e}");
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
}

#[test]
fn oversized_output_is_refused_with_the_template_named() {
    // ~8.4 MB of output from a few thousand instructions: fuel alone would let it through.
    let line = "x".repeat(1000);
    let e = render_error(
        &[("cron/Dockerfile.j2", &format!("FROM x\n{{% for i in range(8400) %}}{line}\n{{% endfor %}}"))],
        &[],
    );
    assert!(matches!(e, TemplateError::OutputTooLarge { ref file, .. } if file.ends_with("cron/Dockerfile.j2")), "{e}");
    assert!(e.to_string().contains("8 MiB"), "{e}");
}

/// A template that doubles a string 40 times (a terabyte, in a few hundred instructions of fuel): the
/// process stops with a message naming the template, without ever holding more than half a gigabyte.
#[test]
fn a_template_growing_a_string_hits_the_memory_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    small_tree(&tree);
    let doubling = "FROM x\n{% macro grow(s, n) %}{% if n %}{{ grow(s ~ s, n - 1) }}{% else %}{{ s | length }}\
                    {% endif %}{% endmacro %}{{ grow('0123456789abcdef', 40) }}\n";
    write_tree(&tree, &[("cron/Dockerfile.j2", doubling)]);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let work = tmp.path().join("w");
    let mut cmd = kolla_oci_build(&home);
    cmd.args(["--template-only", "--template-tree", tree.to_str().unwrap(), "--work-dir", work.to_str().unwrap()]);
    #[allow(clippy::zombie_processes)] // reaped by wait4 below
    let child = cmd.stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.unwrap(), &mut stderr).unwrap();
    // wait4, not Child::wait (which could only say how it ended): we want this child's own peak RSS.
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: waiting for our own child, with valid out-pointers.
    assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1, "not a clean failure ({status:#x}): {stderr}");
    assert!(stderr.contains("rendering cron/Dockerfile.j2 needs more than the 256 MiB render memory cap"), "{stderr}");
    let peak_mib = usage.ru_maxrss / 1024;
    assert!(peak_mib < 512, "peak RSS {peak_mib} MiB");
}

#[test]
fn patches_are_copied_and_confined() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    small_tree(&tree);
    let patches = tmp.path().join("patches");
    write_tree(
        &patches,
        &[("cron/series", "# comment\nfix.patch\n\nmissing.patch\n"), ("cron/fix.patch", "--- a\n+++ b\n")],
    );
    let work = tmp.path().join("w");
    let (t, w, p) = (tree.to_str().unwrap(), work.to_str().unwrap(), patches.to_str().unwrap());
    render_all(&config(&opts(t, w, &["--patches-path", p]))).unwrap();
    let dest = work.join("docker/cron/patches");
    assert_eq!(std::fs::read_to_string(dest.join("fix.patch")).unwrap(), "--- a\n+++ b\n");
    assert!(dest.join("series").is_file() && !dest.join("missing.patch").exists());

    std::fs::write(patches.join("cron/series"), "../../../etc/passwd\n").unwrap();
    let e = render_all(&config(&opts(t, tmp.path().join("w2").to_str().unwrap(), &["--patches-path", p]))).unwrap_err();
    assert!(matches!(e, TemplateError::UnsafePatch { .. }), "{e}");
}

/// A hostile `--patches-path` or `--docker-dir`: each link to a host file (the patch, the series, the
/// image's patch dir, a context file) is refused and named, and nothing of the host file is copied.
#[test]
fn links_out_of_user_given_directories_are_refused_and_named() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    small_tree(&tree);
    let secret = tmp.path().join("host-secret");
    std::fs::write(&secret, "root:x:0:0\n").unwrap();
    let outside_dir = tmp.path().join("host-dir");
    write_tree(&outside_dir, &[("series", "x.patch\n"), ("x.patch", "host\n")]);
    let t = tree.to_str().unwrap();
    type MakeLink<'a> = &'a dyn Fn(&std::path::Path) -> std::path::PathBuf;
    let cases: [(&str, MakeLink); 3] = [
        ("patch", &|p| {
            write_tree(p, &[("cron/series", "fix.patch\n")]);
            symlink(&secret, p.join("cron/fix.patch")).unwrap();
            p.join("cron/fix.patch")
        }),
        ("series", &|p| {
            std::fs::create_dir_all(p.join("cron")).unwrap();
            symlink(&secret, p.join("cron/series")).unwrap();
            p.join("cron/series")
        }),
        ("image dir", &|p| {
            std::fs::create_dir_all(p).unwrap();
            symlink(&outside_dir, p.join("cron")).unwrap();
            p.join("cron")
        }),
    ];
    for (i, (what, make)) in cases.iter().enumerate() {
        let patches = tmp.path().join(format!("patches-{i}"));
        let link = make(&patches);
        let work = tmp.path().join(format!("w-{i}"));
        let (w, p) = (work.to_str().unwrap(), patches.to_str().unwrap());
        let e = render_all(&config(&opts(t, w, &["--patches-path", p]))).unwrap_err();
        match &e {
            TemplateError::LinkOutside { link: named, .. } => assert_eq!(named, &link, "{what}: {e}"),
            other => panic!("{what}: a link out of --patches-path was followed or misreported: {other}"),
        }
        assert!(e.to_string().contains(link.to_str().unwrap()), "{what}: the message names the link: {e}");
        let copied = work.join("docker/cron/patches");
        for f in ["fix.patch", "series", "x.patch"] {
            assert!(!copied.join(f).exists(), "{what}: {f} was copied from the host");
        }
    }

    let docker_dir = tmp.path().join("overlay");
    std::fs::create_dir_all(docker_dir.join("cron")).unwrap();
    symlink(&secret, docker_dir.join("cron/extend_start.sh")).unwrap();
    let w = tmp.path().join("w-docker-dir");
    let e = render_all(&config(&opts(t, w.to_str().unwrap(), &["--docker-dir", docker_dir.to_str().unwrap()])))
        .unwrap_err();
    assert!(
        matches!(&e, TemplateError::LinkOutside { link, .. } if *link == docker_dir.join("cron/extend_start.sh")),
        "{e}"
    );
}

#[test]
fn symlinks_in_an_existing_work_dir_are_replaced_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    small_tree(&tree);
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "do not touch").unwrap();
    let work = tmp.path().join("w");
    std::fs::create_dir_all(work.join("docker/cron")).unwrap();
    std::os::unix::fs::symlink(&victim, work.join("docker/cron/extend_start.sh")).unwrap();
    std::os::unix::fs::symlink(&victim, work.join("docker/cron/Dockerfile")).unwrap();
    render_all(&config(&opts(tree.to_str().unwrap(), work.to_str().unwrap(), &[]))).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
    let meta = std::fs::symlink_metadata(work.join("docker/cron/extend_start.sh")).unwrap();
    assert!(meta.is_file());
    assert_eq!(std::fs::read_to_string(work.join("docker/cron/extend_start.sh")).unwrap(), "#!/bin/sh\n");
}

#[test]
fn cli_rejects_bad_options_with_their_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let conf = tmp.path().join("k.conf");
    std::fs::write(&conf, "[DEFAULT]\n\nbase = plan9\n").unwrap();
    let out = run(kolla_oci_build(&home).arg("--config-file").arg(&conf).arg("--list-images"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("base") && err.contains("plan9") && err.contains("k.conf:3"), "{err}");
    let out = run(kolla_oci_build(&home).args(["--template-tree", "/nonexistent/tree", "--list-images"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tree"));
}
