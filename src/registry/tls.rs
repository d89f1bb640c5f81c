//! TLS towards registries, configured as podman, buildah and skopeo configure it (containers/image):
//! `--tls-verify=false` skips certificate checks (and allows plain HTTP), `--cert-dir DIR` names a
//! directory of certificates for every registry, and otherwise the first of
//! `$HOME/.config/containers/certs.d/<host:port>/`, `/etc/containers/certs.d/<host:port>/` and
//! `/etc/docker/certs.d/<host:port>/` that exists is the registry's own. In such a directory, `*.crt`
//! files are CA certificates trusted besides the system's, and each `<name>.cert` with its `<name>.key`
//! is a client certificate.

use std::path::{Path, PathBuf};

use super::RegistryError;

/// How TLS connections to registries are set up (see the module docs).
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// `--tls-verify`. `None` (default): certificates are checked, but loopback registries without
    /// certificates of their own (see [`TlsOptions::for_host`]) speak plain HTTP, as Docker allows.
    /// `Some(true)`: HTTPS with checked certificates for every registry. `Some(false)`: any certificate is
    /// accepted, and a registry that does not speak TLS is spoken to over plain HTTP.
    pub verify: Option<bool>,
    /// `--cert-dir`: the certificates for every registry, instead of the per-host directories.
    pub cert_dir: Option<PathBuf>,
    /// Where per-host directories are looked for, in order (see [`default_certs_dirs`]).
    pub certs_dirs: Vec<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> TlsOptions {
        TlsOptions { verify: None, cert_dir: None, certs_dirs: default_certs_dirs() }
    }
}

/// containers/image's per-host certificate directories: the user's, then the system's (podman's, Docker's).
pub fn default_certs_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        dirs.push(Path::new(&home).join(".config/containers/certs.d"));
    }
    dirs.push(PathBuf::from("/etc/containers/certs.d"));
    dirs.push(PathBuf::from("/etc/docker/certs.d"));
    dirs
}

/// The TLS material for one registry.
#[derive(Default)]
pub(crate) struct HostTls {
    /// The directory it came from, if any.
    pub dir: Option<PathBuf>,
    /// CA certificates to trust besides the system's.
    pub roots: Vec<reqwest::Certificate>,
    /// The client certificate and key.
    pub identity: Option<reqwest::Identity>,
}

impl TlsOptions {
    /// The directory of `registry` (`host[:port]` as written in references) and what it holds. A file
    /// that cannot be read or parsed, or a key without its certificate, is an error naming it.
    pub(crate) fn for_host(&self, registry: &str) -> Result<HostTls, RegistryError> {
        let dir = match &self.cert_dir {
            Some(d) => Some(d.clone()),
            None => self.certs_dirs.iter().map(|d| d.join(registry)).find(|d| d.is_dir()),
        };
        let Some(dir) = dir else { return Ok(HostTls::default()) };
        let bad = |path: &Path, reason: String| RegistryError::Tls { path: path.to_path_buf(), reason };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| bad(&dir, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        let read = |p: &Path| std::fs::read(p).map_err(|e| bad(p, e.to_string()));
        let mut host = HostTls { dir: Some(dir.clone()), ..HostTls::default() };
        for file in &files {
            match file.extension().and_then(|e| e.to_str()) {
                Some("crt") => {
                    let certs = reqwest::Certificate::from_pem_bundle(&read(file)?)
                        .map_err(|e| bad(file, format!("not a PEM certificate bundle: {e}")))?;
                    host.roots.extend(certs);
                }
                Some("cert") => {
                    let key = file.with_extension("key");
                    if !key.exists() {
                        return Err(bad(file, format!("client certificate without its key {}", key.display())));
                    }
                    let mut pem = read(file)?;
                    pem.push(b'\n');
                    pem.extend(read(&key)?);
                    let id = reqwest::Identity::from_pem(&pem)
                        .map_err(|e| bad(file, format!("not a PEM client certificate and key: {e}")))?;
                    host.identity = Some(id);
                }
                Some("key") if !file.with_extension("cert").exists() => {
                    return Err(bad(
                        file,
                        format!("key without its client certificate {}", file.with_extension("cert").display()),
                    ));
                }
                _ => {}
            }
        }
        tracing::debug!(registry, dir = %dir.display(), roots = host.roots.len(), client_cert = host.identity.is_some(), "registry TLS material");
        Ok(host)
    }
}

impl HostTls {
    /// `builder` trusting these roots (besides the system's) and presenting this identity; checking
    /// nothing when `verify` is off.
    pub(crate) fn apply(
        self,
        builder: reqwest::blocking::ClientBuilder,
        verify: bool,
    ) -> reqwest::blocking::ClientBuilder {
        let mut b = builder.tls_certs_merge(self.roots).tls_danger_accept_invalid_certs(!verify);
        if let Some(id) = self.identity {
            b = b.identity(id);
        }
        b
    }
}
