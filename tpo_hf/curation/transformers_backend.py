"""Stage 2 of the flow (curation): the `"transformers"` backend, a local model answering batches of prompts.

A video-LMM of a registered family goes through `VideoPreferenceProcessor.generation_inputs` (the same video-to-token
path as training); text-only prompts (questions, judging) also work with it, or with any causal LM. Requests are grouped
by frame count and batched with left padding. Decoding is greedy by default, so the preferred and dis-preferred
answers differ only by what the model sees. A reply that used all `max_new_tokens` without ending in an
end-of-sequence token is returned as a `Reply` marked `truncated` (one that ends exactly at the budget is not): the
run counts and warns about it, but still pairs such answers (`drops_cut_answers` is off here, unlike an endpoint's),
since a model that never emits its end token (an untrained or tiny random one, which the offline curation tests of
resume, multi-process runs and pushes curate with) would otherwise make no pair at all; `cut_answers="drop"` drops
them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..video_settings import VideoSettings
from .backends import BackendError, GenerationBackend, GenerationRequest, Reply

if TYPE_CHECKING:
    from .config import CurationConfig


def _batches(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


class TransformersBackend(GenerationBackend):
    """A local transformers model answering batches of prompts (with or without video) with left padding.

    Cut replies are marked (`Reply.truncated`), counted and warned about; cut answers still make pairs (see the module
    docstring).

    Args:
        model_name_or_path: Hub id or local folder. A video-LMM of a family in `tpo_hf.families` takes video
            requests; any other causal LM takes text-only requests.
        batch_size: prompts per `generate` call.
        do_sample, temperature: decoding settings (greedy by default); with sampling, each batch is seeded from
            the `seed` passed to `generate`, so results do not depend on global RNG state.
        dtype, device: where and how to load the model.
        video_settings: the video processor's settings (`VideoSettings`; its per-frame pixel budget is what
            matters here: the curation run decodes the frames of each view itself).
    """

    drops_cut_answers = False  # counted and warned about only: see the module docstring

    def __init__(
        self,
        model_name_or_path: str,
        batch_size: int = 8,
        do_sample: bool = False,
        temperature: float = 1.0,
        dtype: str = "auto",
        device: str | None = None,
        video_settings: VideoSettings | None = None,
        model: Any = None,
        processor: Any = None,
    ):
        self.model_id = str(model_name_or_path)
        self.batch_size = batch_size
        self.do_sample = do_sample
        self.temperature = temperature
        if model is None:
            model, processor = _load(model_name_or_path, dtype, device, video_settings or VideoSettings())
        self.model = model.eval()
        self.processor = processor  # a VideoPreferenceProcessor (video-LMM) or a tokenizer (text LLM)
        self.is_video = hasattr(processor, "generation_inputs")
        tokenizer = self.tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @classmethod
    def from_config(cls, config: CurationConfig, role: str, device: str | None = None) -> TransformersBackend:
        """The backend of `role` ("video", "question" or "judge") as `config` sets it (the `BACKENDS` factory)."""
        _, model, _ = config.role_settings(role)
        return cls(
            model,
            batch_size=config.batch_size,
            do_sample=config.do_sample,
            temperature=config.temperature,
            dtype=config.dtype,
            device=config.device or device,
            video_settings=VideoSettings.of(config),
        )

    @classmethod
    def from_model(cls, model: Any, processor: Any, model_id: str = "in-memory", **kwargs: Any) -> TransformersBackend:
        """Wraps an already loaded model and its `VideoPreferenceProcessor` (or tokenizer)."""
        return cls(model_id, model=model, processor=processor, **kwargs)

    @property
    def tokenizer(self) -> Any:
        return self.processor.tokenizer if self.is_video else self.processor

    def _generate_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": self.do_sample,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if self.do_sample:
            kwargs["temperature"] = self.temperature
        else:  # silence the sampling defaults some generation configs carry
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    @torch.no_grad()
    def _generate_text(self, prompts: list[str], max_new_tokens: int) -> list[Reply]:
        messages = [[{"role": "user", "content": [{"type": "text", "text": p}]}] for p in prompts]
        if self.is_video:
            texts = [
                self.processor.processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False)
                for m in messages
            ]
            inputs = self.processor.processor(text=texts, padding=True, padding_side="left", return_tensors="pt")
        else:
            texts = [
                self.processor.apply_chat_template(
                    [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
                )
                for p in prompts
            ]
            inputs = self.processor(
                texts, padding=True, padding_side="left", return_tensors="pt", add_special_tokens=False
            )
        inputs = inputs.to(self.model.device)
        output = self.model.generate(**inputs, **self._generate_kwargs(max_new_tokens))
        return self._replies(output[:, inputs["input_ids"].shape[1] :], max_new_tokens)

    @torch.no_grad()
    def _generate_video(
        self, prompts: list[str], videos: list[tuple[Any, dict[str, Any]]], max_new_tokens: int
    ) -> list[Reply]:
        # `VideoPreferenceProcessor.generate`, keeping the token ids to tell a reply cut at the budget
        inputs = self.processor.generation_inputs(prompts, videos).to(self.model.device)
        output = self.model.generate(**inputs, **self._generate_kwargs(max_new_tokens))
        return self._replies(output[:, inputs["input_ids"].shape[1] :], max_new_tokens)

    def _replies(self, new_tokens: torch.Tensor, max_new_tokens: int) -> list[Reply]:
        """The decoded replies of a batch's new tokens `[B, N]`; a row is cut at the budget when all `max_new_tokens`
        were generated and its last token ends nothing (neither an end-of-sequence nor the padding token, which
        follows the end of rows that finished earlier)."""
        eos = self.model.generation_config.eos_token_id
        ends = {*(eos if isinstance(eos, (list, tuple)) else [eos]), self.tokenizer.eos_token_id}
        ends |= {self.tokenizer.pad_token_id} - {None}
        at_budget = new_tokens.shape[1] >= max_new_tokens
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        return [
            Reply(text.strip(), truncated=at_budget and int(row[-1]) not in ends)
            for text, row in zip(texts, new_tokens)
        ]

    def prompt_format(self, video: bool) -> str | None:
        """What the model reads around a prompt (`_prompt_format`), part of the curation shards' key."""
        return _prompt_format(self.processor, video)

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int, seed: int = 0) -> list[str]:
        """Replies (`Reply`) in request order. Requests are grouped by frame count (some families cannot batch mixed
        counts) and the groups are cut into batches of `batch_size`."""
        if any(r.video is not None for r in requests) and not self.is_video:
            raise BackendError(
                f"Model {self.model_id} is not a video-LMM of a registered family; it cannot take videos."
            )
        groups: dict[int, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(-1 if request.video is None else len(request.video[0]), []).append(index)
        replies: list[str | None] = [None] * len(requests)
        batch_number = 0
        for frames, indices in sorted(groups.items()):
            for batch in _batches(indices, self.batch_size):
                if self.do_sample:
                    torch.manual_seed((seed + batch_number) % 2**63)
                batch_number += 1
                prompts = [requests[i].prompt for i in batch]
                if frames == -1:
                    outputs = self._generate_text(prompts, max_new_tokens)
                else:
                    outputs = self._generate_video(prompts, [requests[i].video for i in batch], max_new_tokens)
                for i, reply in zip(batch, outputs):
                    replies[i] = reply
        return replies  # type: ignore[return-value]


def _load(model_name_or_path: str, dtype: str, device: str | None, settings: VideoSettings) -> tuple[Any, Any]:
    """A video-LMM of a registered family with its `VideoPreferenceProcessor`, else a causal LM and its tokenizer."""
    from transformers import AutoConfig

    from ..families import get_family
    from ..models import load_video_model, resolve_dtype

    try:
        get_family(AutoConfig.from_pretrained(model_name_or_path))
    except ValueError:  # not a video-LMM: a text LLM for the question or judge role
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype=resolve_dtype(dtype))
        return model.to(device or "cpu"), AutoTokenizer.from_pretrained(model_name_or_path)
    return load_video_model(model_name_or_path, dtype=dtype, device=device or "cpu", **settings.to_dict())


