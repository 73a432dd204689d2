"""Stage 5 of the flow (evaluation): multiple-choice video QA, base model vs. TPO adapter in one run.

The base model and the adapter answer the same samples from the same decoded frames: the model is one
`peft.PeftModel`, and the base answers are generated inside `model.disable_adapter()`. Each video is decoded once
per batch and shared by both. Every finished sample is appended to a JSONL cache keyed by (model tag, model
fingerprint, sample id, frames); a run that is interrupted and started again reads the cache and generates only what
is missing. Each variant has its own fingerprint (`weights_fingerprint`): the base model's answers do not depend on the
adapter, so a new adapter evaluated beside the same base reuses the base answers. A cached answer made otherwise
(other weights, frames, question or settings) is generated again, and a warning says what changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..fingerprint import NOT_WRITABLE_ERRNOS, changed_fields, key_hash, no_space_left
from ..locks import check_lock_held
from ..processing import VideoPreferenceProcessor
from ..validation import placeholder_tokens
from ..video import same_video_file, video_file_identity
from .answers import UNPARSEABLE, extract_answer_letter
from .benchmarks import MCQSample, check_prompt_placeholders, find_videos

logger = logging.getLogger(__name__)

# Bumped when what a cached answer line means changes; part of every answer's key (`answer_key`). 3: a video shorter
# than `num_frames` gives each frame once (it repeated frames before), except for fixed-count families
CACHE_FORMAT_VERSION = 3
BASE_TAG = "base"
ADAPTER_TAG = "tpo"
# how a changed part of an answer's key is named in the warning that it was generated again
_CHANGE_NAMES = {
    "weights": "model weights",
    "num_frames": "frames",
    "sample": "question (prompt, options, answer key or video name)",
    "video_file": "video file",
    "video_settings": "video settings",
    "processor": "processor (chat template, vocabulary)",
    "generation": "generation settings",
    "format": "cache format",
}


@dataclass
class SampleResult:
    """One model's answer to one sample, as cached and reported."""

    model: str
    sample_id: str
    num_frames: int
    reply: str
    prediction: str
    answer: str
    correct: bool
    breakdowns: dict[str, str] = field(default_factory=dict)
    fingerprint: str = ""
    # everything else the reply depends on (`answer_key`): a cached reply is reused only when this matches
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.model, self.fingerprint, self.sample_id, self.num_frames)


# errors that say a file or folder cannot be written at all (permissions, an immutable file, a read-only mount)


class ResultsCacheError(OSError):
    """The results cache cannot be written (not writable, or the disk is full); the message names the file."""


