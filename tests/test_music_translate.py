"""The music and translate tasks: loaders on their real data, CLI end to end, generation, round trips."""

import music21  # noqa: E402  (installed by the data extra: a missing one must fail, not skip)
import numpy as np
import pytest
import torch

from grukit.apps.cli import main
from grukit.apps.tasks.model_files import load


@pytest.mark.slow
def test_chorale_loader_reads_every_chorale_once_split_by_piece():
    from grukit.apps.datasets.chorales import DURATIONS, REST, bach_chorales

    data = bach_chorales()
    total = len(data.train) + len(data.val) + len(data.test)
    assert 300 < total <= 371 and len(data.test) == len(data.val) == total // 10
    tunes = [tuple(m) for m in data.train + data.val + data.test]
    assert len(set(tunes)) == total  # no melody twice
    notes = [n for m in tunes for n in m]
    assert all(d in DURATIONS for _, d in notes)
    assert all(p == REST or 50 <= p <= 92 for p, _ in notes)  # a soprano's range, roughly
    assert sum(len(m) for m in tunes) > 15_000


def test_melody_merges_ties_and_keeps_rests():
    from grukit.apps.datasets.chorales import REST, melody

    part = music21.stream.Part()
    first, second = music21.note.Note("G4", quarterLength=1), music21.note.Note("G4", quarterLength=1)
    first.tie, second.tie = music21.tie.Tie("start"), music21.tie.Tie("stop")
    part.append([first, second, music21.note.Rest(quarterLength=0.5), music21.note.Note("D5", quarterLength=1.45)])
    assert melody(music21.stream.Score([part])) == [(67, 2.0), (REST, 0.5), (74, 1.5)]


def test_next_note_baseline_counts_transitions():
    from grukit.apps.tasks.music import NextNoteBaseline

    current, following = np.array([60, 62, 60, 62, 60]), np.array([62, 64, 62, 64, 62])
    baseline = NextNoteBaseline(current, following)
    assert baseline.accuracy(np.array([60, 62]), np.array([62, 64])) == 1.0
    assert baseline.accuracy(np.array([99]), np.array([62])) == 1.0  # unseen: the overall most frequent
    assert baseline.nll(np.array([60]), np.array([62]), k=0.01) < baseline.nll(np.array([60]), np.array([61]), k=0.01)


@pytest.mark.slow
def test_music_through_the_cli_generates_files_music21_reads_back(tmp_path, capsys):
    from grukit.apps.tasks import music

    path = str(tmp_path / "music.pt")
    assert main(["train", "music", "--limit", "30", "--epochs", "2", "--quiet", "--output", path]) == 0
    text = capsys.readouterr().out
    assert "most frequent next note given the current note" in text and "negative log-likelihood" in text
    saved = load(path)
    pitches, durations, _ = music.encode([[(67, 1.0), (69, 0.5), (71, 2.0)]])
    with torch.no_grad():
        a, b = music.load_model(saved)(pitches, durations), music.load_model(load(path))(pitches, durations)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])

    for name, prompt in (("melody.mid", []), ("melody.musicxml", ["--prompt", "G4 G4:2 D5:0.5 R"])):
        out = str(tmp_path / name)
        assert main(["generate", path, "--length", "20", "--output", out, *prompt]) == 0
        notes = music.generate(saved, " ".join(prompt[1:]), 20, 0.8, seed=0)
        assert len(notes) == 20 + (4 if prompt else 1)
        if prompt:
            assert notes[:4] == [(67, 1.0), (67, 2.0), (74, 0.5), (-1, 1.0)]
        score = music21.converter.parse(out)
        sounding = [n.pitch.midi for n in score.stripTies().flatten().notes]
        assert sounding == [p for p, _ in notes if p != -1]
        if name.endswith("musicxml"):  # MIDI quantises; MusicXML keeps every length
            lengths = [float(n.quarterLength) for n in score.stripTies().flatten().notes]
            assert lengths == [d for p, d in notes if p != -1]
    assert main(["generate", path, "--prompt", "H9"]) == 2
    assert "--prompt: cannot read 'H9'" in capsys.readouterr().err
    assert main(["generate", path, "--output", str(tmp_path / "x.wav")]) == 2
    assert "--output must end in .mid" in capsys.readouterr().err


def test_number_pairs_hold_out_numbers_and_tokenize_reversibly():
    from grukit.apps.datasets.numbers import detokenize, english, french, number_pairs, tokenize

    data = number_pairs(train=300, val=30, test=30, high=1000)
    numbers = [{n for n, _, _ in split} for split in (data.train, data.val, data.test)]
    assert sum(map(len, numbers)) == 360 and not (numbers[0] & numbers[2]) and not (numbers[0] & numbers[1])
    assert all(detokenize(tokenize(t)) == t for _, en, fr in data.train for t in (en, fr))
    assert tokenize("quatre-vingt-dix mille") == ["quatre", "-", "vingt", "-", "dix", "mille"]
    assert (english(412), french(412)) == ("four hundred and twelve", "quatre cent douze")
    assert all(e == english(n) and f == french(n) for n, e, f in data.test)
    with pytest.raises(ValueError, match="do not fit below high=100"):
        number_pairs(train=90, val=10, test=10, high=100)


