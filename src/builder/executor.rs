//! One Dockerfile → one image in the store (see the module docs of [`crate::builder`]).

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use layers::{Digest, LayerInfo, TreeOptions};

use super::bootstrap;
use super::cache::{CachedLayer, CachedStep, Key, StepCache};
use super::context::{self, BuildContext, StageOptions};
use super::one_pass::OnePass;
use super::rules::{self, RuleState};
use super::view::RootView;
use super::{BuildError, BuildOptions, Workspace};
use crate::dockerfile::{self, CopySpec, Expander, Instruction, Kind, RunScript};
use crate::sandbox;
use crate::store::{BlobWriter, Descriptor, History, ImageConfig, Platform, Store};

/// Docker's default shell for shell-form RUN/CMD/ENTRYPOINT.
/// How much of a RUN's output is kept for the error message.
const TAIL_BYTES: usize = 4096;
const TAIL_LINES: usize = 20;

/// What to build.
#[derive(Debug, Clone, Copy)]
pub struct BuildRequest<'a> {
    /// The Dockerfile (its path names errors).
    pub dockerfile: &'a Path,
    /// The build context directory.
    pub context: &'a Path,
    /// The tag to give the image in the store.
    pub tag: &'a str,
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildOutcome {
    /// The image's manifest descriptor (also tagged in the store).
    pub manifest: Descriptor,
    /// Layers produced by this build.
    pub layers_built: usize,
    /// Steps whose result came from the cache.
    pub layers_cached: usize,
    /// Each `FROM` image as written and the manifest digest it resolved to, in Dockerfile order
    /// (`scratch` has none): what the image's provenance names as its base.
    pub from_images: Vec<crate::attest::ImageRef>,
    /// sha256 of the Dockerfile as read (for Kolla images: the rendered one).
    pub dockerfile: Digest,
}

/// The image being built, one step at a time.
struct ImageState {
    config: ImageConfig,
    layers: Vec<Descriptor>,
    /// Extracted layer dirs, base first.
    dirs: Vec<PathBuf>,
    /// Cache chain key of everything so far.
    key: Digest,
    /// What the config rules remember across instructions.
    rules: RuleState,
}

impl ImageState {
    fn top_first(&self) -> Vec<PathBuf> {
        self.dirs.iter().rev().cloned().collect()
    }

    fn workdir(&self) -> String {
        rules::workdir(&self.config)
    }
}

/// Build one image. RUN output goes to `log`; the last lines of a failing RUN are in the error.
pub fn build_image(
    ws: &Workspace,
    req: &BuildRequest,
    opts: &BuildOptions,
    log: &mut dyn Write,
) -> Result<BuildOutcome, BuildError> {
    let text = fs::read_to_string(req.dockerfile).map_err(|e| BuildError::io(req.dockerfile, "read Dockerfile", e))?;
    let dockerfile_digest = Digest::of_bytes(text.as_bytes());
    let df = dockerfile::parse(req.dockerfile, &text)?;
    for w in &df.warnings {
        tracing::warn!("{w}");
    }
    let ctx = BuildContext::new(req.context)?;
    let cache = StepCache::new(ws.cache_dir(), opts.cache);
    let mut ex = Expander::new(opts.build_args.clone());
    let mut st: Option<ImageState> = None;
    let mut from_images = Vec::new();
    let (mut built, mut cached) = (0, 0);
    for raw in &df.instructions {
        let ins = ex.expand(raw)?;
        let at =
            |e: BuildError| BuildError::At { path: req.dockerfile.to_path_buf(), line: ins.line, error: Box::new(e) };
        if let Kind::From(from) = &ins.kind {
            let (state, digest) = from_image(ws, &from.image, opts).map_err(at)?;
            ex.set_base_env(&state.config.config.env);
            st = Some(state);
            if let Some(digest) = digest {
                from_images.push(crate::attest::ImageRef { name: from.image.clone(), digest });
            }
            continue;
        }
        let Some(state) = st.as_mut() else {
            // The parser allows only ARG before FROM; ARG needs no image.
            continue;
        };
        let step = Step { ws, ctx: &ctx, cache: &cache, opts, ex: &ex };
        match step.apply(state, &ins, log).map_err(at)? {
            StepResult::Config => {}
            StepResult::Layer { from_cache } if from_cache => cached += 1,
            StepResult::Layer { .. } => built += 1,
            StepResult::Empty => {}
        }
    }
    for name in ex.unused_build_args() {
        tracing::warn!("{}: build argument {name:?} was given but not declared with ARG", req.dockerfile.display());
    }
    let mut state =
        st.ok_or_else(|| BuildError::Input(format!("{}: no FROM instruction", req.dockerfile.display())))?;
    state.config.created = Some(opts.created());
    let store = ws.store();
    let manifest = store.write_image(&state.config, &state.layers)?;
    store.set_tag(req.tag, &manifest)?;
    Ok(BuildOutcome {
        manifest,
        layers_built: built,
        layers_cached: cached,
        from_images,
        dockerfile: dockerfile_digest,
    })
}

