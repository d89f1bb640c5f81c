//! COPY and ADD: the build context as an untrusted input. Sources are resolved inside the context (no
//! `..`, no symlink that leads out of it), hashed by content for the step cache, and staged into a
//! directory laid out like the image root, which then becomes the step's layer.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use layers::{ApplyOptions, Digest, WhiteoutMode};
use sha2::{Digest as _, Sha256};

use super::BuildError;
use super::ignore::IgnoreRules;
use super::view::RootView;

/// The build context directory of one image.
pub(crate) struct BuildContext {
    root: PathBuf,
    /// Its `.dockerignore` / `.containerignore`: the files COPY and ADD do not see.
    ignore: Option<IgnoreRules>,
}

/// How staged files are owned and stamped.
pub(crate) struct StageOptions<'a> {
    /// `--chown`, resolved to numbers; `None` = root, as BuildKit does for context files.
    pub owner: Option<(u32, u32)>,
    /// `--chmod`.
    pub mode: Option<u32>,
    /// ADD: extract local tar archives (plain, gzip or zstd) instead of copying them.
    pub extract_archives: bool,
    /// The context the sources come from, whose ignore file leaves files out of directory sources
    /// (`None`: files of our own, such as here-documents).
    pub context: Option<&'a BuildContext>,
}

impl BuildContext {
    /// The context rooted at `dir` (canonicalized, so symlink checks compare real paths), with the
    /// ignore file that applies to `dockerfile` (see [`IgnoreRules::load`]).
    pub fn new(dir: &Path, dockerfile: &Path) -> Result<BuildContext, BuildError> {
        let root = dir.canonicalize().map_err(|e| BuildError::io(dir, "open build context", e))?;
        let ignore = IgnoreRules::load(&root, dockerfile).map_err(BuildError::Input)?;
        Ok(BuildContext { root, ignore })
    }

    /// Whether the ignore file leaves out `path` (inside the context).
    pub fn excluded(&self, path: &Path) -> bool {
        let Some(rules) = &self.ignore else { return false };
        path.strip_prefix(&self.root).is_ok_and(|rel| rules.excludes(&rel.to_string_lossy()))
    }

    /// The ignore rules, when the context has an ignore file.
    pub fn ignore(&self) -> Option<&IgnoreRules> {
        self.ignore.as_ref()
    }

    /// Resolve one COPY/ADD source (a path or glob, relative to the context; a leading `/` means the
    /// context root, as in Docker). Every match must stay inside the context after symlinks are resolved.
    pub fn resolve(&self, source: &str) -> Result<Vec<PathBuf>, BuildError> {
        if source.contains("://") {
            return Err(BuildError::Input(format!("remote sources are not supported: {source}")));
        }
        let mut rel = PathBuf::new();
        for c in Path::new(source).components() {
            match c {
                Component::Normal(s) => rel.push(s),
                Component::ParentDir if rel.pop() => {}
                Component::ParentDir => {
                    return Err(BuildError::Input(format!("source {source:?} is outside the build context")));
                }
                _ => {}
            }
        }
        let joined = self.root.join(&rel);
        let candidates: Vec<PathBuf> = if source.contains(['*', '?', '[']) {
            let pattern = joined.to_string_lossy().into_owned();
            let paths =
                glob::glob(&pattern).map_err(|e| BuildError::Input(format!("bad source pattern {source:?}: {e}")))?;
            let mut v: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
            v.sort();
            v
        } else {
            vec![joined]
        };
        let globbed = candidates.len() != 1 || source.contains(['*', '?', '[']);
        let mut out = Vec::new();
        for path in candidates {
            // A source the ignore file leaves out is not in the context (a directory with a `!`-included
            // file below it is).
            let ignored = self.excluded(&path)
                && !(path.is_dir() && self.ignore.as_ref().is_some_and(IgnoreRules::has_exceptions));
            if ignored && globbed {
                continue;
            }
            if ignored {
                let file = self.ignore.as_ref().map(|r| r.file().display().to_string()).unwrap_or_default();
                return Err(BuildError::Input(format!(
                    "source {source:?} is excluded from the build context by {file}"
                )));
            }
            let real = match path.canonicalize() {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let lstat_ok = fs::symlink_metadata(&path).is_ok();
                    let why = if lstat_ok { "is a dangling symlink" } else { "not found in the build context" };
                    return Err(BuildError::Input(format!("source {source:?} {why}")));
                }
                Err(e) => return Err(BuildError::io(&path, "resolve source", e)),
            };
            if !real.starts_with(&self.root) {
                return Err(BuildError::Input(format!(
                    "source {source:?} resolves to {} outside the build context (through a symlink)",
                    real.display()
                )));
            }
            out.push(real);
        }
        if out.is_empty() {
            return Err(BuildError::Input(format!("source {source:?} matches no file in the build context")));
        }
        Ok(out)
    }

    /// A digest of what the sources contain — names, types, full modes, sizes, bytes, link targets — but
    /// not mtimes or owners (COPY stamps its own), so a fresh copy of an unchanged context hits the cache.
    /// The whole mode is in, as COPY keeps it: a checkout made under umask 000 has world-writable files,
    /// and its layers must not be taken for those of a 022 checkout (nor the other way round). Files the
    /// ignore file leaves out are not part of it: changing one does not invalidate the step.
    pub fn digest(&self, sources: &[PathBuf]) -> Result<Digest, BuildError> {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for src in sources {
            h.update(src.strip_prefix(&self.root).unwrap_or(src).as_os_str().as_encoded_bytes());
            h.update([0]);
            for entry in walk(src, Some(self))? {
                let meta = entry.metadata().map_err(|e| BuildError::io(entry.path(), "stat source", e.into()))?;
                let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
                h.update(rel.as_os_str().as_encoded_bytes());
                h.update(format!("\0{:o}\0{}\0", meta.mode() & 0o7777, meta.len()).as_bytes());
                if meta.is_file() {
                    let mut f =
                        fs::File::open(entry.path()).map_err(|e| BuildError::io(entry.path(), "read source", e))?;
                    loop {
                        let n = f.read(&mut buf).map_err(|e| BuildError::io(entry.path(), "read source", e))?;
                        if n == 0 {
                            break;
                        }
                        h.update(&buf[..n]);
                    }
                } else if meta.file_type().is_symlink() {
                    let t = fs::read_link(entry.path()).map_err(|e| BuildError::io(entry.path(), "read link", e))?;
                    h.update(t.as_os_str().as_encoded_bytes());
                }
                h.update([0]);
            }
        }
        Ok(Digest::from_bytes(h.finalize().into()))
    }
}

