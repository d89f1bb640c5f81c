//! One Dockerfile → one image in the store (see the module docs of [`crate::builder`]).

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use layers::{Compression, Digest, LayerInfo, TreeOptions};

use super::background::Background;
use super::bootstrap;
use super::cache::{self, CachedLayer, CachedStep, CopyInputs, RunInputs, StepCache};
use super::context::{self, BuildContext, StageOptions};
use super::fleet::Waited;
use super::footprint::SkeletonFile;
use super::handoff::{Handoff, InRun, Written};
use super::one_pass::OnePass;
use super::rules::{self, RuleState};
use super::view::RootView;
use super::workspace::ScratchDir;
use super::{BuildError, BuildOptions, Workspace};
use crate::dockerfile::{self, CopySpec, Expander, Instruction, Kind, PlatformRole, RunScript};
use crate::sandbox;
use crate::store::{BlobWriter, Descriptor, History, ImageConfig, Platform};

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
    /// The other images of this run: a `FROM` naming one of them starts from it before its layers are
    /// compressed, and this image is handed off to its own children the same way (`None`: one image).
    pub in_run: Option<&'a InRun<'a>>,
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
    /// The manifest's layers; `None` while a layer is compressed in the background.
    layers: Vec<Option<Descriptor>>,
    /// Where the layers' extracted dirs are, base first. A dir is extracted when a step mounts the layers
    /// ([`ImageState::lower_dirs`]): a rebuild that runs no step extracts nothing.
    dirs: Vec<PathBuf>,
    /// Cache chain key of everything so far.
    key: Digest,
    /// Which `FROM` of the Dockerfile this is (0 for the first): layers compressed for an earlier stage
    /// are not this image's.
    stage: usize,
    /// The image of this run it starts from (as named in `FROM`), whose layer descriptors come when that
    /// image is written.
    inherited: Option<(String, Arc<Handoff>)>,
    /// What the config rules remember across instructions.
    rules: RuleState,
    /// When the newest of its layers so far was made (seconds since the epoch): its base image's
    /// `created`, then each layer's time. The image's `created` (see [`BuildOptions::created`]).
    newest: i64,
    /// How many layers and history entries came with the `FROM` image: what `--squash` keeps.
    base: (usize, usize),
}

/// A layer whose blob the background thread has written.
struct Compressed {
    stage: usize,
    /// Its position in `ImageState::layers`.
    index: usize,
    layer: Descriptor,
}

impl ImageState {
    fn fill(&mut self, done: Compressed) {
        if done.stage == self.stage {
            self.layers[done.index] = Some(done.layer);
        }
    }

