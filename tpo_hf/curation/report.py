"""Stage 2 of the flow (curation): the run report (`curation_report.json`), its summary table and the card's numbers.

`CurationReport.from_run` counts what happened to every candidate: videos curated and skipped, questions written,
declined or unparseable, why pairs were dropped, the judge's pass rate per check, the mix, and the final dataset.
Deterministic counts come first; timings (which vary between runs) sit under `timings`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ..video_settings import VideoSettings
from .config import CurationConfig
from .inputs import ROW_WITHOUT_QUESTION, VideoItem
from .segments import SegmentSpec

REPORT_NAME = "curation_report.json"
# the stages whose replies have a token budget of their own, `<stage>_max_new_tokens`
TRUNCATION_STAGES = ("caption", "question", "answer", "judge")


@dataclass
class VideoCounts:
    total: int
    curated: int
    skipped: list[dict[str, str]]
    # since the last run on the same shards (`storage.VideoChanges`): videos curated anew, videos whose pairs were
    # dropped, and videos whose file (or annotations) changed in place and were curated again
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)


@dataclass
class CandidateCounts:
    total: int
    localized: int
    comprehensive: int


@dataclass
class JudgeRates:
    """Share of judged pairs whose reply parsed, and that passed all three checks; the share of each check is over
    the `parsed_replies` pairs whose reply parsed (an unread reply passes or fails no check)."""

    judged: int
    parsed: float | None
    check1_chosen_better: float | None
    check2_no_contradiction: float | None
    check3_chosen_correct: float | None
    passed: float | None
    parsed_replies: int = 0


@dataclass
class FinalCounts:
    total: int  # rows of the dataset, anchors included
    by_granularity: dict[str, int]  # pairs only, as by_task_type
    by_task_type: dict[str, int]
    anchors: int = 0


@dataclass
class CurationReport:
    """What a curation run did, as written to `curation_report.json` (`to_dict`) and shown on the dataset card."""

    videos: VideoCounts
    candidates: CandidateCounts
    questions: dict[str, int]
    drop_reasons: dict[str, int]
    judge: JudgeRates | None
    kept_before_mix: int
    mix: dict[str, Any]
    final: FinalCounts
    models: dict[str, str | None]
    frames: dict[str, int | None]
    timings: dict[str, float] = field(default_factory=dict)
    frames_decoded: int = 0
    # localized segments that could not be placed (video shorter than the segment plus its margins)
    segments_missing_short_video: int = 0
    # annotation rows giving a video another caption than the one used, its first (`VideoItem.rows_other_caption`)
    captions_ignored: int = 0
    # why the run produced no pair (empty when it produced some); also the error's message
    no_pairs_reason: str = ""
    # anchor candidates the judge kept (`anchor_ratio`); `kept_before_mix` counts pairs only
    anchors_before_mix: int = 0
    # replies cut at their stage's token budget (`<stage>_max_new_tokens`), by stage: captions, question replies,
    # answers (an endpoint's cut answer drops its pair as `truncated_answer`) and judge replies
    truncated_replies: dict[str, int] = field(default_factory=dict)
    # replies that ended early for another reason than the budget (a content filter, a refusal, a tool call), by
    # stage: no complete answers either (an answer drops its pair as `answer_ended_early`), named one by one in warnings
    ended_early_replies: dict[str, int] = field(default_factory=dict)
    # answers of a reasoning model stored without their `<think>` block (`answer.ANSWERS_THINKING_REMOVED`)
    answers_thinking_removed: int = 0
    # answers stored without a trailing end-of-turn token's text (an endpoint not skipping special tokens)
    answers_end_token_removed: int = 0
    # the localized segment settings the run used (`SegmentSpec.to_dict`: segment_fraction None when segment_seconds
    # set the length); empty in a report written before they were recorded
    segments: dict[str, float | None] = field(default_factory=dict)
    # shards kept from before a resume changed `BATCHING_FIELDS` (TPO_HF_RESUME_CHANGED=1): their batching values and
    # videos, whose pairs were generated in other batches than this run's settings say (`storage.check_manifest`)
    earlier_batching: list[dict[str, Any]] = field(default_factory=list)
    # where the shards and the manifest live (`CurationConfig.shard_dir`): loading the dataset checks its videos
    # against the identities recorded there (`data.changed_curated_videos`)
    work_dir: str = ""

    @classmethod
    def from_run(
        cls,
        config: CurationConfig,
        items: list[VideoItem],
        shards: list[dict[str, Any]],
        final: list[dict[str, Any]],
        mix_counts: Counter,
        models: dict[str, str | None],
        changes: Any = None,
        earlier: dict[str, dict[str, Any]] | None = None,
    ) -> CurationReport:
        """The report of a run over `items`, from its shard results, the final records and the mix counts;
        `changes` (`storage.VideoChanges`): the videos added, removed or changed since the last run; `earlier`: the
        batching values (`BATCHING_FIELDS`) of the earlier keys whose shards the run kept, by their settings hash."""
        records = [r for shard in shards for r in shard["records"]]
        stats: Counter = Counter()
        for shard in shards:
            stats.update(shard["stats"])
        return cls(
            videos=VideoCounts(
                len(items),
                int(stats.get("videos_ok", 0)),
                [s for shard in shards for s in shard["skipped"]],
                *((list(changes.added), list(changes.removed), list(changes.changed)) if changes else ()),
            ),
            candidates=CandidateCounts(
                len(records),
                sum(r["granularity"] == "localized" for r in records),
                sum(r["granularity"] == "comprehensive" for r in records),
            ),
            questions={s: int(stats.get(f"question_{s}", 0)) for s in ("ok", "none", "unparseable")},
            drop_reasons=_drop_reasons(records, stats),
            judge=_judge_rates(records) if config.use_judge else None,
            kept_before_mix=sum(r["kept"] and not r.get("anchor") for r in records),
            mix={"ratio": config.mix_ratio, "target_size": config.target_size, **dict(mix_counts)},
            final=FinalCounts(
                len(final),
                dict(sorted(Counter(r["granularity"] for r in final if not r.get("anchor")).items())),
                dict(sorted(Counter(r["task_type"] for r in final if not r.get("anchor")).items())),
                sum(bool(r.get("anchor")) for r in final),
            ),
            models=models,
            frames={
                **VideoSettings.of(config).to_dict(),  # the run's (fitted) settings
                "sparse_num_frames": config.sparse_num_frames,
                "sparse_frame_fraction": config.sparse_frame_fraction,
            },
            timings={
                k.removeprefix("seconds_"): round(v, 3) for k, v in sorted(stats.items()) if k.startswith("seconds_")
            },
            frames_decoded=int(stats.get("frames_decoded", 0)),
            segments_missing_short_video=int(stats.get("segments_missing_short_video", 0)),
            captions_ignored=sum(len(item.rows_other_caption) for item in items),
            no_pairs_reason="" if final else _no_pairs_reason(config, items, shards, records, stats),
            anchors_before_mix=sum(bool(r.get("anchor")) for r in records),
            truncated_replies={stage: int(stats.get(f"truncated_{stage}", 0)) for stage in TRUNCATION_STAGES},
            ended_early_replies={stage: int(stats.get(f"ended_early_{stage}", 0)) for stage in TRUNCATION_STAGES},
            answers_thinking_removed=int(stats.get("answers_thinking_removed", 0)),
            answers_end_token_removed=int(stats.get("answers_end_token_removed", 0)),
            segments=SegmentSpec.of(config).to_dict(),
            earlier_batching=_earlier_batching(shards, earlier or {}),
            work_dir=str(config.shard_dir.resolve()),
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (what `curation_report.json` and the dataset card hold)."""
        return asdict(self)


