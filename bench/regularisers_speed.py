"""What layer norm, zoneout and recurrent dropout cost on the fused CPU kernels.

    python bench/regularisers_speed.py            # writes its section of BENCHMARKS.md
    python bench/regularisers_speed.py --quick    # fewer rounds, prints only

For each case, every variant runs interleaved round after round (the method of
bench/gru_speed.py; its ``measure`` is reused) and each one's median is reported:

  plain              grukit.GRU, fused kernels, no option
  layer_norm         layer_norm=True
  zoneout            zoneout=0.1
  recurrent dropout  recurrent_dropout=0.25
  all three          the three together
  ... torch loop     the same option on grukit's portable backend: one input GEMM, then a
                     Python loop of per-step torch ops (torch.nn.functional.layer_norm,
                     masks multiplied in) -- what a user writes today without grukit

Training mode (masks drawn, fwd+bwd) unless the case says inference (eval mode:
zoneout is its expected value, recurrent dropout nothing). All float32.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import grukit  # noqa: E402
from gru_speed import cpu_name, fmt, instruction_set, measure, write_section  # noqa: E402

START, END = "<!-- regularisers-benchmark -->", "<!-- /regularisers-benchmark -->"
VARIANTS = {
    "plain": {},
    "layer_norm": {"layer_norm": True},
    "zoneout": {"zoneout": 0.1},
    "recurrent dropout": {"recurrent_dropout": 0.25},
    "all three": {"layer_norm": True, "zoneout": 0.1, "recurrent_dropout": 0.25},
}
CASES = [  # label, B, T, H, train
    ("B32 T100 I=H=128, fwd+bwd", 32, 100, 128, True),
    ("B32 T100 I=H=128, inference", 32, 100, 128, False),
    ("B64 T100 I=H=256, fwd+bwd", 64, 100, 256, True),
]
TARGETS = {"layer_norm": 1.5, "zoneout": 1.15, "recurrent dropout": 1.15}


def implementations(B, T, H, train, reset_after):
    torch.manual_seed(0)
    x = torch.randn(T, B, H)
    impls = {}
    for backend, suffix in (("cpu_fused", ""), ("torch", " torch loop")):
        for name, options in VARIANTS.items():
            if backend == "torch" and name == "plain":
                continue
            gru = grukit.GRU(H, H, reset_after=reset_after, backend=backend, **options)
            gru.train(train)
            if train:
                xs = x.clone().requires_grad_(True)

                def fn(gru=gru, xs=xs):
                    out, h = gru(xs)
                    out.sum().backward()
            else:

                def fn(gru=gru):
                    with torch.no_grad():
                        gru(x)

            impls[name + suffix] = fn
    return impls


def run(quick, rounds=21):
    rounds = 5 if quick else rounds
    rows = []
    for label, B, T, H, train in CASES:
        for reset_after in (True, False):
            times = measure(implementations(B, T, H, train, reset_after), rounds)
            rows.append((label, reset_after, times))
            form = "reset after" if reset_after else "reset before"
            print(f"{label}, {form}: " + ", ".join(f"{k} {fmt(v)}" for k, v in times.items()), flush=True)
    return rows


def table(rows, threads):
    lines = [
        f"Threads: {threads}. Cost = time / plain fused time in the same rounds (the project's targets: "
        "layer_norm <= 1.5x, zoneout and recurrent dropout <= 1.15x). Speed-up = the same option as a "
        "per-step torch loop / fused.",
        "",
        "| case | form | plain | layer_norm | zoneout 0.1 | recurrent dropout 0.25 | all three |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, reset_after, t in rows:
        cells = [fmt(t["plain"])]
        for name in list(VARIANTS)[1:]:
            cost = t[name] / t["plain"]
            mark = " (over target)" if name in TARGETS and cost > TARGETS[name] else ""
            cells.append(f"{fmt(t[name])} = {cost:.2f}x{mark}")
        lines.append(f"| {label} | {'after' if reset_after else 'before'} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| case | form | layer_norm: torch loop / fused | zoneout | recurrent dropout | all three |",
        "|---|---|---|---|---|---|",
    ]
    for label, reset_after, t in rows:
        cells = [
            f"{fmt(t[name + ' torch loop'])} / {fmt(t[name])} = {t[name + ' torch loop'] / t[name]:.1f}x"
            for name in list(VARIANTS)[1:]
        ]
        lines.append(f"| {label} | {'after' if reset_after else 'before'} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=21, help="interleaved rounds per case (default 21)")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(args.quick, args.rounds)
    text = "\n".join(
        [
            START,
            "## Layer norm, zoneout and recurrent dropout",
            "",
            f"`python bench/regularisers_speed.py`, {datetime.date.today()}, {cpu_name()} ({instruction_set()}), "
            f"torch {torch.__version__}, "
            "float32, median of interleaved rounds.",
            "",
            table(rows, args.threads),
            "",
            "How the options are computed: the one layer driver (`csrc/layer.h`) with each option a "
            "compile-time policy beside the cell's passes; layer norm makes the threads split batch rows "
            "(its statistics need whole rows), zoneout and recurrent dropout alone split rows or hidden units "
            "as the plain GRU does. "
            "Zoneout's training mask is drawn inside the kernel from a seed, a hash per element, and "
            "recomputed in the backward pass (never stored); recurrent dropout is one [B, H] mask. Layer "
            "norm is the expensive one in training: it saves the normalised input and recurrent projections "
            "(6H values a row on top of the plain kernel's 4H) and runs two row normalisations and their "
            "backward passes per step; in inference it costs about 1.2-1.3x. The machine is shared: costs "
            "move by about +-0.1x between runs.",
            END,
            "",
        ]
    )
    print(text)
    if args.quick:
        return
    write_section(Path(args.output), START, END, text)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
