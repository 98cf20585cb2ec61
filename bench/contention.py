"""Speed under contention: the benchmark's cases with one core kept busy by another process.

Real training shares the cores with DataLoader workers and other jobs. This runs the cases of
``bench/gru_speed.py`` (2 threads) twice in one process: on a quiet machine, then with a
busy-loop process pinned to the last CPU. For each implementation it reports the time in
both, and the quantity the target is about: its time relative to the faster peer
(torch.nn.GRU or onnxruntime), quiet and contended; "degradation" = contended relative /
quiet relative (the target: at most 1.5). Writes a section of BENCHMARKS.md.

    python bench/contention.py [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import gru_speed  # noqa: E402  (the cases, the implementations, the timing loop)

CASES = [c for c in gru_speed.CASES if c[1] in (1, 32)]  # the cases whose per-step work is small


def busy_loop(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})
    while True:
        pass


def measure_all(rounds: int):
    rows = {}
    for label, B, T, H, train, _ in CASES:
        impls = gru_speed.implementations(B, T, H, train, 2)
        impls.pop("torch loop before", None)
        rows[label] = gru_speed.measure(impls, rounds)
    return rows


def relative(times: dict, name: str) -> float:
    """``name``'s time over the faster peer's (torch.nn.GRU, or onnxruntime in either placement)."""
    peers = [t for n, t in times.items() if n == "torch.nn.GRU" or n.startswith("ort")]
    return times[name] / min(peers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of 15, and no BENCHMARKS.md")
    parser.add_argument("--output", default=str(gru_speed.ROOT / "BENCHMARKS.md"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    rounds = 5 if args.quick else 15
    quiet = measure_all(rounds)
    cpu = max(os.sched_getaffinity(0))
    busy = multiprocessing.Process(target=busy_loop, args=(cpu,), daemon=True)
    busy.start()
    time.sleep(0.5)
    try:
        contended = measure_all(rounds)
    finally:
        busy.terminate()
    lines = [
        f"Measured by `python bench/contention.py` on {gru_speed.machine_label()}, 2 threads, torch "
        f"{torch.__version__}; contended = a busy-loop process pinned to CPU {cpu}. Relative = time / the faster "
        "peer's (torch.nn.GRU, onnxruntime) in the same condition; degradation = contended relative / quiet "
        "relative (target <= 1.5).",
        "",
        "| case | implementation | quiet | contended | relative, quiet | relative, contended | degradation |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in quiet:
        for name in quiet[label]:
            q, c = quiet[label][name], contended[label][name]
            rq, rc = relative(quiet[label], name), relative(contended[label], name)
            lines.append(
                f"| {label} | {name} | {gru_speed.fmt(q)} | {gru_speed.fmt(c)} | {rq:.2f} | {rc:.2f} | "
                f"{rc / rq:.2f}{' (over 1.5)' if rc / rq > 1.5 and name.startswith('grukit') else ''} |"
            )
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        start, end = (
            f"<!-- contention: {gru_speed.machine_label()} -->",
            f"<!-- /contention: {gru_speed.machine_label()} -->",
        )
        section = f"{start}\n### Under contention: {gru_speed.machine_label()}\n\n{text}\n{end}\n"
        gru_speed.write_section(Path(args.output), start, end, section)
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
