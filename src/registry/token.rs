//! Authenticating to a registry: the `GET /v2/` probe that learns the challenge, then HTTP Basic, or
//! Bearer tokens from the token service, one per scope set, cached until shortly before they expire and
//! forgotten on a 401.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use tracing::debug;

use super::RegistryError;
use super::auth::{Challenge, Credential, Secret, parse_challenge};
use super::client::Client;
use super::transport::{Retry, header_str, read_limited};

/// Largest token answer we read into memory.
const MAX_TOKEN_ANSWER: u64 = 1 << 20;
/// Tokens are refreshed this long before they expire.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// How the registry wants us to authenticate, learned from `GET /v2/`.
#[derive(Default)]
pub(crate) struct AuthState {
    /// `None` until probed; `Some(None)` for an anonymous registry.
    challenge: Option<Option<Challenge>>,
    /// `Bearer <token>` header values by space-joined sorted scope set, with their expiry.
    tokens: HashMap<String, (Secret, Instant)>,
}

/// The cache key of a scope set: sorted, without repeats, space-joined.
fn scope_key(scopes: &[String]) -> (String, Vec<&str>) {
    let mut sorted: Vec<&str> = scopes.iter().map(String::as_str).collect();
    sorted.sort_unstable();
    sorted.dedup();
    (sorted.join(" "), sorted)
}

/// A credential as an `Authorization` header value that is never logged.
fn sensitive_header(registry: &str, secret: &Secret) -> Result<HeaderValue, RegistryError> {
    let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| RegistryError::Credentials {
        registry: registry.to_string(),
        detail: "credential contains characters not allowed in an HTTP header".into(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

impl Client {
    /// The `Authorization` value for a request needing `scopes` (probing the registry on first use).
    pub(crate) fn authorization(&self, scopes: &[String]) -> Result<Option<HeaderValue>, RegistryError> {
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
                let (key, sorted) = scope_key(scopes);
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
        Ok(Some(sensitive_header(self.registry(), &secret)?))
    }

    /// Forget cached tokens for `scopes` and take a new challenge from a 401 answer.
    pub(crate) fn reset_auth(&self, scopes: &[String], headers: &HeaderMap) {
        let mut state = self.auth.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = header_str(headers, header::WWW_AUTHENTICATE.as_str()).and_then(parse_challenge) {
            state.challenge = Some(Some(c));
        }
        state.tokens.remove(&scope_key(scopes).0);
    }

    /// `GET /v2/`: 200 → anonymous; 401 → the challenge to answer.
    fn probe(&self) -> Result<Option<Challenge>, RegistryError> {
        let url = self.url("v2/");
        let what = format!("reaching registry {}", self.registry());
        let resp = self.execute(&what, Retry::Transient, None, &|| Ok(self.http.get(url.clone())))?;
        match resp.status() {
            s if s.is_success() => Ok(None),
            StatusCode::UNAUTHORIZED => {
                let c = header_str(resp.headers(), header::WWW_AUTHENTICATE.as_str()).and_then(parse_challenge);
                debug!(registry = %self.registry(), challenge = ?c, "auth challenge");
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
        let what = format!("token for {} ({})", self.registry(), scopes.join(" "));
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
                self.execute(&what, Retry::Transient, None, &|| {
                    Ok(self
                        .http
                        .request(Method::POST, url.clone())
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body.expose().to_string()))
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
                self.execute(&what, Retry::Transient, None, &|| {
                    let req = self.http.get(url.clone());
                    Ok(match &basic {
                        Some(b) => req.header(header::AUTHORIZATION, sensitive_header(self.registry(), b)?),
                        None => req,
                    })
                })?
            }
        };
        if !resp.status().is_success() {
            return Err(self.status_error(&what, resp));
        }
        let body =
            read_limited(resp, MAX_TOKEN_ANSWER).map_err(|e| RegistryError::Io { what: what.clone(), source: e })?;
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
