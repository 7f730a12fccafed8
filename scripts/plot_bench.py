#!/usr/bin/env python3
"""Draws the chart of an `llmrt bench` sweep: generated tokens/s against batch size and
against prompt length (context), one line per backend (llmrt, and each PyTorch mode measured).

Run (llmrt bench runs it for you when matplotlib is importable):
  python3 scripts/plot_bench.py out/bench/bench.json out/bench/bench.png
Needs matplotlib (Debian: apt-get install python3-matplotlib, then /usr/bin/python3).
Exits 3 when matplotlib is missing, 2 on a bad input file.
"""

import json
import sys
from collections import defaultdict

KEY = "Generate(tokens/s)"


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"plot_bench.py: matplotlib is not installed ({e})", file=sys.stderr)
        return 3
    with open(sys.argv[1]) as f:
        points = json.load(f)
    if not isinstance(points, list) or not points:
        print(f"plot_bench.py: {sys.argv[1]}: expected a non-empty list of points", file=sys.stderr)
        return 2

    # series[(backend, fixed)] -> [(x, y)]
    by_batch, by_ctx = defaultdict(list), defaultdict(list)
    cfg0 = points[0]["config"]
    for p in points:
        c = p["config"]
        for r in p["results"]:
            y = r.get(KEY)
            if y is None:
                continue
            be = r["Backend"]
            by_batch[(be, c["isl"], c["num_tokens"])].append((c["batch_size"], y))
            by_ctx[(be, c["batch_size"], c["num_tokens"])].append((c["isl"], y))

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for ax, series, xlabel, fixed in (
        (axes[0], by_batch, "batch size", "isl"),
        (axes[1], by_ctx, "prompt length (tokens of context)", "batch"),
    ):
        # one colour per fixed value (isl or batch, new tokens), one line style per backend,
        # so that llmrt and PyTorch at the same setting sit beside each other
        fixeds = sorted({(f, nt) for (_, f, nt) in series})
        backends = sorted({be for (be, _, _) in series}, key=lambda b: (not b.startswith("llmrt"), b))
        styles = ["-o", "--s", ":^", "-.v", "--D"]
        for (be, f, nt), xy in sorted(series.items()):
            xy.sort()
            color = plt.cm.tab10(fixeds.index((f, nt)) % 10)
            style = styles[backends.index(be) % len(styles)]
            ax.plot([x for x, _ in xy], [y for _, y in xy], style, color=color,
                    label=f"{be} ({fixed} {f}, {nt} new)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("generated tokens/s (batch x num_tokens / median latency)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    card = f" ({cfg0['device_name']})" if cfg0.get("device_name") else ""
    fig.suptitle(f"{cfg0['model']} — {cfg0['device']}{card} {cfg0['precision']}, "
                 f"cache {cfg0['cache']}")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