class ResultsCache:
    """Finished samples in a JSONL file, one line per (model tag, fingerprint, sample id, frames), appended and
    flushed as each batch finishes so that an interrupted run loses at most the batch in flight."""

    def __init__(self, path: str | os.PathLike | None, read_also: Iterable[str | os.PathLike] = ()):
        self.path = Path(path) if path is not None else None
        self.records: dict[tuple[str, str, str, int], SampleResult] = {}
        # (model tag, sample id) -> the last record read for it, whatever its weights or frames: what a recomputed
        # answer is compared with to say what changed
        self.latest: dict[tuple[str, str], SampleResult] = {}
        for source in [*read_also, self.path]:
            self._read(source)

    def _read(self, source: str | os.PathLike | None) -> None:
        source = Path(source) if source is not None else None
        if source is not None and source.is_file():
            with source.open() as handle:
                for line_number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        record = SampleResult(**json.loads(line))
                    except (json.JSONDecodeError, TypeError) as error:
                        # a line cut short by a kill mid-write: the sample is simply recomputed
                        logger.warning(
                            "Ignoring unreadable line %d of results cache %s: %s", line_number, source, error
                        )
                        continue
                    record.inputs = _without_video_path(record.inputs)
                    self.records[record.key] = record
                    self.latest[(record.model, record.sample_id)] = record

    def get(self, key: tuple[str, str, str, int]) -> SampleResult | None:
        return self.records.get(key)

    def previous(self, tag: str, sample_id: str) -> SampleResult | None:
        """The last cached answer of `tag` to `sample_id`, made with any weights and frames."""
        return self.latest.get((tag, sample_id))

    def check_writable(self) -> None:
        """Refuses a cache file (or its folder) that cannot be written, before any answer is generated: else the
        first batch is generated, then lost when its answers cannot be appended."""
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab"):  # creates it empty, or opens it as an append would, changing nothing
                pass
        except OSError as error:
            if error.errno not in NOT_WRITABLE_ERRNOS:
                raise
            raise ResultsCacheError(
                f"Results cache {self.path} is not writable ({error.strerror}): nothing was generated; make it (or "
                "its folder) writable, or evaluate into another output_dir."
            ) from error

    def add(self, results: list[SampleResult]) -> None:
        for result in results:
            self.records[result.key] = result
            self.latest[(result.model, result.sample_id)] = result
        if self.path is not None and results:
            check_lock_held(self.path.parent)  # not into a folder removed under this run, and another run's now
            try:
                self._append(self.path, results)
            except OSError as error:
                if error.errno in NOT_WRITABLE_ERRNOS:
                    reason, remedy = f"it is not writable ({error.strerror})", "make it writable"
                else:
                    reason, remedy = no_space_left(error, self.path.parent), "free space"
                    if reason is None:
                        raise
                raise ResultsCacheError(
                    f"Could not append {len(results)} answer(s) to results cache {self.path}: {reason}. The answers "
                    f"already written there are kept: {remedy} and rerun the same command to resume (only the answers "
                    "missing from the cache are generated)."
                ) from error

    def _append(self, path: Path, results: list[SampleResult]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a+b") as handle:  # appends go to the end wherever the handle was read
            if handle.seek(0, os.SEEK_END) > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    # a line cut short by a run killed mid-write: ended here, so that the next record is a line
                    # of its own (the torn line is skipped when read, and its sample generated again)
                    logger.warning(
                        "Results cache %s ends in a torn line (a run killed, or a full disk?); appending after it.",
                        path,
                    )
                    handle.write(b"\n")
            for result in results:
                handle.write((json.dumps(asdict(result)) + "\n").encode())
            handle.flush()
            os.fsync(handle.fileno())


def _without_video_path(inputs: dict[str, Any]) -> dict[str, Any]:
    """An answer's key as written before its video file's identity left out the path (`path@size:mtime_ns`), read
    as written after (`size:mtime_ns`), which `same_answer_key` accepts for the file untouched since, so those
    answers are reused rather than all generated again."""
    video_file = inputs.get("video_file") if isinstance(inputs, dict) else None
    if isinstance(video_file, str) and "://" not in video_file and "@" in video_file:
        return {**inputs, "video_file": video_file.rsplit("@", 1)[1]}
    return inputs


@dataclass
class MCQRun:
    """What one `evaluate_mcq` call produced: every result, and which ones it computed versus read from the cache."""

    results: dict[str, list[SampleResult]]  # model tag -> results in sample order
    computed: dict[str, list[str]]  # model tag -> sample ids generated in this run
    cached: dict[str, list[str]]  # model tag -> sample ids read from the cache

    def summary(self, breakdowns: Iterable[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        """Accuracy overall and per breakdown for each model, and base-vs-adapter agreement (see `summarize`)."""
        return summarize(self.results, breakdowns, **kwargs)


def model_variants(
    model: Any, compare_base: bool = True
) -> dict[str, Callable[[], contextlib.AbstractContextManager]]:
    """Model tag -> context in which `model` is that variant: for a PeftModel, "base" (adapter disabled) and "tpo";
    for a plain model, "base" only."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        variants = {ADAPTER_TAG: contextlib.nullcontext}
        if compare_base:
            variants = {BASE_TAG: model.disable_adapter, **variants}
        return variants
    return {BASE_TAG: contextlib.nullcontext}


def weights_fingerprint(**parts: Any) -> str:
    """The fingerprint of answers made with these weights and this way of running them (`model`, `adapter`,
    `dtype`, ...): a cached answer is reused only under the same one, and a changed part is named when it is not."""
    return json.dumps(parts, sort_keys=True, default=str)


def _weights_parts(fingerprint: str) -> dict[str, Any] | None:
    try:
        parts = json.loads(fingerprint)
    except ValueError:
        return None
    return parts if isinstance(parts, dict) else None


def same_answer_key(cached: dict[str, Any], inputs: dict[str, Any]) -> bool:
    """Whether a cached answer's key (`answer_key`) is the one wanted now: equal, or with its video file recorded by
    a tpo-hf that keyed videos by size and modification time, of the file untouched since (`same_video_file`)."""
    if cached == inputs:
        return True
    recorded = cached.get("video_file") if isinstance(cached, dict) else None
    return same_video_file(recorded, inputs["video_file"]) and {**cached, "video_file": inputs["video_file"]} == inputs


def stale_parts(previous: SampleResult, fingerprint: str, num_frames: int, inputs: dict[str, Any]) -> list[str]:
    """What differs between a cached answer and the key of the answer wanted now (weights parts, frames, and the
    `answer_key` fields), for the warning that it was generated again."""
    old, new = _weights_parts(previous.fingerprint), _weights_parts(fingerprint)
    if old is not None and new is not None:
        changed = changed_fields(old, new)
    else:
        changed = ["weights"] if previous.fingerprint != fingerprint else []
    if previous.num_frames != num_frames:
        changed.append("num_frames")
    old_inputs = previous.inputs
    if isinstance(old_inputs, dict) and same_video_file(old_inputs.get("video_file"), inputs.get("video_file")):
        old_inputs = {**old_inputs, "video_file": inputs.get("video_file")}  # an older record of the same file
    return changed + changed_fields(old_inputs, inputs)


def answer_key(
    sample: MCQSample, video_path: str, processor: VideoPreferenceProcessor, generation: dict[str, Any]
) -> dict[str, Any]:
    """What a cached reply depends on besides (model, weights, sample id, frames): the question as asked (prompt,
    options, answer key, video), the video file's identity, the processor's video settings (pixels, ...), its chat
    template, video prompt layout and vocabulary (an adapter may carry its own processor), the generation settings and the cache format.
    A mismatch means the cached reply is stale: it is generated again."""
    tokenizer = processor.tokenizer
    template = getattr(processor.processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)
    # a video the eval wrote itself (a V-NIAH haystack, `VNIAHSample.video_identity`) is known by its file name and
    # content, not by its path in the output folder nor its modification time: a copied (`cp -r`) folder keeps them
    own_video = getattr(sample, "video_identity", "")
    return {
        "sample": key_hash(
            [
                sample.prompt,
                sample.question,
                sample.options,
                sample.answer,
                Path(sample.video).name if own_video else sample.video,
            ]
            + ([sample.start] if sample.start is not None else [])  # a window: only then, so old keys still hold
        ),
        # not its path: the same videos under a folder moved or spelled otherwise keep their answers, as in curation
        "video_file": own_video or video_file_identity(video_path),
        "video_settings": {
            k: v for k, v in processor.video_settings().items() if k not in ("num_frames", "video_root")
        },
        # the text around the frames too (timestamps, separators): it differs between transformers releases
        "processor": key_hash([template, len(tokenizer), processor.video_prompt_layout()]),
        "generation": generation,
        "format": CACHE_FORMAT_VERSION,
    }


def _scored(
    tag: str, sample: MCQSample, frames: int, reply: str, fingerprint: str, inputs: dict[str, Any] | None = None
) -> SampleResult:
    prediction = extract_answer_letter(reply, sample.options)
    return SampleResult(
        model=tag,
        sample_id=sample.sample_id,
        num_frames=frames,
        reply=reply,
        prediction=prediction,
        answer=sample.answer,
        correct=prediction == sample.answer,
        breakdowns=dict(sample.breakdowns),
        fingerprint=fingerprint,
        inputs=inputs or {},
    )


def _batches(samples: list[MCQSample], default_frames: int, batch_size: int) -> list[list[MCQSample]]:
    """Consecutive samples with the same frame count (families like LLaVA cannot batch different counts)."""
    batches: list[list[MCQSample]] = []
    for sample in samples:
        frames = sample.num_frames or default_frames
        if batches and len(batches[-1]) < batch_size and (batches[-1][0].num_frames or default_frames) == frames:
            batches[-1].append(sample)
        else:
            batches.append([sample])
    return batches


def evaluate_mcq(
    model: Any,
    processor: VideoPreferenceProcessor,
    samples: list[MCQSample],
    video_dir: str | os.PathLike | None = None,
    num_frames: int | None = None,
    batch_size: int = 1,
    max_new_tokens: int = 16,
    stop: list[str] | None = None,
    cache_path: str | os.PathLike | None = None,
    cache_read_also: Iterable[str | os.PathLike] = (),
    fingerprint: str | Mapping[str, str] = "",
    compare_base: bool = True,
    progress: bool = True,
    on_batch_done: Callable[[int], None] | None = None,
    **generate_kwargs: Any,
) -> MCQRun:
    """Answers every sample with every model variant (base / adapter) and scores the replies.

    Args:
        model: a transformers video-LMM, or a `peft.PeftModel` (then base and adapter are both evaluated).
        processor: the model's `VideoPreferenceProcessor`.
        samples: from `load_benchmark` or `vniah.build_vniah_suite`.
        video_dir: folder of the benchmark's videos.
        num_frames: frames per video (default: the processor's `num_frames`); a sample's own `num_frames` wins.
        batch_size: samples per `generate` call.
        max_new_tokens: generation budget (`Benchmark.max_new_tokens`: lmms-eval's 16 or 32 for these tasks).
        stop: a reply is cut at the first of these strings, as lmms-eval's `until` does (its default: "\\n\\n").
        cache_path: JSONL results cache; finished samples found there are not generated again.
        cache_read_also: more caches to take finished samples from (the other processes' shards); never written.
        fingerprint: identifies the weights (e.g. model and adapter path) so a cache never mixes models: one for
            every variant, or model tag -> fingerprint (`weights_fingerprint`; the base model's without the adapter,
            so that its answers are reused across adapters).
        compare_base: with a PeftModel, also evaluate the adapter-disabled base model.
        progress: show a tqdm bar.
        on_batch_done: called with the number of finished batches (e.g. to checkpoint elsewhere or stop a run).
        generate_kwargs: passed to `model.generate` (greedy decoding by default).
    """
    from tqdm.auto import tqdm

    num_frames = num_frames or processor.num_frames
    if num_frames is None:
        raise ValueError("Set `num_frames`: evaluation samples a fixed number of frames per video.")
    generate_kwargs = {"do_sample": False, "max_new_tokens": max_new_tokens, **generate_kwargs}
    variants = model_variants(model, compare_base)
    fingerprints = {tag: fingerprint if isinstance(fingerprint, str) else fingerprint[tag] for tag in variants}
    cache = ResultsCache(cache_path, cache_read_also)
    cache.check_writable()
    computed: dict[str, list[str]] = defaultdict(list)
    cached: dict[str, list[str]] = defaultdict(list)
    by_key: dict[tuple[str, str], SampleResult] = {}

    if not samples:
        raise ValueError("No samples to evaluate: the benchmark or suite is empty (check the dataset, split, limit).")
    video_paths = find_videos(samples, video_dir)  # every missing video named at once, before any generation
    check_prompt_placeholders(samples, placeholder_tokens(processor.processor))
    generation = {
        "generate_kwargs": {k: generate_kwargs[k] for k in sorted(generate_kwargs)},
        "stop": list(stop or []),
    }
    stale: Counter = Counter()  # changed key part -> answers generated again for it
    stale_answers: Counter = Counter()  # model tag -> answers generated again
    batches = _batches(samples, num_frames, batch_size)
    bar = tqdm(total=len(samples) * len(variants), desc="eval", unit="answer", disable=not progress)
    for batch_number, batch in enumerate(batches, 1):
        frames = batch[0].num_frames or num_frames
        todo: dict[str, list[MCQSample]] = {}
        keys = {
            sample.sample_id: answer_key(sample, video_paths[sample.sample_id], processor, generation)
            for sample in batch
        }
        for tag in variants:
            for sample in batch:
                inputs = keys[sample.sample_id]
                found = cache.get((tag, fingerprints[tag], sample.sample_id, frames))
                hit = found if found is not None and same_answer_key(found.inputs, inputs) else None
                # the cached answer this one replaces, if any: same weights and frames, else the last one made
                previous = (found or cache.previous(tag, sample.sample_id)) if hit is None else None
                if previous is not None:
                    stale.update(stale_parts(previous, fingerprints[tag], frames, inputs))
                    stale_answers[tag] += 1
                if hit is not None:
                    # the reply is what was cached; it is read again so a better parser also scores old answers
                    hit = _scored(tag, sample, frames, hit.reply, fingerprints[tag], inputs)
                    by_key[(tag, sample.sample_id)] = hit
                    cached[tag].append(sample.sample_id)
                    bar.update(1)
                else:
                    todo.setdefault(tag, []).append(sample)
        if todo:
            needed = {sample.sample_id: sample for pending in todo.values() for sample in pending}
            # each video decoded once for all variants, so base and adapter see the same frames
            decoded = {
                sample_id: processor.load_video(
                    video_paths[sample_id],
                    processor.default_view(num_frames=frames, start=sample.start),
                )
                for sample_id, sample in needed.items()
            }
            for tag, pending in todo.items():
                with variants[tag]():
                    replies = processor.generate(
                        model,
                        [sample.prompt for sample in pending],
                        [decoded[sample.sample_id] for sample in pending],
                        **generate_kwargs,
                    )
                finished = []
                for sample, reply in zip(pending, replies):
                    for marker in stop or ():
                        reply = reply.split(marker, 1)[0] if marker else reply
                    finished.append(_scored(tag, sample, frames, reply, fingerprints[tag], keys[sample.sample_id]))
                    computed[tag].append(sample.sample_id)
                cache.add(finished)
                by_key.update({(tag, result.sample_id): result for result in finished})
                bar.update(len(finished))
        if on_batch_done is not None:
            on_batch_done(batch_number)
    bar.close()
    if stale_answers:
        logger.warning(
            "Generated again %d answer(s) (%s) whose cached answers were made otherwise (changed: %s).",
            sum(stale_answers.values()),
            ", ".join(f"{tag}: {count}" for tag, count in stale_answers.items()),
            ", ".join(f"{_CHANGE_NAMES.get(part, part)} ({count})" for part, count in sorted(stale.items())),
        )
    results = {tag: [by_key[(tag, sample.sample_id)] for sample in samples] for tag in variants}
    return MCQRun(results=results, computed=dict(computed), cached=dict(cached))


def _accuracy(results: list[SampleResult]) -> dict[str, Any]:
    correct = sum(result.correct for result in results)
    return {
        "accuracy": 100.0 * correct / len(results) if results else 0.0,
        "correct": correct,
        "total": len(results),
        "unparseable": sum(result.prediction == UNPARSEABLE for result in results),
    }


def headline_score(entry: dict[str, Any], headline: str = "accuracy", task_field: str = "task_type") -> float:
    """A benchmark's headline number from a `summarize` model entry: "accuracy" (pooled), or "task_mean" (MLVU's
    M-Avg: the unweighted mean of the per-task accuracies, over the task types present)."""
    if headline == "task_mean":
        tasks = entry.get("by", {}).get(task_field, {})
        in_tasks = sum(group["total"] for group in tasks.values())
        if not tasks or in_tasks != entry["total"]:
            # a mean over no task (or over some of the questions only) is no M-Avg: 0.0 would read as a score
            raise ValueError(
                f"The task-mean headline needs every question's `{task_field}`: {entry['total'] - in_tasks} of "
                f"{entry['total']} questions have none."
            )
        return sum(group["accuracy"] for group in tasks.values()) / len(tasks)
    if headline != "accuracy":
        raise ValueError(f"Unknown headline metric {headline!r}: use 'accuracy' or 'task_mean'.")
    return entry["accuracy"]


def summarize(
    results: dict[str, list[SampleResult]],
    breakdowns: Iterable[str] | None = None,
    headline: str = "accuracy",
    lmms_eval_predictions: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    """Accuracy (percent) overall and by each breakdown field per model, plus per-sample agreement.

    Args:
        results: model tag -> results.
        breakdowns: fields to break accuracy down by (default: every field the results carry).
        headline: how the benchmark defines its headline `score` (see `headline_score`).
        lmms_eval_predictions: model tag -> the letters lmms-eval's own parser reads in the same replies; adds
            `lmms_eval_parser` (its `score` and `accuracy`) to each model, the number lmms-eval would report.

    Returns:
        `{"models": {tag: {"score", "accuracy", "correct", "total", "unparseable", "unparseable_rate", "by":
        {field: {value: {...}}}, ["lmms_eval_parser"]}}, "agreement": {...}}`; agreement (only with two models)
        counts the samples where both predict the same letter, and where only one of them is right.
    """
    summary: dict[str, Any] = {"models": {}}
    for tag, tag_results in results.items():
        entry = _accuracy(tag_results)
        entry["unparseable_rate"] = 100.0 * entry["unparseable"] / entry["total"] if entry["total"] else 0.0
        fields = list(breakdowns) if breakdowns is not None else sorted({k for r in tag_results for k in r.breakdowns})
        entry["by"] = {}
        for name in fields:
            groups: dict[str, list[SampleResult]] = defaultdict(list)
            for result in tag_results:
                if name in result.breakdowns:
                    groups[result.breakdowns[name]].append(result)
            entry["by"][name] = {value: _accuracy(group) for value, group in sorted(groups.items())}
        summary["models"][tag] = {"score": headline_score(entry, headline), **entry}
        if lmms_eval_predictions is not None and tag in lmms_eval_predictions:
            rescored = [
                replace(result, prediction=letter or UNPARSEABLE, correct=letter == result.answer)
                for result, letter in zip(tag_results, lmms_eval_predictions[tag])
            ]
            other = summarize({tag: rescored}, fields, headline)["models"][tag]
            summary["models"][tag]["lmms_eval_parser"] = {
                "score": other["score"],
                "accuracy": other["accuracy"],
            }
    if len(results) == 2:
        (tag_a, results_a), (tag_b, results_b) = results.items()
        pairs = list(zip(results_a, results_b))
        same = sum(a.prediction == b.prediction for a, b in pairs)
        summary["agreement"] = {
            "models": [tag_a, tag_b],
            "same_prediction": same,
            "agreement": 100.0 * same / len(pairs) if pairs else 0.0,
            "both_correct": sum(a.correct and b.correct for a, b in pairs),
            f"only_{tag_a}_correct": sum(a.correct and not b.correct for a, b in pairs),
            f"only_{tag_b}_correct": sum(b.correct and not a.correct for a, b in pairs),
            "both_wrong": sum(not a.correct and not b.correct for a, b in pairs),
            "total": len(pairs),
        }
    return summary
