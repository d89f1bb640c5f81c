//! The package-repository helpers templates call: `handle_repos`, `cleanup_repos` and
//! `debian_package_install`, producing the same shell text as kolla-build 23.0.0.
//!
//! kolla-build re-reads and re-parses `repos.yaml` (plus the `--repos-yaml` override) on every
//! call, about 480 times per Debian render, which is most of its run time. Here both files are
//! parsed once per run ([`Repos::load`]) and each call only merges the small per-distro maps.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value as Yaml};

use super::TemplateError;

/// Where `build_only` repositories are backed up inside the image during a build.
const BACKUP_DIR: &str = "/tmp/kolla-repos-backup";

/// One repository's fields (`url`, `suite`, `gpg_key`, `baseurl`, `distro`, ...), in file order.
type RepoInfo = Mapping;

/// Sections (`deb`, `debian`, `debian-aarch64`, `rpm`, ...) → repositories, in file order.
#[derive(Debug, Clone, Default)]
struct RepoData {
    sections: Vec<(String, Vec<(String, RepoInfo)>)>,
}

impl RepoData {
    fn parse(path: &Path) -> Result<RepoData, TemplateError> {
        let yerr = |message: String| TemplateError::ReposYaml { path: path.to_path_buf(), message };
        let text =
            std::fs::read_to_string(path).map_err(|source| TemplateError::Io { path: path.to_path_buf(), source })?;
        let doc: Yaml = serde_yaml::from_str(&text).map_err(|e| yerr(e.to_string()))?;
        let mut data = RepoData::default();
        let Some(top) = doc.as_mapping() else {
            return if doc.is_null() { Ok(data) } else { Err(yerr("top level is not a mapping".into())) };
        };
        for (section, repos) in top {
            let section = py_str(section);
            let mut list = Vec::new();
            if let Some(repos) = repos.as_mapping() {
                for (name, info) in repos {
                    let info = info.as_mapping().cloned().unwrap_or_default();
                    list.push((py_str(name), info));
                }
            } else if !repos.is_null() {
                return Err(yerr(format!("section {section:?} is not a mapping")));
            }
            data.sections.push((section, list));
        }
        Ok(data)
    }

    /// kolla's override merge: a section's repositories are replaced whole (keeping their
    /// position) or appended; unknown sections are appended.
    fn merge(&mut self, other: RepoData) {
        for (section, repos) in other.sections {
            match self.sections.iter_mut().find(|(s, _)| *s == section) {
                Some((_, existing)) => {
                    for (name, info) in repos {
                        match existing.iter_mut().find(|(n, _)| *n == name) {
                            Some(slot) => slot.1 = info,
                            None => existing.push((name, info)),
                        }
                    }
                }
                None => self.sections.push((section, repos)),
            }
        }
    }

    fn section(&self, name: &str) -> &[(String, RepoInfo)] {
        self.sections.iter().find(|(s, _)| s == name).map(|(_, r)| r.as_slice()).unwrap_or(&[])
    }

    /// The repositories for one package type / distro / arch: the `<pkgtype>`, `<distro>` and
    /// `<distro>-<arch>` sections merged in that order (later fields win; a merged entry that
    /// gains a location stops being a `distro` repository).
    fn flatten(&self, pkg_type: &str, distro: &str, arch: &str) -> Vec<(String, RepoInfo)> {
        let mut out: Vec<(String, RepoInfo)> = Vec::new();
        let arch_section = format!("{distro}-{arch}");
        for section in [pkg_type, distro, arch_section.as_str()] {
            for (name, info) in self.section(section) {
                match out.iter_mut().find(|(n, _)| n == name) {
                    Some((_, merged)) => {
                        for (k, v) in info {
                            merged.insert(k.clone(), v.clone());
                        }
                        if ["baseurl", "metalink", "mirrorlist", "url"].iter().any(|k| merged.contains_key(*k)) {
                            merged.remove("distro");
                        }
                    }
                    None => out.push((name.clone(), info.clone())),
                }
            }
        }
        out
    }
}

