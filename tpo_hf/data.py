"""Stage 3 of the flow (data): preference datasets and where their videos live.

One loader for every entry point (training, curation from a dataset, evaluation benchmarks, the quickstart):
`load_preference_dataset` reads a Hub dataset id, a folder written by `Dataset.save_to_disk` / `tpo-hf curate`, or
a json/jsonl/parquet/csv file; `default_video_root` finds the folder that relative paths in its `video` column are
taken from.
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

# data file ending -> `datasets` builder
DATA_FILE_BUILDERS = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}


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
        return load_dataset(builder, data_files=name, split=split)
    return load_dataset(name, config, split=split)


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