/// The starting point of a build: `scratch`, an image in the store, or one fetched or bootstrapped;
/// with the manifest digest of the image (none for `scratch`).
fn from_image(ws: &Workspace, name: &str, opts: &BuildOptions) -> Result<(ImageState, Option<Digest>), BuildError> {
    let zero = Digest::from_bytes([0; 32]);
    if name == "scratch" {
        let platform = Platform::host();
        let config = ImageConfig { architecture: platform.architecture, os: platform.os, ..Default::default() };
        let state = ImageState {
            config,
            layers: vec![],
            dirs: vec![],
            key: Key::new("scratch", &zero).field("platform", Platform::host().to_string()).finish(),
            rules: RuleState::default(),
        };
        return Ok((state, None));
    }
    let store = ws.store();
    if store.resolve(name)?.is_none() {
        bootstrap::fetch_base(ws, name, opts)?;
    }
    let image = store.load_image(name)?;
    let diff_ids = &image.config.rootfs.diff_ids;
    if diff_ids.len() != image.manifest.layers.len() {
        return Err(BuildError::BaseImage {
            image: name.into(),
            reason: format!("{} layers but {} diff_ids in its config", image.manifest.layers.len(), diff_ids.len()),
        });
    }
    let dirs = image
        .manifest
        .layers
        .iter()
        .zip(diff_ids)
        .map(|(layer, diff_id)| ws.ensure_layer_dir(layer, diff_id))
        .collect::<Result<Vec<_>, _>>()?;
    let key = Key::new("from", &zero)
        .field("manifest", image.manifest_digest.to_string())
        .field("platform", image.config.platform().to_string())
        .finish();
    let digest = image.manifest_digest;
    let state =
        ImageState { config: image.config, layers: image.manifest.layers, dirs, key, rules: RuleState::default() };
    Ok((state, Some(digest)))
}

enum StepResult {
    /// Only the config changed.
    Config,
    /// A layer was added.
    Layer { from_cache: bool },
    /// The step ran but changed no file: no layer.
    Empty,
}

/// What every step needs.
struct Step<'a> {
    ws: &'a Workspace,
    ctx: &'a BuildContext,
    cache: &'a StepCache,
    opts: &'a BuildOptions,
    ex: &'a Expander,
}

