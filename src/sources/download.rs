//! `type = url` sources: downloaded with kolla's `--timeout`, kept in a cache under the state
//! directory, and re-validated with the server (`If-None-Match` / `If-Modified-Since`) before reuse.
//!
//! ```text
//! <cache>/blobs/<sha256>      downloaded bytes, named by their digest (verified on every reuse)
//! <cache>/urls/<sha256(url)>.json  what the server said: digest, ETag, Last-Modified
//! ```
//!
//! A download streams to a temp file while it is hashed (memory stays flat whatever the size), is
//! fsynced and renamed into place: a killed run leaves no half-written blob under its final name.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use layers::Digest;
use reqwest::StatusCode;
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use serde::{Deserialize, Serialize};

use super::SourceError;
use crate::redact;

/// What the cache remembers of a URL.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The URL with its password masked (the file is named by the hash of the whole URL).
    url: String,
    digest: Digest,
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Downloads into the cache (see the module docs).
pub(crate) struct Downloader {
    timeouts: crate::http::Timeouts,
    allowed_private_hosts: Vec<String>,
    dir: PathBuf,
    refetch: bool,
    attempts: u32,
}

impl Downloader {
    /// A downloader caching in `opts.cache_dir`. `timeout` bounds connecting and every read (a stalled
    /// transfer fails after it, as kolla's `requests.get(timeout=…)` does); `refetch` ignores the cache
    /// (`--nocache`); transient failures are tried `1 + retries` times; a redirect may lead to a
    /// loopback or private host only when it is the URL's own or one of `allowed_private_hosts`.
    pub fn new(opts: &super::SourceOptions) -> Result<Downloader, SourceError> {
        let dir = opts.cache_dir.as_path();
        let timeouts = crate::http::Timeouts { connect: opts.timeout, stall: opts.timeout };
        for sub in ["blobs", "urls", "tmp"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(|e| SourceError::io(&p, "create directory", e))?;
        }
        Ok(Downloader {
            timeouts,
            allowed_private_hosts: opts.allowed_private_hosts.clone(),
            dir: dir.to_path_buf(),
            refetch: opts.refetch,
            attempts: opts.retries + 1,
        })
    }

    fn entry_path(&self, url: &str) -> PathBuf {
        self.dir.join("urls").join(format!("{}.json", Digest::of_bytes(url.as_bytes()).hex()))
    }

