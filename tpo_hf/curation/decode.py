"""Stage 2 of the flow (curation): decode each video's views once and make its candidates.

For every video of a shard: draw the localized segments and the task types (from a generator seeded by the video
id, so a resumed or distributed run draws the same), decode every view (segment, video without the segment, dense,
sparse) in one pass with `VideoFile.load_views`, and make one `Candidate` per query. A video that cannot be decoded
is skipped (listed in the report) or raises, per `on_video_error`.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from ..video import VideoFile, VideoLoadError
from ..video_settings import VideoSettings
from .candidate import SIDES, Candidate, DecodedViews
from .config import CurationConfig
from .inputs import ROW_WITHOUT_QUESTION, VideoItem
from .segments import (
    SegmentSpec,
    choose_segments,
    comprehensive_views,
    localized_views,
    sparse_frame_count,
    sparse_not_sparser,
    video_rng,
)

# drop reason of a comprehensive candidate whose sparse view has no fewer frames than its dense view
SPARSE_NOT_SPARSER = "sparse_view_not_sparser"


def segment_spec(config: CurationConfig) -> SegmentSpec:
    """The segment settings of `config`."""
    return SegmentSpec.of(config)


def decode_videos(
    items: list[VideoItem], config: CurationConfig, stats: Counter
) -> tuple[DecodedViews, list[Candidate], list[dict[str, str]]]:
    """Decodes the views of `items`; returns (views, candidates in a fixed order, skipped videos with reasons)."""
    spec = segment_spec(config)
    settings = VideoSettings.of(config)
    views: DecodedViews = {}
    candidates: list[Candidate] = []
    skipped: list[dict[str, str]] = []
    for item in items:
        if item.rows_without_question:  # counted whether or not the video decodes
            stats[ROW_WITHOUT_QUESTION] += item.rows_without_question
        started = time.perf_counter()
        try:
            video = VideoFile(item.path)
            rng = video_rng(item.video_id, config.seed)
            segments = choose_segments(video.duration, spec, config.localized_per_video, rng)
            wanted = {}
            for index, segment in enumerate(segments):
                for side, view in localized_views(segment, settings).items():
                    wanted[f"localized{index}/{side}"] = view
            dense_frames = np.unique(video.frame_indices(settings.view())).size
            sparse = sparse_frame_count(dense_frames, config.sparse_num_frames, config.sparse_frame_fraction)
            for side, view in comprehensive_views(settings, sparse).items():
                wanted[f"comprehensive/{side}"] = view
            decoded = video.load_views(wanted)
            stats["frames_decoded"] += video.frames_decoded
            video.clear_cache()
        except VideoLoadError as error:
            if config.on_video_error == "raise":
                raise
            skipped.append({"video": item.video_id, "reason": str(error)})
            continue
        finally:
            stats["seconds_decode"] += time.perf_counter() - started
        stats["videos_ok"] += 1
        views[item.video_id] = decoded
        if len(segments) < config.localized_per_video:
            stats["segments_missing_short_video"] += config.localized_per_video - len(segments)
        made = _video_candidates(item, segments, rng, config)
        for candidate in made:
            # e.g. a 1-frame video: dense and sparse views show the same frames, so the two answers would come from
            # identical inputs and the pair would teach nothing about time
            preferred, rejected = (list(candidate.view(views, side)[1]["frames_indices"]) for side in SIDES)
            if set(preferred) == set(rejected):  # no pair, but its answer may still anchor what the model gets right
                candidate.cannot_pair("identical_views", config.wants_anchors)
            elif candidate.granularity == "comprehensive" and sparse_not_sparser(preferred, rejected):
                # e.g. a dense view sampled by rate on a short video: the pair would be inverted, never made
                candidate.drop_reason = SPARSE_NOT_SPARSER
        candidates += made
    return views, candidates, skipped


def _video_candidates(item: VideoItem, segments: list, rng, config: CurationConfig) -> list[Candidate]:
    # The order of the draws from `rng` is part of the output: segments, then localized, then comprehensive types.
    candidates = [
        Candidate(
            item.video_id,
            "localized",
            f"localized{index}",
            rng.choice(config.localized_task_types),
            segment=segment,
        )
        for index, segment in enumerate(segments)
        if config.localized_task_types  # empty: no localized pairs (the mix gives them no share)
    ]
    caption_source = "annotation" if item.caption else "generated"
    if item.questions:
        for question, answer in item.questions:
            candidates.append(
                Candidate(
                    item.video_id,
                    "comprehensive",
                    "comprehensive",
                    "annotation",
                    caption=item.caption,
                    caption_source=caption_source,
                    question=question,
                    reference_answer=answer,
                    question_source="annotation",
                )
            )
    elif config.comprehensive_task_types:  # empty: no generated whole-video questions (the mix gives them no share)
        for _ in range(config.comprehensive_per_video):
            candidates.append(
                Candidate(
                    item.video_id,
                    "comprehensive",
                    "comprehensive",
                    rng.choice(config.comprehensive_task_types),
                    caption=item.caption,
                    caption_source=caption_source,
                )
            )
    return candidates
