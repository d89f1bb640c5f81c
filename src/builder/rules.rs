//! Docker's rules for the instructions that change only the image config (ENV, LABEL, USER, WORKDIR,
//! CMD, ENTRYPOINT, EXPOSE, VOLUME, HEALTHCHECK, STOPSIGNAL, SHELL, MAINTAINER) — a pure function over
//! the config, apart from the executor's I/O (COPY, ADD, RUN), so that each rule has a table test.

use std::path::Path;

use crate::dockerfile::{Command, Kind};
use crate::store::{EmptyObject, Healthcheck, ImageConfig};

/// The shell of shell-form RUN/CMD/ENTRYPOINT when no SHELL instruction chose one.
pub(super) const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// What the rules need to remember across instructions of one Dockerfile.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct RuleState {
    /// Whether this Dockerfile set CMD: ENTRYPOINT resets an *inherited* CMD only, as Docker does.
    pub(super) cmd_set: bool,
}

/// The shell in effect (`SHELL`, else `/bin/sh -c`).
pub(super) fn shell(config: &ImageConfig) -> Vec<String> {
    config.config.shell.clone().unwrap_or_else(|| DEFAULT_SHELL.map(String::from).to_vec())
}

/// The argv of a CMD/ENTRYPOINT/RUN: exec form as written, shell form through the shell in effect.
pub(super) fn argv(config: &ImageConfig, cmd: &Command) -> Vec<String> {
    match cmd {
        Command::Exec(argv) => argv.clone(),
        Command::Shell(s) => {
            let mut v = shell(config);
            v.push(s.clone());
            v
        }
    }
}

/// The working directory in effect (`/` when none is set).
pub(super) fn workdir(config: &ImageConfig) -> String {
    config.config.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into())
}

