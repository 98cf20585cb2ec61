"""What the forecaster's run costs: its network on grukit's fused CPU kernels, and the statistical
fits of its combination spread over worker processes with the same answers."""

from __future__ import annotations

import collections
import math

import numpy as np
import pandas as pd
import pytest
import torch

from grukit import backends
from grukit import forecasting as fc
from grukit.backends import cpu_fused
from grukit.forecasting import baselines, forecaster, series_pool


def wavy_histories(count, seed=0):
    rng = np.random.default_rng(seed)
    return [
        50 + 10 * np.sin(np.arange(n) / 2) + rng.normal(0, 1, n) + np.arange(n) * rng.uniform(-0.3, 0.3)
        for n in rng.integers(12, 40, count)
    ]


def test_worker_processes_give_the_fits_of_one_process_in_order():
    histories = wavy_histories(series_pool.PARALLEL_FROM + 9)
    alone = series_pool.forecast_each(baselines.damped_ets, histories, 5, 4, workers=1)
    shared = series_pool.forecast_each(baselines.damped_ets, histories, 5, 4, workers=2)
    np.testing.assert_array_equal(shared, alone)
    assert alone.shape == (len(histories), 5)
    assert not np.array_equal(alone[0], alone[1])  # distinct series, distinct forecasts: the order is checked


def test_few_histories_are_fitted_in_this_process(monkeypatch):
    def no_pool(*args, **kwargs):
        raise AssertionError("a pool was started for fewer fits than PARALLEL_FROM")

    monkeypatch.setattr(series_pool.multiprocessing, "get_context", no_pool)
    histories = wavy_histories(series_pool.PARALLEL_FROM - 1)
    out = series_pool.forecast_each(baselines.naive, histories, 3, 1, workers=2)
    np.testing.assert_array_equal(out[:, 0], [h[-1] for h in histories])


@pytest.mark.skipif(not cpu_fused.is_available(), reason=f"fused backend unavailable: {cpu_fused.why_unavailable()}")
def test_the_forecasters_network_trains_and_forecasts_on_the_fused_kernels(monkeypatch):
    """Every GRU call of a default fit and forecast, with and without gradients, runs grukit's fused
    CPU kernels, not the portable path (bench/forecast_cost.py measures what that saves)."""
    chosen = collections.Counter()
    select = backends.select

    def spy(x, backend, *args, **kwargs):
        module = select(x, backend, *args, **kwargs)
        chosen[module.NAME, torch.is_grad_enabled()] += 1
        return module

    monkeypatch.setattr(backends, "select", spy)
    histories = wavy_histories(20)
    frame = {"unique_id": [], "ds": [], "y": []}
    for k, history in enumerate(histories):
        frame["unique_id"] += [f"s{k}"] * len(history)
        frame["ds"] += list(pd.date_range("2001-01-01", periods=len(history), freq="QS"))
        frame["y"] += list(history)
    table = pd.DataFrame(frame)
    model = fc.train(table, 4, ensemble=1, epochs=2, combine="none", progress=False)
    model.predict(table)
    assert set(name for name, _ in chosen) == {"cpu_fused"}, chosen
    assert chosen["cpu_fused", True] > 0 and chosen["cpu_fused", False] > 0, chosen


def wavy_table(count):
    frame = {"unique_id": [], "ds": [], "y": []}
    for k, history in enumerate(wavy_histories(count)):
        frame["unique_id"] += [f"s{k}"] * len(history)
        frame["ds"] += list(pd.date_range("2001-01-01", periods=len(history), freq="QS"))
        frame["y"] += list(history)
    return pd.DataFrame(frame)


@pytest.mark.parametrize("loss", ["mase", "transformed"])
def test_a_transforms_network_far_behind_the_best_so_far_stops_after_patience_epochs(monkeypatch, loss):
    """The second transform's network is trained against the first's best validation loss and epochs
    when the losses compare (MASE-scaled); one still more than 2 pools behind it after as many epochs
    as the first ran (`patience` at least) stops."""
    calls = []
    original = forecaster.train_network

    def spy(train, valid, levels, settings, seed, label, rival=(math.inf, 0)):
        result = original(train, valid, levels, settings, seed, label, rival)
        calls.append({"rival": rival, "result": result, "args": (train, valid, levels, settings, seed, label)})
        return result

    monkeypatch.setattr(forecaster, "train_network", spy)
    table = wavy_table(20)
    fc.train(
        table,
        4,
        transform="log-season+trend",
        loss=loss,
        ensemble=2,
        epochs=12,
        patience=3,
        combine="none",
        progress=False,
    )
    first, second = calls[0], calls[1]
    assert first["rival"] == (math.inf, 0)
    assert second["rival"] == ((first["result"][1], first["result"][2]) if loss == "mase" else (math.inf, 0))
    # a rival no network reaches stops it once `patience` epochs, or the rival's if more, have run;
    # no rival lets it run on
    _, _, free = original(*second["args"])
    assert original(*second["args"], rival=(1e-9, 0))[2] == 3 < free
    assert original(*second["args"], rival=(1e-9, 5))[2] == 5
