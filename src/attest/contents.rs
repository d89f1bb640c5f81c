//! What an image holds, read from its extracted layer dirs (overlayfs lowerdir form, top layer first)
//! through [`RootView`]: whiteouts, opaque directories and the image's own symlinks are honoured, and
//! nothing is mounted or run.

use std::io::Read as _;
use std::path::PathBuf;

use super::AttestError;
use super::dpkg::{self, DebPackage, OsRelease};
use super::license::{self, License};
use super::python::{self, PythonDist};
use crate::builder::view::RootView;

/// Largest dpkg status file read (a full desktop system's is under 10 MiB).
const MAX_STATUS: u64 = 256 << 20;
/// Largest core-metadata file read (the long description after the headers is not parsed).
const MAX_METADATA: u64 = 16 << 20;

/// The packages found in an image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageContents {
    /// `/etc/os-release` (empty when absent).
    pub os: OsRelease,
    /// Installed Debian packages with their licenses, sorted by name and architecture.
    pub debs: Vec<(DebPackage, License)>,
    /// Python distributions, sorted by normalized name and version; one per purl.
    pub python: Vec<PythonDist>,
}

impl ImageContents {
    /// Read the packages of the image whose extracted layer dirs are `layers` (top layer first).
    pub fn read(layers: &[PathBuf]) -> Result<ImageContents, AttestError> {
        let view = RootView::new(layers);
        let os = view.read_small_file("/etc/os-release").map(|t| OsRelease::parse(&t)).unwrap_or_default();
        let debs = match read_file(&view, "/var/lib/dpkg/status", MAX_STATUS)? {
            Some(text) => dpkg::parse_status(&text)
                .into_iter()
                .map(|p| {
                    let copyright = view.read_small_file(&format!("/usr/share/doc/{}/copyright", p.name));
                    let lic = copyright.map(|t| license::debian_copyright(&t)).unwrap_or_default();
                    (p, lic)
                })
                .collect(),
            None => Vec::new(),
        };
        let mut python = Vec::new();
        let list = |dir: &str| list_dir(&view, dir);
        for site in python::site_dirs(list, |dir| is_dir(&view, dir)) {
            for name in list_dir(&view, &site) {
                let Some(file) = python::metadata_file(&site, &name, is_dir(&view, &format!("{site}/{name}"))) else {
                    continue;
                };
                let file = file.to_string_lossy().into_owned();
                if let Some(text) = read_file(&view, &file, MAX_METADATA)?
                    && let Some(dist) = python::parse_metadata(&text, &format!("{site}/{name}"))
                {
                    python.push(dist);
                }
            }
        }
        let key = |d: &PythonDist| (super::purl::pypi_name(&d.name), d.version.clone());
        python.sort_by_key(key);
        python.dedup_by(|a, b| key(a) == key(b));
        Ok(ImageContents { os, debs, python })
    }
}

/// The names in image directory `dir` (following the image's symlinks), as strings.
fn list_dir(view: &RootView, dir: &str) -> Vec<String> {
    let Ok(rel) = view.resolve(dir, true) else { return Vec::new() };
    view.list_dir(&rel).into_iter().map(|n| n.to_string_lossy().into_owned()).collect()
}

/// Whether image path `path` is a directory (following the image's symlinks).
fn is_dir(view: &RootView, path: &str) -> bool {
    view.resolve(path, true).ok().and_then(|rel| view.lookup(&rel)).is_some_and(|f| f.meta.is_dir())
}

/// A regular file of the image as text (invalid UTF-8 replaced); `None` when absent or not a file.
fn read_file(view: &RootView, path: &str, max: u64) -> Result<Option<String>, AttestError> {
    let Some(found) = view.resolve(path, true).ok().and_then(|rel| view.lookup(&rel)) else { return Ok(None) };
    if !found.meta.is_file() {
        return Ok(None);
    }
    let err = |reason: String| AttestError::Image { path: path.to_owned(), host: found.host.clone(), reason };
    if found.meta.len() > max {
        return Err(err(format!("{} bytes is over the {max}-byte limit", found.meta.len())));
    }
    let mut bytes = Vec::with_capacity(found.meta.len() as usize);
    std::fs::File::open(&found.host)
        .and_then(|f| f.take(max).read_to_end(&mut bytes))
        .map_err(|e| err(e.to_string()))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}
