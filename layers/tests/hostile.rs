//! Hostile layers: every crafted stream either fails or writes inside the root only. For each
//! case, in both whiteout modes, the test checks that nothing appeared next to the root, that
//! the sentinel directory outside holds exactly its sentinel file, unmodified, and then runs the
//! case's own check of the result.

mod support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use layers::{ApplyOptions, LayerError, WhiteoutMode, apply_layer};
use support::{EntryType, RawTar, gzip, set_mtime};

const SENTINEL: &[u8] = b"sentinel: must never change\n";

/// Where a case runs: `base/root` is applied to, `base/outside/sentinel` must stay untouched.
struct Arena {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
}

impl Arena {
    fn new() -> Arena {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().to_path_buf();
        let root = base.join("root");
        let outside = base.join("outside");
        fs::create_dir(&root).unwrap();
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("sentinel"), SENTINEL).unwrap();
        set_mtime(&outside.join("sentinel"), 1_000_000_000);
        set_mtime(&outside, 1_000_000_000);
        Arena { _tmp: tmp, base, root, outside }
    }

    /// The absolute host path of the sentinel directory, as a hostile layer would name it.
    fn abs_outside(&self) -> String {
        self.outside.display().to_string()
    }

    fn check_outside(&self, case: &str) {
        let names = |p: &Path| {
            let mut v: Vec<String> =
                fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&self.base), ["outside", "root"], "{case}: something was written next to the root");
        assert_eq!(names(&self.outside), ["sentinel"], "{case}: something was written into the sentinel dir");
        let md = fs::symlink_metadata(self.outside.join("sentinel")).unwrap();
        assert!(md.file_type().is_file(), "{case}: sentinel replaced");
        assert_eq!(md.nlink(), 1, "{case}: sentinel got hardlinked");
        assert_eq!(md.mtime(), 1_000_000_000, "{case}: sentinel touched");
        assert_eq!(md.mode() & 0o7777, 0o644, "{case}: sentinel mode changed");
        assert_eq!(fs::read(self.outside.join("sentinel")).unwrap(), SENTINEL, "{case}: sentinel modified");
        assert_eq!(fs::symlink_metadata(&self.outside).unwrap().mtime(), 1_000_000_000, "{case}: dir touched");
    }
}

/// What a case must produce (beyond "nothing outside changed").
enum Expect {
    /// An error of this kind (checked by the closure on the error).
    Err(fn(&LayerError) -> bool),
    /// Success, then this check of the root.
    Ok(fn(&Arena)),
    /// An error of this kind, then this check of what was written before it.
    ErrThen(fn(&LayerError) -> bool, fn(&Arena)),
    /// Either an error or success: confinement is all that matters.
    Confined,
}

fn is_unsafe(e: &LayerError) -> bool {
    matches!(e, LayerError::Unsafe { .. })
}
fn is_invalid(e: &LayerError) -> bool {
    matches!(e, LayerError::Invalid { .. })
}
fn is_stream(e: &LayerError) -> bool {
    matches!(e, LayerError::Stream { .. })
}
fn is_any(_: &LayerError) -> bool {
    true
}

fn exists(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok()
}

/// A name that no real /etc has, for the "symlink to /etc" case.
fn etc_probe() -> String {
    format!("kolla-oci-hostile-{}", std::process::id())
}

