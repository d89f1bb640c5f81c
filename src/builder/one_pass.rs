//! COPY/ADD of one source in one pass: every source file is read once, and the same bytes go to its
//! staged copy (the extracted layer dir that later steps see as a lower dir) and to the layer's tar
//! stream, which the compressor turns into the blob on its thread pool meanwhile.
//!
//! The layer must be byte for byte what [`layers::write_layer`] writes when it walks the staged root
//! afterwards (the layer dir is stored under that diff_id): entries come in the walk's order (parents
//! of the destination, then the source tree with each directory's entries sorted by name bytes), and
//! each header carries the metadata that a later `lstat` of the staged entry gives. Directories get
//! their final mode, owner and mtime when they are left, after their last child was created, but
//! their header is written when they are entered, from the values they are then given.
//!
//! Entries are created relative to open directory handles (`mkdirat`, `openat(O_CREAT|O_EXCL)`,
//! `symlinkat`) with as few calls as the kernel allows: a file is created with its mode, and is
//! chowned only when it would not get the wanted owner anyway, chmodded only when the umask masked
//! bits of its mode or the mode has setuid/setgid/sticky bits. Source symlinks are never followed,
//! nothing is created but new names below the stage root, and what [`super::context::stage`] skips
//! (FIFOs, sockets, devices) is skipped here too, with the same warning; hard links become separate
//! files.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::{File, Metadata};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use layers::{Compression, Entry, EntryKind, LayerBuilder, LayerInfo, TreeOptions};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps, UTIME_OMIT};

use super::BuildError;
use super::context::{Destination, StageOptions, is_tar_archive, parent_meta};
use super::view::RootView;

/// A COPY/ADD that can be staged and written in one pass, ready to run.
pub(crate) struct OnePass<'a> {
    src: &'a Path,
    src_meta: Metadata,
    stage: &'a Path,
    opts: &'a StageOptions<'a>,
    /// Parents of the destination to create under the stage root, outermost first, with the mode,
    /// owner and mtime each gets (see [`parent_meta`]).
    parents: Vec<(OsString, u32, (u32, u32), i64)>,
    /// What the source becomes in the last parent (or the stage root): `None` for a directory
    /// source copied into the stage root itself, which is no entry of the layer.
    name: Option<OsString>,
}

