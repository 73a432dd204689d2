"""Stage 4 of the flow (training): the cache file of precomputed reference log-probs, checked before it is reused.

TRL writes the reference log-probs of a dataset saved on disk into a `cache-<hash>.arrow` file beside it and reads
it back on the next run with the same key (`TPOTrainer.ref_logps_key`). A file cut short (a kill or a full disk
while it was written, a bad copy) would fail inside pyarrow without naming it: it is a cache, so it is named,
deleted and recomputed instead.
"""

from __future__ import annotations

import logging
import os
from typing import Any

logger = logging.getLogger(__name__)

REF_LOGPS_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


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
