//! A read-only view of an image's root filesystem as overlayfs would merge its extracted layer dirs,
//! without mounting anything: enough to look up `/etc/passwd` for `--chown`, the metadata of a COPY
//! destination's parents, to resolve symlinks in a destination path *inside* the image, and to read the
//! package databases an image holds for its SBOM.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use super::BuildError;

/// Symlink hops allowed while resolving one path (Linux allows 40).
const MAX_SYMLINKS: usize = 40;

/// The merged view of extracted layer dirs, top layer first.
pub(crate) struct RootView<'a> {
    layers: &'a [PathBuf],
}

/// What a path is in the view: its host location (in the topmost layer holding it) and metadata.
pub(crate) struct Found {
    pub host: PathBuf,
    pub meta: fs::Metadata,
}

/// An overlayfs whiteout: a char 0:0 device (what the kernel and our applier write), or a file carrying
/// the `user.overlay.whiteout` xattr (the form tools write where mknod is not allowed).
pub(crate) fn is_whiteout(path: &Path, meta: &fs::Metadata) -> bool {
    (meta.file_type().is_char_device() && meta.rdev() == 0)
        || (meta.is_file()
            && meta.len() == 0
            && ["user.overlay.whiteout", "trusted.overlay.whiteout"]
                .iter()
                .any(|name| matches!(xattr::get(path, name), Ok(Some(_)))))
}

/// A directory overlayfs treats as opaque: it hides what the layers below have there.
pub(crate) fn is_opaque(path: &Path) -> bool {
    ["user.overlay.opaque", "trusted.overlay.opaque"]
        .iter()
        .any(|name| matches!(xattr::get(path, name), Ok(Some(v)) if v == b"y"))
}

impl<'a> RootView<'a> {
    /// A view of `layers` (top first).
    pub fn new(layers: &'a [PathBuf]) -> RootView<'a> {
        RootView { layers }
    }

    /// Look up `rel` (relative, no `..`, no symlinks in its parents — see [`RootView::resolve`]).
    /// Never follows a symlink on the host: every component is `lstat`ed.
    pub fn lookup(&self, rel: &Path) -> Option<Found> {
        let comps: Vec<&std::ffi::OsStr> = rel.iter().collect();
        if comps.is_empty() {
            let host = self.layers.first()?.clone();
            let meta = fs::symlink_metadata(&host).ok()?;
            return Some(Found { host, meta });
        }
        for layer in self.layers {
            let mut cur = layer.clone();
            let mut hidden_below = false;
            for (i, c) in comps.iter().enumerate() {
                cur.push(c);
                let Ok(meta) = fs::symlink_metadata(&cur) else { break };
                if is_whiteout(&cur, &meta) {
                    return None;
                }
                if i + 1 == comps.len() {
                    return Some(Found { host: cur, meta });
                }
                if !meta.is_dir() {
                    // A non-directory in a higher layer hides everything below it.
                    return None;
                }
                hidden_below |= is_opaque(&cur);
            }
            if hidden_below {
                return None;
            }
        }
        None
    }

    /// The names in directory `rel` (relative, symlink-free, as [`RootView::lookup`] takes) as overlayfs
    /// would list them: the union over the layers, top first, where a whiteout hides a name below it and
    /// an opaque directory (or a non-directory) hides everything below. Sorted; empty if `rel` is absent.
    pub fn list_dir(&self, rel: &Path) -> Vec<std::ffi::OsString> {
        let mut seen = std::collections::BTreeSet::new();
        let mut names = std::collections::BTreeSet::new();
        for layer in self.layers {
            let mut cur = layer.clone();
            let (mut present, mut opaque) = (true, false);
            for c in rel.iter() {
                cur.push(c);
                match fs::symlink_metadata(&cur) {
                    Err(_) => {
                        present = false;
                        break;
                    }
                    Ok(meta) if !meta.is_dir() => return names.into_iter().collect(), // whiteout or a file
                    Ok(_) => opaque |= is_opaque(&cur),
                }
            }
            if present && let Ok(entries) = fs::read_dir(&cur) {
                for entry in entries.flatten() {
                    let name = entry.file_name();
                    if !seen.insert(name.clone()) {
                        continue; // a higher layer already decided about this name
                    }
                    let path = entry.path();
                    if !fs::symlink_metadata(&path).is_ok_and(|m| is_whiteout(&path, &m)) {
                        names.insert(name);
                    }
                }
            }
            if opaque {
                break;
            }
        }
        names.into_iter().collect()
    }

    /// Resolve `path` (absolute in the image) to a relative path with no symlinks in it, following
    /// symlinks *inside the image* as the kernel would after chroot. The last component is followed too
    /// when `follow_last`. Missing components are kept as they are (they will be created).
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<PathBuf, BuildError> {
        let mut pending: Vec<String> = components(path);
        pending.reverse();
        let mut out = PathBuf::new();
        let mut hops = 0;
        while let Some(c) = pending.pop() {
            if c == ".." {
                out.pop();
                continue;
            }
            let candidate = out.join(&c);
            let last = pending.is_empty();
            match self.lookup(&candidate) {
                Some(f) if f.meta.file_type().is_symlink() && (!last || follow_last) => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(BuildError::Input(format!("too many levels of symbolic links in {path}")));
                    }
                    let target = fs::read_link(&f.host).map_err(|e| BuildError::io(&f.host, "read link", e))?;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        out = PathBuf::new();
                    }
                    let mut t = components(&target);
                    t.reverse();
                    pending.extend(t);
                }
                _ => out = candidate,
            }
        }
        Ok(out)
    }

    /// A small file of the image (at most 4 MiB), e.g. `/etc/passwd`; `None` if absent.
    pub fn read_small_file(&self, path: &str) -> Option<String> {
        let rel = self.resolve(path, true).ok()?;
        let found = self.lookup(&rel)?;
        if !found.meta.is_file() || found.meta.len() > 4 << 20 {
            return None;
        }
        fs::read_to_string(&found.host).ok()
    }

    /// Resolve `user[:group]` (names or numbers) against the image's /etc/passwd and /etc/group, as
    /// Docker does for `COPY --chown`: a user name alone takes that user's primary group.
    pub fn resolve_owner(&self, spec: &str) -> Result<(u32, u32), BuildError> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let passwd = self.read_small_file("/etc/passwd").unwrap_or_default();
        let (uid, primary_gid) = match user.parse::<u32>() {
            Ok(uid) => (uid, find_entry(&passwd, |f| f.get(2) == Some(&user)).and_then(|f| f.get(3)?.parse().ok())),
            Err(_) => {
                let f = find_entry(&passwd, |f| f.first() == Some(&user)).ok_or_else(|| {
                    BuildError::Input(format!("unknown user {user:?} in --chown (not in the image's /etc/passwd)"))
                })?;
                let uid = f.get(2).and_then(|s| s.parse().ok());
                let uid = uid.ok_or_else(|| BuildError::Input(format!("bad /etc/passwd entry for {user:?}")))?;
                (uid, f.get(3).and_then(|s| s.parse().ok()))
            }
        };
        let gid = match group {
            None | Some("") => primary_gid.unwrap_or(uid),
            Some(g) => match g.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => {
                    let groups = self.read_small_file("/etc/group").unwrap_or_default();
                    let f = find_entry(&groups, |f| f.first() == Some(&g)).ok_or_else(|| {
                        BuildError::Input(format!("unknown group {g:?} in --chown (not in the image's /etc/group)"))
                    })?;
                    f.get(2)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| BuildError::Input(format!("bad /etc/group entry for {g:?}")))?
                }
            },
        };
        Ok((uid, gid))
    }
}