/// Python's `str()` of a YAML scalar (`True`, `1`, `None`, the string itself).
fn py_str(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Bool(true) => "True".into(),
        Yaml::Bool(false) => "False".into(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Null => "None".into(),
        other => serde_yaml::to_string(other).unwrap_or_default().trim_end().to_string(),
    }
}

/// Python truthiness of an optional field.
fn truthy(info: &RepoInfo, key: &str) -> bool {
    match info.get(key) {
        None | Some(Yaml::Null) | Some(Yaml::Bool(false)) => false,
        Some(Yaml::String(s)) => !s.is_empty(),
        Some(Yaml::Number(n)) => n.as_f64() != Some(0.0),
        Some(Yaml::Sequence(s)) => !s.is_empty(),
        Some(Yaml::Mapping(m)) => !m.is_empty(),
        Some(_) => true,
    }
}

fn field(info: &RepoInfo, key: &str) -> Option<String> {
    info.get(key).map(py_str)
}

/// The parsed `repos.yaml` (default, and merged with the override) for one run.
#[derive(Debug, Clone)]
pub struct Repos {
    merged: RepoData,
    default: RepoData,
    has_override: bool,
    source: Option<PathBuf>,
}

/// What `handle_repos` should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write / enable repositories.
    Enable,
    /// Disable distro repositories (rpm only).
    Disable,
}

/// The template context values the repository helpers read.
#[derive(Debug, Clone)]
pub struct RepoContext {
    /// `deb` or `rpm`.
    pub base_package_type: String,
    /// `debian`, `ubuntu`, `rocky`, ...
    pub base_distro: String,
    /// `x86_64` or `aarch64`.
    pub base_arch: String,
    /// Substituted (lower case) into `{openstack_release_codename}` in suites.
    pub openstack_release_codename: String,
    /// For error messages.
    pub image_name: String,
}

impl Repos {
    /// Parse the default `repos.yaml` and merge `override_file` over it, once.
    pub fn load(default: Option<&Path>, override_file: Option<&Path>) -> Result<Repos, TemplateError> {
        let default_data = match default {
            Some(p) => RepoData::parse(p)?,
            None => RepoData::default(),
        };
        let mut merged = default_data.clone();
        if let Some(o) = override_file {
            merged.merge(RepoData::parse(o)?);
        }
        Ok(Repos {
            merged,
            default: default_data,
            has_override: override_file.is_some(),
            source: default.map(Path::to_path_buf),
        })
    }

    fn not_found(&self, repo: &str, ctx: &RepoContext) -> String {
        format!(
            "repository {repo:?} (image {}) is not defined for {}/{}/{}-{} in {}",
            ctx.image_name,
            ctx.base_package_type,
            ctx.base_distro,
            ctx.base_distro,
            ctx.base_arch,
            self.source.as_ref().map_or("<no repos.yaml found>".into(), |p| p.display().to_string())
        )
    }

