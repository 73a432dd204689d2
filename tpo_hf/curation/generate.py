"""Stage 2 of the flow (curation): the one generate-then-parse loop every model stage goes through.

A stage builds one `GenerationRequest` per candidate (or per view), sends them to its backend in one call (the
backend batches), and gets the replies back in order; the question and judge stages parse each reply. Time spent and
requests sent are counted per stage (`seconds_<stage>`, `requests_<stage>`) for the run report, and so are replies cut
at the stage's token budget (`truncated_<stage>`, the backend's `Reply.truncated`) and replies that ended early for
another reason, a content filter or a refusal (`ended_early_<stage>`, `Reply.ended_early`). A run none of whose first replies
of a parsing role (the question writer, the judge) parse stops, quoting one (`ReplyWatch`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from .backends import GenerationBackend, GenerationRequest, ended_early, is_truncated
from .candidate import Candidate
from .prompts import final_reply

if TYPE_CHECKING:
    from .config import CurationConfig

Parsed = TypeVar("Parsed")

# replies of one role a run reads, none parsed, before it stops (`ReplyWatch`)
REPLIES_BEFORE_STOP = 8


def generate(
    backend: GenerationBackend,
    requests: list[GenerationRequest],
    *,
    max_new_tokens: int,
    seed: int,
    stats: Counter,
    stage: str,
) -> list[str]:
    """The backend's replies to `requests`, in order, with the stage's time, request count and replies cut at
    `max_new_tokens` added to `stats` (a cut reply stays a `Reply` with `truncated` set, for the stage to judge)."""
    if not requests:
        return []
    started = time.perf_counter()
    replies = backend.generate(requests, max_new_tokens=max_new_tokens, seed=seed)
    stats[f"seconds_{stage}"] += time.perf_counter() - started
    stats[f"requests_{stage}"] += len(requests)
    early = sum(ended_early(reply) is not None for reply in replies)
    stats[f"truncated_{stage}"] += sum(map(is_truncated, replies)) - early  # cut at the budget
    stats[f"ended_early_{stage}"] += early
    return replies


def generate_and_parse(
    backend: GenerationBackend,
    candidates: list[Candidate],
    prompt: Callable[[Candidate], str],
    parse: Callable[[str], Parsed],
    *,
    max_new_tokens: int,
    seed: int,
    stats: Counter,
    stage: str,
) -> list[tuple[Candidate, str, Parsed]]:
    """Asks `backend` the text prompt `prompt(candidate)` for each candidate; returns (candidate, reply, parsed).

    Each request carries its candidate, so rule-based backends can answer from it without reading the prompt.
    """
    requests = [GenerationRequest(prompt(candidate), candidate=candidate) for candidate in candidates]
    replies = generate(backend, requests, max_new_tokens=max_new_tokens, seed=seed, stats=stats, stage=stage)
    return [(candidate, reply, parse(reply)) for candidate, reply in zip(candidates, replies)]


class RepliesUnreadableError(ValueError):
    """No reply of a role's model (the question writer, the judge) could be read: another language or format, empty
    replies, a reasoning model's budget spent thinking. The run stops, quoting one, instead of dropping every
    candidate; each role raises its own subclass."""


@dataclass(frozen=True)
class ReplyRole:
    """What `ReplyWatch` needs of a role whose replies are parsed.

    Args:
        name: the role, as `CurationConfig.role_settings` knows it ("question" or "judge").
        title: how messages call its model ("question writer", "judge").
        reply_field: the shard record's field holding its raw reply (`None`: the role was not asked).
        parsed: whether a shard record's reply parsed.
        reads_as: what a parsed reply is read as ("a question", "its three checks").
        formats: the reply formats the parser accepts.
        max_new_tokens: the setting that bounds its replies.
        loss: what the run would make of replies none of which parse.
        remedy: how to go on (another model, or without the role).
        error: the error class the stop raises.
    """

    name: str
    title: str
    reply_field: str
    parsed: Callable[[dict[str, Any]], bool]
    reads_as: str
    formats: str
    max_new_tokens: str
    loss: str
    remedy: str
    error: type[RepliesUnreadableError]


@dataclass
class ReplyWatch:
    """Counts one role's replies in the shards a process curates, to stop a run none of whose replies parse after
    `REPLIES_BEFORE_STOP` of them (or at the end of a shorter run) rather than curate every video in vain. While no
    reply has parsed (`undecided`), the run holds its shards back, so a run again with a repaired model asks anew
    instead of reusing replies that were never read; shards written before are kept."""

    role: ReplyRole
    replies: int = 0
    parsed: int = 0
    sample: str | None = None  # one unread reply that says something, when there is one (else all were empty)

    def add(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            reply = record.get(self.role.reply_field)
            if reply is None:  # not asked: dropped before this stage, or its question came from an annotation
                continue
            self.replies += 1
            if self.role.parsed(record):
                self.parsed += 1
            elif not self.sample and final_reply(reply):  # empty (or thinking only) replies are told apart
                self.sample = reply

    @property
    def undecided(self) -> bool:
        """Replies came, none parsed yet."""
        return self.replies > 0 and self.parsed == 0

    def check(self, config: CurationConfig, finished: bool = False) -> None:
        """Raises the role's `RepliesUnreadableError` once enough replies (all of them, when `finished`) are
        unread."""
        if not self.undecided or (self.replies < REPLIES_BEFORE_STOP and not finished):
            return
        role = self.role
        backend, model, base_url = config.role_settings(role.name)
        where = f" at {base_url}" if base_url else ""
        if self.sample:
            what = f"One reply: {self.sample[:300]!r}{'...' if len(self.sample) > 300 else ''}."
        else:
            budget = f"{role.max_new_tokens}={getattr(config, role.max_new_tokens)}"
            what = (
                f"Every reply was empty (or thinking only): a reasoning model may spend all of {budget} thinking "
                "(raise it, or serve the model with its reasoning parser), or the server returns no content."
            )
        raise role.error(
            f"None of the {self.replies} replies of {role.title} model {model!r} ({backend} backend){where} could be "
            f"read as {role.reads_as}, so {role.loss}: stopped before curating further videos. {what} Accepted: "
            f"{role.formats}. {role.remedy}"
        )
