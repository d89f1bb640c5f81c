//! `kolla-oci build` as kolla-build does it: the selected images of a rendered tree become scheduler
//! jobs, the outcome becomes kolla's summary, and `--push` publishes what was built.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use layers::Digest;

use super::scheduler::{self, Job, NameEntry, RunOptions, Summary, TemplateSource};
use super::{BuildError, BuildOptions, CacheWait, Fleet, Phase, RemoteCache, Workspace};
use crate::attest::provenance::BUILD_TYPE_KOLLA;
use crate::attest::{self, AttestError, BuildFacts};
use crate::config::{CompressionKind, KollaConfig};
use crate::dockerfile::Kind;
use crate::graph::{Graph, Selection, Status};
use crate::registry::{self, PushReport, Reference, RegistryError, RegistryOptions};
use crate::shard::{self, Item, Plan, Shard};
use crate::sources::SourceOptions;
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
        registry: registry_options(cfg, registry),
        network: cfg.network,
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

/// One job per matched image, parents first; `parent` links only to parents built in this run (an
/// unselected parent must already be in the store). With `shard`, only what it builds.
pub fn jobs(
    cfg: &KollaConfig,
    graph: &Graph,
    sel: &Selection,
    tree: &RenderedTree,
    shard: Option<&ShardWork>,
) -> Vec<Job> {
    let mut order = sel.build_order(graph);
    if let Some(w) = shard {
        // The images of the shards built, and the parents they need (taken from their owners' steps).
        let mut needed = vec![false; graph.nodes.len()];
        for &i in order.iter().filter(|&&i| w.run.owner.get(&i).is_some_and(|o| w.shards.contains(o))) {
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
                    let owner = *w.run.owner.get(&i)?;
                    (owner != w.run.shard.index).then(|| CacheWait {
                        fleet: Arc::clone(w.fleet),
                        image: node.name.clone(),
                        owner,
                        timeout: w.run.wait,
                    })
                }),
            })
        })
        .collect()
}

