"""The forecaster's combination with a statistical forecast: the batched Theta method against
statsmodels', the validated choice of partner, and model files saved before the partner existed."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from grukit import forecasting as fc
from grukit.forecasting import baselines, theta_method
from grukit.forecasting.forecaster import PARTNERS, GlobalForecaster, validated_partner

QUICK = dict(hidden=8, epochs=2, patience=2, progress=False, transform="diff", ensemble=1)


def histories(seed=0, count=40, season=4):
    """Positive series with a level, a trend, noise and (every other one) a season of ``season``."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(count):
        n = int(rng.integers(8, 60))
        t = np.arange(n)
        seasonal = 1 + (0.3 * np.sin(2 * np.pi * t / season) if k % 2 else 0)
        out.append((100 + rng.uniform(-1, 1) * t + rng.normal(0, 4, n).cumsum() * 0.3 + 60) * seasonal)
    return out


@pytest.mark.parametrize("season", [1, 4])
def test_batched_theta_is_statsmodels_theta(season):
    """Every series at once gives statsmodels' ThetaModel forecasts (baselines.theta): equal to 1e-4
    on at least 9 series in 10; where not, the grid's alpha fits no worse (a smaller or equal sum of
    squared one-step errors: statsmodels' optimiser can stop in a local minimum)."""
    series = histories(season=season)
    ours = theta_method.theta_forecasts(series, 5, season)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = np.stack([baselines.theta(y, 5, season) for y in series])
    relative = (np.abs(ours - theirs) / np.abs(theirs)).max(1)
    assert np.mean(relative < 1e-4) >= 0.9, np.sort(relative)[-5:]
    from statsmodels.tsa.forecasting.theta import ThetaModel

    for k in np.flatnonzero(relative >= 1e-4):
        y = np.asarray(series[k], np.float64)
        adjusted, _, _ = theta_method.seasonal_adjustment(y, season)
        deseasonalize = season > 1 and len(y) >= 2 * season
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alpha = (
                ThetaModel(y, period=season if deseasonalize else 1, deseasonalize=deseasonalize).fit().params["alpha"]
            )
        grid = np.concatenate([theta_method.COARSE, theta_method.NEAR_ZERO])
        errors, _ = theta_method._ses_errors(adjusted[None], np.array([len(y)]), np.append(grid, alpha)[None])
        assert errors[0, :-1].min() <= errors[0, -1] * (1 + 1e-6), (k, alpha)


def test_batched_theta_on_short_and_constant_histories():
    out = theta_method.theta_forecasts([np.array([3.0, 4.0]), np.full(10, 7.0), np.arange(1.0, 13.0)], 3, 1)
    np.testing.assert_array_equal(out[0], [4.0, 4.0, 4.0])  # under 3 values: the last one
    np.testing.assert_allclose(out[1], [7.0, 7.0, 7.0])
    assert np.all(np.diff(out[2]) > 0)  # a straight line keeps rising


def test_the_validated_partner_is_the_one_whose_combination_validates_best():
    rng = np.random.default_rng(0)
    actual = rng.uniform(50, 150, (30, 4))
    y = np.stack([actual - 10, actual + 5, actual + 20], 2)  # the networks' median is 5 too high
    levels = [0.1, 0.5, 0.9]
    near = {"damped-ets": actual + 30, "theta": actual - 5}  # theta cancels the networks' error
    assert validated_partner(y, levels, near, actual, np.ones(30)) == "theta"
    far = {"damped-ets": actual - 5, "theta": actual + 30}
    assert validated_partner(y, levels, far, actual, np.ones(30)) == "damped-ets"
    both = {"damped-ets": actual - 25, "theta": actual + 5}  # their mean, -10, cancels +5 best
    assert validated_partner(y, levels, both, actual, np.ones(30)) == "damped-ets+theta"
    # with seasonal naive's forecasts the three-way mean is a candidate too: here its -5 cancels +5 exactly
    three = {**both, "seasonal-naive": actual + 5}
    assert validated_partner(y, levels, three, actual, np.ones(30)) == "damped-ets+theta+seasonal-naive"
    three["seasonal-naive"] = actual + 80  # far off: the mean of two is chosen again
    assert validated_partner(y, levels, three, actual, np.ones(30)) == "damped-ets+theta"
    with pytest.raises(ValueError, match="forecasts must hold the methods of one of the partners"):
        validated_partner(y, levels, {"seasonal-naive": actual}, actual, np.ones(30))


def test_partner_methods_forecast_from_each_windows_origin():
    """method_forecasts' seasonal naive is baselines.seasonal_naive of the history before each origin;
    an unknown method is refused by name."""
    from grukit.forecasting.forecaster import CovariateScaling, make_windows, method_forecasts, split_origins

    panel = fc.read(seasonal_panel())
    split = split_origins(panel, 8, 4, False, 2)
    windows = make_windows(panel, split.valid, 8, 4, "level", CovariateScaling.fit(panel), True)
    out = method_forecasts(panel, windows, 4, ("seasonal-naive",))["seasonal-naive"]
    for row, (k, origin) in enumerate(zip(windows.series, windows.origin)):
        history = panel.series[int(k)].values[: int(origin)]
        np.testing.assert_array_equal(out[row], baselines.seasonal_naive(history, 4, panel.season))
        np.testing.assert_array_equal(out[row], history[-4:])  # season 4, horizon 4: the last season
    with pytest.raises(ValueError, match="methods must be among damped-ets, theta, seasonal-naive, got 'prophet'"):
        method_forecasts(panel, windows, 4, ("prophet",))


def seasonal_panel():
    rng = np.random.default_rng(1)
    rows = []
    for k in range(8):
        n = 40 + k
        y = 30 + k + 5 * np.sin(2 * np.pi * np.arange(n) / 4) + rng.normal(0, 0.5, n)
        times = pd.date_range("2000-01-01", periods=n, freq="QS")
        rows += [{"unique_id": f"s{k}", "ds": times[i], "y": y[i]} for i in range(n)]
    return pd.DataFrame(rows)


def test_fits_record_their_partner_and_old_files_load_with_damped_ets(tmp_path):
    table = seasonal_panel()
    validated = fc.train(table, 4, **QUICK)
    assert validated.settings.combine == "validated" and validated.fitted.partner in PARTNERS
    theta = fc.train(table, 4, combine="theta", **QUICK)
    assert theta.fitted.partner == "theta"
    assert fc.train(table, 4, combine="none", **QUICK).fitted.partner is None
    # a file saved when "damped-ets" was the only combination has no partner: it combined with damped ETS
    state = theta.state()
    state["settings"]["combine"] = "damped-ets"
    del state["fitted"]["partner"]
    assert GlobalForecaster.from_state(state).fitted.partner == "damped-ets"
    state["fitted"]["partner"] = "prophet"
    listed = "damped-ets, theta, damped-ets\\+theta, damped-ets\\+theta\\+seasonal-naive"
    with pytest.raises(ValueError, match=f"its partner 'prophet' is not one of {listed}"):
        GlobalForecaster.from_state(state)
