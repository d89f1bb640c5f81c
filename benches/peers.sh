#!/usr/bin/env bash
# Side-by-side runs of the layer engine (layers/examples/layertool.rs, --release) against peer
# tools on the same inputs, in the same run; prints a table of measured ratios.
#
#   sha256:      openssl speed -evp sha256 (1 MiB blocks)  vs  layertool hash-speed   goal >= 0.95
#                (both per CPU second: openssl speed measures user time unless -elapsed)
#   gzip:        pigz -p N -6 on a Debian minbase tarball   vs  layertool gzip (default level) goal >= 2x
#   tree->layer: umoci repack of the same rootfs            vs  layertool tree         goal >= 2.5x
#   memory:      peak RSS of layertool tree on a ~1 GB tree (/usr/bin/time -v)     goal <= 100 MB
#
# The umoci side: an empty image is unpacked with umoci, the minbase rootfs is extracted into the
# bundle, and `umoci repack` turns the whole rootfs into one gzip layer. That is the same job as
# ours (a full layer of the same directory); repacking an unmodified bundle would only measure
# umoci's mtree walk, not layer writing.
#
# Env: THREADS (default: nproc), RUNS (best of, default 3), BEFORE_LAYERTOOL (an older layertool to compare
# with, optional), WORK (default target/peers; the
# minbase tarball is cached there). Needs root (umoci repack of a root-owned tree), mmdebstrap,
# umoci, pigz, openssl, GNU time. Takes a few minutes on 2 cores.
set -euo pipefail

cd "$(dirname "$0")/.."
THREADS=${THREADS:-$(nproc)}
RUNS=${RUNS:-3}
WORK=${WORK:-target/peers}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

for tool in openssl pigz umoci mmdebstrap /usr/bin/time awk; do
    command -v "$tool" >/dev/null || { echo "peers.sh: missing tool: $tool" >&2; exit 1; }
done

cargo build --release --quiet -p kolla-oci-layers --example layertool
TOOL=$(pwd)/target/release/examples/layertool

