"""Stage 2 of the flow (curation): which segment a localized query is about, and which frames each side sees.

TPO contrasts two views of the same video for every query:

- localized: the preferred answer sees only the frames inside `[segment_start, segment_end)`; the dis-preferred
  answer sees the same video with that window cut out (`VideoView(exclude=...)`), so it cannot know what happens
  there;
- comprehensive: the preferred answer sees dense frames of the whole video; the dis-preferred one a sparse,
  down-sampled view.

Segments are drawn with a `random.Random` seeded from the video id (not from global RNG state), so a resumed or
distributed run picks exactly the segments an uninterrupted single-process run picks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..video import VideoView
from ..video_settings import VideoSettings


def video_seed(video_id: str, seed: int, purpose: str = "") -> int:
    """A 64-bit seed derived from the run seed, the video id and a purpose tag (stable across runs and processes)."""
    digest = hashlib.sha256(f"{seed}\x00{video_id}\x00{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def video_rng(video_id: str, seed: int, purpose: str = "") -> random.Random:
    """A private random generator for one video (see `video_seed`)."""
    return random.Random(video_seed(video_id, seed, purpose))


# `SegmentSpec` field -> the `CurationConfig` field (and run report key) that sets it
SEGMENT_FIELDS = {
    "seconds": "segment_seconds",
    "fraction": "segment_fraction",
    "min_seconds": "segment_min_seconds",
    "max_seconds": "segment_max_seconds",
    "edge_margin": "segment_edge_margin",
}


@dataclass(frozen=True)
class SegmentSpec:
    """How long a localized segment is and how far it stays from the edges of the video.

    Args:
        seconds: segment length in seconds (takes precedence over `fraction`).
        fraction: segment length as a fraction of the video duration.
        min_seconds, max_seconds: bounds on the length, whichever of the above sets it.
        edge_margin: fraction of the duration kept free at each end, so the segment is never the very first or
            last moment (an excluded view must keep frames on both sides to make the contrast informative).
    """

    seconds: float | None = None
    fraction: float | None = 0.25
    min_seconds: float = 1.0
    max_seconds: float | None = None
    edge_margin: float = 0.05

    def __post_init__(self):
        if self.seconds is None and self.fraction is None:
            raise ValueError("Set `segment_seconds` or `segment_fraction` to choose localized segments.")
        if self.fraction is not None and not 0 < self.fraction < 1:
            # a whole-video segment would leave the rejected view (the video without it) nothing to show
            raise ValueError(f"segment_fraction={self.fraction} must lie strictly between 0 and 1.")
        if self.seconds is not None and self.seconds <= 0:
            raise ValueError(f"segment_seconds={self.seconds} must be positive.")
        if not 0 <= self.edge_margin < 0.5:
            raise ValueError(f"segment_edge_margin={self.edge_margin} must lie in [0, 0.5).")
        if self.max_seconds is not None and self.max_seconds < self.min_seconds:
            raise ValueError(
                f"segment_max_seconds={self.max_seconds} is below segment_min_seconds={self.min_seconds}."
            )

    @classmethod
    def of(cls, source: Any) -> SegmentSpec:
        """The segment settings of `source`: a `CurationConfig`, or a mapping by the same names (`segment_seconds`,
        ...; the run report's `segments`). `CurationConfig` builds it once to check its settings, as a run uses them."""
        values = (
            source
            if isinstance(source, Mapping)
            else {name: getattr(source, name) for name in SEGMENT_FIELDS.values()}
        )
        return cls(**{attr: values[name] for attr, name in SEGMENT_FIELDS.items() if name in values})

    def to_dict(self) -> dict[str, float | None]:
        """The settings by their config names, as the run report records them; `segment_fraction` is None when
        `segment_seconds` sets the length (the fraction then plays no part)."""
        values = {name: getattr(self, attr) for attr, name in SEGMENT_FIELDS.items()}
        if self.seconds is not None:
            values["segment_fraction"] = None
        return values

    def describe(self) -> str:
        """The segment length in words, for cards: "2 s long, 5% of the duration kept free at each end"."""
        if self.seconds is not None:
            text = f"{self.length(0.0):g} s long"  # the length, bounded by min/max_seconds, is the same on every video
        else:
            text = f"{self.fraction * 100:g}% of the video's duration"
            if self.min_seconds > 0:
                text += f", at least {self.min_seconds:g} s"
            if self.max_seconds is not None:
                text += f", at most {self.max_seconds:g} s"
        if self.edge_margin > 0:
            text += f", {self.edge_margin * 100:g}% of the duration kept free at each end"
        return text

    def length(self, duration: float) -> float:
        """Segment length for a video of `duration` seconds."""
        length = self.seconds if self.seconds is not None else self.fraction * duration
        length = max(length, self.min_seconds)
        if self.max_seconds is not None:
            length = min(length, self.max_seconds)
        return length


def choose_segments(duration: float, spec: SegmentSpec, count: int, rng: random.Random) -> list[tuple[float, float]]:
    """Draws `count` segments `(start, end)` inside the margins of a video of `duration` seconds.

    Returns fewer (possibly none) when the video is too short for a segment of the asked length inside the margins.
    Segments are distinct; times are rounded to milliseconds so they survive JSON round trips unchanged.
    """
    margin = spec.edge_margin * duration
    length = spec.length(duration)
    low, high = margin, duration - margin - length
    if high < low or length <= 0:
        return []
    segments: list[tuple[float, float]] = []
    for _ in range(count * 4):  # a few extra draws to avoid duplicates on short videos
        if len(segments) == count:
            break
        start = round(rng.uniform(low, high), 3)
        end = round(min(start + length, duration - margin), 3)
        if end > start and (start, end) not in segments:
            segments.append((start, end))
    return segments


def localized_views(segment: tuple[float, float], settings: VideoSettings) -> dict[str, VideoView]:
    """Preferred view: frames inside the segment only; dis-preferred view: the whole video minus the segment. Both
    are sampled with `settings` (frames, or a rate, and their cap)."""
    start, end = segment
    whole = settings.view()
    return {
        "preferred": dataclasses.replace(whole, start=start, end=end),
        "rejected": dataclasses.replace(whole, exclude=(start, end)),
    }


def sparse_frame_count(dense_frames: int, sparse_num_frames: int, sparse_frame_fraction: float | None) -> int:
    """Frames of the sparse view of a video whose dense view shows `dense_frames` distinct frames: `sparse_num_frames`,
    capped at `sparse_frame_fraction` of the dense frames (at least 1) when that is set. Without the cap a video of
    at most `sparse_num_frames` frames gets identical views and no comprehensive pair, so short videos would be
    missing from the comprehensive side of the training mix."""
    if sparse_frame_fraction is None:
        return sparse_num_frames
    return min(sparse_num_frames, max(1, math.floor(dense_frames * sparse_frame_fraction)))


def comprehensive_views(settings: VideoSettings, sparse_num_frames: int) -> dict[str, VideoView]:
    """Preferred view: the whole video sampled with `settings` (dense); dis-preferred: `sparse_num_frames` frames of
    it, under the same `max_frames` cap. `CurationConfig` checks that `sparse_num_frames` is below `num_frames` and
    `max_frames`; a dense view sampled by rate can still have no more frames than the sparse one on a short video,
    which `sparse_not_sparser` tells (such a video makes no comprehensive pair)."""
    return {
        "preferred": settings.view(),
        "rejected": VideoView(num_frames=sparse_num_frames, max_frames=settings.max_frames),
    }


def sparse_not_sparser(preferred_frames: list[int], rejected_frames: list[int]) -> bool:
    """Whether the dis-preferred "sparse" comprehensive view shows as many distinct frames as the dense one, or more
    (but not the same ones): as a pair it would prefer the answer from fewer frames, the opposite of TPO's contrast."""
    preferred, rejected = set(preferred_frames), set(rejected_frames)
    return preferred != rejected and len(rejected) >= len(preferred)
