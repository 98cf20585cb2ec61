"""The ``--fill`` choices of every command that reads a CSV file, one set (:mod:`.table` applies them).

Kept apart from the reader so that the command line's parser names them without importing numpy or
pandas (the ``grukit`` command answers Ctrl-C during its imports only once its parser has run).
"""

FILL_POLICIES = ("refuse", "drop", "ffill", "interpolate", "zero")
FILL_HELP = (
    "missing values: refuse them (default), drop their rows (not in a panel), carry the last value forward, "
    "interpolate, or zero"
)