impl Step<'_> {
    fn apply(&self, st: &mut ImageState, ins: &Instruction, log: &mut dyn Write) -> Result<StepResult, BuildError> {
        match &ins.kind {
            Kind::From(_) => unreachable!("handled by build_image"),
            // Values reach RUN through its environment (and its cache key); nothing to record.
            Kind::Arg(_) => return Ok(StepResult::Config),
            Kind::Copy(spec) => return self.copy(st, ins, spec, false),
            Kind::Add(spec) => return self.copy(st, ins, spec, true),
            Kind::Run(_) => return self.run(st, ins, log),
            kind => {
                let config_only = rules::apply(&mut st.config, &mut st.rules, kind);
                debug_assert!(config_only, "every other instruction only changes the config");
            }
        }
        // Config-only: no layer, so the key chain (which names layers) does not change; the steps that
        // do make layers put the config they run with (env, user, workdir, shell) in their own keys.
        self.history(st, ins, true);
        Ok(StepResult::Config)
    }

    fn history(&self, st: &mut ImageState, ins: &Instruction, empty: bool) {
        st.config.history.push(History {
            created: Some(self.opts.created()),
            created_by: Some(ins.original.clone()),
            comment: Some("kolla-oci".into()),
            empty_layer: empty.then_some(true),
            ..Default::default()
        });
    }

    /// Use the cached result of step `key` if its blob is still in the store, or if the remote step
    /// cache has it (then recorded in the local cache too).
    fn cached(&self, st: &mut ImageState, ins: &Instruction, key: Digest) -> Result<Option<StepResult>, BuildError> {
        let hit = match self.cache.get(&key).or_else(|| self.remote_lookup(&key)) {
            Some(hit) => hit,
            None if self.opts.cache_wait.is_some() => self.wait_for_owner(ins, &key)?,
            None => return Ok(None),
        };
        let result = match hit.layer {
            Some(l) if self.ws.store().has_blob(&l.descriptor.digest) => {
                let dir = self.ws.ensure_layer_dir(&l.descriptor, &l.diff_id)?;
                self.push_layer(st, ins, l.descriptor, l.diff_id, dir);
                StepResult::Layer { from_cache: true }
            }
            Some(_) => return Ok(None),
            None => {
                self.history(st, ins, true);
                StepResult::Empty
            }
        };
        st.key = key;
        tracing::debug!("cached: {}", ins.original);
        Ok(Some(result))
    }

    /// Step `key` from `--cache-repo`, if given and it has the step. A registry that cannot be reached is
    /// a miss (the step is built), with a warning: the cache speeds builds up and must not break them.
    fn remote_lookup(&self, key: &Digest) -> Option<CachedStep> {
        let remote = self.opts.cache_repo.as_ref().filter(|_| self.opts.cache)?;
        match remote.lookup(self.ws.store(), key) {
            Ok(Some(step)) => {
                if let Err(e) = self.cache.put(key, &step) {
                    tracing::warn!("recording a remote cache hit locally: {e}");
                }
                Some(step)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(cache = remote.name(), "remote step cache lookup failed, building the step: {e}");
                None
            }
        }
    }

    /// Poll the remote cache for step `key` until its owner (another shard) publishes it, with backoff,
    /// up to `--shard-wait`.
    fn wait_for_owner(&self, ins: &Instruction, key: &Digest) -> Result<CachedStep, BuildError> {
        let (Some(wait), Some(remote)) = (&self.opts.cache_wait, &self.opts.cache_repo) else {
            return Err(BuildError::Input("waiting for another shard needs --cache-repo".into()));
        };
        let started = std::time::Instant::now();
        let mut pause = std::time::Duration::from_secs(1);
        tracing::info!(owner = %wait.owner, "waiting for shard {} to publish {:?}", wait.owner, ins.original);
        loop {
            if let Some(step) = self.remote_lookup(key) {
                return Ok(step);
            }
            if started.elapsed() >= wait.timeout {
                return Err(BuildError::Input(format!(
                    "{}:{}: waited {} s for shard {} (which builds this image) to publish step {:?} to {}; \
                     is that shard running? (--shard-wait)",
                    ins.path.display(),
                    ins.line,
                    started.elapsed().as_secs(),
                    wait.owner,
                    ins.original,
                    remote.name()
                )));
            }
            std::thread::sleep(pause.min(wait.timeout.saturating_sub(started.elapsed())));
            pause = (pause * 2).min(std::time::Duration::from_secs(15));
        }
    }

    /// Share step `key`'s result through `--cache-repo`; a failure is a warning (the build is fine).
    fn remote_publish(&self, st: &ImageState, key: &Digest, step: &CachedStep) {
        if let Some(remote) = &self.opts.cache_repo
            && let Err(e) = remote.publish(self.ws.store(), key, step, &st.config.platform())
        {
            tracing::warn!(cache = remote.name(), "publishing a step to the remote cache failed: {e}");
        }
    }

    fn push_layer(&self, st: &mut ImageState, ins: &Instruction, layer: Descriptor, diff_id: Digest, dir: PathBuf) {
        st.layers.push(layer);
        st.config.rootfs.diff_ids.push(diff_id);
        st.dirs.push(dir);
        self.history(st, ins, false);
    }

    /// Turn `dir` into the step's layer (none if it holds no change), record it in the cache.
    fn commit_dir(
        &self,
        st: &mut ImageState,
        ins: &Instruction,
        key: Digest,
        dir: &Path,
        overlay_upper: bool,
    ) -> Result<StepResult, BuildError> {
        let store: &Store = self.ws.store();
        let mut w = store.blob_writer()?;
        let tree =
            TreeOptions { source_date_epoch: self.opts.source_date_epoch, overlay_upper, threads: self.opts.threads };
        let info = layers::write_layer(dir, &tree, self.opts.compression, &mut w)
            .map_err(|e| BuildError::Layer { what: format!("layer of {:?}", ins.original), error: e })?;
        self.commit_written(st, ins, key, dir, info, w)
    }

    /// Store the layer `info` just written to `w` as the step's result (none if it has no entry), with
    /// `dir`, the tree it was written from, as its extracted form; record it in the cache.
    fn commit_written(
        &self,
        st: &mut ImageState,
        ins: &Instruction,
        key: Digest,
        dir: &Path,
        info: LayerInfo,
        w: BlobWriter,
    ) -> Result<StepResult, BuildError> {
        let result = if info.entries == 0 {
            drop(w);
            self.history(st, ins, true);
            let entry = CachedStep { layer: None };
            self.cache.put(&key, &entry).map_err(|e| BuildError::io(&self.ws.cache_dir(), "write cache", e))?;
            self.remote_publish(st, &key, &entry);
            StepResult::Empty
        } else {
            w.commit(Some(&info.digest))?;
            let descriptor = Descriptor::new(info.media_type, info.digest, info.size);
            let dir = self.ws.adopt_layer_dir(dir, &info.diff_id)?;
            let entry =
                CachedStep { layer: Some(CachedLayer { descriptor: descriptor.clone(), diff_id: info.diff_id }) };
            self.cache.put(&key, &entry).map_err(|e| BuildError::io(&self.ws.cache_dir(), "write cache", e))?;
            self.remote_publish(st, &key, &entry);
            self.push_layer(st, ins, descriptor, info.diff_id, dir);
            StepResult::Layer { from_cache: false }
        };
        st.key = key;
        Ok(result)
    }

    fn copy(
        &self,
        st: &mut ImageState,
        ins: &Instruction,
        spec: &CopySpec,
        add: bool,
    ) -> Result<StepResult, BuildError> {
        let mut sources = Vec::new();
        for s in &spec.sources {
            sources.extend(self.ctx.resolve(s)?);
        }
        let content = self.ctx.digest(&sources)?;
        let workdir = st.workdir();
        let dest = if spec.dest.starts_with('/') {
            spec.dest.clone()
        } else {
            format!("{}/{}", workdir.trim_end_matches('/'), spec.dest)
        };
        let heredocs: Vec<&str> = spec.heredocs.iter().flat_map(|d| [d.name.as_str(), d.content.as_str()]).collect();
        let key = Key::new(if add { "add" } else { "copy" }, &st.key)
            .list("sources", &spec.sources)
            .field("content", content.as_bytes())
            .list("heredocs", &heredocs)
            .field("dest", &dest)
            .field("chown", spec.chown.as_deref().unwrap_or_default())
            .field("chmod", spec.chmod.as_deref().unwrap_or_default())
            .finish();
        if let Some(r) = self.cached(st, ins, key)? {
            return Ok(r);
        }
        let lowers = st.top_first();
        let view = RootView::new(&lowers);
        let owner = spec.chown.as_deref().map(|o| view.resolve_owner(o)).transpose()?;
        let tmp = self.ws.temp_dir("stage-")?;
        let root = tmp.path().join("root");
        fs::create_dir(&root).map_err(|e| BuildError::io(&root, "create directory", e))?;
        let stage_opts = StageOptions { owner, mode: spec.mode(), extract_archives: add };
        let single = if spec.heredocs.is_empty() { &sources[..] } else { &[] };
        if let Some(pass) = OnePass::plan(&view, &root, single, &dest, &stage_opts)? {
            let mut w = self.ws.store().blob_writer()?;
            let tree = TreeOptions {
                source_date_epoch: self.opts.source_date_epoch,
                threads: self.opts.threads,
                ..Default::default()
            };
            let info = pass.run(&tree, self.opts.compression, &mut w)?;
            return self.commit_written(st, ins, key, &root, info, w);
        }
        if !sources.is_empty() {
            context::stage(&view, &root, &sources, &dest, &stage_opts)?;
        }
        if !spec.heredocs.is_empty() {
            let files =
                tempfile::tempdir_in(tmp.path()).map_err(|e| BuildError::io(tmp.path(), "create temp dir", e))?;
            let mut paths = Vec::new();
            for doc in &spec.heredocs {
                paths.push(write_heredoc(files.path(), &doc.name, &doc.content, 0o644)?);
            }
            context::stage(&view, &root, &paths, &dest, &stage_opts)?;
        }
        self.commit_dir(st, ins, key, &root, false)
    }

    fn run(&self, st: &mut ImageState, ins: &Instruction, log: &mut dyn Write) -> Result<StepResult, BuildError> {
        let Kind::Run(spec) = &ins.kind else { unreachable!() };
        let (argv, file) = match spec.script() {
            RunScript::Exec(argv) => (argv, None),
            RunScript::Shell { script, file } => {
                let mut v = rules::shell(&st.config);
                v.push(script);
                (v, file)
            }
        };
        // What RUN gets on top of the config's Env (`Expander::run_env`), minus names the config sets.
        let config_env = &st.config.config.env;
        let extra = |vars: Vec<(String, String)>| {
            vars.into_iter()
                .filter(|(k, _)| !config_env.iter().any(|e| e.split_once('=').is_some_and(|(ek, _)| ek == k)))
                .map(|(k, v)| format!("{k}={v}"))
        };
        let mut env: Vec<String> = config_env.iter().cloned().chain(extra(self.ex.args_in_effect())).collect();
        let user = st.config.config.user.clone().unwrap_or_default();
        let cwd = st.workdir();
        let script_file: Vec<&str> = file.iter().flat_map(|f| [f.name.as_str(), f.content.as_str()]).collect();
        // The env a RUN sees, except undeclared proxy arguments (see `Expander::args_in_effect`).
        let key = Key::new("run", &st.key)
            .list("argv", &argv)
            .list("script-file", &script_file)
            .list("env", &env)
            .field("user", &user)
            .field("workdir", &cwd)
            .finish();
        env.extend(extra(self.ex.undeclared_proxies()));
        if let Some(r) = self.cached(st, ins, key)? {
            return Ok(r);
        }
        let tmp = self.ws.temp_dir("run-")?;
        let (upper, work) = (tmp.path().join("upper"), tmp.path().join("work"));
        for d in [&upper, &work] {
            fs::create_dir(d).map_err(|e| BuildError::io(d, "create directory", e))?;
        }
        let mut binds = Vec::new();
        if let Some(f) = file {
            let pipes = tmp.path().join("pipes");
            fs::create_dir(&pipes).map_err(|e| BuildError::io(&pipes, "create directory", e))?;
            write_heredoc(&pipes, &f.name, &f.content, 0o755)?;
            binds.push(sandbox::Bind { source: pipes, target: "/dev/pipes".into(), readonly: true });
        }
        if self.opts.network == sandbox::NetworkMode::Private {
            warn_loopback_proxy(&env);
        }
        if let Some(bundle) = &self.opts.ca_bundle {
            let dir = tmp.path().join("ca");
            let dest = dir.join("ca-certificates.crt");
            fs::create_dir(&dir).map_err(|e| BuildError::io(&dir, "create directory", e))?;
            fs::copy(bundle, &dest).map_err(|e| BuildError::io(bundle, "copy CA bundle", e))?;
            let target = Path::new(super::RUN_CA_BUNDLE).parent().unwrap_or(Path::new("/dev"));
            binds.push(sandbox::Bind { source: dir, target: target.to_string_lossy().into_owned(), readonly: true });
            for var in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"] {
                if !env.iter().any(|e| e.split_once('=').is_some_and(|(k, _)| k == var)) {
                    env.push(format!("{var}={}", super::RUN_CA_BUNDLE));
                }
            }
        }
        let run = sandbox::RunSpec {
            lowerdirs: st.top_first(),
            upperdir: upper.clone(),
            workdir: work,
            argv,
            env,
            user,
            cwd,
            hostname: String::new(),
            binds,
            network: self.opts.network,
        };
        let _ = writeln!(log, "--> {}", ins.original);
        let mut tail = Tail { log, buf: VecDeque::with_capacity(TAIL_BYTES) };
        let code = sandbox::run(&run, &mut tail)?;
        if code != 0 {
            return Err(BuildError::RunFailed { command: ins.original.clone(), code, tail: tail.lines() });
        }
        self.commit_dir(st, ins, key, &upper, true)
    }
}

