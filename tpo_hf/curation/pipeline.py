"""Stage 2 of the flow (curation): videos in, TPO preference pairs out; resumable and split across processes.

    items = list_videos(config)                  # a folder or a dataset with a video column (+ captions / QA)
    result = run_curation(config)                # shards -> merged, mixed, sized `datasets.Dataset` on disk

Work is cut into shards of `videos_per_shard` videos, fixed by the sorted video list. A shard is the unit of
batching and of resume: it is computed from scratch (every random choice seeded from the video ids, never from
global RNG state), then written atomically (temporary file + rename), so a run killed at any moment and started
again redoes only the shards that were not written and ends with exactly the dataset of an uninterrupted run.
Under `accelerate launch`, shard `i` goes to process `i % num_processes`; the main process merges after all finish.

For each video of a shard, every view (segment, video without the segment, dense, sparse) is decoded in one pass
with `VideoFile.load_views`; the captioning view of a segment is the preferred view itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..video import VideoFile, VideoLoadError
from .backends import GenerationBackend, GenerationRequest, OpenAIBackend, TransformersBackend
from .config import CurationConfig
from .prompts import (
    CAPTION_PROMPTS,
    judge_prompt,
    parse_judge_reply,
    parse_question_reply,
    question_prompt,
    template_question,
)
from .segments import SegmentSpec, choose_segments, comprehensive_views, localized_views, video_rng, video_seed

logger = logging.getLogger(__name__)

SHARD_FORMAT_VERSION = 1
REPORT_NAME = "curation_report.json"


# --- inputs -------------------------------------------------------------------------------------------------------
@dataclass
class VideoItem:
    """One input video: `video_id` is its path relative to the corpus root (stable across machines)."""

    video_id: str
    path: str
    caption: str | None = None
    questions: list[tuple[str, str | None]] = field(default_factory=list)


def list_videos(config: CurationConfig) -> list[VideoItem]:
    """The input videos, sorted by id, from `video_dir` or from `dataset_name` (rows grouped by video)."""
    if config.video_dir is not None:
        root = Path(config.video_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"video_dir={config.video_dir} is not a folder.")
        extensions = {e.lower() for e in config.video_extensions}
        paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        items = [VideoItem(p.relative_to(root).as_posix(), str(p)) for p in paths]
    else:
        from ..train import default_video_root, load_preference_dataset

        dataset = load_preference_dataset(config.dataset_name, split=config.dataset_split)
        for column in (config.video_column, config.caption_column, config.question_column, config.answer_column):
            if column is not None and column not in dataset.column_names:
                raise ValueError(
                    f"Column {column!r} is not in dataset {config.dataset_name} (columns: {dataset.column_names})."
                )
        root = config.video_root or default_video_root(config.dataset_name) or ""
        grouped: dict[str, VideoItem] = {}
        for row_index, row in enumerate(dataset):
            video = row[config.video_column]
            if not isinstance(video, str) or not video:
                raise ValueError(f"Row {row_index} of {config.dataset_name}: {config.video_column!r} is not a path.")
            video_id = video if not os.path.isabs(video) and "://" not in video else video.rstrip("/").split("/")[-1]
            path = video if os.path.isabs(video) or "://" in video else os.path.join(root, video)
            item = grouped.setdefault(video_id, VideoItem(video_id, path))
            if config.caption_column and row.get(config.caption_column) and item.caption is None:
                item.caption = str(row[config.caption_column])
            if config.question_column and row.get(config.question_column):
                answer = row.get(config.answer_column) if config.answer_column else None
                item.questions.append((str(row[config.question_column]), str(answer) if answer else None))
        items = [grouped[key] for key in sorted(grouped)]
    if config.max_videos is not None:
        items = items[: config.max_videos]
    return items


def make_shards(items: list[VideoItem], videos_per_shard: int) -> list[list[VideoItem]]:
    return [items[i : i + videos_per_shard] for i in range(0, len(items), videos_per_shard)]


# --- backends -----------------------------------------------------------------------------------------------------
@dataclass
class Backends:
    """The model behind each role; `question` is `None` for template questions, `judge` when the judge is off."""

    video: GenerationBackend
    question: GenerationBackend | None
    judge: GenerationBackend | None


def build_backends(config: CurationConfig, device: str | None = None) -> Backends:
    """Loads each role's backend once; roles naming the same local model share it (one copy in memory)."""
    cache: dict[tuple, GenerationBackend] = {}

    def make(role: str) -> GenerationBackend:
        backend, model, base_url = config.role_settings(role)
        key = (backend, model, base_url)
        if key not in cache:
            if backend == "world":
                from ..world.backends import WorldJudgeBackend, WorldQuestionBackend

                cache[key] = WorldJudgeBackend(model) if role == "judge" else WorldQuestionBackend(model, config.seed)
            elif backend == "openai":
                cache[key] = OpenAIBackend(
                    model,
                    base_url=base_url,
                    api_key=config.api_key,
                    timeout=config.request_timeout,
                    max_retries=config.max_retries,
                    retry_backoff=config.retry_backoff,
                    max_concurrency=config.max_concurrency,
                    temperature=config.temperature if config.do_sample else 0.0,
                )
            else:
                cache[key] = TransformersBackend(
                    model,
                    batch_size=config.batch_size,
                    do_sample=config.do_sample,
                    temperature=config.temperature,
                    dtype=config.dtype,
                    device=config.device or device,
                    max_pixels=config.max_pixels,
                )
        return cache[key]

    return Backends(
        video=make("video"),
        question=None if config.question_backend == "template" else make("question"),
        judge=make("judge") if config.use_judge else None,
    )


