"""The global GRU forecaster: one model trained across every series of a panel, with quantile
forecasts calibrated by conformal prediction.

Training (``fit``):

1. Each series' last ``validation_size`` values are held out; the forecast origins that see only the
   values before them are training samples, the ``validation_origins`` origins whose horizon ends
   inside them are validation samples (so no training sample sees a validation target).
2. For each candidate target transform (``Settings.transform``: the default
   "log-season+log-profile+trend" tries three on seasonal data and two on yearly, "auto" every one of
   ``windows.TRANSFORMS`` that applies) a network is trained on the pinball
   loss of the quantile levels, stopped early on the validation loss (its best epoch kept). The
   transforms whose median forecast's validation MASE is within ``pool`` (10 %) of the best are kept,
   and their forecasts are combined by the median, in natural units: pooling the forecasts of the
   models close to the best is more accurate and less fragile than picking one (Kourentzes, Barrow
   and Petropoulos 2019). Networks with other seeds of the kept transforms, the best first and in
   turn, fill the pool up to ``ensemble``. The default is 3, not 1: the calibrated coverage of one
   network varied with its seed by up to 12 points in a backtest (US employment: 75 to 87 %); with
   three networks it varied by 3 (77 to 80 %). With the MASE-scaled loss, whose values compare
   across transforms, a transform's network that has run as many epochs as the best network so far
   took (``patience`` at least) and is still more than twice ``pool`` behind its loss stops there
   (``PRUNE_AFTER_POOLS``): on tourism monthly the trend network was 1.37x log-season's loss after
   log-season's 14 epochs and 1.26x at its best after 40, and those 40 epochs were half of the
   panel's training. Sooner is not safe: on a synthetic panel with a price effect the trend
   network was 1.8x log-season's loss after 8 epochs and 0.5x after 40.
3. For each interval (a level q < 0.5 with its 1 - q) the validation samples calibrate a conformal
   correction per horizon step, in units of each window's interval width (:mod:`.conformal`).

Forecasting (``predict``) reads each series' full history; the model was not trained on the last
``validation_size`` values, but it forecasts from them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..busy_cores import ThreadTuner
from . import conformal
from .network import GlobalGRU, pinball_loss
from .panel import Panel, calendar_features, future_times
from .series_pool import forecast_each
from .table import TableError
from .theta_method import theta_forecasts
from .windows import TRANSFORMS, CovariateScaling, Windows, applicable, feature_sizes, make_windows

TASK = "global-forecast"  # the model file's "task"


@dataclass
class Settings:
    """What ``fit`` trains. ``window`` None: ``default_window`` (1.5 * max(horizon, season)).
    ``transform``: one of ``windows.TRANSFORMS``, several joined by "+", or "auto" (every one that
    applies): one network per transform, those within ``pool`` of the best validation MASE kept.
    The default, "log-season+log-profile+trend": validation kept log-season and log-profile
    together on the seasonal tourism panels (their pool is 0.6-0.9 % better on tourism monthly
    than either transform alone), both log-season and trend on the yearly ones (M1, tourism), where
    log-profile is log-season's twin and is not trained, and trend alone on US employment and the
    synthetic sales panel, where log-season's networks were 40-100 % worse.
    ``ensemble``: the networks pooled in all (the kept transforms' and more seeds of them).
    ``loss``: "mase" (the pinball loss of the natural-unit forecasts divided by each series' MASE
    scale: the error MASE measures) or "transformed" (the pinball loss of the transformed target).
    ``pad``: left-pad series shorter than window + horizon; None: pad only when some series is that
    short (False refuses them).
    ``combine``: the networks' median is averaged with a statistical forecast fitted to each
    series' history when it forecasts (the quantiles move with the median, and the intervals are
    calibrated on the combination): the M4 competition's lesson that combining a learned and a
    statistical forecast beats either (Makridakis, Spiliotis and Assimakopoulos 2020). The partner
    is one of ``PARTNERS``: damped-trend Holt-Winters ("damped-ets", ``baselines.damped_ets``), the
    Theta method ("theta", :mod:`.theta_method`), their mean ("damped-ets+theta"), or the mean of
    both and seasonal naive ("damped-ets+theta+seasonal-naive": three diverse forecasts, as M4's
    "Comb" benchmark averages three); "validated" picks, per fit, the partner whose combination has
    the smallest MASE on the validation windows (``Fitted.partner`` records it); "none": the
    networks alone.
    ``validation_origins`` None: ``default_validation_origins``.

    The defaults were chosen on the M1 yearly and tourism panels (results/forecasting.md)."""

    horizon: int
    window: Optional[int] = None
    quantiles: Tuple[float, ...] = (0.1, 0.5, 0.9)
    transform: str = "log-season+log-profile+trend"
    loss: str = "mase"
    combine: str = "validated"
    hidden: int = 64
    layers: int = 1
    epochs: int = 40
    patience: int = 8
    batch_size: int = 256
    lr: float = 3e-3
    ensemble: int = 3
    pool: float = 0.1
    pad: Optional[bool] = None
    validation_origins: Optional[int] = None
    batches_per_epoch: int = 50
    seed: int = 0
    progress: bool = True
    threads: Optional[int] = None

    def check(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {self.horizon}")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window must be a positive integer, got {self.window}")
        if self.transform != "auto" and not all(t in TRANSFORMS for t in self.transform.split("+")):
            raise ValueError(
                f"transform must be 'auto', one of {', '.join(TRANSFORMS)}, or several joined by '+', "
                f"got {self.transform!r}"
            )
        if self.combine not in COMBINATIONS:
            raise ValueError(f"combine must be one of {', '.join(COMBINATIONS)}, got {self.combine!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        check_quantile_levels(self.quantiles)
        for name in ("hidden", "layers", "epochs", "patience", "batch_size", "ensemble", "batches_per_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")


LOSSES = ("mase", "transformed")
# the statistical forecasts the networks' median may be averaged with: their methods, averaged
PARTNERS = {
    "damped-ets": ("damped-ets",),
    "theta": ("theta",),
    "damped-ets+theta": ("damped-ets", "theta"),
    "damped-ets+theta+seasonal-naive": ("damped-ets", "theta", "seasonal-naive"),
}
PARTNER_METHODS = tuple(dict.fromkeys(m for methods in PARTNERS.values() for m in methods))  # each method, once
COMBINATIONS = ("validated", *PARTNERS, "none")
LEVEL_DECIMALS = 6  # quantile levels are kept to 6 decimals (so that q and 1 - q pair exactly)


def check_quantile_levels(quantiles: Sequence[float]) -> None:
    """ValueError unless every level lies strictly between 0 and 1 once kept to LEVEL_DECIMALS
    decimals (1e-9 would become the level 0: a quantile no network can forecast)."""
    bad = [q for q in quantiles if not 0 < round(float(q), LEVEL_DECIMALS) < 1]
    if bad or not quantiles:
        raise ValueError(
            f"quantiles must lie between 0.000001 and 0.999999 (levels are kept to {LEVEL_DECIMALS} decimals), "
            f"got {list(quantiles)}"
        )


def quantile_levels(quantiles: Sequence[float]) -> List[float]:
    """The sorted levels with the median added (the point forecast)."""
    return sorted(set(round(float(q), LEVEL_DECIMALS) for q in quantiles) | {0.5})


def intervals(levels: Sequence[float]) -> List[Tuple[float, float]]:
    """The symmetric pairs (q, 1 - q) among ``levels``: the intervals to calibrate."""
    return [(q, round(1 - q, LEVEL_DECIMALS)) for q in levels if q < 0.5 and round(1 - q, LEVEL_DECIMALS) in levels]


@dataclass
class Split:
    """Forecast origins per series: training and validation."""

    train: List[np.ndarray]
    valid: List[np.ndarray]


def default_validation_origins(panel: Panel, first: int, horizon: int) -> int:
    """Validation origins per series: enough for about 200 samples (they calibrate the intervals, and
    an 80 % quantile of n scores is uncertain by about sqrt(0.16 / n)), at most twice the horizon, and
    at most as many as the longest series keeps for training (its n - count - 2 horizon + 2 - first)."""
    wanted = min(math.ceil(200 / len(panel.series)), 2 * horizon)
    longest = max(len(s) for s in panel.series)
    return int(max(1, min(wanted, (longest - 2 * horizon + 2 - first) // 2)))


def split_origins(panel: Panel, window: int, horizon: int, pad: bool, validation_origins: Optional[int]) -> Split:
    """Training and validation origins (see the module docstring); series shorter than window +
    horizon are refused unless ``pad``."""
    if not pad:
        for s in panel.series:
            if len(s) < window + horizon:
                raise TableError(
                    f"series {s.id!r} (from row {s.row}) has {len(s)} values; the window ({window}) plus the horizon "
                    f"({horizon}) need {window + horizon}: give a shorter window, or pad short series (--pad)"
                )
    first = window if not pad else 2  # the first origin with enough history
    count = validation_origins or default_validation_origins(panel, first, horizon)
    train, valid = [], []
    for s in panel.series:
        n = len(s)
        held = horizon + count - 1  # the held-out values
        valid.append(np.arange(max(first, n - held), n - horizon + 1))
        train.append(np.arange(first, n - held - horizon + 1))
    longest = max(len(s) for s in panel.series)
    # with --pad every window fits; what is left to shorten is the horizon (or the window without it)
    remedy = f"a shorter horizon (the longest series has {longest} values)" if pad else "a shorter window, or --pad"
    if not any(len(v) for v in valid):
        raise TableError(f"no series is long enough for a validation window of horizon {horizon}; give {remedy}")
    if not any(len(t) for t in train):
        raise TableError(
            "no series is long enough for a training window besides its validation window; give "
            + (remedy if pad else "a shorter window, a shorter horizon, or --pad")
        )
    return Split(train, valid)


def candidate_transforms(transform: str, panel: Panel) -> List[str]:
    """The transforms ``Settings.transform`` names: "auto" is every one that applies to ``panel``,
    "a+b" is a and b; log-profile is left out beside log-season at season 1, where the two are the
    same transform (so the default trains no twin network on a yearly panel)."""
    named = [t for t in TRANSFORMS if applicable(t, panel)] if transform == "auto" else transform.split("+")
    if panel.season <= 1 and "log-season" in named and "log-profile" in named:
        named.remove("log-profile")
    return named


def default_window(horizon: int, season: int) -> int:
    """1.5 * max(horizon, season), rounded: a season and a half of history for seasonal data (the
    seasonal anchors and the last season's shape), 1.5 horizons for yearly data. Longer windows
    (2 and 3 times) were no better on the tourism panels and cost more."""
    return int(round(1.5 * max(horizon, season)))


def needs_padding(panel: Panel, window: int, horizon: int) -> bool:
    """Whether some series is shorter than window + horizon (``Settings.pad`` None pads then)."""
    return any(len(s) < window + horizon for s in panel.series)


def _set_threads(threads: Optional[int]) -> None:
    if threads:
        torch.set_num_threads(threads)


def _batches(count: int, batch_size: int, limit: int, generator: np.random.Generator):
    order = generator.permutation(count)
    for start in range(0, min(count, batch_size * limit), batch_size):
        yield order[start : start + batch_size]


def _tensors(w: Windows, index=None):
    pick = slice(None) if index is None else index
    out = [torch.from_numpy(w.steps[pick]), torch.from_numpy(w.head[pick])]
    return out + ([torch.from_numpy(w.target[pick])] if w.target is not None else [])


def run_network(net: GlobalGRU, w: Windows, batch: int = 4096) -> np.ndarray:
    """Transformed quantile forecasts [N, H, Q] of windows ``w``, sorted along Q (monotone
    rearrangement: quantiles never cross, Chernozhukov et al. 2010)."""
    net.eval()
    outs = []
    with torch.no_grad():
        for start in range(0, len(w), batch):
            steps, head = _tensors(w, slice(start, start + batch))[:2]
            outs.append(net(steps, head).numpy())
    return np.sort(np.concatenate(outs), axis=2).astype(np.float64)


PRUNE_AFTER_POOLS = 2.0  # a network this many ``pool`` margins behind its rival, given the rival's epochs, stops


def train_network(
    train: Windows,
    valid: Windows,
    levels: Sequence[float],
    settings: Settings,
    seed: int,
    label: str,
    rival: Tuple[float, int] = (math.inf, 0),
) -> Tuple[GlobalGRU, float, int]:
    """(the network at its best validation epoch, that loss, epochs run).

    ``rival``: (best validation loss, epochs run) of a network already trained on the same
    validation samples, its loss in the same units (``loss="mase"``). Once this network has run as
    many epochs (and ``patience`` at least), training stops while its best loss is more than
    ``PRUNE_AFTER_POOLS * pool`` above the rival's: a network that far behind is not pooled, and the
    epochs it would run are the fit's largest cost."""
    prune_above = rival[0] * (1 + PRUNE_AFTER_POOLS * settings.pool)
    prune_from = max(settings.patience, rival[1])
    torch.manual_seed(seed)
    generator = np.random.default_rng(seed)
    net = GlobalGRU(
        train.steps.shape[2], train.head.shape[1], train.target.shape[1], len(levels), settings.hidden, settings.layers
    )
    optimiser = torch.optim.Adam(net.parameters(), lr=settings.lr)
    level_tensor = torch.tensor(levels, dtype=torch.float32)
    valid_tensors = _tensors(valid)
    loss_of = _loss_function(train, valid, level_tensor, settings.loss)
    best, best_loss, since, epochs = copy.deepcopy(net.state_dict()), math.inf, 0, 0
    bar = None
    if settings.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.epochs, desc=label, leave=False)
    threads = ThreadTuner.for_training(chosen=settings.threads)  # fewer threads while another process holds a core
    try:
        for epoch in range(settings.epochs):
            net.train()
            for index in _batches(len(train), settings.batch_size, settings.batches_per_epoch, generator):
                with threads.batch(len(index)):
                    steps, head, target = _tensors(train, index)
                    loss = loss_of(net(steps, head), target, train, index)
                    optimiser.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    optimiser.step()
            net.eval()
            with torch.no_grad():
                valid_loss = float(loss_of(net(*valid_tensors[:2]), valid_tensors[2], valid, None))
            epochs = epoch + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(valid=f"{valid_loss:.4f}")
            if valid_loss < best_loss - 1e-6:
                best, best_loss, since = copy.deepcopy(net.state_dict()), valid_loss, 0
            else:
                since += 1
                if since >= settings.patience:
                    break
            if epochs >= prune_from and best_loss > prune_above:
                break
    finally:
        threads.restore()
    if bar is not None:
        bar.close()
    net.load_state_dict(best)
    return net, best_loss, epochs