/// Apply a config-only instruction (already expanded) to `config`. Returns false, changing nothing, for
/// the instructions that are not config-only: FROM, ARG, COPY, ADD and RUN.
pub(super) fn apply(config: &mut ImageConfig, state: &mut RuleState, kind: &Kind) -> bool {
    match kind {
        Kind::From(_) | Kind::Arg(_) | Kind::Copy(_) | Kind::Add(_) | Kind::Run(_) => return false,
        Kind::Env(kvs) => {
            let env = &mut config.config.env;
            for kv in kvs {
                let prefix = format!("{}=", kv.key);
                let entry = format!("{}={}", kv.key, kv.value);
                match env.iter_mut().find(|e| e.starts_with(&prefix)) {
                    Some(e) => *e = entry,
                    None => env.push(entry),
                }
            }
        }
        Kind::Label(kvs) => {
            for kv in kvs {
                config.config.labels.insert(kv.key.clone(), kv.value.clone());
            }
        }
        Kind::User(u) => config.config.user = Some(u.clone()),
        Kind::Workdir(w) => {
            let joined =
                if w.starts_with('/') { Path::new(w).to_path_buf() } else { Path::new(&workdir(config)).join(w) };
            config.config.working_dir = Some(joined.to_string_lossy().into_owned());
        }
        Kind::Cmd(cmd) => {
            config.config.cmd = Some(argv(config, cmd));
            state.cmd_set = true;
        }
        Kind::Entrypoint(cmd) => {
            let argv = argv(config, cmd);
            config.config.entrypoint = (!argv.is_empty()).then_some(argv);
            if !state.cmd_set {
                config.config.cmd = None;
            }
        }
        Kind::Expose(ports) => {
            for p in ports {
                config.config.exposed_ports.insert(p.clone(), EmptyObject {});
            }
        }
        Kind::Volume(vols) => {
            for v in vols {
                config.config.volumes.insert(v.clone(), EmptyObject {});
            }
        }
        Kind::Healthcheck(h) => {
            let nonzero = |v: i64| (v != 0).then_some(v);
            config.config.healthcheck = Some(match h {
                None => Healthcheck { test: vec!["NONE".into()], ..Default::default() },
                Some(h) => Healthcheck {
                    test: h.test(),
                    interval: nonzero(h.interval),
                    timeout: nonzero(h.timeout),
                    start_period: nonzero(h.start_period),
                    start_interval: nonzero(h.start_interval),
                    retries: nonzero(i64::from(h.retries)),
                    ..Default::default()
                },
            });
        }
        Kind::StopSignal(s) => config.config.stop_signal = Some(s.clone()),
        Kind::Shell(sh) => config.config.shell = Some(sh.clone()),
        Kind::Maintainer(m) => config.author = Some(m.clone()),
    }
    true
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::{Value, json};

    use super::*;
    use crate::dockerfile::{self, Expander};

    /// Apply the instructions of `dockerfile` (after its FROM) to `base`, as a build would; returns the
    /// config's JSON and whether each instruction was config-only.
    fn run(base: Value, dockerfile: &str) -> (Value, Vec<bool>) {
        let df = dockerfile::parse(Path::new("Dockerfile"), dockerfile).unwrap();
        let mut config: ImageConfig = serde_json::from_value(base).unwrap();
        let mut state = RuleState::default();
        let mut ex = Expander::new(Default::default());
        ex.set_base_env(&config.config.env);
        let mut applied = Vec::new();
        for raw in &df.instructions {
            // The expander sees FROM too (it scopes ARGs by stage); the rules start after it.
            let ins = ex.expand(raw).unwrap();
            if !matches!(ins.kind, dockerfile::Kind::From(_)) {
                applied.push(apply(&mut config, &mut state, &ins.kind));
            }
        }
        (serde_json::to_value(&config).unwrap(), applied)
    }

    fn base(config: Value) -> Value {
        json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "config": config})
    }

    #[test]
    fn docker_config_rules() {
        // (what, inherited config, Dockerfile after FROM, JSON pointer, expected value)
        let cases: &[(&str, Value, &str, &str, Value)] = &[
            ("ENV appends", json!({"Env": ["A=1"]}), "ENV B=2", "/config/Env", json!(["A=1", "B=2"])),
            ("ENV replaces in place", json!({"Env": ["A=1", "B=2"]}), "ENV A=3", "/config/Env", json!(["A=3", "B=2"])),
            ("ENV sees earlier ENV", json!({"Env": ["P=/a"]}), "ENV P=$P:/b", "/config/Env", json!(["P=/a:/b"])),
            (
                "LABEL overrides",
                json!({"Labels": {"a": "1"}}),
                "LABEL a=2 b=3",
                "/config/Labels",
                json!({"a": "2", "b": "3"}),
            ),
            ("USER", json!({}), "USER kolla:kolla", "/config/User", json!("kolla:kolla")),
            ("WORKDIR absolute", json!({"WorkingDir": "/x"}), "WORKDIR /srv", "/config/WorkingDir", json!("/srv")),
            (
                "WORKDIR joins",
                json!({"WorkingDir": "/srv"}),
                "WORKDIR a\nWORKDIR b",
                "/config/WorkingDir",
                json!("/srv/a/b"),
            ),
            ("WORKDIR from root", json!({}), "WORKDIR app", "/config/WorkingDir", json!("/app")),
            ("CMD shell form", json!({}), "CMD echo hi", "/config/Cmd", json!(["/bin/sh", "-c", "echo hi"])),
            ("CMD exec form", json!({}), "CMD [\"a\", \"b\"]", "/config/Cmd", json!(["a", "b"])),
            (
                "SHELL changes shell form",
                json!({}),
                "SHELL [\"/bin/bash\", \"-ec\"]\nCMD x",
                "/config/Cmd",
                json!(["/bin/bash", "-ec", "x"]),
            ),
            (
                "ENTRYPOINT resets inherited CMD",
                json!({"Cmd": ["old"]}),
                "ENTRYPOINT [\"e\"]",
                "/config/Cmd",
                Value::Null,
            ),
            (
                "ENTRYPOINT keeps this file's CMD",
                json!({"Cmd": ["old"]}),
                "CMD [\"new\"]\nENTRYPOINT [\"e\"]",
                "/config/Cmd",
                json!(["new"]),
            ),
            (
                "empty ENTRYPOINT clears it",
                json!({"Entrypoint": ["e"]}),
                "ENTRYPOINT []",
                "/config/Entrypoint",
                Value::Null,
            ),
            ("EXPOSE", json!({}), "EXPOSE 80 443/tcp", "/config/ExposedPorts", json!({"80/tcp": {}, "443/tcp": {}})),
            ("VOLUME", json!({}), "VOLUME /var/lib/x", "/config/Volumes", json!({"/var/lib/x": {}})),
            ("HEALTHCHECK NONE", json!({}), "HEALTHCHECK NONE", "/config/Healthcheck/Test", json!(["NONE"])),
            (
                "HEALTHCHECK CMD",
                json!({}),
                "HEALTHCHECK --interval=30s --retries=3 CMD healthcheck_curl",
                "/config/Healthcheck",
                json!({"Test": ["CMD-SHELL", "healthcheck_curl"], "Interval": 30_000_000_000i64, "Retries": 3}),
            ),
            ("STOPSIGNAL", json!({}), "STOPSIGNAL SIGTERM", "/config/StopSignal", json!("SIGTERM")),
            ("MAINTAINER", json!({}), "MAINTAINER someone", "/author", json!("someone")),
        ];
        for (what, inherited, lines, pointer, want) in cases {
            let (got, applied) = run(base(inherited.clone()), &format!("FROM scratch\n{lines}\n"));
            assert!(applied.iter().all(|a| *a), "{what}: every instruction is config-only");
            assert_eq!(got.pointer(pointer).unwrap_or(&Value::Null), want, "{what}: {got}");
        }
    }

    #[test]
    fn io_instructions_are_left_to_the_executor() {
        let (got, applied) =
            run(base(json!({"Env": ["A=1"]})), "FROM scratch\nARG X=1\nRUN true\nCOPY a /b\nADD c /d\n");
        assert_eq!(applied, [false; 4]);
        let unchanged: ImageConfig = serde_json::from_value(base(json!({"Env": ["A=1"]}))).unwrap();
        assert_eq!(got, serde_json::to_value(&unchanged).unwrap());
    }
}
