#!/bin/sh
# tests/fuzz/run.sh TARGET SECONDS - a libFuzzer campaign on one target
# (forward, backward, params, safetensors), built with clang and
# ASan + UBSan in build-fuzz/. New inputs go to build-fuzz/fuzz-corpus/TARGET,
# crashes to build-fuzz/fuzz-artifacts/; the committed seeds are read only.
# A crash found here is fixed, and its input copied into
# tests/fuzz/corpus/TARGET/ so that ctest replays it from then on.
set -eu
cd "$(dirname "$0")/../.."
t=$1 secs=$2
build=${MHA_FUZZ_BUILD:-build-fuzz}
MHA_EXTRA_PKGS="clang libclang-rt-14-dev"
. cmake/deps.sh
if [ ! -f "$build/CMakeCache.txt" ]; then
    CC=clang CXX=clang++ cmake -S . -B "$build" -DMHA_FUZZ=ON -DMHA_BUILD_BENCH=OFF \
        -DMHA_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
fi
cmake --build "$build" -j "$(nproc)" --target "fuzz_$t" > /dev/null
work=$build/fuzz-corpus/$t
mkdir -p "$work" "$build/fuzz-artifacts"
exec "$build/tests/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="$build/fuzz-artifacts/$t-" -rss_limit_mb=4096 -timeout=60 \
    "$work" "tests/fuzz/corpus/$t"