/// `--shard I/N` of a run: the plan's owner of each graph node, and how long to wait for other shards.
#[derive(Debug, Clone)]
pub struct ShardRun {
    /// This machine's shard.
    pub shard: Shard,
    /// Owning shard by graph node index (for the selected images).
    pub owner: BTreeMap<usize, usize>,
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

/// The digest that names a fleet's records in the cache repository: the shard count and, per planned
/// image, its name, owner and rendered Dockerfile — the same on every machine of one fleet, different
/// for another tree.
pub fn plan_digest(graph: &Graph, tree: &RenderedTree, run: &ShardRun) -> Digest {
    let mut lines: Vec<String> = run
        .owner
        .iter()
        .map(|(&node, owner)| {
            let name = &graph.nodes[node].name;
            let dockerfile = tree.image(name).map(|img| Digest::of_bytes(img.dockerfile.as_bytes()).to_string());
            format!("{name} {owner} {}", dockerfile.unwrap_or_default())
        })
        .collect();
    lines.sort();
    Digest::of_bytes(format!("kolla-oci fleet plan v1\n{}\n{}\n", run.shard.count, lines.join("\n")).as_bytes())
}

/// The shard plan of the selection over `count` shards: the planned items (in build order, weighted by
/// their Dockerfiles' layer-making steps), the graph node of each, and the plan.
pub fn shard_plan(graph: &Graph, sel: &Selection, tree: &RenderedTree, count: usize) -> (Vec<Item>, Vec<usize>, Plan) {
    let order = sel.build_order(graph);
    let index: BTreeMap<usize, usize> = order.iter().enumerate().map(|(j, &i)| (i, j)).collect();
    let items: Vec<Item> = order
        .iter()
        .map(|&i| {
            let name = graph.nodes[i].name.clone();
            let steps =
                tree.image(&name).map_or(1, |img| layer_steps(&img.context_dir.join("Dockerfile"), &img.dockerfile));
            Item { name, parent: graph.parent(i).and_then(|p| index.get(&p).copied()), steps }
        })
        .collect();
    let plan = shard::plan(&items, count);
    (items, order, plan)
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

/// Build the selection and return kolla's summary, plus whether every built image succeeded (images in
/// `allowed_to_fail` do not count, as in kolla-build). Unless `--no-attestations`, each image built gets
/// its SBOM and provenance in the store; an error here (reading the inputs the provenance names, an
/// invalid `--cache-repo`) stops the run before anything is built.
pub fn build_selection(
    ws: &Workspace,
    cfg: &KollaConfig,
    graph: &Graph,
    sel: &Selection,
    tree: &RenderedTree,
    shard: Option<&ShardRun>,
    registry: &RegistryOptions,
) -> Result<(Summary, bool), AttestError> {
    let mut opts = build_options(cfg, registry);
    opts.cache_repo = match &cfg.cache_repo {
        Some(spec) => Some(Arc::new(RemoteCache::new(spec, &opts.registry).map_err(BuildError::from)?)),
        None => None,
    };
    let attest = if cfg.attestations { Some(attestation_facts(cfg, &opts)?) } else { None };
    if shard.is_some() && opts.cache_repo.is_none() {
        let reason = "--shard needs --cache-repo: each shard takes the parents it does not build from there";
        return Err(BuildError::Input(reason.into()).into());
    }
    let sources = SourceOptions {
        cache_dir: ws.sources_dir(),
        timeout: std::time::Duration::from_secs(cfg.timeout),
        debian_arch: cfg.debian_arch.clone(),
        refetch: !cfg.cache,
        retries: cfg.retries,
        allowed_private_hosts: opts.registry.allowed_private_hosts.clone(),
    };
    let run = RunOptions {
        threads: cfg.threads.max(1),
        logs_dir: cfg.logs_dir.clone(),
        sources: Some(sources),
        attest,
        echo: !cfg.quiet,
        fleet: None,
    };
    let mut summary = Summary::default();
    match (shard, &opts.cache_repo) {
        (Some(s), Some(cache)) => build_shard(ws, cfg, graph, sel, tree, s, cache, &opts, run, &mut summary),
        _ => {
            let jobs = jobs(cfg, graph, sel, tree, None);
            scheduler::run(ws, &jobs, &opts, &run).fill(&jobs, &mut summary);
        }
    }
    let names = |status| sel.names_with(graph, status).into_iter().map(|n| NameEntry { name: n.to_owned() }).collect();
    summary.not_matched = names(Status::Unmatched);
    summary.skipped = names(Status::Skipped);
    summary.unbuildable = names(Status::Unbuildable);
    let ok = summary.failed.iter().all(|f| cfg.allowed_to_fail.contains(&f.name));
    Ok((summary, ok))
}

/// `--shard`: this shard's images, with its heartbeat kept fresh in the cache repository; then, while a
/// shard it would take over is still building, it stays (`watching`) and builds the images of lost
/// shards the plan gives it — up to `--shard-wait` (see [`super::fleet`]).
#[allow(clippy::too_many_arguments)]
fn build_shard(
    ws: &Workspace,
    cfg: &KollaConfig,
    graph: &Graph,
    sel: &Selection,
    tree: &RenderedTree,
    shard: &ShardRun,
    cache: &Arc<RemoteCache>,
    opts: &BuildOptions,
    run: RunOptions,
    summary: &mut Summary,
) {
    let plan = plan_digest(graph, tree, shard);
    let fleet = Arc::new(Fleet::start(Arc::clone(cache), ws.store().clone(), &plan, shard.shard, shard.takeover));
    let run = RunOptions { fleet: Some(Arc::clone(&fleet)), ..run };
    std::thread::scope(|scope| {
        scope.spawn(|| fleet.keep_alive());
        let _stop = fleet.stop_on_drop();
        let mut built = BTreeSet::new();
        let mut shards = vec![shard.shard.index];
        loop {
            let work = ShardWork { run: shard, fleet: &fleet, shards: &shards, built: &built };
            let jobs = jobs(cfg, graph, sel, tree, Some(&work));
            let report = scheduler::run(ws, &jobs, opts, &run);
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

/// Push the images `summary` lists as built to where their canonical names point
/// (`[registry/]namespace/[prefix]name:tag`), then, unless `--no-attestations`, their referrers (SBOM,
/// provenance). Returns what each of the two pushes did.
pub fn push_built(
    ws: &Workspace,
    cfg: &KollaConfig,
    graph: &Graph,
    summary: &Summary,
    registry: &RegistryOptions,
) -> Result<(PushReport, PushReport), RegistryError> {
    let mut images = Vec::new();
    for b in &summary.built {
        if let Some(i) = graph.find(&b.name) {
            let canonical = &graph.nodes[i].canonical_name;
            images.push((canonical.clone(), Reference::parse(canonical)?));
        }
    }
    let opts = registry_options(cfg, registry);
    let report = registry::push(ws.store(), &images, &opts)?;
    let referrers =
        if cfg.attestations { registry::push_referrers_of(ws.store(), &images, &opts)? } else { PushReport::default() };
    Ok((report, referrers))
}
