#!/bin/sh
# tests/run.sh [BUILD_DIR] - installs missing dependencies, configures,
# builds and runs the whole test suite (ctest).
set -eu
cd "$(dirname "$0")/.."
MHA_EXTRA_PKGS="python3 python3-numpy python3-pytest python3-torch"
. cmake/deps.sh
build=${1:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${MHA_CMAKE_ARGS:-} > /dev/null
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