def _loss_function(train: Windows, valid: Windows, levels: torch.Tensor, kind: str):
    """loss(outputs [B, H, Q], transformed target [B, H], windows, index) for ``Settings.loss``:
    "mase" inverts the transform (differentiably) and divides each sample's natural-unit error by
    its series' MASE scale, so training minimises the quantity MASE reports; "transformed" is the
    pinball loss of the transformed values."""
    if kind == "transformed":
        return lambda outputs, target, windows, index: pinball_loss(outputs, target, levels)
    natural = {
        id(w): torch.from_numpy(w.inverse(w.target.astype(np.float64)).astype(np.float32)) for w in (train, valid)
    }
    weight = {id(w): torch.from_numpy((1.0 / w.season_scale).astype(np.float32)) for w in (train, valid)}

    def loss(outputs, target, windows, index):
        pick = slice(None) if index is None else torch.as_tensor(index)
        forecast = windows.inverse(outputs, index)
        return pinball_loss(forecast, natural[id(windows)][pick], levels, weight[id(windows)][pick])

    return loss


def method_forecasts(panel: Panel, w: Windows, horizon: int, methods: Sequence[str]) -> Dict[str, np.ndarray]:
    """Each of ``methods`` (of ``PARTNER_METHODS``) forecasts [N, H] from each sample's origin, fitted
    to its series' values before it: "damped-ets" (``baselines.damped_ets``, on every CPU torch may
    use: :mod:`.series_pool`), "theta" (:func:`.theta_method.theta_forecasts`, every series at once)
    and "seasonal-naive" (the last season repeated, ``baselines.seasonal_naive``; the last value at
    season 1)."""
    from .baselines import damped_ets, seasonal_naive

    histories = [panel.series[int(k)].values[: int(e)] for k, e in zip(w.series, w.origin)]
    out = {}
    for method in methods:
        if method == "damped-ets":
            out[method] = forecast_each(damped_ets, histories, horizon, panel.season)
        elif method == "theta":
            out[method] = theta_forecasts(histories, horizon, panel.season)
        elif method == "seasonal-naive":
            out[method] = np.stack([seasonal_naive(h, horizon, panel.season) for h in histories])
        else:
            raise ValueError(f"methods must be among {', '.join(PARTNER_METHODS)}, got {method!r}")
    return out


