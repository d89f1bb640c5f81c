#!/usr/bin/env bash
# Issue #12 figures, one run on the same inputs: kolla-oci against `buildah bud` on upstream kolla 23.0.0's own
# templates (the wheel from PyPI), both building the very same rendered Dockerfiles on the very same base image.
#   * images: base, memcached, cron (memcached and cron are children of base in kolla's graph); KEYSTONE=1 adds the
#     keystone chain base → openstack-base → keystone-base → keystone, with the sources tests/upstream_keystone.rs
#     uses (the openstack/requirements files of tests/data as `[openstack-base] type = local`, keystone's sdist from
#     PyPI as `[keystone-base] type = local`; pip installs in the RUN steps come from PyPI);
#   * the base image: FROM debian:trixie, bootstrapped once with mmdebstrap into a seed store before any timing;
#     buildah gets the same bytes (`skopeo copy` into its own, isolated storage). Every cold build starts from a
#     store holding only that image (a `cp -a` of the seed store for kolla-oci, the seeded storage for buildah);
#   * base template: upstream's, minus the steps that reach hosts other than Debian's archive (the extrepo
#     repository, the third-party apt keys), exactly as tests/upstream_keystone.rs does; UPSTREAM_BASE=1 keeps
#     upstream's base unchanged (for a network that reaches those hosts);
#   * measured: cold time (one `kolla-oci build` of the selection, wall, rendering included, images built in
#     parallel as kolla-oci schedules them; against the sum of the `buildah bud --layers --isolation chroot`
#     of each rendered Dockerfile in dependency order, rendered beforehand; best of $COLD_RUNS rounds, each from
#     the seed), no-op time (the same again on the warm store/cache, best of $RUNS), and bytes stored (`du -sb`
#     of our whole store — blobs, extracted layers, skeletons, step cache — against buildah's whole `--root`
#     storage — layers, intermediate images of --layers), in total and added on top of the seeded base image,
#     after the no-op rebuilds (the steady state); then, for kolla-oci (and BEFORE), a rebuild after a change of
#     a leaf's template (cron's, plus `RUN echo changed-N > /etc/kolla-bench`, one new N per round: one layer to
#     build each time), best of $RUNS;
#   * network: kolla-oci's default `--network private` (own namespace, slirp4netns); buildah's chroot isolation
#     runs RUN steps in the host's network namespace. Both fetch Debian packages from the same archive; each cold
#     round runs kolla-oci, BEFORE, buildah in that order, even rounds BEFORE first (a CDN cache warmed by the first
#     run helps the later ones).
#     Behind a TLS-inspecting proxy both get the host's CA bundle for their RUN steps (see HOST_CA below).
#   * BEFORE=/path/to/old/kolla-oci also times that binary's cold and no-op builds in the same run (fresh copy
#     of the seed store), so one table shows old vs new vs buildah.
# Goals of the issue: cold ≥ 1.5×, no-op ≥ 10× faster than buildah.
# Usage: benches/kolla-vs-buildah.sh   (root, or subuids for buildah; tests/setup.sh installs the tools)
#   env: BIN=kolla-oci binary (default: release build of this checkout), BEFORE=old binary, KEYSTONE=1,
#        RUNS=3 (no-op), COLD_RUNS=1, KOLLA_TREE=an installed kolla 23.0.0's `kolla/docker` (default: the wheel
#        from PyPI), UPSTREAM_BASE=1, KEEP=1 (keep the work dir: stores, logs)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
COLD_RUNS=${COLD_RUNS:-1}
KEYSTONE=${KEYSTONE:-0}
BEFORE=${BEFORE:-}
KOLLA_VERSION=23.0.0
KEYSTONE_VERSION=30.0.0
if [[ -z ${BIN:-} ]]; then
    cargo build --release -q
    BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/kolla-oci
fi
for t in buildah skopeo mmdebstrap python3 bc tar; do
    command -v "$t" >/dev/null || { echo "needs $t (tests/setup.sh installs it)" >&2; exit 1; }
