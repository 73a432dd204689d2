"""Stage 5 of the flow (evaluation): the long-video multiple-choice benchmarks, each mapped to one `MCQSample` shape.

Each benchmark keeps its own schema on the Hub; an adapter here reads one row into an `MCQSample` (question,
option texts, answer letter, video file, the fields its results are broken down by) and words the prompt as the
standard lmms-eval task does, so numbers are comparable with published ones. Field names and prompts follow
lmms-eval (EvolvingLMMs-Lab/lmms-eval):

- Video-MME, `lmms-lab/Video-MME` split `test` (`lmms_eval/tasks/videomme/videomme.yaml`, `utils.py`): `videoID`
  (file stem; `video_id` is the numeric id), `question_id`, `duration` ("short" | "medium" | "long"), `domain`,
  `sub_category`, `task_type`, `question`, `options` (["A. ...", "B. ...", ...]), `answer` (a letter).
  Prompt: `videomme_doc_to_text` (its option prompt mentions subtitles even without them; kept as lmms-eval has it).
- MLVU dev, `sy1998/MLVU_dev` split `test` (`lmms_eval/tasks/mlvu/mlvu_dev.yaml`, `utils.py`): `video_name`,
  `question` (lmms-eval's copy already lists the options as "(A) ..."), `candidates`, `answer` (a letter there, the
  option text in the original MLVU json), `task_type` (the original json calls it `question_type`), `duration`.
  Prompt: `mlvu_doc_to_text` ("Only give the best option." ... "Best option: (").
- LongVideoBench val, `longvideobench/LongVideoBench` split `validation`
  (`lmms_eval/tasks/longvideobench/longvideobench_val_v.yaml`, `utils.py`): `id`, `video_path`, `question`,
  `option0`..`option4` ("N/A" when absent; the original `lvb_val.json` has `candidates`), `correct_choice` (index),
  `duration_group`, `question_category`, `duration`. Prompt: `longvideobench_doc_to_text` with the default
  post-prompt "Answer with the option's letter from the given choices directly.".
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..video import VIDEO_EXTENSIONS
from .answers import option_letters, strip_option_prefix

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
    """

    sample_id: str
    video: str
    question: str
    options: list[str]
    answer: str
    prompt: str
    breakdowns: dict[str, str] = field(default_factory=dict)
    num_frames: int | None = None


def _require(row: dict[str, Any], names: tuple[str, ...], benchmark: str, index: int) -> Any:
    for name in names:
        if row.get(name) is not None:
            return row[name]
    raise KeyError(
        f"{benchmark} row {index} has no field {' / '.join(repr(n) for n in names)} (fields: {sorted(row)}); "
        f"is this dataset in the {benchmark} schema?"
    )


def _stable_id(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:12]


def _answer_letter(answer: Any, options: list[str], benchmark: str, index: int) -> str:
    """A letter, an index, or the option text itself -> the letter."""
    letters = option_letters(len(options))
    if isinstance(answer, int) and not isinstance(answer, bool):
        if 0 <= answer < len(options):
            return letters[answer]
    else:
        text = str(answer).strip()
        match = re.fullmatch(r"\(?([A-Za-z])\)?\.?", text)
        if match and match.group(1).upper() in letters and text not in options:
            return match.group(1).upper()
        stripped = [strip_option_prefix(option).strip().lower() for option in options]
        if strip_option_prefix(text).lower() in stripped:
            return letters[stripped.index(strip_option_prefix(text).lower())]
    raise ValueError(f"{benchmark} row {index}: answer {answer!r} names none of the {len(options)} options {options}.")


