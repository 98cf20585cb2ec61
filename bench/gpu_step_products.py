"""Which operand layout cuBLAS runs fastest for the per-step design's recurrent products.

Run on a machine with a GPU:  python bench/gpu_step_products.py

cuBLAS picks its kernel by shapes and layouts. Each product of one step (``triton_steps``) is timed
two ways: with W_hh^T stored row-major and read as it is ("nn": ``h @ w_hh_t``), and in
torch.nn.Linear's layout, the weight's rows read transposed ("linear": ``h @ w_hh.t()``); the
backward pass's products likewise with the roles swapped. Prints microseconds per call (median of
five runs of 200 calls each).
"""

from __future__ import annotations

import statistics
import sys

import torch


def per_call_us(fn, calls=200) -> float:
    for _ in range(5):
        fn()
    runs = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        runs.append(start.elapsed_time(end) * 1000 / calls)
    return statistics.median(runs)


def main() -> None:
    if not torch.cuda.is_available():
        sys.exit("bench/gpu_step_products.py needs a CUDA GPU: no GPU is present")
    print("| B | H | product | nn us | linear us |\n|---|---|---|---|---|")
    for H in (128, 512, 1024):
        w_hh = torch.randn(3 * H, H, device="cuda")  # [3H, H]
        w_hh_t = w_hh.t().contiguous()  # [H, 3H]
        for B in (1, 8, 16, 64, 256):
            h = torch.randn(B, H, device="cuda")
            g = torch.randn(B, 3 * H, device="cuda")
            out3 = torch.empty(B, 3 * H, device="cuda")
            out1 = torch.empty(B, H, device="cuda")
            cases = {
                "fwd, reset after: h W^T [B,3H]": (
                    lambda: torch.mm(h, w_hh_t, out=out3),
                    lambda: torch.mm(h, w_hh.t(), out=out3),
                ),
                "fwd, reset before: h W_rz^T [B,2H]": (
                    lambda: torch.mm(h, w_hh_t[:, : 2 * H], out=out3[:, : 2 * H]),
                    lambda: torch.mm(h, w_hh[: 2 * H].t(), out=out3[:, : 2 * H]),
                ),
                "fwd, reset before: (r h) W_n^T [B,H]": (
                    lambda: torch.mm(h, w_hh_t[:, 2 * H :], out=out3[:, 2 * H :]),
                    lambda: torch.mm(h, w_hh[2 * H :].t(), out=out3[:, 2 * H :]),
                ),
                "bwd, reset after: dg W [B,H]": (
                    lambda: torch.mm(g, w_hh, out=out1),
                    lambda: torch.mm(g, w_hh_t.t(), out=out1),
                ),
                "bwd, reset before: dg_n W_n [B,H]": (
                    lambda: torch.mm(g[:, 2 * H :], w_hh[2 * H :], out=out1),
                    lambda: torch.mm(g[:, 2 * H :], w_hh_t[:, 2 * H :].t(), out=out1),
                ),
                "bwd, reset before: dg_rz W_rz + d [B,H]": (
                    lambda: torch.addmm(out1, g[:, : 2 * H], w_hh[: 2 * H], out=h),
                    lambda: torch.addmm(out1, g[:, : 2 * H], w_hh_t[:, : 2 * H].t(), out=h),
                ),
            }
            for name, (nn_layout, linear_layout) in cases.items():
                print(
                    f"| {B} | {H} | {name} | {per_call_us(nn_layout):.1f} | {per_call_us(linear_layout):.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
