"""Stage 2 of the flow (curation): questions from captions, by an LLM (the paper's prompt) or from templates.

An LLM may decline ("None") or reply in a shape the parser cannot read: both are counted (`question_none`,
`question_unparseable`) and drop the candidate. A run none of whose first replies parse stops, quoting one
(`generate.ReplyWatch` over `QUESTION_REPLIES`), rather than ask about every video in vain. Candidates with an
existing question keep it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .backends import GenerationBackend
from .candidate import Candidate
from .generate import RepliesUnreadableError, ReplyRole, generate_and_parse
from .prompts import QUESTION_REPLY_FORMATS, parse_question_reply, question_prompt, template_question


def ask(
    candidates: list[Candidate],
    backend: GenerationBackend | None,
    *,
    max_new_tokens: int,
    seed: int,
    stats: Counter,
) -> None:
    """Sets `question` (and the LLM's reference answer) on every candidate without one; `backend=None`: templates."""
    pending = [candidate for candidate in candidates if candidate.question is None and candidate.alive]
    if backend is None:
        for candidate in pending:
            candidate.question = template_question(candidate.task_type, candidate.segment)
            candidate.question_source = "template"
        return
    asked = generate_and_parse(
        backend,
        pending,
        lambda candidate: question_prompt(candidate.caption, candidate.task_type),
        parse_question_reply,
        max_new_tokens=max_new_tokens,
        seed=seed,
        stats=stats,
        stage="question",
    )
    for candidate, reply, parsed in asked:
        candidate.question_reply = reply
        stats[f"question_{parsed.status}"] += 1
        if parsed.status == "ok":
            candidate.question, candidate.reference_answer = parsed.question, parsed.answer
            candidate.question_source = "generated"
        else:
            candidate.drop_reason = "question_none" if parsed.status == "none" else "question_unparseable"


class QuestionRepliesUnreadableError(RepliesUnreadableError):
    """No reply of the question writer could be read as a question (another format or language, empty replies, a
    reasoning model's budget spent thinking): the run stops, quoting one, instead of dropping every candidate."""


def _question_parsed(record: dict[str, Any]) -> bool:
    return record["keep_reason"] != "question_unparseable"  # "None" (declined) is a reply that parsed


# the question writer's replies as `ReplyWatch` counts them: a run none of whose question replies parse stops
QUESTION_REPLIES = ReplyRole(
    name="question",
    title="question writer",
    reply_field="question_reply",
    parsed=_question_parsed,
    reads_as="a question",
    formats=QUESTION_REPLY_FORMATS,
    max_new_tokens="question_max_new_tokens",
    loss="every candidate would be dropped",
    remedy="Use a question model that follows the question prompt, or --question_backend template.",
    error=QuestionRepliesUnreadableError,
)
