//! kolla-build's build summary: which images were built, which failed and how, which were not
//! matched, skipped or unbuildable, each list sorted by name, written the way kolla-build writes
//! it (Python's `json.dump`): one line on stdout, or indented by 4 in `--summary-json-file`.
//! kolla-oci adds two figures after kolla's keys (`layers_built`, `layers_cached`).

use std::io::{self, Write};
use std::path::Path;

use serde::Serialize;
use serde_json::ser::{Formatter, PrettyFormatter, Serializer};

/// kolla-build's summary JSON shape, plus our layer counts.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// `[{"name": …}]`
    pub built: Vec<NameEntry>,
    /// `[{"name": …, "status": …}]`: `error` (its build failed), `push_error` (built, not pushed),
    /// `matched` (not attempted because an ancestor's build failed, as kolla-build reports it).
    pub failed: Vec<FailedEntry>,
    /// Images not selected.
    pub not_matched: Vec<NameEntry>,
    /// Images selected but skipped (`--skip-parents`, `--skip-existing`).
    pub skipped: Vec<NameEntry>,
    /// Images excluded by the unbuildable matrix.
    pub unbuildable: Vec<NameEntry>,
    /// Layers this run produced (0 on a fully cached rebuild).
    pub layers_built: usize,
    /// Steps answered by the cache.
    pub layers_cached: usize,
}

/// An image name in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct NameEntry {
    /// The image name.
    pub name: String,
}

/// A failed image in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct FailedEntry {
    /// The image name.
    pub name: String,
    /// kolla-build's status of the image (see [`Summary::failed`]).
    pub status: String,
    /// A build for several platforms: those the image failed on (`linux/arm64/v8`). Left out of a
    /// single-platform run's summary, which stays kolla-build's shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
}

impl Summary {
    /// Sort every list by name, as kolla-build prints them.
    pub fn sort(&mut self) {
        for list in [&mut self.built, &mut self.not_matched, &mut self.skipped, &mut self.unbuildable] {
            list.sort_by(|a, b| a.name.cmp(&b.name));
        }
        self.failed.sort_by(|a, b| (&a.name, &a.status).cmp(&(&b.name, &b.status)));
    }

    /// One summary of a build for several platforms, from each platform's (in the run's order): an image
    /// failed if it failed on any platform (with the status of the first and the list of those it failed
    /// on), else built if it was built on any (every platform that selected it built it); an image on no
    /// such list is skipped, unbuildable or not matched, as the first platform that says so. Layer counts
    /// are summed. A single platform's summary is returned as it is.
    pub fn of_platforms(mut runs: Vec<(String, Summary)>) -> Summary {
        if runs.len() == 1 {
            return runs.pop().map(|(_, s)| s).unwrap_or_default();
        }
        let mut merged = Summary::default();
        let mut failed: Vec<FailedEntry> = Vec::new();
        for (platform, run) in &runs {
            merged.layers_built += run.layers_built;
            merged.layers_cached += run.layers_cached;
            for f in &run.failed {
                match failed.iter_mut().find(|g| g.name == f.name) {
                    Some(g) => g.platforms.get_or_insert_default().push(platform.clone()),
                    None => failed.push(FailedEntry { platforms: Some(vec![platform.clone()]), ..f.clone() }),
                }
            }
        }
        // Each image on one list: failed, else the first of built, skipped, unbuildable, not matched that
        // any platform puts it on (built on one platform and unbuildable on another: built).
        let mut placed: std::collections::BTreeSet<String> = failed.iter().map(|f| f.name.clone()).collect();
        let mut take = |pick: fn(&Summary) -> &Vec<NameEntry>| -> Vec<NameEntry> {
            runs.iter().flat_map(|(_, r)| pick(r)).filter(|e| placed.insert(e.name.clone())).cloned().collect()
        };
        merged.built = take(|s| &s.built);
        merged.skipped = take(|s| &s.skipped);
        merged.unbuildable = take(|s| &s.unbuildable);
        merged.not_matched = take(|s| &s.not_matched);
        merged.failed = failed;
        merged.sort();
        merged
    }

