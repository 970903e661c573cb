#!/usr/bin/env python3
"""Plot wxlogin-load sweep results: latency and memory against waiters.

Usage: python3 scripts/plot.py docs/bench-sweep.jsonl docs/bench.png

Input is the JSON lines `wxlogin-load -mode=sweep -json FILE` appends (one per
run). Where a (mode, waiters) pair was measured more than once, the last run
is used. Needs matplotlib (Debian: apt-get install python3-matplotlib, then
run with /usr/bin/python3).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {"wxlogin": "wxlogin", "sse-baseline": "bare r3labs/sse (sse.New() defaults)"}
COLORS = {"wxlogin": "tab:blue", "sse-baseline": "tab:gray"}


def load(path):
    runs = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            if r.get("mode") in LABELS and r.get("connected"):
                runs[(r["mode"], r["waiters"])] = r  # the last run wins
    return runs


def series(runs, mode, key):
    pts = sorted((n, key(r)) for (m, n), r in runs.items() if m == mode)
    return [p[0] for p in pts], [p[1] for p in pts]


def main(src, dst):
    runs = load(src)
    fig, (lat, mem) = plt.subplots(1, 2, figsize=(12, 6))
    for mode in LABELS:
        c = COLORS[mode]
        x, y = series(runs, mode, lambda r: r["latency"]["p50_ms"])
        lat.plot(x, y, "o-", color=c, label=LABELS[mode] + " p50")
        x, y = series(runs, mode, lambda r: r["latency"]["p99_ms"])
        lat.plot(x, y, "s--", color=c, label=LABELS[mode] + " p99")
        x, y = series(runs, mode, lambda r: r["rss_per_waiter_kb"])
        mem.plot(x, y, "o-", color=c, label=LABELS[mode] + ", KB per waiter")
        x, y = series(runs, mode, lambda r: r["loaded_rss_kb"] / 1024)
        mem2 = mem.twinx() if mode == "wxlogin" else mem2
        mem2.plot(x, y, "^:", color=c, alpha=0.6, label=LABELS[mode] + ", total MB")
    rate = next(iter(runs.values()))["rate"] if runs else 0
    lat.set_title(f"scan → client event latency at {rate:.0f} scans/s")
    lat.set_xlabel("concurrent SSE waiters")
    lat.set_ylabel("ms (log scale)")
    lat.set_yscale("log")
    lat.axhline(2, color="tab:green", lw=0.8, ls="-.", label="target p50 ≤ 2 ms")
    lat.axhline(20, color="tab:red", lw=0.8, ls="-.", label="target p99 ≤ 20 ms")
    lat.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    lat.grid(alpha=0.3)
    mem.set_title("server RSS with all waiters connected")
    mem.set_xlabel("concurrent SSE waiters")
    mem.set_ylabel("KB per waiter above idle (solid)")
    mem.axhline(40, color="tab:red", lw=0.8, ls="-.", label="target ≤ 40 KB per waiter")
    mem.set_ylim(bottom=0)
    mem2.set_ylabel("total RSS, MB (dotted)")
    mem2.set_ylim(bottom=0)
    h1, l1 = mem.get_legend_handles_labels()
    h2, l2 = mem2.get_legend_handles_labels()
    mem.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)
    mem.grid(alpha=0.3)
    fig.suptitle("wxlogin vs bare r3labs/sse, one instance, 2 cores (load average and fdatasync cost of each run: see BENCHMARKS.md)", fontsize=9)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
