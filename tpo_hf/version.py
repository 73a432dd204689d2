"""The version of the installed tpo-hf (pyproject.toml is the one place it is written)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tpo-hf")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
