"""The tasks' names, one line each, and their training defaults, without importing a task.

``grukit --help`` and ``grukit train --help`` read this table; importing the tasks themselves
(torch, pandas, the data readers) takes seconds, and a help screen should not wait for them.
Each task's module takes its defaults from here, so the help shows what training uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict


@dataclass(frozen=True)
class TaskDefaults:
    """What ``grukit train NAME`` trains with when no option says otherwise.

    Attributes:
        summary: one line: the data, and what the model predicts.
        epochs, hidden, batch_size, lr: --epochs, --hidden (GRU units), --batch-size, --lr (Adam).
    """

    summary: str
    epochs: int
    hidden: int
    batch_size: int
    lr: float


CATALOG: Dict[str, TaskDefaults] = {
    "sentiment": TaskDefaults("Rotten Tomatoes review snippets -> positive or negative", 12, 64, 64, 3e-3),
    "weather": TaskDefaults("Seattle's daily maximum temperature -> the next day's", 40, 50, 32, 1e-3),
    "stocks": TaskDefaults("MSFT's daily returns -> the next day's close", 15, 50, 64, 1e-3),
    "speech": TaskDefaults("Japanese Vowels, 12 cepstral channels -> which of 9 speakers", 60, 64, 16, 3e-3),
    "activity": TaskDefaults("BasicMotions, 6 smartwatch channels -> one of 4 activities", 60, 32, 8, 3e-3),
    "textgen": TaskDefaults("Shakespeare's plays, character by character -> the next character", 8, 256, 64, 3e-3),
    "music": TaskDefaults("Bach chorale melodies, note by note -> the next note and its length", 30, 128, 32, 3e-3),
    "translate": TaskDefaults("English number words -> French (Cho et al. 2014's encoder-decoder)", 12, 128, 64, 3e-3),
    "classify-text": TaskDefaults("your CSV (--csv, --text, --label): texts -> their labels", 12, 64, 64, 3e-3),
    "classify-series": TaskDefaults(
        "your CSV or .ts file (--csv, --label): recordings -> their labels", 60, 64, 16, 3e-3
    ),
}


def task_list() -> str:
    """The tasks, a line each with their defaults: the epilog of ``grukit train --help``."""
    width = max(map(len, CATALOG))
    lines = ["tasks (defaults: epochs, GRU units, batch size, learning rate):"]
    for name, task in CATALOG.items():
        lines.append(f"  {name:<{width}}  {task.summary}")
        lines.append(
            f"  {'':<{width}}  --epochs {task.epochs} --hidden {task.hidden} --batch-size {task.batch_size} "
            f"--lr {task.lr:g}"
        )
    return "\n".join(lines)
