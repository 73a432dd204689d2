"""The video settings, owned in one place: how many frames each video gives, at what resolution, within which
video-token budget.

`VideoSettings` holds the fields with their one default and their one validation. The configs of every stage inherit
it (`TPOConfig`, `CurationConfig`, `EvalConfig`), so `--num_frames`, `--max_video_tokens`, ... are flags of every
command and keys of every YAML file, with the same meaning. `VideoPreferenceProcessor` holds the copy fitted to its
family and processor (`fitted`), which is what curation, training and evaluation sample with, what the lmms-eval
plugin and the Space use, and what the model card records.

    settings = VideoSettings(num_frames=64, max_video_tokens=16384)
    fitted = settings.fitted(hf_processor, family)    # a new object; `settings` is unchanged
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_NUM_FRAMES = 32

_POSITIVE_INTEGERS = ("num_frames", "max_frames", "max_pixels", "max_video_tokens")


class VideoSettingsError(ValueError):
    """A video setting out of range or a combination that cannot sample a video; the message names the field."""


@dataclass
class VideoSettings:
    """How every video is sampled and encoded: the same fields in curation, training, evaluation and the demo.

    Args:
        num_frames: frames sampled uniformly from each video (views of a video, in curation). `None` samples at
            `video_fps` instead.
        video_fps: sampling rate in frames per second, used when `num_frames` is `None` (set with a frame count, it
            would be ignored: refused).
        max_frames: cap on the frames per video, whichever of the two above is used.
        max_pixels: per-frame pixel budget for families that resize dynamically (Qwen); `None` keeps the
            processor's own setting.
        max_video_tokens: video-token budget per prompt: the per-frame resolution (Qwen) and, where even the smallest
            frames do not fit, the frame count are fitted so that each video fits (`fitted`).
    """

    num_frames: int | None = field(
        default=DEFAULT_NUM_FRAMES,
        metadata={"help": "Frames sampled uniformly from each video (None: sample at `video_fps`)."},
    )
    video_fps: float | None = field(
        default=None, metadata={"help": "Sampling rate (frames per second) when `num_frames` is None."}
    )
    max_frames: int | None = field(default=None, metadata={"help": "Cap on the number of frames per video."})
    max_pixels: int | None = field(
        default=None, metadata={"help": "Per-frame pixel budget for dynamically resizing families (Qwen)."}
    )
    max_video_tokens: int | None = field(
        default=None, metadata={"help": "Video-token budget per prompt: resolution, then frames, are fitted to it."}
    )

    def __post_init__(self):
        self.check_video_settings()
        # the configs that inherit these fields go on with their own base classes (TRL's DPOConfig, ...)
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    def check_video_settings(self) -> None:
        """The one validation of the video fields (every config and the processor run it)."""
        owner = type(self).__name__
        for name in _POSITIVE_INTEGERS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise VideoSettingsError(f"{owner}: `{name}` must be a positive integer or None, got {value!r}.")
        if self.video_fps is not None and (
            isinstance(self.video_fps, bool) or not isinstance(self.video_fps, (int, float)) or not self.video_fps > 0
        ):
            raise VideoSettingsError(
                f"{owner}: `video_fps` must be a positive number or None, got {self.video_fps!r}."
            )
        if self.num_frames is None and self.video_fps is None:
            raise VideoSettingsError(
                f"{owner}: set `num_frames` or `video_fps`: every frame of a long video is too many to sample."
            )
        if self.num_frames is not None and self.video_fps is not None:
            # num_frames takes precedence: a rate given with it would be recorded (card, tpo_video_config.json) but
            # never sampled with; num_frames has a default, so setting video_fps alone lands here too
            raise VideoSettingsError(
                f"{owner}: video_fps={self.video_fps:g} is ignored: num_frames={self.num_frames} takes precedence; "
                "set num_frames: null (None) to sample by rate, or leave video_fps out."
            )
        if self.max_video_tokens is not None and self.num_frames is None and self.max_frames is None:
            raise VideoSettingsError(
                f"{owner}: `max_video_tokens` needs `num_frames`, or `max_frames` with `video_fps`, to count frames."
            )

    def check_fixed_frame_count(self) -> None:
        """Refuses a `max_frames` cap below `num_frames`, for the stages that record `num_frames` as what each video
        gave (training's model card and `tpo_video_config.json`, evaluation's results): the cap would sample fewer
        frames than recorded. Curation keeps the cap (it bounds its views); `max_frames` with `video_fps` is the cap's
        own use."""
        if self.num_frames is not None and self.max_frames is not None and self.max_frames < self.num_frames:
            raise VideoSettingsError(
                f"{type(self).__name__}: `max_frames` ({self.max_frames}) is below `num_frames` ({self.num_frames}): "
                f"every video would give {self.max_frames} frames while what the run records (saved settings, model "
                f"card, results) says {self.num_frames}; `max_frames` only caps sampling by rate (`video_fps`). Set "
                f"`num_frames` {self.max_frames}, or leave `max_frames` out."
            )

    @classmethod
    def of(cls, source: Any) -> VideoSettings:
        """The video settings of `source` (a config, a processor, a mapping), as a plain `VideoSettings`."""
        if isinstance(source, dict):
            return cls(**{f.name: source[f.name] for f in dataclasses.fields(cls) if f.name in source})
        return cls(**{f.name: getattr(source, f.name) for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        """The fields and their values (what `tpo_video_config.json` and the model card record)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(VideoSettings)}

    def describe(self) -> str:
        """How a video is sampled, in words for cards and logs: "32 frames", "1 frame per second, at most 64"."""
        if self.num_frames is not None:
            text = f"{self.num_frames} frame{'s' if self.num_frames != 1 else ''}"
        else:
            text = f"{self.video_fps:g} frame{'s' if self.video_fps != 1 else ''} per second"
        if self.max_frames is not None and (self.num_frames is None or self.max_frames < self.num_frames):
            text += f", at most {self.max_frames}"
        return text

    def view(self) -> Any:
        """How to sample a whole video with these settings."""
        from .video import VideoView

        return VideoView(num_frames=self.num_frames, fps=self.video_fps, max_frames=self.max_frames)

    def fitted(self, processor: Any, family: Any) -> VideoSettings:
        """A copy with `max_video_tokens` applied for `family` and its transformers `processor`: the per-frame pixel
        budget (Qwen) and, where even the smallest frames do not fit, the frames (`num_frames`, or `max_frames` with
        `video_fps`). Without a budget the copy equals these settings. Fitting a fitted copy changes nothing."""
        plain = VideoSettings.of(self)
        if plain.max_pixels is not None and family.pixel_budget_kwargs is None:
            # a fixed-size family resizes every frame to its own size: a pixel budget would be recorded (card,
            # tpo_video_config.json) but never applied
            logger.warning(
                "max_pixels=%d is ignored: the %s family resizes every frame to a fixed size; it is left out of the "
                "recorded settings.",
                plain.max_pixels,
                family.name,
            )
            plain = dataclasses.replace(plain, max_pixels=None)
        if plain.max_pixels is not None:
            _check_max_pixels_reachable(plain.max_pixels, processor, family)
        if plain.max_video_tokens is None:
            return plain
        if family.video_token_budget is None:
            raise VideoSettingsError(
                f"max_video_tokens is not supported for the {family.name} family yet (no token-count fit is written "
                "for its processor); set num_frames / max_pixels instead."
            )
        frames = plain.num_frames if plain.num_frames is not None else plain.max_frames
        frames, max_pixels = family.video_token_budget(processor, frames, plain.max_video_tokens)
        changes: dict[str, Any] = {"num_frames": frames} if plain.num_frames is not None else {"max_frames": frames}
        if max_pixels is not None:
            changes["max_pixels"] = max_pixels if plain.max_pixels is None else min(plain.max_pixels, max_pixels)
        return dataclasses.replace(plain, **changes)


def _check_max_pixels_reachable(max_pixels: int, processor: Any, family: Any) -> None:
    """Refuses a per-frame budget below the smallest frame `family`'s processor makes (one merged patch: 28 x 28 on
    Qwen's checkpoints): the processor would silently make frames of that size while the settings record less."""
    video_processor = getattr(processor, "video_processor", None)
    patch_size = getattr(video_processor, "patch_size", None)
    merge_size = getattr(video_processor, "merge_size", None)
    if not isinstance(patch_size, int) or not isinstance(merge_size, int):
        return  # a processor that does not resize by merged patches: no floor known
    side = patch_size * merge_size
    if max_pixels < side * side:
        raise VideoSettingsError(
            f"max_pixels={max_pixels} is below the smallest frame the {family.name} processor makes: one merged "
            f"patch of {side}x{side} = {side * side} pixels (patch_size {patch_size} x merge_size {merge_size}), "
            f"which it would use instead while the settings record {max_pixels}. Set max_pixels to at least "
            f"{side * side} (pixels per frame, not tokens)."
        )
