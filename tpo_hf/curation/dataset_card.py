"""Stage 2 of the flow (curation): the dataset card of a curated TPO dataset, written beside it and pushed with it.

The card is rendered from `hub_cards/dataset_card.md` with `huggingface_hub.DatasetCard.from_template`; every number
in it comes from the curation report, so it always matches the data. `tpo_hf.hub.push.push_dataset` uploads it with
the data in one commit.
"""

from __future__ import annotations

from typing import Any

from ..paper import TPO_TAG
from ..templates import template_path
from ..video_settings import VideoSettings, VideoSettingsError
from . import prompts
from .segments import SegmentSpec


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

    pretty_name = config.pretty_name or "TPO video preference pairs"
    card_data = DatasetCardData(
        pretty_name=pretty_name,
        license=config.license,
        language=["en"],
        task_categories=["video-text-to-text"],
        tags=[TPO_TAG, "tpo", "dpo", "video", "preference", "tpo-hf"],
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
        videos_added=len(report["videos"].get("added", [])),
        videos_removed=len(report["videos"].get("removed", [])),
        videos_changed=len(report["videos"].get("changed", [])),
        earlier_batching=report.get("earlier_batching", []),
        num_frames=report["frames"]["num_frames"],
        dense_sampling=_dense_sampling(report["frames"]),
        sparse_num_frames=report["frames"]["sparse_num_frames"],
        max_video_tokens=report["frames"].get("max_video_tokens"),
        max_pixels=report["frames"].get("max_pixels"),
        segments=_segments(report),
        total=final["total"],
        by_granularity=final["by_granularity"],
        by_task_type=final["by_task_type"],
        candidates=report["candidates"]["total"],
        kept_before_mix=report["kept_before_mix"],
        mix_ratio=report["mix"]["ratio"],
        target_size=report["mix"]["target_size"],
        option_balance_dropped=report["mix"].get("dropped_by_option_balance", 0),
        anchors=final.get("anchors", 0),
        anchors_before_mix=report.get("anchors_before_mix", 0),
        anchor_ratio=config.anchor_ratio,
        questions=report["questions"],
        judge=report["judge"],
        drop_reasons=report["drop_reasons"],
        models=report["models"],
        # the texts as the run read them (`tpo_hf.curation.prompts`, looked up now: an edited prompt shows)
        caption_prompt_localized=prompts.CAPTION_PROMPTS["localized"],
        caption_prompt_comprehensive=prompts.CAPTION_PROMPTS["comprehensive"],
        question_prompt=prompts.QUESTION_PROMPT,
        judge_prompt=prompts.JUDGE_PROMPT,
        videos_included=videos_included,
        license=config.license,
    )


def _segments(report: dict[str, Any]) -> str | None:
    """The localized segments' settings in words, from the report (None in a report written before they were
    recorded)."""
    return SegmentSpec.of(report["segments"]).describe() if report.get("segments") else None


def _dense_sampling(frames: dict[str, Any]) -> str:
    """The dense view's sampling in words, from the report's video settings."""
    try:
        return VideoSettings.of(frames).describe()
    except VideoSettingsError:  # a report written before curation sampled by rate: num_frames None was every frame
        return "every frame"
