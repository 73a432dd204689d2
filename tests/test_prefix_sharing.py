"""Prefix sharing and shared video encoding give the loss and gradients of the duplicated rows, for every family.

Each check trains nothing: it builds the same tiny model (same seed) under each path, computes TRL's DPO+SFT loss on
one batch (2 pairs, different videos, answers of very different lengths), backpropagates, and compares the loss, the
logged chosen/rejected log-probs and every LoRA gradient against the duplicated path (relative difference <= 1e-4).
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch
from datasets import Dataset, load_from_disk
from peft import LoraConfig

from tests.test_trainer import QLORA_FAMILIES
from tpo_hf import TPOConfig, TPOTrainer
from tpo_hf.families import FAMILIES
from tpo_hf.prefix_sharing import (
    LAYOUT_KWARG,
    PrefixLayout,
    _block_mask,
    install_prefix_attention,
    pack_pairs,
    prefix_attention_forward,
    unsupported_reason,
)
from tpo_hf.tiny import build_tiny_model, tiny_tpo_config

SUPPORTED = sorted(name for name, family in FAMILIES.items() if family.supports_prefix_sharing)
TOLERANCE = 1e-4

# Two pairs over different videos; in each, one answer is much longer than the other (and the longer side differs)
ROWS = [
    {
        "prompt": "What colour is the moving shape?",
        "chosen": "It is a red square moving right at first, and then a blue circle that moves to the left side.",
        "rejected": "No.",
        "video": "red_blue.mp4",
    },
    {
        "prompt": "What happens between 0 and 3 seconds?",
        "chosen": "Green.",
        "rejected": "A yellow square slides to the left after a green circle has moved right across the frame.",
        "video": "green_yellow.mp4",
    },
]

DENSE = dict(prefix_sharing=True, prefix_sharing_attention="dense")
PATHS = {
    "duplicated": dict(share_video_encoding=False, prefix_sharing=False),
    "shared_encoding": dict(share_video_encoding=True, prefix_sharing=False),
    "prefix_sharing": dict(share_video_encoding=True, **DENSE),
    "prefix_sharing_unshared_encoding": dict(share_video_encoding=False, **DENSE),
    "prefix_sharing_checkpointing": dict(share_video_encoding=True, activation_checkpointing=True, **DENSE),
    "duplicated_checkpointing": dict(share_video_encoding=False, prefix_sharing=False, activation_checkpointing=True),
    # segment-wise attention (no L x L mask): what "auto" (the default) uses with sdpa, and forced
    "prefix_sharing_segments": dict(share_video_encoding=True, prefix_sharing=True),
    "prefix_sharing_segments_checkpointing": dict(
        share_video_encoding=True,
        prefix_sharing=True,
        prefix_sharing_attention="segments",
        activation_checkpointing=True,
    ),
}


def _args(tmp_path, video_dir, **settings) -> TPOConfig:
    settings = {"activation_checkpointing": False, **settings}
    return tiny_tpo_config(tmp_path / "out", video_root=str(video_dir), **settings)


def _trainer(family, tmp_path, video_dir, dataset=None, attn_implementation=None, **settings):
    model, processor = build_tiny_model(family)
    if attn_implementation is not None:
        model.set_attn_implementation(attn_implementation)
    args = _args(tmp_path, video_dir, **settings)
    torch.manual_seed(0)  # the same LoRA initialisation for every path
    # init_lora_weights=False: the policy differs from the reference, so the DPO term has a real gradient
    lora = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False)
    dataset = dataset if dataset is not None else Dataset.from_list(ROWS)
    return TPOTrainer(model, args=args, train_dataset=dataset, processing_class=processor, peft_config=lora)


def _loss_and_grads(trainer):
    batch = trainer.data_collator([dict(row, tpo_row_index=i) for i, row in enumerate(ROWS)])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {name: p.grad.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    metrics = {key: trainer._metrics["train"][key][-1] for key in ("logps/chosen", "logps/rejected")}
    return loss.detach(), grads, metrics


def _assert_close(result, expected, label):
    loss, grads, metrics = result
    expected_loss, expected_grads, expected_metrics = expected
    assert torch.isfinite(loss)
    assert abs(loss - expected_loss) <= TOLERANCE * abs(expected_loss), f"{label}: loss {loss} vs {expected_loss}"
    for key, value in metrics.items():
        assert abs(value - expected_metrics[key]) <= TOLERANCE * abs(expected_metrics[key]), f"{label}: {key}"
    assert grads.keys() == expected_grads.keys()
    nonzero = 0
    for name, grad in grads.items():
        reference = expected_grads[name]
        nonzero += bool(reference.abs().sum() > 0)
        error = (grad - reference).norm() / reference.norm().clamp(min=1e-12)
        assert error <= TOLERANCE, f"{label}: gradient of {name} differs by {error:.2e} (relative)"
    assert nonzero == len(grads), f"{label}: some LoRA weights got no gradient"


@pytest.mark.parametrize("family", SUPPORTED)
def test_all_paths_match_duplicated_rows(family, tmp_path, video_dir):
    expected = _loss_and_grads(_trainer(family, tmp_path, video_dir, **PATHS["duplicated"]))
    for name, settings in PATHS.items():
        if name == "duplicated":
            continue
        trainer = _trainer(family, tmp_path, video_dir, **settings)
        assert trainer._prefix_sharing == settings["prefix_sharing"]
        _assert_close(_loss_and_grads(trainer), expected, f"{family}/{name}")
        if settings["prefix_sharing"]:
            stats = trainer._last_packing_stats
            # one pass over each prompt: fewer language-model tokens than the two padded rows per pair
            assert stats["packed_tokens"] < stats["row_tokens"]
            segments = settings.get("prefix_sharing_attention", "auto") in ("auto", "segments")
            assert stats["segment_attention"] == segments
            if segments:
                # the 4D mask handed to the model is a one-element view, and the text attention is the wrapper
                assert stats["mask_bytes"] == 1
                text_config = trainer.model.get_base_model().config.get_text_config()
                assert text_config._attn_implementation == "tpo_prefix_sdpa"
                assert trainer.model.get_base_model().config.vision_config._attn_implementation == "sdpa"
            else:
                assert stats["mask_bytes"] >= stats["packed_length"] ** 2


def test_eager_attention_float_mask(tmp_path, video_dir):
    """Eager attention adds the mask to the scores: the packed mask is a float mask there."""
    family = "qwen2_5_vl"
    expected = _loss_and_grads(
        _trainer(family, tmp_path, video_dir, attn_implementation="eager", **PATHS["duplicated"])
    )
    trainer = _trainer(family, tmp_path, video_dir, attn_implementation="eager", **PATHS["prefix_sharing"])
    assert trainer._prefix_sharing
    _assert_close(_loss_and_grads(trainer), expected, "eager")


def test_pack_pairs_layout():
    """Two pairs, prompt lengths 3 and 2: the packed rows, labels, positions and block mask, written out by hand."""
    # rows: pair 0 chosen (prompt 10 11 12, answer 20 21), pair 1 chosen (prompt 13 14, answer 22),
    #       pair 0 rejected (answer 30), pair 1 rejected (answer 31 32); 0 is padding
    input_ids = torch.tensor(
        [[10, 11, 12, 20, 21, 0], [13, 14, 22, 0, 0, 0], [10, 11, 12, 30, 0, 0], [13, 14, 31, 32, 0, 0]]
    )
    attention_mask = (input_ids != 0).long()
    completion_mask = torch.tensor([[0, 0, 0, 1, 1, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0], [0, 0, 1, 1, 0, 0]])
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    packed = pack_pairs(input_ids, attention_mask, completion_mask, positions)
    kwargs = packed.model_kwargs
    # pair 0: [10 11] [12 20] [12]; pair 1: [13] [14] [14 31] + padding
    assert kwargs["input_ids"].tolist() == [[10, 11, 12, 20, 12], [13, 14, 14, 31, 0]]
    assert packed.shift_labels.tolist() == [[-100, -100, 20, 21, 30], [-100, 22, 31, 32, -100]]
    assert kwargs["position_ids"].tolist() == [[0, 1, 2, 3, 2], [0, 1, 1, 2, 0]]
    mask = kwargs["attention_mask"][:, 0]
    # pair 0, rejected branch (column 4) sees the prompt (0, 1) and itself, not the chosen branch (2, 3)
    assert mask[0, 4].tolist() == [True, True, False, False, True]
    assert mask[1, 3].tolist() == [True, False, True, True, False]
    assert mask[1, 4].tolist() == [False, False, False, False, True]  # padding sees itself only
    # un-packing puts each log-prob where the unshared forward has it: row r, column of the token before it
    unpacked = packed.unpack(torch.arange(1.0, 11.0).view(2, 5))
    assert unpacked.tolist() == [[0, 0, 3, 4, 0], [0, 7, 0, 0, 0], [0, 0, 5, 0, 0], [0, 8, 9, 0, 0]]


def _varlen_reference(query, key, value, index, scale):
    """What `flash_attn_varlen_func(..., causal=True)` computes, in plain torch: each sequence's queries attend
    causally to its keys, aligned bottom-right (flash-attn >= 2.1), so the GPU path's indices are checked here."""
    out = []
    cu_q, cu_k = index["cu_seqlens_q"].tolist(), index["cu_seqlens_k"].tolist()
    for (q0, q1), (k0, k1) in zip(zip(cu_q, cu_q[1:]), zip(cu_k, cu_k[1:])):
        q, k, v = (x.transpose(0, 1)[None] for x in (query[q0:q1], key[k0:k1], value[k0:k1]))
        allowed = torch.ones(q1 - q0, k1 - k0, dtype=torch.bool).tril(diagonal=(k1 - k0) - (q1 - q0))
        out.append(
            torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale, enable_gqa=True)[
                0
            ].transpose(0, 1)
        )
    return torch.cat(out)


