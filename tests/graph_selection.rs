//! The image graph and selection on small fixture trees: parents from rendered FROM lines,
//! regexes with ancestors, profiles, `--all`, `--skip-parents`, the unbuildable matrix, missing
//! parents and cycles, and the `--list-images` / `--list-dependencies` output of the CLI.

#[path = "support/template.rs"]
mod support;

use std::path::Path;

use kolla_oci::graph::{self, Graph, GraphError, Status};
use kolla_oci::template::render_all;
use support::{child_of, config, kolla_oci_build, run, run_ok, small_tree, write_tree};

fn never(_: &str) -> bool {
    false
}

/// Render `tree` with `argv` (plus the tree and a work dir) and build its graph.
fn graph_of(tree: &Path, work: &Path, argv: &[&str]) -> (Graph, kolla_oci::config::KollaConfig) {
    let mut full = vec!["--template-tree", tree.to_str().unwrap(), "--work-dir", work.to_str().unwrap()];
    full.extend_from_slice(argv);
    let cfg = config(&full);
    let rendered = render_all(&cfg).expect("render");
    (Graph::from_rendered(&rendered, &cfg).expect("graph"), cfg)
}

fn matched(g: &Graph, sel: &graph::Selection) -> Vec<String> {
    sel.names_with(g, Status::Matched).into_iter().map(String::from).collect()
}

#[test]
fn parents_come_from_rendered_from_lines() {
    let tmp = tempfile::tempdir().unwrap();
    small_tree(&tmp.path().join("tree"));
    let (g, _) = graph_of(
        &tmp.path().join("tree"),
        &tmp.path().join("w"),
        &["--registry", "r:5000", "--image-name-prefix", "p-"],
    );
    let parent = |n: &str| g.parent(g.find(n).unwrap()).map(|p| g.nodes[p].name.clone());
    assert_eq!(parent("base"), None, "FROM debian:trixie is external: a root");
    assert_eq!(g.nodes[g.find("base").unwrap()].from, "debian:trixie");
    assert_eq!(parent("nova-api").as_deref(), Some("nova-base"));
    assert_eq!(parent("nova-base").as_deref(), Some("openstack-base"));
    assert_eq!(parent("cron").as_deref(), Some("base"));
    assert_eq!(g.nodes[g.find("nova-api").unwrap()].canonical_name, "r:5000/kolla/p-nova-api:2026.2-debian-trixie");
    // parents come before children
    let order = g.topo_order();
    assert_eq!(order.len(), 7);
    for (pos, &i) in order.iter().enumerate() {
        if let Some(p) = g.parent(i) {
            assert!(order[..pos].contains(&p), "{} before its parent", g.nodes[i].name);
        }
    }
    assert_eq!(g.depth(g.find("nova-compute").unwrap()), 3);
}

#[test]
fn regex_selection_forces_ancestors() {
    let tmp = tempfile::tempdir().unwrap();
    small_tree(&tmp.path().join("tree"));
    let (g, cfg) = graph_of(&tmp.path().join("tree"), &tmp.path().join("w"), &["nova-api", "^cron$"]);
    let sel = graph::select(&g, &cfg, &never).unwrap();
    assert_eq!(matched(&g, &sel), ["base", "cron", "nova-api", "nova-base", "openstack-base"]);
    assert_eq!(sel.names_with(&g, Status::Unmatched), ["glance-api", "nova-compute"]);
    // re.search semantics: unanchored
    let (g, cfg) = graph_of(&tmp.path().join("tree"), &tmp.path().join("w2"), &["api"]);
    let sel = graph::select(&g, &cfg, &never).unwrap();
    assert_eq!(matched(&g, &sel), ["base", "glance-api", "nova-api", "nova-base", "openstack-base"]);
    let names: Vec<&str> = sel.build_order(&g).iter().map(|&i| g.nodes[i].name.as_str()).collect();
    assert_eq!(names[0], "base");
    // a bad regex names the pattern
    let (g, cfg) = graph_of(&tmp.path().join("tree"), &tmp.path().join("w3"), &["nova(", "x"]);
    let err = graph::select(&g, &cfg, &never).unwrap_err();
    assert!(err.to_string().contains("(nova(|x)"), "{err}");
}

