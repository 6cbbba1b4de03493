#!/bin/sh
# smoke.sh MHA_BENCH - runs the bench on tiny shapes in both output modes and
# checks what it prints; bad options must fail with a usage message.
set -eu
bench=$1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
small="--batch 2 --seq 9 --d-model 32 --heads 4 --d-ff 48 --reps 3"
"$bench" --op all $small > "$tmp/table"
cat "$tmp/table"
for op in attn ffn layer backward; do
    for impl in libmha sgemm naive; do
        [ $op = backward ] && [ $impl = naive ] && continue  # no naive backward
        grep -Eq "^$op +B2 S9 +$impl +[0-9]" "$tmp/table" || { echo "missing $op/$impl row"; exit 1; }
    done
done
"$bench" --op all $small --json --causal --activation swiglu --kv-heads 2 > "$tmp/json"
"$bench" --op attn $small --seq-kv 5 --json --threads 2 >> "$tmp/json"
test "$(wc -l < "$tmp/json")" -eq 14  # 4 ops x 3 impls - naive backward, + 3
python3 - "$tmp/json" <<'PY'
import json, sys
need = {"impl", "op", "batch", "seq", "seq_kv", "d_model", "heads", "d_ff", "threads",
        "ms", "ms_min", "ms_max", "gflops"}
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    missing = need - r.keys()
    assert not missing, missing
    assert r["ms_min"] <= r["ms"] <= r["ms_max"] and r["gflops"] > 0, r
assert {r["impl"] for r in rows} == {"libmha", "sgemm", "naive"}
assert any(r["seq_kv"] == 5 and r["threads"] == 2 for r in rows)
print("json OK:", len(rows), "rows")
PY
for bad in "--op nope" "--batch" "--batch x" "--threads 0" "--frobnicate 1" "--seq-kv 4 --op ffn"; do
    if "$bench" $bad > /dev/null 2> "$tmp/err"; then echo "accepted bad option: $bad"; exit 1; fi
    grep -q usage "$tmp/err" || { echo "no usage for: $bad"; exit 1; }
done
"$bench" --help | grep -q usage
echo "bench smoke OK"
