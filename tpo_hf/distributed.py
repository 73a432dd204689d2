"""Stage 4 of the flow (training, sharded): what `TPOTrainer` does so FSDP2 and DeepSpeed ZeRO-3 train as 1 process.

Sharding wrappers gather a module's parameters only around that module's own forward. TPO reads weights outside
of such forwards: the shared video encoding calls the vision tower directly, once per pair, and TRL's fused LM head
reads `lm_head.weight` without calling `lm_head`. Left alone, these reads meet sharded weights, or gradients that are
never averaged over ranks. This module routes those reads through the wrappers, fixes accelerate's FSDP wrap policy
for video-LMMs, and refuses FSDP2 on the releases where our 2-process tests measured it training wrongly
(tests/test_sharded.py checks every path against 1 process).
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .families import VideoFamily

logger = logging.getLogger(__name__)

# Keyword that makes the model's forward run only the shared video encoding (see `install_encode_forward`)
ENCODE_VIDEOS_KWARG = "tpo_encode_videos"


def install_encode_forward(model: torch.nn.Module, family: VideoFamily) -> None:
    """Lets `model(tpo_encode_videos=video_inputs)` return `family.encode_videos(model, video_inputs)`.

    `model` is the module whose forward a wrapper (FSDP, PEFT) ends up calling: the encoding then runs inside the
    wrapper's forward hooks, which gather sharded parameters. Without the keyword the forward is unchanged.
    """
    if getattr(model, "_tpo_encode_forward", False):
        return
    inner = model.forward

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        video_inputs = kwargs.pop(ENCODE_VIDEOS_KWARG, None)
        if video_inputs is None:
            return inner(*args, **kwargs)
        return family.encode_videos(model, video_inputs)

    model.forward = forward
    model._tpo_encode_forward = True


def encode_videos(
    model: Any, base_model: Any, family: VideoFamily, pair_inputs: dict[str, Any], is_fsdp: bool, is_deepspeed: bool
) -> Any:
    """Runs the family's vision encoder once per pair (`pair_inputs`), with the sharded weights gathered.

    `model` is the model as the trainer calls it (wrapped), `base_model` the transformers model inside it.
    Under FSDP the encoder call goes through the wrapped model's own `__call__`: FSDP gathers a unit's
    parameters only in its forward hooks, so a direct call to the vision tower would meet sharded (DTensor)
    weights in the modules left to the root unit (e.g. Qwen's patch embedding), and would lazily make the
    vision blocks' units roots of their own ahead of the real root. ZeRO-3 gathers in each submodule's forward,
    which covers Qwen's vision tower but not parameters read outside a module's forward: those are gathered
    explicitly.
    """
    if is_fsdp:
        install_encode_forward(base_model, family)
        return model(**{ENCODE_VIDEOS_KWARG: pair_inputs})
    if is_deepspeed and any(hasattr(p, "ds_id") for p in base_model.parameters()):
        # ZeRO-3 gathers a module's own parameters in that module's forward only: the vision side reads some
        # outside of it (LLaVA-OneVision's `image_newline` on the model, SigLIP's pooling-head `out_proj`
        # through `nn.MultiheadAttention`), so its parameters and the model's direct ones are gathered here
        import deepspeed

        parameters = [parameter for _, parameter in family.vision_parameters(base_model)]
        for module in (base_model, getattr(base_model, "model", None)):
            if isinstance(module, torch.nn.Module):
                parameters.extend(module.parameters(recurse=False))
        with deepspeed.zero.GatheredParameters(parameters):
            return family.encode_videos(base_model, pair_inputs)
    return family.encode_videos(base_model, pair_inputs)


def install_output_head_unshard(model: torch.nn.Module) -> None:
    """Under FSDP2, gathers a trainable LM head that is its own FSDP unit before TRL's fused LM head reads it.

    accelerate's `fsdp2_prepare_model` gives the output embedding its own unit (with the base model's final norm
    when it finds one; Qwen2-VL's sits one level deeper, so `lm_head` is alone). The unit gathers its weight in
    `lm_head`'s own forward only, which TRL's `add_fused_lm_head` never calls: it reads `lm_head.weight`, finds a
    sharded DTensor and takes `full_tensor()`, whose backward hands each rank back its own rows of its local
    gradient, never averaged over ranks (the 2-process step-1 `lm_head` gradient norm came out 8.9% above the
    1-process one, every other weight within 0.5%). Gathering the unit here, inside the root's forward, makes the
    head a plain tensor there; FSDP's end-of-backward callback then reduce-scatters (averages) its gradient like
    any other unit's.
    """
    if getattr(model, "_tpo_head_unshard", False):
        return
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    inner = model.forward

    @functools.wraps(inner)
    def forward(*args, **kwargs):
        head = model.get_output_embeddings()
        weight = getattr(head, "weight", None)
        if (
            kwargs.get("fused_lm_head", False)
            and torch.is_grad_enabled()
            and isinstance(head, FSDPModule)
            and isinstance(weight, DTensor)
            and weight.requires_grad
        ):
            head.unshard()
        return inner(*args, **kwargs)

    model.forward = forward
    model._tpo_head_unshard = True


def fsdp_plugin(trainer: Any) -> Any:
    """Accelerate's FSDP plugin when `trainer` trains under FSDP, else `None`."""
    return getattr(trainer.accelerator.state, "fsdp_plugin", None) if trainer.is_fsdp_enabled else None


def check_fsdp2_versions(plugin: Any) -> None:
    """FSDP2 on a stack where it trained wrongly in our tests is refused before any step (see `tpo_hf.compat`).

    Raises:
        RuntimeError: `plugin` asks for FSDP2 and a package is older than `compat.FSDP2_MIN_VERSIONS`.
    """
    if plugin is None or getattr(plugin, "fsdp_version", 1) != 2:
        return
    from .compat import FSDP2_MIN_VERSIONS, fsdp2_unverified_versions

    if old := fsdp2_unverified_versions():
        needed = ", ".join(f"{name}>={version}" for name, version in FSDP2_MIN_VERSIONS.items())
        raise RuntimeError(
            f"FSDP2 training needs {needed} (installed: {'; '.join(old)}). On older releases our 2-process tests "
            "measured resumed runs that diverged and full fine-tuning that drifted from one process; upgrade "
            "them, or train with DDP or DeepSpeed ZeRO-3."
        )


def configure_fsdp_wrap(model: torch.nn.Module, plugin: Any) -> None:
    """FSDP's transformer-based wrap: only the `_no_split_modules` classes `model` contains.

    transformers lists the no-split classes of every sub-model class, including parts a video-LMM does not
    build (LLaVA-OneVision lists `SiglipTextEmbeddings`, its vision tower has no text side), and accelerate
    refuses a listed class it cannot find ("Could not find the transformer layer class ..."). An explicit
    `fsdp_transformer_layer_cls_to_wrap` is left as the user set it.
    """
    if plugin is None or plugin.transformer_cls_names_to_wrap is not None:
        return
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    policy = plugin.auto_wrap_policy
    policy = policy.func if isinstance(policy, functools.partial) else policy
    if policy is not transformer_auto_wrap_policy:
        return
    listed = list(getattr(model, "_no_split_modules", None) or [])
    present = {type(module).__name__ for module in model.modules()}
    absent = [name for name in listed if name not in present]
    if absent:
        plugin.transformer_cls_names_to_wrap = [name for name in listed if name in present]
        logger.info(
            "FSDP wraps %s; %s (listed in the model's _no_split_modules) are not in this model",
            plugin.transformer_cls_names_to_wrap,
            absent,
        )


def import_modeling_modules(config: Any) -> None:
    """Imports the transformers modeling modules of `config` and of its sub-configs (e.g. LLaVA-OneVision's Qwen2 text
    model), so their classes are defined before DeepSpeed ZeRO-3 builds the model.

    `deepspeed.zero.Init` wraps the `__init__` of every module class defined while it is active and, on exit, puts back
    the `__init__` it saw at definition, before decorators ran. transformers >= 5.25 decorates attention classes with
    the `kernels` package's `use_kernelized_func`, whose `__init__` gives each instance its `_kernel_funcs`: a class
    first imported inside `zero.Init` loses that, and every module built after it (a second model, a reference model)
    fails in its first forward (`'Qwen2Attention' object has no attribute '_kernel_funcs'`).
    """
    import importlib

    from transformers.models.auto.configuration_auto import model_type_to_module_name

    configs = [config, *(getattr(config, name, None) for name in getattr(config, "sub_configs", {}))]
    for sub_config in configs:
        model_type = getattr(sub_config, "model_type", None)
        if not model_type:
            continue
        module = model_type_to_module_name(model_type)
        try:
            importlib.import_module(f"transformers.models.{module}.modeling_{module}")
        except ImportError:  # a remote-code model, or a config type without its own modeling module
            logger.debug("No transformers modeling module for model type %r", model_type)
