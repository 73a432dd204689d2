"""The one rule for every cache and resumable state (eval answers, reference log-probs, curation shards).

A cached value may be reused only when its *key* matches: a dict naming everything that determines the value --
input files by identity (`file_identity`: path, size and modification time), every setting that changes the
output, every prompt and template text a model is given and what the model's processor wraps around it (chat
template, video prompt layout; `text_hashes`, one entry per text so that a mismatch names it), and the format
version of the code that wrote it. Keys are stored next to the values as plain dicts (not only as hashes), so a
mismatch can say *what* changed (`changed_fields`) instead of silently reusing or silently recomputing.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_json(path: Path, data: Any) -> None:
    """Writes `data` so that `path` either holds the old content or the complete new one, even after SIGKILL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def file_identity(path: str | os.PathLike | None) -> str:
    """`path@size:mtime_ns` for a local file (recursively summed for a folder); the path alone for a remote one.

    Size plus modification time catches a file repaired, re-encoded or replaced in place without reading it.
    """
    if path is None:
        return "None"
    path = os.fspath(path)
    if "://" in path or not os.path.exists(path):
        return path
    if os.path.isdir(path):
        size, newest = 0, 0
        for folder, _, names in os.walk(path):
            for name in names:
                stat = os.stat(os.path.join(folder, name))
                size, newest = size + stat.st_size, max(newest, stat.st_mtime_ns)
        return f"{path}@{size}:{newest}"
    stat = os.stat(path)
    return f"{path}@{stat.st_size}:{stat.st_mtime_ns}"


def key_hash(key: Any) -> str:
    """A stable hex digest of a JSON-able key (dict order does not matter)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def text_hashes(texts: dict[str, str | None]) -> dict[str, str]:
    """name -> hash of each prompt or template text (`None`: not used, left out), for a key: a text can be long, and
    its own entry lets a mismatch name the text that changed (e.g. `judge_prompt`)."""
    return {name: key_hash(text) for name, text in texts.items() if text is not None}


def without_off_options(settings: dict[str, Any], off_values: dict[str, Any]) -> dict[str, Any]:
    """`settings` less the options added later that are off (at their value in `off_values`): adding an option then
    never changes the key of work done without it, so that work still resumes or is still found."""
    return {name: value for name, value in settings.items() if name not in off_values or off_values[name] != value}


def changed_fields(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """The top-level names whose values differ between two keys (present in one only counts as changed)."""
    old = old or {}
    return sorted(
        name
        for name in set(old) | set(new)
        if json.dumps(old.get(name), sort_keys=True, default=str)
        != json.dumps(new.get(name), sort_keys=True, default=str)
    )
