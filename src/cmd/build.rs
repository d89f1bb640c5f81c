//! `kolla-oci build`: kolla-build's command line. Renders the template tree, builds the image
//! graph, selects images, then either stops (`--template-only`, `--list-images`,
//! `--list-dependencies`, `--save-dependency`) or builds the selection.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use kolla_oci::builder::kolla;
use kolla_oci::config::KollaConfig;
use kolla_oci::graph::{self, Graph, Status};
use kolla_oci::shard::{self, Shard};
use kolla_oci::template;

/// Options of `kolla-oci build`: kolla-build's (see [`kolla_oci::config::BuildArgs`]), and how a fleet of
/// machines splits the work.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// kolla-build's options.
    #[command(flatten)]
    pub kolla: kolla_oci::config::BuildArgs,
    /// kolla-oci: build only the images shard I of N owns (0-based, e.g. `$JOB_COMPLETION_INDEX/3`); the
    /// parents other shards own come from `--cache-repo` as their owners publish them. Every machine
    /// computes the same plan (see `--list-shards`).
    #[arg(long, value_name = "I/N", help_heading = "kolla-oci fleet options")]
    pub shard: Option<Shard>,
    /// kolla-oci: print how the selection splits over N shards (images, steps, critical path) and exit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "kolla-oci fleet options")]
    pub list_shards: Option<u64>,
    /// kolla-oci: how long a shard waits for a parent another shard builds, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, help_heading = "kolla-oci fleet options")]
    pub shard_wait: u64,
    /// kolla-oci: a shard whose heartbeat in --cache-repo has not changed for this many seconds is lost:
    /// the next shard of the plan builds its images (0: never; wait for it up to --shard-wait).
    #[arg(long, value_name = "SECONDS", default_value_t = 300, help_heading = "kolla-oci fleet options")]
    pub shard_takeover: u64,
    /// How registries (`FROM` images, `--push`, `--cache-repo`) are trusted and logged in to.
    #[command(flatten, next_help_heading = "Registry options (podman's)")]
    pub access: super::AccessArgs,
}

