"""The third audit's findings (issue 44): the surfaces wave 3 added, each finding a test that failed
before the fix. Ranked as the audit ranked them: data loss, silent wrong numbers, memory, tracebacks,
unclear messages."""

from __future__ import annotations

import errno
import os

import numpy as np
import pandas as pd
import pytest
import torch

import grukit
from grukit.apps.cli import main
from grukit.forecasting.table import TableError


def _one_line(capsys, args) -> str:
    """Run ``grukit ARGS``: status 2 and exactly one line on stderr, which is returned."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def daily_csv(tmp_path_factory):
    """Three daily series with a weekly season, 120 days each (long format: id, date, y)."""
    folder = tmp_path_factory.mktemp("daily")
    rng = np.random.default_rng(0)
    days = pd.date_range("2020-01-01", periods=120, freq="D")
    rows = [
        (f"s{k}", d, 10 + np.sin(t / 7 * 2 * np.pi) + 0.1 * rng.normal()) for k in range(3) for t, d in enumerate(days)
    ]
    path = folder / "long.csv"
    pd.DataFrame(rows, columns=["id", "date", "y"]).to_csv(path, index=False)
    return str(path)


FORECAST = ["--id", "id", "--time", "date", "--target", "y", "--horizon", "7", "--quiet"]
TINY = ["--epochs", "1", "--ensemble", "1", "--transform", "level"]


@pytest.fixture(scope="module")
def global_model(daily_csv, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("model") / "global.pt")
    assert main(["forecast", "--csv", daily_csv, *FORECAST, *TINY, "--output", path]) == 0
    return path


# ---------------------------------------------------------------------------------------- data loss


def test_a_failed_forecast_output_keeps_the_trained_model_and_names_the_given_path(
    daily_csv, tmp_path, capsys, monkeypatch
):
    from grukit.forecasting import forecaster

    def full_disk(self, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(forecaster.GlobalForecaster, "save", full_disk)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # where the model is kept instead
    output = str(tmp_path / "model.pt")
    err = _one_line(capsys, ["forecast", "--csv", daily_csv, *FORECAST, *TINY, "--output", output])
    assert f"could not save the model to {output!r} (No space left on device)" in err
    kept = [name for name in os.listdir(tmp_path) if name.startswith("grukit-global-forecast-")]
    assert len(kept) == 1 and "the trained model is kept in" in err
    monkeypatch.undo()
    model = forecaster.load(str(tmp_path / kept[0]))
    assert len(model.predict(daily_csv)) == 3 * 7


def test_an_output_in_a_folder_where_no_file_can_be_made_is_refused_before_training(capsys):
    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc, where nobody can create a file")
    from grukit.apps.arguments import check_writable_file

    with pytest.raises(ValueError, match=r"--output '/proc/version': cannot create a file in '/proc'"):
        check_writable_file("--output", "/proc/version")
    err = _one_line(capsys, ["train", "weather", "--epochs", "1", "--output", "/proc/version"])
    assert "cannot create a file in '/proc'" in err


def test_a_failed_atomic_write_names_the_path_given_not_the_temporary(tmp_path, monkeypatch):
    from grukit.files import TEMPORARY_PREFIX, write_atomically

    def fail(temporary):
        raise OSError(errno.EIO, "Input/output error", temporary)

    target = str(tmp_path / "out.json")
    with pytest.raises(OSError) as raised:
        write_atomically(target, fail)
    assert raised.value.filename == target and TEMPORARY_PREFIX not in str(raised.value)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------- silent wrong numbers


def test_nan_weights_are_refused_at_quantization_not_turned_into_zeros():
    gru = grukit.GRU(4, 8)
    with torch.no_grad():
        gru.weight_hh_l0[3, 2] = float("nan")
    for precision in ("int8", "bfloat16"):
        with pytest.raises(ValueError, match="weight_hh_l0 holds 1 NaN or infinite values"):
            gru.quantized(precision)
    with torch.no_grad():
        gru.weight_hh_l0[3, 2] = 0.0
        gru.bias_ih_l0[0] = float("inf")
    with pytest.raises(ValueError, match="bias_ih_l0 holds 1 NaN or infinite"):
        gru.quantized("int8")


def _int8_state():
    return grukit.GRU(4, 8).quantized("int8").state_dict()


CRAFTED = {
    "float32 weights": ("weight_ih_l0", lambda t: t.float(), "must hold int8 weights"),
    "int64 weights": ("weight_ih_l0", lambda t: t.long() * 3, "must hold int8 weights"),
    "bool weights": ("weight_hh_l0", lambda t: t.bool(), "must hold int8 weights"),
    "-128": ("weight_hh_l0", lambda t: torch.full_like(t, -128), "holds -128"),
    "wrong shape": ("weight_hh_l0", lambda t: t[:-1], "must have shape"),
    "NaN scale": ("weight_ih_scale_l0", lambda t: t * float("nan"), "NaN or infinite"),
    "inf scale": ("weight_hh_scale_l0", lambda t: t * float("inf"), "NaN or infinite"),
    "zero scale": ("weight_hh_scale_l0", lambda t: t * 0, "must be positive"),
    "negative scale": ("weight_ih_scale_l0", lambda t: -t, "must be positive"),
    "int bias": ("bias_hh_l0", lambda t: t.long(), "must be a float tensor"),
    "NaN bias": ("bias_ih_l0", lambda t: t * float("nan"), "NaN or infinite"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_or_damaged_quantized_state_dicts_are_refused_on_load(case):
    key, damage, message = CRAFTED[case]
    state = _int8_state()
    state[key] = damage(state[key])
    with pytest.raises(ValueError, match=message) as raised:
        grukit.QuantizedGRU(4, 8).load_state_dict(state)
    assert repr(key) in str(raised.value)
    grukit.QuantizedGRU(4, 8).load_state_dict(_int8_state())  # an undamaged one loads


def test_a_bfloat16_state_dict_needs_bfloat16_weights():
    state = grukit.GRU(4, 8).quantized("bfloat16").state_dict()
    state["weight_ih_l0"] = state["weight_ih_l0"].float()
    with pytest.raises(ValueError, match="must hold bfloat16 weights"):
        grukit.QuantizedGRU(4, 8, precision="bfloat16").load_state_dict(state)


def test_predict_precision_applies_to_a_global_model(global_model, daily_csv, capsys):
    outputs = {}
    for precision in ("", "int8"):
        assert (
            main(["predict", global_model, "--csv", daily_csv] + (["--precision", precision] if precision else [])) == 0
        )
        outputs[precision] = capsys.readouterr().out
    assert outputs[""] != outputs["int8"]  # was byte-identical: the flag was ignored
    from grukit.forecasting import forecaster

    model = forecaster.load(global_model)
    exact, low = model.predict(daily_csv), model.quantized("int8").predict(daily_csv)
    assert isinstance(model.quantized("int8").networks[0].encoder, grukit.QuantizedGRU)
    assert np.allclose(exact["forecast"], low["forecast"], atol=0.05 * exact["forecast"].abs().max())


TS_WITHOUT_LABELS = """@problemName unlabelled
@univariate false
@dimensions 2
@equalLength true
@seriesLength 3
@classLabel false
@data
1,2,3:4,5,6
7,8,9:1,2,3
"""


def test_a_ts_file_without_class_labels_keeps_every_channel(tmp_path):
    from grukit.apps.datasets.uea import read_ts

    path = tmp_path / "unlabelled.ts"
    path.write_text(TS_WITHOUT_LABELS)
    series, labels = read_ts(str(path))
    assert labels is None and [s.shape for s in series] == [(3, 2), (3, 2)]
    assert series[0][:, 1].tolist() == [4, 5, 6]  # the last channel was taken as the label
    labelled = tmp_path / "labelled.ts"
    labelled.write_text(TS_WITHOUT_LABELS.replace("@classLabel false", "@classLabel true a b"))
    series, labels = read_ts(str(labelled))
    assert labels == ["4,5,6", "1,2,3"] and series[0].shape == (3, 1)


def test_evaluate_on_a_ts_file_without_labels_is_refused(tmp_path):
    from grukit.apps.tasks.csv_series import read_recordings
    from grukit.apps.tasks.options import Options

    path = tmp_path / "unlabelled.ts"
    path.write_text(TS_WITHOUT_LABELS)
    options = Options("classify-series", csv=str(path))
    ids, series, labels, channels = read_recordings(str(path), options, ["dim_0", "dim_1"], need_labels=False)
    assert labels is None and len(channels) == 2
    with pytest.raises(TableError, match="@classLabel false"):
        read_recordings(str(path), options, ["dim_0", "dim_1"], need_labels=True)


@pytest.mark.parametrize("module", ["min_gru", "blocks"])
def test_nan_in_the_padding_stays_out_of_min_gru_outputs_and_gradients(module):
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4)
    x[4:, 0] = float("nan")  # past sequence 0's length
    x[2:, 2] = float("inf")
    x.requires_grad_(True)
    lengths = torch.tensor([4, 6, 2])
    if module == "min_gru":
        from grukit.min_gru import min_gru

        net = grukit.MinGRU(4, 5, bidirectional=True)
        output, h_n = min_gru(x, net.layer_weights(), lengths=lengths, bidirectional=True)
    else:
        net = grukit.MinGRUBlocks(4, 5)
        output, h_n = net._run(x, None, lengths)
    steps = torch.arange(6).unsqueeze(1)
    assert torch.isfinite(output).all() and torch.isfinite(h_n).all()
    assert (output[steps >= lengths] == 0).all()  # zero past each length, as the docs say
    output.sum().backward()
    assert torch.isfinite(x.grad[steps < lengths]).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


def test_levels_too_close_to_0_or_1_are_refused_not_rounded(daily_csv, capsys):
    from grukit.forecasting.forecaster import Settings

    with pytest.raises(ValueError, match="between 0.000001 and 0.999999"):
        Settings(horizon=3, quantiles=(1e-9, 0.5)).check()
    err = _one_line_usage(capsys, ["forecast", "--csv", daily_csv, *FORECAST, "--quantiles", "1e-9,0.999999999"])
    assert "every level must lie between 0.000001 and 0.999999" in err


def _one_line_usage(capsys, args) -> str:
    """A usage error (argparse): status 2 and the error as the last line."""
    with pytest.raises(SystemExit) as raised:
        main(args)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_evaluate_on_a_file_sharing_no_label_is_refused():
    from grukit.apps.tasks.evaluation import classification_report

    with pytest.raises(ValueError, match="shares no label with the model"):
        classification_report(["x", "y"], ["a", "b"], ["a", "b"], "other.csv")
    assert classification_report(["a", "y"], ["a", "b"], ["a", "b"], "f.csv")["accuracy"] == 0.5


def test_an_int8_model_refuses_inf_input_where_its_scale_would_be_inf():
    q = grukit.GRU(1, 4).quantized("int8")
    x = torch.tensor([[[1.0]], [[float("inf")]]])
    with pytest.raises(ValueError, match="input holds inf"):
        q(x)
    assert torch.isfinite(grukit.GRU(1, 4).quantized("bfloat16")(x)[0]).all()


@pytest.mark.parametrize("convert", ["float", "double", "half", "to_float64"])
def test_conversions_that_would_change_stored_weights_are_refused(convert):
    bf16 = grukit.GRU(4, 8).quantized("bfloat16")
    int8 = grukit.GRU(4, 8).quantized("int8")
    call = {
        "float": lambda m: m.float(),
        "double": lambda m: m.double(),
        "half": lambda m: m.half(),
        "to_float64": lambda m: m.to(torch.float64),
    }[convert]
    with pytest.raises(TypeError, match="Convert the float model and quantize it again"):
        call(bf16)
    if convert == "float":
        assert call(int8) is int8 and int8.weight_ih_l0.dtype == torch.int8  # no conversion: passes
    else:
        with pytest.raises(TypeError, match="keeps its stored weights in torch.int8"):
            call(int8)
    assert bf16.weight_ih_l0.dtype == torch.bfloat16 and int8.weight_ih_scale_l0.dtype == torch.float32


def test_a_wide_csv_with_a_repeated_column_is_refused(tmp_path, capsys):
    path = tmp_path / "wide.csv"
    days = pd.date_range("2020-01-01", periods=60, freq="D").strftime("%Y-%m-%d")
    path.write_text("date,a,a,b\n" + "".join(f"{d},{k},{k + 1},{k + 2}\n" for k, d in enumerate(days)))
    err = _one_line(capsys, ["forecast", "--csv", str(path), "--time", "date", "--horizon", "3", "--quiet"])
    assert "has 2 columns named 'a' (columns 2, 3)" in err


TSF = """@relation example
@attribute series_name string
@attribute start_timestamp date
@frequency yearly
@horizon 2
@data
T1:1980-01-01 00-00-00:1,2,3,4,5,6,7,8
T2:1981-01-01 00-00-00:2,3,4,5,6,7,8,9
"""


def _tsf(tmp_path, text, name="panel.tsf", encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return str(path)


TSF_DEFECTS = {
    "duplicate name": (TSF.replace("T2:", "T1:"), "series 'T1' appears twice (first on line 7)"),
    "bad start": (TSF.replace("1981-01-01 00-00-00", "1981-13-45 00-00-00"), "start timestamp '1981-13-45 00-00-00'"),
    "inf": (TSF.replace("3,4,5,6", "3,inf,5,6"), "'inf' is infinite"),
    "1e999": (TSF.replace("3,4,5,6", "3,1e999,5,6"), "'1e999' is infinite or too large"),
    "1e300": (TSF.replace("3,4,5,6", "3,1e300,5,6"), "'1e300' is infinite or too large for the models"),
    "bare attribute": (TSF.replace("@attribute series_name string", "@attribute"), "an @attribute line needs a name"),
    "horizon abc": (TSF.replace("@horizon 2", "@horizon abc"), "@horizon must be a whole number of steps"),
    "NaN value": (TSF.replace("3,4,5,6", "3,NaN,5,6"), "(the first, value 4, is 'NaN')"),
}


@pytest.mark.parametrize("defect", list(TSF_DEFECTS))
def test_tsf_defects_are_one_line_naming_them(defect, tmp_path):
    from grukit.forecasting.tsf import read_tsf

    text, message = TSF_DEFECTS[defect]
    with pytest.raises(TableError) as raised:
        read_tsf(_tsf(tmp_path, text))
    assert message in str(raised.value), str(raised.value)
    panel = read_tsf(_tsf(tmp_path, TSF))  # the undamaged file
    assert len(panel.series) == 2 and panel.series[0].times is not None


def test_a_latin1_tsf_names_the_encoding_option(tmp_path, capsys):
    path = _tsf(tmp_path, TSF.replace("@relation example", "@relation caf\u00e9"), encoding="latin-1")
    err = _one_line(capsys, ["forecast", "--csv", path, "--epochs", "1", "--quiet"])
    assert "is not utf-8 text" in err and "--encoding latin-1" in err
    from grukit.forecasting.tsf import read_tsf

    assert len(read_tsf(path, encoding="latin-1").series) == 2


# ------------------------------------------------------------------------------------------- memory


def test_arguments_asking_for_more_memory_than_the_machine_has_are_refused(daily_csv, capsys):
    from grukit.memory_budget import available_bytes, check_fits, check_gru_training

    check_fits("--window 10", 1e6, "small", available=10**9)
    with pytest.raises(ValueError, match=r"--window 10 needs about 2.0 GB \(windows\), more than the 1.0 GB"):
        check_fits("--window 10", 2e9, "windows", available=10**9)
    with pytest.raises(ValueError, match=r"--hidden 1000 --layers 2 needs about 0.1 GB"):
        check_gru_training(1000, 2, available=10**6)  # 16 x (2 x 3e6 + 3e6) = 144e6 bytes
    assert available_bytes() is None or available_bytes() > 0
    err = _one_line(capsys, ["forecast", "--csv", daily_csv, *FORECAST, "--window", "100000", "--pad", "--epochs", "1"])
    assert "--window 100000 --pad needs about" in err and "this machine has available" in err


def test_the_available_memory_reads_meminfo_and_a_cgroup_limit(tmp_path):
    from grukit.memory_budget import available_bytes

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert available_bytes(str(meminfo), str(cgroup)) == 20000000 * 1024
    (cgroup / "memory.max").write_text("4000000000\n")
    (cgroup / "memory.current").write_text("1000000000\n")
    assert available_bytes(str(meminfo), str(cgroup)) == 3000000000
    (cgroup / "memory.max").write_text("max\n")
    assert available_bytes(str(meminfo), str(cgroup)) == 20000000 * 1024


# ------------------------------------------------------------------------------------------- tracebacks


def test_min_gru_modules_and_streams_take_zero_steps():
    x = torch.randn(0, 3, 4)
    for module in (
        grukit.MinGRU(4, 8),
        grukit.MinGRU(4, 8, num_layers=2, bidirectional=True),
        grukit.MinGRUBlocks(4, 8),
    ):
        output, h_n = module(x)
        assert output.shape[:2] == (0, 3) and torch.equal(h_n, torch.zeros_like(h_n))
        hx = torch.randn_like(h_n)
        assert torch.equal(module(x, hx)[1], hx)  # the state passes through, as torch.nn.GRU's
    for module in (grukit.MinGRU(4, 8), grukit.MinGRUBlocks(4, 8)):
        stream = module.stream(3)
        assert stream(x).shape == (0, 3, 8)


# ------------------------------------------------------------------------------------- unclear messages


def test_a_global_model_on_data_of_another_frequency_names_both(global_model, daily_csv, tmp_path, capsys):
    weekly = pd.read_csv(daily_csv)
    weekly = weekly[pd.to_datetime(weekly["date"]).dt.day_of_week == 0]
    path = tmp_path / "weekly.csv"
    weekly.to_csv(path, index=False)
    err = _one_line(capsys, ["predict", global_model, "--csv", str(path)])
    assert "the data's times step by 'W-MON'; the model was trained on 'D' data" in err


@pytest.mark.parametrize("command", ["quantize", "evaluate"])
def test_commands_for_task_models_name_a_global_model(command, global_model, daily_csv, tmp_path, capsys):
    args = [command, global_model] + ([str(tmp_path / "q.pt")] if command == "quantize" else ["--csv", daily_csv])
    err = _one_line(capsys, args)
    assert "a global forecasting model (from grukit forecast)" in err and "grukit predict" in err
    assert "unknown" not in err


def test_pad_hints_do_not_suggest_pad_when_it_was_given(daily_csv, capsys):
    err = _one_line(capsys, ["forecast", "--csv", daily_csv, *FORECAST[:-3], "--horizon", "100000", "--pad"])
    assert "--pad" not in err.split("error:")[1] and "a shorter horizon" in err


def test_negative_quantile_levels_name_the_level(daily_csv, capsys):
    err = _one_line_usage(capsys, ["forecast", "--csv", daily_csv, *FORECAST, "--quantiles", "-0.1,0.5"])
    assert "every level must lie between" in err and "'-0.1,0.5'" in err and "expected one argument" not in err


def test_a_noon_timestamp_in_a_daily_column_is_named_as_off_the_grid(daily_csv, tmp_path, capsys):
    frame = pd.read_csv(daily_csv)
    frame.loc[5, "date"] = frame.loc[5, "date"] + " 12:00"
    path = tmp_path / "noon.csv"
    frame.to_csv(path, index=False)
    err = _one_line(capsys, ["forecast", "--csv", str(path), *FORECAST])
    assert "2020-01-06T12:00:00 (row 6), off its D grid" in err and "not a date or time" not in err


def test_torch_func_grad_through_a_quantized_gru_gives_the_inference_only_message():
    q = grukit.GRU(4, 8).quantized("int8")
    with pytest.raises(RuntimeError, match="computes inference only"):
        torch.func.grad(lambda x: q(x)[0].sum())(torch.randn(3, 1, 4))


# --------------------------------------------------------------- what the fuzzer found (test_fuzz_files)


def test_any_failure_of_torchs_unpickler_is_an_unreadable_file(tmp_path, monkeypatch):
    """A flipped byte made torch's weights-only unpickler raise IndexError ("pop from empty list")."""
    from grukit.apps.tasks import model_files

    path = tmp_path / "damaged.pt"
    path.write_bytes(b"not really")

    def damaged_stack(*args, **kwargs):
        raise IndexError("pop from empty list")

    monkeypatch.setattr(model_files.torch, "load", damaged_stack)
    with pytest.raises(ValueError, match=r"is not a readable grukit model file .*IndexError: pop from empty list"):
        model_files.load(str(path))


