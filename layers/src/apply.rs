//! Applying a layer onto a root directory, confined to it.
//!
//! Confinement does not rely on checking paths: every parent directory is opened with
//! `openat2(root, parent, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..` and symlinks
//! (absolute or relative, planted by an earlier entry or already in the root) resolve as if
//! `root` were `/`. The entry itself is then created *relative to that directory fd*
//! (`mkdirat`, `openat(O_NOFOLLOW|O_EXCL)`, `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`,
//! `mknodat`), and metadata is set through the new fd or with `AT_SYMLINK_NOFOLLOW`. So no
//! entry can make a later one write outside the root, and the last path component is never
//! followed.
//!
//! Choices, documented:
//! * Paths are normalised lexically: leading `/` and `.` components dropped, `a/../b` → `b`;
//!   a `..` that would climb above the root is refused (not clamped).
//! * A hardlink is made to the target *entry itself*, resolved in the root like any path;
//!   a hardlink to a symlink links the symlink (it is not followed), as `link(2)` does.
//! * An existing entry is replaced by a new one of another kind (a file over a directory
//!   removes the directory tree, as Docker does); a directory over a directory is merged.
//! * Header-only entry kinds (directories, links, devices) declaring data are refused: tar
//!   readers disagree on whether to skip that data (parser-differential smuggling).
//! * At most [`METADATA_BUDGET`] bytes are read between two entries (PAX and GNU long-name
//!   records, padding), so a bomb hidden in a metadata record cannot exhaust memory. File data
//!   is written exactly as declared, never more.
//! * `user.overlay.*` / `trusted.overlay.*` xattrs in a layer are dropped (they would change the
//!   meaning of an overlay lowerdir); xattrs that cannot be set without privilege
//!   (`trusted.*`, `security.*` in a user namespace) are skipped with a warning; xattrs on
//!   symlinks and device nodes are skipped (they cannot be set through a file descriptor).
//! * After the end-of-archive blocks the stream is read to its end, so that the gzip CRC and
//!   the zstd checksum are verified; more than [`METADATA_BUDGET`] bytes there is an error.

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps, XattrFlags, makedev};
use rustix::io::Errno;
use tar::EntryType;

use crate::digest::HashingReader;
use crate::error::show;
use crate::tree::{WH_OPAQUE, WH_PREFIX};
use crate::{Digest, LayerError};

/// Most bytes of tar metadata (extension records, padding) accepted between two entries, and
/// after the end-of-archive blocks.
pub const METADATA_BUDGET: u64 = 16 << 20;

/// What to do with OCI whiteout entries (`.wh.<name>`, `.wh..wh..opq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Delete the lower paths (building a flattened rootfs in one directory).
    #[default]
    Apply,
    /// Keep them as overlayfs markers, for a directory used as an overlay lowerdir mounted with
    /// `userxattr`: a char device 0:0 named `<name>`, and `user.overlay.opaque=y` on opaque
    /// directories.
    Overlay,
}

/// How a layer is applied.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    /// Whiteout handling.
    pub whiteouts: WhiteoutMode,
    /// Chown entries to the uid/gid of the layer (needs root, or a user namespace mapping them).
    pub same_owner: bool,
    /// The archive is unpacked onto the host, not into an image layer (kolla's plugin and addition
    /// archives in a build context): setuid and setgid bits are dropped and device nodes skipped, so
    /// that what an archive holds cannot give a host user root or a disk. (Layers keep both.)
    pub host_safe: bool,
}

/// What one application did, and what it read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyStats {
    /// Entries processed (including whiteouts; extension headers not counted).
    pub entries: u64,
    /// Device nodes not created because mknod is not permitted (rootless).
    pub skipped_devices: u64,
    /// Regular-file bytes written.
    pub bytes: u64,
    /// sha256 of the whole uncompressed stream: the layer's diff_id. A caller that files the result
    /// under a diff_id claimed by an image config compares it with this before trusting the name.
    pub diff_id: Digest,
}

/// The counters kept while applying.
#[derive(Default)]
struct Counts {
    entries: u64,
    skipped_devices: u64,
    bytes: u64,
}

