"""Movie-review sentiment: the classic Keras GRU classifier on Rotten Tomatoes snippets.

Model (the Keras tutorials' classifier): ``Embedding(vocab, 64)`` -> ``GRU(64)`` -> ``Dense(1, sigmoid)``, here
with grukit.GRU reading each review as a packed sequence (no padding steps), adam
and binary cross-entropy. Metric: test accuracy. Baselines on the same split: the
majority class, and a bag-of-words logistic regression (its L2 strength chosen on
the validation split).
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from ...export import OnnxGraph, append_gru, save
from ...nn import GRU
from ..datasets.reviews import UNKNOWN, encode, rotten_tomatoes, tokenize
from .bag_of_words import bag_of_words_accuracy
from .catalog import CATALOG
from .model_files import load_weights, metric_by_precision, model_file
from .options import Options
from .task import Task
from .training import fit

DEFAULTS = CATALOG["sentiment"]  # epochs, hidden, batch size, learning rate

EXAMPLES = [
    "A gripping, beautifully acted film that stays with you long after the credits.",
    "Dull, predictable and far too long; I nearly fell asleep.",
    "The jokes land, the cast is charming, and the ending is pure joy.",
    "A mess of a script that wastes a talented cast.",
]


class SentimentModel(nn.Module):
    """ids [B, T] (0 = padding), lengths [B] -> logit of "fresh" [B] (``outputs`` 1), or one
    logit per class [B, outputs]."""

    def __init__(
        self,
        vocab_size: int,
        embed: int = 64,
        hidden: int = 64,
        layers: int = 1,
        reset_after: bool = True,
        dropout: float = 0.5,
        outputs: int = 1,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=0)
        self.dropout = nn.Dropout(dropout)  # on the word vectors and the final state: 10K reviews overfit fast
        self.gru = GRU(embed, hidden, num_layers=layers, batch_first=True, reset_after=reset_after)
        self.dense = nn.Linear(hidden, outputs)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        words = self.dropout(self.embedding(ids))
        packed = pack_padded_sequence(words, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h_n = self.gru(packed)
        out = self.dense(self.dropout(h_n[-1]))
        return out.squeeze(1) if out.shape[1] == 1 else out


def _accuracy(model, ids, lengths, labels) -> float:
    with torch.no_grad():
        logits = model(torch.from_numpy(ids), torch.from_numpy(lengths))
    return float(((logits > 0).numpy() == (labels > 0.5)).mean())


def train(options: Options) -> Dict:
    torch.manual_seed(options.seed)
    data = rotten_tomatoes(limit=options.limit)
    epochs = options.epochs or DEFAULTS.epochs
    hidden = options.hidden or DEFAULTS.hidden
    batch_size = options.batch_size or DEFAULTS.batch_size
    model = SentimentModel(len(data.vocab) + 2, hidden=hidden, layers=options.layers, reset_after=options.reset_after)
    ids, lengths, labels = (torch.from_numpy(a) for a in (data.train_ids, data.train_lengths, data.train_labels))

    def loss_fn(m, x, n, y):
        return nn.functional.binary_cross_entropy_with_logits(m(x, n), y)

    result = fit(
        model,
        (ids, lengths, labels),
        loss_fn,
        lambda: _accuracy(model, data.val_ids, data.val_lengths, data.val_labels),
        epochs,
        options.lr or DEFAULTS.lr,
        batch_size,
        options,
        higher_is_better=True,
    )
    test_acc = _accuracy(model, data.test_ids, data.test_lengths, data.test_labels)
    majority = float(data.train_labels.mean() >= 0.5)
    bow = bag_of_words_accuracy(
        {part: (getattr(data, f"{part}_ids"), getattr(data, f"{part}_labels")) for part in ("train", "val", "test")},
        len(data.vocab) + 2,
        2,
        options.seed,
    )
    report = {
        "task": "sentiment",
        "metric": "test accuracy",
        "model": test_acc,
        "precisions": metric_by_precision(
            model, lambda m: _accuracy(m, data.test_ids, data.test_lengths, data.test_labels), options
        ),
        "baselines": {
            "majority class": float((data.test_labels == majority).mean()),
            "bag-of-words logistic regression": bow["test"],
        },
        "split": {"train": len(data.train_labels), "val": len(data.val_labels), "test": len(data.test_labels)},
        **result,
    }
    report["model_file"] = model_file(
        "sentiment",
        options,
        model,
        vocab=data.vocab,
        max_len=data.max_len,
        config={
            "vocab_size": len(data.vocab) + 2,
            "hidden": hidden,
            "layers": options.layers,
            "reset_after": options.reset_after,
        },
    )
    return report


def load_model(saved: Dict) -> SentimentModel:
    c = saved["config"]
    model = SentimentModel(c["vocab_size"], hidden=c["hidden"], layers=c["layers"], reset_after=c["reset_after"])
    return load_weights(model, saved)


def predict(saved: Dict, texts: Sequence[str]) -> List[float]:
    """Probability that each text is a positive ("fresh") review."""
    if not texts:
        raise ValueError("give at least one sentence to classify (arguments or --file)")
    model = load_model(saved)
    ids, lengths = encode(list(texts), saved["vocab"], saved["max_len"])
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(ids), torch.from_numpy(lengths))).tolist()


def text_model_graph(model: SentimentModel):
    """A text model as ONNX up to its dense layer: (graph, its inputs ``ids`` [B, T] int64 (0 =
    padding) and ``lengths`` [B] int64 (>= 1), the name of the logits [B, outputs])."""
    g = OnnxGraph()
    T = g.TensorProto
    inputs = [
        g.helper.make_tensor_value_info("ids", T.INT64, ["batch", "time"]),
        g.helper.make_tensor_value_info("lengths", T.INT64, ["batch"]),
    ]
    table = g.const("embedding", model.embedding.weight.detach().numpy().astype(np.float32))
    words = g.node("Gather", [table, "ids"], axis=0)  # [B, T, E]
    x = g.node("Transpose", [words], perm=[1, 0, 2])  # [T, B, E]
    lens = g.node("Cast", ["lengths"], to=T.INT32)
    _, h_n = append_gru(g, model.gru, x, None, lens)
    return g, inputs, g.linear(model.dense, g.last_state(model.gru, h_n))


class SentimentTask(Task):
    name = "sentiment"
    tokenizer = staticmethod(tokenize)  # how a sentence becomes words (those of the vocabulary)
    how_to_use = 'it classifies sentences: `grukit predict MODEL "a sentence"` (or --file F)'

    def predict(self, saved: Dict, texts: Sequence[str], days: int) -> List[str]:
        # the predicted class and its probability, as classify-text prints: "negative (0.62)"
        # where P(positive) = 0.38 (it printed "negative (0.38)", P(positive) beside the other class)
        return [
            f"{'positive' if p >= 0.5 else 'negative'} ({max(p, 1 - p):.2f})  {text}"
            for text, p in zip(texts, predict(saved, texts))
        ]

    def to_onnx(self, saved: Dict, path: str) -> str:
        """Inputs ``ids`` [B, T] int64 (0 = padding) and ``lengths`` [B] int64 (>= 1); output
        ``probability`` [B] that each review is positive."""
        g, inputs, logit = text_model_graph(load_model(saved))
        prob = g.node("Sigmoid", [logit])  # [B, 1]
        g.node("Squeeze", [prob, g.const("axes", np.array([1], np.int64))], ["probability"])
        save(g, inputs, [g.helper.make_tensor_value_info("probability", g.TensorProto.FLOAT, ["batch"])], path)
        return "the sentiment model as ONNX (opset 14, one GRU node per layer): ids, lengths -> probability"

    def gates_input(self, saved: Dict, text: Sequence[str], days: int):
        model = self.load(saved)
        words = self.tokenizer(" ".join(text))
        if not words:
            raise ValueError('give a sentence whose gates to show, e.g. grukit gates MODEL "a gripping film"')
        ids = [saved["vocab"].get(w, UNKNOWN) for w in words]
        with torch.no_grad():
            x = model.embedding(torch.tensor(ids))
        labels = [w if i != UNKNOWN else f"{w}(?)" for w, i in zip(words, ids)]
        return model, x, labels


TASK = SentimentTask(train, load_model)
