"""Every file grukit reads, fuzzed (hypothesis): long and wide CSV, Monash ``.tsf``, UEA ``.ts``,
model files and quantized state_dicts, each made from a valid file by mutation (cut lines and bytes,
swapped columns, non-numbers, extremes, other encodings, duplicated keys, damaged tensors).

The property, for each mutated file given to the command that reads it:
- either the command succeeds (status 0) and every number it prints or writes is finite (readers
  refuse NaN and infinities, so a NaN forecast or probability is a finding),
- or it fails with status 2 and exactly one line on stderr,
and in both cases no traceback, no hang (hypothesis' deadline), and no file left behind but the
output asked for.

``make test`` runs the same few examples of each every time ($GRUKIT_FUZZ_EXAMPLES, default 12);
``make fuzz`` runs rounds of 500 new random ones ($GRUKIT_FUZZ_RANDOM=1) for as long as it is given
(``make fuzz FUZZ_SECONDS=600``) and stops at the first finding, which hypothesis prints shrunk.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grukit.apps.cli import main

EXAMPLES = int(os.environ.get("GRUKIT_FUZZ_EXAMPLES", "12"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=30_000,  # ms: a hang fails the example instead of the suite
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=not os.environ.get("GRUKIT_FUZZ_RANDOM"),  # make test: the same examples every run; make fuzz: new ones
    database=None,
)

# ------------------------------------------------------------------------------- the valid files


def _long_csv(rows_per_series=40) -> str:
    rng = np.random.default_rng(1)
    days = pd.date_range("2021-03-01", periods=rows_per_series, freq="D").strftime("%Y-%m-%d")
    lines = ["id,date,y"]
    for k in range(3):
        lines += [f"s{k},{d},{10 + np.sin(t) + rng.normal():.4f}" for t, d in enumerate(days)]
    return "\n".join(lines) + "\n"


def _wide_csv() -> str:
    rng = np.random.default_rng(2)
    days = pd.date_range("2021-03-01", periods=40, freq="D").strftime("%Y-%m-%d")
    lines = ["date,a,b,c"] + [f"{d}," + ",".join(f"{5 + rng.normal():.4f}" for _ in range(3)) for d in days]
    return "\n".join(lines) + "\n"


def _tsf() -> str:
    rng = np.random.default_rng(3)
    head = "@relation fuzz\n@attribute series_name string\n@attribute start_timestamp date\n@frequency yearly\n"
    head += "@horizon 2\n@missing false\n@equallength false\n@data\n"
    rows = [
        f"T{k}:{1970 + k}-01-01 00-00-00:" + ",".join(f"{100 + 10 * t + rng.normal():.2f}" for t in range(20))
        for k in range(4)
    ]
    return head + "\n".join(rows) + "\n"


def _single_csv() -> str:
    """One series with a covariate: ``grukit forecast --target`` (a single series, a panel of one)."""
    rng = np.random.default_rng(5)
    days = pd.date_range("2021-01-01", periods=160, freq="D").strftime("%Y-%m-%d")
    rows = [f"{d},{20 + 5 * np.sin(t / 9) + rng.normal():.3f},{rng.normal():.3f}" for t, d in enumerate(days)]
    return "date,y,x\n" + "\n".join(rows) + "\n"


def _text_csv() -> str:
    """Labelled sentences: ``grukit train classify-text``."""
    good, bad = (
        ["a fine warm film", "great fun and moving", "lovely clever story"],
        ["dull and slow", "a boring mess", "weak plot awful"],
    )
    rows = [f"{(good if k % 2 else bad)[k % 3]} {k},{'pos' if k % 2 else 'neg'}" for k in range(60)]
    return "text,label\n" + "\n".join(rows) + "\n"


def _ts() -> str:
    rng = np.random.default_rng(4)
    head = "@problemName fuzz\n@timeStamps false\n@univariate false\n@dimensions 2\n@equalLength false\n"
    head += "@classLabel true up down\n@data\n"
    rows = []
    for k in range(16):
        label = "up" if k % 2 else "down"
        slope = 1 if label == "up" else -1
        steps = 6 + k % 4
        dims = [",".join(f"{slope * t + rng.normal():.3f}" for t in range(steps)) for _ in range(2)]
        rows.append(":".join(dims) + f":{label}")
    return head + "\n".join(rows) + "\n"


# ------------------------------------------------------------------------------- mutations

ODD_VALUES = ["", "?", "nan", "NaN", "inf", "-inf", "1e999", "-1e308", "1e308", "abc", "0x1F", " 3 ", "1,5", '"',
              "\x00", "\u00e9t\u00e9", "9" * 400, "-0", "2021-13-45", "12:00"]  # fmt: skip
MUTATIONS = ["cut line", "duplicate line", "swap columns", "replace field", "truncate", "flip byte", "encode",
             "insert line", "drop column"]  # fmt: skip


@st.composite
def mutated_text(draw, text: str) -> bytes:
    """``text`` after one to three mutations, as the bytes of a file."""
    lines = text.splitlines()
    encoding = "utf-8"
    cut_at = None
    flips = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(MUTATIONS))
        row = draw(st.integers(0, max(0, len(lines) - 1))) if lines else 0
        if kind == "cut line" and lines:
            del lines[row]
        elif kind == "duplicate line" and lines:
            lines.insert(row, lines[row])
        elif kind == "insert line":
            lines.insert(row, draw(st.sampled_from(ODD_VALUES + ["@data", "@attribute", "a,b,c,d,e"])))
        elif kind in ("swap columns", "replace field", "drop column") and lines:
            fields = lines[row].split(",")
            i, j = draw(st.integers(0, len(fields) - 1)), draw(st.integers(0, len(fields) - 1))
            if kind == "swap columns":
                fields[i], fields[j] = fields[j], fields[i]
            elif kind == "replace field":
                fields[i] = draw(st.sampled_from(ODD_VALUES))
            elif len(fields) > 1:
                del fields[i]
            lines[row] = ",".join(fields)
        elif kind == "truncate":
            cut_at = draw(st.integers(0, len(text)))
        elif kind == "flip byte":
            flips.append((draw(st.integers(0, len(text))), draw(st.integers(1, 255))))
        elif kind == "encode":
            encoding = draw(st.sampled_from(["latin-1", "utf-16", "utf-8-sig"]))
    data = ("\n".join(lines) + "\n").encode(encoding, errors="replace")
    for position, mask in flips:
        if data:
            position %= len(data)
            data = data[:position] + bytes([data[position] ^ mask]) + data[position + 1 :]
    return data[:cut_at] if cut_at is not None else data


# ------------------------------------------------------------------------------- running a command

NUMBER = re.compile(r"(?i)\b(nan|inf|infinity)\b")
PROBABILITY = re.compile(r"(?i)\((nan|-?inf)\)")
# evaluate's computed numbers: "accuracy 0.7500", "would score 0.5000", a class's "  0.9655  (28 of 29)"
EVALUATION = re.compile(r"(?i)(accuracy (nan|-?inf)|score (nan|-?inf)|  (nan|-?inf)  \()")


def _run(args, folder, allowed=(), computed=NUMBER):
    """``grukit ARGS`` in-process: (status, stdout); asserts the property: status 0 with no NaN or
    infinity where ``computed`` finds the numbers the command computed, or status 2 with one stderr
    line; and that ``folder`` holds no file it did not hold before but ``allowed``."""
    before = set(os.listdir(folder))
    out, err = io.StringIO(), io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        try:
            status = main(args)
        except SystemExit as exit:  # argparse's usage errors
            status = exit.code
    errors = err.getvalue()
    # numpy's overflow and invalid-value warnings: a number went wrong on the way (and the command
    # line would print them as more lines)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert "Traceback" not in errors, errors
    assert status in (0, 2), (status, errors[-2000:])
    if status == 2:
        assert errors.count("\n") == 1 and errors.startswith("grukit"), errors[-2000:]
    else:
        assert not computed.search(out.getvalue()), out.getvalue()[-2000:]
    left = set(os.listdir(folder)) - before - set(allowed)
    assert not left, left
    return status, out.getvalue()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny trained models, one per reader: global forecasters on the long CSV, the wide CSV and the
    .tsf file; a classify-series model on the .ts file and its int8 quantized file; the own-data
    forecaster on a one-series CSV (a panel of one) and a text classifier on a CSV of sentences."""
    folder = tmp_path_factory.mktemp("fuzz-models")
    sources = {"long.csv": _long_csv(), "wide.csv": _wide_csv(), "panel.tsf": _tsf(), "series.ts": _ts(),
               "single.csv": _single_csv(), "text.csv": _text_csv()}  # fmt: skip
    for name, text in sources.items():
        (folder / name).write_text(text)
    tiny = ["--epochs", "1", "--ensemble", "1", "--transform", "level", "--quiet"]
    commands = {
        "long.pt": ["forecast", "--csv", str(folder / "long.csv"), "--id", "id", "--time", "date", "--target", "y",
                    "--horizon", "5", *tiny],
        "wide.pt": ["forecast", "--csv", str(folder / "wide.csv"), "--time", "date", "--horizon", "5", *tiny],
        "tsf.pt": ["forecast", "--csv", str(folder / "panel.tsf"), *tiny],
        "series.pt": ["train", "classify-series", "--csv", str(folder / "series.ts"), "--epochs", "1", "--quiet"],
        "single.pt": ["forecast", "--csv", str(folder / "single.csv"), "--target", "y", "--time", "date",
                      "--horizon", "5", *tiny],
        "text.pt": ["train", "classify-text", "--csv", str(folder / "text.csv"), "--text", "text", "--label", "label",
                    "--epochs", "1", "--quiet"],
    }  # fmt: skip
    for name, args in commands.items():
        assert main([*args, "--output", str(folder / name)]) == 0, args
    assert main(["quantize", str(folder / "series.pt"), str(folder / "series-int8.pt")]) == 0
    return folder


