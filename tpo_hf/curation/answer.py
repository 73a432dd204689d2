"""Stage 2 of the flow (curation): the contrasted answers, the heart of TPO's self-training pairs.

The same video-LMM, with the same decoding settings, answers each question twice: from the preferred view (the
segment, or dense frames) and from the dis-preferred one (the video without the segment, or sparse frames). Only
what the model sees differs. Empty or identical answers make no preference and drop the candidate, unless anchors
are wanted (`CurationConfig.anchor_ratio`): then identical answers make an anchor candidate for the judge. An answer
cut at `answer_max_new_tokens` (`Reply.truncated`) drops the candidate too (`truncated_answer`) under
`CurationConfig.cut_answers="drop"` (by default when its backend `drops_cut_answers`, as endpoints do): a pair must
not teach answers that stop mid-word.
"""

from __future__ import annotations

from collections import Counter

from .backends import GenerationBackend, GenerationRequest, is_truncated
from .candidate import SIDES, Candidate, DecodedViews
from .generate import generate

# the drop reason of a candidate whose chosen or rejected answer was cut at `answer_max_new_tokens`
TRUNCATED_ANSWER = "truncated_answer"


def answer(
    candidates: list[Candidate],
    views: DecodedViews,
    backend: GenerationBackend,
    *,
    max_new_tokens: int,
    seed: int,
    stats: Counter,
    anchors: bool = False,
    drop_cut: bool | None = None,
) -> None:
    """Sets `chosen` and `rejected` on every live candidate. With `anchors`, a candidate whose two answers are the
    same stays alive as an anchor candidate; one whose views are the same frames is answered once, for both sides.
    `drop_cut` (None: the backend's `drops_cut_answers`) drops a candidate with a cut answer."""
    answerable = [candidate for candidate in candidates if candidate.alive]
    requests = [
        GenerationRequest(c.question, c.view(views, side), candidate=c)
        for c in answerable
        for side in (SIDES[:1] if c.anchor_origin == "identical_views" else SIDES)
    ]
    replies = iter(generate(backend, requests, max_new_tokens=max_new_tokens, seed=seed, stats=stats, stage="answer"))
    drops_cut = drop_cut
    if drops_cut is None:
        drops_cut = getattr(backend, "drops_cut_answers", True)  # a backend not built on GenerationBackend
    for candidate in answerable:
        chosen = next(replies)
        rejected = chosen if candidate.anchor_origin == "identical_views" else next(replies)
        candidate.chosen, candidate.rejected = str(chosen), str(rejected)
        if drops_cut and (is_truncated(chosen) or is_truncated(rejected)):
            candidate.drop_reason = TRUNCATED_ANSWER
        elif not candidate.chosen.strip() or not candidate.rejected.strip():
            candidate.drop_reason = "empty_answer"
        elif candidate.anchor_origin is None and candidate.chosen.strip() == candidate.rejected.strip():
            candidate.cannot_pair("identical_answers", anchors)
