//! Registry credentials and authentication challenges.
//!
//! Secrets live only inside [`Secret`], whose `Debug`/`Display` print `***`, so no log line, error or
//! panic message can carry a password or token by accident.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::RegistryError;

/// A password or token. Printing it (Debug or Display) gives `***`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret string.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for putting into a request header or form. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What we can present to a registry or its token service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (HTTP Basic, or Basic towards the token service).
    Basic {
        /// The user name (not secret).
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 refresh ("identity") token, exchanged at the token service with `grant_type=refresh_token`.
    IdentityToken(Secret),
}

impl Credential {
    /// The `Authorization: Basic …` value for this credential, if it is a user/password pair.
    pub(crate) fn basic_header(&self) -> Option<Secret> {
        match self {
            Credential::Basic { username, password } => {
                Some(Secret(format!("Basic {}", B64.encode(format!("{username}:{}", password.expose())))))
            }
            Credential::IdentityToken(_) => None,
        }
    }
}

/// Look up stored credentials for a registry (as written in references, e.g. `docker.io`, `host:5000`),
/// in podman's order: its auth file ([`auth_file`], which `kolla-oci login` writes), then
/// `$HOME/.config/containers/auth.json`, then docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker`;
/// `auths`, `credHelpers`, `credsStore`). A missing file or entry gives `Ok(None)`; a broken one is an
/// error (silently going anonymous would hide it).
pub fn lookup_credential(registry: &str) -> Result<Option<Credential>, RegistryError> {
    use docker_credential::CredentialRetrievalError as E;
    // Docker keys Docker Hub as the legacy index URL; try the plain name first, then that one.
    let mut keys = vec![registry.to_string()];
    if registry == super::reference::DOCKER_HUB {
        keys.push("https://index.docker.io/v1/".to_string());
        keys.push("index.docker.io".to_string());
    }
    let mut auth_files = vec![auth_file()];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        auth_files.push(std::path::Path::new(&home).join(".config/containers/auth.json"));
    }
    for file in &auth_files {
        let Ok(bytes) = std::fs::read(file) else { continue };
        for key in &keys {
            match docker_credential::get_credential_from_reader(&bytes[..], key) {
                Ok(c) => return Ok(Some(credential("containers auth.json", registry, c))),
                Err(E::NoCredentialConfigured) => {}
                Err(e) => {
                    return Err(RegistryError::Credentials {
                        registry: registry.to_string(),
                        detail: format!("{}: {e}", file.display()),
                    });
                }
            }
        }
    }
    for key in &keys {
        match docker_credential::get_credential(key) {
            Ok(c) => return Ok(Some(credential("docker config.json", registry, c))),
            Err(E::NoCredentialConfigured | E::ConfigNotFound) => {}
            // An unreadable/absent file: docker_credential does not tell the two apart.
            Err(E::ConfigReadError) => break,
            Err(e) => {
                // Describe without echoing helper output, which may contain secrets.
                let detail = match e {
                    E::HelperFailure { helper, .. } => format!("credential helper {helper} failed"),
                    other => other.to_string(),
                };
                return Err(RegistryError::Credentials {
                    registry: registry.to_string(),
                    detail: format!("docker config.json: {detail}"),
                });
            }
        }
    }
    Ok(None)
}

/// A stored credential as ours.
fn credential(source: &str, registry: &str, c: docker_credential::DockerCredential) -> Credential {
    tracing::debug!(registry, source, "using stored credentials");
    match c {
        docker_credential::DockerCredential::UsernamePassword(u, p) => {
            Credential::Basic { username: u, password: Secret(p) }
        }
        docker_credential::DockerCredential::IdentityToken(t) => Credential::IdentityToken(Secret(t)),
    }
}

/// The auth file podman reads first and `podman login` writes: `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json`, else `/run/containers/<uid>/auth.json`.
pub fn auth_file() -> std::path::PathBuf {
    use std::path::PathBuf;
    let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(f) = var("REGISTRY_AUTH_FILE") {
        return f;
    }
    match var("XDG_RUNTIME_DIR") {
        Some(dir) => dir.join("containers/auth.json"),
        None => PathBuf::from(format!("/run/containers/{}/auth.json", rustix::process::getuid().as_raw())),
    }
}

