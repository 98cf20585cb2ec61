"""English -> French number words, made with num2words (a translation corpus of any size).

Every pair is ``(n, num2words(n, lang="en"), num2words(n, lang="fr"))`` for an integer
``0 <= n < high``, e.g. ``(412, "four hundred and twelve", "quatre cent douze")``.
The numbers are drawn without replacement with seed 0, each size (1 digit, 2 digits, ...)
with the same total weight, so that "eighty" and "four hundred and twelve" are not drowned
by the 90% of numbers below 100,000 that have five digits (a uniform draw would hold almost
no short number). They are shuffled and split into test, validation and training numbers,
so a test number is never seen in training (as a number: its words of course recur, which
is what the model must learn to recombine).

Tokens are words, with hyphens and commas as tokens of their own ("twenty-one" ->
"twenty - one"; "quatre-vingt-dix" -> "quatre - vingt - dix"), so both vocabularies are
small (about 40 words each) and ``detokenize`` restores the exact spelling.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import List, Tuple

Pair = Tuple[int, str, str]


def _num2words():
    try:
        from num2words import num2words
    except ImportError:
        raise ImportError(
            "the translation pairs are made with num2words, which is not installed: "
            "run `pip install num2words` (or `make install`)"
        ) from None
    return num2words


def tokenize(text: str) -> List[str]:
    """'nine thousand, nine hundred and ninety-nine' -> [..., 'thousand', ',', ..., 'ninety', '-', 'nine']."""
    return re.findall(r"[^\s,\-]+|[,\-]", text.lower())


def detokenize(tokens: List[str]) -> str:
    """The inverse of ``tokenize`` for num2words' spelling: no space around '-', none before ','."""
    text = " ".join(tokens)
    return text.replace(" - ", "-").replace(" ,", ",")


def english(n: int) -> str:
    return _num2words()(n, lang="en")


def french(n: int) -> str:
    return _num2words()(n, lang="fr")


def covering_numbers(high: int = 100_000) -> List[int]:
    """Numbers below ``high`` (at most 100,000) whose English and French words hold every word of
    every number below ``high``: 0..999, and each thousands part k in 1..99 alone and followed by
    1, 80, 100 and 200 (the forms that change with what follows: "cent"/"cents", "vingt"/"vingts",
    "et un"). About 1,500 numbers instead of 100,000; that the words are the same is tested."""
    if not 0 < high <= 100_000:
        raise ValueError(f"high must be in 1..100000, got {high}")
    numbers = list(range(min(1000, high))) + [k * 1000 + r for k in range(1, 100) for r in (0, 1, 80, 100, 200)]
    return [n for n in numbers if n < high]


@dataclass
class NumberPairs:
    train: List[Pair]
    val: List[Pair]
    test: List[Pair]
    high: int


def number_pairs(
    train: int = 20_000, val: int = 1_000, test: int = 2_000, high: int = 100_000, seed: int = 0
) -> NumberPairs:
    """``train + val + test`` distinct numbers below ``high`` with their English and French words."""
    for name, value in (("train", train), ("val", val), ("test", test)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if train + val + test > high:
        raise ValueError(f"train + val + test = {train + val + test} numbers do not fit below high={high}")
    rng = random.Random(seed)
    # weighted sampling without replacement (Efraimidis and Spirakis 2006): key u^(1/w), the
    # largest keys win; w = 1 / (numbers with as many digits), so every size weighs the same
    digits = [len(str(n)) for n in range(high)]
    size = Counter(digits)
    keys = [rng.random() ** size[d] for d in digits]
    numbers = sorted(range(high), key=keys.__getitem__, reverse=True)[: train + val + test]
    rng.shuffle(numbers)  # every split gets its share of every size
    pairs = [(n, english(n), french(n)) for n in numbers]
    return NumberPairs(train=pairs[val + test :], val=pairs[test : test + val], test=pairs[:test], high=high)