impl<'a> OnePass<'a> {
    /// The one-pass plan for `COPY/ADD sources… dest` into the empty directory `stage`, or `None`
    /// when the two-pass path ([`super::context::stage`] then a walk) must be taken: several
    /// sources (each is staged on its own, and the later ones may replace or merge into what the
    /// earlier ones staged, so the staging order is not the sorted order of the tree), an archive
    /// that ADD extracts (the applier creates entries in the archive's order), a file copied onto
    /// the image root itself, or a stage root with xattrs (a default ACL would give every created
    /// entry a mode and xattrs that this pass cannot predict without reading them back).
    /// Here-documents take the two-pass path as well: the caller passes no sources then.
    pub fn plan(
        view: &RootView,
        stage: &'a Path,
        sources: &'a [PathBuf],
        dest: &str,
        opts: &'a StageOptions<'a>,
    ) -> Result<Option<OnePass<'a>>, BuildError> {
        let [src] = sources else { return Ok(None) };
        // A directory left out by the ignore file may hold a file a `!` pattern takes back in: whether
        // it is copied is known only after its walk, and its header would come first.
        if opts.context.and_then(|c| c.ignore()).is_some_and(|r| r.has_exceptions()) {
            return Ok(None);
        }
        let dest = Destination::resolve(view, dest, 1)?;
        let src_meta = std::fs::symlink_metadata(src).map_err(|e| BuildError::io(src, "stat source", e))?;
        let to = if src_meta.is_dir() {
            dest.rel
        } else if opts.extract_archives && src_meta.is_file() && is_tar_archive(src)? {
            return Ok(None);
        } else {
            dest.file_target(src)
        };
        if (!src_meta.is_dir() && to.as_os_str().is_empty()) || !plain_dir(stage) {
            return Ok(None);
        }
        let comps: Vec<OsString> = to.iter().map(|c| c.to_owned()).collect();
        let (name, parent_names) = match comps.split_last() {
            Some((last, parents)) => (Some(last.clone()), parents),
            None => (None, &[][..]),
        };
        let mut cur = PathBuf::new();
        let parents = parent_names
            .iter()
            .map(|c| {
                cur.push(c);
                let (mode, owner, mtime) = parent_meta(view, &cur);
                (c.clone(), mode, owner, mtime)
            })
            .collect();
        Ok(Some(OnePass { src, src_meta, stage, opts, parents, name }))
    }

    /// Stages the source and writes the layer of the staged tree to `out`, compressed as
    /// `compression` with `tree`'s threads and `SOURCE_DATE_EPOCH` (its `overlay_upper` is not
    /// used: a stage is no overlay upper dir), and its tar-split skeleton to `skeleton`.
    pub fn run(
        self,
        tree: &TreeOptions,
        compression: Compression,
        out: impl Write,
        skeleton: impl Write,
    ) -> Result<LayerInfo, BuildError> {
        let layer_err = |e| BuildError::Layer { what: format!("layer of {}", self.src.display()), error: e };
        let layer = LayerBuilder::new(compression, tree.threads, tree.source_date_epoch, out)
            .map_err(layer_err)?
            .recording(skeleton)
            .map_err(|e| layer_err(layers::LayerError::Output(e)))?;
        let me = (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw());
        let mut pass = Pass {
            layer,
            stage: self.stage,
            src_root: self.src,
            owner: self.opts.owner.unwrap_or((0, 0)),
            mode: self.opts.mode,
            context: self.opts.context,
            me,
            umask: umask(),
            rel: Vec::new(),
            base: 0,
        };
        let root =
            open_dir(rustix::fs::CWD, self.stage).map_err(|e| BuildError::io(self.stage, "open stage", e.into()))?;
        let root_stat = rustix::fs::fstat(&root).map_err(|e| pass.stage_err("stat", e))?;
        let mut open = vec![(root, root_stat)];
        for (name, mode, owner, mtime) in &self.parents {
            let (parent, _) = open.last().expect("the stage root is open");
            pass.push(name.as_bytes());
            let dir = pass.make_dir(parent.as_fd(), name.as_bytes(), *mode)?;
            pass.append(Entry {
                kind: EntryKind::Dir,
                mode: *mode,
                uid: owner.0,
                gid: owner.1,
                mtime: *mtime,
                xattrs: &[],
            })?;
            open.push(dir);
        }
        let (parent, parent_stat) = open.last().expect("the stage root is open");
        match &self.name {
            None => {
                // A directory copied into the image root: the stage root takes its metadata.
                let src_dir = open_dir(rustix::fs::CWD, self.src).map_err(|e| pass.src_err("open directory", e))?;
                pass.copy_entries(src_dir, parent.as_fd(), parent_stat.st_gid)?;
                let mode = pass.mode.unwrap_or(self.src_meta.mode() & 0o7777);
                pass.finish_dir(parent.as_fd(), parent_stat, mode, pass.owner, timespec(self.src_meta.mtime()))?;
            }
            Some(name) => {
                pass.push(name.as_bytes());
                pass.base = pass.rel.len();
                let src_name = cstring(self.src.file_name().unwrap_or_default().as_bytes())?;
                let src_dir = self.src.parent().unwrap_or(Path::new("/"));
                let src_dir = open_dir(rustix::fs::CWD, src_dir).map_err(|e| pass.src_err("open directory", e))?;
                let src_stat = stat_at(src_dir.as_fd(), &src_name).map_err(|e| pass.src_err("stat source", e))?;
                let name = cstring(name.as_bytes())?;
                pass.copy_entry(src_dir.as_fd(), &src_name, &src_stat, parent.as_fd(), &name, parent_stat.st_gid)?;
            }
        }
        // Parents last, innermost first, as the two-pass path leaves them (see [`parent_meta`]).
        for ((dir, stat), (_, mode, owner, mtime)) in open.drain(1..).rev().zip(self.parents.iter().rev()) {
            pass.finish_dir(dir.as_fd(), &stat, *mode, *owner, timespec(*mtime))?;
        }
        pass.layer.finish().map_err(layer_err)
    }
}

