//! Directory tree → deterministic tar layer.
//!
//! The walk is depth-first with each directory's entries sorted by name bytes (the order of
//! Go's `filepath.Walk`, which Docker uses); the root itself is not an entry, paths are relative
//! (`etc/passwd`, directories `etc/`). Every header is built from `lstat`, never from the
//! `tar` crate's helpers: full mode (setuid/setgid/sticky kept), numeric uid/gid with empty
//! user/group names, mtime clamped to `source_date_epoch`, symlinks never followed, hardlinks
//! (same dev+ino seen earlier in this layer) written as link entries to the first path, xattrs
//! as `SCHILY.xattr.*` PAX records, names or link targets over 100 bytes as PAX
//! `path`/`linkpath`. No sparse entries. Sockets are skipped.
//!
//! File reading is not parallelised: with the compressor running on the pool, the walking
//! thread is not the bottleneck (`benches/layers.rs`: `tree_to_layer/none` runs ~10× faster than
//! `tree_to_layer/gzip6`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use tar::{EntryType, Header};
use walkdir::WalkDir;

use crate::compress::{LayerSink, TarOut, buffered, finish_buffered, thread_count};
use crate::error::show;
use crate::split::SkeletonWriter;
use crate::{Compression, LayerError, LayerInfo};

/// OCI whiteout prefix: `.wh.<name>` deletes `<name>` of the layers below.
pub(crate) const WH_PREFIX: &[u8] = b".wh.";
/// OCI opaque-directory marker: hides everything the layers below have in that directory.
pub(crate) const WH_OPAQUE: &[u8] = b".wh..wh..opq";

/// How a tree becomes a layer.
#[derive(Clone, Debug, Default)]
pub struct TreeOptions {
    /// When set, every mtime later than this (seconds since the epoch) is clamped to it, as
    /// BuildKit does with `SOURCE_DATE_EPOCH`, so rebuilding gives the same layer.
    pub source_date_epoch: Option<i64>,
    /// The root is an overlayfs upper dir: whiteout devices (char 0:0) and
    /// `user.overlay.whiteout` files become `.wh.<name>`, directories with an `opaque` xattr
    /// get a `.wh..wh..opq` entry.
    pub overlay_upper: bool,
    /// Compression threads; `None` = available parallelism. The output does not depend on it.
    pub threads: Option<usize>,
}

/// Walks `root` (sorted by path bytes), writes a deterministic tar, compresses it and hashes
/// both streams in one pass. Memory stays bounded whatever the size of the files.
///
/// Whiteout markers written for an overlay upper dir are empty regular files with mode 0600
/// (as Docker's overlay2 driver writes them), uid/gid 0 and mtime 0: they carry no metadata, so
/// fixed values keep the layer reproducible even without `source_date_epoch`.
pub fn write_layer(
    root: &Path,
    opts: &TreeOptions,
    compression: Compression,
    out: impl Write,
) -> Result<LayerInfo, LayerError> {
    let layer = LayerBuilder::new(compression, opts.threads, opts.source_date_epoch, out)?;
    walk_into(root, opts, layer)
}

/// [`write_layer`], also recording the layer's tar-split skeleton to `skeleton` (see [`crate::regenerate`]):
/// `root` and the skeleton then give the layer back.
pub fn write_layer_split(
    root: &Path,
    opts: &TreeOptions,
    compression: Compression,
    out: impl Write,
    skeleton: impl Write,
) -> Result<LayerInfo, LayerError> {
    let layer = LayerBuilder::new(compression, opts.threads, opts.source_date_epoch, out)?
        .recording(skeleton)
        .map_err(LayerError::Output)?;
    walk_into(root, opts, layer)
}

/// Feeds the sorted walk of `root` to `layer`.
fn walk_into<W: Write, S: Write>(
    root: &Path,
    opts: &TreeOptions,
    mut layer: LayerBuilder<W, S>,
) -> Result<LayerInfo, LayerError> {
    let mut walker = Walker { overlay_upper: opts.overlay_upper, links: HashMap::new() };
    let walk = WalkDir::new(root).follow_links(false).min_depth(1).sort_by_file_name();
    for item in walk {
        let entry = item.map_err(|e| {
            let path = e.path().unwrap_or(root).display().to_string();
            let source = e.into_io_error().unwrap_or_else(|| io::Error::other("walk error"));
            LayerError::io(path, "read directory", source)
        })?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        walker.emit(entry.path(), rel.as_os_str().as_bytes(), &mut layer)?;
    }
    layer.finish()
}