    /// The layers' extracted dirs, top layer first (overlayfs lowerdir order), extracting those that are
    /// not there (trimmed, or a cached step's): what a RUN mounts and a COPY resolves its destination in.
    fn lower_dirs(&self, ws: &Workspace) -> Result<Vec<PathBuf>, BuildError> {
        for ((dir, layer), diff_id) in self.dirs.iter().zip(&self.layers).zip(&self.config.rootfs.diff_ids) {
            match layer {
                Some(layer) => {
                    ws.ensure_layer_dir(layer, diff_id)?;
                }
                // Built by this run (its blob may still be compressing): its dir was adopted then.
                None if dir.is_dir() => {}
                None => return Err(BuildError::Input(format!("layer dir {} of {diff_id} is gone", dir.display()))),
            }
        }
        Ok(self.dirs.iter().rev().cloned().collect())
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
    let ctx = BuildContext::new(req.context, req.dockerfile)?;
    // Never an image of the host's platform by mistake: RUN of another platform's binaries needs qemu-user.
    crate::platform::check_runnable(&opts.platform)?;
    let cache = StepCache::new(ws.cache_dir(), opts.cache);
    std::thread::scope(|scope| {
        let mut bg = Background::new(scope);
        let steps = Steps { ws, ctx: &ctx, cache: &cache, opts };
        let (mut state, mut counts) = steps.all(req, &df, &mut bg, log)?;
        if opts.squash && state.dirs.len() > state.base.0 + 1 {
            match steps.squash(&mut state).map_err(|e| BuildError::Input(format!("--squash of {}: {e}", req.tag)))? {
                true => counts.built += 1,
                false => counts.cached += 1,
            }
        }
        finish_config(&mut state, opts);
        let handoff = req
            .in_run
            .map(|r| r.publish(req.tag, &state.config, state.dirs.clone(), state.layers.clone()))
            .transpose()?;
        let written = write_image(ws, req, &mut state, bg, opts.keep_platforms);
        if let Some(h) = handoff {
            h.complete(written.as_ref().map(Written::clone).map_err(|e| e.to_string()));
        }
        let written = written?;
        let from_images = counts
            .from
            .into_iter()
            .filter_map(|(name, base)| match base {
                Base::Scratch => None,
                Base::Stored(digest) => Some(Ok(crate::attest::ImageRef { name, digest })),
                Base::InRun(h) => {
                    Some(inherited(&h, &name).map(|w| crate::attest::ImageRef { name, digest: w.descriptor.digest }))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(BuildOutcome {
            manifest: written.descriptor,
            layers_built: counts.built,
            layers_cached: counts.cached,
            from_images,
            dockerfile: dockerfile_digest,
        })
    })
}

/// Waits for the image's layers (compressed in the background here, or by the image of this run it
/// starts from), then writes its manifest and tags it (beside the tag's images of other platforms, with
/// `keep_platforms`).
fn write_image(
    ws: &Workspace,
    req: &BuildRequest,
    state: &mut ImageState,
    bg: Background<'_, '_, Compressed>,
    keep_platforms: bool,
) -> Result<Written, BuildError> {
    let finished = bg.finish()?;
    for done in finished.results {
        state.fill(done);
    }
    if !finished.busy.is_zero() {
        tracing::debug!(
            image = req.tag,
            compressing_s = format!("{:.2}", finished.busy.as_secs_f64()),
            waited_s = format!("{:.2}", finished.waited.as_secs_f64()),
            "layers compressed in the background (waited_s: the part left when the last step ended)"
        );
    }
    if let Some((name, h)) = state.inherited.take() {
        for (slot, layer) in state.layers.iter_mut().zip(inherited(&h, &name)?.layers) {
            *slot = Some(layer);
        }
    }
    let layers: Vec<Descriptor> = state.layers.iter().map(|l| l.clone().expect("every layer was written")).collect();
    let store = ws.store();
    let descriptor = store.write_image(&state.config, &layers)?;
    match keep_platforms {
        true => store.set_platform_tag(req.tag, &descriptor).map(drop)?,
        false => store.set_tag(req.tag, &descriptor)?,
    }
    Ok(Written { descriptor, layers })
}

/// The result of the image of this run named `name` in a `FROM`; its failure is this image's.
fn inherited(h: &Handoff, name: &str) -> Result<Written, BuildError> {
    h.wait().map_err(|e| BuildError::BaseImage { image: name.to_owned(), reason: format!("its build failed: {e}") })
}

/// Where a `FROM` starts.
enum Base {
    Scratch,
    /// An image in the store, by manifest digest.
    Stored(Digest),
    /// An image of this run still being written.
    InRun(Arc<Handoff>),
}

/// What the steps of one image did.
#[derive(Default)]
struct Counts {
    built: usize,
    cached: usize,
    /// Each `FROM` image as written, in Dockerfile order.
    from: Vec<(String, Base)>,
}

/// What every step of one image needs, for as long as its background compression runs.
#[derive(Clone, Copy)]
struct Steps<'a> {
    ws: &'a Workspace,
    ctx: &'a BuildContext,
    cache: &'a StepCache,
    opts: &'a BuildOptions,
}

impl<'a> Steps<'a> {
    /// Runs every instruction of `df`; layers still being compressed are left to `bg`.
    fn all<'scope, 'env>(
        self,
        req: &BuildRequest,
        df: &dockerfile::Dockerfile,
        bg: &mut Background<'scope, 'env, Compressed>,
        log: &mut dyn Write,
    ) -> Result<(ImageState, Counts), BuildError>
    where
        'a: 'scope,
    {
        let Steps { ws, opts, .. } = self;
        let mut ex = Expander::new(opts.build_args.clone());
        for (role, p) in [(PlatformRole::Target, opts.platform.clone()), (PlatformRole::Build, crate::platform::host())]
        {
            ex.set_platform(role, &p.os, &p.architecture, p.variant.as_deref());
        }
        let mut st: Option<ImageState> = None;
        let mut counts = Counts::default();
        let total = df.instructions.len();
        for (n, raw) in df.instructions.iter().enumerate() {
            // buildah's progress lines, in the build log.
            let _ = writeln!(log, "STEP {}/{total}: {}", n + 1, raw.original);
            let ins = ex.expand(raw)?;
            let at = |e: BuildError| BuildError::At {
                path: req.dockerfile.to_path_buf(),
                line: ins.line,
                error: Box::new(e),
            };
            if let Kind::From(from) = &ins.kind {
                let (mut state, base) = from_image(ws, &from.image, opts, req.in_run).map_err(at)?;
                state.stage = st.as_ref().map_or(0, |s| s.stage + 1);
                ex.set_base_env(&state.config.config.env);
                st = Some(state);
                counts.from.push((from.image.clone(), base));
                continue;
            }
            let Some(state) = st.as_mut() else {
                // The parser allows only ARG before FROM; ARG needs no image.
                continue;
            };
            let mut step = Step { steps: self, ex: &ex, bg: &mut *bg };
            match step.apply(state, &ins, log).map_err(at)? {
                StepResult::Config => {}
                StepResult::Layer { from_cache } if from_cache => counts.cached += 1,
                StepResult::Layer { .. } => counts.built += 1,
                StepResult::Empty => {}
            }
            // A background compression that failed stops the build here rather than at the end.
            for done in bg.poll()? {
                state.fill(done);
            }
        }
        for name in ex.unused_build_args() {
            tracing::warn!("{}: build argument {name:?} was given but not declared with ARG", req.dockerfile.display());
        }
        let state =
            st.ok_or_else(|| BuildError::Input(format!("{}: no FROM instruction", req.dockerfile.display())))?;
        Ok((state, counts))
    }

    /// `--squash`: replaces the image's own layers by one made of their merge (see
    /// [`super::squash`]), kept in the step cache like a step's; its own history entries stay,
    /// marked as making no layer, and one entry for the merged layer follows them. Returns whether
    /// the merged layer was made now (else it came from the cache).
    fn squash(self, st: &mut ImageState) -> Result<bool, BuildError> {
        let Steps { ws, cache, opts, .. } = self;
        let (base_layers, base_history) = st.base;
        let merged = st.dirs.len() - base_layers;
        let key = cache::squash_key(&st.key);
        let hit = cache.get(&key).and_then(|hit| hit.layer.map(|l| (l, hit.created.unwrap_or(st.newest))));
        let (layer, made) = match hit.filter(|(l, _)| ws.store().has_blob(&l.descriptor.digest)) {
            Some((l, time)) => {
                let dir = ws.ensure_layer_dir(&l.descriptor, &l.diff_id)?;
                (Some((l.descriptor, l.diff_id, dir, time)), false)
            }
            None => {
                let tmp = ws.temp_dir("squash-")?;
                let root = tmp.path().join("root");
                fs::create_dir(&root).map_err(|e| BuildError::io(&root, "create directory", e))?;
                st.lower_dirs(ws)?;
                let parent: Vec<PathBuf> = st.dirs[..base_layers].iter().rev().cloned().collect();
                super::squash::merge_layers(&st.dirs[base_layers..], &RootView::new(&parent), &root)?;
                let tree = TreeOptions {
                    source_date_epoch: opts.source_date_epoch,
                    overlay_upper: true,
                    threads: opts.threads,
                };
                let mut w = ws.store().blob_writer()?;
                let info = layers::write_layer(&root, &tree, opts.compression, &mut w)
                    .map_err(|e| BuildError::Layer { what: format!("the merge of {merged} layers"), error: e })?;
                let layer = if info.entries == 0 {
                    cache
                        .put(&key, &CachedStep { layer: None, created: None })
                        .map_err(|e| BuildError::io(&ws.cache_dir(), "write cache", e))?;
                    None
                } else {
                    w.commit(Some(&info.digest))?;
                    let dir = ws.adopt_layer_dir(&root, &info.diff_id)?;
                    let descriptor = Descriptor::new(info.media_type, info.digest, info.size);
                    let entry = CachedStep {
                        layer: Some(CachedLayer { descriptor: descriptor.clone(), diff_id: info.diff_id }),
                        created: Some(st.newest),
                    };
                    cache.put(&key, &entry).map_err(|e| BuildError::io(&ws.cache_dir(), "write cache", e))?;
                    Some((descriptor, info.diff_id, dir, st.newest))
                };
                (layer, true)
            }
        };
        st.layers.truncate(base_layers);
        st.dirs.truncate(base_layers);
        st.config.rootfs.diff_ids.truncate(base_layers);
        for h in &mut st.config.history[base_history..] {
            h.empty_layer = Some(true);
        }
        if let Some((descriptor, diff_id, dir, time)) = layer {
            st.layers.push(Some(descriptor));
            st.dirs.push(dir);
            st.config.rootfs.diff_ids.push(diff_id);
            st.config.history.push(History {
                created: Some(opts.created(time)),
                created_by: Some(format!("kolla-oci --squash: the {merged} layers above merged into one")),
                comment: Some("kolla-oci".into()),
                ..Default::default()
            });
        }
        st.key = key;
        // Layers of this image still compressing in the background are not its layers any more.
        st.stage += 1;
        Ok(made)
    }
}

/// The starting point of a build: `scratch`, an image of this run, an image in the store, or one fetched
/// or bootstrapped.
fn from_image(
    ws: &Workspace,
    name: &str,
    opts: &BuildOptions,
    in_run: Option<&InRun>,
) -> Result<(ImageState, Base), BuildError> {
    if name == "scratch" {
        let platform = &opts.platform;
        let config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            ..Default::default()
        };
        let state = ImageState {
            config,
            layers: vec![],
            dirs: vec![],
            key: cache::chain_start(None, &platform.to_string(), &shaping(opts)),
            stage: 0,
            inherited: None,
            rules: RuleState::default(),
            newest: 0,
            base: (0, 0),
        };
        return Ok((state, Base::Scratch));
    }
    if let Some(h) = in_run.and_then(|r| r.get(name)) {
        tracing::debug!("FROM {name}: starting from its layer dirs, its blobs may still be compressing");
        let state = ImageState {
            key: from_key(&h.config, opts),
            newest: created_of(&h.config),
            config: h.config.clone(),
            layers: h.layers.clone(),
            dirs: h.dirs.clone(),
            stage: 0,
            inherited: Some((name.to_owned(), Arc::clone(&h))),
            rules: RuleState::default(),
            base: (h.dirs.len(), h.config.history.len()),
        };
        return Ok((state, Base::InRun(h)));
    }
    if ws.store().image_for(name, &opts.platform)?.is_none() || opts.pull {
        // Not while waiting for another shard to share it: that shard may be building on this state dir.
        let _one_at_a_time = match opts.cache_wait {
            None => Some(ws.lock_root_image(name, &opts.platform.to_string())?),
            Some(_) => None,
        };
        // Another build may have got it while this one waited.
        let present = ws.store().image_for(name, &opts.platform)?.is_some();
        if !present || opts.pull {
            bootstrap::fetch_base(ws, name, opts, present)?;
        }
    }
    let image = ws.store().image_for(name, &opts.platform)?.ok_or_else(|| BuildError::BaseImage {
        image: name.into(),
        reason: format!("the store has no {} image of it", opts.platform),
    })?;
    let diff_ids = &image.config.rootfs.diff_ids;
    if diff_ids.len() != image.manifest.layers.len() {
        return Err(BuildError::BaseImage {
            image: name.into(),
            reason: format!("{} layers but {} diff_ids in its config", image.manifest.layers.len(), diff_ids.len()),
        });
    }
    let dirs: Vec<PathBuf> = diff_ids.iter().map(|d| ws.layer_dir(d)).collect();
    let state = ImageState {
        key: from_key(&image.config, opts),
        newest: created_of(&image.config),
        base: (dirs.len(), image.config.history.len()),
        config: image.config,
        layers: image.manifest.layers.into_iter().map(Some).collect(),
        dirs,
        stage: 0,
        inherited: None,
        rules: RuleState::default(),
    };
    Ok((state, Base::Stored(image.manifest_digest)))
}

/// The `created` time of a base image's config, in seconds (0 when it has none).
fn created_of(config: &ImageConfig) -> i64 {
    config.created.as_deref().and_then(super::parse_rfc3339).unwrap_or(0)
}

/// The image's `created` time and its build-time labels (`docker build --label`), set once its last
/// instruction has run.
fn finish_config(state: &mut ImageState, opts: &BuildOptions) {
    let created = opts.created(state.newest);
    for (key, label) in &opts.labels {
        let value = match label {
            super::Label::Text(text) => text.clone(),
            super::Label::Created => created.clone(),
            super::Label::BuildDate => created[..10].replace('-', ""),
        };
        state.config.config.labels.insert(key.clone(), value);
    }
    state.config.created = Some(created);
}

/// The step key of a `FROM`: the base image's layers by diff_id, and its platform. Not its manifest
/// digest, which depends on how the layers were compressed: a child of an image of this run starts
/// before that is known (see [`super::handoff`]). What else of the base config a step depends on (env,
/// user, workdir, shell) is in that step's own key.
fn from_key(config: &ImageConfig, opts: &BuildOptions) -> Digest {
    let diff_ids: Vec<String> = config.rootfs.diff_ids.iter().map(Digest::to_string).collect();
    cache::chain_start(Some(&diff_ids), &config.platform().to_string(), &shaping(opts))
}

/// The build-wide inputs that shape every layer (see `cache.rs`).
fn shaping(opts: &BuildOptions) -> cache::LayerShaping {
    cache::LayerShaping { compression: opts.compression, source_date_epoch: opts.source_date_epoch }
}

enum StepResult {
    /// Only the config changed.
    Config,
    /// A layer was added.
    Layer { from_cache: bool },
    /// The step ran but changed no file: no layer.
    Empty,
}

/// One step: what every step of the image needs, the expander as of this instruction, and the thread
/// that compresses the image's layers.
struct Step<'a, 'e, 'scope, 'env> {
    steps: Steps<'a>,
    ex: &'e Expander,
    bg: &'e mut Background<'scope, 'env, Compressed>,
}

impl<'a: 'scope, 'scope> Step<'a, '_, 'scope, '_> {
    fn apply(&mut self, st: &mut ImageState, ins: &Instruction, log: &mut dyn Write) -> Result<StepResult, BuildError> {
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
        self.history(st, ins, None);
        Ok(StepResult::Config)
    }

    /// The history entry of `ins`: with `layer_time`, for the layer it made then (which makes it the
    /// image's newest layer if it is); without, for an instruction that made no layer (dated like the
    /// newest layer so far, so that it does not change between identical builds).
    fn history(&self, st: &mut ImageState, ins: &Instruction, layer_time: Option<i64>) {
        if let Some(t) = layer_time {
            st.newest = st.newest.max(t);
        }
        let empty = layer_time.is_none();
        st.config.history.push(History {
            created: Some(self.steps.opts.created(layer_time.unwrap_or(st.newest))),
            created_by: Some(ins.original.clone()),
            comment: Some("kolla-oci".into()),
            empty_layer: empty.then_some(true),
            ..Default::default()
        });
    }

    /// Use the cached result of step `key` if its blob is still in the store, or if the remote step
    /// cache has it (then recorded in the local cache too). For an image another shard builds, wait for
    /// its owner to publish the step — unless the owner is lost and this shard acts for it: then the step
    /// is built here (`None`).
    fn cached(&self, st: &mut ImageState, ins: &Instruction, key: Digest) -> Result<Option<StepResult>, BuildError> {
        // A local entry whose blob is gone (a `gc`) is a miss: the remote cache or the owner may have it.
        let store = self.steps.ws.store();
        let local = self
            .steps
            .cache
            .get(&key)
            .filter(|h| h.layer.as_ref().is_none_or(|l| store.has_blob(&l.descriptor.digest)));
        let from_elsewhere = local.is_none();
        let hit = match local {
            Some(hit) => hit,
            None => match (self.remote_hit(&key)?, &self.steps.opts.cache_wait) {
                (Some(hit), _) => hit,
                (None, Some(wait)) => match self.wait_for_owner(wait, ins, &key)? {
                    Some(hit) => hit,
                    None => return Ok(None),
                },
                (None, None) => return Ok(None),
            },
        };
        let result = match hit.layer {
            Some(l) if store.has_blob(&l.descriptor.digest) => {
                // A local hit's dir is extracted when a step mounts it; one from the remote cache or an owner
                // now, which checks the fetched blob against the diff_id the entry claims.
                let dir = if from_elsewhere {
                    self.steps.ws.ensure_layer_dir(&l.descriptor, &l.diff_id)?
                } else {
                    self.steps.ws.layer_dir(&l.diff_id)
                };
                self.push_layer(st, ins, Some(l.descriptor), l.diff_id, dir, hit.created.unwrap_or(0));
                StepResult::Layer { from_cache: true }
            }
            Some(_) => return Ok(None),
            None => {
                self.history(st, ins, None);
                StepResult::Empty
            }
        };
        st.key = key;
        tracing::debug!("cached: {}", ins.original);
        Ok(Some(result))
    }

    /// Step `key` from `--cache-repo`, if given and it has the step. A registry that cannot be reached is
    /// a miss (the step is built), with a warning: the cache speeds builds up and must not break them.
    /// An entry's layer is used only once its blob has hashed, uncompressed, to the diff_id the entry
    /// claims — even when a layer dir of that name exists here already, which would otherwise lend an
    /// evil blob the honest layer's files; an entry that fails the check fails the step.
    fn remote_hit(&self, key: &Digest) -> Result<Option<CachedStep>, BuildError> {
        let Some(remote) = self.steps.opts.cache_repo.as_ref().filter(|_| self.steps.opts.cache) else {
            return Ok(None);
        };
        let step = match remote.lookup(self.steps.ws.store(), key) {
            Ok(Some(step)) => step,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::warn!(cache = remote.name(), "remote step cache lookup failed, building the step: {e}");
                return Ok(None);
            }
        };
        if let Some(l) = &step.layer {
            match self.steps.ws.verified_layer_dir(&l.descriptor, &l.diff_id) {
                Ok(_) => {}
                Err(BuildError::DiffIdMismatch { layer, claimed, actual }) => {
                    return Err(crate::registry::RegistryError::DigestMismatch {
                        what: format!(
                            "uncompressed layer {layer} of cache entry {}:{} (refused: not the diff_id the entry claims)",
                            remote.name(),
                            key.hex()
                        ),
                        expected: claimed.to_string(),
                        actual: actual.to_string(),
                    }
                    .into());
                }
                Err(e) => return Err(e),
            }
        }
        if let Err(e) = self.steps.cache.put(key, &step) {
            tracing::warn!("recording a remote cache hit locally: {e}");
        }
        Ok(Some(step))
    }

