"""What the int8 QuantizedGRU's inf check costs: the forward pass with the check and with it
replaced by a no-op, interleaved in one process (25 rounds, median, 2 threads). Prints a line per
case; writes no file.

    python bench/int8_inf_check_ab.py
"""

import platform
import statistics
import time

import torch

import grukit
from grukit.quantized import QuantizedGRU


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    checked = QuantizedGRU._check_no_infinity
    print(f"{platform.processor() or platform.machine()}, {grukit.quantized.instructions('int8')}")
    for B, T, H in [(1, 1000, 512), (128, 50, 512)]:
        q = grukit.GRU(H, H).quantized("int8")
        x = torch.randn(T, B, H)
        times = {"with check": [], "without": []}
        with torch.no_grad():
            for _ in range(3):
                q(x)
            for _ in range(25):
                for name in times:
                    QuantizedGRU._check_no_infinity = checked if name == "with check" else (lambda self, x, h: None)
                    started = time.perf_counter()
                    q(x)
                    times[name].append(time.perf_counter() - started)
        QuantizedGRU._check_no_infinity = checked
        with_check, without = (statistics.median(times[k]) * 1e3 for k in ("with check", "without"))
        print(
            f"B{B} T{T} H{H}: with the check {with_check:.2f} ms, without {without:.2f} ms, "
            f"ratio {with_check / without:.3f}"
        )


if __name__ == "__main__":
    main()
