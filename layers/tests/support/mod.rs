//! Shared helpers of the layer tests: tree snapshots, crafted tar streams, tool runners.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use layers::Digest;

/// Everything the tests compare about one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub content: Option<Digest>,
    pub target: Option<Vec<u8>>,
    pub rdev: u64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// For multiply-linked files: the first path (in sorted order) sharing the inode.
    pub link_group: Option<String>,
}

/// Snapshot of a tree, keyed by relative path. xattrs `security.selinux` and overlay xattrs are
/// left out.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, String> = HashMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let md = fs::symlink_metadata(e.path()).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else {
            's'
        };
        let link_group =
            (kind != 'd' && md.nlink() > 1).then(|| inodes.entry(md.ino()).or_insert_with(|| rel.clone()).clone());
        let mut xattrs = BTreeMap::new();
        if let Ok(names) = xattr::list(e.path()) {
            for n in names {
                let n = n.to_string_lossy().into_owned();
                if n == "security.selinux" || n.contains(".overlay.") {
                    continue;
                }
                if let Ok(Some(v)) = xattr::get(e.path(), &n) {
                    xattrs.insert(n, v);
                }
            }
        }
        out.insert(
            rel,
            Node {
                kind,
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: md.mtime(),
                content: (kind == 'f').then(|| Digest::of_bytes(&fs::read(e.path()).unwrap())),
                target: (kind == 'l').then(|| fs::read_link(e.path()).unwrap().as_os_str().as_bytes().to_vec()),
                rdev: if kind == 'c' || kind == 'b' { md.rdev() } else { 0 },
                xattrs,
                link_group,
            },
        );
    }
    out
}

/// Asserts two snapshots are equal, reporting the first differing paths readably.
pub fn assert_same_tree(what: &str, got: &BTreeMap<String, Node>, want: &BTreeMap<String, Node>) {
    let mut diffs = Vec::new();
    for (k, w) in want {
        match got.get(k) {
            None => diffs.push(format!("missing {k}")),
            Some(g) if g != w => diffs.push(format!("{k}:\n   got {g:?}\n  want {w:?}")),
            _ => {}
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        diffs.push(format!("unexpected {k}"));
    }
    assert!(diffs.is_empty(), "{what}: trees differ:\n{}", diffs.join("\n"));
}

/// Runs a command, panicking with its output when it fails or cannot start.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?} (is the tool installed?): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Mounts an overlay (with `userxattr`); `upper` = None mounts read-only from the lowers.
/// Panics with the reason when mounting is impossible (the tests need root).
pub fn mount_overlay(lowers: &[&Path], upper: Option<(&Path, &Path)>, target: &Path) -> Mounted {
    let lower = lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
    let mut opts = format!("lowerdir={lower},userxattr");
    if let Some((up, work)) = upper {
        opts.push_str(&format!(",upperdir={},workdir={}", up.display(), work.display()));
    }
    run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(target));
    Mounted(target.to_path_buf())
}

/// Unmounts on drop, so a failing assertion does not leave a mount behind.
pub struct Mounted(pub PathBuf);

impl Mounted {
    pub fn unmount(self) {}
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A crafted tar stream, built header by header so that every hostile form can be expressed.
#[derive(Default)]
pub struct RawTar(pub Vec<u8>);

/// Tar entry kinds used by the crafted streams.
pub use tar::EntryType;

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    /// Appends a header with raw `name` (not validated) and `data` (padded).
    pub fn entry(&mut self, kind: EntryType, name: &[u8], link: &[u8], data: &[u8]) -> &mut Self {
        self.entry_sized(kind, name, link, data.len() as u64, data)
    }

    /// Like `entry` but with a declared size that may differ from the data given.
    pub fn entry_sized(&mut self, kind: EntryType, name: &[u8], link: &[u8], size: u64, data: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        set(&mut h.as_old_mut().name, name);
        set(&mut h.as_old_mut().linkname, link);
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(size);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.pad();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(EntryType::Regular, name.as_bytes(), b"", data)
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(EntryType::Directory, name.as_bytes(), b"", b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(EntryType::Symlink, name.as_bytes(), target.as_bytes(), b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.entry(EntryType::Link, name.as_bytes(), target.as_bytes(), b"")
    }

    /// A device header with uid/gid/mtime fields (and the device numbers of a FIFO) left empty
    /// (NUL), as some tools write them: they must read as 0.
    pub fn device(&mut self, kind: EntryType, name: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        set(&mut h.as_old_mut().name, name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(0o600);
        h.set_size(0);
        if kind != EntryType::Fifo {
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
        }
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self
    }

    /// A PAX `x` header with the given records, describing the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3;
            let mut d = 1;
            while (rest + d).to_string().len() != d {
                d += 1;
            }
            body.extend_from_slice(format!("{} {k}=", rest + d).as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        self.entry(EntryType::XHeader, b"PaxHeader", b"", &body)
    }

    /// A GNU `././@LongLink` entry (`L` for the next name, `K` for the next link target).
    pub fn gnu_long(&mut self, kind: EntryType, value: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        set(&mut h.as_old_mut().name, b"././@LongLink");
        h.set_entry_type(kind);
        h.set_mode(0o644);
        let mut v = value.to_vec();
        v.push(0);
        h.set_size(v.len() as u64);
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(&v);
        self.pad();
        self
    }

    fn pad(&mut self) {
        let rem = self.0.len() % 512;
        if rem != 0 {
            self.0.resize(self.0.len() + 512 - rem, 0);
        }
    }

    /// The stream with its end-of-archive blocks.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut v = self.0.clone();
        v.resize(v.len() + 1024, 0);
        v
    }
}

fn set(field: &mut [u8], v: &[u8]) {
    let n = v.len().min(field.len());
    field[..n].copy_from_slice(&v[..n]);
}

/// gzip with flate2 (single member).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Sets a file's mtime (seconds) without following symlinks.
pub fn set_mtime(p: &Path, secs: i64) {
    let t = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec { tv_sec: secs, tv_nsec: 0 },
        last_modification: rustix::fs::Timespec { tv_sec: secs, tv_nsec: 0 },
    };
    rustix::fs::utimensat(rustix::fs::CWD, p, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
}

/// Deterministic pseudo-random bytes (xorshift), `text` = limited to a small alphabet.
pub fn pseudo_random(len: usize, seed: u64, text: bool) -> Vec<u8> {
    let mut x = seed | 1;
    let words: &[&[u8]] = &[b"layer ", b"image ", b"kolla ", b"tar\n", b"overlay ", b"digest ", b"nova ", b"{}\n"];
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if text {
            out.extend_from_slice(words[(x % words.len() as u64) as usize]);
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}
