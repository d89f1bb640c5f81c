//! `kolla-oci build` as kolla-build does it: the selected images of a rendered tree become scheduler
//! jobs, the outcome becomes kolla's summary, and `--push` publishes what was built.

use std::collections::BTreeMap;

use super::scheduler::{self, Job, NameEntry, RunOptions, Summary};
use super::{BuildOptions, Workspace};
use crate::config::{CompressionKind, KollaConfig};
use crate::graph::{Graph, Selection, Status};
use crate::registry::{self, PushReport, Reference, RegistryError, RegistryOptions};
use crate::sources::SourceOptions;
use crate::template::RenderedTree;

/// Build options from kolla-build's options.
pub fn build_options(cfg: &KollaConfig) -> BuildOptions {
    BuildOptions {
        compression: match cfg.compression {
            CompressionKind::Gzip => layers::Compression::Gzip { level: 6 },
            CompressionKind::Zstd => layers::Compression::Zstd { level: 3 },
        },
        build_args: cfg.effective_build_args(),
        cache: cfg.cache,
        pull: cfg.pull,
        registry: registry_options(cfg),
        ..BuildOptions::default()
    }
}

/// Registry options from kolla-build's options, for pulling `FROM` images and for `--push`.
pub fn registry_options(cfg: &KollaConfig) -> RegistryOptions {
    RegistryOptions {
        insecure_registries: cfg.insecure_registries.clone(),
        retries: cfg.retries,
        threads: cfg.push_threads.max(1),
        ..RegistryOptions::default()
    }
}

/// One job per matched image, parents first; `parent` links only to parents built in this run (an
/// unselected parent must already be in the store).
pub fn jobs(cfg: &KollaConfig, graph: &Graph, sel: &Selection, tree: &RenderedTree) -> Vec<Job> {
    let order = sel.build_order(graph);
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
                sources: Some(cfg.image_sources(&node.name)),
            })
        })
        .collect()
}

/// Build the selection and return kolla's summary, plus whether every built image succeeded (images in
/// `allowed_to_fail` do not count, as in kolla-build).
pub fn build_selection(
    ws: &Workspace,
    cfg: &KollaConfig,
    graph: &Graph,
    sel: &Selection,
    tree: &RenderedTree,
) -> (Summary, bool) {
    let jobs = jobs(cfg, graph, sel, tree);
    let sources = SourceOptions {
        cache_dir: ws.sources_dir(),
        timeout: std::time::Duration::from_secs(cfg.timeout),
        debian_arch: cfg.debian_arch.clone(),
        refetch: !cfg.cache,
        retries: cfg.retries,
    };
    let run = RunOptions { threads: cfg.threads.max(1), logs_dir: cfg.logs_dir.clone(), sources: Some(sources) };
    let report = scheduler::run(ws, &jobs, &build_options(cfg), &run);
    let mut summary = Summary::default();
    report.fill(&jobs, &mut summary);
    let names = |status| sel.names_with(graph, status).into_iter().map(|n| NameEntry { name: n.to_owned() }).collect();
    summary.not_matched = names(Status::Unmatched);
    summary.skipped = names(Status::Skipped);
    summary.unbuildable = names(Status::Unbuildable);
    let ok = summary.failed.iter().all(|f| cfg.allowed_to_fail.contains(&f.name));
    (summary, ok)
}

/// Push the images `summary` lists as built to where their canonical names point
/// (`[registry/]namespace/[prefix]name:tag`).
pub fn push_built(
    ws: &Workspace,
    cfg: &KollaConfig,
    graph: &Graph,
    summary: &Summary,
) -> Result<PushReport, RegistryError> {
    let mut images = Vec::new();
    for b in &summary.built {
        if let Some(i) = graph.find(&b.name) {
            let canonical = &graph.nodes[i].canonical_name;
            images.push((canonical.clone(), Reference::parse(canonical)?));
        }
    }
    registry::push(ws.store(), &images, &registry_options(cfg))
}
