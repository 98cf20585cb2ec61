"""GRU speed on a CUDA GPU: torch.nn.GRU (cuDNN) against grukit's native, triton and portable paths.

Run on a machine with a GPU:  python bench/gpu_speed.py [--quick] [--write BENCHMARKS.md]

Every row times one configuration in one process, so the ratios compare like with like. Times
are medians of CUDA-event-timed repeats after warm-up; the inputs are random (never zeros).
Columns: inference (forward under no_grad) and fwd+bwd (forward, then backward of a sum of the
outputs), in ms; in brackets the time over torch.nn.GRU's on the same row (< 1 is faster).

torch.nn.GRU on cuDNN uses TF32 for float32 products when ``torch.backends.cudnn.allow_tf32`` is
set (PyTorch's default); grukit's kernels follow ``torch.backends.cuda.matmul.allow_tf32``
(default off: full float32). The table says which setting each run had.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import grukit  # noqa: E402

SIZES_FULL = [(1, 100, 256), (8, 100, 256), (64, 100, 256), (256, 100, 256), (64, 100, 1024), (256, 50, 512)]
SIZES_QUICK = [(1, 100, 256), (64, 100, 256)]

# (label, grukit.GRU options, backend); None backend = torch.nn.GRU
CASES = [
    ("torch.nn.GRU (cuDNN)", {}, None),
    ("grukit native", {}, "native"),
    ("grukit triton, reset after", {}, "triton"),
    ("grukit triton, reset before", {"reset_after": False}, "triton"),
    ("grukit triton, takes_candidate", {"update_gate": "takes_candidate"}, "triton"),
    ("grukit triton, layer norm", {"layer_norm": True}, "triton"),
    ("grukit triton, zoneout 0.1", {"zoneout": 0.1}, "triton"),
    ("grukit triton, recurrent dropout 0.1", {"recurrent_dropout": 0.1}, "triton"),
    ("grukit triton, reset before, TF32 products", {"reset_after": False, "tf32": True}, "triton"),
    ("grukit portable, reset before", {"reset_after": False}, "torch"),
]


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_case(B, T, H, options, backend, repeats):
    options = dict(options)
    tf32 = options.pop("tf32", False)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32 or previous
    try:
        return _time_case(B, T, H, options, backend, repeats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous


def _time_case(B, T, H, options, backend, repeats):
    torch.manual_seed(0)
    if backend is None:
        module = torch.nn.GRU(H, H).cuda()
    else:
        module = grukit.GRU(H, H, backend=backend, **options).cuda()
    module.train()
    inputs = [torch.randn(T, B, H, device="cuda") for _ in range(3)]  # rotate: no cache-resident repeats
    state = {"k": 0}

    def next_input():
        state["k"] = (state["k"] + 1) % len(inputs)
        return inputs[state["k"]]

    def inference():
        with torch.no_grad():
            module(next_input())

    def train_step():
        x = next_input().requires_grad_(True)
        out, h_n = module(x)
        (out.sum() + h_n.sum()).backward()
        x.requires_grad_(False)

    return median_ms(inference, repeats), median_ms(train_step, repeats)


TILES = [(16, 32, 32, 4), (16, 64, 64, 4), (16, 64, 64, 8), (16, 128, 64, 8), (16, 128, 32, 8), (32, 64, 64, 8)]


def sweep_tiles() -> None:
    """Reset-before GRU (the seed notes' form) with each (BLOCK_B, BLOCK_N, BLOCK_K, num_warps)."""
    from grukit.backends import triton_backend

    chosen = triton_backend._blocks
    print("| B | T | H | BLOCK_B, BLOCK_N, BLOCK_K, warps | inference ms | fwd+bwd ms |\n|---|---|---|---|---|---|")
    for B, T, H in [(1, 100, 256), (64, 100, 256), (64, 100, 1024)]:
        for bb, bn, bk, warps in TILES:
            triton_backend._blocks = lambda B, H: dict(BLOCK_B=bb, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps)
            inf, fb = time_case(B, T, H, {"reset_after": False}, "triton", 5)
            print(f"| {B} | {T} | {H} | {bb}, {bn}, {bk}, {warps} | {inf:.3f} | {fb:.3f} |", flush=True)
    triton_backend._blocks = chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, fewer repeats")
    parser.add_argument("--write", type=Path, help="write the markdown table to this file")
    parser.add_argument("--sweep", action="store_true", help="time the triton kernels' tile choices and stop")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu_speed.py needs a CUDA GPU; none is visible to torch")
    if args.sweep:
        sweep_tiles()
        return
    sizes = SIZES_QUICK if args.quick else SIZES_FULL
    repeats = 5 if args.quick else 20
    device = torch.cuda.get_device_name()
    lines = [
        f"GPU: {device}; torch {torch.__version__}; triton "
        f"{__import__('triton').__version__}; cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
        f"cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}; float32, input size = hidden size, "
        f"command: `python bench/gpu_speed.py{' --quick' if args.quick else ''}`",
        "",
        "| B | T | H | implementation | inference ms (x cuDNN) | fwd+bwd ms (x cuDNN) |",
        "|---|---|---|---|---|---|",
    ]
    for B, T, H in sizes:
        base = None
        for label, options, backend in CASES:
            try:
                inf, fb = time_case(B, T, H, options, backend, repeats)
            except Exception as error:  # report a failing case in its row, keep measuring the rest
                lines.append(f"| {B} | {T} | {H} | {label} | failed: {type(error).__name__}: {error} | |")
                print(lines[-1], flush=True)
                continue
            if base is None:
                base = (inf, fb)
            lines.append(
                f"| {B} | {T} | {H} | {label} | {inf:.3f} ({inf / base[0]:.2f}x) | {fb:.3f} ({fb / base[1]:.2f}x) |"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
