#!/usr/bin/env bash
# Issue #5 figures, one run: cold `build --all` of the bundled tree; no-op rebuild of the whole tree against
# buildah's cached rebuild of one image (the base image's Dockerfile, `buildah bud --layers`, same base image);
# one changed leaf; the state dir's bytes by part; store bytes against the sum of the images' sizes.
# BEFORE=/path/to/old/kolla-oci also times that binary's cold `build --all`, no-op rebuild and changed leaf in the same run, each
# binary from a fresh store of its own (the Debian bootstrap is part of both cold builds), on the same tree: this
# checkout's templates/ (KOLLA_OCI_TEMPLATE_TREE), not whatever tree each binary bundles.
# Usage: benches/build-all.sh   (as root or with subuids; tests/setup.sh installs the tools)
#   env: BIN=kolla-oci binary (default: release build of this checkout), BEFORE=old binary
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${BIN:-} ]]; then
    cargo build --release -q
    BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/kolla-oci
fi
BEFORE=${BEFORE:-}
export KOLLA_OCI_TEMPLATE_TREE=$PWD/templates
W=$(mktemp -d /tmp/kolla-oci-bench-all.XXXXXX)
trap 'buildah rm --all >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
export KOLLA_OCI_STORE=$W/state
now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc; }

t0=$(now); "$BIN" build --all --logs-dir "$W/logs" >/dev/null 2>"$W/cold.err"; t1=$(now)
cold=$(secs "$t0" "$t1")
printf 'cold build --all:            %8.2f s\n' "$cold"
# Layer compression taken off the critical path: the builder logs, per image, how long its RUN layers compressed
# in the background and how long the image still waited for them after its last step.
awk '/layers compressed in the background/ {
        for (i = 1; i <= NF; i++) { split($i, kv, "="); gsub(/"/, "", kv[2]); if (kv[1] == "compressing_s") c += kv[2]; if (kv[1] == "waited_s") w += kv[2] }
     } END { printf "  background compression: %.2f s in all, %.2f s of it still waited for at the end of images\n", c, w }' "$W/cold.err"
if [[ -n $BEFORE ]]; then
    t0=$(now)
    KOLLA_OCI_STORE=$W/before-state "$BEFORE" build --all --logs-dir "$W/before-logs" >/dev/null 2>"$W/before-cold.err"
    t1=$(now)
    printf '  before: cold build --all:  %8.2f s  (before/ours %.2fx)\n' "$(secs "$t0" "$t1")" \
        "$(echo "$(secs "$t0" "$t1") / $cold" | bc -l)"
fi

noop() { # binary, store: best of 3 no-op rebuilds
    local best=999 t0 t1
    for _ in 1 2 3; do
        t0=$(now)
        KOLLA_OCI_STORE=$2 "$1" build --all --summary-json-file "$W/noop.json" >/dev/null 2>&1 || return 1
        t1=$(now)
        best=$(printf '%s\n%s\n' "$best" "$(secs "$t0" "$t1")" | sort -g | head -1)
    done
    echo "$best"
}
# compare LABEL FN: FN BIN state, then (with BEFORE) FN BEFORE before-state; one line each, FN's seconds and the
# layers the last summary (the file FN names in $SUMMARY) says were built, and before/ours
compare() {
    local ours b
    ours=$("$2" "$BIN" "$W/state")
    printf '%-28s %8.3f s  (layers built: %s)\n' "$1:" "$ours" \
        "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["layers_built"])' "$SUMMARY")"
    if [[ -n $BEFORE ]]; then
        b=$("$2" "$BEFORE" "$W/before-state")
        printf '  before: %-18s %8.3f s  (before/ours %.2fx)\n' "$1:" "$b" "$(echo "$b / $ours" | bc -l)"
    fi
}
SUMMARY=$W/noop.json
compare "no-op rebuild, whole tree" noop

# The state dir in its steady state (after the rebuilds): what each part takes, ours and BEFORE's.
mb() { echo "scale=1; $(du -sb "$1" 2>/dev/null | cut -f1 || echo 0) / 1000000" | bc; }
state_bytes() { # label, state dir
    printf '%-28s %8s MB  (blobs %s, layer dirs %s, skeletons %s)\n' "$1" "$(mb "$2")" "$(mb "$2/oci/blobs")" \
        "$(mb "$2/layers")" "$(mb "$2/split")"
}
state_bytes "state dir, du -sb:" "$W/state"
if [[ -n $BEFORE ]]; then
    state_bytes "  before: state dir:" "$W/before-state"
fi

mkdir -p "$W/override/keystone/keystone-ssh"
cp templates/keystone/keystone-ssh/Dockerfile.j2 "$W/override/keystone/keystone-ssh/"
echo 'RUN echo changed > /etc/kolla-bench' >> "$W/override/keystone/keystone-ssh/Dockerfile.j2"
leaf() { # binary, store: the changed leaf's rebuild, in seconds
    local t0 t1
    t0=$(now)
    KOLLA_OCI_STORE=$2 "$1" build --all --docker-dir "$W/override" --summary-json-file "$W/leaf.json" >/dev/null 2>&1
    t1=$(now)
    secs "$t0" "$t1"
}
SUMMARY=$W/leaf.json
compare "one changed leaf" leaf

# buildah: cached rebuild of one image, the base Dockerfile rendered by us, on the same debian:trixie (the bundled tree's default base).
"$BIN" build base --template-only --work-dir "$W/wd" >/dev/null 2>&1
# (through `save`: in the state dir the root layer, which every image is built on, is kept as its layer dir.)
"$BIN" save debian:trixie -o "$W/debian.tar" >/dev/null 2>&1
skopeo copy -q docker-archive:"$W/debian.tar" containers-storage:docker.io/library/debian:trixie
buildah bud -q --layers --isolation chroot --storage-driver overlay -t bench-base "$W/wd/docker/base" >/dev/null 2>&1
best=999
for _ in 1 2 3; do
    t0=$(now); buildah bud -q --layers --isolation chroot --storage-driver overlay -t bench-base "$W/wd/docker/base" >/dev/null 2>&1; t1=$(now)
    best=$(printf '%s\n%s\n' "$best" "$(secs "$t0" "$t1")" | sort -g | head -1)
done
printf 'buildah cached rebuild, base: %7.3f s\n' "$best"

store=$(du -sb "$W/state/oci/blobs" | cut -f1)
images=$(python3 - "$W/state/oci" <<'PY'
import json, os, sys
root = sys.argv[1]
blob = lambda d: os.path.join(root, "blobs", "sha256", d.split(":")[1])
total = 0
for m in json.load(open(os.path.join(root, "index.json")))["manifests"]:
    man = json.load(open(blob(m["digest"])))
    total += man["config"]["size"] + sum(l["size"] for l in man["layers"])
print(total)
PY
)
printf 'store bytes %d vs sum of image sizes %d: %.1fx smaller\n' "$store" "$images" "$(echo "$images / $store" | bc -l)"
