"""Stage 2 of the flow (curation): the `"openai"` backend, any OpenAI-compatible chat endpoint.

vLLM, TGI, `transformers serve` or Inference Providers, reached through `huggingface_hub.InferenceClient`, with a
timeout, retries with exponential backoff, and a few requests in flight at once. Video frames are sent as images
(data URLs), which every multi-image endpoint understands.
"""

from __future__ import annotations

import base64
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import BackendError, GenerationBackend, GenerationRequest

if TYPE_CHECKING:
    from .config import CurationConfig

logger = logging.getLogger(__name__)


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

    @classmethod
    def from_config(cls, config: CurationConfig, role: str, device: str | None = None) -> OpenAIBackend:
        """The backend of `role` ("video", "question" or "judge") as `config` sets it (the `BACKENDS` factory)."""
        _, model, base_url = config.role_settings(role)
        return cls(
            model,
            base_url=base_url,
            api_key=config.api_key,
            timeout=config.request_timeout,
            max_retries=config.max_retries,
            retry_backoff=config.retry_backoff,
            max_concurrency=config.max_concurrency,
            temperature=config.temperature if config.do_sample else 0.0,
        )

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
        attempts = 0
        for attempt in range(self.max_retries + 1):
            attempts = attempt + 1
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
        # only errors worth retrying (timeouts, connection errors, 429, 5xx) were retried: say how many were made
        retried = "" if self._retriable(last_error) else " (not retried: this error does not go away by retrying)"
        raise BackendError(
            f"Endpoint {self.base_url} (model {self.model_id}) failed after {attempts} attempt(s){retried}: "
            f"{last_error}"
        ) from last_error

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int, seed: int = 0) -> list[str]:
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            return list(pool.map(lambda ir: self._one(ir[1], max_new_tokens, seed + ir[0]), enumerate(requests)))
