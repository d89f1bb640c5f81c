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
    let sink = LayerSink::new(compression, thread_count(opts.threads), out)?;
    let mut tw = TarWriter { out: buffered(sink), entries: 0, buf: vec![0; 256 << 10] };
    let mut walker = Walker { opts, links: HashMap::new() };
    let walk = WalkDir::new(root).follow_links(false).min_depth(1).sort_by_file_name();
    for item in walk {
        let entry = item.map_err(|e| {
            let path = e.path().unwrap_or(root).display().to_string();
            let source = e.into_io_error().unwrap_or_else(|| io::Error::other("walk error"));
            LayerError::io(path, "read directory", source)
        })?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        walker.emit(entry.path(), rel.as_os_str().as_bytes(), &mut tw)?;
    }
    tw.finish()
}

/// Per-walk state: the options and the first path of every multiply-linked inode.
struct Walker<'a> {
    opts: &'a TreeOptions,
    links: HashMap<(u64, u64), Vec<u8>>,
}

/// Metadata written into a header.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

impl Walker<'_> {
    fn meta(&self, md: &Metadata) -> Meta {
        let mut mtime = md.mtime();
        if let Some(epoch) = self.opts.source_date_epoch {
            mtime = mtime.min(epoch);
        }
        Meta {
            mode: md.mode() & 0o7777,
            uid: md.uid().into(),
            gid: md.gid().into(),
            // Pre-1970 mtimes are written as 0 rather than in base-256 negative form.
            mtime: mtime.max(0) as u64,
        }
    }

    /// Writes the entry (or entries) for one file of the tree.
    fn emit<W: Write>(&mut self, abs: &Path, rel: &[u8], tw: &mut TarWriter<W>) -> Result<(), LayerError> {
        let err = |op, e| LayerError::io(show(rel), op, e);
        let md = std::fs::symlink_metadata(abs).map_err(|e| err("lstat", e))?;
        let ft = md.file_type();
        if ft.is_socket() {
            tracing::debug!(path = %show(rel), "socket not written to the layer");
            return Ok(());
        }
        if self.opts.overlay_upper && ft.is_char_device() && md.rdev() == 0 {
            return tw.marker(&whiteout_name(rel)).map_err(|e| err("write tar", e));
        }
        let xattrs = read_xattrs(abs).map_err(|e| err("read xattrs", e))?;
        if self.opts.overlay_upper
            && ft.is_file()
            && xattrs.overlay.iter().any(|(k, _)| k.ends_with(".overlay.whiteout"))
        {
            return tw.marker(&whiteout_name(rel)).map_err(|e| err("write tar", e));
        }
        let meta = self.meta(&md);
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                return tw.entry(EntryType::Link, rel, &meta, Some(&first), &[], None).map_err(|e| err("write tar", e));
            }
            self.links.insert(key, rel.to_vec());
        }
        let res = if ft.is_dir() {
            let mut name = rel.to_vec();
            name.push(b'/');
            let opaque = self.opts.overlay_upper
                && xattrs.overlay.iter().any(|(k, v)| k.ends_with(".overlay.opaque") && v == b"y");
            tw.entry(EntryType::Directory, &name, &meta, None, &xattrs.kept, None).and_then(|()| {
                if opaque {
                    name.extend_from_slice(WH_OPAQUE);
                    tw.marker(&name)?;
                }
                Ok(())
            })
        } else if ft.is_file() {
            // NOFOLLOW | NONBLOCK: a file swapped for a symlink or a FIFO since the lstat must
            // neither be followed nor block the walk.
            let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
            let mut f =
                File::options().read(true).custom_flags(flags.bits() as i32).open(abs).map_err(|e| err("open", e))?;
            let data: (&mut dyn Read, u64) = (&mut f, md.len());
            tw.entry(EntryType::Regular, rel, &meta, None, &xattrs.kept, Some(data))
        } else if ft.is_symlink() {
            let target = std::fs::read_link(abs).map_err(|e| err("readlink", e))?;
            let target = target.as_os_str().as_bytes();
            tw.entry(EntryType::Symlink, rel, &meta, Some(target), &xattrs.kept, None)
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            };
            tw.device(kind, rel, &meta, md.rdev(), &xattrs.kept)
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

/// Writes tar framing straight into the compressing sink.
struct TarWriter<W: Write> {
    out: TarOut<W>,
    entries: u64,
    buf: Vec<u8>,
}

impl<W: Write> TarWriter<W> {
    /// An empty regular file with fixed metadata (whiteout and opaque markers).
    fn marker(&mut self, path: &[u8]) -> io::Result<()> {
        let meta = Meta { mode: 0o600, uid: 0, gid: 0, mtime: 0 };
        self.entry(EntryType::Regular, path, &meta, None, &[], None)
    }

    fn device(
        &mut self,
        kind: EntryType,
        path: &[u8],
        meta: &Meta,
        rdev: u64,
        xattrs: &[(String, Vec<u8>)],
    ) -> io::Result<()> {
        self.write(ustar(rdev)?, kind, path, meta, None, xattrs, None)
    }

    fn entry(
        &mut self,
        kind: EntryType,
        path: &[u8],
        meta: &Meta,
        link: Option<&[u8]>,
        xattrs: &[(String, Vec<u8>)],
        data: Option<(&mut dyn Read, u64)>,
    ) -> io::Result<()> {
        self.write(ustar(0)?, kind, path, meta, link, xattrs, data)
    }

    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        mut h: Header,
        kind: EntryType,
        path: &[u8],
        meta: &Meta,
        link: Option<&[u8]>,
        xattrs: &[(String, Vec<u8>)],
        data: Option<(&mut dyn Read, u64)>,
    ) -> io::Result<()> {
        let mut pax = Vec::new();
        if path.len() > 100 {
            pax_record(&mut pax, "path", path);
        }
        if let Some(link) = link.filter(|l| l.len() > 100) {
            pax_record(&mut pax, "linkpath", link);
        }
        for (k, v) in xattrs {
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
            self.out.write_all(x.as_bytes())?;
            self.out.write_all(&pax)?;
            self.pad(pax.len() as u64)?;
        }
        set_field(&mut h.as_old_mut().name, path);
        if let Some(link) = link {
            set_field(&mut h.as_old_mut().linkname, link);
        }
        h.set_entry_type(kind);
        h.set_mode(meta.mode);
        h.set_uid(meta.uid);
        h.set_gid(meta.gid);
        h.set_mtime(meta.mtime);
        let size = data.as_ref().map_or(0, |d| d.1);
        h.set_size(size);
        h.set_cksum();
        self.out.write_all(h.as_bytes())?;
        if let Some((src, size)) = data {
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
            self.out.write_all(&[0; 512][..512 - rem])?;
        }
        Ok(())
    }

    /// Writes the two zero blocks that end an archive and finishes compression.
    fn finish(mut self) -> Result<LayerInfo, LayerError> {
        self.out.write_all(&[0; 1024]).map_err(LayerError::Output)?;
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