    /// Poll the remote cache for step `key` until its owner (another shard) publishes it, fails, or is
    /// lost with this shard acting for it (`None`: build it here); at most `--shard-wait`.
    fn wait_for_owner(
        &self,
        wait: &super::CacheWait,
        ins: &Instruction,
        key: &Digest,
    ) -> Result<Option<CachedStep>, BuildError> {
        match wait.wait(&format!("{:?}", ins.original), || self.remote_hit(key))? {
            Waited::Got(step) => Ok(Some(step)),
            Waited::TakeOver => Ok(None),
            Waited::TimedOut(waited) => Err(BuildError::Input(format!(
                "{}:{}: waited {} s for shard {} (which builds this image) to publish step {:?} to {}; \
                 is that shard running? (--shard-wait)",
                ins.path.display(),
                ins.line,
                waited.as_secs(),
                wait.owner_name(),
                ins.original,
                self.steps.opts.cache_repo.as_ref().map_or("--cache-repo", |r| r.name())
            ))),
        }
    }

    /// Adds a layer made at `time` (seconds since the epoch) to the image.
    fn push_layer(
        &self,
        st: &mut ImageState,
        ins: &Instruction,
        layer: Option<Descriptor>,
        diff_id: Digest,
        dir: PathBuf,
        time: i64,
    ) {
        st.layers.push(layer);
        st.config.rootfs.diff_ids.push(diff_id);
        st.dirs.push(dir);
        self.history(st, ins, Some(time));
    }

