"""Bach's chorales (music21's corpus): the soprano melody of each as a sequence of notes.

``music21.corpus.chorales.Iterator()`` yields the 371 chorales of the Riemenschneider
edition shipped inside music21 (no download). Each melody is the first part (the
soprano), with ties merged (``stripTies``) so a held note is one note. A note is
``(pitch, duration)``: ``pitch`` the MIDI number, or ``REST`` (-1) for a rest, the top
note of the rare chord; ``duration`` in quarter notes, snapped to the nearest of
``DURATIONS`` (grace notes of length 0 are dropped).

Melodies that repeat another one up to transposition (the same tune harmonised twice)
are kept once, so no tune is in both the training and the test split. The melodies are
shuffled with seed 0 and split 80/10/10 by piece.

Parsing all 371 scores takes ~35 s, so the extracted melodies are cached as JSON in
``$GRUKIT_CACHE_DIR`` (default ``~/.cache/grukit``), keyed by music21's version.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

from ... import settings

REST = -1
# quarter-note lengths a chorale melody uses (every other length snaps to the nearest)
DURATIONS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)

Note = Tuple[int, float]


@dataclass
class Chorales:
    """Melodies split by piece; each melody a list of ``(pitch, duration)`` notes."""

    train: List[List[Note]]
    val: List[List[Note]]
    test: List[List[Note]]
    titles: dict  # split name -> list of titles, aligned with the melodies


def _music21():
    try:
        import music21
    except ImportError:
        raise ImportError(
            "the Bach chorales ship inside music21, which is not installed: run "
            "`pip install music21` (or `make install`)"
        ) from None
    return music21


def snap_duration(quarter_length: float) -> float:
    return min(DURATIONS, key=lambda d: abs(d - quarter_length))


def melody(score) -> List[Note]:
    """The first part of a music21 score as ``(pitch, duration)`` notes (ties merged)."""
    notes = []
    for element in score.parts[0].stripTies().flatten().notesAndRests:
        if float(element.quarterLength) <= 0:
            continue  # grace notes
        if element.isRest:
            pitch = REST
        elif element.isChord:
            pitch = max(p.midi for p in element.pitches)
        else:
            pitch = element.pitch.midi
        notes.append((pitch, snap_duration(float(element.quarterLength))))
    return notes


def _cache_path(version: str) -> Path:
    root = Path(settings.get("GRUKIT_CACHE_DIR") or Path.home() / ".cache" / "grukit")
    return root / f"chorales-music21-{version}.json"


def parse_all(limit: Optional[int] = None) -> List[Tuple[str, List[Note]]]:
    """``(title, melody)`` of every chorale in corpus order (the first ``limit`` only, uncached)."""
    music21 = _music21()
    cache = _cache_path(music21.__version__)
    if cache.exists():
        pieces = [(t, [tuple(n) for n in m]) for t, m in json.loads(cache.read_text())]
        return pieces[:limit] if limit else pieces
    pieces = []
    for score in music21.corpus.chorales.Iterator():
        title = score.metadata.title if score.metadata is not None else f"chorale {len(pieces) + 1}"
        pieces.append((str(title), melody(score)))
        if limit and len(pieces) >= limit:
            return pieces
    if not pieces:
        raise ImportError("music21's corpus returned no chorales: reinstall music21")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(pieces))
    tmp.replace(cache)
    return pieces


def _tune(notes: List[Note]) -> tuple:
    """A melody up to transposition: its intervals between sounding notes, and its rhythm."""
    pitches = [p for p, _ in notes if p != REST]
    return tuple(b - a for a, b in zip(pitches, pitches[1:])), tuple(d for _, d in notes)


def bach_chorales(limit: Optional[int] = None) -> Chorales:
    """The chorale melodies, deduplicated up to transposition and split 80/10/10 by piece.

    ``limit`` parses only the first ``limit`` chorales (quick runs and tests).
    """
    seen, pieces = set(), []
    for title, notes in parse_all(limit):
        key = _tune(notes)
        if len(notes) >= 2 and key not in seen:
            seen.add(key)
            pieces.append((title, notes))
    random.Random(0).shuffle(pieces)
    n_val = n_test = max(1, len(pieces) // 10)
    n_train = len(pieces) - n_val - n_test
    if n_train < 1:
        raise ValueError(f"limit={limit} leaves {len(pieces)} distinct chorales: need at least 3")
    parts = {"train": pieces[:n_train], "val": pieces[n_train : n_train + n_val], "test": pieces[n_train + n_val :]}
    return Chorales(
        *([m for _, m in parts[k]] for k in ("train", "val", "test")),
        titles={k: [t for t, _ in v] for k, v in parts.items()},
    )
