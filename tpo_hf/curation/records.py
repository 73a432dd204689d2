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
from typing import Any

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
    """Video column values: `videos/<id>` inside the output folder (hard link, else copy) or absolute paths."""
    paths = {}
    for item in items:
        if item.video_id not in used:
            continue
        if not copy or "://" in item.path:
            paths[item.video_id] = item.path if "://" in item.path else os.path.abspath(item.path)
            continue
        target = output_dir / "videos" / item.video_id
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists() and not _same_file(item.path, target):  # a copy of an older file of that name
            target.unlink()
        if not target.exists():
            try:
                os.link(item.path, target)
            except OSError:
                shutil.copy2(item.path, target)
        paths[item.video_id] = f"videos/{item.video_id}"
    return paths


def _same_file(source: str, copy: Path) -> bool:
    """Whether `copy` is `source` (a hard link) or a copy of it as `shutil.copy2` makes (same size and time)."""
    if os.path.samefile(source, copy):
        return True
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
