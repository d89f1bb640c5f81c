//! Root images: a `FROM` image that is not in the store — or, with `--pull`, one that came from a registry
//! — is pulled from the registry its name says, through the mirrors registries.conf configures for it
//! (see [`crate::registry::Mirrors`]); a fleet's `--cache-repo` shares the root images its machines start
//! from. `FROM debian:<suite>` that no registry serves (this machine may reach none), or with
//! `--bootstrap`, is bootstrapped from the Debian archive with `mmdebstrap --variant=minbase` and laid
//! out as Docker Hub's official image is (deb822 `debian.sources` only, its apt and dpkg settings),
//! compressed into one layer and tagged in the store under the name the Dockerfile used, so the next
//! build finds it there.

use std::io::BufReader;
use std::path::Path;
use std::process::Command;

use super::fleet::Waited;
use super::{BuildError, BuildOptions, Workspace};
use crate::registry::{self, Mirrors, Reference, RegistryOptions};
use crate::store::{ContainerConfig, Descriptor, History, ImageConfig, Platform, RootFs};

/// Get `FROM` image `name` into the store, or refresh it there (`present`: the store has it, and
/// `--pull` asks for the registry's current one). A refresh that reaches no registry keeps the stored
/// image, with a warning.
pub(crate) fn fetch_base(ws: &Workspace, name: &str, opts: &BuildOptions, present: bool) -> Result<(), BuildError> {
    let suite = debian_suite(name);
    // What a registry may have a newer one of: an image pulled before, and `debian:<suite>` (bootstrapped
    // while no registry served it) unless `--bootstrap`; not one made here (`build-file -t`).
    let from_registry = pulled_before(ws, name, &opts.platform)?;
    if present && !from_registry && (suite.is_none() || opts.bootstrap) {
        return Ok(());
    }
    let platform = &opts.platform;
    let remote = opts.cache_repo.as_ref().filter(|_| suite.is_some() && !present);
    if let Some(remote) = remote {
        let fetch = || match remote.fetch_root(ws.store(), name, platform) {
            Ok(true) => Ok(Some(())),
            Ok(false) => Ok(None),
            Err(e) => {
                tracing::warn!(cache = remote.name(), "fetching root image {name} from the cache: {e}");
                Ok(None)
            }
        };
        // Another shard makes it: every shard must build on the same root bytes.
        match &opts.cache_wait {
            Some(w) => match w.wait(&format!("root image {name}"), fetch)? {
                Waited::Got(()) => return Ok(()),
                Waited::TakeOver => {}
                Waited::TimedOut(waited) => {
                    return Err(BuildError::BaseImage {
                        image: name.into(),
                        reason: format!(
                            "waited {} s for shard {} to share it through {} (--shard-wait)",
                            waited.as_secs(),
                            w.owner_name(),
                            remote.name()
                        ),
                    });
                }
            },
            None => {
                if fetch()?.is_some() {
                    return Ok(());
                }
            }
        }
    }
    let pulled =
        if opts.bootstrap && suite.is_some() { Err(vec!["--bootstrap".to_string()]) } else { pull(ws, name, opts) };
    match (pulled, suite) {
        (Ok(()), _) => {}
        (Err(why), _) if present => {
            let why = why.join("; ");
            match from_registry {
                true => {
                    tracing::warn!("{name}: keeping the image in the store, its registry could not be asked ({why})")
                }
                false => tracing::info!("{name}: keeping the bootstrapped image, no registry serves it ({why})"),
            }
            return Ok(());
        }
        (Err(why), Some(suite)) => {
            tracing::info!("{name}: bootstrapping it with mmdebstrap ({})", why.join("; "));
            if !have_mmdebstrap() {
                return Err(BuildError::BaseImage {
                    image: name.into(),
                    reason: format!(
                        "no registry serves it ({}), and mmdebstrap (to bootstrap it) is not installed",
                        why.join("; ")
                    ),
                });
            }
            bootstrap_debian(ws, name, suite, opts)?;
        }
        (Err(why), None) => {
            return Err(BuildError::BaseImage { image: name.into(), reason: why.join("; ") });
        }
    }
    if let Some(remote) = remote
        && let Err(e) = remote.publish_root(ws.store(), name, platform)
    {
        tracing::warn!(cache = remote.name(), "sharing root image {name} through the cache: {e}");
    }
    Ok(())
}