done
W=$(mktemp -d /tmp/kolla-oci-bench-buildah.XXXXXX)
BROOT=$W/buildah-root
BRUN=$W/buildah-run
bah() { buildah --root "$BROOT" --runroot "$BRUN" --storage-driver overlay "$@"; }
cleanup() {
    if [[ -d $BROOT ]]; then bah rm --all >/dev/null 2>&1 || true; fi
    { findmnt -rn -o TARGET | grep "^$W/" || true; } | sort -r | while read -r m; do umount "$m" || true; done
    if [[ ${KEEP:-0} == 1 ]]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT
now() { date +%s.%N; }
mb() { if [[ -n $1 ]]; then printf '%.1f' "$(echo "$1 / 1000000" | bc -l)"; fi; }
secs() { echo "$2 - $1" | bc; }
minof() { printf '%s\n' "$@" | grep . | sort -g | head -1; }
ratio() { if [[ -n $1 && -n $2 ]]; then printf '%.2fx' "$(echo "$1 / $2" | bc -l)"; else printf -- '-'; fi; }
die_log() { echo "$1 failed; last lines of $2:" >&2; tail -30 "$2" >&2; exit 1; }

# --- inputs: kolla's template tree, the air-gapped base, sources, config ------------------------------------------
if [[ -z ${KOLLA_TREE:-} ]]; then
    python3 -m pip download -q --disable-pip-version-check --no-deps -d "$W/pypi" "kolla==$KOLLA_VERSION"
    python3 -m zipfile -e "$W/pypi/kolla-$KOLLA_VERSION-py3-none-any.whl" "$W/kolla"
    KOLLA_TREE=$W/kolla/kolla/docker
fi
[[ -f $KOLLA_TREE/base/Dockerfile.j2 ]] || { echo "no kolla template tree at $KOLLA_TREE" >&2; exit 1; }
mkdir -p "$W/docker-dir"
if [[ ${UPSTREAM_BASE:-0} != 1 ]]; then
    # The same cut as air_gapped_base() in tests/upstream_keystone.rs.
    mkdir -p "$W/docker-dir/base"
    python3 - "$KOLLA_TREE/base/Dockerfile.j2" "$W/docker-dir/base/Dockerfile.j2" <<'PY'
import sys
up = open(sys.argv[1]).read()
start = up.index("RUN apt update \\\n && apt install -y --no-install-recommends extrepo")
end = start + up[start:].index("apt clean\n") + len("apt clean\n")
out = up[:start] + up[end:]
block = "{%- block base_ubuntu_package_key_installation %}"
start = out.index(block)
end = start + out[start:].index("{% endblock %}")
out = out[:start + len(block)] + "\n    " + out[end:]
assert "extrepo enable" not in out and "gpg --keyserver" not in out and "curl {{ key.url }}" not in out
open(sys.argv[2], "w").write(out)
PY
fi
SELECT='^(base|memcached|cron)$'
: > "$W/kolla-build.conf"
if [[ $KEYSTONE == 1 ]]; then
    SELECT='^(base|memcached|cron|keystone)$'
    mkdir -p "$W/requirements"
    cp tests/data/openstack-requirements/{upper-constraints.txt,global-requirements.txt} "$W/requirements/"
    python3 -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$W/sdist" \
        "keystone==$KEYSTONE_VERSION"
    SDIST=$W/sdist/keystone-$KEYSTONE_VERSION.tar.gz
    printf '[openstack-base]\ntype = local\nlocation = %s\n[keystone-base]\ntype = local\nlocation = %s\n' \
        "$W/requirements" "$SDIST" > "$W/kolla-build.conf"
fi
# kolla-oci build of the selection; --config-file replaces the search of ~/.kolla, /etc/kolla, ...
kbuild() {
    local bin=$1 store=$2; shift 2
    HOME=$W "$bin" --store "$store" build --template-tree "$KOLLA_TREE" --docker-dir "${DOCKER_DIR:-$W/docker-dir}" \
        --config-file "$W/kolla-build.conf" "$@" "$SELECT"
}
# "built names|layers_built|failed count" of a summary
summary() {
    python3 - "$1" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(" ".join(sorted(b["name"] for b in s["built"])) + "|" + str(s.get("layers_built", "?")) + "|" + str(len(s["failed"])))
PY
}

# --- the rendered Dockerfiles buildah builds (the same render kolla-oci builds) ---------------------------------------
kbuild "$BIN" "$W/render-store" --template-only --work-dir "$W/wd" >"$W/render.log" 2>&1 || die_log render "$W/render.log"
WD=$W/wd/docker
# image, context dir and canonical name (the name children's FROM lines use), parents first
python3 - "$WD" > "$W/order" <<'PY'
import os, sys
root = sys.argv[1]
imgs = {}
for d, _, files in os.walk(root):
    if "Dockerfile" in files:
        for line in open(os.path.join(d, "Dockerfile")):
            w = line.split()
            if w and w[0].upper() == "FROM":
                imgs[os.path.basename(d)] = (d, [x for x in w[1:] if not x.startswith("--")][0])
                break
repo = lambda ref: ref.rsplit(":", 1)[0] if ":" in ref.rsplit("/", 1)[-1] else ref
parent = {n: repo(f).rsplit("/", 1)[-1] for n, (_, f) in imgs.items()}
parent = {n: p if p in imgs and p != n else None for n, p in parent.items()}
ns_tag = [(repo(f)[:-len(parent[n])], f[len(repo(f)):]) for n, (_, f) in imgs.items() if parent[n]]
assert ns_tag and len(set(ns_tag)) == 1, f"cannot tell the namespace and tag from the FROM lines: {ns_tag}"
ns, tag = ns_tag[0]
done = []
while len(done) < len(imgs):
    done += sorted(n for n in imgs if n not in done and (parent[n] is None or parent[n] in done))
for n in done:
    print(n, imgs[n][0], f"{ns}{n}{tag}", parent[n] or "-")
PY
BASE_FROM=$(awk 'toupper($1) == "FROM" { print $2; exit }' "$WD/base/Dockerfile")
# buildah gets kolla's source archives as kolla-build makes them (kolla-oci writes its own while building).
tar_dir() { tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$2" -cf "$1" "$3"; }
mkdir -p "$W/empty/plugins" "$W/empty/additions"
while read -r name dir _; do
    while read -r a; do
        case $a in
            plugins-archive) tar_dir "$dir/$a" "$W/empty" plugins ;;
            additions-archive) tar_dir "$dir/$a" "$W/empty" additions ;;
            openstack-base-archive) tar_dir "$dir/$a" "$W" requirements ;;
            keystone-base-archive) cp "$SDIST" "$dir/$a" ;;
            *) echo "$name: no source for $a" >&2; exit 1 ;;
        esac
    done < <(awk 'toupper($1) == "ADD" && $2 ~ /-archive$/ { print $2 }' "$dir/Dockerfile")