def _work_folder(tmp_path, example):
    """A fresh folder for one example (hypothesis reuses the test's tmp_path)."""
    folder = tmp_path / f"example-{example}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    return folder


_counter = iter(range(10**9))


def _mutated_file(tmp_path, data, source: str, name: str):
    """(a fresh folder for one example, the file ``name`` in it holding ``source`` mutated)."""
    folder = _work_folder(tmp_path, next(_counter))
    path = folder / name
    path.write_bytes(data.draw(mutated_text(source)))
    return folder, path


# ------------------------------------------------------------------------------- the properties


@pytest.mark.parametrize(
    "model, source, suffix",
    [
        ("long.pt", _long_csv(), ".csv"),
        ("wide.pt", _wide_csv(), ".csv"),
        ("tsf.pt", _tsf(), ".tsf"),
        ("single.pt", _single_csv(), ".csv"),
    ],
    ids=["long-csv", "wide-csv", "tsf", "single-series-csv"],
)
@FUZZ
@given(data=st.data())
def test_forecasting_readers_under_mutation(models, tmp_path, model, source, suffix, data):
    folder, path = _mutated_file(tmp_path, data, source, f"mutated{suffix}")
    output = folder / "forecasts.csv"
    status, _ = _run(["predict", str(models / model), "--csv", str(path), "--output", str(output)], folder,
                     allowed=[output.name])  # fmt: skip
    if status == 0:
        frame = pd.read_csv(output)
        numbers = frame.select_dtypes("number").to_numpy()
        assert len(frame) and np.isfinite(numbers).all(), frame
    else:
        assert not output.exists()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@FUZZ
