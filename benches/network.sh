#!/usr/bin/env bash
# Issue #14 figures: what RUN's private network namespace (slirp4netns, the default) costs next to the
# host's network (`--network host`), measured in one run on the same Debian bookworm base:
#   1. download throughput inside a RUN: a 34 MB file from deb.debian.org (curl's own average speed) and
#      `pip download numpy` (a ~16 MB wheel from PyPI, wall time of the command inside the RUN);
#   2. per-RUN start-up: a Dockerfile of 20 trivial RUNs, whole build wall time.
# Each figure is the best of $RUNS runs; the ratio is private / host (throughput: >1 means faster).
# Usage: benches/network.sh   (BIN=path/to/kolla-oci to skip the release build; tests/setup.sh installs
# slirp4netns and mmdebstrap)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
URL=${URL:-https://deb.debian.org/debian/dists/bookworm/main/Contents-all.gz}
if [[ -z ${BIN:-} ]]; then
    cargo build --release -q
    BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/kolla-oci
fi
W=$(mktemp -d /tmp/kolla-oci-bench-network.XXXXXX)
trap 'rm -rf "$W"' EXIT
export KOLLA_OCI_STORE=$W/state KOLLA_OCI_LOG=warn

now() { date +%s.%N; }
best_low() { sort -g | head -1; }
best_high() { sort -gr | head -1; }
# build NAME MODE DOCKERFILE-TEXT: builds with --no-cache; the RUN output goes to $W/NAME.log.
build() {
    mkdir -p "$W/$1"
    printf '%s' "$3" > "$W/$1/Dockerfile"
    "$BIN" build-file --no-cache --network "$2" --log-file "$W/$1.log" "$W/$1" -t "$1:1" >/dev/null
}

echo "preparing the base (mmdebstrap + curl, python3-pip; once)..."
build base private 'FROM debian:bookworm
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates python3-pip && rm -rf /var/lib/apt/lists/*
'

declare -A curl_speed pip_time trivial
for mode in private host; do
    speeds=(); pips=(); walls=()
    for i in $(seq "$RUNS"); do
        build "curl-$mode-$i" "$mode" "FROM base:1
RUN curl -fsS -o /dev/null -w 'SPEED %{speed_download}\n' $URL
"
        speeds+=("$(awk '/^SPEED/ {print $2}' "$W/curl-$mode-$i.log")")
        build "pip-$mode-$i" "$mode" 'FROM base:1
RUN t0=$(date +%s.%N) && pip download -q --no-deps --no-cache-dir -d /tmp/dl numpy && echo "PIP $(echo "$(date +%s.%N) - $t0" | python3 -c "import sys; print(eval(sys.stdin.read()))")"
'
        pips+=("$(awk '/^PIP/ {print $2}' "$W/pip-$mode-$i.log")")
        text="FROM base:1"$'\n'
        for n in $(seq 20); do text+="RUN true $n"$'\n'; done
        t0=$(now); build "trivial-$mode-$i" "$mode" "$text"; t1=$(now)
        walls+=("$(echo "$t1 - $t0" | bc)")
    done
    curl_speed[$mode]=$(printf '%s\n' "${speeds[@]}" | best_high)
    pip_time[$mode]=$(printf '%s\n' "${pips[@]}" | best_low)
    trivial[$mode]=$(printf '%s\n' "${walls[@]}" | best_low)
done

printf 'download %s (curl, best of %s):\n' "${URL##*/}" "$RUNS"
printf '    private %8.1f MB/s   host %8.1f MB/s   ratio private/host %.2f\n' \
    "$(echo "${curl_speed[private]} / 1000000" | bc -l)" "$(echo "${curl_speed[host]} / 1000000" | bc -l)" \
    "$(echo "${curl_speed[private]} / ${curl_speed[host]}" | bc -l)"
printf 'pip download numpy (seconds in the RUN, best of %s):\n' "$RUNS"
printf '    private %8.2f s      host %8.2f s      ratio host/private %.2f\n' \
    "${pip_time[private]}" "${pip_time[host]}" "$(echo "${pip_time[host]} / ${pip_time[private]}" | bc -l)"
printf '20 trivial RUNs (whole build, best of %s):\n' "$RUNS"
printf '    private %8.2f s      host %8.2f s      ratio %.2f, start-up overhead per RUN %.1f ms\n' \
    "${trivial[private]}" "${trivial[host]}" "$(echo "${trivial[private]} / ${trivial[host]}" | bc -l)" \
    "$(echo "(${trivial[private]} - ${trivial[host]}) * 1000 / 20" | bc -l)"
