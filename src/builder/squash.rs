//! `--squash`: an image's own layers (those its Dockerfile made on top of its `FROM` image) merged
//! into one, the parent's layers kept, as `docker build --squash` and kolla-build's `docker-squash`
//! step do. The own layers are extracted overlayfs upper dirs; merging them, lowest first, into one
//! new upper dir gives exactly the change they make together: a later layer's file replaces an
//! earlier one's, a whiteout deletes what the earlier layers added (and stays only where it hides
//! something of the parent), an opaque directory empties what the earlier layers put in it. That dir
//! becomes the one layer, written like any other step's.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode};

use super::BuildError;
use super::view::{RootView, is_opaque, is_whiteout};

/// Merge the upper dirs `own` (lowest first) into the empty directory `into`, as one upper dir over
/// `parent` (the image below them). Metadata (owner, mode, xattrs, mtimes) is kept; a directory takes
/// that of the highest layer holding it.
pub(crate) fn merge_layers(own: &[PathBuf], parent: &RootView, into: &Path) -> Result<(), BuildError> {
    // The directories of the merge, with the layer dir whose metadata they end with.
    let mut dirs: Vec<(PathBuf, PathBuf)> = Vec::new();
    for layer in own {
        // Paths of this layer that share an inode (hard links) stay linked in the merge.
        let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for entry in walkdir::WalkDir::new(layer).follow_links(false).min_depth(1).sort_by_file_name() {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(layer).to_path_buf();
                BuildError::io(&path, "read layer", e.into_io_error().unwrap_or_else(|| io::Error::other("walk")))
            })?;
            let src = entry.path();
            let rel = src.strip_prefix(layer).expect("walkdir stays under its root");
            let dst = into.join(rel);
            let meta = fs::symlink_metadata(src).map_err(|e| BuildError::io(src, "stat", e))?;
            if is_whiteout(src, &meta) {
                remove_any(&dst)?;
                if parent.lookup(rel).is_some() {
                    make_whiteout(&dst)?;
                }
            } else if meta.is_dir() {
                merge_dir(src, &dst, parent.lookup(rel).is_some())?;
                dirs.retain(|(d, _)| d != &dst);
                dirs.push((dst, src.to_path_buf()));
            } else {
                remove_any(&dst)?;
                match links.get(&(meta.dev(), meta.ino())) {
                    Some(first) if meta.nlink() > 1 => {
                        fs::hard_link(first, &dst).map_err(|e| BuildError::io(&dst, "hard link", e))?
                    }
                    _ => {
                        copy_node(src, &dst, &meta)?;
                        links.insert((meta.dev(), meta.ino()), dst);
                    }
                }
            }
        }
    }
    // Deepest first: setting a directory's metadata after its children were created keeps its mtime.
    dirs.sort_by_key(|(d, _)| std::cmp::Reverse(d.components().count()));
    for (dst, src) in dirs {
        let meta = fs::symlink_metadata(&src).map_err(|e| BuildError::io(&src, "stat", e))?;
        copy_metadata(&src, &dst, &meta)?;
    }
    Ok(())
}

/// A directory of a layer at `dst`: kept if the merge has one there (emptied if the layer's is
/// opaque), else made, opaque when it replaces something (a lower own layer's non-directory or
/// whiteout) while the parent has that path, so that the parent's one stays hidden.
fn merge_dir(src: &Path, dst: &Path, in_parent: bool) -> Result<(), BuildError> {
    let opaque = is_opaque(src);
    match fs::symlink_metadata(dst) {
        Ok(m) if m.is_dir() => {
            if opaque {
                for child in fs::read_dir(dst).map_err(|e| BuildError::io(dst, "read directory", e))? {
                    let child = child.map_err(|e| BuildError::io(dst, "read directory", e))?;
                    remove_any(&child.path())?;
                }
                set_opaque(dst)?;
            }
        }
        existing => {
            let replaces = existing.is_ok();
            remove_any(dst)?;
            fs::create_dir(dst).map_err(|e| BuildError::io(dst, "create directory", e))?;
            if opaque || (replaces && in_parent) {
                set_opaque(dst)?;
            }
        }
    }
    Ok(())
}

/// Remove whatever is at `path` (a tree too); nothing there is fine.
fn remove_any(path: &Path) -> Result<(), BuildError> {
    let result = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    };
    result.map_err(|e| BuildError::io(path, "remove", e))
}

/// An overlayfs whiteout (char device 0:0) at `path`.
fn make_whiteout(path: &Path) -> Result<(), BuildError> {
    rustix::fs::mknodat(rustix::fs::CWD, path, FileType::CharacterDevice, Mode::empty(), 0)
        .map_err(|e| BuildError::io(path, "create whiteout", e.into()))
}

fn set_opaque(dir: &Path) -> Result<(), BuildError> {
    xattr::set(dir, "user.overlay.opaque", b"y").map_err(|e| BuildError::io(dir, "set user.overlay.opaque", e))
}