/// Per-walk state: whether the root is an overlay upper dir, and the first path of every
/// multiply-linked inode.
struct Walker {
    overlay_upper: bool,
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl Walker {
    /// Writes the entry (or entries) for one file of the tree.
    fn emit<W: Write, S: Write>(
        &mut self,
        abs: &Path,
        rel: &[u8],
        layer: &mut LayerBuilder<W, S>,
    ) -> Result<(), LayerError> {
        let err = |op, e| LayerError::io(show(rel), op, e);
        let md = std::fs::symlink_metadata(abs).map_err(|e| err("lstat", e))?;
        let ft = md.file_type();
        if ft.is_socket() {
            tracing::debug!(path = %show(rel), "socket not written to the layer");
            return Ok(());
        }
        if self.overlay_upper && ft.is_char_device() && md.rdev() == 0 {
            return layer.marker(&whiteout_name(rel)).map_err(|e| err("write tar", e));
        }
        let xattrs = read_xattrs(abs).map_err(|e| err("read xattrs", e))?;
        if self.overlay_upper && ft.is_file() && xattrs.overlay.iter().any(|(k, _)| k.ends_with(".overlay.whiteout")) {
            return layer.marker(&whiteout_name(rel)).map_err(|e| err("write tar", e));
        }
        let entry = |kind| Entry::of(&md, kind).with_xattrs(&xattrs.kept);
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                let link = entry(EntryKind::Hardlink { target: &first });
                return layer.append(rel, link).map_err(|e| err("write tar", e));
            }
            self.links.insert(key, rel.to_vec());
        }
        let res = if ft.is_dir() {
            let opaque =
                self.overlay_upper && xattrs.overlay.iter().any(|(k, v)| k.ends_with(".overlay.opaque") && v == b"y");
            layer.append(rel, entry(EntryKind::Dir)).and_then(|()| {
                if opaque {
                    let mut name = rel.to_vec();
                    name.push(b'/');
                    name.extend_from_slice(WH_OPAQUE);
                    layer.marker(&name)?;
                }
                Ok(())
            })
        } else if ft.is_file() {
            // NOFOLLOW | NONBLOCK: a file swapped for a symlink or a FIFO since the lstat must
            // neither be followed nor block the walk.
            let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
            let mut f =
                File::options().read(true).custom_flags(flags.bits() as i32).open(abs).map_err(|e| err("open", e))?;
            layer.append(rel, entry(EntryKind::File { size: md.len(), data: &mut f }))
        } else if ft.is_symlink() {
            let target = std::fs::read_link(abs).map_err(|e| err("readlink", e))?;
            layer.append(rel, entry(EntryKind::Symlink { target: target.as_os_str().as_bytes() }))
        } else if ft.is_char_device() {
            layer.append(rel, entry(EntryKind::Char { rdev: md.rdev() }))
        } else if ft.is_block_device() {
            layer.append(rel, entry(EntryKind::Block { rdev: md.rdev() }))
        } else if ft.is_fifo() {
            layer.append(rel, entry(EntryKind::Fifo))
        } else {
            return Err(err("classify", io::Error::other("unknown file type")));
        };
        res.map_err(|e| err("write tar", e))
    }
}

/// `dir/name` → `dir/.wh.name`.
fn whiteout_name(rel: &[u8]) -> Vec<u8> {
    let cut = rel.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
    let mut out = Vec::with_capacity(rel.len() + WH_PREFIX.len());
    out.extend_from_slice(&rel[..cut]);
    out.extend_from_slice(WH_PREFIX);
    out.extend_from_slice(&rel[cut..]);
    out
}

/// The xattrs of one file, split into those written to the layer and the overlayfs ones.
#[derive(Default)]
struct Xattrs {
    /// Written as `SCHILY.xattr.<name>`, sorted by name.
    kept: Vec<(String, Vec<u8>)>,
    /// `user.overlay.*` / `trusted.overlay.*`: interpreted, never written.
    overlay: Vec<(String, Vec<u8>)>,
}

