"""Stage 5 of the flow (evaluation) -> stage 6 (publish): write evaluation results where people and cards read them.

`results.json` holds everything (per model accuracy overall and by breakdown, agreement, V-NIAH matrices);
`results.md` is the side-by-side table; `eval_results(...)` turns the numbers into `huggingface_hub.EvalResult`
objects, which `ModelCardData(eval_results=...)` writes as the card's `model-index`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..fingerprint import atomic_path, no_space_left
from .benchmarks import Benchmark, get_benchmark

logger = logging.getLogger(__name__)

MCQ_TASK_TYPE = "multiple-choice"
VNIAH_TASK_TYPE = "video-question-answering"


class EvalOutputError(OSError):
    """An evaluation output (a result file, a V-NIAH video) that could not be written because the disk is full; the
    message names the file."""


def write_output(path: str | os.PathLike, write: Callable[[Path], Any], remedy: str) -> Path:
    """Writes the output file `path` by `write(temporary)`, a file beside it renamed over it once whole
    (`fingerprint.atomic_path`): a kill or a full disk leaves the previous file or none, never a torn one.

    Raises:
        EvalOutputError: the disk is full (`fingerprint.no_space_left`), naming `path`, then `remedy`.
    """
    path = Path(path)
    try:
        with atomic_path(path) as temporary:
            write(temporary)
    except OSError as error:
        full = no_space_left(error, path.parent)
        if full is None:
            raise
        raise EvalOutputError(f"Could not write {path}: {full}. {remedy}") from error
    return path


# What a result file that could not be written leaves to do: every answer is in the results cache by then
RESULTS_REMEDY = (
    "Every answer is kept in the results cache (cache_*.jsonl) beside it: free space and rerun the same command, which "
    "writes the results without generating the answers again."
)


def write_results_json(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """Writes `results` (the dict `tpo_hf.eval.run.evaluate` returns) as indented JSON (`write_output`), with the
    results an earlier run wrote to `path` for the benchmarks this run did not evaluate (`merge_earlier_results`)."""
    merge_earlier_results(results, path)
    text = json.dumps(results, indent=2, sort_keys=False) + "\n"
    return write_output(path, lambda temporary: temporary.write_text(text), RESULTS_REMEDY)


def merge_earlier_results(results: dict[str, Any], path: str | os.PathLike) -> list[str]:
    """Adds to `results` the benchmarks (and V-NIAH) of the results file at `path` that `results` lacks, when that
    file is of the same model and adapter: evaluating Video-MME, then V-NIAH alone into the same output_dir, leaves
    both in results.json, results.md and the model-index (each benchmark as its latest run scored it). Another
    model's or adapter's results are dropped, named in a warning. Returns the names of the results kept."""
    try:
        earlier = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        logger.warning("Not keeping the earlier results in %s: it cannot be read (%s).", path, error)
        return []
    if not isinstance(earlier, dict):
        return []
    benchmarks = earlier.get("benchmarks") if isinstance(earlier.get("benchmarks"), dict) else {}
    kept = {name: entry for name, entry in benchmarks.items() if name not in results.get("benchmarks", {})}
    vniah = earlier.get("vniah") if "vniah" not in results and isinstance(earlier.get("vniah"), dict) else None
    names = [*kept, *(["vniah"] if vniah is not None else [])]
    if not names:
        return []
    same_names = (earlier.get("model"), earlier.get("adapter")) == (results.get("model"), results.get("adapter"))
    if not same_names or earlier.get("weights") != results.get("weights"):
        # the same path may hold other weights (an adapter retrained in place): compared by what the weights are
        logger.warning(
            "Dropping the results of %s from %s: they were made with model %s and adapter %s%s, not with this run's "
            "model %s and adapter %s (their answers stay in the cache_*.jsonl files beside it).",
            ", ".join(names),
            path,
            earlier.get("model"),
            earlier.get("adapter"),
            " as they were then (the weights have changed since)" if same_names else "",
            results.get("model"),
            results.get("adapter"),
        )
        return []
    results["benchmarks"] = {**kept, **results.get("benchmarks", {})}
    if vniah is not None:
        results["vniah"] = vniah
    logger.info(
        "Keeping the results of %s from the earlier run in %s (this run did not evaluate them).",
        ", ".join(names),
        path,
    )
    return names


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def scored_dataset(benchmark: dict[str, Any], registered: Benchmark) -> tuple[str, str]:
    """The dataset name and split a benchmark entry of `results.json` is recorded under in the model-index: a local
    question file is named as that file, and a run that scored only the first N questions (`limit`) says so, with the
    split as `datasets` slices it (`test[:N]`), so that neither reads as the benchmark's score on the Hub."""
    name, split = registered.pretty_name, benchmark.get("split", registered.split)
    if benchmark.get("local_dataset"):
        name = f"{registered.pretty_name} questions from {Path(benchmark['dataset']).name}"
    if benchmark.get("subset"):
        scored, total = benchmark["questions"], benchmark["split_questions"]
        name += f" (first {scored} of {total} questions: a subset, not the full split)"
        split = f"{split}[:{scored}]"
    return name, split


