#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time: scripts/fuzz.sh [SECONDS_PER_TARGET]
# (default 60). Installs cargo-fuzz if missing. The machine has only the stable toolchain, so
# RUSTC_BOOTSTRAP=1 lets it accept the -Z flags cargo-fuzz passes (sanitizer, coverage).
# Set FUZZ_TARGETS="signature twiml_parse" to run a subset. Crashes are saved under
# fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/ (both gitignored).
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found; installing it"
    cargo install cargo-fuzz --locked
fi

targets="${FUZZ_TARGETS:-$(cargo fuzz list --fuzz-dir fuzz)}"

# The cargo features a target needs (fuzz/Cargo.toml: required-features).
features_for() {
    case "$1" in
        package_parse) echo "--features=package" ;;
        template_render) echo "--features=twig" ;;
        webhook_run) echo "--features=engine" ;;
    esac
    return 0
}

# Known-good inputs to start from: fuzz/seeds/<target>/, plus examples/ (the seed package) for
# the parser. libFuzzer only reads these; what it finds goes to fuzz/corpus/<target>/.
seeds_for() {
    [ -d "fuzz/seeds/$1" ] && echo "fuzz/seeds/$1"
    if [ "$1" = package_parse ]; then
        echo "examples"
    fi
    return 0
}

# A libFuzzer dictionary of the target's syntax, if there is one.
dict_for() {
    [ -f "fuzz/dicts/$1.dict" ] && echo "-dict=fuzz/dicts/$1.dict"
    return 0
}

failed=()
for target in $targets; do
    corpus="fuzz/corpus/$target"
    mkdir -p "$corpus"
    echo "=== fuzzing $target for ${seconds}s"
    # shellcheck disable=SC2046 # features, seed dirs and dict: words without spaces
    if cargo fuzz run --fuzz-dir fuzz $(features_for "$target") "$target" "$corpus" $(seeds_for "$target") -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 $(dict_for "$target"); then
        echo "=== $target: no crash in ${seconds}s"
    else
        echo "=== $target: FAILED (see fuzz/artifacts/$target/)"
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: crashes or errors in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: every target ran ${seconds}s without a crash"
