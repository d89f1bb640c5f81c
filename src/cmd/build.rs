//! `kolla-oci build`: kolla-build's command line. Renders the template tree, builds the image
//! graph, selects images, then either stops (`--template-only`, `--list-images`,
//! `--list-dependencies`, `--save-dependency`) or builds the selection.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
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
}

/// Run the subcommand.
pub fn run(ctx: &super::Context, args: Args) -> anyhow::Result<ExitCode> {
    let cfg = KollaConfig::from_args(&args.kolla).context("reading kolla-build options")?;
    let mut tree = template::render(&cfg).context("rendering the template tree")?;
    // kolla-build's work dir holds the whole tree; a temporary one gets only what the build reads (below).
    if cfg.work_dir.is_some() || cfg.template_only {
        tree.write_work_dir(None).context("writing the work dir")?;
    }
    let graph = Graph::from_rendered(&tree, &cfg).context("building the image graph")?;

    // The store is let go before the build opens the state dir for itself (one hold per process, so that
    // its end can tell whether another process still uses it).
    let selection = {
        let store = if cfg.skip_existing { Some(ctx.open_store()?) } else { None };
        let exists = |canonical: &str| store.as_ref().is_some_and(|s| matches!(s.resolve(canonical), Ok(Some(_))));
        graph::select(&graph, &cfg, &exists).context("selecting images")?
    };

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
    if let Some(n) = args.list_shards {
        let (items, _, plan) = kolla_oci::builder::kolla::shard_plan(&graph, &selection, &tree, n as usize);
        stdout.write_all(shard::describe(&items, &plan).as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    if cfg.list_dependencies {
        match graph::dependencies_json(&graph, &selection) {
            Some(v) => writeln!(stdout, "{}", serde_json::to_string_pretty(&v)?)?,
            None => writeln!(stdout, "Nothing matched!")?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    let shard = args.shard.map(|s| {
        let (_, nodes, plan) = kolla_oci::builder::kolla::shard_plan(&graph, &selection, &tree, s.count);
        let owner = nodes.into_iter().zip(plan.owner).collect();
        kolla_oci::builder::kolla::ShardRun { shard: s, owner, wait: std::time::Duration::from_secs(args.shard_wait) }
    });
    build(ctx, &cfg, &graph, &selection, &tree, shard.as_ref())
}

/// Build the selection, print kolla's summary, push if asked; non-zero exit if anything failed.
fn build(
    ctx: &super::Context,
    cfg: &KollaConfig,
    graph: &Graph,
    selection: &graph::Selection,
    tree: &template::RenderedTree,
    shard: Option<&kolla_oci::builder::kolla::ShardRun>,
) -> anyhow::Result<ExitCode> {
    use kolla_oci::builder::{Workspace, kolla};
    let ws = Workspace::open(&ctx.store_dir).with_context(|| format!("opening {}", ctx.store_dir.display()))?;
    let matched = selection.names_with(graph, Status::Matched);
    tracing::info!("building {} images with {} threads", matched.len(), cfg.threads);
    if cfg.work_dir.is_none() {
        tree.write_work_dir(Some(&matched)).context("writing the work dir")?;
    }
    let (summary, mut ok) = kolla::build_selection(&ws, cfg, graph, selection, tree, shard)
        .context("preparing the build (its inputs for the provenance, --no-attestations skips them; --cache-repo)")?;
    if cfg.push && !summary.built.is_empty() {
        match kolla::push_built(&ws, cfg, graph, &summary) {
            Ok((r, a)) => {
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
            Err(e) => {
                tracing::error!("push failed: {e}");
                ok = false;
            }
        }
    }
    if let Some(path) = &cfg.summary_json_file {
        std::fs::write(path, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if cfg.summary && cfg.format_json {
        println!("{}", serde_json::to_string(&summary)?);
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
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
