//! `kolla-oci build` as kolla-build does it: the selected images of a rendered tree become scheduler
//! jobs with kolla's labels, `--push` publishes each image as soon as it is built, and the outcome
//! becomes kolla's summary.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use layers::Digest;

use super::scheduler::{self, Job, Pushes, RunOptions, Slots, TemplateSource};
use super::summary::{NameEntry, Summary};
use super::{BuildError, BuildOptions, CacheWait, Fleet, Label, Phase, RemoteCache, Workspace};
use crate::attest::provenance::BUILD_TYPE_KOLLA;
use crate::attest::{self, AttestError, BuildFacts};
use crate::config::{CompressionKind, KollaConfig};
use crate::dockerfile::Kind;
use crate::graph::{Graph, Selection, Status};
use crate::registry::{self, PushReport, Reference, RegistryError, RegistryOptions};
use crate::shard::{self, Item, Plan, Shard};
use crate::sources::SourceOptions;
use crate::store::Platform;
use crate::template::RenderedTree;

/// Build options from kolla-build's options; `registry` has the TLS set-up and credential of the run.
pub fn build_options(cfg: &KollaConfig, registry: &RegistryOptions) -> BuildOptions {
    BuildOptions {
        compression: match cfg.compression {
            CompressionKind::Gzip => layers::Compression::default(),
            CompressionKind::Zstd => layers::Compression::Zstd { level: 3 },
        },
        build_args: cfg.effective_build_args(),
        cache: cfg.cache,
        pull: cfg.pull,
        bootstrap: cfg.bootstrap,
        squash: cfg.squash,
        registry: registry_options(cfg, registry),
        network: cfg.network,
        platform: cfg.platform.clone(),
        keep_platforms: cfg.platforms.len() > 1,
        ..BuildOptions::default()
    }
}

/// Registry options from kolla-build's options over `access` (TLS and credential, podman's options), for
/// pulling `FROM` images and for `--push`.
pub fn registry_options(cfg: &KollaConfig, access: &RegistryOptions) -> RegistryOptions {
    RegistryOptions {
        insecure_registries: cfg.insecure_registries.clone(),
        allowed_private_hosts: cfg.allowed_private_hosts.clone(),
        retries: cfg.retries,
        threads: cfg.push_threads.max(1),
        ..access.clone()
    }
}

/// Where kolla's own sources live: what `org.opencontainers.image.url` names, and `source` when the
/// templates come from a git checkout.
const KOLLA_URL: &str = "https://opendev.org/openstack/kolla";

/// The labels kolla-build 23.0.0 gives image `name` at build time (`build_image_list` and
/// `BuildTask.builder` of `kolla/image/`): the OCI ones, plus `build-date`. `created` and
/// `build-date` are the image's own creation time (see [`super::executor`]); `source` and `revision`
/// are set, as kolla-build sets them, when the templates come from a git checkout (`revision` as
/// given here).
pub fn kolla_labels(cfg: &KollaConfig, name: &str, revision: Option<&str>) -> BTreeMap<String, Label> {
    let text = |v: &str| Label::Text(v.to_string());
    let mut labels = BTreeMap::from([
        ("org.opencontainers.image.title".to_string(), text(name)),
        ("org.opencontainers.image.description".to_string(), text(&format!("OpenStack Kolla {name} image"))),
        ("org.opencontainers.image.version".to_string(), text(&cfg.tag)),
        ("org.opencontainers.image.created".to_string(), Label::Created),
        ("org.opencontainers.image.authors".to_string(), text(&cfg.maintainer)),
        ("org.opencontainers.image.url".to_string(), text(KOLLA_URL)),
        ("org.opencontainers.image.licenses".to_string(), text("Apache-2.0")),
        ("build-date".to_string(), Label::BuildDate),
    ]);
    if let Some(revision) = revision {
        labels.insert("org.opencontainers.image.source".to_string(), text(KOLLA_URL));
        labels.insert("org.opencontainers.image.revision".to_string(), text(revision));
    }
    labels
}

/// The commit of the git checkout `tree`'s files belong to (`git rev-parse HEAD`), as kolla-build
/// labels its images with the commit of the kolla checkout it runs from; `None` when git tracks none
/// of them (a tree installed from PyPI, as kolla-build installed from PyPI has none, even inside
/// another checkout), and for the bundled tree.
pub fn template_revision(tree: &Path) -> Option<String> {
    if tree == Path::new(crate::config::BUNDLED_TEMPLATES) {
        return None;
    }
    let git = |args: &[&str]| std::process::Command::new("git").arg("-C").arg(tree).args(args).output().ok();
    let tracked = git(&["ls-files", "--error-unmatch", "--", "."])?;
    let out = git(&["rev-parse", "HEAD"])?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    let is_commit = rev.len() == 40 && rev.bytes().all(|b| b.is_ascii_hexdigit());
    (tracked.status.success() && out.status.success() && is_commit).then_some(rev)
}

