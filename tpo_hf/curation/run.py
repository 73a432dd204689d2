"""Stage 2 of the flow (curation): the run. Videos in, TPO preference pairs out; resumable and split across processes.

    result = run_curation(config)                # shards -> merged, mixed, sized `datasets.Dataset` on disk

Work is cut into shards of `videos_per_shard` videos, fixed by the sorted video list. A shard is the unit of
batching and of resume: it is computed from scratch (every random choice seeded from the video ids, never from
global RNG state), then written atomically, so a run killed at any moment and started again redoes only the shards
that were not written and ends with exactly the dataset of an uninterrupted run (`storage`). Under
`accelerate launch`, shard `i` goes to process `i % num_processes`; the main process merges after all finish.

One shard goes through the stages in order, each over the shard's `Candidate`s: `decode` -> `caption` -> `ask` ->
`answer` -> `judge` -> records. The merge then mixes and sizes the kept pairs (`mixing`), writes the dataset
(`records`), the report (`report`) and the dataset card (`dataset_card`).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .answer import answer
from .ask import ask
from .backends import TEMPLATE_QUESTIONS, Backends, build_backends
from .caption import caption
from .config import CurationConfig
from .decode import decode_videos
from .inputs import VideoItem, list_videos, make_shards
from .judge import judge
from .mixing import mix_and_size
from .records import build_dataset, place_videos
from .report import REPORT_NAME, CurationReport, summary_table
from .segments import video_seed
from .storage import (
    SHARD_FORMAT_VERSION,
    atomic_write_json,
    check_manifest,
    config_fingerprint,
    remove_leftovers,
    save_dataset,
    shard_inputs,
    shard_is_current,
    shard_path,
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


def merge(config: CurationConfig, items: list[VideoItem], shards: list[dict[str, Any]]) -> CurationResult:
    """Merges the shards, mixes and sizes the pairs, saves the dataset, the card and the report."""
    from .dataset_card import render_dataset_card

    kept = [r for shard in shards for r in shard["records"] if r["kept"]]
    final, mix_counts = mix_and_size(kept, config)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    video_paths = place_videos(items, {r["video"] for r in final}, output_dir, config.copy_videos)
    models = role_models(config)
    dataset = build_dataset(final, video_paths, models)
    report = CurationReport.from_run(config, items, shards, final, mix_counts, models).to_dict()
    save_dataset(dataset, output_dir)
    atomic_write_json(output_dir / REPORT_NAME, report)
    render_dataset_card(dataset, report, config).save(str(output_dir / "README.md"))
    return CurationResult(dataset=dataset, output_dir=str(output_dir), report=report)


def _reusable(work_dir: Path, index: int, items: list[VideoItem], config: CurationConfig) -> bool:
    """Whether shard `index` on disk was made from these very video files under these settings (else redone)."""
    path = shard_path(work_dir, index)
    if not path.exists():
        return False
    reason = shard_is_current(json.loads(path.read_text()), items, config)
    if reason is not None:
        logger.warning("Recomputing shard %d (%s): %s.", index, ", ".join(i.video_id for i in items), reason)
    return reason is None


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


def fit_video_token_budget(config: CurationConfig, backends: Backends | None = None) -> None:
    """Applies `max_video_tokens`: `num_frames` and `max_pixels` become what `VideoPreferenceProcessor` (the function
    training and evaluation use) fits to the budget for the video model's family and processor."""
    if config.max_video_tokens is None:
        return
    from ..processing import VideoPreferenceProcessor

    loaded = getattr(getattr(backends, "video", None), "processor", None)
    settings = dict(
        num_frames=config.num_frames, max_pixels=config.max_pixels, max_video_tokens=config.max_video_tokens
    )
    if isinstance(loaded, VideoPreferenceProcessor):
        fitted = VideoPreferenceProcessor(loaded.processor, loaded.family, **settings)
        loaded.max_pixels, loaded.max_video_tokens = fitted.max_pixels, fitted.max_video_tokens
    else:
        model_id = config.role_settings("video")[1]
        try:
            fitted = VideoPreferenceProcessor.from_pretrained(model_id, **settings)
        except (OSError, ValueError) as error:
            raise ValueError(
                f"max_video_tokens: cannot load the processor of video model {model_id!r} to count its video tokens "
                f"({error})"
            ) from error
    config.num_frames, config.max_pixels = fitted.num_frames, fitted.max_pixels
    if config.sparse_num_frames >= config.num_frames:
        raise ValueError(
            f"max_video_tokens={config.max_video_tokens} fits {config.num_frames} frames, not more than "
            f"sparse_num_frames={config.sparse_num_frames}; raise the budget or lower sparse_num_frames."
        )


def run_curation(config: CurationConfig, backends: Backends | None = None) -> CurationResult | None:
    """Runs (or resumes) curation on this process's shards and merges on the main process.

    Returns the result on the main process and `None` on the others. `backends` overrides the models the config
    names (e.g. already loaded ones).
    """
    from tqdm.auto import tqdm

    fit_video_token_budget(config, backends)
    state = _process_state(config)
    items = list_videos(config)
    if not items:
        raise ValueError(f"No videos found in {config.video_dir or config.dataset_name}.")
    shards = make_shards(items, config.videos_per_shard)
    work_dir = work_dir_of(config)
    fingerprint = config_fingerprint(config, items)
    check_manifest(work_dir, fingerprint, config, items)
    if state.is_main_process:
        remove_leftovers(work_dir, Path(config.output_dir))
    state.wait_for_everyone()  # every rank checked the manifest (and nobody writes yet) before the main process goes on
    if state.is_main_process:
        write_manifest(work_dir, fingerprint, config, shards)

    mine = [i for i in range(len(shards)) if i % state.num_processes == state.process_index]
    todo = [i for i in mine if not _reusable(work_dir, i, shards[i], config)]
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
    for index in todo:
        result = curate_shard(shards[index], backends, config)
        result["inputs"] = shard_inputs(shards[index])
        result["process_index"] = state.process_index
        atomic_write_json(shard_path(work_dir, index), result)
        bar.update(1)
    bar.close()
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    loaded = [json.loads(shard_path(work_dir, i).read_text()) for i in range(len(shards))]
    result = merge(config, items, loaded)
    print(summary_table(result.report))
    if not len(result.dataset):
        # the report and the summary above hold the same reason; a run that made nothing must not exit 0
        raise NoPairsError(
            f"Curation produced no pair from {len(items)} video(s): {result.report['no_pairs_reason']}. "
            f"See {Path(config.output_dir) / REPORT_NAME}."
        )
    return result