def partner_forecast(partner: str, forecasts: Dict[str, np.ndarray]) -> np.ndarray:
    """The statistical forecast [N, H] of ``partner`` (a key of ``PARTNERS``): its methods' mean."""
    return np.mean([forecasts[method] for method in PARTNERS[partner]], 0)


def combined_with(y: np.ndarray, levels: List[float], statistical: np.ndarray) -> np.ndarray:
    """Quantile forecasts y [N, H, Q] whose median moves to the mean of itself and ``statistical``
    [N, H]; every quantile moves with it (the interval's width stays the networks')."""
    middle = y[:, :, levels.index(0.5)]
    return y + ((statistical - middle) / 2)[:, :, None]


def validated_partner(
    y: np.ndarray, levels: List[float], forecasts: Dict[str, np.ndarray], actual: np.ndarray, scale: np.ndarray
) -> str:
    """The partner (a key of ``PARTNERS``) whose combination with the networks' quantiles y [N, H, Q]
    has the smallest mean MASE against ``actual`` [N, H] (MASE scales ``scale`` [N]); ``forecasts``
    holds the forecasts [N, H] of the methods the candidates average, and a partner whose methods are
    not all there is not a candidate. On the development panels' validation windows this chose
    damped ETS for M1 yearly, Theta for tourism yearly (where damped ETS trails Theta by 13 %) and
    the mean of damped ETS, Theta and seasonal naive for the seasonal ones
    (results/forecasting_development.md)."""
    middle = y[:, :, levels.index(0.5)]

    def mase(partner):
        combined = (middle + partner_forecast(partner, forecasts)) / 2
        return float(np.mean(np.abs(combined - actual).mean(1) / scale))

    candidates = [partner for partner, methods in PARTNERS.items() if all(m in forecasts for m in methods)]
    if not candidates:
        raise ValueError(f"forecasts must hold the methods of one of the partners {', '.join(PARTNERS)}")
    return min(candidates, key=mase)


