"""Stage 4 of the flow (training, Mixture-of-Experts families): the router load-balancing loss on video pairs.

TRL's `DPOTrainer` adds `router_aux_loss_coef * outputs.aux_loss` to the loss of MoE models (the coefficient from
`TPOConfig.router_aux_loss_coef`, else the model config's; `0.0` turns it off) and logs it as `aux_loss`. Its fused LM
head computes that loss over every non-padding token of the 2B rows, so each pair's prompt, thousands of video tokens
in TPO, would be counted twice, and under prefix sharing the 4D block mask cannot serve as its token mask at all.

`install_router_aux_loss` wraps the forward TRL patched so that `outputs.aux_loss` is the model's own load-balancing
loss (Switch Transformer, the function every transformers MoE family uses) over the tokens the prefix-shared forward
runs: each pair's prompt once (its last token once per answer, since that token predicts the first answer token) and
each answer but its final token (which predicts nothing). The same tokens are counted in the duplicated-rows,
shared-encoding and prefix-sharing paths, so the three give the same loss and gradients. Router logits are recorded
with forward hooks on the family's router modules (`VideoFamily.router_modules`), only in the policy forward
(TRL asks for router logits there and not in the reference pass).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from .families import VideoFamily


def router_modules(model: torch.nn.Module, family: VideoFamily) -> list[torch.nn.Module]:
    """The language model's router modules of an MoE `model` (PEFT-wrapped or not)."""
    suffix = f".{family.router_modules}"
    return [
        module
        for name, module in model.named_modules()
        if name.endswith(suffix) and "language_model" in name and not name.endswith(f"{suffix}.base_layer")
    ]


def row_token_mask(attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Counted tokens of a right-padded 2B-row batch (chosen rows first): each row's real tokens but its last; in a
    rejected row, only from its last prompt token on (the prompt was counted in the chosen row)."""
    real = attention_mask.bool()
    positions = torch.arange(real.size(1), device=real.device).expand_as(real)
    lengths = real.sum(1, keepdim=True)
    counted = real & (positions < lengths - 1)
    prompt_lengths = (labels == -100).logical_and(real).sum(1, keepdim=True)  # the prompt is the unlabelled part
    num_pairs = real.size(0) // 2
    rejected = torch.arange(real.size(0), device=real.device)[:, None] >= num_pairs
    return counted & ~(rejected & (positions < prompt_lengths - 1))


def load_balancing_loss(router_logits: list[torch.Tensor], token_mask: torch.Tensor, config: Any) -> torch.Tensor:
    """The Switch Transformer load-balancing loss over the tokens of `token_mask` (as transformers computes it)."""
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    # The expert count is the router's output width (configs name it num_experts or n_routed_experts)
    num_experts = router_logits[0].shape[-1]
    return load_balancing_loss_func(
        tuple(router_logits), num_experts, config.get_text_config().num_experts_per_tok, token_mask
    )


def install_router_aux_loss(model: torch.nn.Module, family: VideoFamily) -> None:
    """Makes `model(..., fused_lm_head=True, output_router_logits=True)` return the aux loss described above.

    `model` is the module whose forward TRL patched with its fused LM head (the base model under PEFT, or a separate
    reference model), with `tpo_hf.prefix_sharing` installed first when it is on. Fused calls never let the inner
    forward compute its own aux loss (it would take the row or 4D attention mask); other calls are unchanged.
    """
    if getattr(model, "_tpo_router_aux_loss", False):
        return
    inner = model.forward
    routers = router_modules(model, family)
    if not routers:
        raise ValueError(f"No router modules ending in {family.router_modules!r} in the {family.name} model")

    @functools.wraps(inner)
    def forward(*args, output_router_logits: bool | None = None, **kwargs):
        if not kwargs.get("fused_lm_head", False):
            if output_router_logits is not None:
                kwargs["output_router_logits"] = output_router_logits
            return inner(*args, **kwargs)
        if not output_router_logits:
            return inner(*args, output_router_logits=False, **kwargs)
        recorded: list[torch.Tensor] = []
        hooks = [router.register_forward_hook(lambda _, __, out: recorded.append(out[0])) for router in routers]
        try:
            outputs = inner(*args, output_router_logits=False, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()
        packed = kwargs.get("prefix_sharing")
        if packed is not None:
            token_mask = packed.source_rows >= 0  # each packed position is a token the pair needs, counted once
        else:
            token_mask = row_token_mask(kwargs["attention_mask"], kwargs["labels"])
        outputs.aux_loss = load_balancing_loss(recorded, token_mask, model.config)
        return outputs

    model.forward = forward
    model._tpo_router_aux_loss = True