/// The entries of the resolved source `src` (itself first, then its tree depth-first with each
/// directory's entries sorted by name) that the ignore file of `ctx` leaves in. An excluded directory is
/// skipped whole, unless some `!` pattern may re-include a file below it: then it is walked, and kept
/// (with its own metadata) when something below it is, as BuildKit does.
fn walk(src: &Path, ctx: Option<&BuildContext>) -> Result<Vec<walkdir::DirEntry>, BuildError> {
    let walk_err = |e: walkdir::Error| BuildError::io(src, "walk source", e.into());
    let mut it = walkdir::WalkDir::new(src).follow_links(false).sort_by_file_name().into_iter();
    let Some((ctx, rules)) = ctx.and_then(|c| Some((c, c.ignore.as_ref()?))) else {
        return it.map(|e| e.map_err(walk_err)).collect();
    };
    // Each entry, with whether it is kept; directories start out kept only if not excluded.
    let mut out: Vec<(walkdir::DirEntry, bool)> = Vec::new();
    // Indexes into `out` of the directories enclosing the current entry.
    let mut open: Vec<usize> = Vec::new();
    while let Some(entry) = it.next().transpose().map_err(walk_err)? {
        while open.last().is_some_and(|&d| out[d].0.depth() >= entry.depth()) {
            open.pop();
        }
        let keep = entry.depth() == 0 || !ctx.excluded(entry.path());
        let is_dir = entry.file_type().is_dir();
        // An excluded directory is walked only when a `!` pattern may take back something below it.
        let walk_in = is_dir && rules.has_exceptions();
        if !(keep || walk_in) {
            if is_dir {
                it.skip_current_dir();
            }
            continue;
        }
        if keep {
            for &d in &open {
                out[d].1 = true;
            }
        }
        if is_dir {
            open.push(out.len());
        }
        out.push((entry, keep));
    }
    Ok(out.into_iter().filter(|(_, keep)| *keep).map(|(e, _)| e).collect())
}