@given(data=st.data())
def test_ts_reader_under_mutation(models, tmp_path, command, data):
    folder, path = _mutated_file(tmp_path, data, _ts(), "mutated.ts")
    status, out = _run([command, str(models / "series.pt"), "--csv", str(path)], folder,
                       computed=EVALUATION if command == "evaluate" else PROBABILITY)  # fmt: skip
    if status == 0 and command == "evaluate":
        assert re.search(r"accuracy \d\.\d{4}", out), out


@pytest.mark.parametrize(
    "model, source, command",
    [("text.pt", _text_csv(), "--file"), ("text.pt", _text_csv(), "evaluate")],
    ids=["text-lines", "text-csv-evaluate"],
)
@FUZZ
@given(data=st.data())
def test_own_data_readers_under_mutation(models, tmp_path, model, source, command, data):
    """``predict MODEL --file`` (a text file, one input a line) and ``evaluate MODEL --csv`` (labelled
    sentences)."""
    folder, path = _mutated_file(tmp_path, data, source, "mutated.csv")
    if command == "evaluate":  # labels are echoed too (a label "inf" is text)
        _run(["evaluate", str(models / model), "--csv", str(path)], folder, computed=EVALUATION)
    else:
        # a text model echoes each input beside its probability: only "(0.73)" is computed
        _run(["predict", str(models / model), command, str(path)], folder, computed=PROBABILITY)


