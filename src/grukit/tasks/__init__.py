"""The seed notes' applications, each a small module: data, model, training, baselines, prediction.

``TASKS`` maps a task name (``grukit train NAME``) to its module; every module has
``train(options) -> report`` and ``predict(saved, ...)``.
"""

from . import classify, forecast, music, sentiment, textgen, translate

TASKS = {"sentiment": sentiment, "weather": forecast, "stocks": forecast, "speech": classify, "activity": classify,
         "textgen": textgen, "music": music,
         "translate": translate}