# the text a prompt is rendered around in `prompt_format`: a placeholder, so that only the template shows
_PROMPT_PLACEHOLDER = "{prompt}"


def _prompt_format(processor: Any, video: bool) -> str | None:
    """With `video`, the video prompt layout of a `VideoPreferenceProcessor` (`video_prompt_layout`); else the text
    a text prompt is wrapped in (its chat template rendered as `_generate_text` renders it, around a placeholder).
    `None` for a video prompt to a model that takes no video."""
    is_video = hasattr(processor, "generation_inputs")
    if video:
        return processor.video_prompt_layout() if is_video else None
    if is_video:
        message = [{"role": "user", "content": [{"type": "text", "text": _PROMPT_PLACEHOLDER}]}]
        return processor.processor.apply_chat_template(message, add_generation_prompt=True, tokenize=False)
    if getattr(processor, "chat_template", None) is None:  # no template: generation refuses it anyway
        return None
    message = [{"role": "user", "content": _PROMPT_PLACEHOLDER}]
    return processor.apply_chat_template(message, add_generation_prompt=True, tokenize=False)


def model_prompt_format(model_name_or_path: str, video: bool, settings: VideoSettings) -> str | None:
    """`TransformersBackend.prompt_format` of a model without loading its weights: from its processor (a video-LMM of
    a registered family, loaded as `_load` loads it) or its tokenizer."""
    from transformers import AutoConfig, AutoTokenizer

    from ..families import get_family
    from ..processing import VideoPreferenceProcessor

    try:
        get_family(AutoConfig.from_pretrained(model_name_or_path))
    except ValueError:  # a text LLM
        return _prompt_format(AutoTokenizer.from_pretrained(model_name_or_path), video)
    return _prompt_format(VideoPreferenceProcessor.from_pretrained(model_name_or_path, **settings.to_dict()), video)
