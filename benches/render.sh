#!/usr/bin/env bash
# Rendering speed against the reference: times `kolla-oci build --template-only` and
# `kolla-build --template-only` (kolla 23.0.0 from PyPI) on the same installed template tree
# (188 Debian images), in the same run with hyperfine, checks that both outputs are identical,
# and prints the speed ratio (goal: >= 20x).
#
# Usage: benches/render.sh            # release build of kolla-oci, 5 runs each
#        RUNS=10 PROFILE=dev benches/render.sh
# Needs python3.11 (+ venv), hyperfine, network access to PyPI the first time (the venv is
# cached in target/kolla-venv-23.0.0, shared with tests/template_conformance.rs).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
runs=${RUNS:-5}
profile=${PROFILE:-release}
kolla_version=23.0.0
venv=$target/kolla-venv-$kolla_version

command -v hyperfine >/dev/null || { echo "hyperfine is required (apt-get install hyperfine)" >&2; exit 1; }

if [[ ! -f $venv/.kolla-oci-complete ]]; then
    rm -rf "$venv"
    python3.11 -m venv "$venv"
    # kolla-build refuses to start without the docker SDK, even for --template-only.
    "$venv/bin/pip" install -q --disable-pip-version-check "kolla==$kolla_version" docker
    echo "$kolla_version" > "$venv/.kolla-oci-complete"
fi
tree=$venv/lib/python3.11/site-packages/kolla/docker

if [[ $profile == release ]]; then
    cargo build -q --release --bin kolla-oci --manifest-path "$root/Cargo.toml"
    bin=$target/release/kolla-oci
else
    cargo build -q --bin kolla-oci --manifest-path "$root/Cargo.toml"
    bin=$target/debug/kolla-oci
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/home"
export HOME=$tmp/home   # no user kolla config files for either tool

kolla_cmd="$venv/bin/kolla-build --template-only --base debian --work-dir $tmp/kolla"
ours_cmd="$bin --store $tmp/store build --template-only --base debian --base-tag trixie --template-tree $tree --work-dir $tmp/ours"

echo "kolla-build $("$venv/bin/kolla-build" --version), kolla-oci $("$bin" --version) ($profile), $(nproc) CPUs"
hyperfine --warmup 1 --runs "$runs" --style basic --export-json "$tmp/times.json" \
    --prepare "rm -rf $tmp/kolla" -n kolla-build "$kolla_cmd" \
    --prepare "rm -rf $tmp/ours" -n kolla-oci "$ours_cmd"

# Same output, or the timing means nothing.
diff -r "$tmp/kolla/docker" "$tmp/ours/docker" >/dev/null \
    || { echo "outputs differ: run cargo test --test template_conformance" >&2; exit 1; }
n=$(find "$tmp/ours/docker" -name Dockerfile | wc -l)

python3 - "$tmp/times.json" "$n" <<'EOF'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
k, o = r["kolla-build"], r["kolla-oci"]
print(f"{sys.argv[2]} identical Dockerfiles; kolla-build {k['mean']:.3f} s ± {k['stddev']:.3f}, "
      f"kolla-oci {o['mean'] * 1000:.1f} ms ± {o['stddev'] * 1000:.1f}: "
      f"kolla-oci is {k['mean'] / o['mean']:.1f}x faster (goal >= 20x)")
EOF
