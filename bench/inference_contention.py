"""Inference beside a neighbour: each implementation's slowdown when another process shares the CPU.

    python bench/inference_contention.py            # writes its section of BENCHMARKS.md
    python bench/inference_contention.py --quick    # fewer rounds, prints only

Servers are rarely quiet. The neighbour here is a second model server: another process multiplying
1024 x 1024 float32 matrices with torch in a loop, in five conditions:

  quiet                    no neighbour
  same priority, one core  the neighbour on 1 thread, pinned to the last CPU
  same priority, both      the neighbour on 2 threads, unpinned
  nice 19, one core        as above, the neighbour at nice 19
  nice 19, both

In each condition every implementation runs each case (inference, float32 input, 2 threads unless
said) interleaved round after round (``gru_speed.measure``: warm-up, then the median over rounds of
the seconds per call, each sample at least ``--sample`` seconds of calls); its slowdown is its time
over its own quiet time. The implementations, on the same GRU (torch's form, reset after, random
weights):

  ort float32            onnxruntime's GRU operator (one-node model; no int8 or bfloat16 GRU there)
  openvino f32 / bf16    OpenVINO on the same model, INFERENCE_PRECISION_HINT f32 / bf16
  grukit f32/bf16/int8   grukit.GRU and its QuantizedGRU as a user runs them (GRUKIT_CONTENTION=adapt:
                         a layer whose threads meet every step runs on one thread after a call that
                         lost time to a descheduled thread; csrc/contention.h)
  ..., 1 thread          the same with torch.set_num_threads(1) around the call
  grukit f32, full team  grukit f32 with the adaptation off (GRUKIT_CONTENTION=off)

The targets (issue 45): beside a neighbour every grukit case slows down no more than onnxruntime and
OpenVINO do in the same run, and is never more than 15 % slower than grukit's own one-thread run
under the same load. The lines under the table say where each holds.
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gru_speed import ROOT, build_level, fmt, machine_label, measure, write_section  # noqa: E402
from grukit.backends import cpu_fused  # noqa: E402
from low_precision_speed import sequence_implementations  # noqa: E402

THREADS = 2
CASES = [("B1 T1000 H128", 1, 1000, 128), ("B1 T1000 H512", 1, 1000, 512), ("B128 T50 H512", 128, 50, 512)]
PEERS = ["ort float32", "openvino f32", "openvino bf16"]
PRECISIONS = ["f32", "bf16", "int8"]
NEIGHBOURS = {  # label -> (threads, nice, pinned to the last CPU)
    "quiet": None,
    "same priority, one core": (1, 0, True),
    "same priority, both": (2, 0, False),
    "nice 19, one core": (1, 19, True),
    "nice 19, both": (2, 19, False),
}
NEIGHBOUR_CODE = """
import os, sys, torch
threads, pin = int(sys.argv[1]), sys.argv[2] == "1"
if pin:
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
torch.set_num_threads(threads)
a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
while True:
    a @ b