/// Reads the xattrs of `path` without following a symlink. `security.selinux` is left out: it
/// is a label of the build host, not of the image.
fn read_xattrs(path: &Path) -> io::Result<Xattrs> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if is_unsupported(&e) => return Ok(Xattrs::default()),
        Err(e) => return Err(e),
    };
    let mut names: Vec<_> = names.collect();
    if names.is_empty() {
        return Ok(Xattrs::default());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut out = Xattrs::default();
    for name in names {
        let Some(key) = name.to_str() else {
            tracing::warn!(path = %path.display(), name = ?name, "non-UTF-8 xattr name not written");
            continue;
        };
        if key == "security.selinux" {
            continue;
        }
        let Some(value) = xattr::get(path, OsStr::new(key))? else {
            continue;
        };
        if key.starts_with("user.overlay.") || key.starts_with("trusted.overlay.") {
            out.overlay.push((key.to_owned(), value));
        } else {
            out.kept.push((key.to_owned(), value));
        }
    }
    Ok(out)
}

fn is_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(rustix::io::Errno::OPNOTSUPP.raw_os_error())
}

/// Appends one PAX record (`"<len> <key>=<value>\n"`, where len counts itself).
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut digits = 1;
    while (rest + digits).to_string().len() != digits {
        digits += 1;
    }
    out.extend_from_slice(format!("{} {key}=", rest + digits).as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Copies `src` into a NUL-padded header field, truncated to the field.
fn set_field(field: &mut [u8], src: &[u8]) {
    let n = src.len().min(field.len());
    field[..n].copy_from_slice(&src[..n]);
    field[n..].fill(0);
}

/// A ustar header with its device numbers set (0 for non-devices, as GNU tar and Go write).
fn ustar(rdev: u64) -> io::Result<Header> {
    let mut h = Header::new_ustar();
    h.set_device_major(rustix::fs::major(rdev))?;
    h.set_device_minor(rustix::fs::minor(rdev))?;
    Ok(h)
}

/// What one layer entry is, besides its path: its kind and the metadata of its header.
///
/// The fields are what `lstat` gives for the file the entry stands for, so that a layer written
/// entry by entry (e.g. while the tree is being created, see [`LayerBuilder`]) has the very bytes
/// that [`write_layer`] writes when it walks the finished tree.
pub struct Entry<'a> {
    /// What the entry is, with the kind-specific part of its header (size and data, link target,
    /// device number).
    pub kind: EntryKind<'a>,
    /// Permission bits, setuid/setgid/sticky included (`st_mode & 0o7777`).
    pub mode: u32,
    /// Numeric owner; user and group names are left empty.
    pub uid: u32,
    /// Numeric group.
    pub gid: u32,
    /// Modification time in seconds since the epoch, as `lstat` gives it: the builder clamps it
    /// to `source_date_epoch` and writes pre-1970 times as 0.
    pub mtime: i64,
    /// Extended attributes, sorted by name, written as `SCHILY.xattr.<name>` PAX records.
    pub xattrs: &'a [(String, Vec<u8>)],
}

