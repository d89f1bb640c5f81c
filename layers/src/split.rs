//! Tar-split: a layer kept once on disk, as its extracted directory plus a skeleton, from which its exact
//! tar stream — and, compressed again the same way, its exact blob — is written when it is needed.
//!
//! The skeleton of a tar stream is everything but the contents of its regular files: headers, extension
//! records, padding and end-of-archive blocks, byte for byte; each file's content is a reference (its path
//! in the layer and its size) to the file of the extracted directory that holds it. containers/storage keeps
//! the same kind of record (its `tar-split`) to give back the exact tar of a layer it only keeps extracted.
//!
//! Skeletons come from two places:
//! * [`LayerBuilder`](crate::LayerBuilder) records one while it writes a layer from a tree (the tree is
//!   the layer's directory), at no extra read;
//! * [`split_layer`] derives one from an existing blob and the directory it was extracted to, comparing
//!   every file's content with the directory's on the way and compressing the stream again, so that the
//!   caller knows whether [`regenerate`] gives the blob back bit for bit before it drops it.
//!
//! [`regenerate`] reads file contents inside the directory only (`openat2` with `RESOLVE_IN_ROOT`, never
//! following the last component), and checks each file's size; its caller checks the digests, so a
//! directory that changed gives an error, never other bytes.
//!
//! Format: a zstd stream of records after the magic `KOLLA-OCI-SPLIT1`: `R` + u32 length + raw bytes,
//! `F` + u64 size + u32 length + path, `E` (end). Integers are little-endian.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{Mode, OFlags, ResolveFlags};
use tar::EntryType;

use crate::compress::{LayerSink, buffered, finish_buffered, thread_count};
use crate::digest::HashingReader;
use crate::error::show;
use crate::{Compression, Digest, LayerError, LayerInfo};

const MAGIC: &[u8; 16] = b"KOLLA-OCI-SPLIT1";
/// Raw bytes are written in records of at most this size.
const RAW_RECORD: usize = 1 << 20;
/// The zstd level of skeletons: they are mostly zero-filled headers, which any level shrinks ~20×.
const ZSTD_LEVEL: i32 = 3;

/// Records a skeleton as a tar stream is written or read (see the module docs).
pub struct SkeletonWriter<W: Write> {
    out: zstd::stream::write::Encoder<'static, W>,
    raw: Vec<u8>,
}

impl<W: Write> SkeletonWriter<W> {
    /// Starts a skeleton on `out`.
    pub fn new(out: W) -> io::Result<Self> {
        let mut out = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
        out.write_all(MAGIC)?;
        Ok(SkeletonWriter { out, raw: Vec::with_capacity(64 << 10) })
    }

    /// Bytes of the stream that are kept as they are.
    pub fn raw(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = bytes.len().min(RAW_RECORD - self.raw.len());
            self.raw.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.raw.len() == RAW_RECORD {
                self.flush_raw()?;
            }
        }
        Ok(())
    }

    /// `size` bytes of the stream that are the content of the file at `path` (relative to the layer root).
    pub fn file(&mut self, path: &[u8], size: u64) -> io::Result<()> {
        self.flush_raw()?;
        let len = u32::try_from(path.len()).map_err(|_| io::Error::other("path too long for a skeleton"))?;
        self.out.write_all(b"F")?;
        self.out.write_all(&size.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(path)
    }

    fn flush_raw(&mut self) -> io::Result<()> {
        if self.raw.is_empty() {
            return Ok(());
        }
        self.out.write_all(b"R")?;
        self.out.write_all(&(self.raw.len() as u32).to_le_bytes())?;
        self.out.write_all(&self.raw)?;
        self.raw.clear();
        Ok(())
    }

    /// Ends the skeleton and returns its writer, flushed.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush_raw()?;
        self.out.write_all(b"E")?;
        let mut w = self.out.finish()?;
        w.flush()?;
        Ok(w)
    }
}

/// One record of a skeleton.
enum Record {
    Raw(Vec<u8>),
    File { path: Vec<u8>, size: u64 },
    End,
}

/// Reads the records of a skeleton.
struct SkeletonReader<R: Read> {
    inner: zstd::stream::read::Decoder<'static, BufReader<R>>,
}

impl<R: Read> SkeletonReader<R> {
    fn new(r: R) -> Result<Self, LayerError> {
        let mut inner = zstd::stream::read::Decoder::new(r).map_err(|e| bad_skeleton(e.to_string()))?;
        let mut magic = [0; 16];
        inner.read_exact(&mut magic).map_err(|e| bad_skeleton(e.to_string()))?;
        if &magic != MAGIC {
            return Err(bad_skeleton("not a skeleton (wrong magic)".into()));
        }
        Ok(SkeletonReader { inner })
    }

