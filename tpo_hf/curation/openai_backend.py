"""Stage 2 of the flow (curation): the `"openai"` backend, any OpenAI-compatible chat endpoint.

vLLM, TGI, `transformers serve` or Inference Providers, reached through `huggingface_hub.InferenceClient`, with a
timeout, retries with exponential backoff, and a few requests in flight at once.

A video goes as a `video_url` content part (the extension vLLM and `transformers serve` read): the frames the training
path samples, encoded losslessly into a small mp4 at their sampled rate, so a video model applies its temporal
encoding to the very frames and timing `TPOTrainer` trains on, scaled down to `max_pixels` as a local model's
processor would scale them. A server that refuses video (an HTTP error for the video form of a request whose image
form it answers) gets the frames as images for the rest of the run, after one warning that names its reason.

A reply's `message.content` may be text or a list of text parts (joined); a reply stopped at `max_tokens`
(`finish_reason: "length"`) comes back as a `Reply` marked `truncated`, and so does one that ended any other way than
normally (`content_filter`, `tool_calls`, an aborted generation) or that refused (`message.refusal`), each named in a
warning: such text is no complete answer. An HTTP 200 body with an error object or no choices is an error quoting the
server's message, retried only when its code says overloaded or rate-limited; so is a body that is no chat completion
(not JSON: a proxy's HTML page, a stream of server-sent events; the legacy completions shape `choices[0].text`), never
retried. A 429 or 503 with a `Retry-After` header is retried after the wait it asks (at most `MAX_RETRY_AFTER`
seconds) instead of the exponential backoff.
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import BackendError, GenerationBackend, GenerationRequest, Reply

if TYPE_CHECKING:
    from .config import CurationConfig

logger = logging.getLogger(__name__)

# the longest `Retry-After` honoured: a gateway asking for minutes (or a misread date) should not park a run silently
MAX_RETRY_AFTER = 60.0


def frames_within_pixels(frames: np.ndarray, max_pixels: int | None) -> np.ndarray:
    """`frames` `[T, H, W, 3]` scaled down, aspect ratio kept, to at most `max_pixels` pixels each (as they are when
    `max_pixels` is `None` or already met): the budget the run records, and that a local model's processor applies,
    holds for an endpoint too, which would otherwise get (and be charged for) native-resolution frames."""
    height, width = frames.shape[1:3]
    if max_pixels is None or height * width <= max_pixels:
        return frames
    from PIL import Image

    scale = (max_pixels / (height * width)) ** 0.5
    new_height = max(1, int(height * scale))
    new_width = max(1, min(int(width * scale), max_pixels // new_height))
    new_height = max(1, min(new_height, max_pixels // new_width))  # a frame one pixel wide keeps to the budget too
    return np.stack(
        [np.asarray(Image.fromarray(frame).resize((new_width, new_height), Image.BICUBIC)) for frame in frames]
    )


def _frame_data_url(frame: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def video_data_url(frames: np.ndarray, metadata: dict[str, Any]) -> str:
    """The sampled frames `[T, H, W, 3]` as a `data:video/mp4;base64,...` URL, one mp4 frame per sampled frame.

    Why the sampled frames and not the original file: the server would sample the file again with its own rule (e.g.
    32 frames spread over the whole file), so a segment view, a view with a hole cut out, or a capped frame count
    would reach the model as different frames than the training path's. Encoding exactly our frames keeps them
    identical: x264 in lossless RGB mode (bit-exact frames), at the frames' sampled rate (`sampled_fps`, the rate
    the families use for temporal positions), so the server's timestamps step as the training path's do. A server
    that caps frames below `T` (vLLM: the video `num_frames` of its `media_io_kwargs`, default 32) subsamples.
    """
    import av

    from ..video import sampled_fps

    rate = Fraction(sampled_fps(metadata)).limit_denominator(1001)
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        if "libx264rgb" in av.codecs_available:
            stream = container.add_stream("libx264rgb", rate=rate)
            stream.pix_fmt = "rgb24"
        else:  # an FFmpeg build without it: lossless in YUV 4:4:4, off by at most a rounding step per channel
            stream = container.add_stream("libx264", rate=rate)
            stream.pix_fmt = "yuv444p"
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.options = {"qp": "0", "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return "data:video/mp4;base64," + base64.b64encode(buffer.getvalue()).decode()


class EndpointReplyError(RuntimeError):
    """An endpoint answered HTTP 200 without a reply to read: an error object instead of a completion (`retriable`
    when its code says overloaded or rate-limited), or no choices at all (a filtering proxy)."""

    def __init__(self, message: str, retriable: bool = False):
        super().__init__(message)
        self.retriable = retriable


def _content_text(content: Any) -> str:
    """`message.content` as text: a string, `None`, or a list of content parts (`{"type": "text", "text": ...}`, as
    the OpenAI API allows), whose text parts are joined."""
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = [part.get("text") if isinstance(part, dict) else getattr(part, "text", None) for part in content]
        return "".join(text for text in texts if isinstance(text, str))
    raise EndpointReplyError(f"message.content is a {type(content).__name__}, neither text nor a list of parts")


# the `finish_reason`s of a reply that ended as the model meant it to (OpenAI and vLLM "stop", TGI "eos_token",
# Anthropic-style gateways "end_turn" and "stop_sequence"; a server that does not say gives None), compared in lower
# case: a gateway may pass its upstream's spelling ("STOP", "END_TURN")
NORMAL_FINISH_REASONS = (None, "", "stop", "eos", "eos_token", "end_turn", "stop_sequence")
# the `finish_reason`s of a reply stopped at its token budget (also in lower case: "LENGTH", "MAX_TOKENS")
BUDGET_FINISH_REASONS = ("length", "max_tokens")


def completion_reply(response: Any, subject: str = "") -> Reply:
    """The first choice's text of a chat completion, `truncated` when it stopped at `max_tokens` (`finish_reason:
    "length"`) or ended any other way than normally (`content_filter`, `tool_calls`, ...; not
    `NORMAL_FINISH_REASONS`) or was refused (`message.refusal`): the text of those is no complete answer, and each is
    named in a warning (`subject`: which request it answered). An HTTP 200 body without one (an error object, no
    choices) raises `EndpointReplyError` quoting it."""
    error = response.get("error") if isinstance(response, dict) else None
    if error is not None:
        message = error.get("message", error) if isinstance(error, dict) else error
        code = error.get("code") if isinstance(error, dict) else None
        kind = f" ({error['type']}, code {code})" if isinstance(error, dict) and error.get("type") else ""
        status = int(code) if isinstance(code, int) or (isinstance(code, str) and code.isdigit()) else None
        raise EndpointReplyError(
            f"HTTP 200 with an error instead of a completion{kind}: {str(message)[:300]!r}",
            retriable=status is not None and (status == 429 or status >= 500),
        )
    choices = getattr(response, "choices", None)
    if not choices:
        raise EndpointReplyError(
            "the completion holds no choices (`choices: []`, e.g. a proxy or content filter that removed the reply)"
        )
    choice = choices[0]
    message = getattr(choice, "message", None)
    if message is None and isinstance(choice, dict) and choice.get("text") is not None:
        # a server or proxy mapping chat onto the legacy /v1/completions API: whether the chat template and the video
        # reached the model is unknown, so its text is not taken as an answer
        raise EndpointReplyError(
            f"the reply has the legacy completions shape (`choices[0].text`, object {response.get('object')!r}), not "
            "a chat completion's `choices[0].message`: point the base URL at an OpenAI-compatible chat completions "
            "API (`/v1/chat/completions`)"
        )
    text = _content_text(getattr(message, "content", None))
    finish = getattr(choice, "finish_reason", None)
    finish_lower = finish.strip().lower() if isinstance(finish, str) else finish  # as the lists spell it
    refusal = getattr(message, "refusal", None)
    if refusal and not text.strip():
        # the OpenAI API's refusal: no content, the reason in `message.refusal`
        logger.warning(
            "The reply%s is a refusal (message.refusal: %r): counted as a cut reply, not as an answer.",
            subject,
            str(refusal)[:200],
        )
        return Reply("", ended_early="refusal")
    if finish_lower not in NORMAL_FINISH_REASONS and finish_lower not in BUDGET_FINISH_REASONS:
        # an Azure-style content filter stops mid-sentence ("The red square moves to the"), a tool call is no
        # answer: taken as complete, such text would become a chosen or rejected answer
        logger.warning(
            "The reply%s ended with finish_reason %r, not a normal end (%s), after %r: counted as a cut reply, not "
            "as a complete answer.",
            subject,
            finish,
            ", ".join(repr(reason) for reason in NORMAL_FINISH_REASONS if reason),
            text.strip()[:80],
        )
    if finish_lower in BUDGET_FINISH_REASONS:
        return Reply(text.strip(), truncated=True)
    return Reply(text.strip(), ended_early=None if finish_lower in NORMAL_FINISH_REASONS else str(finish))


def same_model(asked: str, served: str) -> bool:
    """Whether a reply's `model` names the model asked, in the forms servers echo it: in any case, a served name that
    holds the id asked (`Qwen/Qwen2-VL-7B-Instruct` for `qwen2-vl-7b-instruct`, a dated `gpt-4o-2024-08-06` for
    `gpt-4o`, `transformers serve`'s `<id>@main`), or the same last path segment (`org/name` for `name`, a local
    folder's path for its basename)."""
    asked, served = asked.strip().lower(), served.strip().lower()

    def last(name: str) -> str:
        return name.replace("\\", "/").rstrip("/").rpartition("/")[2].partition("@")[0]

    return asked in served or (last(asked) != "" and last(asked) == last(served))


def not_json_reply(body: str) -> EndpointReplyError:
    """The error for an HTTP 200 body that is not JSON, quoting its start and saying what it looks like.
    (`InferenceClient` hands back the body only, without its headers, so its form is told from the text.)"""
    text = body.lstrip()
    if text.startswith(("data:", "event:")):
        kind = (
            "; it looks like server-sent events (text/event-stream): the server streamed although stream was not asked"
        )
    elif text[:1] == "<":
        kind = "; it looks like an HTML page (text/html: a login, proxy or maintenance page?)"
    else:
        kind = ""
    return EndpointReplyError(f"HTTP 200 with a reply that is not JSON{kind}. It begins {text[:200]!r}")


def _http_status(error: Exception) -> int | None:
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError) and error.response is not None:
        return error.response.status_code
    return None


def retry_after(error: Exception) -> float | None:
    """Seconds a 429 or 503 reply's `Retry-After` header asks to wait (delay-seconds or an HTTP date), or `None`."""
    if _http_status(error) not in (429, 503):
        return None
    value = error.response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when.tzinfo is not None else None


def error_text(error: Exception) -> str:
    """`error` as one line for a user: an HTTP error as its status and the server's own message (a JSON body's
    `error.message`, `message` or `detail`, else the body's start), which huggingface_hub's text may leave out."""
    status = _http_status(error)
    if status is None:
        return str(error)
    try:
        body = error.response.text or ""
    except Exception:  # noqa: BLE001 - a streamed body not read: the error's own text then
        body = str(error)
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    message = None
    if isinstance(data, dict):
        inner = data.get("error")
        message = inner.get("message") if isinstance(inner, dict) else inner
        message = message or data.get("message") or data.get("detail")
    message = " ".join(str(message or body).split())[:300] or "(empty body)"
    return f"HTTP {status} {error.response.reason_phrase or ''}".rstrip() + f": {message}"


def request_subject(request: GenerationRequest) -> str:
    """Which video (and query) a request was about, for an error message: empty outside a curation run."""
    candidate = request.candidate
    if candidate is None:
        return ""
    query = f" ({candidate.granularity} {candidate.task_type} query)" if candidate.task_type else ""
    return f" on a request about video {candidate.video_id!r}{query}"


class OpenAIBackend(GenerationBackend):
    """An OpenAI-compatible chat endpoint reached through `huggingface_hub.InferenceClient`.

    Args:
        model: model id the endpoint serves (for `transformers serve`, the path or Hub id it loaded).
        base_url: the endpoint root, e.g. `http://127.0.0.1:8000` (a trailing `/v1` is accepted).
        api_key: bearer token (`None` for local servers).
        timeout: seconds per request.
        max_retries: extra attempts after a timeout, connection error, 429 or 5xx (also as the code of an error
            object in an HTTP 200 body); other errors fail at once.
        retry_backoff: seconds before the first retry, doubled on each further retry.
        max_concurrency: requests in flight at once.
        temperature: 0 decodes greedily.
        max_pixels: per-frame pixel budget: larger frames are scaled down to it before they are sent.
        ready_max_new_tokens: token budget of `check_ready`'s request; `from_config` gives it the role's own budget,
            which its real requests ask too (a gateway may refuse a budget below some minimum, e.g. 16).
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
        max_pixels: int | None = None,
        ready_max_new_tokens: int = 16,
    ):
        from huggingface_hub import InferenceClient, is_offline_mode

        if base_url and not base_url.lower().startswith(("http://", "https://")):
            # without a scheme InferenceClient takes it for a model id on the Hub and asks for a token
            raise BackendError(f"base_url={base_url!r} has no scheme: write it as http://{base_url} (or https://).")
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
        self.max_pixels = max_pixels
        self.ready_max_new_tokens = ready_max_new_tokens
        self.client = InferenceClient(base_url=self.base_url, api_key=api_key, timeout=timeout)
        # why the server refused a `video_url` part (videos then go as images for the rest of the run), or None
        self.video_refused: str | None = None
        self._fallback_lock = threading.Lock()
        # the model a reply named where it is not the one asked (`same_model`; a gateway's router or fallback), or None
        self.served_model: str | None = None
        # the curation role it was built for (`from_config`; the first, where roles share it), for messages
        self.role: str | None = None

    @classmethod
    def from_config(cls, config: CurationConfig, role: str, device: str | None = None) -> OpenAIBackend:
        """The backend of `role` ("video", "question" or "judge") as `config` sets it (the `BACKENDS` factory)."""
        _, model, base_url = config.role_settings(role)
        # the smallest budget the role asks for: one its endpoint takes if it takes the role's requests
        budgets = ("caption", "answer") if role == "video" else (role,)
        backend = cls(
            model,
            base_url=base_url,
            api_key=config.api_key,
            timeout=config.request_timeout,
            max_retries=config.max_retries,
            retry_backoff=config.retry_backoff,
            max_concurrency=config.max_concurrency,
            temperature=config.temperature if config.do_sample else 0.0,
            max_pixels=config.max_pixels,
            ready_max_new_tokens=min(getattr(config, f"{name}_max_new_tokens") for name in budgets),
        )
        backend.role = role
        return backend

    @staticmethod
    def _retriable(error: Exception) -> bool:
        from huggingface_hub.errors import HfHubHTTPError

        # huggingface_hub 2.x speaks httpx2 (older releases httpx): match their transport errors by class name
        transport = {"TimeoutException", "TransportError"}
        if isinstance(error, (TimeoutError, ConnectionError)) or transport & {c.__name__ for c in type(error).__mro__}:
            return True
        if isinstance(error, HfHubHTTPError) and error.response is not None:
            return error.response.status_code == 429 or error.response.status_code >= 500
        return isinstance(error, EndpointReplyError) and error.retriable

    def messages(self, request: GenerationRequest, as_images: bool | None = None) -> list[dict[str, Any]]:
        """Chat messages for one request: the video as one `video_url` part (or its frames as images, when
        `as_images` or, by default, after the server refused video), then the prompt."""
        if request.video is None:
            return [{"role": "user", "content": request.prompt}]
        if as_images is None:
            as_images = self.video_refused is not None
        frames, metadata = request.video
        frames = frames_within_pixels(np.asarray(frames), self.max_pixels)
        if as_images:
            parts = [{"type": "image_url", "image_url": {"url": _frame_data_url(f)}} for f in frames]
        else:
            parts = [{"type": "video_url", "video_url": {"url": video_data_url(frames, metadata)}}]
        return [{"role": "user", "content": [*parts, {"type": "text", "text": request.prompt}]}]

    def _complete(self, messages: list[dict[str, Any]], max_new_tokens: int, seed: int, subject: str = "") -> Reply:
        try:
            response = self.client.chat_completion(
                messages,
                model=self.model_id,
                max_tokens=max_new_tokens,
                temperature=self.temperature,
                seed=seed % 2**31,
            )
        except json.JSONDecodeError as error:  # the body is in hand (`error.doc`): say what it was instead
            raise not_json_reply(error.doc) from error
        reply = completion_reply(response, subject)
        self._note_served_model(getattr(response, "model", None))
        return reply

    def _note_served_model(self, served: Any) -> None:
        """Warns once (per role and endpoint) when a reply names another model than the one asked: a gateway routing
        to another model, or falling back to one, answers for it while the report and dataset card credit the model
        asked (and TPO's premise, that the model under training wrote both answers, is broken). Not refused: gateways
        rename models too, so the served name is only reported (`served_model`)."""
        if not isinstance(served, str) or not served.strip() or same_model(self.model_id, served):
            return
        with self._fallback_lock:
            if self.served_model is not None:
                return  # requests in flight at once found it too: one warning per run
            self.served_model = served
        model, base_url = (
            (f"`{self.role}_model`", f"`{self.role}_base_url`") if self.role else ("the model name", "the base URL")
        )
        logger.warning(
            "Endpoint %s was asked for model %s, but its reply names model %r (a gateway's router or fallback?): the "
            "curation report and dataset card credit %s. If %r is another model, set %s to the model the endpoint "
            "serves, or point %s at an endpoint serving %s; if it is the gateway's name for %s, nothing is wrong.",
            self.base_url,
            self.model_id,
            served,
            self.model_id,
            served,
            model,
            base_url,
            self.model_id,
            self.model_id,
        )

    def _subject(self, request: GenerationRequest) -> str:
        """Whose reply to `request` a warning is about: the endpoint, its model and the request's video."""
        return f" of {self.base_url} (model {self.model_id}){request_subject(request)}"

    def _ask(self, request: GenerationRequest, max_new_tokens: int, seed: int) -> Reply:
        """One attempt: video first while the server takes video, else images."""
        video_first = request.video is not None and self.video_refused is None
        try:
            return self._complete(
                self.messages(request, as_images=not video_first), max_new_tokens, seed, self._subject(request)
            )
        except Exception as error:
            status = _http_status(error)
            # Servers word a refusal differently, or not at all (`transformers serve` answers a bare "500 Internal
            # Server Error" when it cannot decode the video), so the message is not parsed: the same request as
            # images tells. 429 is rate limiting, and a 503 saying when to come back overload: for the retry loop.
            if not video_first or status is None or status < 400 or status == 429 or retry_after(error) is not None:
                raise
            for again in (True, False):
                try:
                    reply = self._complete(
                        self.messages(request, as_images=True), max_new_tokens, seed, self._subject(request)
                    )
                    break
                except Exception as image_error:
                    # a server that just failed may drop the kept-alive connection: one more try on a new one
                    if again and _http_status(image_error) is None and self._retriable(image_error):
                        logger.info("The image form of a refused video request failed (%r); once more", image_error)
                        continue
                    # images fail too: not about video. The image error is the one to retry on and to report
                    # (a server that fails every request says why there), chained to the video error.
                    logger.info("The image form of a refused video request (%r) failed too (%r)", error, image_error)
                    raise image_error from error
            self._refuse_video(error_text(error))
            return reply

    def _refuse_video(self, reason: str) -> None:
        with self._fallback_lock:
            if self.video_refused is not None:
                return  # requests in flight at once found it too: one warning per run
            self.video_refused = reason
        logger.warning(
            "Endpoint %s (model %s) refused a video sent as a `video_url` part (%s) but answers the same request "
            "with its frames as images: sending videos as images for the rest of this run. The model then sees the "
            "frames without their timing, so its answers can differ from the training path's. (`transformers serve` "
            "5.x decodes `video_url` only from http(s) URLs or server-side paths, with torchcodec and FFmpeg; vLLM "
            "takes `data:video/mp4;base64` URLs for video models.)",
            self.base_url,
            self.model_id,
            reason,
        )

    def _one(self, request: GenerationRequest, max_new_tokens: int, seed: int) -> Reply:
        last_error: Exception | None = None
        attempts = 0
        for attempt in range(self.max_retries + 1):
            attempts = attempt + 1
            try:
                return self._ask(request, max_new_tokens, seed)
            except Exception as error:  # noqa: BLE001 - classified just below
                last_error = error
                if not self._retriable(error) or attempt == self.max_retries:
                    break
                delay = self.retry_backoff * 2**attempt
                asked = retry_after(error)
                if asked is not None:  # the server says when to come back: sooner is refused again, later is idle
                    delay = min(asked, MAX_RETRY_AFTER)
                    capped = f", capped from {asked:.0f} s" if asked > MAX_RETRY_AFTER else ""
                    how = f" (the server's Retry-After{capped})"
                else:
                    how = ""
                logger.warning(
                    "Request to %s failed (%s); retry %d in %.1f s%s",
                    self.base_url,
                    error_text(error),
                    attempt + 1,
                    delay,
                    how,
                )
                time.sleep(delay)
        # only errors worth retrying (timeouts, connection errors, 429, 5xx) were retried: say how many were made
        retried = "" if self._retriable(last_error) else " (not retried: this error does not go away by retrying)"
        raise BackendError(
            f"Endpoint {self.base_url} (model {self.model_id}) failed after {attempts} attempt(s){retried}"
            f"{request_subject(request)}: {error_text(last_error)}"
        ) from last_error

    def check_ready(self) -> None:
        """One short text request: a model the endpoint does not serve (404), a refused key (401) or an endpoint that
        does not answer fails here, retried as any request is, naming the endpoint and model. It asks the role's own
        token budget (`ready_max_new_tokens`), not one token, which a gateway may refuse (`max_tokens must be at
        least 16`) though it serves the run; the reply is short anyway."""
        self._one(GenerationRequest("Reply with OK."), max_new_tokens=self.ready_max_new_tokens, seed=0)

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int, seed: int = 0) -> list[str]:
        with ThreadPoolExecutor(self.max_concurrency) as pool:
            return list(pool.map(lambda ir: self._one(ir[1], max_new_tokens, seed + ir[0]), enumerate(requests)))