/// Applies a layer (gzip incl. multi-member, zstd or plain tar, sniffed by magic) onto `root`,
/// confined to it. See the module documentation for the exact rules.
pub fn apply_layer(reader: impl Read, root: &Path, opts: &ApplyOptions) -> Result<ApplyStats, LayerError> {
    let root_fd = rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| LayerError::io(root.display().to_string(), "open root directory", e.into()))?;
    let stream = |entry: Option<&Vec<u8>>, source| LayerError::Stream { entry: entry.map(|p| show(p)), source };
    let input = HashingReader::new(decompress(reader).map_err(|e| stream(None, e))?);
    let budget = Rc::new(Cell::new(u64::MAX));
    let mut archive = tar::Archive::new(Budgeted { inner: input, budget: budget.clone() });
    let mut ap = Applier {
        root: root_fd,
        opts,
        created: HashSet::new(),
        dirs: Vec::new(),
        stats: Counts::default(),
        buf: vec![0; 256 << 10],
    };
    let mut last: Option<Vec<u8>> = None;
    let mut entries = archive.entries().map_err(|e| stream(None, e))?;
    loop {
        budget.set(METADATA_BUDGET);
        let next = entries.next();
        budget.set(u64::MAX);
        match next {
            None => break,
            Some(Err(e)) => return Err(stream(last.as_ref(), e)),
            Some(Ok(entry)) => last = Some(ap.entry(entry)?),
        }
    }
    // Read what follows the end-of-archive blocks (record padding), so that the decoder checks
    // its trailer (gzip CRC-32 and length, zstd checksum) — within the budget.
    budget.set(METADATA_BUDGET);
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| stream(last.as_ref(), e))?;
    ap.finish_dirs()?;
    let (diff_id, _) = rest.inner.finish();
    let Counts { entries, skipped_devices, bytes } = ap.stats;
    Ok(ApplyStats { entries, skipped_devices, bytes, diff_id })
}

/// sha256 and length of a layer's uncompressed stream (gzip, zstd or plain, sniffed as
/// [`decompress`] does): its diff_id, checked without unpacking anything — what a pull does before
/// it tags an image whose config claims diff_ids.
pub fn uncompressed_digest(reader: impl Read) -> io::Result<(Digest, u64)> {
    crate::digest_reader(decompress(reader)?)
}

/// Picks the decoder from the first bytes: gzip `1f 8b` (multi-member), zstd `28 b5 2f fd`, else plain
/// tar. Public so that callers sniffing archives (Dockerfile ADD) use the same rules as the applier.
pub fn decompress<'a>(mut r: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut magic = [0u8; 4];
    let mut n = 0;
    while n < magic.len() {
        match r.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let head = io::Cursor::new(magic[..n].to_vec()).chain(r);
    Ok(if magic[..n].starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(head))
    } else if magic[..n] == [0x28, 0xb5, 0x2f, 0xfd] {
        Box::new(zstd::stream::read::Decoder::new(head)?)
    } else {
        Box::new(BufReader::with_capacity(256 << 10, head))
    })
}

/// Whether `r` holds a tar archive, plain or compressed with gzip or zstd: its first header block
/// carries the `ustar` magic. A corrupt compressed stream is simply "not an archive" (Dockerfile ADD
/// then copies the file as it is, and kolla refuses such a source).
pub fn is_tar(r: impl Read) -> io::Result<bool> {
    let mut head = Vec::with_capacity(512);
    let _ = decompress(r)?.take(512).read_to_end(&mut head);
    Ok(head.len() == 512 && &head[257..262] == b"ustar")
}

/// Fails reads beyond the current budget (see [`METADATA_BUDGET`]).
struct Budgeted<R> {
    inner: R,
    budget: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.budget.get();
        if left == 0 && !buf.is_empty() {
            return Err(io::Error::other(format!(
                "over {METADATA_BUDGET} bytes of tar metadata before an entry, \
                 or of data after the end of the archive"
            )));
        }
        let max = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.budget.set(left - n as u64);
        Ok(n)
    }
}

