"""Finding data files inside installed packages without importing them.

Some data packages have heavy or broken dependencies (the Makefile installs them with
``--no-deps``), so their files are located with ``importlib.util.find_spec``,
which does not run the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def package_file(package: str, relative: str, install: str) -> Path:
    """The path of ``relative`` inside installed ``package``.

    Raises:
        ImportError: the package is missing; the message says how to install it.
    """
    spec = importlib.util.find_spec(package)
    hint = (
        f"this dataset ships inside the package {package!r}, which is not installed: "
        f"run `{install}` (or `make install`, which installs every data package)"
    )
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(hint)
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise ImportError(f"{package} is installed but has no {relative}: {hint}")
    return path