    /// Turn `dir` into the step's layer (none if it holds no change). The uncompressed tar is hashed
    /// here: its diff_id names the layer dir, which the next step can use at once. The compressed blob
    /// is written by `bg` (in the background), which also records the step in the cache once the blob is
    /// in the store. `scratch` holds `dir` if it is a temp dir: it must live until the blob is written.
    fn commit_dir(
        &mut self,
        st: &mut ImageState,
        ins: &Instruction,
        key: Digest,
        dir: &Path,
        overlay_upper: bool,
        scratch: ScratchDir,
    ) -> Result<StepResult, BuildError> {
        let steps = self.steps;
        let Steps { ws, opts, .. } = steps;
        let tree = TreeOptions { source_date_epoch: opts.source_date_epoch, overlay_upper, threads: opts.threads };
        let what = || format!("layer of {:?}", ins.original);
        let diff = layers::write_layer(dir, &tree, Compression::None, io::sink())
            .map_err(|e| BuildError::Layer { what: what(), error: e })?;
        if diff.entries == 0 {
            return self.no_change(st, ins, key);
        }
        st.key = key;
        let adopted = ws.adopt_layer_dir(dir, &diff.diff_id)?;
        // Compress the tree that was hashed: `dir` itself once adopted, else (a layer dir with this diff_id
        // was there already) our own copy, which stays in `scratch` until then.
        let source = if dir.exists() { dir.to_path_buf() } else { adopted.clone() };
        let index = st.layers.len();
        let time = opts.layer_time();
        self.push_layer(st, ins, None, diff.diff_id, adopted, time);
        let (platform, stage) = (st.config.platform(), st.stage);
        let (path, line, what) = (ins.path.clone(), ins.line, what());
        let job = move || {
            let _scratch = scratch;
            let at = |e: BuildError| BuildError::At { path: path.to_path_buf(), line, error: Box::new(e) };
            let mut w = ws.store().blob_writer().map_err(|e| at(e.into()))?;
            let mut skeleton = ws.skeleton_file().map_err(at)?;
            let info = layers::write_layer_split(&source, &tree, opts.compression, &mut w, &mut skeleton)
                .map_err(|e| at(BuildError::Layer { what: what.clone(), error: e }))?;
            if info.diff_id != diff.diff_id {
                return Err(at(BuildError::Input(format!(
                    "{what}: {} changed while it was compressed (diff_id {} before, {} after)",
                    source.display(),
                    diff.diff_id,
                    info.diff_id
                ))));
            }
            w.commit(Some(&info.digest)).map_err(|e| at(e.into()))?;
            keep_split(ws, skeleton, &info, opts.compression);
            let layer = record_layer(steps, &key, &info, &platform, time).map_err(at)?;
            Ok(Compressed { stage, index, layer })
        };
        if opts.compression == Compression::None {
            // Nothing to take off the critical path: the blob is the tar just hashed. (The job locates its
            // errors for the background; here the caller does.)
            st.fill(job().map_err(|e| match e {
                BuildError::At { error, .. } => *error,
                e => e,
            })?);
        } else {
            self.bg.submit(job);
        }
        Ok(StepResult::Layer { from_cache: false })
    }

