"""Stage 3 of the flow (data): preference datasets and where their videos live.

One loader for every entry point (training, curation from a dataset, evaluation benchmarks, the quickstart):
`load_preference_dataset` reads a Hub dataset id, a folder written by `Dataset.save_to_disk` / `tpo-hf curate`, or
a json/jsonl/parquet/csv file; `default_video_root` finds the folder that relative paths in its `video` column are
taken from.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

# data file ending -> `datasets` builder
DATA_FILE_BUILDERS = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}
JSON_CHECK_MAX_BYTES = 512 * 2**20  # JSON files up to this size are checked row by row before loading


def load_preference_dataset(name: str, config: str | None = None, split: str = "train") -> Any:
    """Loads a dataset (a `datasets.Dataset`) from the Hub, a `save_to_disk` folder or a data file.

    Raises:
        ValueError: a local folder without the split, or a file of an unknown type; the message names it.
    """
    from datasets import DatasetDict, load_dataset, load_from_disk

    if os.path.isdir(name) and (
        os.path.exists(os.path.join(name, "dataset_info.json"))
        or os.path.exists(os.path.join(name, "dataset_dict.json"))
    ):
        dataset = load_from_disk(name)
        if isinstance(dataset, DatasetDict):
            if split not in dataset:
                raise ValueError(f"Dataset folder {name} has splits {list(dataset)}, not {split!r}.")
            dataset = dataset[split]
        return dataset
    if os.path.isfile(name):
        builder = DATA_FILE_BUILDERS.get(name.rsplit(".", 1)[-1].lower())
        if builder is None:
            raise ValueError(f"Cannot read dataset file {name}: use {', '.join(DATA_FILE_BUILDERS)}.")
        if os.path.getsize(name) == 0:
            raise ValueError(f"Dataset file {name} is empty: no rows.")
        # `datasets` may quietly cast a clashing value (a number among strings becomes "42"): check JSON first
        problem = (
            json_rows_problem(name) if builder == "json" and os.path.getsize(name) < JSON_CHECK_MAX_BYTES else None
        )
        if problem is not None:
            raise ValueError(f"Cannot read dataset file {name}: {problem}")
        try:
            return load_dataset(builder, data_files=name, split=split)
        except Exception as error:
            # Arrow's messages name neither row nor field; for JSON, find the first row that breaks the schema
            problem = json_rows_problem(name) if builder == "json" else None
            raise ValueError(
                f"Cannot read dataset file {name}: {problem or f'{type(error).__name__}: {error}'}"
            ) from error
    return load_dataset(name, config, split=split)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "object"}.get(type(value), type(value).__name__)


def json_rows_problem(path: str) -> str | None:
    """The first row of a json/jsonl file that is not valid JSON, not an object, or holds a field whose type
    differs from the same field in an earlier row (what makes Arrow refuse the file), named by row and field."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        document = json.loads(text)
        rows = document if isinstance(document, list) else [document]
    except json.JSONDecodeError:
        rows = []
        for number, line in enumerate(text.splitlines()):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                return f"line {number + 1} is not valid JSON ({error.msg})"
    first: dict[str, tuple[str, int]] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            return f"row {index} is a {_kind(row)}, not an object with the dataset's fields"
        for field, value in row.items():
            if value is None:
                continue
            kind = _kind(value)
            seen = first.setdefault(field, (kind, index))
            if seen[0] != kind:
                return f"row {index}, field {field!r} is a {kind} ({value!r:.40}) where row {seen[1]} has a {seen[0]}"
    return None


def default_video_root(dataset_name: str) -> str | None:
    """Where relative paths in the `video` column live when `video_root` is not set.

    Local datasets keep them next to their data. A Hub dataset published by `tpo-hf curate --upload_videos true`
    keeps them under `videos/` in its repository: those files are downloaded (once, into the Hub cache) and the
    snapshot folder is the root, so `load_dataset(REPO_ID)` plus the repo's videos train without manual steps.
    """
    if os.path.isdir(dataset_name):
        return dataset_name
    if os.path.isfile(dataset_name):
        return os.path.dirname(os.path.abspath(dataset_name))
    from huggingface_hub import HfApi, snapshot_download

    try:
        has_videos = any(
            path.startswith("videos/") for path in HfApi().list_repo_files(dataset_name, repo_type="dataset")
        )
    except Exception as error:  # offline, private or not a Hub dataset: the user must set video_root
        logger.info(
            "No video folder found for dataset %s (%s); set video_root if its paths are relative.", dataset_name, error
        )
        return None
    if not has_videos:
        return None
    return snapshot_download(dataset_name, repo_type="dataset", allow_patterns=["videos/*", "videos/**"])
