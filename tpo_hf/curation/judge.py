"""Stage 2 of the flow (curation): the judge's three checks (arXiv 2501.13919) on every pair that is still alive.

1. is the chosen answer better than the rejected one; 2. does the question or the chosen answer contradict the
caption, or is the question ambiguous; 3. is the chosen answer correct given the caption. Every judged pair records
the three verdicts and the judge's reason; a pair is kept only when all three pass. An anchor candidate (one answer,
given twice) has nothing to be better than: it is kept when checks 2 and 3 pass.
"""

from __future__ import annotations

from collections import Counter

from .backends import GenerationBackend
from .candidate import Candidate
from .generate import generate_and_parse
from .prompts import judge_prompt, parse_judge_reply


def judge(
    candidates: list[Candidate],
    backend: GenerationBackend,
    *,
    max_new_tokens: int,
    seed: int,
    stats: Counter,
) -> None:
    """Sets `verdict` (and `drop_reason` when a check fails) on every live candidate."""
    alive = [candidate for candidate in candidates if candidate.alive]
    judged = generate_and_parse(
        backend,
        alive,
        lambda candidate: judge_prompt(candidate.caption, candidate.question, candidate.chosen, candidate.rejected),
        parse_judge_reply,
        max_new_tokens=max_new_tokens,
        seed=seed,
        stats=stats,
        stage="judge",
    )
    for candidate, reply, verdict in judged:
        candidate.judge_reply, candidate.verdict = reply, verdict
        if candidate.anchor_origin is None:
            candidate.drop_reason = verdict.drop_reason()
        elif not (verdict.contradiction is False and verdict.correct is True):
            candidate.drop_reason = candidate.anchor_origin  # dropped as it would have been without anchors
