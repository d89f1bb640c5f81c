//! The fleet examples in `examples/` stay true: each one's shard count matches its command line, and its
//! command line — with the scheduler's variables filled in for every shard — is accepted by this
//! kolla-oci and selects the bundled tree (run with `--list-images`, which stops before building).

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kolla-oci");

fn yaml(name: &str) -> serde_yaml::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(name);
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Run `command` (a shell command line whose program is `kolla-oci`) with `--list-images` appended.
fn dry_run(command: &str, program: &str, vars: &[(&str, &str)]) -> String {
    let command = command.trim().replacen(program, BIN, 1);
    assert!(command.starts_with(BIN), "the example runs kolla-oci: {command}");
    let store = tempfile::tempdir().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} --list-images"))
        .envs(vars.iter().copied())
        .env("KOLLA_OCI_STORE", store.path())
        .env("HOME", store.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{command}:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[test]
fn kubernetes_indexed_job() {
    let job = yaml("kubernetes-indexed-job.yaml");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let n = spec["completions"].as_u64().unwrap();
    assert_eq!(spec["parallelism"].as_u64(), Some(n), "all shards run at once");
    let container = &spec["template"]["spec"]["containers"][0];
    let command = container["args"][0].as_str().unwrap();
    assert!(command.contains(&format!("$JOB_COMPLETION_INDEX/{n}")), "{command}");
    for i in 0..n {
        let listed =
            dry_run(command, "kolla-oci", &[("JOB_COMPLETION_INDEX", &i.to_string()), ("REGISTRY", "127.0.0.1:5000")]);
        assert!(listed.contains("keystone"), "{listed}");
    }
}

#[test]
fn github_actions_matrix() {
    let wf = yaml("github-actions.yml");
    let job = &wf["jobs"]["build"];
    let shards: Vec<u64> =
        job["strategy"]["matrix"]["shard"].as_sequence().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    let n = shards.len();
    let run = job["steps"].as_sequence().unwrap().iter().rev().find_map(|s| s["run"].as_str()).unwrap();
    assert!(run.contains(&format!("${{{{ matrix.shard }}}}/{n}")), "{run}");
    let registry = job["env"]["REGISTRY"].as_str().unwrap();
    for shard in shards {
        let command = run.replace("${{ matrix.shard }}", &shard.to_string());
        let listed = dry_run(&command, "./target/release/kolla-oci", &[("REGISTRY", registry)]);
        assert!(listed.contains("keystone"), "{listed}");
    }
}