    fn next(&mut self) -> Result<Record, LayerError> {
        let read = |r: &mut zstd::stream::read::Decoder<'static, BufReader<R>>, n: usize| {
            let mut v = vec![0; n];
            r.read_exact(&mut v).map(|()| v).map_err(|e| bad_skeleton(e.to_string()))
        };
        let u32_ = |v: Vec<u8>| u32::from_le_bytes(v.try_into().expect("4 bytes")) as usize;
        let tag = read(&mut self.inner, 1)?;
        match tag[0] {
            b'R' => {
                let len = u32_(read(&mut self.inner, 4)?);
                if len > RAW_RECORD {
                    return Err(bad_skeleton(format!("raw record of {len} bytes")));
                }
                Ok(Record::Raw(read(&mut self.inner, len)?))
            }
            b'F' => {
                let size = u64::from_le_bytes(read(&mut self.inner, 8)?.try_into().expect("8 bytes"));
                let len = u32_(read(&mut self.inner, 4)?);
                if len > 1 << 16 {
                    return Err(bad_skeleton(format!("path of {len} bytes")));
                }
                Ok(Record::File { path: read(&mut self.inner, len)?, size })
            }
            b'E' => Ok(Record::End),
            other => Err(bad_skeleton(format!("unknown record {other:#04x}"))),
        }
    }
}

fn bad_skeleton(reason: String) -> LayerError {
    LayerError::Skeleton(reason)
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Opens the regular file at `path` inside `root` (resolved as if `root` were `/`, the last component
/// never followed, a FIFO never waited for).
fn open_in_root(root: &OwnedFd, path: &[u8]) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat2(root, path, flags, Mode::empty(), IN_ROOT)?;
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(file)
}

fn open_root(root: &Path) -> Result<OwnedFd, LayerError> {
    rustix::fs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| LayerError::io(root.display().to_string(), "open layer directory", e.into()))
}

/// Writes the layer that `skeleton` and the directory `root` hold again, compressed with `compression`
/// (`threads` workers; the output does not depend on it), to `out`, with both digests computed in the same
/// pass (`entries` is not counted: 0). The caller compares them with the ones it expects: a directory whose
/// files changed gives other digests (or, if a file's size changed or it is gone, an error naming it).
pub fn regenerate(
    skeleton: impl Read,
    root: &Path,
    compression: Compression,
    threads: Option<usize>,
    out: impl Write,
) -> Result<LayerInfo, LayerError> {
    let root_fd = open_root(root)?;
    let mut skeleton = SkeletonReader::new(skeleton)?;
    let mut tar = buffered(LayerSink::new(compression, thread_count(threads), out)?);
    let mut buf = vec![0; 256 << 10];
    loop {
        match skeleton.next()? {
            Record::Raw(bytes) => tar.write_all(&bytes).map_err(LayerError::Output)?,
            Record::File { path, size } => {
                let err = |op, e| LayerError::io(show(&path), op, e);
                let mut file = open_in_root(&root_fd, &path).map_err(|e| err("open in the layer directory", e))?;
                let mut left = size;
                while left > 0 {
                    let want = left.min(buf.len() as u64) as usize;
                    let n = file.read(&mut buf[..want]).map_err(|e| err("read", e))?;
                    if n == 0 {
                        return Err(LayerError::Split {
                            path: show(&path),
                            reason: format!("{} bytes, the layer has {size}", size - left),
                        });
                    }
                    tar.write_all(&buf[..n]).map_err(LayerError::Output)?;
                    left -= n as u64;
                }
                if file.read(&mut buf[..1]).map_err(|e| err("read", e))? != 0 {
                    return Err(LayerError::Split {
                        path: show(&path),
                        reason: format!("longer than the layer's {size} bytes"),
                    });
                }
            }
            Record::End => break,
        }
    }
    let (_, info) = finish_buffered(tar)?;
    Ok(info)
}