@dataclass
class Fitted:
    """What a fit learned, apart from the networks."""

    transforms: List[str]  # each network's target transform
    window: int
    levels: List[float]
    scaling: CovariateScaling
    corrections: Dict[str, List[float]] = field(default_factory=dict)  # "0.1-0.9" -> [H]
    validation_mase: Dict[str, float] = field(default_factory=dict)  # transform -> validation MASE
    epochs: List[int] = field(default_factory=list)
    interval_unit: str = conformal.WIDTH  # the conformal scores' unit (older files: conformal.SERIES_STEP)
    padded: bool = False  # whether series shorter than window + horizon were left-padded
    partner: Optional[str] = None  # the statistical forecast the median is averaged with (a key of PARTNERS)


class GlobalForecaster:
    """A trained global GRU forecaster. ``predict(panel)`` forecasts the ``horizon`` values after each
    series' history; ``save(path)`` and ``load(path)`` keep it in a grukit model file."""

    def __init__(self, settings: Settings, fitted: Fitted, networks: List[GlobalGRU], schema: dict):
        self.settings, self.fitted, self.networks, self.schema = settings, fitted, networks, schema

    @property
    def horizon(self) -> int:
        return self.settings.horizon

    # -- forecasting ----------------------------------------------------------------------------------
    def quantiles_at(
        self, panel: Panel, origins: List[np.ndarray], with_target: bool = False
    ) -> Tuple[np.ndarray, Windows]:
        """Natural-unit quantile forecasts [N, H, Q] from ``origins`` of each series (the median over
        networks, combined with ``fitted.partner``'s statistical forecast, conformal corrections
        applied), and the windows of the first network's transform."""
        y, w = self.network_quantiles(panel, origins, with_target)
        partner = self.fitted.partner
        if partner is not None:
            forecasts = method_forecasts(panel, w, self.horizon, PARTNERS[partner])
            y = combined_with(y, self.fitted.levels, partner_forecast(partner, forecasts))
        return self.calibrated(y, w.mase_scale), w

    def network_quantiles(
        self, panel: Panel, origins: List[np.ndarray], with_target: bool = False
    ) -> Tuple[np.ndarray, Windows]:
        """The networks' own quantile forecasts [N, H, Q] (their median, in natural units, before any
        combination or correction) from ``origins``, and the first network's windows."""
        forecasts, windows = [], {}
        for net, transform in zip(self.networks, self.fitted.transforms):
            if transform not in windows:
                windows[transform] = make_windows(
                    panel, origins, self.fitted.window, self.horizon, transform, self.fitted.scaling, with_target
                )
            forecasts.append(windows[transform].inverse(run_network(net, windows[transform])))
        return np.median(np.stack(forecasts), 0), next(iter(windows.values()))

    def calibrated(self, y: np.ndarray, scale: np.ndarray) -> np.ndarray:
        levels = self.fitted.levels
        y = y.copy()
        middle = y[:, :, levels.index(0.5)]
        for key, correction in self.fitted.corrections.items():
            lo, hi = (levels.index(float(q)) for q in key.split("-"))
            unit = conformal.unit(y[:, :, lo], y[:, :, hi], scale, self.fitted.interval_unit)
            y[:, :, lo], y[:, :, hi] = conformal.apply(y[:, :, lo], y[:, :, hi], middle, unit, np.asarray(correction))
        return y

    def read(self, data) -> Panel:
        """``data`` (a Panel, a DataFrame, a CSV or .tsf path) as a panel, read as training read it."""
        from .reading import align_static, read_panel

        panel = read_panel(data, self.schema.get("reader", {}))
        trained = self.schema.get("frequency")
        if trained and panel.frequency and not _same_frequency(trained, panel.frequency):
            raise TableError(
                f"the data's times step by {panel.frequency!r}; the model was trained on {trained!r} data (its "
                "window, horizon, season and calendar features count in those steps): forecast data of that frequency"
            )
        for kind in ("past", "future"):
            if list(getattr(panel, f"{kind}_names")) != list(self.schema[kind]):
                raise TableError(
                    f"--{kind} columns {getattr(panel, f'{kind}_names')} differ from the model's {self.schema[kind]}"
                )
        return align_static(panel, self.schema["static"])

    def predict(self, data, horizon: Optional[int] = None):
        """A DataFrame of forecasts from ``data`` (a Panel, a DataFrame, a CSV or .tsf path: each
        series' history, and with known-future covariates their rows over the horizon): one row per
        series and step ahead, with columns id, step, time, forecast (the median), q<level> for each
        quantile level (calibrated where an interval is) and lower_<P>/upper_<P> for each P %
        interval. ``time`` is the step's date, or without dates its position in the series (the
        history's values are 1 to n, the forecasts n + 1 to n + horizon). A model trained on a
        unique_id, ds, y table answers with unique_id and ds for id and time."""
        import pandas as pd

        from .reading import uses_table_convention

        panel = self.read(data)
        horizon = horizon or self.horizon
        if horizon > self.horizon:
            raise ValueError(f"horizon {horizon} is longer than the model's ({self.horizon}); train with a longer one")
        panel = self.extend_known(panel)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, in one line
            y, _ = self.quantiles_at(panel, [np.array([len(s)]) for s in panel.series])
        _check_finite_forecasts(y, panel)
        named = uses_table_convention(self.schema.get("reader", {}))
        id_name, time_name = ("unique_id", "ds") if named else ("id", "time")
        leading = (id_name, time_name, "step") if named else (id_name, "step", time_name)  # the columns' order
        rows = []
        for k, s in enumerate(panel.series):
            stamps = future_times(s.times[: len(s)] if s.times is not None else None, panel.frequency, horizon)
            if stamps is None:
                stamps = np.arange(len(s) + 1, len(s) + horizon + 1)
            for h in range(horizon):
                values = {id_name: s.id, "step": h + 1, time_name: stamps[h]}
                row = {key: values[key] for key in leading}
                row["forecast"] = y[k, h, self.fitted.levels.index(0.5)]
                for j, q in enumerate(self.fitted.levels):
                    row[f"q{q:g}"] = y[k, h, j]
                for lo, hi in intervals(self.fitted.levels):
                    percent = f"{100 * (hi - lo):g}"
                    row[f"lower_{percent}"] = y[k, h, self.fitted.levels.index(lo)]
                    row[f"upper_{percent}"] = y[k, h, self.fitted.levels.index(hi)]
                rows.append(row)
        return pd.DataFrame(rows)

    def extend_known(self, panel: Panel) -> Panel:
        """The panel with known-future rows for the horizon: calendar features are extended; future
        covariates must be in the source (one line naming the column and series if not)."""
        panel = copy.copy(panel)
        series = []
        for s in panel.series:
            missing = len(s) + self.horizon - len(s.future)
            if missing > 0:
                if panel.future_names:
                    until = s.times[len(s.future) - 1] if s.times is not None and len(s.future) else None
                    raise TableError(
                        f"--future column {panel.future_names[0]!r}: series {s.id!r} has values for "
                        f"{max(len(s.future) - len(s), 0)} of the {self.horizon} steps after its last target value"
                        + (f" (up to {str(until)[:19]})" if until is not None else "")
                        + "; the forecast needs them all: add rows with the future covariates and an empty target"
                    )
                s = copy.copy(s)
                stamps = future_times(
                    s.times[: len(s.future)] if s.times is not None else None, panel.frequency, missing
                )
                extra = (
                    calendar_features(stamps, panel.frequency)
                    if stamps is not None
                    else np.zeros((missing, s.future.shape[1]))
                )
                s.future = np.concatenate([s.future, extra.reshape(missing, s.future.shape[1])])
                if stamps is not None:
                    s.times = np.concatenate([s.times[: len(s.future) - missing], stamps])
            series.append(s)
        panel.series = series
        return panel

    def quantized(self, precision: str) -> "GlobalForecaster":
        """A copy whose networks' GRU encoders are :class:`grukit.QuantizedGRU` in ``precision``
        ("int8" or "bfloat16"; the heads stay float32): ``grukit predict --precision``. Inference only."""
        from ..quantized import quantize_grus

        networks = [quantize_grus(copy.deepcopy(net), precision).eval() for net in self.networks]
        return GlobalForecaster(self.settings, self.fitted, networks, self.schema)

    # -- files ----------------------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "task": TASK,
            "settings": asdict(self.settings),
            "fitted": {
                **{k: v for k, v in asdict(self.fitted).items() if k != "scaling"},
                "scaling": self.fitted.scaling.as_dict(),
            },
            "schema": self.schema,
            "networks": [net.state_dict() for net in self.networks],
        }

    def save(self, path: str) -> None:
        from ..files import save_atomically

        save_atomically(self.state(), path)

    @staticmethod
    def from_state(saved: dict) -> "GlobalForecaster":
        """The forecaster :meth:`state` saved; ValueError if ``saved`` is incomplete or damaged (a
        missing or renamed key, a value of the wrong kind, weights of other sizes)."""
        from ..files import first_line

        try:
            return GlobalForecaster._from_state(saved)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, IndexError) as exc:
            raise ValueError(
                f"not a complete grukit global forecasting model ({type(exc).__name__}: {first_line(exc)})"
            ) from None

    @staticmethod
    def _from_state(saved: dict) -> "GlobalForecaster":
        from ..files import check_finite_weights

        # files saved before the combination was a setting were calibrated on the networks alone
        saved_settings = {"combine": "none", **saved["settings"]}
        settings = Settings(**{**saved_settings, "quantiles": tuple(saved["settings"]["quantiles"])})
        fitted_state = dict(saved["fitted"])
        # files saved before the partner was recorded combined with damped ETS whenever they combined
        fitted_state.setdefault("partner", None if settings.combine == "none" else "damped-ets")
        if fitted_state["partner"] is not None and fitted_state["partner"] not in PARTNERS:
            raise ValueError(f"its partner {fitted_state['partner']!r} is not one of {', '.join(PARTNERS)}")
        fitted_state.setdefault("interval_unit", conformal.SERIES_STEP)  # saved before the unit was recorded
        scaling = CovariateScaling.from_dict(fitted_state.pop("scaling"))
        fitted = Fitted(scaling=scaling, **fitted_state)
        step_features, head_features = saved["schema"]["step_features"], saved["schema"]["head_features"]
        networks = []
        for state in saved["networks"]:
            net = GlobalGRU(
                step_features, head_features, settings.horizon, len(fitted.levels), settings.hidden, settings.layers
            )
            check_finite_weights(state, "a network's weights")
            net.load_state_dict(state)
            networks.append(net)
        numbers = [scaling.past, scaling.future, scaling.static, scaling.log_scale]
        numbers += [np.asarray(c, np.float64) for c in fitted.corrections.values()]
        if not all(np.isfinite(n).all() for n in numbers):
            raise ValueError("its covariate scaling or interval corrections hold NaN or infinite values")
        return GlobalForecaster(settings, fitted, networks, saved["schema"])


