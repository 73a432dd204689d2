"""Stage 5 of the flow (evaluation): one evaluation run, base vs. TPO, on a benchmark and/or V-NIAH.

`evaluate(config)` loads the model with its adapter (`tpo_hf.models.load_video_model`), answers every question with
the adapter disabled (base) and enabled (TPO) from the same frames, and writes in `output_dir`: `results.json`,
`results.md`, `model_index.yaml` (the card's model-index), `samples_<benchmark>.jsonl` (per-sample answers side by
side), the results cache `cache_<benchmark>.jsonl` / `cache_vniah.jsonl`, and `vniah_heatmap.png`.

Data parallel: under `accelerate launch --num_processes N -m tpo_hf.commands.eval ...` each process answers every N-th question
into its own cache shard (`cache_<name>.rank<i>.jsonl`); then every process reads all shards back in question order
(nothing left to generate) and the main process writes the same outputs a single process would. A later run, with any
number of processes, resumes from all the shards.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fingerprint import model_identity
from ..locks import check_lock_held, output_dir_lock, reader_mark, refuse_if_locked
from ..models import (
    adapter_base_mismatch,
    adapter_base_model,
    check_adapter_folder,
    check_adapter_loadable,
    load_video_model,
)
from ..video_settings import VideoSettings
from .config import EvalConfig

if TYPE_CHECKING:
    from .benchmarks import BenchmarkQuestions

logger = logging.getLogger(__name__)


def _side_by_side(run: Any, path: Path, lmms_eval_predictions: dict[str, list[str]] | None = None) -> None:
    from .results import RESULTS_REMEDY, write_output

    tags = list(run.results)
    lines = []
    for index, per_tag in enumerate(zip(*(run.results[tag] for tag in tags))):
        record = {"sample_id": per_tag[0].sample_id, "answer": per_tag[0].answer, **per_tag[0].breakdowns}
        for tag, result in zip(tags, per_tag):
            record[f"{tag}_prediction"] = result.prediction
            if lmms_eval_predictions is not None:
                record[f"{tag}_lmms_eval_prediction"] = lmms_eval_predictions[tag][index]
            record[f"{tag}_reply"] = result.reply
        record["agree"] = len({result.prediction for result in per_tag}) == 1
        lines.append(json.dumps(record) + "\n")
    write_output(path, lambda temporary: temporary.write_text("".join(lines)), RESULTS_REMEDY)


def _distributed_state(config: EvalConfig) -> Any:
    """accelerate's `PartialState` when launched with more than one process, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=config.device == "cpu")


def _cache_files(output_dir: Path, name: str) -> list[Path]:
    return [output_dir / f"cache_{name}.jsonl", *sorted(output_dir.glob(f"cache_{name}.rank*.jsonl"))]


def _warn_if_not_the_benchmark(questions: BenchmarkQuestions, pretty_name: str) -> None:
    """Says, before the run, when its score will not be the benchmark's: only the first questions (`limit`), or
    questions from a local file. The results and model-index record it so (`results.eval_results`)."""
    if questions.subset:
        logger.warning(
            "Scoring only the first %d of the %d questions of %s (split %r, `limit`): a subset, not a %s score. "
            "results.json, results.md and model_index.yaml record it as that subset (split %r).",
            len(questions.samples),
            questions.split_size,
            questions.dataset,
            questions.split,
            pretty_name,
            f"{questions.split}[:{len(questions.samples)}]",
        )
    if questions.local:
        logger.info(
            "%s questions from the local %s: model_index.yaml records that file as the dataset, not the benchmark's "
            "Hub dataset.",
            pretty_name,
            questions.dataset,
        )


def evaluate(config: EvalConfig, model: Any = None, processor: Any = None) -> dict[str, Any]:
    """Runs the configured evaluation and writes its outputs; returns the results dict (as in `results.json`).

    `model` / `processor` may be passed in (already loaded) instead of being loaded from the config.

    Raises:
        OutputDirLockedError: another run is writing `output_dir` (`tpo_hf.locks`).
    """
    # the adapter folder is marked before it is checked for a training run writing it, so that one of the two refuses
    with output_dir_lock(config.output_dir, "eval"), reader_mark(config.adapter_path, "eval", "adapter"):
        return _evaluate_locked(config, model, processor)


