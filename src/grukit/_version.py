__version__ = "0.1.0"  # the one source of the version: pyproject.toml reads it
