//! One registry's distribution API over `reqwest::blocking`: the blob and manifest endpoints push and pull
//! need, each request authorized for its scopes (see `token.rs`) and retried with backoff when that is safe.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;

use layers::Digest;
use reqwest::blocking::{Body, RequestBuilder, Response};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use tracing::{debug, trace, warn};

use super::auth::Credential;
use super::progress::{BodyMeter, ByteCounter};
use super::token::AuthState;
use super::transport::{
    Backoff, Destinations, Retry, error_detail, header_str, origin_text, read_limited, retry_after, transient,
};
use super::{RegistryError, RegistryOptions};
use crate::store::Store;

/// Media types accepted when fetching manifests: OCI and Docker v2 schema 2, single and multi-platform.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// Largest manifest we read into memory.
pub(crate) const MAX_MANIFEST: u64 = 8 << 20;
/// The base of an upload's deadline (it grows with the body's size).
const UPLOAD_TIMEOUT_BASE: std::time::Duration = std::time::Duration::from_secs(120);
/// The slowest upload rate we wait for, in bytes per second: a registry that takes the body and then never
/// answers would otherwise hang a push for ever (keepalive sees a healthy connection).
const MIN_UPLOAD_RATE: u64 = 256 << 10;

/// How long sending `len` body bytes and getting the answer may take.
fn transfer_timeout(len: u64) -> std::time::Duration {
    UPLOAD_TIMEOUT_BASE + std::time::Duration::from_secs(len / MIN_UPLOAD_RATE)
}

/// `repository:<name>:pull`.
pub fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

/// `repository:<name>:pull,push`.
pub fn push_scope(repo: &str) -> String {
    format!("repository:{repo}:pull,push")
}

/// What a cross-repository mount request achieved.
pub enum MountOutcome {
    /// 201: the blob is now in the target repository.
    Mounted,
    /// 202: the registry refused the mount and opened an upload session at this URL instead.
    Upload(Url),
}

/// A client for one registry host.
pub struct Client {
    pub(super) http: reqwest::blocking::Client,
    base: Url,
    registry: String,
    pub(super) credential: Option<Credential>,
    retries: u32,
    backoff: Backoff,
    stall: std::time::Duration,
    destinations: Destinations,
    pub(super) auth: Mutex<AuthState>,
    /// Where upload bodies count their bytes (the push progress display).
    pub(super) progress: ByteCounter,
}

impl Client {
    /// A client for `registry` (as written in references; `docker.io` is served by `api_host`).
    ///
    /// Loopback hosts and `opts.insecure_registries` entries are spoken to over plain http, the rest over
    /// TLS verified against the system roots. Credentials: `opts.credential`, else the stored ones; they
    /// are sent to this registry's origin only.
    pub fn new(registry: &str, api_host: &str, opts: &RegistryOptions) -> Result<Client, RegistryError> {
        let listed = opts.insecure_registries.iter().any(|h| h == registry || h == api_host);
        let tls = opts.tls.for_host(registry)?;
        // Loopback registries speak plain HTTP unless TLS is asked for or configured for them.
        let verify = opts.tls.verify != Some(false);
        let plain =
            listed || (opts.tls.verify.is_none() && tls.dir.is_none() && super::reference::host_is_loopback(registry));
        let url = |scheme: &str| {
            Url::parse(&format!("{scheme}://{api_host}/")).map_err(|e| RegistryError::Protocol {
                what: format!("registry {registry}"),
                reason: format!("bad registry address: {e}"),
            })
        };
        let mut base = url(if plain { "http" } else { "https" })?;
        // Redirects are checked by host and port: the policy holds whichever scheme `base` ends up with.
        let mut builder = super::transport::http_client(&opts.timeouts)
            .redirect(Destinations::new(&base, &opts.allowed_private_hosts).redirect_policy())
            .pool_max_idle_per_host(opts.threads.max(1) * 2);
        if !plain {
            builder = tls.apply(builder, verify);
        }
        let http = builder
            .build()
            .map_err(|e| RegistryError::Http { what: format!("creating http client for {registry}"), error: e })?;
        if !plain && !verify {
            // `--tls-verify=false` also allows plain HTTP (containers/image's fallback): a registry that
            // cannot be reached over TLS is tried without it; a refused connection stays an error.
            if let Err(e) = http.get(base.join("v2/").expect("static path")).send()
                && !super::transport::refused(&e)
            {
                debug!(registry, error = %super::transport::describe(&e), "no TLS: plain HTTP");
                base = url("http")?;
            }
        }
        let destinations = Destinations::new(&base, &opts.allowed_private_hosts);
        let credential = match &opts.credential {
            Some(c) => Some(c.clone()),
            None => super::auth::lookup_credential(registry)?,
        };
        debug!(registry, %base, authenticated = credential.is_some(), "registry client");
        Ok(Client {
            http,
            base,
            registry: registry.to_string(),
            credential,
            retries: opts.retries,
            backoff: opts.backoff,
            stall: opts.timeouts.stall,
            destinations,
            auth: Mutex::new(AuthState::default()),
            progress: ByteCounter::default(),
        })
    }