def test_a_global_model_with_a_renamed_key_or_nan_weights_is_one_line(global_model, daily_csv, tmp_path, capsys):
    """A flipped byte renamed "seed" to "reed": Settings(**...) raised TypeError with a traceback."""
    saved = torch.load(global_model, weights_only=True)
    renamed = {**saved, "settings": {("reed" if k == "seed" else k): v for k, v in saved["settings"].items()}}
    torch.save(renamed, tmp_path / "renamed.pt")
    err = _one_line(capsys, ["predict", str(tmp_path / "renamed.pt"), "--csv", daily_csv])
    assert "is not a complete grukit global forecasting model (TypeError" in err
    networks = [dict(state) for state in saved["networks"]]
    networks[0]["encoder.weight_hh_l0"] = networks[0]["encoder.weight_hh_l0"] * float("nan")
    torch.save({**saved, "networks": networks}, tmp_path / "nan.pt")
    err = _one_line(capsys, ["predict", str(tmp_path / "nan.pt"), "--csv", daily_csv])
    assert "a network's weights 'encoder.weight_hh_l0' hold NaN or infinite values" in err


def test_forecasts_that_overflow_are_refused_not_printed(global_model, daily_csv, capsys, monkeypatch):
    """Values spanning many orders of magnitude, or a damaged file's huge numbers, overflowed the
    forecasts to inf with status 0 (found with -1e308 in a .tsf history)."""
    from grukit.forecasting import forecaster

    exact = forecaster.GlobalForecaster.quantiles_at

    def overflowing(self, *args, **kwargs):
        y, windows = exact(self, *args, **kwargs)
        y[1, 0, 0] = -np.inf
        return y, windows

    monkeypatch.setattr(forecaster.GlobalForecaster, "quantiles_at", overflowing)
    err = _one_line(capsys, ["predict", global_model, "--csv", daily_csv])
    assert "series 's1': its forecasts overflow (its values reach 1" in err


