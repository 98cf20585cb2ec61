"""``grukit forecast`` (train a global model on many series), ``grukit backtest`` (rolling-origin
evaluation against the baselines) and ``grukit predict`` for a global model (forecasts as CSV or JSON)."""

from __future__ import annotations

import argparse
import json
import sys

from .arguments import add_reading_arguments, check_writable_outputs, non_negative_int, positive_float, positive_int

# "auto" and windows.TRANSFORMS, forecaster.COMBINATIONS and LOSSES, written out so that the parser does
# not import numpy (a test checks that they agree). The model's defaults are Settings' own: an option
# left out is not passed on.
TRANSFORM_CHOICES = ("auto", "log-season", "log-profile", "diff", "log-diff", "trend", "level", "mean")
COMBINE_CHOICES = ("validated", "damped-ets", "theta", "damped-ets+theta", "damped-ets+theta+seasonal-naive", "none")
LOSS_CHOICES = ("mase", "transformed")


def transform_list(text: str) -> str:
    """--transform's value: "auto", or transforms joined by "+" (argparse.ArgumentTypeError otherwise)."""
    parts = text.split("+")
    if text != "auto" and not all(part in TRANSFORM_CHOICES[1:] for part in parts):
        raise argparse.ArgumentTypeError(
            f"expected auto, one of {', '.join(TRANSFORM_CHOICES[1:])}, or several joined by +; got {text!r}"
        )
    return text


def _columns(text):
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


