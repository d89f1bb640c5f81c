//! Archives of source trees, written so that their bytes depend only on what the tree holds.
//!
//! kolla-build tars sources with `normalize_tarinfo` (uid/gid 0, owner names `root`, mtime 0, `u+w`)
//! so that an unchanged source keeps the engine's cache valid. We go one step further, as the step
//! cache is shared between machines: entries are sorted by name and modes are reduced to what git
//! records (directories 0755, files 0644 or 0755 by their exec bit, links 0777), so neither the
//! umask of a checkout nor the order the filesystem lists entries in can change an archive.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use layers::{ApplyOptions, WhiteoutMode};

use super::SourceError;

/// Tar `dir` as `arcname/…` (the directory itself first, then its tree sorted by name), uncompressed.
pub(crate) fn tar_dir(dir: &Path, arcname: &str, out: impl Write) -> Result<(), SourceError> {
    let mut tar = tar::Builder::new(out);
    for entry in walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| SourceError::io(dir, "walk", e.into()))?;
        let rel = entry.path().strip_prefix(dir).expect("walkdir yields paths under its root");
        let name =
            if rel.as_os_str().is_empty() { Path::new(arcname).to_path_buf() } else { Path::new(arcname).join(rel) };
        let meta = entry.metadata().map_err(|e| SourceError::io(entry.path(), "stat", e.into()))?;
        let ft = meta.file_type();
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_username("root").and_then(|()| h.set_groupname("root")).map_err(|e| SourceError::io(dir, "tar", e))?;
        let written = if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            tar.append_data(&mut h, &name, io::empty())
        } else if ft.is_symlink() {
            let target = fs::read_link(entry.path()).map_err(|e| SourceError::io(entry.path(), "read link", e))?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            tar.append_link(&mut h, &name, &target)
        } else if ft.is_file() {
            let file = fs::File::open(entry.path()).map_err(|e| SourceError::io(entry.path(), "open", e))?;
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(if meta.permissions().mode() & 0o111 != 0 { 0o755 } else { 0o644 });
            h.set_size(meta.len());
            // A file that changes size while we read it would corrupt the stream: read exactly `len`.
            tar.append_data(&mut h, &name, ExactLen::new(file, meta.len()))
        } else {
            tracing::warn!(
                "{}: not a file, directory or symlink; left out of the source archive",
                entry.path().display()
            );
            continue;
        };
        written.map_err(|e| SourceError::io(entry.path(), "tar", e))?;
    }
    tar.into_inner().map_err(|e| SourceError::io(dir, "tar", e))?.flush().map_err(|e| SourceError::io(dir, "tar", e))
}

/// Whether `path` is a tar archive, plain or compressed (the forms the layer applier reads).
pub(crate) fn is_tar(path: &Path) -> Result<bool, SourceError> {
    let f = fs::File::open(path).map_err(|e| SourceError::io(path, "open", e))?;
    layers::is_tar(io::BufReader::new(f)).map_err(|e| SourceError::io(path, "read", e))
}

/// Unpack `archive` into `dir` with the layer applier, which confines every entry to `dir` (kolla only
/// refuses `..` names; links pointing out and then written through are refused here too).
pub(crate) fn extract(archive: &Path, dir: &Path) -> Result<(), layers::LayerError> {
    let f = fs::File::open(archive).map_err(|source| layers::LayerError::Io {
        path: archive.display().to_string(),
        op: "open",
        source,
    })?;
    let opts = ApplyOptions { whiteouts: WhiteoutMode::Apply, same_owner: false, host_safe: true };
    layers::apply_layer(io::BufReader::with_capacity(1 << 20, f), dir, &opts).map(drop)
}

/// A reader that yields exactly `len` bytes: the file's bytes, cut or padded with zeros.
struct ExactLen<R> {
    inner: R,
    left: u64,
}

impl<R: Read> ExactLen<R> {
    fn new(inner: R, len: u64) -> ExactLen<R> {
        ExactLen { inner, left: len }
    }
}

impl<R: Read> Read for ExactLen<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_bytes(dir: &Path) -> Vec<u8> {
        let mut out = Vec::new();
        tar_dir(dir, "top", &mut out).unwrap();
        out
    }

    #[test]
    fn archive_bytes_ignore_mtimes_umask_and_creation_order() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        // Same content, created in a different order, with different modes and mtimes.
        for (root, order, mode) in [(a.path(), ["x", "y"], 0o600), (b.path(), ["y", "x"], 0o664)] {
            fs::create_dir(root.join("d")).unwrap();
            for n in order {
                fs::write(root.join("d").join(n), n).unwrap();
                fs::set_permissions(root.join("d").join(n), fs::Permissions::from_mode(mode)).unwrap();
            }
            fs::write(root.join("run.sh"), "#!/bin/sh\n").unwrap();
            fs::set_permissions(root.join("run.sh"), fs::Permissions::from_mode(mode | 0o100)).unwrap();
            std::os::unix::fs::symlink("d/x", root.join("link")).unwrap();
        }
        filetime::set_file_mtime(b.path().join("d/x"), filetime::FileTime::from_unix_time(12345, 0)).unwrap();
        let (ta, tb) = (tar_bytes(a.path()), tar_bytes(b.path()));
        assert_eq!(ta, tb);

        let mut names = Vec::new();
        for e in tar::Archive::new(&ta[..]).entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()), (0, 0, 0));
            assert_eq!(h.username().unwrap(), Some("root"));
            names.push((e.path().unwrap().display().to_string(), h.mode().unwrap()));
        }
        let want = [("top", 0o755), ("top/d", 0o755), ("top/d/x", 0o644), ("top/d/y", 0o644), ("top/link", 0o777)];
        let want: Vec<(String, u32)> = want.iter().map(|(n, m)| (n.to_string(), *m)).collect();
        assert_eq!(names[..5], want[..]);
        assert_eq!(names[5], ("top/run.sh".to_string(), 0o755));
    }

    #[test]
    fn exact_len_cuts_and_pads() {
        let mut out = Vec::new();
        ExactLen::new(&b"abcdef"[..], 3).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        out.clear();
        ExactLen::new(&b"ab"[..], 4).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab\0\0");
    }
}