def test_odd_cells_and_names_in_a_wide_csv_are_one_line(tmp_path, capsys):
    days = pd.date_range("2020-01-01", periods=30, freq="D").strftime("%Y-%m-%d")
    body = "".join(f"{d},{k},{k + 1}\n" for k, d in enumerate(days))
    huge = tmp_path / "huge.csv"  # a 400-digit number: pandas keeps the column as text, every cell a number
    huge.write_text("date,a,b\n" + body.replace(",0,1\n", "," + "9" * 400 + ",1\n", 1))
    err = _one_line(capsys, ["forecast", "--csv", str(huge), "--time", "date", "--horizon", "3", "--quiet"])
    assert "column 'a'" in err and "a number too large for the models" in err
    named = tmp_path / "named.csv"  # a quoted header holding a newline: the list of columns stays one line
    named.write_text('"da\nte",a,b\n' + body)
    err = _one_line(capsys, ["forecast", "--csv", str(named), "--time", "date", "--horizon", "3", "--quiet"])
    assert "'da\\nte'" in err


def test_ts_values_beyond_float32_are_refused(tmp_path):
    from grukit.apps.tasks.csv_series import pad

    series = [np.array([[1.0], [2.0]]), np.array([[1e300], [3.0]])]
    with pytest.raises(TableError, match="recording 2 holds values too large"):
        pad(series, np.zeros(1), np.ones(1))


