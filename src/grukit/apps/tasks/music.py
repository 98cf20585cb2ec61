"""Music generation: a GRU that predicts the next note of Bach chorale melodies.

Data: the soprano lines of music21's Bach chorales (``grukit.datasets.chorales``), split
by piece. A note is (pitch, duration). Model: Embedding(pitch) + Embedding(duration) ->
GRU(128) -> two heads, the next note's pitch and its duration, trained on the sum of both
cross-entropies. Training melodies are also used transposed by -5..+6 semitones (the
same tune in every key), which the held-out pieces never see.

Metric: on the held-out pieces, the next note's pitch given every note so far, for every
note after the first: accuracy, and negative log-likelihood in nats per note. Baseline on
the same transitions: the most frequent next pitch given the current pitch (a bigram
fitted on the training melodies, untransposed), add-k smoothed for its likelihood with k
chosen on the validation pieces. ``generate`` samples a melody through the streaming API
and writes it as MIDI or MusicXML with music21.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ...nn import GRU
from ..datasets.chorales import DURATIONS, REST, Note, _music21, bach_chorales, snap_duration
from .catalog import CATALOG
from .model_files import load_weights, model_file
from .options import Options, saved_gru_options
from .task import Task
from .training import fit

DEFAULTS = CATALOG["music"]  # epochs, hidden, batch size, learning rate

PITCHES = 129  # token 0 = rest, 1 + MIDI number otherwise
TRANSPOSITIONS = range(-5, 7)


def pitch_token(pitch: int) -> int:
    return 0 if pitch == REST else pitch + 1


def duration_token(duration: float) -> int:
    return DURATIONS.index(snap_duration(duration))


class MelodyModel(nn.Module):
    """pitch and duration tokens [B, T] -> next-note (pitch logits [B, T, 129], duration logits [B, T, 10])."""

    def __init__(
        self, hidden: int = 128, layers: int = 1, reset_after: bool = True, dropout: float = 0.2, **gru_options
    ):
        super().__init__()
        self.pitch_embedding = nn.Embedding(PITCHES, 48)
        self.duration_embedding = nn.Embedding(len(DURATIONS), 16)
        self.gru = GRU(64, hidden, num_layers=layers, batch_first=True, reset_after=reset_after, **gru_options)
        self.dropout = nn.Dropout(dropout)
        self.pitch_head = nn.Linear(hidden, PITCHES)
        self.duration_head = nn.Linear(hidden, len(DURATIONS))

    def embed(self, pitches: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.pitch_embedding(pitches), self.duration_embedding(durations)], -1)

    def heads(self, h: torch.Tensor):
        h = self.dropout(h)
        return self.pitch_head(h), self.duration_head(h)

    def forward(self, pitches, durations):
        out, _ = self.gru(self.embed(pitches, durations))
        return self.heads(out)


def encode(melodies: Sequence[List[Note]], shifts: Sequence[int] = (0,)):
    """Padded token tensors (pitches, durations, lengths) of every melody at every shift that stays in MIDI range."""
    rows = []
    for notes in melodies:
        sounding = [p for p, _ in notes if p != REST]
        for s in shifts:
            if sounding and not (0 <= min(sounding) + s and max(sounding) + s <= 127):
                continue
            rows.append(
                ([pitch_token(p + s if p != REST else REST) for p, _ in notes], [duration_token(d) for _, d in notes])
            )
    longest = max(len(p) for p, _ in rows)
    pitches = torch.zeros(len(rows), longest, dtype=torch.long)
    durations = torch.zeros(len(rows), longest, dtype=torch.long)
    lengths = torch.tensor([len(p) for p, _ in rows])
    for i, (p, d) in enumerate(rows):
        pitches[i, : len(p)] = torch.tensor(p)
        durations[i, : len(d)] = torch.tensor(d)
    return pitches, durations, lengths


def _transition_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, steps] True where position t predicts a real note t + 1."""
    return torch.arange(steps)[None, :] < (lengths[:, None] - 1)


def melody_loss(model, pitches, durations, lengths):
    pitch_logits, duration_logits = model(pitches[:, :-1], durations[:, :-1])
    mask = _transition_mask(lengths, pitches.shape[1] - 1)
    return nn.functional.cross_entropy(pitch_logits[mask], pitches[:, 1:][mask]) + nn.functional.cross_entropy(
        duration_logits[mask], durations[:, 1:][mask]
    )