/// One job per matched image, parents first; `parent` links only to parents built in this run (an
/// unselected parent must already be in the store). With `shard`, only what it builds.
pub fn jobs(
    cfg: &KollaConfig,
    graph: &Graph,
    sel: &Selection,
    tree: &RenderedTree,
    shard: Option<&ShardWork>,
) -> Vec<Job> {
    let revision = template_revision(&cfg.template_tree);
    let mut order = sel.build_order(graph);
    if let Some(w) = shard {
        // The images of the shards built, and the parents they need (taken from their owners' steps).
        let mut needed = vec![false; graph.nodes.len()];
        let owned = |i: usize| w.run.owner.get(&graph.nodes[i].name).is_some_and(|o| w.shards.contains(o));
        for &i in order.iter().filter(|&&i| owned(i)) {
            needed[i] = true;
            for a in graph.ancestors(i) {
                needed[a] = true;
            }
        }
        order.retain(|&i| needed[i] && !w.built.contains(&graph.nodes[i].name));
    }
    let index: BTreeMap<usize, usize> = order.iter().enumerate().map(|(j, &i)| (i, j)).collect();
    order
        .iter()
        .filter_map(|&i| {
            let node = &graph.nodes[i];
            let img = tree.image(&node.name)?;
            Some(Job {
                name: node.name.clone(),
                tag: node.canonical_name.clone(),
                dockerfile: img.context_dir.join("Dockerfile"),
                context: img.context_dir.clone(),
                parent: graph.parent(i).and_then(|p| index.get(&p).copied()),
                parent_image: graph.parent(i).map(|p| graph.nodes[p].canonical_name.clone()),
                sources: Some(cfg.image_sources(&node.name)),
                template: Some(TemplateSource { path: img.template.clone(), rendered_kept: cfg.work_dir.is_some() }),
                cache_wait: shard.and_then(|w| {
                    let owner = *w.run.owner.get(&node.name)?;
                    (owner != w.run.shard.index).then(|| CacheWait {
                        fleet: Arc::clone(w.fleet),
                        image: node.name.clone(),
                        owner,
                        timeout: w.run.wait,
                    })
                }),
                labels: kolla_labels(cfg, &node.name, revision.as_deref()),
            })
        })
        .collect()
}

/// `--shard I/N` of a run: the plan's owner of each graph node, and how long to wait for other shards.
#[derive(Debug, Clone)]
pub struct ShardRun {
    /// This machine's shard.
    pub shard: Shard,
    /// Owning shard by image name, for the images selected on any platform of the run: one owner builds
    /// (and pushes) an image for every platform, so that its index is pushed whole.
    pub owner: BTreeMap<String, usize>,
    /// `--shard-wait`.
    pub wait: Duration,
    /// `--shard-takeover`: a shard whose heartbeat has not changed for this long is lost, and the plan's
    /// next shard builds its images (`None`: never; wait for it, up to `wait`).
    pub takeover: Option<Duration>,
}

/// What one scheduler run of a shard builds.
#[derive(Debug)]
pub struct ShardWork<'a> {
    /// The shard and its plan.
    pub run: &'a ShardRun,
    /// Its fleet.
    pub fleet: &'a Arc<Fleet>,
    /// The shards whose images are built: this one's own, or lost ones it takes over.
    pub shards: &'a [usize],
    /// Images this process has built already (in the store: left out).
    pub built: &'a BTreeSet<String>,
}

/// The digest that names a fleet's records in the cache repository: the platform, the shard count
/// and, per planned image, its name, owner and rendered Dockerfile — the same on every machine of one
/// fleet, different for another tree or platform (each platform of a run has its own records).
pub fn plan_digest(platform: &Platform, tree: &RenderedTree, run: &ShardRun) -> Digest {
    let mut lines: Vec<String> = run
        .owner
        .iter()
        .map(|(name, owner)| {
            let dockerfile = tree.image(name).map(|img| Digest::of_bytes(img.dockerfile.as_bytes()).to_string());
            format!("{name} {owner} {}", dockerfile.unwrap_or_default())
        })
        .collect();
    lines.sort();
    let head = format!("kolla-oci fleet plan v2\n{platform}\n{}", run.shard.count);
    Digest::of_bytes(format!("{head}\n{}\n", lines.join("\n")).as_bytes())
}