class _Attention(torch.nn.Module):
    pass


def test_segment_attention_equals_dense_block_mask():
    """The segment-wise attention (CPU SDPA path), the flash varlen layout (checked with a plain-torch varlen) and
    SDPA under the dense block mask agree on every real packed position, with grouped query heads."""
    torch.manual_seed(0)
    segments = [(7, 3, 5), (4, 1, 2)]  # (prompt, chosen, rejected) per pair; the second pair is padded
    packed_length, heads, kv_heads, dim = 15, 4, 2, 8
    query = torch.randn(2, heads, packed_length, dim, requires_grad=True)
    key = torch.randn(2, kv_heads, packed_length, dim, requires_grad=True)
    value = torch.randn(2, kv_heads, packed_length, dim, requires_grad=True)
    layout = PrefixLayout.build(segments, "cpu")
    module = _Attention().train()
    out, _ = prefix_attention_forward(module, query, key, value, None, scaling=0.3, **{LAYOUT_KWARG: layout})

    ids = torch.full((2, packed_length), -1)
    for pair, (prompt, chosen, rejected) in enumerate(segments):
        ids[pair, : prompt + chosen + rejected] = torch.tensor([0] * prompt + [1] * chosen + [2] * rejected)
    real = ids != -1
    dense = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=_block_mask(ids, torch.bool), scale=0.3, enable_gqa=True
    ).transpose(1, 2)
    assert torch.allclose(out[real], dense[real], atol=1e-6)
    assert torch.equal(out[~real], torch.zeros_like(out[~real]))
    # gradients flow to the prompt keys from both branches
    (out[real] ** 2).sum().backward()
    grads = [t.grad.clone() for t in (query, key, value)]
    for t in (query, key, value):
        t.grad = None
    (dense[real] ** 2).sum().backward()
    for grad, t in zip(grads, (query, key, value)):
        assert torch.allclose(grad, t.grad, atol=1e-5)

    index = layout.varlen(packed_length, "cpu")
    flat = [x.detach().transpose(1, 2).reshape(2 * packed_length, x.shape[1], dim) for x in (query, key, value)]
    varlen = _varlen_reference(
        flat[0][index["query_index"]], flat[1][index["key_index"]], flat[2][index["key_index"]], index, 0.3
    )
    assert torch.allclose(
        varlen, dense.detach().reshape(2 * packed_length, heads, dim)[index["query_index"]], atol=1e-6
    )
    assert index["query_index"].tolist() == real.reshape(-1).nonzero().squeeze(1).tolist()


