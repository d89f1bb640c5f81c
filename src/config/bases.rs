//! Base distros and profiles as kolla-build 23.0.0 defines them: the image, tag and expected
//! `/etc/os-release` of each `--base`, the default `[profiles]`, architecture spellings, and
//! the Dockerfile lines of `rpm_setup_config`. Plain data and pure functions, so the resolver
//! ([`super::resolve`]) only combines them.

/// kolla-build's default profiles (kolla 23.0.0, `kolla/common/config.py`): lists of regexes.
pub const DEFAULT_PROFILES: &[(&str, &[&str])] = &[
    (
        "infra",
        &[
            "cron",
            "etcd",
            "fluentd",
            "haproxy",
            "hacluster",
            "keepalived",
            "kolla-toolbox",
            "letsencrypt",
            "mariadb",
            "memcached",
            "opensearch",
            "openvswitch",
            "proxysql",
            "rabbitmq",
            "tgtd",
            "valkey",
        ],
    ),
    (
        "main",
        &["ceilometer", "cinder", "glance", "heat", "horizon", "iscsi", "keystone", "neutron", "nova-", "placement"],
    ),
    (
        "aux",
        &[
            "aodh",
            "blazar",
            "cloudkitty",
            "designate",
            "gnocchi",
            "ironic",
            "kerbside",
            "magnum",
            "manila",
            "masakari",
            "mistral",
            "octavia",
            "tacker",
            "trove",
            "valkey",
        ],
    ),
    (
        "default",
        &[
            "cron",
            "kolla-toolbox",
            "fluentd",
            "glance",
            "haproxy",
            "heat",
            "horizon",
            "keepalived",
            "keystone",
            "mariadb",
            "memcached",
            "neutron",
            "nova-",
            "placement",
            "proxysql",
            "openvswitch",
            "rabbitmq",
        ],
    ),
];

/// `(base, default image, default tag, /etc/os-release PRETTY_NAME pattern)`, as kolla-build 23.0.0.
pub(super) const BASES: &[(&str, &str, &str, &str)] = &[
    ("debian", "debian", "trixie", "Debian GNU/Linux 13 (trixie)"),
    ("ubuntu", "ubuntu", "24.04", "Ubuntu 24.04.* LTS"),
    ("rocky", "quay.io/rockylinux/rockylinux", "10", "Rocky Linux 10.* (Red Quartz)"),
    ("centos", "quay.io/centos/centos", "stream10", "CentOS Stream 10"),
];

/// The host architecture in kolla's spelling.
pub(super) fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" | "arm64" => "aarch64",
        other => other,
    }
}

/// Debian's name for `base_arch` (kolla: aarch64 → arm64, anything else → amd64).
pub fn debian_arch_of(base_arch: &str) -> &'static str {
    if base_arch == "aarch64" { "arm64" } else { "amd64" }
}

/// kolla's `rpm_setup`: `.rpm` → `RUN dnf -y install`, remote `.repo` → `RUN curl`, local
/// `.repo` → `COPY`, empty → empty line.
pub(super) fn rpm_setup_lines(items: &[String]) -> Result<Vec<String>, String> {
    items
        .iter()
        .map(|c| {
            if c.ends_with(".rpm") {
                Ok(format!("RUN dnf -y install {c}"))
            } else if c.ends_with(".repo") {
                if c.starts_with("http") {
                    let name = c.rsplit('/').next().unwrap_or(c);
                    Ok(format!("RUN curl -L {c} -o /etc/yum.repos.d/{name}"))
                } else {
                    Ok(format!("COPY {c} /etc/yum.repos.d/"))
                }
            } else if c.is_empty() {
                Ok(String::new())
            } else {
                Err(format!("{c:?}: RPM setup must be provided as .rpm or .repo files"))
            }
        })
        .collect()
}