def evaluate_model(model: MelodyModel, pitches, durations, lengths) -> Dict[str, float]:
    """Next-pitch accuracy and NLL (nats per note), next-duration accuracy, over all held-out transitions."""
    with torch.no_grad():
        pitch_logits, duration_logits = model(pitches[:, :-1], durations[:, :-1])
    mask = _transition_mask(lengths, pitches.shape[1] - 1)
    logits, target = pitch_logits[mask], pitches[:, 1:][mask]
    return {
        "accuracy": float((logits.argmax(-1) == target).float().mean()),
        "nll": float(nn.functional.cross_entropy(logits, target)),
        "duration_accuracy": float((duration_logits[mask].argmax(-1) == durations[:, 1:][mask]).float().mean()),
    }


def _pairs(pitches, lengths):
    mask = _transition_mask(lengths, pitches.shape[1] - 1)
    return pitches[:, :-1][mask].numpy(), pitches[:, 1:][mask].numpy()


class NextNoteBaseline:
    """The most frequent next pitch given the current pitch, from training transitions.

    Probabilities (for the likelihood) are add-k smoothed over the 129 pitch tokens; a
    current pitch never seen in training falls back to the overall next-pitch counts.
    """

    def __init__(self, current: np.ndarray, following: np.ndarray):
        self.counts = np.zeros((PITCHES, PITCHES))
        np.add.at(self.counts, (current, following), 1)
        self.overall = np.bincount(following, minlength=PITCHES).astype(float)
        self.k = 1.0

    def _rows(self, current):
        rows = self.counts[current]
        unseen = rows.sum(1) == 0
        rows[unseen] = self.overall
        return rows

    def accuracy(self, current, following) -> float:
        return float((self._rows(current).argmax(1) == following).mean())

    def nll(self, current, following, k: Optional[float] = None) -> float:
        rows = self._rows(current) + (self.k if k is None else k)
        return float(-np.log(rows[np.arange(len(following)), following] / rows.sum(1)).mean())

    def choose_k(self, current, following) -> None:
        self.k = min((1.0, 0.3, 0.1, 0.03, 0.01, 0.003), key=lambda k: self.nll(current, following, k))


def train(options: Options) -> Dict:
    torch.manual_seed(options.seed)
    data = bach_chorales(limit=options.limit or None)
    train_set = encode(data.train, TRANSPOSITIONS)
    val_set, test_set = encode(data.val), encode(data.test)
    hidden = options.hidden or DEFAULTS.hidden
    model = MelodyModel(hidden, options.layers, options.reset_after, **options.gru_options())
    result = fit(
        model,
        train_set,
        melody_loss,
        lambda: evaluate_model(model, *val_set)["nll"],
        options.epochs or DEFAULTS.epochs,
        options.lr or DEFAULTS.lr,
        options.batch_size or DEFAULTS.batch_size,
        options,
        higher_is_better=False,
    )
    scores = evaluate_model(model, *test_set)
    baseline = NextNoteBaseline(*_pairs(*encode(data.train)[::2]))
    baseline.choose_k(*_pairs(val_set[0], val_set[2]))
    test_pairs = _pairs(test_set[0], test_set[2])
    name = "most frequent next note given the current note"
    report = {
        "task": "music",
        "metric": "next-note (pitch) accuracy on held-out chorales",
        "model": scores["accuracy"],
        "baselines": {name: baseline.accuracy(*test_pairs)},
        "also": {
            "next-note negative log-likelihood (nats per note, lower is better)": {
                "grukit GRU": scores["nll"],
                f"{name} (add-{baseline.k:g} smoothed)": baseline.nll(*test_pairs),
            },
            "next-note duration accuracy": {"grukit GRU": scores["duration_accuracy"]},
        },
        "split": {
            "train": len(data.train),
            "val": len(data.val),
            "test": len(data.test),
            "test_notes": int(len(test_pairs[0])),
        },
        **result,
    }
    first_notes = [(pitch_token(m[0][0]), duration_token(m[0][1])) for m in data.train]
    report["model_file"] = model_file(
        "music",
        options,
        model,
        first_notes=first_notes,
        config={
            "hidden": hidden,
            "layers": options.layers,
            "reset_after": options.reset_after,
            **options.gru_options(),
        },
    )
    return report


def load_model(saved: Dict) -> MelodyModel:
    c = saved["config"]
    model = MelodyModel(c["hidden"], c["layers"], c["reset_after"], **saved_gru_options(c))
    return load_weights(model, saved)


