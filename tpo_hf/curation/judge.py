"""Stage 2 of the flow (curation): the judge's three checks (arXiv 2501.13919) on every pair that is still alive.

1. is the chosen answer better than the rejected one; 2. does the question or the chosen answer contradict the
caption, or is the question ambiguous; 3. is the chosen answer correct given the caption. Every judged pair records
the three verdicts and the judge's reason; a pair is kept only when all three pass. An anchor candidate (one answer,
given twice) has nothing to be better than: it is kept when checks 2 and 3 pass. A run none of whose judge replies
parse stops early, quoting one (`generate.ReplyWatch` over `JUDGE_REPLIES`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .backends import GenerationBackend
from .candidate import Candidate
from .generate import RepliesUnreadableError, ReplyRole, generate_and_parse
from .prompts import JUDGE_REPLY_FORMATS, judge_prompt, parse_judge_reply


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


class JudgeRepliesUnreadableError(RepliesUnreadableError):
    """No reply of the judge could be read as its three checks (another language, an empty reply, a reasoning
    model's budget spent thinking): the run stops, quoting one, instead of dropping every pair."""


def _judge_parsed(record: dict[str, Any]) -> bool:
    return None not in (record["judge_better"], record["judge_contradiction"], record["judge_correct"])


# the judge's replies as `ReplyWatch` counts them: a run none of whose judge replies parse stops
JUDGE_REPLIES = ReplyRole(
    name="judge",
    title="judge",
    reply_field="judge_reply",
    parsed=_judge_parsed,
    reads_as="its three checks",
    formats=JUDGE_REPLY_FORMATS,
    max_new_tokens="judge_max_new_tokens",
    loss="every pair would be dropped",
    remedy="Use a judge that follows the judge prompt, or --use_judge false.",
    error=JudgeRepliesUnreadableError,
)
