"""Stage 2 of the flow (curation): the one generate-then-parse loop every model stage goes through.

A stage builds one `GenerationRequest` per candidate (or per view), sends them to its backend in one call (the
backend batches), and gets the replies back in order; the question and judge stages parse each reply. Time spent and
requests sent are counted per stage (`seconds_<stage>`, `requests_<stage>`) for the run report.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from .backends import GenerationBackend, GenerationRequest
from .candidate import Candidate

Parsed = TypeVar("Parsed")


def generate(
    backend: GenerationBackend,
    requests: list[GenerationRequest],
    *,
    max_new_tokens: int,
    seed: int,
    stats: Counter,
    stage: str,
) -> list[str]:
    """The backend's replies to `requests`, in order, with the stage's time and request count added to `stats`."""
    if not requests:
        return []
    started = time.perf_counter()
    replies = backend.generate(requests, max_new_tokens=max_new_tokens, seed=seed)
    stats[f"seconds_{stage}"] += time.perf_counter() - started
    stats[f"requests_{stage}"] += len(requests)
    return replies


def generate_and_parse(
    backend: GenerationBackend,
    candidates: list[Candidate],
    prompt: Callable[[Candidate], str],
    parse: Callable[[str], Parsed],
    *,
    max_new_tokens: int,
    seed: int,
    stats: Counter,
    stage: str,
) -> list[tuple[Candidate, str, Parsed]]:
    """Asks `backend` the text prompt `prompt(candidate)` for each candidate; returns (candidate, reply, parsed).

    Each request carries its candidate, so rule-based backends can answer from it without reading the prompt.
    """
    requests = [GenerationRequest(prompt(candidate), candidate=candidate) for candidate in candidates]
    replies = generate(backend, requests, max_new_tokens=max_new_tokens, seed=seed, stats=stats, stage=stage)
    return [(candidate, reply, parse(reply)) for candidate, reply in zip(candidates, replies)]
