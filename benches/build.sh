#!/usr/bin/env bash
# Issue #4 figures, measured in one run on the same inputs:
#   1. a 3-step Dockerfile (ENV, RUN, COPY) on a Debian bookworm base, cold: kolla-oci build-file vs
#      `buildah bud --isolation chroot` (storage driver overlay);
#   2. a RUN that changes 2 small files on that base: kolla-oci (one RUN step, base cached) vs `umoci repack`
#      of the same change made in an unpacked bundle.
# Both tools get the very same base image (copied from our store with skopeo). Best of $RUNS runs each.
# Usage: benches/build.sh   (needs root or subuids for buildah; tests/setup.sh installs the tools)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
cargo build --release -q
BIN=$PWD/target/release/kolla-oci
W=$(mktemp -d /tmp/kolla-oci-bench-build.XXXXXX)
trap 'buildah rm --all >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
export KOLLA_OCI_STORE=$W/state

now() { date +%s.%N; }
best() { sort -g | head -1; }

echo "preparing the debian:bookworm base (mmdebstrap, once)..."
mkdir -p "$W/ctx0"
echo "FROM debian:bookworm" > "$W/ctx0/Dockerfile"
"$BIN" build-file "$W/ctx0" -t base:1 >/dev/null 2>&1
skopeo copy -q oci:"$W/state/oci":debian:bookworm oci:"$W/state/oci":localhost/debian:bookworm
skopeo copy -q oci:"$W/state/oci":debian:bookworm containers-storage:localhost/debian:bookworm

mkdir -p "$W/ctx"
head -c 1048576 /dev/urandom > "$W/ctx/payload.bin"
cat > "$W/ctx/Dockerfile" <<'DF'
FROM localhost/debian:bookworm
ENV KOLLA_BENCH=1
RUN echo hello > /etc/bench && useradd -u 42400 kolla && mkdir -p /var/lib/kolla && chown kolla /var/lib/kolla
COPY payload.bin /var/lib/kolla/payload.bin
DF

ours=(); theirs=()
for i in $(seq "$RUNS"); do
    t0=$(now); "$BIN" build-file --no-cache "$W/ctx" -t bench:$i >/dev/null 2>&1; t1=$(now)
    ours+=("$(echo "$t1 - $t0" | bc)")
    t0=$(now); buildah bud -q --isolation chroot --storage-driver overlay --layers=false -t bench:$i "$W/ctx" >/dev/null 2>&1; t1=$(now)
    theirs+=("$(echo "$t1 - $t0" | bc)")
done
o=$(printf '%s\n' "${ours[@]}" | best); b=$(printf '%s\n' "${theirs[@]}" | best)
printf '3-step Dockerfile, cold:   kolla-oci %6.2fs   buildah bud --isolation chroot %6.2fs   ratio %.1fx\n' "$o" "$b" "$(echo "$b / $o" | bc -l)"

# 2. a RUN that changes two small files.
mkdir -p "$W/ctx2"
printf 'FROM localhost/debian:bookworm\nRUN echo changed > /etc/motd && echo x >> /etc/hostname.bench\n' > "$W/ctx2/Dockerfile"
umoci unpack --image "$W/state/oci":debian:bookworm "$W/bundle" >/dev/null
ours=(); theirs=()
for i in $(seq "$RUNS"); do
    t0=$(now); "$BIN" build-file --no-cache "$W/ctx2" -t small:$i >/dev/null 2>&1; t1=$(now)
    ours+=("$(echo "$t1 - $t0" | bc)")
    echo "changed $i" > "$W/bundle/rootfs/etc/motd"; echo "x $i" >> "$W/bundle/rootfs/etc/hostname.bench"
    t0=$(now); umoci repack --image "$W/state/oci":umoci-small-$i "$W/bundle" >/dev/null; t1=$(now)
    theirs+=("$(echo "$t1 - $t0" | bc)")
done
o=$(printf '%s\n' "${ours[@]}" | best); u=$(printf '%s\n' "${theirs[@]}" | best)
printf 'RUN changing 2 files:      kolla-oci %6.2fs   umoci repack %6.2fs                 ratio %.1fx\n' "$o" "$u" "$(echo "$u / $o" | bc -l)"
