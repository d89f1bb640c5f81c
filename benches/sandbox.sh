#!/usr/bin/env bash
# What the RUN sandbox's confinement costs (issue 19), against an older kolla-oci in the same run:
#   start   `kolla-oci run IMG -- true`: one container start and exit. As root that now includes making the
#           container's user namespace, idmapping its layers, dropping capabilities, compiling and installing
#           the seccomp filter.
#   syscalls `dd bs=1 count=N` inside: 2N read/write syscalls, each through the seccomp filter now.
# Both binaries run the same image from a store of their own. Prints seconds (best of RUNS) and ratios.
# Usage: BEFORE=/path/to/old/kolla-oci benches/sandbox.sh   (as root or with subuids)
#   env: BIN=kolla-oci binary (default: release build of this checkout), RUNS (default 10), N (default 2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${BIN:-} ]]; then
    cargo build --release -q
    BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/kolla-oci
fi
: "${BEFORE:?set BEFORE to an older kolla-oci binary to compare with}"
RUNS=${RUNS:-10}
N=${N:-2000000}
W=$(mktemp -d /tmp/kolla-oci-bench-sandbox.XXXXXX)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/ctx/rootfs/bin"
cp /bin/busybox "$W/ctx/rootfs/bin/"
ln -s busybox "$W/ctx/rootfs/bin/sh"
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\n' >"$W/ctx/Dockerfile"
for b in ours before; do
    bin=$BIN
    [[ $b == before ]] && bin=$BEFORE
    "$bin" --store "$W/$b" build-file "$W/ctx" -t bench:1 --no-attestations >/dev/null 2>&1
done

best() { # binary, store, command…: best wall time of RUNS runs, in seconds
    local bin=$1 store=$2 best=
    shift 2
    for _ in $(seq "$RUNS"); do
        local t0 t1
        t0=$(date +%s.%N)
        "$bin" --store "$store" run bench:1 -- "$@" >/dev/null 2>&1
        t1=$(date +%s.%N)
        local t
        t=$(echo "$t1 - $t0" | bc -l)
        if [[ -z $best ]] || (($(echo "$t < $best" | bc -l))); then best=$t; fi
    done
    echo "$best"
}

row() { # name, command…
    local name=$1
    shift
    # Interleaved, so that a busy machine slows both alike.
    local before ours
    before=$(best "$BEFORE" "$W/before" "$@")
    ours=$(best "$BIN" "$W/ours" "$@")
    printf '%-9s before %7.3f s   ours %7.3f s   ours/before %5.2fx   (+%.1f ms)\n' "$name" "$before" "$ours" \
        "$(echo "$ours / $before" | bc -l)" "$(echo "($ours - $before) * 1000" | bc -l)"
}

echo "kolla-oci run, best of $RUNS ($(id -un); $(uname -r))"
row start true
row syscalls busybox dd if=/dev/zero of=/dev/null bs=1 count="$N"