type Case = (&'static str, fn(&Arena) -> Vec<u8>, Expect, Expect);

fn cases() -> Vec<Case> {
    use Expect::*;
    vec![
        ("dotdot file", |_| RawTar::new().file("../escape", b"x").finish(), Err(is_unsafe), Err(is_unsafe)),
        (
            "dotdot deep",
            |_| RawTar::new().file("../../../../tmp/escape", b"x").finish(),
            Err(is_unsafe),
            Err(is_unsafe),
        ),
        ("a/../../x", |_| RawTar::new().file("a/../../x", b"x").finish(), Err(is_unsafe), Err(is_unsafe)),
        ("dot then dotdot", |_| RawTar::new().file("./../x", b"x").finish(), Err(is_unsafe), Err(is_unsafe)),
        (
            "absolute path",
            |a| RawTar::new().file(&format!("{}/abs", a.abs_outside()), b"x").finish(),
            Ok(|a| assert!(a.root.join(a.outside.strip_prefix("/").unwrap()).join("abs").is_file())),
            Ok(|_| {}),
        ),
        ("dir entry climbing", |_| RawTar::new().dir("a/").dir("a/../../b/").finish(), Err(is_unsafe), Err(is_unsafe)),
        (
            "symlink absolute then write through",
            |a| RawTar::new().symlink("l", &a.abs_outside()).file("l/pwned", b"x").finish(),
            Confined,
            Confined,
        ),
        (
            "symlink relative climbing then write through",
            |_| RawTar::new().symlink("l", "../../../..").file("l/pwned", b"x").finish(),
            Ok(|a| assert!(a.root.join("pwned").is_file(), "`..` must stop at the root")),
            Ok(|a| assert!(a.root.join("pwned").is_file())),
        ),
        (
            "symlink to parent dir of root then write",
            |_| RawTar::new().symlink("up", "..").file("up/outside/sentinel", b"overwritten").finish(),
            Ok(|a| assert_eq!(fs::read(a.root.join("outside/sentinel")).unwrap(), b"overwritten")),
            Ok(|_| {}),
        ),
        (
            "symlink chain absolute",
            |a| {
                RawTar::new()
                    .symlink("a", "b")
                    .symlink("b", "c/../d")
                    .dir("c/")
                    .symlink("d", &a.abs_outside())
                    .file("a/pwned", b"x")
                    .finish()
            },
            Confined,
            Confined,
        ),
        (
            "symlink chain relative",
            |_| {
                RawTar::new()
                    .dir("x/")
                    .dir("x/y/")
                    .symlink("x/y/up", "../..")
                    .symlink("hop", "x/y/up/x/y/up/..")
                    .file("hop/pwned", b"x")
                    .finish()
            },
            Ok(|a| assert!(a.root.join("pwned").is_file())),
            Ok(|_| {}),
        ),
        (
            "symlink loop",
            |_| RawTar::new().symlink("p", "q").symlink("q", "p").file("p/file", b"x").finish(),
            Err(is_any),
            Err(is_any),
        ),
        (
            "symlink to /etc then dir entry under it",
            |_| RawTar::new().symlink("etc-link", "/etc").dir(&format!("etc-link/{}/", etc_probe())).finish(),
            Confined,
            Confined,
        ),
        (
            "symlink to /etc with etc in root",
            |_| RawTar::new().dir("etc/").symlink("etc-link", "/etc").file("etc-link/hosts", b"in root").finish(),
            Ok(|a| assert_eq!(fs::read(a.root.join("etc/hosts")).unwrap(), b"in root")),
            Ok(|a| assert_eq!(fs::read(a.root.join("etc/hosts")).unwrap(), b"in root")),
        ),
        (
            "symlink leaf replaced by file",
            |a| {
                RawTar::new()
                    .symlink("l", &format!("{}/sentinel", a.abs_outside()))
                    .file("l", b"replaces the link, not its target")
                    .finish()
            },
            Ok(|a| assert!(a.root.join("l").is_file())),
            Ok(|a| assert!(a.root.join("l").is_file())),
        ),
        (
            "symlink leaf replaced by dir",
            |a| RawTar::new().symlink("l", &a.abs_outside()).dir("l/").file("l/f", b"x").finish(),
            Ok(|a| assert!(fs::symlink_metadata(a.root.join("l")).unwrap().is_dir())),
            Ok(|_| {}),
        ),
        (
            "file replacing dir that holds an outward symlink",
            |a| {
                RawTar::new()
                    .dir("d/")
                    .symlink("d/l", &a.abs_outside())
                    .symlink("d/r", "../../outside")
                    .file("d", b"f")
                    .finish()
            },
            Ok(|a| assert!(a.root.join("d").is_file())),
            Ok(|_| {}),
        ),
        (
            "hardlink to ../outside",
            |_| RawTar::new().hardlink("h", "../outside/sentinel").finish(),
            Err(is_unsafe),
            Err(is_unsafe),
        ),
        (
            "hardlink to absolute host path",
            |a| RawTar::new().hardlink("h", &format!("{}/sentinel", a.abs_outside())).finish(),
            Err(is_invalid),
            Err(is_invalid),
        ),
        (
            "hardlink through outward symlink dir",
            |a| RawTar::new().symlink("d", &a.abs_outside()).hardlink("h", "d/sentinel").finish(),
            Err(is_invalid),
            Err(is_invalid),
        ),
        (
            "hardlink to symlink pointing outside",
            |a| {
                RawTar::new()
                    .symlink("s", &format!("{}/sentinel", a.abs_outside()))
                    .hardlink("h", "s")
                    .file("h", b"replaces h only")
                    .finish()
            },
            Ok(|a| {
                assert!(a.root.join("h").is_file());
                assert!(fs::symlink_metadata(a.root.join("s")).unwrap().file_type().is_symlink());
            }),
            Ok(|_| {}),
        ),
        (
            "hardlink to symlink keeps the link",
            |a| RawTar::new().symlink("s", &format!("{}/sentinel", a.abs_outside())).hardlink("h", "s").finish(),
            Ok(|a| {
                let md = fs::symlink_metadata(a.root.join("h")).unwrap();
                assert!(md.file_type().is_symlink(), "hardlink to a symlink must link the symlink itself");
                assert_eq!(md.ino(), fs::symlink_metadata(a.root.join("s")).unwrap().ino());
            }),
            Ok(|_| {}),
        ),
        ("hardlink to root", |_| RawTar::new().hardlink("h", "./").finish(), Err(is_unsafe), Err(is_unsafe)),
        (
            "hardlink to itself",
            |_| RawTar::new().file("f", b"x").hardlink("f", "f").finish(),
            Err(is_invalid),
            Err(is_invalid),
        ),
        ("whiteout of ..", |_| RawTar::new().file(".wh...", b"").finish(), Err(is_unsafe), Err(is_unsafe)),
        (
            "whiteout of .. in subdir",
            |_| RawTar::new().dir("a/").file("a/.wh...", b"").finish(),
            Err(is_unsafe),
            Err(is_unsafe),
        ),
        ("whiteout of .", |_| RawTar::new().file(".wh..", b"").finish(), Err(is_unsafe), Err(is_unsafe)),
        ("whiteout of nothing (root)", |_| RawTar::new().file("/.wh.", b"").finish(), Err(is_unsafe), Err(is_unsafe)),
        ("whiteout of /", |_| RawTar::new().file(".wh./", b"").finish(), Err(is_unsafe), Err(is_unsafe)),
        ("whiteout climbing", |_| RawTar::new().file("../.wh.outside", b"").finish(), Err(is_unsafe), Err(is_unsafe)),
        (
            "whiteout through outward symlink",
            |a| RawTar::new().symlink("l", &a.abs_outside()).file("l/.wh.sentinel", b"").finish(),
            Ok(|_| {}),
            Confined,
        ),
        (
            "whiteout through climbing symlink",
            |_| RawTar::new().file("victim", b"v").symlink("l", "../../..").file("l/.wh.victim", b"").finish(),
            Ok(|a| assert!(!exists(&a.root.join("victim")), "whiteout resolves in root")),
            Ok(|a| {
                let ft = fs::symlink_metadata(a.root.join("victim")).unwrap().file_type();
                assert!(ft.is_char_device());
            }),
        ),
        (
            "whiteout of a symlink does not follow it",
            |a| RawTar::new().symlink("l", &format!("{}/sentinel", a.abs_outside())).file(".wh.l", b"").finish(),
            Ok(|a| assert!(!exists(&a.root.join("l")))),
            Ok(|_| {}),
        ),
        (
            "opaque marker in symlinked dir",
            |a| RawTar::new().symlink("l", &a.abs_outside()).file("l/.wh..wh..opq", b"").finish(),
            Err(is_unsafe),
            Err(is_unsafe),
        ),
        (
            "opaque marker in relative symlinked dir",
            |_| RawTar::new().dir("d/").file("d/keep", b"k").symlink("l", "d").file("l/.wh..wh..opq", b"").finish(),
            Err(is_unsafe),
            Err(is_unsafe),
        ),
        (
            "PAX path renaming to ../x",
            |_| RawTar::new().pax(&[("path", b"../x")]).file("innocent", b"x").finish(),
            Err(is_unsafe),
            Err(is_unsafe),
        ),
        (
            "PAX path absolute",
            |_| RawTar::new().pax(&[("path", b"/pax-abs")]).file("innocent", b"x").finish(),
            Ok(|a| assert!(a.root.join("pax-abs").is_file() && !exists(&a.root.join("innocent")))),
            Ok(|_| {}),
        ),
        (
            "PAX linkpath outward then write through",
            |_| {
                RawTar::new()
                    .pax(&[("linkpath", b"../../outside")])
                    .symlink("l", "harmless")
                    .file("l/pwned", b"x")
                    .finish()
            },
            Confined,
            Confined,
        ),
        (
            "PAX hardlink target ../",
            |_| RawTar::new().pax(&[("linkpath", b"../outside/sentinel")]).hardlink("h", "ok").finish(),
            Err(is_unsafe),
            Err(is_unsafe),
        ),
        (
            "GNU longname with ..",
            |_| RawTar::new().gnu_long(EntryType::GNULongName, b"../gnu-escape").file("short", b"x").finish(),
            Err(is_unsafe),
            Err(is_unsafe),
        ),
        (
            "GNU longlink hardlink to ../",
            |_| RawTar::new().gnu_long(EntryType::GNULongLink, b"../outside/sentinel").hardlink("h", "x").finish(),
            Err(is_unsafe),
            Err(is_unsafe),
        ),
        (
            "GNU longname long and valid",
            |_| {
                let long = format!("dir1/{}", "n".repeat(200));
                RawTar::new().gnu_long(EntryType::GNULongName, long.as_bytes()).file("short", b"x").finish()
            },
            Ok(|a| assert!(a.root.join("dir1").join("n".repeat(200)).is_file() && !exists(&a.root.join("short")))),
            Ok(|a| assert!(a.root.join("dir1").join("n".repeat(200)).is_file())),
        ),
        (
            "device nodes",
            |_| {
                RawTar::new()
                    .dir("dev/")
                    .device(EntryType::Char, "dev/null", 1, 3)
                    .device(EntryType::Block, "dev/sda", 8, 0)
                    .device(EntryType::Fifo, "dev/fifo", 0, 0)
                    .finish()
            },
            Ok(|a| {
                let ft = |n: &str| fs::symlink_metadata(a.root.join(n)).unwrap().file_type();
                assert!(ft("dev/null").is_char_device() && ft("dev/sda").is_block_device() && ft("dev/fifo").is_fifo());
            }),
            Ok(|_| {}),
        ),
        (
            "huge declared size, short data",
            |_| {
                let mut t = RawTar::new();
                t.entry_sized(EntryType::Regular, b"huge", b"", 1 << 40, &[7u8; 1000]);
                t.0.clone()
            },
            Err(is_stream),
            Err(is_stream),
        ),
        (
            "size near u64::MAX",
            |_| {
                let mut t = RawTar::new();
                t.entry_sized(EntryType::Regular, b"max", b"", u64::MAX - 100, b"");
                t.0.clone()
            },
            Err(is_any),
            Err(is_any),
        ),
        (
            "directory declaring data",
            |_| {
                let mut t = RawTar::new();
                t.entry(EntryType::Directory, b"d/", b"", &[0u8; 4096]).file("after", b"x");
                t.finish()
            },
            Err(is_invalid),
            Err(is_invalid),
        ),
        (
            "truncated in a header",
            |_| {
                let t = RawTar::new().file("a", b"aaaa").file("b", b"bbbb").finish();
                t[..512 * 2 + 300].to_vec()
            },
            Err(is_stream),
            Err(is_stream),
        ),
        (
            "truncated in file data",
            |_| {
                let t = RawTar::new().file("a", &[b'a'; 5000]).finish();
                t[..512 + 3000].to_vec()
            },
            Err(is_stream),
            Err(is_stream),
        ),
        (
            "bad header checksum",
            |_| {
                let mut t = RawTar::new().file("a", b"x").finish();
                t[0] ^= 1;
                t
            },
            Err(is_stream),
            Err(is_stream),
        ),
        (
            "corrupt gzip",
            |_| {
                let mut g = gzip(&RawTar::new().file("a", &support::pseudo_random(200_000, 5, false)).finish());
                let mid = g.len() / 2;
                for b in &mut g[mid..mid + 64] {
                    *b ^= 0x5a;
                }
                g
            },
            Err(is_stream),
            Err(is_stream),
        ),
        (
            "truncated gzip",
            |_| {
                let g = gzip(&RawTar::new().file("a", &support::pseudo_random(200_000, 6, false)).finish());
                g[..g.len() / 2].to_vec()
            },
            Err(is_stream),
            Err(is_stream),
        ),
        (
            "truncated zstd",
            |_| {
                let z = zstd::encode_all(
                    &RawTar::new().file("a", &support::pseudo_random(200_000, 7, false)).finish()[..],
                    3,
                )
                .unwrap();
                z[..z.len() / 2].to_vec()
            },
            Err(is_stream),
            Err(is_stream),
        ),
        (
            "gzip bomb after a small file",
            |_| {
                // 1 MiB declared, then 128 MiB of zeros: end-of-archive, must not be written.
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
                let t = RawTar::new().file("small", &[1u8; 1 << 20]).0.clone();
                e.write_all(&t).unwrap();
                let zeros = vec![0u8; 1 << 20];
                for _ in 0..128 {
                    e.write_all(&zeros).unwrap();
                }
                e.finish().unwrap()
            },
            // The file is written exactly as declared; the 128 MiB of trailing data are refused
            // after the budget instead of being read to the end.
            ErrThen(is_stream, |a| assert_eq!(fs::metadata(a.root.join("small")).unwrap().len(), 1 << 20)),
            ErrThen(is_stream, |a| assert_eq!(fs::metadata(a.root.join("small")).unwrap().len(), 1 << 20)),
        ),
        (
            "gzip with record padding after the archive",
            |_| gzip(&[RawTar::new().file("a", b"x").finish(), vec![0u8; 9 * 1024]].concat()),
            Ok(|a| assert!(a.root.join("a").is_file())),
            Ok(|_| {}),
        ),
        (
            "gzip bomb in a PAX record",
            |_| {
                // A PAX header declaring 1 GiB, backed by zeros: refused after the metadata budget.
                let mut h = tar::Header::new_ustar();
                h.set_entry_type(tar::EntryType::XHeader);
                h.set_size(1 << 30);
                h.set_cksum();
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
                e.write_all(h.as_bytes()).unwrap();
                let zeros = vec![0u8; 1 << 20];
                for _ in 0..64 {
                    e.write_all(&zeros).unwrap();
                }
                e.finish().unwrap()
            },
            Err(is_stream),
            Err(is_stream),
        ),
        ("./ as a file", |_| RawTar::new().file("./", b"root?").finish(), Err(is_unsafe), Err(is_unsafe)),
        ("/ as a symlink", |_| RawTar::new().symlink("/", "/etc").finish(), Err(is_unsafe), Err(is_unsafe)),
        (
            "root as hardlink",
            |_| RawTar::new().file("f", b"x").hardlink(".", "f").finish(),
            Err(is_unsafe),
            Err(is_unsafe),
        ),
        ("file under a file", |_| RawTar::new().file("f", b"x").file("f/g", b"y").finish(), Err(is_any), Err(is_any)),
        (
            "unsupported entry type",
            |_| RawTar::new().entry(EntryType::new(b'V'), b"volume", b"", b"").finish(),
            Err(is_invalid),
            Err(is_invalid),
        ),
        (
            "NUL in PAX path",
            |_| RawTar::new().pax(&[("path", b"a\0/../../x")]).file("f", b"x").finish(),
            Err(is_unsafe),
            Err(is_unsafe),
        ),
        (
            "overlay xattr smuggled in PAX",
            |_| {
                RawTar::new()
                    .pax(&[
                        ("SCHILY.xattr.user.overlay.opaque", b"y"),
                        ("SCHILY.xattr.trusted.overlay.redirect", b"/x"),
                    ])
                    .dir("d/")
                    .finish()
            },
            Ok(|a| assert_eq!(xattr::get(a.root.join("d"), "user.overlay.opaque").unwrap(), None)),
            Ok(|a| assert_eq!(xattr::get(a.root.join("d"), "user.overlay.opaque").unwrap(), None)),
        ),
    ]
}

#[test]
fn hostile_layers_are_refused_or_confined() {
    let cases = cases();
    assert!(cases.len() >= 30);
    let probe = Path::new("/etc").join(etc_probe());
    for (name, build, expect_apply, expect_overlay) in &cases {
        for (mode, expect) in [(WhiteoutMode::Apply, expect_apply), (WhiteoutMode::Overlay, expect_overlay)] {
            let case = format!("{name} [{mode:?}]");
            let arena = Arena::new();
            let stream = build(&arena);
            let res = apply_layer(
                &stream[..],
                &arena.root,
                &ApplyOptions { whiteouts: mode, same_owner: true, ..Default::default() },
            );
            arena.check_outside(&case);
            assert!(!exists(&probe), "{case}: created {}", probe.display());
            match (expect, res) {
                (Expect::Err(ok), Err(e)) => {
                    assert!(ok(&e), "{case}: unexpected error kind: {e:?}")
                }
                (Expect::ErrThen(ok, check), Err(e)) => {
                    assert!(ok(&e), "{case}: unexpected error kind: {e:?}");
                    check(&arena);
                }
                (Expect::Err(_) | Expect::ErrThen(..), Ok(s)) => panic!("{case}: applied ({s:?}) but must fail"),
                (Expect::Ok(check), Ok(_)) => check(&arena),
                (Expect::Ok(_), Err(e)) => panic!("{case}: failed: {e:?}"),
                (Expect::Confined, _) => {}
            }
        }
    }
}

/// Error messages name the entry and the reason.
#[test]
fn errors_name_the_entry() {
    let arena = Arena::new();
    let t = RawTar::new().file("ok", b"x").file("sub/../../evil", b"x").finish();
    let err = apply_layer(&t[..], &arena.root, &ApplyOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("sub/../../evil") && msg.contains("escapes the root"), "{msg}");
}

/// Without permission to mknod (a user namespace, as in a rootless build), device nodes are
/// skipped and counted while everything else applies. The test re-runs itself under
/// `unshare --user --map-root-user`.
#[test]
fn devices_skipped_when_mknod_is_not_permitted() {
    const CHILD: &str = "KOLLA_LAYERS_ROOTLESS_CHILD";
    if let Some(dir) = std::env::var_os(CHILD) {
        let root = PathBuf::from(dir);
        let t = RawTar::new()
            .dir("dev/")
            .device(EntryType::Char, "dev/null", 1, 3)
            .device(EntryType::Block, "dev/sda", 8, 0)
            .device(EntryType::Fifo, "dev/fifo", 0, 0)
            .file("etc/hostname", b"h")
            .file(".wh.gone", b"")
            .finish();
        let stats = apply_layer(
            &t[..],
            &root,
            &ApplyOptions { whiteouts: WhiteoutMode::Overlay, same_owner: true, ..Default::default() },
        )
        .unwrap();
        assert_eq!(stats.skipped_devices, 2, "{stats:?}");
        assert!(!exists(&root.join("dev/null")) && !exists(&root.join("dev/sda")));
        assert!(fs::symlink_metadata(root.join("dev/fifo")).unwrap().file_type().is_fifo());
        // The whiteout device (0:0) is allowed without privilege (Linux 5.8+).
        assert!(fs::symlink_metadata(root.join("gone")).unwrap().file_type().is_char_device());
        return;
    }
    let arena = Arena::new();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user"])
        .arg(&exe)
        .args(["--exact", "devices_skipped_when_mknod_is_not_permitted", "--nocapture", "--test-threads=1"])
        .env(CHILD, &arena.root)
        .output()
        .expect("cannot run unshare (util-linux)");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && log.contains("1 passed"), "child run failed:\n{log}");
    assert!(arena.root.join("etc/hostname").is_file(), "child did not apply into the root");
    arena.check_outside("rootless devices");
}