/// Splits a tar path into normal components: drops empty and `.` components (so a leading `/`
/// is stripped), resolves `..` lexically, refuses a `..` that climbs above the root and NUL.
pub(crate) fn normalize(raw: &[u8]) -> Result<Vec<&[u8]>, String> {
    if raw.contains(&0) {
        return Err("path contains a NUL byte".into());
    }
    let mut out: Vec<&[u8]> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if out.pop().is_none() {
                    return Err("path escapes the root with `..`".into());
                }
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Metadata of one entry, parsed before its data is read.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// Parses `seconds[.fraction]` (PAX `mtime`).
fn pax_time(v: &[u8]) -> Option<Timespec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tv_nsec = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    // A negative time with a fraction (-1.5) means -2 s + 0.5 s.
    Some(if tv_nsec > 0 && secs.starts_with('-') {
        Timespec { tv_sec: tv_sec - 1, tv_nsec: 1_000_000_000 - tv_nsec }
    } else {
        Timespec { tv_sec, tv_nsec }
    })
}

struct Applier<'a> {
    root: OwnedFd,
    opts: &'a ApplyOptions,
    /// Paths created or replaced by this layer (Apply mode): an opaque marker spares them.
    created: HashSet<Vec<u8>>,
    /// Directories whose mtime is set at the end, once their children exist.
    dirs: Vec<(Vec<Vec<u8>>, Timespec)>,
    stats: Counts,
    buf: Vec<u8>,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

fn join(comps: &[&[u8]]) -> Vec<u8> {
    comps.join(&b'/')
}

fn is_errno(e: &io::Error, errno: Errno) -> bool {
    e.raw_os_error() == Some(errno.raw_os_error())
}

