"""Stage 4 of the flow (training settings): `TPOConfig`, TRL's `DPOConfig` with TPO's defaults and the video fields."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from trl import DPOConfig

from . import compat
from .collator import TOO_LONG_POLICIES
from .video_settings import VideoSettings


def _on_cpu(config: DPOConfig) -> bool:
    import torch

    accelerators = (torch.cuda, getattr(torch, "xpu", None), getattr(torch.backends, "mps", None))
    return config.use_cpu or not any(backend is not None and backend.is_available() for backend in accelerators)


# TRL / transformers options that do not work with video pairs, refused at config time: name -> (is it set?, why, and
# what to use instead). The "TRL and transformers options" table of docs/training.md lists these and the options that do work.
REFUSED_OPTIONS: dict[str, tuple[Callable[[DPOConfig], bool], str]] = {
    "use_liger_kernel": (
        lambda config: bool(config.use_liger_kernel),
        "Liger's kernels replace the model's layers (rotary positions included) and are deprecated in TRL; they are "
        "untested with video inputs and with the positions prefix sharing computes. Train without them.",
    ),
    "padding_free": (
        lambda config: bool(config.padding_free),
        "TRL has disabled it, and packing rows without padding cannot keep each row's video inputs aligned with its "
        "tokens. `prefix_sharing=True` (the default) already runs each pair's shared prompt once.",
    ),
    "torch_compile": (
        lambda config: bool(config.torch_compile),
        "every batch has a different number of video tokens and its own packed attention mask, so the compiled "
        "graph would be rebuilt at every step. Train uncompiled; `share_video_encoding` and `prefix_sharing` remove "
        "the duplicated compute.",
    ),
    "fp16": (
        lambda config: bool(config.fp16) and _on_cpu(config),
        "fp16 mixed precision needs a GPU. On CPU use `bf16=True` (with `use_cpu=True`) or full precision "
        "(`bf16=False`).",
    ),
}
# TRL's preference losses; each one takes the chosen/rejected log-probs that TPOTrainer computes from video pairs.
PAIR_LOSS_TYPES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sigmoid_norm",
)
# The pair losses that depend on the pair only through its margin, (chosen - ref) - (rejected - ref): on an anchor
# row (chosen == rejected, `anchor` column) the margin is zero whatever the weights, so they give it no gradient and
# only the SFT term trains on it. The others score chosen and rejected apart (or sort margins across the batch).
MARGIN_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "robust", "discopop", "sigmoid_norm")


# (field, lowest allowed value, whether that value itself is allowed): checked by `TPOConfig._check_ranges`.
RANGE_CHECKS = (
    ("beta", 0.0, False),  # beta <= 0 flips or removes the preference term
    ("sft_weight", 0.0, True),
    ("learning_rate", 0.0, False),  # 0 trains nothing, and the untrained adapter would be saved and published
    ("num_train_epochs", 0.0, False),
    ("per_device_train_batch_size", 1, True),
    ("per_device_eval_batch_size", 1, True),
    ("gradient_accumulation_steps", 1, True),
    ("precompute_ref_batch_size", 1, True),
    ("warmup_steps", 0, True),
    ("weight_decay", 0.0, True),
    ("max_grad_norm", 0.0, True),
    ("logging_steps", 0, False),
    ("save_steps", 0, False),
    ("dataloader_num_workers", 0, True),
)


@dataclass
class TPOConfig(VideoSettings, DPOConfig):
    r"""
    Configuration class for [`TPOTrainer`]: Temporal Preference Optimization (arXiv 2501.13919) on video-LMMs.

    Not TRL's `trl.experimental.tpo.TPOConfig` (Triple Preference Optimization, an unrelated text-only method with the
    same acronym); the two can be imported in one program.

    Only the parameters specific to TPO are listed here; see [`trl.DPOConfig`] and [`transformers.TrainingArguments`]
    for the rest. The loss is `L = L_DPO + sft_weight * L_SFT` (TRL's `loss_type=["sigmoid", "sft"]`,
    `loss_weights=[1, sft_weight]`).

    `sft_weight` is the only weight of the SFT term: `loss_type` names the preference loss(es) (default
    `["sigmoid"]`, any of TRL's pair losses), and TPO appends `"sft"` with weight `sft_weight` when it is positive.
    `loss_type=["sft"]` alone trains the SFT term only (the paper's SFT_self baseline). `loss_weights`, if given,
    weighs the preference losses; an `"sft"` entry listed in `loss_type` must carry the
    weight `sft_weight` (its default weight there). Options that do not work with video pairs (`padding_free`,
    `use_liger_kernel`, `torch_compile`, fp16 on CPU) are refused here with the reason and what to use instead.

    > Parameters that control the videos

    num_frames, video_fps, max_frames, max_pixels, max_video_tokens:
        The video settings, inherited from [`VideoSettings`] (their one default and validation): frames per video
        (default `32`; `None` samples at `video_fps`), a cap on them, the per-frame pixel budget (Qwen) and the
        video-token budget per prompt that resolution, then frames, are fitted to (the same fit in curation and
        eval). The trainer samples with the processor's fitted copy, which the model card records.
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
    prefix_sharing_attention (`str`, *optional*, defaults to `"auto"`):
        How the packed branches are kept apart: `"segments"` (segment-wise attention registered with transformers'
        `AttentionInterface`, memory linear in length; SDPA, or flash-attn varlen on CUDA), `"dense"` (an L x L
        block mask per pair; sdpa/eager only) or `"auto"` (segments, and the dense mask under eager attention, which
        cannot be wrapped).
    freeze_vision_tower (`bool`, *optional*, defaults to `True`):
        Keep the vision encoder and projector frozen in full fine-tuning, as the paper does.
    lora_include_experts (`bool`, *optional*, defaults to `False`):
        Mixture-of-Experts families (e.g. Qwen3-VL-MoE): also put LoRA adapters on the experts (PEFT's
        `target_parameters`). Off by default: with 128 experts per layer the adapter would grow ~100-fold for the
        same rank. The router load-balancing loss is weighted by `router_aux_loss_coef` (TRL's field).
    too_long_policy (`str`, *optional*, defaults to `"drop"`):
        What to do with a pair whose prompt (video tokens included) plus answer exceeds `max_length`: `"drop"` it
        (counted and logged as `too_long/dropped_total`) or raise an `"error"` naming the row. Video tokens are
        never truncated.
    """

    # Video (the sampling fields come from VideoSettings)
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
    prefix_sharing_attention: str = field(
        default="auto",
        metadata={"help": "'segments' (no L x L mask), 'dense' (L x L block mask) or 'auto' (dense for eager only)."},
    )
    freeze_vision_tower: bool = field(
        default=True, metadata={"help": "Keep the vision encoder and projector frozen in full fine-tuning."}
    )
    lora_include_experts: bool = field(
        default=False,
        metadata={
            "help": "MoE families: also adapt the experts with LoRA (off by default: the adapter would balloon)."
        },
    )
    too_long_policy: str = field(
        default="drop",
        metadata={"help": "Pairs longer than `max_length`: 'drop' (counted, logged) or 'error' (naming the row)."},
    )
    # transformers 5 dropped this field; `tpo-hf train` reads it: a fresh run removes an earlier run's checkpoints
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "A fresh run removes the checkpoint-* folders an earlier run left in `output_dir`."},
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
        metadata={"help": "TRL pair loss type(s), default ['sigmoid']; TPO appends 'sft' weighted by `sft_weight`."},
    )
    # One spelling of activation checkpointing on every supported transformers (tpo_hf.compat): the new names, on by
    # default as in TRL; the deprecated `gradient_checkpointing*` names still work where transformers has them.
    activation_checkpointing: bool | None = field(
        default=None,
        # `nargs`/`const`: a bare `--activation_checkpointing` means True, as in transformers
        metadata={
            "help": "Trade compute for memory by recomputing activations in the backward pass (default on).",
            "nargs": "?",
            "const": True,
        },
    )
    activation_checkpointing_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Keyword arguments for activation checkpointing, e.g. `use_reentrant`."}
    )
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Deprecated alias of `activation_checkpointing`.", "nargs": "?", "const": True}
    )
    # The `video` column and the provenance columns must reach the collator.
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep dataset columns (the collator reads `video`)."}
    )

    def video_settings(self) -> dict:
        """The video fields as `VideoPreferenceProcessor` keyword arguments (one mapping for every entry point)."""
        return {**VideoSettings.of(self).to_dict(), "video_root": self.video_root}

    def _resolve_loss(self) -> None:
        """`loss_type` + `loss_weights` as TRL reads them, with the SFT term weighted by `sft_weight` (see above)."""
        loss_type = ["sigmoid"] if self.loss_type is None else self.loss_type
        loss_type = [loss_type] if isinstance(loss_type, str) else list(loss_type)
        unknown = [loss for loss in loss_type if loss not in (*PAIR_LOSS_TYPES, "sft")]
        if unknown:
            raise ValueError(
                f"TPOConfig: unknown `loss_type` {unknown}; use TRL's pair losses {list(PAIR_LOSS_TYPES)}."
            )
        if loss_type == ["sft"] and self.sft_weight <= 0:
            # SFT alone (weight `sft_weight`) is the paper's SFT_self baseline; with no weight it would train nothing
            raise ValueError("TPOConfig: `loss_type=['sft']` with `sft_weight=0` trains nothing; set `sft_weight`.")
        weights = list(self.loss_weights) if self.loss_weights is not None else None
        if weights is not None and len(weights) != len(loss_type):
            raise ValueError(
                f"TPOConfig: `loss_weights` {weights} needs one weight per `loss_type` entry {loss_type}."
            )
        if weights is None:
            weights = [self.sft_weight if loss == "sft" else 1.0 for loss in loss_type]
        for loss, weight in zip(loss_type, weights):
            if loss == "sft" and weight != self.sft_weight:
                raise ValueError(
                    f"TPOConfig: `loss_weights` gives 'sft' the weight {weight} but `sft_weight` is {self.sft_weight}; "
                    f"the SFT term has one weight: set `sft_weight={weight}`."
                )
        if "sft" not in loss_type and self.sft_weight > 0:
            loss_type.append("sft")
            weights.append(self.sft_weight)
        if "sft" in loss_type and self.sft_weight == 0:
            index = loss_type.index("sft")
            del loss_type[index], weights[index]
        self.loss_type, self.loss_weights = loss_type, weights

    def _check_ranges(self) -> None:
        """Out-of-range numbers are refused here, before training, instead of being trained with."""
        for name, low, inclusive in RANGE_CHECKS:
            value = getattr(self, name, None)
            if value is None or isinstance(value, str):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"TPOConfig: `{name}` must be a number, got {value!r} ({type(value).__name__}).")
            if value < low or (value == low and not inclusive) or value != value:  # NaN compares unequal
                bound = f">= {low}" if inclusive else f"> {low}"
                raise ValueError(f"TPOConfig: `{name}` must be {bound}, got {value}.")
        if self.max_steps == 0:  # -1 (the default) means "use num_train_epochs"; 0 would save an untrained adapter
            raise ValueError("TPOConfig: `max_steps` must be positive, or -1 to train for `num_train_epochs`; got 0.")
        if not 0.0 <= self.warmup_ratio <= 1.0:
            raise ValueError(f"TPOConfig: `warmup_ratio` must lie in [0, 1], got {self.warmup_ratio}.")
        if not 0.0 <= self.label_smoothing < 0.5:
            raise ValueError(f"TPOConfig: `label_smoothing` must lie in [0, 0.5), got {self.label_smoothing}.")
        for weight in self.loss_weights or []:
            if not isinstance(weight, (int, float)) or weight < 0:
                raise ValueError(f"TPOConfig: `loss_weights` must be non-negative numbers, got {self.loss_weights}.")

    def __post_init__(self):
        self.check_video_settings()  # VideoSettings' validation, first: the rest may assume sane video fields
        self.check_fixed_frame_count()  # the card and tpo_video_config.json record num_frames as trained with
        self._check_ranges()
        if self.too_long_policy not in TOO_LONG_POLICIES:
            raise ValueError(
                f"TPOConfig: `too_long_policy` must be one of {TOO_LONG_POLICIES}, got {self.too_long_policy!r}."
            )
        if self.prefix_sharing_attention not in ("auto", "segments", "dense"):
            raise ValueError(
                "TPOConfig: `prefix_sharing_attention` must be 'auto', 'segments' or 'dense', got "
                f"{self.prefix_sharing_attention!r}."
            )
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"TPOConfig: `max_length` must be positive or None, got {self.max_length}.")
        for name, (is_set, why) in REFUSED_OPTIONS.items():
            if is_set(self):
                raise ValueError(f"TPOConfig: `{name}` is not supported for video pairs: {why}")
        self._resolve_loss()
        compat.resolve_activation_checkpointing(self)
        super().__post_init__()  # VideoSettings', then DPOConfig's
        compat.mirror_activation_checkpointing(self)
