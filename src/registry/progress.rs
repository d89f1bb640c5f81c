//! What a push shows while it runs: on a terminal, indicatif bars for the bytes sent, the blobs and the
//! images; otherwise one log line per blob and per image, as `build` does.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use layers::Digest;
use tracing::info;

/// Adds upload body bytes to the bytes bar; does nothing without a terminal. Cheap to clone (the bar is
/// shared), so a request body running on reqwest's own thread can carry one.
#[derive(Clone, Default)]
pub(crate) struct ByteCounter(Option<ProgressBar>);

impl ByteCounter {
    fn add(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.inc(n);
        }
    }

    fn take_back(&self, n: u64) {
        if let Some(bar) = &self.0 {
            bar.dec(n);
        }
    }
}

/// A request body that counts what is read from it.
pub(crate) struct Counted<R> {
    inner: R,
    counter: ByteCounter,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        self.counter.add(n as u64);
        Ok(n)
    }
}

/// Counts the body of the request being sent, so that the bytes of a request that is sent again (after a
/// re-authentication, or a retried upload) are taken back rather than counted twice.
pub(crate) struct BodyMeter {
    counter: ByteCounter,
    current: Mutex<Arc<AtomicU64>>,
}

impl BodyMeter {
    /// A meter adding to `counter`.
    pub(crate) fn new(counter: &ByteCounter) -> BodyMeter {
        BodyMeter { counter: counter.clone(), current: Mutex::new(Arc::default()) }
    }

    /// Count the body of a new request; the previous one, if not kept, is being replaced: its bytes go.
    pub(crate) fn wrap<R: Read>(&self, inner: R) -> Counted<R> {
        let read = Arc::new(AtomicU64::new(0));
        let old = std::mem::replace(&mut *self.current.lock().unwrap_or_else(|p| p.into_inner()), read.clone());
        self.counter.take_back(old.load(Ordering::Relaxed));
        Counted { inner, counter: self.counter.clone(), read }
    }

    /// The current request went through: its bytes stay counted.
    pub(crate) fn keep(&self) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Arc::default();
    }

    /// The current request failed: take its bytes back.
    pub(crate) fn discard(&self) {
        let old = std::mem::take(&mut *self.current.lock().unwrap_or_else(|p| p.into_inner()));
        self.counter.take_back(old.load(Ordering::Relaxed));
    }
}

/// How a (repository, blob) task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobOutcome<'a> {
    /// Its bytes were sent.
    Uploaded,
    /// Mounted from another repository of the registry.
    Mounted {
        /// The repository it came from.
        from: &'a str,
    },
    /// The repository had it already.
    Present,
}

/// The progress display of one push run.
pub(crate) struct PushProgress {
    bars: Option<Bars>,
}

struct Bars {
    _multi: MultiProgress,
    bytes: ProgressBar,
    blobs: ProgressBar,
    images: ProgressBar,
}

impl PushProgress {
    /// Bars on standard error when it is a terminal, log lines otherwise. `planned_bytes` is what the plan
    /// expects to upload (the owners' blobs); it shrinks as blobs turn out to be there already.
    pub(crate) fn new(planned_bytes: u64, blobs: usize, images: usize) -> PushProgress {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        PushProgress::with_target(terminal.then(ProgressDrawTarget::stderr), planned_bytes, blobs, images)
    }

    /// Bars drawn to `target`, or none.
    fn with_target(
        target: Option<ProgressDrawTarget>,
        planned_bytes: u64,
        blobs: usize,
        images: usize,
    ) -> PushProgress {
        let bars = target.map(|target| {
            let multi = MultiProgress::with_draw_target(target);
            let bar = |len: u64, template: &str| {
                let style = ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
                multi.add(ProgressBar::new(len).with_style(style.progress_chars("=> ")))
            };
            let bytes = bar(planned_bytes, "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec}");
            bytes.enable_steady_tick(std::time::Duration::from_millis(200));
            Bars {
                bytes,
                blobs: bar(blobs as u64, "         blobs  {pos}/{len} {wide_msg}"),
                images: bar(images as u64, "         images {pos}/{len} {wide_msg}"),
                _multi: multi,
            }
        });
        PushProgress { bars }
    }

