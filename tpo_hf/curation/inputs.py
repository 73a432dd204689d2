"""Stage 2 of the flow (curation): the input videos, from a folder or a dataset, and how they are cut into shards."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..video import list_video_files
from .config import CurationConfig

logger = logging.getLogger(__name__)


@dataclass
class VideoItem:
    """One input video: `video_id` is its path relative to the corpus root (stable across machines)."""

    video_id: str
    path: str
    caption: str | None = None
    questions: list[tuple[str, str | None]] = field(default_factory=list)


def list_videos(config: CurationConfig) -> list[VideoItem]:
    """The input videos, sorted by id, from `video_dir` or from `dataset_name` (rows grouped by video).

    A broken link in `video_dir` is an item like any other (`list_video_files` names it in a warning): decoding it
    fails, so it is skipped by name in the report, or raises under `on_video_error="raise"`, never silently absent.
    """
    if config.video_dir is not None:
        root = Path(config.video_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"video_dir={config.video_dir} is not a folder.")
        paths = _outside_own_folders(list_video_files(root, config.video_extensions), root, config)
        items = [VideoItem(p.relative_to(root).as_posix(), str(p)) for p in paths]
    else:
        items = _videos_of_dataset(config)
    if config.max_videos is not None:
        items = items[: config.max_videos]
    return items


def _outside_own_folders(paths: list[Path], root: Path, config: CurationConfig) -> list[Path]:
    """`paths` less the files under the run's own `output_dir` and `work_dir` when those lie inside `video_dir`:
    the copies a run places in `output_dir/videos` are not new videos for the next run. (With `video_dir` at or
    under `output_dir`, only `output_dir/videos` is left out.)"""
    root = root.resolve()
    output_dir = Path(config.output_dir).resolve()
    own = [output_dir / "videos" if root.is_relative_to(output_dir) else output_dir, config.shard_dir.resolve()]
    own = [folder for folder in own if folder.is_relative_to(root) and not root.is_relative_to(folder)]
    if not own:
        return paths
    inside = [folder.relative_to(root) for folder in own]  # compared as paths relative to video_dir, as listed
    given = Path(config.video_dir)
    kept = [path for path in paths if not any(path.relative_to(given).is_relative_to(f) for f in inside)]
    if len(kept) < len(paths):
        logger.info(
            "Left out %d video file(s) under the run's own output folder(s) inside video_dir: %s.",
            len(paths) - len(kept),
            ", ".join(str(folder) for folder in own),
        )
    return kept


def _videos_of_dataset(config: CurationConfig) -> list[VideoItem]:
    from ..data import default_video_root, load_preference_dataset

    dataset = load_preference_dataset(config.dataset_name, split=config.dataset_split)
    for column in (config.video_column, config.caption_column, config.question_column, config.answer_column):
        if column is not None and column not in dataset.column_names:
            raise ValueError(
                f"Column {column!r} is not in dataset {config.dataset_name} (columns: {dataset.column_names})."
            )
    root = config.video_root or default_video_root(config.dataset_name) or ""
    grouped: dict[str, VideoItem] = {}
    for row_index, row in enumerate(dataset):
        video = row[config.video_column]
        if not isinstance(video, str) or not video:
            raise ValueError(f"Row {row_index} of {config.dataset_name}: {config.video_column!r} is not a path.")
        remote_or_absolute = os.path.isabs(video) or "://" in video
        video_id = video.rstrip("/").split("/")[-1] if remote_or_absolute else video
        path = video if remote_or_absolute else os.path.join(root, video)
        for column in (config.caption_column, config.question_column, config.answer_column):
            value = row.get(column) if column else None
            if value is not None and not isinstance(value, str):
                # str() of a list or a number would silently become a caption or a question
                raise ValueError(
                    f"Row {row_index} of {config.dataset_name}, field {column!r}: expected a string, got "
                    f"{type(value).__name__} {value!r:.60}."
                )
        item = grouped.setdefault(video_id, VideoItem(video_id, path))
        if config.caption_column and row.get(config.caption_column) and item.caption is None:
            item.caption = str(row[config.caption_column])
        if config.question_column and row.get(config.question_column):
            answer = row.get(config.answer_column) if config.answer_column else None
            item.questions.append((str(row[config.question_column]), str(answer) if answer else None))
    return [grouped[key] for key in sorted(grouped)]


def make_shards(items: list[VideoItem], videos_per_shard: int) -> list[list[VideoItem]]:
    """Groups of at most `videos_per_shard` consecutive videos (in id order): the unit of batching and of resume.

    A group ends before a video whose id hashes to a boundary (one id in `videos_per_shard`) or when it is full, so
    where groups end depends on the ids nearby only: adding or removing a video regroups the videos of its own
    group (and rarely of the next), and every other group, hence every other finished shard, stays as it was. With
    one video per shard (the default) every video is its own shard.
    """
    shards: list[list[VideoItem]] = []
    for item in items:
        boundary = int(hashlib.sha256(item.video_id.encode()).hexdigest()[:8], 16) % videos_per_shard == 0
        if not shards or boundary or len(shards[-1]) >= videos_per_shard:
            shards.append([item])
        else:
            shards[-1].append(item)
    return shards
