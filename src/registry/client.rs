//! One registry's distribution API over `reqwest::blocking`: authentication (anonymous, Basic, Bearer
//! tokens per scope set), retries with backoff, and the blob/manifest endpoints push and pull need.

use std::collections::HashMap;
use std::fs::File;
use std::hash::BuildHasher as _;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use layers::Digest;
use reqwest::blocking::{Body, RequestBuilder, Response};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tracing::{debug, trace, warn};

use super::auth::{Challenge, Credential, Secret, parse_challenge};
use super::{RegistryError, RegistryOptions};

/// Media types accepted when fetching manifests: OCI and Docker v2 schema 2, single and multi-platform.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";
/// Largest manifest or token answer we read into memory.
const MAX_SMALL_BODY: u64 = 8 << 20;
/// Timeout for requests without a large body (HEAD, POST, manifests, tokens).
const SMALL_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The slowest upload rate we wait for, in bytes per second: a registry that takes the body and then never
/// answers would otherwise hang a push for ever (keepalive sees a healthy connection).
const MIN_UPLOAD_RATE: u64 = 256 << 10;

/// How long sending `len` body bytes and getting the answer may take.
fn transfer_timeout(len: u64) -> Duration {
    SMALL_REQUEST_TIMEOUT + Duration::from_secs(len / MIN_UPLOAD_RATE)
}
/// Longest `Retry-After` we honour.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Tokens are refreshed this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

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

/// How the registry wants us to authenticate, learned from `GET /v2/`.
#[derive(Default)]
struct AuthState {
    /// `None` until probed; `Some(None)` for an anonymous registry.
    challenge: Option<Option<Challenge>>,
    /// `Bearer <token>` header values by space-joined sorted scope set, with their expiry.
    tokens: HashMap<String, (Secret, Instant)>,
}

/// A client for one registry host.
pub struct Client {
    http: reqwest::blocking::Client,
    base: Url,
    registry: String,
    credential: Option<Credential>,
    retries: u32,
    auth: Mutex<AuthState>,
}

