#!/usr/bin/env bash
# SBOM of the bundled keystone image: `kolla-oci sbom` (reads dpkg's database and Python metadata through
# the image's extracted layers) vs `cdxgen -t docker` (npm @cyclonedx/cdxgen) on a `kolla-oci save` of the
# same image. Prints the best wall time of each (same run, same machine), their ratio, and the package
# counts side by side (Debian packages, Python distributions, total components).
#
# Usage: benches/sbom.sh   (env: REPEAT=3 runs of ours, PEER_REPEAT=1 of cdxgen: minutes each;
#                           STATE=dir keeping the built store between runs; KOLLA_OCI=path/to/kolla-oci,
#                           default target/release/kolla-oci; CDXGEN_DIR=npm prefix, default target/cdxgen)
# Needs: what `./tests/setup.sh` installs (mmdebstrap for the build), npm, python3; network to the
# Debian archive and PyPI for the first build, and to the npm registry for the first cdxgen install.
set -euo pipefail

REPEAT=${REPEAT:-3}
PEER_REPEAT=${PEER_REPEAT:-1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${KOLLA_OCI:-$TARGET/release/kolla-oci}
STATE=${STATE:-$TARGET/bench-sbom-state}
CDXGEN_DIR=${CDXGEN_DIR:-$TARGET/cdxgen}

for tool in npm python3; do
    command -v "$tool" >/dev/null || { echo "sbom.sh: $tool is missing" >&2; exit 1; }
done
if [ ! -x "$BIN" ]; then
    (cd "$ROOT" && cargo build --release --bin kolla-oci)
fi
CDXGEN=$CDXGEN_DIR/node_modules/.bin/cdxgen
if [ ! -x "$CDXGEN" ]; then
    mkdir -p "$CDXGEN_DIR"
    npm install --prefix "$CDXGEN_DIR" --no-audit --no-fund @cyclonedx/cdxgen >&2
fi

WORK=$(mktemp -d /tmp/kolla-sbom-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The bundled tree's keystone image (and its parents), built once into $STATE.
"$BIN" --store "$STATE" build keystone >&2
TAG=$("$BIN" --store "$STATE" images | awk '$1 ~ /\/keystone:/ { print $1; exit }')
[ -n "$TAG" ] || { echo "sbom.sh: no keystone image in $STATE" >&2; exit 1; }
"$BIN" --store "$STATE" save "$TAG" -o "$WORK/keystone.tar"

# Best wall time of N runs of "${@:2}", in seconds.
best() {
    local n=$1 best=""
    shift
    for _ in $(seq "$n"); do
        local t0 t1
        t0=$(date +%s.%N)
        "$@" >/dev/null 2>&1
        t1=$(date +%s.%N)
        best=$(python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); b=sys.argv[3]; print(min(t, float(b)) if b else t)" "$t0" "$t1" "$best")
    done
    echo "$best"
}

ours=$(best "$REPEAT" "$BIN" --store "$STATE" sbom "$TAG" --format cyclonedx --recompute)
"$BIN" --store "$STATE" sbom "$TAG" --format cyclonedx > "$WORK/ours.cdx.json"
# --no-install-deps keeps cdxgen from running package managers (its default for images anyway).
peer=$(best "$PEER_REPEAT" "$CDXGEN" -t docker --no-install-deps -o "$WORK/cdxgen.cdx.json" "$WORK/keystone.tar")

python3 - "$WORK/ours.cdx.json" "$WORK/cdxgen.cdx.json" "$ours" "$peer" "$TAG" <<'EOF'
import json, sys

def counts(path):
    comps = json.load(open(path)).get("components", [])
    purls = [c.get("purl", "") for c in comps]
    deb = {p.split("?")[0] for p in purls if p.startswith("pkg:deb/")}
    pypi = {p.split("?")[0].lower() for p in purls if p.startswith("pkg:pypi/")}
    return len(deb), len(pypi), len(comps)

ours_path, peer_path, t_ours, t_peer, tag = sys.argv[1:]
o, p = counts(ours_path), counts(peer_path)
t_ours, t_peer = float(t_ours), float(t_peer)
print(f"image: {tag}")
print(f"{'':22}{'kolla-oci sbom':>16}{'cdxgen -t docker':>18}")
print(f"{'wall time (best)':22}{t_ours:>15.2f}s{t_peer:>17.2f}s")
print(f"{'Debian packages':22}{o[0]:>16}{p[0]:>18}")
print(f"{'Python distributions':22}{o[1]:>16}{p[1]:>18}")
print(f"{'components (all)':22}{o[2]:>16}{p[2]:>18}")
print(f"ratio: kolla-oci is {t_peer / t_ours:.1f}x faster than cdxgen")
EOF