/// The shard plan of a run over `count` shards: the planned items (the images selected on any of its
/// platforms, in build order, each weighted by its Dockerfiles' layer-making steps summed over the
/// platforms) and the plan. Every platform of the run follows this one plan.
pub fn shard_plan(builds: &[PlatformBuild], count: usize) -> (Vec<Item>, Plan) {
    let mut items: Vec<Item> = Vec::new();
    let mut at: BTreeMap<&str, usize> = BTreeMap::new();
    for b in builds {
        for i in b.sel.build_order(&b.graph) {
            let name = b.graph.nodes[i].name.as_str();
            let steps =
                b.tree.image(name).map_or(1, |img| layer_steps(&img.context_dir.join("Dockerfile"), &img.dockerfile));
            match at.get(name) {
                Some(&j) => items[j].steps += steps,
                None => {
                    let parent = b.graph.parent(i).and_then(|p| at.get(b.graph.nodes[p].name.as_str()).copied());
                    at.insert(name, items.len());
                    items.push(Item { name: name.to_owned(), parent, steps });
                }
            }
        }
    }
    let plan = shard::plan(&items, count);
    (items, plan)
}

/// RUN, COPY and ADD instructions of a rendered Dockerfile (at least 1, so every image weighs something).
fn layer_steps(path: &std::path::Path, text: &str) -> u64 {
    let steps = crate::dockerfile::parse(path, text).map_or(0, |df| {
        df.instructions.iter().filter(|ins| matches!(ins.kind, Kind::Run(_) | Kind::Copy(_) | Kind::Add(_))).count()
    });
    steps.max(1) as u64
}

/// What every image's provenance of a Kolla build says: the template trees' digest, the options and
/// config files that shape the images, the effective build args.
pub fn attestation_facts(cfg: &KollaConfig, opts: &BuildOptions) -> Result<BuildFacts, AttestError> {
    let mut facts = BuildFacts::new(BUILD_TYPE_KOLLA, &opts.build_args, opts.source_date_epoch);
    let mut trees = vec![cfg.template_tree.clone()];
    trees.extend(cfg.docker_dirs.iter().cloned());
    facts.template_tree = Some(attest::build::tree_digest(&trees)?);
    let flag = |b: bool| b.to_string();
    let paths = |v: &[PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(",");
    let options: [(&str, String); 23] = [
        ("base", cfg.base.clone()),
        ("base_image", cfg.base_image.clone()),
        ("base_tag", cfg.base_tag.clone()),
        ("base_arch", cfg.base_arch.clone()),
        ("debian_arch", cfg.debian_arch.clone()),
        ("namespace", cfg.namespace.clone()),
        ("tag", cfg.tag.clone()),
        ("image_name_prefix", cfg.image_prefix.clone()),
        ("openstack_release", cfg.openstack_release.clone()),
        ("openstack_release_codename", cfg.openstack_release_codename.clone()),
        ("openstack_branch", cfg.openstack_branch.clone()),
        ("maintainer", cfg.maintainer.clone()),
        ("kolla_version", cfg.kolla_version.clone()),
        ("use_dumb_init", flag(cfg.use_dumb_init)),
        ("docker_healthchecks", flag(cfg.docker_healthchecks)),
        ("clean_package_cache", flag(cfg.clean_package_cache)),
        ("rpm_setup_config", cfg.rpm_setup.join("\n")),
        ("profile", cfg.profile.join(",")),
        ("template_override", paths(&cfg.template_overrides)),
        ("docker_dir", paths(&cfg.docker_dirs)),
        ("patches_path", cfg.patches_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
        ("repos_yaml", cfg.repos_yaml.clone()),
        ("compression", format!("{:?}", cfg.compression).to_lowercase()),
    ];
    facts.options = options
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), crate::redact::value(k, &v)))
        .collect();
    let mut files: Vec<PathBuf> = cfg.config_files.clone();
    files.extend(cfg.template_overrides.iter().cloned());
    files.extend(cfg.apt_sources_list.iter().cloned());
    files.extend(cfg.apt_preferences.iter().cloned());
    files.extend(Some(PathBuf::from(&cfg.repos_yaml)).filter(|p| !cfg.repos_yaml.is_empty() && p.is_file()));
    files.extend(cfg.default_repos_yaml.iter().filter(|p| !trees.iter().any(|t| p.starts_with(t))).cloned());
    facts.config_files = files.iter().map(|f| attest::build::file_digest(f)).collect::<Result<_, _>>()?;
    Ok(facts)
}

