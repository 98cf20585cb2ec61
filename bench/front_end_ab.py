"""The Python around the kernels, timed in two source trees: the modules' calling convention
(``grukit.torch_call``), the streams' driver (``grukit.stream.StreamDriver``) and the quantized
module's call, where a refactor of the Python layers could cost microseconds per call.

    git worktree add /tmp/before <commit>
    python bench/front_end_ab.py /tmp/before .          # before, after; prints a Markdown table

Each tree runs in its own child processes, alternately (before, after, before, ...); each child
times every case (a warm-up, then 7 rounds, median per call). The table gives the median over the
children of each tree and the ratio after / before. Cases are small on purpose: at batch 1 and few
steps the Python layers are a visible share of a call.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, time, statistics, torch
sys.path.insert(0, sys.argv[1] + "/src")
import grukit
assert grukit.__file__.startswith(sys.argv[1]), grukit.__file__
torch.manual_seed(0)


def per_call(fn, calls):
    for _ in range(calls // 5):
        fn()
    times = []
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(times)


results = {}
streams = [("GRU H128", lambda: grukit.GRU(128, 128)),
           ("GRU int8 H512", lambda: grukit.GRU(512, 512).quantized("int8")),
           ("MinGRU H128", lambda: grukit.MinGRU(128, 128))]
for name, make in streams:
    module = make()
    stream, x = module.stream(1), torch.randn(1, module.input_size)
    results[f"{name}, stream step, B1"] = per_call(lambda: stream.step(x), 5000)
calls = [("GRU", lambda h: grukit.GRU(h, h)), ("QuantizedGRU int8", lambda h: grukit.GRU(h, h).quantized("int8")),
         ("MinGRU", lambda h: grukit.MinGRU(h, h))]
with torch.no_grad():
    for name, make in calls:
        for T, H in ((1, 64), (100, 128)):
            module, x = make(H), torch.randn(T, 1, H)
            results[f"{name}, call, B1 T{T} H{H}"] = per_call(lambda: module(x), 1000 if T == 1 else 200)
print(json.dumps(results))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", help="the tree before (holding src/grukit)")
    parser.add_argument("after", help="the tree after")
    parser.add_argument("--processes", type=int, default=3, help="children per tree (default 3)")
    args = parser.parse_args()
    runs = {"before": [], "after": []}
    for _ in range(args.processes):
        for label, tree in (("before", args.before), ("after", args.after)):
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(Path(tree).resolve())], capture_output=True, text=True, check=True
            )
            runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print("| case | before, us | after, us | after / before |")
    print("|---|---|---|---|")
    for case in runs["before"][0]:
        before = statistics.median(r[case] for r in runs["before"])
        after = statistics.median(r[case] for r in runs["after"])
        print(f"| {case} | {before:.1f} | {after:.1f} | {after / before:.2f} |")


if __name__ == "__main__":
    main()