def test_wrapped_attention_leaves_unpacked_forwards_alone():
    """With the wrapper installed, a forward without a layout (generation, evaluation) gets the usual padding mask
    and the wrapped implementation's result."""
    model, _ = build_tiny_model("qwen2_5_vl")
    model.eval()
    input_ids = torch.randint(1, 100, (2, 9))
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, :3] = 0  # left padding: the mask matters
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=attention_mask).logits
        assert install_prefix_attention(model) == "sdpa"
        assert model.config.get_text_config()._attn_implementation == "tpo_prefix_sdpa"
        assert model.config.vision_config._attn_implementation == "sdpa"
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
    assert torch.allclose(logits[attention_mask.bool()], expected[attention_mask.bool()], atol=1e-5)


def test_eager_attention_keeps_the_dense_mask(tmp_path, video_dir, caplog):
    """Eager attention's function is model-specific, so it cannot be wrapped: 'auto' logs the dense fallback once and
    'segments' refuses, naming the implementation."""
    with caplog.at_level(logging.WARNING, logger="tpo_hf.trainer"):
        trainer = _trainer(
            "qwen2_vl", tmp_path, video_dir, attn_implementation="eager", **PATHS["prefix_sharing_segments"]
        )
    assert trainer._prefix_sharing and trainer._prefix_attention == "dense"
    assert [r.getMessage() for r in caplog.records if "dense L x L block mask" in r.getMessage()]
    with pytest.raises(ValueError, match="'eager'"):
        _trainer(
            "qwen2_vl",
            tmp_path,
            video_dir,
            attn_implementation="eager",
            **dict(PATHS["prefix_sharing_segments"], prefix_sharing_attention="segments"),
        )