def _check_finite_forecasts(y: np.ndarray, panel: Panel) -> None:
    """TableError naming the first series whose forecasts y [N, H, Q] are not finite: its history is
    finite (the readers refuse NaN, inf and values beyond float32's range), but values spanning many
    orders of magnitude can overflow the transforms' differences and scales, and so can a model file
    whose stored numbers were damaged into huge ones."""
    bad = np.flatnonzero(~np.isfinite(y).reshape(len(y), -1).all(1))
    if len(bad):
        s = panel.series[int(bad[0])]
        values = np.abs(np.asarray(s.values, np.float64))
        raise TableError(
            f"series {s.id!r}: its forecasts overflow (its values reach {values.max():.3g} in magnitude): rescale "
            "the series if that is extreme, else the model file may be damaged"
            + (f" ({len(bad)} series in all)" if len(bad) > 1 else "")
        )


def _same_frequency(a: str, b: str) -> bool:
    """Whether pandas frequency strings ``a`` and ``b`` name the same step ("D" and "1D" do)."""
    from pandas.tseries.frequencies import to_offset

    try:
        return to_offset(a) == to_offset(b)
    except ValueError:
        return a == b


def load(path: str) -> GlobalForecaster:
    """A forecaster saved by :meth:`GlobalForecaster.save` (read with ``weights_only``: no code runs)."""
    from ..files import load_tensors

    saved = load_tensors(path, "forecasting model file")
    if not isinstance(saved, dict) or saved.get("task") != TASK:
        raise ValueError(f"{path!r} is not a grukit global forecasting model (make one with `grukit forecast`)")
    try:
        return GlobalForecaster.from_state(saved)
    except ValueError as exc:
        raise ValueError(f"{path!r} is {exc}") from None


