"""Stage 2 of the flow (curation): shard records -> the rows and columns of the curated `datasets.Dataset`.

The first eight columns are the training schema (`prompt`, `chosen`, `rejected`, `video`, `granularity`,
`segment_start`, `segment_end`, and `anchor`: a row whose chosen answer is also its rejected one, trained by the SFT
term only); the rest is provenance: task type, caption and question sources, the frame indices
each side saw, the judge's verdicts and reason, why the pair was kept, and the model of each role.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for annotations only: data.py reads the schema here, and inputs.py imports data
    from .inputs import VideoItem


def dataset_features() -> Any:
    """The `datasets.Features` of a curated dataset, in column order."""
    from datasets import Features, Sequence, Value

    return Features(
        {
            "prompt": Value("string"),
            "chosen": Value("string"),
            "rejected": Value("string"),
            "video": Value("string"),
            "granularity": Value("string"),
            "segment_start": Value("float64"),
            "segment_end": Value("float64"),
            "anchor": Value("bool"),
            "task_type": Value("string"),
            "question_source": Value("string"),
            "caption": Value("string"),
            "caption_source": Value("string"),
            "reference_answer": Value("string"),
            "chosen_frame_indices": Sequence(Value("int64")),
            "rejected_frame_indices": Sequence(Value("int64")),
            "judge_better": Value("bool"),
            "judge_contradiction": Value("bool"),
            "judge_correct": Value("bool"),
            "judge_reason": Value("string"),
            "keep_reason": Value("string"),
            "video_model": Value("string"),
            "question_model": Value("string"),
            "judge_model": Value("string"),
        }
    )


def place_videos(items: list[VideoItem], used: set[str], output_dir: Path, copy: bool) -> dict[str, str]:
    """Video column values: `videos/<id>`, a copy inside the output folder, or absolute paths (`copy=False`).

    A copy, never a hard link: the dataset is a snapshot of the videos its pairs were made from, so a source file
    overwritten in place later (`cp new.mp4 videos/a.mp4` writes into the same file) leaves the dataset's video as it
    was. `shutil.copy2` copies inside the kernel where it can, and keeps the modification time a rerun compares.
    """
    paths = {}
    for item in items:
        if item.video_id not in used:
            continue
        if not copy or "://" in item.path:
            paths[item.video_id] = item.path if "://" in item.path else os.path.abspath(item.path)
            continue
        target = output_dir / "videos" / item.video_id
        paths[item.video_id] = f"videos/{item.video_id}"
        if target.exists() and os.path.realpath(target) == os.path.realpath(item.path):
            continue  # video_dir is output_dir/videos itself: the file is its own copy
        target.parent.mkdir(parents=True, exist_ok=True)
        # a copy of an older file of that name, or a hard link an older tpo-hf made (it follows its source)
        if target.exists() and not _is_copy_of(item.path, target):
            target.unlink()
        if not target.exists():
            try:
                shutil.copy2(item.path, target)
            except BaseException:  # a full disk, a kill: no truncated video under the name the rows give
                target.unlink(missing_ok=True)
                raise
    return paths


def _is_copy_of(source: str, copy: Path) -> bool:
    """Whether `copy` is a copy of `source` as `shutil.copy2` makes it (same size and modification time), and not
    the same file (a hard link)."""
    if os.path.samefile(source, copy):
        return False
    a, b = os.stat(source), os.stat(copy)
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def build_dataset(records: list[dict[str, Any]], video_paths: dict[str, str], models: dict[str, str | None]) -> Any:
    """The dataset of the final `records`, with video paths as placed and the model of each role."""
    from datasets import Dataset

    features = dataset_features()
    columns = list(features)
    rows = []
    for record in records:
        row = {name: record.get(name) for name in columns}
        row.update(
            video=video_paths[record["video"]],
            video_model=models["video"],
            question_model=models["question"],
            judge_model=models["judge"],
        )
        rows.append(row)
    return Dataset.from_dict({name: [row[name] for row in rows] for name in columns}, features=features)
