"""``grukit train classify-text --csv FILE --text COL --label COL``: classify your own texts.

The rows are shuffled (seed 0) and split 70 % train, 15 % validation, 15 % test; the
vocabulary (the 20,000 most frequent words, any script) comes from the training split only.
Model: the sentiment task's Embedding(vocab, 64) -> GRU -> Dense(classes), each text read as a
packed sequence (no padding steps), softmax cross-entropy. Metric: test accuracy.
Baselines: the majority class of the training split, and a bag-of-words logistic regression.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ...forecasting.table import TableError, class_labels, fill_missing, read_table
from ..datasets.reviews import encode, tokenize_any_language
from .bag_of_words import bag_of_words_accuracy
from .catalog import CATALOG
from .evaluation import classification_report
from .model_files import finite_outputs, load_weights, model_file
from .options import Options, saved_reading_options
from .sentiment import SentimentModel, SentimentTask, text_model_graph
from .training import fit

VOCABULARY = 20_000
MAX_WORDS = 200
DEFAULTS = CATALOG["classify-text"]


def read_texts(source, options: Options):
    """(texts, labels as strings) of the --text and --label columns."""
    if not options.text or not options.label:
        raise TableError("the classify-text task needs --text COL and --label COL")
    named = {"--text": options.text, "--label": options.label}
    frame = read_table(source, named, options.encoding)
    flags = {column: flag for flag, column in named.items()}
    frame = fill_missing(frame, [], list(dict.fromkeys(named.values())), options.fill, source, flags)
    return frame[options.text].astype(str).tolist(), frame[options.label].astype(str).tolist()


def train_frame(source, options: Options) -> Dict:
    """Train on ``source`` (a CSV path or a pandas DataFrame); the report, with ``model_file``."""
    texts, labels = read_texts(source, options)
    classes = class_labels(labels, "--label", options.label, source, options.max_classes)
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in labels], np.int64)
    order = np.random.default_rng(0).permutation(len(texts))
    if options.limit:
        order = order[: options.limit]
    n = len(order)
    cut1, cut2 = int(0.7 * n), int(0.85 * n)
    if cut1 < 1 or cut2 - cut1 < 1 or n - cut2 < 1:
        raise TableError(f"{n} rows are too few to split 70/15/15 % into train, validation and test (need 7)")
    parts = {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}
    counts = Counter(w for i in parts["train"] for w in tokenize_any_language(texts[i]))
    vocab = {w: k + 2 for k, (w, _) in enumerate(counts.most_common(VOCABULARY - 2))}
    splits = {}
    for part, rows in parts.items():
        ids, lengths = encode([texts[i] for i in rows], vocab, MAX_WORDS, tokenize_any_language)
        splits[part] = (ids, lengths, y[rows])
    torch.manual_seed(options.seed)
    hidden = options.hidden or DEFAULTS.hidden
    model = SentimentModel(
        len(vocab) + 2, hidden=hidden, layers=options.layers, reset_after=options.reset_after, outputs=len(classes)
    )

    def accuracy(ids, lengths, labels):
        with torch.no_grad():
            logits = model(torch.from_numpy(ids), torch.from_numpy(lengths))
        return float((logits.argmax(1).numpy() == labels).mean())

    result = fit(
        model,
        tuple(torch.from_numpy(a) for a in splits["train"]),
        lambda m, x, lengths, labels: nn.functional.cross_entropy(m(x, lengths), labels),
        lambda: accuracy(*splits["val"]),
        options.epochs or DEFAULTS.epochs,
        options.lr or DEFAULTS.lr,
        options.batch_size or DEFAULTS.batch_size,
        options,
        higher_is_better=True,
    )
    majority = np.bincount(splits["train"][2], minlength=len(classes)).argmax()
    bow = bag_of_words_accuracy(
        {part: (ids, labels) for part, (ids, _, labels) in splits.items()}, len(vocab) + 2, len(classes), options.seed
    )
    report = {
        "task": "classify-text",
        "metric": f"test accuracy ({len(classes)} classes of {options.label!r})",
        "model": accuracy(*splits["test"]),
        "baselines": {
            f"majority class ({classes[majority]!r})": float((splits["test"][2] == majority).mean()),
            "bag-of-words logistic regression": bow["test"],
        },
        "split": {part: len(rows) for part, rows in parts.items()},
        **result,
    }
    report["model_file"] = model_file(
        "classify-text",
        options,
        model,
        vocab=vocab,
        max_len=MAX_WORDS,
        classes=classes,
        config={"vocab_size": len(vocab) + 2, "hidden": hidden, "layers": options.layers,
                "reset_after": options.reset_after, "classes": len(classes)},
    )  # fmt: skip
    return report


def train(options: Options) -> Dict:
    """``grukit train classify-text``: :func:`train_frame` on the file ``--csv``."""
    if not options.csv:
        raise TableError("the classify-text task reads your data: give --csv FILE, --text COL and --label COL")
    return train_frame(options.csv, options)


def load_model(saved: Dict) -> SentimentModel:
    c = saved["config"]
    model = SentimentModel(
        c["vocab_size"], hidden=c["hidden"], layers=c["layers"], reset_after=c["reset_after"], outputs=c["classes"]
    )
    return load_weights(model, saved)


def probabilities(saved: Dict, texts: Sequence[str]) -> np.ndarray:
    """[len(texts), classes]: each class's probability for each text."""
    if not texts:
        raise ValueError("give at least one text to classify (arguments or --file)")
    ids, lengths = encode(list(texts), saved["vocab"], saved["max_len"], tokenize_any_language)
    with torch.no_grad():
        return finite_outputs(
            torch.softmax(load_model(saved)(torch.from_numpy(ids), torch.from_numpy(lengths)), 1)
        ).numpy()