    /// The registry name as written in references.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Extra attempts after a transient failure.
    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }

    /// How long a transfer may go without a byte.
    pub(crate) fn stall_timeout(&self) -> std::time::Duration {
        self.stall
    }

    /// The wait before retry number `attempt + 1`.
    pub(crate) fn backoff(&self, attempt: u32) -> std::time::Duration {
        self.backoff.wait(attempt)
    }

    pub(super) fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("API paths are valid relative URLs")
    }

    /// `GET /v2/` with our credentials (a token without scopes where the registry uses tokens): whether
    /// the registry accepts them, which is what `login` checks before saving them.
    pub fn check_credentials(&self) -> Result<(), RegistryError> {
        let url = self.url("v2/");
        let what = format!("logging in to {}", self.registry);
        let resp = self.send(&what, &[], Retry::Transient, &|| Ok(self.http.get(url.clone())))?;
        if resp.status().is_success() { Ok(()) } else { Err(self.status_error(&what, resp)) }
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: does the repository hold the blob?
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"));
        let what = format!("HEAD blob {digest} in {}/{repo}", self.registry);
        let resp = self.send(&what, &[pull_scope(repo)], Retry::Transient, &|| Ok(self.http.head(url.clone())))?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&what, resp)),
        }
    }

    /// `GET /v2/<repo>/manifests/<reference>`: the exact bytes, the media type and `Docker-Content-Digest`.
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String, Option<String>), RegistryError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let what = format!("GET manifest {}/{repo}:{reference}", self.registry);
        let resp = self.send(&what, &[pull_scope(repo)], Retry::Transient, &|| {
            Ok(self.http.get(url.clone()).header(header::ACCEPT, MANIFEST_ACCEPT))
        })?;
        if !resp.status().is_success() {
            return Err(self.status_error(&what, resp));
        }
        let media_type = header_str(resp.headers(), header::CONTENT_TYPE.as_str())
            .map(|m| m.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let digest = header_str(resp.headers(), "docker-content-digest").map(str::to_string);
        let bytes = read_limited(resp, MAX_MANIFEST).map_err(|e| RegistryError::Io { what, source: e })?;
        Ok((bytes, media_type, digest))
    }

    /// `GET /v2/<repo>/blobs/<digest>` (redirects followed within [`Destinations`]); the caller streams the
    /// body, whose every read is bounded by the stall timeout. Sent once: the caller retries the whole
    /// transfer, since a body can also break off after the answer.
    pub fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Response, RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"));
        let what = format!("GET blob {digest} from {}/{repo}", self.registry);
        let resp = self.send(&what, &[pull_scope(repo)], Retry::Never, &|| Ok(self.http.get(url.clone())))?;
        if !resp.status().is_success() {
            return Err(self.status_error(&what, resp));
        }
        Ok(resp)
    }

    /// `POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<from>`, with one token covering both repos.
    pub fn mount_blob(&self, repo: &str, digest: &Digest, from: &str) -> Result<MountOutcome, RegistryError> {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        url.query_pairs_mut().append_pair("mount", &digest.to_string()).append_pair("from", from);
        let what = format!("mount blob {digest} from {from} into {}/{repo}", self.registry);
        let scopes = [push_scope(repo), pull_scope(from)];
        let resp = self.send(&what, &scopes, Retry::Transient, &|| {
            Ok(self.http.post(url.clone()).header(header::CONTENT_LENGTH, "0"))
        })?;
        match resp.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => Ok(MountOutcome::Upload(self.location(&what, &resp)?)),
            _ => Err(self.status_error(&what, resp)),
        }
    }

    /// Upload the store's blob `digest` (`size` bytes) into `repo`, streamed from disk.
    ///
    /// `session` is an upload URL to use first (from a refused mount). Monolithic `PUT` unless
    /// `chunk_size` is set (then `PATCH` chunks with `Content-Range`, then an empty `PUT`). A transient
    /// failure restarts the upload from a fresh session, at most `retries` times.
    pub fn upload_blob(
        &self,
        repo: &str,
        digest: &Digest,
        store: &Store,
        size: u64,
        mut session: Option<Url>,
        chunk_size: Option<u64>,
    ) -> Result<(), RegistryError> {
        let what = format!("upload blob {digest} ({size} bytes) to {}/{repo}", self.registry);
        let blob = BlobBody { store, digest, size, meter: BodyMeter::new(&self.progress) };
        let mut attempt = 0;
        loop {
            // Starting a session has its own retries; only the transfer itself is restarted here.
            let location = match session.take() {
                Some(u) => u,
                None => self.start_upload(repo)?,
            };
            let result = match chunk_size {
                Some(c) if c > 0 && size > 0 => self.upload_chunks(&what, repo, &blob, location, c),
                _ => self.upload_monolithic(&what, repo, &blob, location),
            };
            match result {
                Ok(()) => {
                    blob.meter.keep();
                    return Ok(());
                }
                Err(e) => {
                    blob.meter.discard();
                    if !e.is_transient() || attempt >= self.retries {
                        return Err(e);
                    }
                    let wait = e.retry_after().unwrap_or_else(|| self.backoff(attempt));
                    warn!(error = %e, attempt = attempt + 1, of = self.retries, ?wait, "retrying blob upload");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/` → the session URL.
    fn start_upload(&self, repo: &str) -> Result<Url, RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        let what = format!("start upload to {}/{repo}", self.registry);
        let resp = self.send(&what, &[push_scope(repo)], Retry::Transient, &|| {
            Ok(self.http.post(url.clone()).header(header::CONTENT_LENGTH, "0"))
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(&what, resp));
        }
        self.location(&what, &resp)
    }

    fn upload_monolithic(&self, what: &str, repo: &str, blob: &BlobBody, location: Url) -> Result<(), RegistryError> {
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", &blob.digest.to_string());
        let resp = self.send(what, &[push_scope(repo)], Retry::Never, &|| {
            let body = blob.meter.wrap(blob.open()?);
            Ok(self
                .http
                .put(url.clone())
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .timeout(transfer_timeout(blob.size))
                .body(Body::sized(body, blob.size)))
        })?;
        self.finish_upload(what, blob.digest, resp)
    }

    fn upload_chunks(
        &self,
        what: &str,
        repo: &str,
        blob: &BlobBody,
        location: Url,
        chunk: u64,
    ) -> Result<(), RegistryError> {
        let (digest, size) = (blob.digest, blob.size);
        let mut url = location;
        let mut start = 0u64;
        while start < size {
            let len = chunk.min(size - start);
            let range = format!("{start}-{}", start + len - 1);
            trace!(%digest, range, "PATCH chunk");
            let resp = self.send(what, &[push_scope(repo)], Retry::Never, &|| {
                let mut file = blob.open()?;
                file.seek(SeekFrom::Start(start)).map_err(|e| RegistryError::Io {
                    what: format!("seeking blob {digest} in the store"),
                    source: e,
                })?;
                Ok(self
                    .http
                    .patch(url.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_RANGE, range.as_str())
                    .timeout(transfer_timeout(len))
                    .body(Body::sized(blob.meter.wrap(file.take(len)), len)))
            })?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(self.status_error(what, resp));
            }
            blob.meter.keep();
            url = self.location(what, &resp)?;
            start += len;
        }
        url.query_pairs_mut().append_pair("digest", &digest.to_string());
        // The registry may verify the whole blob before it answers: as long as a monolithic upload may take.
        let resp = self.send(what, &[push_scope(repo)], Retry::Never, &|| {
            Ok(self.http.put(url.clone()).header(header::CONTENT_LENGTH, "0").timeout(transfer_timeout(size)))
        })?;
        self.finish_upload(what, digest, resp)
    }

    fn finish_upload(&self, what: &str, digest: &Digest, resp: Response) -> Result<(), RegistryError> {
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error(what, resp));
        }
        check_digest_header(what, digest, resp.headers())
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the exact bytes; the registry's digest must match ours.
    /// Returns the `OCI-Subject` header of the answer: a registry with the referrers API sends it when
    /// the manifest has a `subject`.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
        digest: &Digest,
    ) -> Result<Option<String>, RegistryError> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"));
        let what = format!("PUT manifest {}/{repo}:{reference}", self.registry);
        let resp = self.send(&what, &[push_scope(repo)], Retry::Transient, &|| {
            Ok(self.http.put(url.clone()).header(header::CONTENT_TYPE, media_type).body(bytes.to_vec()))
        })?;
        if resp.status() != StatusCode::CREATED && resp.status() != StatusCode::OK {
            return Err(self.status_error(&what, resp));
        }
        check_digest_header(&what, digest, resp.headers())?;
        Ok(header_str(resp.headers(), "oci-subject").map(str::to_string))
    }

    /// The answer's `Location`, resolved against the registry and checked against [`Destinations`].
    pub(super) fn location(&self, what: &str, resp: &Response) -> Result<Url, RegistryError> {
        let loc = header_str(resp.headers(), header::LOCATION.as_str()).ok_or_else(|| RegistryError::Protocol {
            what: what.to_string(),
            reason: format!("answer {} has no Location header", resp.status()),
        })?;
        // Relative locations resolve against the registry; absolute ones keep their own host and query.
        let url = self.base.join(loc).map_err(|e| RegistryError::Protocol {
            what: what.to_string(),
            reason: format!("bad Location {loc:?}: {e}"),
        })?;
        self.check_destination(what, &url)?;
        Ok(url)
    }

    /// Refuse a URL the registry gave us that leads to a private host other than the registry.
    pub(super) fn check_destination(&self, what: &str, url: &Url) -> Result<(), RegistryError> {
        self.destinations.check(url).map_err(|reason| RegistryError::Protocol { what: what.to_string(), reason })
    }

    /// Turn an unexpected answer into an error carrying the registry's `{"errors":[…]}` envelope.
    pub fn status_error(&self, what: &str, resp: Response) -> RegistryError {
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let foreign = (!self.destinations.is_registry(resp.url())).then(|| origin_text(resp.url()));
        let body = read_limited(resp, 64 << 10).unwrap_or_default();
        let detail = error_detail(&body);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let hint = match (foreign, &self.credential) {
                (Some(other), _) => format!(
                    " (answered by {other}, which is not the registry: credentials are only sent to {})",
                    self.registry
                ),
                (None, None) => {
                    " (no credentials found: docker config.json, containers auth.json or --username)".into()
                }
                (None, Some(_)) => " (check the user name and password)".into(),
            };
            RegistryError::Unauthorized {
                what: what.to_string(),
                status: status.as_u16(),
                detail: format!("{detail}{hint}"),
            }
        } else {
            // Go's HTTP server answers plain HTTP sent to its TLS port so.
            let hint = if self.base.scheme() == "http" && detail.contains("HTTPS server") {
                " (the registry speaks TLS: --tls-verify, or its CA with --cert-dir or in certs.d)"
            } else {
                ""
            };
            let detail = format!("{detail}{hint}");
            RegistryError::Status { what: what.to_string(), status: status.as_u16(), detail, retry_after }
        }
    }

    /// Send a request built by `build` (called again for every attempt, so streamed bodies are reopened).
    ///
    /// Authorizes it for `scopes` when it goes to the registry's own origin, re-authenticates once on the
    /// registry's 401, and retries as `retry` says.
    pub(crate) fn send(
        &self,
        what: &str,
        scopes: &[String],
        retry: Retry,
        build: &dyn Fn() -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let mut reauthed = false;
        loop {
            let auth = self.authorization(scopes)?;
            let resp = self.execute(what, retry, auth.as_ref(), build)?;
            if resp.status() == StatusCode::UNAUTHORIZED && !reauthed && self.destinations.is_registry(resp.url()) {
                debug!(what, "401: authenticating again");
                self.reset_auth(scopes, resp.headers());
                reauthed = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// The retry loop. `auth` is added only to requests for the registry's own origin: an upload session
    /// elsewhere (an absolute `Location` on another host) never sees our credentials.
    pub(super) fn execute(
        &self,
        what: &str,
        retry: Retry,
        auth: Option<&HeaderValue>,
        build: &dyn Fn() -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let retries = match retry {
            Retry::Transient => self.retries,
            Retry::Never => 0,
        };
        let mut attempt = 0;
        loop {
            let mut req = build()?.build().map_err(|e| RegistryError::Http { what: what.to_string(), error: e })?;
            match auth {
                Some(a) if self.destinations.is_registry(req.url()) => {
                    req.headers_mut().insert(header::AUTHORIZATION, a.clone());
                }
                Some(_) => debug!(what, to = %origin_text(req.url()), "not the registry: no credentials"),
                None => {}
            }
            let wait = match self.http.execute(req) {
                Ok(resp) => {
                    let s = resp.status();
                    trace!(what, status = s.as_u16(), "answer");
                    if attempt >= retries || !(s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS) {
                        return Ok(resp);
                    }
                    let wait = retry_after(resp.headers()).unwrap_or_else(|| self.backoff(attempt));
                    warn!(what, status = s.as_u16(), attempt = attempt + 1, of = retries, ?wait, "retrying");
                    wait
                }
                Err(e) if attempt < retries && transient(&e) => {
                    let wait = self.backoff(attempt);
                    warn!(what, error = %e, attempt = attempt + 1, of = retries, ?wait, "retrying");
                    wait
                }
                Err(e) => return Err(RegistryError::Http { what: what.to_string(), error: e }),
            };
            std::thread::sleep(wait);
            attempt += 1;
        }
    }
}

/// A store blob as an upload body: opened afresh (never through a symlink) for every request.
struct BlobBody<'a> {
    store: &'a Store,
    digest: &'a Digest,
    size: u64,
    meter: BodyMeter,
}

impl BlobBody<'_> {
    fn open(&self) -> Result<std::fs::File, RegistryError> {
        Ok(self.store.open_blob(self.digest)?)
    }
}

/// A `Docker-Content-Digest` answer, when present, must name what we sent.
fn check_digest_header(what: &str, digest: &Digest, headers: &HeaderMap) -> Result<(), RegistryError> {
    match header_str(headers, "docker-content-digest") {
        Some(d) if d != digest.to_string() => Err(RegistryError::DigestMismatch {
            what: what.to_string(),
            expected: digest.to_string(),
            actual: d.to_string(),
        }),
        _ => Ok(()),
    }
}
