"""Batch-1 latency alone and right after an OpenMP operation (torch.nn.GRU), in one process.

After a parallel region OpenMP's other thread keeps spinning on its core for a while. grukit's
batch-1 layer runs its recurrence on the calling thread and its input projection on a helper
thread (csrc/projection_ahead.h), so right after such an operation the helper shares a core with
that spin. This times B1 T1000 H128 inference (2 threads) both ways, interleaved, and prints the
medians; BENCHMARKS.md quotes it next to the tables where "grukit after" follows torch.nn.GRU.

    python bench/after_openmp.py
"""

import time

import torch

import grukit


def main(calls: int = 40, rounds: int = 2) -> None:
    torch.set_num_threads(2)
    x = torch.randn(1000, 1, 128)
    layer, peer = grukit.GRU(128, 128), torch.nn.GRU(128, 128)

    def median_ms(after_peer: bool) -> float:
        times = []
        with torch.inference_mode():
            for _ in range(calls):
                if after_peer:
                    peer(x)
                start = time.perf_counter()
                layer(x)
                times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2] * 1e3

    with torch.inference_mode():
        layer(x)  # build, warm up
    for _ in range(rounds):
        print(
            f"grukit B1 T1000 H128 inference: alone {median_ms(False):.2f} ms, "
            f"right after torch.nn.GRU {median_ms(True):.2f} ms"
        )


if __name__ == "__main__":
    main()
