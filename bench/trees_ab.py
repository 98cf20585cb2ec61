"""The fused kernels of two source trees, timed against each other on this machine.

    git worktree add /tmp/before <commit>
    python bench/trees_ab.py /tmp/before .            # before, after (the tree holding src/grukit)
    python bench/trees_ab.py /tmp/before . --processes 4 --rounds 9 --markdown ab.md

Two builds of the extension register the same operators, so they cannot share a process: each
tree runs in its own child processes, alternately (before, after, before, after, ...), and each
child times every case with ``gru_speed.measure`` (interleaved rounds, median). The table gives,
per case, the median over processes of each tree's time and the ratio after / before, and the same
ratio with each time divided by torch.nn.GRU's in the same process and rounds (which divides out
the machine's drift between processes: on a shared VM it moves by 10-20 %). The cases:
the plain GRU and each regulariser alone (layer norm, zoneout 0.1, recurrent dropout 0.25) at
batch 1, a small batch that splits hidden units over threads, and the sizes of
``bench/regularisers_speed.py``, in training (fwd+bwd) and inference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

VARIANTS = {
    "plain": {},
    "layer_norm": {"layer_norm": True},
    "zoneout": {"zoneout": 0.1},
    "recurrent dropout": {"recurrent_dropout": 0.25},
}
CASES = [  # label, B, T, H, train, variants (recurrent dropout does nothing in inference)
    ("B1 T1000 H128, inference", 1, 1000, 128, False, ["plain", "layer_norm", "zoneout"]),
    ("B1 T1000 H128, fwd+bwd", 1, 1000, 128, True, list(VARIANTS)),
    ("B1 T200 H512, inference", 1, 200, 512, False, ["plain", "layer_norm", "zoneout"]),
    ("B4 T200 H512, fwd+bwd", 4, 200, 512, True, list(VARIANTS)),
    ("B32 T100 H128, inference", 32, 100, 128, False, ["plain", "layer_norm", "zoneout"]),
    ("B32 T100 H128, fwd+bwd", 32, 100, 128, True, list(VARIANTS)),
    ("B64 T100 H256, fwd+bwd", 64, 100, 256, True, list(VARIANTS)),
]

CHILD = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1] + "/src")
sys.path.insert(0, sys.argv[2])
import grukit
from gru_speed import measure
torch.set_num_threads(int(sys.argv[3]))
cases, variants, rounds = json.loads(sys.argv[4]), json.loads(sys.argv[5]), int(sys.argv[6])
assert grukit.__file__.startswith(sys.argv[1]), grukit.__file__


def timed(module, x, train):  # one call of module on x: fwd + bwd of the output's sum, or inference
    if train:
        xs = x.clone().requires_grad_(True)
        return lambda: module(xs)[0].sum().backward()
    def infer():
        with torch.no_grad():
            module(x)
    return infer


results = {}
for label, B, T, H, train, names in cases:
    for reset_after in (True, False):
        torch.manual_seed(0)
        x = torch.randn(T, B, H)
        impls = {}
        for name in names:
            gru = grukit.GRU(H, H, reset_after=reset_after, backend="cpu_fused", **variants[name]).train(train)
            impls[name] = timed(gru, x, train)
        # torch.nn.GRU of the same size, timed in the same rounds: the yardstick that divides out
        # how fast the machine was while this process ran
        impls["torch.nn.GRU"] = timed(torch.nn.GRU(H, H).train(train), x, train)
        for name, seconds in measure(impls, rounds).items():
            results[f"{label}|{'after' if reset_after else 'before'}|{name}"] = seconds
print(json.dumps(results))
"""


def run_tree(tree: Path, threads: int, rounds: int) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(tree.resolve()),
            str(ROOT / "bench"),
            str(threads),
            json.dumps(CASES),
            json.dumps(VARIANTS),
            str(rounds),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the timing process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(before: list, after: list) -> str:
    lines = [
        "| case | form | variant | before (ms) | after (ms) | after / before | the same, each per torch.nn.GRU |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in before[0]:
        label, form, name = key.split("|")
        if name == "torch.nn.GRU":
            continue
        yardstick = f"{label}|{form}|torch.nn.GRU"
        b = statistics.median(run[key] for run in before) * 1e3
        a = statistics.median(run[key] for run in after) * 1e3
        b_rel = statistics.median(run[key] / run[yardstick] for run in before)
        a_rel = statistics.median(run[key] / run[yardstick] for run in after)
        lines.append(f"| {label} | {form} | {name} | {b:.3f} | {a:.3f} | {a / b:.2f} | {a_rel / b_rel:.2f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before", type=Path, help="a source tree (holding src/grukit)")
    parser.add_argument("after", type=Path, help="another source tree")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--processes", type=int, default=3, help="child processes per tree, alternated")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per case in each process")
    parser.add_argument("--only", nargs="+", help="only the cases whose label contains one of these texts")
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args()
    for tree in (args.before, args.after):
        if not (tree / "src" / "grukit").is_dir():
            parser.error(f"{tree} holds no src/grukit")
    global CASES
    if args.only:
        CASES = [case for case in CASES if any(text in case[0] for text in args.only)]
    before, after = [], []
    for i in range(args.processes):
        for tree, runs in ((args.before, before), (args.after, after)):
            runs.append(run_tree(tree, args.threads, args.rounds))
            print(f"process {i + 1}/{args.processes}: {tree} done", file=sys.stderr, flush=True)
    text = table(before, after)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
