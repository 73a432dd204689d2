"""Stage 2 of the flow (curation): the run. Videos in, TPO preference pairs out; resumable and split across processes.

    result = run_curation(config)                # shards -> merged, mixed, sized `datasets.Dataset` on disk

Work is cut into shards of at most `videos_per_shard` videos (`make_shards`; one by default), each named by its own
videos. A shard is the unit of batching and of resume: it is computed from scratch (every random choice seeded from
the video ids, never from global RNG state), then written atomically, so a run killed at any moment and started
again redoes only the shards that were not written and ends with exactly the dataset of an uninterrupted run
(`storage`). Shards are keyed by the settings and prompt texts (a change refuses, naming it) and by their videos'
files: a run after videos were added, removed or changed curates only those and drops the pairs of removed videos.
A `work_dir` outside `output_dir` is locked too, and the manifest records the video source and output it serves: a
run that would overwrite another output's shards (clips named alike) refuses, naming both.
Under `accelerate launch`, shard `i` goes to process `i % num_processes`; the main process merges after all finish.

One shard goes through the stages in order, each over the shard's `Candidate`s: `decode` -> `caption` -> `ask` ->
`answer` -> `judge` -> records. The merge then mixes and sizes the kept pairs (`mixing`), writes the dataset
(`records`), the report (`report`) and the dataset card (`dataset_card`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import dataset_files
from ..fingerprint import atomic_write_text, key_hash, legacy_model_identity
from ..video_settings import VideoSettings
from .answer import answer
from .ask import QUESTION_REPLIES, ask
from .backends import TEMPLATE_QUESTIONS, Backends, build_backends
from .caption import caption
from .config import CurationConfig
from .decode import decode_videos
from .generate import ReplyWatch
from .inputs import VideoItem, list_videos, make_shards
from .judge import JUDGE_REPLIES, judge
from .mixing import mix_and_size
from .records import build_dataset, place_videos
from .report import REPORT_NAME, CurationReport, summary_table, truncation_warning
from .segments import video_seed
from .storage import (
    BATCHING_FIELDS,
    MANIFEST_NAME,
    SHARD_FORMAT_VERSION,
    VideoChanges,
    accepted_settings,
    atomic_write_json,
    card_hash,
    check_dataset_unedited,
    check_manifest,
    check_source,
    curation_key,
    earlier_keys,
    model_identities,
    model_prompt_formats,
    named_write_errors,
    read_shard,
    remove_dataset_files,
    remove_leftovers,
    save_dataset,
    shard_inputs,
    shard_is_current,
    shard_path,
    shard_source,
    unreported_since,
    work_dir_of,
    write_manifest,
)

logger = logging.getLogger(__name__)


class NoPairsError(RuntimeError):
    """A curation run ended with an empty dataset; the message (and the report's `no_pairs_reason`) says why."""


@dataclass
class CurationResult:
    """What a run produced (on the main process): the dataset, where it was saved, and the run report."""

    dataset: Any
    output_dir: str
    report: dict[str, Any]


def curate_shard(items: list[VideoItem], backends: Backends, config: CurationConfig) -> dict[str, Any]:
    """Builds every candidate pair of `items` (kept and dropped, each with its reason); deterministic given config.

    Returns the shard as stored on disk: `records`, `skipped` videos, `stats` (counts and seconds per stage).
    """
    stats: Counter = Counter()
    shard_seed = video_seed(items[0].video_id, config.seed, "shard")
    views, candidates, skipped = decode_videos(items, config, stats)
    caption(
        candidates,
        views,
        backends.video,
        max_new_tokens=config.caption_max_new_tokens,
        seed=shard_seed + 1,
        stats=stats,
    )
    ask(candidates, backends.question, max_new_tokens=config.question_max_new_tokens, seed=shard_seed + 2, stats=stats)
    answer(
        candidates,
        views,
        backends.video,
        max_new_tokens=config.answer_max_new_tokens,
        seed=shard_seed + 3,
        stats=stats,
        anchors=config.wants_anchors,
        drop_cut=None if config.cut_answers is None else config.cut_answers == "drop",
    )
    if backends.judge is not None:
        judge(candidates, backends.judge, max_new_tokens=config.judge_max_new_tokens, seed=shard_seed + 4, stats=stats)
    return {
        "version": SHARD_FORMAT_VERSION,
        "videos": [i.video_id for i in items],
        "records": [c.to_record(views, judged=backends.judge is not None) for c in candidates],
        "skipped": skipped,
        "stats": dict(stats),
    }


def role_models(config: CurationConfig) -> dict[str, str | None]:
    """The model of each role as the dataset and its card name it (`template` questions, `None` without judge)."""
    models = {role: config.role_settings(role)[1] for role in ("video", "question", "judge")}
    if config.question_backend == TEMPLATE_QUESTIONS:
        models["question"] = "template"
    if not config.use_judge:
        models["judge"] = None
    return models


def merge(
    config: CurationConfig,
    items: list[VideoItem],
    shards: list[dict[str, Any]],
    changes: VideoChanges | None = None,
    earlier: dict[str, dict[str, Any]] | None = None,
) -> CurationResult:
    """Merges the shards, mixes and sizes the pairs, saves the dataset, the card and the report. `changes`: the
    videos added, removed or changed since the last run (counted in the report and the card); `earlier`: the
    batching values of the earlier keys whose shards were kept, by settings hash (named in the report and the card)."""
    from .dataset_card import render_dataset_card

    changes = changes or VideoChanges()
    kept = [r for shard in shards for r in shard["records"] if r["kept"]]
    final, mix_counts = mix_and_size(kept, config)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for video_id in changes.removed + changes.files_changed:  # a copy of a removed video, or of the old file, is stale
        (output_dir / "videos" / video_id).unlink(missing_ok=True)
    video_paths = place_videos(items, {r["video"] for r in final}, output_dir, config.copy_videos)
    models = role_models(config)
    dataset = build_dataset(final, video_paths, models)
    report = CurationReport.from_run(config, items, shards, final, mix_counts, models, changes, earlier).to_dict()
    if not len(dataset):  # the report alone: nothing that loads (or pushes) as an empty dataset
        remove_dataset_files(output_dir)
        atomic_write_json(output_dir / REPORT_NAME, report)
        return CurationResult(dataset=dataset, output_dir=str(output_dir), report=report)
    save_dataset(dataset, output_dir)
    atomic_write_json(output_dir / REPORT_NAME, report)
    # by a rename, as the data files: a hard-linked snapshot of the folder keeps its own card
    atomic_write_text(output_dir / "README.md", str(render_dataset_card(dataset, report, config)))
    return CurationResult(dataset=dataset, output_dir=str(output_dir), report=report)


def _reusable(
    work_dir: Path, items: list[VideoItem], config: CurationConfig, settings: set[str], quiet: bool = False
) -> bool:
    """Whether the shard of `items` on disk was made from these very video files under these settings and prompts
    (`settings`: the hashes of the keys the run accepts, `accepted_settings`), else it is redone (`quiet`: without
    saying so)."""
    shard = read_shard(shard_path(work_dir, items))  # a damaged file is named and counts as absent
    if shard is None:
        return False
    reason = shard_is_current(shard, items, config, settings)
    if reason is not None and not quiet:
        logger.warning("Recomputing the shard of %s: %s.", ", ".join(i.video_id for i in items), reason)
    return reason is None


def plan_shards(
    work_dir: Path, items: list[VideoItem], config: CurationConfig, manifest: dict[str, Any] | None, settings: set[str]
) -> list[list[VideoItem]]:
    """`make_shards` with the run's `videos_per_shard`; where a resume changed it (`TPO_HF_RESUME_CHANGED=1`, the
    manifest's `earlier_keys`), the groups of an earlier value whose shard is finished and current are kept whole,
    and only the other videos are grouped anew."""
    kept: list[list[VideoItem]] = []
    done: set[str] = set()
    for per_shard in dict.fromkeys(key.get("videos_per_shard") for key in earlier_keys(manifest)):
        if not isinstance(per_shard, int) or per_shard < 1 or per_shard == config.videos_per_shard:
            continue
        for group in make_shards(items, per_shard):
            if done.isdisjoint(i.video_id for i in group) and _reusable(work_dir, group, config, settings, True):
                kept.append(group)
                done.update(i.video_id for i in group)
    if not kept:
        return make_shards(items, config.videos_per_shard)
    rest = make_shards([i for i in items if i.video_id not in done], config.videos_per_shard)
    return sorted(kept + rest, key=lambda group: group[0].video_id)


def _process_state(config: CurationConfig) -> Any:
    import torch
    from accelerate import PartialState

    # PartialState only sets up multi-CPU (gloo) when told the run is on CPU; torchrun-style launchers on a machine
    # without a GPU (or `device: cpu`) need that, or every process would believe it is alone.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cpu = config.device == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    # Only a multi-process run passes the flag: a single process keeps the default state, which later trainers in the
    # same Python process (e.g. a notebook that curates then trains) can still configure.
    distributed_cpu = world_size > 1 and (use_cpu or not torch.cuda.is_available())
    return PartialState(cpu=True) if distributed_cpu else PartialState()


def fitted_to_video_model(config: CurationConfig, backends: Backends | None = None) -> CurationConfig:
    """The run's config with its video settings fitted to `max_video_tokens` for the video model's family and
    processor (`VideoSettings.fitted`, the fit training and evaluation use): a new, validated copy; `config` itself
    is left as given. A video backend passed in already loaded is set to sample with these settings."""
    from ..processing import VideoPreferenceProcessor

    loaded = getattr(getattr(backends, "video", None), "processor", None)
    settings = VideoSettings.of(config)
    if isinstance(loaded, VideoPreferenceProcessor):
        fitted = settings.fitted(loaded.processor, loaded.family)
        loaded.settings = fitted
    elif settings.max_video_tokens is None:
        return config
    else:
        model_id = config.role_settings("video")[1]
        try:
            fitted = VideoPreferenceProcessor.from_pretrained(model_id, **settings.to_dict()).settings
        except (OSError, ValueError) as error:
            raise ValueError(
                f"max_video_tokens: cannot load the processor of video model {model_id!r} to count its video tokens "
                f"({error})"
            ) from error
    # replace() validates the copy again: sparse_num_frames must stay below the fitted num_frames
    return dataclasses.replace(config, **fitted.to_dict())


# files a training run leaves in its output folder (an adapter, or a full fine-tune: `data.model_in_folder` skips those)
def refuse_model_output_dir(output_dir: str | os.PathLike) -> None:
    """Refuses an `output_dir` that holds a trained adapter or a model (`data.model_or_adapter_in_folder`): the
    dataset's card would replace its model card (`README.md`) and the dataset's files would land beside its weights.
    The reverse of `data.refuse_training_output_dir`, which keeps training out of a dataset's folder.

    Raises:
        ValueError: naming the folder and the adapter or model files found in it.
    """
    from ..data import model_or_adapter_in_folder

    found = model_or_adapter_in_folder(output_dir)
    if found is not None:
        raise ValueError(
            f"output_dir {output_dir} holds {found}: curation would write its dataset card over the model card "
            "(README.md) and its dataset files beside the weights. Set output_dir to another folder."
        )


# the files of `output_dir` a curation writes over (`merge`: `save_to_disk`'s, and the dataset card)
REPLACED_FILES = ("README.md", "dataset_info.json", "state.json")


def refuse_foreign_output_files(config: CurationConfig) -> None:
    """Refuses a first curation into an `output_dir` holding files it would write over (a README.md, a dataset's
    `data-*.arrow`, `dataset_info.json`, `state.json`) that no curation wrote: a folder of the user's own (a project
    with its README), as `tpo-hf space` refuses a folder it has no record of. A folder is a curation's when the
    manifest in `work_dir` is this folder's (the default `output_dir/_curation`, or one naming it as its output), or
    it holds a curation report (its `_curation` deleted to start over, or another output's work_dir shared).

    Raises:
        ValueError: naming the folder, the files and the ways on (another output_dir, or move the files out).
    """
    output_dir = Path(config.output_dir)
    found = [name for name in REPLACED_FILES if (output_dir / name).exists()]
    found += sorted(path.name for path in output_dir.glob("data-*.arrow")) if output_dir.is_dir() else []
    if not found or (output_dir / REPORT_NAME).exists():
        return
    work_dir = work_dir_of(config)
    manifest_path = work_dir / MANIFEST_NAME
    if manifest_path.exists():
        if _inside(work_dir, output_dir / "_curation"):
            return  # the folder's own record (moved or copied with it)
        try:
            source = json.loads(manifest_path.read_text(encoding="utf-8")).get("source")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            source = None  # a damaged manifest is named by `check_manifest`
        # None: a first run's manifest, written once this check had passed (the run was killed before it finished)
        if not isinstance(source, dict) or source.get("output_dir") == os.path.realpath(output_dir):
            return
    raise ValueError(
        f"output_dir {output_dir} holds {', '.join(found)}, which no curation wrote there (no curation manifest "
        f"records this folder): curation would write its dataset card (README.md) and dataset files over "
        f"{'it' if len(found) == 1 else 'them'}. Set output_dir to a new folder (e.g. {output_dir / 'tpo-curated'}), "
        f"or move {'it' if len(found) == 1 else 'them'} out of {output_dir}."
    )


def run_curation(config: CurationConfig, backends: Backends | None = None) -> CurationResult | None:
    """Runs (or resumes) curation on this process's shards and merges on the main process.

    Returns the result on the main process and `None` on the others. `backends` overrides the models the config
    names (e.g. already loaded ones).

    Raises:
        OutputDirLockedError: another run is writing `output_dir` (or `work_dir`, where it lies outside
            output_dir), or training on the dataset in it (`tpo_hf.locks`).
        OutputDirError: `output_dir` or `work_dir` is a file or not writable.
        CurationWriteError: a write failed on a full disk, a read-only file system or a missing permission, named;
            the shards finished so far are kept, and the same command resumes.
        CurationStopped: stopped with Ctrl-C (a `KeyboardInterrupt`), saying how many shards are kept; the lock
            record is left in `output_dir`, as a killed run's is, so that loading it is refused as unfinished.
    """
    from ..locks import output_dir_lock, refuse_if_read

    refuse_model_output_dir(config.output_dir)
    planned: dict[str, Any] = {}  # the run's shards once planned, for the message of a run stopped with Ctrl-C
    with contextlib.ExitStack() as locks:
        # a run stopped with Ctrl-C leaves its lock record as a killed one does: the dataset there is not the one it
        # was run for, and a training run on it must not read it as finished
        locks.enter_context(output_dir_lock(config.output_dir, "curate", mark_stopped=True))
        refuse_if_read(config.output_dir, "curate")  # a training run reading the dataset there
        work_dir = work_dir_of(config)
        if not _inside(work_dir, Path(config.output_dir)):
            # a work_dir shared by runs into other output folders (a recipe's scratch folder): one writer there too,
            # or two runs of clips named alike would merge each other's shards
            locks.enter_context(output_dir_lock(work_dir, "curate", "work_dir", mark_stopped=True))
        try:
            return _run_curation_locked(config, backends, planned)
        except KeyboardInterrupt as error:
            raise CurationStopped(_stopped_message(config, planned.get("shards"))) from error


class CurationStopped(KeyboardInterrupt):
    """A curation stopped with Ctrl-C; the message says what it kept and how to resume (the CLI prints it)."""


def _stopped_message(config: CurationConfig, shards: list[list[VideoItem]] | None) -> str:
    """What a curation stopped with Ctrl-C kept (`shards`: its plan, None when stopped before it was made) and what
    its output folder holds until the same command is run again."""
    output_dir, work_dir = Path(config.output_dir), work_dir_of(config)
    saved = "the dataset of an earlier run" if (output_dir / "state.json").exists() else "no dataset"
    unfinished = (
        f"Until it finishes, {output_dir} holds {saved}, not this run's, and loading it is refused as an unfinished "
        "curation."
    )
    if shards is None:
        return f"No shard was curated yet: rerun the same command to curate. {unfinished}"
    done = sum(shard_path(work_dir, items).exists() for items in shards)
    return (
        f"{done} of {len(shards)} shard(s) are finished and kept in {work_dir}: rerun the same command to resume "
        f"(only the other shards are curated). {unfinished}"
    )


def _inside(folder: Path, parent: Path) -> bool:
    """Whether `folder` is `parent` or lies under it (real paths)."""
    folder, parent = Path(os.path.realpath(folder)), Path(os.path.realpath(parent))
    return folder == parent or parent in folder.parents


def _run_curation_locked(
    config: CurationConfig, backends: Backends | None, planned: dict[str, Any] | None = None
) -> CurationResult | None:
    from tqdm.auto import tqdm

    from ..locks import check_lock_held, check_writable_folder

    refuse_foreign_output_files(config)  # a README.md of the user's own, before anything is written there
    check_writable_folder(work_dir_of(config), "curate", "work_dir")  # refused before any work, as output_dir is
    config = fitted_to_video_model(config, backends)
    state = _process_state(config)
    items = list_videos(config)
    if not items:
        # a folder is searched for `video_extensions` only: name them, the setting a wrong ending is in
        endings = f" with video_extensions {config.video_extensions}" if config.video_dir is not None else ""
        raise ValueError(f"No videos found in {config.video_dir or config.dataset_name}{endings}.")
    work_dir = work_dir_of(config)
    # refuses a dataset edited by hand since the last run wrote it, before anything is written over it
    written = check_dataset_unedited(work_dir, Path(config.output_dir), config.push_to_hub)
    card = card_hash(Path(config.output_dir)) if written is not None else None  # checked unedited, kept recorded
    key = curation_key(config, model_prompt_formats(config, backends))
    # refuses other settings or prompts, naming them
    manifest = check_manifest(work_dir, key, model_identities(config, legacy_model_identity))
    if (since := unreported_since(manifest)) is not None:
        # the last run wrote its dataset but was killed before its summary: what it had not reported is reported now
        manifest = {**manifest, "videos": since.get("videos"), "source": since.get("source")}
    previous = manifest.get("videos") if manifest else None  # the videos of the last finished run
    inputs = shard_inputs(items)
    changes = VideoChanges.between(previous, inputs)
    # refuses a work_dir whose shards another output was made from, that this run's videos would overwrite
    source_change = check_source(manifest, shard_source(config), changes, work_dir)
    accepted = accepted_settings(key, manifest)  # this run's key, and those of shards kept across a batching change
    shards = plan_shards(work_dir, items, config, manifest, accepted)  # on every rank before anybody writes
    if planned is not None:
        planned["shards"] = shards
    if state.is_main_process:
        remove_leftovers(work_dir, Path(config.output_dir))
        changes.log(logger, source_change, config.dataset_name)
    state.wait_for_everyone()  # every rank checked the manifest (and nobody writes yet) before the main process goes on
    if state.is_main_process:
        with named_write_errors(work_dir / MANIFEST_NAME, work_dir):
            source = (manifest or {}).get("source")
            write_manifest(work_dir, key, previous, source, earlier_keys(manifest), written, card)

    settings = key_hash(key)
    mine = [i for i in range(len(shards)) if i % state.num_processes == state.process_index]
    todo = [i for i in mine if not _reusable(work_dir, shards[i], config, accepted)]
    if todo and backends is None:
        backends = build_backends(config, device=str(state.device))
    bar = tqdm(
        total=len(mine),
        initial=len(mine) - len(todo),
        desc=f"curate [rank {state.process_index}]",
        unit="shard",
        disable=not config.progress,
        position=state.process_index,
    )
    # stop a run whose question writer's or judge's replies none parse
    watches = [ReplyWatch(QUESTION_REPLIES), ReplyWatch(JUDGE_REPLIES)]
    held: list[tuple[list[VideoItem], dict[str, Any]]] = []  # shards not written while a role's replies none parsed
    for index in todo:
        result = curate_shard(shards[index], backends, config)
        result["inputs"] = shard_inputs(shards[index])
        result["settings"] = settings
        result["process_index"] = state.process_index
        held.append((shards[index], result))
        for watch in watches:
            watch.add(result["records"])
            watch.check(config)
        while held and not any(watch.undecided for watch in watches):
            shard_items, finished = held.pop(0)
            check_lock_held(config.output_dir)  # not into a folder removed under this run (perhaps another run's now)
            check_lock_held(work_dir)
            with named_write_errors(shard_path(work_dir, shard_items), work_dir):
                atomic_write_json(shard_path(work_dir, shard_items), finished)
        bar.update(1)
    for watch in watches:
        watch.check(config, finished=True)
    bar.close()
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    loaded = [read_shard(shard_path(work_dir, shard)) for shard in shards]
    if any(shard is None for shard in loaded):  # written moments ago: another writer, or the disk, lost it
        lost = [str(shard_path(work_dir, s)) for s, shard in zip(shards, loaded, strict=True) if shard is None]
        raise RuntimeError(f"Curation shard file(s) missing or damaged right after they were written: {lost}.")
    # what the next run is compared to: read again, as a video URL's version is known once it is downloaded
    inputs = shard_inputs(items)
    for shard_items, shard in zip(shards, loaded, strict=True):
        # each shard merged must be this run's: another writer into work_dir (a run on another host, where the lock
        # cannot reach) or a video edited during the run would otherwise put other pairs under these videos' names
        reason = shard_is_current(shard, shard_items, config, accepted, inputs)
        if reason is not None:  # a refusal named on one line, as the manifest's are
            raise ValueError(
                f"Curation shard {shard_path(work_dir, shard_items)} no longer matches this run ({reason}): another "
                f"run wrote it into work_dir {work_dir} (with other videos or settings), or its video changed during "
                "the run. Give each run its own work_dir, then rerun the same command: the other finished shards "
                "are kept."
            )
    check_lock_held(config.output_dir)
    if written is not None:  # a merge killed midway leaves data files that no record names, not a refused edit
        with named_write_errors(work_dir / MANIFEST_NAME, work_dir):
            write_manifest(work_dir, key, previous, (manifest or {}).get("source"), earlier_keys(manifest))
    with named_write_errors(Path(config.output_dir), work_dir):  # the dataset, its videos, report and card
        earlier = {
            key_hash(old): {name: old.get(name) for name in BATCHING_FIELDS if old.get(name) != key.get(name)}
            for old in earlier_keys(manifest)
            if key_hash(old) != settings
        }
        result = merge(config, items, loaded, changes, earlier)
    with named_write_errors(work_dir / MANIFEST_NAME, work_dir):
        # what the next run checks the folder's dataset against (`check_dataset_unedited`)
        written, card = dataset_files(Path(config.output_dir)), card_hash(Path(config.output_dir))
        # until the summary is printed, a rerun after a kill compares with what this run's report did
        unreported = {"videos": previous, "source": (manifest or {}).get("source")}
        write_manifest(work_dir, key, inputs, shard_source(config), earlier_keys(manifest), written, card, unreported)
    print(summary_table(result.report))
    with named_write_errors(work_dir / MANIFEST_NAME, work_dir):
        write_manifest(work_dir, key, inputs, shard_source(config), earlier_keys(manifest), written, card)
    if warning := truncation_warning(result.report):
        logger.warning(warning)
    if not len(result.dataset):
        # the report and the summary above hold the same reason; a run that made nothing must not exit 0
        raise NoPairsError(
            f"Curation produced no pair from {len(items)} video(s): {result.report['no_pairs_reason']}. "
            f"See {Path(config.output_dir) / REPORT_NAME}."
        )
    return result