    /// The counter upload bodies add their bytes to.
    pub(crate) fn counter(&self) -> ByteCounter {
        ByteCounter(self.bars.as_ref().map(|b| b.bytes.clone()))
    }

    /// A blob task is done. `planned` is what the plan counted on uploading for it (its size for the
    /// blob's first repository, 0 for the others, which expect to mount it).
    pub(crate) fn blob(&self, repo: &str, digest: &Digest, size: u64, planned: u64, outcome: BlobOutcome<'_>) {
        let Some(b) = &self.bars else {
            match outcome {
                BlobOutcome::Uploaded => info!("uploaded {digest} ({size} bytes) to {repo}"),
                BlobOutcome::Mounted { from } => info!("mounted {digest} into {repo} from {from}"),
                BlobOutcome::Present => info!("{repo} has {digest} already"),
            }
            return;
        };
        match outcome {
            BlobOutcome::Uploaded if size > planned => b.bytes.inc_length(size - planned),
            BlobOutcome::Uploaded => {}
            _ => b.bytes.dec_length(planned),
        }
        b.blobs.inc(1);
        b.blobs.set_message(format!("{repo} {}", short(digest)));
    }

    /// An image's manifest is in the registry.
    pub(crate) fn image(&self, target: &str, digest: &Digest) {
        match &self.bars {
            Some(b) => {
                b.images.inc(1);
                b.images.set_message(target.to_string());
            }
            None => info!(%digest, "pushed {target}"),
        }
    }

    /// Take the bars off the screen.
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bars {
            for bar in [&b.bytes, &b.blobs, &b.images] {
                bar.finish_and_clear();
            }
        }
    }
}

/// `sha256:0123456789ab`: enough of a digest to follow along.
fn short(digest: &Digest) -> String {
    let s = digest.to_string();
    s.chars().take(19).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_of_a_request_sent_again_count_once() {
        let p = PushProgress::with_target(Some(ProgressDrawTarget::hidden()), 1000, 3, 1);
        let bytes = || p.bars.as_ref().unwrap().bytes.position();
        let meter = BodyMeter::new(&p.counter());
        let mut sink = Vec::new();
        // A first attempt reads 300 bytes, then the request is sent again (401) and reads all 600.
        meter.wrap(&[0u8; 600][..]).take(300).read_to_end(&mut sink).unwrap();
        assert_eq!(bytes(), 300);
        meter.wrap(&[0u8; 600][..]).read_to_end(&mut sink).unwrap();
        assert_eq!(bytes(), 600);
        meter.keep();
        // A failed chunk is taken back; kept chunks stay.
        meter.wrap(&[0u8; 400][..]).read_to_end(&mut sink).unwrap();
        assert_eq!(bytes(), 1000);
        meter.discard();
        assert_eq!(bytes(), 600);
    }

    #[test]
    fn planned_bytes_follow_what_blobs_turned_out_to_need() {
        let p = PushProgress::with_target(Some(ProgressDrawTarget::hidden()), 1000, 3, 1);
        let b = p.bars.as_ref().unwrap();
        let d = Digest::of_bytes(b"x");
        // A planned upload that found the blob there, a planned upload, and a mount that fell back to uploading.
        p.blob("a", &d, 400, 400, BlobOutcome::Present);
        assert_eq!(b.bytes.length(), Some(600));
        p.blob("a", &d, 600, 600, BlobOutcome::Uploaded);
        p.blob("b", &d, 50, 0, BlobOutcome::Uploaded);
        assert_eq!(b.bytes.length(), Some(650));
        p.blob("c", &d, 50, 0, BlobOutcome::Mounted { from: "a" });
        assert_eq!((b.blobs.position(), b.bytes.length()), (4, Some(650)));
        p.image("r/a:t", &d);
        assert_eq!(b.images.position(), 1);
        // Without a terminal there are no bars and nothing to count into.
        let plain = PushProgress::with_target(None, 1000, 3, 1);
        assert!(plain.counter().0.is_none());
        plain.blob("a", &d, 1, 1, BlobOutcome::Uploaded);
    }
}