def _scored_questions_line(benchmark: dict[str, Any]) -> str | None:
    if benchmark.get("subset"):
        return (
            f"Subset: the first {benchmark['questions']} of the {benchmark['split_questions']} questions of "
            f"{benchmark['dataset']} (split {benchmark['split']}), not a benchmark score."
        )
    if benchmark.get("local_dataset"):
        return f"Questions: all {benchmark['questions']} of {benchmark['dataset']} (split {benchmark['split']})."
    return None


def markdown_table(results: dict[str, Any]) -> str:
    """A Markdown report: one column per model (base, tpo, delta), a row for overall and each breakdown value."""
    lines: list[str] = []
    for name, benchmark in results.get("benchmarks", {}).items():
        models = list(benchmark["models"])
        header = ["", *models] + (["Δ"] if len(models) == 2 else [])
        lines += [f"### {benchmark.get('pretty_name', name)} ({benchmark.get('num_frames', '?')} frames)", ""]
        scored = _scored_questions_line(benchmark)
        if scored is not None:
            lines += [scored, ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

        def row(label: str, values: list[float | None]) -> str:
            cells = [_pct(v) for v in values]
            if len(values) == 2 and None not in values:
                cells.append(f"{values[1] - values[0]:+.1f}")
            elif len(values) == 2:
                cells.append("-")
            return "| " + " | ".join([label, *cells]) + " |"

        entries = [benchmark["models"][m] for m in models]
        headline = benchmark.get("headline", "Accuracy")
        lines.append(row(f"**{headline}**", [entry.get("score", entry["accuracy"]) for entry in entries]))
        if headline != "Accuracy":
            lines.append(row("Accuracy (all questions)", [entry["accuracy"] for entry in entries]))
        if all("lmms_eval_parser" in entry for entry in entries):
            label = f"{headline}, lmms-eval's answer parser"
            lines.append(row(label, [entry["lmms_eval_parser"]["score"] for entry in entries]))
        lines.append(row("Unparseable replies (%)", [entry.get("unparseable_rate") for entry in entries]))
        fields = list(benchmark["models"][models[0]].get("by", {}))
        for field_name in fields:
            values = sorted({v for m in models for v in benchmark["models"][m]["by"].get(field_name, {})})
            for value in values:
                cells = [
                    benchmark["models"][m]["by"].get(field_name, {}).get(value, {}).get("accuracy") for m in models
                ]
                lines.append(row(f"{field_name}: {value}", cells))
        unparseable = ", ".join(f"{m} {benchmark['models'][m]['unparseable']}" for m in models)
        lines += ["", f"Samples: {benchmark['models'][models[0]]['total']}. Unparseable replies: {unparseable}."]
        if "agreement" in benchmark:
            agreement = benchmark["agreement"]
            tag_a, tag_b = agreement["models"]
            lines.append(
                f"Agreement {tag_a} vs {tag_b}: {agreement['agreement']:.1f}% same letter; both right "
                f"{agreement['both_correct']}, only {tag_a} {agreement[f'only_{tag_a}_correct']}, only {tag_b} "
                f"{agreement[f'only_{tag_b}_correct']}, both wrong {agreement['both_wrong']}."
            )
        lines.append("")
    if "vniah" in results:
        vniah = results["vniah"]
        for tag, scores in vniah["models"].items():
            lines += [f"### V-NIAH: {tag} (accuracy %, rows: needle depth, columns: frames)", ""]
            lines.append("| depth | " + " | ".join(str(length) for length in scores["lengths"]) + " |")
            lines.append("|" + "---|" * (len(scores["lengths"]) + 1))
            for depth, values in zip(scores["depths"], scores["accuracy"]):
                lines.append(f"| {100 * depth:g}% | " + " | ".join(_pct(v) for v in values) + " |")
            lines.append("")
        if vniah.get("heatmap"):
            lines += [f"![V-NIAH heatmap]({Path(vniah['heatmap']).name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def eval_results(results: dict[str, Any], model_tag: str = "tpo") -> list[Any]:
    """`huggingface_hub.EvalResult`s of one model (`model_tag`, e.g. "tpo" or "base") for the card's model-index.

    Multiple-choice benchmarks report accuracy (percent) on the dataset and split scored (`scored_dataset`: a local
    file as that file, the first N questions of a split as `split[:N]`); V-NIAH reports the mean accuracy over its
    (length, depth) grid.
    """
    from huggingface_hub import EvalResult

    entries = []
    for name, benchmark in results.get("benchmarks", {}).items():
        if model_tag not in benchmark["models"]:
            continue
        registered = get_benchmark(name)
        entry = benchmark["models"][model_tag]
        dataset_name, dataset_split = scored_dataset(benchmark, registered)
        common = dict(
            task_type=MCQ_TASK_TYPE,
            task_name="Multiple-choice video QA",
            dataset_type=benchmark.get("dataset", registered.hub_id),
            dataset_name=dataset_name,
            dataset_split=dataset_split,
        )
        frames = f"{benchmark.get('num_frames', '?')} frames"
        headline = benchmark.get("headline", registered.headline_name)
        entries.append(
            EvalResult(
                **common,
                metric_type="accuracy",
                metric_name=f"{headline} ({frames})",
                metric_value=round(float(entry.get("score", entry["accuracy"])), 2),
            )
        )
        if "lmms_eval_parser" in entry:
            entries.append(
                EvalResult(
                    **common,
                    metric_type="accuracy",
                    metric_name=f"{headline}, lmms-eval {benchmark.get('lmms_eval_version', '')} parser ({frames})",
                    metric_value=round(float(entry["lmms_eval_parser"]["score"]), 2),
                )
            )
        if "unparseable_rate" in entry:
            entries.append(
                EvalResult(
                    **common,
                    metric_type="unparseable_rate",
                    metric_name=f"Unparseable replies, % ({frames})",
                    metric_value=round(float(entry["unparseable_rate"]), 2),
                )
            )
    vniah = results.get("vniah")
    if vniah and model_tag in vniah["models"]:
        values = [v for row in vniah["models"][model_tag]["accuracy"] for v in row if v is not None]
        entries.append(
            EvalResult(
                task_type=VNIAH_TASK_TYPE,
                task_name="Video needle-in-a-haystack",
                dataset_type="tpo-hf/v-niah",
                dataset_name="V-NIAH (synthetic)",
                metric_type="accuracy",
                metric_name="Mean accuracy over lengths and depths",
                metric_value=round(sum(values) / len(values), 2) if values else 0.0,
            )
        )
    return entries
