"""Stage 4 of the flow (training, before the first step): what `TPOTrainer` decides once about the model.

TRL's `DPOTrainer` builds the model from the configs it is given and trains it as a text model. For a video-LMM,
TPO first fits those configs to the model's family (`tpo_hf.families`): LoRA adapts the language model only (TRL's
"all-linear" would also adapt the vision tower), experts only when asked, and 4-bit quantization skips the vision
side. Once the model is built, the vision side is frozen in full fine-tuning, which lets its output be shared
between the chosen row, the rejected row and the reference; and prefix sharing is turned on where the family and
the attention implementation allow it, with the attention mode that keeps each pair's two answers apart. Where
a choice falls back to a slower path, the log says why.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from .prefix_sharing import (
    DENSE_MAX_PACKED_LENGTH,
    attention_mask_dtype,
    inner_attention,
    install_prefix_attention,
    install_prefix_sharing,
    segments_supported,
    unsupported_reason,
)

if TYPE_CHECKING:
    from .config import TPOConfig
    from .families import VideoFamily

logger = logging.getLogger(__name__)


def fit_peft_config(peft_config: Any, family: VideoFamily, include_experts: bool) -> None:
    """Points a LoRA config without explicit targets at the language model, and adds the experts if asked.

    Raises:
        ValueError: `include_experts` for a family without experts.
    """
    if peft_config is None:
        return
    if getattr(peft_config, "target_modules", None) in (None, "all-linear"):
        # "all-linear" would also adapt the vision tower; TPO adapts the language model only
        peft_config.target_modules = family.lora_target_modules
        # PEFT's MoE conversion (Qwen3-Omni-MoE, GLM-4.5V) reduces the regex to bare names (q_proj, ...) that the
        # vision/audio towers have too: keep those out explicitly
        if getattr(peft_config, "exclude_modules", None) is None:
            peft_config.exclude_modules = family.lora_exclude_modules
        logger.info("LoRA targets the language model only: %s", peft_config.target_modules)
    if include_experts:
        if not family.expert_parameters:
            raise ValueError(
                f"lora_include_experts=True, but the {family.name} family has no experts to adapt; "
                "it applies to Mixture-of-Experts families (see `expert_parameters` in tpo_hf/families.py)."
            )
        # Experts are stacked 3D parameters, adapted through PEFT's `target_parameters`
        targets = list(getattr(peft_config, "target_parameters", None) or [])
        peft_config.target_parameters = targets + [p for p in family.expert_parameters if p not in targets]


def check_lora_targets(peft_config: Any, model: Any, family: VideoFamily) -> None:
    """Refuses LoRA `target_modules` given explicitly that name no module of `model` (a model, or the config of the
    one to be loaded), before PEFT wraps it; warns about the names among them that match nothing.

    Raises:
        ValueError: naming `lora_target_modules` and the language model's linear layers.
    """
    targets = getattr(peft_config, "target_modules", None)
    if targets in (None, "all-linear"):
        return  # fit_peft_config points them at the family's language-model linears
    import re

    import torch
    from peft.tuners.tuners_utils import check_target_module_exists

    if isinstance(model, torch.nn.Module):
        skeleton = model
    else:
        try:
            skeleton = _meta_skeleton(model, family)
        except Exception as error:  # a class tpo-hf cannot build empty: PEFT's own check runs when it wraps the model
            logger.debug("LoRA targets not checked before loading: %s", error)
            return
    modules = dict(skeleton.named_modules())
    if not any(check_target_module_exists(peft_config, name) for name in modules if name):
        linears = dict.fromkeys(
            name.rsplit(".", 1)[-1]
            for name, module in modules.items()
            if isinstance(module, torch.nn.Linear) and re.fullmatch(family.lora_target_modules, name)
        )
        # PEFT reads one string as a regular expression over whole module names (`model.layers.0.self_attn.q_proj`),
        # a list as module-name endings: `lora_target_modules: q_proj` in a recipe matches nothing
        as_regex = (
            f" (one string is a regular expression over whole module names, such as "
            f"model.layers.0.self_attn.{targets}: write a list, [{targets}], to match names ending in it)"
            if isinstance(targets, str)
            else ""
        )
        raise ValueError(
            f"lora_target_modules {targets if isinstance(targets, str) else sorted(targets)} match no module of the "
            f"model{as_regex}; its language model's linear layers are {', '.join(list(linears)[:10])}: name some of "
            "those, or leave lora_target_modules unset to adapt all of them."
        )
    if not isinstance(targets, str):
        # PEFT adapts the names that match and says nothing of the others (a typo among several)
        unmatched = [t for t in sorted(targets) if not any(name == t or name.endswith(f".{t}") for name in modules)]
        if unmatched:
            logger.warning("lora_target_modules: %s match no module of the model: left out.", ", ".join(unmatched))


def _meta_skeleton(config: Any, family: VideoFamily) -> Any:
    """The model `config` describes, built on the meta device (no memory, no weights): its module names."""
    import torch
    import transformers

    # the class TRL loads the model with (`create_model_from_path`), or the family's
    architecture = family.load_model_class() or getattr(transformers, (config.architectures or [""])[0], None)
    if architecture is None:
        raise LookupError(f"no transformers class for {config.architectures}")
    with torch.device("meta"):
        return architecture(config)


def fit_quantization_config(quantization_config: Any, family: VideoFamily) -> None:
    """Adds the family's vision side and `lm_head` to the modules quantization skips."""
    if quantization_config is None:
        return
    skip = list(getattr(quantization_config, "llm_int8_skip_modules", None) or [])
    for module in (*family.quantization_skip_patterns(), "lm_head"):
        if module not in skip:
            skip.append(module)
    quantization_config.llm_int8_skip_modules = skip