"""


def start_neighbour(threads: int, nice: int, pinned: bool) -> subprocess.Popen:
    command = ["nice", "-n", str(nice), sys.executable, "-c", NEIGHBOUR_CODE, str(threads), "1" if pinned else "0"]
    neighbour = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    time.sleep(1.5)  # torch imported, the loop running
    if neighbour.poll() is not None:
        raise RuntimeError(f"the neighbour process exited with {neighbour.returncode}")
    return neighbour


def one_thread(call):
    def run():
        torch.set_num_threads(1)
        try:
            return call()
        finally:
            torch.set_num_threads(THREADS)

    return run


def full_team(call):
    extension = cpu_fused.extension()

    def run():
        extension.set_contention_adapts(False)
        try:
            return call()
        finally:
            extension.set_contention_adapts(True)

    return run


def implementations(B: int, T: int, H: int) -> dict:
    made, _ = sequence_implementations(B, T, H)
    impls = {name: made[name] for name in PEERS if name in made}
    for precision in PRECISIONS:
        impls[f"grukit {precision}"] = made[f"grukit {precision}"]
        impls[f"grukit {precision}, 1 thread"] = one_thread(made[f"grukit {precision}"])
    impls["grukit f32, full team"] = full_team(made["grukit f32"])
    return impls


def run(rounds: int, sample: float):
    """{case: {condition: {implementation: seconds}}}"""
    torch.set_num_threads(THREADS)
    built = {label: implementations(B, T, H) for label, B, T, H in CASES}
    times = {label: {} for label in built}
    for condition, neighbour_spec in NEIGHBOURS.items():
        neighbour = start_neighbour(*neighbour_spec) if neighbour_spec else None
        try:
            for label, impls in built.items():
                times[label][condition] = measure(impls, rounds, target_seconds=sample)
                row = ", ".join(f"{name} {fmt(t)}" for name, t in times[label][condition].items())
                print(f"{condition} | {label}: {row}", flush=True)
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
    return times


def table(times) -> str:
    conditions = list(NEIGHBOURS)[1:]
    out = [
        "| case | implementation | quiet | " + " | ".join(conditions) + " |",
        "|---" * (len(conditions) + 3) + "|",
    ]
    for label, by_condition in times.items():
        quiet = by_condition["quiet"]
        for name in quiet:
            cells = [f"{fmt(by_condition[c][name])} ({by_condition[c][name] / quiet[name]:.1f}x)" for c in conditions]
            out.append(f"| {label} | {name} | {fmt(quiet[name])} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def verdicts(times) -> list:
    """Per case and condition with a neighbour at the same priority or nice 19: grukit's worst
    slowdown against the peers' best and worst, grukit against its own one-thread run, and the
    fastest grukit precision against the fastest peer under that load (what a server picks)."""
    lines = []
    for label, by_condition in times.items():
        quiet = by_condition["quiet"]
        for condition in list(NEIGHBOURS)[1:]:
            now = by_condition[condition]
            slowdown = {name: now[name] / quiet[name] for name in now}
            peers = [slowdown[p] for p in PEERS if p in slowdown]
            ours = {p: slowdown[f"grukit {p}"] for p in PRECISIONS}
            worst_ours = max(ours, key=ours.get)
            versus_one = {p: now[f"grukit {p}"] / now[f"grukit {p}, 1 thread"] for p in PRECISIONS}
            worst_one = max(versus_one, key=versus_one.get)
            slow_ok = ours[worst_ours] <= min(peers)
            fastest_ours = min(PRECISIONS, key=lambda p: now[f"grukit {p}"])
            fastest_peer = min((p for p in PEERS if p in now), key=now.get)
            lead = now[fastest_peer] / now[f"grukit {fastest_ours}"]
            lines.append(
                f"- {label}, {condition}: grukit's worst slowdown {ours[worst_ours]:.2f}x ({worst_ours}); the peers' "
                f"{min(peers):.2f}x-{max(peers):.2f}x: {'no more than every peer' if slow_ok else 'more than a peer'}; "
                f"grukit / its 1-thread run at most {versus_one[worst_one]:.2f} ({worst_one}): "
                f"{'within 15 %' if versus_one[worst_one] <= 1.15 else 'more than 15 % slower'}; fastest under this "
                f"load: grukit {fastest_ours} {fmt(now[f'grukit {fastest_ours}'])}, {fastest_peer} "
                f"{fmt(now[fastest_peer])} ({lead:.2f}x grukit's time)."
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 0.1 s samples; print only")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--sample", type=float, default=0.25, help="seconds of calls per sample (default 0.25)")
    args = parser.parse_args()
    if not cpu_fused.load():
        raise SystemExit(f"the fused CPU kernels are needed: {cpu_fused.why_unavailable()}")
    rounds, sample = (3, 0.1) if args.quick else (args.rounds, args.sample)
    times = run(rounds, sample)
    machine = machine_label()
    start, end = f"<!-- inference-contention: {machine} -->", f"<!-- /inference-contention: {machine} -->"
    text = "\n".join(
        [
            start,
            f"### Inference beside a neighbour: {machine}, {THREADS} threads",
            "",
            f"Measured {datetime.date.today()} by `python bench/inference_contention.py` (kernels built for "
            f"{build_level()}, torch {torch.__version__}; {rounds} rounds of {sample} s samples). The neighbour: "
            "another process multiplying 1024 x 1024 float32 matrices with torch in a loop. Each cell: median "
            "time per call (slowdown against the same implementation's quiet time).",
            "",
            table(times),
            "",
            *verdicts(times),
            end,
        ]
    )
    print(text)
    if not args.quick:
        write_section(ROOT / "BENCHMARKS.md", start, end, text)


if __name__ == "__main__":
    main()
