//! kolla sources end to end through the real CLI: `[<image>]` sections of type url (from a loopback HTTP
//! server, with right and wrong sha256), git (a tag that is not HEAD), local directory and local tarball,
//! a disabled source, plugins and additions become the archives kolla-build 23.0.0 makes, and the built
//! images hold their files where kolla-build would put them (checked with `umoci unpack`). A rebuild builds
//! nothing, a second state directory builds the same digests, and a hostile plugin archive stays confined.

#[path = "support/hardening.rs"]
mod hardening;
#[path = "support/http.rs"]
mod http;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hardening::{Bench, KOLLA_TAG, Run, assert_contains, run_bounded, tool};
use http::FileServer;

const LIMIT: Duration = Duration::from_secs(300);

/// A gzipped tarball of `files` under the top folder `top` (what tarballs.opendev.org serves).
fn tarball(top: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    {
        let mut t = tar::Builder::new(&mut gz);
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(body.len() as u64);
            h.set_mtime(1_600_000_000);
            t.append_data(&mut h, format!("{top}/{name}"), body.as_bytes()).unwrap();
        }
        t.finish().unwrap();
    }
    gz.finish().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .env("GIT_COMMITTER_DATE", "1600000000 +0000")
        .env("GIT_AUTHOR_DATE", "1600000000 +0000")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A git repository whose tag `v1` is one commit behind HEAD.
fn git_repo(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    fs::write(dir.join("version.txt"), "one\n").unwrap();
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "first"]);
    git(dir, &["tag", "-a", "v1", "-m", "v1"]);
    fs::write(dir.join("version.txt"), "two\n").unwrap();
    git(dir, &["commit", "-qam", "second"]);
}

fn image(tree: &Path, name: &str, body: &str) {
    let dir = tree.join(name);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("Dockerfile.j2"), format!("FROM bb-base:1\n{body}")).unwrap();
}

