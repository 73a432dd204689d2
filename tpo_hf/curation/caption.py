"""Stage 2 of the flow (curation): captions, written by the video-LMM, that questions are later drawn from.

A localized caption sees exactly the preferred view (the segment); a comprehensive caption the dense whole video,
once per video however many comprehensive candidates it has. Existing captions (annotations) are kept.
"""

from __future__ import annotations

from collections import Counter

from .backends import GenerationBackend, GenerationRequest
from .candidate import Candidate, DecodedViews
from .generate import generate
from .prompts import CAPTION_PROMPTS


def caption(
    candidates: list[Candidate],
    views: DecodedViews,
    backend: GenerationBackend,
    *,
    max_new_tokens: int,
    seed: int,
    stats: Counter,
) -> None:
    """Sets `caption` on every live candidate that has none."""
    first: dict[tuple[str, str], Candidate] = {}
    for candidate in candidates:
        if candidate.caption is None and candidate.alive:
            first.setdefault((candidate.video_id, candidate.view_key), candidate)
    requests = [
        GenerationRequest(CAPTION_PROMPTS[c.granularity], c.view(views, "preferred"), candidate=c)
        for c in first.values()
    ]
    replies = generate(backend, requests, max_new_tokens=max_new_tokens, seed=seed, stats=stats, stage="caption")
    captions = dict(zip(first, replies))
    for candidate in candidates:
        if candidate.caption is None and candidate.alive:
            candidate.caption = captions[(candidate.video_id, candidate.view_key)]
