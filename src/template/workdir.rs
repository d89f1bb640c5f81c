//! The work dir: the template tree and `--docker-dir`s copied in (kolla's `copytree`), and each image's
//! patches from `--patches-path` — every user-given directory read without following a link out of it,
//! and nothing written through a symlink already in the work dir.
//!
//! [`Overlay`] reads that merged tree in place, so templates render without copying it first; a build into a
//! temporary work dir then copies only the directories of the images it builds (kolla's tree has 188 images
//! and ~600 entries: copying and removing them was most of a no-op rebuild).

use std::path::{Component, Path, PathBuf};

use super::{TemplateError, io_err};

/// Remove `path` if it is a symlink, so that what is written there next lands in the work dir
/// and never where a stale link points.
pub(super) fn unlink_symlink(path: &Path) -> Result<(), TemplateError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(path).map_err(io_err(path)),
        _ => Ok(()),
    }
}

/// Refuse `path` (under the user-given directory whose canonical form is `root`) if it resolves
/// outside `root`, naming the first symlink on the way that leaves it.
fn inside(root: &Path, path: &Path) -> Result<(), TemplateError> {
    let real = path.canonicalize().map_err(io_err(path))?;
    if real.starts_with(root) {
        return Ok(());
    }
    // Name the link itself: the shortest prefix of `path` that already resolves outside.
    let mut prefix = PathBuf::new();
    let link = path
        .components()
        .find_map(|c| {
            prefix.push(c);
            let leaves = prefix.is_symlink() && prefix.canonicalize().is_ok_and(|r| !r.starts_with(root));
            leaves.then(|| prefix.clone())
        })
        .unwrap_or_else(|| path.to_path_buf());
    Err(TemplateError::LinkOutside { link, target: real, dir: root.to_path_buf() })
}

/// The merged view of the template tree and every `--docker-dir` (later ones over earlier ones), as
/// kolla's successive `copytree`s into the work dir would leave it.
#[derive(Debug)]
pub(super) struct Overlay {
    /// Each tree as given, with its canonical path (links are followed only inside it).
    trees: Vec<(PathBuf, PathBuf)>,
}

impl Overlay {
    /// The view of `trees`, lowest first.
    pub(super) fn new(trees: &[PathBuf]) -> Result<Overlay, TemplateError> {
        let trees = trees
            .iter()
            .map(|t| match t.is_dir() {
                true => Ok((t.clone(), t.canonicalize().map_err(io_err(t))?)),
                false => Err(TemplateError::NoTree { path: t.clone() }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Overlay { trees })
    }

    /// The file a template name resolves to (minijinja's `path_loader` rules: `/`-separated, no segment
    /// starting with `.`), in the topmost tree that has something at that path.
    pub(super) fn file(&self, name: &str) -> Result<Option<PathBuf>, TemplateError> {
        let mut rel = PathBuf::new();
        for seg in name.split('/') {
            if seg.starts_with('.') || seg.contains('\\') {
                return Ok(None);
            }
            rel.push(seg); // segment by segment: a leading `/` adds nothing, so the name stays inside
        }
        match self.find(&rel) {
            Some((path, root)) => {
                inside(root, &path)?;
                Ok(path.is_file().then_some(path))
            }
            None => Ok(None),
        }
    }

    /// Where `rel` comes from, for messages: its path in the topmost tree that has it (else in the topmost tree).
    pub(super) fn locate(&self, rel: &str) -> PathBuf {
        match self.find(Path::new(rel)) {
            Some((path, _)) => path,
            None => self.trees.last().map_or_else(|| PathBuf::from(rel), |(tree, _)| tree.join(rel)),
        }
    }

    /// `rel` in the topmost tree that has something there (links followed), with that tree's canonical path.
    fn find(&self, rel: &Path) -> Option<(PathBuf, &Path)> {
        self.trees.iter().rev().map(|(tree, root)| (tree.join(rel), root.as_path())).find(|(p, _)| p.exists())
    }

    /// Every directory holding a `Dockerfile.j2` in any tree, as unique relative `/` paths. Walks
    /// each whole tree as the copy would, so a link out of a tree is refused even in an image not built.
    pub(super) fn image_dirs(&self) -> Result<Vec<String>, TemplateError> {
        let mut out = std::collections::BTreeSet::new();
        for (tree, root) in &self.trees {
            for entry in walk(tree, root, tree) {
                let entry = entry?;
                if entry.file_type().is_file() && entry.file_name() == super::TEMPLATE_NAME {
                    let dir = entry.path().parent().expect("a file has a parent");
                    let rel = dir.strip_prefix(tree).expect("walkdir yields paths under its root");
                    // A Dockerfile.j2 at the root is no image (it would have no name).
                    if !rel.as_os_str().is_empty() {
                        out.insert(rel.to_path_buf());
                    }
                }
            }
        }
        // Ordered by component, as a walk of the merged tree meets them (`a/x` before `a-b/x`).
        Ok(out.into_iter().map(|rel| rel.to_string_lossy().replace('\\', "/")).collect())
    }

    /// Copy `rel` (`""` for everything) of each tree into `dst`, lowest tree first.
    pub(super) fn copy_into(&self, rel: &str, dst: &Path) -> Result<(), TemplateError> {
        for (tree, root) in &self.trees {
            let src = tree.join(rel);
            if src.is_dir() {
                copy_tree(tree, root, &src, dst)?;
            }
        }
        Ok(())
    }
}

/// Walk `dir` (under `tree`, whose canonical path is `root`) following links, refusing any that leaves `root`.
fn walk<'a>(
    tree: &'a Path,
    root: &'a Path,
    dir: &Path,
) -> impl Iterator<Item = Result<walkdir::DirEntry, TemplateError>> + 'a {
    // Links are followed as kolla's copytree does, but only inside the tree: a link to a host file would
    // otherwise become a build-context file that `COPY` ships into an image.
    walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name().into_iter().map(move |entry| {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(tree).to_path_buf();
            TemplateError::Io { path, source: e.into() }
        })?;
        if entry.path_is_symlink() {
            inside(root, entry.path())?;
        }
        Ok(entry)
    })
}

