#!/bin/sh
# Run each dockerfile fuzz target for a bounded time (default 60 s each):
#   fuzz/run.sh [seconds]
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Crashes are saved
# under fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/ (seeded from the
# repository's Kolla templates and the tests' Dockerfile snippets on first run).
set -eu
cd "$(dirname "$0")"
secs="${1:-60}"
for t in parse expand; do
    mkdir -p "corpus/$t"
    if [ -z "$(ls -A "corpus/$t")" ]; then
        i=0
        for f in ../templates/*/Dockerfile.j2 ../templates/*/*/Dockerfile.j2; do
            [ -f "$f" ] || continue
            i=$((i + 1))
            cp "$f" "corpus/$t/seed-template-$i"
        done
        printf 'FROM a\nRUN <<EOF\necho hi\nEOF\nCOPY <<-"X" /d\n\tbody $V\n\tX\n' > "corpus/$t/seed-heredoc"
        printf '# escape=`\nFROM a\nRUN a `\n# c\n  b\nENV A="x y" B=${V:-d} C=${P%%.*}\n' > "corpus/$t/seed-escape"
        printf 'FROM a\nHEALTHCHECK --interval=1m30s CMD ["x"]\nEXPOSE 80 1-3/udp\nLABEL a=$V\n' > "corpus/$t/seed-misc"
    fi
    echo "== fuzzing $t for ${secs}s"
    cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=4096 -rss_limit_mb=2048
done