    /// kolla's `handle_repos(names, mode)`: a `RUN ...` line (or `""`) writing deb822 `.sources`
    /// files or `.repo` files for the named repositories. Errors are plain messages for the
    /// template error.
    pub fn handle(&self, names: &[String], mode: Mode, ctx: &RepoContext) -> Result<String, String> {
        let list = self.merged.flatten(&ctx.base_package_type, &ctx.base_distro, &ctx.base_arch);
        let default_list = self.default.flatten(&ctx.base_package_type, &ctx.base_distro, &ctx.base_arch);
        let get = |l: &[(String, RepoInfo)], n: &str| l.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        if ctx.base_package_type == "rpm" && self.has_override {
            check_rpm_distro_overrides(&list, &default_list)?;
        }
        let mut cmd = String::new();
        let mut backed_up: BTreeSet<String> = BTreeSet::new();
        let last = names.len().saturating_sub(1);
        for (index, repo) in names.iter().enumerate() {
            let info = get(&list, repo).ok_or_else(|| self.not_found(repo, ctx))?;
            let missing = |k: &str| format!("repository {repo:?} (image {}) has no {k}", ctx.image_name);
            if ctx.base_package_type == "rpm" {
                if mode == Mode::Enable {
                    let name = field(&info, "name").ok_or_else(|| missing("name"))?;
                    if !truthy(&info, "distro") {
                        let file = format!("/etc/yum.repos.d/{repo}.repo");
                        if truthy(&info, "build_only") {
                            let group = field(&info, "file_group")
                                .filter(|s| !s.is_empty())
                                .or_else(|| get(&default_list, repo).and_then(|d| field(&d, "file_group")))
                                .filter(|s| !s.is_empty())
                                .unwrap_or_else(|| format!("{repo}.repo"));
                            if backed_up.insert(group.clone()) {
                                cmd += &format!(
                                    "mkdir -p {BACKUP_DIR} && cp /etc/yum.repos.d/{group} {BACKUP_DIR}/{group} \
                                     2>/dev/null || true && touch {BACKUP_DIR}/{group}.enabled && "
                                );
                            }
                        }
                        cmd += &format!("grep -rlF '[{name}]' /etc/yum.repos.d/ 2>/dev/null | xargs -r rm -f && ");
                        cmd += &format!(
                            "echo '[{name}]' >{file} && echo 'name={name}' >>{file} && echo 'enabled=1' >>{file}"
                        );
                        if truthy(&info, "gpgcheck") {
                            cmd += &format!(" && echo 'gpgcheck={}' >>{file}", py_str(&info["gpgcheck"]));
                        }
                        if truthy(&info, "repo_gpgcheck") {
                            cmd += &format!(" && echo 'repo_gpgcheck={}' >>{file}", py_str(&info["repo_gpgcheck"]));
                        }
                        if !["baseurl", "metalink", "mirrorlist"].iter().any(|k| info.contains_key(*k)) {
                            return Err(missing("baseurl, metalink, or mirrorlist"));
                        }
                        let gpgkey = field(&info, "gpgkey").ok_or_else(|| missing("gpgkey"))?;
                        for (i, key) in gpgkey.lines().enumerate() {
                            if i == 0 {
                                cmd += &format!(" && echo 'gpgkey={key}' >>{file}");
                            } else {
                                cmd += &format!(" && echo '       {key}' >>{file}");
                            }
                        }
                        if let Some(baseurl) = field(&info, "baseurl") {
                            for url in baseurl.lines() {
                                cmd += &format!(" && echo 'baseurl={url}' >>{file}");
                            }
                        } else if let Some(m) = field(&info, "metalink") {
                            cmd += &format!(" && echo 'metalink={m}' >>{file}");
                        } else if let Some(m) = field(&info, "mirrorlist") {
                            cmd += &format!(" && echo 'mirrorlist={m}' >>{file}");
                        }
                    } else {
                        cmd += &format!("dnf config-manager --enable {name} || true");
                    }
                    if index != last {
                        cmd += " && ";
                    }
                } else if truthy(&info, "distro") {
                    let name = field(&info, "name").ok_or_else(|| missing("name"))?;
                    cmd += &format!("dnf config-manager --disable {name} || true");
                }
            } else if ctx.base_package_type == "deb" && mode == Mode::Enable && !truthy(&info, "distro") {
                let file = format!("/etc/apt/sources.list.d/{repo}.sources");
                if truthy(&info, "build_only") && backed_up.insert(file.clone()) {
                    cmd += &format!(
                        "mkdir -p {BACKUP_DIR} && cp {file} {BACKUP_DIR}/{repo}.sources 2>/dev/null || true \
                         && touch {BACKUP_DIR}/{repo}.enabled && "
                    );
                }
                let gpg_key = field(&info, "gpg_key").ok_or_else(|| missing("gpg_key"))?;
                let signed_by =
                    if gpg_key.starts_with('/') { gpg_key } else { format!("/etc/kolla/apt-keys/{gpg_key}") };
                let suite = field(&info, "suite")
                    .ok_or_else(|| missing("suite"))?
                    .replace("{openstack_release_codename}", &ctx.openstack_release_codename.to_lowercase());
                let component = field(&info, "component").ok_or_else(|| missing("component"))?;
                let url = field(&info, "url").ok_or_else(|| missing("url"))?;
                cmd += &format!(
                    "echo 'Uris: {url}' >{file} && echo 'Components: {component}' >>{file} && \
                     echo 'Types: deb' >>{file} && echo 'Suites: {suite}' >>{file} && \
                     echo 'Signed-By: {signed_by}' >>{file}"
                );
                if truthy(&info, "trusted") {
                    cmd += &format!(" && echo 'Trusted: yes' >>{file}");
                }
                if let Some(arch) = field(&info, "arch") {
                    cmd += &format!(" && echo 'Architectures: {arch}' >>{file}");
                }
                if index != last {
                    cmd += " && ";
                }
            }
        }
        Ok(if cmd.is_empty() { cmd } else { format!("RUN {cmd}") })
    }

