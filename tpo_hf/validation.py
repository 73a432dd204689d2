"""Stage 3 of the flow (data): what a preference row must hold before anything is trained on it.

`check_preference_row` is the one gate every training row passes (`TPOTrainer` checks the whole dataset up front,
the collator each row it encodes): a value of the wrong type, or text that is not valid UTF-8 (a lone surrogate),
raises `RowError` naming the row and the field; so does a text holding the processor's video/image placeholder token
(`check_placeholder_tokens`, run by both with the processor). A *degenerate* pair -- nothing to learn from, e.g. an
empty answer or chosen == rejected -- is reported with its reason so the caller drops and counts it instead of
training on it silently.
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


def _check_media_parts(media: list[tuple[int, str]], field: str, where: str) -> None:
    """A row brings one video (its `video` field) and no image: a prompt may mark where it goes with one
    `{"type": "video"}` part; an image part, a second video part, or a media part in an answer would leave the
    processor a placeholder without its video or image, failing deep in transformers with no row named."""
    images = [position for position, kind in media if kind == "image"]
    videos = [position for position, kind in media if kind == "video"]
    if images:
        raise RowError(
            f"{where}, field {field!r}: message {images[0]} has an image part ({{'type': 'image'}}), but a row "
            "brings one video (field 'video') and no image; remove the image part."
        )
    if field != "prompt" and videos:
        raise RowError(
            f"{where}, field {field!r}: message {videos[0]} has a video part; an answer is text only (the row's video "
            "goes with its prompt); remove it."
        )
    if len(videos) > 1:
        raise RowError(
            f"{where}, field {field!r}: {len(videos)} video parts (messages {', '.join(map(str, videos))}), but a row "
            "brings one video (field 'video'); keep one {'type': 'video'} part where the video goes, or none (it then "
            "goes before the first user message's text)."
        )


def _messages_text(value: list, field: str, where: str) -> str:
    """The text of TRL conversational messages, checking their shape and their media parts."""
    texts = []
    media: list[tuple[int, str]] = []  # (message position, "video" / "image") of each media part
    for position, message in enumerate(value):
        if not isinstance(message, dict) or "content" not in message or not isinstance(message.get("role"), str):
            raise RowError(
                f"{where}, field {field!r}: message {position} is {message!r}; a conversational value is a list of "
                "{'role': str, 'content': str | list} dicts."
            )
        if field != "prompt" and message["role"] != "assistant":
            # the answer is cut out of the chat template's rendering of prompt + answer: a user or system turn there
            # fails that cut with no row named, or becomes text the model is trained to say
            raise RowError(
                f"{where}, field {field!r}: message {position} has role {message['role']!r}; an answer is the "
                "assistant's reply, so its messages take role 'assistant' (a user or system turn belongs in 'prompt')."
            )
        content = message["content"]
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list) and all(isinstance(part, dict) for part in content):
            texts += [str(part.get("text", "")) for part in content if part.get("type", "text") == "text"]
            if any(part.get("type") not in (None, "text", "video", "image") for part in content):
                raise RowError(f"{where}, field {field!r}: message {position} has a content part of unknown type.")
            media += [(position, part["type"]) for part in content if part.get("type") in ("video", "image")]
        else:
            raise RowError(
                f"{where}, field {field!r}: message {position} has content {type(content).__name__} "
                f"{content!r:.60}; use a string or a list of {{'type': 'text', 'text': ...}} parts."
            )
    _check_media_parts(media, field, where)
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


def check_utf8(text: str, field: str, where: str) -> None:
    """Raises `RowError` when `text` cannot be written as UTF-8 (a lone surrogate such as '\\ud800', left by a bad
    decode or a cut emoji): the tokenizer would fail on it with an error that names no row."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise RowError(
            f"{where}, field {field!r}: the text is not valid UTF-8 (lone surrogate {text[error.start]!r} at "
            f"character {error.start}: ...{text[max(0, error.start - 30) : error.start]!r}); fix the row's text "
            "encoding, e.g. `text.encode('utf-8', 'replace').decode()`."
        ) from None


