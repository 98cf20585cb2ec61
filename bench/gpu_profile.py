"""Where a GRU call's GPU time goes: CUDA kernel time by kernel, from torch.profiler.

Run on a machine with a GPU:  python bench/gpu_profile.py [--sizes B,T,H;...] [--design stepwise]

For each size and form (reset after / before), one inference call and one forward+backward call
of grukit's triton backend are profiled after warm-up, with the per-step loops run eagerly
(GRUKIT_CUDA_GRAPHS=0: the profiler then sees every launch; the kernels are the ones a recorded
graph replays). Prints each kernel's total time and count, and the sum against the wall time of
the same call replayed from its graph, so the gap is launch overhead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import grukit  # noqa: E402
from grukit.backends import triton_backend  # noqa: E402


def kernel_table(fn) -> list:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    rows = [
        (event.key, event.device_time_total / 1000.0, event.count)
        for event in prof.key_averages()
        if event.device_time_total > 0
    ]
    return sorted(rows, key=lambda row: -row[1])


def wall_ms(fn, repeats=10) -> float:
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,1000,128;64,100,1024;256,100,512")
    parser.add_argument("--design", default="stepwise", choices=triton_backend.DESIGNS)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu_profile.py needs a CUDA GPU: no GPU is present (torch.cuda.is_available() is False)")
    os.environ[triton_backend.DESIGN_ENV_VAR] = args.design
    for size in args.sizes.split(";"):
        B, T, H = (int(v) for v in size.split(","))
        for reset_after in (True, False):
            torch.manual_seed(0)
            gru = grukit.GRU(H, H, reset_after=reset_after, backend="triton").cuda()
            x = torch.randn(T, B, H, device="cuda", requires_grad=True)

            def inference():
                with torch.no_grad():
                    gru(x)

            def train_step():
                out, h_n = gru(x)
                (out.sum() + h_n.sum()).backward()

            for name, fn in (("inference", inference), ("fwd+bwd", train_step)):
                triton_backend.USE_CUDA_GRAPHS = True
                graphed = wall_ms(fn)
                triton_backend.USE_CUDA_GRAPHS = False
                eager = wall_ms(fn)
                table = kernel_table(fn)
                total = sum(row[1] for row in table)
                print(
                    f"\n## B {B} T {T} H {H}, reset {'after' if reset_after else 'before'}, {args.design}, {name}: "
                    f"kernels {total:.3f} ms, graphed wall {graphed:.3f} ms, eager wall {eager:.3f} ms"
                )
                for key, ms, count in table[:12]:
                    print(f"  {ms:8.3f} ms  {count:6d}x  {key[:110]}")
                triton_backend.USE_CUDA_GRAPHS = True


if __name__ == "__main__":
    main()