    /// kolla's `cleanup_repos()`: a `RUN` restoring (or removing) every `build_only`
    /// repository file, or `""` when there are none.
    pub fn cleanup(&self, ctx: &RepoContext) -> String {
        let list = self.merged.flatten(&ctx.base_package_type, &ctx.base_distro, &ctx.base_arch);
        let default_list = self.default.flatten(&ctx.base_package_type, &ctx.base_distro, &ctx.base_arch);
        let mut cmds: Vec<String> = Vec::new();
        let mut restored: BTreeSet<String> = BTreeSet::new();
        for (repo, info) in &list {
            if !truthy(info, "build_only") || truthy(info, "distro") {
                continue;
            }
            if ctx.base_package_type == "rpm" {
                let own = format!("{repo}.repo");
                let group = field(info, "file_group")
                    .filter(|s| !s.is_empty())
                    .or_else(|| default_list.iter().find(|(n, _)| n == repo).and_then(|(_, d)| field(d, "file_group")))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| own.clone());
                if group != own {
                    cmds.push(format!("rm -f /etc/yum.repos.d/{own}"));
                    if !restored.insert(group.clone()) {
                        continue;
                    }
                }
                cmds.push(format!(
                    "[ -f {BACKUP_DIR}/{group}.enabled ] && ( mv {BACKUP_DIR}/{group} /etc/yum.repos.d/{group} \
                     2>/dev/null || rm -f /etc/yum.repos.d/{group} ) || true"
                ));
            } else if ctx.base_package_type == "deb" {
                cmds.push(format!(
                    "[ -f {BACKUP_DIR}/{repo}.enabled ] && ( mv {BACKUP_DIR}/{repo}.sources \
                     /etc/apt/sources.list.d/{repo}.sources 2>/dev/null || rm -f \
                     /etc/apt/sources.list.d/{repo}.sources ) || true"
                ));
            }
        }
        if cmds.is_empty() {
            return String::new();
        }
        cmds.push(format!("rm -rf {BACKUP_DIR}"));
        format!("RUN {}", cmds.join(" \\\n    && "))
    }
}

/// With an rpm override, refuse overriding only some of the distro repositories that share one
/// `.repo` file: the override would delete the file the others still need.
fn check_rpm_distro_overrides(list: &[(String, RepoInfo)], default_list: &[(String, RepoInfo)]) -> Result<(), String> {
    let default_of = |n: &str| default_list.iter().find(|(k, _)| k == n).map(|(_, v)| v);
    let overridden: BTreeSet<&str> = list
        .iter()
        .filter(|(r, d)| !truthy(d, "distro") && default_of(r).is_some_and(|d| truthy(d, "distro")))
        .map(|(r, _)| r.as_str())
        .collect();
    if overridden.is_empty() {
        return Ok(());
    }
    let groups: BTreeSet<String> = overridden
        .iter()
        .filter_map(|r| default_of(r).filter(|d| truthy(d, "file_group")).and_then(|d| field(d, "file_group")))
        .collect();
    let still: BTreeSet<&str> = list
        .iter()
        .filter(|(r, d)| {
            truthy(d, "distro")
                && !overridden.contains(r.as_str())
                && field(d, "file_group").is_some_and(|g| groups.contains(&g))
        })
        .map(|(r, _)| r.as_str())
        .collect();
    if still.is_empty() {
        return Ok(());
    }
    Err(format!(
        "repositories {overridden:?} override distro-provided repos and will remove their .repo file; \
         repositories {still:?} still use the distro defaults and share the same file: override them too"
    ))
}

