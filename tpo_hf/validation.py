"""Stage 3 of the flow (data): what a preference row must hold before anything is trained on it.

`check_preference_row` is the one gate every training row passes (`TPOTrainer` checks the whole dataset up front,
the collator each row it encodes): a value of the wrong type raises `RowError` naming the row and the field, and a
*degenerate* pair -- nothing to learn from, e.g. an empty answer or chosen == rejected -- is reported with its reason
so the caller drops and counts it instead of training on it silently.
"""

from __future__ import annotations

import math
import os
from typing import Any

GRANULARITIES = ("localized", "comprehensive")


class RowError(ValueError, KeyError):
    """A row has a value missing, or of the wrong type or shape; the message names the row and the field.

    Also a `KeyError`, which a missing field raised before; shown as plain text, not as a quoted key.
    """

    __str__ = Exception.__str__


def _where(index: Any, source: str | None) -> str:
    return f"{source + ' ' if source else ''}row {index}"


def _messages_text(value: list, field: str, where: str) -> str:
    """The text of TRL conversational messages, checking their shape."""
    texts = []
    for position, message in enumerate(value):
        if not isinstance(message, dict) or "content" not in message or not isinstance(message.get("role"), str):
            raise RowError(
                f"{where}, field {field!r}: message {position} is {message!r}; a conversational value is a list of "
                "{'role': str, 'content': str | list} dicts."
            )
        content = message["content"]
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list) and all(isinstance(part, dict) for part in content):
            texts += [str(part.get("text", "")) for part in content if part.get("type", "text") == "text"]
            if any(part.get("type") not in (None, "text", "video", "image") for part in content):
                raise RowError(f"{where}, field {field!r}: message {position} has a content part of unknown type.")
        else:
            raise RowError(
                f"{where}, field {field!r}: message {position} has content {type(content).__name__} "
                f"{content!r:.60}; use a string or a list of {{'type': 'text', 'text': ...}} parts."
            )
    return "\n".join(texts)


def text_of(value: Any, field: str, index: Any, source: str | None = None) -> str:
    """The text of a `prompt` / `chosen` / `rejected` value (plain string or TRL messages); wrong types raise."""
    where = _where(index, source)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return _messages_text(value, field, where)
    raise RowError(
        f"{where}, field {field!r}: expected a string or a list of chat messages, got {type(value).__name__} "
        f"{value!r:.60}."
    )


def _number_or_none(row: dict[str, Any], field: str, where: str) -> float | None:
    value = row.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        raise RowError(f"{where}, field {field!r}: expected a non-negative number of seconds or null, got {value!r}.")
    return float(value)


def check_preference_row(row: dict[str, Any], index: Any, source: str | None = None) -> str | None:
    """Checks one TPO training row; returns why it is degenerate (to drop and count), or `None` when it is fine.
    chosen == rejected is degenerate in a pair, and what an anchor row (`anchor` true) is.

    Raises:
        RowError: a field is missing or of the wrong type (naming row and field).
    """
    where = _where(index, source)
    missing = [field for field in ("prompt", "chosen", "rejected", "video") if row.get(field) is None]
    if missing:
        raise RowError(f"{where} has no value for field(s) {missing}.")
    video = row["video"]
    if not isinstance(video, (str, os.PathLike)) or not str(video).strip():
        raise RowError(
            f"{where}, field 'video': expected a video path or URL (a non-empty string), got {type(video).__name__} "
            f"{video!r:.60}."
        )
    texts = {field: text_of(row[field], field, index, source) for field in ("prompt", "chosen", "rejected")}
    anchor = row.get("anchor")
    if anchor is not None and not isinstance(anchor, bool):
        raise RowError(f"{where}, field 'anchor': expected true, false or null, got {anchor!r:.60}.")
    granularity = row.get("granularity")
    if granularity is not None and granularity not in GRANULARITIES:
        raise RowError(f"{where}, field 'granularity': expected one of {GRANULARITIES} or null, got {granularity!r}.")
    start, end = _number_or_none(row, "segment_start", where), _number_or_none(row, "segment_end", where)
    if start is not None and end is not None and end <= start:
        raise RowError(f"{where}: segment_end ({end}) must be after segment_start ({start}).")
    for field, text in texts.items():
        if not text.strip():
            return f"empty {field}"
    if texts["chosen"].strip() == texts["rejected"].strip():
        return None if anchor else "chosen == rejected"
    if anchor:
        raise RowError(
            f"{where} is an anchor row (field 'anchor' is true) but its chosen and rejected answers differ; an anchor "
            "gives its one answer as both, so that only the SFT term trains on it."
        )
    return None