def _evaluate_locked(config: EvalConfig, model: Any, processor: Any) -> dict[str, Any]:
    from huggingface_hub import ModelCardData

    from .benchmarks import (
        LMMS_EVAL_STOP,
        LMMS_EVAL_VERSION,
        find_videos,
        get_benchmark,
        lmms_eval_predictions,
        read_benchmark,
    )
    from .mcq import ADAPTER_TAG, BASE_TAG, evaluate_mcq, weights_fingerprint
    from .results import RESULTS_REMEDY, eval_results, markdown_table, write_output, write_results_json
    from .vniah import Needle, build_vniah_suite, haystack_sources, plot_vniah_heatmap, vniah_scores

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    state = _distributed_state(config)
    is_main = state is None or state.is_main_process
    device = config.device
    if state is not None and device is None:
        device = str(state.device)  # one accelerator per process
    asked = VideoSettings.of(config)
    config.check_vniah_haystack_dir()  # before the model loads and the benchmark runs
    # a folder another run is writing (training into it) holds half old, half new files
    refuse_if_locked(config.adapter_path, "eval")
    refuse_if_locked(config.model_name_or_path, "eval")
    if config.adapter_path:
        check_adapter_folder(config.adapter_path)
        if model is None or processor is None:  # the one-line refusals of `load_video_model`, before the questions
            check_adapter_loadable(config.adapter_path, config.model_name_or_path)
    if config.benchmark:
        # questions and their videos before the model loads: a missing video is found now, not after an hour of answers
        benchmark = get_benchmark(config.benchmark)
        questions = read_benchmark(
            config.benchmark,
            config.dataset_name,
            config.dataset_split,
            config.dataset_config,
            config.limit,
            variant=config.prompt_variant,
            video_dir=config.video_dir,
            subtitle_dir=config.subtitle_dir,
        )
        find_videos(questions.samples, config.video_dir, benchmark.pretty_name)
        if is_main:
            _warn_if_not_the_benchmark(questions, benchmark.pretty_name)
    if config.vniah:
        # the haystack videos too: one that cannot be cut or written fails now, not after the model and the benchmark
        haystack_dir = config.vniah_haystack_dir or config.video_dir
        if not haystack_dir or not os.path.isdir(haystack_dir):
            raise ValueError(
                f"V-NIAH needs a folder of haystack videos: set `vniah_haystack_dir` (got {haystack_dir})."
            )
        haystack_videos = [str(path) for path in haystack_sources(haystack_dir, output_dir)]
        if not haystack_videos:
            raise ValueError(f"V-NIAH found no videos in {haystack_dir} to cut haystacks from; nothing to evaluate.")
        needle = Needle(
            colour=config.vniah_needle_colour,
            shape=config.vniah_needle_shape,
            num_frames=config.vniah_needle_frames,
            text=config.vniah_needle_text,
        )

        def build() -> list[Any]:
            return build_vniah_suite(
                haystack_videos,
                output_dir / "vniah_videos",
                lengths=config.vniah_lengths,
                depths=config.vniah_depths,
                needle=needle,
                fps=config.vniah_fps,
                haystack_fps=config.vniah_haystack_fps,
                max_side=config.vniah_max_side,
            )

        if state is None:
            vniah_samples = build()
        else:  # the main process writes the haystack videos; the others then build the same suite on top
            with state.main_process_first():
                vniah_samples = build()
    if model is None or processor is None:
        model, processor = load_video_model(
            config.model_name_or_path,
            config.adapter_path,
            **asked.to_dict(),  # None keeps what the adapter saved from training (its token budget, say)
            dtype=config.dtype,
            device=device,
            attn_implementation=config.attn_implementation,
        )
    # what every question is sampled with: the processor's settings, fitted to the token budget (given, or saved
    # with the adapter), which may give fewer frames than asked for
    settings = processor.settings
    if settings != asked.fitted(processor.processor, processor.family):
        logger.info("Sampling videos with %s (the processor's settings; asked: %s).", settings, asked)
    num_frames = settings.num_frames
    # a cap below the frames a question is sampled at would be applied while the outputs name the frames asked for:
    # one saved with the processor (an adapter trained with one), or below a question's own frame count
    most_frames = max(
        [
            num_frames,
            *(sample.num_frames or 0 for sample in (questions.samples if config.benchmark else [])),
            *(config.vniah_lengths if config.vniah else []),
        ]
    )
    if settings.max_frames is not None and settings.max_frames < most_frames:
        origin = "`max_frames`" if config.max_frames is not None else "the max_frames saved with the processor"
        raise ValueError(
            f"Videos would be capped at {settings.max_frames} frames ({origin}), below the {most_frames} frames this "
            f"evaluation samples (`num_frames`, `vniah_lengths`, or a question's own count): set `max_frames` "
            f"{most_frames} or more."
        )
    # the weights (`model_identity`: a folder's weight and config files, a Hub id's commit) and how they run (dtype,
    # attention kernel): replies made otherwise are not reused. The base model's replies do not depend on the
    # adapter: a new adapter evaluated beside it reuses them
    base_model = config.model_name_or_path or (
        adapter_base_model(config.adapter_path) if config.adapter_path else None
    )
    base = dict(model=model_identity(base_model), dtype=config.dtype, attn_implementation=config.attn_implementation)
    fingerprint = {
        BASE_TAG: weights_fingerprint(**base),
        ADAPTER_TAG: weights_fingerprint(**base, adapter=model_identity(config.adapter_path)),
    }
    results: dict[str, Any] = {
        "model": config.model_name_or_path,
        "adapter": config.adapter_path,
        # what the weights are (not their path): an earlier run's results are kept beside this run's only when
        # they match (`merge_earlier_results`), so an adapter retrained in place never shows its old scores
        "weights": fingerprint,
        "benchmarks": {},
    }
    if config.adapter_path:
        # the base its adapter_config.json names; `load_video_model` warns when the model evaluated is another one
        try:
            results["adapter_base_model"] = adapter_base_model(config.adapter_path)
        except (OSError, ValueError):  # a config naming no base: the model evaluated was given
            results["adapter_base_model"] = None
        trained_on = adapter_base_mismatch(config.model_name_or_path, config.adapter_path)
        if trained_on is not None:
            results["adapter_base_mismatch"] = {"trained_on": trained_on, "evaluated_on": config.model_name_or_path}

    def run_mcq(name: str, samples: list[Any], **kwargs: Any) -> Any:
        """`evaluate_mcq` over `samples`, split across processes when launched with several, cached in
        `cache_<name>[.rank<i>].jsonl`; returns the results of all samples, in order, on every process."""
        if not config.resume and is_main:
            for path in _cache_files(output_dir, name):
                path.unlink(missing_ok=True)
        common = dict(
            fingerprint=fingerprint, compare_base=config.compare_base, batch_size=config.batch_size, **kwargs
        )
        if state is None:
            return evaluate_mcq(
                model,
                processor,
                samples,
                cache_path=output_dir / f"cache_{name}.jsonl",
                cache_read_also=_cache_files(output_dir, name)[1:],
                progress=config.progress,
                **common,
            )
        state.wait_for_everyone()
        rank, world = state.process_index, state.num_processes
        evaluate_mcq(
            model,
            processor,
            samples[rank::world],
            cache_path=output_dir / f"cache_{name}.rank{rank}.jsonl",
            cache_read_also=_cache_files(output_dir, name),
            progress=config.progress and is_main,
            **common,
        )
        state.wait_for_everyone()
        # every answer is in some shard now: this pass only reads them back in order
        merged = evaluate_mcq(
            model, processor, samples, cache_read_also=_cache_files(output_dir, name), progress=False, **common
        )
        state.wait_for_everyone()
        return merged

    if config.benchmark:
        samples = questions.samples
        logger.info("Evaluating %d %s questions at %d frames", len(samples), benchmark.pretty_name, num_frames)
        run = run_mcq(
            config.benchmark,
            samples,
            video_dir=config.video_dir,
            num_frames=num_frames,
            max_new_tokens=config.max_new_tokens or benchmark.max_new_tokens,
            stop=[LMMS_EVAL_STOP],
        )
        lmms_letters = (
            {
                tag: lmms_eval_predictions(config.benchmark, [r.reply for r in tag_results], samples)
                for tag, tag_results in run.results.items()
            }
            if benchmark.lmms_eval_task
            else None
        )
        summary = run.summary(benchmark.breakdowns, headline=benchmark.headline, lmms_eval_predictions=lmms_letters)
        results["benchmarks"][config.benchmark] = {
            "pretty_name": benchmark.pretty_name,
            "headline": benchmark.headline_name,
            "lmms_eval_task": benchmark.lmms_eval_task,
            "lmms_eval_version": LMMS_EVAL_VERSION,
            "prompt_variant": config.prompt_variant,
            # what was scored: a local file as that file, `limit` as the first `questions` of `split_questions`
            "dataset": questions.dataset,
            "local_dataset": questions.local,
            "split": questions.split,
            "questions": len(samples),
            "split_questions": questions.split_size,
            "subset": questions.subset,
            "num_frames": num_frames,
            "max_video_tokens": settings.max_video_tokens,
            "video_settings": settings.to_dict(),
            **summary,
        }
        if is_main:
            _side_by_side(run, output_dir / f"samples_{config.benchmark}.jsonl", lmms_letters)

    if config.vniah:
        run = run_mcq("vniah", vniah_samples, max_new_tokens=config.max_new_tokens or 16)
        scores = {tag: vniah_scores(vniah_samples, tag_results) for tag, tag_results in run.results.items()}
        heatmap = output_dir / "vniah_heatmap.png"
        if is_main:
            write_output(heatmap, lambda temporary: plot_vniah_heatmap(scores, temporary), RESULTS_REMEDY)
        # "models": the (depth x length) grids; "summary": the same answers scored like a benchmark, with agreement
        results["vniah"] = {"models": scores, "heatmap": str(heatmap), "summary": run.summary(["length", "depth"])}

    if not is_main:
        return results
    check_lock_held(output_dir)  # not into a folder removed under this run (and perhaps another run's now)
    # each file written whole or not at all; a full disk is one line naming the file (the answers are cached)
    write_results_json(results, output_dir / "results.json")
    write_output(
        output_dir / "results.md", lambda temporary: temporary.write_text(markdown_table(results)), RESULTS_REMEDY
    )
    tags = {tag for b in results["benchmarks"].values() for tag in b["models"]} | set(
        results.get("vniah", {}).get("models", {})
    )
    tag = "tpo" if "tpo" in tags else "base"
    card_data = ModelCardData(
        model_name=Path(config.adapter_path or config.model_name_or_path or "model").name,
        eval_results=eval_results(results, tag),
    )
    model_index = card_data.to_yaml() + "\n"
    write_output(output_dir / "model_index.yaml", lambda temporary: temporary.write_text(model_index), RESULTS_REMEDY)
    logger.info("Results written to %s", output_dir)
    return results
