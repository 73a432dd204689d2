"""Stage 4 of the flow (training): the cache file of precomputed reference log-probs, checked before it is reused.

TRL writes the reference log-probs of a dataset saved on disk into a `cache-<hash>.arrow` file beside it and reads
it back on the next run with the same key (`TPOTrainer.ref_logps_key`). A dataset folder that cannot be written (a
read-only mount of shared data) gets the file, under the same name, in a folder of its own under tpo-hf's cache
(`ref_logps_cache_folder`); one computed beside it earlier is still read there. A file cut short (a kill or a full disk
while it was written, a bad copy) would fail inside pyarrow without naming it: it is a cache, so it is named,
deleted and recomputed instead. Beside each cache file its key is recorded (`cache-<hash>.key.json`), so that a
recompute for a changed key names what changed (the processor's pixel budget, the frames, a video file...), and a
full disk (or a folder that refuses the write) while the file is written is named (`RefLogpsCacheError`) instead of
pyarrow's "I/O operation on closed file".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .fingerprint import NOT_WRITABLE_ERRNOS, atomic_write_json, cache_root, changed_fields, key_hash, no_space_left

logger = logging.getLogger(__name__)

REF_LOGPS_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
KEY_RECORD_SUFFIX = ".key.json"  # beside `cache-<hash>.arrow`: the key it was computed under


class RefLogpsCacheError(OSError):
    """The reference log-prob cache file could not be written: the disk is full or the folder refuses writes (names
    the file or folder and the way on)."""


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


def dataset_folder(dataset: Any) -> str | None:
    """The folder TRL writes `dataset`'s reference log-prob cache into (`Dataset._get_cache_file_path`): the one of
    its first Arrow file; None for a dataset in memory or with caching off (TRL then writes a temporary file)."""
    from datasets import is_caching_enabled

    if not is_caching_enabled() or not getattr(dataset, "cache_files", None):
        return None
    return os.path.dirname(dataset.cache_files[0]["filename"])


def fallback_cache_folder(folder: str) -> Path:
    """Where the reference log-prob cache of a dataset in `folder`, which cannot be written, is written instead: a
    folder of its own under tpo-hf's cache (`TPO_HF_CACHE`), named after the dataset folder's real path, so that the
    cache files keep TRL's names (keyed by dataset fingerprint and `ref_logps_key`) and two datasets never share one."""
    real = os.path.realpath(folder)
    return cache_root() / "ref-logps" / f"{Path(real).name}-{key_hash(real)[:16]}"


def write_problem(folder: str | os.PathLike) -> str | None:
    """Why a file cannot be created in `folder` (created when missing), or None. Found by creating one, as the cache's
    writer does: `os.access` says yes to root on a folder without write bits, and network file systems may misanswer."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tpo-write-check-"):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def _unwritable_message(folder: str, problem: str, fallback: Path, fallback_problem: str, other_key: str = "") -> str:
    return (
        f"Cannot write the reference log-prob cache (precompute_ref_log_probs): the dataset folder {folder} cannot "
        f"be written ({problem}), nor {fallback} under tpo-hf's cache ({fallback_problem}).{other_key} Set "
        "TPO_HF_CACHE to a writable folder, or copy the dataset to a writable folder, or set precompute_ref_log_probs "
        "false."
    )


def known_ref_logps_key(args: Any, processing_class: Any = None) -> dict[str, Any]:
    """The entries of a run's reference log-prob key (`TPOTrainer.ref_logps_key`) known before its model is loaded,
    from its training arguments: length handling, mixed precision, TRL's `ld_alpha`, and how frames are sampled
    (`video_settings`: the settings of the `VideoPreferenceProcessor` given as `processing_class`, which it samples
    with, else the arguments'), where no `max_video_tokens` budget is fitted to the model's processor. The pixel
    budget is left out: a family that resizes to a fixed size drops it."""
    from .video_settings import VideoSettings

    settings = getattr(processing_class, "settings", None)
    if not isinstance(settings, VideoSettings):
        settings = VideoSettings.of(args)
    known: dict[str, Any] = {
        "max_length": args.max_length,
        "too_long_policy": args.too_long_policy,
        "mixed_precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "no",
        "ld_alpha": getattr(args, "ld_alpha", None),
    }
    if settings.max_video_tokens is None:
        frames = ("num_frames", "video_fps", "max_frames", "max_video_tokens")
        known["video_settings"] = {name: getattr(settings, name) for name in frames}
    return known


def _disagreeing(recorded: dict[str, Any], known: dict[str, Any]) -> list[str]:
    """The entries of `known` (one level into dict entries) that a recorded key holds with another value; an entry
    it does not hold is no disagreement (a record written before it was keyed)."""
    names = []
    for name, value in known.items():
        if name not in recorded:
            continue
        if isinstance(value, dict) and isinstance(recorded[name], dict):
            names += [f"{name}.{field}" for field in _disagreeing(recorded[name], value)]
        elif recorded[name] != value:
            names.append(name)
    return names


def _cache_for_other_run(cache_file: Path, known: dict[str, Any]) -> list[str]:
    """What makes the reference log-prob cache `cache_file` another run's (the `known` entries its key record holds
    otherwise); empty where it may be this run's, or where that cannot be told (no key record: a cache written by
    TRL alone or an older tpo-hf, or an unreadable one)."""
    try:
        content = json.loads(_key_record(str(cache_file)).read_text())
    except (OSError, ValueError):
        return []
    recorded = content.get("key") if isinstance(content, dict) else None
    return _disagreeing(recorded, known) if isinstance(recorded, dict) else []


def check_ref_logps_cache_writable(dataset: Any, args: Any = None, processing_class: Any = None) -> None:
    """Refuses, before the model is loaded, a dataset whose reference log-probs have nowhere to be written: its folder
    and its folder under tpo-hf's cache both refuse writes, and its folder holds no cache file computed earlier that
    may be this run's. Whether one is, is decided once the whole key is known (`ref_logps_cache_folder`, after the
    model load); here, with the run's training `args` (and `processing_class`), a cache whose key record holds
    another value of an entry known already (`known_ref_logps_key`: the frames, max_length...) is another run's."""
    folder = dataset_folder(dataset)
    if folder is None:
        return
    problem = write_problem(folder)
    if problem is None:
        return
    known = known_ref_logps_key(args, processing_class) if args is not None else {}
    caches = sorted(Path(folder).glob("cache-*.arrow"), key=lambda path: path.stat().st_mtime_ns)
    others = [_cache_for_other_run(cache, known) for cache in caches]
    if not all(others):
        return  # one of them may be this run's: read there, once its key is known
    fallback = fallback_cache_folder(folder)
    fallback_problem = write_problem(fallback)
    if fallback_problem is None:
        return
    other_key = (
        f" The reference log-prob cache(s) there ({len(caches)}) were computed with another "
        f"{', '.join(others[-1])} (the newest), so this run cannot reuse them."
        if caches
        else ""
    )
    raise RefLogpsCacheError(_unwritable_message(folder, problem, fallback, fallback_problem, other_key))