/// Copy the non-directory `src` (file, symlink, device, fifo) to `dst` with its metadata.
fn copy_node(src: &Path, dst: &Path, meta: &fs::Metadata) -> Result<(), BuildError> {
    let ft = meta.file_type();
    let made = if ft.is_symlink() {
        fs::read_link(src).and_then(|target| std::os::unix::fs::symlink(target, dst))
    } else if ft.is_file() {
        fs::copy(src, dst).map(|_| ())
    } else {
        let kind = if ft.is_char_device() {
            FileType::CharacterDevice
        } else if ft.is_block_device() {
            FileType::BlockDevice
        } else if ft.is_fifo() {
            FileType::Fifo
        } else {
            return Ok(()); // a socket: layers leave them out
        };
        rustix::fs::mknodat(rustix::fs::CWD, dst, kind, Mode::from_raw_mode(0o600), meta.rdev()).map_err(Into::into)
    };
    made.map_err(|e| BuildError::io(dst, "copy into the squashed layer", e))?;
    copy_metadata(src, dst, meta)
}

/// Owner, mode, xattrs (not overlayfs' own) and mtime of `src` onto `dst`; symlinks are not followed.
fn copy_metadata(src: &Path, dst: &Path, meta: &fs::Metadata) -> Result<(), BuildError> {
    let err = |op| move |e: io::Error| BuildError::io(dst, op, e);
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid())).map_err(err("chown"))?;
    if !meta.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(err("chmod"))?;
    }
    for name in xattr::list(src).map_err(err("list xattrs"))? {
        let overlay =
            name.to_str().is_some_and(|n| n.starts_with("user.overlay.") || n.starts_with("trusted.overlay."));
        if overlay {
            continue;
        }
        if let Some(value) = xattr::get(src, &name).map_err(err("read xattr"))? {
            xattr::set(dst, &name, &value).map_err(err("set xattr"))?;
        }
    }
    let mtime = filetime::FileTime::from_last_modification_time(meta);
    filetime::set_symlink_file_times(dst, mtime, mtime).map_err(err("set mtime"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, content: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }

    /// What each path of `root` is: file contents, `dir`, `dir (opaque)`, `whiteout`, `-> target`.
    fn listing(root: &Path) -> Vec<(String, String)> {
        walkdir::WalkDir::new(root)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                let e = e.unwrap();
                let meta = fs::symlink_metadata(e.path()).unwrap();
                let what = if is_whiteout(e.path(), &meta) {
                    "whiteout".to_string()
                } else if meta.is_dir() {
                    if is_opaque(e.path()) { "dir (opaque)".into() } else { "dir".into() }
                } else if meta.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(e.path()).unwrap().display())
                } else {
                    fs::read_to_string(e.path()).unwrap()
                };
                (e.path().strip_prefix(root).unwrap().display().to_string(), what)
            })
            .collect()
    }

    /// Two upper dirs over a parent: later files win, a whiteout of something the own layers added
    /// disappears while one of the parent's stays, an opaque directory drops what the layers below put
    /// in it, a directory replacing a parent path becomes opaque, metadata comes from the top layer.
    #[test]
    fn own_layers_merge_as_overlayfs_stacks_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (parent, l1, l2, out) =
            (tmp.path().join("p"), tmp.path().join("1"), tmp.path().join("2"), tmp.path().join("o"));
        for d in [&parent, &l1, &l2, &out] {
            fs::create_dir(d).unwrap();
        }
        write(&parent, "etc/os", "parent");
        write(&parent, "old/kept", "parent");
        write(&parent, "gone", "parent");
        write(&l1, "etc/new", "one");
        write(&l1, "tmp/scratch", "one");
        write(&l1, "cache/a", "one");
        write(&l1, "old", "a file replacing a parent dir");
        std::os::unix::fs::symlink("etc/new", l1.join("link")).unwrap();
        write(&l2, "etc/new", "two");
        fs::create_dir_all(l2.join("tmp")).unwrap();
        make_whiteout(&l2.join("tmp/scratch")).unwrap();
        make_whiteout(&l2.join("gone")).unwrap();
        write(&l2, "cache/b", "two");
        set_opaque(&l2.join("cache")).unwrap();
        write(&l2, "old/again", "two");
        fs::set_permissions(l2.join("etc"), fs::Permissions::from_mode(0o750)).unwrap();
        let view_dirs = [parent.clone()];
        merge_layers(&[l1.clone(), l2.clone()], &RootView::new(&view_dirs), &out).unwrap();
        let got = listing(&out);
        let want: Vec<(String, String)> = [
            ("cache", "dir (opaque)"),
            ("cache/b", "two"),
            ("etc", "dir"),
            ("etc/new", "two"),
            ("gone", "whiteout"),
            ("link", "-> etc/new"),
            ("old", "dir (opaque)"),
            ("old/again", "two"),
            ("tmp", "dir"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(got, want);
        assert_eq!(fs::metadata(out.join("etc")).unwrap().permissions().mode() & 0o777, 0o750);
    }
}
