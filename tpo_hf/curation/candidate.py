"""Stage 2 of the flow (curation): `Candidate`, the typed record one query carries through the stages.

A candidate is made when a video is decoded (its video, granularity, segment and task type), then each stage fills
in its part: caption, question, the two contrasted answers, the judge's verdict, and `drop_reason` when a stage
rejects it. `to_record` turns it into the row stored in a shard (kept and dropped pairs alike, each with its
reason), which later becomes a dataset row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .prompts import JudgeVerdict

# decoded views of the videos of a shard: video id -> "<view_key>/<side>" -> (frames, metadata)
DecodedViews = dict[str, dict[str, tuple[Any, dict[str, Any]]]]
SIDES = ("preferred", "rejected")


@dataclass
class Candidate:
    """One query about one video, from its segment to its verdict.

    Args:
        video_id: the video, relative to the corpus root.
        granularity: `"localized"` (about `segment`) or `"comprehensive"` (about the whole video).
        view_key: key of its decoded views (`"<view_key>/preferred"` and `"<view_key>/rejected"`).
        task_type: one of the paper's task types, or `"annotation"` for an existing question.
        segment: `(start, end)` in seconds for localized candidates.
        caption, caption_source: the caption questions are written from; `"generated"` or `"annotation"`.
        question, reference_answer, question_source: the question (`"generated"`, `"template"`, `"annotation"`).
        question_reply: the question LLM's raw reply.
        chosen, rejected: the answers from the preferred and the dis-preferred view.
        verdict, judge_reply: the judge's three checks and its raw reply.
        drop_reason: why a stage dropped the candidate (`None` while it is alive).
        anchor_origin: set when the candidate cannot make a pair but stays as an anchor candidate
            (`CurationConfig.anchor_ratio`): the reason it would otherwise be dropped, "identical_views" or
            "identical_answers". It answers once and becomes an anchor row (chosen == rejected) if the judge finds
            that answer correct, else it is dropped for that reason after all.
    """

    video_id: str
    granularity: str
    view_key: str
    task_type: str
    segment: tuple[float, float] | None = None
    caption: str | None = None
    caption_source: str = "generated"
    question: str | None = None
    reference_answer: str | None = None
    question_source: str | None = None
    question_reply: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    verdict: JudgeVerdict | None = None
    judge_reply: str | None = None
    drop_reason: str | None = None
    anchor_origin: str | None = None

    @property
    def alive(self) -> bool:
        """No stage has dropped it (yet)."""
        return self.drop_reason is None

    def cannot_pair(self, reason: str, anchors: bool) -> None:
        """It can make no pair (`reason`): dropped, or kept as an anchor candidate for the judge when `anchors`."""
        if anchors:
            self.anchor_origin = reason
        else:
            self.drop_reason = reason

    def view(self, views: DecodedViews, side: str) -> tuple[Any, dict[str, Any]]:
        """The decoded `(frames, metadata)` this candidate's `side` ("preferred" or "rejected") sees."""
        return views[self.video_id][f"{self.view_key}/{side}"]

    def to_record(self, views: DecodedViews, judged: bool) -> dict[str, Any]:
        """The shard row: training columns, provenance, verdicts and why it was kept or dropped."""
        kept = self.alive and self.chosen is not None
        if kept and self.anchor_origin is not None:
            keep_reason = "kept_anchor"
        elif kept:
            keep_reason = "kept_judge_passed" if judged else "kept_no_judge"
        else:
            keep_reason = self.drop_reason
        verdict = self.verdict or JudgeVerdict()
        return {
            "prompt": self.question or "",
            "chosen": self.chosen or "",
            "rejected": self.rejected or "",
            "video": self.video_id,
            "granularity": self.granularity,
            "segment_start": self.segment[0] if self.segment else None,
            "segment_end": self.segment[1] if self.segment else None,
            "anchor": kept and self.anchor_origin is not None,
            "task_type": self.task_type,
            "question_source": self.question_source or "generated",
            "caption": self.caption or "",
            "caption_source": self.caption_source,
            "reference_answer": self.reference_answer,
            "chosen_frame_indices": list(self.view(views, "preferred")[1]["frames_indices"]),
            "rejected_frame_indices": list(self.view(views, "rejected")[1]["frames_indices"]),
            "judge_better": verdict.better,
            "judge_contradiction": verdict.contradiction,
            "judge_correct": verdict.correct,
            "judge_reason": verdict.reason,
            "judge_reply": self.judge_reply,
            "question_reply": self.question_reply,
            "kept": kept,
            "keep_reason": keep_reason,
        }
