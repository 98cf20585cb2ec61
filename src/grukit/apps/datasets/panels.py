"""Multi-series forecasting datasets that ship inside installed packages (nothing is downloaded).

- M1 yearly (Makridakis et al. 1982), as the Monash archive's ``.tsf`` (Godahewa et al. 2021):
  181 yearly series of 15 to 58 values, horizon 6; in aeon's data folder.
- US employment by industry, 2006-2015 (vega_datasets' ``us-employment.csv``, from the US Bureau
  of Labor Statistics): a wide table, one monthly column per industry (22 series; the derived
  ``nonfarm_change`` column is dropped).
- Monthly closing prices of five technology stocks, 2000-2010 (vega_datasets' ``stocks.csv``): a
  long table (symbol, date, price) whose series start at different dates (GOOG in 2004).
"""

from __future__ import annotations

from pathlib import Path

from ._packages import package_file


def m1_yearly_path() -> Path:
    return package_file(
        "aeon", "datasets/data/m1_yearly_dataset/m1_yearly_dataset.tsf", "pip install --no-deps aeon==1.6.0"
    )


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
