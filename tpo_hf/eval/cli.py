"""Stage 5 entry point: `tpo-hf eval --config FILE.yaml` evaluates a model, and its TPO adapter against it.

    tpo-hf eval --config recipes/eval/videomme.yaml
    tpo-hf eval --model_name_or_path Qwen/Qwen2.5-VL-7B-Instruct --adapter_path out/tpo-lora \\
        --benchmark videomme --dataset_name lmms-lab/Video-MME --video_dir /data/videomme/data --num_frames 96

Arguments are one `EvalConfig` dataclass parsed with TRL's `TrlParser`: every field can be set in the YAML file or
as a flag, and flags override the file. Outputs in `output_dir`: `results.json`, `results.md`, `model_index.yaml`
(the card's model-index), `samples_<benchmark>.jsonl` (per-sample answers side by side), the results cache
`cache_<benchmark>.jsonl` / `cache_vniah.jsonl`, and `vniah_heatmap.png`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import TrlParser

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """Settings of `tpo-hf eval`.

    > Parameters that control the model

    Args:
        model_name_or_path: base model (Hub id or folder).
        adapter_path: TPO LoRA adapter folder or Hub id; with it, base and adapter are evaluated side by side.
        compare_base: with an adapter, also evaluate the adapter-disabled base model.
        dtype: "auto", "bfloat16", "float16" or "float32".
        device: "cuda", "cpu", ... (default: cuda when available).
        attn_implementation: e.g. "sdpa" or "flash_attention_2".

    > Parameters that control the multiple-choice benchmark

    Args:
        benchmark: "videomme", "mlvu_dev" or "longvideobench_val"; leave unset to run only V-NIAH.
        dataset_name: Hub id, `save_to_disk` folder, or json/jsonl/parquet/csv file (default: the benchmark's id).
        dataset_config, dataset_split: Hub config and split (default: the benchmark's split).
        video_dir: folder holding the benchmark's videos.
        limit: evaluate only the first `limit` questions.
        num_frames: frames per video (the paper evaluates with 96-128).
        max_pixels: per-frame pixel budget for families that resize dynamically.
        batch_size: questions per `generate` call.
        max_new_tokens: generation budget per answer.

    > Parameters that control V-NIAH

    Args:
        vniah: run the video needle-in-a-haystack test.
        vniah_haystack_dir: folder of videos to cut haystacks from (default: `video_dir`).
        vniah_lengths: haystack lengths in frames.
        vniah_depths: needle depths in [0, 1].
        vniah_needle_colour, vniah_needle_shape, vniah_needle_frames: the rendered needle.
        vniah_fps: frame rate of the written haystack videos.
        vniah_haystack_fps: rate the source videos are sampled at to build haystacks (LongVA's V-NIAH: 1 fps).
        vniah_max_side: cap on the longer side of haystack frames.

    > Parameters that control the outputs

    Args:
        output_dir: where results, cache and heatmap go.
        resume: reuse finished samples from the results cache in `output_dir`.
        progress: show progress bars.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "Base model: Hub id or local folder."})
    adapter_path: str | None = field(default=None, metadata={"help": "TPO LoRA adapter (folder or Hub id)."})
    compare_base: bool = field(default=True, metadata={"help": "With an adapter, also evaluate the base model."})
    dtype: str = field(default="auto", metadata={"help": "auto, bfloat16, float16 or float32."})
    device: str | None = field(default=None, metadata={"help": "Device (default: cuda when available, else cpu)."})
    attn_implementation: str | None = field(default=None, metadata={"help": "Attention implementation."})

    benchmark: str | None = field(
        default=None, metadata={"help": "videomme, mlvu_dev or longvideobench_val (unset: V-NIAH only)."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub id, save_to_disk folder or data file (default: benchmark's Hub id)."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config."})
    dataset_split: str | None = field(default=None, metadata={"help": "Split (default: the benchmark's)."})
    video_dir: str | None = field(default=None, metadata={"help": "Folder with the benchmark's videos."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N questions."})
    num_frames: int = field(default=64, metadata={"help": "Frames per video (paper: 96-128)."})
    max_pixels: int | None = field(default=None, metadata={"help": "Per-frame pixel budget (Qwen families)."})
    batch_size: int = field(default=1, metadata={"help": "Questions per generate call."})
    max_new_tokens: int = field(default=16, metadata={"help": "Generation budget per answer."})

    vniah: bool = field(default=False, metadata={"help": "Run the video needle-in-a-haystack test."})
    vniah_haystack_dir: str | None = field(
        default=None, metadata={"help": "Videos to cut haystacks from (default: video_dir)."}
    )
    vniah_lengths: list[int] = field(
        default_factory=lambda: [32, 64, 128], metadata={"help": "Haystack lengths in frames."}
    )
    vniah_depths: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], metadata={"help": "Needle depths in [0, 1]."}
    )
    vniah_needle_colour: str = field(default="red", metadata={"help": "Colour of the rendered needle."})
    vniah_needle_shape: str = field(default="circle", metadata={"help": "circle or square."})
    vniah_needle_frames: int = field(default=1, metadata={"help": "Frames the needle lasts."})
    vniah_fps: int = field(default=8, metadata={"help": "Frame rate of the written haystack videos."})
    vniah_haystack_fps: float | None = field(
        default=1.0, metadata={"help": "Rate the haystack sources are sampled at (LongVA: 1 fps); unset: every frame."}
    )
    vniah_max_side: int | None = field(
        default=448, metadata={"help": "Cap on the longer side of haystack frames (memory of long haystacks)."}
    )

    output_dir: str = field(default="eval_results", metadata={"help": "Where results, cache and heatmap go."})
    resume: bool = field(default=True, metadata={"help": "Reuse finished samples from the results cache."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self):
        if self.benchmark is not None:
            from .benchmarks import get_benchmark

            get_benchmark(self.benchmark)  # fails early, naming the benchmarks there are
        if self.benchmark is None and not self.vniah:
            raise ValueError("Nothing to evaluate: set `benchmark` and/or `vniah: true`.")
        for name in ("num_frames", "batch_size", "max_new_tokens", "vniah_needle_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1, got {getattr(self, name)}.")
        for depth in self.vniah_depths:
            if not 0.0 <= depth <= 1.0:
                raise ValueError(f"`vniah_depths` must lie in [0, 1], got {depth}.")


def _has_processor(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, name)) for name in ("processor_config.json", "preprocessor_config.json")
    )


def load_model_and_processor(
    model_name_or_path: str | None,
    adapter_path: str | None = None,
    num_frames: int = 64,
    max_pixels: int | None = None,
    dtype: str = "auto",
    device: str | None = None,
    attn_implementation: str | None = None,
) -> tuple[Any, Any]:
    """The model (a PeftModel when an adapter is given) on its device, and its `VideoPreferenceProcessor`."""
    import torch
    from transformers import AutoModelForImageTextToText

    from ..processing import VideoPreferenceProcessor

    if not model_name_or_path:
        raise ValueError("Set `model_name_or_path` (a Hub model id or a local model folder).")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs: dict[str, Any] = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = AutoModelForImageTextToText.from_pretrained(model_name_or_path, **kwargs)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    model.to(device).eval()
    # TPOTrainer saves the processor (with its video settings) beside the adapter; prefer it when present
    processor_source = adapter_path if adapter_path and _has_processor(adapter_path) else model_name_or_path
    settings: dict[str, Any] = {"num_frames": num_frames}
    if max_pixels is not None:  # unset keeps the budget saved with the processor
        settings["max_pixels"] = max_pixels
    return model, VideoPreferenceProcessor.from_pretrained(processor_source, **settings)


def _fingerprint(path: str | None) -> str:
    """The path plus, for a local folder, the size and time of its newest file: an adapter retrained into the same
    folder must not reuse the cached answers of the old one."""
    if path is None or not os.path.isdir(path):
        return str(path)
    files = [entry for entry in Path(path).rglob("*") if entry.is_file()]
    newest = max((entry.stat().st_mtime_ns for entry in files), default=0)
    return f"{path}@{sum(entry.stat().st_size for entry in files)}:{newest}"


def _side_by_side(run: Any, path: Path) -> None:
    tags = list(run.results)
    with path.open("w") as handle:
        for per_tag in zip(*(run.results[tag] for tag in tags)):
            record = {"sample_id": per_tag[0].sample_id, "answer": per_tag[0].answer, **per_tag[0].breakdowns}
            for tag, result in zip(tags, per_tag):
                record[f"{tag}_prediction"] = result.prediction
                record[f"{tag}_reply"] = result.reply
            record["agree"] = len({result.prediction for result in per_tag}) == 1
            handle.write(json.dumps(record) + "\n")


def main(config: EvalConfig, model: Any = None, processor: Any = None) -> dict[str, Any]:
    """Runs the configured evaluation and writes its outputs; returns the results dict (as in `results.json`).

    `model` / `processor` may be passed in (already loaded) instead of being loaded from the config.
    """
    from huggingface_hub import ModelCardData

    from .benchmarks import get_benchmark, load_benchmark
    from .mcq import evaluate_mcq
    from .results import eval_results, markdown_table, write_results_json
    from .vniah import Needle, build_vniah_suite, plot_vniah_heatmap, vniah_scores

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if model is None or processor is None:
        model, processor = load_model_and_processor(
            config.model_name_or_path,
            config.adapter_path,
            num_frames=config.num_frames,
            max_pixels=config.max_pixels,
            dtype=config.dtype,
            device=config.device,
            attn_implementation=config.attn_implementation,
        )
    fingerprint = f"{_fingerprint(config.model_name_or_path)}|{_fingerprint(config.adapter_path)}"
    results: dict[str, Any] = {
        "model": config.model_name_or_path,
        "adapter": config.adapter_path,
        "benchmarks": {},
    }

    def cache(name: str) -> Path | None:
        path = output_dir / f"cache_{name}.jsonl"
        if not config.resume and path.exists():
            path.unlink()
        return path

    if config.benchmark:
        benchmark = get_benchmark(config.benchmark)
        samples = load_benchmark(
            config.benchmark, config.dataset_name, config.dataset_split, config.dataset_config, config.limit
        )
        logger.info("Evaluating %d %s questions at %d frames", len(samples), benchmark.pretty_name, config.num_frames)
        run = evaluate_mcq(
            model,
            processor,
            samples,
            video_dir=config.video_dir,
            num_frames=config.num_frames,
            batch_size=config.batch_size,
            max_new_tokens=config.max_new_tokens,
            cache_path=cache(config.benchmark),
            fingerprint=fingerprint,
            compare_base=config.compare_base,
            progress=config.progress,
        )
        summary = run.summary(benchmark.breakdowns)
        results["benchmarks"][config.benchmark] = {
            "pretty_name": benchmark.pretty_name,
            "dataset": config.dataset_name
            if config.dataset_name and not os.path.exists(config.dataset_name)
            else benchmark.hub_id,
            "split": config.dataset_split or benchmark.split,
            "num_frames": config.num_frames,
            **summary,
        }
        _side_by_side(run, output_dir / f"samples_{config.benchmark}.jsonl")

    if config.vniah:
        haystack_dir = config.vniah_haystack_dir or config.video_dir
        if not haystack_dir or not os.path.isdir(haystack_dir):
            raise ValueError(
                f"V-NIAH needs a folder of haystack videos: set `vniah_haystack_dir` (got {haystack_dir})."
            )
        haystack_videos = sorted(
            str(p) for p in Path(haystack_dir).rglob("*") if p.suffix.lower() in (".mp4", ".mkv", ".webm", ".avi")
        )
        needle = Needle(
            colour=config.vniah_needle_colour, shape=config.vniah_needle_shape, num_frames=config.vniah_needle_frames
        )
        samples = build_vniah_suite(
            haystack_videos,
            output_dir / "vniah_videos",
            lengths=config.vniah_lengths,
            depths=config.vniah_depths,
            needle=needle,
            fps=config.vniah_fps,
            haystack_fps=config.vniah_haystack_fps,
            max_side=config.vniah_max_side,
        )
        run = evaluate_mcq(
            model,
            processor,
            samples,
            batch_size=config.batch_size,
            max_new_tokens=config.max_new_tokens,
            cache_path=cache("vniah"),
            fingerprint=fingerprint,
            compare_base=config.compare_base,
            progress=config.progress,
        )
        scores = {tag: vniah_scores(samples, tag_results) for tag, tag_results in run.results.items()}
        heatmap = output_dir / "vniah_heatmap.png"
        plot_vniah_heatmap(scores, heatmap)
        # "models": the (depth x length) grids; "summary": the same answers scored like a benchmark, with agreement
        results["vniah"] = {"models": scores, "heatmap": str(heatmap), "summary": run.summary(["length", "depth"])}

    write_results_json(results, output_dir / "results.json")
    (output_dir / "results.md").write_text(markdown_table(results))
    tags = {tag for b in results["benchmarks"].values() for tag in b["models"]} | set(
        results.get("vniah", {}).get("models", {})
    )
    tag = "tpo" if "tpo" in tags else "base"
    card_data = ModelCardData(
        model_name=Path(config.adapter_path or config.model_name_or_path or "model").name,
        eval_results=eval_results(results, tag),
    )
    (output_dir / "model_index.yaml").write_text(card_data.to_yaml() + "\n")
    logger.info("Results written to %s", output_dir)
    return results


def make_parser(subparsers=None) -> TrlParser:
    if subparsers is not None:
        return subparsers.add_parser("eval", help="Evaluate base vs. TPO", dataclass_types=(EvalConfig,))
    return TrlParser((EvalConfig,))


def cli_main(argv: list[str] | None = None) -> dict[str, Any]:
    """`tpo-hf eval [--config FILE.yaml] [--flag value ...]`."""
    (config,) = make_parser().parse_args_and_config(args=argv)
    results = main(config)
    print((Path(config.output_dir) / "results.md").read_text())
    return results


if __name__ == "__main__":
    cli_main()