/// Run the subcommand.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let cfg = KollaConfig::from_args(&args.kolla).context("reading kolla-build options")?;
    let listing = cfg.template_only || cfg.save_dependency.is_some() || cfg.list_images;
    if listing || (cfg.list_dependencies && args.list_shards.is_none()) {
        return show(ctx, &cfg);
    }
    let builds = platform_builds(ctx, &cfg)?;
    if let Some(n) = args.list_shards {
        let (items, plan) = kolla::shard_plan(&builds, n as usize);
        let mut stdout = std::io::stdout().lock();
        if let [_, _, ..] = builds.as_slice() {
            let platforms: Vec<String> = cfg.platforms.iter().map(ToString::to_string).collect();
            writeln!(stdout, "each shard builds its images for {}; steps are summed over them", platforms.join(", "))?;
        }
        stdout.write_all(shard::describe(&items, &plan).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let shard = args.shard.map(|s| {
        let (items, plan) = kolla::shard_plan(&builds, s.count);
        let owner = items.into_iter().map(|i| i.name).zip(plan.owner).collect();
        let seconds = std::time::Duration::from_secs;
        let takeover = (args.shard_takeover > 0).then(|| seconds(args.shard_takeover));
        kolla::ShardRun { shard: s, owner, wait: seconds(args.shard_wait), takeover }
    });
    let registry = args.access.options()?;
    // One clear error before anything is built, rather than one per image.
    for platform in &cfg.platforms {
        kolla_oci::platform::check_runnable(platform)?;
    }
    build(ctx, &builds, shard.as_ref(), &registry)
}

/// What is shown instead of a build: the rendered tree (`--template-only`), the dependency graph
/// (`--save-dependency`, `--list-dependencies`) or the images (`--list-images`).
fn show(ctx: &super::Context, cfg: &KollaConfig) -> anyhow::Result<ExitCode> {
    let store = existing(ctx, cfg)?;
    let (mut tree, graph, selection) = prepare(cfg, store.as_ref())?;
    if cfg.template_only {
        let unmatched: Vec<&str> = (0..graph.nodes.len())
            .filter(|&i| !selection.is_matched(i))
            .map(|i| graph.nodes[i].name.as_str())
            .collect();
        tree.remove_images(&unmatched).context("removing the directories of unselected images")?;
        let dir = tree.persist();
        tracing::info!("Dockerfiles are generated in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &cfg.save_dependency {
        std::fs::write(path, graph::dependency_dot(&graph, &selection))
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!("Container images dependency are saved in {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut stdout = std::io::stdout().lock();
    if cfg.list_images {
        stdout.write_all(graph::list_images(&graph, &selection).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    match graph::dependencies_json(&graph, &selection) {
        Some(v) => writeln!(stdout, "{}", serde_json::to_string_pretty(&v)?)?,
        None => writeln!(stdout, "Nothing matched!")?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's platforms, each with its tree rendered for its architecture (see
/// [`KollaConfig::for_platform`]). With several, each platform's `--work-dir` is a subdirectory named
/// after it (`linux-arm64-v8/`), since they build at once from trees that differ.
fn platform_builds(ctx: &super::Context, cfg: &KollaConfig) -> anyhow::Result<Vec<kolla::PlatformBuild>> {
    let cfgs: Vec<KollaConfig> = match cfg.platforms.as_slice() {
        [_, _, ..] => cfg
            .platforms
            .iter()
            .map(|p| {
                let mut c = cfg.for_platform(p);
                c.work_dir = c.work_dir.map(|w| w.join(kolla_oci::platform::dir_name(p)));
                c
            })
            .collect(),
        _ => vec![cfg.clone()],
    };
    let store = existing(ctx, cfg)?;
    cfgs.into_iter()
        .map(|cfg| {
            let (tree, graph, sel) = prepare(&cfg, store.as_ref())?;
            Ok(kolla::PlatformBuild { cfg, graph, sel, tree })
        })
        .collect()
}

/// The store `--skip-existing` looks in, opened once for every platform; `None` without it. The caller
/// lets it go before the build opens the state dir for itself (one hold per process, so that its end can
/// tell whether another process still uses it).
fn existing(ctx: &super::Context, cfg: &KollaConfig) -> anyhow::Result<Option<kolla_oci::store::Store>> {
    cfg.skip_existing.then(|| ctx.open_store()).transpose()
}

/// The tree rendered for `cfg` (written to kolla-build's work dir when one is asked for), its image
/// graph and the selection (`--skip-existing` skips what `store` has for `cfg`'s platform).
fn prepare(
    cfg: &KollaConfig,
    store: Option<&kolla_oci::store::Store>,
) -> anyhow::Result<(template::RenderedTree, Graph, graph::Selection)> {
    let tree = template::render(cfg).context("rendering the template tree")?;
    // kolla-build's work dir holds the whole tree; a temporary one gets only what the build reads (below).
    if cfg.work_dir.is_some() || cfg.template_only {
        tree.write_work_dir(None).context("writing the work dir")?;
    }
    let graph = Graph::from_rendered(&tree, cfg).context("building the image graph")?;
    // Only an image of this platform counts: a tag may hold other platforms' images (an index).
    let exists = |canonical: &str| store.is_some_and(|s| matches!(s.image_for(canonical, &cfg.platform), Ok(Some(_))));
    let selection = graph::select(&graph, cfg, &exists).context("selecting images")?;
    Ok((tree, graph, selection))
}

/// Build the selection of every platform (pushing each image built, if asked), write kolla's summary
/// of the run; non-zero exit if an image failed on any platform that is not allowed to.
fn build(
    ctx: &super::Context,
    builds: &[kolla::PlatformBuild],
    shard: Option<&kolla::ShardRun>,
    registry: &kolla_oci::registry::RegistryOptions,
) -> anyhow::Result<ExitCode> {
    let Some(first) = builds.first() else { return Ok(ExitCode::SUCCESS) };
    let cfg = &first.cfg;
    let ws = ctx.open_workspace()?;
    let nothing = |b: &kolla::PlatformBuild| {
        [Status::Matched, Status::Skipped].into_iter().all(|s| b.sel.names_with(&b.graph, s).is_empty())
    };
    if builds.iter().all(nothing) {
        // kolla-build builds nothing and exits 0; a typo in a CI job's regex would then pass unseen.
        let asked = match (cfg.regex.is_empty(), cfg.profile.is_empty()) {
            (false, _) => format!("the regexes {:?}", cfg.regex),
            (true, false) => format!("the profiles {:?}", cfg.profile),
            (true, true) => "the selection".to_owned(),
        };
        let unbuildable = first.sel.names_with(&first.graph, Status::Unbuildable).len();
        let hint = if unbuildable > 0 {
            format!(" ({unbuildable} are unbuildable for this base and architecture: --enable-unbuildable)")
        } else {
            String::new()
        };
        tracing::warn!("nothing to build: none of the {} images matches {asked}{hint}", first.graph.nodes.len());
        return Ok(ExitCode::FAILURE);
    }
    for b in builds {
        let matched = b.sel.names_with(&b.graph, Status::Matched);
        match builds.len() {
            1 => tracing::info!("building {} images with {} threads", matched.len(), cfg.threads),
            n => tracing::info!(
                "building {} images for {} ({n} platforms at once, {} threads in all)",
                matched.len(),
                b.cfg.platform,
                cfg.threads
            ),
        }
        if b.cfg.work_dir.is_none() {
            b.tree.write_work_dir(Some(&matched)).context("writing the work dir")?;
        }
    }
    let run = kolla::build_selection(&ws, builds, shard, registry)
        .context("preparing the build (its inputs for the provenance, --no-attestations skips them; --cache-repo)")?;
    let summary = &run.summary;
    if let Some((r, a)) = &run.pushed {
        tracing::info!(
            "pushed {} images: {} blobs uploaded ({} bytes), {} mounted, {} already there",
            r.manifests,
            r.uploaded_blobs,
            r.uploaded_bytes,
            r.mounted_blobs,
            r.existing_blobs
        );
        if a.manifests > 0 {
            tracing::info!(
                "pushed {} attestations (SBOM, provenance): {} blobs uploaded ({} bytes), {} referrers tags written",
                a.manifests,
                a.uploaded_blobs,
                a.uploaded_bytes,
                a.referrers_tags
            );
        }
    }
    // As kolla-build: nothing with --nosummary or --format none, else the file or (only without one)
    // one line on stdout.
    if cfg.summary && cfg.format_json {
        match &cfg.summary_json_file {
            Some(path) => summary.write_file(path).with_context(|| format!("writing {}", path.display()))?,
            None => {
                let mut out = std::io::stdout().lock();
                out.write_all(summary.to_line().as_bytes()).and_then(|()| out.flush()).context("writing to stdout")?;
            }
        }
    }
    tracing::info!(
        "built {}, failed {}, skipped {}, not matched {}, unbuildable {}; layers built {}, from cache {}",
        summary.built.len(),
        summary.failed.len(),
        summary.skipped.len(),
        summary.not_matched.len(),
        summary.unbuildable.len(),
        summary.layers_built,
        summary.layers_cached
    );
    ws.trim_after_build();
    Ok(if run.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
