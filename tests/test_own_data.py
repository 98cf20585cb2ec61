"""Your own data from a CSV: a single series forecast as a panel of one (``grukit forecast --target``),
classify-text and classify-series end to end from the command line and from Python, and every bad
input refused with a message that names the column, the row or the remedy. Every command reads CSV
files with the one reader, ``grukit.forecasting.table``."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from grukit.apps import classify_series, classify_text
from grukit.apps.cli import main

QUICK = ["--quiet", "--epochs", "3"]
# the panel forecaster at its smallest: the reader's checks are what these tests read
TINY_FORECAST = ["--horizon", "2", "--hidden", "8", "--epochs", "1", "--ensemble", "1", "--transform", "level"]
TINY_FORECAST += ["--quiet"]


def _sales(rows=300, seed=0):
    """Daily sales with a weekly cycle and noise, and a temperature column."""
    rng = np.random.default_rng(seed)
    t = np.arange(rows)
    return pd.DataFrame(
        {
            "day": pd.date_range("2023-01-01", periods=rows, freq="D").strftime("%Y-%m-%d"),
            "units": 100 + 20 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 2, rows),
            "temperature": 15 + 10 * np.sin(2 * np.pi * t / 365) + rng.normal(0, 1, rows),
        }
    )


def _texts(rows=240, seed=0):
    rng = np.random.default_rng(seed)
    words = {"sport": "goal match team", "food": "bread soup tasty", "tech": "code laptop chip"}
    filler = "the a of and it was very".split()
    out = []
    for i in range(rows):
        label = list(words)[i % 3]
        tokens = list(rng.choice(words[label].split(), 2)) + list(rng.choice(filler, 4))
        rng.shuffle(tokens)
        out.append({"review": " ".join(tokens), "topic": label})
    return pd.DataFrame(out)


def _recordings(count=60, seed=0, labelled=True):
    """Long format: one row per step; class = the frequency of a sine on channel a; rows shuffled."""
    rng = np.random.default_rng(seed)
    rows = []
    for r in range(count):
        label = ["slow", "fast"][r % 2]
        steps = int(rng.integers(15, 30))
        t = np.arange(steps)
        a = np.sin(t * (0.3 if label == "slow" else 1.3)) + rng.normal(0, 0.1, steps)
        for k in range(steps):
            row = {"recording": f"r{r}", "step": k, "a": a[k], "b": rng.normal()}
            if labelled:
                row["activity"] = label
            rows.append(row)
    frame = pd.DataFrame(rows)
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


def _write(frame, path):
    frame.to_csv(path, index=False)
    return str(path)


# ------------------------------------------------------------------ end to end


def test_a_single_series_is_a_panel_of_one(tmp_path, capsys):
    csv, model = _write(_sales(), tmp_path / "sales.csv"), str(tmp_path / "m.pt")
    args = ["forecast", "--csv", csv, "--target", "units", "--time", "day", "--horizon", "4", "--epochs", "20"]
    assert main(args + ["--ensemble", "1", "--quiet", "--output", model]) == 0
    assert "a global GRU over 1 series, horizon 4" in capsys.readouterr().out
    forecasts = str(tmp_path / "f.csv")
    assert main(["predict", model, "--csv", csv, "--output", forecasts]) == 0
    table = pd.read_csv(forecasts)
    assert list(table["time"].str[:10]) == ["2023-10-28", "2023-10-29", "2023-10-30", "2023-10-31"]
    assert table["forecast"].between(60, 140).all()  # in the series' range
    newer = _write(_sales(rows=330), tmp_path / "newer.csv")
    assert main(["predict", model, "--csv", newer, "--output", forecasts]) == 0
    assert pd.read_csv(forecasts)["time"].iloc[0].startswith("2023-11-27")  # continues after the newer file


def test_train_forecast_says_what_replaced_it(capsys):
    replaced = ["train", "forecast", "--csv", "x.csv", "--target", "units"]
    _fails(replaced, capsys, "grukit forecast --csv FILE --target COL")


def test_classify_text_end_to_end(tmp_path, capsys):
    csv, model = _write(_texts(), tmp_path / "t.csv"), str(tmp_path / "t.pt")
    args = ["train", "classify-text", "--csv", csv, "--text", "review", "--label", "topic", "--epochs", "15"]
    assert main(args + ["--quiet", "--output", model]) == 0
    out = capsys.readouterr().out
    accuracy = float(next(line for line in out.splitlines() if "grukit GRU" in line).split()[-1])
    assert "3 classes of 'topic'" in out and accuracy > 0.8  # majority is 1/3
    assert main(["predict", model, "the goal of the match", "tasty soup"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("sport") and lines[1].startswith("food")
    assert main(["export", model, str(tmp_path / "t.onnx")]) == 0
    assert main(["gates", model, "the", "team", "was", "tasty", "--out", str(tmp_path / "g")]) == 0
    # grukit evaluate on a labelled file with other column names and a label the model never saw
    test = _texts(rows=30, seed=3).rename(columns={"review": "body", "topic": "class"})
    test.loc[0, "class"] = "weather"
    csv_test = _write(test, tmp_path / "test.csv")
    capsys.readouterr()
    assert main(["evaluate", model, "--csv", csv_test, "--text", "body", "--label", "class"]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split()[2])
    assert 0.8 < accuracy <= 29 / 30 and "on 30 samples" in out
    assert "not trained on (counted wrong): 'weather'" in out and "weather -> " in out
    assert main(["evaluate", model, "--csv", csv_test]) == 2  # the training file's columns are not in it
    assert "'review'" in capsys.readouterr().err
    ort = pytest.importorskip("onnxruntime")
    from grukit.apps.datasets.reviews import encode, tokenize_any_language
    from grukit.apps.tasks import csv_text
    from grukit.apps.tasks.model_files import load

    saved = load(model)
    ids, lengths = encode(["tasty bread", "a chip"], saved["vocab"], saved["max_len"], tokenize_any_language)
    got = ort.InferenceSession(str(tmp_path / "t.onnx")).run(None, {"ids": ids, "lengths": lengths})[0]
    np.testing.assert_allclose(got, csv_text.probabilities(saved, ["tasty bread", "a chip"]), atol=1e-5)


def test_classify_text_any_script():
    frame = pd.DataFrame({"t": ["très bon café", "schlecht und kalt", "очень хорошо", "плохо"] * 10,
                          "y": ["pos", "neg", "pos", "neg"] * 10})  # fmt: skip
    model, report = classify_text(frame, text="t", label="y", epochs=20)
    assert report["model"] == 1.0 and report["baselines"]["bag-of-words logistic regression"] == 1.0


def test_classify_series_long_csv_end_to_end(tmp_path, capsys):
    csv, model = _write(_recordings(count=100), tmp_path / "r.csv"), str(tmp_path / "r.pt")
    args = ["train", "classify-series", "--csv", csv, "--id", "recording", "--label", "activity", "--time", "step"]
    assert main(args + ["--epochs", "40", "--quiet", "--output", model]) == 0
    out = capsys.readouterr().out
    accuracy = float(next(line for line in out.splitlines() if "grukit GRU" in line).split()[-1])
    assert "nearest neighbour on mean features" in out and accuracy >= 0.8
    new = _write(_recordings(count=6, seed=5, labelled=False), tmp_path / "new.csv")
    assert main(["predict", model, "--csv", new]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and sum(("slow" in line) == (int(line[1]) % 2 == 0) for line in lines) >= 5
    # a labelled file the model never saw: grukit evaluate scores it (predict printed labels only)
    test = _write(_recordings(count=20, seed=7), tmp_path / "test.csv")
    assert main(["evaluate", model, "--csv", test, "--json", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "e.json").read_text())
    assert out.startswith(f"classify-series: accuracy {report['accuracy']:.4f} on 20 samples")
    assert report["accuracy"] >= 0.8 and report["constant answer"]["accuracy"] == 0.5
    assert set(report["per class"]) == {"slow", "fast"} and "(the file's most frequent class)" in out
    unlabelled = _write(_recordings(count=4, seed=5, labelled=False), tmp_path / "unlabelled.csv")
    assert main(["evaluate", model, "--csv", unlabelled]) == 2
    assert "activity" in capsys.readouterr().err  # the label column it looked for


def test_classify_series_from_a_ts_file_and_from_python(tmp_path):
    lines = ["@problemName toy", "@univariate false", "@dimensions 2", "@classLabel true up down", "@data"]
    rng = np.random.default_rng(0)
    for i in range(40):
        steps = int(rng.integers(10, 20))
        sign = 1 if i % 2 else -1
        a = ",".join(f"{sign * k / steps + rng.normal(0, 0.05):.3f}" for k in range(steps))
        b = ",".join(f"{rng.normal():.3f}" for _ in range(steps))
        lines.append(f"{a}:{b}:{'up' if sign > 0 else 'down'}")
    path = tmp_path / "toy.ts"
    path.write_text("\n".join(lines) + "\n")
    model, report = classify_series(str(path), epochs=30)
    assert report["task"] == "classify-series" and report["model"] >= 0.8
    frame = _recordings()
    model, report = classify_series(frame, id="recording", label="activity", time="step", epochs=5)
    assert set(report["split"]) == {"train", "val", "test"} and sum(report["split"].values()) == 60
    model, report = classify_series(frame, id="recording", label="activity", epochs=1)  # interleaved rows, no time
    assert sum(report["split"].values()) == 60


# ------------------------------------------------------------------ bad input


def _fails(args, capsys, *fragments, output=None):
    assert main(args + (["--output", output] if output else [])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    if output:
        assert not os.path.exists(output)  # no partial model file


def _train_forecast(csv, *more):
    """A single series through the panel forecaster (the reader every command shares)."""
    return ["forecast", "--csv", str(csv), "--target", "units", *more, *TINY_FORECAST]


def test_missing_column_is_named_with_the_columns_that_exist(tmp_path, capsys):
    csv = _write(_sales(), tmp_path / "s.csv")
    _fails(["forecast", "--csv", csv, "--target", "sales", *TINY_FORECAST], capsys, "'sales' is not a column",
           "its columns are: day, units, temperature", output=str(tmp_path / "m.pt"))  # fmt: skip
    _fails(_train_forecast(csv, "--future", "temp"), capsys, "'temp' is not a column")
    _fails(["train", "classify-text", "--csv", csv, "--text", "x", "--label", "units"], capsys, "--text 'x'")


def test_non_numeric_value_names_row_and_column(tmp_path, capsys):
    frame = _sales()
    frame["units"] = frame["units"].astype(object)
    frame.loc[16, "units"] = "n/a units"
    _fails(_train_forecast(_write(frame, tmp_path / "s.csv")), capsys, "column 'units'", "'n/a units'",
           "row 17 (line 18)", "not a number")  # fmt: skip


@pytest.mark.parametrize("text,shown,what", [("inf", "inf", "an infinity"), ("1e999", "inf", "an infinity"),
                                             ("-Infinity", "-inf", "an infinity"),
                                             ("1e200", "1e+200", "a number beyond float32")])  # fmt: skip
def test_infinite_and_huge_values_are_refused_with_their_row(tmp_path, capsys, text, shown, what):
    """inf passed every check and trained to an RMSE of nan (issue 31, audit 3); 1e200 overflowed
    after scaling. Refused in training and in predict --csv alike."""
    frame = _sales()
    frame["units"] = frame["units"].astype(object)
    frame.loc[49, "units"] = text
    bad = _write(frame, tmp_path / "bad.csv")
    output = str(tmp_path / "m.pt")
    _fails(_train_forecast(bad), capsys, "column 'units'", repr(shown), "row 50 (line 51)", what, output=output)
    assert main(_train_forecast(_write(_sales(), tmp_path / "good.csv"), "--output", output)) == 0
    capsys.readouterr()
    _fails(["predict", output, "--csv", bad], capsys, "column 'units'", repr(shown), what)
    assert main(["predict", output, "--csv", _write(_sales(), tmp_path / "good.csv")]) == 0


def test_missing_values_refused_with_count_and_positions_or_filled(tmp_path, capsys):
    frame = _sales()
    frame.loc[[4, 9, 12], "units"] = np.nan
    csv = _write(frame, tmp_path / "s.csv")
    _fails(_train_forecast(csv), capsys, "3 missing values", "row 5 (line 6), 10 (line 11), 13 (line 14)", "--fill")
    for policy in ("ffill", "interpolate", "zero"):
        assert main(_train_forecast(csv, "--fill", policy)) == 0
    _fails(_train_forecast(csv, "--fill", "drop"), capsys, "--fill drop leaves rows out", "holes in a series' time")


def test_a_repeated_column_name_is_refused(tmp_path, capsys):
    """pandas reads the second "units" column as "units.1": --target units took the first silently
    (issue 31, audit 9)."""
    frame = _sales()
    csv = tmp_path / "s.csv"
    frame.to_csv(csv, index=False)
    lines = csv.read_text().splitlines()
    lines[0] = lines[0].replace("temperature", "units")
    csv.write_text("\n".join(lines) + "\n")
    _fails(_train_forecast(str(csv)), capsys, "--target 'units' names 2 columns", "rename the others")
    assert main(_train_forecast(_write(frame, tmp_path / "fine.csv"))) == 0


def test_single_class_and_hundreds_of_classes(tmp_path, capsys):
    frame = _texts()
    frame["topic"] = "sport"
    args = ["train", "classify-text", "--text", "review", "--label", "topic", *QUICK]
    _fails(args + ["--csv", _write(frame, tmp_path / "one.csv")], capsys, "a single class ('sport' in every row)")
    frame["topic"] = [f"c{i}" for i in range(len(frame))]
    with pytest.warns(UserWarning, match="240 classes"):
        assert main(args + ["--csv", _write(frame, tmp_path / "many.csv"), "--epochs", "1"]) == 0


def test_empty_binary_and_not_csv_files(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _fails(_train_forecast(empty), capsys, "is empty (0 bytes)")
    binary = tmp_path / "model.csv"
    torch.save({"a": torch.zeros(3)}, binary)
    _fails(_train_forecast(binary), capsys, "is not a CSV file")
    json_file = tmp_path / "data.json"
    json_file.write_text('{"units": [1, 2, 3]}\n')
    _fails(_train_forecast(json_file), capsys, "--target 'units' is not a column")
    _fails(_train_forecast(tmp_path / "absent.csv"), capsys, "no such file")
    _fails(_train_forecast(tmp_path), capsys, "is a folder")


def test_encoding_other_than_utf8(tmp_path, capsys):
    frame = _texts()
    frame.loc[0, "review"] = "café crème"
    path = tmp_path / "latin.csv"
    frame.to_csv(path, index=False, encoding="latin-1")
    args = ["train", "classify-text", "--csv", str(path), "--text", "review", "--label", "topic", *QUICK]
    _fails(args, capsys, "is not utf-8 text", "--encoding latin-1")
    assert main(args + ["--encoding", "latin-1"]) == 0


def test_data_options_refused_for_packaged_tasks_and_missing_flags(tmp_path, capsys):
    _fails(["train", "weather", "--csv", "x.csv", *QUICK], capsys, "--csv: the weather task trains on its packaged")
    csv = _write(_recordings(), tmp_path / "r.csv")
    _fails(["train", "classify-series", "--csv", csv, "--label", "activity", *QUICK], capsys, "needs --id COL")


def test_label_changing_within_a_recording(tmp_path, capsys):
    frame = _recordings()
    rows = np.flatnonzero(frame["recording"] == "r3")
    frame.loc[rows[:3], "activity"] = "slow"  # r3 is "slow" in 3 rows, "fast" in the rest
    csv = _write(frame, tmp_path / "r.csv")
    args = ["train", "classify-series", "--csv", csv, "--id", "recording", "--label", "activity", *QUICK]
    _fails(args, capsys, "changes within recording 'r3'")


def test_python_api_names_unknown_options():
    with pytest.raises(TypeError, match="the options are: .*epochs"):
        classify_text(_texts(), text="review", label="topic", epoch=3)


def test_missing_text_is_refused_or_dropped(tmp_path, capsys):
    frame = _texts()
    frame.loc[[3, 7], "review"] = np.nan
    csv = _write(frame, tmp_path / "t.csv")
    args = ["train", "classify-text", "--csv", csv, "--text", "review", "--label", "topic", *QUICK]
    _fails(args, capsys, "--text column 'review'", "2 missing values", "row 4 (line 5), 8 (line 9)", "--fill drop")
    assert main(args + ["--fill", "drop"]) == 0
    model, report = classify_text(frame, text="review", label="topic", fill="drop", epochs=1)
    assert sum(report["split"].values()) == len(frame) - 2


def test_malformed_ts_file(tmp_path, capsys):
    path = tmp_path / "bad.ts"
    path.write_text("@problemName x\n@data\n1,2,oops:up\n")
    _fails(["train", "classify-series", "--csv", str(path), *QUICK], capsys, "is not a readable .ts file")


# ------------------------------------------------------------------ issue 31: the second audit's CSV findings


def _series_args(csv, *more):
    return ["train", "classify-series", "--csv", str(csv), "--id", "recording", "--label", "activity", *more, *QUICK]


def test_a_channel_with_one_text_cell_is_refused_not_dropped(tmp_path, capsys):
    """Without --features every numeric column is a channel; one text cell made channel 'a' a text
    column, silently left out (chance accuracy). Now refused with the cell, as with --features."""
    frame = _recordings()
    frame["a"] = frame["a"].astype(object)
    frame.loc[11, "a"] = "oops"
    csv = _write(frame, tmp_path / "r.csv")
    _fails(_series_args(csv), capsys, "column 'a'", "numeric but for 'oops' at row 12 (line 13)", "--features")
    _fails(_series_args(csv, "--features", "a,b"), capsys, "column 'a'", "'oops'")
    frame["note"] = "free text"  # a column of text is not a channel, and no error
    frame.loc[11, "a"] = 0.5
    assert main(_series_args(_write(frame, tmp_path / "fine.csv"))) == 0


def test_more_classes_than_max_classes_are_refused(tmp_path, capsys):
    """10,000 distinct labels hung the bag-of-words baseline for 25 minutes (issue 31, audit 5)."""
    frame = _texts()
    frame["topic"] = [f"c{i}" for i in range(len(frame))]
    csv = _write(frame, tmp_path / "t.csv")
    args = ["train", "classify-text", "--csv", csv, "--text", "review", "--label", "topic"]
    _fails(args + ["--max-classes", "100", *QUICK], capsys, "holds 240 classes, more than --max-classes 100",
           "--max-classes 240")  # fmt: skip


def test_a_ragged_row_is_refused_with_its_line(tmp_path, capsys):
    csv = tmp_path / "s.csv"
    _sales().to_csv(csv, index=False)
    lines = csv.read_text().splitlines()
    lines[20] = lines[20].rsplit(",", 1)[0]  # a short row: pandas filled it with a missing value
    csv.write_text("\n".join(lines) + "\n")
    _fails(_train_forecast(csv), capsys, "line 21 has 2 fields but the header has 3")
    lines[20] += ",1.0,2.0"  # a long row: pandas, reading only the named columns, dropped the extra field
    csv.write_text("\n".join(lines) + "\n")
    _fails(_train_forecast(csv), capsys, "line 21 has 4 fields but the header has 3")


def test_streams_utf16_unreadable_and_damaged_files(tmp_path, capsys, monkeypatch):
    import io

    frame = _sales()
    text = frame.to_csv(index=False)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    assert main(_train_forecast("-")) == 0  # standard input
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    import threading

    writer = threading.Thread(target=lambda: fifo.write_text(text))
    writer.start()
    assert main(_train_forecast(fifo)) == 0  # a FIFO (a shell's <(...)): read, not called empty
    writer.join()
    utf16 = tmp_path / "u16.csv"
    utf16.write_text(text, encoding="utf-16")
    _fails(_train_forecast(utf16), capsys, "is UTF-16 text", "--encoding utf-16")
    assert main(_train_forecast(utf16, "--encoding", "utf-16")) == 0
    damaged = tmp_path / "s.csv.xz"
    damaged.write_bytes(b"\xfd7zXZ\x00" + b"not xz data" * 20)
    _fails(_train_forecast(damaged), capsys, "is not a CSV file pandas can read")


def test_ts_files_with_nan_a_folder_or_another_encoding(tmp_path, capsys):
    header = "@problemName p\n@data\n"
    rows = [f"{i},{i + 1},{i + 2}:{-i},{i},{i}:{'up' if i % 2 else 'down'}\n" for i in range(30)]
    nan = tmp_path / "nan.ts"
    nan.write_text(header + "".join(rows[:5]) + "1,NaN,3:4,5,6:up\n" + "".join(rows[5:]))
    args = ["train", "classify-series", *QUICK, "--csv"]
    _fails(args + [str(nan)], capsys, "line 8 holds a missing or infinite value")
    folder = tmp_path / "folder.ts"
    folder.mkdir()
    _fails(args + [str(folder)], capsys, "is a folder")
    latin = tmp_path / "latin.ts"
    latin.write_text("# données\n" + header + "".join(rows), encoding="latin-1")
    _fails(args + [str(latin)], capsys, "is not utf-8 text")
    assert main(args + [str(latin), "--encoding", "latin-1"]) == 0


def test_an_all_missing_channel_is_refused_even_when_filling(tmp_path, capsys):
    frame = _recordings()
    frame["b"] = np.nan
    _fails(_series_args(_write(frame, tmp_path / "r.csv"), "--fill", "ffill"), capsys, "column 'b'", "has no values")


def test_the_evaluation_report_counts_as_stated():
    from grukit.apps.tasks.evaluation import classification_report

    report = classification_report(["a", "a", "a", "b", "c"], ["a", "b", "a", "b", "a"], ["a", "b"], "f.csv")
    assert report["accuracy"] == 3 / 5 and report["samples"] == 5
    assert report["constant answer"] == {"class": "a", "accuracy": 3 / 5}
    assert report["per class"]["a"] == {"samples": 3, "correct": 2, "recall": 2 / 3}
    assert report["per class"]["c"]["correct"] == 0 and report["unseen labels"] == ["c"]
    assert report["most frequent errors"] == {"a -> b": 1, "c -> a": 1}
    with pytest.raises(ValueError, match="nothing to evaluate"):
        classification_report([], [], ["a"], "f.csv")


def test_evaluate_names_the_tasks_that_offer_it():
    from grukit.apps.tasks import TASKS, NotOffered

    with pytest.raises(NotOffered, match="classify-text and classify-series models do"):
        TASKS["weather"].evaluate({}, "f.csv", {})