/// `umoci unpack` of image `name` from `state` into a fresh directory; returns its rootfs.
fn unpack(bench: &Bench, state: &str, name: &str) -> std::path::PathBuf {
    let bundle = bench.dir.join(format!("unpack-{state}-{name}"));
    let image = format!("{}:kolla/{name}:{KOLLA_TAG}", bench.plain_layout(state).display());
    tool("umoci", &["unpack", "--rootless", "--image", &image, bundle.to_str().unwrap()]);
    bundle.join("rootfs")
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `build --all` of `tree` with config file `conf` into `state`; its run and summary JSON.
fn summary(bench: &Bench, tree: &Path, state: &str, conf: &Path, extra: &[&str]) -> (Run, serde_json::Value) {
    let file = bench.dir.join(format!("summary-{}.json", bench.dir.read_dir().unwrap().count()));
    let (tree, conf, out) = (tree.to_str().unwrap(), conf.to_str().unwrap(), file.to_str().unwrap());
    let mut args = vec!["build", "--all", "--threads", "2", "--template-tree", tree, "--config-file", conf];
    args.extend(["--summary-json-file", out]);
    args.extend(extra);
    let run = run_bounded(&mut bench.kolla(state, &args), LIMIT);
    let json = fs::read_to_string(&file).unwrap_or_else(|e| panic!("no summary ({e}):\n{}", run.stderr));
    (run, serde_json::from_str(&json).unwrap())
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn sources_become_kolla_archives_in_the_images() {
    let bench = Bench::new();
    let tree = bench.dir.join("src-tree");
    let data = bench.dir.join("data");
    fs::create_dir_all(&data).unwrap();

    let app = tarball("app-1.0", &[("setup.cfg", "[metadata]\nname = app\n"), ("app/__init__.py", "")]);
    let plugin = tarball("plugin-one-2.0", &[("README", "plugin one\n")]);
    let server = FileServer::start(BTreeMap::from([
        ("app-1.0.tar.gz".to_string(), app.clone()),
        ("plugin-one-2.0.tar.gz".to_string(), plugin.clone()),
    ]));
    let sum = sha256_hex(&app);
    git_repo(&data.join("repo"));
    fs::create_dir_all(data.join("localdir/sub")).unwrap();
    fs::write(data.join("localdir/sub/file.txt"), "from a local dir\n").unwrap();
    fs::write(data.join("local-2.0.tar.gz"), tarball("local-2.0", &[("PKG-INFO", "Version: 2.0\n")])).unwrap();
    fs::create_dir_all(data.join("plugin-two")).unwrap();
    fs::write(data.join("plugin-two/two.txt"), "plugin two\n").unwrap();
    fs::write(data.join("extra.tar.gz"), tarball("extra", &[("add.txt", "an addition\n")])).unwrap();

    image(&tree, "app-url", "ADD app-url-archive /app-url-source\nADD plugins-archive /\nADD additions-archive /\n");
    image(&tree, "app-badsum", "ADD app-badsum-archive /src\n");
    image(&tree, "app-git", "ADD app-git-archive /app-git-source\n");
    image(&tree, "app-dir", "ADD app-dir-archive /app-dir-source\n");
    image(&tree, "app-tarball", "ADD app-tarball-archive /app-tarball-source\n");
    image(&tree, "app-plug", "ADD plugins-archive /\nADD additions-archive /\nRUN ls / > /ls.txt\n");
    let d = |p: &str| data.join(p).display().to_string();
    let conf = bench.dir.join("kolla-build.conf");
    fs::write(
        &conf,
        format!(
            "[app-url]\ntype = url\nlocation = {url}\nsha256 = amd64:{sum},arm64:{sum}\n\
             [app-badsum]\ntype = url\nlocation = {url}\nsha256 = amd64:{bad},arm64:{bad}\n\
             [app-git]\ntype = git\nlocation = {repo}\nreference = v1\n\
             [app-dir]\ntype = local\nlocation = {localdir}\n\
             [app-tarball]\ntype = local\nlocation = {tarball}\n\
             [app-plug]\ntype = local\nlocation = /nonexistent\nenabled = false\n\
             [app-plug-plugin-one]\ntype = url\nlocation = {plugin_url}\n\
             [app-plug-plugin-two]\ntype = local\nlocation = {plugin_two}\n\
             [app-plug-plugin-off]\ntype = local\nlocation = /nonexistent\nenabled = false\n\
             [app-plug-additions-extra]\ntype = local\nlocation = {extra}\n",
            url = server.url("app-1.0.tar.gz"),
            bad = "0".repeat(64),
            repo = d("repo"),
            localdir = d("localdir"),
            tarball = d("local-2.0.tar.gz"),
            plugin_url = server.url("plugin-one-2.0.tar.gz"),
            plugin_two = d("plugin-two"),
            extra = d("extra.tar.gz"),
        ),
    )
    .unwrap();

    bench.fresh_state("a");
    let (run, s) = summary(&bench, &tree, "a", &conf, &[]);
    assert!(!run.status.success(), "the bad checksum fails the run");
    assert_eq!(names(&s["failed"]), ["app-badsum"]);
    assert_contains(&run.stderr, &["SHA256 checksum does not match", &"0".repeat(64), &sum]);
    let mut built = names(&s["built"]);
    built.sort();
    assert_eq!(built, ["app-dir", "app-git", "app-plug", "app-tarball", "app-url"]);

    // Where kolla-build puts them: url and local tarballs unpacked under the ADD destination (their own top
    // folder), a local dir under its base name, git under `<section>-archive-<reference>`.
    let root = unpack(&bench, "a", "app-url");
    assert_eq!(read(&root, "app-url-source/app-1.0/setup.cfg"), "[metadata]\nname = app\n");
    assert!(root.join("plugins").is_dir() && fs::read_dir(root.join("plugins")).unwrap().next().is_none());
    assert!(root.join("additions").is_dir());
    let root = unpack(&bench, "a", "app-dir");
    assert_eq!(read(&root, "app-dir-source/localdir/sub/file.txt"), "from a local dir\n");
    let root = unpack(&bench, "a", "app-tarball");
    assert_eq!(read(&root, "app-tarball-source/local-2.0/PKG-INFO"), "Version: 2.0\n");
    let root = unpack(&bench, "a", "app-plug");
    assert_eq!(read(&root, "plugins/plugin-one-2.0/README"), "plugin one\n");
    assert_eq!(read(&root, "plugins/plugin-two/two.txt"), "plugin two\n");
    assert_eq!(read(&root, "additions/extra/add.txt"), "an addition\n");
    assert!(!read(&root, "ls.txt").contains("app-plug-source"));
    let ctx = tree.join("app-plug");
    assert!(!ctx.join("app-plug-archive").exists(), "a disabled source makes no archive");
    let root = unpack(&bench, "a", "app-git");
    let checkout = root.join("app-git-source/app-git-archive-v1");
    assert_eq!(read(&checkout, "version.txt"), "one\n", "the tag, not HEAD");
    let git_out = |args: &[&str]| {
        let o = Command::new("git").arg("-C").arg(&checkout).args(args).output().unwrap();
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(git_out(&["describe", "--tags"]), "v1", "pbr can compute the version");
    assert_eq!(git_out(&["remote"]), "", "origin is removed, as kolla does");
    assert_eq!(git_out(&["status", "--porcelain"]), "", "the index matches the checkout");

    // Each image's provenance names the archives that went into its context, by the digest of the file
    // there: the url download is the served tarball (its pinned sum), git the commit its tag resolved to,
    // plugins and additions each by their own archive. The SBOM lists them too.
    let sources = |name: &str| -> BTreeMap<String, serde_json::Value> {
        let tag = format!("kolla/{name}:{KOLLA_TAG}");
        let run = run_bounded(&mut bench.kolla("a", &["provenance", &tag]), LIMIT).ok();
        let s: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        s["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["annotations"]["role"] == "source")
            .map(|d| (d["name"].as_str().unwrap().to_owned(), d.clone()))
            .collect()
    };
    let url = sources("app-url");
    assert_eq!(url.keys().collect::<Vec<_>>(), ["app-url-archive"]);
    assert_eq!(url["app-url-archive"]["digest"]["sha256"], sum.as_str());
    assert_eq!(url["app-url-archive"]["uri"], server.url("app-1.0.tar.gz").as_str());
    let commit =
        Command::new("git").arg("-C").arg(data.join("repo")).args(["rev-parse", "v1^{commit}"]).output().unwrap();
    let commit = String::from_utf8(commit.stdout).unwrap().trim().to_owned();
    let git_src = &sources("app-git")["app-git-archive"];
    assert_eq!(git_src["annotations"]["reference"], commit.as_str(), "{git_src}");
    assert_eq!(git_src["uri"], format!("git+{}@{commit}", d("repo")).as_str());
    let plug = sources("app-plug");
    assert_eq!(
        plug.keys().collect::<Vec<_>>(),
        ["app-plug-additions-extra-archive", "app-plug-plugin-one-archive", "app-plug-plugin-two-archive"]
    );
    assert_eq!(plug["app-plug-plugin-one-archive"]["digest"]["sha256"], sha256_hex(&plugin).as_str());
    let run = run_bounded(&mut bench.kolla("a", &["sbom", &format!("kolla/app-url:{KOLLA_TAG}")]), LIMIT).ok();
    let sbom: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let listed = sbom["packages"].as_array().unwrap().iter().find(|p| p["name"] == "app-url-archive").unwrap();
    assert_eq!(listed["checksums"][0]["checksumValue"], sum.as_str());

    // A rebuild re-validates the downloads (304) and builds nothing.
    server.clear();
    let (_, s) = summary(&bench, &tree, "a", &conf, &[]);
    assert_eq!(s["layers_built"], 0, "{s}");
    assert!(server.hits().iter().all(|h| h.status == 304), "{:?}", server.hits());
    assert!(!server.hits().is_empty());

    // A second state directory (its own source cache) builds the very same images.
    bench.fresh_state("b");
    let (_, _) = summary(&bench, &tree, "b", &conf, &[]);
    let (da, db) = (bench.tree_digests("a"), bench.tree_digests("b"));
    assert_eq!(da, db, "archives are byte-deterministic");
    assert_eq!(da.len(), 5);
    bench.fsck_ok("a");

    // --nocache downloads again (200, not 304).
    server.clear();
    summary(&bench, &tree, "a", &conf, &["--nocache", "app-url"]);
    assert!(server.hits().iter().any(|h| h.status == 200), "{:?}", server.hits());
}

#[test]
fn a_hostile_plugin_archive_stays_in_its_folder() {
    let bench = Bench::new();
    let tree = bench.dir.join("evil-tree");
    let outside = bench.dir.join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("sentinel"), "untouched\n").unwrap();

    // A symlink to a host directory, then a file written through it; and a `..` name.
    let mut raw = Vec::new();
    {
        let mut t = tar::Builder::new(&mut raw);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        t.append_link(&mut h, "evil/link", &outside).unwrap();
        for name in ["evil/link/sentinel", "evil/link/pwned"] {
            let mut h = tar::Header::new_gnu();
            h.set_size(6);
            h.set_mode(0o644);
            t.append_data(&mut h, name, &b"pwned\n"[..]).unwrap();
        }
        t.finish().unwrap();
    }
    let evil = bench.dir.join("evil.tar");
    fs::write(&evil, raw).unwrap();
    image(&tree, "victim", "ADD plugins-archive /\n");
    let conf = bench.dir.join("evil.conf");
    fs::write(&conf, format!("[victim-plugin-evil]\ntype = local\nlocation = {}\n", evil.display())).unwrap();
    bench.fresh_state("e");
    let (run, s) = summary(&bench, &tree, "e", &conf, &[]);
    assert_eq!(fs::read_to_string(outside.join("sentinel")).unwrap(), "untouched\n");
    assert!(!outside.join("pwned").exists());
    if run.status.success() {
        // Confined: the link is kept as a link inside the plugins folder, nothing went through it.
        let root = unpack(&bench, "e", "victim");
        assert!(root.join("plugins/evil/link").is_symlink());
    } else {
        assert_eq!(names(&s["failed"]), ["victim"]);
        assert_contains(&run.stderr, &["[victim-plugin-evil]", "evil.tar", "evil/link/sentinel"]);
    }
}

/// A tarball (gzip) with a setuid-root file and a character device under `top`.
fn privileged_tarball(top: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    {
        let mut t = tar::Builder::new(&mut gz);
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o4755);
        h.set_size(3);
        h.set_mtime(1_600_000_000);
        t.append_data(&mut h, format!("{top}/suid"), &b"#!\n"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_mode(0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
        h.set_size(0);
        t.append_data(&mut h, format!("{top}/null"), std::io::empty()).unwrap();
        t.finish().unwrap();
    }
    gz.finish().unwrap()
}

#[test]
fn source_credentials_stay_secret_and_redirects_stay_out_of_private_networks() {
    use std::os::unix::fs::PermissionsExt;
    let bench = Bench::new();
    let tree = bench.dir.join("secret-tree");
    let app = tarball("app-1.0", &[("setup.cfg", "[metadata]\nname = app\n")]);
    let sum = sha256_hex(&app);
    let server = FileServer::start(BTreeMap::from([
        ("app-1.0.tar.gz".to_string(), app.clone()),
        ("plugin.tar.gz".to_string(), privileged_tarball("plugin")),
    ]));
    // A second server on another port of the loopback: a redirect there leaves the source's origin.
    let other = FileServer::start(BTreeMap::from([("app-1.0.tar.gz".to_string(), app.clone())]));
    server.redirect("moved.tar.gz", &other.url("app-1.0.tar.gz"));
    let password = format!("S3cret-{}", std::process::id());
    let with_password = |url: String| url.replacen("http://", &format!("http://builder:{password}@"), 1);

    image(&tree, "app-secret", "ADD app-secret-archive /src\nADD plugins-archive /\n");
    image(&tree, "app-gone", "ADD app-gone-archive /src\n");
    image(&tree, "app-moved", "ADD app-moved-archive /src\n");
    let conf = bench.dir.join("kolla-build.conf");
    fs::write(
        &conf,
        format!(
            "[app-secret]\ntype = url\nlocation = {secret}\nsha256 = amd64:{sum},arm64:{sum}\n\
             [app-secret-plugin-priv]\ntype = url\nlocation = {plugin}\n\
             [app-gone]\ntype = url\nlocation = {gone}\n\
             [app-moved]\ntype = url\nlocation = {moved}\n",
            secret = with_password(server.url("app-1.0.tar.gz")),
            plugin = server.url("plugin.tar.gz"),
            gone = with_password(server.url("missing.tar.gz")),
            moved = server.url("moved.tar.gz"),
        ),
    )
    .unwrap();
    bench.fresh_state("s");
    let logs = bench.dir.join("logs");
    let work = bench.dir.join("work");
    let (run, s) = summary(
        &bench,
        &tree,
        "s",
        &conf,
        &["--logs-dir", logs.to_str().unwrap(), "--work-dir", work.to_str().unwrap(), "--debug"],
    );
    assert_eq!(names(&s["built"]), ["app-secret"], "{}", run.stderr);
    let mut failed = names(&s["failed"]);
    failed.sort();
    assert_eq!(failed, ["app-gone", "app-moved"]);
    // The redirect to another loopback port was refused, and said so.
    assert_contains(&run.stderr, &["sent us to", "loopback or private address", "--allow-private-host"]);
    assert!(other.hits().is_empty(), "the refused redirect reached the other server: {:?}", other.hits());
    assert!(run.stderr.contains("builder:***@"), "the failing URL is shown, masked:\n{}", run.stderr);

    // The password is nowhere: output, logs, the state dir (download cache, provenance and SBOM
    // referrers), the work dir.
    let tag = format!("kolla/app-secret:{KOLLA_TAG}");
    let prov = run_bounded(&mut bench.kolla("s", &["provenance", &tag]), LIMIT).ok();
    let sbom = run_bounded(&mut bench.kolla("s", &["sbom", &tag]), LIMIT).ok();
    let cdx = run_bounded(&mut bench.kolla("s", &["sbom", "--format", "cyclonedx", &tag]), LIMIT).ok();
    for (what, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("provenance", &prov.stdout),
        ("SPDX", &sbom.stdout),
        ("CycloneDX", &cdx.stdout),
    ] {
        assert!(!text.contains(&password), "the source password leaked into {what}:\n{text}");
    }
    assert!(prov.stdout.contains("builder:***@127.0.0.1"), "provenance names the masked URL:\n{}", prov.stdout);
    for dir in [&logs, &bench.state("s"), &work] {
        for entry in walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok).filter(|e| e.file_type().is_file()) {
            let bytes = fs::read(entry.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains(&password),
                "the source password leaked into {}",
                entry.path().display()
            );
        }
    }

    // The plugin archive was unpacked on the host without its setuid bit or device node; the store's
    // extracted layers are private.
    let plugin = work.join("docker/app-secret/plugins/plugin");
    let suid = fs::metadata(plugin.join("suid")).unwrap().permissions().mode();
    assert_eq!(suid & 0o7777, 0o755, "setuid bit kept on the host");
    assert!(fs::symlink_metadata(plugin.join("null")).is_err(), "device node made on the host");
    for sub in ["layers", "tmp", "sources", "cache"] {
        let mode = fs::metadata(bench.state("s").join(sub)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{sub} is not private");
    }

    // Allowed explicitly, the redirect is followed.
    let other_host = other.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();
    let (run, s) = summary(&bench, &tree, "s", &conf, &["--allow-private-host", &other_host]);
    assert!(names(&s["built"]).contains(&"app-moved".to_owned()), "{}", run.stderr);
    assert!(!other.hits().is_empty());
}
