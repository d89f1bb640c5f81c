#!/usr/bin/env bash
# Issue #23 figures: a fleet of N shards on this machine — N stores, one local `docker-registry` as their
# `--cache-repo` and push target, all started at once — against one machine building the same tree alone:
#   * layers built per shard and in all, against one machine (each layer is built once, by its owner);
#   * wall time of the fleet (start to the last shard's exit) against one machine. The shards share this
#     host's cores and network, so the ratio shows what the plan, the waits and the registry cost — not what N
#     machines gain; `--list-shards N` (printed first) estimates that;
#   * a cache-only machine (a fresh store with `--cache-repo` and nothing else): the layers it builds (0 is
#     right) and how many of its images have the digest the shards pushed.
# Every store starts as a copy of one seed store that holds only the root image (debian:trixie, bootstrapped
# once with mmdebstrap before any timing), so all build on the same bytes and nothing times the bootstrap.
# Trees: the bundled one by default; UPSTREAM_TREE=path/to/kolla/docker builds upstream kolla's instead, with
# UPSTREAM_ARGS giving what that tree needs (its sources, e.g. "--config-file kolla-build.conf", and
# "--docker-dir DIR" overrides for steps that reach hosts other than Debian's archive and PyPI — see
# benches/kolla-vs-buildah.sh) and REGEX the images (default --all).
# LOSE=SECONDS SIGKILLs shard 0 that long after the start and never restarts it: the others take over its
# images after --shard-takeover TAKEOVER seconds (default 30), and the figures show what that cost.
# Usage: benches/fleet.sh   (root, or a user with subuids; tests/setup.sh installs the tools)
#   env: N=3, BIN=kolla-oci binary (default: release build of this checkout), KEEP=1 keeps the work dir
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-3}
TAKEOVER=${TAKEOVER:-30}
LOSE=${LOSE:-}
if [[ -z ${BIN:-} ]]; then
    cargo build --release -q
    BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/kolla-oci
fi
for t in docker-registry skopeo mmdebstrap python3 bc; do
    command -v "$t" >/dev/null || { echo "needs $t (tests/setup.sh installs it)" >&2; exit 1; }
done
W=$(mktemp -d /tmp/kolla-oci-bench-fleet.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }
die_log() { echo "$1 failed; last lines of $2:" >&2; tail -30 "$2" >&2; exit 1; }
layers() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["layers_built"])' "$1"; }
built() { python3 -c 'import json, sys; print(" ".join(b["name"] for b in json.load(open(sys.argv[1]))["built"]))' "$1"; }

# --- the registry: cache repository and push target -------------------------------------------------------------
# shellcheck source=benches/registry.sh
source benches/registry.sh
serve_registry "$W/registry"
REG=127.0.0.1:$REG_PORT

# --- the tree and the seed store ----------------------------------------------------------------------------------
TREE=()
if [[ -n ${UPSTREAM_TREE:-} ]]; then
    read -ra extra <<<"${UPSTREAM_ARGS:-}"
    TREE=(--template-tree "$UPSTREAM_TREE" "${extra[@]}")
fi
read -ra SELECT <<<"${REGEX:---all}"
TAG=fleet-bench
echo "bootstrapping debian:trixie into the seed store (mmdebstrap, once, not timed)..."
mkdir -p "$W/ctx0"
echo "FROM debian:trixie" >"$W/ctx0/Dockerfile"
HOME=$W "$BIN" --store "$W/seed" build-file --no-attestations "$W/ctx0" -t bench-seed:1 >"$W/seed.log" 2>&1 ||
    die_log bootstrap "$W/seed.log"
BUILD=(build "${SELECT[@]}" "${TREE[@]}" --tag "$TAG")
HOME=$W "$BIN" --store "$W/seed" "${BUILD[@]}" --list-shards "$N"
# Each machine's store: a copy of the seed, made before its timing starts.
for s in one cache-only $(seq -f 'shard%g' 0 $((N - 1))); do cp -a "$W/seed" "$W/$s"; done

# --- one machine --------------------------------------------------------------------------------------------------
t0=$(now)
HOME=$W "$BIN" --store "$W/one" "${BUILD[@]}" --summary-json-file "$W/one.json" >"$W/one.log" 2>&1 ||
    die_log "one machine" "$W/one.log"
t1=$(now)
ONE=$(secs "$t0" "$t1")
ONE_LAYERS=$(layers "$W/one.json")
printf 'one machine:  %8.1f s, %s layers built\n' "$ONE" "$ONE_LAYERS"

# --- the fleet ----------------------------------------------------------------------------------------------------
t0=$(now)
SHARDS=()
for i in $(seq 0 $((N - 1))); do
    HOME=$W "$BIN" --store "$W/shard$i" "${BUILD[@]}" --summary-json-file "$W/shard$i.json" --shard "$i/$N" \
        --cache-repo "$REG/fleet/cache" --push --registry "$REG" --shard-takeover "$TAKEOVER" >"$W/shard$i.log" 2>&1 &
    SHARDS+=($!)
done
if [[ -n $LOSE ]]; then
    sleep "$LOSE"
    kill -9 "${SHARDS[0]}" 2>/dev/null || true
    echo "shard 0/$N SIGKILLed after $LOSE s"
fi
failed=0
for i in "${!SHARDS[@]}"; do
    wait "${SHARDS[$i]}" || { [[ -n $LOSE && $i == 0 ]] || { echo "shard $i failed: see $W/shard$i.log" >&2; failed=1; }; }
done
t1=$(now)
FLEET=$(secs "$t0" "$t1")
[[ $failed == 0 ]] || { KEEP=1; exit 1; }
total=0
for i in $(seq 0 $((N - 1))); do
    if [[ -f $W/shard$i.json ]]; then
        l=$(layers "$W/shard$i.json")
        total=$((total + l))
        printf '  shard %d/%d: %4d layers built; images: %s\n' "$i" "$N" "$l" "$(built "$W/shard$i.json")"
    else
        printf '  shard %d/%d: lost (no summary)\n' "$i" "$N"
    fi
done
printf 'fleet of %d:   %8.1f s, %s layers built in all (one machine %s); one machine / fleet: %.2fx\n' \
    "$N" "$FLEET" "$total" "$ONE_LAYERS" "$(echo "$ONE / $FLEET" | bc -l)"

# --- a cache-only machine -----------------------------------------------------------------------------------------
t0=$(now)
HOME=$W "$BIN" --store "$W/cache-only" "${BUILD[@]}" --summary-json-file "$W/cache-only.json" \
    --cache-repo "$REG/fleet/cache" >"$W/cache-only.log" 2>&1 || die_log "cache-only machine" "$W/cache-only.log"
t1=$(now)
same=0
read -ra images <<<"$(built "$W/cache-only.json")"
for img in "${images[@]}"; do
    ours=$(skopeo inspect --format '{{.Digest}}' oci:"$W/cache-only/oci":"kolla/$img:$TAG")
    pushed=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$REG/kolla/$img:$TAG")
    if [[ $ours == "$pushed" ]]; then same=$((same + 1)); else echo "  $img: $ours here, $pushed pushed"; fi
done
printf 'cache-only:   %8.1f s, %s layers built; %d of %d images have the pushed digest\n' \
    "$(secs "$t0" "$t1")" "$(layers "$W/cache-only.json")" "$same" "${#images[@]}"