/// Warns (once per process) when a proxy variable of a RUN names the host's loopback, which a RUN in
/// its own network namespace cannot reach: the build then fails on the first download, and the
/// message says why and what to do. Only the variable's name is logged: its value may hold a password.
fn warn_loopback_proxy(env: &[String]) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    if let Some(var) = loopback_proxy(env) {
        WARNED.call_once(|| {
            tracing::warn!(
                "{var} points at the build host's loopback, which RUN steps cannot reach in their own network \
                 namespace (--network private); use a proxy address other than loopback, or --network host"
            )
        });
    }
}

/// The first proxy variable (`http_proxy`, `HTTPS_PROXY`, …) of `env` whose host is a loopback address.
fn loopback_proxy(env: &[String]) -> Option<&str> {
    let loopback = |url: &str| {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let host_port = rest.split('/').next().unwrap_or("").rsplit('@').next().unwrap_or("");
        let host = match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => host_port.split(':').next().unwrap_or(""),
        };
        host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    };
    env.iter().filter_map(|e| e.split_once('=')).find_map(|(k, v)| {
        let proxy = matches!(k.to_ascii_lowercase().as_str(), "http_proxy" | "https_proxy" | "ftp_proxy" | "all_proxy");
        (proxy && loopback(v)).then_some(k)
    })
}

