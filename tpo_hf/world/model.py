"""The world's small video-LMM: a real Qwen3-VL (registry family `qwen3_vl`, the shipped base) or Qwen2-VL
(`qwen2_vl`) sized for CPU pretraining.

Design choices, each for speed on a 2-core CPU without losing what makes it a video-LMM:
- frames are resized to 16x16 with 8-pixel patches, 2x2 spatial merge and temporal patch 1, so every frame (one
  scene, one second) is one visual token (Qwen3-VL writes its timestamp as text before it; Qwen2-VL gives it an
  M-RoPE time position);
- a byte-level BPE tokenizer trained (deterministically) on the world's own sentences, so every world word is one
  token and prompts are ~40 tokens instead of ~200 bytes.
"""

from __future__ import annotations

import json

from ..tiny import SPECIAL_TOKENS, qwen_processor, qwen_text_config, qwen_vision_token_ids
from .timeline import COLOURS, NEEDLE_SHAPE

TOKEN_SIDE = 16  # pixels per frame side after resizing: one 2x2 group of 8-pixel patches = one token
MAX_POSITIONS = 2048


def world_sentences(family: str = "qwen2_vl") -> list[str]:
    """Text the tokenizer is trained on: every word and phrase that prompts, answers and captions use."""
    from .questions import ALL_TEMPLATES, LETTER_POST_PROMPT, POST_PROMPT, describe
    from .timeline import WorldScene

    words = [*COLOURS, NEEDLE_SHAPE, "square", "shape"]
    sentences = list(ALL_TEMPLATES)
    sentences += [describe(WorldScene(c)) for c in COLOURS]
    sentences += [describe(WorldScene(c, needle=True)) for c in COLOURS]
    sentences += [" ".join(words), POST_PROMPT, LETTER_POST_PROMPT]
    sentences += [f"{letter}. {word}" for letter in "ABCD" for word in words]
    sentences += [f"the {c} shape" for c in COLOURS]
    # answers open the assistant turn without a leading space; the chat template's role names; caption requests
    sentences += [*words, *(f"the {c} shape" for c in COLOURS), "user", "assistant", "system"]
    from ..curation.prompts import CAPTION_PROMPTS

    sentences += list(CAPTION_PROMPTS.values())
    if family == "qwen3_vl":  # its processor writes each frame's timestamp before the frame
        sentences += [f"<{second:.1f} seconds>" for second in range(64)]
    return sentences


def build_world_tokenizer(family: str = "qwen2_vl"):
    """A Qwen2 tokenizer (byte-level BPE) whose merges are learned from `world_sentences` (deterministic)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    alphabet = list(bytes_to_unicode().values())
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=1024, min_frequency=1, initial_alphabet=alphabet, show_progress=False)
    corpus = world_sentences(family)
    bpe.train_from_iterator(corpus * 4, trainer=trainer)
    vocab = bpe.get_vocab()
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in json.loads(bpe.to_str())["model"]["merges"]
    ]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=merges, unk_token=None, pad_token="<|endoftext|>", eos_token="<|im_end|>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    return tokenizer


def build_world_model(seed: int = 0, hidden_size: int = 128, num_layers: int = 4, family: str = "qwen2_vl"):
    """A randomly initialised world video-LMM and its processor (chat template, 16x16 frames, one token per frame).

    `family` "qwen2_vl": frames get M-RoPE (time, height, width) positions; "qwen3_vl": every frame is preceded by
    its timestamp as text ("<3.0 seconds>") and positioned like text, which keeps the question's offset to the
    frames independent of the video's length."""
    import torch
    import transformers

    if family not in ("qwen2_vl", "qwen3_vl"):
        raise ValueError(f"world model family must be 'qwen2_vl' or 'qwen3_vl', got {family!r}")
    qwen3 = family == "qwen3_vl"
    prefix = "Qwen3VL" if qwen3 else "Qwen2VL"
    config_cls, model_cls, processor_cls, video_processor_cls = (
        getattr(transformers, f"{prefix}{suffix}")
        for suffix in ("Config", "ForConditionalGeneration", "Processor", "VideoProcessor")
    )
    tokenizer = build_world_tokenizer(family)
    heads = 4
    half_head = hidden_size // heads // 2
    sections = [half_head - 2 * (half_head // 3), half_head // 3, half_head // 3]  # temporal, height, width
    rope = {"rope_type": "default", "mrope_section": sections, "rope_theta": 10000.0}
    text_config = qwen_text_config(
        tokenizer,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=True,
        rope_parameters=rope | ({"mrope_interleaved": True} if qwen3 else {}),
        **({"head_dim": hidden_size // heads} if qwen3 else {}),
    )
    vision_config = dict(
        depth=2, num_heads=2, patch_size=8, spatial_merge_size=2, temporal_patch_size=1
    )  # 8-pixel patches, 2x2 merge: a 16x16 frame is one token
    if qwen3:
        vision_config |= dict(
            hidden_size=64,
            intermediate_size=128,
            out_hidden_size=hidden_size,
            in_channels=3,
            num_position_embeddings=4,  # a 16x16 frame is 2x2 patches
            deepstack_visual_indexes=[],
        )
    else:
        vision_config |= dict(embed_dim=64, hidden_size=hidden_size, mlp_ratio=2, in_chans=3)
    config = config_cls(text_config=text_config, vision_config=vision_config, **qwen_vision_token_ids(tokenizer))
    pixels = TOKEN_SIDE * TOKEN_SIDE  # every frame is resized to exactly 16x16
    processor = qwen_processor(
        processor_cls,
        video_processor_cls,
        tokenizer,
        patch_size=8,
        temporal_patch_size=1,
        min_pixels=pixels,
        max_pixels=pixels,
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.do_sample = False
    return model, processor