# --- one shard ----------------------------------------------------------------------------------------------------
def _generate(
    backend: GenerationBackend,
    requests: list[GenerationRequest],
    max_new_tokens: int,
    seed: int,
    stats: Counter,
    name: str,
) -> list[str]:
    if not requests:
        return []
    started = time.perf_counter()
    replies = backend.generate(requests, max_new_tokens=max_new_tokens, seed=seed)
    stats[f"seconds_{name}"] += time.perf_counter() - started
    stats[f"requests_{name}"] += len(requests)
    return replies


def curate_shard(items: list[VideoItem], backends: Backends, config: CurationConfig) -> dict[str, Any]:
    """Builds every candidate pair of `items` (kept and dropped, each with its reason); deterministic given config."""
    stats: Counter = Counter()
    skipped: list[dict[str, str]] = []
    queries: list[dict[str, Any]] = []
    views: dict[str, dict[str, tuple]] = {}
    spec = SegmentSpec(
        config.segment_seconds,
        config.segment_fraction,
        config.segment_min_seconds,
        config.segment_max_seconds,
        config.segment_edge_margin,
    )
    shard_seed = video_seed(items[0].video_id, config.seed, "shard")

    # 1. choose segments and task types; decode every view of a video in one pass
    for item in items:
        started = time.perf_counter()
        try:
            video = VideoFile(item.path)
            rng = video_rng(item.video_id, config.seed)
            segments = choose_segments(video.duration, spec, config.localized_per_video, rng)
            wanted = {}
            for index, segment in enumerate(segments):
                for side, view in localized_views(segment, config.num_frames).items():
                    wanted[f"localized{index}/{side}"] = view
            for side, view in comprehensive_views(config.num_frames, config.sparse_num_frames).items():
                wanted[f"comprehensive/{side}"] = view
            decoded = video.load_views(wanted)
            stats["frames_decoded"] += video.frames_decoded
            video.clear_cache()
        except VideoLoadError as error:
            if config.on_video_error == "raise":
                raise
            skipped.append({"video": item.video_id, "reason": str(error)})
            continue
        finally:
            stats["seconds_decode"] += time.perf_counter() - started
        stats["videos_ok"] += 1
        views[item.video_id] = decoded
        if len(segments) < config.localized_per_video:
            stats["segments_missing_short_video"] += config.localized_per_video - len(segments)
        for index, segment in enumerate(segments):
            queries.append(
                {
                    "video_id": item.video_id,
                    "granularity": "localized",
                    "segment": segment,
                    "view_key": f"localized{index}",
                    "task_type": rng.choice(config.localized_task_types),
                    "caption": None,
                    "caption_source": "generated",
                    "question": None,
                    "reference_answer": None,
                    "question_source": None,
                }
            )
        if item.questions:
            for question, answer in item.questions:
                queries.append(
                    {
                        "video_id": item.video_id,
                        "granularity": "comprehensive",
                        "segment": None,
                        "view_key": "comprehensive",
                        "task_type": "annotation",
                        "caption": item.caption,
                        "caption_source": "annotation" if item.caption else "generated",
                        "question": question,
                        "reference_answer": answer,
                        "question_source": "annotation",
                    }
                )
        else:
            for _ in range(config.comprehensive_per_video):
                queries.append(
                    {
                        "video_id": item.video_id,
                        "granularity": "comprehensive",
                        "segment": None,
                        "view_key": "comprehensive",
                        "task_type": rng.choice(config.comprehensive_task_types),
                        "caption": item.caption,
                        "caption_source": "annotation" if item.caption else "generated",
                        "question": None,
                        "reference_answer": None,
                        "question_source": None,
                    }
                )

    paths = {item.video_id: item.path for item in items}

    def view(query: dict, side: str) -> tuple:
        return views[query["video_id"]][f"{query['view_key']}/{side}"]

    # 2. captions (the localized caption sees exactly the preferred view); one whole-video caption per video
    caption_keys: list[tuple[str, str]] = []
    for query in queries:
        key = (query["video_id"], query["view_key"])
        if query["caption"] is None and key not in caption_keys:
            caption_keys.append(key)
    caption_requests = [
        GenerationRequest(
            CAPTION_PROMPTS["localized" if vk.startswith("localized") else "comprehensive"],
            views[vid][f"{vk}/preferred"],
        )
        for vid, vk in caption_keys
    ]
    captions = dict(
        zip(
            caption_keys,
            _generate(
                backends.video, caption_requests, config.caption_max_new_tokens, shard_seed + 1, stats, "caption"
            ),
        )
    )
    for query in queries:
        if query["caption"] is None:
            query["caption"] = captions[(query["video_id"], query["view_key"])]

    # 3. questions from captions (or templates); "None" and unparseable replies are counted, never fatal
    records: list[dict[str, Any]] = []
    pending = [q for q in queries if q["question"] is None]
    if backends.question is None:
        for query in pending:
            query["question"] = template_question(query["task_type"], query["segment"])
            query["question_source"] = "template"
    else:
        replies = _generate(
            backends.question,
            [
                GenerationRequest(
                    question_prompt(q["caption"], q["task_type"]),
                    context={key: q[key] for key in ("caption", "task_type", "video_id", "segment", "granularity")},
                )
                for q in pending
            ],
            config.question_max_new_tokens,
            shard_seed + 2,
            stats,
            "question",
        )
        for query, reply in zip(pending, replies):
            parsed = parse_question_reply(reply)
            query["question_reply"] = reply
            stats[f"question_{parsed.status}"] += 1
            if parsed.status == "ok":
                query["question"], query["reference_answer"] = parsed.question, parsed.answer
                query["question_source"] = "generated"
            else:
                query["drop_reason"] = "question_none" if parsed.status == "none" else "question_unparseable"
    answerable = [q for q in queries if q.get("drop_reason") is None]

    # 4. contrasted answers: same model, same decoding settings; only the view differs
    answer_requests = [
        GenerationRequest(q["question"], view(q, side)) for q in answerable for side in ("preferred", "rejected")
    ]
    answers = _generate(backends.video, answer_requests, config.answer_max_new_tokens, shard_seed + 3, stats, "answer")
    for position, query in enumerate(answerable):
        query["chosen"], query["rejected"] = answers[2 * position], answers[2 * position + 1]
        if not query["chosen"].strip() or not query["rejected"].strip():
            query["drop_reason"] = "empty_answer"
        elif query["chosen"].strip() == query["rejected"].strip():
            query["drop_reason"] = "identical_answers"

    # 5. judge: the paper's three checks; every pair records its verdicts
    judged = [q for q in answerable if q.get("drop_reason") is None]
    if backends.judge is not None:
        replies = _generate(
            backends.judge,
            [
                GenerationRequest(
                    judge_prompt(q["caption"], q["question"], q["chosen"], q["rejected"]),
                    context={
                        **{k: q[k] for k in ("caption", "question", "chosen", "rejected", "video_id", "segment")},
                        "granularity": q["granularity"],
                        "video_path": paths[q["video_id"]],
                    },
                )
                for q in judged
            ],
            config.judge_max_new_tokens,
            shard_seed + 4,
            stats,
            "judge",
        )
        for query, reply in zip(judged, replies):
            verdict = parse_judge_reply(reply)
            query.update(
                judge_reply=reply,
                judge_better=verdict.better,
                judge_contradiction=verdict.contradiction,
                judge_correct=verdict.correct,
                judge_reason=verdict.reason,
            )
            query["drop_reason"] = verdict.drop_reason()

    for query in queries:
        kept = query.get("drop_reason") is None and "chosen" in query
        chosen_view = view(query, "preferred")[1]["frames_indices"] if query["video_id"] in views else []
        rejected_view = view(query, "rejected")[1]["frames_indices"] if query["video_id"] in views else []
        segment = query["segment"]
        records.append(
            {
                "prompt": query["question"] or "",
                "chosen": query.get("chosen", ""),
                "rejected": query.get("rejected", ""),
                "video": query["video_id"],
                "granularity": query["granularity"],
                "segment_start": segment[0] if segment else None,
                "segment_end": segment[1] if segment else None,
                "task_type": query["task_type"],
                "question_source": query["question_source"] or "generated",
                "caption": query["caption"] or "",
                "caption_source": query["caption_source"],
                "reference_answer": query["reference_answer"],
                "chosen_frame_indices": list(chosen_view),
                "rejected_frame_indices": list(rejected_view),
                "judge_better": query.get("judge_better"),
                "judge_contradiction": query.get("judge_contradiction"),
                "judge_correct": query.get("judge_correct"),
                "judge_reason": query.get("judge_reason"),
                "judge_reply": query.get("judge_reply"),
                "question_reply": query.get("question_reply"),
                "kept": kept,
                "keep_reason": "kept" + ("_judge_passed" if backends.judge is not None else "_no_judge")
                if kept
                else query["drop_reason"],
            }
        )
    return {
        "version": SHARD_FORMAT_VERSION,
        "videos": [i.video_id for i in items],
        "records": records,
        "skipped": skipped,
        "stats": dict(stats),
    }