    /// Store the layer just written (`info`, its blob `w` and `skeleton`) together with its tree `dir` (COPY of
    /// one source in one pass: compression ran alongside the copy, so nothing is left for the background).
    fn commit_written(
        &mut self,
        st: &mut ImageState,
        ins: &Instruction,
        key: Digest,
        dir: &Path,
        (info, w, skeleton): (LayerInfo, BlobWriter, SkeletonFile),
    ) -> Result<StepResult, BuildError> {
        if info.entries == 0 {
            return self.no_change(st, ins, key);
        }
        st.key = key;
        w.commit(Some(&info.digest))?;
        keep_split(self.steps.ws, skeleton, &info, self.steps.opts.compression);
        let adopted = self.steps.ws.adopt_layer_dir(dir, &info.diff_id)?;
        let time = self.steps.opts.layer_time();
        let descriptor = record_layer(self.steps, &key, &info, &st.config.platform(), time)?;
        self.push_layer(st, ins, Some(descriptor), info.diff_id, adopted, time);
        Ok(StepResult::Layer { from_cache: false })
    }

    /// Step `key` changed no file: no layer, and the cache remembers that.
    fn no_change(&mut self, st: &mut ImageState, ins: &Instruction, key: Digest) -> Result<StepResult, BuildError> {
        st.key = key;
        self.history(st, ins, None);
        record(self.steps, &key, &CachedStep { layer: None, created: None }, &st.config.platform())?;
        Ok(StepResult::Empty)
    }

