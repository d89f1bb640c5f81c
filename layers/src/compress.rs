//! Compression of a tar stream with both digests computed in the same pass.

use std::io::{self, BufWriter, Read, Write};
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

use crate::LayerError;
use crate::digest::{Digest, HashingWriter};
use crate::gzip::ParGzip;

/// The default gzip level: libdeflate's level 4 writes a Debian rootfs layer the size zlib's level 6 (what
/// Docker and BuildKit use) did — 1 % smaller — with 40 % less CPU than zlib-rs at 6 (`benches/peers.sh`).
pub const DEFAULT_GZIP_LEVEL: u32 = 4;

/// How a layer blob is compressed. The default is gzip at [`DEFAULT_GZIP_LEVEL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// Deterministic parallel gzip (libdeflate), level 0..=12.
    Gzip {
        /// libdeflate level, 0..=12 (0 stores, 12 is slowest; not zlib's scale: 6 compresses better than zlib's 6).
        level: u32,
    },
    /// zstd (multithreaded; output independent of the thread count), any level zstd accepts.
    Zstd {
        /// zstd level (1..=22, or negative for the fast levels).
        level: i32,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: DEFAULT_GZIP_LEVEL }
    }
}

/// The `--compression` spelling, also how records name compressions: `none`, `gzip:LEVEL`, `zstd:LEVEL`.
impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Gzip { level } => write!(f, "gzip:{level}"),
            Compression::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

