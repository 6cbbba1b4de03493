#!/usr/bin/python3
"""compare_torch.py - libmha vs PyTorch vs the sgemm ceiling vs naive loops,
measured side by side in one run.

Ops: layer (nn.TransformerEncoderLayer, eval, inference mode), attn
(nn.MultiheadAttention), ffn, and backward (one training step of the layer:
forward + autograd backward in PyTorch, mha_layer_forward +
mha_layer_backward in libmha).

For every thread count and shape it runs, for --rounds rounds, two
processes with the thread count pinned (OPENBLAS_NUM_THREADS /
OMP_NUM_THREADS and torch.set_num_threads):
  - mha_bench: libmha and the sgemm-only ceiling, call by call ("of ceil");
  - a pair worker: libmha (its C entry points through ctypes, arguments
    built once) and PyTorch on the same weights and input, call by call in
    alternating order ("vs torch", "libmha ms", "torch ms"). The process
    has one OpenBLAS: it is set to 1 thread around libmha's calls (what
    mha_create sets) and to the pinned count around PyTorch's.
With more than one thread both alternate in blocks of 5 calls instead of
call by call (see pair_worker and mha_bench's time_pair: idle threads of
one side spin into the other's calls otherwise).
Ratios of two things timed side by side hold up on a noisy machine far
better than times taken minutes apart. Medians over all timed calls; the
naive loops run once per shape.

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


def pair_worker(a):
    """Runs in a child process whose environment already pins the threads.
    Times libmha (through its C entry points, via ctypes, arguments built
    once) and PyTorch on the same weights and input, side by side (see the
    loop below), so that both see the same machine at the same time."""
    import ctypes
    import time
    import numpy as np
    import torch
    import torch.nn as nn
    sys.path.insert(0, os.path.join(HERE, "..", "python"))
    import libmha
    L = libmha._lib

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    B, S, D, H, F = a.batch, a.seq, a.d_model, a.heads, a.d_ff
    x = torch.randn(B, S, D)
    xn = x.numpy()
    mask = None
    if a.causal:
        mask = torch.triu(torch.full((S, S), float("-inf")), diagonal=1)
    grad_mode = a.op == "backward"
    dy = torch.randn(B, S, D)
    if a.op in ("layer", "backward"):
        m = nn.TransformerEncoderLayer(D, H, F, dropout=0.0, activation=a.activation,
                                       batch_first=True).eval()
        run_t = lambda: m(x, src_mask=mask)
        if grad_mode:  # one training step: forward + autograd backward
            x.requires_grad_(True)

            def run_t():
                m(x, src_mask=mask).backward(dy)
        lm = libmha.from_torch(m, n_threads=a.threads)
    elif a.op == "attn":
        m = nn.MultiheadAttention(D, H, dropout=0.0, batch_first=True).eval()
        run_t = lambda: m(x, x, x, need_weights=False, attn_mask=mask)
        lm = libmha.from_torch(m, n_threads=a.threads)
    else:
        act = nn.GELU() if a.activation == "gelu" else nn.ReLU()
        m = nn.Sequential(nn.Linear(D, F), act, nn.Linear(F, D)).eval()
        run_t = lambda: m(x)
        lm = libmha.FFN(d_model=D, d_ff=F, activation=a.activation, n_threads=a.threads)
        t = lambda p: p.detach().numpy()
        lm.load_state_dict({"w1": t(m[0].weight), "b1": t(m[0].bias), "w2": t(m[2].weight),
                            "b2": t(m[2].bias)})

    # libmha's call with everything prepared, as a C caller would make it
    # (the arrays it points into live as long as this frame: keep the names)
    out = np.empty((B, S, D), dtype=np.float32)
    h = lm._h
    if a.op == "ffn":
        xp, op_ = libmha._ptr(xn), libmha._ptr(out)
        run_l = lambda: L.mha_ffn_forward(h, op_, xp, B * S)
    else:
        args, keep = lm._attn_args(xn, None, None, None, None, a.causal)
        args.out = libmha._ptr(out)
        fwd = L.mha_attention_forward if a.op == "attn" else L.mha_layer_forward
        run_l = lambda: fwd(h, ctypes.byref(args))
        if grad_mode:
            g = libmha._GradArgs()
            g.struct_size = libmha._struct_size(libmha._GradArgs, "d_value")
            dyn, dx = dy.numpy(), np.empty((B, S, D), dtype=np.float32)
            g.d_out, g.d_query = libmha._ptr(dyn), libmha._ptr(dx)

            def run_l():
                return fwd(h, ctypes.byref(args)) or L.mha_layer_backward(h, ctypes.byref(args),
                                                                           ctypes.byref(g))

    # One OpenBLAS in the process: libmha threads itself (OpenBLAS at 1, what
    # mha_create sets); PyTorch gets the pinned count, as in its own process.
    blas = ctypes.CDLL("libopenblas.so.0")

    def lib_call():
        t0 = time.perf_counter()
        st = run_l()
        dt = time.perf_counter() - t0
        if st:
            raise RuntimeError(f"libmha: {L.mha_strerror(st).decode()}")
        return dt * 1e3

    def torch_call():
        t0 = time.perf_counter()
        run_t()
        return (time.perf_counter() - t0) * 1e3

    def use_lib():
        blas.openblas_set_num_threads(1)

    def use_torch():
        blas.openblas_set_num_threads(a.threads)

    # Both compute the same thing (else the timing means nothing).
    use_torch()
    if grad_mode:
        torch_call()
        want, got = x.grad.numpy(), dx
    else:
        with torch.inference_mode():
            want = run_t()
        want = (want[0] if isinstance(want, tuple) else want).numpy()
        got = out
    use_lib()
    lib_call()
    err = float(np.max(np.abs(got - want)))
    if not err < 1e-3:
        raise RuntimeError(f"libmha and PyTorch differ by {err} ({a.op} B{B}S{S})")

    # With one thread, call by call in alternating order. With more, idle
    # threads keep spinning after a call (OpenBLAS's workers ~0.1 s,
    # libmha's pool up to 2 ms) and would take cores from the other side's
    # next call: blocks of 5 calls instead, each after a 0.15 s pause and one
    # untimed call (as mha_bench does).
    import contextlib
    block = 5 if a.threads > 1 else 1
    sides = ((use_lib, lib_call, []), (use_torch, torch_call, []))
    lib_ms, torch_ms = sides[0][2], sides[1][2]
    with contextlib.nullcontext() if grad_mode else torch.inference_mode():
        for use, call, _ in sides:
            use()
            call()
            call()
        rnd = 0
        while len(lib_ms) < a.reps or len(torch_ms) < a.reps:
            for use, call, times in (sides if rnd % 2 == 0 else sides[::-1]):
                if len(times) >= a.reps:
                    continue
                use()
                if block > 1:
                    time.sleep(0.15)
                    call()
                for _ in range(min(block, a.reps - len(times))):
                    times.append(call())
            rnd += 1
    print(json.dumps({"libmha": lib_ms, "torch": torch_ms}))


def env_for(threads):
    e = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        e[k] = str(threads)
    return e


def case_args(a, op, B, S, threads):
    """The options mha_bench and the pair worker both take, for one case."""
    return (["--op", op, "--batch", str(B), "--seq", str(S), "--d-model", str(a.d_model),
             "--heads", str(a.heads), "--d-ff", str(a.d_ff), "--activation", a.activation,
             "--threads", str(threads), "--reps", str(a.reps)]
            + (["--causal"] if a.causal else []))


def run_bench(a, op, B, S, threads, naive):
    cmd = ([a.bench, "--json", "--naive-max", "30" if naive else "0"]
           + case_args(a, op, B, S, threads))
    out = subprocess.run(cmd, env=env_for(threads), check=True, capture_output=True, text=True)
    return [json.loads(l) for l in out.stdout.splitlines() if l.strip()]


def run_pair(a, op, B, S, threads):
    cmd = ([sys.executable, os.path.abspath(__file__), "--pair-worker"]
           + case_args(a, op, B, S, threads))
    env = env_for(threads)
    env.setdefault("LIBMHA_PATH", os.path.join(os.path.dirname(a.bench), "..", "libmha.so"))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"compare_torch: the pair worker failed ({op} B{B}S{S}, {threads} thread(s)):\n"
                 + out.stderr[-2000:])
    r = json.loads(out.stdout)
    return r["libmha"], r["torch"]


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
    p.add_argument("--pair-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--op", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seq", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.pair_worker:
        a.threads = int(a.threads)
        return pair_worker(a)

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
          f"{', causal' if a.causal else ''}; medians of {a.rounds} rounds x {a.reps} reps.\n"
          f"vs torch = torch ms / libmha ms, timed side by side in one process;"
          f" of ceil = sgemm ms / libmha ms, timed side by side in mha_bench\n"
          f"(side by side: call by call at 1 thread, blocks of 5 calls at more)")
    print(hdr)
    for t in threads:
        for op, B, S in shapes:
            lib, tor, blib, ceil, naive, meta = [], [], [], [], None, None
            for r in range(a.rounds):
                # naive loops are single-threaded: once per shape is enough
                for row in run_bench(a, op, B, S, t, naive=(r == 0 and t == threads[0])):
                    meta = row
                    if row["impl"] == "libmha":
                        blib.append(row["ms"])
                    elif row["impl"] == "sgemm":
                        ceil.append(row["ms"])
                    elif row["impl"] == "naive":
                        naive = row["ms"]
                pl, pt = run_pair(a, op, B, S, t)
                lib.extend(pl)
                tor.extend(pt)
            if naive is None and t != threads[0]:
                naive = naive_ms.get((op, B, S))
            naive_ms[(op, B, S)] = naive
            ml, mt = statistics.median(lib), statistics.median(tor)
            mc = statistics.median(ceil) if ceil else float("nan")
            of_ceil = mc / statistics.median(blib)
            gflop = meta["gflop"]
            print(f"{op:6} {'B%dS%d' % (B, S):10} {t:>3} {ml:10.2f} {mt:10.2f} {mc:10.2f}"
                  f" {naive if naive else float('nan'):10.1f} {mt / ml:8.2f}x {of_ceil:8.3f}"
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
