"""Tiny random video-LMMs built offline (test fixtures and the `tpo-hf quickstart` default).

No weights can be downloaded here, so every family in the registry gets a miniature model built from its config, a
byte-level tokenizer made in code and a chat template with the family's video placeholder. The models are random:
they exercise every code path (processing, M-RoPE, vision features, LoRA, saving) but produce gibberish.

One module over 500 lines on purpose: one miniature builder per registered family, side by side, so a new family adds
one builder next to its neighbours.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import PreTrainedModel, ProcessorMixin, Qwen2Tokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

if TYPE_CHECKING:
    from .config import TPOConfig

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
    "<video>",
    "<image>",
]

# ChatML as the Qwen and LLaVA-OneVision families write it; VIDEO_MARKER / IMAGE_MARKER are the family's placeholders
# (images: what an OpenAI-compatible server gets when it refuses video, tests/test_curation.py).
_CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}VIDEO_MARKER{% elif part['type'] == 'image' %}IMAGE_MARKER"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# LLaVA-NeXT-Video's Vicuna-style template.
_VICUNA_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'video' %}<video>\n"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% if message['role'] == 'user' %} {% else %}<|im_end|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_tokenizer(named_tokens: dict[str, str] | None = None) -> Qwen2Tokenizer:
    """A byte-level BPE tokenizer with no merges: 256 byte symbols plus the families' special tokens.

    `named_tokens` adds model-specific special tokens reachable as attributes (InternVL's `tokenizer.video_token`).
    """
    vocab = {symbol: index for index, symbol in enumerate(bytes_to_unicode().values())}
    extra = {"model_specific_special_tokens": named_tokens} if named_tokens else {}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab, merges=[], unk_token=None, pad_token="<|endoftext|>", eos_token="<|im_end|>", **extra
    )
    extra_tokens = [token for token in (named_tokens or {}).values() if token not in SPECIAL_TOKENS]
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:] + extra_tokens})
    return tokenizer


def _token_ids(tokenizer) -> dict[str, int]:
    return {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}


def qwen_text_config(tokenizer, **overrides) -> dict:
    """A tiny Qwen2 text config for `tokenizer`; `overrides` replace any field (the world model is larger)."""
    return (
        dict(
            vocab_size=len(tokenizer),
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            tie_word_embeddings=False,
        )
        | overrides
    )


def qwen_vision_token_ids(tokenizer) -> dict[str, int]:
    """The Qwen-VL config fields naming the vision special tokens."""
    ids = _token_ids(tokenizer)
    return dict(
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def qwen_processor(
    processor_cls,
    video_processor_cls,
    tokenizer,
    patch_size: int = 4,
    temporal_patch_size: int = 2,
    min_pixels: int = 16 * 16,
    max_pixels: int = 64 * 64,
) -> ProcessorMixin:
    """A Qwen-VL processor whose frames become (2 x `patch_size`)-pixel merged patches, resized within
    `min_pixels`..`max_pixels` (default: 16x16-pixel merged patches within 64x64 pixels)."""
    from transformers import Qwen2VLImageProcessor

    pixel_kwargs = dict(patch_size=patch_size, temporal_patch_size=temporal_patch_size, merge_size=2)
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    return processor_cls(
        image_processor=Qwen2VLImageProcessor(size=size, **pixel_kwargs),
        video_processor=video_processor_cls(size=size, **pixel_kwargs),
        tokenizer=tokenizer,
        chat_template=_CHATML_TEMPLATE.replace("VIDEO_MARKER", "<|vision_start|><|video_pad|><|vision_end|>").replace(
            "IMAGE_MARKER", "<|vision_start|><|image_pad|><|vision_end|>"
        ),
    )


# head_dim 16 -> M-RoPE sections (temporal, height, width) must sum to head_dim / 2
_QWEN_ROPE = {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}
_QWEN_VISION = dict(depth=2, num_heads=2, patch_size=4, spatial_merge_size=2, temporal_patch_size=2)


def _build_qwen2_vl(tokenizer, qwen25: bool = False):
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    vision_config = dict(_QWEN_VISION, in_chans=3)
    if qwen25:
        vision_config.update(hidden_size=32, intermediate_size=64, out_hidden_size=64, fullatt_block_indexes=[1])
        vision_config["window_size"] = 16
        config_cls, model_cls, processor_cls = (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            Qwen2_5_VLProcessor,
        )
    else:
        vision_config.update(embed_dim=32, hidden_size=64, mlp_ratio=2)
        config_cls, model_cls, processor_cls = Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    config = config_cls(
        text_config=qwen_text_config(tokenizer, rope_parameters=_QWEN_ROPE),
        vision_config=vision_config,
        **qwen_vision_token_ids(tokenizer),
    )
    return model_cls(config), qwen_processor(processor_cls, Qwen2VLVideoProcessor, tokenizer)


def _build_qwen3_vl(tokenizer, moe: bool = False):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor

    rope = {**_QWEN_ROPE, "mrope_interleaved": True}
    text_overrides = {}
    config_cls, model_cls = Qwen3VLConfig, Qwen3VLForConditionalGeneration
    if moe:
        from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

        config_cls, model_cls = Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration
        # 4 experts, 2 per token, small enough to stay cheap; every decoder layer is sparse, as in Qwen3-VL-30B-A3B
        text_overrides = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=1)
    vision_config = dict(
        _QWEN_VISION,
        hidden_size=32,
        intermediate_size=64,
        out_hidden_size=64,
        num_position_embeddings=64,
        deepstack_visual_indexes=[0],
    )
    config = config_cls(
        text_config=qwen_text_config(tokenizer, head_dim=16, rope_parameters=rope, **text_overrides),
        vision_config=vision_config,
        **qwen_vision_token_ids(tokenizer),
    )
    return model_cls(config), qwen_processor(Qwen3VLProcessor, Qwen3VLVideoProcessor, tokenizer)


# LLaVA families: 32x32-pixel frames cut into 8x8 patches
_LLAVA_IMAGE_SIZE, _LLAVA_PATCH_SIZE = 32, 8


def _llava_config_kwargs(tokenizer, vision_model_type: str, **vision_extra) -> dict:
    """Text, vision and token settings shared by the tiny LLaVA-OneVision and LLaVA-NeXT-Video configs."""
    ids = _token_ids(tokenizer)
    vision_config = dict(
        model_type=vision_model_type,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=_LLAVA_IMAGE_SIZE,
        patch_size=_LLAVA_PATCH_SIZE,
        **vision_extra,
    )
    return dict(
        text_config=dict(model_type="qwen2", **qwen_text_config(tokenizer)),
        vision_config=vision_config,
        image_token_index=ids["<image>"],
        video_token_index=ids["<video>"],
        vision_feature_layer=-1,
        image_grid_pinpoints=[[_LLAVA_IMAGE_SIZE, _LLAVA_IMAGE_SIZE]],
    )


def _build_llava_onevision(tokenizer):
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    image_size, patch_size = _LLAVA_IMAGE_SIZE, _LLAVA_PATCH_SIZE
    config = LlavaOnevisionConfig(
        **_llava_config_kwargs(tokenizer, "siglip_vision_model"), vision_feature_select_strategy="full"
    )
    size = {"height": image_size, "width": image_size}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(size=size, image_grid_pinpoints=[[image_size, image_size]]),
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        tokenizer=tokenizer,
        num_image_tokens=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="full",
        chat_template=_CHATML_TEMPLATE.replace("VIDEO_MARKER", "<video>").replace("IMAGE_MARKER", "<image>"),
    )
    return LlavaOnevisionForConditionalGeneration(config), processor


def _build_llava_next_video(tokenizer):
    from transformers import (
        LlavaNextImageProcessor,
        LlavaNextVideoConfig,
        LlavaNextVideoForConditionalGeneration,
        LlavaNextVideoProcessor,
        LlavaNextVideoVideoProcessor,
    )

    image_size, patch_size = _LLAVA_IMAGE_SIZE, _LLAVA_PATCH_SIZE
    config = LlavaNextVideoConfig(
        **_llava_config_kwargs(tokenizer, "clip_vision_model", projection_dim=32),
        vision_feature_select_strategy="default",
        spatial_pool_stride=2,
        image_seq_length=(image_size // patch_size) ** 2,
        video_seq_length=(image_size // patch_size // 2) ** 2,
    )
    size = {"shortest_edge": image_size}
    crop = {"height": image_size, "width": image_size}
    processor = LlavaNextVideoProcessor(
        video_processor=LlavaNextVideoVideoProcessor(size=size, crop_size=crop),
        image_processor=LlavaNextImageProcessor(
            size=size, crop_size=crop, image_grid_pinpoints=[[image_size, image_size]]
        ),
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=_VICUNA_TEMPLATE,
    )
    return LlavaNextVideoForConditionalGeneration(config), processor


# SmolVLM's own special tokens (the processor builds the per-frame prompt from them)
_SMOLVLM_TOKENS = ["<fake_token_around_image>", "<global-img>", "<end_of_utterance>"]


def _build_smolvlm(tokenizer):
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:] + _SMOLVLM_TOKENS})
    image_size, patch_size, scale_factor = _LLAVA_IMAGE_SIZE, _LLAVA_PATCH_SIZE, 2
    text_config = dict(model_type="llama", **qwen_text_config(tokenizer), head_dim=16)
    config = SmolVLMConfig(
        text_config=text_config,
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch_size,
        ),
        scale_factor=scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    # Every frame is resized into one 32x32 tile: (32 / 8)^2 patches / scale_factor^2 = 4 tokens per frame
    size = {"longest_edge": image_size}
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(size=size, max_image_size=size, do_image_splitting=False),
        video_processor=SmolVLMVideoProcessor(size=size, max_image_size=size),
        tokenizer=tokenizer,
        image_seq_len=(image_size // patch_size) ** 2 // scale_factor**2,
    )
    return SmolVLMForConditionalGeneration(config), processor


# InternVL names its image tokens on the tokenizer
_INTERNVL_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}


def _build_internvl(_tokenizer):
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    tokenizer = build_tokenizer(_INTERNVL_TOKENS)
    image_size, patch_size = _LLAVA_IMAGE_SIZE, _LLAVA_PATCH_SIZE
    config = InternVLConfig(
        text_config=dict(model_type="qwen2", **qwen_text_config(tokenizer)),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=[image_size, image_size],
            patch_size=[patch_size, patch_size],
        ),
        image_token_id=tokenizer.context_image_token_id,
        # (32 / 8)^2 patches, pixel-shuffled by 0.5: 4 tokens per frame
        image_seq_length=(image_size // patch_size) ** 2 // 4,
    )
    size = {"height": image_size, "width": image_size}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=False),
        video_processor=InternVLVideoProcessor(size=size),
        tokenizer=tokenizer,
        image_seq_length=config.image_seq_length,
        chat_template=_CHATML_TEMPLATE.replace("VIDEO_MARKER", "<video>\n"),
    )
    return InternVLForConditionalGeneration(config), processor


# GLM-4.1V's vision and frame tokens (the processor writes each frame as begin/end-of-image + its second)
_GLM4V_TOKENS = [
    "<|image|>",
    "<|video|>",
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
]


def _build_glm4v(tokenizer, moe: bool = False):
    from transformers import (
        Glm4vConfig,
        Glm4vForConditionalGeneration,
        Glm4vImageProcessor,
        Glm4vProcessor,
        Glm4vVideoProcessor,
    )

    config_cls, model_cls, text_overrides = Glm4vConfig, Glm4vForConditionalGeneration, {}
    if moe:
        from transformers import Glm4vMoeConfig, Glm4vMoeForConditionalGeneration

        config_cls, model_cls = Glm4vMoeConfig, Glm4vMoeForConditionalGeneration
        # layer 0 dense, layer 1 sparse (4 experts, 2 per token, one shared expert), as GLM-4.5V's first layer is
        text_overrides = dict(
            n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, first_k_dense_replace=1
        )

    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:] + _GLM4V_TOKENS})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in _GLM4V_TOKENS}
    # head_dim 16 with half of it rotary (as GLM-4.1V): M-RoPE sections sum to 4
    rope = {"rope_type": "default", "mrope_section": [2, 1, 1], "partial_rotary_factor": 0.5, "rope_theta": 10000.0}
    config = config_cls(
        text_config=qwen_text_config(tokenizer, rope_parameters=rope, **text_overrides),
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            image_size=32,
            patch_size=4,
            spatial_merge_size=2,
            temporal_patch_size=2,
            out_hidden_size=64,
        ),
        image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"],
        image_start_token_id=ids["<|begin_of_image|>"],
        image_end_token_id=ids["<|end_of_image|>"],
        video_start_token_id=ids["<|begin_of_video|>"],
        video_end_token_id=ids["<|end_of_video|>"],
    )
    pixel_kwargs = dict(patch_size=4, temporal_patch_size=2, merge_size=2)
    size = {"shortest_edge": 16 * 16, "longest_edge": 64 * 64}
    processor = Glm4vProcessor(
        image_processor=Glm4vImageProcessor(size=size, **pixel_kwargs),
        video_processor=Glm4vVideoProcessor(size=size, **pixel_kwargs),
        tokenizer=tokenizer,
        chat_template=_CHATML_TEMPLATE.replace("VIDEO_MARKER", "<|begin_of_video|><|video|><|end_of_video|>"),
    )
    return model_cls(config), processor


def _build_video_llama_3(tokenizer):
    from transformers import (
        VideoLlama3Config,
        VideoLlama3ForConditionalGeneration,
        VideoLlama3ImageProcessor,
        VideoLlama3Processor,
        VideoLlama3VideoProcessor,
    )

    ids = _token_ids(tokenizer)
    config = VideoLlama3Config(
        text_config=dict(model_type="qwen2", **qwen_text_config(tokenizer)),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=4
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
    )
    # frames resized within 16x16..64x64 pixels into 4-pixel patches, merged 2x2
    pixel_kwargs = dict(patch_size=4, merge_size=2, size={"shortest_edge": 16 * 16, "longest_edge": 64 * 64})
    processor = VideoLlama3Processor(
        image_processor=VideoLlama3ImageProcessor(**pixel_kwargs),
        video_processor=VideoLlama3VideoProcessor(**pixel_kwargs),
        tokenizer=tokenizer,
        chat_template=_CHATML_TEMPLATE.replace("VIDEO_MARKER", "<|video_pad|>"),
    )
    return VideoLlama3ForConditionalGeneration(config), processor


# Qwen2.5-Omni names its modality tokens on the tokenizer (the processor reads them from there)
_OMNI_TOKENS = {
    "image_token": "<|IMAGE|>",
    "audio_token": "<|AUDIO|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
    "audio_bos_token": "<|audio_bos|>",
    "audio_eos_token": "<|audio_eos|>",
}


def _build_qwen_omni(_tokenizer, qwen3_moe: bool = False):
    """The Qwen2.5-Omni thinker, or Qwen3-Omni-MoE's (vision + audio encoders and the language model; no talker).
    Audio stays off: the audio tower is built, as in the checkpoints, but no audio input reaches it."""
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor, WhisperFeatureExtractor

    tokenizer = build_tokenizer(_OMNI_TOKENS)
    ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in _OMNI_TOKENS.items()}
    # The processor's own per-frame size (128 to 768 merged patches) overrides its video processor's, so the tiny model
    # keeps it with coarse patches (28 / 32 pixels, merged 2 x 2): 32 tokens per 2-frame group of a 64 x 128 clip
    patch_size = 32 if qwen3_moe else 28
    vision = dict(
        depth=2,
        hidden_size=32,
        intermediate_size=64,
        num_heads=2,
        patch_size=patch_size,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=64,
    )
    audio = dict(
        num_mel_bins=16,
        encoder_layers=1,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        d_model=16,
        output_dim=64,
        n_window=4,
        max_source_positions=32,
    )
    token_ids = dict(
        audio_start_token_id=ids["audio_bos_token"],
        audio_end_token_id=ids["audio_eos_token"],
        vision_start_token_id=ids["vision_bos_token"],
        vision_end_token_id=ids["vision_eos_token"],
    )
    if qwen3_moe:
        prefix = "Qwen3OmniMoe"
        vision.update(num_position_embeddings=64, deepstack_visual_indexes=[0])
        audio.update(downsample_hidden_size=8)
        # 4 experts, 2 per token, every decoder layer sparse, as in Qwen3-Omni-30B-A3B
        text = qwen_text_config(
            tokenizer,
            head_dim=16,
            rope_parameters={**_QWEN_ROPE, "mrope_interleaved": True},
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            decoder_sparse_step=1,
        )
        token_ids.update(
            image_token_id=ids["image_token"], video_token_id=ids["video_token"], audio_token_id=ids["audio_token"]
        )
    else:
        prefix = "Qwen2_5Omni"
        vision.update(window_size=2 * patch_size, fullatt_block_indexes=[1])
        text = qwen_text_config(tokenizer, rope_parameters=_QWEN_ROPE)
        token_ids.update(
            image_token_index=ids["image_token"],
            video_token_index=ids["video_token"],
            audio_token_index=ids["audio_token"],
        )
    config = getattr(transformers, f"{prefix}ThinkerConfig")(
        text_config=text, vision_config=vision, audio_config=audio, **token_ids
    )
    pixel_kwargs = dict(patch_size=patch_size, temporal_patch_size=2, merge_size=2)
    processor = getattr(transformers, f"{prefix}Processor")(
        image_processor=Qwen2VLImageProcessor(**pixel_kwargs),
        video_processor=Qwen2VLVideoProcessor(**pixel_kwargs),
        feature_extractor=WhisperFeatureExtractor(feature_size=16),
        tokenizer=tokenizer,
        chat_template=_CHATML_TEMPLATE.replace("VIDEO_MARKER", "<|vision_bos|><|VIDEO|><|vision_eos|>").replace(
            "IMAGE_MARKER", "<|vision_bos|><|IMAGE|><|vision_eos|>"
        ),
    )
    return getattr(transformers, f"{prefix}ThinkerForConditionalGeneration")(config), processor


TINY_BUILDERS: dict[str, Callable[[Qwen2Tokenizer], tuple[PreTrainedModel, ProcessorMixin]]] = {
    "qwen2_vl": _build_qwen2_vl,
    "qwen2_5_vl": lambda tokenizer: _build_qwen2_vl(tokenizer, qwen25=True),
    "qwen3_vl": _build_qwen3_vl,
    "qwen3_vl_moe": lambda tokenizer: _build_qwen3_vl(tokenizer, moe=True),
    "llava_onevision": _build_llava_onevision,
    "llava_next_video": _build_llava_next_video,
    "smolvlm": _build_smolvlm,
    "internvl": _build_internvl,
    "glm4v": _build_glm4v,
    "glm4v_moe": lambda tokenizer: _build_glm4v(tokenizer, moe=True),
    "video_llama_3": _build_video_llama_3,
    "qwen2_5_omni": _build_qwen_omni,
    "qwen3_omni_moe": lambda tokenizer: _build_qwen_omni(tokenizer, qwen3_moe=True),
}
DEFAULT_TINY_FAMILY = "qwen2_5_vl"


def build_tiny_model(family: str = DEFAULT_TINY_FAMILY, seed: int = 0) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Builds a random miniature model of `family` (a registry name) and its processor."""
    import torch

    if family not in TINY_BUILDERS:
        raise ValueError(f"No tiny model for family {family!r}; available: {sorted(TINY_BUILDERS)}")
    torch.manual_seed(seed)
    model, processor = TINY_BUILDERS[family](build_tokenizer())
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    return model.eval(), processor


def save_tiny_text_model(output_dir: str | Path, seed: int = 0) -> Path:
    """Writes a tiny random text-only Qwen2 LM (question/judge roles, `transformers serve`) with the same tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    output_dir = Path(output_dir)
    tokenizer = build_tokenizer()
    tokenizer.chat_template = _CHATML_TEMPLATE.replace("VIDEO_MARKER", "").replace("IMAGE_MARKER", "")
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**qwen_text_config(tokenizer)))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def tiny_tpo_config(output_dir: str | Path, **overrides: Any) -> TPOConfig:
    """The `TPOConfig` tiny models train with on CPU (tests, quickstart, benchmarks): 4 frames, 2 pairs per batch,
    one step logged, fp32, no gradient checkpointing, nothing saved mid-run, no reporting; `overrides` set any
    `TPOConfig` field."""
    from .config import TPOConfig

    settings: dict[str, Any] = dict(
        num_frames=4,
        per_device_train_batch_size=2,
        max_steps=1,
        logging_steps=1,
        bf16=False,
        use_cpu=True,
        activation_checkpointing=False,
        save_strategy="no",
        report_to=[],
        dataloader_pin_memory=False,
    )
    settings.update(overrides)
    return TPOConfig(str(output_dir), **settings)


def save_tiny_model(output_dir: str | Path, family: str = DEFAULT_TINY_FAMILY, seed: int = 0) -> Path:
    """Writes a tiny model and its processor to `output_dir`, loadable with `from_pretrained` like a Hub model."""
    output_dir = Path(output_dir)
    model, processor = build_tiny_model(family, seed)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir
