#!/usr/bin/python3
"""plot.py - bar chart of GFLOP/s by shape and implementation.

Reads JSON lines as printed by `mha_bench --json` or written by
`compare_torch.py --json`, and writes a PNG or SVG (by extension):

    bench/plot.py results.jsonl -o bench.png
"""
import argparse
import collections
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ORDER = ["libmha", "torch", "sgemm", "naive"]
COLORS = {"libmha": "#1f77b4", "torch": "#ff7f0e", "sgemm": "#7f7f7f", "naive": "#d62728"}
LABELS = {"libmha": "libmha", "torch": "PyTorch", "sgemm": "sgemm-only ceiling", "naive": "naive loops"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+")
    p.add_argument("-o", "--output", default="bench.png")
    p.add_argument("--title", default="libmha vs PyTorch vs sgemm-only ceiling vs naive loops, GFLOP/s (higher is better)")
    a = p.parse_args()
    data = collections.OrderedDict()
    for path in a.inputs:
        with open(path) as f:
            for line in f:
                if not line.strip().startswith("{"):
                    continue
                r = json.loads(line)
                key = f"{r['op']} B{r['batch']}S{r['seq']}\n{r['threads']} thr"
                data.setdefault(key, {})[r["impl"]] = r["gflops"]
    impls = [i for i in ORDER if any(i in v for v in data.values())]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(data)), 4.2))
    width = 0.8 / max(1, len(impls))
    for k, impl in enumerate(impls):
        xs = [i + (k - (len(impls) - 1) / 2) * width for i in range(len(data))]
        ys = [v.get(impl, 0.0) for v in data.values()]
        bars = ax.bar(xs, ys, width, label=LABELS.get(impl, impl), color=COLORS.get(impl))
        for b, y in zip(bars, ys):
            if y:
                ax.annotate(f"{y:.0f}", (b.get_x() + b.get_width() / 2, y), ha="center",
                            va="bottom", fontsize=7)
    ax.set_xticks(range(len(data)))
    ax.set_xticklabels(list(data.keys()), fontsize=8)
    ax.set_ylabel("GFLOP/s")
    ax.set_title(a.title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.output)
    print("wrote", a.output)


if __name__ == "__main__":
    main()