# measure N CMD...: runs CMD N times (output discarded); sets WALL and CPU (user+sys) to the
# best of each, in seconds. CPU time is reported too because the machine may be shared: wall
# ratios then depend on what else runs, CPU ratios much less.
min() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b + 0 < a + 0) print b; else print a }'; }
measure() {
    local n=$1 w u s
    shift
    WALL="" CPU=""
    for _ in $(seq "$n"); do
        /usr/bin/time -f '%e %U %S' -o "$WORK/time.out" "$@" >/dev/null 2>"$WORK/stderr.out"
        read -r w u s <"$WORK/time.out"
        WALL=$(min "$WALL" "$w")
        CPU=$(min "$CPU" "$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')")
    done
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "== peers.sh: threads=$THREADS runs=$RUNS work=$WORK; $(uptime)"
grep -m1 'model name' /proc/cpuinfo || true
grep -qw sha_ni /proc/cpuinfo && echo "cpu: sha_ni present" || echo "cpu: no sha_ni"

# --- 1. sha256 -------------------------------------------------------------------------------
# Interleaved, best of RUNS each: on a shared machine both sides then see similar load.
ssl_mbs=0 our_mbs=0
for _ in $(seq "$RUNS"); do
    ssl_line=$(openssl speed -evp sha256 -bytes 1048576 -seconds 2 2>/dev/null | grep -E '^sha256 ' | tail -1)
    m=$(awk '{ v = $NF; sub(/k$/, "", v); printf "%.1f", v * 1000 / 1e6 }' <<<"$ssl_line")
    ssl_mbs=$(awk -v a="$m" -v b="$ssl_mbs" 'BEGIN { print (a > b ? a : b) }')
    # openssl speed counts user CPU time by default: compare with our per-CPU-second figure.
    m=$("$TOOL" hash-speed 2048 | awk -F= '$1 == "cpu_mb_per_s" { print $2 }')
    our_mbs=$(awk -v a="$m" -v b="$our_mbs" 'BEGIN { print (a > b ? a : b) }')
done
echo "sha256: openssl $ssl_mbs MB/s, ours $our_mbs MB/s"

# --- 2. gzip on a real rootfs tarball (pigz -6, ours at its default level) -----------------------------------------------------
TARBALL=$WORK/rootfs.tar
if [[ ! -s $TARBALL ]]; then
    echo "building Debian bookworm minbase tarball with mmdebstrap (network, ~1-2 min)"
    mmdebstrap --variant=minbase --quiet bookworm "$WORK/rootfs.tmp.tar"
    mv "$WORK/rootfs.tmp.tar" "$TARBALL"
fi
tar_mb=$(( $(stat -c %s "$TARBALL") / 1000000 ))
cat "$TARBALL" >/dev/null # page cache, for both sides
measure "$RUNS" pigz -p "$THREADS" -6 -c "$TARBALL"
pigz_s=$WALL pigz_cpu=$CPU
measure "$RUNS" "$TOOL" gzip "$TARBALL" -t "$THREADS" -o /dev/null
ours_gz_s=$WALL ours_gz_cpu=$CPU
pigz_size=$(pigz -p "$THREADS" -6 -c "$TARBALL" | wc -c)
ours_size=$("$TOOL" gzip "$TARBALL" -t "$THREADS" -o /dev/null | awk -F= '$1 == "size" { print $2 }')
echo "gzip: pigz -6 ${pigz_s}s wall ${pigz_cpu}s cpu ($pigz_size B)," \
    "ours ${ours_gz_s}s wall ${ours_gz_cpu}s cpu ($ours_size B, incl. both sha256 + tar parse)"

# --- 3. tree -> layer vs umoci repack ------------------------------------------------------
umoci_s="" umoci_cpu=""
prepare_bundle() { # fresh empty image + bundle with the rootfs extracted into it
    rm -rf "$WORK/oci" "$WORK/bundle"
    umoci init --layout "$WORK/oci" >/dev/null
    umoci new --image "$WORK/oci:base" >/dev/null
    umoci unpack --image "$WORK/oci:base" "$WORK/bundle" >/dev/null
    tar -C "$WORK/bundle/rootfs" --numeric-owner --xattrs --xattrs-include='*' -xpf "$TARBALL"
}
for _ in $(seq "$RUNS"); do
    prepare_bundle
    measure 1 umoci repack --image "$WORK/oci:base" "$WORK/bundle"
    umoci_s=$(min "$umoci_s" "$WALL")
    umoci_cpu=$(min "$umoci_cpu" "$CPU")
done
umoci_layer=$(find "$WORK/oci/blobs/sha256" -type f -size +1M -printf '%s\n' | sort -n | tail -1)
measure "$RUNS" "$TOOL" tree "$WORK/bundle/rootfs" -t "$THREADS" -o /dev/null
ours_tree_s=$WALL ours_tree_cpu=$CPU
ours_tree_size=$("$TOOL" tree "$WORK/bundle/rootfs" -t "$THREADS" -o /dev/null | awk -F= '$1 == "size" { print $2 }')
echo "tree->layer: umoci repack ${umoci_s}s wall ${umoci_cpu}s cpu (layer $umoci_layer B)," \
    "ours ${ours_tree_s}s wall ${ours_tree_cpu}s cpu (layer $ours_tree_size B)"
# The previous engine on the same tree (BEFORE_LAYERTOOL=path to an older build of the example), at its own
# default level: the size the new default must stay within 2 % of, and the time it took.
if [[ -n ${BEFORE_LAYERTOOL:-} ]]; then
    measure "$RUNS" "$BEFORE_LAYERTOOL" tree "$WORK/bundle/rootfs" -t "$THREADS" -o /dev/null
    before_s=$WALL before_cpu=$CPU
    before_size=$("$BEFORE_LAYERTOOL" tree "$WORK/bundle/rootfs" -t "$THREADS" -o /dev/null | awk -F= '$1 == "size" { print $2 }')
    echo "tree->layer: before ${before_s}s wall ${before_cpu}s cpu (layer $before_size B)"
fi
rm -rf "$WORK/oci" "$WORK/bundle"

# --- 4. peak RSS writing a ~1 GB layer --------------------------------------------------------
BIG=$WORK/big-tree
rm -rf "$BIG"
mkdir -p "$BIG/random" "$BIG/sparse" "$BIG/text"
for i in 1 2 3 4; do head -c 100M /dev/urandom >"$BIG/random/r$i.bin"; done
for i in 1 2 3; do # mostly holes, some data: "sparse-ish"
    truncate -s 150M "$BIG/sparse/s$i.img"
    head -c 8M /dev/urandom | dd of="$BIG/sparse/s$i.img" bs=1M seek=$((i * 20)) conv=notrunc status=none
done
tar -C / -cf - usr/share usr/lib 2>/dev/null | head -c 150M >"$BIG/text/usr.tar" || true
big_mb=$(du -s --apparent-size --block-size=1000000 "$BIG" | awk '{ print $1 }')
rss_kb=$( { /usr/bin/time -v "$TOOL" tree "$BIG" -t "$THREADS" -o /dev/null >/dev/null; } 2>&1 |
    awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }')
rm -rf "$BIG"
rss_mb=$(awk -v k="$rss_kb" 'BEGIN { printf "%.1f", k / 1024 }')

# --- table -------------------------------------------------------------------------------------
echo
echo "after: $(uptime)"
row() { printf '%-38s %9s %9s %7s %9s %9s %7s  %s\n' "$@"; }
row "comparison (threads=$THREADS)" "peer" "ours" "ratio" "peer cpu" "ours cpu" "ratio" "goal"
row "sha256 1 MiB blocks, MB per CPU s" "$ssl_mbs" "$our_mbs" "$(ratio "$our_mbs" "$ssl_mbs")" "-" "-" "-" ">= 0.95 (ours/openssl)"
row "gzip minbase tar ${tar_mb} MB, s" "$pigz_s" "$ours_gz_s" "$(ratio "$pigz_s" "$ours_gz_s")" \
    "$pigz_cpu" "$ours_gz_cpu" "$(ratio "$pigz_cpu" "$ours_gz_cpu")" ">= 2 (pigz/ours)"
row "tree->gzip layer, minbase rootfs, s" "$umoci_s" "$ours_tree_s" "$(ratio "$umoci_s" "$ours_tree_s")" \
    "$umoci_cpu" "$ours_tree_cpu" "$(ratio "$umoci_cpu" "$ours_tree_cpu")" ">= 2.5 (umoci/ours)"
row "tree->layer size, B (umoci/ours)" "$umoci_layer" "$ours_tree_size" "$(ratio "$umoci_layer" "$ours_tree_size")" "-" "-" "-" ">= 0.98 (at most 2 % larger)"
if [[ -n ${BEFORE_LAYERTOOL:-} ]]; then
    row "tree->layer vs before, s" "$before_s" "$ours_tree_s" "$(ratio "$before_s" "$ours_tree_s")" \
        "$before_cpu" "$ours_tree_cpu" "$(ratio "$before_cpu" "$ours_tree_cpu")" "(before/ours)"
    row "tree->layer size vs before, B" "$before_size" "$ours_tree_size" "$(ratio "$ours_tree_size" "$before_size")" \
        "-" "-" "-" "within 0.98..1.02 (ours/before)"
fi
row "peak RSS ${big_mb} MB tree->layer, MB" "-" "$rss_mb" "-" "-" "-" "-" "<= 100 MB"