#[test]
fn profiles_all_and_regex_precedence() {
    let tmp = tempfile::tempdir().unwrap();
    small_tree(&tmp.path().join("tree"));
    let conf = tmp.path().join("kolla-build.conf");
    std::fs::write(&conf, "[profiles]\nmine = glance,^cron\nempty =\n").unwrap();
    let c = conf.to_str().unwrap();
    let (g, cfg) = graph_of(&tmp.path().join("tree"), &tmp.path().join("w"), &["--config-file", c, "-p", "mine"]);
    let sel = graph::select(&g, &cfg, &never).unwrap();
    assert_eq!(matched(&g, &sel), ["base", "cron", "glance-api", "openstack-base"]);
    // kolla's built-in profile "main" includes "nova-"
    let (g, cfg) = graph_of(&tmp.path().join("tree"), &tmp.path().join("w2"), &["--config-file", c, "-p", "main"]);
    let sel = graph::select(&g, &cfg, &never).unwrap();
    assert_eq!(matched(&g, &sel), ["base", "glance-api", "nova-api", "nova-base", "nova-compute", "openstack-base"]);
    // a regex on the command line wins over the profile; --all wins over both
    let (g, cfg) =
        graph_of(&tmp.path().join("tree"), &tmp.path().join("w3"), &["--config-file", c, "-p", "mine", "nova-api"]);
    let sel = graph::select(&g, &cfg, &never).unwrap();
    assert!(!matched(&g, &sel).contains(&"cron".to_string()));
    let (g, cfg) =
        graph_of(&tmp.path().join("tree"), &tmp.path().join("w4"), &["--config-file", c, "-p", "mine", "--all", "x"]);
    assert_eq!(matched(&g, &graph::select(&g, &cfg, &never).unwrap()).len(), 7);
    // unknown and empty profiles are errors naming the profile
    for p in ["nope", "empty"] {
        let (g, cfg) = graph_of(&tmp.path().join("tree"), &tmp.path().join("w5"), &["--config-file", c, "-p", p]);
        match graph::select(&g, &cfg, &never) {
            Err(GraphError::UnknownProfile(name)) => assert_eq!(name, p),
            other => panic!("profile {p}: {other:?}"),
        }
    }
}

#[test]
fn skip_parents_skip_existing_and_unbuildable() {
    let tmp = tempfile::tempdir().unwrap();
    small_tree(&tmp.path().join("tree"));
    let (g, cfg) = graph_of(&tmp.path().join("tree"), &tmp.path().join("w"), &["--skip-parents", "nova-api"]);
    let sel = graph::select(&g, &cfg, &never).unwrap();
    assert_eq!(matched(&g, &sel), ["nova-api"]);
    assert_eq!(sel.names_with(&g, Status::Skipped), ["base", "nova-base", "openstack-base"]);

    let (g, cfg) = graph_of(&tmp.path().join("tree"), &tmp.path().join("w2"), &["--skip-existing", "nova"]);
    let exists = |c: &str| c == "kolla/base:2026.2-debian-trixie";
    let sel = graph::select(&g, &cfg, &exists).unwrap();
    assert_eq!(sel.names_with(&g, Status::Skipped), ["base"]);

    // rocky marks collectd unbuildable, and with it its descendants
    let tree = tmp.path().join("tree2");
    small_tree(&tree);
    write_tree(
        &tree,
        &[("collectd/Dockerfile.j2", &child_of("base")), ("collectd/collectd-x/Dockerfile.j2", &child_of("collectd"))],
    );
    let (g, cfg) = graph_of(&tree, &tmp.path().join("w3"), &["--base", "rocky", "collectd"]);
    let sel = graph::select(&g, &cfg, &never).unwrap();
    assert_eq!(sel.names_with(&g, Status::Unbuildable), ["collectd", "collectd-x"]);
    assert_eq!(matched(&g, &sel), Vec::<String>::new());
    let (g, cfg) = graph_of(&tree, &tmp.path().join("w4"), &["--base", "rocky", "--enable-unbuildable", "collectd"]);
    assert_eq!(matched(&g, &graph::select(&g, &cfg, &never).unwrap()), ["base", "collectd", "collectd-x"]);
}

