//! The image graph and image selection, as kolla-build computes them.
//!
//! An image's parent comes from its **rendered** Dockerfile: the first line starting with
//! `FROM` (any case), second space-separated token, compared exactly with the other images'
//! canonical names `[registry/]namespace/[prefix]image:tag`; no match makes the image a root
//! (built on an external base) — also when the `FROM` names our own namespace, as in kolla-build:
//! such a parent must then come from the store or a registry. A cycle is an error.
//!
//! Selection follows kolla's `filter_images`: unbuildable images (kolla's per-base/arch
//! matrix) and their descendants are excluded; positional regexes (Python `re.search` on the
//! image name, lookahead, lookbehind and backreferences included), else the `--profile` regex lists, match images and force-match their
//! ancestors; without either every buildable image is matched (kolla-oci's `--all` does the
//! same regardless of regexes or profiles). `--skip-parents` then skips matched images that
//! have children, and `--skip-existing` those already built.

use std::collections::BTreeMap;

use crate::config::KollaConfig;
use crate::template::RenderedTree;

/// Errors building the graph or selecting images. Each names the images or pattern at fault.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Parents form a cycle.
    #[error("images form a cycle through their FROM lines: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    /// Two images have the same name.
    #[error("two images are named {0:?}")]
    Duplicate(String),
    /// `--profile` names a profile that is missing or empty.
    #[error("profile {0:?} does not exist (or is empty); define it in [profiles]")]
    UnknownProfile(String),
    /// A selection regex does not compile (or gives up matching a name: backtracking limit).
    #[error("invalid image regex {pattern:?}: {source}")]
    BadRegex {
        /// The joined pattern.
        pattern: String,
        /// The regex error.
        source: Box<fancy_regex::Error>,
    },
}

/// One image of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Image name (directory basename).
    pub name: String,
    /// `[registry/]namespace/[prefix]name:tag`.
    pub canonical_name: String,
    /// The `FROM` reference (second token of the first `FROM` line; empty if none).
    pub from: String,
    /// Index of the parent image, `None` for a root.
    pub parent: Option<usize>,
    /// Indexes of the children, sorted by name.
    pub children: Vec<usize>,
}

/// All images of a rendered tree and their parent links. Nodes are sorted by name.
#[derive(Debug, Clone)]
pub struct Graph {
    /// The images, sorted by name; indexes are stable.
    pub nodes: Vec<Node>,
    by_name: BTreeMap<String, usize>,
}

/// kolla's parent reference: the second `' '`-separated token of the first line that starts
/// with `FROM` in any case (empty when there is none).
pub fn from_reference(dockerfile: &str) -> String {
    dockerfile
        .split('\n')
        .find(|l| l.len() >= 4 && l.is_char_boundary(4) && l[..4].eq_ignore_ascii_case("FROM"))
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default()
        .to_string()
}

impl Graph {
    /// Build the graph of a rendered tree with the naming of `cfg`.
    pub fn from_rendered(tree: &RenderedTree, cfg: &KollaConfig) -> Result<Graph, GraphError> {
        Self::build(
            tree.images.iter().map(|i| (i.name.as_str(), i.dockerfile.as_str())),
            &cfg.namespace,
            &cfg.image_prefix,
            &cfg.tag,
        )
    }

