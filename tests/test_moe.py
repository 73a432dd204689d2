"""Mixture-of-Experts families (Qwen3-VL-MoE, GLM-4.5V): the router load-balancing loss counts each pair's prompt
once, in every path, and LoRA leaves the experts out unless asked."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from peft import LoraConfig

from tests.test_prefix_sharing import PATHS, ROWS, _args, _assert_close, _loss_and_grads, _trainer
from tpo_hf import TPOTrainer
from tpo_hf.families import FAMILIES
from tpo_hf.moe import load_balancing_loss, router_modules, row_token_mask
from tpo_hf.tiny import build_tiny_model

MOE_FAMILIES = sorted(name for name, family in FAMILIES.items() if family.is_moe)


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_aux_loss_counts_the_prompt_once_and_matches_across_paths(family, tmp_path, video_dir):
    coef = 0.5  # large enough that the aux term moves the loss and the gradients visibly
    expected_trainer = _trainer(family, tmp_path, video_dir, router_aux_loss_coef=coef, **PATHS["duplicated"])
    assert expected_trainer.aux_loss_enabled and expected_trainer.router_aux_loss_coef == coef
    expected = _loss_and_grads(expected_trainer)
    aux = expected_trainer._metrics["train"]["aux_loss"][-1]

    # The logged aux loss is the load-balancing loss over the counted tokens: rejected rows skip the shared prompt
    batch = expected_trainer.data_collator([dict(row, tpo_row_index=i) for i, row in enumerate(ROWS)])
    inputs = expected_trainer._to_model_inputs(expected_trainer.model, batch)
    mask = inputs.pop("completion_mask")
    base = expected_trainer.model.get_base_model()
    recorded = []
    routers = router_modules(base, expected_trainer.family)
    hooks = [router.register_forward_hook(lambda _, __, out: recorded.append(out[0])) for router in routers]
    with torch.no_grad():
        expected_trainer.model(**inputs, use_cache=False)
    for hook in hooks:
        hook.remove()
    counted = row_token_mask(inputs["attention_mask"], inputs["input_ids"].masked_fill(mask == 0, -100))
    num_pairs = len(ROWS)
    prompt_length = int((mask[num_pairs] == 0).logical_and(inputs["attention_mask"][num_pairs].bool()).sum())
    assert counted[num_pairs, : prompt_length - 1].sum() == 0 and counted[num_pairs, prompt_length - 1]
    assert counted[0, :prompt_length].all()
    assert aux == pytest.approx(float(load_balancing_loss(recorded, counted, base.config)), rel=1e-4)
    # TRL's count over every row token (the prompt twice) is another number
    every_token = float(load_balancing_loss(recorded, inputs["attention_mask"], base.config))
    assert aux != pytest.approx(every_token, rel=1e-4)

    for name in ("shared_encoding", "prefix_sharing"):
        trainer = _trainer(family, tmp_path, video_dir, router_aux_loss_coef=coef, **PATHS[name])
        assert trainer._prefix_sharing == PATHS[name]["prefix_sharing"]
        result = _loss_and_grads(trainer)
        _assert_close(result, expected, f"{family}/{name}")
        assert trainer._metrics["train"]["aux_loss"][-1] == pytest.approx(aux, rel=1e-4)

    # coef 0: TRL turns the aux loss off, and the loss drops by coef * aux
    off = _loss_and_grads(_trainer(family, tmp_path, video_dir, router_aux_loss_coef=0.0, **PATHS["prefix_sharing"]))
    assert float(expected[0] - off[0]) == pytest.approx(coef * aux, rel=1e-3)


@pytest.mark.parametrize("family", MOE_FAMILIES)
def test_lora_leaves_experts_out_unless_asked(family, tmp_path, video_dir):
    def adapted(**settings):
        model, processor = build_tiny_model(family)
        args = _args(tmp_path, video_dir, **settings)
        trainer = TPOTrainer(
            model,
            args=args,
            train_dataset=Dataset.from_list(ROWS),
            processing_class=processor,
            peft_config=LoraConfig(r=4, lora_alpha=8),
        )
        return {name for name, p in trainer.model.named_parameters() if p.requires_grad}

    default = adapted()
    assert default and not any("experts" in name for name in default)
    assert all("language_model" in name and "self_attn" in name for name in default)
    with_experts = adapted(lora_include_experts=True)
    assert any("experts" in name for name in with_experts) and default < with_experts

    model, processor = build_tiny_model("qwen3_vl")
    with pytest.raises(ValueError, match="qwen3_vl family has no experts"):
        TPOTrainer(
            model,
            args=_args(tmp_path, video_dir, lora_include_experts=True),
            train_dataset=Dataset.from_list(ROWS),
            processing_class=processor,
            peft_config=LoraConfig(r=4),
        )