class TextClassifierTask(SentimentTask):
    """classify-text: the sentiment model's shape, any labels, any language."""

    name = "classify-text"
    how_to_use = 'it classifies texts: `grukit predict MODEL "a text"` (or --file F, one text per line)'
    takes_csv = True
    tokenizer = staticmethod(tokenize_any_language)

    def __init__(self):
        super().__init__(train, load_model)

    def predict(self, saved: Dict, texts: Sequence[str], days: int, csv=None) -> List[str]:
        if csv:
            raise SystemExit("grukit predict: a classify-text model takes texts (arguments or --file), not --csv")
        p = probabilities(saved, texts)
        return [f"{saved['classes'][row.argmax()]} ({row.max():.2f})  {text}" for text, row in zip(texts, p)]

    def evaluate(self, saved: Dict, csv: str, columns: Dict[str, Optional[str]]) -> Dict:
        options = saved_reading_options(saved, ("text", "label", "encoding", "fill"), **columns)
        texts, labels = read_texts(csv, options)
        if not texts:
            raise TableError(f"--csv {csv!r} holds no rows to evaluate")
        predicted = [saved["classes"][row.argmax()] for row in probabilities(saved, texts)]
        return classification_report(labels, predicted, saved["classes"], csv)

    def to_onnx(self, saved: Dict, path: str) -> str:
        """Inputs ``ids`` [B, T] int64 (0 = padding, ids from the file's "vocab") and ``lengths``
        [B] int64 (>= 1); output ``probabilities`` [B, classes] (the file's "classes" order)."""
        from ...export import save

        g, inputs, logits = text_model_graph(load_model(saved))
        g.node("Softmax", [logits], ["probabilities"], axis=1)
        classes = len(saved["classes"])
        output = g.helper.make_tensor_value_info("probabilities", g.TensorProto.FLOAT, ["batch", classes])
        save(g, inputs, [output], path)
        return f"the classify-text model as ONNX (opset 14): ids, lengths -> probabilities of {classes} classes"


TASK = TextClassifierTask()