    /// Build the graph from `(name, rendered Dockerfile)` pairs; `namespace` includes the
    /// registry, as templates see it.
    pub fn build<'a>(
        images: impl IntoIterator<Item = (&'a str, &'a str)>,
        namespace: &str,
        prefix: &str,
        tag: &str,
    ) -> Result<Graph, GraphError> {
        let mut nodes: Vec<Node> = images
            .into_iter()
            .map(|(name, df)| Node {
                name: name.to_string(),
                canonical_name: format!("{namespace}/{prefix}{name}:{tag}"),
                from: from_reference(df),
                parent: None,
                children: Vec::new(),
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut by_name = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if by_name.insert(n.name.clone(), i).is_some() {
                return Err(GraphError::Duplicate(n.name.clone()));
            }
        }
        let by_canonical: BTreeMap<&str, usize> =
            nodes.iter().enumerate().map(|(i, n)| (n.canonical_name.as_str(), i)).collect();
        let own = format!("{namespace}/");
        let mut parents = Vec::with_capacity(nodes.len());
        for n in &nodes {
            let parent = by_canonical.get(n.from.as_str()).copied();
            if parent.is_none() && n.from.starts_with(&own) {
                tracing::debug!(image = %n.name, from = %n.from, "parent is not an image of this tree: a root");
            }
            parents.push(parent);
        }
        for (i, p) in parents.into_iter().enumerate() {
            nodes[i].parent = p;
            if let Some(p) = p {
                nodes[p].children.push(i);
            }
        }
        let graph = Graph { nodes, by_name };
        graph.check_cycles()?;
        Ok(graph)
    }

    fn check_cycles(&self) -> Result<(), GraphError> {
        // 0 = unvisited, 1 = on the current path, 2 = known to reach a root
        let mut state = vec![0u8; self.nodes.len()];
        for start in 0..self.nodes.len() {
            let mut path = Vec::new();
            let mut cur = Some(start);
            while let Some(i) = cur {
                match state[i] {
                    2 => break,
                    1 => {
                        let from = path.iter().position(|&p| p == i).unwrap_or(0);
                        let mut names: Vec<String> =
                            path[from..].iter().map(|&p: &usize| self.nodes[p].name.clone()).collect();
                        names.push(self.nodes[i].name.clone());
                        return Err(GraphError::Cycle(names));
                    }
                    _ => {
                        state[i] = 1;
                        path.push(i);
                        cur = self.nodes[i].parent;
                    }
                }
            }
            for p in path {
                state[p] = 2;
            }
        }
        Ok(())
    }

    /// The index of the image called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// The parent of image `i`.
    pub fn parent(&self, i: usize) -> Option<usize> {
        self.nodes[i].parent
    }

    /// `i` and its ancestors, nearest first.
    pub fn ancestors(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(self.nodes[i].parent, |&p| self.nodes[p].parent)
    }

    /// Every image, parents before children (roots first, then breadth-first by name).
    pub fn topo_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].parent.is_none()).collect();
        let mut next = 0;
        while next < order.len() {
            let i = order[next];
            order.extend(self.nodes[i].children.iter().copied());
            next += 1;
        }
        order
    }

    /// Depth of image `i` (roots are 0).
    pub fn depth(&self, i: usize) -> usize {
        self.ancestors(i).count()
    }
}

/// What selection decided for an image (kolla's statuses before building).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// To build.
    Matched,
    /// Not selected by the regexes / profiles.
    Unmatched,
    /// Selected but skipped (`--skip-parents`, `--skip-existing`).
    Skipped,
    /// Excluded by the unbuildable matrix for this base/arch (or a descendant of such).
    Unbuildable,
}

/// kolla's matrix of images that cannot be built (kolla 23.0.0, `kolla/image/unbuildable.py`):
/// keys are `+`-joined base distros and architectures.
pub const UNBUILDABLE: &[(&str, &[&str])] = &[
    ("aarch64", &["bifrost-base"]),
    ("debian", &[]),
    ("rocky", &["collectd", "hacluster-pcs", "nova-spicehtml5proxy", "ovsdpdk", "tgtd"]),
    ("ubuntu", &[]),
    ("ubuntu+aarch64", &[]),
];

/// Images unbuildable for `base`/`arch`: keys made only of `base` and `arch` apply.
pub fn unbuildable_for(base: &str, arch: &str) -> Vec<&'static str> {
    UNBUILDABLE
        .iter()
        .filter(|(key, _)| key.split('+').all(|part| part == base || part == arch))
        .flat_map(|(_, images)| images.iter().copied())
        .collect()
}

/// The outcome of selection: one status per graph node.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Indexed like `Graph::nodes`.
    pub status: Vec<Status>,
}

impl Selection {
    /// Whether image `i` is to be built.
    pub fn is_matched(&self, i: usize) -> bool {
        self.status[i] == Status::Matched
    }