def test_pack_pairs_rejects_rows_that_are_not_pairs():
    input_ids = torch.tensor([[10, 11, 20], [10, 12, 30]])
    ones = torch.ones_like(input_ids)
    completion_mask = torch.tensor([[0, 0, 1], [0, 0, 1]])
    with pytest.raises(ValueError, match="pair 0"):
        pack_pairs(input_ids, ones, completion_mask, ones.cumsum(-1) - 1)


def test_family_without_support_falls_back(tmp_path, video_dir, monkeypatch, caplog):
    family = "llava_next_video"
    monkeypatch.setitem(FAMILIES, family, dataclasses.replace(FAMILIES[family], supports_prefix_sharing=False))
    model, _ = build_tiny_model(family)
    assert "does not support" in unsupported_reason(model, FAMILIES[family])
    expected = _loss_and_grads(_trainer(family, tmp_path, video_dir, **PATHS["duplicated"]))
    with caplog.at_level(logging.WARNING, logger="tpo_hf.trainer"):
        trainer = _trainer(family, tmp_path, video_dir, **PATHS["prefix_sharing"])
    assert not trainer._prefix_sharing
    assert any("prefix_sharing is off" in record.getMessage() for record in caplog.records)
    _assert_close(_loss_and_grads(trainer), expected, "fallback")