def parse_prompt(prompt: str) -> List[Note]:
    """'G4 G4:2 D5:0.5 R' -> notes: a pitch name (or R for a rest), optionally ':' and quarter notes (default 1)."""
    music21 = _music21()
    notes = []
    for word in prompt.split():
        name, _, length = word.partition(":")
        try:
            duration = float(length) if length else 1.0
            pitch = REST if name.upper() == "R" else music21.pitch.Pitch(name).midi
        except Exception:
            raise ValueError(
                f"--prompt: cannot read {word!r}; write notes like 'G4 G4:2 D5:0.5 R' "
                "(pitch name or R, optional ':' quarter-note length)"
            ) from None
        if duration <= 0 or not 0 <= (pitch if pitch != REST else 0) <= 127:
            raise ValueError(f"--prompt: {word!r} needs a positive length and a MIDI pitch 0..127")
        notes.append((pitch, snap_duration(duration)))
    return notes


def generate(saved: Dict, prompt: str = "", length: int = 48, temperature: float = 1.0, seed: int = 0) -> List[Note]:
    """The prompt's notes followed by ``length`` sampled notes (one GRU step per note, streaming).

    Without a prompt the first note is drawn from the training melodies' first notes.
    """
    if length < 1:
        raise ValueError(f"--length must be at least 1, got {length}")
    if temperature <= 0:
        raise ValueError(f"--temperature must be positive, got {temperature}")
    model = load_model(saved)
    generator = torch.Generator().manual_seed(seed)
    if prompt:
        notes = parse_prompt(prompt)
        tokens = [(pitch_token(p), duration_token(d)) for p, d in notes]
    else:
        first = saved["first_notes"]
        tokens = [tuple(first[int(torch.randint(len(first), (1,), generator=generator))])]
    stream = model.gru.stream(batch_size=1)
    with torch.no_grad():
        for pitch, duration in tokens[:-1]:
            stream.step(model.embed(torch.tensor([pitch]), torch.tensor([duration])))
        pitch, duration = tokens[-1]
        for _ in range(length):
            h = stream.step(model.embed(torch.tensor([pitch]), torch.tensor([duration])))
            pitch_logits, duration_logits = model.heads(h)
            pitch = int(torch.multinomial(torch.softmax(pitch_logits[0] / temperature, 0), 1, generator=generator))
            duration = int(
                torch.multinomial(torch.softmax(duration_logits[0] / temperature, 0), 1, generator=generator)
            )
            tokens.append((pitch, duration))
    return [(REST if p == 0 else p - 1, DURATIONS[d]) for p, d in tokens]


def write_melody(notes: Sequence[Note], path: str, title: str = "grukit melody") -> str:
    """Write ``notes`` as MIDI (.mid/.midi) or MusicXML (.musicxml/.xml/.mxl) with music21; returns the path."""
    music21 = _music21()
    suffix = path.lower().rsplit(".", 1)[-1] if "." in path else ""
    formats = {"mid": "midi", "midi": "midi", "musicxml": "musicxml", "xml": "musicxml", "mxl": "mxl"}
    if suffix not in formats:
        raise ValueError(f"--output must end in .mid, .midi, .musicxml, .xml or .mxl, got {path!r}")
    part = music21.stream.Part()
    part.append(music21.meter.TimeSignature("4/4"))
    for pitch, duration in notes:
        element = music21.note.Rest() if pitch == REST else music21.note.Note(pitch)
        element.quarterLength = duration
        part.append(element)
    score = music21.stream.Score([part])
    score.insert(0, music21.metadata.Metadata(title=title))
    return str(score.write(formats[suffix], fp=path))


def describe(notes: Sequence[Note]) -> str:
    """'G4:1 D5:2 R:1' (the prompt syntax)."""
    music21 = _music21()
    return " ".join(f"{'R' if p == REST else music21.pitch.Pitch(midi=p).nameWithOctave}:{d:g}" for p, d in notes)


class MusicTask(Task):
    name = "music"
    takes_regularisers = True
    how_to_use = "it writes melodies: use `grukit generate MODEL --output melody.mid`"

    def generate(self, saved, prompt, length, temperature, seed, output) -> str:
        notes = generate(saved, prompt or "", length or 48, temperature, seed)
        path = write_melody(notes, output or "melody.mid")
        return f"wrote {path}: {len(notes)} notes\n{describe(notes)}"


TASK = MusicTask(train, load_model)
