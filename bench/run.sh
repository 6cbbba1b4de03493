#!/bin/sh
# bench/run.sh [mha_bench options] - installs missing dependencies,
# configures, builds and runs mha_bench (default: the BERT-base layer at a
# few shapes, 1 thread).
set -eu
cd "$(dirname "$0")/.."
. cmake/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" --target mha_bench
exec ./build/bench/mha_bench "$@"