def test_dictionary_baseline_learns_words_and_drops_and():
    from grukit.apps.datasets.numbers import number_pairs
    from grukit.apps.tasks.translate import DictionaryBaseline, levenshtein, scores

    baseline = DictionaryBaseline(number_pairs(train=2000, val=10, test=10).train)
    assert baseline.dictionary["four"] == "quatre" and baseline.dictionary["thousand"] == "mille"
    assert "and" not in baseline.dictionary
    assert baseline.translate("six thousand, two hundred and forty-eight") == "six mille deux cent quarante-huit"
    assert levenshtein("vingt", "vingts") == 1 and levenshtein(["a", "b"], ["b"]) == 1
    assert scores(["ab", "cd"], ["ab", "ce"]) == {"exact": 0.5, "cer": 0.25}


@pytest.mark.slow
def test_translate_through_the_cli_greedy_and_beam(tmp_path, capsys):
    from grukit.apps.tasks import translate

    path = str(tmp_path / "translate.pt")
    assert main(["train", "translate", "--limit", "2000", "--epochs", "2", "--quiet", "--output", path]) == 0
    text = capsys.readouterr().out
    assert "word-by-word dictionary" in text and "character error rate" in text
    saved = load(path)
    translator, again = translate.load_translator(saved), translate.load_translator(load(path))
    source, lengths = translate.encode_batch(["four hundred and twelve"], translator.source_vocab)
    previous, _ = translate.encode_batch(["quatre cent douze"], translator.target_vocab, bos=True)
    with torch.no_grad():
        assert torch.equal(translator.model(source, lengths, previous), again.model(source, lengths, previous))
    beams = translator.beam("four hundred and twelve", 3)
    assert len(beams) == 3 and [s for _, s in beams] == sorted((s for _, s in beams), reverse=True)
    assert all(isinstance(t, str) for t, _ in beams)
    # greedy decoding of a batch equals greedy decoding one sentence at a time
    sentences = ["seventy-one", "four hundred and twelve", "ninety thousand"]
    assert translator.greedy(sentences) == [translator.greedy([s])[0] for s in sentences]
    assert translator.translate(["412"], beam=1) == translator.greedy(["four hundred and twelve"])
    assert main(["translate", "--model", path, "four hundred and twelve", "--beam", "3", "--show", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("four hundred and twelve  ->  ")
    assert main(["translate", "--model", path, "four hundred and twelf"]) == 2
    assert "unknown words ['twelf']" in capsys.readouterr().err
    assert main(["translate", "--model", str(tmp_path / "none.pt"), "one"]) == 2
    assert "grukit train TASK --output" in capsys.readouterr().err


@pytest.mark.slow
def test_regularised_music_model_saves_reloads_and_generates(tmp_path, capsys):
    from grukit.apps.tasks import music

    path = str(tmp_path / "reg.pt")
    assert (
        main(
            [
                "train",
                "music",
                "--limit",
                "30",
                "--epochs",
                "1",
                "--quiet",
                "--output",
                path,
                "--layer-norm",
                "--zoneout",
                "0.1",
                "--recurrent-dropout",
                "0.2",
            ]
        )
        == 0
    )
    saved = load(path)
    assert saved["config"]["layer_norm"] and saved["config"]["zoneout"] == 0.1
    model, again = music.load_model(saved), music.load_model(load(path))
    assert model.gru.layer_norm and model.gru.recurrent_dropout == 0.2
    pitches, durations, _ = music.encode([[(67, 1.0), (69, 0.5), (71, 2.0), (72, 1.0)]])
    with torch.no_grad():
        assert torch.equal(model(pitches, durations)[0], again(pitches, durations)[0])
    assert len(music.generate(saved, "", 10, 1.0, seed=1)) == 11
    with pytest.raises(SystemExit):  # the forecasts and classifiers keep the plain GRU
        main(["train", "weather", "--zoneout", "0.1"])


@pytest.mark.slow
def test_covering_numbers_hold_every_word_of_every_number_below_100000():
    """The vocabulary source of the translate task: the same words as all 100,000 numbers (~15 s)."""
    from grukit.apps.datasets.numbers import covering_numbers, english, french, tokenize

    def words(numbers):
        return (
            {w for n in numbers for w in tokenize(english(n))},
            {w for n in numbers for w in tokenize(french(n))},
        )

    assert words(covering_numbers(100_000)) == words(range(100_000))


def test_a_model_trained_on_a_few_numbers_still_reads_every_number_word(tmp_path, capsys):
    """--limit 300 left words such as "zero" out of the vocabulary: asking for them then failed."""
    path = str(tmp_path / "t.pt")
    assert main(["train", "translate", "--limit", "300", "--epochs", "1", "--quiet", "--output", path]) == 0
    capsys.readouterr()
    for sentence in ("zero", "ninety-nine thousand nine hundred and ninety-nine", "seventeen"):
        assert main(["translate", "--model", path, sentence]) == 0, capsys.readouterr().err