def _drop_reasons(records: list[dict[str, Any]], stats: Counter) -> dict[str, int]:
    """Why candidates were dropped, by reason, with the annotation rows that made no candidate (no question)."""
    reasons = Counter(r["keep_reason"] for r in records if not r["kept"])
    if stats.get(ROW_WITHOUT_QUESTION):
        reasons[ROW_WITHOUT_QUESTION] += int(stats[ROW_WITHOUT_QUESTION])
    return dict(sorted(reasons.items()))


def _no_pairs_reason(
    config: CurationConfig,
    items: list[VideoItem],
    shards: list[dict[str, Any]],
    records: list[dict[str, Any]],
    stats: Counter,
) -> str:
    """Why a run ended with no pair, from its counts: what a user needs to change."""
    parts = []
    skipped = [s for shard in shards for s in shard["skipped"]]
    if skipped:
        parts.append(
            f"{len(skipped)} of {len(items)} video(s) could not be decoded (first: {skipped[0]['reason'][:120]})"
        )
    missing = int(stats.get("segments_missing_short_video", 0))
    if missing:
        length = (
            f"segment_seconds={config.segment_seconds}"
            if config.segment_seconds is not None
            else f"segment_fraction={config.segment_fraction}, segment_min_seconds={config.segment_min_seconds}"
        )
        parts.append(
            f"{missing} localized segment(s) did not fit in their video ({length}, segment_edge_margin="
            f"{config.segment_edge_margin}): use shorter segments or longer videos"
        )
    reasons = Counter(_drop_reasons(records, stats))
    if reasons:
        parts.append("candidate pairs dropped: " + ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()))
    if reasons.get("sparse_view_not_sparser"):  # decode.SPARSE_NOT_SPARSER
        parts.append(
            f"the sparse view (sparse_num_frames={config.sparse_num_frames}) had no fewer frames than the dense view "
            "(short videos sampled by video_fps): set sparse_frame_fraction (e.g. 0.5) or lower sparse_num_frames"
        )
    if reasons.get("truncated_answer"):  # answer.TRUNCATED_ANSWER
        parts.append(
            f"answers were cut at answer_max_new_tokens={config.answer_max_new_tokens} (the model had not finished): "
            "raise it"
        )
    if reasons.get("answer_ended_early"):  # answer.ANSWER_ENDED_EARLY
        parts.append(
            "answers ended early, not at the token budget (a content filter, a refusal: each named in a warning), so "
            "they are no complete answers; a larger answer_max_new_tokens does not help"
        )
    kept = sum(r["kept"] and not r.get("anchor") for r in records)
    if kept:
        parts.append(f"{kept} pair(s) passed the filters but the mix {config.mix_ratio!r} kept none of them")
    anchors = [r for r in records if r.get("anchor")]
    if anchors and not kept:
        # anchors are drawn per pair (`anchor_ratio`), so a run of anchor candidates only keeps nothing
        same_views = sum(set(r["chosen_frame_indices"]) == set(r["rejected_frame_indices"]) for r in anchors)
        origins = ", ".join(
            f"{n} {origin}"
            for origin, n in (("identical_answers", len(anchors) - same_views), ("identical_views", same_views))
            if n
        )
        parts.append(
            f"{len(anchors)} candidate(s) made no pair ({origins}: both views answered alike) and were kept as anchor "
            f"candidates only, which the mix adds per pair (anchor_ratio={config.anchor_ratio})"
        )
    if not records and not parts:
        parts.append("no candidate pair was made (no query per video)")
    return "; ".join(parts) or f"no candidate pair was made from {len(records)} candidate(s)"


