"""Peak memory of reading a large CSV as a single series for ``grukit forecast --target`` (issue: "a
1 GB CSV must not need more than a few times its size in memory").

Writes a CSV of about ``--gigabytes`` GB (a time column, three numeric columns and a text
column, ~60 bytes a row), then, in a fresh process, reads it as the forecaster does:
``grukit.forecasting.reading.read_panel`` of the target and one known-future column (the others are
not read), a panel of one series. Reports the process's peak resident memory (``ru_maxrss``) minus
what it held after its imports, against the file's size.

    python bench/csv_memory.py --gigabytes 1
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

import numpy as np


def write_csv(path: str, gigabytes: float) -> int:
    rows_per_chunk = 500_000
    rng = np.random.default_rng(0)
    written, row = 0, 0
    with open(path, "w") as f:
        f.write("step,units,temperature,price,note\n")
        while written < gigabytes * 1e9:
            t = np.arange(row, row + rows_per_chunk)
            units = 100 + 20 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 2, rows_per_chunk)
            temperature = 15 + 10 * np.sin(2 * np.pi * t / 365) + rng.normal(0, 1, rows_per_chunk)
            price = rng.normal(50, 5, rows_per_chunk)
            lines = "".join(f"{a},{b:.4f},{c:.4f},{d:.4f},ok\n" for a, b, c, d in zip(t, units, temperature, price))
            f.write(lines)
            written += len(lines)
            row += rows_per_chunk
    return row


def measure(path: str) -> None:
    """In this process: read and window the file as training does; print the figures."""
    from grukit.forecasting.reading import read_panel, reader

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    panel = read_panel(path, reader(target="units", time="step", future=["temperature"]))
    rows = len(panel.series[0].values)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    size = os.path.getsize(path)
    print(
        f"file {size / 1e9:.2f} GB, {rows:,} rows read as a panel of one in {time.perf_counter() - started:.0f} s; "
        f"peak memory above the imports {peak / 1e9:.2f} GB = {peak / size:.2f}x the file"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--path", default="/tmp/grukit_large.csv")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.path)
        return
    started = time.perf_counter()
    rows = write_csv(args.path, args.gigabytes)
    print(f"wrote {args.path}: {rows:,} rows in {time.perf_counter() - started:.0f} s")
    try:
        subprocess.run([sys.executable, __file__, "--measure", "--path", args.path], check=True)
    finally:
        os.remove(args.path)


if __name__ == "__main__":
    main()
