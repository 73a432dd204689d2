"""Stage 2 of the flow (curation): the judge's three checks (arXiv 2501.13919) on every pair that is still alive.

1. is the chosen answer better than the rejected one; 2. does the question or the chosen answer contradict the
caption, or is the question ambiguous; 3. is the chosen answer correct given the caption. Every judged pair records
the three verdicts and the judge's reason; a pair is kept only when all three pass. An anchor candidate (one answer,
given twice) has nothing to be better than: it is kept when checks 2 and 3 pass. A run none of whose judge replies
parse stops early, quoting one (`JudgeReplyWatch`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backends import GenerationBackend
from .candidate import Candidate
from .generate import generate_and_parse
from .prompts import JUDGE_REPLY_FORMATS, judge_prompt, parse_judge_reply

if TYPE_CHECKING:
    from .config import CurationConfig

# judge replies a run reads, none parsed, before it stops (`JudgeReplyWatch`)
JUDGE_REPLIES_BEFORE_STOP = 8


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


class JudgeRepliesUnreadableError(ValueError):
    """No reply of the judge could be read as its three checks (another language, an empty reply, a reasoning
    model's budget spent thinking): the run stops, quoting one, instead of dropping every pair."""


@dataclass
class JudgeReplyWatch:
    """Counts the judge replies of the shards a process curates, to stop a run none of whose replies parse after
    `JUDGE_REPLIES_BEFORE_STOP` of them (or at the end of a shorter run) rather than judge every video in vain.
    While no reply has parsed (`undecided`), the run holds its shards back, so a run again with a repaired judge
    judges them anew instead of reusing verdicts that were never read."""

    replies: int = 0
    parsed: int = 0
    sample: str | None = None  # one unread reply, a non-empty one when there is one

    def add(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            reply = record.get("judge_reply")
            if reply is None:  # not judged: dropped before the judge
                continue
            self.replies += 1
            if None not in (record["judge_better"], record["judge_contradiction"], record["judge_correct"]):
                self.parsed += 1
            elif not self.sample:
                self.sample = reply

    @property
    def undecided(self) -> bool:
        """Replies came, none parsed yet."""
        return self.replies > 0 and self.parsed == 0

    def check(self, config: CurationConfig, finished: bool = False) -> None:
        """Raises `JudgeRepliesUnreadableError` once enough replies (all of them, when `finished`) are unread."""
        if not self.undecided or (self.replies < JUDGE_REPLIES_BEFORE_STOP and not finished):
            return
        _, model, base_url = config.role_settings("judge")
        where = f" at {base_url}" if base_url else ""
        if self.sample:
            what = f"One reply: {self.sample[:300]!r}{'...' if len(self.sample) > 300 else ''}."
        else:
            what = (
                "Every reply was empty (or thinking only): a reasoning model may spend all of "
                f"judge_max_new_tokens={config.judge_max_new_tokens} thinking (raise it, or serve the model with its "
                "reasoning parser), or the server returns no content."
            )
        raise JudgeRepliesUnreadableError(
            f"None of the {self.replies} replies of judge model {model!r}{where} could be read as its three checks, "
            f"so every pair would be dropped: stopped before judging further videos. {what} Accepted: "
            f"{JUDGE_REPLY_FORMATS}. Use a judge that follows the judge prompt, or --use_judge false."
        )
