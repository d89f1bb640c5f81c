#!/bin/sh
# Run each fuzz target (Dockerfile parser, expander, layer applier) for a bounded time (default 60 s each):
#   fuzz/run.sh [seconds]
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Crashes are saved
# under fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/ (seeded from the
# repository's Kolla templates and the tests' Dockerfile snippets on first run).
set -eu
cd "$(dirname "$0")"
secs="${1:-60}"
for t in parse expand apply; do
    mkdir -p "corpus/$t"
    if [ -z "$(ls -A "corpus/$t")" ]; then
        i=0
        if [ "$t" = apply ]; then
            # Seeds: small real layers (plain and gzip) made from this directory's own sources.
            tar -cf "corpus/$t/seed-plain.tar" fuzz_targets
            tar -czf "corpus/$t/seed-gzip.tar.gz" fuzz_targets
        fi
        for f in ../templates/*/Dockerfile.j2 ../templates/*/*/Dockerfile.j2; do
            [ "$t" = apply ] && break
            [ -f "$f" ] || continue
            i=$((i + 1))
            cp "$f" "corpus/$t/seed-template-$i"
        done
        printf 'FROM a\nRUN <<EOF\necho hi\nEOF\nCOPY <<-"X" /d\n\tbody $V\n\tX\n' > "corpus/$t/seed-heredoc"
        printf '# escape=`\nFROM a\nRUN a `\n# c\n  b\nENV A="x y" B=${V:-d} C=${P%%.*}\n' > "corpus/$t/seed-escape"
        printf 'FROM a\nHEALTHCHECK --interval=1m30s CMD ["x"]\nEXPOSE 80 1-3/udp\nLABEL a=$V\n' > "corpus/$t/seed-misc"
    fi
    len=4096
    [ "$t" = apply ] && len=65536 # a tar needs at least two 512-byte blocks per entry
    echo "== fuzzing $t for ${secs}s"
    cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len="$len" -rss_limit_mb=2048
done
