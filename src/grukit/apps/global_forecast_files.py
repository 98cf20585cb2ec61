"""The model files of ``grukit forecast`` in the table of model kinds (:mod:`.model_kinds`): what the
commands that read model files may do with one."""

from __future__ import annotations

from .forecast_commands import predict_global
from .tasks.task import NotOffered, Task


class GlobalForecastFiles(Task):
    """What a model file from ``grukit forecast`` offers the commands that read model files: predict (with
    ``--precision``), and nothing else; each refusal names what to run instead."""

    name = "global forecasting"
    how_to_use = "forecast with `grukit predict MODEL --csv FILE [--precision int8]`, score with `grukit backtest`"

    def _not_offered(self, what: str) -> NotOffered:
        return NotOffered(f"a global forecasting model (from grukit forecast) does not {what}; {self.how_to_use}")

    def __init__(self) -> None:
        super().__init__(train=self._refuse_training, load=self._load)

    def _refuse_training(self, options):
        raise self._not_offered("train through `grukit train`")

    def _load(self, saved: dict):
        raise self._not_offered("load as a task model")

    def run_predict(self, args, saved: dict) -> int:
        return predict_global(args, saved)

    def quantized_file(self, saved: dict, precision: str) -> dict:
        raise NotOffered(
            "a global forecasting model (from grukit forecast) is quantized when it runs, not into a file: "
            f"`grukit predict MODEL --csv FILE --precision {precision}`"
        )

    def evaluate(self, saved, csv, columns):
        raise self._not_offered("evaluate on a labelled file")

    def to_onnx(self, saved, path):
        raise self._not_offered("export to ONNX")
