"""Stage 2 of the flow (curation): the models behind each role (captions/answers, questions, judge).

Two backends, chosen per role:

- `TransformersBackend`: a local transformers model. A video-LMM of a registered family goes through
  `VideoPreferenceProcessor.generate` (the same video-to-token path as training); text-only prompts (questions,
  judging) also work with it, or with any causal LM. Requests are batched with left padding.
- `OpenAIBackend`: any OpenAI-compatible chat endpoint (vLLM, TGI, `transformers serve`, Inference Providers)
  through `huggingface_hub.InferenceClient`, with a timeout, retries with exponential backoff, and a few requests in
  flight at once. Video frames are sent as images (data URLs), which every multi-image endpoint understands.

Both decode greedily by default, so the preferred and dis-preferred answers differ only by what the model sees.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


@dataclass
class GenerationRequest:
    """One prompt, with the decoded video view `(frames, metadata)` it is about (`None` for text-only prompts).

    `context` holds the same request as fields (caption, task type, question, answers, video path, segment): LLM
    backends read `prompt`; programmatic backends (e.g. a judge that knows the ground truth) read `context`.
    """

    prompt: str
    video: tuple[np.ndarray, dict[str, Any]] | None = None
    context: dict[str, Any] | None = None


class BackendError(RuntimeError):
    """A backend failed to answer after its retries; the message names the endpoint or model."""


class GenerationBackend:
    """Common interface: `generate(requests, max_new_tokens, seed) -> list[str]` (one reply per request)."""

    model_id: str = "unknown"

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int, seed: int = 0) -> list[str]:
        raise NotImplementedError


def _batches(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i : i + size] for i in range(0, len(indices), size)]


class TransformersBackend(GenerationBackend):
    """A local transformers model answering batches of prompts (with or without video) with left padding.

    Args:
        model_name_or_path: Hub id or local folder. A video-LMM of a family in `tpo_hf.families` takes video
            requests; any other causal LM takes text-only requests.
        batch_size: prompts per `generate` call.
        do_sample, temperature: decoding settings (greedy by default); with sampling, each batch is seeded from
            the `seed` passed to `generate`, so results do not depend on global RNG state.
        dtype, device: where and how to load the model.
        max_pixels: per-frame pixel budget for the video processor.
    """

    def __init__(
        self,
        model_name_or_path: str,
        batch_size: int = 8,
        do_sample: bool = False,
        temperature: float = 1.0,
        dtype: str = "auto",
        device: str | None = None,
        max_pixels: int | None = None,
        model: Any = None,
        processor: Any = None,
    ):
        from ..families import get_family

        self.model_id = str(model_name_or_path)
        self.batch_size = batch_size
        self.do_sample = do_sample
        self.temperature = temperature
        if model is None:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(model_name_or_path)
            try:
                get_family(config)
                is_video = True
            except ValueError:
                is_video = False
            torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
            if is_video:
                from transformers import AutoModelForImageTextToText

                from ..processing import VideoPreferenceProcessor

                model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, dtype=torch_dtype)
                processor = VideoPreferenceProcessor.from_pretrained(model_name_or_path, max_pixels=max_pixels)
            else:
                from transformers import AutoModelForCausalLM, AutoTokenizer

                model = AutoModelForCausalLM.from_pretrained(model_name_or_path, dtype=torch_dtype)
                processor = AutoTokenizer.from_pretrained(model_name_or_path)
            if device is not None:
                model = model.to(device)
        self.model = model.eval()
        self.processor = processor  # a VideoPreferenceProcessor (video-LMM) or a tokenizer (text LLM)
        self.is_video = hasattr(processor, "generation_inputs")
        tokenizer = self.tokenizer
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

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
    def _generate_text(self, prompts: list[str], max_new_tokens: int) -> list[str]:
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
        new_tokens = output[:, inputs["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int, seed: int = 0) -> list[str]:
        """Replies in request order. Requests are grouped by frame count (some families cannot batch mixed counts)
        and the groups are cut into batches of `batch_size`."""
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
                    outputs = self.processor.generate(
                        self.model,
                        prompts,
                        [requests[i].video for i in batch],
                        **self._generate_kwargs(max_new_tokens),
                    )
                for i, text in zip(batch, outputs):
                    replies[i] = text.strip()
        return replies  # type: ignore[return-value]


def _frame_data_url(frame: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


class OpenAIBackend(GenerationBackend):
    """An OpenAI-compatible chat endpoint reached through `huggingface_hub.InferenceClient`.

    Args:
        model: model id the endpoint serves (for `transformers serve`, the path or Hub id it loaded).
        base_url: the endpoint root, e.g. `http://127.0.0.1:8000` (a trailing `/v1` is accepted).
        api_key: bearer token (`None` for local servers).
        timeout: seconds per request.
        max_retries: extra attempts after a timeout, connection error, 429 or 5xx; other errors fail at once.
        retry_backoff: seconds before the first retry, doubled on each further retry.
        max_concurrency: requests in flight at once.
        temperature: 0 decodes greedily.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        retry_backoff: float = 1.0,
        max_concurrency: int = 4,
        temperature: float = 0.0,
    ):
        from huggingface_hub import InferenceClient, is_offline_mode

        self.model_id = model
        self.base_url = base_url.rstrip("/").removesuffix("/v1") if base_url else None
        if is_offline_mode():
            # huggingface_hub's HTTP session refuses every request in offline mode, loopback endpoints included
            raise BackendError(
                f"HF_HUB_OFFLINE is set, so huggingface_hub refuses every HTTP request, including to {self.base_url}. "
                "Unset HF_HUB_OFFLINE for runs that use an 'openai' backend."
            )
        self.max_retries = max_retries
        self.retry_backoff = retry_backoff
        self.max_concurrency = max(1, max_concurrency)
        self.temperature = temperature
        self.client = InferenceClient(base_url=self.base_url, api_key=api_key, timeout=timeout)

    @staticmethod
    def _retriable(error: Exception) -> bool:
        from huggingface_hub.errors import HfHubHTTPError

        # huggingface_hub 2.x speaks httpx2 (older releases httpx): match their transport errors by class name
        transport = {"TimeoutException", "TransportError"}
        if isinstance(error, (TimeoutError, ConnectionError)) or transport & {c.__name__ for c in type(error).__mro__}:
            return True
        if isinstance(error, HfHubHTTPError) and error.response is not None:
            return error.response.status_code == 429 or error.response.status_code >= 500
        return False

    def messages(self, request: GenerationRequest) -> list[dict[str, Any]]:
        """Chat messages for one request: the frames as images, then the prompt."""
        if request.video is None:
            return [{"role": "user", "content": request.prompt}]
        parts = [{"type": "image_url", "image_url": {"url": _frame_data_url(f)}} for f in request.video[0]]
        return [{"role": "user", "content": [*parts, {"type": "text", "text": request.prompt}]}]

    def _one(self, request: GenerationRequest, max_new_tokens: int, seed: int) -> str:
        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.chat_completion(
                    self.messages(request),
                    model=self.model_id,
                    max_tokens=max_new_tokens,
                    temperature=self.temperature,
                    seed=seed % 2**31,
                )
                return (response.choices[0].message.content or "").strip()
            except Exception as error:  # noqa: BLE001 - classified just below
                last_error = error
                if not self._retriable(error) or attempt == self.max_retries:
                    break
                delay = self.retry_backoff * 2**attempt
                logger.warning(
                    "Request to %s failed (%s); retry %d in %.1f s", self.base_url, error, attempt + 1, delay
                )
                time.sleep(delay)
        raise BackendError(
            f"Endpoint {self.base_url} (model {self.model_id}) failed after {self.max_retries + 1} attempt(s): "
            f"{last_error}"
        ) from last_error

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int, seed: int = 0) -> list[str]:
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            return list(pool.map(lambda ir: self._one(ir[1], max_new_tokens, seed + ir[0]), enumerate(requests)))
