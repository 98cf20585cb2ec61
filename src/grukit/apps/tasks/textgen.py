"""Text generation: a character-level GRU language model on Shakespeare's plays.

Model: Embedding(chars, 64) -> GRU(256) -> Dense(chars), trained on windows of 128
characters from 36 plays (the first ``limit`` characters, 1.5M by default, to finish in
minutes on 2 cores). Metric: validation bits per character on the 2 held-out plays (the
first 200K characters, windows of 128 evaluated from a zero state). Baselines on the same
text: a unigram and a bigram (add-one smoothed) character model fitted on the training
characters. ``grukit generate`` samples from a saved model through the streaming API.
"""

from __future__ import annotations

import math
from typing import Dict

import numpy as np
import torch
from torch import nn

from ...nn import GRU
from ..datasets.plays import encode, shakespeare
from .catalog import CATALOG
from .model_files import load_weights, metric_by_precision, model_file
from .options import Options, saved_gru_options
from .task import Task
from .training import fit

DEFAULTS = CATALOG["textgen"]  # epochs, hidden, batch size, learning rate

WINDOW, VAL_CHARS = 128, 200_000


class CharModel(nn.Module):
    """ids [B, T] -> next-character logits [B, T, chars]."""

    def __init__(
        self, chars: int, hidden: int = 256, layers: int = 1, reset_after: bool = True, embed: int = 64, **gru_options
    ):
        super().__init__()
        self.embedding = nn.Embedding(chars, embed)
        self.gru = GRU(embed, hidden, num_layers=layers, batch_first=True, reset_after=reset_after, **gru_options)
        self.dense = nn.Linear(hidden, chars)

    def forward(self, ids):
        out, _ = self.gru(self.embedding(ids))
        return self.dense(out)


def _windows(ids: np.ndarray) -> torch.Tensor:
    n = (len(ids) - 1) // WINDOW
    return torch.from_numpy(ids[: n * WINDOW + 1][: n * WINDOW].reshape(n, WINDOW)), torch.from_numpy(
        ids[1 : n * WINDOW + 1].reshape(n, WINDOW)
    )


def ngram_bits(train: np.ndarray, val: np.ndarray, chars: int) -> Dict[str, float]:
    """Bits per character of unigram and add-one bigram models fitted on ``train``, on ``val``."""
    unigram = np.bincount(train, minlength=chars) + 1.0
    unigram /= unigram.sum()
    pairs = np.zeros((chars, chars))
    np.add.at(pairs, (train[:-1], train[1:]), 1)
    bigram = (pairs + 1) / (pairs + 1).sum(1, keepdims=True)
    return {
        "unigram character model": float(-np.log2(unigram[val]).mean()),
        "bigram character model": float(-np.log2(bigram[val[:-1], val[1:]]).mean()),
    }


def train(options: Options) -> Dict:
    torch.manual_seed(options.seed)
    data = shakespeare()
    chars = len(data.vocab)
    limit = options.limit or 1_500_000
    train_ids = encode(data.train_text[:limit], data.vocab)
    val_ids = encode(data.val_text[:VAL_CHARS], data.vocab)
    hidden = options.hidden or DEFAULTS.hidden
    model = CharModel(chars, hidden, options.layers, options.reset_after, **options.gru_options())
    x, y = _windows(train_ids)
    vx, vy = _windows(val_ids)

    def bits(m=model):
        with torch.no_grad():
            total = 0.0
            for i in range(0, len(vx), 256):
                logits = m(vx[i : i + 256])
                total += nn.functional.cross_entropy(
                    logits.reshape(-1, chars), vy[i : i + 256].reshape(-1), reduction="sum"
                ).item()
        return total / vy.numel() / math.log(2)

    def loss_fn(m, xb, yb):
        return nn.functional.cross_entropy(m(xb).reshape(-1, chars), yb.reshape(-1))

    result = fit(
        model,
        (x, y),
        loss_fn,
        bits,
        options.epochs or DEFAULTS.epochs,
        options.lr or DEFAULTS.lr,
        options.batch_size or DEFAULTS.batch_size,
        options,
        higher_is_better=False,
    )
    report = {
        "task": "textgen",
        "metric": "validation bits per character (2 held-out plays)",
        "model": result["best_val"],
        "precisions": metric_by_precision(model, bits, options),
        "baselines": ngram_bits(train_ids, vy.reshape(-1).numpy(), chars),
        "split": {"train": int(y.numel()), "val": int(vy.numel()), "test": int(vy.numel())},
        **result,
    }
    report["model_file"] = model_file(
        "textgen",
        options,
        model,
        vocab=data.vocab,
        config={
            "chars": chars,
            "hidden": hidden,
            "layers": options.layers,
            "reset_after": options.reset_after,
            **options.gru_options(),
        },
    )
    return report


def load_model(saved: Dict) -> CharModel:
    c = saved["config"]
    model = CharModel(c["chars"], c["hidden"], c["layers"], c["reset_after"], **saved_gru_options(c))
    return load_weights(model, saved)


def generate(saved: Dict, prompt: str = "\n", length: int = 300, temperature: float = 0.8, seed: int = 0) -> str:
    """``length`` characters sampled after ``prompt``, one GRU step per character (streaming)."""
    if length < 1:
        raise ValueError(f"--length must be at least 1, got {length}")
    if temperature <= 0:
        raise ValueError(f"--temperature must be positive, got {temperature}")
    model = load_model(saved)
    vocab = saved["vocab"]
    chars = {i: c for c, i in vocab.items()}
    generator = torch.Generator().manual_seed(seed)
    stream = model.gru.stream(batch_size=1)
    ids = torch.from_numpy(encode(prompt or "\n", vocab))
    out = []
    with torch.no_grad():
        for i in ids[:-1]:
            stream.step(model.embedding(i.view(1)))
        current = ids[-1:]
        for _ in range(length):
            h = stream.step(model.embedding(current))
            probs = torch.softmax(model.dense(h)[0] / temperature, 0)
            current = torch.multinomial(probs, 1, generator=generator)
            out.append(chars[int(current)])
    return "".join(out)


class TextgenTask(Task):
    name = "textgen"
    takes_regularisers = True
    how_to_use = "it writes text: use `grukit generate MODEL --prompt ... --length N`"

    def generate(self, saved, prompt, length, temperature, seed, output) -> str:
        if output:
            raise ValueError("--output is for music models (a MIDI or MusicXML file); a textgen model prints its text")
        prompt = "ROMEO.\n" if prompt is None else prompt
        return prompt + generate(saved, prompt, length or 400, temperature, seed)


TASK = TextgenTask(train, load_model)