/// The state of one pass.
struct Pass<'a, W: Write, S: Write> {
    layer: LayerBuilder<W, S>,
    stage: &'a Path,
    src_root: &'a Path,
    /// `--chown` (root by default) for every copied entry.
    owner: (u32, u32),
    /// `--chmod` for every copied entry; `None` keeps the source's mode.
    mode: Option<u32>,
    /// The build context, whose ignore file leaves entries out (with no `!` pattern: an excluded
    /// directory is left out whole).
    context: Option<&'a super::context::BuildContext>,
    /// Our effective uid and gid: what a new entry gets, unless its directory passes its group on.
    me: (u32, u32),
    /// Permission bits that `openat` and `mkdirat` clear.
    umask: u32,
    /// The layer path of the current entry.
    rel: Vec<u8>,
    /// Where the source's own part of `rel` starts (what follows is its path in the source).
    base: usize,
}

impl<W: Write, S: Write> Pass<'_, W, S> {
    /// Copies the entries of the source directory `src` into the staged directory `dst`, whose
    /// group is `dst_gid`, in name order.
    fn copy_entries(&mut self, src: OwnedFd, dst: BorrowedFd, dst_gid: u32) -> Result<(), BuildError> {
        let mut dir = rustix::fs::Dir::new(src).map_err(|e| self.src_err("read directory", e))?;
        let mut names = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| self.src_err("read directory", e))?;
            let name = entry.file_name();
            if name != c"." && name != c".." {
                names.push(name.to_owned());
            }
        }
        // Byte order, as the layer walk sorts: a NUL ends every name and sorts below any byte.
        names.sort_unstable();
        let src = dir.fd().map_err(|e| self.src_err("read directory", e))?;
        for name in names {
            let len = self.rel.len();
            self.push(name.to_bytes());
            if self.context.is_some_and(|c| c.excluded(&self.src_path())) {
                self.rel.truncate(len);
                continue;
            }
            let stat = stat_at(src, &name).map_err(|e| self.src_err("stat source", e))?;
            self.copy_entry(src, &name, &stat, dst, &name, dst_gid)?;
            self.rel.truncate(len);
        }
        Ok(())
    }

    /// Copies `src_dir/src_name` (with `lstat` result `stat`) to `dst_dir/name`, where new entries
    /// get group `dst_gid` when it is not ours (a setgid directory, or a `grpid` mount).
    fn copy_entry(
        &mut self,
        src_dir: BorrowedFd,
        src_name: &CStr,
        stat: &Stat,
        dst_dir: BorrowedFd,
        name: &CStr,
        dst_gid: u32,
    ) -> Result<(), BuildError> {
        let owner = self.owner;
        let chown = owner != (self.me.0, self.me.1) || dst_gid != self.me.1;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                let mode = self.mode.unwrap_or(stat.st_mode & 0o7777);
                let src =
                    openat(src_dir, src_name, OFlags::DIRECTORY).map_err(|e| self.src_err("open directory", e))?;
                let (dir, created) = self.make_dir(dst_dir, name.to_bytes(), mode)?;
                self.append(Entry {
                    kind: EntryKind::Dir,
                    mode,
                    uid: owner.0,
                    gid: owner.1,
                    mtime: stat.st_mtime,
                    xattrs: &[],
                })?;
                self.copy_entries(src, dir.as_fd(), created.st_gid)?;
                self.finish_dir(dir.as_fd(), &created, mode, owner, timespec(stat.st_mtime))
            }
            FileType::RegularFile => {
                let mode = self.mode.unwrap_or(stat.st_mode & 0o7777);
                // NONBLOCK: a file swapped for a FIFO since the stat must not block the build.
                let src = openat(src_dir, src_name, OFlags::NONBLOCK).map_err(|e| self.src_err("open source", e))?;
                let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let dst = rustix::fs::openat(dst_dir, name, flags, Mode::from_raw_mode(mode & 0o777))
                    .map_err(|e| self.stage_err("create file", e))?;
                let (mut src, dst) = (File::from(src), File::from(dst));
                let mut tee = Tee { src: &mut src, dst: &dst };
                let size = stat.st_size as u64;
                let kind = EntryKind::File { size, data: &mut tee };
                self.layer
                    .append(
                        &self.rel,
                        Entry { kind, mode, uid: owner.0, gid: owner.1, mtime: stat.st_mtime, xattrs: &[] },
                    )
                    .map_err(|e| self.stage_err("copy file", e))?;
                // After the data: writing may clear setuid/setgid, chown clears them.
                if chown {
                    rustix::fs::fchown(&dst, Some(uid(owner.0)), Some(gid(owner.1)))
                        .map_err(|e| self.chown_err(owner, e))?;
                }
                if mode & 0o7000 != 0 || mode & 0o777 & self.umask != 0 {
                    rustix::fs::fchmod(&dst, Mode::from_raw_mode(mode)).map_err(|e| self.stage_err("chmod", e))?;
                }
                let times = Timestamps { last_access: omit(), last_modification: timespec(stat.st_mtime) };
                rustix::fs::futimens(&dst, &times).map_err(|e| self.stage_err("set mtime", e))
            }
            FileType::Symlink => {
                let target =
                    rustix::fs::readlinkat(src_dir, src_name, Vec::new()).map_err(|e| self.src_err("read link", e))?;
                rustix::fs::symlinkat(target.as_c_str(), dst_dir, name)
                    .map_err(|e| self.stage_err("create symlink", e))?;
                if chown {
                    let nofollow = AtFlags::SYMLINK_NOFOLLOW;
                    rustix::fs::chownat(dst_dir, name, Some(uid(owner.0)), Some(gid(owner.1)), nofollow)
                        .map_err(|e| self.chown_err(owner, e))?;
                }
                // A symlink keeps its source's mtime, as files do (and BuildKit does): a copy of
                // the same context makes the same layer.
                let times = Timestamps { last_access: omit(), last_modification: timespec(stat.st_mtime) };
                rustix::fs::utimensat(dst_dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.stage_err("set mtime", e))?;
                let made = stat_at(dst_dir, name).map_err(|e| self.stage_err("stat", e))?;
                let kind = EntryKind::Symlink { target: target.as_bytes() };
                let mode = made.st_mode & 0o7777;
                self.append(Entry { kind, mode, uid: made.st_uid, gid: made.st_gid, mtime: stat.st_mtime, xattrs: &[] })
            }
            _ => {
                let path = self.src_path();
                tracing::warn!("skipping {}: not a regular file, directory or symlink", path.display());
                Ok(())
            }
        }
    }

    /// Creates directory `parent/name` (writable for us, whatever `mode` it gets when it is left)
    /// and opens it; with its `fstat`, which [`Pass::finish_dir`] compares with what it must be.
    fn make_dir(&self, parent: BorrowedFd, name: &[u8], mode: u32) -> Result<(OwnedFd, Stat), BuildError> {
        let name = cstring(name)?;
        rustix::fs::mkdirat(parent, &name, Mode::from_raw_mode(mode & 0o777 | 0o700))
            .map_err(|e| self.stage_err("create directory", e))?;
        let dir = openat(parent, &name, OFlags::DIRECTORY).map_err(|e| self.stage_err("open directory", e))?;
        let stat = rustix::fs::fstat(&dir).map_err(|e| self.stage_err("stat", e))?;
        Ok((dir, stat))
    }

    /// Gives a staged directory its final owner, mode and mtime, with only the calls needed
    /// beyond what `created` (its `fstat` when it was made) shows.
    fn finish_dir(
        &self,
        dir: BorrowedFd,
        created: &Stat,
        mode: u32,
        owner: (u32, u32),
        mtime: Timespec,
    ) -> Result<(), BuildError> {
        let chown = (created.st_uid, created.st_gid) != owner;
        if chown {
            rustix::fs::fchown(dir, Some(uid(owner.0)), Some(gid(owner.1))).map_err(|e| self.chown_err(owner, e))?;
        }
        if chown || created.st_mode & 0o7777 != mode {
            rustix::fs::fchmod(dir, Mode::from_raw_mode(mode)).map_err(|e| self.stage_err("chmod", e))?;
        }
        let times = Timestamps { last_access: omit(), last_modification: mtime };
        rustix::fs::futimens(dir, &times).map_err(|e| self.stage_err("set mtime", e))
    }

    /// Writes the header of the current entry (one without data).
    fn append(&mut self, entry: Entry) -> Result<(), BuildError> {
        let res = self.layer.append(&self.rel, entry);
        res.map_err(|e| self.stage_err("write layer", e))
    }

    /// Appends a name to the current layer path.
    fn push(&mut self, name: &[u8]) {
        if !self.rel.is_empty() {
            self.rel.push(b'/');
        }
        self.rel.extend_from_slice(name);
    }

    /// The source file of the current entry.
    fn src_path(&self) -> PathBuf {
        let in_source = self.rel[self.base..].strip_prefix(b"/").unwrap_or(&self.rel[self.base..]);
        self.src_root.join(OsStr::from_bytes(in_source))
    }

    fn src_err(&self, op: &'static str, e: impl Into<io::Error>) -> BuildError {
        BuildError::io(&self.src_path(), op, e.into())
    }

    fn chown_err(&self, owner: (u32, u32), e: rustix::io::Errno) -> BuildError {
        super::context::chown_error(&self.stage.join(OsStr::from_bytes(&self.rel)), owner, e.into())
    }

    fn stage_err(&self, op: &'static str, e: impl Into<io::Error>) -> BuildError {
        BuildError::io(&self.stage.join(OsStr::from_bytes(&self.rel)), op, e.into())
    }
}