done < "$W/order"

# --- the base image, once, for both tools ----------------------------------------------------------------------
echo "bootstrapping $BASE_FROM into the seed store (mmdebstrap, once, not timed)..."
mkdir -p "$W/ctx0"
echo "FROM $BASE_FROM" > "$W/ctx0/Dockerfile"
# BIN makes the seed (its root layer compressed by BIN's compressor, as a store of that version holds it). BEFORE
# reads it too: no image is built on the seed image yet, so its layer is kept as its blob, a plain OCI layout.
HOME=$W "$BIN" --store "$W/seed" build-file --no-attestations "$W/ctx0" -t bench-seed:1 \
    >"$W/seed.log" 2>&1 || die_log bootstrap "$W/seed.log"
SEED_BYTES=$(du -sb "$W/seed" | cut -f1)
skopeo copy -q oci:"$W/seed/oci":"$BASE_FROM" "containers-storage:[overlay@$BROOT+$BRUN]$BASE_FROM"
BSEED_BYTES=$(du -sb "$BROOT" | cut -f1)

# --- cold builds, then no-op rebuilds ---------------------------------------------------------------------------
# seconds and bytes by tool: ours, before, buildah
declare -A COLD NOOP BYTES ADDED LEAF
TOOLS=(ours)
if [[ -n $BEFORE ]]; then TOOLS+=(before); fi
declare -A BINS=([ours]=$BIN [before]=$BEFORE)
# kolla_cold LABEL ROUND: a fresh copy of the seed store, one build of the selection; keeps the best in COLD[LABEL]
kolla_cold() {
    local label=$1 store=$W/store-$1 t0 t1 s
    rm -rf "$store"
    cp -a "$W/seed" "$store"
    t0=$(now)
    kbuild "${BINS[$label]}" "$store" --logs-dir "$W/logs-$label-$2" --summary-json-file "$W/$label-cold.json" \
        >"$W/$label-cold$2.log" 2>&1 || die_log "$label cold build" "$W/$label-cold$2.log"
    t1=$(now)
    COLD[$label]=$(minof "$(secs "$t0" "$t1")" "${COLD[$label]:-}")
    s=$(summary "$W/$label-cold.json")
    printf '  %-9s cold   %8.2f s  built: %s (layers built %s)\n' "$label" "$(secs "$t0" "$t1")" "${s%%|*}" \
        "$(cut -d'|' -f2 <<<"$s")"
}
# rounds LABEL KIND: $RUNS timed `KIND_build LABEL ROUND` on LABEL's store; the best into BEST, one line
rounds() {
    local label=$1 kind=$2 t0 t1 times=()
    for i in $(seq "$RUNS"); do
        t0=$(now)
        "${kind}_build" "$label" "$i" >"$W/$label-$kind.log" 2>&1 || die_log "$label $kind build" "$W/$label-$kind.log"
        t1=$(now)
        times+=("$(secs "$t0" "$t1")")
    done
    BEST=$(minof "${times[@]}")
    printf '  %-9s %-6s %8.3f s  best of %s (%s), layers built %s\n' "$label" "$kind" "$BEST" "$RUNS" "${times[*]}" \
        "$(summary "$W/$label-$kind.json" | cut -d'|' -f2)"
}
# The same build again.
noop_build() { kbuild "${BINS[$1]}" "$W/store-$1" --summary-json-file "$W/$1-noop.json"; }
# The build after a change of cron's template: upstream's plus `RUN echo changed-LABEL-ROUND` (one new layer).
leaf_build() {
    local dir=$W/docker-dir-leaf-$1-$2
    rm -rf "$dir"
    cp -a "$W/docker-dir" "$dir"
    mkdir -p "$dir/cron"
    cp -a "$KOLLA_TREE/cron/." "$dir/cron/"
    printf '\nRUN echo changed-%s-%s > /etc/kolla-bench\n' "$1" "$2" >> "$dir/cron/Dockerfile.j2"
    DOCKER_DIR=$dir kbuild "${BINS[$1]}" "$W/store-$1" --summary-json-file "$W/$1-leaf.json"
}
# kolla_noop LABEL: no-op rebuilds, best into NOOP[LABEL]; then the store's bytes (its steady state), by part
kolla_noop() {
    local store=$W/store-$1 kind parts=""
    rounds "$1" noop
    NOOP[$1]=$BEST
    BYTES[$1]=$(du -sb "$store" | cut -f1)
    for kind in oci/blobs layers split cache; do
        if [[ -d $store/$kind ]]; then parts+=" $kind $(mb "$(du -sb "$store/$kind" | cut -f1)")"; fi
    done
    printf '  %-9s stored %8s MB:%s (MB)\n' "$1" "$(mb "${BYTES[$1]}")" "$parts"
}
# buildah: each rendered Dockerfile, parents first; $1: log suffix; sets BUD_TOTAL and BUD_EACH
bud_all() {
    local name dir canon parent t0 t1 total=0 ca
    BUD_EACH=""
    while read -r name dir canon parent; do
        ca=()
        if [[ -n $HOST_CA && $parent != - ]]; then ca=(--volume "$HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro"); fi
        t0=$(now)
        bah bud --layers --isolation chroot --pull=never "${ca[@]}" -t "$canon" -f "$dir/Dockerfile" "$dir" \
            >"$W/buildah-$name-$1.log" 2>&1 || die_log "buildah bud $name" "$W/buildah-$name-$1.log"
        t1=$(now)
        total=$(echo "$total + $(secs "$t0" "$t1")" | bc)
        BUD_EACH+=$(printf ' %s %.2f' "$name" "$(secs "$t0" "$t1")")
    done < "$W/order"
    BUD_TOTAL=$total
}
BASE_ID=$(bah images -q --no-trunc "$BASE_FROM")
# Behind a TLS-inspecting proxy, kolla-oci gives RUN steps the host's CA bundle (the first file named by
# SSL_CERT_FILE, REQUESTS_CA_BUNDLE, PIP_CERT, CURL_CA_BUNDLE; mounted under /dev for the step). buildah gets it as
# a RUN volume over the image's own bundle (below the root image, which makes that bundle itself): pip in the
# images trusts the system store.
HOST_CA=""
for v in SSL_CERT_FILE REQUESTS_CA_BUNDLE PIP_CERT CURL_CA_BUNDLE; do
    if [[ -f ${!v:-} ]]; then HOST_CA=${!v}; break; fi
