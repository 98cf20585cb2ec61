"""What every task offers the command line: one class, one registry (``grukit.apps.tasks.TASKS``).

A task trains a model on its packaged data and reports the held-out metric next to its
baselines; a saved model file (``grukit train NAME --output FILE``) can then be used in
the ways the task supports. The CLI calls these methods without knowing which task it
holds; a task that lacks a use says so in one line (:class:`NotOffered`), naming what
it offers instead.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch


class NotOffered(ValueError):
    """A task model asked for a use its task does not have (predict, generate, export ...)."""


class Task:
    """One application: its name, its training, and what a saved model of it can do.

    Args:
        train: ``train(options) -> report`` of the task's module.
        load: ``load_model(saved) -> model`` of the task's module.

    Subclasses set ``name`` and ``how_to_use`` (one sentence: what its models are for,
    used in every :class:`NotOffered` message) and override the uses they support.
    """

    name: str = ""
    how_to_use: str = ""
    takes_regularisers = False  # its GRU can use --layer-norm, --zoneout, --recurrent-dropout
    takes_csv = False  # it trains on the user's file (--csv and the column options)

    def _not_offered(self, what: str) -> NotOffered:
        return NotOffered(f"a {self.name} model does not {what}; {self.how_to_use}")

    def __init__(self, train: Callable[..., Dict], load: Callable[[Dict], torch.nn.Module]):
        self._train, self._load = train, load

    # ---- every task
    def train(self, options) -> Dict:
        """Train on the packaged data; the report (metric, baselines, history, ``model_file``)."""
        return self._train(options)

    def load(self, saved: Dict) -> torch.nn.Module:
        """The trained model (evaluation mode) from a model file's contents."""
        return self._load(saved)

    # ---- what the commands that read a model file call (grukit.apps.model_kinds dispatches here)
    def run_predict(self, args, saved: Dict) -> int:
        """``grukit predict MODEL ...``: print this model's predictions for the command's arguments
        (texts, ``--file``, ``--days``, ``--csv``, ``--precision``); the exit status."""
        import os

        if args.output or args.horizon:
            raise ValueError("--output and --horizon are for global forecasting models (from `grukit forecast`)")
        if args.precision:
            saved = self.quantized_file(saved, args.precision)
        texts = list(args.text)
        if args.file:
            if not os.path.exists(args.file):
                raise ValueError(f"--file {args.file!r}: no such file")
            if os.path.isdir(args.file):
                raise ValueError(f"--file {args.file!r} is a folder; give a text file, one input per line")
            with open(args.file, encoding="utf-8") as f:
                texts += [line.strip() for line in f if line.strip()]
        if args.csv and not self.takes_csv:
            raise ValueError(f"--csv: a {self.name} model does not read CSV files; {self.how_to_use}")
        for line in self.predict(saved, texts, args.days, **({"csv": args.csv} if args.csv else {})):
            print(line)
        return 0

    def quantized_file(self, saved: Dict, precision: str) -> Dict:
        """The model file's contents with its GRUs in ``precision`` (``grukit quantize``)."""
        from .model_files import quantized_model_file

        return quantized_model_file(saved, self.load(saved), precision)

    # ---- uses a task may offer
    def predict(self, saved: Dict, texts: Sequence[str], days: int, csv: Optional[str] = None) -> List[str]:
        """``grukit predict``: the lines to print for ``texts`` (classifiers), ``days`` (forecasts)
        or the recordings or newer rows of ``csv`` (tasks that take a CSV)."""
        raise self._not_offered("predict from the command line")

    def evaluate(self, saved: Dict, csv: str, columns: Dict[str, Optional[str]]) -> Dict:
        """``grukit evaluate``: the model scored on the labelled file ``csv``
        (:func:`~.evaluation.classification_report`); ``columns`` may name the file's columns
        (``text``, ``label``, ``encoding``) where they differ from the training file's."""
        raise self._not_offered(
            "evaluate on a labelled file (classify-text and classify-series models do; "
            "`grukit train` reports the held-out metric of every task)"
        )

    def generate(
        self,
        saved: Dict,
        prompt: Optional[str],
        length: Optional[int],
        temperature: float,
        seed: int,
        output: Optional[str],
    ) -> str:
        """``grukit generate``: what to print after sampling (and writing ``output``, if the task writes files)."""
        raise self._not_offered("generate")

    def translate(self, saved: Dict, texts: Sequence[str], beam: int, show: int) -> List[str]:
        """``grukit translate``: the lines to print."""
        raise self._not_offered("translate")

    def to_onnx(self, saved: Dict, path: str) -> str:
        """``grukit export``: write the whole model (embedding, GRU, head) as ONNX; a one-line description."""
        raise NotOffered(
            f"ONNX export of {self.name!r} task models is not offered (sentiment, weather, stocks are); "
            "export its GRU with grukit.export.to_onnx(model.gru, path)"
        )

    def gates_input(
        self, saved: Dict, text: Sequence[str], days: int
    ) -> Tuple[torch.nn.Module, torch.Tensor, List[str]]:
        """``grukit gates``: (model, x [T, I] the GRU's input, one label per step)."""
        raise self._not_offered("show its gates (sentiment, weather and stocks models do)")
