#!/usr/bin/env bash
# Push N images that share a base into an empty registry: `kolla-oci push` (one run, shared blobs
# uploaded once and mounted elsewhere) vs `skopeo copy` of the same images one by one (with an empty
# blob-info cache at the start, so it can only mount what it pushed itself in this run).
#
# Both push through a byte-counting TCP proxy in front of their own fresh `docker-registry` on 127.0.0.1;
# "sent" is every byte the client wrote to the registry (headers included).
#
# Usage: benches/push.sh            (env: N=8 images, BASE_MB=64, OWN_MB=4, REPEAT=3,
#                                     KOLLA_OCI=path/to/kolla-oci, default target/release/kolla-oci)
# Needs: docker-registry, skopeo, umoci, python3, unshare (util-linux); run as root (for the private
# tmpfs that gives skopeo an empty /var/lib/containers/cache).
set -euo pipefail

N=${N:-8}
BASE_MB=${BASE_MB:-64}
OWN_MB=${OWN_MB:-4}
REPEAT=${REPEAT:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${KOLLA_OCI:-$ROOT/target/release/kolla-oci}

for tool in docker-registry skopeo umoci python3 unshare; do
    command -v "$tool" >/dev/null || { echo "push.sh: $tool is missing" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "push.sh: run as root (skopeo's blob-info cache is isolated with a private tmpfs)" >&2; exit 1; }
if [ ! -x "$BIN" ]; then
    (cd "$ROOT" && cargo build --release --bin kolla-oci)
fi

WORK=$(mktemp -d /tmp/kolla-push-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=benches/registry.sh
source "$ROOT/benches/registry.sh"

# A raw TCP forwarder that counts the bytes clients send; writes the total to $3 when terminated.
cat > "$WORK/count_proxy.py" <<'EOF'
import os, signal, socket, sys, threading
listen, upstream, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sent = 0
lock = threading.Lock()
def pipe(src, dst, count):
    global sent
    try:
        while True:
            b = src.recv(1 << 16)
            if not b:
                break
            if count:
                with lock:
                    sent += len(b)
            dst.sendall(b)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
def stop(*_):
    with open(out, "w") as f:
        f.write(str(sent))
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen))
srv.listen(64)
while True:
    c, _ = srv.accept()
    u = socket.create_connection(("127.0.0.1", upstream))
    threading.Thread(target=pipe, args=(c, u, True), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c, False), daemon=True).start()
EOF

# start_registry NAME → sets REG_PORT, PROXY_PORT, PROXY_PID
start_registry() {
    local dir="$WORK/$1"
    serve_registry "$dir"
    PROXY_PORT=$(free_port)
    python3 "$WORK/count_proxy.py" "$PROXY_PORT" "$REG_PORT" "$dir/sent" &
    PROXY_PID=$!
    PIDS+=($PROXY_PID)
    for _ in $(seq 50); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$PROXY_PORT)).close()" 2>/dev/null && break
        sleep 0.1
    done
}

# stop_proxy NAME PID → prints bytes sent through it
stop_proxy() {
    kill -TERM "$2"
    for _ in $(seq 50); do [ -s "$WORK/$1/sent" ] && break; sleep 0.1; done
    cat "$WORK/$1/sent"
}

now() { date +%s.%N; }

echo "== fixture: $N images sharing a ${BASE_MB} MiB base (2 layers), ${OWN_MB} MiB own layer each (umoci)"
LAYOUT="$WORK/state/oci"
mkdir -p "$WORK/state" "$WORK/tree"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:base"
for part in 1 2; do
    mkdir -p "$WORK/tree/base$part"
    head -c $((BASE_MB * 1024 * 1024 / 2)) /dev/urandom > "$WORK/tree/base$part/blob.bin"
    umoci insert --image "$LAYOUT:base" "$WORK/tree/base$part" "/usr/lib/base$part" >/dev/null
done
IMAGES=()
for i in $(seq "$N"); do
    mkdir -p "$WORK/tree/own$i"
    head -c $((OWN_MB * 1024 * 1024)) /dev/urandom > "$WORK/tree/own$i/blob.bin"
    umoci insert --image "$LAYOUT:base" --tag "img$i" "$WORK/tree/own$i" "/opt/img$i" >/dev/null
    IMAGES+=("img$i")
done
STORE_MB=$(du -sm "$LAYOUT/blobs" | cut -f1)
echo "   store: ${STORE_MB} MiB of blobs"

best_ours=""; best_skopeo=""
for r in $(seq "$REPEAT"); do
    start_registry "ours$r"
    t0=$(now)
    "$BIN" --store "$WORK/state" --log-level warn push --registry "127.0.0.1:$PROXY_PORT" --namespace bench \
        --push-threads 4 "${IMAGES[@]}" > "$WORK/ours$r/out"
    t1=$(now)
    ours_bytes=$(stop_proxy "ours$r" "$PROXY_PID")
    ours_s=$(echo "$t1 - $t0" | bc -l)
    echo "run $r kolla-oci: $(printf %.2f "$ours_s") s, sent $ours_bytes bytes; $(cat "$WORK/ours$r/out")"

    start_registry "skopeo$r"
    t0=$(now)
    unshare -m sh -c '
        set -e
        mkdir -p /var/lib/containers/cache
        mount -t tmpfs tmpfs /var/lib/containers/cache
        for img in '"${IMAGES[*]}"'; do
            skopeo copy -q --dest-tls-verify=false "oci:'"$LAYOUT"':$img" "docker://127.0.0.1:'"$PROXY_PORT"'/bench/$img:latest"
        done'
    t1=$(now)
    skopeo_bytes=$(stop_proxy "skopeo$r" "$PROXY_PID")
    skopeo_s=$(echo "$t1 - $t0" | bc -l)
    echo "run $r skopeo:    $(printf %.2f "$skopeo_s") s, sent $skopeo_bytes bytes"

    # Same content must have arrived: compare one image's digest on both registries.
    if [ "$r" = 1 ]; then
        ours_reg=$(grep -o 'addr: .*' "$WORK/ours1/config.yml" | cut -d' ' -f2)
        skopeo_reg=$(grep -o 'addr: .*' "$WORK/skopeo1/config.yml" | cut -d' ' -f2)
        d1=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$ours_reg/bench/img1:latest")
        d2=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$skopeo_reg/bench/img1:latest")
        echo "   img1 digest: kolla-oci $d1, skopeo $d2"
    fi
    if [ -z "$best_ours" ] || [ "$(echo "$ours_s < $best_ours" | bc -l)" = 1 ]; then best_ours=$ours_s; fi
    if [ -z "$best_skopeo" ] || [ "$(echo "$skopeo_s < $best_skopeo" | bc -l)" = 1 ]; then best_skopeo=$skopeo_s; fi
    best_ours_bytes=$ours_bytes; best_skopeo_bytes=$skopeo_bytes
done

echo "== best of $REPEAT: kolla-oci $(printf %.2f "$best_ours") s, skopeo $(printf %.2f "$best_skopeo") s," \
     "time ratio skopeo/kolla-oci = $(printf %.2f "$(echo "$best_skopeo / $best_ours" | bc -l)")"
echo "== bytes sent: kolla-oci $best_ours_bytes, skopeo $best_skopeo_bytes," \
     "ratio skopeo/kolla-oci = $(printf %.2f "$(echo "$best_skopeo_bytes / $best_ours_bytes" | bc -l)")"