/// Stage `sources` for `COPY/ADD sources… dest` into `stage` (laid out like the image root), Docker's
/// rules: a directory source copies its contents; a file goes to `dest/` + its name when `dest` ends
/// with `/` or is an existing directory, else to `dest` itself. Parent directories of the destination
/// that exist in the image keep their metadata; missing ones are created root-owned 0755.
///
/// This is the general path (any number of sources, ADD's archives, here-documents): the layer is
/// then written by walking `stage`. One source that lands as one sorted tree is staged and written
/// in a single pass by [`super::one_pass`] instead, with the same result.
pub(crate) fn stage(
    view: &RootView,
    stage: &Path,
    sources: &[PathBuf],
    dest: &str,
    opts: &StageOptions<'_>,
) -> Result<(), BuildError> {
    let dest = Destination::resolve(view, dest, sources.len())?;
    // Created parents, with the mtime each must keep once every child is in (writing a child changes
    // its parent's mtime): set last, innermost first.
    let mut parents = Vec::new();
    for src in sources {
        let meta = fs::symlink_metadata(src).map_err(|e| BuildError::io(src, "stat source", e))?;
        if meta.is_dir() {
            parents.extend(make_parents(view, stage, &dest.rel.join("x"))?);
            // The destination itself takes the source directory's metadata (`copy_tree`).
            parents.retain(|(p, _)| p != &stage.join(&dest.rel));
            copy_tree(src, &stage.join(&dest.rel), opts)?;
        } else if opts.extract_archives && meta.is_file() && is_tar_archive(src)? {
            // Only regular files are sniffed: opening a FIFO would block until someone writes to it.
            parents.extend(make_parents(view, stage, &dest.rel.join("x"))?);
            extract(src, &stage.join(&dest.rel))?;
        } else {
            let target = dest.file_target(src);
            parents.extend(make_parents(view, stage, &target)?);
            copy_one(src, &stage.join(&target), opts)?;
        }
    }
    for (dir, mtime) in parents.into_iter().rev() {
        filetime::set_file_mtime(&dir, filetime::FileTime::from_unix_time(mtime, 0))
            .map_err(|e| BuildError::io(&dir, "set mtime", e))?;
    }
    Ok(())
}

/// A COPY/ADD destination resolved in the image.
pub(super) struct Destination {
    /// Relative to the image root, symlinks of the image resolved.
    pub rel: PathBuf,
    /// Files go into it (`dest/` spelling, or an existing directory of the image).
    pub is_dir: bool,
}

impl Destination {
    /// Resolves `dest` for `count` sources; more than one needs a `dest/` spelling.
    pub fn resolve(view: &RootView, dest: &str, count: usize) -> Result<Destination, BuildError> {
        let dir_spelling = dest.ends_with('/') || dest.ends_with("/.");
        if count > 1 && !dir_spelling {
            return Err(BuildError::Input(format!(
                "with more than one source the destination must be a directory ending in /: {dest:?}"
            )));
        }
        let rel = view.resolve(dest, true)?;
        let is_dir = dir_spelling || view.lookup(&rel).is_some_and(|f| f.meta.is_dir());
        Ok(Destination { rel, is_dir })
    }

    /// Where a file or symlink source goes: `dest/<its name>` or `dest` itself.
    pub fn file_target(&self, src: &Path) -> PathBuf {
        if self.is_dir { self.rel.join(src.file_name().unwrap_or_default()) } else { self.rel.clone() }
    }
}

/// Create the parents of `rel` in `stage`, copying owner and mode from the image where it has them;
/// returns those created, outermost first, with the mtime each must end with (see [`stage`]).
fn make_parents(view: &RootView, stage: &Path, rel: &Path) -> Result<Vec<(PathBuf, i64)>, BuildError> {
    let mut cur = PathBuf::new();
    let mut made = Vec::new();
    let parents: Vec<_> = rel.parent().map(|p| p.iter().collect()).unwrap_or_default();
    for c in parents {
        cur.push(c);
        let at = stage.join(&cur);
        if at.is_dir() {
            continue;
        }
        fs::create_dir(&at).map_err(|e| BuildError::io(&at, "create directory", e))?;
        let (mode, owner, mtime) = parent_meta(view, &cur);
        set_meta(&at, mode, owner, None)?;
        made.push((at, mtime));
    }
    Ok(made)
}

/// Mode, owner and mtime of a created parent `rel` of a destination: the image's directory's, or
/// root-owned 0755 with the Unix epoch (the default `created` time) where the image has none — never
/// the time of the build, so that the same COPY of the same context makes the same layer.
pub(super) fn parent_meta(view: &RootView, rel: &Path) -> (u32, (u32, u32), i64) {
    match view.lookup(rel) {
        Some(f) if f.meta.is_dir() => (f.meta.mode() & 0o7777, (f.meta.uid(), f.meta.gid()), f.meta.mtime()),
        _ => (0o755, (0, 0), 0),
    }
}

