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

/// Look up stored credentials for a registry (as written in references, e.g. `docker.io`, `host:5000`).
///
/// Order: docker's `config.json` (`$DOCKER_CONFIG` or `~/.docker`; `auths`, `credHelpers`, `credsStore`),
/// then podman's `auth.json` (`$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`). A missing
/// file or entry gives `Ok(None)`; a broken one is an error (silently going anonymous would hide it).
pub fn lookup_credential(registry: &str) -> Result<Option<Credential>, RegistryError> {
    use docker_credential::CredentialRetrievalError as E;
    // Docker keys Docker Hub as the legacy index URL; try the plain name first, then that one.
    let mut keys = vec![registry.to_string()];
    if registry == super::reference::DOCKER_HUB {
        keys.push("https://index.docker.io/v1/".to_string());
        keys.push("index.docker.io".to_string());
    }
    type Lookup = fn(&str) -> Result<docker_credential::DockerCredential, E>;
    let sources: [(&str, Lookup); 2] = [
        ("docker config.json", docker_credential::get_credential),
        ("containers auth.json", docker_credential::get_podman_credential),
    ];
    for (source, get) in sources {
        for key in &keys {
            match get(key) {
                Ok(c) => {
                    tracing::debug!(registry, source, "using stored credentials");
                    return Ok(Some(match c {
                        docker_credential::DockerCredential::UsernamePassword(u, p) => {
                            Credential::Basic { username: u, password: Secret(p) }
                        }
                        docker_credential::DockerCredential::IdentityToken(t) => Credential::IdentityToken(Secret(t)),
                    }));
                }
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
                        detail: format!("{source}: {detail}"),
                    });
                }
            }
        }
    }
    Ok(None)
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
