//! Root images: a `FROM` image that is not in the store is pulled when its name says which registry holds
//! it, taken from the fleet's `--cache-repo` when another machine shared it, or — `FROM debian:<suite>`,
//! for a machine that reaches no registry — bootstrapped from the Debian archive with
//! `mmdebstrap --variant=minbase` (the same tool Debian's own image build uses), compressed into one layer
//! and tagged in the store under the name the Dockerfile used, so the next build finds it there.

use std::io::BufReader;
use std::path::Path;
use std::process::Command;

use super::{BuildError, BuildOptions, Workspace};
use crate::registry;
use crate::store::{ContainerConfig, Descriptor, History, ImageConfig, Platform, RootFs};

/// A `FROM` image that is not in the store: pulled when its name says which registry holds it, or
/// bootstrapped from the Debian archive for `debian:<suite>` (this machine may reach no registry).
pub(crate) fn fetch_base(ws: &Workspace, name: &str, opts: &BuildOptions) -> Result<(), BuildError> {
    if let Some(suite) = debian_suite(name) {
        if !have_mmdebstrap() {
            return Err(BuildError::BaseImage {
                image: name.into(),
                reason: "not in the store, and mmdebstrap (to bootstrap it) is not installed".into(),
            });
        }
        let platform = Platform::host();
        if let Some(remote) = &opts.cache_repo {
            let started = std::time::Instant::now();
            loop {
                match remote.fetch_root(ws.store(), name, &platform) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(cache = remote.name(), "fetching root image {name} from the cache: {e}"),
                }
                // Another shard bootstraps it: every shard must build on the same root bytes.
                match &opts.cache_wait {
                    Some(w) if started.elapsed() < w.timeout => std::thread::sleep(std::time::Duration::from_secs(2)),
                    Some(w) => {
                        return Err(BuildError::BaseImage {
                            image: name.into(),
                            reason: format!(
                                "waited {} s for shard {} to share it through {} (--shard-wait)",
                                started.elapsed().as_secs(),
                                w.owner,
                                remote.name()
                            ),
                        });
                    }
                    None => break,
                }
            }
        }
        bootstrap_debian(ws, name, suite, opts)?;
        if let Some(remote) = &opts.cache_repo
            && let Err(e) = remote.publish_root(ws.store(), name, &platform)
        {
            tracing::warn!(cache = remote.name(), "sharing root image {name} through the cache: {e}");
        }
        return Ok(());
    }
    if opts.pull {
        let reference = registry::Reference::parse(name)?;
        let desc = registry::ensure_image(ws.store(), &reference, None, &opts.registry)?;
        // Also under the name the Dockerfile used, so the next build finds it without a lookup.
        ws.store().set_tag(name, &desc)?;
        return Ok(());
    }
    Err(BuildError::BaseImage { image: name.into(), reason: "not in the store (and pulling is off)".into() })
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
    tracing::info!("bootstrapping {from} from the Debian archive with mmdebstrap (no registry holds it)");
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--variant=minbase", "--format=tar", "--quiet", suite]).arg(&tar);
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
    let platform = Platform::host();
    let config = ImageConfig {
        architecture: platform.architecture,
        os: platform.os,
        created: Some(opts.created()),
        config: ContainerConfig {
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: Some(vec!["bash".into()]),
            ..Default::default()
        },
        rootfs: RootFs { typ: "layers".into(), diff_ids: vec![info.diff_id] },
        history: vec![History {
            created: Some(opts.created()),
            created_by: Some(format!("mmdebstrap --variant=minbase {suite}")),
            comment: Some("bootstrapped by kolla-oci".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let manifest = store.write_image(&config, &[layer])?;
    store.set_tag(from, &manifest)?;
    Ok(manifest)
}

/// Whether `mmdebstrap` can be found, for a clear error before a long build starts.
pub(crate) fn have_mmdebstrap() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| Path::new(&d).join("mmdebstrap").is_file()))
}