/// kolla's `debian_package_install(packages, clean)`: `apt-get update && apt-get install` for
/// package names, `curl` + `dpkg -i` for `http*` URLs of `.deb` files.
pub fn debian_package_install(packages: &[String], clean: bool) -> String {
    let (urls, regular): (Vec<&String>, Vec<&String>) = packages.iter().partition(|p| p.starts_with("http"));
    let mut cmds: Vec<String> = Vec::new();
    if !regular.is_empty() {
        cmds.push("apt-get --error-on=any update".into());
        let names: Vec<&str> = regular.iter().map(|s| s.as_str()).collect();
        cmds.push(format!("apt-get -y install --no-install-recommends {}", names.join(" ")));
        if clean {
            cmds.push("apt-get clean".into());
            cmds.push("rm -rf /var/lib/apt/lists/*".into());
        }
    }
    for url in urls {
        let name = url.rsplit('/').next().unwrap_or(url);
        cmds.push(format!("curl --location {url} -o {name}"));
        cmds.push(format!("dpkg -i {name}"));
        cmds.push(format!("rm -rf {name}"));
    }
    cmds.join(" && ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pkg: &str, distro: &str) -> RepoContext {
        RepoContext {
            base_package_type: pkg.into(),
            base_distro: distro.into(),
            base_arch: "x86_64".into(),
            openstack_release_codename: "Hibiscus".into(),
            image_name: "img".into(),
        }
    }

    #[test]
    fn deb_repos_and_cleanup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("repos.yaml");
        std::fs::write(
            &p,
            "deb:\n  a:\n    url: http://a\n    suite: s-{openstack_release_codename}\n    component: main\n    gpg_key: a.asc\n    build_only: true\n\
             debian:\n  debian:\n    distro: True\n  b:\n    url: http://b\n    suite: x\n    component: ''\n    gpg_key: /k.gpg\n    trusted: yes\n    arch: amd64\n",
        )
        .unwrap();
        let r = Repos::load(Some(&p), None).unwrap();
        let c = ctx("deb", "debian");
        let out = r.handle(&["debian".into(), "a".into(), "b".into()], Mode::Enable, &c).unwrap();
        assert!(
            out.starts_with("RUN mkdir -p /tmp/kolla-repos-backup && cp /etc/apt/sources.list.d/a.sources"),
            "{out}"
        );
        assert!(out.contains("echo 'Suites: s-hibiscus'"), "{out}");
        assert!(out.ends_with("echo 'Trusted: yes' >>/etc/apt/sources.list.d/b.sources && echo 'Architectures: amd64' >>/etc/apt/sources.list.d/b.sources"), "{out}");
        assert_eq!(r.handle(&["debian".into()], Mode::Enable, &c).unwrap(), "");
        assert!(r.handle(&["nope".into()], Mode::Enable, &c).unwrap_err().contains("\"nope\""));
        assert!(r.cleanup(&c).ends_with(" \\\n    && rm -rf /tmp/kolla-repos-backup"));
    }

    #[test]
    fn debian_install() {
        let p = vec!["a".to_string(), "http://x/y.deb".to_string(), "b".to_string()];
        assert_eq!(
            debian_package_install(&p, false),
            "apt-get --error-on=any update && apt-get -y install --no-install-recommends a b && \
             curl --location http://x/y.deb -o y.deb && dpkg -i y.deb && rm -rf y.deb"
        );
    }
}
