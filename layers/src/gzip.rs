//! Deterministic parallel gzip (pigz-style single member).
//!
//! The input is cut into fixed 1 MiB chunks. Each chunk is raw-deflated on its own with the
//! previous 32 KiB of input as preset dictionary and ends with a sync flush (the last one with
//! `Finish`), so the chunks concatenate into one valid deflate stream. The CRC-32 of the chunks
//! is combined in order. Chunk boundaries depend only on the input, never on the thread count or
//! on scheduling, so the output bytes are the same for any number of threads.
//!
//! The bytes do depend on the deflate implementation: flate2 is pinned to the zlib-rs backend
//! in the workspace `Cargo.toml` (a C zlib anywhere in the graph would silently change every
//! compressed digest; check with `cargo tree -e features -i flate2`).
//!
//! Pipeline: the caller's thread fills a batch of `2 × threads` chunks while up to two earlier
//! batches are compressed on the rayon pool (one queued behind the other, so the pool never idles
//! between batches). Memory is bounded by the thread count, not the input size: at most the
//! filling batch plus two batches of input and their output, about 10 MiB per thread (the
//! whole process peaks at 33 MB writing a 1 GB layer with 2 threads, `benches/peers.sh`).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::mem;
use std::sync::Arc;
use std::sync::mpsc;

use flate2::{Compress, FlushCompress, Status};
use rayon::prelude::*;

/// Size of the independent compression units. Part of the output format: changing it changes
/// every compressed digest.
pub(crate) const CHUNK: usize = 1 << 20;
/// Deflate window: the dictionary handed from one chunk to the next.
const DICT: usize = 32 << 10;

/// One compressed chunk, with what is needed for the gzip trailer.
struct Deflated {
    data: Vec<u8>,
    crc: u32,
    len: u64,
}

type BatchResult = io::Result<Vec<Deflated>>;

/// A `Write` sink producing one gzip member on `out`. Call [`ParGzip::finish`] at the end.
pub(crate) struct ParGzip<W: Write> {
    out: W,
    level: u32,
    pool: Arc<rayon::ThreadPool>,
    batch_chunks: usize,
    cur: Vec<u8>,
    batch: Vec<Vec<u8>>,
    /// Last `DICT` bytes of the input before the first chunk of `batch`.
    dict: Vec<u8>,
    in_flight: VecDeque<mpsc::Receiver<BatchResult>>,
    crc: crc32fast::Hasher,
    total_in: u64,
}

impl<W: Write> ParGzip<W> {
    /// Writes the fixed gzip header now; `level` must be 0..=9 (checked by the caller).
    pub(crate) fn new(mut out: W, level: u32, pool: Arc<rayon::ThreadPool>) -> io::Result<Self> {
        // Fixed header: no name, mtime 0, OS 255 (unknown); XFL as gzip sets it.
        let xfl = match level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 0xff])?;
        let batch_chunks = 2 * pool.current_num_threads().max(1);
        Ok(ParGzip {
            out,
            level,
            pool,
            batch_chunks,
            cur: Vec::with_capacity(CHUNK),
            batch: Vec::with_capacity(batch_chunks),
            dict: Vec::new(),
            in_flight: VecDeque::with_capacity(2),
            crc: crc32fast::Hasher::new(),
            total_in: 0,
        })
    }

    /// Waits for the oldest batches until at most `keep` are in flight, writing their output.
    fn drain(&mut self, keep: usize) -> io::Result<()> {
        while self.in_flight.len() > keep {
            let rx = self.in_flight.pop_front().expect("length checked");
            let chunks = rx.recv().map_err(|_| io::Error::other("gzip worker vanished"))??;
            for c in chunks {
                self.out.write_all(&c.data)?;
                self.crc.combine(&crc32fast::Hasher::new_with_initial_len(c.crc, c.len));
            }
        }
        Ok(())
    }

    /// Hands the current batch to the pool; `last` marks its final chunk as the end of stream.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let batch = mem::replace(&mut self.batch, Vec::with_capacity(self.batch_chunks));
        let next_dict = batch.last().map(|c| c[c.len().saturating_sub(DICT)..].to_vec()).unwrap_or_default();
        let dict = mem::replace(&mut self.dict, next_dict);
        let level = self.level;
        let (tx, rx) = mpsc::sync_channel(1);
        self.pool.spawn(move || {
            let n = batch.len();
            let res = (0..n)
                .into_par_iter()
                .map(|i| {
                    let prev: &[u8] = if i == 0 { &dict } else { &batch[i - 1] };
                    let dict = &prev[prev.len().saturating_sub(DICT)..];
                    deflate_chunk(level, dict, &batch[i], last && i + 1 == n)
                })
                .collect::<io::Result<Vec<_>>>();
            // The receiver only disappears when the writer is dropped mid-stream.
            let _ = tx.send(res);
        });
        self.in_flight.push_back(rx);
        self.drain(1)
    }

    /// Compresses what is left, writes the trailer and returns the output writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        let cur = mem::take(&mut self.cur);
        self.batch.push(cur);
        self.submit(true)?;
        self.drain(0)?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        // ISIZE is the input length modulo 2^32 (RFC 1952).
        self.out.write_all(&(self.total_in as u32).to_le_bytes())?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            // A full chunk is only queued once more input arrives, so the chunk still open in
            // `finish` is always the last one and gets the `Finish` flush.
            if self.cur.len() == CHUNK {
                let full = mem::replace(&mut self.cur, Vec::with_capacity(CHUNK));
                self.batch.push(full);
                if self.batch.len() == self.batch_chunks {
                    self.submit(false)?;
                }
            }
            let n = rest.len().min(CHUNK - self.cur.len());
            self.cur.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        self.total_in += buf.len() as u64;
        Ok(buf.len())
    }

    /// Only flushes the output writer: compressing a partial chunk would change the bytes.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Raw-deflates one chunk with `dict` as preset dictionary.
