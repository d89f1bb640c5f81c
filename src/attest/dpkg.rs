//! Debian packages of an image, from dpkg's own database (`/var/lib/dpkg/status`), and the release the
//! image says it is (`/etc/os-release`).

/// One installed Debian binary package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebPackage {
    /// Binary package name.
    pub name: String,
    /// Full version (`[epoch:]upstream[-revision]`).
    pub version: String,
    /// `amd64`, `all`, ...
    pub architecture: String,
    /// Source package it was built from (the binary name when the status file names none).
    pub source: String,
    /// Version of that source package (the binary version when not given).
    pub source_version: String,
}

/// What `/etc/os-release` says (`ID`, `VERSION_ID`, `VERSION_CODENAME`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    /// `debian`, `ubuntu`, ...
    pub id: Option<String>,
    /// `12`
    pub version_id: Option<String>,
    /// `bookworm`
    pub codename: Option<String>,
}

impl OsRelease {
    /// Parse `os-release` text (shell-style `KEY=value`, optionally quoted).
    pub fn parse(text: &str) -> OsRelease {
        let mut r = OsRelease::default();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else { continue };
            let v = v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned();
            match k.trim() {
                "ID" => r.id = Some(v),
                "VERSION_ID" => r.version_id = Some(v),
                "VERSION_CODENAME" => r.codename = Some(v),
                _ => {}
            }
        }
        r
    }

    /// The purl namespace (vendor): the `ID`, `debian` when unknown.
    pub fn vendor(&self) -> &str {
        self.id.as_deref().filter(|s| !s.is_empty()).unwrap_or("debian")
    }

    /// The purl `distro` qualifier: `<vendor>-<VERSION_ID>` (`debian-12`), else `<vendor>-<codename>`
    /// (testing and unstable have no version number).
    pub fn distro(&self) -> Option<String> {
        let v = self.version_id.as_deref().or(self.codename.as_deref()).filter(|s| !s.is_empty())?;
        Some(format!("{}-{v}", self.vendor()))
    }
}

/// The states whose package files are on disk (`dpkg-query -W` also lists `config-files` and
/// `half-installed` packages, whose programs are gone or incomplete).
const PRESENT: &[&str] = &["installed", "half-configured", "unpacked", "triggers-awaited", "triggers-pending"];

/// The packages of a dpkg `status` file whose files are installed, sorted by name and architecture.
/// Paragraphs without a `Package`, `Version` or `Status` field are skipped.
pub fn parse_status(text: &str) -> Vec<DebPackage> {
    let mut out: Vec<DebPackage> = text.split("\n\n").filter_map(parse_paragraph).collect();
    out.sort();
    out.dedup();
    out
}

fn parse_paragraph(par: &str) -> Option<DebPackage> {
    let field = |name: &str| {
        par.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (!l.starts_with([' ', '\t']) && k.eq_ignore_ascii_case(name)).then(|| v.trim().to_owned())
        })
    };
    let status = field("Status")?;
    if !PRESENT.contains(&status.split_whitespace().nth(2)?) {
        return None;
    }
    let name = field("Package")?;
    let version = field("Version")?;
    let architecture = field("Architecture").unwrap_or_default();
    // `Source: name` or `Source: name (version)`.
    let (source, source_version) = match field("Source") {
        Some(s) => match s.split_once('(') {
            Some((n, v)) => (n.trim().to_owned(), v.trim_end_matches(')').trim().to_owned()),
            None => (s, version.clone()),
        },
        None => (name.clone(), version.clone()),
    };
    Some(DebPackage { name, version, architecture, source, source_version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_paragraphs_become_packages() {
        let text = "Package: zlib1g\nStatus: install ok installed\nPriority: optional\nArchitecture: amd64\n\
                    Multi-Arch: same\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\nDescription: compression\n \
                    Version: not a field\n\n\
                    Package: libgcc-s1\nStatus: install ok installed\nArchitecture: amd64\n\
                    Source: gcc-12 (12.2.0-14)\nVersion: 12.2.0-14\n\n\
                    Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\n\
                    Package: hello\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.10-3\n";
        let p = parse_status(text);
        let names: Vec<&str> = p.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["hello", "libgcc-s1", "zlib1g"]);
        assert_eq!((p[0].source.as_str(), p[0].source_version.as_str()), ("hello", "2.10-3"));
        assert_eq!((p[1].source.as_str(), p[1].source_version.as_str()), ("gcc-12", "12.2.0-14"));
        assert_eq!((p[2].version.as_str(), p[2].source.as_str()), ("1:1.2.13.dfsg-1", "zlib"));
    }

    #[test]
    fn os_release_gives_the_distro_qualifier() {
        let r = OsRelease::parse("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!(r.distro().as_deref(), Some("debian-12"));
        let r = OsRelease::parse("ID=debian\nVERSION_CODENAME=trixie\n");
        assert_eq!(r.distro().as_deref(), Some("debian-trixie"));
        assert_eq!(OsRelease::default().distro(), None);
    }
}