fn set_meta(path: &Path, mode: u32, (uid, gid): (u32, u32), mtime: Option<i64>) -> Result<(), BuildError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|e| chown_error(path, (uid, gid), e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| BuildError::io(path, "chmod", e))?;
    if let Some(t) = mtime {
        filetime::set_file_mtime(path, filetime::FileTime::from_unix_time(t, 0))
            .map_err(|e| BuildError::io(path, "set mtime", e))?;
    }
    Ok(())
}

/// Giving `path` the owner `owner` failed with `error`.
pub(super) fn chown_error(path: &Path, owner: (u32, u32), error: io::Error) -> BuildError {
    BuildError::Chown { path: path.to_path_buf(), owner, error }
}

/// Copy one file or symlink (symlinks are copied as links, never followed).
fn copy_one(src: &Path, dst: &Path, opts: &StageOptions<'_>) -> Result<(), BuildError> {
    let meta = fs::symlink_metadata(src).map_err(|e| BuildError::io(src, "stat source", e))?;
    let owner = opts.owner.unwrap_or((0, 0));
    if dst.is_dir() && !dst.is_symlink() {
        fs::remove_dir_all(dst).map_err(|e| BuildError::io(dst, "replace directory", e))?;
    }
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target = fs::read_link(src).map_err(|e| BuildError::io(src, "read link", e))?;
        let _ = fs::remove_file(dst);
        symlink(&target, dst).map_err(|e| BuildError::io(dst, "create symlink", e))?;
        std::os::unix::fs::lchown(dst, Some(owner.0), Some(owner.1)).map_err(|e| chown_error(dst, owner, e))?;
        let mtime = filetime::FileTime::from_last_modification_time(&meta);
        return filetime::set_symlink_file_times(dst, mtime, mtime).map_err(|e| BuildError::io(dst, "set mtime", e));
    }
    if ft.is_file() {
        fs::copy(src, dst).map_err(|e| BuildError::io(dst, "copy file", e))?;
        let mode = opts.mode.unwrap_or(meta.mode() & 0o7777);
        set_meta(dst, mode, owner, Some(meta.mtime()))
    } else {
        tracing::warn!("skipping {}: not a regular file, directory or symlink", src.display());
        Ok(())
    }
}

/// Copy the contents of directory `src` into `dst` (created or merged), without what the context's
/// ignore file leaves out.
fn copy_tree(src: &Path, dst: &Path, opts: &StageOptions<'_>) -> Result<(), BuildError> {
    let owner = opts.owner.unwrap_or((0, 0));
    let mut dirs = Vec::new();
    for entry in walk(src, opts.context)? {
        let rel = entry.path().strip_prefix(src).unwrap_or(Path::new(""));
        let to = dst.join(rel);
        if entry.file_type().is_dir() {
            if !to.is_dir() {
                fs::create_dir_all(&to).map_err(|e| BuildError::io(&to, "create directory", e))?;
            }
            let meta = entry.metadata().map_err(|e| BuildError::io(entry.path(), "stat source", e.into()))?;
            dirs.push((to, opts.mode.unwrap_or(meta.mode() & 0o7777), meta.mtime()));
        } else {
            copy_one(entry.path(), &to, opts)?;
        }
    }
    // Directory metadata last: writing children changes a directory's mtime.
    for (dir, mode, mtime) in dirs.into_iter().rev() {
        set_meta(&dir, mode, owner, Some(mtime))?;
    }
    Ok(())
}

/// Whether `path` is a tar archive, plain or compressed with gzip or zstd (ADD extracts those).
pub(super) fn is_tar_archive(path: &Path) -> Result<bool, BuildError> {
    let f = fs::File::open(path).map_err(|e| BuildError::io(path, "open source", e))?;
    layers::is_tar(io::BufReader::new(f)).map_err(|e| BuildError::io(path, "read source", e))
}

/// Unpack an archive into `dir` with the layer applier, which confines every entry to `dir`.
fn extract(archive: &Path, dir: &Path) -> Result<(), BuildError> {
    fs::create_dir_all(dir).map_err(|e| BuildError::io(dir, "create directory", e))?;
    let f = fs::File::open(archive).map_err(|e| BuildError::io(archive, "open archive", e))?;
    let opts = ApplyOptions { whiteouts: WhiteoutMode::Apply, same_owner: true, ..Default::default() };
    layers::apply_layer(io::BufReader::new(f), dir, &opts)
        .map_err(|e| BuildError::Layer { what: format!("extracting {}", archive.display()), error: e })?;
    Ok(())
}