/// Reads the source and writes every byte it reads to the staged copy: the layer builder reads
/// the file once, into its own reused buffer, for both.
struct Tee<'a> {
    src: &'a mut File,
    dst: &'a File,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read(buf)?;
        let mut dst = self.dst;
        dst.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Whether new entries in `dir` get nothing from it but their group: no xattrs on it (a default
/// ACL, say), `security.selinux` aside, which the layer walk leaves out.
fn plain_dir(dir: &Path) -> bool {
    match xattr::list(dir) {
        Ok(mut names) => names.all(|n| n == "security.selinux"),
        Err(e) => e.kind() == io::ErrorKind::Unsupported,
    }
}

/// The process umask, from `/proc/self/status` (reading it with `umask(2)` would change it for a
/// moment under other threads); all bits when it cannot be read, so that every file is chmodded.
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0o777)
}

/// `openat` for reading, never following a symlink.
fn openat(dir: BorrowedFd, name: &CStr, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(dir, name, flags | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

fn open_dir(at: BorrowedFd, path: &Path) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(at, path, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
}

fn stat_at(dir: BorrowedFd, name: &CStr) -> rustix::io::Result<Stat> {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

fn cstring(name: &[u8]) -> Result<CString, BuildError> {
    CString::new(name)
        .map_err(|_| BuildError::Input(format!("file name with a NUL byte: {:?}", OsString::from_vec(name.to_vec()))))
}

fn timespec(sec: i64) -> Timespec {
    Timespec { tv_sec: sec, tv_nsec: 0 }
}

fn omit() -> Timespec {
    Timespec { tv_sec: 0, tv_nsec: UTIME_OMIT }
}

fn uid(raw: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(raw)
}

fn gid(raw: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(raw)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use layers::{Compression, LayerInfo, TreeOptions};

    use super::super::context::{self, StageOptions};
    use super::super::view::RootView;
    use super::*;

    /// Mtimes of the source files: before `EPOCH`, except where a test wants one clamped.
    const T0: i64 = 1_500_000_000;
    const EPOCH: i64 = 1_600_000_000;

    fn set_mode(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn set_mtime(p: &Path, t: i64) {
        let nofollow = AtFlags::SYMLINK_NOFOLLOW;
        let times = Timestamps { last_access: timespec(t), last_modification: timespec(t) };
        rustix::fs::utimensat(rustix::fs::CWD, p, &times, nofollow).unwrap();
    }

    /// A source tree with every kind of entry COPY meets; directory mtimes are set last.
    fn source_tree(root: &Path) {
        let long = "n".repeat(120);
        for d in ["a/b/c", "empty", "bin", "ro", "sgid", &format!("deep/{}/{}", "d".repeat(60), "e".repeat(60))] {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        fs::write(root.join("a/b/c/file"), "nested\n").unwrap();
        fs::write(root.join("bin/su"), "#!/bin/sh\n").unwrap();
        set_mode(&root.join("bin/su"), 0o4755);
        fs::write(root.join("secret"), "s").unwrap();
        set_mode(&root.join("secret"), 0o600);
        fs::write(root.join("group-w"), "g").unwrap();
        set_mode(&root.join("group-w"), 0o664);
        fs::write(root.join(&long), "long name").unwrap();
        fs::write(root.join(format!("deep/{}/{}/f", "d".repeat(60), "e".repeat(60))), "deep").unwrap();
        let big: Vec<u8> = (0..(1u32 << 20) + 4321).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        fs::write(root.join("big.bin"), &big).unwrap();
        fs::write(root.join("empty-file"), "").unwrap();
        fs::write(root.join("ro/inside"), "in a read-only dir").unwrap();
        fs::write(root.join("sgid/f"), "in a setgid dir").unwrap();
        fs::write(root.join("linked"), "two names").unwrap();
        fs::hard_link(root.join("linked"), root.join("linked-too")).unwrap();
        fs::write(root.join("future"), "clamped").unwrap();
        fs::write(root.join("old"), "pre-1970").unwrap();
        symlink("a/b/c/file", root.join("rel-link")).unwrap();
        symlink("/etc/passwd", root.join("abs-link")).unwrap();
        symlink("nowhere", root.join("dangling")).unwrap();
        symlink("t".repeat(150), root.join("long-target")).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, root.join("fifo"), FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
        for entry in walkdir::WalkDir::new(root).contents_first(true) {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy();
            let t = match &*name {
                "future" => EPOCH + 1000,
                "old" => -100,
                _ => T0 + entry.depth() as i64,
            };
            if entry.file_type().is_dir() {
                set_mode(entry.path(), if name == "sgid" { 0o2775 } else { 0o755 });
            }
            set_mtime(entry.path(), t);
        }
        set_mode(&root.join("ro"), 0o555);
        set_mode(root, 0o750);
        set_mtime(&root.join("ro"), T0);
        set_mtime(root, T0);
    }

    /// The image below the COPY: `/usr` setgid with a group (files created in it get that group),
    /// `/opt` 0711, a symlink `/srv -> /opt`.
    fn image(dir: &Path) {
        fs::create_dir_all(dir.join("usr/local")).unwrap();
        fs::create_dir_all(dir.join("opt")).unwrap();
        fs::create_dir_all(dir.join("etc")).unwrap();
        symlink("/opt", dir.join("srv")).unwrap();
        std::os::unix::fs::chown(dir.join("usr"), Some(0), Some(50)).unwrap();
        set_mode(&dir.join("usr"), 0o2775);
        set_mode(&dir.join("opt"), 0o711);
        set_mtime(&dir.join("usr"), T0 - 5);
    }

    /// One-pass layer, the layer of a walk of what it staged, and the layer of the two-pass path. The
    /// stage roots are setgid with group 50 when `sgid_stage` (as in a setgid workspace): what is
    /// created in them gets that group unless chowned.
    fn layers_of(
        src: &Path,
        dest: &str,
        (owner, mode): (Option<(u32, u32)>, Option<u32>),
        sgid_stage: bool,
        epoch: Option<i64>,
    ) -> [LayerInfo; 3] {
        let t = tempfile::tempdir().unwrap();
        let lower = t.path().join("lower");
        image(&lower);
        let lowers = [lower];
        let view = RootView::new(&lowers);
        let tree = TreeOptions { source_date_epoch: epoch, threads: Some(2), ..Default::default() };
        let compression = Compression::Gzip { level: 1 };
        let opts = StageOptions { owner, mode, extract_archives: true, context: None };
        let sources = [src.to_path_buf()];
        let (one, two) = (t.path().join("one"), t.path().join("two"));
        for stage in [&one, &two] {
            fs::create_dir(stage).unwrap();
            if sgid_stage {
                std::os::unix::fs::chown(stage, None, Some(50)).unwrap();
                set_mode(stage, 0o2755);
            }
        }
        let pass = OnePass::plan(&view, &one, &sources, dest, &opts).unwrap().expect("one pass applies");
        let mut skeleton = Vec::new();
        let written = pass.run(&tree, compression, io::sink(), &mut skeleton).unwrap();
        let walked = layers::write_layer(&one, &tree, compression, io::sink()).unwrap();
        // The skeleton recorded on the way and the staged tree give the layer back (it is kept so).
        let again = layers::regenerate(&skeleton[..], &one, compression, Some(2), io::sink()).unwrap();
        assert_eq!((again.digest, again.diff_id), (written.digest, written.diff_id), "{dest}");
        context::stage(&view, &two, &sources, dest, &opts).unwrap();
        let staged = layers::write_layer(&two, &tree, compression, io::sink()).unwrap();
        [written, walked, staged]
    }

    #[test]
    fn one_pass_layer_is_the_layer_of_the_staged_tree() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir(&src).unwrap();
        source_tree(&src);
        let root = rustix::process::geteuid().is_root();
        type Case<'a> = (&'a Path, &'a str, Option<(u32, u32)>, Option<u32>, bool);
        let cases: &[Case] = &[
            (&src, "/", None, None, false),
            (&src, "/", None, None, root),
            (&src, "/opt/app/", None, None, false),
            (&src, "/usr/local/tree", None, None, false),
            (&src, "/srv/x", root.then_some((1000, 1001)), Some(0o640), false),
            (&src.join("big.bin"), "/usr/local/bin/", None, None, root),
            (&src.join("bin/su"), "/etc/su.copy", root.then_some((7, 8)), None, false),
            (&src.join("secret"), "/new/dir/", None, Some(0o4711), false),
            (&src.join("dangling"), "/usr/", None, None, root),
            (&src.join("empty"), "/", None, None, false),
        ];
        for (src, dest, owner, mode, sgid_stage) in cases {
            let [written, walked, staged] = layers_of(src, dest, (*owner, *mode), *sgid_stage, Some(EPOCH));
            let case =
                format!("COPY {} {dest} (owner {owner:?}, mode {mode:?}, setgid stage {sgid_stage})", src.display());
            assert!(written.entries > 0 || dest == &"/", "{case}: no entry");
            assert_eq!(written, walked, "{case}: one pass vs a walk of its stage");
            assert_eq!(written, staged, "{case}: one pass vs the two-pass path");
        }
        // Unclamped too: created parents and symlinks get no time of the build, so both paths agree.
        let [written, walked, staged] = layers_of(&src, "/new/app", (None, None), false, None);
        assert_eq!(written, walked, "COPY {} /new/app without SOURCE_DATE_EPOCH", src.display());
        assert_eq!(written, staged, "COPY {} /new/app without SOURCE_DATE_EPOCH: one pass vs two", src.display());
    }

    #[test]
    fn one_pass_skips_what_it_cannot_stage_in_order() {
        let t = tempfile::tempdir().unwrap();
        let (src, stage, archive) = (t.path().join("src"), t.path().join("stage"), t.path().join("a.tar"));
        fs::create_dir_all(src.join("x")).unwrap();
        fs::create_dir(&stage).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        tar.append_dir_all("x", src.join("x")).unwrap();
        fs::write(&archive, tar.into_inner().unwrap()).unwrap();
        let lowers = [];
        let view = RootView::new(&lowers);
        let opts = |add| StageOptions { owner: None, mode: None, extract_archives: add, context: None };
        let plan =
            |sources: &[PathBuf], dest, add| OnePass::plan(&view, &stage, sources, dest, &opts(add)).unwrap().is_some();
        assert!(plan(std::slice::from_ref(&src), "/", false));
        assert!(!plan(&[src, archive.clone()], "/", false), "several sources");
        assert!(!plan(&[], "/", false), "here-documents only");
        let archive = std::slice::from_ref(&archive);
        assert!(plan(archive, "/", false), "COPY of an archive copies it");
        assert!(!plan(archive, "/", true), "ADD of an archive extracts it");
        assert!(!plan(archive, "/..", false), "a file onto the root of an empty image");
    }
}
