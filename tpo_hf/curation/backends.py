"""Stage 2 of the flow (curation): the models behind each role, as pluggable generation backends.

Three roles generate text: `video` (captions and the contrasted answers; a video-LMM), `question` (questions from
captions) and `judge` (the three checks). Each role names a backend in `CurationConfig` (`video_backend`,
`question_backend`, `judge_backend`), looked up by name in `BACKENDS`:

- `"transformers"`: a local transformers model, batched with left padding (`TransformersBackend`);
- `"openai"`: any OpenAI-compatible chat endpoint through `huggingface_hub.InferenceClient` (`OpenAIBackend`).

`question_backend: template` needs no model: questions come from per-task templates (`Backends.question` is None).

Adding a backend: implement `GenerationBackend.generate(requests, max_new_tokens, seed) -> list[str]` (one reply
per request, in order; a reply cut at `max_new_tokens` is returned as `Reply(text, truncated=True)`) and a factory
`(config, role, device) -> GenerationBackend`, then register it by name with
`register_backend("name", factory)` or an entry `"name": "package.module:factory"` in `BACKENDS` (imported only
when a run uses it). Each request carries the prompt, the decoded video view for video roles, and the `Candidate`
it is about, so a rule-based backend (e.g. an oracle judge that knows the ground truth) can answer from the
candidate instead of parsing the prompt. Replies go through the same parsers as an LLM's.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from .candidate import Candidate

TEMPLATE_QUESTIONS = "template"  # question_backend value: questions from templates, no model


@dataclass
class GenerationRequest:
    """One prompt, with the decoded video view `(frames, metadata)` it is about (`None` for text-only prompts),
    and the candidate it was made for (`None` outside a curation run)."""

    prompt: str
    video: tuple[np.ndarray, dict[str, Any]] | None = None
    candidate: Candidate | None = None


class Reply(str):
    """A backend's reply text that also says whether generation stopped at the token budget rather than at the
    reply's end (`truncated`: an endpoint's `finish_reason: "length"`, a local model that generated `max_new_tokens`
    tokens without its end-of-sequence token). A plain `str` reply (a backend that does not tell) is not truncated.
    A reply that ended for another reason than its budget (a content filter, a refusal, a tool call) is also no
    complete answer: it is `truncated` too, with that reason in `ended_early` (None for a cut at the budget), since
    a larger budget does not help it."""

    truncated: bool
    ended_early: str | None

    def __new__(cls, text: str, truncated: bool = False, ended_early: str | None = None) -> Reply:
        reply = super().__new__(cls, text)
        reply.truncated = truncated or ended_early is not None
        reply.ended_early = ended_early
        return reply


def is_truncated(reply: str) -> bool:
    """Whether a backend's reply is no complete answer: cut at the token budget or ended early (`Reply.truncated`)."""
    return getattr(reply, "truncated", False) is True


def ended_early(reply: str) -> str | None:
    """Why a backend's reply ended before its end other than at the token budget (`Reply.ended_early`), or None."""
    return getattr(reply, "ended_early", None)


class BackendError(RuntimeError):
    """A backend failed to answer after its retries; the message names the endpoint or model."""


class GenerationBackend:
    """Common interface: `generate(requests, max_new_tokens, seed) -> list[str]` (one reply per request; `Reply`
    marks one cut at `max_new_tokens`)."""

    model_id: str = "unknown"
    # whether an answer this backend cut at `answer_max_new_tokens` drops its pair (`truncated_answer`); cut replies
    # are counted and warned about either way
    drops_cut_answers: bool = True

    def generate(self, requests: list[GenerationRequest], max_new_tokens: int, seed: int = 0) -> list[str]:
        raise NotImplementedError

    def prompt_format(self, video: bool) -> str | None:
        """What the model reads around a prompt (`video`: a prompt with a video; else a text prompt), e.g. its chat
        template: curation keys its shards by it, so a change is never served from shards made before. `None`: the
        backend does not say (an endpoint, a rule-based backend)."""
        return None

    def check_ready(self) -> None:
        """Raises `BackendError` when the backend cannot answer at all (a model name an endpoint does not serve, a
        key it refuses), before a run spends work on other stages; a no-op where that showed already (a local model
        is loaded when the backend is built)."""


class RoleSettings(Protocol):
    """What this module reads of a `CurationConfig`, by shape: the config imports the registry, so the registry does
    not import the config."""

    question_backend: str | None
    use_judge: bool

    def role_settings(self, role: str) -> tuple[str, str | None, str | None]: ...


BackendFactory = Callable[[RoleSettings, str, "str | None"], GenerationBackend]

# name -> factory `(config, role, device) -> GenerationBackend`, or "module:attribute" naming one (imported on use).
# Installed packages add theirs as entry points of the group `tpo_hf.curation_backends` (`tpo_hf.plugins`).
BACKENDS: dict[str, BackendFactory | str] = {
    "transformers": "tpo_hf.curation.transformers_backend:TransformersBackend.from_config",
    "openai": "tpo_hf.curation.openai_backend:OpenAIBackend.from_config",
}


def register_backend(name: str, factory: BackendFactory | str) -> None:
    """Makes `name` a valid `*_backend` value; `factory(config, role, device)` builds the backend of a role."""
    BACKENDS[name] = factory


def backend_names() -> list[str]:
    """Every valid backend name: the registry's and those installed packages declare as entry points."""
    from ..plugins import BACKENDS_GROUP, plugin_entry_points

    return sorted(set(BACKENDS) | set(plugin_entry_points(BACKENDS_GROUP)))


def backend_factory(name: str) -> BackendFactory:
    """The factory registered as `name`, or installed as an entry point of that name; the error lists both."""
    from ..plugins import BACKENDS_GROUP, load_plugin

    if name not in BACKENDS:
        factory = load_plugin(BACKENDS_GROUP, name)
        if factory is None:
            raise ValueError(f"Unknown generation backend {name!r}; registered: {backend_names()}.")
        return factory
    factory = BACKENDS[name]
    if isinstance(factory, str):
        module_name, _, attribute = factory.partition(":")
        factory = importlib.import_module(module_name)
        for part in attribute.split("."):
            factory = getattr(factory, part)
    return factory


@dataclass
class Backends:
    """The model behind each role; `question` is `None` for template questions, `judge` when the judge is off."""

    video: GenerationBackend
    question: GenerationBackend | None
    judge: GenerationBackend | None


def build_backends(config: RoleSettings, device: str | None = None) -> Backends:
    """Builds each role's backend once; roles naming the same backend, model and endpoint share one instance
    (one copy of a local model in memory)."""
    cache: dict[tuple, GenerationBackend] = {}

    def make(role: str) -> GenerationBackend:
        key = config.role_settings(role)  # (backend, model, base_url)
        if key not in cache:
            cache[key] = backend_factory(key[0])(config, role, device)
        return cache[key]

    backends = Backends(
        video=make("video"),
        question=None if config.question_backend == TEMPLATE_QUESTIONS else make("question"),
        judge=make("judge") if config.use_judge else None,
    )
    # the question writer and the judge are first asked after every video of a shard was answered: a model name
    # their endpoint does not serve must fail now, not after that work (which a rerun would ask for again)
    checked = [backends.video]
    for role, backend in (("question", backends.question), ("judge", backends.judge)):
        if backend is not None and not any(backend is other for other in checked):
            checked.append(backend)
            try:
                backend.check_ready()
            except BackendError as error:
                raise BackendError(
                    f"The {role} model cannot be used, checked before any video was sent: {error}. Check "
                    f"`{role}_model` and `{role}_base_url` (and `api_key`)."
                ) from error
    return backends