def _check_memory(panel: Panel, split: Split, window: int, settings: Settings, transforms: int, pad: bool) -> None:
    """Refuse, before any window is made, a run whose windows or network cannot fit in memory
    (``--window 100000 --pad`` would grow past 5 GB and end in a MemoryError traceback)."""
    from ..memory_budget import check_fits, check_gru_training, gru_activation_bytes

    check_gru_training(settings.hidden, settings.layers)
    training = sum(len(o) for o in split.train)
    samples = training + sum(len(o) for o in split.valid)
    step_features, head_features = feature_sizes(panel, settings.horizon)
    values = samples * (window * step_features + head_features + settings.horizon)
    # each transform's windows are kept in float32 (4 bytes a value) while the next is made, which
    # takes float64 parts and their concatenation (16 bytes a value)
    windows = values * (4 * transforms + 16)
    batch = min(settings.batch_size, max(1, training))
    activations = gru_activation_bytes(batch, window, settings.hidden, settings.layers)
    check_fits(
        f"--window {window}" + (" --pad" if pad else ""),
        windows + activations,
        f"{windows / 1e9:.1f} GB for {samples:,} windows of {window} steps x {step_features} features and "
        f"{transforms} transform{'s' if transforms > 1 else ''}, {activations / 1e9:.1f} GB for training on "
        f"batches of {batch}",
    )


