"""What a user runs rather than imports: the command line, the tasks, their datasets, the
RNN/LSTM/GRU comparison, gate plots.

Everything here imports the library core (``grukit.nn``, ``grukit.functional``,
``grukit.export`` ...); nothing in the core imports this package, so ``import grukit``
needs none of the applications' dependencies (tqdm, pandas, music21, matplotlib).
"""

from .own_data import classify_series, classify_text, forecast

__all__ = ["classify_series", "classify_text", "forecast"]
