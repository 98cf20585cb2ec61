"""What a user runs rather than imports: the command line, the tasks, their datasets, the
RNN/LSTM/GRU comparison, gate plots.

Everything here imports the library core (``grukit.nn``, ``grukit.functional``,
``grukit.export`` ...); nothing in the core imports this package, so ``import grukit``
needs none of the applications' dependencies (tqdm, pandas, music21, matplotlib).
"""


def __getattr__(name: str):  # imported on first use (PEP 562): the command starts without torch
    if name in __all__:
        from . import own_data

        return getattr(own_data, name)
    raise AttributeError(f"module 'grukit.apps' has no attribute {name!r}")


__all__ = ["classify_series", "classify_text"]
