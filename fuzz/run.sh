#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 30), one after the other, one
# process each. Exits non-zero as soon as a target crashes (panic, failed invariant,
# sanitizer report, timeout or OOM); the input is then in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS]
#
# Only stable Rust is installed here: RUSTC_BOOTSTRAP=1 lets it accept the nightly-only
# flags cargo-fuzz passes (-Zsanitizer=address, ...). FUZZ_SANITIZER=none (or address,
# the default) picks the sanitizer; if the address sanitizer cannot build, it falls back
# to none. The committed seeds in fuzz/corpus/<target>/ are only read: new inputs go to
# fuzz/target/work-corpus/<target>/ (ignored), so a run never dirties the tree.
set -euo pipefail

secs="${1:-30}"
case "$secs" in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS per target]" >&2
    exit 2
    ;;
esac

cd "$(dirname "$0")"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    # Pinned: the version checked with this toolchain. Installed before RUSTC_BOOTSTRAP is
    # set, so its build scripts see a plain stable compiler.
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
export RUSTC_BOOTSTRAP=1

sanitizer="${FUZZ_SANITIZER:-address}"
if ! cargo fuzz build --sanitizer "$sanitizer"; then
    if [ "$sanitizer" = none ]; then
        exit 1
    fi
    echo "build with --sanitizer $sanitizer failed; retrying with --sanitizer none" >&2
    sanitizer=none
    cargo fuzz build --sanitizer none
fi

status=0
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target" "target/work-corpus/$target"
    echo "=== fuzzing $target for ${secs}s (sanitizer: $sanitizer)" >&2
    log="target/fuzz-$target.log"
    if cargo fuzz run --sanitizer "$sanitizer" "$target" \
        "target/work-corpus/$target" "corpus/$target" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" >&2 || true
    else
        status=1
        echo "*** $target FAILED; end of its log ($log):" >&2
        tail -n 80 "$log" >&2
        ls -l "artifacts/$target" >&2 2>/dev/null || true
        break
    fi
done
exit "$status"
