"""The forecaster's time and memory from 100 to 10,000 series (M4's scale), beside damped ETS fitted
to the same series. Writes results/forecasting_scaling.md (and no other file).

    python bench/forecast_scaling.py                 # about 10 minutes on 2 cores
    python bench/forecast_scaling.py --sizes 100,300 # fewer sizes
    python bench/forecast_scaling.py --quick         # 100 and 300 series, 2 epochs, to forecasting_scaling.quick.md

The panels are generated, yearly-like as M4's largest group: each series has 20 to 60 values, a
level drawn from 100 to 10,000, a trend, and multiplicative random-walk noise; the horizon is 6.
Each size runs in its own process, so that its peak resident memory (``ru_maxrss``) is its own. In
it, grukit reads the unique_id/ds/y table (ds integer steps), trains with ``forecasting.Settings``'
defaults and forecasts every series; damped ETS (``baselines.damped_ets``, statsmodels) is then
fitted to every series in the same process, one after another, as the cost target's yardstick.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HORIZON = 6
SIZES = (100, 300, 1000, 3000, 10000)
TITLE = "# Forecasting: time and memory from 100 to 10,000 series\n"
ORDER = ("scaling",)


def generated_table(count: int, seed: int = 0):
    """A unique_id, ds, y table of ``count`` yearly-like series (see the module docstring)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 61, count)
    ids, steps, values = [], [], []
    for k, n in enumerate(lengths):
        level = rng.uniform(100, 10_000)
        growth = rng.normal(0.03, 0.05)
        walk = np.exp(np.cumsum(rng.normal(0, 0.08, n + HORIZON)))
        y = level * (1 + growth) ** np.arange(n + HORIZON) * walk
        ids += [f"s{k}"] * (n + HORIZON)
        steps += list(range(1, n + HORIZON + 1))
        values += list(y)
    table = pd.DataFrame({"unique_id": ids, "ds": steps, "y": values})
    cut = table.groupby("unique_id", sort=False).cumcount(ascending=False) >= HORIZON
    return table[cut].reset_index(drop=True), table[~cut].reset_index(drop=True)


def measure(count: int, quick: bool) -> dict:
    """One size, in this process: read, train, forecast, then damped ETS; times and peak memory."""
    import torch

    from grukit import forecasting as fc
    from grukit.forecasting import baselines, metrics

    history, future = generated_table(count)
    clock = time.perf_counter()
    panel = fc.read(history)
    read_seconds = time.perf_counter() - clock
    settings = fc.Settings(horizon=HORIZON, progress=False, **({"epochs": 2} if quick else {}))
    clock = time.perf_counter()
    model = fc.fit(panel, settings)
    train_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    forecasts = model.predict(panel)
    forecast_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    ets = np.stack([baselines.damped_ets(s.values, HORIZON, 1) for s in panel.series])
    ets_seconds = time.perf_counter() - clock
    actual = future["y"].to_numpy().reshape(count, HORIZON)
    ours = forecasts["forecast"].to_numpy().reshape(count, HORIZON)
    scale = np.array([metrics.mase_scale(s.values, 1) for s in panel.series])
    return {
        "series": count,
        "values": int(sum(len(s) for s in panel.series)),
        "read": read_seconds,
        "train": train_seconds,
        "forecast": forecast_seconds,
        "ets": ets_seconds,
        "memory": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "epochs": model.fitted.epochs,
        "partner": model.fitted.partner,
        "mase": float(np.mean(np.abs(ours - actual).mean(1) / scale)),
        "ets_mase": float(np.mean(np.abs(ets - actual).mean(1) / scale)),
        "threads": torch.get_num_threads(),
    }


def markdown(runs, command: str) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torch

    from gru_speed import machine_label

    lines = [
        f"Written by `{command}` on {datetime.date.today()}, {machine_label()}, {runs[0]['threads']} torch threads, "
        f"torch {torch.__version__}. Generated yearly-like panels, horizon {HORIZON} (the script's docstring); "
        "grukit's defaults. Train and forecast are grukit's; damped ETS is statsmodels' fit of every series "
        "in one process, one after another.",
        "",
        "| series | values | read s | train s | forecast s | damped ETS s | train / ETS | (train + forecast) / ETS "
        "| peak memory MB | epochs | partner | MASE: grukit / damped ETS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['series']:,} | {r['values']:,} | {r['read']:.1f} | {r['train']:.1f} | {r['forecast']:.1f} | "
            f"{r['ets']:.1f} | {r['train'] / r['ets']:.2f}x | {(r['train'] + r['forecast']) / r['ets']:.2f}x | "
            f"{r['memory']:.0f} | {', '.join(map(str, r['epochs']))} | {r['partner']} | "
            f"{r['mase']:.3f} / {r['ets_mase']:.3f} |"
        )
    largest = runs[-1]
    lines += [
        "",
        f"At {largest['series']:,} series grukit's training took {largest['train'] / largest['ets']:.2f}x damped "
        f"ETS's fit and its peak memory was {largest['memory']:.0f} MB. The networks' training is bounded (at most "
        "`epochs` x `batches_per_epoch` batches each), so it grows slowly with the panel; the combination's "
        "statistical fits grow with it, and run in worker processes (`grukit.forecasting.series_pool`).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="series counts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="100 and 300 series, 2 epochs")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: measure one size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.quick)))
        return
    sizes = [100, 300] if args.quick else [int(s) for s in args.sizes.split(",")]
    runs = []
    for count in sizes:
        child = [sys.executable, __file__, "--one", str(count)] + (["--quick"] if args.quick else [])
        done = subprocess.run(child, capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(runs[-1], flush=True)
    command = "python bench/forecast_scaling.py" + (" --quick" if args.quick else "")
    command += f" --sizes {args.sizes}" if not args.quick and args.sizes != ",".join(map(str, SIZES)) else ""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from grukit.apps.studies.report_file import write_section

    path = Path(__file__).resolve().parent.parent / "results"
    path = path / ("forecasting_scaling.quick.md" if args.quick else "forecasting_scaling.md")
    write_section(str(path), "scaling", markdown(runs, command), ORDER, TITLE)
    print(path.read_text())


if __name__ == "__main__":
    main()
