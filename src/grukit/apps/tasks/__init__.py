"""The applications of a GRU that the study notes list, each a small module: data, model,
training, baselines, and what a saved model can do.

``TASKS`` maps a task name (``grukit train NAME``) to its :class:`~grukit.apps.tasks.task.Task`
object; the command line looks tasks up here and never names one. The task modules import
torch and their data readers (seconds), so they load on first use of ``TASKS`` (PEP 562): the
command's parser reads only :mod:`.catalog` (names, one line each, defaults).
"""

from typing import TYPE_CHECKING, Dict

if TYPE_CHECKING:
    from .task import NotOffered, Task

    TASKS: Dict[str, Task]


def _registry() -> Dict[str, "Task"]:
    from . import classify, csv_series, csv_text, forecast, music, sentiment, textgen, translate
    from .catalog import CATALOG

    tasks = {
        task.name: task
        for task in [
            sentiment.TASK,
            *forecast.TASKS,
            *classify.TASKS,
            textgen.TASK,
            music.TASK,
            translate.TASK,
            csv_text.TASK,
            csv_series.TASK,
        ]
    }
    if list(tasks) != list(CATALOG):  # the help lists CATALOG: the two must name the same tasks
        raise RuntimeError(f"the task modules {list(tasks)} and the catalog {list(CATALOG)} differ")
    return tasks


def __getattr__(name: str):
    if name == "TASKS":
        globals()["TASKS"] = tasks = _registry()
        return tasks
    if name in ("Task", "NotOffered"):
        from . import task

        return getattr(task, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TASKS", "Task", "NotOffered"]
