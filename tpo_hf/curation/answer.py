"""Stage 2 of the flow (curation): the contrasted answers, the heart of TPO's self-training pairs.

The same video-LMM, with the same decoding settings, answers each question twice: from the preferred view (the
segment, or dense frames) and from the dis-preferred one (the video without the segment, or sparse frames). Only
what the model sees differs. Empty or identical answers make no preference and drop the candidate, unless anchors
are wanted (`CurationConfig.anchor_ratio`): then identical answers make an anchor candidate for the judge. An answer
cut at `answer_max_new_tokens` (`Reply.truncated`) drops the candidate too (`truncated_answer`) under
`CurationConfig.cut_answers="drop"` (by default when its backend `drops_cut_answers`, as endpoints do): a pair must
not teach answers that stop mid-word. An answer that ended early for another reason (a content filter's partial text,
a refusal: `Reply.ended_early`) drops the candidate whatever `cut_answers` says (`answer_ended_early`). A reasoning model's `<think>` block is removed from its answers (as from
its judge and question replies, `prompts.final_reply`), and answers that differ only in case, whitespace or final
punctuation, or only typographically (curly quotes, dashes, full-width forms, zero-width characters), count as
identical (`same_answer`).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter

from .backends import GenerationBackend, GenerationRequest, ended_early, is_truncated
from .candidate import SIDES, Candidate, DecodedViews
from .generate import generate
from .prompts import final_reply

logger = logging.getLogger(__name__)

# the drop reason of a candidate whose chosen or rejected answer was cut at `answer_max_new_tokens`
TRUNCATED_ANSWER = "truncated_answer"
ANSWER_ENDED_EARLY = "answer_ended_early"
# the stats key counting answers whose reasoning model's `<think>` block was removed before storing them
ANSWERS_THINKING_REMOVED = "answers_thinking_removed"


def same_answer(first: str, second: str) -> bool:
    """Whether two answers say the same thing as far as a pair goes: equal once case, runs of whitespace, final
    punctuation and typography are set aside ('The square is red.' and 'the square is  red' teach no preference, nor
    do 'It's red' and 'It’s red', 'Red...' and 'Red…', full-width 'Ｒｅｄ' and 'Red', or a zero-width space)."""
    return _normalised(first) == _normalised(second)


# typographic quotes and dashes that NFKC leaves as they are, as their ASCII forms
_TYPOGRAPHIC = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032", "'"),  # ‘ ’ ‚ ‛ ′
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033", '"'),  # “ ” „ ‟ ″
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212", "-"),  # hyphens, dashes, minus sign
    }
)


def _normalised(text: str) -> str:
    # a pair must not teach typography alone: compatibility forms (full-width letters, '…', NBSP) as NFKC writes
    # them, invisible format characters (zero-width space, soft hyphen, BOM: category Cf) dropped, curly quotes and
    # dashes as ASCII
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if unicodedata.category(c) != "Cf").translate(_TYPOGRAPHIC)
    text = re.sub(r"\*\*|__|`+", "", text.casefold())  # Markdown emphasis ('**Red**' is 'Red')
    return re.sub(r"\s+", " ", text).strip().rstrip(".!?;:,。！？ ").strip()


def _answer_text(reply: str, stats: Counter) -> str:
    # a reasoning model's thinking is no part of its answer: a pair must not teach (or compare) the draft
    text = final_reply(reply) if "think>" in reply.lower() else reply
    if text != reply:
        stats[ANSWERS_THINKING_REMOVED] += 1
    return text


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
    thinking_before = stats[ANSWERS_THINKING_REMOVED]
    for candidate in answerable:
        chosen = next(replies)
        rejected = chosen if candidate.anchor_origin == "identical_views" else next(replies)
        candidate.chosen = _answer_text(str(chosen), stats)
        candidate.rejected = (
            candidate.chosen if candidate.anchor_origin == "identical_views" else _answer_text(str(rejected), stats)
        )
        if ended_early(chosen) is not None or ended_early(rejected) is not None:
            candidate.drop_reason = ANSWER_ENDED_EARLY
        elif drops_cut and (is_truncated(chosen) or is_truncated(rejected)):
            candidate.drop_reason = TRUNCATED_ANSWER
        elif not candidate.chosen.strip() or not candidate.rejected.strip():
            candidate.drop_reason = "empty_answer"
        elif candidate.anchor_origin is None and same_answer(candidate.chosen, candidate.rejected):
            candidate.cannot_pair("identical_answers", anchors)
    if stats[ANSWERS_THINKING_REMOVED] > thinking_before:
        logger.info(
            "Removed a reasoning model's <think> block from %d answer(s): only the final answer is stored.",
            stats[ANSWERS_THINKING_REMOVED] - thinking_before,
        )
