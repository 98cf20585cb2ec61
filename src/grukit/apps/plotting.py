"""matplotlib for the applications' figures, on a file-only backend."""

from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend, or an ImportError saying what to install."""
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install grukit[plots] (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
