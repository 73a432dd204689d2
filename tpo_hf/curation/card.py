"""Stage 5 of the flow (publish), for data: the dataset card and the one-commit push to the Hub.

The card is rendered from `hub_cards/dataset_card.md` with `huggingface_hub.DatasetCard.from_template`; every number
in it comes from the run report, so it always matches the data. `push_dataset` uploads the parquet data, the card
and (optionally) the videos under `videos/` in a single commit, so the repository never shows a half-pushed state.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from .prompts import CAPTION_PROMPTS, JUDGE_PROMPT, QUESTION_PROMPT


def _size_category(count: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if count < limit:
            return name
    return "n>1M"


def render_dataset_card(
    dataset: Any, report: dict[str, Any], config: Any, repo_id: str | None = None, videos_included: bool = False
):
    """A `DatasetCard` for `dataset` with the counts, filter pass rates, prompts and models of `report`."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from hub_cards import template_path

    pretty_name = config.pretty_name or "TPO video preference pairs"
    card_data = DatasetCardData(
        pretty_name=pretty_name,
        license=config.license,
        language=["en"],
        task_categories=["video-text-to-text"],
        tags=["tpo", "dpo", "video", "preference", "tpo-hf"],
        size_categories=[_size_category(len(dataset))],
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
    )
    final = report["final"]
    return DatasetCard.from_template(
        card_data,
        template_path=str(template_path("dataset_card.md")),
        pretty_name=pretty_name,
        repo_id=repo_id,
        num_videos=report["videos"]["curated"],
        num_skipped=len(report["videos"]["skipped"]),
        num_frames=report["frames"]["num_frames"],
        sparse_num_frames=report["frames"]["sparse_num_frames"],
        total=final["total"],
        by_granularity=final["by_granularity"],
        by_task_type=final["by_task_type"],
        candidates=report["candidates"]["total"],
        kept_before_mix=report["kept_before_mix"],
        mix_ratio=report["mix"]["ratio"],
        target_size=report["mix"]["target_size"],
        questions=report["questions"],
        judge=report["judge"],
        drop_reasons=report["drop_reasons"],
        models=report["models"],
        caption_prompt_localized=CAPTION_PROMPTS["localized"],
        caption_prompt_comprehensive=CAPTION_PROMPTS["comprehensive"],
        question_prompt=QUESTION_PROMPT,
        judge_prompt=JUDGE_PROMPT,
        videos_included=videos_included,
        license=config.license,
    )


def push_dataset(
    output_dir: str | os.PathLike,
    repo_id: str,
    dataset: Any,
    report: dict[str, Any],
    config: Any,
    upload_videos: bool = False,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
) -> Any:
    """Pushes the data (`data/train-00000-of-00001.parquet`), the card and optionally `videos/` in ONE commit.

    Returns the `CommitInfo`. The video column already holds `videos/<id>` paths, so `load_dataset(repo_id)` plus a
    snapshot of the repository is ready for `tpo-hf train` with `video_root` set to the snapshot folder.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=token, endpoint=endpoint)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    buffer = io.BytesIO()
    dataset.to_parquet(buffer)
    card = render_dataset_card(dataset, report, config, repo_id=repo_id, videos_included=upload_videos)
    operations = [
        CommitOperationAdd("data/train-00000-of-00001.parquet", buffer.getvalue()),
        CommitOperationAdd("README.md", str(card).encode()),
    ]
    if upload_videos:
        output_dir = Path(output_dir)
        for relative in sorted(set(dataset["video"])):
            local = output_dir / relative
            if not relative.startswith("videos/") or not local.is_file():
                raise FileNotFoundError(
                    f"Video {relative!r} is not under {output_dir}/videos; run with copy_videos=True to upload videos."
                )
            operations.append(CommitOperationAdd(relative, str(local)))
    return api.create_commit(
        repo_id, operations, commit_message=f"Add TPO preference pairs ({len(dataset)} pairs)", repo_type="dataset"
    )
