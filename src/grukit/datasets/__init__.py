"""Offline loaders for datasets that ship inside installable packages (nothing downloads).

Each loader names the package to install when it is missing.
"""

from .weather import SeriesSplit, seattle_weather

__all__ = ["SeriesSplit", "seattle_weather"]