def _quantiles(text: str):
    try:
        levels = tuple(float(q) for q in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected levels between 0 and 1 separated by commas, got {text!r}") from None
    if any(not 0 < round(q, 6) < 1 for q in levels):  # forecaster.LEVEL_DECIMALS: kept to 6 decimals
        raise argparse.ArgumentTypeError(f"every level must lie between 0.000001 and 0.999999, got {text!r}")
    return levels


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("the series")
    data.add_argument("--csv", required=True, help="a CSV file (long or wide) or a Monash .tsf file")
    data.add_argument("--id", help="long format: the column naming each series")
    data.add_argument("--time", help="the time column (dates); the frequency is inferred from it")
    data.add_argument("--target", help="long format: the column to forecast")
    data.add_argument("--targets", help="wide format: the columns to forecast, A,B,C (default: every numeric one)")
    data.add_argument("--past", help="past-only covariates, A,B (long format)")
    data.add_argument("--future", help="known-future covariates, A,B: rows after a series' last target hold them")
    data.add_argument("--static", help="static covariates, A,B: one value per series (long format)")
    add_reading_arguments(data)


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    model = p.add_argument_group("the model")
    model.add_argument("--horizon", type=positive_int, help="steps forecast at once (default: a .tsf file's)")
    model.add_argument(
        "--window", type=positive_int, help="steps read per forecast (default 1.5 * max(horizon, season))"
    )
    model.add_argument(
        "--quantiles", type=_quantiles, default=(0.1, 0.5, 0.9), help="quantile levels (default 0.1,0.5,0.9)"
    )
    model.add_argument(
        "--transform",
        type=transform_list,
        help="target transform, or several joined by + (default log-season+log-profile+trend: a network for each "
        "that applies, those within "
        f"10 %% of the best validation MASE pooled); one of {', '.join(TRANSFORM_CHOICES)}",
    )
    model.add_argument(
        "--combine",
        choices=COMBINE_CHOICES,
        help="average the networks' median with a statistical forecast: damped-trend Holt-Winters, Theta, their mean, "
        "or the mean of both and seasonal naive; validated (the default) picks the one whose combination validates "
        "best; none: the networks alone (needs statsmodels)",
    )
    model.add_argument(
        "--loss", choices=LOSS_CHOICES, help="train on the MASE-scaled natural-unit error (default mase) or transformed"
    )
    model.add_argument("--hidden", type=positive_int, help="GRU units (default 64)")
    model.add_argument("--layers", type=positive_int, help="GRU layers (default 1)")
    model.add_argument("--epochs", type=positive_int, help="most training epochs (default 40)")
    model.add_argument("--patience", type=positive_int, help="early-stopping patience (default 8)")
    model.add_argument("--lr", type=positive_float, help="adam learning rate (default 0.003)")
    model.add_argument(
        "--ensemble",
        type=positive_int,
        help="networks pooled in all: the kept transforms' and other seeds of them (default 3)",
    )
    model.add_argument(
        "--pad",
        action=argparse.BooleanOptionalAction,
        help="left-pad series shorter than window + horizon (default: only when some series is that short; "
        "--no-pad refuses them)",
    )
    model.add_argument("--seed", type=int, help="random seed (default 0)")
    model.add_argument("--quiet", action="store_true", help="no progress bars")


def _read(args):
    from ..forecasting import reading

    spec = reading.reader(
        id=args.id,
        time=args.time,
        target=args.target,
        targets=_columns(args.targets),
        past=_columns(args.past),
        future=_columns(args.future),
        static=_columns(args.static),
        fill=args.fill,
        encoding=args.encoding,
    )
    return reading.read_panel(args.csv, spec), spec


def _settings(args, panel_horizon):
    from ..forecasting.forecaster import Settings

    horizon = args.horizon or panel_horizon
    if not horizon:
        raise ValueError("--horizon N is needed: the steps to forecast (a .tsf file may give it in its header)")
    names = ("window", "transform", "combine", "loss", "hidden", "layers", "epochs", "patience", "lr", "ensemble")
    chosen = {name: getattr(args, name) for name in names + ("pad", "seed") if getattr(args, name) is not None}
    return Settings(horizon=horizon, quantiles=args.quantiles, progress=not args.quiet, **chosen)


def run_forecast(args) -> int:
    from ..files import write_json
    from ..forecasting.forecaster import fit
    from .tasks.model_files import save_failure

    check_writable_outputs(args, "--output", "--json")
    panel, spec = _read(args)
    settings = _settings(args, panel.horizon)
    model = fit(panel, settings, {"reader": spec})
    report = {
        "series": len(panel.series),
        "frequency": panel.frequency,
        "horizon": settings.horizon,
        "window": model.fitted.window,
        "transforms pooled": sorted(set(model.fitted.transforms)),
        "validation MASE by transform": {k: round(v, 4) for k, v in model.fitted.validation_mase.items()},
        "epochs": model.fitted.epochs,
        "interval corrections": model.fitted.corrections,
    }
    print(f"grukit forecast: a global GRU over {len(panel.series)} series, horizon {settings.horizon}")
    for key, value in report.items():
        print(f"  {key}: {value}")
    save_error = None
    if args.output:
        try:
            model.save(args.output)
            print(f"  saved the model to {args.output} (forecast with: grukit predict {args.output} --csv FILE)")
        except (OSError, ValueError) as exc:  # a full disk, a folder gone...: the trained model is kept elsewhere
            save_error = save_failure(args.output, exc, model.state(), "global-forecast")
    if args.json:
        write_json(args.json, report)
    if save_error:
        print(f"grukit forecast: error: {save_error}", file=sys.stderr)
        return 2
    return 0


def run_backtest(args) -> int:
    from ..files import write_json
    from ..forecasting.backtesting import backtest, plot
    from ..forecasting.baselines import BASELINES, STATISTICAL

    check_writable_outputs(args, "--json", "--plot")
    panel, _ = _read(args)
    settings = _settings(args, panel.horizon)
    baselines = _columns(args.baselines) if args.baselines is not None else list(BASELINES)
    if args.baselines is None:
        try:
            import statsmodels  # noqa: F401
        except ImportError:
            baselines = [b for b in baselines if b not in STATISTICAL]
            print("grukit backtest: statsmodels is not installed: ETS and Theta left out", file=sys.stderr)
    result = backtest(panel, settings, args.cutoffs, args.step, baselines, args.season)
    print(
        f"grukit backtest: {len(panel.series)} series, {args.cutoffs} cut-offs {args.step} apart, horizon "
        f"{settings.horizon}, season {result.season}; the model trained once in {result.train_seconds:.1f} s "
        f"(transforms {', '.join(result.transforms)}), then forecast every cut-off in "
        f"{result.seconds['grukit GRU']:.2f} s"
    )
    print(result.table())
    if args.json:
        write_json(args.json, result.to_json())
        print(f"  wrote {args.json}")
    if args.plot:
        plot(result, panel, args.plot)
        print(f"  wrote {args.plot}")
    return 0


def predict_global(args, saved: dict) -> int:
    """``grukit predict MODEL --csv FILE`` for a global forecasting model."""
    from ..forecasting.forecaster import GlobalForecaster

    if not args.csv:
        raise ValueError("--csv FILE is needed: the series' history to forecast from")
    check_writable_outputs(args, "--output")
    output = getattr(args, "output", None)
    try:
        model = GlobalForecaster.from_state(saved)
    except ValueError as exc:
        raise ValueError(f"{args.model!r} is {exc}") from None
    if getattr(args, "precision", None):
        model = model.quantized(args.precision)
    horizon = getattr(args, "horizon", None)
    frame = model.predict(args.csv, horizon)
    if not output:
        print(frame.to_string(index=False))
        return 0
    from ..files import write_atomically, write_json

    if output.endswith(".json"):
        write_json(output, json.loads(frame.to_json(orient="records", date_format="iso")))
    else:
        write_atomically(output, lambda temporary: frame.to_csv(temporary, index=False))
    print(f"grukit predict: {len(frame)} forecasts ({frame['id'].nunique()} series) written to {output}")
    return 0


def add_commands(sub) -> None:
    forecast = sub.add_parser(
        "forecast", help="train one global GRU on many series (long, wide or .tsf): quantiles and conformal intervals"
    )
    add_data_arguments(forecast)
    add_model_arguments(forecast)
    forecast.add_argument("--output", help="save the model here (then: grukit predict MODEL --csv FILE)")
    forecast.add_argument("--json", help="also write the training report to this JSON file")
    forecast.set_defaults(run=run_forecast)
    back = sub.add_parser(
        "backtest", help="rolling-origin evaluation of the global GRU against naive, drift, ETS and Theta"
    )
    add_data_arguments(back)
    add_model_arguments(back)
    back.add_argument("--cutoffs", type=positive_int, default=10, help="forecast origins per series (default 10)")
    back.add_argument("--step", type=positive_int, default=1, help="steps between cut-offs (default 1)")
    back.add_argument(
        "--season", type=non_negative_int, help="season length for MASE and seasonal naive (default: the frequency's)"
    )
    back.add_argument("--baselines", help="baselines, comma-separated (default: naive,seasonal naive,drift,ETS,Theta)")
    back.add_argument("--json", help="write overall and per-series scores to this JSON file")
    back.add_argument("--plot", help="write a PNG of a few series with forecasts and intervals")
    back.set_defaults(run=run_backtest)