def _judge_rates(records: list[dict[str, Any]]) -> JudgeRates:
    # pairs only: an anchor candidate (chosen == rejected) fails check 1 by construction
    judged = [
        r
        for r in records
        if r["chosen"] != r["rejected"]
        and (
            r.get("judge_better") is not None
            or r["keep_reason"].startswith("judge")
            or r["keep_reason"] == "kept_judge_passed"
        )
    ]

    read = [None not in (r["judge_better"], r["judge_contradiction"], r["judge_correct"]) for r in judged]
    parsed = [r for r, was_read in zip(judged, read) if was_read]

    def rate(values: list[bool]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    return JudgeRates(
        judged=len(judged),
        parsed=rate(read),
        check1_chosen_better=rate([r["judge_better"] is True for r in parsed]),
        check2_no_contradiction=rate([r["judge_contradiction"] is False for r in parsed]),
        check3_chosen_correct=rate([r["judge_correct"] is True for r in parsed]),
        passed=rate([r["kept"] for r in judged]),
        parsed_replies=len(parsed),
    )


def _earlier_batching(shards: list[dict[str, Any]], earlier: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per earlier batching setting whose shards were kept: its values and the videos of those shards."""
    videos: dict[str, list[str]] = {}
    for shard in shards:
        if shard.get("settings") in earlier:
            videos.setdefault(shard["settings"], []).extend(sorted(shard.get("inputs") or ()))
    return [{**earlier[settings], "videos": sorted(ids)} for settings, ids in videos.items()]


def truncation_warning(report: dict[str, Any]) -> str | None:
    """The warning for a run some of whose replies were cut at their token budget, naming the settings to raise, or
    ended early for another reason (a content filter, a refusal), which a larger budget does not help (`None` when
    neither happened)."""
    cut = {stage: n for stage, n in report.get("truncated_replies", {}).items() if n}
    early = {stage: n for stage, n in report.get("ended_early_replies", {}).items() if n}
    early_note = (
        ", ".join(f"{n} {stage} repl{'y' if n == 1 else 'ies'}" for stage, n in early.items())
        + " ended early, not at their token budget (a content filter, a refusal, a tool call: each named in a warning "
        "above), and are no complete answers; a larger budget does not help them."
        if early
        else ""
    )
    if not cut:
        return early_note or None
    counts = ", ".join(f"{n} {stage} repl{'y' if n == 1 else 'ies'}" for stage, n in cut.items())
    settings = ", ".join(f"{stage}_max_new_tokens" for stage in cut)
    if report["drop_reasons"].get("truncated_answer"):
        dropped = " (each cut answer dropped its pair as truncated_answer)"
    elif cut.get("answer"):
        dropped = " (their pairs keep the cut answers; cut_answers=drop drops them)"
    else:
        dropped = ""
    return f"{counts} stopped at their token budget, cut short{dropped}: raise {settings}." + (
        f" {early_note}" if early_note else ""
    )


def summary_table(report: dict[str, Any]) -> str:
    """The end-of-run summary of a report dict (as in `curation_report.json`) as a plain-text table."""
    rows = [
        (
            "videos",
            f"{report['videos']['curated']} curated / {report['videos']['total']} "
            f"({len(report['videos']['skipped'])} skipped)",
        ),
    ]
    since = {what: len(report["videos"].get(what, [])) for what in ("added", "removed", "changed")}
    if any(since.values()):  # an incremental run (`storage.VideoChanges`)
        rows.append(
            (
                "videos since last run",
                f"{since['added']} added, {since['removed']} removed (pairs dropped), {since['changed']} changed",
            )
        )
    rows += [
        (
            "candidate pairs",
            f"{report['candidates']['total']} (localized {report['candidates']['localized']}, "
            f"comprehensive {report['candidates']['comprehensive']})",
        ),
        ("questions", ", ".join(f"{k} {v}" for k, v in report["questions"].items())),
        ("judge pass rate", "off" if report["judge"] is None else str(report["judge"]["passed"])),
        ("kept before mix", str(report["kept_before_mix"])),
        (
            "final pairs",
            f"{report['final']['total'] - report['final'].get('anchors', 0)} {report['final']['by_granularity']}",
        ),
    ]
    if report["mix"].get("anchors") is not None:
        anchors = f"{report['final'].get('anchors', 0)} of the final rows, from {report.get('anchors_before_mix', 0)}"
        if report["mix"].get("short_anchors"):
            anchors += f" (short by {report['mix']['short_anchors']})"
        rows.append(("anchors (SFT term only)", anchors))
    short = {side: report["mix"].get(f"short_{side}", 0) for side in ("localized", "comprehensive")}
    if any(short.values()):  # the mix keeps its ratio rather than topping one side up from the other
        rows.append(
            (
                f"mix {report['mix']['ratio']} short by",
                f"{short['localized']} localized, {short['comprehensive']} comprehensive (more videos fill it)",
            )
        )
    rows += [(f"dropped: {k}", str(v)) for k, v in report["drop_reasons"].items()]
    if report["mix"].get("dropped_by_option_balance"):
        rows.append(("dropped: option balance", str(report["mix"]["dropped_by_option_balance"])))
    for kept in report.get("earlier_batching", []):
        values = ", ".join(f"{name} {value}" for name, value in kept.items() if name != "videos")
        rows.append(("kept from earlier batching", f"{len(kept['videos'])} video(s) made with {values}"))
    if report.get("segments_missing_short_video"):
        rows.append(("segments not placed", f"{report['segments_missing_short_video']} (video too short)"))
    if report.get("captions_ignored"):
        rows.append(("captions ignored", f"{report['captions_ignored']} row(s) (another caption of a video)"))
    cut = {stage: n for stage, n in report.get("truncated_replies", {}).items() if n}
    if cut:
        rows.append(("cut at token budget", ", ".join(f"{n} {stage}" for stage, n in cut.items())))
    early = {stage: n for stage, n in report.get("ended_early_replies", {}).items() if n}
    if early:
        rows.append(("ended early (filter, refusal)", ", ".join(f"{n} {stage}" for stage, n in early.items())))
    if report.get("no_pairs_reason"):
        reason = report["no_pairs_reason"]
        rows += [("NO PAIRS" if i == 0 else "", reason[i : i + 60]) for i in range(0, len(reason), 60)]
    rows += [(f"skipped: {s['video']}", s["reason"][:80]) for s in report["videos"]["skipped"]]
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * 62 + "+"
    body = [f"| {k:<{width}} | {v:<60} |" for k, v in rows]
    return "\n".join([line, f"| {'TPO curation':<{width}} | {'':<60} |", line, *body, line])