/// Write a here-document body as file `name` in `dir` with `mode` (the parser allows only plain names).
fn write_heredoc(dir: &Path, name: &str, content: &str, mode: u32) -> Result<PathBuf, BuildError> {
    use std::os::unix::fs::PermissionsExt as _;
    let p = dir.join(name);
    fs::write(&p, content).map_err(|e| BuildError::io(&p, "write here-document", e))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).map_err(|e| BuildError::io(&p, "chmod", e))?;
    Ok(p)
}

/// Passes output through to the log and keeps its last bytes for an error message.
struct Tail<'a> {
    log: &'a mut dyn Write,
    buf: VecDeque<u8>,
}

impl Tail<'_> {
    fn lines(&self) -> String {
        let bytes: Vec<u8> = self.buf.iter().copied().collect();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

impl Write for Tail<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // A log that cannot be written must not fail the build: the tail still goes into the error.
        let _ = self.log.write_all(data);
        let keep = &data[data.len().saturating_sub(TAIL_BYTES)..];
        let excess = (self.buf.len() + keep.len()).saturating_sub(TAIL_BYTES);
        self.buf.drain(..excess);
        self.buf.extend(keep);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.log.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_proxy;

    #[test]
    fn loopback_proxies_are_found_by_host() {
        let env = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(loopback_proxy(&env(&["PATH=/bin", "HTTPS_PROXY=http://u:p@127.0.0.1:3128"])), Some("HTTPS_PROXY"));
        assert_eq!(loopback_proxy(&env(&["http_proxy=localhost:8080"])), Some("http_proxy"));
        assert_eq!(loopback_proxy(&env(&["all_proxy=socks5://[::1]:1080/"])), Some("all_proxy"));
        assert_eq!(loopback_proxy(&env(&["http_proxy=http://proxy.corp:3128", "no_proxy=127.0.0.1"])), None);
        assert_eq!(loopback_proxy(&env(&["http_proxy=http://127.0.0.1.example:3128"])), None);
    }
}