impl Client {
    /// A client for `registry` (as written in references; `docker.io` is served by `api_host`).
    ///
    /// Loopback hosts and `opts.insecure_registries` entries are spoken to over plain http, the rest over
    /// TLS verified against the system roots. Credentials: `opts.credential`, else the stored ones.
    pub fn new(registry: &str, api_host: &str, opts: &RegistryOptions) -> Result<Client, RegistryError> {
        crate::http::install_tls_provider();
        let insecure = super::reference::host_is_loopback(registry)
            || opts.insecure_registries.iter().any(|h| h == registry || h == api_host);
        let scheme = if insecure { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{api_host}/")).map_err(|e| RegistryError::Protocol {
            what: format!("registry {registry}"),
            reason: format!("bad registry address: {e}"),
        })?;
        let http = reqwest::blocking::Client::builder()
            .user_agent(crate::http::USER_AGENT)
            // No client-wide timeout: every request sets its own (uploads scale with their size).
            .timeout(None)
            .connect_timeout(Duration::from_secs(30))
            .tcp_keepalive(Duration::from_secs(30))
            .pool_max_idle_per_host(opts.threads.max(1) * 2)
            .build()
            .map_err(|e| RegistryError::Http { what: format!("creating http client for {registry}"), source: e })?;
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
            auth: Mutex::new(AuthState::default()),
        })
    }

    /// The registry name as written in references.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("API paths are valid relative URLs")
    }

    /// `HEAD /v2/<repo>/blobs/<digest>`: does the repository hold the blob?
    pub fn blob_exists(&self, repo: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"));
        let what = format!("HEAD blob {digest} in {}/{repo}", self.registry);
        let resp = self.send(&what, &[pull_scope(repo)], true, &|| {
            Ok(self.http.head(url.clone()).timeout(SMALL_REQUEST_TIMEOUT))
        })?;
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
        let resp = self.send(&what, &[pull_scope(repo)], true, &|| {
            Ok(self.http.get(url.clone()).header(header::ACCEPT, MANIFEST_ACCEPT).timeout(SMALL_REQUEST_TIMEOUT))
        })?;
        if !resp.status().is_success() {
            return Err(self.status_error(&what, resp));
        }
        let media_type = header_str(resp.headers(), header::CONTENT_TYPE.as_str())
            .map(|m| m.split(';').next().unwrap_or("").trim().to_string())
            .unwrap_or_default();
        let digest = header_str(resp.headers(), "docker-content-digest").map(str::to_string);
        let bytes = read_limited(resp, MAX_SMALL_BODY).map_err(|e| RegistryError::Io { what, source: e })?;
        Ok((bytes, media_type, digest))
    }

    /// `GET /v2/<repo>/blobs/<digest>` (redirects followed); the caller streams the body.
    pub fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Response, RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"));
        let what = format!("GET blob {digest} from {}/{repo}", self.registry);
        let resp = self.send(&what, &[pull_scope(repo)], true, &|| Ok(self.http.get(url.clone())))?;
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
        let resp = self.send(&what, &scopes, true, &|| {
            Ok(self.http.post(url.clone()).header(header::CONTENT_LENGTH, "0").timeout(SMALL_REQUEST_TIMEOUT))
        })?;
        match resp.status() {
            StatusCode::CREATED => Ok(MountOutcome::Mounted),
            StatusCode::ACCEPTED => Ok(MountOutcome::Upload(self.location(&what, &resp)?)),
            _ => Err(self.status_error(&what, resp)),
        }
    }

    /// Upload the blob file at `path` (`size` bytes) into `repo`, streamed from disk.
    ///
    /// `session` is an upload URL to use first (from a refused mount). Monolithic `PUT` unless
    /// `chunk_size` is set (then `PATCH` chunks with `Content-Range`, then an empty `PUT`). A transient
    /// failure restarts the upload from a fresh session, at most `retries` times.
    pub fn upload_blob(
        &self,
        repo: &str,
        digest: &Digest,
        path: &Path,
        size: u64,
        mut session: Option<Url>,
        chunk_size: Option<u64>,
    ) -> Result<(), RegistryError> {
        let what = format!("upload blob {digest} ({size} bytes) to {}/{repo}", self.registry);
        let mut attempt = 0;
        loop {
            // Starting a session has its own retries; only the transfer itself is restarted here.
            let location = match session.take() {
                Some(u) => u,
                None => self.start_upload(repo)?,
            };
            let result = match chunk_size {
                Some(c) if c > 0 && size > 0 => self.upload_chunks(&what, repo, digest, path, size, location, c),
                _ => self.upload_monolithic(&what, repo, digest, path, size, location),
            };
            match result {
                Err(e) if e.is_transient() && attempt < self.retries => {
                    let hinted = match &e {
                        RegistryError::Status { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    let wait = hinted.unwrap_or_else(|| backoff(attempt));
                    warn!(error = %e, attempt = attempt + 1, of = self.retries, ?wait, "retrying blob upload");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// `POST /v2/<repo>/blobs/uploads/` → the session URL.
    fn start_upload(&self, repo: &str) -> Result<Url, RegistryError> {
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"));
        let what = format!("start upload to {}/{repo}", self.registry);
        let resp = self.send(&what, &[push_scope(repo)], true, &|| {
            Ok(self.http.post(url.clone()).header(header::CONTENT_LENGTH, "0").timeout(SMALL_REQUEST_TIMEOUT))
        })?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(&what, resp));
        }
        self.location(&what, &resp)
    }

    fn upload_monolithic(
        &self,
        what: &str,
        repo: &str,
        digest: &Digest,
        path: &Path,
        size: u64,
        location: Url,
    ) -> Result<(), RegistryError> {
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", &digest.to_string());
        let resp = self.send(what, &[push_scope(repo)], false, &|| {
            let file = open(path)?;
            Ok(self
                .http
                .put(url.clone())
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .timeout(transfer_timeout(size))
                .body(Body::sized(file, size)))
        })?;
        self.finish_upload(what, digest, resp)
    }

    #[allow(clippy::too_many_arguments)]
    fn upload_chunks(
        &self,
        what: &str,
        repo: &str,
        digest: &Digest,
        path: &Path,
        size: u64,
        location: Url,
        chunk: u64,
    ) -> Result<(), RegistryError> {
        let mut url = location;
        let mut start = 0u64;
        while start < size {
            let len = chunk.min(size - start);
            let range = format!("{start}-{}", start + len - 1);
            trace!(%digest, range, "PATCH chunk");
            let resp = self.send(what, &[push_scope(repo)], false, &|| {
                let mut file = open(path)?;
                file.seek(SeekFrom::Start(start))
                    .map_err(|e| RegistryError::Io { what: format!("seeking {}", path.display()), source: e })?;
                Ok(self
                    .http
                    .patch(url.clone())
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_RANGE, range.as_str())
                    .timeout(transfer_timeout(len))
                    .body(Body::sized(file.take(len), len)))
            })?;
            if resp.status() != StatusCode::ACCEPTED {
                return Err(self.status_error(what, resp));
            }
            url = self.location(what, &resp)?;
            start += len;
        }
        url.query_pairs_mut().append_pair("digest", &digest.to_string());
        let resp = self.send(what, &[push_scope(repo)], false, &|| {
            Ok(self.http.put(url.clone()).header(header::CONTENT_LENGTH, "0").timeout(SMALL_REQUEST_TIMEOUT))
        })?;
        self.finish_upload(what, digest, resp)
    }

    fn finish_upload(&self, what: &str, digest: &Digest, resp: Response) -> Result<(), RegistryError> {
        if resp.status() != StatusCode::CREATED {
            return Err(self.status_error(what, resp));
        }
        check_digest_header(what, digest, resp.headers())
    }

    /// `PUT /v2/<repo>/manifests/<tag>` with the exact bytes; the registry's digest must match ours.
    pub fn put_manifest(
        &self,
        repo: &str,
        tag: &str,
        media_type: &str,
        bytes: &[u8],
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let url = self.url(&format!("v2/{repo}/manifests/{tag}"));
        let what = format!("PUT manifest {}/{repo}:{tag}", self.registry);
        let resp = self.send(&what, &[push_scope(repo)], true, &|| {
            Ok(self
                .http
                .put(url.clone())
                .header(header::CONTENT_TYPE, media_type)
                .body(bytes.to_vec())
                .timeout(SMALL_REQUEST_TIMEOUT))
        })?;
        if resp.status() != StatusCode::CREATED && resp.status() != StatusCode::OK {
            return Err(self.status_error(&what, resp));
        }
        check_digest_header(&what, digest, resp.headers())
    }

    fn location(&self, what: &str, resp: &Response) -> Result<Url, RegistryError> {
        let loc = header_str(resp.headers(), header::LOCATION.as_str()).ok_or_else(|| RegistryError::Protocol {
            what: what.to_string(),
            reason: format!("answer {} has no Location header", resp.status()),
        })?;
        // Relative locations resolve against the registry; absolute ones keep their own host and query.
        self.base.join(loc).map_err(|e| RegistryError::Protocol {
            what: what.to_string(),
            reason: format!("bad Location {loc:?}: {e}"),
        })
    }

    /// Turn an unexpected answer into an error carrying the registry's `{"errors":[…]}` envelope.
    pub fn status_error(&self, what: &str, resp: Response) -> RegistryError {
        let status = resp.status();
        let retry_after = retry_after(resp.headers());
        let body = read_limited(resp, 64 << 10).unwrap_or_default();
        let detail = error_detail(&body);
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let hint = if self.credential.is_none() {
                " (no credentials found: docker config.json, containers auth.json or --username)"
            } else {
                " (check the user name and password)"
            };
            RegistryError::Unauthorized {
                what: what.to_string(),
                status: status.as_u16(),
                detail: format!("{detail}{hint}"),
            }
        } else {
            RegistryError::Status { what: what.to_string(), status: status.as_u16(), detail, retry_after }
        }
    }

    /// Send a request built by `build` (called again for every attempt, so streamed bodies are reopened).
    ///
    /// Adds authorization for `scopes`, re-authenticates once on 401, and (when `retry`) retries
    /// connection errors, 5xx and 429 with exponential backoff, honouring `Retry-After`.
    pub(crate) fn send(
        &self,
        what: &str,
        scopes: &[String],
        retry: bool,
        build: &dyn Fn() -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let mut reauthed = false;
        loop {
            let auth = self.authorization(scopes)?;
            let resp = self.execute(what, retry, &|| {
                let req = build()?;
                Ok(match &auth {
                    Some(a) => req.header(header::AUTHORIZATION, a.clone()),
                    None => req,
                })
            })?;
            if resp.status() == StatusCode::UNAUTHORIZED && !reauthed {
                debug!(what, "401: authenticating again");
                self.reset_auth(scopes, resp.headers());
                reauthed = true;
                continue;
            }
            return Ok(resp);
        }
    }

    /// The retry loop, without authentication.
    fn execute(
        &self,
        what: &str,
        retry: bool,
        build: &dyn Fn() -> Result<RequestBuilder, RegistryError>,
    ) -> Result<Response, RegistryError> {
        let retries = if retry { self.retries } else { 0 };
        let mut attempt = 0;
        loop {
            let req = build()?;
            let wait = match req.send() {
                Ok(resp) => {
                    let s = resp.status();
                    trace!(what, status = s.as_u16(), "answer");
                    if attempt >= retries || !(s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS) {
                        return Ok(resp);
                    }
                    let wait = retry_after(resp.headers()).unwrap_or_else(|| backoff(attempt));
                    warn!(what, status = s.as_u16(), attempt = attempt + 1, of = retries, ?wait, "retrying");
                    wait
                }
                Err(e) if attempt < retries && transient(&e) => {
                    let wait = backoff(attempt);
                    warn!(what, error = %e, attempt = attempt + 1, of = retries, ?wait, "retrying");
                    wait
                }
                Err(e) => return Err(RegistryError::Http { what: what.to_string(), source: e }),
            };
            std::thread::sleep(wait);
            attempt += 1;
        }
    }

    /// The `Authorization` value for a request needing `scopes` (probing the registry on first use).
    fn authorization(&self, scopes: &[String]) -> Result<Option<HeaderValue>, RegistryError> {
        let mut state = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        if state.challenge.is_none() {
            state.challenge = Some(self.probe()?);
        }
        let secret = match state.challenge.clone().flatten() {
            None => return Ok(None),
            Some(Challenge::Basic) => match self.credential.as_ref().and_then(Credential::basic_header) {
                Some(h) => h,
                None => return Ok(None),
            },
            Some(Challenge::Bearer { realm, service, .. }) => {
                let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
                sorted.sort_unstable();
                sorted.dedup();
                let key = sorted.join(" ");
                match state.tokens.get(&key) {
                    Some((t, exp)) if Instant::now() + TOKEN_MARGIN < *exp => t.clone(),
                    _ => {
                        let (token, exp) = self.fetch_token(&realm, service.as_deref(), &sorted)?;
                        let value = Secret::new(format!("Bearer {}", token.expose()));
                        state.tokens.insert(key, (value.clone(), exp));
                        value
                    }
                }
            }
        };
        let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| RegistryError::Credentials {
            registry: self.registry.clone(),
            detail: "credential contains characters not allowed in an HTTP header".into(),
        })?;
        value.set_sensitive(true);
        Ok(Some(value))
    }

    /// Forget cached tokens for `scopes` and take a new challenge from a 401 answer.
    fn reset_auth(&self, scopes: &[String], headers: &HeaderMap) {
        let mut state = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = header_str(headers, header::WWW_AUTHENTICATE.as_str()).and_then(parse_challenge) {
            state.challenge = Some(Some(c));
        }
        let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
        sorted.sort_unstable();
        sorted.dedup();
        state.tokens.remove(&sorted.join(" "));
    }

    /// `GET /v2/`: 200 → anonymous; 401 → the challenge to answer.
    fn probe(&self) -> Result<Option<Challenge>, RegistryError> {
        let url = self.url("v2/");
        let what = format!("probe {}", self.registry);
        let resp = self.execute(&what, true, &|| Ok(self.http.get(url.clone()).timeout(SMALL_REQUEST_TIMEOUT)))?;
        match resp.status() {
            s if s.is_success() => Ok(None),
            StatusCode::UNAUTHORIZED => {
                let c = header_str(resp.headers(), header::WWW_AUTHENTICATE.as_str()).and_then(parse_challenge);
                debug!(registry = %self.registry, challenge = ?c, "auth challenge");
                match c {
                    Some(c) => Ok(Some(c)),
                    None => Err(RegistryError::Protocol {
                        what,
                        reason: "401 without a Basic or Bearer WWW-Authenticate challenge".into(),
                    }),
                }
            }
            _ => Err(self.status_error(&what, resp)),
        }
    }

    /// Get a Bearer token for `scopes` from the token service (Basic credentials, an identity token, or
    /// anonymously). Returns the token and when it expires.
    fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[&str],
    ) -> Result<(Secret, Instant), RegistryError> {
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let what = format!("token for {} ({})", self.registry, scopes.join(" "));
        let mut url = Url::parse(realm).map_err(|e| RegistryError::Protocol {
            what: what.clone(),
            reason: format!("bad token realm {realm:?}: {e}"),
        })?;
        debug!(realm, scopes = %scopes.join(" "), "fetching token");
        let resp = match &self.credential {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = Url::parse("x:/").expect("static URL");
                {
                    let mut q = form.query_pairs_mut();
                    q.append_pair("grant_type", "refresh_token")
                        .append_pair("client_id", "kolla-oci")
                        .append_pair("refresh_token", refresh.expose())
                        .append_pair("scope", &scopes.join(" "));
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                }
                let body = Secret::new(form.query().unwrap_or("").to_string());
                self.execute(&what, true, &|| {
                    Ok(self
                        .http
                        .request(Method::POST, url.clone())
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body.expose().to_string())
                        .timeout(SMALL_REQUEST_TIMEOUT))
                })?
            }
            cred => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    for s in scopes {
                        q.append_pair("scope", s);
                    }
                    if let Some(Credential::Basic { username, .. }) = cred {
                        q.append_pair("account", username);
                    }
                }
                let basic = cred.as_ref().and_then(Credential::basic_header);
                self.execute(&what, true, &|| {
                    let req = self.http.get(url.clone()).timeout(SMALL_REQUEST_TIMEOUT);
                    Ok(match &basic {
                        Some(b) => {
                            let mut v = HeaderValue::from_str(b.expose()).map_err(|_| RegistryError::Credentials {
                                registry: self.registry.clone(),
                                detail: "credential contains characters not allowed in an HTTP header".into(),
                            })?;
                            v.set_sensitive(true);
                            req.header(header::AUTHORIZATION, v)
                        }
                        None => req,
                    })
                })?
            }
        };
        if !resp.status().is_success() {
            return Err(self.status_error(&what, resp));
        }
        let body =
            read_limited(resp, MAX_SMALL_BODY).map_err(|e| RegistryError::Io { what: what.clone(), source: e })?;
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
            what: what.clone(),
            reason: format!("token answer is not JSON: {e}"),
        })?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RegistryError::Protocol { what, reason: "token answer has no token".into() })?;
        // The spec's default lifetime is 60 s.
        let expires = Instant::now() + Duration::from_secs(answer.expires_in.unwrap_or(60).max(60));
        Ok((Secret::new(token), expires))
    }
}