def configure_vision(model: Any, family: VideoFamily, args: TPOConfig) -> bool:
    """Freezes the vision side (full fine-tuning) and returns whether the video encoding can be shared."""
    # Full fine-tuning only: with PEFT the base is frozen already, and adapters on the vision side are wanted
    if args.freeze_vision_tower and not hasattr(model, "peft_config"):
        for _, parameter in family.vision_parameters(model):
            parameter.requires_grad_(False)
    share = args.share_video_encoding
    if share:
        trainable = [name for name, p in family.vision_parameters(model) if p.requires_grad]
        if trainable:
            share = False
            logger.warning(
                "share_video_encoding is off: the vision side has trainable weights (%s%s), so its output "
                "differs between the policy and the reference and cannot be shared.",
                ", ".join(trainable[:3]),
                "..." if len(trainable) > 3 else "",
            )
    return share


def configure_prefix_sharing(models: list[Any], family: VideoFamily, attention: str) -> str | None:
    """Turns prefix sharing on where the family and the attention implementation allow it, else logs why not.

    `models` are the forwards TRL patched with its fused LM head: the base model under PEFT, and a separate
    reference model if there is one. Returns the `pack_pairs` attention mode, `None` when prefix sharing is off.
    """
    for model in models:
        if (reason := unsupported_reason(model, family)) is not None:
            logger.warning("prefix_sharing is off: %s. Each pair's prompt runs once per answer.", reason)
            return None
    for packed_model in models:
        install_prefix_sharing(packed_model)
    return configure_prefix_attention(models, attention)


def configure_prefix_attention(models: list[Any], mode: str) -> str:
    """Segment-wise attention (no L x L mask) where every model's attention can be wrapped, else the dense mask.

    Returns the `pack_pairs` attention mode; logs once why the dense mask is used where it is.
    """
    implementations = sorted({str(inner_attention(model)) for model in models})
    dense_ok = all(attention_mask_dtype(model) is not None for model in models)
    segments_ok = all(segments_supported(model) for model in models)
    if mode == "dense" and not dense_ok:
        raise ValueError(
            f"prefix_sharing_attention='dense' needs sdpa or eager attention, the model uses {implementations}; "
            "use 'segments' or 'auto'"
        )
    if mode == "segments" and not segments_ok:
        raise ValueError(
            f"prefix_sharing_attention='segments' cannot wrap attention {implementations} (eager's function is "
            "model-specific); load the model with attn_implementation='sdpa' or use 'dense'"
        )
    if mode == "dense" or not segments_ok:
        logger.warning(
            "prefix sharing uses a dense L x L block mask per pair (%s), memory quadratic in length: %s",
            implementations,
            "prefix_sharing_attention='dense'" if mode == "dense" else "eager attention cannot be wrapped",
        )
        return "dense"
    for model in models:
        install_prefix_attention(model)
    if mode == "segments" or not dense_ok or DENSE_MAX_PACKED_LENGTH == 0:
        logger.info("prefix sharing: segment-wise attention around %s (no L x L mask)", implementations)
        return "segments"
    logger.info(
        "prefix sharing: segment-wise attention around %s above %d packed tokens, dense block mask up to it",
        implementations,
        DENSE_MAX_PACKED_LENGTH,
    )
    return "auto"