fn deflate_chunk(level: u32, dict: &[u8], input: &[u8], finish: bool) -> io::Result<Deflated> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if finish { FlushCompress::Finish } else { FlushCompress::Sync };
    // Above the deflate bound for any level, so one call normally suffices.
    let mut out = Vec::with_capacity(input.len() + input.len() / 16 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        let status = c.compress_vec(&input[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == input.len();
        // zlib contract: a flush is complete when it returns with output space left over.
        let done = match status {
            Status::StreamEnd => true,
            _ => all_in && !finish && out.len() < out.capacity(),
        };
        if done {
            break;
        }
        out.reserve(64 << 10);
    }
    Ok(Deflated { data: out, crc: crc32fast::hash(input), len: input.len() as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn pool(n: usize) -> Arc<rayon::ThreadPool> {
        Arc::new(rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap())
    }

    fn gz(data: &[u8], level: u32, threads: usize, write_size: usize) -> Vec<u8> {
        let mut w = ParGzip::new(Vec::new(), level, pool(threads)).unwrap();
        for piece in data.chunks(write_size.max(1)) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap()
    }

    fn sample(len: usize) -> Vec<u8> {
        // Text-like and compressible, but not trivially so.
        let mut x: u32 = 12345;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                b"the quick brown fox jumps over lazy dogs\n"[(x >> 16) as usize % 41]
            })
            .collect()
    }

    #[test]
    fn round_trips_at_every_boundary() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 5 * CHUNK, 9 * CHUNK + 7] {
            let data = sample(len);
            let out = gz(&data, 6, 2, 300_000);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
            assert!(back == data, "len {len}: round trip differs");
        }
    }

    #[test]
    fn independent_of_threads_and_write_sizes() {
        let data = sample(7 * CHUNK + 333);
        let reference = gz(&data, 6, 1, 1 << 16);
        for (threads, ws) in [(2, 512), (3, CHUNK), (4, 3 * CHUNK + 1)] {
            assert!(gz(&data, 6, threads, ws) == reference, "{threads} threads differ");
        }
        // Level 0 (stored blocks) and 9 still decode.
        for level in [0, 1, 9] {
            let out = gz(&data, level, 2, 1 << 20);
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&out[..]).read_to_end(&mut back).unwrap();
            assert!(back == data, "level {level}");
        }
    }
}

#[cfg(test)]
mod pinned {
    use super::*;

    /// Known-answer test: the compressed bytes depend on the deflate backend and its version
    /// (zlib-rs, pinned in the workspace). If a C zlib sneaks into the dependency graph or
    /// zlib-rs changes its output, every layer digest changes: this test makes that visible.
    #[test]
    fn output_bytes_are_pinned() {
        let mut x: u64 = 7;
        let data: Vec<u8> = (0..3 * CHUNK + 12345)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"kolla oci layer digest\n"[(x % 23) as usize]
            })
            .collect();
        let pool = Arc::new(rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap());
        let mut w = ParGzip::new(Vec::new(), 6, pool).unwrap();
        w.write_all(&data).unwrap();
        let out = w.finish().unwrap();
        assert_eq!(
            crate::Digest::of_bytes(&out).to_string(),
            "sha256:461bc5b80edf090910a91b4e4f7c7f6905bfa102c7e556c6f66f03de913e09ed"
        );
    }
}
