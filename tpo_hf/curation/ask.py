"""Stage 2 of the flow (curation): questions from captions, by an LLM (the paper's prompt) or from templates.

An LLM may decline ("None") or reply in a shape the parser cannot read: both are counted (`question_none`,
`question_unparseable`) and drop the candidate, never the run. Candidates with an existing question keep it.
"""

from __future__ import annotations

from collections import Counter

from .backends import GenerationBackend
from .candidate import Candidate
from .generate import generate_and_parse
from .prompts import parse_question_reply, question_prompt, template_question


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