    /// Images to build, parents before children.
    pub fn build_order(&self, graph: &Graph) -> Vec<usize> {
        graph.topo_order().into_iter().filter(|&i| self.is_matched(i)).collect()
    }

    /// Names of images with `status`, sorted (for the summary).
    pub fn names_with<'g>(&self, graph: &'g Graph, status: Status) -> Vec<&'g str> {
        (0..graph.nodes.len()).filter(|&i| self.status[i] == status).map(|i| graph.nodes[i].name.as_str()).collect()
    }
}

/// Select images as kolla-build does (see the module docs). `exists` answers
/// `--skip-existing` for a canonical name; it is only called for matched images when that
/// option is set.
pub fn select(graph: &Graph, cfg: &KollaConfig, exists: &dyn Fn(&str) -> bool) -> Result<Selection, GraphError> {
    let mut filter: Vec<String> = Vec::new();
    if !cfg.all {
        if !cfg.regex.is_empty() {
            filter.extend(cfg.regex.iter().cloned());
        } else {
            for p in &cfg.profile {
                match cfg.profiles.get(p) {
                    Some(list) if !list.is_empty() => filter.extend(list.iter().cloned()),
                    _ => return Err(GraphError::UnknownProfile(p.clone())),
                }
            }
        }
    }
    let unbuildable = if cfg.enable_unbuildable { Vec::new() } else { unbuildable_for(&cfg.base, &cfg.base_arch) };
    select_with(graph, &filter, &unbuildable, cfg.skip_parents, cfg.skip_existing.then_some(exists))
}

/// The selection core: `filter` regexes (empty: everything), `unbuildable` image names,
/// `--skip-parents`, and an existence check for `--skip-existing`.
pub fn select_with(
    graph: &Graph,
    filter: &[String],
    unbuildable: &[&str],
    skip_parents: bool,
    skip_existing: Option<&dyn Fn(&str) -> bool>,
) -> Result<Selection, GraphError> {
    let n = graph.nodes.len();
    let bad = |j: usize| unbuildable.contains(&graph.nodes[j].name.as_str());
    let mut status: Vec<Status> = (0..n)
        .map(|i| if bad(i) || graph.ancestors(i).any(bad) { Status::Unbuildable } else { Status::Unmatched })
        .collect();
    if filter.is_empty() {
        for s in status.iter_mut().filter(|s| **s != Status::Unbuildable) {
            *s = Status::Matched;
        }
    } else {
        // kolla joins the patterns as `(a|b)` and uses Python's `re.search`: a backtracking engine
        // with lookaround and backreferences, which fancy-regex provides over the same syntax.
        let pattern = format!("({})", filter.join("|"));
        let bad = |source| GraphError::BadRegex { pattern: pattern.clone(), source: Box::new(source) };
        let re = fancy_regex::Regex::new(&pattern).map_err(bad)?;
        for i in 0..n {
            if status[i] != Status::Unbuildable && re.is_match(&graph.nodes[i].name).map_err(bad)? {
                status[i] = Status::Matched;
                for a in graph.ancestors(i) {
                    status[a] = Status::Matched;
                }
            }
        }
    }
    for (st, node) in status.iter_mut().zip(&graph.nodes) {
        if *st != Status::Matched {
            continue;
        }
        if skip_existing.is_some_and(|exists| exists(&node.canonical_name)) {
            tracing::debug!(image = %node.name, "skipping existing image");
            *st = Status::Skipped;
        } else if skip_parents && !node.children.is_empty() {
            tracing::debug!(image = %node.name, "skipping parent image");
            *st = Status::Skipped;
        }
    }
    Ok(Selection { status })
}

/// `--list-images`: `N : name` for each matched image, numbered from 1.
pub fn list_images(graph: &Graph, sel: &Selection) -> String {
    let mut out = String::new();
    for (k, i) in (0..graph.nodes.len()).filter(|&i| sel.is_matched(i)).enumerate() {
        out.push_str(&format!("{} : {}\n", k + 1, graph.nodes[i].name));
    }
    out
}

