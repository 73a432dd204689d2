"""Stage 4 of the flow (training settings): `TPOConfig`, TRL's `DPOConfig` with TPO's defaults and the video fields."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig

from .collator import TOO_LONG_POLICIES


@dataclass
class TPOConfig(DPOConfig):
    r"""
    Configuration class for [`TPOTrainer`]: Temporal Preference Optimization (arXiv 2501.13919) on video-LMMs.

    Only the parameters specific to TPO are listed here; see [`trl.DPOConfig`] and [`transformers.TrainingArguments`]
    for the rest. The loss is `L = L_DPO + sft_weight * L_SFT` (TRL's `loss_type=["sigmoid", "sft"]`,
    `loss_weights=[1, sft_weight]`).

    > Parameters that control the videos

    num_frames (`int` or `None`, *optional*, defaults to `32`):
        Frames sampled uniformly from each video. Takes precedence over `video_fps`.
    video_fps (`float` or `None`, *optional*, defaults to `None`):
        Sampling rate in frames per second, used when `num_frames` is `None`.
    max_frames (`int` or `None`, *optional*, defaults to `None`):
        Cap on the frames per video, whichever of the two above is used.
    max_pixels (`int` or `None`, *optional*, defaults to `None`):
        Per-frame pixel budget for families that resize dynamically (Qwen); `None` keeps the processor's setting.
    video_root (`str` or `None`, *optional*, defaults to `None`):
        Folder that relative paths in the `video` column are resolved against.

    > Parameters that control the TPO objective and its cost

    sft_weight (`float`, *optional*, defaults to `0.5`):
        Weight alpha of the SFT (NLL) term on the chosen answer. `0` trains plain DPO.
    share_video_encoding (`bool`, *optional*, defaults to `True`):
        Run the vision encoder once per pair for the chosen, rejected and reference rows. Falls back (with a logged
        reason) when the vision side has trainable weights.
    prefix_sharing (`bool`, *optional*, defaults to `True`):
        Run each pair's prompt (video tokens included) through the language model once, with the chosen and
        rejected answers packed after it under a block attention mask, for the policy and the reference pass. Same
        loss and gradients as the unshared rows. Falls back (with a logged reason) for families or attention
        implementations that cannot take a custom 4D mask.
    freeze_vision_tower (`bool`, *optional*, defaults to `True`):
        Keep the vision encoder and projector frozen in full fine-tuning, as the paper does.
    too_long_policy (`str`, *optional*, defaults to `"drop"`):
        What to do with a pair whose prompt (video tokens included) plus answer exceeds `max_length`: `"drop"` it
        (counted and logged as `too_long/dropped_total`) or raise an `"error"` naming the row. Video tokens are
        never truncated.
    """

    # Video
    num_frames: int | None = field(default=32, metadata={"help": "Frames sampled uniformly from each video."})
    video_fps: float | None = field(
        default=None, metadata={"help": "Sampling rate (frames per second) when `num_frames` is None."}
    )
    max_frames: int | None = field(default=None, metadata={"help": "Cap on the number of frames per video."})
    max_pixels: int | None = field(
        default=None, metadata={"help": "Per-frame pixel budget for dynamically resizing families (Qwen)."}
    )
    video_root: str | None = field(
        default=None, metadata={"help": "Folder that relative paths in the `video` column are resolved against."}
    )

    # Objective and cost
    sft_weight: float = field(default=0.5, metadata={"help": "Weight alpha of the SFT term on the chosen answer."})
    share_video_encoding: bool = field(
        default=True, metadata={"help": "Encode each pair's video once for chosen, rejected and reference rows."}
    )
    prefix_sharing: bool = field(
        default=True,
        metadata={"help": "Run each pair's prompt once, with both answers packed after it (block attention mask)."},
    )
    freeze_vision_tower: bool = field(
        default=True, metadata={"help": "Keep the vision encoder and projector frozen in full fine-tuning."}
    )
    too_long_policy: str = field(
        default="drop",
        metadata={"help": "Pairs longer than `max_length`: 'drop' (counted, logged) or 'error' (naming the row)."},
    )

    # TPO's defaults for inherited parameters (paper / LongVA-TPO: beta 0.3, lr 4e-6, cosine, warmup 0.1, 1 epoch)
    beta: float = field(default=0.3, metadata={"help": "DPO temperature beta."})
    learning_rate: float = field(default=4e-6, metadata={"help": "Initial learning rate for AdamW."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "The scheduler type to use."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Fraction of steps used for a linear warmup."})
    num_train_epochs: float = field(default=1.0, metadata={"help": "Total number of training epochs."})
    max_length: int | None = field(
        default=8192, metadata={"help": "Longest prompt + answer in tokens, video tokens included."}
    )
    loss_type: list[str] | None = field(
        default=None,
        metadata={"help": "TRL loss types; default ['sigmoid', 'sft'] (DPO + SFT) weighted by `sft_weight`."},
    )
    # The `video` column and the provenance columns must reach the collator.
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep dataset columns (the collator reads `video`)."}
    )

    def video_settings(self) -> dict:
        """The video fields as `VideoPreferenceProcessor` keyword arguments (one mapping for every entry point)."""
        return {
            "num_frames": self.num_frames,
            "video_fps": self.video_fps,
            "max_frames": self.max_frames,
            "max_pixels": self.max_pixels,
            "video_root": self.video_root,
        }

    def __post_init__(self):
        if self.num_frames is None and self.video_fps is None:
            raise ValueError("TPOConfig: set `num_frames` or `video_fps` (every frame of a long video is too many).")
        for name in ("num_frames", "max_frames", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TPOConfig: `{name}` must be a positive integer or None, got {value}.")
        if self.video_fps is not None and self.video_fps <= 0:
            raise ValueError(f"TPOConfig: `video_fps` must be positive, got {self.video_fps}.")
        if self.sft_weight < 0:
            raise ValueError(f"TPOConfig: `sft_weight` must be >= 0, got {self.sft_weight}.")
        if self.too_long_policy not in TOO_LONG_POLICIES:
            raise ValueError(
                f"TPOConfig: `too_long_policy` must be one of {TOO_LONG_POLICIES}, got {self.too_long_policy!r}."
            )
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"TPOConfig: `max_length` must be positive or None, got {self.max_length}.")
        if self.padding_free:
            raise ValueError("TPOConfig: `padding_free` is not supported for video pairs.")
        if self.loss_type is None:
            self.loss_type = ["sigmoid", "sft"] if self.sft_weight > 0 else ["sigmoid"]
        elif isinstance(self.loss_type, str):
            self.loss_type = [self.loss_type]
        if self.loss_weights is None:
            self.loss_weights = [self.sft_weight if loss == "sft" else 1.0 for loss in self.loss_type]
        super().__post_init__()