#[test]
fn own_namespace_parent_outside_the_tree_is_a_root_and_cycle_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("missing");
    small_tree(&tree);
    write_tree(&tree, &[("nova/nova-conductor/Dockerfile.j2", &child_of("nova-bsae"))]);
    let cfg =
        config(&["--template-tree", tree.to_str().unwrap(), "--work-dir", tmp.path().join("w").to_str().unwrap()]);
    let rendered = render_all(&cfg).unwrap();
    // As kolla-build: a FROM in our namespace that no directory renders is a root image, built on
    // whatever the store or a registry holds under that name.
    let g = Graph::from_rendered(&rendered, &cfg).unwrap();
    let i = g.find("nova-conductor").unwrap();
    assert_eq!(g.nodes[i].parent, None);
    assert_eq!(g.nodes[i].from, "kolla/nova-bsae:2026.2-debian-trixie");
    let sel = graph::select(&g, &cfg, &never).unwrap();
    assert!(matched(&g, &sel).contains(&"nova-conductor".to_string()));

    let tree = tmp.path().join("cycle");
    small_tree(&tree);
    write_tree(&tree, &[("a/Dockerfile.j2", &child_of("b")), ("b/Dockerfile.j2", &child_of("a"))]);
    let cfg =
        config(&["--template-tree", tree.to_str().unwrap(), "--work-dir", tmp.path().join("w2").to_str().unwrap()]);
    let rendered = render_all(&cfg).unwrap();
    match Graph::from_rendered(&rendered, &cfg) {
        Err(GraphError::Cycle(names)) => {
            assert!(names.contains(&"a".to_string()) && names.contains(&"b".to_string()), "{names:?}");
            assert_eq!(names.first(), names.last(), "the cycle is closed: {names:?}");
        }
        other => panic!("expected a cycle: {other:?}"),
    }

    // the CLI reports it and fails
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = run(kolla_oci_build(&home).arg("--template-tree").arg(&tree).arg("--list-images"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cycle") && (err.contains("a -> b") || err.contains("b -> a")), "{err}");
}

#[test]
fn cli_lists_images_and_dependencies() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    small_tree(&tree);
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = run_ok(kolla_oci_build(&home).arg("--template-tree").arg(&tree).args(["--list-images", "nova-api"]));
    assert_eq!(out, "1 : base\n2 : nova-api\n3 : nova-base\n4 : openstack-base\n");

    let out = run_ok(kolla_oci_build(&home).arg("--template-tree").arg(&tree).arg("-l"));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"base": ["cron", {"openstack-base": ["glance-api", {"nova-base": ["nova-api", "nova-compute"]}]}]})
    );
    // kolla's json.dump(indent=2) layout
    assert!(out.starts_with("{\n  \"base\": [\n    \"cron\",\n    {\n      \"openstack-base\": ["), "{out}");

    // a matched image with children that are not matched is still an object
    let out = run_ok(kolla_oci_build(&home).arg("--template-tree").arg(&tree).args(["-l", "^nova-base"]));
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json, serde_json::json!({"base": [{"openstack-base": [{"nova-base": []}]}]}));

    let out = run_ok(kolla_oci_build(&home).arg("--template-tree").arg(&tree).args(["-l", "nothing-like-this"]));
    assert_eq!(out.trim(), "Nothing matched!");

    let dot = tmp.path().join("deps.dot");
    run_ok(kolla_oci_build(&home).arg("--template-tree").arg(&tree).arg("--save-dependency").arg(&dot).arg("glance"));
    let dot = std::fs::read_to_string(dot).unwrap();
    assert!(dot.contains("\"openstack-base\" -> \"glance-api\"") && !dot.contains("nova"), "{dot}");
}
