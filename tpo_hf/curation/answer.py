"""Stage 2 of the flow (curation): the contrasted answers, the heart of TPO's self-training pairs.

The same video-LMM, with the same decoding settings, answers each question twice: from the preferred view (the
segment, or dense frames) and from the dis-preferred one (the video without the segment, or sparse frames). Only
what the model sees differs. Empty or identical answers make no preference and drop the candidate, unless anchors
are wanted (`CurationConfig.anchor_ratio`): then identical answers make an anchor candidate for the judge.
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
    anchors: bool = False,
) -> None:
    """Sets `chosen` and `rejected` on every live candidate. With `anchors`, a candidate whose two answers are the
    same stays alive as an anchor candidate; one whose views are the same frames is answered once, for both sides."""
    answerable = [candidate for candidate in candidates if candidate.alive]
    requests = [
        GenerationRequest(c.question, c.view(views, side), candidate=c)
        for c in answerable
        for side in (SIDES[:1] if c.anchor_origin == "identical_views" else SIDES)
    ]
    replies = iter(generate(backend, requests, max_new_tokens=max_new_tokens, seed=seed, stats=stats, stage="answer"))
    for candidate in answerable:
        candidate.chosen = next(replies)
        candidate.rejected = candidate.chosen if candidate.anchor_origin == "identical_views" else next(replies)
        if not candidate.chosen.strip() or not candidate.rejected.strip():
            candidate.drop_reason = "empty_answer"
        elif candidate.anchor_origin is None and candidate.chosen.strip() == candidate.rejected.strip():
            candidate.cannot_pair("identical_answers", anchors)
