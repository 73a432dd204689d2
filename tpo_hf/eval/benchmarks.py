"""Stage 5 of the flow (evaluation): the long-video multiple-choice benchmarks, each mapped to one `MCQSample` shape.

Each benchmark keeps its own schema on the Hub; an adapter here reads one row into an `MCQSample` (question,
option texts, answer letter, video file, the fields its results are broken down by) and words the prompt exactly as
the lmms-eval task does (`LMMS_EVAL_VERSION`, default `lmms_eval_specific_kwargs`; the other prompt variants of the
task YAML are options under their lmms-eval names), with the task's `generation_kwargs` and its default stop string,
so numbers are comparable with published ones:

- `videomme` = lmms-eval task `videomme`, `lmms-eval/Video-MME` split `test` (`lmms_eval/tasks/videomme/videomme.yaml`,
  `utils.py`): `videoID` (file stem; `video_id` is the numeric id), `question_id`, `duration` ("short" | "medium" |
  "long"), `domain`, `sub_category`, `task_type`, `question`, `options` (["A. ...", ...]), `answer` (a letter).
  Prompt: `videomme_doc_to_text`; variants `default` (post prompt "\nAnswer with the option's letter from the given
  choices directly."), `llava_vid` ("The best answer is:"), `gpt4v`, `qwen3_vl`. `max_new_tokens` 16.
- `videomme_w_subtitle` = task `videomme_w_subtitle`: the same rows, the subtitles from `<subtitle_dir>/<videoID>.srt`
  (any case; or the one `<videoID>.<language>.srt`, `find_subtitle`) of the frames sampled (`frame_num` 32 for
  `default`, 768 for `llava_vid` / `qwen3_vl`) put before the question (`videomme_doc_to_text_subtitle`; a standard
  `.srt` without Video-MME's `<font>` tags gives its plain text).
- `mlvu_dev` = task `mlvu_dev`, `sy1998/MLVU_dev` split `test` (`lmms_eval/tasks/mlvu/mlvu_dev.yaml`, `utils.py`):
  `video_name`, `question` (lmms-eval's copy already lists the options as "(A) ..."), `candidates`, `answer` (a letter
  there, the option text in the original MLVU json: a JSON number `3` is the option "3", not an index), `task_type` (the original json: `question_type`; required, as
  the headline averages over tasks). Prompt: `mlvu_doc_to_text`, variants `default` (question + "\nOnly give the
  best option.\nBest option: (") and `plm`.
  Headline: M-Avg, the mean of the per-task accuracies. `max_new_tokens` 16.
- `longvideobench_val` = task `longvideobench_val_v`, `longvideobench/LongVideoBench` split `validation`
  (`lmms_eval/tasks/longvideobench/longvideobench_val_v.yaml`, `utils.py`): `id`, `video_path`, `question`,
  `option0`..`option4` ("N/A" when absent; the original `lvb_val.json` has `candidates`), `correct_choice` (index),
  `duration_group`, `question_category`, `duration`. Prompt: `longvideobench_doc_to_text` with the post prompt
  "Answer with the option's letter from the given choices directly.\n". `max_new_tokens` 32.

lmms-eval's own answer parsers are in `lmms_eval_prediction`, so a run also reports the score lmms-eval would give.

One module over 500 lines on purpose: each benchmark's schema, lmms-eval 0.7.3's prompts for it and lmms-eval's
answer parsers sit side by side, so the reproduction is checked against lmms-eval in one place.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import numbers
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..validation import placeholder_problem
from ..video import VIDEO_EXTENSIONS
from .answers import (
    OPTION_LETTERS,
    option_letters,
    option_prefix_letter,
    options_lettered,
    strip_option_letters,
    strip_option_prefix,
)

logger = logging.getLogger(__name__)

LMMS_EVAL_VERSION = "0.7.3"
# lmms-eval's `fewshot_delimiter`: the `until` stop string of every generate_until task that sets none
LMMS_EVAL_STOP = "\n\n"

# Video-MME stores bare stems: the endings tried, in both cases (file systems are case-sensitive)
STEM_EXTENSIONS = tuple(e for extension in VIDEO_EXTENSIONS for e in (extension, extension.upper()))


@dataclass
class MCQSample:
    """One multiple-choice question about one video, in the shape the evaluation loop reads.

    Args:
        sample_id: stable id (the benchmark's question id when it has one); the results cache is keyed by it.
        video: video file name or path, relative to the video folder unless absolute.
        question: the question text as the benchmark stores it.
        options: option texts without their letters.
        answer: the correct letter.
        prompt: the full prompt as the benchmark's lmms-eval task words it.
        breakdowns: field -> value that accuracy is also reported by (e.g. `{"duration": "long"}`).
        num_frames: frames for this sample (V-NIAH gives every haystack frame); `None` uses the run's setting.
        start: the second the sample's window of the video starts at (`VideoView.start`; the frames keep their
            timestamps in the whole video); `None`: the whole video.
    """

    sample_id: str
    video: str
    question: str
    options: list[str]
    answer: str
    prompt: str
    breakdowns: dict[str, str] = field(default_factory=dict)
    num_frames: int | None = None
    start: float | None = None


def check_sample(sample: MCQSample, benchmark: str, index: int) -> None:
    """Every converted row must be a real question: text fields are non-empty strings, at least two distinct
    options, each a non-empty string. A bad row raises naming the row and the field, never scored silently."""
    where = f"{benchmark} row {index}"
    for name in ("video", "question", "prompt"):
        value = getattr(sample, name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}, field {name!r}: expected a non-empty string, got {value!r:.60}.")
    options = sample.options
    if not isinstance(options, list) or len(options) < 2:
        raise ValueError(f"{where}, field 'options': expected a list of at least 2 options, got {options!r:.80}.")
    for position, option in enumerate(options):
        if not isinstance(option, str) or not option.strip():
            raise ValueError(f"{where}, field 'options': option {position} is {option!r:.60}, not a non-empty string.")
    require_distinct_options(options, benchmark, index)
    if sample.num_frames is not None and (not isinstance(sample.num_frames, int) or sample.num_frames < 1):
        raise ValueError(f"{where}, field 'num_frames': expected a positive integer, got {sample.num_frames!r}.")


def check_prompt_placeholders(samples: list[MCQSample], tokens: tuple[str, ...], benchmark: str | None = None) -> None:
    """A question or prompt holding one of the processor's placeholder tokens (`validation.placeholder_tokens`, e.g.
    the `<video>\\n` LLaVA-style data starts questions with) is refused naming the row, question id and field before
    anything is generated: the processor would count it as a second video slot and fail deep in transformers, or feed
    the model a slot marker as text. Removing it from the data is the fix; tpo-hf does not guess which to strip."""
    for row, sample in enumerate(samples):
        for name in ("question", "prompt"):
            problem = placeholder_problem(getattr(sample, name), tokens)
            if problem:
                raise ValueError(
                    f"{benchmark + ': ' if benchmark else ''}row {row} (question {sample.sample_id}), field {name!r}: "
                    f"{problem}. Questions carry no placeholder (the processor adds the video part); remove it from "
                    "the benchmark's rows."
                )


def require_distinct_options(options: list[str], benchmark: str, index: int) -> None:
    """Two options with one text make the question unanswerable (and an answer given as text ambiguous)."""
    first_position: dict[str, int] = {}
    keys = strip_option_letters([str(option) for option in options])  # "B. Obama" keeps its initial
    for position, (option, key) in enumerate(zip(options, keys)):
        key = key.lower()
        if key in first_position:
            raise ValueError(
                f"{benchmark} row {index}, field 'options': option {position} ({option!r:.60}) repeats option "
                f"{first_position[key]}; the options of a question must be distinct."
            )
        first_position[key] = position


def require_list(row: dict[str, Any], names: tuple[str, ...], benchmark: str, index: int) -> list:
    """A list-valued field (options, candidates): a string or a number here would be split into characters."""
    value = require_field(row, names, benchmark, index)
    if not isinstance(value, (list, tuple)):
        raise ValueError(
            f"{benchmark} row {index}, field {names[0]!r}: expected a list of options, got {type(value).__name__} "
            f"{value!r:.60}."
        )
    return list(value)


def _is_nan(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral) and math.isnan(value)


def _no_value(value: Any) -> bool:
    """A null, a NaN (a copy exported through pandas) or a blank string: no option text."""
    return value is None or _is_nan(value) or (isinstance(value, str) and not value.strip())


def _absent_option(value: Any) -> bool:
    """LongVideoBench's `option0`..`option4` mark an absent option None or "N/A" (NaN once exported through pandas,
    which reads "N/A" as NaN); a blank one is not absent but refused (`check_sample`)."""
    return value is None or value == "N/A" or _is_nan(value)


def option_texts(values: list, field: str, benchmark: str, index: int) -> list[str]:
    """A row's options as text (numbers, as a copy storing counts as JSON numbers holds them, become their text). A
    null, NaN or blank option is refused naming the row and the option, as Video-MME's options are (`check_sample`):
    as text it would be an option "None" or "nan" in the prompt. Nulls at the end are how pandas pads a shorter
    list; they are refused too (the hint says so), as dropping them would silently change the row."""
    for position, value in enumerate(values):
        if _no_value(value):
            padding = all(_no_value(rest) for rest in values[position:]) and position > 0
            hint = (
                " (nulls at the end of the list are how a copy exported through pandas pads shorter lists: drop them)"
                if padding
                else ""
            )
            raise ValueError(
                f"{benchmark} row {index}, field {field!r}: option {position} is {value!r:.60}, not a non-empty "
                f"string{hint}."
            )
    return [str(value) for value in values]


def require_field(row: dict[str, Any], names: tuple[str, ...], benchmark: str, index: int) -> Any:
    """The first of `names` that the row holds; the error names the row, the fields it has and the schema."""
    for name in names:
        if row.get(name) is not None:
            return row[name]
    raise KeyError(
        f"{benchmark} row {index} has no field {' / '.join(repr(n) for n in names)} (fields: {sorted(row)}); "
        f"is this dataset in the {benchmark} schema?"
    )


def _stable_id(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:12]


def answer_letter(
    answer: Any,
    options: list[str],
    benchmark: str,
    index: int,
    integer_answer: str | None = None,
    letter_answers: bool = False,
) -> str:
    """A letter, an index, or the option text itself -> the letter.

    A copy that stores numbers as JSON numbers gives an integer answer, which can be an index or an option's text
    (options 1..4, answer 3). `integer_answer` is the benchmark's convention for it: "index" (LongVideoBench's
    `correct_choice`), "text" (MLVU's answer is the option text: 3 is the option "3"), or None (no convention: an
    integer that is a valid index and also another option's text is refused naming the row, never guessed).
    A bare letter ("A") that is also an option's text (an OCR question whose options are letters) is that option's
    text, unless `letter_answers` says the benchmark's answers are letters (Video-MME): then it is the letter. An
    answer written with a letter and a text ("B. blue") must name one option by both; else it is refused."""
    require_distinct_options(options, benchmark, index)
    letters = option_letters(len(options))
    where = f"{benchmark} row {index}, field 'answer'"
    if isinstance(answer, numbers.Integral) and not isinstance(answer, bool):
        by_index = letters[answer] if 0 <= answer < len(options) else None
        by_text = _option_text_letter(str(int(answer)), options)
        if integer_answer == "index":
            chosen = by_index
        elif integer_answer == "text":
            numeric = any(re.fullmatch(r"[+-]?\d+", option.strip()) for option in options)
            if by_text is None and by_index is not None and numeric:
                # the options are numbers and this one is none of them: an index here would be a guess
                raise ValueError(
                    f"{where}: {answer} is none of the option texts {options} ({benchmark} answers are the option "
                    "text), and reading it as an index would be a guess; store the answer as the option's text or "
                    "letter."
                )
            chosen = by_text or by_index
        else:
            if by_index is not None and by_text is not None and by_index != by_text:
                raise ValueError(
                    f"{where}: {answer} is both the index of option {by_index} ({options[letters.index(by_index)]!r}) "
                    f"and the text of option {by_text}; store the answer as its letter so it names one option."
                )
            chosen = by_text or by_index
        if chosen is not None:
            return chosen
    else:
        text = str(answer).strip()
        match = re.fullmatch(r"\(?([A-Za-z])\)?\.?", text)
        if match and match.group(1).upper() in letters and (letter_answers or text not in options):
            return match.group(1).upper()
        # the option text as given ("G. Washington" where the options are names with initials), else without a
        # letter the answer was written with ("B. blue")
        chosen = _option_text_letter(text, options)
        if chosen is not None:
            return chosen
        chosen = _option_text_letter(strip_option_prefix(text), options)
        prefix = option_prefix_letter(text)
        if chosen is not None and prefix is not None and prefix != chosen:
            # "C. blue" where blue is B: the letter or the text is a typo, and which one would be a guess
            named = f"option {prefix} ({options[letters.index(prefix)]!r})" if prefix in letters else "no option"
            raise ValueError(
                f"{where}: {answer!r} names {named} by its letter but option {chosen} "
                f"({options[letters.index(chosen)]!r}) by its text; fix the answer so both name the same option."
            )
        if chosen is not None:
            return chosen
    raise ValueError(f"{benchmark} row {index}: answer {answer!r} names none of the {len(options)} options {options}.")


def _option_text_letter(text: str, options: list[str]) -> str | None:
    """The letter of the option whose text (any case, its own letter prefix stripped) is `text`, else None."""
    texts = [option.lower() for option in strip_option_letters([str(option) for option in options])]
    if text.lower() in texts:
        return option_letters(len(options))[texts.index(text.lower())]
    return None


# --- Video-MME ------------------------------------------------------------------------------------------------------
VIDEOMME_OPTION_PROMPT = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
# `lmms_eval_specific_kwargs` of videomme.yaml / videomme_w_subtitle.yaml
VIDEOMME_VARIANTS = {
    "default": {"pre_prompt": "", "post_prompt": "\nAnswer with the option's letter from the given choices directly."},
    "gpt4v": {"pre_prompt": "", "post_prompt": "Answer the question with A, B, C, or D."},
    "llava_vid": {"pre_prompt": "", "post_prompt": "The best answer is:"},
    "qwen3_vl": {
        "format": "qwen3_vl",
        "pre_prompt": "Question: ",
        "post_prompt": "Answer with the option letter only.",
    },
}
VIDEOMME_SUBTITLE_VARIANTS = {
    "default": {"frame_num": 32},
    "llava_vid": {"frame_num": 768},
    "qwen3_vl": {"frame_num": 768, **VIDEOMME_VARIANTS["qwen3_vl"]},
}
_SRT_FONT = re.compile(r'<font color="white" size=".72c">(.*?)</font>')
# markup that players render but is not text: HTML-like tags (<i>, <font ...>) and ASS overrides ({\an8})
_SRT_MARKUP = re.compile(r"<[^>]*>|\{\\[^}]*\}")
# HH:MM:SS,mmm --> HH:MM:SS,mmm ('.' before the milliseconds too), positions or styles after the end time ignored
_SRT_STAMP = r"(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
_SRT_TIMING = re.compile(_SRT_STAMP + r"\s*-->\s*" + _SRT_STAMP + r"(?:\s.*)?")


def _variant(variants: dict[str, dict[str, Any]], variant: str, benchmark: str) -> dict[str, Any]:
    if variant not in variants:
        raise ValueError(f"{benchmark} has no prompt variant {variant!r}; lmms-eval's are {sorted(variants)}.")
    return variants[variant]


def _videomme_lettered_options(raw_options: list[Any], index: int) -> tuple[list[str], list[str]]:
    """(the options as the prompt lists them, their texts in letter order: A's first).

    Video-MME's options carry their letter ("A. red"), which the prompt lists as is; a copy stored without the
    letters gets "A. ", "B. ", ... so the prompt still shows the letters it asks for. Options count as lettered only
    when their prefixes are A, B, C, ... in order (`options_lettered`): "B. Obama", "D. Trump" are names with
    initials, which keep them and get letters too. Options stored with all their letters out of order ("B. blue",
    "A. red", ...) are listed as stored, as lmms-eval shows them, and each letter keeps its option: the answer "A" is
    "red", the option the prompt shows as A. A row where some options carry their own letter and the others none is
    refused: which letter a bare option means would be a guess; so is a row whose options all start with one of its
    letters but not each once ("A. red", "B. blue", "B. green", "D. white": a typo)."""
    if not all(isinstance(option, str) for option in raw_options):
        return raw_options, raw_options  # refused below, naming the option that is not text
    if options_lettered(raw_options):
        return raw_options, [strip_option_prefix(option) for option in raw_options]
    letters = option_letters(len(raw_options))
    prefixes = [option_prefix_letter(option) for option in raw_options]
    if None not in prefixes and sorted(prefixes) == list(letters):
        by_letter = sorted(raw_options, key=option_prefix_letter)
        return raw_options, [strip_option_prefix(option) for option in by_letter]
    if None not in prefixes and set(prefixes) <= set(letters):
        # the option letters with a typo ("A. red", "B. blue", "B. green", "D. white"): lettering them again would
        # show "C. B. green" and key C to an option the data calls B
        repeated = sorted({prefix for prefix in prefixes if prefixes.count(prefix) > 1})
        missing = [letter for letter in letters if letter not in prefixes]
        raise ValueError(
            f"Video-MME row {index}, field 'options': the options are lettered {prefixes} ({', '.join(repeated)} "
            f"repeated, {', '.join(missing)} missing); each of {', '.join(letters)} must label one option. Fix the "
            'letters (or, if they are initials such as "B. Obama", store each option with its letter: "A. B. Obama").'
        )
    own = [prefix == letter for letter, prefix in zip(letters, prefixes)]
    bare = [position for position, option in enumerate(raw_options) if option_prefix_letter(option) is None]
    if any(own) and own.count(False) == len(bare):
        raise ValueError(
            f"Video-MME row {index}, field 'options': options {bare} have no letter prefix (\"A. ...\") but the "
            f"others do; store all options with their letter or all without."
        )
    lettered = [f"{letter}. {option.strip()}" for letter, option in zip(letters, raw_options)]
    return lettered, [strip_option_prefix(option) for option in lettered]


def _videomme_question(row: dict[str, Any], raw_options: list[str], kwargs: dict[str, Any]) -> str:
    options = "\n".join(str(option) for option in raw_options)
    if kwargs.get("format") == "qwen3_vl":  # videomme_doc_to_text_qwen3vl
        return f"{kwargs['pre_prompt']}{row['question']}\nOptions:\n{options}\n{kwargs['post_prompt']}"
    return VIDEOMME_OPTION_PROMPT + "\n" + f"{row['question']}\n{options}" + "\n" + kwargs.get("post_prompt", "")


def videomme_subtitles(srt_path: str | os.PathLike, fps: float, total_frames: int, frame_num: int) -> str:
    """The subtitle text lmms-eval's `videomme_doc_to_text_subtitle` shows: the `.srt` lines on screen at any of
    `frame_num` uniformly sampled frames (same parsing, same order, same frame arithmetic).

    Video-MME's own files wrap each line in `<font color="white" size=".72c">`, and lmms-eval shows only that tagged
    text: a file with such tags is read exactly so. A standard SRT without them (where lmms-eval would show nothing)
    gives its plain text, other markup removed. A file with text but none read from it is refused, naming it.
    """
    import numpy as np

    subtitles = read_srt(srt_path)
    if not subtitles:
        return ""
    video_mme_tagged = any(_SRT_FONT.search(text) for text in subtitles.values())

    def shown(text: str) -> str:
        if video_mme_tagged:  # lmms-eval's rule: the first tagged span, untagged entries dropped
            found = _SRT_FONT.findall(text)
            return found[0] if found else ""
        return " ".join(_SRT_MARKUP.sub("", text).split())

    if not any(shown(text) for text in subtitles.values()):
        raise ValueError(f"Subtitle file {srt_path}: its entries hold no text once markup is removed.")
    subtitle_frames = [(int(start * fps), int(end * fps), text) for (start, end), text in subtitles.items()]
    frame_num = total_frames if frame_num == -1 else frame_num
    sampled = np.linspace(0, total_frames - 1, frame_num, dtype=int).tolist()
    on_screen = []
    for frame in sampled:
        for index, (first, last, _) in enumerate(subtitle_frames):
            if first <= frame < last:
                on_screen.append(index)
    texts = []
    for index in list(set(on_screen)):  # lmms-eval's order (a set of ints), kept for byte-identical prompts
        text = shown(subtitle_frames[index][2])
        if text:
            texts.append(text)
    return "\n".join(texts)


def read_srt(srt_path: str | os.PathLike) -> dict[tuple[float, float], str]:
    """(start, end) seconds -> the entry's text lines joined by spaces, as lmms-eval's `load_subtitles` reads
    Video-MME's files (entries split at blank lines, a repeated time span keeping its last text). Also read: '.'
    before the milliseconds, Windows line ends, separator lines holding spaces, an entry without its number, UTF-8
    with or without a BOM and UTF-16 with a BOM. A timing line that does not read is refused naming the file and the
    line; so is a file with text but no entry, or in another encoding. An empty file gives none (warned)."""
    content = _read_srt_text(srt_path)
    if not content.strip():
        logger.warning("Subtitle file %s is empty: no subtitles shown for its video.", srt_path)
        return {}
    subtitles: dict[tuple[float, float], str] = {}
    # entries are split at blank lines; a line of spaces is blank too (some tools write " "), else the next entry's
    # number and timing would be read as this entry's text
    entries: list[tuple[int, list[str]]] = []  # (line number of the entry's first line, its lines)
    for number, line in enumerate(content.split("\n"), 1):
        if not line.strip():
            continue
        if entries and entries[-1][0] + len(entries[-1][1]) == number:
            entries[-1][1].append(line)
        else:
            entries.append((number, [line]))
    for first_line, lines in entries:
        # the timing line is the second line (after the entry's number) in Video-MME's files, as lmms-eval reads them
        timing = next((position for position, line in enumerate(lines) if "-->" in line), None)
        if timing is not None and lines[timing + 1 :]:
            where = f"subtitle file {srt_path}, line {first_line + timing}"
            span = _SRT_TIMING.fullmatch(lines[timing].strip())
            if span is None:
                raise ValueError(
                    f"{where}: {lines[timing].strip()!r:.80} is not an SRT timing line "
                    "(HH:MM:SS,mmm --> HH:MM:SS,mmm)."
                )
            subtitles[(_srt_seconds(*span.groups()[:4]), _srt_seconds(*span.groups()[4:]))] = " ".join(
                lines[timing + 1 :]
            )
    if not subtitles:
        raise ValueError(
            f"Subtitle file {srt_path}: no subtitle entry read (a timing line HH:MM:SS,mmm --> HH:MM:SS,mmm followed "
            "by its text); is it an SRT file?"
        )
    return subtitles


def _read_srt_text(srt_path: str | os.PathLike) -> str:
    """The text of a subtitle file: UTF-8 (a BOM dropped), or UTF-16 / UTF-32 when a BOM says so; LF line ends.
    Any other encoding is refused naming the file: guessing a code page would show garbled subtitles silently."""
    import codecs

    data = Path(srt_path).read_bytes()
    encoding = "utf-8-sig"
    for bom, name in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
                      (codecs.BOM_UTF16_BE, "utf-16")):  # fmt: skip
        if data.startswith(bom):
            encoding = name
            break
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        raise ValueError(
            f"Subtitle file {srt_path} is not {encoding.removesuffix('-sig').upper()} ({error.reason} at byte "
            f"{error.start}): subtitles are read as UTF-8 (or UTF-16 with a byte-order mark); re-save it as UTF-8 "
            "(e.g. iconv -f cp1252 -t utf-8)."
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _srt_seconds(hours: str, minutes: str, seconds: str, milliseconds: str) -> float:
    # lmms-eval's arithmetic (`parse_subtitle_time`), for the same frame boundaries; a short "04,5" is 500 ms
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(milliseconds.ljust(3, "0")) / 1000


def find_subtitle(subtitle_dir: str | os.PathLike, video: str, index: int | None = None) -> Path | None:
    """The subtitle file of Video-MME video `video` in `subtitle_dir`, `None` when it has none: `<videoID>.srt`, the
    name compared in any case (`red_blue.SRT`), else `<videoID>.<language>.srt` (yt-dlp's `red_blue.en.srt`) when
    exactly one language is there. Several languages and no plain `<videoID>.srt` are refused naming the files."""
    names = _subtitle_files(str(subtitle_dir))
    plain = names.get(f"{video}.srt".lower())
    if plain is not None:
        return Path(subtitle_dir) / plain
    prefix = f"{video}.".lower()
    languages = sorted(
        name
        for key, name in names.items()
        if key.startswith(prefix) and key.endswith(".srt") and "." not in key[len(prefix) : -len(".srt")]
    )
    if len(languages) > 1:
        where = f"Video-MME row {index}: " if index is not None else ""
        raise ValueError(
            f"{where}video {video!r} has subtitles in several languages in {subtitle_dir} ({languages}) and no plain "
            f"{video}.srt; copy the one to show to {video}.srt."
        )
    return Path(subtitle_dir) / languages[0] if languages else None


def _subtitle_files(subtitle_dir: str) -> dict[str, str]:
    """Lower-cased name -> name of the `.srt` files in `subtitle_dir`."""
    return {
        entry.name.lower(): entry.name
        for entry in os.scandir(subtitle_dir)
        if entry.name.lower().endswith(".srt") and entry.is_file()
    }


def videomme_sample(
    row: dict[str, Any],
    index: int,
    variant: str = "default",
    subtitles: bool = False,
    subtitle_dir: str | os.PathLike | None = None,
    video_dir: str | os.PathLike | None = None,
) -> MCQSample:
    """A `lmms-eval/Video-MME` row -> `MCQSample`, prompt of lmms-eval's `videomme_doc_to_text` (or, with
    `subtitles`, `videomme_doc_to_text_subtitle`, reading the video's subtitle file, `find_subtitle`)."""
    video = str(require_field(row, ("videoID",), "Video-MME", index))
    question = str(require_field(row, ("question",), "Video-MME", index))
    raw_options, options = _videomme_lettered_options(require_list(row, ("options",), "Video-MME", index), index)
    if subtitles:
        kwargs = _variant(VIDEOMME_SUBTITLE_VARIANTS, variant, "videomme_w_subtitle")
        srt = find_subtitle(subtitle_dir, video, index) if subtitle_dir is not None else None
        if srt is not None:
            from ..video import VideoFile

            clip = VideoFile(find_video(video_dir, video, str(row.get("question_id"))), cache_frames=False)
            text = videomme_subtitles(srt, clip.fps, clip.total_num_frames, kwargs["frame_num"])
        else:
            text = "No subtitles available"
        head = "This video's subtitles are listed below: \n" + text + "\n"
        if kwargs.get("format") == "qwen3_vl":
            prompt = head + _videomme_question(row | {"question": question}, raw_options, kwargs)
        else:
            prompt = head + _videomme_question(row | {"question": question}, raw_options, {"post_prompt": ""})
            prompt += "The best answer is:"
    else:
        kwargs = _variant(VIDEOMME_VARIANTS, variant, "videomme")
        prompt = _videomme_question(row | {"question": question}, raw_options, kwargs)
    sample_id = row.get("question_id") or f"{video}-{_stable_id(question)}"
    return MCQSample(
        sample_id=str(sample_id),
        video=video,
        question=question,
        options=options,
        answer=answer_letter(
            require_field(row, ("answer",), "Video-MME", index), options, "Video-MME", index, letter_answers=True
        ),
        prompt=prompt,
        breakdowns={
            name: str(row[name])
            for name in ("duration", "domain", "sub_category", "task_type")
            if row.get(name) is not None
        },
    )


def videomme_subtitle_sample(row: dict[str, Any], index: int, variant: str = "default", **paths: Any) -> MCQSample:
    """lmms-eval task `videomme_w_subtitle`: `videomme_sample` with the subtitles before the question."""
    return videomme_sample(row, index, variant, subtitles=True, **paths)


# --- MLVU (dev) ------------------------------------------------------------------------------------------------------
# `lmms_eval_specific_kwargs` of mlvu_dev.yaml
MLVU_VARIANTS = {
    "default": {"pre_prompt": "", "post_prompt": "\nOnly give the best option.\nBest option: ("},
    "plm": {"pre_prompt": "", "post_prompt": "\nOnly give the best option."},
}


# a line of a question that lists an option: "(A) ..."
_LISTED_OPTION = re.compile(r"^[ \t]*\((?P<letter>[A-Z])\)[ \t]*(?P<text>.*)$", re.MULTILINE)
# ... in another form: "A. ...", "A) ...", "(a) ...", "a) ..."
_LISTED_OPTION_OTHER = re.compile(
    r"^[ \t]*(?:\((?P<paren>[A-Za-z])\)|(?P<letter>[A-Za-z])[.)])[ \t]+(?P<text>\S.*)$", re.MULTILINE
)
# ... or options on one line: "Which? (A) 1 (B) 2 (C) 3"
_INLINE_OPTION = re.compile(r"\(([A-Za-z])\)")
# what joins options written on one line: "(A) red, (B) blue, or (C) green?"
_INLINE_JOINER = re.compile(r"[\s,;?]*(?:\b(?:or|and)\b)?[\s,;?]*$", re.IGNORECASE)


def _letters_in_order(letters: str) -> bool:
    """Two letters or more, A, B, C, ... in order, in one case ("ABC" or "abc")."""
    first = OPTION_LETTERS[: len(letters)]
    return len(letters) >= 2 and letters in (first, first.lower())


def _question_option_list(question: str) -> tuple[list[str], bool] | None:
    """(the option texts the question lists, whether they sit on one line) or None: "(A) ..." lines first (lmms-eval's
    copy), else "A. ...", "A) ...", "(a) ..." lines, else one line "(A) 1 (B) 2 (C) 3"; letters A, B, ... in order."""
    for pattern in (_LISTED_OPTION, _LISTED_OPTION_OTHER):
        listed = list(pattern.finditer(question))
        letters = "".join(match.groupdict().get("paren") or match["letter"] for match in listed)
        if _letters_in_order(letters):
            return [match["text"].strip() for match in listed], False
    for line in question.splitlines():
        markers = list(_INLINE_OPTION.finditer(line))
        for first, marker in enumerate(markers):
            if marker.group(1) not in "Aa":
                continue
            run = [marker]
            for following in markers[first + 1 :]:
                if not _letters_in_order("".join(m.group(1) for m in [*run, following])):
                    break
                run.append(following)
            if len(run) >= 2:
                ends = [following.start() for following in run[1:]] + [len(line)]
                texts = [_INLINE_JOINER.sub("", line[m.end() : end]).strip() for m, end in zip(run, ends)]
                return texts, True
    return None


def _lists_options(question: str, options: list[str], where: str) -> bool:
    """The question lists its options itself, as lmms-eval's copy of MLVU does ("...?\n(A) ...\n(B) ..."): a line
    opening with each option's letter, in order ("(A) ...", or "A. ...", "A) ...", "(a) ..."), or one line
    "(A) 1 (B) 2 (C) 3". A question that only mentions "(A)" ("The sign marked (A) appears when?") does not, and
    gets its options listed; so does one whose list holds none of the candidates (punctuation and case aside): things
    marked "(A)", "(B)" in a sentence ("between (A) the start and (B) the end"), or the events an order question
    lists as "(a) ...", "(b) ..." lines, whose candidates are orders ("a-b-c", "b-a-c", ...).

    The prompt then shows the question's list while the answer is read against the candidates, so a list whose
    texts are not the candidates in order (a copy with shuffled candidates) is refused, `where` naming the row: the
    answer letter would name another option than the one the model saw (or the prompt would show two lists)."""
    found = _question_option_list(question)
    if found is None:
        return False
    texts, _ = found

    def words(text: str) -> str:
        return " ".join(text.split()).casefold()

    def loose(text: str) -> str:
        return " ".join(re.sub(r"[^\w\s]", " ", text).split()).casefold()

    # a list none of whose texts is a candidate lists something else: the events of an order question ("(a) a man
    # enters", candidates "a-b-c", "b-a-c", ...), things marked "(A)", "(B)" in a sentence
    if not {loose(text) for text in texts} & {loose(option) for option in options}:
        return False
    if [words(text) for text in texts] != [words(option) for option in options]:
        raise ValueError(
            f"{where}: the question lists its options as {texts} but the field 'candidates' holds {options}; the "
            "prompt would show the question's list while the answer is read against the candidates. Store the "
            "candidates in the order the question lists them (or the question without its list)."
        )
    return True


def mlvu_sample(row: dict[str, Any], index: int, variant: str = "default", **_: Any) -> MCQSample:
    """An MLVU dev row (lmms-eval's `sy1998/MLVU_dev` or the original json) -> `MCQSample` (`mlvu_doc_to_text`)."""
    kwargs = _variant(MLVU_VARIANTS, variant, "mlvu_dev")
    video = str(require_field(row, ("video_name", "video"), "MLVU", index))
    question = str(require_field(row, ("question",), "MLVU", index))
    candidates = option_texts(require_list(row, ("candidates",), "MLVU", index), "candidates", "MLVU", index)
    options = strip_option_letters(candidates)
    letters = option_letters(len(options))
    sample_id = str(row.get("question_id") or f"{video}-{_stable_id(question)}")
    # lmms-eval's copy carries the options in the question already
    if _lists_options(question, options, f"MLVU row {index} (question {sample_id})"):
        listed = question
    else:
        listed = question + "\n" + "\n".join(f"({letter}) {option}" for letter, option in zip(letters, options))
    task = row.get("task_type") or row.get("question_type")
    if task is None:  # M-Avg, the headline, is a mean over tasks: a question without one would drop out of it
        raise KeyError(
            f"MLVU row {index} has no field 'task_type' (lmms-eval's sy1998/MLVU_dev) or 'question_type' (the "
            f"original MLVU json) (fields: {sorted(row)}); MLVU's headline M-Avg is the mean of the per-task "
            "accuracies, so every question needs its task."
        )
    return MCQSample(
        sample_id=sample_id,
        video=video,
        question=question,
        options=options,
        answer=answer_letter(require_field(row, ("answer",), "MLVU", index), options, "MLVU", index, "text"),
        prompt=kwargs["pre_prompt"] + listed + kwargs["post_prompt"],
        breakdowns={"task_type": str(task)},
    )


# --- LongVideoBench (val) --------------------------------------------------------------------------------------------
LONGVIDEOBENCH_POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"
LONGVIDEOBENCH_VARIANTS = {"default": {"pre_prompt": "", "post_prompt": LONGVIDEOBENCH_POST_PROMPT}}


def longvideobench_sample(row: dict[str, Any], index: int, variant: str = "default", **_: Any) -> MCQSample:
    """A `longvideobench/LongVideoBench` validation row -> `MCQSample` (lmms-eval's `longvideobench_doc_to_text`)."""
    kwargs = _variant(LONGVIDEOBENCH_VARIANTS, variant, "longvideobench_val_v")
    video = str(require_field(row, ("video_path",), "LongVideoBench", index))
    question = str(require_field(row, ("question",), "LongVideoBench", index))
    if row.get("candidates") is not None:
        candidates = require_list(row, ("candidates",), "LongVideoBench", index)
        options = option_texts(candidates, "candidates", "LongVideoBench", index)
    else:
        # an absent option is None or "N/A" (NaN in a copy exported through pandas, which reads "N/A" as NaN)
        present = [i for i in range(5) if not _absent_option(row.get(f"option{i}"))]
        if present != list(range(len(present))):  # renumbering past a gap would move `correct_choice`
            missing = [i for i in range(max(present)) if i not in present]
            raise ValueError(
                f"LongVideoBench row {index}: option{missing[0]} is missing but option{max(present)} is set; "
                f"`correct_choice` indexes option0..option4, so they must have no gaps."
            )
        options = [str(row[f"option{i}"]) for i in present]
    if not options:
        raise KeyError(f"LongVideoBench row {index} has neither `candidates` nor `option0`..`option4`.")
    letters = option_letters(len(options))
    listed = question + "\n" + "\n".join(f"{letter}. {option}" for letter, option in zip(letters, options))
    correct = require_field(row, ("correct_choice",), "LongVideoBench", index)
    if isinstance(correct, str) and correct.strip().upper() in option_letters(5):
        correct = option_letters(5).index(correct.strip().upper())
    try:
        if isinstance(correct, bool):  # int(True) would silently pick option 1
            raise TypeError
        if isinstance(correct, numbers.Real) and not float(correct).is_integer():
            raise ValueError  # int(1.7) would silently pick option 1
        correct = int(correct)
    except (TypeError, ValueError):
        raise ValueError(
            f"LongVideoBench row {index}, field 'correct_choice': expected the 0-based index of the correct option "
            f"(or its letter A-E), got {correct!r:.60}."
        ) from None
    return MCQSample(
        sample_id=str(row.get("id") or f"{video}-{_stable_id(question)}"),
        video=video,
        question=question,
        options=options,
        answer=answer_letter(correct, options, "LongVideoBench", index, "index"),
        prompt=f"{kwargs['pre_prompt']}{listed}\n{kwargs['post_prompt']}",
        breakdowns={
            name: str(row[name]) for name in ("duration_group", "question_category") if row.get(name) is not None
        },
    )


# --- lmms-eval's answer parsers --------------------------------------------------------------------------------------
_MCQ_PHRASES = (
    "the answer is", "answer is", "the correct answer is", "correct answer is", "the best answer is", "best answer is",
    "the correct option is", "correct option is", "the best option is", "best option is", "the choice is",
    "choice is", "the correct choice is", "correct choice is", "i choose", "i select", "i pick", "my answer is",
    "my choice is", "옵션", "정답은", "답은", "답:", "答案是", "答案为", "选", "答えは",
)  # fmt: skip
_MCQ_PRIORITY = {"start": 10, "end": 9, "phrase": 7, "parentheses": 6, "period": 5, "colon": 4, "right_paren": 3}


def lmms_eval_mcq_answer(response: str, choices: list[str]) -> str:
    """lmms-eval 0.7.3's `_task_utils.mcq_extract.extract_mcq_answer` (the Video-MME and MLVU parser), verbatim in
    behaviour: the best-ranked letter format wins, the last occurrence within a format; "" when none."""
    if not response or not response.strip():
        return ""
    text = response.strip()
    for char in [",", ".", "!", "?", ";", ":", "'", '"']:
        text = text.strip(char)
    text = " " + text + " "
    candidates = []
    for name, pattern in (("parentheses", "({})"), ("period", "{}."), ("colon", "{}:"), ("right_paren", "{})")):
        candidates += [(ch, text.rfind(pattern.format(ch)), name) for ch in choices if pattern.format(ch) in text]
    candidates += [(ch, text.rfind(f"{ch} "), "space") for ch in choices if f"{ch} " in text]
    lower = text.lower()
    for phrase in _MCQ_PHRASES:
        found = lower.find(phrase)
        if found != -1:
            for ch in choices:
                position = text.find(ch, found + len(phrase))
                if position != -1:
                    candidates.append((ch, position, "phrase"))
    stripped = text.strip()
    for ch in choices:
        if stripped.startswith(ch) and (len(stripped) == 1 or not stripped[1].isalpha()):
            candidates.append((ch, 0, "start"))
    for ch in choices:
        if stripped.endswith(ch) and (len(stripped) == 1 or not stripped[-2].isalpha()):
            candidates.append((ch, len(text) - 1, "end"))
    if not candidates:
        candidates = [(ch, text.rfind(ch), "fallback") for ch in choices if ch in text]
    if not candidates:
        return ""
    candidates.sort(key=lambda c: (_MCQ_PRIORITY.get(c[2], 0), c[1]), reverse=True)
    return candidates[0][0]


_LVB_PREFIXES = (
    "The best answer is", "The correct answer is", "The answer is", "The answer", "The best option is",
    "The correct option is", "Best answer:", "Best option:",
)  # fmt: skip


def lmms_eval_longvideobench_answer(response: str, choices: list[str], rng: Any) -> str:
    """lmms-eval 0.7.3's `longvideobench/utils.parse_multi_choice_response`: the first capital A-E after dropping
    answer prefixes; a random choice (drawn from `rng`, lmms-eval's global `random`) when there is none."""
    s = response.strip()
    for prefix in _LVB_PREFIXES:
        s = s.replace(prefix, "")
    if len(s.split()) > 10 and not re.search("[ABCDE]", s):
        return rng.choice(choices)
    match = re.search(r"[ABCDE]", s)
    return rng.choice(choices) if match is None else match[0]


@dataclass(frozen=True)
class Benchmark:
    """A registered multiple-choice benchmark: where it lives on the Hub, how its rows read, and how lmms-eval runs it.

    Args:
        name: registry key (`tpo-hf eval --benchmark NAME`).
        pretty_name: name in tables and model cards.
        hub_id: the dataset lmms-eval evaluates on.
        split: its evaluation split.
        breakdowns: the fields accuracy is reported by, besides overall.
        to_sample: row, row index, prompt variant, paths -> `MCQSample`.
        lmms_eval_task: the lmms-eval task this benchmark reproduces (`None`: tpo-hf's own, scored by our parser only).
        max_new_tokens: the task's `generation_kwargs.max_new_tokens`.
        variants: the task's prompt variants (`lmms_eval_specific_kwargs` keys); "default" is lmms-eval's default.
        headline: "accuracy" (pooled over samples) or "task_mean" (MLVU's M-Avg: the mean of the per-`task_type`
            accuracies).
        config: Hub dataset config, if any.
    """

    name: str
    pretty_name: str
    hub_id: str
    split: str
    breakdowns: tuple[str, ...]
    to_sample: Callable[..., MCQSample]
    lmms_eval_task: str | None
    max_new_tokens: int
    variants: tuple[str, ...] = ("default",)
    headline: str = "accuracy"
    config: str | None = None

    @property
    def headline_name(self) -> str:
        return "M-Avg" if self.headline == "task_mean" else "Accuracy"


_VIDEOMME_BREAKDOWNS = ("duration", "domain", "sub_category", "task_type")
BENCHMARKS: dict[str, Benchmark] = {
    "videomme": Benchmark(
        "videomme",
        "Video-MME",
        "lmms-eval/Video-MME",
        "test",
        _VIDEOMME_BREAKDOWNS,
        videomme_sample,
        lmms_eval_task="videomme",
        max_new_tokens=16,
        variants=tuple(VIDEOMME_VARIANTS),
    ),
    "videomme_w_subtitle": Benchmark(
        "videomme_w_subtitle",
        "Video-MME (with subtitles)",
        "lmms-eval/Video-MME",
        "test",
        _VIDEOMME_BREAKDOWNS,
        videomme_subtitle_sample,
        lmms_eval_task="videomme_w_subtitle",
        max_new_tokens=16,
        variants=tuple(VIDEOMME_SUBTITLE_VARIANTS),
    ),
    "mlvu_dev": Benchmark(
        "mlvu_dev",
        "MLVU (dev)",
        "sy1998/MLVU_dev",
        "test",
        ("task_type",),
        mlvu_sample,
        lmms_eval_task="mlvu_dev",
        max_new_tokens=16,
        variants=tuple(MLVU_VARIANTS),
        headline="task_mean",
    ),
    "longvideobench_val": Benchmark(
        "longvideobench_val",
        "LongVideoBench (val)",
        "longvideobench/LongVideoBench",
        "validation",
        ("duration_group", "question_category"),
        longvideobench_sample,
        lmms_eval_task="longvideobench_val_v",
        max_new_tokens=32,
    ),
}


def get_benchmark(name: str) -> Benchmark:
    """The registry entry for `name` (see `BENCHMARKS`), or the `Benchmark` an installed package declares as an
    entry point of that name in the group `tpo_hf.eval_benchmarks` (`tpo_hf.plugins`)."""
    from ..plugins import BENCHMARKS_GROUP, load_plugin, plugin_entry_points

    if name in BENCHMARKS:
        return BENCHMARKS[name]
    benchmark = load_plugin(BENCHMARKS_GROUP, name)
    if benchmark is None:
        available = sorted(set(BENCHMARKS) | set(plugin_entry_points(BENCHMARKS_GROUP)))
        raise ValueError(f"Unknown benchmark {name!r}; available: {available}.")
    if not isinstance(benchmark, Benchmark) or benchmark.name != name:
        raise TypeError(f"The {BENCHMARKS_GROUP} entry point {name!r} must name a Benchmark called {name!r}.")
    return benchmark


def lmms_eval_predictions(name: str, replies: list[str], samples: list[MCQSample], seed: int = 0) -> list[str]:
    """The letters lmms-eval's parser for benchmark `name` reads out of `replies` ("" when it finds none).

    LongVideoBench's parser guesses at random when it finds no letter; lmms-eval draws from Python's global `random`
    (seeded with `--seed`, default 0) in sample order, emulated here with one `random.Random(seed)` per call.
    """
    import random

    if name.startswith("longvideobench"):
        rng = random.Random(seed)
        return [
            lmms_eval_longvideobench_answer(reply.strip(), list(option_letters(len(sample.options))), rng)
            for reply, sample in zip(replies, samples)
        ]
    return [lmms_eval_mcq_answer(reply.strip(), ["A", "B", "C", "D"]) for reply in replies]


@dataclass
class BenchmarkQuestions:
    """The questions a run scores and where they came from, as its results and model-index record them.

    Args:
        samples: the questions, in split order.
        dataset: the Hub id, or the local file or folder as given.
        local: `dataset` is a local file or folder, not a Hub dataset.
        split: the split read.
        split_size: the questions in that split; more than `len(samples)` when `limit` kept only the first ones.
    """

    samples: list[MCQSample]
    dataset: str
    local: bool
    split: str
    split_size: int

    @property
    def subset(self) -> bool:
        """Only the first questions of the split were kept: the score is not the benchmark's."""
        return len(self.samples) < self.split_size


def load_benchmark(
    name: str,
    dataset: str | None = None,
    split: str | None = None,
    config: str | None = None,
    limit: int | None = None,
    variant: str = "default",
    video_dir: str | os.PathLike | None = None,
    subtitle_dir: str | os.PathLike | None = None,
) -> list[MCQSample]:
    """Reads a benchmark into `MCQSample`s (`read_benchmark`'s samples; same arguments)."""
    return read_benchmark(name, dataset, split, config, limit, variant, video_dir, subtitle_dir).samples


def read_benchmark(
    name: str,
    dataset: str | None = None,
    split: str | None = None,
    config: str | None = None,
    limit: int | None = None,
    variant: str = "default",
    video_dir: str | os.PathLike | None = None,
    subtitle_dir: str | os.PathLike | None = None,
) -> BenchmarkQuestions:
    """Reads a benchmark into `MCQSample`s, with where they came from and how many questions the split holds.

    Args:
        name: a key of `BENCHMARKS`.
        dataset: Hub id, `save_to_disk` folder, or json/jsonl/parquet/csv file (default: the benchmark's Hub id).
        split: split to read (default: the benchmark's evaluation split; data files and folders of one saved
            `Dataset` have "train").
        config: Hub dataset config.
        limit: keep the first `limit` rows (quick checks).
        variant: the lmms-eval prompt variant (`Benchmark.variants`, e.g. "llava_vid"); "default" is lmms-eval's.
        video_dir: folder of the videos (`videomme_w_subtitle` reads their frame rate to pick the subtitles).
        subtitle_dir: folder of Video-MME's `<videoID>.srt` files (`videomme_w_subtitle`).
    """
    from ..data import load_preference_dataset  # the one loader for Hub ids, save_to_disk folders and data files

    benchmark = get_benchmark(name)
    if variant not in benchmark.variants:
        raise ValueError(f"{name} has no prompt variant {variant!r}; lmms-eval's are {list(benchmark.variants)}.")
    if name == "videomme_w_subtitle" and (subtitle_dir is None or not os.path.isdir(subtitle_dir)):
        raise ValueError(
            f"videomme_w_subtitle needs `subtitle_dir`, the folder of Video-MME's .srt files (got {subtitle_dir})."
        )
    source = dataset or benchmark.hub_id
    if split is None:
        # a data file's rows, and those of a folder of one saved `Dataset`, are the split `datasets` calls "train"
        one_split = os.path.isfile(source) or os.path.isfile(os.path.join(source, "dataset_info.json"))
        split = "train" if one_split else benchmark.split
    rows = load_preference_dataset(source, config or benchmark.config, split)
    split_size = len(rows)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    paths = {"video_dir": video_dir, "subtitle_dir": subtitle_dir} if subtitle_dir is not None else {}
    if len(rows) == 0:
        raise ValueError(f"{benchmark.pretty_name}: {source} (split {split!r}) has no rows to evaluate.")
    samples = []
    for index, row in enumerate(rows):
        try:
            sample = benchmark.to_sample(dict(row), index, variant, **paths)
        except ValueError as error:
            if f"row {index}" in str(error):
                raise
            raise ValueError(f"{benchmark.pretty_name} row {index} of {source}: {error}") from error
        except (TypeError, AttributeError) as error:  # a field of the wrong type, deep in the conversion
            raise ValueError(
                f"{benchmark.pretty_name} row {index} of {source}: a field has the wrong type ({error})."
            ) from error
        check_sample(sample, benchmark.pretty_name, index)
        if benchmark.headline == "task_mean" and not sample.breakdowns.get("task_type"):
            raise ValueError(
                f"{benchmark.pretty_name} row {index} of {source} has no task type: the headline "
                f"{benchmark.headline_name} is the mean of the per-task accuracies, so every question needs its task."
            )
        samples.append(sample)
    seen: dict[str, int] = {}
    for index, sample in enumerate(samples):
        if sample.sample_id in seen:
            raise ValueError(
                f"{benchmark.pretty_name} rows {seen[sample.sample_id]} and {index} share the id "
                f"{sample.sample_id!r}; results are cached by id, so ids must be unique."
            )
        seen[sample.sample_id] = index
    if name == "videomme_w_subtitle" and not any(find_subtitle(subtitle_dir, sample.video) for sample in samples):
        # some Video-MME videos have no subtitles, but none at all is a wrong folder or naming, not the benchmark
        logger.warning(
            "%s: no video of the %d questions has a subtitle file (<videoID>.srt, or <videoID>.<language>.srt) in "
            "%s: every prompt says 'No subtitles available'. Is `subtitle_dir` the folder of Video-MME's subtitles?",
            benchmark.pretty_name,
            len(samples),
            subtitle_dir,
        )
    return BenchmarkQuestions(samples, source, os.path.exists(source), split, split_size)


def find_video(video_dir: str | os.PathLike | None, video: str, sample_id: str = "?", task: str | None = None) -> str:
    """The file of `video` in `video_dir`: as named, with a usual extension added (Video-MME stores stems), or one
    folder down (MLVU groups videos by task). `file://` URLs and `~/` paths name local files, as in training.

    A bare name found in more than one sub-folder (MLVU's `order/clip.mp4` and `plotQA/clip.mp4` are different
    videos) is taken from the folder of the sample's `task` (named `task` or `<number>_task`, any case); without a
    task that picks one, it is refused naming the candidates: picking the first would score another video."""
    from ..video import local_video_path

    video = local_video_path(video)
    if os.path.isabs(video) or video_dir is None:
        candidates = [Path(video)]
    else:
        root = Path(video_dir)
        candidates = [root / video]
        if not Path(video).suffix:
            candidates += [root / f"{video}{extension}" for extension in STEM_EXTENSIONS]
        for candidate in candidates:
            if candidate.is_file():
                return str(candidate)
        if root.is_dir():
            found_below = []
            for sub in sorted(p for p in root.iterdir() if p.is_dir()):
                below = [sub / video]
                if not Path(video).suffix:
                    below += [sub / f"{video}{extension}" for extension in STEM_EXTENSIONS]
                candidates += below
                found_below += [candidate for candidate in below if candidate.is_file()][:1]
            if len(found_below) == 1:
                return str(found_below[0])
            if len(found_below) > 1:
                task_folder = re.compile(rf"(?:\d+_)?{re.escape(task)}", re.IGNORECASE) if task else None
                of_task = [c for c in found_below if task_folder is not None and task_folder.fullmatch(c.parent.name)]
                if len(of_task) == 1:
                    return str(of_task[0])
                raise ValueError(
                    f"Video {video!r} of sample {sample_id} (task {task!r}) is in {len(found_below)} sub-folders of "
                    f"{video_dir}: {[str(c) for c in found_below]}; which one is meant is unknown (no sub-folder is "
                    "named after the task). Name the video with its sub-folder (e.g. 'order/clip.mp4') in the rows."
                )
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"Video {video!r} of sample {sample_id} is not in {video_dir} (tried {[str(c) for c in candidates[:4]]}...); "
        "set `video_dir` to the folder holding the benchmark's videos."
    )


# missing videos named one by one in the error before "and N more"
MISSING_VIDEOS_SHOWN = 5


def find_videos(
    samples: list[MCQSample], video_dir: str | os.PathLike | None, benchmark: str | None = None
) -> dict[str, str]:
    """Sample id -> its video file (`find_video`), found for every sample before anything is generated: a benchmark
    with missing videos is refused once, naming how many questions lack their video, the first few (video, row,
    question id) and the folder searched, instead of failing at the first one mid-run. Then each distinct video is
    opened once (`open_videos`): files that do not open (a cut download, no `moov` atom) are refused the same way."""
    found: dict[str, str] = {}
    missing: list[tuple[int, MCQSample]] = []
    for row, sample in enumerate(samples):
        try:
            found[sample.sample_id] = find_video(
                video_dir, sample.video, sample.sample_id, sample.breakdowns.get("task_type")
            )
        except FileNotFoundError:
            missing.append((row, sample))
        except ValueError as error:  # one name, several videos
            raise ValueError(f"{benchmark + ': ' if benchmark else ''}row {row}: {error}") from None
    if missing:
        named = ", ".join(
            f"{sample.video!r} (row {row}, question {sample.sample_id})"
            for row, sample in missing[:MISSING_VIDEOS_SHOWN]
        )
        if len(missing) > MISSING_VIDEOS_SHOWN:
            named += f", and {len(missing) - MISSING_VIDEOS_SHOWN} more"
        videos = len({sample.video for _, sample in missing})
        folder = video_dir if video_dir is not None else "the working directory (`video_dir` is not set)"
        where = f"{benchmark}: " if benchmark else ""
        raise FileNotFoundError(
            f"{where}{len(missing)} of {len(samples)} questions name a video ({videos} distinct) that is not in "
            f"{folder} (searched as named, with a video extension added, and one folder down): {named}. Nothing was "
            "generated: put the missing videos there, or set `video_dir` to the folder holding the benchmark's videos."
        )
    check_sample_windows(samples, found, benchmark, open_videos(samples, found, benchmark))
    return found


def open_videos(
    samples: list[MCQSample], video_paths: dict[str, str], benchmark: str | None = None
) -> dict[str, float]:
    """Video file -> its duration, each distinct video opened once (`VideoFile`: its header and first frame, no other
    frame decoded) before anything is generated. Videos that do not open (a truncated download without its `moov`
    atom, a file that is no video) are refused in one error that counts them and names the first few (video, row,
    question id, why), instead of the first one failing mid-run after the questions before it were answered. A file
    damaged only further in is found where its frames are decoded: finding it here would need a full decode."""
    from ..video import VideoLoadError

    durations: dict[str, float] = {}
    unreadable: dict[str, tuple[str, list[tuple[int, MCQSample]]]] = {}  # path -> (why, its questions)
    for row, sample in enumerate(samples):
        path = video_paths[sample.sample_id]
        if path in unreadable:
            unreadable[path][1].append((row, sample))
        elif path not in durations:
            duration, problem = _opened_video(path)
            if problem is None:
                durations[path] = duration
            else:
                unreadable[path] = (problem, [(row, sample)])
    if unreadable:
        named = "; ".join(
            f"{questions[0][1].video!r} (row {questions[0][0]}, question {questions[0][1].sample_id}"
            + (f", and {len(questions) - 1} more questions" if len(questions) > 1 else "")
            + f"): {why}"
            for why, questions in list(unreadable.values())[:MISSING_VIDEOS_SHOWN]
        )
        if len(unreadable) > MISSING_VIDEOS_SHOWN:
            named += f"; and {len(unreadable) - MISSING_VIDEOS_SHOWN} more videos"
        count = sum(len(questions) for _, questions in unreadable.values())
        raise VideoLoadError(
            f"{benchmark + ': ' if benchmark else ''}{count} of {len(samples)} questions name a video "
            f"({len(unreadable)} distinct) that cannot be opened: {named}. Nothing was generated: replace these files "
            "(a download cut short lacks its index: download it again), or drop their questions."
        )
    return durations


def _opened_video(path: str) -> tuple[float | None, str | None]:
    """(duration, None) of the video at `path`, or (None, why it does not open); remembered per file version (path,
    size, time) and reader, so the check before the model loads and the one before generating open it once."""
    from ..video import default_video_reader

    stat = os.stat(path)
    return _opened_video_version(path, stat.st_size, stat.st_mtime_ns, default_video_reader())


@functools.lru_cache(maxsize=4096)
def _opened_video_version(path: str, size: int, mtime_ns: int, reader: str) -> tuple[float | None, str | None]:
    from ..video import VideoFile, VideoLoadError

    try:
        return VideoFile(path, cache_frames=False, reader=reader).duration, None
    except VideoLoadError as error:
        return None, str(error)


def check_sample_windows(
    samples: list[MCQSample],
    video_paths: dict[str, str],
    benchmark: str | None = None,
    durations: dict[str, float] | None = None,
) -> None:
    """A sample whose window (`MCQSample.start`) starts past the end of its video is refused naming the row and the
    question id before any answer is generated, not after the rows before it were answered. `durations`: video file
    -> duration (`open_videos`'s), else each video of a windowed sample is opened here."""
    durations = dict(durations or {})
    for row, sample in enumerate(samples):
        if sample.start is None:
            continue
        path = video_paths[sample.sample_id]
        if path not in durations:
            durations[path] = _opened_video(path)[0]  # an unreadable one is refused by `open_videos`
        duration = durations[path]
        if duration is not None and not 0 <= sample.start < duration:
            raise ValueError(
                f"{benchmark + ': ' if benchmark else ''}row {row} (question {sample.sample_id}), field 'start': "
                f"{sample.start} s is outside its video {path} (duration {duration:.3f} s); nothing was generated. "
                "Fix the row's start (or its video)."
            )
