"""Jinja templates for the model card, the dataset card and the Space (shipped inside the wheel)."""

from importlib.resources import files
from pathlib import Path


def template_path(name: str) -> Path:
    """Filesystem path of the template `name` (e.g. "model_card.md"), from a source tree or an installed wheel."""
    return Path(str(files(__name__) / name))