/// Whether image `name` of the store for `platform` came from a registry (a pull tags it under its
/// full name too).
fn pulled_before(ws: &Workspace, name: &str, platform: &Platform) -> Result<bool, BuildError> {
    let Ok(reference) = Reference::parse(name) else { return Ok(false) };
    Ok(ws.store().image_for(&reference.to_string(), platform)?.is_some())
}

/// Pull `name` from the first of its sources (registries.conf mirrors, then its own registry) that has
/// it, tagged under its full name and under `name`; else why each source failed.
fn pull(ws: &Workspace, name: &str, opts: &BuildOptions) -> Result<(), Vec<String>> {
    let reference = Reference::parse(name).map_err(|e| vec![e.to_string()])?;
    let mirrors = Mirrors::load().map_err(|e| vec![e.to_string()])?;
    let sources = mirrors.sources(&reference);
    if sources.is_empty() {
        return Err(vec![format!("registries.conf blocks {reference} and names no mirror for it")]);
    }
    let mut failures = Vec::new();
    for source in sources {
        let mut ropts: RegistryOptions = opts.registry.clone();
        if source.insecure {
            ropts.insecure_registries.push(source.reference.registry().to_string());
        }
        match registry::pull_as(ws.store(), &source.reference, &reference.to_string(), Some(&opts.platform), &ropts) {
            Ok(desc) => {
                if source.reference != reference {
                    tracing::info!("{name}: pulled from the mirror {}", source.reference);
                }
                // Also under the name the Dockerfile used, so the next build finds it without a lookup.
                ws.store().set_platform_tag(name, &desc).map_err(|e| vec![e.to_string()])?;
                return Ok(());
            }
            Err(e) => failures.push(format!("{}: {}", source.reference, crate::with_causes(&e))),
        }
    }
    Err(failures)
}

/// The suite a `FROM` name asks for, when we know how to bootstrap it (`debian:<suite>`, with or
/// without the `docker.io/library/` prefix).
pub(crate) fn debian_suite(from: &str) -> Option<&str> {
    let name = from.strip_prefix("docker.io/").unwrap_or(from);
    let name = name.strip_prefix("library/").unwrap_or(name);
    let suite = name.strip_prefix("debian:")?;
    let ok = !suite.is_empty() && suite.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then_some(suite)
}