def ref_logps_cache_folder(trainer: Any, dataset: Any, cache_file: str | None) -> str | None:
    """The folder to write `dataset`'s reference log-prob cache into instead of its own, or None to leave it beside
    the dataset (TRL's place): its folder is writable, or already holds a sound cache file for the key (`cache_file`,
    read there). Otherwise its folder under tpo-hf's cache (`fallback_cache_folder`), named in the log; raises
    `RefLogpsCacheError` when that cannot be written either. Every process takes the same decision."""
    from accelerate.utils import broadcast_object_list

    decision: list[Any] = [(None, None)]
    folder = dataset_folder(dataset)
    if folder is not None and cache_file is not None and trainer.accelerator.is_main_process:
        problem = write_problem(folder)
        sound = problem is None or (os.path.exists(cache_file) and cache_problem(cache_file, len(dataset)) is None)
        if not sound:
            fallback = fallback_cache_folder(folder)
            fallback_problem = write_problem(fallback)
            if fallback_problem is None:
                logger.info(
                    "The dataset folder %s cannot be written (%s): its reference log-prob cache is written to %s "
                    "instead (tpo-hf's cache, TPO_HF_CACHE).",
                    folder,
                    problem,
                    fallback,
                )
                decision = [(str(fallback), None)]
            else:
                decision = [(None, _unwritable_message(folder, problem, fallback, fallback_problem))]
    broadcast_object_list(decision, from_process=0)
    elsewhere, refusal = decision[0]
    if refusal is not None:
        raise RefLogpsCacheError(refusal)
    return elsewhere


@contextlib.contextmanager
def cache_files_in(dataset: Any, folder: str | None) -> Iterator[None]:
    """While the body runs, `dataset` names its cache files (`_get_cache_file_path`, which TRL asks for the reference
    log-prob cache's) in `folder` instead of its own folder, under the same names; `folder` None changes nothing."""
    if folder is None:
        yield
        return
    # TRL takes the cache file's path from the dataset object it is given: only that object, only for this call
    dataset._get_cache_file_path = lambda fingerprint: os.path.join(folder, f"cache-{fingerprint}.arrow")
    try:
        yield
    finally:
        del dataset._get_cache_file_path


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


def write_failure(error: BaseException, folder: str) -> tuple[str, str] | None:
    """(what went wrong, what to do there) when `error`, raised while a file was written into `folder`, came from a
    full disk (`no_space_left`) or from a folder that refuses writes (read-only file system, missing permission)."""
    full = no_space_left(error, folder)
    if full is not None:
        return full, "free space there"
    cause: BaseException | None = error
    while cause is not None and not (isinstance(cause, OSError) and cause.errno in NOT_WRITABLE_ERRNOS):
        cause = cause.__cause__ or cause.__context__
    if cause is None:
        return None
    return f"the folder cannot be written ({os.strerror(cause.errno).lower()})", "make it writable"


def raise_if_cache_write_failed(error: BaseException, cache_file: str | None) -> None:
    """Raises `RefLogpsCacheError` naming `cache_file` when `error`, raised while it was written, came from a full
    disk or a folder refusing writes (`write_failure`); pyarrow reports a full disk as "I/O operation on closed file",
    the ENOSPC only in its context."""
    if cache_file is None:
        return
    folder = os.path.dirname(cache_file)
    failure = write_failure(error, folder)
    if failure is None:
        return
    reason, fix = failure
    cause = error
    while cause is not None and getattr(cause, "errno", None) is None:
        cause = cause.__cause__ or cause.__context__
    cause = cause or error
    if Path(folder).parent == cache_root() / "ref-logps":  # the dataset's own folder could not be written
        where = f"It is written in {folder}, under tpo-hf's cache, as the dataset folder cannot be written"
        others = "or set TPO_HF_CACHE to a writable folder with room"
    else:
        where = f"TRL writes it beside the dataset, in {folder}"
        others = "or copy the dataset to a writable disk with room"
    raise RefLogpsCacheError(
        f"Writing the reference log-prob cache {cache_file} failed: {reason} [{type(cause).__name__}: {cause}]. "
        f"{where}: {fix} ({others}, or set precompute_ref_log_probs false), then rerun; the reference log-probs are "
        "computed again."
    ) from error
