#!/usr/bin/env bash
# Installs everything kolla-oci's tests, benches and main job need on a fresh Debian 12 machine.
# Safe to re-run: apt-get skips what is installed. Needs root (or sudo) for apt-get only.
set -euo pipefail

packages=(
    docker-registry   # a real Distribution registry for the registry tests
    skopeo umoci oci-image-tool  # other people's readers of the images we write
    mmdebstrap        # bootstraps the Debian root image when no registry holds it
    busybox-static    # tiny static rootfs for sandbox and interpreter tests
    uidmap            # newuidmap/newgidmap for rootless user namespaces
    slirp4netns       # user-mode network stack of RUN's default private network namespace (--network private)
    apache2-utils     # htpasswd for the authenticated-registry test
    openssl           # the private CA and certificates of the TLS registry test
    pigz zstd buildah hyperfine bc  # peers and timers for the bench scripts
    python3 python3-venv  # kolla-build for the template conformance test; spdx-tools for the SBOM test
    podman            # loads `kolla-oci save` archives in the save test
    git               # git sources (kolla-build.conf type = git) in the sources tests
    qemu-user-static binfmt-support arch-test  # foreign-arch images (--platform linux/arm64): RUN through binfmt_misc, mmdebstrap --arch
    ca-certificates
)
SUDO=""
[[ $(id -u) == 0 ]] || SUDO=sudo
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# slirp4netns opens /dev/net/tun in the user namespace: udev makes it 0666, some minimal machines leave it 0600.
if [[ -c /dev/net/tun && $(stat -c %a /dev/net/tun) != 666 ]]; then
    $SUDO chmod 0666 /dev/net/tun
fi
# Foreign-arch builds run through qemu-user registered in binfmt_misc (with the F flag, which
# qemu-user-static's registrations carry): mount it if the machine has not, and enable the registrations.
if [[ ! -e /proc/sys/fs/binfmt_misc/status ]]; then
    $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || ! grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    $SUDO update-binfmts --enable qemu-aarch64
fi
# Debian registers qemu-aarch64 with flags PF ("credentials no"): a setuid binary (sudo in kolla_start) then runs
# with the caller's ids and refuses. Register it again with C (credentials from the binary, as Docker's
# tonistiigi/binfmt does), keeping Debian's interpreter, magic and mask.
if ! grep -q '^flags: .*C' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
    entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
    interp=$(awk '$1 == "interpreter" { print $2 }' $entry)
    hexes() { awk -v k="$1" '$1 == k { print $2 }' $entry | sed 's/../\\x&/g'; }
    rule=":qemu-aarch64:M::$(hexes magic):$(hexes mask):$interp:OCPF"
    echo -1 | $SUDO tee $entry >/dev/null
    printf '%s' "$rule" | $SUDO tee /proc/sys/fs/binfmt_misc/register >/dev/null
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true