fn open(path: &Path) -> Result<File, RegistryError> {
    File::open(path).map_err(|e| RegistryError::Io { what: format!("opening {}", path.display()), source: e })
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
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

/// Read at most `max` bytes of a body; more is an error (a registry must not make us buffer a blob).
fn read_limited(resp: Response, max: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    resp.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!("answer larger than {max} bytes")));
    }
    Ok(out)
}

/// `CODE: message; CODE: message` from the OCI error envelope, else the start of the body.
pub(crate) fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: Option<String>,
        message: Option<String>,
    }
    if let Ok(env) = serde_json::from_slice::<Envelope>(body)
        && !env.errors.is_empty()
    {
        return env
            .errors
            .iter()
            .map(|e| match (&e.code, &e.message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.clone(),
                (None, Some(m)) => m.clone(),
                (None, None) => "unknown error".into(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None if text.is_empty() => "(empty body)".into(),
        None => text.to_string(),
    }
}

/// Connection-level failures worth another attempt.
fn transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

/// Exponential backoff (250 ms doubling, at most 8 s) with up to 50 % random jitter.
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(250).saturating_mul(1 << attempt.min(5)).min(Duration::from_secs(8));
    // RandomState is freshly keyed per call: a cheap source of jitter without a rand dependency.
    let r = std::collections::hash_map::RandomState::new().hash_one(attempt) % 1000;
    base + base.mul_f64(r as f64 / 2000.0)
}

/// `Retry-After: <seconds>` (HTTP-date forms fall back to our own backoff), capped.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = header_str(headers, header::RETRY_AFTER.as_str())?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope() {
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"x"},{"code":"DENIED"}]}"#;
        assert_eq!(error_detail(body), "BLOB_UNKNOWN: blob unknown to registry; DENIED");
        assert_eq!(error_detail(b"  oops \n"), "oops");
        assert_eq!(error_detail(b""), "(empty body)");
        assert_eq!(error_detail(&[b'x'; 300]).chars().count(), 201);
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        for a in 0..10 {
            let b = backoff(a);
            let base = Duration::from_millis(250) * (1 << a.min(5));
            let base = base.min(Duration::from_secs(8));
            assert!(b >= base && b <= base + base / 2, "{a}: {b:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("99999"));
        assert_eq!(retry_after(&h), Some(MAX_RETRY_AFTER));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), None);
    }
}