    fn copy(
        &mut self,
        st: &mut ImageState,
        ins: &Instruction,
        spec: &CopySpec,
        add: bool,
    ) -> Result<StepResult, BuildError> {
        let mut sources = Vec::new();
        for s in &spec.sources {
            sources.extend(self.steps.ctx.resolve(s)?);
        }
        let content = self.steps.ctx.digest(&sources)?;
        let workdir = st.workdir();
        let dest = if spec.dest.starts_with('/') {
            spec.dest.clone()
        } else {
            format!("{}/{}", workdir.trim_end_matches('/'), spec.dest)
        };
        let heredocs: Vec<&str> = spec.heredocs.iter().flat_map(|d| [d.name.as_str(), d.content.as_str()]).collect();
        let key = CopyInputs {
            add,
            sources: &spec.sources,
            content: &content,
            heredocs: &heredocs,
            dest: &dest,
            chown: spec.chown.as_deref().unwrap_or_default(),
            chmod: spec.chmod.as_deref().unwrap_or_default(),
        }
        .key(&st.key);
        if let Some(r) = self.cached(st, ins, key)? {
            return Ok(r);
        }
        let lowers = st.lower_dirs(self.steps.ws)?;
        let view = RootView::new(&lowers);
        let owner = spec.chown.as_deref().map(|o| view.resolve_owner(o)).transpose()?;
        let tmp = self.steps.ws.temp_dir("stage-")?;
        let root = tmp.path().join("root");
        fs::create_dir(&root).map_err(|e| BuildError::io(&root, "create directory", e))?;
        let stage_opts =
            StageOptions { owner, mode: spec.mode(), extract_archives: add, context: Some(self.steps.ctx) };
        let single = if spec.heredocs.is_empty() { &sources[..] } else { &[] };
        if let Some(pass) = OnePass::plan(&view, &root, single, &dest, &stage_opts)? {
            let opts = self.steps.opts;
            let mut w = self.steps.ws.store().blob_writer()?;
            let mut skeleton = self.steps.ws.skeleton_file()?;
            let tree =
                TreeOptions { source_date_epoch: opts.source_date_epoch, threads: opts.threads, ..Default::default() };
            let info = pass.run(&tree, opts.compression, &mut w, &mut skeleton)?;
            return self.commit_written(st, ins, key, &root, (info, w, skeleton));
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
        self.commit_dir(st, ins, key, &root, false, tmp)
    }

    fn run(&mut self, st: &mut ImageState, ins: &Instruction, log: &mut dyn Write) -> Result<StepResult, BuildError> {
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
        let key =
            RunInputs { argv: &argv, script_file: &script_file, env: &env, user: &user, workdir: &cwd }.key(&st.key);
        env.extend(extra(self.ex.undeclared_proxies()));
        if let Some(r) = self.cached(st, ins, key)? {
            return Ok(r);
        }
        let tmp = self.steps.ws.temp_dir("run-")?;
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
        if self.steps.opts.network == sandbox::NetworkMode::Private {
            warn_loopback_proxy(&env);
        }
        if let Some(bundle) = &self.steps.opts.ca_bundle {
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
            lowerdirs: st.lower_dirs(self.steps.ws)?,
            upperdir: upper.clone(),
            workdir: work,
            argv,
            env,
            user,
            cwd,
            hostname: String::new(),
            binds,
            network: self.steps.opts.network,
            stdin: false,
            tty: false,
        };
        let mut tail = Tail { log, buf: VecDeque::with_capacity(TAIL_BYTES) };
        let code = sandbox::run(&run, &mut tail)?;
        if code != 0 {
            return Err(BuildError::RunFailed { command: ins.original.clone(), code, tail: tail.lines() });
        }
        self.commit_dir(st, ins, key, &upper, true, tmp)
    }
}

/// Keep the skeleton recorded while layer `info` was written from its dir (see `footprint`). A failure only
/// means the layer's blob cannot be dropped later: a warning.
fn keep_split(ws: &Workspace, skeleton: SkeletonFile, info: &LayerInfo, compression: Compression) {
    if let Err(e) = ws.keep_split(skeleton, info, compression) {
        tracing::warn!(layer = %info.diff_id, "keeping the layer's skeleton failed (its blob stays): {e}");
    }
}

/// Records step `key`'s result in the local cache, and shares it through `--cache-repo` (where a failure
/// is only a warning: the build is fine without it).
fn record(steps: Steps, key: &Digest, entry: &CachedStep, platform: &Platform) -> Result<(), BuildError> {
    steps.cache.put(key, entry).map_err(|e| BuildError::io(&steps.ws.cache_dir(), "write cache", e))?;
    if let Some(remote) = &steps.opts.cache_repo
        && let Err(e) = remote.publish(steps.ws.store(), key, entry, platform)
    {
        tracing::warn!(cache = remote.name(), "publishing a step to the remote cache failed: {e}");
    }
    Ok(())
}

/// Records that step `key` made the layer `info` at `time` (its blob is in the store); the layer's
/// descriptor.
fn record_layer(
    steps: Steps,
    key: &Digest,
    info: &LayerInfo,
    platform: &Platform,
    time: i64,
) -> Result<Descriptor, BuildError> {
    let descriptor = Descriptor::new(info.media_type, info.digest, info.size);
    let layer = Some(CachedLayer { descriptor: descriptor.clone(), diff_id: info.diff_id });
    let entry = CachedStep { layer, created: Some(time) };
    record(steps, key, &entry, platform)?;
    Ok(descriptor)
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
