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
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import grukit  # noqa: E402

# (B, T, H): B in {1, 8, 64, 256} x H in {128, 512, 1024} at T = 100, and a long sequence at batch 1
SIZES_FULL = [(B, 100, H) for H in (128, 512, 1024) for B in (1, 8, 64, 256)] + [(1, 1000, 128)]
SIZES_QUICK = [(1, 100, 128), (64, 100, 512)]

# (label, grukit.GRU options, backend, triton design); None backend = torch.nn.GRU; None design = the rule's
CASES = [
    ("torch.nn.GRU (cuDNN)", {}, None, None),
    ("grukit native", {}, "native", None),
    ("grukit triton, reset before, persistent", {"reset_after": False}, "triton", "persistent"),
    ("grukit triton, reset before, per-step", {"reset_after": False}, "triton", "stepwise"),
    ("grukit triton, reset after, persistent", {}, "triton", "persistent"),
    ("grukit triton, reset after, per-step", {}, "triton", "stepwise"),
    ("grukit triton, reset before", {"reset_after": False}, "triton", None),
    ("grukit triton, takes_candidate", {"update_gate": "takes_candidate"}, "triton", None),
    ("grukit triton, reset after", {}, "triton", None),
    ("grukit triton, reset after, layer norm", {"layer_norm": True}, "triton", None),
    ("grukit triton, reset after, zoneout 0.1", {"zoneout": 0.1}, "triton", None),
    ("grukit triton, reset after, recurrent dropout 0.1", {"recurrent_dropout": 0.1}, "triton", None),
    ("grukit triton, reset before, TF32 products", {"reset_after": False, "tf32": True}, "triton", None),
    ("grukit portable, reset before", {"reset_after": False}, "torch", None),
]
# under bfloat16 autocast: the peers and the seed notes' form
CASES_BF16 = [case for case in CASES if case[0] in (
    "torch.nn.GRU (cuDNN)", "grukit native", "grukit triton, reset before", "grukit triton, takes_candidate",
    "grukit portable, reset before",
)]  # fmt: skip


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    """Median of ``repeats`` CUDA-event timings after ``warmup`` calls (fewer repeats for a slow call:
    5 above 50 ms, 10 above 10 ms)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    once = start.elapsed_time(end)
    repeats = min(repeats, 5 if once > 50 else (10 if once > 10 else repeats))
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_case(B, T, H, options, backend, repeats, design=None, dtype=torch.float32):
    """(inference ms, fwd+bwd ms) of one configuration; ``design`` forces the triton backend's;
    ``dtype`` bfloat16 runs under torch.autocast with float32 weights."""
    from grukit.backends import triton_backend

    options = dict(options)
    tf32 = options.pop("tf32", False)
    previous = torch.backends.cuda.matmul.allow_tf32, os.environ.get(triton_backend.DESIGN_ENV_VAR)
    torch.backends.cuda.matmul.allow_tf32 = tf32 or previous[0]
    if design is not None:
        os.environ[triton_backend.DESIGN_ENV_VAR] = design
    try:
        with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            return _time_case(B, T, H, options, backend, repeats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous[0]
        if previous[1] is None:
            os.environ.pop(triton_backend.DESIGN_ENV_VAR, None)
        else:
            os.environ[triton_backend.DESIGN_ENV_VAR] = previous[1]


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
            inf, fb = time_case(B, T, H, {"reset_after": False}, "triton", 5, design="persistent")
            print(f"| {B} | {T} | {H} | {bb}, {bn}, {bk}, {warps} | {inf:.3f} | {fb:.3f} |", flush=True)
    triton_backend._blocks = chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, fewer repeats")
    parser.add_argument("--sizes", help="B,T,H;B,T,H... instead of the full list")
    parser.add_argument("--only", help="run only the cases whose label contains this text")
    parser.add_argument("--no-bf16", action="store_true", help="leave out the bfloat16 autocast rows")
    parser.add_argument("--write", type=Path, help="write the markdown table to this file")
    parser.add_argument("--json", type=Path, help="write every timing to this JSON file")
    parser.add_argument("--sweep", action="store_true", help="time the triton kernels' tile choices and stop")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu_speed.py needs a CUDA GPU: no GPU is present (torch.cuda.is_available() is False)")
    if args.sweep:
        sweep_tiles()
        return
    sizes = SIZES_QUICK if args.quick else SIZES_FULL
    if args.sizes:
        sizes = [tuple(int(v) for v in size.split(",")) for size in args.sizes.split(";")]
    repeats = 5 if args.quick else 20
    device = torch.cuda.get_device_name()
    command = " ".join(["python", "bench/gpu_speed.py"] + sys.argv[1:])
    lines = [
        f"GPU: {device}; torch {torch.__version__}; triton "
        f"{__import__('triton').__version__}; cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}, "
        f"cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}; input size = hidden size; "
        f"command: `{command}`",
        "",
        "| B | T | H | dtype | implementation | inference ms (x cuDNN) | fwd+bwd ms (x cuDNN) |",
        "|---|---|---|---|---|---|---|",
    ]
    records = []
    runs = [(torch.float32, CASES)] + ([] if args.no_bf16 else [(torch.bfloat16, CASES_BF16)])
    for B, T, H in sizes:
        for dtype, cases in runs:
            base = None
            name = "float32" if dtype == torch.float32 else "bf16 autocast"
            for label, options, backend, design in cases:
                if args.only and args.only not in label and backend is not None:
                    continue
                try:
                    inf, fb = time_case(B, T, H, options, backend, repeats, design, dtype)
                except Exception as error:  # report a failing case in its row, keep measuring the rest
                    lines.append(f"| {B} | {T} | {H} | {name} | {label} | failed: {type(error).__name__}: {error} | |")
                    print(lines[-1], flush=True)
                    continue
                if base is None:
                    base = (inf, fb)
                records.append(dict(B=B, T=T, H=H, dtype=name, label=label, inference_ms=inf, train_ms=fb))
                lines.append(
                    f"| {B} | {T} | {H} | {name} | {label} | {inf:.3f} ({inf / base[0]:.2f}x) "
                    f"| {fb:.3f} ({fb / base[1]:.2f}x) |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        args.write.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(dict(device=device, command=command, records=records), indent=1))


if __name__ == "__main__":
    main()