done
buildah_cold() {
    local ids
    # back to the seeded storage: every image but the base (intermediate --layers images included)
    bah rm --all >/dev/null
    mapfile -t ids < <(bah images -a -q --no-trunc | grep -v "^$BASE_ID\$" || true)
    if ((${#ids[@]})); then bah rmi -f "${ids[@]}" >/dev/null; fi
    bud_all "cold$1"
    COLD[buildah]=$(minof "$BUD_TOTAL" "${COLD[buildah]:-}")
    printf '  %-9s cold   %8.2f s  per image:%s\n' buildah "$BUD_TOTAL" "$BUD_EACH"
}
buildah_noop() {
    local images noop=()
    images=$(bah images -a -q | wc -l)
    for i in $(seq "$RUNS"); do
        bud_all "noop$i"
        noop+=("$BUD_TOTAL")
    done
    NOOP[buildah]=$(minof "${noop[@]}")
    printf '  %-9s no-op  %8.3f s  best of %s (%s), new images %s\n' buildah "${NOOP[buildah]}" "$RUNS" \
        "${noop[*]}" "$(($(bah images -a -q | wc -l) - images))"
    BYTES[buildah]=$(du -sb "$BROOT" | cut -f1)
}

echo "kolla-oci $("$BIN" --version | cut -d' ' -f2) ($BIN)${BEFORE:+, before: $BEFORE}; $(buildah --version)"
echo "selection $SELECT: $(cut -d' ' -f1 "$W/order" | tr '\n' ' ')on $BASE_FROM; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "network: kolla-oci --network private (slirp4netns), buildah --isolation chroot (host network)${HOST_CA:+; host CA bundle $HOST_CA given to both}"
for round in $(seq "$COLD_RUNS"); do
    # kolla-oci and BEFORE take turns going first (a CDN cache warmed by the first helps the next).
    order=("${TOOLS[@]}")
    if ((round % 2 == 0 && ${#TOOLS[@]} == 2)); then order=(before ours); fi
    for t in "${order[@]}"; do kolla_cold "$t" "$round"; done
    buildah_cold "$round"
done
for t in "${TOOLS[@]}"; do kolla_noop "$t"; done
buildah_noop
for t in "${TOOLS[@]}"; do
    rounds "$t" leaf
    LEAF[$t]=$BEST
done

# --- the table ---------------------------------------------------------------------------------------------------
ADDED[ours]=$((BYTES[ours] - SEED_BYTES))
ADDED[buildah]=$((BYTES[buildah] - BSEED_BYTES))
if [[ -n $BEFORE ]]; then ADDED[before]=$((BYTES[before] - SEED_BYTES)); fi
echo
printf '%-28s %10s %10s %10s %13s %12s\n' "" kolla-oci before buildah buildah/ours before/ours
# shellcheck disable=SC2059 # the format is the caller's
fmt() { if [[ -n $2 ]]; then printf "$1" "$2"; else printf -- '-'; fi; }
row() { # label, format, ours, before, buildah
    printf '%-28s %10s %10s %10s %13s %12s\n' "$1" "$(fmt "$2" "$3")" "$(fmt "$2" "$4")" "$(fmt "$2" "$5")" \
        "$(ratio "$5" "$3")" "$(ratio "$4" "$3")"
}
row "cold build, best of $COLD_RUNS (s)" '%.2f' "${COLD[ours]}" "${COLD[before]:-}" "${COLD[buildah]}"
row "no-op, best of $RUNS (s)" '%.3f' "${NOOP[ours]}" "${NOOP[before]:-}" "${NOOP[buildah]}"
row "changed leaf, best of $RUNS (s)" '%.3f' "${LEAF[ours]}" "${LEAF[before]:-}" ""
row "stored, total (MB)" '%s' "$(mb "${BYTES[ours]}")" "$(mb "${BYTES[before]:-}")" "$(mb "${BYTES[buildah]}")"
row "stored, added (MB)" '%s' "$(mb "${ADDED[ours]}")" "$(mb "${ADDED[before]:-}")" "$(mb "${ADDED[buildah]}")"
printf '(stored: whole store/storage after the runs; added: minus the seeded %s, ours %s MB, buildah %s MB)\n' \
    "$BASE_FROM" "$(mb "$SEED_BYTES")" "$(mb "$BSEED_BYTES")"
verdict() { # buildah, ours, goal
    if [[ $(echo "$1 / $2 >= $3" | bc -l) == 1 ]]; then echo "met ($(ratio "$1" "$2"))"; else echo "NOT met ($(ratio "$1" "$2"))"; fi
}
printf 'goals vs buildah: cold >= 1.5x: %s, no-op >= 10x: %s, stored >= 1.0x: %s\n' \
    "$(verdict "${COLD[buildah]}" "${COLD[ours]}" 1.5)" "$(verdict "${NOOP[buildah]}" "${NOOP[ours]}" 10)" \
    "$(verdict "${BYTES[buildah]}" "${BYTES[ours]}" 1.0)"
if [[ -n $BEFORE ]]; then
    printf 'goals vs before: changed leaf <= 1.5x before: %s\n' "$(verdict "$(echo "1.5 * ${LEAF[before]}" | bc -l)" \
        "${LEAF[ours]}" 1.0)"
fi