def _validation_mase(net_outputs: np.ndarray, valid: Windows, levels: List[float]) -> float:
    y = valid.inverse(net_outputs[:, :, levels.index(0.5)])
    actual = valid.inverse(valid.target.astype(np.float64))
    return float(np.mean(np.abs(y - actual).mean(1) / valid.mase_scale))


def fit(panel: Panel, settings: Settings, schema: Optional[dict] = None) -> GlobalForecaster:
    """Train a :class:`GlobalForecaster` on ``panel`` (see the module docstring)."""
    settings.check()
    _set_threads(settings.threads)
    window = settings.window or default_window(settings.horizon, panel.season)
    pad = needs_padding(panel, window, settings.horizon) if settings.pad is None else settings.pad
    levels = quantile_levels(settings.quantiles)
    split = split_origins(panel, window, settings.horizon, pad, settings.validation_origins)
    scaling = CovariateScaling.fit(panel)
    candidates = candidate_transforms(settings.transform, panel)
    _check_memory(panel, split, window, settings, len(candidates), pad)
    for transform in candidates:
        if not applicable(transform, panel):
            raise ValueError(f"transform {transform!r} needs every value positive; the series hold zeros or negatives")
    results = {}
    rival = (math.inf, 0)  # the best network so far: (loss, epochs); losses compare across transforms only as MASE
    for transform in candidates:
        train = make_windows(panel, split.train, window, settings.horizon, transform, scaling)
        valid = make_windows(panel, split.valid, window, settings.horizon, transform, scaling)
        net, loss, epochs = train_network(train, valid, levels, settings, settings.seed, f"{transform}", rival)
        if settings.loss == "mase" and loss < rival[0]:
            rival = (loss, epochs)
        results[transform] = (_validation_mase(run_network(net, valid), valid, levels), net, valid, train, epochs)
    best = min(r[0] for r in results.values())
    pooled = sorted((t for t in results if results[t][0] <= (1 + settings.pool) * best), key=lambda t: results[t][0])
    networks = [results[t][1] for t in pooled]
    transforms, all_epochs = list(pooled), [results[t][4] for t in pooled]
    # the ensemble's other members: more seeds of the kept transforms, the best first, in turn
    for member in range(len(pooled), settings.ensemble):
        transform = pooled[(member - len(pooled)) % len(pooled)]
        _, _, valid, train, _ = results[transform]
        extra, _, epochs = train_network(
            train, valid, levels, settings, settings.seed + transforms.count(transform), f"{transform} {member + 1}"
        )
        networks.append(extra)
        transforms.append(transform)
        all_epochs.append(epochs)
    fitted = Fitted(
        transforms, window, levels, scaling, {}, {t: r[0] for t, r in results.items()}, all_epochs, padded=pad
    )
    sizes = feature_sizes(panel, settings.horizon)
    schema = {**(schema or {}), "step_features": sizes[0], "head_features": sizes[1]}
    schema.update(
        past=panel.past_names,
        future=panel.future_names,
        static=panel.static_names,
        frequency=panel.frequency,
        season=panel.season,
    )
    forecaster = GlobalForecaster(settings, fitted, networks, schema)
    y, valid = forecaster.network_quantiles(panel, split.valid, with_target=True)
    actual = valid.inverse(valid.target.astype(np.float64))
    # the combination's partner, then conformal calibration of the combined forecasts on the validation samples
    if settings.combine != "none":
        methods = PARTNER_METHODS if settings.combine == "validated" else PARTNERS[settings.combine]
        forecasts = method_forecasts(panel, valid, settings.horizon, methods)
        if settings.combine == "validated":
            fitted.partner = validated_partner(y, levels, forecasts, actual, valid.mase_scale)
        else:
            fitted.partner = settings.combine
        y = combined_with(y, levels, partner_forecast(fitted.partner, forecasts))
    for lo, hi in intervals(levels):
        lower, upper = y[:, :, levels.index(lo)], y[:, :, levels.index(hi)]
        unit = conformal.unit(lower, upper, valid.mase_scale, fitted.interval_unit)
        correction = conformal.calibrate(actual, lower, upper, unit, alpha=1 - (hi - lo))
        fitted.corrections[f"{lo:g}-{hi:g}"] = [float(c) for c in correction]
    return forecaster