/// What a Kolla build did: kolla's summary, whether it succeeded (no image failed that is not in
/// `allowed_to_fail`), and with `--push` what the pushes of the images and of their attestations did.
#[derive(Debug)]
pub struct KollaRun {
    /// kolla-build's summary.
    pub summary: Summary,
    /// Every image that failed is allowed to (kolla-build's exit status 0).
    pub ok: bool,
    /// `--push`: the images' pushes and their attestations' pushes, summed.
    pub pushed: Option<(PushReport, PushReport)>,
}

/// One platform of a build: the configuration for it (its tree rendered for its architecture, see
/// [`KollaConfig::for_platform`]), the image graph, the selection and the rendered tree.
pub struct PlatformBuild {
    /// kolla-build's options, for this platform.
    pub cfg: KollaConfig,
    /// The image graph of this platform's tree.
    pub graph: Graph,
    /// The images selected for this platform.
    pub sel: Selection,
    /// The tree rendered for this platform.
    pub tree: RenderedTree,
}

/// Build the selection of every platform and return kolla's summary of the run. The platforms build at
/// once, `--threads` images at a time between them (see [`Slots`]), each image's tag gathering one image per
/// platform. Unless `--no-attestations`, each image built gets its SBOM and provenance in the store; with
/// `--push`, each image is pushed (with its attestations) by `--push-threads` workers while the rest
/// build, once every platform has built it: its index whole, and not at all if a platform failed it. An
/// error here (reading the inputs the provenance names, an invalid `--cache-repo`) stops the run before
/// anything is built. The run-wide options (`--push`, `--threads`, `--cache-repo`…) are the first
/// platform's, as they are every platform's.
pub fn build_selection(
    ws: &Workspace,
    builds: &[PlatformBuild],
    shard: Option<&ShardRun>,
    registry: &RegistryOptions,
) -> Result<KollaRun, AttestError> {
    let Some(cfg) = builds.first().map(|b| &b.cfg) else {
        return Ok(KollaRun { summary: Summary::default(), ok: true, pushed: None });
    };
    let cache_repo = match &cfg.cache_repo {
        Some(spec) => {
            Some(Arc::new(RemoteCache::new(spec, &build_options(cfg, registry).registry).map_err(BuildError::from)?))
        }
        None => None,
    };
    if shard.is_some() && cache_repo.is_none() {
        let reason = "--shard needs --cache-repo: each shard takes the parents it does not build from there";
        return Err(BuildError::Input(reason.into()).into());
    }
    let together = (builds.len() > 1).then(|| (indicatif::MultiProgress::new(), Arc::new(Slots::new(cfg.threads))));
    let mut runs = Vec::with_capacity(builds.len());
    for b in builds {
        let opts = BuildOptions { cache_repo: cache_repo.clone(), ..build_options(&b.cfg, registry) };
        let attest = if b.cfg.attestations { Some(attestation_facts(&b.cfg, &opts)?) } else { None };
        runs.push((opts, run_options(ws, b, attest, together.as_ref())));
    }
    let locations = registry::BlobLocations::default();
    let pushed = Mutex::new((PushReport::default(), PushReport::default()));
    let push = |job: &Job| -> Result<(), String> {
        let (images, referrers) = push_image(ws, cfg, job, &locations, registry).map_err(|e| e.to_string())?;
        let mut sums = pushed.lock().unwrap_or_else(|e| e.into_inner());
        sums.0.add(&images);
        sums.1.add(&referrers);
        Ok(())
    };
    // An image is pushed when the last of the platforms that selected it has built it.
    let mut platforms_left: BTreeMap<String, usize> = BTreeMap::new();
    for b in builds {
        for name in b.sel.names_with(&b.graph, Status::Matched) {
            *platforms_left.entry(name.to_owned()).or_default() += 1;
        }
    }
    let platforms_left = Mutex::new(platforms_left);
    let ready = |job: &Job| {
        let mut left = platforms_left.lock().unwrap_or_else(|e| e.into_inner());
        left.get_mut(&job.name).is_none_or(|n| {
            *n = n.saturating_sub(1);
            *n == 0
        })
    };
    let pushes = Pushes { threads: cfg.push_threads.max(1), push: &push, ready: &ready };
    let pushes = cfg.push.then_some(&pushes);
    let summaries: Vec<(String, Summary)> = std::thread::scope(|scope| {
        let cache_repo = cache_repo.as_ref();
        let threads: Vec<_> = builds
            .iter()
            .zip(runs)
            .map(|(b, (opts, run))| {
                let sharding = shard.zip(cache_repo).map(|(run, cache)| Sharding { run, cache, pushes });
                scope.spawn(move || (b.cfg.platform.to_string(), build_platform(ws, b, sharding, pushes, &opts, run)))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let summary = Summary::of_platforms(summaries);
    let ok = summary.failed.iter().all(|f| cfg.allowed_to_fail.contains(&f.name));
    let pushed = cfg.push.then(|| pushed.into_inner().unwrap_or_else(|e| e.into_inner()));
    Ok(KollaRun { summary, ok, pushed })
}

/// How the run of one platform goes. With several platforms (`together`: their progress bars and
/// `--threads` slots, shared), it takes slots from the others' pool, and has its own subdirectory of
/// `--logs-dir` and its platform on the console.
fn run_options(
    ws: &Workspace,
    b: &PlatformBuild,
    attest: Option<BuildFacts>,
    together: Option<&(indicatif::MultiProgress, Arc<Slots>)>,
) -> RunOptions {
    let cfg = &b.cfg;
    let several = together.is_some();
    let sources = SourceOptions {
        cache_dir: ws.sources_dir(),
        timeout: std::time::Duration::from_secs(cfg.timeout),
        debian_arch: cfg.debian_arch.clone(),
        refetch: !cfg.cache,
        retries: cfg.retries,
        allowed_private_hosts: cfg.allowed_private_hosts.clone(),
    };
    RunOptions {
        threads: cfg.threads.max(1),
        logs_dir: match &cfg.logs_dir {
            Some(dir) if several => Some(dir.join(crate::platform::dir_name(&cfg.platform))),
            dir => dir.clone(),
        },
        sources: Some(sources),
        attest,
        retries: cfg.retries,
        quiet: cfg.quiet,
        fleet: None,
        platform: several.then(|| cfg.platform.architecture.clone()),
        bars: together.map(|t| t.0.clone()),
        slots: together.map(|t| Arc::clone(&t.1)),
    }
}

/// Build one platform's selection (its part of the fleet's work with `--shard`): kolla's summary of it.
fn build_platform(
    ws: &Workspace,
    b: &PlatformBuild,
    sharding: Option<Sharding<'_>>,
    pushes: Option<&Pushes<'_>>,
    opts: &BuildOptions,
    run: RunOptions,
) -> Summary {
    let mut summary = Summary::default();
    match sharding {
        Some(sharding) => build_shard(ws, b, &sharding, opts, run, &mut summary),
        None => {
            let jobs = jobs(&b.cfg, &b.graph, &b.sel, &b.tree, None);
            scheduler::run(ws, &jobs, opts, &run, pushes).fill(&jobs, &mut summary);
        }
    }
    let names =
        |status| b.sel.names_with(&b.graph, status).into_iter().map(|n| NameEntry { name: n.to_owned() }).collect();
    summary.not_matched = names(Status::Unmatched);
    summary.skipped = names(Status::Skipped);
    summary.unbuildable = names(Status::Unbuildable);
    summary.sort();
    summary
}

/// What `build_shard` works with: this shard's part of the plan, the cache repository the fleet shares,
/// and the push queue (`--push`).
struct Sharding<'a> {
    run: &'a ShardRun,
    cache: &'a Arc<RemoteCache>,
    pushes: Option<&'a Pushes<'a>>,
}

/// `--shard`: this shard's images of one platform, with its heartbeat (that platform's fleet records)
/// kept fresh in the cache repository; then, while a shard it would take over is still building, it
/// stays (`watching`) and builds the images of lost shards the plan gives it — up to `--shard-wait`
/// (see [`super::fleet`]).
fn build_shard(
    ws: &Workspace,
    b: &PlatformBuild,
    sharding: &Sharding<'_>,
    opts: &BuildOptions,
    run: RunOptions,
    summary: &mut Summary,
) {
    let shard = sharding.run;
    let plan = plan_digest(&b.cfg.platform, &b.tree, shard);
    let fleet =
        Arc::new(Fleet::start(Arc::clone(sharding.cache), ws.store().clone(), &plan, shard.shard, shard.takeover));
    let run = RunOptions { fleet: Some(Arc::clone(&fleet)), ..run };
    std::thread::scope(|scope| {
        scope.spawn(|| fleet.keep_alive());
        let _stop = fleet.stop_on_drop();
        let mut built = BTreeSet::new();
        let mut shards = vec![shard.shard.index];
        loop {
            let work = ShardWork { run: shard, fleet: &fleet, shards: &shards, built: &built };
            let jobs = jobs(&b.cfg, &b.graph, &b.sel, &b.tree, Some(&work));
            let report = scheduler::run(ws, &jobs, opts, &run, sharding.pushes);
            let mut this_run = Summary::default();
            report.fill(&jobs, &mut this_run);
            built.extend(this_run.built.iter().map(|b| b.name.clone()));
            merge(summary, this_run);
            fleet.set_phase(Phase::Watching);
            shards = lost_shards_to_take_over(&fleet, shard.wait);
            if shards.is_empty() {
                break;
            }
            fleet.cover(&shards);
        }
    });
}

/// Wait while a shard this one would take over is still building (see [`Fleet::lingers`]); the lost
/// shards it takes over, or none when there is nothing left to watch (or after `limit`).
fn lost_shards_to_take_over(fleet: &Fleet, limit: Duration) -> Vec<usize> {
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        let adopt = fleet.to_adopt();
        if !adopt.is_empty() || !fleet.lingers() {
            return adopt;
        }
        if started.elapsed() >= limit {
            tracing::warn!("stopped watching the fleet after {} s (--shard-wait)", limit.as_secs());
            return vec![];
        }
        if !said {
            tracing::info!("this shard's images are done; staying while the shard before it builds (--shard-takeover)");
            said = true;
        }
        std::thread::sleep(fleet.interval());
    }
}

/// Add a run of this shard to `summary` (an image that failed in two runs is listed once; one built
/// in a later run is no longer failed).
fn merge(summary: &mut Summary, run: Summary) {
    summary.failed.retain(|f| !run.built.iter().any(|b| b.name == f.name));
    summary.built.extend(run.built);
    for f in run.failed {
        if !summary.failed.iter().any(|g| g.name == f.name) {
            summary.failed.push(f);
        }
    }
    summary.layers_built += run.layers_built;
    summary.layers_cached += run.layers_cached;
}

/// Push `job`'s image to where its canonical name points (`[registry/]namespace/[prefix]name:tag`),
/// then, unless `--no-attestations`, its referrers (SBOM, provenance). Returns what each of the two
/// pushes did.
fn push_image(
    ws: &Workspace,
    cfg: &KollaConfig,
    job: &Job,
    locations: &registry::BlobLocations,
    access: &RegistryOptions,
) -> Result<(PushReport, PushReport), RegistryError> {
    let images = [(job.tag.clone(), Reference::parse(&job.tag)?)];
    let opts = registry_options(cfg, access);
    let report = registry::push_remembering(ws.store(), &images, &opts, Some(locations))?;
    let referrers =
        if cfg.attestations { registry::push_referrers_of(ws.store(), &images, &opts)? } else { PushReport::default() };
    Ok((report, referrers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) {
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A tree git tracks gives its commit; an untracked one inside the same checkout (a venv in `target/`)
    /// and a tree outside any checkout give none.
    #[test]
    fn templates_in_a_git_checkout_name_its_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("kolla");
        std::fs::create_dir_all(repo.join("docker/base")).unwrap();
        std::fs::write(repo.join("docker/base/Dockerfile.j2"), "FROM x\n").unwrap();
        git(&repo, &["init", "-q"]);
        git(&repo, &["add", "docker"]);
        git(&repo, &["commit", "-qm", "templates"]);
        let head = std::process::Command::new("git").arg("-C").arg(&repo).args(["rev-parse", "HEAD"]).output().unwrap();
        let head = String::from_utf8(head.stdout).unwrap().trim().to_string();
        assert_eq!(template_revision(&repo.join("docker")).as_deref(), Some(head.as_str()));
        std::fs::create_dir_all(repo.join("venv/docker/base")).unwrap();
        std::fs::write(repo.join("venv/docker/base/Dockerfile.j2"), "FROM x\n").unwrap();
        assert_eq!(template_revision(&repo.join("venv/docker")), None);
        std::fs::create_dir_all(tmp.path().join("plain")).unwrap();
        assert_eq!(template_revision(&tmp.path().join("plain")), None);
        assert_eq!(template_revision(Path::new(crate::config::BUNDLED_TEMPLATES)), None);
    }
}
