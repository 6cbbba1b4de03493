#!/bin/sh
# bench/run.sh [compare_torch.py options] - installs missing dependencies
# (incl. Debian's python3-torch), builds mha_bench, and prints one table:
# libmha vs PyTorch vs the sgemm-only ceiling vs naive loops, at 1 and 2
# threads, side by side in one run. Also writes build/bench.jsonl and the
# chart build/bench.png. For libmha alone: ./build/bench/mha_bench --help.
set -eu
cd "$(dirname "$0")/.."
MHA_EXTRA_PKGS="python3 python3-numpy python3-torch python3-matplotlib"
. cmake/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" --target mha_bench > /dev/null
/usr/bin/python3 bench/compare_torch.py --json build/bench.jsonl "$@"
/usr/bin/python3 bench/plot.py build/bench.jsonl -o build/bench.png