impl<'a> Entry<'a> {
    /// The entry for a file with metadata `md` (from `lstat`), without xattrs.
    pub(crate) fn of(md: &Metadata, kind: EntryKind<'a>) -> Entry<'a> {
        Entry { kind, mode: md.mode() & 0o7777, uid: md.uid(), gid: md.gid(), mtime: md.mtime(), xattrs: &[] }
    }

    /// The same entry with `xattrs` (sorted by name).
    pub(crate) fn with_xattrs(self, xattrs: &'a [(String, Vec<u8>)]) -> Entry<'a> {
        Entry { xattrs, ..self }
    }
}

/// The kinds of entries a layer holds, each with what its header needs.
pub enum EntryKind<'a> {
    /// A directory; its name is written with a trailing `/`.
    Dir,
    /// A regular file of `size` bytes, read from `data`. Exactly `size` bytes are written: data
    /// that ends early is an error (it would corrupt the tar), bytes past `size` are not read.
    File {
        /// Size written in the header.
        size: u64,
        /// The content.
        data: &'a mut dyn Read,
    },
    /// A symbolic link to `target`, written as is (never resolved).
    Symlink {
        /// The link's content (`readlink`).
        target: &'a [u8],
    },
    /// A hard link to an earlier entry of the same layer.
    Hardlink {
        /// The path of that earlier entry.
        target: &'a [u8],
    },
    /// A character device.
    Char {
        /// `st_rdev`.
        rdev: u64,
    },
    /// A block device.
    Block {
        /// `st_rdev`.
        rdev: u64,
    },
    /// A named pipe.
    Fifo,
}

/// Writes a deterministic layer one entry at a time: tar framing straight into the compressing
/// sink, which compresses on the thread pool while the caller reads files, and hashes both
/// streams on the way.
///
/// [`write_layer`] is this builder fed by a sorted walk of a tree; a caller that creates a tree
/// can feed it while creating each file, and reads every file once instead of twice. Paths are
/// relative to the layer root (`etc/passwd`); entries are written in the order given, which for
/// a reproducible layer must be the sorted walk order of [`write_layer`]. With
/// [`LayerBuilder::recording`], the layer's tar-split skeleton is recorded too: a file's content is
/// then referred to by its path, which must be where the file is in the tree the layer stands for.
pub struct LayerBuilder<W: Write, S: Write = io::Sink> {
    out: TarOut<W>,
    skeleton: Option<SkeletonWriter<S>>,
    entries: u64,
    buf: Vec<u8>,
    source_date_epoch: Option<i64>,
}

impl<W: Write> LayerBuilder<W> {
    /// Starts the compressor on `out` with `threads` workers (`None` = available parallelism;
    /// the output does not depend on it). Every mtime later than `source_date_epoch` is clamped
    /// to it (see [`TreeOptions::source_date_epoch`]).
    pub fn new(
        compression: Compression,
        threads: Option<usize>,
        source_date_epoch: Option<i64>,
        out: W,
    ) -> Result<Self, LayerError> {
        let sink = LayerSink::new(compression, thread_count(threads), out)?;
        Ok(LayerBuilder { out: buffered(sink), skeleton: None, entries: 0, buf: vec![0; 256 << 10], source_date_epoch })
    }

    /// The same builder, also recording the layer's tar-split skeleton to `skeleton` (call before any
    /// entry is appended).
    pub fn recording<S: Write>(self, skeleton: S) -> io::Result<LayerBuilder<W, S>> {
        let LayerBuilder { out, entries, buf, source_date_epoch, .. } = self;
        debug_assert_eq!(entries, 0, "recording starts with the first entry");
        Ok(LayerBuilder { out, skeleton: Some(SkeletonWriter::new(skeleton)?), entries, buf, source_date_epoch })
    }
}

impl<W: Write, S: Write> LayerBuilder<W, S> {
    /// Bytes of tar framing: to the layer and, as they are, to the skeleton.
    fn frame(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        match &mut self.skeleton {
            Some(s) => s.raw(bytes),
            None => Ok(()),
        }
    }

    /// An empty regular file with fixed metadata (whiteout and opaque markers).
    fn marker(&mut self, path: &[u8]) -> io::Result<()> {
        let empty = &mut io::empty();
        let kind = EntryKind::File { size: 0, data: empty };
        self.append(path, Entry { kind, mode: 0o600, uid: 0, gid: 0, mtime: 0, xattrs: &[] })
    }