/// Bootstrap `debian:<suite>` into the store and tag it as `from`. Returns the manifest descriptor.
pub(crate) fn bootstrap_debian(
    ws: &Workspace,
    from: &str,
    suite: &str,
    opts: &BuildOptions,
) -> Result<Descriptor, BuildError> {
    let tmp = ws.temp_dir("mmdebstrap-")?;
    let tar = tmp.path().join("rootfs.tar");
    let hook = tmp.path().join("official-layout.sh");
    let script = official_layout_hook(suite, opts.debian_mirror.as_deref().unwrap_or(DEBIAN_ARCHIVE));
    std::fs::write(&hook, script).map_err(|e| BuildError::io(&hook, "write", e))?;
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| BuildError::io(&hook, "chmod", e))?;
    tracing::info!("bootstrapping {from} from the Debian archive with mmdebstrap");
    let arch = crate::platform::debian_arch(&opts.platform).ok_or_else(|| BuildError::BaseImage {
        image: from.into(),
        reason: format!("no Debian architecture for {}", opts.platform),
    })?;
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=minbase", "--format=tar", "--quiet"])
        .arg(format!("--architectures={arch}"))
        .arg(format!("--customize-hook={}", hook.display()))
        .arg(suite)
        .arg(&tar);
    if let Some(mirror) = &opts.debian_mirror {
        cmd.arg(mirror);
    }
    if let Some(epoch) = opts.source_date_epoch {
        cmd.env("SOURCE_DATE_EPOCH", epoch.to_string());
    }
    let out = cmd.output().map_err(|e| BuildError::Tool {
        tool: "mmdebstrap".into(),
        message: format!("{e} (install it: apt-get install mmdebstrap)"),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        return Err(BuildError::Tool {
            tool: "mmdebstrap".into(),
            message: format!("{}\n{}", out.status, tail.join("\n")),
        });
    }
    let store = ws.store();
    let file = std::fs::File::open(&tar).map_err(|e| BuildError::io(&tar, "open", e))?;
    let mut w = store.blob_writer()?;
    let mut skeleton = ws.skeleton_file()?;
    let tar = BufReader::with_capacity(1 << 20, file);
    let info = layers::compress_tar_split(tar, opts.compression, opts.threads, &mut w, &mut skeleton)
        .map_err(|e| BuildError::Layer { what: format!("compressing the {from} rootfs"), error: e })?;
    w.commit(Some(&info.digest))?;
    // Its dir, extracted from the blob when a step mounts it, and the skeleton give the blob back.
    if let Err(e) = ws.keep_split(skeleton, &info, opts.compression) {
        tracing::warn!("keeping the skeleton of the {from} rootfs failed (its blob stays): {e}");
    }
    let layer = Descriptor::new(info.media_type, info.digest, info.size);
    let platform = opts.platform.clone();
    let created = opts.created(opts.layer_time());
    let config = ImageConfig {
        architecture: platform.architecture,
        os: platform.os,
        variant: platform.variant,
        created: Some(created.clone()),
        config: ContainerConfig {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: Some(vec!["bash".into()]),
            ..Default::default()
        },
        rootfs: RootFs { typ: "layers".into(), diff_ids: vec![info.diff_id] },
        history: vec![History {
            created: Some(created),
            created_by: Some(format!("mmdebstrap --variant=minbase {suite}")),
            comment: Some("bootstrapped by kolla-oci".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let manifest = store.write_image(&config, &[layer])?;
    store.set_platform_tag(from, &manifest)?;
    Ok(manifest)
}

/// The Debian archive the official images' `debian.sources` name.
const DEBIAN_ARCHIVE: &str = "http://deb.debian.org/debian";

/// An mmdebstrap customize hook (`$1`: the new root) that lays the root out as Docker Hub's official
/// `debian:<suite>` is (the image upstream's templates are written for): apt's sources as one deb822
/// `/etc/apt/sources.list.d/debian.sources` and no `/etc/apt/sources.list` (which would list every
/// repository a second time once kolla's `base` copies its own `debian.sources`: apt then warns
/// "configured multiple times" on every step), no service started by a package install
/// (`policy-rc.d`), and the official image's apt and dpkg settings for image builds: no sync after
/// unpacking, no kept caches or `.deb`s, compressed package lists, no translations, suggested
/// packages not kept by autoremove.
fn official_layout_hook(suite: &str, archive: &str) -> String {
    let keyring = "/usr/share/keyrings/debian-archive-keyring";
    let stanza = |uris: &str, suites: &str| {
        format!("Types: deb\nURIs: {uris}\nSuites: {suites}\nComponents: main\nSigned-By: $keyring\n")
    };
    let sources = match suite {
        "sid" | "unstable" | "testing" | "experimental" => stanza(archive, suite),
        _ => format!(
            "{}\n{}",
            stanza(archive, &format!("{suite} {suite}-updates")),
            stanza("http://deb.debian.org/debian-security", &format!("{suite}-security"))
        ),
    };
    let apt_clean =
        "\"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\";";
    let files: [(&str, &str, String); 6] = [
        ("usr/sbin/policy-rc.d", "0755", "#!/bin/sh\n# Services are not started in an image build.\nexit 101\n".into()),
        ("etc/dpkg/dpkg.cfg.d/docker-apt-speedup", "0644", "force-unsafe-io\n".into()),
        (
            "etc/apt/apt.conf.d/docker-autoremove-suggests",
            "0644",
            "Apt::AutoRemove::SuggestsImportant \"false\";\n".into(),
        ),
        (
            "etc/apt/apt.conf.d/docker-clean",
            "0644",
            format!(
                "DPkg::Post-Invoke {{ {apt_clean} }};\nAPT::Update::Post-Invoke {{ {apt_clean} }};\n\n\
                 Dir::Cache::pkgcache \"\";\nDir::Cache::srcpkgcache \"\";\n"
            ),
        ),
        ("etc/apt/apt.conf.d/docker-gzip-indexes", "0644", "Acquire::GzipIndexes \"true\";\n".into()),
        ("etc/apt/apt.conf.d/docker-no-languages", "0644", "Acquire::Languages \"none\";\n".into()),
    ];
    let mut script = format!(
        "#!/bin/sh\nset -e\nroot=\"$1\"\n\
         keyring={keyring}.gpg\n[ -e \"$root$keyring\" ] || keyring={keyring}.pgp\n\
         rm -f \"$root/etc/apt/sources.list\"\nmkdir -p \"$root/etc/apt/sources.list.d\"\n\
         cat > \"$root/etc/apt/sources.list.d/debian.sources\" <<EOF\n{sources}EOF\n\
         chmod 0644 \"$root/etc/apt/sources.list.d/debian.sources\"\n"
    );
    for (path, mode, content) in files {
        script.push_str(&format!("cat > \"$root/{path}\" <<'EOF'\n{content}EOF\nchmod {mode} \"$root/{path}\"\n"));
    }
    script
}

/// Whether `mmdebstrap` can be found, for a clear error before a long build starts.
pub(crate) fn have_mmdebstrap() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| Path::new(&d).join("mmdebstrap").is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hook, run by `sh` on a root laid out as mmdebstrap leaves it, leaves it as the official image is.
    #[test]
    fn the_official_layout_hook_rewrites_the_apt_sources() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for d in ["etc/apt/apt.conf.d", "etc/dpkg/dpkg.cfg.d", "usr/sbin", "usr/share/keyrings"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        std::fs::write(r.join("etc/apt/sources.list"), "deb http://deb.debian.org/debian trixie main\n").unwrap();
        std::fs::write(r.join("usr/share/keyrings/debian-archive-keyring.gpg"), "").unwrap();
        let hook = r.join("hook.sh");
        std::fs::write(&hook, official_layout_hook("trixie", DEBIAN_ARCHIVE)).unwrap();
        let out = Command::new("sh").arg(&hook).arg(r).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!r.join("etc/apt/sources.list").exists());
        let sources = std::fs::read_to_string(r.join("etc/apt/sources.list.d/debian.sources")).unwrap();
        assert_eq!(
            sources,
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie trixie-updates\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: trixie-security\nComponents: main\n\
             Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        let clean = std::fs::read_to_string(r.join("etc/apt/apt.conf.d/docker-clean")).unwrap();
        assert!(clean.starts_with("DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb"), "{clean}");
        let policy = std::fs::metadata(r.join("usr/sbin/policy-rc.d")).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&policy.permissions()) & 0o777, 0o755);
        assert_eq!(
            std::fs::read_to_string(r.join("etc/dpkg/dpkg.cfg.d/docker-apt-speedup")).unwrap(),
            "force-unsafe-io\n"
        );
        let sid = official_layout_hook("sid", "http://mirror.local/debian");
        assert!(sid.contains("URIs: http://mirror.local/debian\nSuites: sid\n") && !sid.contains("debian-security"));
    }

    #[test]
    fn debian_suites() {
        assert_eq!(debian_suite("debian:trixie"), Some("trixie"));
        assert_eq!(debian_suite("docker.io/library/debian:bookworm"), Some("bookworm"));
        assert_eq!(debian_suite("ubuntu:24.04"), None);
        assert_eq!(debian_suite("debian:a;b"), None);
    }
}