/// Whether `blob` may be a layer this crate wrote compressed as `compression`, from a look at its first
/// MiB: our gzip members hold 1 MiB of tar each, so a first member that decompresses to anything else (one
/// member for the whole stream, as docker's and Go's gzip write) is not ours. Other compressions: `true`
/// (only a trial tells). A `false` spares [`split_layer`]'s full read of a blob it could not give back.
pub fn may_regenerate(blob: impl Read, compression: Compression) -> bool {
    if !matches!(compression, Compression::Gzip { .. }) {
        return true;
    }
    let mut first = flate2::read::GzDecoder::new(blob);
    let chunk = crate::gzip::CHUNK as u64;
    let n = io::copy(&mut (&mut first).take(chunk + 1), &mut io::sink()).unwrap_or(u64::MAX);
    n == chunk || (n < chunk && first.read(&mut [0; 1]).is_ok_and(|k| k == 0))
}

/// What [`split_layer`] read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// sha256 and length of the blob as read.
    pub blob: (Digest, u64),
    /// The layer compressed again with the compression asked for: what [`regenerate`] gives from the
    /// skeleton written. Its `digest` equal to `blob`'s means the blob can be dropped and written again.
    pub regenerated: LayerInfo,
}

/// Derives the skeleton of the layer `blob` (compressed or not) extracted to `root`, writing it to
/// `skeleton`: every regular file's content in the blob is compared with the directory's file at the same
/// path, and the whole uncompressed stream is compressed again with `compression`, in the same read.
/// Fails if the directory does not hold what the blob does (a file differs, is missing, or the layer has
/// sparse entries, which the directory cannot give back).
pub fn split_layer(
    blob: impl Read,
    root: &Path,
    compression: Compression,
    threads: Option<usize>,
    skeleton: impl Write,
) -> Result<Split, LayerError> {
    let root_fd = open_root(root)?;
    let mut hashed = HashingReader::new(blob);
    let tar_in = crate::apply::decompress(&mut hashed).map_err(|source| LayerError::Stream { entry: None, source })?;
    let again = buffered(LayerSink::new(compression, thread_count(threads), io::sink())?);
    let (_, regenerated) = split_stream(tar_in, Some(&root_fd), again, skeleton)?;
    // The rest of the blob after the compressed stream, if any, is part of what was read.
    io::copy(&mut hashed, &mut io::sink()).map_err(|source| LayerError::Stream { entry: None, source })?;
    Ok(Split { blob: hashed.finish(), regenerated })
}

/// [`compress_tar`](crate::compress_tar), also recording the tar's skeleton to `skeleton`: file contents are
/// referred to by their paths in the tar, where [`apply_layer`](crate::apply_layer) puts them, so the
/// directory the layer is extracted to and the skeleton give the layer back (a tar that names a file twice
/// does not: [`regenerate`]'s caller finds other digests).
pub fn compress_tar_split(
    tar: impl Read,
    compression: Compression,
    threads: Option<usize>,
    out: impl Write,
    skeleton: impl Write,
) -> Result<LayerInfo, LayerError> {
    let sink = buffered(LayerSink::new(compression, thread_count(threads), out)?);
    split_stream(tar, None, sink, skeleton).map(|(_, info)| info)
}