def test_an_int8_model_refuses_inf_in_packed_and_padded_batches_and_keeps_nan_as_float32_does():
    q = grukit.GRU(3, 4, bidirectional=True).quantized("int8")
    x = torch.randn(5, 2, 3)
    x[2, 1, 0] = float("inf")
    with pytest.raises(ValueError, match="input holds inf"):
        q(x)
    with pytest.raises(ValueError, match="input holds inf"):
        q(torch.nn.utils.rnn.pack_padded_sequence(x, [5, 3], enforce_sorted=False))
    assert torch.isfinite(q(x, lengths=[5, 2])[0][:2, 1]).all()  # inf past a length is never read
    x[2, 1, 0] = float("nan")
    output, h_n = q(x)  # NaN in, NaN out: as float32
    assert torch.isnan(h_n[:, 1]).all() and torch.isfinite(h_n[:, 0]).all()


def test_a_task_model_file_with_nan_weights_or_overflowing_outputs_is_one_line(tmp_path, capsys):
    """Found by the fuzzer: a flipped byte made a weight NaN, and predict printed "down (nan)" for
    every recording with status 0."""
    from grukit.apps.tasks.model_files import finite_outputs

    path = tmp_path / "series.ts"
    recordings = "".join(f"{k},{k + 1},{k + 2}:{k % 3},2,1:{'ab'[k % 2]}\n" for k in range(12))
    labelled = TS_WITHOUT_LABELS.replace("@classLabel false", "@classLabel true a b")
    path.write_text(labelled.replace("1,2,3:4,5,6\n7,8,9:1,2,3\n", recordings))
    model = tmp_path / "series.pt"
    assert (
        main(["train", "classify-series", "--csv", str(path), "--epochs", "1", "--quiet", "--output", str(model)]) == 0
    )
    capsys.readouterr()
    saved = torch.load(model, weights_only=True)
    name = next(k for k in saved["state_dict"] if "weight_hh" in k)
    saved["state_dict"][name] = saved["state_dict"][name] * float("nan")
    torch.save(saved, tmp_path / "damaged.pt")
    err = _one_line(capsys, ["predict", str(tmp_path / "damaged.pt"), "--csv", str(path)])
    assert f"the model file's weights {name!r} hold NaN or infinite values" in err
    with pytest.raises(ValueError, match="computes NaN or infinite outputs"):
        finite_outputs(torch.tensor([0.5, float("nan")]))