impl Applier<'_> {
    /// Applies one entry; returns its raw path (for error context of what follows).
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<Vec<u8>, LayerError> {
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(raw);
        }
        let shown = show(&raw);
        let unsafe_ = |reason: String| LayerError::Unsafe { path: show(&raw), reason };
        let invalid = |reason: String| LayerError::Invalid { path: show(&raw), reason };
        let comps = normalize(&raw).map_err(unsafe_)?;
        self.stats.entries += 1;
        let size = entry.size();
        let has_data = matches!(kind, EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse);
        if !has_data && size > 0 {
            return Err(invalid(format!("a {kind:?} entry declares {size} bytes of data")));
        }

        if let Some((last, parent)) = comps.split_last()
            && (*last == WH_OPAQUE || last.starts_with(WH_PREFIX))
        {
            // Marker files carry no data that matters; skip what they declare.
            io::copy(&mut entry, &mut io::sink())
                .map_err(|e| LayerError::Stream { entry: Some(shown.clone()), source: e })?;
            return if *last == WH_OPAQUE {
                self.opaque(parent, &shown).map(|()| raw)
            } else {
                let name = &last[WH_PREFIX.len()..];
                if name.is_empty() || name == b"." || name == b".." {
                    return Err(unsafe_("whiteout names no file (`.`, `..` or nothing)".into()));
                }
                self.whiteout(parent, name, &shown).map(|()| raw)
            };
        }

        let meta = self.meta(&mut entry).map_err(|e| invalid(format!("bad header field: {e}")))?;
        let Some((name, parent)) = comps.split_last() else {
            if kind != EntryType::Directory {
                return Err(unsafe_(format!("a {kind:?} entry would replace the root directory")));
            }
            let io_err = |e: io::Error| LayerError::io(shown.clone(), "set metadata of the root", e);
            self.set_meta(self.root.as_fd(), &meta, &shown).map_err(io_err)?;
            self.dirs.push((Vec::new(), meta.mtime));
            return Ok(raw);
        };
        let pfd = self
            .open_dir(parent, true)
            .map_err(|e| LayerError::io(shown.clone(), "open parent directory in root", e))?
            .expect("created when missing");
        let shown_ref = &shown;
        let io_err = |op| move |e: io::Error| LayerError::io(shown_ref.clone(), op, e);
        match kind {
            EntryType::Directory => {
                self.directory(&pfd, name, &meta, &shown).map_err(io_err("create directory"))?;
                self.dirs.push((comps.iter().map(|c| c.to_vec()).collect(), meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.file(&pfd, name, &meta, &mut entry, size, &shown)?;
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                if target.is_empty() || target.contains(&0) {
                    return Err(invalid("symlink with an empty or NUL-containing target".into()));
                }
                self.symlink(&pfd, name, &target, &meta).map_err(io_err("create symlink"))?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                let tcomps = normalize(&target).map_err(|r| unsafe_(format!("hardlink target: {r}")))?;
                let Some((tname, tparent)) = tcomps.split_last() else {
                    return Err(unsafe_("hardlink to the root directory".into()));
                };
                if tcomps == comps {
                    return Err(invalid("hardlink to itself".into()));
                }
                let tpfd = self
                    .open_dir(tparent, false)
                    .map_err(io_err("open hardlink target directory"))?
                    .ok_or_else(|| invalid(format!("hardlink target {} does not exist", show(&target))))?;
                rustix::fs::statat(&tpfd, *tname, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| invalid(format!("hardlink target {}: {}", show(&target), io::Error::from(e))))?;
                self.clear(&pfd, name, false).map_err(io_err("remove existing entry"))?;
                rustix::fs::linkat(&tpfd, *tname, &pfd, *name, AtFlags::empty())
                    .map_err(|e| io_err("create hardlink")(e.into()))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                // FIFOs have no device number; empty fields read as 0 (as in Go's archive/tar).
                let h = entry.header();
                let dev = |raw: Option<&[u8; 8]>, v: io::Result<Option<u32>>| match raw {
                    Some(raw) if kind != EntryType::Fifo && raw.iter().any(|&b| b != 0 && b != b' ') => {
                        v.map(|d| d.unwrap_or(0)).map_err(|e| invalid(e.to_string()))
                    }
                    _ => Ok(0),
                };
                let ustar = h.as_ustar().map(|u| (&u.dev_major, &u.dev_minor));
                let gnu = h.as_gnu().map(|g| (&g.dev_major, &g.dev_minor));
                let fields = ustar.or(gnu);
                let major = dev(fields.map(|f| f.0), h.device_major())?;
                let minor = dev(fields.map(|f| f.1), h.device_minor())?;
                self.node(&pfd, name, kind, makedev(major, minor), &meta, &shown)
                    .map_err(io_err("create device node"))?;
            }
            other => return Err(invalid(format!("unsupported entry type {other:?}"))),
        }
        if self.opts.whiteouts == WhiteoutMode::Apply {
            self.created.insert(join(&comps));
        }
        Ok(raw)
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = entry.header();
        let old = h.as_old();
        // An empty (all NUL or space) numeric field reads as 0, as in Go's archive/tar.
        let num = |raw: &[u8], parsed: &dyn Fn() -> io::Result<u64>| {
            if raw.iter().all(|&b| b == 0 || b == b' ') { Ok(0) } else { parsed() }
        };
        let mode = num(&old.mode, &|| h.mode().map(u64::from))? as u32;
        let uid = num(&old.uid, &|| h.uid())?;
        let gid = num(&old.gid, &|| h.gid())?;
        let hdr_mtime = num(&old.mtime, &|| h.mtime())?;
        let to_id = |v: u64| u32::try_from(v).map_err(|_| io::Error::other(format!("id {v} out of range")));
        let mut meta = Meta {
            mode: mode & 0o7777,
            uid: to_id(uid)?,
            gid: to_id(gid)?,
            mtime: Timespec { tv_sec: i64::try_from(hdr_mtime).unwrap_or(i64::MAX), tv_nsec: 0 },
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let key = ext.key_bytes();
                if key == b"mtime" {
                    meta.mtime = pax_time(ext.value_bytes()).ok_or_else(|| io::Error::other("bad PAX mtime"))?;
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    let name = std::str::from_utf8(name).map_err(|_| io::Error::other("non-UTF-8 xattr name"))?;
                    if name.starts_with("user.overlay.") || name.starts_with("trusted.overlay.") {
                        tracing::warn!(xattr = name, "overlayfs xattr in a layer ignored");
                        continue;
                    }
                    meta.xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
                }
            }
        }
        Ok(meta)
    }

    /// Opens `comps` (a directory path) inside the root, following symlinks within the root.
    /// With `create`, missing directories are made (0755, like Docker); otherwise a missing
    /// directory gives `Ok(None)`.
    fn open_dir(&mut self, comps: &[&[u8]], create: bool) -> io::Result<Option<OwnedFd>> {
        let open = |p: &[u8]| {
            let p: &[u8] = if p.is_empty() { b"." } else { p };
            rustix::fs::openat2(&self.root, p, DIR_FLAGS, Mode::empty(), IN_ROOT)
        };
        match open(&join(comps)) {
            Ok(fd) => return Ok(Some(fd)),
            Err(Errno::NOENT) if create => {}
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let mut cur = open(b"")?;
        for i in 0..comps.len() {
            let prefix = join(&comps[..=i]);
            cur = match open(&prefix) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    rustix::fs::mkdirat(&cur, comps[i], Mode::from_raw_mode(0o755))?;
                    if self.opts.whiteouts == WhiteoutMode::Apply {
                        self.created.insert(prefix);
                    }
                    rustix::fs::openat(&cur, comps[i], DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(Some(cur))
    }

    /// Removes `name` in `dir` unless it is absent (or a directory and `keep_dir`). Never
    /// follows a symlink. Returns whether a directory is left in place.
    fn clear(&self, dir: &OwnedFd, name: &[u8], keep_dir: bool) -> io::Result<bool> {
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            if keep_dir {
                return Ok(true);
            }
            remove_tree(dir, name)?;
        } else {
            rustix::fs::unlinkat(dir, name, AtFlags::empty())?;
        }
        Ok(false)
    }

    fn directory(&mut self, pfd: &OwnedFd, name: &[u8], meta: &Meta, shown: &str) -> io::Result<()> {
        if !self.clear(pfd, name, true)? {
            rustix::fs::mkdirat(pfd, name, Mode::from_raw_mode(0o700))?;
        }
        let fd = rustix::fs::openat(pfd, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?;
        self.set_meta(fd.as_fd(), meta, shown)
    }

    fn file<R: Read>(
        &mut self,
        pfd: &OwnedFd,
        name: &[u8],
        meta: &Meta,
        entry: &mut tar::Entry<'_, R>,
        size: u64,
        shown: &str,
    ) -> Result<(), LayerError> {
        let io_err = |op| move |e: io::Error| LayerError::io(shown, op, e);
        self.clear(pfd, name, false).map_err(io_err("remove existing entry"))?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(pfd, name, flags, Mode::from_raw_mode(0o600))
            .map_err(|e| io_err("create file")(e.into()))?;
        let mut file = File::from(fd);
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match entry.read(&mut self.buf[..want]) {
                Ok(0) => {
                    let source = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file data truncated: {left} of {size} declared bytes missing"),
                    );
                    return Err(LayerError::Stream { entry: Some(shown.to_owned()), source });
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(LayerError::Stream { entry: Some(shown.to_owned()), source });
                }
            };
            file.write_all(&self.buf[..n]).map_err(io_err("write file"))?;
            left -= n as u64;
        }
        self.stats.bytes += size;
        self.set_meta(file.as_fd(), meta, shown).map_err(io_err("set file metadata"))?;
        let times = Timestamps { last_access: meta.mtime, last_modification: meta.mtime };
        rustix::fs::futimens(&file, &times).map_err(|e| io_err("set file mtime")(e.into()))
    }

    fn symlink(&mut self, pfd: &OwnedFd, name: &[u8], target: &[u8], meta: &Meta) -> io::Result<()> {
        self.clear(pfd, name, false)?;
        rustix::fs::symlinkat(target, pfd, name)?;
        if self.opts.same_owner {
            rustix::fs::chownat(pfd, name, Some(uid(meta.uid)), Some(gid(meta.gid)), AtFlags::SYMLINK_NOFOLLOW)?;
        }
        if !meta.xattrs.is_empty() {
            tracing::warn!(path = %show(name), "xattrs of a symlink not applied");
        }
        let times = Timestamps { last_access: meta.mtime, last_modification: meta.mtime };
        rustix::fs::utimensat(pfd, name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    /// Creates a device node or FIFO; device nodes are skipped (and counted) when mknod is not
    /// permitted, as in a rootless user namespace.
    fn node(
        &mut self,
        pfd: &OwnedFd,
        name: &[u8],
        kind: EntryType,
        dev: u64,
        meta: &Meta,
        shown: &str,
    ) -> io::Result<()> {
        let ft = match kind {
            EntryType::Char => FileType::CharacterDevice,
            EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        if self.opts.host_safe && ft != FileType::Fifo {
            tracing::warn!(path = shown, "device node skipped: not made on the host");
            self.stats.skipped_devices += 1;
            return Ok(());
        }
        self.clear(pfd, name, false)?;
        match rustix::fs::mknodat(pfd, name, ft, Mode::from_raw_mode(meta.mode), dev) {
            Ok(()) => {}
            Err(Errno::PERM) if ft != FileType::Fifo => {
                tracing::warn!(path = shown, "device node skipped: mknod not permitted");
                self.stats.skipped_devices += 1;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if self.opts.same_owner {
            rustix::fs::chownat(pfd, name, Some(uid(meta.uid)), Some(gid(meta.gid)), AtFlags::SYMLINK_NOFOLLOW)?;
        }
        // The node was just made by us, so `name` is not a symlink: plain chmodat is safe.
        rustix::fs::chmodat(pfd, name, Mode::from_raw_mode(self.mode(meta)), AtFlags::empty())?;
        if !meta.xattrs.is_empty() {
            tracing::warn!(path = shown, "xattrs of a device node not applied");
        }
        let times = Timestamps { last_access: meta.mtime, last_modification: meta.mtime };
        rustix::fs::utimensat(pfd, name, &times, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(())
    }

    /// The mode an entry gets: the layer's, without setuid/setgid bits when [`ApplyOptions::host_safe`].
    fn mode(&self, meta: &Meta) -> u32 {
        if self.opts.host_safe { meta.mode & !0o6000 } else { meta.mode }
    }

    /// Owner (when asked), mode and xattrs through an open fd; chown first since it clears
    /// setuid bits and file capabilities.
    fn set_meta(&self, fd: BorrowedFd<'_>, meta: &Meta, shown: &str) -> io::Result<()> {
        if self.opts.same_owner {
            rustix::fs::fchown(fd, Some(uid(meta.uid)), Some(gid(meta.gid)))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(self.mode(meta)))?;
        for (name, value) in &meta.xattrs {
            match rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(e @ (Errno::PERM | Errno::OPNOTSUPP | Errno::ACCESS)) => {
                    tracing::warn!(path = shown, xattr = %name, error = %e, "xattr not applied");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `.wh.<name>` in `parent`.
    fn whiteout(&mut self, parent: &[&[u8]], name: &[u8], shown: &str) -> Result<(), LayerError> {
        let io_err = |op| move |e: io::Error| LayerError::io(shown, op, e);
        match self.opts.whiteouts {
            WhiteoutMode::Apply => {
                // Nothing below to delete when the directory does not exist (or is a file).
                let pfd = match self.open_dir(parent, false) {
                    Ok(Some(fd)) => fd,
                    Ok(None) => return Ok(()),
                    Err(e) if is_errno(&e, Errno::NOTDIR) => return Ok(()),
                    Err(e) => return Err(io_err("open whiteout directory")(e)),
                };
                self.clear(&pfd, name, false).map_err(io_err("delete whited-out path"))?;
            }
            WhiteoutMode::Overlay => {
                let pfd = self
                    .open_dir(parent, true)
                    .map_err(io_err("open whiteout directory"))?
                    .expect("created when missing");
                self.clear(&pfd, name, false).map_err(io_err("remove existing entry"))?;
                rustix::fs::mknodat(&pfd, name, FileType::CharacterDevice, Mode::empty(), 0).map_err(|e| {
                    io_err("create overlay whiteout (char 0:0; needs Linux 5.8 when rootless)")(e.into())
                })?;
            }
        }
        Ok(())
    }

    /// `.wh..wh..opq` in directory `dir`. The directory itself is not followed if it is a
    /// symlink (that is refused): the marker describes a real directory of an upper layer.
    fn opaque(&mut self, dir: &[&[u8]], shown: &str) -> Result<(), LayerError> {
        let io_err = |op| move |e: io::Error| LayerError::io(shown, op, e);
        let create = self.opts.whiteouts == WhiteoutMode::Overlay;
        let fd = match dir.split_last() {
            None => rustix::fs::openat(&self.root, ".", DIR_FLAGS, Mode::empty())
                .map_err(|e| io_err("open root")(e.into()))?,
            Some((name, parent)) => {
                let pfd = match self.open_dir(parent, create) {
                    Ok(Some(fd)) => fd,
                    Ok(None) => return Ok(()),
                    Err(e) if !create && is_errno(&e, Errno::NOTDIR) => return Ok(()),
                    Err(e) => return Err(io_err("open opaque directory's parent")(e)),
                };
                if create {
                    // Missing: make it (an overlay lowerdir needs the directory to hold the
                    // xattr). Anything else than a directory is refused below.
                    match rustix::fs::mkdirat(&pfd, *name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_err("create opaque directory")(e.into())),
                    }
                }
                match rustix::fs::openat(&pfd, *name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty()) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => return Ok(()),
                    Err(Errno::LOOP | Errno::NOTDIR) => {
                        return Err(LayerError::Unsafe {
                            path: shown.to_owned(),
                            reason: "opaque marker inside a symlink or non-directory".into(),
                        });
                    }
                    Err(e) => return Err(io_err("open opaque directory")(e.into())),
                }
            }
        };
        match self.opts.whiteouts {
            WhiteoutMode::Overlay => rustix::fs::fsetxattr(&fd, "user.overlay.opaque", b"y", XattrFlags::empty())
                .map_err(|e| io_err("set user.overlay.opaque")(e.into())),
            WhiteoutMode::Apply => self.purge(&fd, &join(dir)).map_err(io_err("empty opaque directory")),
        }
    }

    /// Removes from `dir` (at layer path `path`) everything this layer did not create.
    fn purge(&self, dir: &OwnedFd, path: &[u8]) -> io::Result<()> {
        for child in list_dir(dir)? {
            let mut cpath = path.to_vec();
            if !cpath.is_empty() {
                cpath.push(b'/');
            }
            cpath.extend_from_slice(&child);
            if !self.created.contains(&cpath) {
                self.clear(dir, &child, false)?;
            } else if let Ok(sub) =
                rustix::fs::openat(dir, child.as_slice(), DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())
            {
                self.purge(&sub, &cpath)?;
            }
        }
        Ok(())
    }

    /// Sets directory mtimes after all entries (creating children changes them).
    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        for (comps, mtime) in std::mem::take(&mut self.dirs) {
            let refs: Vec<&[u8]> = comps.iter().map(|c| c.as_slice()).collect();
            let shown = show(&join(&refs));
            let fd = match refs.split_last() {
                None => rustix::fs::openat(&self.root, ".", DIR_FLAGS, Mode::empty()).ok(),
                Some((name, parent)) => match self.open_dir(parent, false) {
                    // Gone or replaced by a non-directory later in the layer: nothing to do.
                    Ok(Some(pfd)) => rustix::fs::openat(&pfd, *name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty()).ok(),
                    _ => None,
                },
            };
            if let Some(fd) = fd {
                let times = Timestamps { last_access: mtime, last_modification: mtime };
                rustix::fs::futimens(&fd, &times)
                    .map_err(|e| LayerError::io(shown, "set directory mtime", e.into()))?;
            }
        }
        Ok(())
    }
}

fn uid(v: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(v)
}

fn gid(v: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(v)
}

/// Names in a directory, without `.` and `..` (collected first: removing while reading
/// a directory stream may skip entries).
fn list_dir(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for ent in rustix::fs::Dir::read_from(dir)? {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(name.to_vec());
        }
    }
    Ok(out)
}

/// Removes directory `name` in `parent` and everything under it, without following symlinks.
fn remove_tree(parent: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let dir = rustix::fs::openat(parent, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?;
    for child in list_dir(&dir)? {
        match rustix::fs::unlinkat(&dir, child.as_slice(), AtFlags::empty()) {
            Ok(()) => {}
            Err(Errno::ISDIR) => remove_tree(&dir, &child)?,
            Err(e) => return Err(e.into()),
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_paths() {
        let n = |p: &str| normalize(p.as_bytes()).map(|v| v.iter().map(|c| show(c)).collect::<Vec<_>>().join("/"));
        assert_eq!(n("./etc/passwd").unwrap(), "etc/passwd");
        assert_eq!(n("/etc//passwd/").unwrap(), "etc/passwd");
        assert_eq!(n("a/../b").unwrap(), "b");
        assert_eq!(n("./").unwrap(), "");
        assert!(n("../x").is_err());
        assert!(n("a/../../x").is_err());
        assert!(n("/..").is_err());
        assert!(normalize(b"a\0b").is_err());
    }

    #[test]
    fn pax_times() {
        let t = |s: &str| pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(t("-1.5"), Some((-2, 500_000_000)));
        assert_eq!(t("-0.25"), Some((-1, 750_000_000)));
        assert_eq!(t("x"), None);
        assert_eq!(t("1.x"), None);
    }
}