/// Reads the tar stream `tar_in` to its end, writing every byte to `out` and its skeleton to `skeleton`;
/// with a `root`, each regular file's content is compared with the file at its path there. Returns what
/// `out` wrote, with the number of tar entries.
fn split_stream<W: Write, S: Write>(
    tar_in: impl Read,
    root: Option<&OwnedFd>,
    out: crate::compress::TarOut<W>,
    skeleton: S,
) -> Result<(W, LayerInfo), LayerError> {
    let state = Rc::new(RefCell::new(Splitter {
        skeleton: SkeletonWriter::new(BufWriter::new(skeleton)).map_err(LayerError::Output)?,
        out,
        content: None,
        compare: Vec::new(),
        failure: None,
    }));
    let mut archive = tar::Archive::new(Splitting { inner: tar_in, state: Rc::clone(&state) });
    let mut last: Option<String> = None;
    let mut count = 0;
    let fail = |state: &Rc<RefCell<Splitter<W, S>>>, e: io::Error, last: &Option<String>| match state
        .borrow_mut()
        .failure
        .take()
    {
        Some(f) => f,
        None => LayerError::Stream { entry: last.clone(), source: e },
    };
    let entries = archive.entries().map_err(|e| fail(&state, e, &last))?;
    let mut buf = vec![0; 256 << 10];
    for entry in entries {
        let mut entry = entry.map_err(|e| fail(&state, e, &last))?;
        let raw = entry.path_bytes().into_owned();
        last = Some(show(&raw));
        count += 1;
        let size = entry.size();
        match entry.header().entry_type() {
            EntryType::GNUSparse => {
                return Err(LayerError::Split { path: show(&raw), reason: "sparse entries are not split".into() });
            }
            EntryType::Regular | EntryType::Continuous if size > 0 => {
                let comps =
                    crate::apply::normalize(&raw).map_err(|reason| LayerError::Unsafe { path: show(&raw), reason })?;
                let path = comps.join(&b'/');
                let file = match root {
                    Some(root) => Some(open_in_root(root, &path).map_err(|e| LayerError::Split {
                        path: show(&raw),
                        reason: format!("not in the layer directory: {e}"),
                    })?),
                    None => None,
                };
                state.borrow_mut().content = Some(Content { file, path: path.clone(), left: size });
                while entry.read(&mut buf).map_err(|e| fail(&state, e, &last))? > 0 {}
                let mut st = state.borrow_mut();
                let content = st.content.take().expect("set above");
                if content.left != 0 {
                    return Err(LayerError::Stream { entry: last, source: io::ErrorKind::UnexpectedEof.into() });
                }
                if let Some(file) = &content.file {
                    let longer = (&*file).read(&mut [0u8; 1]).map_err(|e| LayerError::io(show(&raw), "read", e))?;
                    if longer != 0 {
                        let reason = format!("longer than the layer's {size} bytes");
                        return Err(LayerError::Split { path: show(&raw), reason });
                    }
                }
                st.skeleton.file(&path, size).map_err(LayerError::Output)?;
            }
            _ => {}
        }
    }
    // End-of-archive blocks and whatever follows them are kept as they are.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(|e| fail(&state, e, &last))?;
    drop(rest);
    let Splitter { skeleton, out, .. } = Rc::try_unwrap(state).ok().expect("the archive is gone").into_inner();
    skeleton.finish().map_err(LayerError::Output)?.into_inner().map_err(|e| LayerError::Output(e.into_error()))?;
    let (w, mut info) = finish_buffered(out)?;
    info.entries = count;
    Ok((w, info))
}

/// A regular file's content being read from the stream, compared with the directory's file if there is one.
struct Content {
    file: Option<File>,
    path: Vec<u8>,
    left: u64,
}

/// Where the uncompressed stream read by the tar parser goes in [`split_stream`].
struct Splitter<W: Write, S: Write> {
    skeleton: SkeletonWriter<BufWriter<S>>,
    out: crate::compress::TarOut<W>,
    /// Set while an entry's content is read.
    content: Option<Content>,
    /// The directory's bytes, read to compare.
    compare: Vec<u8>,
    /// The first failure that is not the stream's own (a differing file, the skeleton output).
    failure: Option<LayerError>,
}

/// The uncompressed stream on its way to the tar parser: every byte goes to the output; file contents are
/// compared with the directory, everything else goes to the skeleton.
struct Splitting<R, W: Write, S: Write> {
    inner: R,
    state: Rc<RefCell<Splitter<W, S>>>,
}

impl<R: Read, W: Write, S: Write> Read for Splitting<R, W, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut st = self.state.borrow_mut();
        let max = match &st.content {
            Some(c) => buf.len().min(usize::try_from(c.left).unwrap_or(usize::MAX)),
            None => buf.len(),
        };
        let n = self.inner.read(&mut buf[..max])?;
        let got = &buf[..n];
        let st = &mut *st;
        let result = match &mut st.content {
            Some(c) => {
                c.left -= n as u64;
                match &mut c.file {
                    Some(file) => same_as_file(file, got, &mut st.compare).and_then(|same| {
                        if same {
                            Ok(())
                        } else {
                            let reason = "its content differs from the layer's".into();
                            Err(LayerError::Split { path: show(&c.path), reason })
                        }
                    }),
                    None => Ok(()),
                }
            }
            None => st.skeleton.raw(got).map_err(LayerError::Output),
        };
        let result = result.and_then(|()| st.out.write_all(got).map_err(LayerError::Output));
        if let Err(e) = result {
            let msg = e.to_string();
            st.failure.get_or_insert(e);
            return Err(io::Error::other(msg));
        }
        Ok(n)
    }
}

/// Whether the next `want.len()` bytes of `file` are `want` (`have`: a buffer to read them into).
fn same_as_file(file: &mut File, want: &[u8], have: &mut Vec<u8>) -> Result<bool, LayerError> {
    have.resize(want.len(), 0);
    let mut got = 0;
    while got < have.len() {
        match file.read(&mut have[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LayerError::io("layer directory file", "read", e)),
        }
    }
    Ok(have[..] == *want)
}