# --- shards on disk -----------------------------------------------------------------------------------------------
def atomic_write_json(path: Path, data: Any) -> None:
    """Writes `data` so that `path` either holds the old content or the complete new one, even after SIGKILL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def config_fingerprint(config: CurationConfig, items: list[VideoItem]) -> str:
    payload = json.dumps(
        {
            "config": config.fingerprint_fields(),
            "videos": [i.video_id for i in items],
            "version": SHARD_FORMAT_VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def shard_path(work_dir: Path, index: int) -> Path:
    return work_dir / "shards" / f"shard-{index:05d}.json"


# --- merge, mix and size ------------------------------------------------------------------------------------------
def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def mix_and_size(records: list[dict[str, Any]], config: CurationConfig) -> tuple[list[dict[str, Any]], Counter]:
    """De-duplicates, then draws the localized:comprehensive mix (seeded) up to `target_size`.

    Without `target_size` the set is as large as the ratio allows. With it, each side gets its share of the target;
    a side that has fewer pairs than its share is not topped up from the other (the ratio is kept), and the report
    says so.
    """
    counts: Counter = Counter()
    seen: set[tuple[str, str]] = set()
    unique = []
    for record in records:
        key = (record["video"], _normalize(record["prompt"]))
        if config.deduplicate and key in seen:
            counts["dropped_duplicate"] += 1
            continue
        seen.add(key)
        unique.append(record)
    by_side = {g: [r for r in unique if r["granularity"] == g] for g in ("localized", "comprehensive")}
    rng = random.Random(config.seed)
    for side in ("localized", "comprehensive"):
        rng.shuffle(by_side[side])
    weight_localized, weight_comprehensive = config.mix_weights()
    total_weight = weight_localized + weight_comprehensive
    available_l, available_c = len(by_side["localized"]), len(by_side["comprehensive"])
    if config.target_size is not None:
        want_l = round(config.target_size * weight_localized / total_weight)
        want_c = config.target_size - want_l
    elif weight_localized == 0 or weight_comprehensive == 0:
        want_l = available_l if weight_localized else 0
        want_c = available_c if weight_comprehensive else 0
    else:
        scale = min(available_l / weight_localized, available_c / weight_comprehensive)
        want_l, want_c = int(scale * weight_localized + 1e-9), int(scale * weight_comprehensive + 1e-9)
    take_l, take_c = min(want_l, available_l), min(want_c, available_c)
    counts["short_localized"] = want_l - take_l
    counts["short_comprehensive"] = want_c - take_c
    counts["dropped_by_mix"] = available_l - take_l + available_c - take_c
    chosen = by_side["localized"][:take_l] + by_side["comprehensive"][:take_c]
    rng.shuffle(chosen)
    return chosen, counts


TRAINING_COLUMNS = ["prompt", "chosen", "rejected", "video", "granularity", "segment_start", "segment_end"]


def dataset_features():
    from datasets import Features, Sequence, Value

    return Features(
        {
            "prompt": Value("string"),
            "chosen": Value("string"),
            "rejected": Value("string"),
            "video": Value("string"),
            "granularity": Value("string"),
            "segment_start": Value("float64"),
            "segment_end": Value("float64"),
            "task_type": Value("string"),
            "question_source": Value("string"),
            "caption": Value("string"),
            "caption_source": Value("string"),
            "reference_answer": Value("string"),
            "chosen_frame_indices": Sequence(Value("int64")),
            "rejected_frame_indices": Sequence(Value("int64")),
            "judge_better": Value("bool"),
            "judge_contradiction": Value("bool"),
            "judge_correct": Value("bool"),
            "judge_reason": Value("string"),
            "keep_reason": Value("string"),
            "video_model": Value("string"),
            "question_model": Value("string"),
            "judge_model": Value("string"),
        }
    )


@dataclass
class CurationResult:
    """What a run produced (on the main process): the dataset, where it was saved, and the run report."""

    dataset: Any
    output_dir: str
    report: dict[str, Any]


def _place_videos(items: list[VideoItem], used: set[str], output_dir: Path, copy: bool) -> dict[str, str]:
    """Video column values: `videos/<id>` inside the output folder (hard link, else copy) or absolute paths."""
    paths = {}
    for item in items:
        if item.video_id not in used:
            continue
        if not copy or "://" in item.path:
            paths[item.video_id] = item.path if "://" in item.path else os.path.abspath(item.path)
            continue
        target = output_dir / "videos" / item.video_id
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            try:
                os.link(item.path, target)
            except OSError:
                shutil.copy2(item.path, target)
        paths[item.video_id] = f"videos/{item.video_id}"
    return paths


def merge(config: CurationConfig, items: list[VideoItem], shards: list[dict[str, Any]]) -> CurationResult:
    """Merges the shards, mixes and sizes the pairs, saves the dataset, the card and the report."""
    from datasets import Dataset

    from .card import render_dataset_card

    records = [r for shard in shards for r in shard["records"]]
    skipped = [s for shard in shards for s in shard["skipped"]]
    stats: Counter = Counter()
    for shard in shards:
        stats.update(shard["stats"])
    kept = [r for r in records if r["kept"]]
    final, mix_counts = mix_and_size(kept, config)

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    video_paths = _place_videos(items, {r["video"] for r in final}, output_dir, config.copy_videos)
    models = {role: config.role_settings(role)[1] for role in ("video", "question", "judge")}
    if config.question_backend == "template":
        models["question"] = "template"
    if not config.use_judge:
        models["judge"] = None
    columns = list(dataset_features())
    rows = []
    for record in final:
        row = {name: record.get(name) for name in columns}
        row.update(
            video=video_paths[record["video"]],
            video_model=models["video"],
            question_model=models["question"],
            judge_model=models["judge"],
        )
        rows.append(row)
    dataset = Dataset.from_dict({name: [row[name] for row in rows] for name in columns}, features=dataset_features())

    report = build_report(config, items, records, skipped, stats, mix_counts, final, models)
    if not final:
        logger.warning("No pair survived the filters and the mix; see %s for the drop reasons.", REPORT_NAME)
    # save_to_disk into a fresh folder, then move the files in: a killed merge is simply redone by the next run
    staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=".staging-"))
    dataset.save_to_disk(str(staging))
    for name in os.listdir(staging):
        os.replace(staging / name, output_dir / name)
    shutil.rmtree(staging, ignore_errors=True)
    atomic_write_json(output_dir / REPORT_NAME, report)
    card = render_dataset_card(dataset, report, config)
    card.save(str(output_dir / "README.md"))
    return CurationResult(dataset=dataset, output_dir=str(output_dir), report=report)


def build_report(config, items, records, skipped, stats, mix_counts, final, models) -> dict[str, Any]:
    """Counts for the summary table and the dataset card (deterministic counts first, timings under `timings`)."""
    drop_reasons = Counter(r["keep_reason"] for r in records if not r["kept"])
    judged = [
        r
        for r in records
        if r.get("judge_better") is not None
        or r["keep_reason"].startswith("judge")
        or r["keep_reason"] == "kept_judge_passed"
    ]

    def rate(values: list[bool]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    judge_rates = None
    if config.use_judge:
        judge_rates = {
            "judged": len(judged),
            "parsed": rate([r["keep_reason"] != "judge_unparseable" for r in judged]),
            "check1_chosen_better": rate([r["judge_better"] is True for r in judged]),
            "check2_no_contradiction": rate([r["judge_contradiction"] is False for r in judged]),
            "check3_chosen_correct": rate([r["judge_correct"] is True for r in judged]),
            "passed": rate([r["kept"] for r in judged]),
        }
    return {
        "videos": {"total": len(items), "curated": int(stats.get("videos_ok", 0)), "skipped": skipped},
        "candidates": {
            "total": len(records),
            "localized": sum(r["granularity"] == "localized" for r in records),
            "comprehensive": sum(r["granularity"] == "comprehensive" for r in records),
        },
        "questions": {s: int(stats.get(f"question_{s}", 0)) for s in ("ok", "none", "unparseable")},
        "drop_reasons": dict(sorted(drop_reasons.items())),
        "judge": judge_rates,
        "kept_before_mix": sum(r["kept"] for r in records),
        "mix": {"ratio": config.mix_ratio, "target_size": config.target_size, **dict(mix_counts)},
        "final": {
            "total": len(final),
            "by_granularity": dict(sorted(Counter(r["granularity"] for r in final).items())),
            "by_task_type": dict(sorted(Counter(r["task_type"] for r in final).items())),
        },
        "models": models,
        "frames": {"num_frames": config.num_frames, "sparse_num_frames": config.sparse_num_frames},
        "timings": {
            k.removeprefix("seconds_"): round(v, 3) for k, v in sorted(stats.items()) if k.startswith("seconds_")
        },
        "frames_decoded": int(stats.get("frames_decoded", 0)),
    }


def summary_table(report: dict[str, Any]) -> str:
    """The end-of-run summary as a plain-text table."""
    rows = [
        (
            "videos",
            f"{report['videos']['curated']} curated / {report['videos']['total']} "
            f"({len(report['videos']['skipped'])} skipped)",
        ),
        (
            "candidate pairs",
            f"{report['candidates']['total']} (localized {report['candidates']['localized']}, "
            f"comprehensive {report['candidates']['comprehensive']})",
        ),
        ("questions", ", ".join(f"{k} {v}" for k, v in report["questions"].items())),
        ("judge pass rate", "off" if report["judge"] is None else str(report["judge"]["passed"])),
        ("kept before mix", str(report["kept_before_mix"])),
        ("final pairs", f"{report['final']['total']} {report['final']['by_granularity']}"),
    ]
    rows += [(f"dropped: {k}", str(v)) for k, v in report["drop_reasons"].items()]
    rows += [(f"skipped: {s['video']}", s["reason"][:80]) for s in report["videos"]["skipped"]]
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * 62 + "+"
    body = [f"| {k:<{width}} | {v:<60} |" for k, v in rows]
    return "\n".join([line, f"| {'TPO curation':<{width}} | {'':<60} |", line, *body, line])


# --- the run ------------------------------------------------------------------------------------------------------
def run_curation(config: CurationConfig, backends: Backends | None = None) -> CurationResult | None:
    """Runs (or resumes) curation on this process's shards and merges on the main process.

    Returns the result on the main process and `None` on the others. `backends` overrides the models the config
    names (e.g. already loaded ones).
    """
    import torch
    from accelerate import PartialState
    from tqdm.auto import tqdm

    # PartialState only sets up multi-CPU (gloo) when told the run is on CPU; torchrun-style launchers on a machine
    # without a GPU (or `device: cpu`) need that, or every process would believe it is alone.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    use_cpu = config.device == "cpu" or os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    # Only a multi-process run passes the flag: a single process keeps the default state, which later trainers in the
    # same Python process (e.g. a notebook that curates then trains) can still configure.
    distributed_cpu = world_size > 1 and (use_cpu or not torch.cuda.is_available())
    state = PartialState(cpu=True) if distributed_cpu else PartialState()
    items = list_videos(config)
    if not items:
        raise ValueError(f"No videos found in {config.video_dir or config.dataset_name}.")
    shards = make_shards(items, config.videos_per_shard)
    work_dir = Path(config.work_dir or Path(config.output_dir) / "_curation")
    fingerprint = config_fingerprint(config, items)
    manifest_path = work_dir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest["fingerprint"] != fingerprint:
            raise ValueError(
                f"{work_dir} holds shards of a run with other settings or videos; delete it, or set another "
                "`work_dir`, to start over (settings that only affect mixing and output may change freely)."
            )
    if state.is_main_process:  # leftovers of a killed run: half-written shard files and merge staging folders
        for leftover in (work_dir / "shards").glob(".shard-*.tmp") if (work_dir / "shards").is_dir() else []:
            leftover.unlink(missing_ok=True)
        for staging in Path(config.output_dir).glob(".staging-*") if Path(config.output_dir).is_dir() else []:
            shutil.rmtree(staging, ignore_errors=True)
    state.wait_for_everyone()  # every rank checked the manifest (and nobody writes yet) before the main process goes on
    if state.is_main_process:
        atomic_write_json(
            manifest_path,
            {
                "fingerprint": fingerprint,
                "num_shards": len(shards),
                "shards": [[i.video_id for i in s] for s in shards],
                "config": config.fingerprint_fields(),
            },
        )

    mine = [i for i in range(len(shards)) if i % state.num_processes == state.process_index]
    todo = [i for i in mine if not shard_path(work_dir, i).exists()]
    if todo and backends is None:
        backends = build_backends(config, device=str(state.device))
    bar = tqdm(
        total=len(mine),
        initial=len(mine) - len(todo),
        desc=f"curate [rank {state.process_index}]",
        unit="shard",
        disable=not config.progress,
        position=state.process_index,
    )
    for index in todo:
        result = curate_shard(shards[index], backends, config)
        result["process_index"] = state.process_index
        atomic_write_json(shard_path(work_dir, index), result)
        bar.update(1)
    bar.close()
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    loaded = [json.loads(shard_path(work_dir, i).read_text()) for i in range(len(shards))]
    result = merge(config, items, loaded)
    print(summary_table(result.report))
    return result