@FUZZ
@given(data=st.data())
def test_model_files_under_byte_mutation(models, tmp_path, data):
    folder = _work_folder(tmp_path, next(_counter))
    model, csv = data.draw(
        st.sampled_from([("long.pt", "long.csv"), ("series.pt", "series.ts"), ("series-int8.pt", "series.ts")])
    )
    original = (models / model).read_bytes()
    damaged = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(damaged) - 1))
        damaged[position] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(damaged))))
    path = folder / "damaged.pt"
    path.write_bytes(bytes(damaged[:cut] if cut is not None else damaged))
    _run(["predict", str(path), "--csv", str(models / csv)], folder)


TENSOR_DAMAGE = ["dtype float32", "dtype int64", "dtype bool", "value -128", "value 127", "scale 0", "scale -1",
                 "scale nan", "scale inf", "scale 1e30", "bias nan", "bias 1e30", "shape", "drop", "extra"]  # fmt: skip


@FUZZ
@given(data=st.data())
def test_quantized_state_dicts_under_tensor_mutation(models, tmp_path, data):
    """Damage the tensors of a ``grukit quantize`` file, then predict with it: refused in one line,
    or finite probabilities."""
    folder = _work_folder(tmp_path, next(_counter))
    saved = torch.load(models / "series-int8.pt", weights_only=True)
    state = dict(saved["state_dict"])
    gru_keys = sorted(k for k in state if re.search(r"(weight|bias)_(ih|hh)(_scale)?_l\d", k))
    for _ in range(data.draw(st.integers(1, 3))):
        damage = data.draw(st.sampled_from(TENSOR_DAMAGE))
        kind, _, value = damage.partition(" ")
        fitting = {"value": "weight_(ih|hh)_l", "scale": "_scale_", "bias": "bias_"}.get(kind, "")
        key = data.draw(st.sampled_from([k for k in gru_keys if re.search(fitting, k)]))
        if key not in state:  # dropped by an earlier damage
            continue
        t = state[key]
        if kind == "dtype":
            state[key] = t.to(getattr(torch, value)) if value != "int64" else t.long() * 3
        elif kind in ("value", "scale", "bias"):
            t = t.clone()
            flat = t.view(-1)
            try:
                flat[data.draw(st.integers(0, flat.numel() - 1))] = float(value)
            except RuntimeError:  # NaN or 1e30 into a tensor an earlier damage made int64: not this damage
                continue
            state[key] = t
        elif kind == "shape":
            state[key] = t[:-1]
        elif kind == "drop":
            del state[key]
        else:
            state[key + "_extra"] = t
    path = folder / "damaged-int8.pt"
    torch.save({**saved, "state_dict": state}, path)
    _run(["predict", str(path), "--csv", str(models / "series.ts")], folder)
