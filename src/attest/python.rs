//! Python distributions of an image: where Python (Debian's, `/usr/local`'s, Kolla's venv) installs
//! them, and their core metadata (`*.dist-info/METADATA`, or `PKG-INFO` of the `*.egg-info` form that
//! Debian's own python3-* packages still ship).

use std::path::{Path, PathBuf};

use super::license::{self, License};

/// One installed Python distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonDist {
    /// `Name` as the distribution spells it.
    pub name: String,
    /// `Version`.
    pub version: String,
    /// Its license.
    pub license: License,
    /// The metadata directory in the image (`/usr/lib/python3/dist-packages/six-1.16.0.dist-info`).
    pub path: String,
}

/// The parent directories of Python's package directories, and which `python3*` children hold them:
/// `(parent, [subdirectory under lib/python3.X])`.
const SITE_ROOTS: &[(&str, &[&str])] = &[
    ("/usr/lib", &["dist-packages", "site-packages"]),
    ("/usr/local/lib", &["dist-packages", "site-packages"]),
    ("/var/lib/kolla/venv/lib", &["site-packages"]),
];

/// Where the image's distributions live: `<root>/python3*/<sub>` for each of [`SITE_ROOTS`] that exists,
/// as absolute paths in the image. `list_dir` lists a directory of the image, `is_dir` tells whether an
/// image path is a directory (both follow the image's own symlinks).
pub fn site_dirs(list_dir: impl Fn(&str) -> Vec<String>, is_dir: impl Fn(&str) -> bool) -> Vec<String> {
    let mut dirs = Vec::new();
    for (root, subs) in SITE_ROOTS {
        for child in list_dir(root).into_iter().filter(|c| c.starts_with("python3")) {
            for sub in *subs {
                let dir = format!("{root}/{child}/{sub}");
                if is_dir(&dir) {
                    dirs.push(dir);
                }
            }
        }
    }
    dirs
}

/// Where the core metadata of entry `name` of a site directory is, if it is a distribution's metadata:
/// `X.dist-info/METADATA`, `X.egg-info/PKG-INFO`, or an `X.egg-info` file.
pub fn metadata_file(site_dir: &str, name: &str, entry_is_dir: bool) -> Option<PathBuf> {
    let dir = Path::new(site_dir).join(name);
    if name.ends_with(".dist-info") && entry_is_dir {
        Some(dir.join("METADATA"))
    } else if name.ends_with(".egg-info") {
        Some(if entry_is_dir { dir.join("PKG-INFO") } else { dir })
    } else {
        None
    }
}

/// Parse the header part of core metadata (RFC 822 style, folded lines allowed; the body after the
/// first blank line is the long description and is not read). `None` without `Name` and `Version`.
pub fn parse_metadata(text: &str, path: &str) -> Option<PythonDist> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    let name = get("name").filter(|n| !n.is_empty())?.to_owned();
    let version = get("version").filter(|v| !v.is_empty())?.to_owned();
    let classifiers: Vec<String> = fields
        .iter()
        .filter(|(k, v)| k == "classifier" && v.starts_with("License ::"))
        .map(|(_, v)| v.clone())
        .collect();
    let license = license::python(get("license-expression"), get("license"), &classifiers);
    Some(PythonDist { name, version, license, path: path.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_headers_are_read_until_the_body() {
        let text = "Metadata-Version: 2.1\nName: typing_extensions\nVersion: 4.12.2\n\
                    License: PSF\n        continued\nClassifier: License :: OSI Approved :: \
                    Python Software Foundation License\nClassifier: Programming Language :: Python\n\n\
                    Name: not-this\n";
        let d = parse_metadata(text, "/x/typing_extensions-4.12.2.dist-info").unwrap();
        assert_eq!((d.name.as_str(), d.version.as_str()), ("typing_extensions", "4.12.2"));
        assert_eq!(d.license.expression.as_deref(), Some("PSF-2.0"));
        assert_eq!(d.license.text.as_deref(), Some("PSF"));
        assert!(parse_metadata("Name: x\n", "p").is_none());
    }

    #[test]
    fn site_dirs_follow_python_versions() {
        let list = |d: &str| match d {
            "/usr/lib" => vec!["python3".into(), "python3.11".into(), "x86_64-linux-gnu".into()],
            "/var/lib/kolla/venv/lib" => vec!["python3.11".into()],
            _ => vec![],
        };
        let is_dir =
            |d: &str| d != "/usr/lib/python3.11/dist-packages" && !d.ends_with("/usr/lib/python3/site-packages");
        assert_eq!(
            site_dirs(list, is_dir),
            [
                "/usr/lib/python3/dist-packages",
                "/usr/lib/python3.11/site-packages",
                "/var/lib/kolla/venv/lib/python3.11/site-packages"
            ]
        );
        assert_eq!(metadata_file("/s", "a-1.dist-info", true), Some(PathBuf::from("/s/a-1.dist-info/METADATA")));
        assert_eq!(metadata_file("/s", "a-1.egg-info", false), Some(PathBuf::from("/s/a-1.egg-info")));
        assert_eq!(metadata_file("/s", "a", true), None);
    }
}