class _CountingTrainer(TPOTrainer):
    """Counts reference batches computed, to tell a cache hit from a recomputation."""

    ref_batches = 0

    def compute_ref_log_probs(self, model, inputs):
        type(self).ref_batches += 1
        return super().compute_ref_log_probs(model, inputs)


def test_precomputed_reference_is_reused_by_a_second_trainer(tmp_path, video_dir):
    family = "qwen2_5_vl"
    Dataset.from_list(ROWS).save_to_disk(tmp_path / "data")
    # Reference log-probs with the duplicated rows and no precomputation: what the cache must hold
    plain = _trainer(family, tmp_path, video_dir, **PATHS["duplicated"])
    batch = plain.data_collator([dict(row, tpo_row_index=i) for i, row in enumerate(ROWS)])
    expected_chosen, expected_rejected = plain.compute_ref_log_probs(plain.model, batch)

    settings = dict(PATHS["prefix_sharing"], precompute_ref_log_probs=True)
    _CountingTrainer.ref_batches = 0
    trainers = []
    for _ in range(2):
        model, processor = build_tiny_model(family)
        args = _args(tmp_path, video_dir, **settings)
        trainers.append(
            _CountingTrainer(
                model,
                args=args,
                train_dataset=load_from_disk(tmp_path / "data"),
                processing_class=processor,
                peft_config=LoraConfig(r=4, lora_alpha=8),
            )
        )
        if len(trainers) == 1:
            assert _CountingTrainer.ref_batches == 1  # computed once, before training
    assert _CountingTrainer.ref_batches == 1, "the second trainer recomputed the reference instead of reusing it"
    for trainer in trainers:
        assert trainer._prefix_sharing
        stored = trainer.train_dataset
        assert torch.allclose(torch.tensor(stored["ref_chosen_logps"]), expected_chosen, rtol=TOLERANCE)
        assert torch.allclose(torch.tensor(stored["ref_rejected_logps"]), expected_rejected, rtol=TOLERANCE)
    # and the training step reads them from the batch
    trainer = trainers[1]
    batch = next(iter(trainer.get_train_dataloader()))
    assert "ref_chosen_logps" in batch
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    assert torch.isfinite(loss)


@pytest.mark.require_bitsandbytes
@pytest.mark.parametrize("family", [name for name in QLORA_FAMILIES if FAMILIES[name].supports_prefix_sharing])
def test_qlora_prefix_sharing_matches_duplicated_rows(family, tiny_model_dirs, tmp_path, video_dir):
    """QLoRA: a 4-bit language model (bitsandbytes on CPU) under prefix sharing gives the duplicated rows' loss and
    gradients."""
    from transformers import BitsAndBytesConfig

    from tpo_hf import VideoPreferenceProcessor

    model_dir = tiny_model_dirs(family)

    def make(**settings):
        quantization = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        )
        args = _args(tmp_path, video_dir, model_init_kwargs={"dtype": "float32"}, **settings)
        torch.manual_seed(0)
        trainer = TPOTrainer(
            str(model_dir),
            args=args,
            train_dataset=Dataset.from_list(ROWS),
            processing_class=VideoPreferenceProcessor.from_pretrained(model_dir, num_frames=4, video_root=video_dir),
            quantization_config=quantization,
            peft_config=LoraConfig(r=4, lora_alpha=8, init_lora_weights=False),
        )
        # TRL keeps QLoRA adapters in bf16, whose rounding (~1e-2) would hide what this compares: back to fp32, from
        # the same bf16 values in both trainers
        for parameter in trainer.model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.float()
        return trainer

    expected_trainer = make(**PATHS["duplicated"])
    assert expected_trainer.model.get_base_model().is_loaded_in_4bit
    expected = _loss_and_grads(expected_trainer)
    for path in ("prefix_sharing", "prefix_sharing_segments"):
        trainer = make(**PATHS[path])
        assert trainer._prefix_sharing
        _assert_close(_loss_and_grads(trainer), expected, f"qlora/{family}/{path}")
