"""Stage 4 of the flow (training): the cache file of precomputed reference log-probs, checked before it is reused.

TRL writes the reference log-probs of a dataset saved on disk into a `cache-<hash>.arrow` file beside it and reads
it back on the next run with the same key (`TPOTrainer.ref_logps_key`). A file cut short (a kill or a full disk
while it was written, a bad copy) would fail inside pyarrow without naming it: it is a cache, so it is named,
deleted and recomputed instead. Beside each cache file its key is recorded (`cache-<hash>.key.json`), so that a
recompute for a changed key names what changed (the processor's pixel budget, the frames, a video file...), and a
full disk while the file is written is named (`RefLogpsCacheError`) instead of pyarrow's "I/O operation on closed
file".
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .fingerprint import atomic_write_json, changed_fields, no_space_left

logger = logging.getLogger(__name__)

REF_LOGPS_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
KEY_RECORD_SUFFIX = ".key.json"  # beside `cache-<hash>.arrow`: the key it was computed under


class RefLogpsCacheError(OSError):
    """The reference log-prob cache file could not be written beside the dataset: the disk is full (names the file)."""


def processor_configs(processor: Any) -> dict[str, Any]:
    """The image and video processor configs of a transformers processor, as its `processor_config.json` holds them
    (resize budget such as `size.longest_edge`, patch and merge sizes, normalization): what the frames become before
    the model sees them. A processor without them gives an empty dict."""
    configs = {}
    for name in ("image_processor", "video_processor"):
        component = getattr(processor, name, None)
        if component is not None and hasattr(component, "to_json_string"):
            configs[name] = json.loads(component.to_json_string())
    return configs


def ref_logps_cache_file(dataset: Any, model_hash: str) -> str | None:
    """The cache file TRL's `DPOTrainer._precompute_ref_logps` reads for `dataset` and `model_hash` (None for a
    dataset in memory, which has no cache file)."""
    from datasets.fingerprint import Hasher

    if not getattr(dataset, "cache_files", None):
        return None
    return dataset._get_cache_file_path(Hasher.hash((dataset._fingerprint, model_hash)))


def cache_problem(cache_file: str, num_rows: int) -> str | None:
    """Why a reference log-prob cache file cannot be used for a dataset of `num_rows` rows, or None."""
    from datasets import Dataset

    try:
        cached = Dataset.from_file(cache_file)
    except Exception as error:  # pyarrow's ArrowInvalid and friends: the file is not a whole Arrow stream
        return f"{type(error).__name__}: {error}"
    missing = [name for name in REF_LOGPS_COLUMNS if name not in cached.column_names]
    if missing:
        return f"no column {missing}"
    if cached.num_rows != num_rows:
        return f"{cached.num_rows} rows for a dataset of {num_rows}"
    return None


def drop_damaged_ref_logps_cache(trainer: Any, dataset: Any) -> None:
    """Deletes the reference log-prob cache file of `dataset` (under `trainer`'s current key) when it cannot be
    read back, with a warning naming it, so that TRL recomputes it. Every process takes the same decision."""
    from accelerate.utils import broadcast_object_list

    cache_file = ref_logps_cache_file(dataset, trainer._precompute_model_hash)
    problem = [
        cache_problem(cache_file, len(dataset))
        if cache_file is not None and os.path.exists(cache_file) and trainer.accelerator.is_main_process
        else None
    ]
    broadcast_object_list(problem, from_process=0)
    if problem[0] is None:
        return
    logger.warning(
        "The reference log-prob cache %s cannot be read back (%s): deleting it and computing the reference "
        "log-probs again.",
        cache_file,
        problem[0],
    )
    if trainer.accelerator.is_main_process:
        os.unlink(cache_file)
    trainer.accelerator.wait_for_everyone()


def _key_record(cache_file: str) -> Path:
    return Path(cache_file.removesuffix(".arrow") + KEY_RECORD_SUFFIX)


def _changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The fields that differ between two keys, one level into dict fields (`video_processor.size`)."""
    names = []
    for name in changed_fields(old, new):
        if isinstance(old.get(name), dict) and isinstance(new.get(name), dict):
            names += [f"{name}.{field}" for field in changed_fields(old[name], new[name])] or [name]
        else:
            names.append(name)
    return names


def name_ref_logps_changes(dataset: Any, cache_file: str | None, key: dict[str, Any]) -> None:
    """When there is no cache file for `key` but the dataset's folder holds reference log-probs of the same rows under
    another key, warns that they are computed again, naming what changed since (the newest such cache file)."""
    if cache_file is None or os.path.exists(cache_file):
        return
    recorded = []
    for record in Path(cache_file).parent.glob(f"cache-*{KEY_RECORD_SUFFIX}"):
        try:
            content = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        other = str(record)[: -len(KEY_RECORD_SUFFIX)] + ".arrow"
        if (
            other != cache_file  # its own record, left when a damaged cache file was deleted
            and isinstance(content, dict)
            and content.get("dataset") == dataset._fingerprint
            and os.path.exists(other)
        ):
            recorded.append((record.stat().st_mtime_ns, other, content.get("key") or {}))
    if not recorded:
        return
    _, other, old_key = max(recorded, key=lambda item: item[0])
    changes = _changes(old_key, key)
    if changes:
        logger.warning(
            "Computing the reference log-probs of %s again: those cached in %s were computed with another %s.",
            Path(cache_file).parent,
            other,
            ", ".join(changes),
        )


def record_ref_logps_key(dataset: Any, cache_file: str | None, key: dict[str, Any]) -> None:
    """Writes `key` beside the cache file computed under it (once), for `name_ref_logps_changes`. Only a help for that
    message: a folder that cannot take it is left as is."""
    if cache_file is None or not os.path.exists(cache_file) or _key_record(cache_file).exists():
        return
    try:
        atomic_write_json(_key_record(cache_file), {"dataset": dataset._fingerprint, "key": key})
    except OSError as error:
        logger.debug("Could not record the key of %s: %s", cache_file, error)


def raise_if_cache_disk_full(error: BaseException, cache_file: str | None) -> None:
    """Raises `RefLogpsCacheError` naming `cache_file` when `error`, raised while it was written, came from a full
    disk (`no_space_left`); pyarrow reports it as "I/O operation on closed file", the ENOSPC only in its context."""
    if cache_file is None:
        return
    folder = os.path.dirname(cache_file)
    full = no_space_left(error, folder)
    if full is None:
        return
    cause = error
    while cause is not None and getattr(cause, "errno", None) is None:
        cause = cause.__cause__ or cause.__context__
    cause = cause or error
    raise RefLogpsCacheError(
        f"Writing the reference log-prob cache {cache_file} failed: {full} [{type(cause).__name__}: {cause}]. TRL "
        f"writes it beside the dataset, in {folder}: free space there (or copy the dataset to a disk with room, or "
        "set precompute_ref_log_probs false), then rerun; the reference log-probs are computed again."
    ) from error