    /// The one-line form kolla-build prints on stdout (`json.dump(results, sys.stdout)`: `", "`
    /// and `": "` separators, no newline at the end).
    pub fn to_line(&self) -> String {
        let mut out = Vec::new();
        self.serialize(&mut Serializer::with_formatter(&mut out, PythonCompact))
            .expect("a summary serializes to memory");
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// The form kolla-build writes to `--summary-json-file` (`json.dump(results, f, indent=4)`:
    /// no newline at the end).
    pub fn to_indented(&self) -> String {
        let mut out = Vec::new();
        self.serialize(&mut Serializer::with_formatter(&mut out, PrettyFormatter::with_indent(b"    ")))
            .expect("a summary serializes to memory");
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// Write [`Summary::to_indented`] to `path`: a temp file beside it renamed into place, so the file
    /// is either the old one or the whole new one.
    pub fn write_file(&self, path: &Path) -> io::Result<()> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(self.to_indented().as_bytes())?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Python's default `json.dumps` spacing: `", "` between items and `": "` after keys.
struct PythonCompact;

impl Formatter for PythonCompact {
    fn begin_array_value<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, writer: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { writer.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        let name = |n: &str| NameEntry { name: n.into() };
        let mut s = Summary {
            built: vec![name("nova-api"), name("base")],
            failed: vec![
                FailedEntry { name: "glance-api".into(), status: "push_error".into(), platforms: None },
                FailedEntry { name: "cron".into(), status: "error".into(), platforms: None },
            ],
            not_matched: vec![name("zun"), name("aodh")],
            layers_built: 3,
            ..Summary::default()
        };
        s.sort();
        s
    }

    /// Two platforms' summaries make one: a failure on either fails the image and names the platform;
    /// an image built on one platform and unbuildable on the other is built; layers add up. One
    /// platform's summary is unchanged (no `platforms` key).
    #[test]
    fn platforms_merge_into_one_summary() {
        let name = |n: &str| NameEntry { name: n.into() };
        let amd64 = Summary {
            built: vec![name("base"), name("memcached"), name("nova")],
            layers_built: 2,
            layers_cached: 1,
            ..Summary::default()
        };
        let arm64 = Summary {
            built: vec![name("base")],
            failed: vec![FailedEntry { name: "memcached".into(), status: "error".into(), platforms: None }],
            unbuildable: vec![name("nova")],
            layers_built: 3,
            ..Summary::default()
        };
        let merged = Summary::of_platforms(vec![("linux/amd64".into(), amd64), ("linux/arm64/v8".into(), arm64)]);
        assert_eq!(
            merged.to_line(),
            r#"{"built": [{"name": "base"}, {"name": "nova"}], "failed": [{"name": "memcached", "status": "error", "platforms": ["linux/arm64/v8"]}], "not_matched": [], "skipped": [], "unbuildable": [], "layers_built": 5, "layers_cached": 1}"#
        );
        assert_eq!(Summary::of_platforms(vec![("linux/amd64".into(), sample())]).to_line(), sample().to_line());
    }

    /// Byte for byte what Python's `json.dump` writes for the same dict (checked with python3).
    #[test]
    fn written_as_python_writes_it() {
        assert_eq!(
            sample().to_line(),
            r#"{"built": [{"name": "base"}, {"name": "nova-api"}], "failed": [{"name": "cron", "status": "error"}, {"name": "glance-api", "status": "push_error"}], "not_matched": [{"name": "aodh"}, {"name": "zun"}], "skipped": [], "unbuildable": [], "layers_built": 3, "layers_cached": 0}"#
        );
        let indented = sample().to_indented();
        assert!(indented.starts_with("{\n    \"built\": [\n        {\n            \"name\": \"base\"\n        },\n"));
        assert!(indented.contains("\n    \"skipped\": [],\n") && indented.ends_with("\n    \"layers_cached\": 0\n}"));
    }
}