/// Record `credential` for `registry` in `file` as `podman login` does (`{"auths": {registry: {"auth":
/// base64(user:password)}}}`, other entries and keys kept), replacing the file atomically with mode 0600.
pub fn save_credential(file: &std::path::Path, registry: &str, credential: &Credential) -> Result<(), RegistryError> {
    let Credential::Basic { username, password } = credential else {
        return Err(RegistryError::Credentials {
            registry: registry.into(),
            detail: "only a user and password can be saved".into(),
        });
    };
    let auth = B64.encode(format!("{username}:{}", password.expose()));
    update_auth_file(file, registry, |auths| {
        auths.insert(registry.to_string(), serde_json::json!({ "auth": auth }));
    })
    .map(drop)
}

/// Remove `registry`'s entry (every entry with `None`) from `file`; whether there was one.
pub fn forget_credential(file: &std::path::Path, registry: Option<&str>) -> Result<bool, RegistryError> {
    if !file.exists() {
        return Ok(false);
    }
    update_auth_file(file, registry.unwrap_or("all registries"), |auths| match registry {
        Some(r) => auths.remove(r).is_some(),
        None => {
            let had = !auths.is_empty();
            auths.clear();
            had
        }
    })
}

/// Read-modify-write of `file`'s `auths` object; the file is replaced by a new one (0600) in one rename.
fn update_auth_file<T>(
    file: &std::path::Path,
    registry: &str,
    change: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>) -> T,
) -> Result<T, RegistryError> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let fail = |detail: String| RegistryError::Credentials { registry: registry.to_string(), detail };
    let mut doc = match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .map_err(|e| fail(format!("{}: not JSON: {e}", file.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(fail(format!("{}: {e}", file.display()))),
    };
    let root = doc.as_object_mut().ok_or_else(|| fail(format!("{}: not a JSON object", file.display())))?;
    let auths = root.entry("auths").or_insert_with(|| serde_json::json!({}));
    let auths = auths.as_object_mut().ok_or_else(|| fail(format!("{}: `auths` is not an object", file.display())))?;
    let result = change(auths);
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    let tmp =
        dir.join(format!(".{}.tmp-{}", file.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(&serde_json::to_vec_pretty(&doc).unwrap_or_default())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(format!("writing {}: {e}", file.display()))
    })?;
    Ok(result)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`: send the user/password with every request.
    Basic,
    /// `Bearer realm=…,service=…[,scope=…]`: get a token from `realm`.
    Bearer {
        /// Token service URL.
        realm: String,
        /// `service` parameter to pass back.
        service: Option<String>,
        /// The scope the registry asked for (added to the scopes we request).
        scope: Option<String>,
    },
}

/// Parse the first Basic or Bearer challenge of a `WWW-Authenticate` header value.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    let get = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
    Some(Challenge::Bearer { realm: get("realm")?, service: get("service"), scope: get("scope") })
}

/// `k="v", k2=v2` auth-params; quoted values may contain commas and `\"`.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let c = Credential::Basic { username: "u".into(), password: s.clone() };
        assert!(!format!("{c:?}").contains("hunter2"));
        let h = c.basic_header().unwrap();
        assert_eq!(h.expose(), format!("Basic {}", B64.encode("u:hunter2")));
        assert_eq!(format!("{h:?}"), "***");
        assert!(Credential::IdentityToken(s).basic_header().is_none());
    }

    #[test]
    fn challenges() {
        assert_eq!(parse_challenge("Basic realm=\"basic-realm\""), Some(Challenge::Basic));
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/debian:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/debian:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge("bearer realm=http://a/t, service=x"),
            Some(Challenge::Bearer { realm: "http://a/t".into(), service: Some("x".into()), scope: None })
        );
        assert_eq!(parse_challenge("Bearer service=x"), None);
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_params(r#"a="x\"y, z",b=2"#), vec![("a".into(), "x\"y, z".into()), ("b".into(), "2".into())]);
    }
}
