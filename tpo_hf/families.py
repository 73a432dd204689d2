"""The one place where video-LMM families differ: a registry of `VideoFamily` entries.

Every other module asks the family entry instead of testing model names. To support a new family, add one
`VideoFamily(...)` to `FAMILIES` (and, for the offline tests, a builder in `tpo_hf.tiny`).

What differs between families:
- which processor kwargs carry timing and pixel budget, and how the true sampled frame rate reaches the model
  (Qwen2.5-VL's `second_per_grid_ts`, Qwen3-VL's timestamps from `frames_indices`);
- which processor outputs are per video (to duplicate for the chosen and rejected rows) and which run along the
  token sequence (padded with `input_ids`);
- how the vision encoder is called on its own and how its output is duplicated for both rows of a pair;
- which modules are the language model (LoRA targets) and which are the vision side (kept frozen and out of 4-bit);
- which token the video features replace and under which `mm_encoder_outputs` key they go (families without a video
  tower feed frames through their image path);
- for Mixture-of-Experts families, where the routers are (load-balancing loss) and which weights are the experts;
- which class loads the trainable model where a checkpoint holds more (the Omni thinkers), and which modality a
  family leaves out (their audio: off, stated in the model card).

One module over 500 lines on purpose: it is the one place where families differ, so every entry and the helpers only
entries use sit together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .video import sampled_fps

# Linear layers of the language model only: PEFT's "all-linear" would also adapt the vision tower's linear layers.
LANGUAGE_MODEL_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


def _no_timing_fix(processed: dict[str, Any], metadatas: list[dict[str, Any]], processor: Any) -> None:
    return None


def _qwen25_second_per_grid_ts(processed: dict[str, Any], metadatas: list[dict[str, Any]], processor: Any) -> None:
    """Temporal RoPE of Qwen2.5-VL spaces frames by `second_per_grid_ts`; set it from the true sampled fps.

    The processor derives the rate as if the frames spanned the whole file; for a segment, a sparse view or a video
    with a hole cut out, that rate is wrong (ms-swift #5110), so it is recomputed from the frame indices.
    """
    temporal_patch_size = processor.video_processor.temporal_patch_size
    processed["second_per_grid_ts"] = torch.tensor(
        [temporal_patch_size / sampled_fps(metadata) for metadata in metadatas], dtype=torch.float32
    )


def _qwen3_video_placeholders(processor: Any) -> tuple[str, tuple[str, ...]]:
    """What Qwen3-VL's chat template writes for a video, and the texts that can stand in its place.

    Its processor writes every frame group as `<t seconds><|vision_start|><|video_pad|>...<|vision_end|>`. Qwen's own
    processor and transformers >= 5.25 replace the template's wrapper along with the token (the documented layout);
    transformers 5.18-5.24 replaced the token alone, leaving one more pair around all frames. From the bare token
    every release writes the documented layout (the default); the wrapper, and the wrapper inside one more pair, give
    the older layout on 5.18-5.24 and on 5.25 respectively, for models trained on it.
    """
    start, token, end = processor.vision_start_token, processor.video_token, processor.vision_end_token
    wrapper = start + token + end
    return wrapper, (token, wrapper, start + wrapper + end)


def _omni_video_second_per_grid(processed: dict[str, Any], metadatas: list[dict[str, Any]], processor: Any) -> None:
    """The Omni thinkers space frame groups by `video_second_per_grid` x `position_id_per_seconds` (TMRoPE); their
    processors derive the seconds from a fixed rate (Qwen2.5-Omni 2 fps, Qwen3-Omni 1 fps) whatever frames they are
    given, so they are set from the true sampled rate (as `_qwen25_second_per_grid_ts` does for Qwen2.5-VL)."""
    temporal_patch_size = processor.video_processor.temporal_patch_size
    processed["video_second_per_grid"] = torch.tensor(
        [temporal_patch_size / sampled_fps(metadata) for metadata in metadatas], dtype=torch.float32
    )


def _omni_row_positions(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The thinker's TMRoPE positions of the rows (its `get_rope_index` takes no `mm_token_type_ids`); no audio."""
    backbone = getattr(model, "model", model)
    positions, _ = backbone.get_rope_index(
        inputs["input_ids"],
        image_grid_thw=inputs.get("image_grid_thw"),
        video_grid_thw=inputs.get("video_grid_thw"),
        attention_mask=inputs["attention_mask"],
        use_audio_in_video=False,
        second_per_grids=inputs.get("video_second_per_grid"),
    )
    return positions


def _encode_qwen(model: Any, video_inputs: dict[str, torch.Tensor]) -> Any:
    return model.get_video_features(
        video_inputs["pixel_values_videos"], video_inputs["video_grid_thw"], return_dict=True
    )


def _encode_llava(model: Any, video_inputs: dict[str, torch.Tensor]) -> Any:
    config = model.config
    return model.get_video_features(
        video_inputs["pixel_values_videos"],
        vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        return_dict=True,
    )


def _encode_smolvlm(model: Any, video_inputs: dict[str, torch.Tensor]) -> Any:
    # SmolVLM has no video tower: a video is a sequence of frames through the image path
    return model.get_image_features(
        video_inputs["pixel_values"], video_inputs.get("pixel_attention_mask"), return_dict=True
    )


def _encode_internvl(model: Any, video_inputs: dict[str, torch.Tensor]) -> Any:
    # InternVL has no video tower: the processor flattens every frame into `pixel_values` for the image path
    config = model.config
    return model.get_image_features(
        video_inputs["pixel_values"],
        vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        return_dict=True,
    )


def _encode_video_llama_3(model: Any, video_inputs: dict[str, torch.Tensor]) -> Any:
    return model.get_video_features(
        video_inputs["pixel_values_videos"],
        video_inputs["video_grid_thw"],
        video_merge_sizes=video_inputs["video_merge_sizes"],
        return_dict=True,
    )


# Smallest frame `_qwen_pixel_budget` lets the processor resize to (its `shortest_edge`, i.e. min_pixels)
QWEN_MIN_PIXELS = 56 * 56


def _qwen_video_token_budget(processor: Any, num_frames: int, max_video_tokens: int) -> tuple[int, int | None]:
    """Qwen-VL: a video is ceil(frames / temporal_patch) groups of (h / (patch * merge)) x (w / (patch * merge))
    tokens, so the per-frame pixel budget follows from the token budget; frames are dropped only below the smallest
    frame size."""
    video_processor = processor.video_processor
    factor = video_processor.patch_size * video_processor.merge_size
    temporal = video_processor.temporal_patch_size
    min_tokens = 4  # the smallest frame worth encoding: 2 x 2 merged patches (56 x 56 pixels at Qwen's factor 28)
    groups = -(-num_frames // temporal)
    if max_video_tokens // groups < min_tokens:
        groups = max_video_tokens // min_tokens
        if groups < 1:
            raise ValueError(
                f"max_video_tokens={max_video_tokens} is below one frame group of the smallest size "
                f"({min_tokens} tokens); raise it."
            )
        num_frames = groups * temporal
    return num_frames, (max_video_tokens // groups) * factor**2


def _fixed_video_token_budget(processor: Any, num_frames: int, max_video_tokens: int) -> tuple[int, int | None]:
    """Fixed-size families (LLaVA-OneVision, LLaVA-NeXT-Video): the resolution is fixed, so only frames can go. The
    tokens per frame (and any per-video extra, e.g. a newline token) are counted on the processor's own output for
    one and two blank frames."""
    import numpy as np

    token = processor.video_token
    token_id = processor.tokenizer.convert_tokens_to_ids(token)
    counts = []
    for frames in (1, 2):
        out = processor(text=[token], videos=[np.zeros((frames, 64, 64, 3), dtype=np.uint8)], return_tensors="pt")
        counts.append(int((out["input_ids"][0] == token_id).sum()))
    per_frame, extra = counts[1] - counts[0], 2 * counts[0] - counts[1]
    fitting = (max_video_tokens - extra) // per_frame
    if fitting < 1:
        raise ValueError(
            f"max_video_tokens={max_video_tokens} is below one frame ({per_frame + extra} tokens); raise it."
        )
    return min(num_frames, fitting), None


def _repeat_per_video(value: Any, times: int) -> Any:
    """Repeats per-video encoder output: a tensor along dim 0, a tuple/list of per-video tensors as a sequence."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return torch.cat([value] * times, dim=0)
    return type(value)(value) * times if isinstance(value, tuple) else list(value) * times


@dataclass(frozen=True)
class VideoFamily:
    """How one family of video-LMMs takes videos. See the module docstring for why each field exists.

    Args:
        name: registry key, e.g. `"qwen2_5_vl"`.
        model_types: `config.model_type` values that belong to this family.
        processor_classes: class names of the transformers processors of this family.
        encoder_input_keys: processor outputs the vision encoder reads (one entry per video).
        row_video_keys: per-video processor outputs the language-model forward also needs for each row (e.g. grids
            for rotary positions); duplicated for the chosen and rejected rows.
        sequence_keys: processor outputs aligned with `input_ids`, padded with 0 along it.
        encoder_output_fields: fields of the vision-encoder output holding per-video features.
        vision_modules: module names on the vision side (frozen; skipped by 4-bit quantization).
        lora_target_modules: regex of the language-model linear layers to adapt.
        needs_fixed_frame_count: the family cannot batch videos of different frame counts.
        processor_kwargs: extra kwargs for every processor call.
        pixel_budget_kwargs: maps a per-frame pixel budget to processor kwargs (`None`: fixed-size family).
        timing_fix: post-processes processor outputs so temporal positions use the true sampled frame rate.
        video_placeholders: where transformers releases expand the chat template's video part differently:
            `processor -> (what the template writes, texts to write instead)`. The first makes every release write
            the family's documented layout; the others reproduce a layout a saved model recorded
            (`VideoPreferenceProcessor.video_prompt_layout`). `None`: the template's text as it is.
        encode_videos: runs the vision encoder alone on `encoder_input_keys`.
        video_token_budget: `(processor, num_frames, max_video_tokens) -> (num_frames, max_pixels or None)`: the
            frames and per-frame pixel budget that keep one video within `max_video_tokens` (see
            `VideoPreferenceProcessor`'s `max_video_tokens`).
        supports_prefix_sharing: the language model takes a custom 4D attention mask and explicit position ids, so
            each pair's prompt can run once with both answers packed after it (`tpo_hf.prefix_sharing`); checked
            for equal loss and gradients in tests/test_prefix_sharing.py.
        encoder_output_key: the `mm_encoder_outputs` key the language model reads the shared features from (SmolVLM
            feeds video frames through its image path: `"image"`).
        feature_token_attribute: processor attribute naming the token that video features replace in `input_ids`
            (SmolVLM expands a video into per-frame `<image>` tokens).
        requires: Python modules the family's transformers processor imports beyond tpo-hf's own needs (SmolVLM's
            `num2words`, the `smolvlm` extra); tests of the family skip, naming them, where they are missing.
        min_transformers: the oldest transformers release whose processor takes this family's pre-sampled frames
            as tested (`None`: every release tpo-hf allows).
        router_modules: Mixture-of-Experts families: suffix of the router modules of the language model whose first
            output is the router logits (`tpo_hf.moe` records them for the load-balancing loss); `None`: dense.
        row_positions: `(model, row inputs) -> position ids` for families whose multimodal rotary positions come from
            other inputs than Qwen-VL's `get_rope_index(input_ids, mm_token_type_ids, ...)` (prefix sharing packs
            the rows' own positions); `None`: that generic rule (`tpo_hf.prefix_sharing.row_position_ids`).
        load_class: the transformers class that loads the trainable model from a checkpoint of this family, where
            the checkpoint holds more than it (an Omni checkpoint: thinker + speech talker + vocoder; only the
            thinker is loaded); `None`: the class the checkpoint's config names.
        card_inputs: what the model card states about the inputs trained on, for a family that leaves one of its
            model's modalities out (the Omni thinker: audio off); `None`: nothing to state.
        expert_parameters: MoE families: the experts' weight names (stacked 3D parameters, not `nn.Linear`), for
            LoRA's `target_parameters` when `TPOConfig.lora_include_experts` asks for adapters on the experts.
    """

    name: str
    model_types: tuple[str, ...]
    processor_classes: tuple[str, ...]
    encoder_input_keys: tuple[str, ...]
    row_video_keys: tuple[str, ...] = ()
    sequence_keys: tuple[str, ...] = ()
    encoder_output_fields: tuple[str, ...] = ("pooler_output",)
    vision_modules: tuple[str, ...] = ("visual",)
    lora_target_modules: str = LANGUAGE_MODEL_LORA_TARGETS
    needs_fixed_frame_count: bool = False
    processor_kwargs: dict[str, Any] = field(default_factory=dict)
    pixel_budget_kwargs: Callable[[int], dict[str, Any]] | None = None
    timing_fix: Callable[[dict[str, Any], list[dict[str, Any]], Any], None] = _no_timing_fix
    video_placeholders: Callable[[Any], tuple[str, tuple[str, ...]]] | None = None
    encode_videos: Callable[[Any, dict[str, torch.Tensor]], Any] = _encode_qwen
    supports_prefix_sharing: bool = False
    requires: tuple[str, ...] = ()
    encoder_output_key: str = "video"
    feature_token_attribute: str = "video_token"
    router_modules: str | None = None
    expert_parameters: tuple[str, ...] = ()
    min_transformers: str | None = None
    row_positions: Callable[[Any, dict[str, torch.Tensor]], torch.Tensor] | None = None
    load_class: str | None = None
    card_inputs: str | None = None

    def load_model_class(self) -> Any:
        """The transformers class named by `load_class`, or `None` where the checkpoint's own class is right."""
        if self.load_class is None:
            return None
        import transformers

        return getattr(transformers, self.load_class)

    def missing_requirements(self) -> list[str]:
        """The modules of `requires` that are not installed, and a too-old transformers."""
        import importlib.util

        import transformers
        from packaging.version import Version

        missing = [module for module in self.requires if importlib.util.find_spec(module) is None]
        if self.min_transformers and Version(transformers.__version__) < Version(self.min_transformers):
            missing.append(f"transformers>={self.min_transformers} (installed: {transformers.__version__})")
        return missing

    @property
    def is_moe(self) -> bool:
        """Whether the language model routes tokens to experts (and has a load-balancing loss)."""
        return self.router_modules is not None

    # None: no fit written for the family yet; `max_video_tokens` is refused rather than exceeded
    video_token_budget: Callable[[Any, int, int], tuple[int, int | None]] | None = None

    @property
    def video_keys(self) -> tuple[str, ...]:
        """All per-video processor outputs."""
        return tuple(dict.fromkeys(self.encoder_input_keys + self.row_video_keys))

    def video_message_part(self) -> dict[str, str]:
        """The content part that stands for the video in a chat message (the chat template renders it)."""
        return {"type": "video"}

    def vision_parameters(self, model: torch.nn.Module):
        """Parameters of the vision side (encoder, projector/merger) of `model`, PEFT-wrapped or not."""
        for name, parameter in model.named_parameters():
            if any(f".{module}." in f".{name}" for module in self.vision_modules):
                yield name, parameter

    @property
    def lora_exclude_modules(self) -> str:
        """Regex of the vision side's modules, never adapted by the default LoRA targets."""
        return rf"(?:.*\.)?(?:{'|'.join(self.vision_modules)})(?:\..*)?"

    def quantization_skip_patterns(self) -> list[str]:
        """`llm_int8_skip_modules` patterns that keep the vision side out of 4-bit, wherever the model nests it.

        transformers matches these from the start of a module name ("model.visual..."), as regexes.
        """
        return [rf"(?:.*\.)?{module}" for module in self.vision_modules]

    def repeat_encoder_output(self, output: Any, times: int = 2) -> dict[str, Any]:
        """Builds `mm_encoder_outputs` for `times` copies of each pair's rows from one encoding of its video."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        repeated = BaseModelOutputWithPooling()
        for name in self.encoder_output_fields:
            value = getattr(output, name, None)
            if name == "deepstack_features" and value is not None:
                # one entry per deepstack layer, each a sequence of per-video features
                value = [_repeat_per_video(layer, times) for layer in value]
            else:
                value = _repeat_per_video(value, times)
            repeated[name] = value
        return {self.encoder_output_key: repeated}


def _qwen_pixel_budget(max_pixels: int) -> dict[str, Any]:
    return {"size": {"shortest_edge": min(max_pixels, QWEN_MIN_PIXELS), "longest_edge": max_pixels}}


_QWEN_COMMON = dict(
    encoder_input_keys=("pixel_values_videos", "video_grid_thw"),
    row_video_keys=("video_grid_thw",),
    sequence_keys=("mm_token_type_ids",),
    vision_modules=("visual",),
    # Our pixel budget is per frame and explicit; the processor's optional whole-video cap would override it.
    processor_kwargs={"cap_pixels_per_frame": False},
    pixel_budget_kwargs=_qwen_pixel_budget,
    encode_videos=_encode_qwen,
    supports_prefix_sharing=True,
    video_token_budget=_qwen_video_token_budget,
)

# Qwen3-VL (dense and MoE): deepstack features are duplicated too; one frame layout on every transformers release
_QWEN3_COMMON = dict(
    **_QWEN_COMMON,
    encoder_output_fields=("pooler_output", "deepstack_features"),
    video_placeholders=_qwen3_video_placeholders,
)

_OMNI_COMMON = dict(
    **{
        **_QWEN_COMMON,
        "sequence_keys": (),
        "row_video_keys": ("video_grid_thw", "video_second_per_grid"),
        "vision_modules": ("visual", "audio_tower"),
        "timing_fix": _omni_video_second_per_grid,
    },
    row_positions=_omni_row_positions,
    load_class="Qwen2_5OmniThinkerForConditionalGeneration",
    card_inputs="video frames and text; audio off (no audio input is built, the audio encoder never runs)",
    # 5.18's Omni thinkers nest their text model differently (`model.layers`, no `language_model`: the LoRA targets
    # match nothing, and weights load under other names); 5.24 is the release tested
    min_transformers="5.24",
)
# Attention projections of the language model (MoE families whose MLP names PEFT maps onto the experts)
_ATTENTION_LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)$"

FAMILIES: dict[str, VideoFamily] = {
    family.name: family
    for family in (
        VideoFamily(
            name="qwen2_vl", model_types=("qwen2_vl",), processor_classes=("Qwen2VLProcessor",), **_QWEN_COMMON
        ),
        VideoFamily(
            name="qwen2_5_vl",
            model_types=("qwen2_5_vl",),
            processor_classes=("Qwen2_5_VLProcessor",),
            **{
                **_QWEN_COMMON,
                "row_video_keys": ("video_grid_thw", "second_per_grid_ts"),
                "timing_fix": _qwen25_second_per_grid_ts,
            },
        ),
        # Qwen3-VL writes frame timestamps into the prompt from `frames_indices` / `fps`, and injects vision
        # features at several decoder layers (deepstack), which must be duplicated too.
        VideoFamily(
            name="qwen3_vl",
            model_types=("qwen3_vl",),
            processor_classes=("Qwen3VLProcessor",),
            **_QWEN3_COMMON,
        ),
        # Qwen3-VL-MoE (Qwen3-VL-30B-A3B): Qwen3-VL's processor and vision side, a sparse language model. Its
        # processor class is Qwen3-VL's, so a bare processor resolves to `qwen3_vl`, which processes identically.
        # Expert weights are stacked 3D parameters that the default LoRA regex never matches (attention only).
        VideoFamily(
            name="qwen3_vl_moe",
            model_types=("qwen3_vl_moe",),
            processor_classes=(),
            **_QWEN3_COMMON,
            router_modules="mlp.gate",
            expert_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
        ),
        VideoFamily(
            name="llava_onevision",
            model_types=("llava_onevision",),
            processor_classes=("LlavaOnevisionProcessor",),
            encoder_input_keys=("pixel_values_videos",),
            vision_modules=("vision_tower", "multi_modal_projector"),
            needs_fixed_frame_count=True,
            encode_videos=_encode_llava,
            video_token_budget=_fixed_video_token_budget,
            supports_prefix_sharing=True,
        ),
        VideoFamily(
            name="llava_next_video",
            model_types=("llava_next_video",),
            processor_classes=("LlavaNextVideoProcessor",),
            encoder_input_keys=("pixel_values_videos",),
            vision_modules=("vision_tower", "multi_modal_projector", "vision_resampler"),
            needs_fixed_frame_count=True,
            encode_videos=_encode_llava,
            video_token_budget=_fixed_video_token_budget,
            supports_prefix_sharing=True,
        ),
        # SmolVLM / SmolVLM2: each frame is an image tile under a "Frame from MM:SS" line the processor writes from
        # `frames_indices` / `fps`; the frames go through the image path (pixel_values, per video along dim 0).
        VideoFamily(
            name="smolvlm",
            model_types=("smolvlm",),
            processor_classes=("SmolVLMProcessor",),
            encoder_input_keys=("pixel_values", "pixel_attention_mask"),
            vision_modules=("vision_model", "connector"),
            lora_target_modules=r".*text_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$",
            encode_videos=_encode_smolvlm,
            encoder_output_key="image",
            feature_token_attribute="image_token",
            requires=("num2words",),  # the processor spells out the frame count ("four frames")
            # 5.18's processor counts pre-sampled frames as separate videos ("videos in the text [1] and videos
            # [4]"); 5.24 is the release tested (releases in between are untested, so they are refused too)
            min_transformers="5.24",
            supports_prefix_sharing=True,
        ),
        # InternVL 3 / 3.5: frames are labelled "Frame1: ... FrameN:" (order only, no timestamps) and flattened
        # into `pixel_values` frame by frame, so one video is a block of rows along dim 0.
        VideoFamily(
            name="internvl",
            model_types=("internvl",),
            processor_classes=("InternVLProcessor",),
            encoder_input_keys=("pixel_values",),
            vision_modules=("vision_tower", "multi_modal_projector"),
            encode_videos=_encode_internvl,
            encoder_output_key="image",
            feature_token_attribute="image_token",
            supports_prefix_sharing=True,
        ),
        # GLM-4.1V: Qwen-style grids, M-RoPE (`get_rope_index`, `mm_token_type_ids`) and vision side; each pair of
        # frames is written as <|begin_of_image|>...<|end_of_image|> followed by its second, from `frames_indices`.
        # Its frame tokens are `<|image|>`. The processor's own pixel settings apply (no Qwen `cap_pixels_per_frame`).
        VideoFamily(
            name="glm4v",
            model_types=("glm4v",),
            processor_classes=("Glm4vProcessor",),
            **{
                **_QWEN_COMMON,
                "processor_kwargs": {},
                "pixel_budget_kwargs": None,
                "video_token_budget": None,
                "feature_token_attribute": "image_token",
            },
        ),
        # GLM-4.5V: GLM-4.1V's processor (so a bare processor resolves to `glm4v`) and vision side, a sparse
        # language model whose first layer is dense and whose MoE layers add a shared expert; routed experts are
        # stacked 3D weights, out of LoRA unless asked. LoRA targets attention only: PEFT (>= 0.21, its transformers
        # v4 -> v5 MoE conversion for this model type) turns any `gate_proj`/`up_proj`/`down_proj` target into the
        # routed experts' parameters, so naming the dense MLP or shared expert would adapt the experts instead.
        VideoFamily(
            name="glm4v_moe",
            model_types=("glm4v_moe",),
            processor_classes=(),
            lora_target_modules=_ATTENTION_LORA_TARGETS,
            **{
                **_QWEN_COMMON,
                "processor_kwargs": {},
                "pixel_budget_kwargs": None,
                "video_token_budget": None,
                "feature_token_attribute": "image_token",
            },
            router_modules="mlp.gate",
            expert_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
        ),
        # VideoLLaMA3: "Time 4.5s:" before each frame's tokens, from `frames_indices` / `fps`. Its processor prunes
        # patches that barely change between frames (`video_compression_mask`, one flag per encoder feature); the
        # language model drops the pruned features itself, so the mask travels with each row and the encoder
        # output is shared unpruned.
        VideoFamily(
            name="video_llama_3",
            model_types=("video_llama_3",),
            processor_classes=("VideoLlama3Processor",),
            encoder_input_keys=("pixel_values_videos", "video_grid_thw", "video_merge_sizes"),
            row_video_keys=("video_compression_mask",),
            vision_modules=("vision_model", "projector"),
            pixel_budget_kwargs=_qwen_pixel_budget,
            encode_videos=_encode_video_llama_3,
            supports_prefix_sharing=True,
        ),
        # Qwen2.5-Omni thinker, audio off: Qwen2.5-VL's vision side and grids, no `mm_token_type_ids`; frame groups are
        # spaced by `video_second_per_grid` (TMRoPE, 25 positions per second), set from the true sampled rate. No
        # audio input is built: frames are passed decoded, so the processor has no audio track to load, and the
        # model's `use_audio_in_video` stays off. The audio tower is a frozen encoder that never runs (kept out of
        # LoRA and 4-bit with the vision side). Omni checkpoints (`qwen2_5_omni`: thinker + talker + vocoder) load
        # as the thinker alone.
        VideoFamily(
            name="qwen2_5_omni",
            model_types=("qwen2_5_omni_thinker", "qwen2_5_omni"),
            processor_classes=("Qwen2_5OmniProcessor",),
            **_OMNI_COMMON,
        ),
        # Qwen3-Omni-MoE thinker, audio off: the Qwen2.5-Omni entry plus Qwen3-VL's deepstack features and a sparse
        # language model (router loss and experts as Qwen3-VL-MoE). LoRA targets attention only: PEFT's MoE
        # conversion for this model type turns MLP-named targets into the experts' parameters (as for GLM-4.5V).
        VideoFamily(
            name="qwen3_omni_moe",
            model_types=("qwen3_omni_moe_thinker", "qwen3_omni_moe"),
            processor_classes=("Qwen3OmniMoeProcessor",),
            **{
                **_OMNI_COMMON,
                "encoder_output_fields": ("pooler_output", "deepstack_features"),
                "lora_target_modules": _ATTENTION_LORA_TARGETS,
                "load_class": "Qwen3OmniMoeThinkerForConditionalGeneration",
            },
            router_modules="mlp.gate",
            expert_parameters=("mlp.experts.gate_up_proj", "mlp.experts.down_proj"),
        ),
    )
}


def get_family(model_or_config: Any) -> VideoFamily:
    """The registry entry for a model, a config, a processor, a `model_type` string or a family name.

    Raises:
        ValueError: the model is not a supported video-LMM; the message lists the supported families.
    """
    if isinstance(model_or_config, VideoFamily):
        return model_or_config
    if isinstance(model_or_config, str):
        model_type = model_or_config
    elif hasattr(model_or_config, "video_processor") and not hasattr(model_or_config, "config"):
        processor_class = type(model_or_config).__name__
        for family in FAMILIES.values():
            if processor_class in family.processor_classes:
                return family
        model_type = processor_class
    else:
        config = getattr(model_or_config, "config", model_or_config)
        model_type = getattr(config, "model_type", None)
    for family in FAMILIES.values():
        if model_type == family.name or model_type in family.model_types:
            return family
    supported = ", ".join(f"{family.name} ({'/'.join(family.model_types)})" for family in FAMILIES.values())
    raise ValueError(f"Model type {model_type!r} is not a supported video-LMM family. Supported: {supported}.")
