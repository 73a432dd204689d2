"""`tpo-hf quickstart`: the whole TPO loop on the synthetic temporal world, offline, in one command (a few minutes on
2 CPU cores), with a model that really gets better.

1. load the world's pretrained base video-LMM (`tpo_hf.world`, shipped with tpo-hf): good on short clips, worse on
   long videos;
2. write a training corpus of world videos (2-9 scenes) and a held-out set of videos and questions it never sees;
3. curate TPO pairs with the base model (`tpo_hf.curation`: it captions and answers; the world's question writer and
   timeline judge fill the LLM roles), plus anchor rows (answers the judge found right where no pair can be made),
   saved with their dataset card;
4. train TPO (LoRA) with `TPOTrainer`; the adapter is saved with its model card and training curves;
5. evaluate base vs. TPO on the held-out questions and on V-NIAH (`tpo_hf.eval`, one run, adapter on and off);
6. write the model card with the evaluation results and the Gradio Space folder (`tpo_hf.hub`);
7. print a summary with the accuracies and where everything is.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import run_cli


@dataclass
class QuickstartConfig:
    """Settings of the quickstart run (all have working defaults)."""

    output_dir: str = field(default="tpo-quickstart", metadata={"help": "Where every artifact is written."})
    # comprehensive pairs are the scarce side once chosen options are balanced (a video gives at most one "first",
    # one "last" and a few "which comes first"), so more videos with fewer localized segments each (the experiment
    # asks 3; localized pairs are plentiful and each costs a caption), at about the same curation time
    train_videos: int = field(default=800, metadata={"help": "World videos (2-9 scenes) to curate pairs from."})
    localized_per_video: int = field(default=2, metadata={"help": "Localized segments asked about per video."})
    pairs: int = field(default=600, metadata={"help": "Preference pairs to train on (localized:comprehensive 5:5)."})
    max_steps: int = field(default=100, metadata={"help": "Training steps."})
    eval_videos_per_length: int = field(default=20, metadata={"help": "Held-out videos per length (scene count)."})
    seed: int = field(default=0, metadata={"help": "Seed of the corpus, the curation and training."})
    verbose: bool = field(
        default=False,
        metadata={"help": "Show everything on the terminal (trainer logs, warnings, every progress bar)."},
    )

    def __post_init__(self):
        # checked before the corpus is written and curated (minutes), not when training meets `max_steps: 0`
        counts = ("train_videos", "localized_per_video", "pairs", "max_steps", "eval_videos_per_length")
        wrong = [f"{name}={getattr(self, name)}" for name in counts if getattr(self, name) < 1]
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: each of {', '.join(counts)} must be 1 or more.")


# loggers of the libraries the loop runs through: their records go to the log file unless --verbose
LIBRARY_LOGGERS = ("transformers", "datasets", "trl", "peft", "accelerate", "huggingface_hub", "tpo_hf", "py.warnings")


class _Console:
    """One line per stage on the terminal, with the stage's own progress bar (curation shards, training steps,
    evaluation answers); everything else the libraries print (trainer log dicts, warnings, log records, dataset
    bars) goes to `log_path`, whose path the summary prints. `verbose` leaves the terminal as the libraries use it."""

    def __init__(self, total: int, log_path: Path, verbose: bool):
        self.total, self.index, self.start = total, 0, time.time()
        self.log_path, self.verbose = log_path, verbose
        self.terminal = sys.stdout

    def __enter__(self) -> _Console:
        if self.verbose:
            return self
        import logging

        import datasets
        import huggingface_hub

        self._exit = contextlib.ExitStack()
        log = self._exit.enter_context(open(self.log_path, "a", encoding="utf-8"))
        self._exit.enter_context(contextlib.redirect_stdout(log))  # prints: curation tables, trainer log dicts
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        saved = {name: logging.getLogger(name) for name in LIBRARY_LOGGERS}
        state = {name: (logger.handlers[:], logger.propagate) for name, logger in saved.items()}
        for logger in saved.values():
            logger.handlers, logger.propagate = [handler], False
        logging.captureWarnings(True)  # warnings become records of `py.warnings`, which writes to the log
        datasets.disable_progress_bars()
        huggingface_hub.utils.disable_progress_bars()

        def restore() -> None:
            logging.captureWarnings(False)
            for name, logger in saved.items():
                logger.handlers, logger.propagate = state[name]
            datasets.enable_progress_bars()
            huggingface_hub.utils.enable_progress_bars()

        self._exit.callback(restore)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        if not self.verbose:
            self._exit.close()

    def print(self, text: str = "") -> None:
        print(text, file=self.terminal, flush=True)

    def stage(self, title: str) -> None:
        self.index += 1
        self.print(f"[{self.index}/{self.total}] {title}  (+{time.time() - self.start:.0f}s)")

    def step_bar(self, total: int):
        """A `TrainerCallback` drawing one bar of training steps on the terminal (the trainer's own bar is off)."""
        from tqdm.auto import tqdm
        from transformers import TrainerCallback

        class StepBar(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                self.bar = tqdm(total=total, desc="train", unit="step", file=sys.stderr)

            def on_step_end(self, args, state, control, **kwargs):
                self.bar.update(1)

            def on_train_end(self, args, state, control, **kwargs):
                self.bar.close()

        return StepBar()


def experiment_config(config: QuickstartConfig):
    """The quickstart as a one-seed, one-arm run of the method-validity experiment (`tpo_hf.world.experiment`)."""
    from ..world.experiment import ExperimentConfig

    return ExperimentConfig(
        out_dir=str(Path(config.output_dir).resolve()),
        seeds=[config.seed],
        arms=["tpo_5_5"],
        train_videos=config.train_videos,
        localized_per_video=config.localized_per_video,
        pairs_per_arm=config.pairs,
        max_steps=config.max_steps,
        eval_scene_counts=[2, 3, 6, 7, 8, 9],
        eval_videos_per_count=config.eval_videos_per_length,
        eval_short_videos_per_count=config.eval_videos_per_length,
        vniah_lengths=[4, 8, 16],
        vniah_depths=[0.0, 0.5, 1.0],
    )


def main(config: QuickstartConfig) -> dict[str, str]:
    import torch

    from ..eval.results import eval_results
    from ..eval.run import evaluate
    from ..hub.space import write_space
    from ..world.base import world_base_model
    from ..world.experiment import curate, eval_sets, heldout_eval_config, pairs_dir, train

    torch.set_num_threads(1)  # one thread is the fastest layout for a model this small on a 2-core machine
    experiment = experiment_config(config)
    output_dir = Path(experiment.out_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    seed_dir = output_dir / f"seed-{config.seed}"
    log_path = output_dir / "quickstart.log"
    with _Console(total=6, log_path=log_path, verbose=config.verbose) as console:
        console.stage("Loading the world's pretrained base video-LMM (short clips good, long videos worse)")
        base_model = str(world_base_model())

        console.stage(
            f"Writing {config.train_videos} training videos ({experiment.train_min_scenes}-"
            f"{experiment.train_max_scenes} scenes) and the held-out videos + questions"
        )
        video_dir, questions = eval_sets(experiment)

        console.stage(
            "Curating TPO pairs with the base model: localized (segment vs. video without it) + comprehensive"
        )
        curated = curate(experiment, config.seed, base_model, progress=True)
        report = curated["reports"]["5:5"]
        dataset_dir = pairs_dir(seed_dir, "5:5")

        final = report["final"]
        rows = f"{final['total'] - final['anchors']} pairs + {final['anchors']} anchor rows"
        console.stage(f"Training TPO (LoRA, {config.max_steps} steps on {rows})")
        trainer = train(experiment, config.seed, "tpo_5_5", base_model, callbacks=[console.step_bar(config.max_steps)])
        adapter_dir = seed_dir / "adapters" / "tpo_5_5"

        console.stage("Evaluating base vs. TPO on held-out questions + video needle-in-a-haystack")
        eval_dir = output_dir / "eval"
        eval_config = heldout_eval_config(experiment, base_model, str(adapter_dir), eval_dir, compare_base=True)
        eval_config.progress = True
        results = evaluate(eval_config)

        console.stage("Writing the model card (with evaluation results) and the Space folder")
        trainer.create_model_card(
            model_name="tpo-hf-world-quickstart",
            dataset_name=str(dataset_dir),
            eval_results=eval_results(results, model_tag="tpo"),
            output_dir=str(adapter_dir),
        )
        space_dir = write_space(
            output_dir / "space",
            adapter=str(adapter_dir),
            base_model=base_model,
            max_new_tokens=8,
            examples=[str(next(video_dir.glob("eval9-*.mp4")))],
        )

        artifacts = {
            "base model": base_model,
            "held-out set": f"{questions}  ({video_dir})",
            "dataset + card": f"{dataset_dir}  ({rows}; README.md, curation_report.json)",
            "adapter + card": f"{adapter_dir}  (README.md, training curves PNG)",
            "evaluation": f"{eval_dir}  (results.md, vniah_heatmap.png)",
            "space": f"{space_dir}  (tpo-hf space --adapter {adapter_dir} --local)",
        }
        if not config.verbose:
            artifacts["log"] = f"{log_path}  (trainer logs, warnings; --verbose shows them here)"
        console.print(f"\nTPO quickstart done in {time.time() - console.start:.0f}s")
        for line in accuracy_lines(results, experiment.long_min_scenes):
            console.print(line)
        console.print(paired_line(eval_dir / "samples_tpo_world.jsonl", experiment.long_min_scenes))
        width = max(len(name) for name in artifacts)
        console.print(f"\n{'artifact':<{width}}  where\n{'-' * width}  {'-' * 60}")
        for name, path in artifacts.items():
            console.print(f"{name:<{width}}  {path}")
    return {name: path.split("  (")[0] for name, path in artifacts.items()}


def paired_line(samples_file: Path, long_min_scenes: int = 6) -> str:
    """TPO minus base on the same held-out questions, with the experiment's 95% interval (held-out videos
    resampled): how much of a change this small question set can tell from none."""
    from ..world.experiment import read_samples
    from ..world.report import paired_differences

    runs = [
        {"arm": arm, "seed": 0, "samples": read_samples(samples_file, tag)}
        for arm, tag in (("base", "base"), ("tpo_5_5", "tpo"))
    ]
    paired = paired_differences(runs, long_min_scenes)["tpo_5_5 - base"]
    cells = [
        f"{label} {d['diff']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}] ({d['questions']} questions)"
        for label, d in (("long videos", paired["long_videos"]), ("short clips", paired["short_clips"]))
    ]
    return "TPO - base, same questions, points [95% interval, held-out videos resampled]: " + "; ".join(cells)


def _pooled(groups: list[dict]) -> dict:
    correct, total = sum(g["correct"] for g in groups), sum(g["total"] for g in groups)
    unparseable = sum(g["unparseable"] for g in groups)
    return {"accuracy": 100.0 * correct / total if total else 0.0, "total": total, "unparseable": unparseable}


def accuracy_lines(results: dict, long_min_scenes: int = 6) -> list[str]:
    """Accuracy (already in percent) and unparseable replies per model: per benchmark, per question type, and for
    long videos (at least `long_min_scenes` scenes) vs. short clips (2-3 scenes) when the questions say so."""
    from ..world.report import SHORT_CLIP_MAX_SCENES

    sections = []
    for name, benchmark in results.get("benchmarks", {}).items():
        sections.append((benchmark.get("pretty_name", name), benchmark["models"]))
        by = {tag: model.get("by", {}) for tag, model in benchmark["models"].items()}
        for value in sorted(next(iter(by.values()), {}).get("type", {})):
            sections.append((f"  {value} questions", {tag: b["type"][value] for tag, b in by.items()}))
        if "scenes" in next(iter(by.values()), {}):
            for label, keep in (
                (f"long videos ({long_min_scenes}+ scenes)", lambda n: n >= long_min_scenes),
                (f"short clips (2-{SHORT_CLIP_MAX_SCENES} scenes)", lambda n: n <= SHORT_CLIP_MAX_SCENES),
            ):
                pooled = {tag: _pooled([g for n, g in b["scenes"].items() if keep(int(n))]) for tag, b in by.items()}
                sections.append((f"  {label}", pooled))
    if "vniah" in results:
        sections.append(("V-NIAH", results["vniah"]["summary"]["models"]))
    lines = []
    for name, models in sections:
        scores = " -> ".join(
            f"{tag} {s['accuracy']:.1f}% ({s['unparseable']}/{s['total']} unparseable)" for tag, s in models.items()
        )
        lines.append(f"{name} accuracy: {scores}")
    return lines


def cli_main(argv: list[str] | None = None) -> None:
    run_cli("quickstart", make_parser, main, argv)


def make_parser():
    from trl import TrlParser

    return TrlParser((QuickstartConfig,))


if __name__ == "__main__":
    cli_main()
