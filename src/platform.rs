//! Target platforms: what `--platform` and `--base-arch` name, the spellings other tools use for the
//! same architecture (kolla's `base_arch`, Debian's, qemu's), and whether this machine can run a
//! foreign platform's binaries: through qemu-user registered in `binfmt_misc` with the `F` flag (the
//! interpreter opened at registration, so it works inside the sandbox's mount namespace, where the
//! host's `/usr/libexec/qemu-binfmt` is not visible).

use std::path::{Path, PathBuf};

use crate::store::Platform;

/// Where the kernel lists its `binfmt_misc` registrations.
const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The Debian packages that register qemu-user for every foreign architecture.
const QEMU_PACKAGES: &str = "apt-get install qemu-user-static binfmt-support";

/// A platform that cannot be parsed, or cannot be built or run here.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// Not `os/arch[/variant]`, or an os or architecture kolla-oci does not build for.
    #[error("bad platform {given:?}: {reason}")]
    Invalid {
        /// What was given.
        given: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The platform is foreign and the kernel has no usable qemu-user registration for it.
    #[error(
        "cannot run {platform} binaries on this {host} machine: {reason} (install and register qemu-user: \
         {QEMU_PACKAGES}, then update-binfmts --enable qemu-{qemu}; binfmt_misc must be mounted on {BINFMT_DIR})"
    )]
    NoEmulation {
        /// The platform asked for.
        platform: String,
        /// This machine's.
        host: String,
        /// qemu's name of the architecture (`aarch64`).
        qemu: &'static str,
        /// What is missing: the registration, its `enabled` state or its `F` flag.
        reason: String,
    },
}

/// The architectures kolla-oci builds for: GOARCH name, default variant, kolla's `base_arch`, Debian's
/// architecture, qemu's name.
const ARCHES: &[(&str, Option<&str>, &str, &str, &str)] = &[
    ("amd64", None, "x86_64", "amd64", "x86_64"),
    ("arm64", Some("v8"), "aarch64", "arm64", "aarch64"),
    ("ppc64le", None, "ppc64le", "ppc64el", "ppc64le"),
    ("s390x", None, "s390x", "s390x", "s390x"),
    ("riscv64", None, "riscv64", "riscv64", "riscv64"),
];

fn row(
    p: &Platform,
) -> Option<&'static (&'static str, Option<&'static str>, &'static str, &'static str, &'static str)> {
    ARCHES.iter().find(|a| a.0 == p.architecture)
}

/// Parse a target platform, `os/arch[/variant]` (`linux/arm64`), as `--platform` gives it: Linux only,
/// an architecture of [`ARCHES`], and its default variant filled in (`linux/arm64` is `linux/arm64/v8`,
/// as Docker records it).
pub fn parse(given: &str) -> Result<Platform, PlatformError> {
    let bad = |reason: String| PlatformError::Invalid { given: given.to_owned(), reason };
    let p = crate::registry::parse_platform(given.trim()).map_err(|_| bad("expected os/arch[/variant]".into()))?;
    if p.os != "linux" {
        return Err(bad(format!("only linux images are built, not {}", p.os)));
    }
    let Some(&(_, variant, ..)) = row(&p) else {
        let known: Vec<&str> = ARCHES.iter().map(|a| a.0).collect();
        return Err(bad(format!("unknown architecture {} (known: {})", p.architecture, known.join(", "))));
    };
    if p.variant.is_some() && p.variant.as_deref() != variant {
        return Err(bad(format!("{} has no variant {}", p.architecture, p.variant.as_deref().unwrap_or_default())));
    }
    Ok(Platform { variant: variant.map(str::to_owned), ..p })
}

/// Parse `--platform`: one platform, or several separated by commas (each [`parse`]d, none twice).
pub fn parse_list(given: &str) -> Result<Vec<Platform>, PlatformError> {
    let mut platforms: Vec<Platform> = Vec::new();
    for one in given.split(',') {
        let p = parse(one)?;
        if platforms.contains(&p) {
            return Err(PlatformError::Invalid { given: given.to_owned(), reason: format!("{p} is named twice") });
        }
        platforms.push(p);
    }
    Ok(platforms)
}

/// The platform of kolla's `base_arch` (`aarch64` → `linux/arm64/v8`), if it is one kolla-oci knows.
pub fn of_base_arch(base_arch: &str) -> Option<Platform> {
    let &(arch, variant, ..) = ARCHES.iter().find(|a| a.2 == base_arch)?;
    Some(Platform {
        architecture: arch.to_owned(),
        os: "linux".to_owned(),
        variant: variant.map(str::to_owned),
        ..Platform::default()
    })
}

/// kolla's `base_arch` for `p` (`x86_64`, `aarch64`).
pub fn base_arch(p: &Platform) -> Option<&'static str> {
    row(p).map(|a| a.2)
}

/// Debian's name of `p`'s architecture (`mmdebstrap --arch`).
pub fn debian_arch(p: &Platform) -> Option<&'static str> {
    row(p).map(|a| a.3)
}

/// The platform builds and runs default to: this machine's, spelled as [`parse`] spells it.
pub fn host() -> Platform {
    let host = Platform::host();
    of_base_arch(ARCHES.iter().find(|a| a.0 == host.architecture).map_or("", |a| a.2)).unwrap_or(host)
}

