"""Stage 2 of the flow (curation): the contrasted answers, the heart of TPO's self-training pairs.

The same video-LMM, with the same decoding settings, answers each question twice: from the preferred view (the
segment, or dense frames) and from the dis-preferred one (the video without the segment, or sparse frames). Only
what the model sees differs. Empty or identical answers make no preference and drop the candidate.
"""

from __future__ import annotations

from collections import Counter

from .backends import GenerationBackend, GenerationRequest
from .candidate import SIDES, Candidate, DecodedViews
from .generate import generate


def answer(
    candidates: list[Candidate],
    views: DecodedViews,
    backend: GenerationBackend,
    *,
    max_new_tokens: int,
    seed: int,
    stats: Counter,
) -> None:
    """Sets `chosen` and `rejected` on every live candidate."""
    answerable = [candidate for candidate in candidates if candidate.alive]
    requests = [GenerationRequest(c.question, c.view(views, side), candidate=c) for c in answerable for side in SIDES]
    replies = generate(backend, requests, max_new_tokens=max_new_tokens, seed=seed, stats=stats, stage="answer")
    for position, candidate in enumerate(answerable):
        candidate.chosen, candidate.rejected = replies[2 * position], replies[2 * position + 1]
        if not candidate.chosen.strip() or not candidate.rejected.strip():
            candidate.drop_reason = "empty_answer"
        elif candidate.chosen.strip() == candidate.rejected.strip():
            candidate.drop_reason = "identical_answers"