    /// Writes one entry (with a PAX extended header first when its path or link target is over
    /// 100 bytes or it has xattrs).
    pub fn append(&mut self, path: &[u8], entry: Entry<'_>) -> io::Result<()> {
        let (kind, link, rdev, data) = match entry.kind {
            EntryKind::Dir => (EntryType::Directory, None, 0, None),
            EntryKind::File { size, data } => (EntryType::Regular, None, 0, Some((data, size))),
            EntryKind::Symlink { target } => (EntryType::Symlink, Some(target), 0, None),
            EntryKind::Hardlink { target } => (EntryType::Link, Some(target), 0, None),
            EntryKind::Char { rdev } => (EntryType::Char, None, rdev, None),
            EntryKind::Block { rdev } => (EntryType::Block, None, rdev, None),
            EntryKind::Fifo => (EntryType::Fifo, None, 0, None),
        };
        let dir_name;
        let path = if kind == EntryType::Directory {
            dir_name = [path, b"/"].concat();
            &dir_name[..]
        } else {
            path
        };
        let mut pax = Vec::new();
        if path.len() > 100 {
            pax_record(&mut pax, "path", path);
        }
        if let Some(link) = link.filter(|l| l.len() > 100) {
            pax_record(&mut pax, "linkpath", link);
        }
        for (k, v) in entry.xattrs {
            pax_record(&mut pax, &format!("SCHILY.xattr.{k}"), v);
        }
        if !pax.is_empty() {
            let mut x = Header::new_ustar();
            set_field(&mut x.as_old_mut().name, b"PaxHeader");
            x.set_entry_type(EntryType::XHeader);
            x.set_mode(0o644);
            x.set_mtime(0);
            x.set_uid(0);
            x.set_gid(0);
            x.set_size(pax.len() as u64);
            x.set_cksum();
            self.frame(x.as_bytes())?;
            self.frame(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        let mut h = ustar(rdev)?;
        set_field(&mut h.as_old_mut().name, path);
        if let Some(link) = link {
            set_field(&mut h.as_old_mut().linkname, link);
        }
        let mtime = self.source_date_epoch.map_or(entry.mtime, |epoch| entry.mtime.min(epoch));
        h.set_entry_type(kind);
        h.set_mode(entry.mode);
        h.set_uid(entry.uid.into());
        h.set_gid(entry.gid.into());
        // Pre-1970 mtimes are written as 0 rather than in base-256 negative form.
        h.set_mtime(mtime.max(0) as u64);
        h.set_size(data.as_ref().map_or(0, |d| d.1));
        h.set_cksum();
        self.frame(h.as_bytes())?;
        if let Some((src, size)) = data {
            if let Some(s) = self.skeleton.as_mut().filter(|_| size > 0) {
                s.file(path, size)?;
            }
            self.copy_exact(src, size)?;
            self.pad(size)?;
        }
        self.entries += 1;
        Ok(())
    }

    /// Copies exactly `size` bytes: a file that shrank since its lstat would corrupt the tar.
    fn copy_exact(&mut self, src: &mut dyn Read, size: u64) -> io::Result<()> {
        let mut left = size;
        while left > 0 {
            let want = left.min(self.buf.len() as u64) as usize;
            let n = match src.read(&mut self.buf[..want]) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file shrank while being written ({left} of {size} bytes missing)"),
                    ));
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.out.write_all(&self.buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    fn pad(&mut self, len: u64) -> io::Result<()> {
        let rem = (len % 512) as usize;
        if rem != 0 {
            self.frame(&[0; 512][..512 - rem])?;
        }
        Ok(())
    }

    /// Writes the two zero blocks that end an archive, finishes compression (and the skeleton) and
    /// returns the layer's digests, sizes and entry count.
    pub fn finish(mut self) -> Result<LayerInfo, LayerError> {
        self.frame(&[0; 1024]).map_err(LayerError::Output)?;
        if let Some(s) = self.skeleton.take() {
            s.finish().map_err(LayerError::Output)?;
        }
        let (_, mut info) = finish_buffered(self.out)?;
        info.entries = self.entries;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths() {
        let mut v = Vec::new();
        pax_record(&mut v, "path", b"abc");
        assert_eq!(v, b"12 path=abc\n");
        // 97 bytes without the length: 2 digits give 99.
        let mut v = Vec::new();
        pax_record(&mut v, "path", &[b'y'; 90]);
        assert_eq!(v.len(), 99);
        assert!(v.starts_with(b"99 path="));
        // 98 bytes without the length: 2 digits would give 100, which needs 3 digits: 101.
        let mut v = Vec::new();
        pax_record(&mut v, "path", &[b'y'; 91]);
        assert_eq!(v.len(), 101);
        assert!(v.starts_with(b"101 path="));
    }

    #[test]
    fn whiteout_names() {
        assert_eq!(whiteout_name(b"a"), b".wh.a");
        assert_eq!(whiteout_name(b"d/e/f"), b"d/e/.wh.f");
    }
}