# Words in the name of a processor's `*_token` attribute, or in a special token, that make it a multimodal
# placeholder: text holding one would be read as a video/image slot (or counted as one) by the processor
PLACEHOLDER_WORDS = ("video", "image", "img", "vision", "audio")


def placeholder_tokens(processor: Any) -> tuple[str, ...]:
    """The multimodal placeholder tokens of a transformers `processor`: its `*_token` attributes for a video, image,
    vision or audio slot (`<|video_pad|>`, `<video>`, `<|vision_start|>`, ...) and the tokenizer's special tokens
    named so. A prompt or answer holding one makes the processor expand or count it as a slot."""
    names = [name for name in dir(processor) if name.endswith("_token") and not name.startswith("_")]
    tokens = {
        value
        for name in names
        if any(word in name for word in PLACEHOLDER_WORDS) and isinstance(value := getattr(processor, name, None), str)
    }
    tokenizer = getattr(processor, "tokenizer", None)
    for token in getattr(tokenizer, "added_tokens_decoder", {}).values():
        if getattr(token, "special", False) and any(word in str(token).lower() for word in PLACEHOLDER_WORDS):
            tokens.add(str(token))
    return tuple(sorted(token for token in tokens if token))


def check_placeholder_tokens(
    row: dict[str, Any], index: Any, tokens: tuple[str, ...], source: str | None = None
) -> None:
    """Raises `RowError` naming the row, the field and the token when a prompt or answer text holds one of `tokens`
    (`placeholder_tokens`): the processor would take it for a video or image slot ("Found total 2 <|video_pad|>
    tokens and 1 videos") or feed the model a slot marker as text."""
    if not tokens:
        return
    for field in ("prompt", "chosen", "rejected"):
        problem = placeholder_problem(text_of(row[field], field, index, source), tokens)
        if problem:
            raise RowError(
                f"{_where(index, source)}, field {field!r}: {problem}. Prompts carry no placeholder (the processor "
                "adds the video part); remove it from the text."
            )


def placeholder_problem(text: str, tokens: tuple[str, ...]) -> str | None:
    """What is wrong with `text` when it holds one of the processor's placeholder `tokens`, with where (for the
    errors of training rows and eval questions); None when it holds none."""
    found = [token for token in tokens if token in text]
    if not found:
        return None
    at = text.index(found[0])
    return (
        f"the text holds the processor's placeholder token(s) {found} (at character {at}: "
        f"...{text[max(0, at - 30) : at + len(found[0]) + 10]!r}), which would be taken for a video or image slot"
    )


def check_preference_row(row: dict[str, Any], index: Any, source: str | None = None) -> str | None:
    """Checks one TPO training row; returns why it is degenerate (to drop and count), or `None` when it is fine.
    chosen == rejected is degenerate in a pair, and what an anchor row (`anchor` true) is; so are answers that differ
    only in case, punctuation, Markdown emphasis, quotes or invisible characters (`curation.answer.same_answer`).

    Raises:
        RowError: a field is missing or of the wrong type, or an answer message's role is not assistant (naming row
            and field).
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
        check_utf8(text, field, where)
    for field, text in texts.items():
        if not text.strip():
            return f"empty {field}"
    # curation's one rule of what is the same answer: 'red' and '**Red.**' teach no preference either
    from .curation.answer import same_answer

    if texts["chosen"].strip() == texts["rejected"].strip():
        return None if anchor else "chosen == rejected"
    if same_answer(texts["chosen"], texts["rejected"]):
        return None if anchor else "chosen and rejected differ only in form"
    if anchor:
        raise RowError(
            f"{where} is an anchor row (field 'anchor' is true) but its chosen and rejected answers differ; an anchor "
            "gives its one answer as both, so that only the SFT term trains on it."
        )
    return None
