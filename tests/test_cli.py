"""The `grukit` command as a console script, and the weather loader (tasks: test_tasks.py)."""

import subprocess
import sys

import pytest

from grukit.apps.datasets import seattle_weather


def test_weather_split_is_time_ordered_and_scaled_on_training_days_only():
    data = seattle_weather(window=7)
    n = len(data.y_train) + len(data.y_val) + len(data.y_test)
    assert n == 1461 - 7
    assert data.x_train.shape == (len(data.y_train), 7, 4)
    # persistence is the target of the day before: last_* of sample i+1 == y of sample i
    assert (data.last_test[1:] == data.y_test[:-1]).all()
    assert str(data.dates_test[-1])[:10] == "2015-12-31"
    assert abs(data.x_train[:, -1, 0].mean()) < 0.1  # standardised on the training days


def test_weather_rejects_bad_arguments():
    with pytest.raises(ValueError, match="window must be a positive int, got 0"):
        seattle_weather(window=0)
    with pytest.raises(ValueError, match="features and target must be among"):
        seattle_weather(target="humidity")


def test_console_script_runs_and_rejects_bad_options():
    done = subprocess.run(
        [sys.executable, "-m", "grukit.apps.cli", "demo", "--epochs", "0"], capture_output=True, text=True
    )
    assert done.returncode == 2 and "--epochs must be at least 1, got 0" in done.stderr
    done = subprocess.run([sys.executable, "-m", "grukit.apps.cli", "info"], capture_output=True, text=True)
    assert done.returncode == 0 and "backend torch: available" in done.stdout