# --- Video-MME ------------------------------------------------------------------------------------------------------
VIDEOMME_OPTION_PROMPT = (
    "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)


def videomme_sample(row: dict[str, Any], index: int) -> MCQSample:
    """A `lmms-lab/Video-MME` row -> `MCQSample` (prompt of lmms-eval's `videomme_doc_to_text`)."""
    video = str(_require(row, ("videoID",), "Video-MME", index))
    question = str(_require(row, ("question",), "Video-MME", index))
    raw_options = list(_require(row, ("options",), "Video-MME", index))
    options = [strip_option_prefix(option) for option in raw_options]
    prompt = VIDEOMME_OPTION_PROMPT + "\n" + question + "\n" + "\n".join(raw_options) + "\n" + "The best answer is:"
    sample_id = row.get("question_id") or f"{video}-{_stable_id(question)}"
    return MCQSample(
        sample_id=str(sample_id),
        video=video,
        question=question,
        options=options,
        answer=_answer_letter(_require(row, ("answer",), "Video-MME", index), options, "Video-MME", index),
        prompt=prompt,
        breakdowns={name: str(row[name]) for name in ("duration", "domain", "task_type") if row.get(name) is not None},
    )


# --- MLVU (dev) ------------------------------------------------------------------------------------------------------
def mlvu_sample(row: dict[str, Any], index: int) -> MCQSample:
    """An MLVU dev row (lmms-eval's `sy1998/MLVU_dev` or the original json) -> `MCQSample`."""
    video = str(_require(row, ("video_name", "video"), "MLVU", index))
    question = str(_require(row, ("question",), "MLVU", index)).strip()
    options = [strip_option_prefix(str(c)) for c in _require(row, ("candidates",), "MLVU", index)]
    letters = option_letters(len(options))
    if "(A)" in question:  # lmms-eval's copy carries the options in the question already
        listed = question
    else:
        listed = question + "\n" + "\n".join(f"({letter}) {option}" for letter, option in zip(letters, options))
    prompt = "\n" + listed + "\nOnly give the best option.\n" + "\n" + "Best option: ("
    task = row.get("task_type") or row.get("question_type")
    return MCQSample(
        sample_id=str(row.get("question_id") or f"{video}-{_stable_id(question)}"),
        video=video,
        question=question,
        options=options,
        answer=_answer_letter(_require(row, ("answer",), "MLVU", index), options, "MLVU", index),
        prompt=prompt,
        breakdowns={"task_type": str(task)} if task is not None else {},
    )


# --- LongVideoBench (val) --------------------------------------------------------------------------------------------
LONGVIDEOBENCH_POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"


def longvideobench_sample(row: dict[str, Any], index: int) -> MCQSample:
    """A `longvideobench/LongVideoBench` validation row -> `MCQSample` (lmms-eval's `longvideobench_doc_to_text`)."""
    video = str(_require(row, ("video_path",), "LongVideoBench", index))
    question = str(_require(row, ("question",), "LongVideoBench", index))
    if row.get("candidates") is not None:
        options = [str(c) for c in row["candidates"]]
    else:
        options = [str(row[f"option{i}"]) for i in range(5) if row.get(f"option{i}") not in (None, "N/A")]
    if not options:
        raise KeyError(f"LongVideoBench row {index} has neither `candidates` nor `option0`..`option4`.")
    letters = option_letters(len(options))
    listed = question + "\n" + "\n".join(f"{letter}. {option}" for letter, option in zip(letters, options))
    correct = _require(row, ("correct_choice",), "LongVideoBench", index)
    return MCQSample(
        sample_id=str(row.get("id") or f"{video}-{_stable_id(question)}"),
        video=video,
        question=question,
        options=options,
        answer=_answer_letter(int(correct), options, "LongVideoBench", index),
        prompt=f"{listed}\n{LONGVIDEOBENCH_POST_PROMPT}",
        breakdowns={
            name: str(row[name]) for name in ("duration_group", "question_category") if row.get(name) is not None
        },
    )


def tpo_world_sample(row: dict[str, Any], index: int) -> MCQSample:
    """A held-out question of tpo-hf's synthetic temporal world (`tpo_hf.world`): rows are written by
    `tpo_hf.world.corpus.eval_rows` with the full prompt and the video's frame count (every frame is shown)."""
    options = list(_require(row, ("options",), "tpo_world", index))
    return MCQSample(
        sample_id=str(_require(row, ("sample_id",), "tpo_world", index)),
        video=str(_require(row, ("video",), "tpo_world", index)),
        question=str(_require(row, ("question",), "tpo_world", index)),
        options=options,
        answer=_answer_letter(_require(row, ("answer",), "tpo_world", index), options, "tpo_world", index),
        prompt=str(_require(row, ("prompt",), "tpo_world", index)),
        breakdowns={name: str(row[name]) for name in ("type", "kind", "scenes") if row.get(name) is not None},
        num_frames=row.get("num_frames"),
    )


@dataclass(frozen=True)
class Benchmark:
    """A registered multiple-choice benchmark: where it lives on the Hub and how its rows read.

    Args:
        name: registry key (`tpo-hf eval --benchmark NAME`).
        pretty_name: name in tables and model cards.
        hub_id: the dataset lmms-eval evaluates on.
        split: its evaluation split.
        breakdowns: the fields accuracy is reported by, besides overall.
        to_sample: row, row index -> `MCQSample`.
        config: Hub dataset config, if any.
    """

    name: str
    pretty_name: str
    hub_id: str
    split: str
    breakdowns: tuple[str, ...]
    to_sample: Callable[[dict[str, Any], int], MCQSample]
    config: str | None = None


BENCHMARKS: dict[str, Benchmark] = {
    "videomme": Benchmark(
        "videomme", "Video-MME", "lmms-lab/Video-MME", "test", ("duration", "task_type", "domain"), videomme_sample
    ),
    "mlvu_dev": Benchmark("mlvu_dev", "MLVU (dev)", "sy1998/MLVU_dev", "test", ("task_type",), mlvu_sample),
    "longvideobench_val": Benchmark(
        "longvideobench_val",
        "LongVideoBench (val)",
        "longvideobench/LongVideoBench",
        "validation",
        ("duration_group", "question_category"),
        longvideobench_sample,
    ),
    # held-out questions about tpo-hf's synthetic temporal world (local files only; never on the Hub)
    "tpo_world": Benchmark(
        "tpo_world",
        "TPO world (held-out)",
        "tpo-hf/temporal-world",
        "test",
        ("type", "kind", "scenes"),
        tpo_world_sample,
    ),
}


def get_benchmark(name: str) -> Benchmark:
    """The registry entry for `name` (see `BENCHMARKS`)."""
    if name not in BENCHMARKS:
        raise ValueError(f"Unknown benchmark {name!r}; available: {sorted(BENCHMARKS)}.")
    return BENCHMARKS[name]


def load_benchmark(
    name: str,
    dataset: str | None = None,
    split: str | None = None,
    config: str | None = None,
    limit: int | None = None,
) -> list[MCQSample]:
    """Reads a benchmark into `MCQSample`s.

    Args:
        name: a key of `BENCHMARKS`.
        dataset: Hub dataset id, `save_to_disk` folder, or json/jsonl/parquet/csv file (default: the benchmark's
            Hub id).
        split: split to read (default: the benchmark's evaluation split; data files have "train").
        config: Hub dataset config.
        limit: keep the first `limit` rows (quick checks).
    """
    from ..data import load_preference_dataset  # the one loader for Hub ids, save_to_disk folders and data files

    benchmark = get_benchmark(name)
    source = dataset or benchmark.hub_id
    if split is None:
        split = "train" if os.path.isfile(source) else benchmark.split
    rows = load_preference_dataset(source, config or benchmark.config, split)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    samples = [benchmark.to_sample(dict(row), index) for index, row in enumerate(rows)]
    seen: dict[str, int] = {}
    for index, sample in enumerate(samples):
        if sample.sample_id in seen:
            raise ValueError(
                f"{benchmark.pretty_name} rows {seen[sample.sample_id]} and {index} share the id "
                f"{sample.sample_id!r}; results are cached by id, so ids must be unique."
            )
        seen[sample.sample_id] = index
    return samples


def find_video(video_dir: str | os.PathLike | None, video: str, sample_id: str = "?") -> str:
    """The file of `video` in `video_dir`: as named, with a usual extension added (Video-MME stores stems), or one
    folder down (MLVU groups videos by task)."""
    if os.path.isabs(video) or video_dir is None:
        candidates = [Path(video)]
    else:
        root = Path(video_dir)
        candidates = [root / video]
        if not Path(video).suffix:
            candidates += [root / f"{video}{extension}" for extension in STEM_EXTENSIONS]
        if root.is_dir():
            for sub in sorted(p for p in root.iterdir() if p.is_dir()):
                candidates.append(sub / video)
                if not Path(video).suffix:
                    candidates += [sub / f"{video}{extension}" for extension in STEM_EXTENSIONS]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"Video {video!r} of sample {sample_id} is not in {video_dir} (tried {[str(c) for c in candidates[:4]]}...); "
        "set `video_dir` to the folder holding the benchmark's videos."
    )