/// Copy `src` (under `tree`, canonically `root`) to the same place under `dst` recursively, overwriting
/// files (Python `copytree(dirs_exist_ok=True)`: symlinks in the source are followed, modification times
/// kept). A symlink already in the destination is replaced, never written through.
fn copy_tree(tree: &Path, root: &Path, src: &Path, dst: &Path) -> Result<(), TemplateError> {
    for entry in walk(tree, root, src) {
        let entry = entry?;
        let rel = entry.path().strip_prefix(tree).expect("walkdir yields paths under its root");
        let target = dst.join(rel);
        unlink_symlink(&target)?;
        let existing = std::fs::symlink_metadata(&target).ok();
        if entry.file_type().is_dir() {
            if existing.as_ref().is_some_and(|m| m.is_file()) {
                std::fs::remove_file(&target).map_err(io_err(&target))?;
            }
            std::fs::create_dir_all(&target).map_err(io_err(&target))?;
        } else {
            if existing.as_ref().is_some_and(|m| m.is_dir()) {
                std::fs::remove_dir_all(&target).map_err(io_err(&target))?;
            }
            std::fs::copy(entry.path(), &target).map_err(io_err(entry.path()))?;
            let meta =
                entry.metadata().map_err(|e| TemplateError::Io { path: entry.path().into(), source: e.into() })?;
            let mtime = filetime::FileTime::from_last_modification_time(&meta);
            filetime::set_file_mtime(&target, mtime).map_err(io_err(&target))?;
        }
    }
    Ok(())
}

/// Copy `<patches_path>/<image>/series` and the patches it lists into `<image>/patches/`
/// (which is always created, as kolla does).
pub(super) fn copy_patches(image_dir: &Path, name: &str, patches_path: Option<&Path>) -> Result<(), TemplateError> {
    let dest = image_dir.join("patches");
    unlink_symlink(&dest)?;
    std::fs::create_dir_all(&dest).map_err(io_err(&dest))?;
    let Some(patches_path) = patches_path else { return Ok(()) };
    let root = patches_path.canonicalize().map_err(io_err(patches_path))?;
    let src = patches_path.join(name);
    if !src.is_dir() {
        return Ok(());
    }
    inside(&root, &src)?;
    let series = src.join("series");
    if !series.is_file() {
        return Ok(());
    }
    inside(&root, &series)?;
    // Check every source first, so that a refused link leaves no partial copy behind.
    let text = std::fs::read_to_string(&series).map_err(io_err(&series))?;
    let mut copies = vec![(series.clone(), PathBuf::from("series"))];
    for entry in text.lines().filter(|l| !l.starts_with('#')).map(str::trim).filter(|l| !l.is_empty()) {
        let rel = Path::new(entry);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(TemplateError::UnsafePatch { series: series.clone(), name: entry.to_string() });
        }
        let from = src.join(rel);
        if from.is_file() {
            inside(&root, &from)?;
            copies.push((from, rel.to_path_buf()));
        }
    }
    for (from, rel) in copies {
        let mut dir = dest.clone();
        for c in rel.parent().into_iter().flat_map(Path::components) {
            dir.push(c);
            unlink_symlink(&dir)?;
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let to = dest.join(&rel);
        unlink_symlink(&to)?;
        std::fs::copy(&from, &to).map_err(io_err(&from))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_dirs_merge_trees_in_the_order_a_walk_of_the_copy_meets_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (low, high) = (tmp.path().join("low"), tmp.path().join("high"));
        for (tree, rel) in [(&low, "a-b/x"), (&low, "a/y"), (&high, "a/y"), (&high, "a/z"), (&high, "b")] {
            std::fs::create_dir_all(tree.join(rel)).unwrap();
            std::fs::write(tree.join(rel).join(super::super::TEMPLATE_NAME), rel).unwrap();
        }
        std::fs::write(low.join(super::super::TEMPLATE_NAME), "no image at the root").unwrap();
        let overlay = Overlay::new(&[low.clone(), high.clone()]).unwrap();
        assert_eq!(overlay.image_dirs().unwrap(), ["a/y", "a/z", "a-b/x", "b"]);
        assert_eq!(overlay.file("a/y/Dockerfile.j2").unwrap(), Some(high.join("a/y/Dockerfile.j2")));
        assert_eq!(overlay.file("a-b/x/Dockerfile.j2").unwrap(), Some(low.join("a-b/x/Dockerfile.j2")));
        for hidden in ["../low/a/y/Dockerfile.j2", "a/.y", "/etc/passwd", "a/missing"] {
            assert_eq!(overlay.file(hidden).unwrap(), None, "{hidden}");
        }
    }
}
