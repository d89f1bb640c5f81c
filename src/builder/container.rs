//! `kolla-oci run`: an image's entrypoint or command in the rootless sandbox, on an overlay of its
//! extracted layers with a throw-away upper dir — for smoke tests where there is no Docker.

use std::io::Write;

use super::{BuildError, Workspace};
use crate::sandbox::{self, Bind};

/// What to run and how, on top of the image config.
#[derive(Debug, Clone, Default)]
pub struct ContainerOptions {
    /// Extra `KEY=value` variables (override the image's).
    pub env: Vec<String>,
    /// Bind mounts.
    pub binds: Vec<Bind>,
    /// Replaces the image's `Cmd` when not empty.
    pub args: Vec<String>,
    /// Replaces the image's `Entrypoint` when set (`Some(vec![])` clears it).
    pub entrypoint: Option<Vec<String>>,
    /// Replaces the image's `User` when set.
    pub user: Option<String>,
    /// Replaces the image's `WorkingDir` when set (`run -w`).
    pub workdir: Option<String>,
    /// The container's network. The library default is a private namespace, as for RUN; the
    /// `kolla-oci run` command line defaults to the host's, since its services are tested from the host.
    pub network: sandbox::NetworkMode,
    /// Keep standard input open for the command (`-i`).
    pub interactive: bool,
    /// Give the command a terminal (`-t`).
    pub tty: bool,
    /// The platform to run (`run --platform`): of an image index, its manifest for that platform; a
    /// single image must be of it. `None`: a single image whatever its platform, of an index this
    /// machine's. A foreign platform runs through qemu-user (see [`crate::platform::check_runnable`]).
    pub platform: Option<crate::store::Platform>,
}

/// Run `image` (a tag in the store) and return the command's exit code; its output goes to `output`.
pub fn run_container(
    ws: &Workspace,
    image: &str,
    opts: &ContainerOptions,
    output: &mut dyn Write,
) -> Result<i32, BuildError> {
    let desc = ws.store().resolve(image)?.ok_or_else(|| BuildError::Input(format!("no image {image} in the store")))?;
    let img = ws.store().load_image_from(&desc, opts.platform.as_ref().unwrap_or(&crate::platform::host()))?;
    let platform = img.config.platform();
    if let Some(want) = opts.platform.as_ref().filter(|want| !want.matches(&platform)) {
        return Err(BuildError::Input(format!("{image} is a {platform} image, not {want}")));
    }
    crate::platform::check_runnable(&platform)?;
    let lowerdirs = ws.lower_dirs(&img)?;
    let c = &img.config.config;
    let mut argv = opts.entrypoint.clone().or_else(|| c.entrypoint.clone()).unwrap_or_default();
    if opts.args.is_empty() {
        argv.extend(c.cmd.clone().unwrap_or_default());
    } else {
        argv.extend(opts.args.iter().cloned());
    }
    if argv.is_empty() {
        return Err(BuildError::Input(format!("{image} has no entrypoint or command, and none was given")));
    }
    let mut env = c.env.clone();
    for e in &opts.env {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        env.retain(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) != key);
        env.push(e.clone());
    }
    let tmp = ws.temp_dir("container-")?;
    let (upper, work) = (tmp.path().join("upper"), tmp.path().join("work"));
    for d in [&upper, &work] {
        std::fs::create_dir(d).map_err(|e| BuildError::io(d, "create directory", e))?;
    }
    let spec = sandbox::RunSpec {
        lowerdirs,
        upperdir: upper,
        workdir: work,
        argv,
        env,
        user: opts.user.clone().or_else(|| c.user.clone()).unwrap_or_default(),
        cwd: opts.workdir.clone().or_else(|| c.working_dir.clone()).unwrap_or_default(),
        hostname: "kolla-oci".into(),
        binds: opts.binds.clone(),
        network: opts.network,
        stdin: opts.interactive,
        tty: opts.tty,
    };
    Ok(sandbox::run(&spec, output)?)
}