impl Compression {
    /// The OCI media type of a layer compressed this way.
    pub fn media_type(&self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip { .. } => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd { .. } => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// The compressor, and its version, whose bytes this compression gives: layers written by another
    /// are not the same bytes, and a blob recorded as regenerable names the one that can write it again.
    pub fn engine(&self) -> String {
        match self {
            Compression::None => "none".into(),
            Compression::Gzip { .. } => crate::gzip::ENGINE.into(),
            Compression::Zstd { .. } => format!("zstd {}", zstd::zstd_safe::version_string()),
        }
    }

    fn check(&self) -> Result<(), LayerError> {
        match *self {
            Compression::Gzip { level } if level > 12 => Err(LayerError::Level { algo: "gzip", level: level.into() }),
            Compression::Zstd { level } if !zstd::compression_level_range().contains(&level) => {
                Err(LayerError::Level { algo: "zstd", level: level.into() })
            }
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;

    /// The [`Display`](std::fmt::Display) form back (a level is required for gzip and zstd).
    fn from_str(s: &str) -> Result<Compression, String> {
        let bad = || format!("unknown compression {s:?}: expected gzip:LEVEL, zstd:LEVEL or none");
        let c = match s.split_once(':') {
            None if s == "none" => Compression::None,
            Some(("gzip", l)) => Compression::Gzip { level: l.parse().map_err(|_| bad())? },
            Some(("zstd", l)) => Compression::Zstd { level: l.parse().map_err(|_| bad())? },
            _ => return Err(bad()),
        };
        c.check().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// What a written layer is: the OCI descriptor fields and the config's diff_id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the compressed blob (the descriptor digest).
    pub digest: Digest,
    /// sha256 of the uncompressed tar (the image config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// Size of the uncompressed tar in bytes.
    pub uncompressed_size: u64,
    /// OCI media type matching the compression.
    pub media_type: &'static str,
    /// Number of tar entries (extension headers not counted).
    pub entries: u64,
}

/// Resolves the thread count: `None` means the available parallelism.
pub(crate) fn thread_count(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
}

enum Encoder<W: Write> {
    /// The blob is the tar itself: its digest is the diff_id, hashed once.
    Plain(W),
    Gzip(ParGzip<HashingWriter<W>>),
    Zstd(zstd::stream::write::Encoder<'static, HashingWriter<W>>),
}

/// The uncompressed side of a layer: hashes the tar bytes (diff_id) and feeds the compressor,
/// whose output is hashed again (digest) on its way to the caller's writer.
pub(crate) struct LayerSink<W: Write> {
    diff: Sha256,
    len: u64,
    enc: Encoder<W>,
    media_type: &'static str,
}

impl<W: Write> LayerSink<W> {
    /// Validates the level and starts the compressor on `out`, with `threads` workers.
    pub(crate) fn new(compression: Compression, threads: usize, out: W) -> Result<Self, LayerError> {
        compression.check()?;
        let enc = match compression {
            Compression::None => Encoder::Plain(out),
            Compression::Gzip { level } => {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("layer-gzip-{i}"))
                    .build()
                    .map_err(|e| LayerError::Output(io::Error::other(e)))?;
                let out = HashingWriter::new(out);
                Encoder::Gzip(ParGzip::new(out, level, Arc::new(pool)).map_err(LayerError::Output)?)
            }
            Compression::Zstd { level } => {
                let out = HashingWriter::new(out);
                let mut z = zstd::stream::write::Encoder::new(out, level).map_err(LayerError::Output)?;
                // Always the multithreaded mode, even for one worker: its output is the same for
                // any worker count (jobs are cut by size, which depends on the level only),
                // whereas the single-thread mode (0 workers) writes different bytes.
                z.multithread(threads as u32).map_err(LayerError::Output)?;
                z.include_checksum(true).map_err(LayerError::Output)?;
                Encoder::Zstd(z)
            }
        };
        Ok(LayerSink { diff: Sha256::new(), len: 0, enc, media_type: compression.media_type() })
    }

    /// Ends the compressed stream and returns the layer description (with `entries` = 0).
    pub(crate) fn finish(self) -> Result<(W, LayerInfo), LayerError> {
        let diff_id = Digest::from_hasher(self.diff);
        let (mut w, digest, size) = match self.enc {
            Encoder::Plain(w) => (w, diff_id, self.len),
            Encoder::Gzip(g) => g.finish().map_err(LayerError::Output)?.finish(),
            Encoder::Zstd(z) => z.finish().map_err(LayerError::Output)?.finish(),
        };
        w.flush().map_err(LayerError::Output)?;
        let info =
            LayerInfo { digest, diff_id, size, uncompressed_size: self.len, media_type: self.media_type, entries: 0 };
        Ok((w, info))
    }
}

impl<W: Write> Write for LayerSink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.enc {
            Encoder::Plain(w) => w.write_all(buf)?,
            Encoder::Gzip(g) => g.write_all(buf)?,
            Encoder::Zstd(z) => z.write_all(buf)?,
        }
        self.diff.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Buffer in front of the sink: tar headers are 512-byte writes.
pub(crate) type TarOut<W> = BufWriter<LayerSink<W>>;

/// Wraps a sink for the tar writer.
pub(crate) fn buffered<W: Write>(sink: LayerSink<W>) -> TarOut<W> {
    BufWriter::with_capacity(256 << 10, sink)
}

/// Flushes the buffer and finishes the sink.
pub(crate) fn finish_buffered<W: Write>(out: TarOut<W>) -> Result<(W, LayerInfo), LayerError> {
    let sink = out.into_inner().map_err(|e| LayerError::Output(e.into_error()))?;
    sink.finish()
}

/// A reader that copies everything read through it into the layer sink, so the tar parser that
/// counts entries and the digests see exactly the same bytes.
struct Tee<'a, R, W: Write> {
    inner: R,
    sink: &'a mut TarOut<W>,
    /// First error of the sink; reported as such rather than as a corrupt tar.
    sink_err: Option<io::Error>,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.sink.write_all(&buf[..n]) {
            let msg = e.to_string();
            self.sink_err = Some(e);
            return Err(io::Error::other(msg));
        }
        Ok(n)
    }
}

/// Compresses an existing tar stream (e.g. a rootfs tarball from mmdebstrap) and computes both
/// digests in one pass. The tar is parsed on the way to count its entries and to refuse input
/// that is not a tar; every byte of the input, including any padding after the end-of-archive
/// blocks, is part of the diff_id.
pub fn compress_tar(
    tar: impl Read,
    compression: Compression,
    threads: Option<usize>,
    out: impl Write,
) -> Result<LayerInfo, LayerError> {
    let sink = LayerSink::new(compression, thread_count(threads), out)?;
    let mut buf = buffered(sink);
    let mut tee = Tee { inner: tar, sink: &mut buf, sink_err: None };
    let mut entries = 0u64;
    let mut last: Option<String> = None;
    let parsed: io::Result<()> = (|| {
        let mut archive = tar::Archive::new(&mut tee);
        for entry in archive.entries()? {
            let entry = entry?;
            last = Some(crate::error::show(&entry.path_bytes()));
            entries += 1;
        }
        Ok(())
    })();
    if let Some(e) = tee.sink_err.take() {
        return Err(LayerError::Output(e));
    }
    parsed.map_err(|source| LayerError::Stream { entry: last.clone(), source })?;
    // Trailing zero blocks and record padding after the end-of-archive marker.
    io::copy(&mut tee, &mut io::sink()).map_err(|source| match tee.sink_err.take() {
        Some(e) => LayerError::Output(e),
        None => LayerError::Stream { entry: last, source },
    })?;
    let (_, mut info) = finish_buffered(buf)?;
    info.entries = entries;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::Compression;

    #[test]
    fn compressions_are_named_and_read_back() {
        for c in [Compression::None, Compression::Gzip { level: 4 }, Compression::Zstd { level: -3 }] {
            assert_eq!(c.to_string().parse::<Compression>(), Ok(c));
        }
        assert_eq!(Compression::default().to_string(), "gzip:4");
        for bad in ["gzip", "gzip:13", "zstd:x", "brotli:1", ""] {
            assert!(bad.parse::<Compression>().is_err(), "{bad}");
        }
    }
}