/// The `:`-separated fields of the first line of a passwd/group file matching `pred`.
fn find_entry<'t>(text: &'t str, pred: impl Fn(&Vec<&'t str>) -> bool) -> Option<Vec<&'t str>> {
    text.lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| pred(f))
}

/// The normal components of a path, keeping `..` (resolved by the caller) and dropping `.` and `/`.
fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn resolves_symlinks_inside_the_view_and_honours_whiteouts() {
        let t = tempfile::tempdir().unwrap();
        let (top, bottom) = (t.path().join("top"), t.path().join("bottom"));
        fs::create_dir_all(bottom.join("usr/lib")).unwrap();
        fs::create_dir_all(bottom.join("etc")).unwrap();
        fs::write(bottom.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\nkolla:x:42400:42401::/:/bin/sh\n").unwrap();
        fs::write(bottom.join("etc/group"), "root:x:0:\nkolla:x:42401:\nsvc:x:42402:\n").unwrap();
        fs::write(bottom.join("etc/gone"), "x").unwrap();
        symlink("/usr/lib", bottom.join("lib")).unwrap();
        // An absolute symlink that would escape on the host resolves inside the view.
        symlink("/../../../etc", bottom.join("esc")).unwrap();
        fs::create_dir_all(top.join("etc")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            top.join("etc/gone"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        let layers = vec![top, bottom];
        let v = RootView::new(&layers);
        assert_eq!(v.resolve("/lib/x", true).unwrap(), PathBuf::from("usr/lib/x"));
        assert_eq!(v.resolve("/esc/passwd", true).unwrap(), PathBuf::from("etc/passwd"));
        assert!(v.lookup(Path::new("etc/gone")).is_none());
        assert!(v.lookup(Path::new("etc/passwd")).is_some());
        assert_eq!(v.resolve_owner("kolla").unwrap(), (42400, 42401));
        assert_eq!(v.resolve_owner("kolla:svc").unwrap(), (42400, 42402));
        assert_eq!(v.resolve_owner("7:8").unwrap(), (7, 8));
        assert!(v.resolve_owner("nobody").is_err());
    }

    #[test]
    fn list_dir_merges_layers_like_overlayfs() {
        let t = tempfile::tempdir().unwrap();
        let (top, mid, bottom) = (t.path().join("top"), t.path().join("mid"), t.path().join("bottom"));
        for (layer, names) in [(&bottom, &["a", "b", "c", "d"][..]), (&mid, &["e"][..]), (&top, &["f"][..])] {
            for n in names {
                fs::create_dir_all(layer.join("site")).unwrap();
                fs::write(layer.join("site").join(n), n).unwrap();
            }
        }
        fs::create_dir_all(bottom.join("opaque/old")).unwrap();
        fs::create_dir_all(mid.join("opaque")).unwrap();
        fs::write(mid.join("opaque/new"), "").unwrap();
        xattr::set(mid.join("opaque"), "user.overlay.opaque", b"y").unwrap();
        // `a` deleted by a char 0:0 whiteout, `b` by an xattr whiteout, `c` replaced by a file above.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            mid.join("site/a"),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::empty(),
            0,
        )
        .unwrap();
        fs::write(top.join("site/b"), "").unwrap();
        xattr::set(top.join("site/b"), "user.overlay.whiteout", b"y").unwrap();
        fs::write(top.join("site/c"), "new c").unwrap();
        let layers = vec![top, mid, bottom];
        let v = RootView::new(&layers);
        let names =
            |p: &str| v.list_dir(Path::new(p)).into_iter().map(|n| n.into_string().unwrap()).collect::<Vec<_>>();
        assert_eq!(names("site"), ["c", "d", "e", "f"]);
        assert_eq!(names("opaque"), ["new"]);
        assert!(names("missing").is_empty());
        assert!(v.lookup(Path::new("site/b")).is_none());
    }
}
