"""The same backtest through a practitioner's tool: Nixtla's neuralforecast ``GRU`` with its defaults,
against grukit's global GRU, on the same series, cut-offs and horizon. Writes results/forecasting_peers.md
(and no other file).

    pip install -e '.[bench-forecast]'      # statsmodels, neuralforecast (pulls pytorch-lightning, ray)
    python bench/forecast_peers.py

Both train once and forecast 10 cut-offs one step apart (neuralforecast: ``cross_validation(n_windows=10,
step_size=1, refit=False)``, which holds out the same windows). Scores come from one function, with
MASE's scale from each series' values before its cut-off. Times are wall-clock seconds to train and
to produce every cut-off's forecasts, measured in this run, on this machine.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gru_speed import machine_label  # noqa: E402
from grukit import forecasting as fc  # noqa: E402
from grukit.apps.datasets.panels import tech_stocks, us_changes, us_employment, us_macro  # noqa: E402
from grukit.apps.studies.report_file import write_section  # noqa: E402
from grukit.forecasting.backtesting import score  # noqa: E402

CUTOFFS = 10
TITLE = "# Forecasting: grukit's global GRU against neuralforecast's GRU\n"


def long_frame(panel: fc.Panel) -> pd.DataFrame:
    """neuralforecast's input: unique_id, ds, y."""
    return pd.concat(
        [pd.DataFrame({"unique_id": s.id, "ds": s.times[: len(s)], "y": s.values}) for s in panel.series],
        ignore_index=True,
    )


def neuralforecast_backtest(panel: fc.Panel, horizon: int):
    """(forecasts [N, K, H] in the panel's series order, seconds for cross_validation)."""
    from neuralforecast import NeuralForecast
    from neuralforecast.models import GRU

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning_fabric").setLevel(logging.ERROR)
    frame = long_frame(panel)
    model = GRU(h=horizon, enable_progress_bar=False, logger=False, enable_model_summary=False, accelerator="cpu")
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cv = NeuralForecast(models=[model], freq=panel.frequency).cross_validation(
            df=frame, n_windows=CUTOFFS, step_size=1, refit=False
        )
    seconds = time.perf_counter() - started
    cv = cv.sort_values(["unique_id", "cutoff", "ds"])
    forecasts = np.stack([cv[cv.unique_id == s.id]["GRU"].to_numpy().reshape(CUTOFFS, horizon) for s in panel.series])
    return forecasts, seconds


def main() -> None:
    torch.set_num_threads(os.cpu_count() or 1)
    datasets = [
        ("US employment by industry", fc.read(us_employment(), time="month"), 12),
        ("Tech stocks, monthly close", fc.read(tech_stocks(), id="symbol", time="date", target="price"), 6),
        ("US macroeconomic series, quarterly", fc.read(us_macro(), time="quarter"), 8),
        ("US quarterly changes", fc.read(us_changes(), time="quarter"), 8),
    ]
    lines = [
        "## Against a practitioner's tool: neuralforecast's GRU",
        "",
        f"`python bench/forecast_peers.py` on {datetime.date.today()}, {machine_label()}, torch {torch.__version__}. "
        "The same series, 10 cut-offs one step apart, the same horizon; each tool trains once "
        "(neuralforecast: `cross_validation(n_windows=10, step_size=1, refit=False)`, its `GRU` with its "
        "defaults; grukit: `grukit backtest` with its defaults). MASE as in the sections above.",
        "",
        "| dataset | tool | mean MASE | median MASE | seconds (train + all cut-offs) |",
        "|---|---|---|---|---|",
    ]
    import neuralforecast

    for name, panel, horizon in datasets:
        started = time.perf_counter()
        result = fc.backtest(panel, fc.Settings(horizon=horizon, progress=False), CUTOFFS, baselines=[])
        ours = time.perf_counter() - started
        theirs, their_seconds = neuralforecast_backtest(panel, horizon)
        result.forecasts["neuralforecast"] = theirs
        score(result, panel)  # the same metrics, on the same windows
        summary = result.summary()
        scores = {
            "grukit": (summary["grukit GRU"]["MASE mean"], summary["grukit GRU"]["MASE median"]),
            "neuralforecast": (summary["neuralforecast"]["MASE mean"], summary["neuralforecast"]["MASE median"]),
        }
        lines.append(f"| {name} | grukit GRU | {scores['grukit'][0]:.3f} | {scores['grukit'][1]:.3f} | {ours:.1f} |")
        lines.append(
            f"| {name} | neuralforecast {neuralforecast.__version__} GRU | {scores['neuralforecast'][0]:.3f} | "
            f"{scores['neuralforecast'][1]:.3f} | {their_seconds:.1f} ({their_seconds / ours:.1f}x grukit's) |"
        )
        print(lines[-2], lines[-1], sep="\n", flush=True)
    path = str(Path(__file__).resolve().parent.parent / "results" / "forecasting_peers.md")
    write_section(path, "peers", "\n".join(lines) + "\n", ("peers",), TITLE)


if __name__ == "__main__":
    main()