/// `p` as a file name (`linux-arm64-v8`): where a build for several platforms keeps each one's logs
/// and work dir apart.
pub fn dir_name(p: &Platform) -> String {
    p.to_string().replace('/', "-")
}

/// Whether this machine runs `p`'s binaries natively.
pub fn is_native(p: &Platform) -> bool {
    Platform::host().matches(p)
}

/// Check that this machine can run `p`'s binaries: natively, or through a qemu-user `binfmt_misc`
/// registration that is enabled and has the `F` flag (without it the interpreter's path would be
/// looked up inside the container's root, where it is missing).
pub fn check_runnable(p: &Platform) -> Result<(), PlatformError> {
    check_runnable_in(p, Path::new(BINFMT_DIR))
}

fn check_runnable_in(p: &Platform, dir: &Path) -> Result<(), PlatformError> {
    if is_native(p) {
        return Ok(());
    }
    let qemu = row(p).map_or("<arch>", |a| a.4);
    let fail =
        |reason: String| PlatformError::NoEmulation { platform: p.to_string(), host: host().to_string(), qemu, reason };
    let read = |path: PathBuf| std::fs::read_to_string(&path).map_err(|e| (path, e));
    match read(dir.join("status")) {
        Ok(s) if s.trim() == "enabled" => {}
        Ok(_) => return Err(fail(format!("binfmt_misc is disabled ({}/status)", dir.display()))),
        Err((path, e)) => return Err(fail(format!("binfmt_misc is not mounted ({}: {e})", path.display()))),
    }
    let entry = match read(dir.join(format!("qemu-{qemu}"))) {
        Ok(entry) => entry,
        Err((path, e)) => return Err(fail(format!("no interpreter registered for it ({}: {e})", path.display()))),
    };
    let mut lines = entry.lines();
    if lines.next() != Some("enabled") {
        return Err(fail(format!("its interpreter qemu-{qemu} is registered but disabled")));
    }
    let flags = entry.lines().find_map(|l| l.strip_prefix("flags:")).unwrap_or("").trim();
    if !flags.contains('F') {
        return Err(fail(format!(
            "its interpreter qemu-{qemu} is registered without the F flag (flags {flags:?}): it cannot be found \
             inside a container (qemu-user-static registers it with F)"
        )));
    }
    if !flags.contains('C') {
        // Without C the kernel runs a setuid binary with the caller's ids: `sudo` (kolla_start's
        // `sudo -E kolla_set_configs`) refuses, so such images build but their start contract fails.
        tracing::warn!(
            "qemu-{qemu} is registered without the C flag (flags {flags:?}): setuid binaries such as sudo in \
             kolla_start will not work in {p} containers (tests/setup.sh registers it with flags OCPF)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_with_their_default_variant() {
        assert_eq!(parse("linux/arm64").unwrap().to_string(), "linux/arm64/v8");
        assert_eq!(parse("linux/arm64/v8").unwrap().to_string(), "linux/arm64/v8");
        assert_eq!(parse("linux/amd64").unwrap().to_string(), "linux/amd64");
        let both = parse_list("linux/amd64, linux/arm64").unwrap();
        assert_eq!(both.iter().map(ToString::to_string).collect::<Vec<_>>(), ["linux/amd64", "linux/arm64/v8"]);
        assert!(parse_list("linux/arm64,linux/arm64/v8").unwrap_err().to_string().contains("twice"));
        assert!(parse_list("linux/amd64,").is_err());
        for bad in ["linux", "windows/amd64", "linux/sparc", "linux/arm64/v7", "linux/amd64/v2", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(of_base_arch("aarch64").unwrap(), parse("linux/arm64").unwrap());
        assert_eq!(base_arch(&parse("linux/amd64").unwrap()), Some("x86_64"));
        assert_eq!(debian_arch(&parse("linux/ppc64le").unwrap()), Some("ppc64el"));
        assert!(of_base_arch("sparc").is_none());
        assert!(is_native(&host()));
    }

    #[test]
    fn emulation_needs_an_enabled_registration_with_the_f_flag() {
        let foreign = if host().architecture == "s390x" { "linux/amd64" } else { "linux/s390x" };
        let p = parse(foreign).unwrap();
        let qemu = row(&p).unwrap().4;
        let dir = tempfile::tempdir().unwrap();
        let err = |dir: &Path| check_runnable_in(&p, dir).unwrap_err().to_string();
        assert!(err(dir.path()).contains("binfmt_misc is not mounted"), "{}", err(dir.path()));
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        let e = err(dir.path());
        assert!(e.contains("no interpreter registered") && e.contains("qemu-user-static binfmt-support"), "{e}");
        let entry = dir.path().join(format!("qemu-{qemu}"));
        std::fs::write(&entry, "disabled\ninterpreter /x\nflags: PF\n").unwrap();
        assert!(err(dir.path()).contains("disabled"));
        std::fs::write(&entry, "enabled\ninterpreter /x\nflags: P\n").unwrap();
        assert!(err(dir.path()).contains("without the F flag"));
        std::fs::write(&entry, "enabled\ninterpreter /x\nflags: PF\n").unwrap();
        check_runnable_in(&p, dir.path()).unwrap();
        check_runnable_in(&host(), Path::new("/nonexistent")).unwrap();
    }
}
