//! A rendered Kolla-style Dockerfile (shaped like kolla's nova-base: FROM, LABEL, USER root,
//! RUN with `&&` continuations and a comment inside, ADD of a source archive, COPY, ENV in
//! both forms, USER) parses to the expected instructions and lines, and expands as
//! `docker build` would.

#[path = "support/dockerfile.rs"]
mod support;

use std::collections::BTreeMap;

use kolla_oci::dockerfile::{Command, CopySpec, Expander, FromSpec, KeyValue, Kind, RunSpec};
use support::{parse, strs};

const NOVA_BASE: &str = r#"FROM kolla/openstack-base:2025.1
LABEL maintainer="Kolla Project (https://launchpad.net/kolla)" name="nova-base" build-date="20250101"

USER root

RUN apt-get update \
    && apt-get -y install --no-install-recommends \
        ceph-common \
        # genisoimage is needed for config drives
        genisoimage \
        qemu-utils \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

ADD nova-base-archive /nova-base-source

RUN ln -s nova-base-source/* nova \
    && python3 -m pip --no-cache-dir install --upgrade -c /requirements/upper-constraints.txt /nova \
    && mkdir -p /etc/nova /var/lib/nova/instances \
    && chown -R nova: /etc/nova /var/lib/nova

COPY nova_sudoers /etc/sudoers.d/kolla_nova_sudoers
COPY extend_start.sh /usr/local/bin/kolla_extend_start

ENV LANG en_US.UTF-8
ENV KOLLA_SERVICE_NAME=nova-base \
    PATH=/var/lib/kolla/venv/bin:$PATH

RUN chmod 750 /etc/sudoers.d \
    && chmod 440 /etc/sudoers.d/kolla_nova_sudoers \
    && touch /usr/local/bin/kolla_nova_extend_start \
    && chmod 644 /usr/local/bin/kolla_extend_start /usr/local/bin/kolla_nova_extend_start

USER nova
"#;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: v.into() }
}

fn run(s: &str) -> Kind {
    Kind::Run(RunSpec { command: Command::Shell(s.into()), heredocs: vec![] })
}

fn copy(src: &str, dest: &str) -> CopySpec {
    CopySpec { sources: strs(&[src]), heredocs: vec![], dest: dest.into(), chown: None, chmod: None, link: false }
}

#[test]
fn nova_base_parses_to_the_expected_instructions() {
    let df = parse(NOVA_BASE);
    assert!(df.warnings.is_empty());
    let got: Vec<(usize, usize, Kind)> = df.instructions.iter().map(|i| (i.line, i.end_line, i.kind.clone())).collect();
    let expected = vec![
        (1, 1, Kind::From(FromSpec { image: "kolla/openstack-base:2025.1".into(), name: None, platform: None })),
        (
            2,
            2,
            Kind::Label(vec![
                kv("maintainer", r#""Kolla Project (https://launchpad.net/kolla)""#),
                kv("name", r#""nova-base""#),
                kv("build-date", r#""20250101""#),
            ]),
        ),
        (4, 4, Kind::User("root".into())),
        (
            6,
            13,
            run(concat!(
                "apt-get update ",
                "    && apt-get -y install --no-install-recommends ",
                "        ceph-common ",
                "        genisoimage ",
                "        qemu-utils ",
                "    && apt-get clean ",
                "    && rm -rf /var/lib/apt/lists/*"
            )),
        ),
        (15, 15, Kind::Add(copy("nova-base-archive", "/nova-base-source"))),
        (
            17,
            20,
            run(concat!(
                "ln -s nova-base-source/* nova ",
                "    && python3 -m pip --no-cache-dir install --upgrade -c /requirements/upper-constraints.txt /nova ",
                "    && mkdir -p /etc/nova /var/lib/nova/instances ",
                "    && chown -R nova: /etc/nova /var/lib/nova"
            )),
        ),
        (22, 22, Kind::Copy(copy("nova_sudoers", "/etc/sudoers.d/kolla_nova_sudoers"))),
        (23, 23, Kind::Copy(copy("extend_start.sh", "/usr/local/bin/kolla_extend_start"))),
        (25, 25, Kind::Env(vec![kv("LANG", "en_US.UTF-8")])),
        (26, 27, Kind::Env(vec![kv("KOLLA_SERVICE_NAME", "nova-base"), kv("PATH", "/var/lib/kolla/venv/bin:$PATH")])),
        (
            29,
            32,
            run(concat!(
                "chmod 750 /etc/sudoers.d ",
                "    && chmod 440 /etc/sudoers.d/kolla_nova_sudoers ",
                "    && touch /usr/local/bin/kolla_nova_extend_start ",
                "    && chmod 644 /usr/local/bin/kolla_extend_start /usr/local/bin/kolla_nova_extend_start"
            )),
        ),
        (34, 34, Kind::User("nova".into())),
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    assert_eq!(
        df.instructions[1].original,
        r#"LABEL maintainer="Kolla Project (https://launchpad.net/kolla)" name="nova-base" build-date="20250101""#
    );
}

#[test]
fn nova_base_expands_like_docker_build() {
    let df = parse(NOVA_BASE);
    let mut ex = Expander::new(BTreeMap::new());
    let mut out = Vec::new();
    for ins in &df.instructions {
        let e = ex.expand(ins).unwrap();
        if matches!(e.kind, Kind::From(_)) {
            // What the builder does once it has the base image config.
            ex.set_base_env(&strs(&[
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
                "KOLLA_BASE_DISTRO=debian",
            ]));
        }
        out.push(e);
    }
    assert_eq!(
        out[1].kind,
        Kind::Label(vec![
            kv("maintainer", "Kolla Project (https://launchpad.net/kolla)"),
            kv("name", "nova-base"),
            kv("build-date", "20250101"),
        ])
    );
    assert_eq!(
        out[9].kind,
        Kind::Env(vec![
            kv("KOLLA_SERVICE_NAME", "nova-base"),
            kv("PATH", "/var/lib/kolla/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        ])
    );
    // Unchanged by expansion: RUN keeps its `$`-free text, COPY/ADD/USER have no variables.
    for i in [0, 2, 3, 4, 5, 6, 7, 10, 11] {
        if !matches!(out[i].kind, Kind::From(_)) {
            assert_eq!(out[i].kind, df.instructions[i].kind, "instruction {i}");
        }
    }
    assert_eq!(
        ex.config_env(),
        strs(&[
            "PATH=/var/lib/kolla/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG=en_US.UTF-8",
            "KOLLA_BASE_DISTRO=debian",
            "KOLLA_SERVICE_NAME=nova-base",
        ])
    );
    assert!(ex.run_env().is_empty());
    assert!(ex.unused_build_args().is_empty());
}
