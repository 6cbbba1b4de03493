#!/usr/bin/python3
"""compare_torch.py - libmha vs PyTorch vs the sgemm ceiling vs naive loops,
measured side by side in one run.

Ops: layer (nn.TransformerEncoderLayer, eval, inference mode), attn
(nn.MultiheadAttention), ffn, and backward (one training step of the layer:
forward + autograd backward in PyTorch, mha_layer_forward +
mha_layer_backward in libmha).

For every thread count and shape it alternates, for --rounds rounds, one
mha_bench run (libmha + sgemm ceiling) and one PyTorch run, each in its own
process with the thread count pinned for both OpenBLAS and PyTorch
(OPENBLAS_NUM_THREADS / OMP_NUM_THREADS and torch.set_num_threads), and
reports medians over all timed calls. The naive loops run once per shape.

    bench/compare_torch.py                       # the README table
    bench/compare_torch.py --threads 1 --shapes layer:1x128 --rounds 1
    bench/compare_torch.py --json results.jsonl  # also write rows for plot.py
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SHAPES = "layer:1x128,layer:8x128,layer:1x512,attn:1x1024,backward:1x128,backward:1x512"


def torch_worker(a):
    """Runs in a child process whose environment already pins the threads."""
    import torch
    import torch.nn as nn

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, S, D, H, F = a.batch, a.seq, a.d_model, a.heads, a.d_ff
    x = torch.randn(B, S, D)
    mask = None
    if a.causal:
        mask = torch.triu(torch.full((S, S), float("-inf")), diagonal=1)
    grad_mode = a.op == "backward"
    if a.op in ("layer", "backward"):
        m = nn.TransformerEncoderLayer(D, H, F, dropout=0.0, activation=a.activation,
                                       batch_first=True).eval()
        run = lambda: m(x, src_mask=mask)
        if grad_mode:  # one training step: forward + autograd backward
            x.requires_grad_(True)
            dy = torch.randn(B, S, D)

            def run():
                m(x, src_mask=mask).backward(dy)
    elif a.op == "attn":
        m = nn.MultiheadAttention(D, H, dropout=0.0, batch_first=True).eval()
        run = lambda: m(x, x, x, need_weights=False, attn_mask=mask)
    else:
        act = nn.GELU() if a.activation == "gelu" else nn.ReLU()
        m = nn.Sequential(nn.Linear(D, F), act, nn.Linear(F, D)).eval()
        run = lambda: m(x)
    import time
    times = []
    import contextlib
    with contextlib.nullcontext() if grad_mode else torch.inference_mode():
        for _ in range(2):
            run()
        for _ in range(a.reps):
            t0 = time.perf_counter()
            run()
            times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"ms_list": times}))


def env_for(threads):
    e = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        e[k] = str(threads)
    return e


def run_bench(a, op, B, S, threads, naive):
    cmd = [a.bench, "--json", "--op", op, "--batch", str(B), "--seq", str(S),
           "--d-model", str(a.d_model), "--heads", str(a.heads), "--d-ff", str(a.d_ff),
           "--activation", a.activation, "--threads", str(threads), "--reps", str(a.reps),
           "--naive-max", "30" if naive else "0"]
    if a.causal:
        cmd.append("--causal")
    out = subprocess.run(cmd, env=env_for(threads), check=True, capture_output=True, text=True)
    return [json.loads(l) for l in out.stdout.splitlines() if l.strip()]


def run_torch(a, op, B, S, threads):
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-worker", "--op", op,
           "--batch", str(B), "--seq", str(S), "--d-model", str(a.d_model),
           "--heads", str(a.heads), "--d-ff", str(a.d_ff), "--activation", a.activation,
           "--threads", str(threads), "--reps", str(a.reps)]
    if a.causal:
        cmd.append("--causal")
    out = subprocess.run(cmd, env=env_for(threads), check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["ms_list"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bench", default=os.path.join(HERE, "..", "build", "bench", "mha_bench"))
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--shapes", default=DEFAULT_SHAPES, help="op:BATCHxSEQ,...")
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--d-ff", type=int, default=3072)
    p.add_argument("--activation", default="gelu", choices=["relu", "gelu"])
    p.add_argument("--causal", action="store_true")
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 round, 5 reps, 1 thread, 2 shapes")
    p.add_argument("--json", help="also write one JSON row per impl/shape/threads here")
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--op", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.torch_worker:
        a.threads = int(a.threads)
        return torch_worker(a)

    if a.quick:
        a.rounds, a.reps, a.threads, a.shapes = 1, 5, "1", "layer:1x128,attn:1x512"
    threads = [int(t) for t in a.threads.split(",")]
    shapes = []
    for s in a.shapes.split(","):
        op, bs = s.split(":")
        b, sq = bs.lower().split("x")
        shapes.append((op, int(b), int(sq)))

    rows, naive_ms = [], {}
    hdr = (f"{'op':6} {'shape':10} {'thr':>3} {'libmha ms':>10} {'torch ms':>10} {'sgemm ms':>10}"
           f" {'naive ms':>10} {'vs torch':>9} {'of ceil':>8} {'vs naive':>9}")
    print(f"d_model {a.d_model}, heads {a.heads}, d_ff {a.d_ff}, {a.activation}"
          f"{', causal' if a.causal else ''}; medians of {a.rounds} rounds x {a.reps} reps;"
          f" vs torch = torch ms / libmha ms, of ceil = sgemm ms / libmha ms")
    print(hdr)
    for t in threads:
        for op, B, S in shapes:
            lib, ceil, tor, naive, meta = [], [], [], None, None
            for r in range(a.rounds):
                # naive loops are single-threaded: once per shape is enough
                for row in run_bench(a, op, B, S, t, naive=(r == 0 and t == threads[0])):
                    meta = row
                    if row["impl"] == "libmha":
                        lib.append(row["ms"])
                    elif row["impl"] == "sgemm":
                        ceil.append(row["ms"])
                    elif row["impl"] == "naive":
                        naive = row["ms"]
                tor.extend(run_torch(a, op, B, S, t))
            if naive is None and t != threads[0]:
                naive = naive_ms.get((op, B, S))
            naive_ms[(op, B, S)] = naive
            ml, mt = statistics.median(lib), statistics.median(tor)
            mc = statistics.median(ceil) if ceil else float("nan")
            gflop = meta["gflop"]
            print(f"{op:6} {'B%dS%d' % (B, S):10} {t:>3} {ml:10.2f} {mt:10.2f} {mc:10.2f}"
                  f" {naive if naive else float('nan'):10.1f} {mt / ml:8.2f}x {mc / ml:8.3f}"
                  f" {(naive / ml if naive else float('nan')):8.1f}x", flush=True)
            for impl, ms in (("libmha", ml), ("torch", mt), ("sgemm", mc), ("naive", naive)):
                if ms and ms == ms:
                    rows.append({"impl": impl, "op": op, "batch": B, "seq": S, "seq_kv": S,
                                 "d_model": a.d_model, "heads": a.heads, "d_ff": a.d_ff,
                                 "threads": t, "ms": ms, "gflops": gflop / ms * 1e3})
    if a.json:
        with open(a.json, "w") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