/// `--list-dependencies`: kolla's nested JSON tree of matched images, `{"base": [leaf,
/// {"parent": [...]}, ...]}`. An image with children (matched or not) is an object, a
/// childless one a string. With several roots, each is a key of the top object. `None` when
/// nothing matched (kolla prints `Nothing matched!`).
pub fn dependencies_json(graph: &Graph, sel: &Selection) -> Option<serde_json::Value> {
    fn children(graph: &Graph, sel: &Selection, i: usize) -> Vec<serde_json::Value> {
        graph.nodes[i]
            .children
            .iter()
            .filter(|&&c| sel.is_matched(c))
            .map(|&c| {
                let node = &graph.nodes[c];
                if node.children.is_empty() {
                    serde_json::Value::String(node.name.clone())
                } else {
                    let mut m = serde_json::Map::new();
                    m.insert(node.name.clone(), serde_json::Value::Array(children(graph, sel, c)));
                    serde_json::Value::Object(m)
                }
            })
            .collect()
    }
    if !(0..graph.nodes.len()).any(|i| sel.is_matched(i)) {
        return None;
    }
    let mut top = serde_json::Map::new();
    for i in (0..graph.nodes.len()).filter(|&i| graph.nodes[i].parent.is_none()) {
        let has_matched = sel.is_matched(i) || graph.nodes[i].children.iter().any(|&c| sel.is_matched(c));
        if has_matched {
            top.insert(graph.nodes[i].name.clone(), serde_json::Value::Array(children(graph, sel, i)));
        }
    }
    Some(serde_json::Value::Object(top))
}

/// `--save-dependency`: the matched images and their parent edges in Graphviz dot format.
pub fn dependency_dot(graph: &Graph, sel: &Selection) -> String {
    let mut out = String::from("// Container Images Dependency\ndigraph {\n\trankdir=LR\n");
    for i in (0..graph.nodes.len()).filter(|&i| sel.is_matched(i)) {
        let node = &graph.nodes[i];
        out.push_str(&format!("\t\"{}\"\n", node.name));
        if let Some(p) = node.parent {
            out.push_str(&format!("\t\"{}\" -> \"{}\"\n", graph.nodes[p].name, node.name));
        }
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_reference_rules() {
        assert_eq!(from_reference("# x\nfrom kolla/base:t AS b\nFROM other"), "kolla/base:t");
        assert_eq!(from_reference("FROM"), "");
        assert_eq!(from_reference("RUN x\n"), "");
    }

    #[test]
    fn unbuildable_matrix() {
        assert_eq!(unbuildable_for("debian", "aarch64"), vec!["bifrost-base"]);
        assert_eq!(unbuildable_for("rocky", "x86_64").len(), 5);
        assert!(unbuildable_for("debian", "x86_64").is_empty());
    }

    /// Python `re` syntax the `regex` crate lacks: lookahead, lookbehind, backreferences.
    #[test]
    fn regexes_have_python_re_semantics() {
        let df = |parent: &str| format!("FROM ns/{parent}:t\n");
        let images = [
            ("base", "FROM debian:trixie\n".to_string()),
            ("nova-api", df("base")),
            ("glance-api", df("base")),
            ("heat-api-cfn", df("base")),
            ("aa-bb", df("base")),
        ];
        let g = Graph::build(images.iter().map(|(n, d)| (*n, d.as_str())), "ns", "", "t").unwrap();
        let pick = |re: &str| {
            let sel = select_with(&g, &[re.to_string()], &[], false, None).unwrap();
            sel.names_with(&g, Status::Matched).into_iter().map(String::from).collect::<Vec<_>>()
        };
        assert_eq!(pick(r"^(?!nova).*-api$"), ["base", "glance-api"]);
        assert_eq!(pick(r"(?<=heat-)api"), ["base", "heat-api-cfn"]);
        // Patterns are joined as `(a|b)`, so their groups count from 2, in kolla-build as here.
        assert_eq!(pick(r"^(a)\2-"), ["aa-bb", "base"]);
        assert!(matches!(select_with(&g, &["nova(".into()], &[], false, None), Err(GraphError::BadRegex { .. })));
    }
}
