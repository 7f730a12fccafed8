#!/usr/bin/env python3
"""Draws the chart of an `llmrt bench-serve` run: each request's time to first token and
end-to-end latency against when it was sent, and the p50 / p90 / p99 of time to first token,
inter-token latency, time per output token and end-to-end latency.

Run (llmrt bench-serve --out DIR runs it for you when matplotlib is importable):
  python3 scripts/plot_serve.py out/serve/bench_serve.json out/serve/bench_serve.png
Needs matplotlib (Debian: apt-get install python3-matplotlib, then /usr/bin/python3).
Exits 3 when matplotlib is missing, 2 on a bad input file.
"""

import json
import sys


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        print(f"plot_serve.py: matplotlib is not installed ({e})", file=sys.stderr)
        return 3
    try:
        with open(sys.argv[1]) as f:
            run = json.load(f)
        cfg, res, reqs = run["config"], run["results"], run["requests"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"plot_serve.py: {sys.argv[1]}: not a bench-serve result ({e})", file=sys.stderr)
        return 2

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    ok = [r for r in reqs if r["ok"]]
    a.scatter([r["start_s"] for r in ok], [r["e2e_ms"] for r in ok], s=10, label="end to end")
    a.scatter([r["start_s"] for r in ok], [r["ttft_ms"] for r in ok], s=10,
              label="time to first token")
    bad = [r for r in reqs if not r["ok"]]
    if bad:
        a.scatter([r["start_s"] for r in bad], [r["e2e_ms"] for r in bad], s=14, marker="x",
                  color="red", label="failed")
    a.set_xlabel("request sent at (s)")
    a.set_ylabel("ms")
    a.grid(True, alpha=0.3)
    a.legend(fontsize=8)

    names = [("ttft", "time to first token"), ("itl", "inter-token"),
             ("tpot", "per output token"), ("e2e", "end to end")]
    width = 0.25
    for k, (q, color) in enumerate((("p50_ms", "tab:blue"), ("p90_ms", "tab:orange"),
                                     ("p99_ms", "tab:red"))):
        xs = [i + (k - 1) * width for i in range(len(names))]
        b.bar(xs, [res[n][q] for n, _ in names], width, label=q[:-3], color=color)
    b.set_xticks(range(len(names)))
    b.set_xticklabels([label for _, label in names])
    b.set_yscale("log")
    b.set_ylabel("ms (log)")
    b.grid(True, axis="y", which="both", alpha=0.3)
    b.legend(fontsize=8)

    load = (f"{cfg['request_rate']:g} req/s Poisson" if cfg["request_rate"] > 0
            else f"concurrency {cfg['concurrency']}")
    fig.suptitle(f"{cfg['model']} at {cfg['url']} — {'chat' if cfg['chat'] else 'completions'}, "
                 f"isl {cfg['isl']}, osl {cfg['osl']}, {load}: {res['requests_per_s']:.2f} req/s, "
                 f"{res['output_tokens_per_s']:.0f} output tok/s, {res['failed']} failed")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