    /// The cached blob with this digest.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join(digest.hex())
    }

    /// The digest of `url`'s content, downloading it unless the cache holds what the server still
    /// serves. The bytes are at [`Downloader::blob_path`].
    pub fn fetch(&self, url: &str) -> Result<Digest, SourceError> {
        let cached = if self.refetch { None } else { self.cached(url) };
        let mut last = None;
        for attempt in 1..=self.attempts {
            match self.try_fetch(url, cached.as_ref()) {
                Ok(d) => return Ok(d),
                Err(e) if e.transient && attempt < self.attempts => {
                    let wait = Duration::from_secs(1 << (attempt - 1).min(4));
                    let (url, reason) = (redact::urls(url), redact::urls(&e.reason));
                    tracing::warn!(url, attempt, "download failed ({reason}); retrying in {wait:?}");
                    std::thread::sleep(wait);
                    last = Some(e);
                }
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        let e = last.expect("at least one attempt");
        match cached {
            // The server cannot be asked: what we verified earlier is still what the source was.
            Some(c) if e.transient => {
                let (url, reason) = (redact::urls(url), redact::urls(&e.reason));
                tracing::warn!(url, "{reason}; using the copy downloaded earlier");
                Ok(c.digest)
            }
            _ => Err(SourceError::Download { url: url.to_string(), reason: e.reason }),
        }
    }

    /// The cache's entry for `url`, if its blob is still there and intact.
    fn cached(&self, url: &str) -> Option<Entry> {
        let entry: Entry = serde_json::from_slice(&fs::read(self.entry_path(url)).ok()?).ok()?;
        if entry.url != redact::urls(url) {
            return None;
        }
        match hash_file(&self.blob_path(&entry.digest)) {
            Ok(d) if d == entry.digest => Some(entry),
            Ok(d) => {
                tracing::warn!(
                    url = redact::urls(url),
                    "cached download is corrupt (sha256 {d}, expected {}); downloading again",
                    entry.digest
                );
                None
            }
            Err(_) => None,
        }
    }

    fn try_fetch(&self, url: &str, cached: Option<&Entry>) -> Result<Digest, Failure> {
        // A client per download: its redirects follow the registry client's rules, relative to this URL.
        let parsed =
            reqwest::Url::parse(url).map_err(|e| Failure { reason: format!("bad URL: {e}"), transient: false })?;
        let policy = crate::registry::transport::Destinations::for_download(&parsed, &self.allowed_private_hosts)
            .redirect_policy();
        let http = crate::http::http_client(&self.timeouts)
            .redirect(policy)
            .build()
            .map_err(|e| Failure { reason: format!("HTTP client: {e}"), transient: false })?;
        let mut req = http.get(parsed);
        if let Some(c) = cached {
            if let Some(etag) = &c.etag {
                req = req.header(IF_NONE_MATCH, etag);
            }
            if let Some(lm) = &c.last_modified {
                req = req.header(IF_MODIFIED_SINCE, lm);
            }
        }
        let mut resp = req.send().map_err(|e| Failure::from_http(&e))?;
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED
            && let Some(c) = cached
        {
            tracing::debug!(url = redact::urls(url), "not modified: using the cached download");
            return Ok(c.digest);
        }
        if !status.is_success() {
            let transient = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
            return Err(Failure { reason: format!("HTTP {status}"), transient });
        }
        let header = |name| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (etag, last_modified) = (header(ETAG), header(LAST_MODIFIED));
        let digest = self.store(&mut resp)?;
        let entry = Entry { url: redact::urls(url), digest, etag, last_modified };
        write_atomic(&self.entry_path(url), &serde_json::to_vec(&entry).expect("serializable"))
            .map_err(|e| Failure { reason: format!("writing the cache entry: {e}"), transient: false })?;
        Ok(digest)
    }

    /// Stream `body` into the blob cache; returns its digest.
    fn store(&self, body: &mut impl Read) -> Result<Digest, Failure> {
        let local = |e: io::Error| Failure { reason: format!("writing the download: {e}"), transient: false };
        let tmp = tempfile::NamedTempFile::new_in(self.dir.join("tmp")).map_err(local)?;
        let mut out = layers::HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp.as_file()));
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A reset or a stall (read timeout) mid-body: worth another attempt.
                Err(e) => return Err(Failure { reason: format!("reading the body: {e}"), transient: true }),
            };
            out.write_all(&buf[..n]).map_err(local)?;
        }
        let (mut file, digest, _) = out.finish();
        file.flush().map_err(local)?;
        drop(file);
        tmp.as_file().sync_all().map_err(local)?;
        tmp.persist(self.blob_path(&digest)).map_err(|e| local(e.error))?;
        Ok(digest)
    }
}

/// One failed attempt; `transient` ones (connection errors, timeouts, 5xx, 429) are retried.
struct Failure {
    reason: String,
    transient: bool,
}

impl Failure {
    fn from_http(e: &reqwest::Error) -> Failure {
        let transient = e.is_connect() || e.is_timeout() || e.is_request();
        // reqwest's Display hides the cause ("error sending request"); the chain says what happened.
        Failure { reason: crate::with_causes(e), transient }
    }
}

/// sha256 of a file's content.
pub(crate) fn hash_file(path: &Path) -> io::Result<Digest> {
    Ok(layers::digest_reader(fs::File::open(path)?)?.0)
}

/// Write `bytes` to `path` through a synced temp file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
