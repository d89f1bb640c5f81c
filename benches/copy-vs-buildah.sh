#!/usr/bin/env bash
# Issue #12 figures: `COPY rootfs/ /` of a Debian bookworm minbase tree (~170 MB, ~8.7k files) into
# `FROM scratch`, cold, in one run on the same context:
#   kolla-oci build-file --no-cache   vs   buildah bud --isolation chroot --storage-driver overlay --layers=false
# each with a fresh store per run, best of $RUNS, twice: stores on the disk under target/ (ext4 here) and on
# tmpfs (/dev/shm). The context is on the disk in both. Prints buildah's time / ours (goal: >= 1).
#
# Env: RUNS (best of, default 3), WORK (default target/peers: the minbase tarball rootfs.tar is cached there,
# as benches/peers.sh does; point WORK at another checkout's target/peers to reuse its tarball: only read
# then), SHM (tmpfs dir, default /dev/shm), SETTLE (seconds before each run on the disk, default 31: see
# run_pair), BIN (the kolla-oci to measure, e.g. an older build; default: a release build of this checkout).
# Needs root (buildah with a root-owned tree), mmdebstrap (only without a cached tarball). ~5 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
WORK=${WORK:-target/peers}
SHM=${SHM:-/dev/shm}
SETTLE=${SETTLE:-31}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
for tool in buildah bc; do
    command -v "$tool" >/dev/null || { echo "copy-vs-buildah.sh: missing tool: $tool" >&2; exit 1; }
done
if [ -z "${BIN:-}" ]; then
    cargo build --release -q --bin kolla-oci
    BIN=$PWD/target/release/kolla-oci
fi

now() { date +%s.%N; }
best() { sort -g | head -1; }

TARBALL=$WORK/rootfs.tar
if [ ! -s "$TARBALL" ]; then
    echo "building Debian bookworm minbase tarball with mmdebstrap (network, ~1-2 min)"
    mmdebstrap --variant=minbase --quiet bookworm "$WORK/rootfs.tmp.tar"
    mv "$WORK/rootfs.tmp.tar" "$TARBALL"
fi

# One context, on the disk: both tools read the same files in every run.
OUT=$(mktemp -d "$PWD/target/copy-bench.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
CTX=$OUT/ctx
mkdir -p "$CTX/rootfs"
tar -C "$CTX/rootfs" --numeric-owner -xpf "$TARBALL"
printf 'FROM scratch\nCOPY rootfs/ /\n' > "$CTX/Dockerfile"
files=$(find "$CTX/rootfs" | wc -l)
size=$(du -sm "$CTX/rootfs" | cut -f1)

# run_pair LABEL DIR SETTLE: best-of-$RUNS times of both tools with their stores under DIR, fresh each run
# and removed after all runs (buildah's images with `buildah rmi --all` first). Each timed run waits SETTLE
# seconds first: on an ext4 without a journal (this VM's disk) every inode allocation skips the inodes freed
# in the last 30 s, one by one, so a run right after 8.7k files were deleted (a store removed, or buildah's
# working container) would be slowed down by what ran before it.
run_pair() {
    local label=$1 base=$2 settle=$3 ours=() theirs=() dirs=() i t0 t1 d
    for i in $(seq "$RUNS"); do
        d=$(mktemp -d "$base/kolla-oci-copy.XXXXXX"); dirs+=("$d")
        sync; sleep "$settle"
        t0=$(now); KOLLA_OCI_STORE=$d/state "$BIN" build-file --no-cache "$CTX" -t x >/dev/null 2>&1; t1=$(now)
        ours+=("$(echo "$t1 - $t0" | bc)")
        d=$(mktemp -d "$base/buildah-copy.XXXXXX"); dirs+=("$d")
        sync; sleep "$settle"
        t0=$(now)
        buildah --root "$d/root" --runroot "$d/run" bud -q --isolation chroot --storage-driver overlay --layers=false \
            -t x "$CTX" >/dev/null 2>&1
        t1=$(now)
        theirs+=("$(echo "$t1 - $t0" | bc)")
    done
    for d in "${dirs[@]}"; do
        if [ -d "$d/root" ]; then
            buildah --root "$d/root" --runroot "$d/run" --storage-driver overlay rmi --all >/dev/null 2>&1 || true
        fi
        rm -rf "$d"
    done
    local o b
    o=$(printf '%s\n' "${ours[@]}" | best); b=$(printf '%s\n' "${theirs[@]}" | best)
    printf '%-7s kolla-oci %6.2fs   buildah bud %6.2fs   ratio buildah/ours %.2f\n' "$label" "$o" "$b" "$(echo "$b / $o" | bc -l)"
}

echo "COPY rootfs/ / of a minbase tree ($files entries, $size MB), best of $RUNS:"
run_pair ext4 "$OUT" "$SETTLE"
run_pair tmpfs "$SHM" 0
