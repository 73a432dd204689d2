"""Where the card and Space templates are, and how they are rendered (curation writes the dataset card, publishing
the model card and the Space).

The templates live in the top-level `hub_cards/` folder of the repository; the wheel installs them as package data
`tpo_hf/_cards/` (a `package-dir` mapping in `pyproject.toml`), so they are found in a source checkout and in an
installed package alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_PACKAGE_DIR = Path(__file__).resolve().parent
# installed wheel first, then the source checkout
TEMPLATE_DIRS = (_PACKAGE_DIR / "_cards", _PACKAGE_DIR.parent / "hub_cards")


def template_path(name: str) -> Path:
    """The file of the template `name` (e.g. "model_card.md")."""
    for folder in TEMPLATE_DIRS:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(
        f"Template {name!r} is in none of {[str(f) for f in TEMPLATE_DIRS]}; reinstall tpo-hf (`pip install .`)."
    )


def render_template(name: str, **values: Any) -> str:
    """Renders a plain Jinja template (not a card); undefined values are errors, not empty strings."""
    import jinja2

    environment = jinja2.Environment(keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    environment.filters["pystr"] = json.dumps  # a double-quoted string literal that Python reads back as is
    return environment.from_string(template_path(name).read_text()).render(**values)
