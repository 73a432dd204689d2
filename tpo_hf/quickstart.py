"""`tpo-hf quickstart`: the whole loop on a built-in tiny default, offline, in one command.

1. write a small synthetic video corpus whose content is known (coloured shapes moving, scene by scene);
2. build the tiny default video-LMM (`tpo_hf.tiny`) and save it like a Hub model;
3. curate TPO preference pairs with that model (`tpo_hf.curation`), saved with their dataset card;
4. train TPO (LoRA) with `TPOTrainer`; the adapter is saved with its model card and training curves;
5. evaluate base vs. TPO on multiple-choice questions about the corpus and on V-NIAH (`tpo_hf.eval`);
6. write the model card with the evaluation results and the Gradio Space folder (`tpo_hf.hub`);
7. print a summary with where everything is.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .synthetic import COLOURS, Scene, write_synthetic_video
from .tiny import DEFAULT_TINY_FAMILY, TINY_BUILDERS, save_tiny_model, tiny_tpo_config


@dataclass
class QuickstartConfig:
    """Settings of the quickstart run (all have working defaults)."""

    output_dir: str = field(default="tpo-quickstart", metadata={"help": "Where every artifact is written."})
    family: str = field(
        default=DEFAULT_TINY_FAMILY, metadata={"help": f"Tiny model family: {', '.join(sorted(TINY_BUILDERS))}."}
    )
    num_videos: int = field(default=6, metadata={"help": "Synthetic videos in the corpus."})
    video_seconds: float = field(default=8.0, metadata={"help": "Length of each synthetic video."})
    num_frames: int = field(default=8, metadata={"help": "Frames per video for training."})
    max_steps: int = field(default=12, metadata={"help": "Training steps."})
    seed: int = field(default=0, metadata={"help": "Seed for the corpus, the model and training."})


class _Progress:
    """Numbered stage banners with timings, so a user sees where the run is."""

    def __init__(self, total: int):
        self.total, self.index, self.start = total, 0, time.time()

    def stage(self, title: str) -> None:
        self.index += 1
        print(f"\n[{self.index}/{self.total}] {title}  (+{time.time() - self.start:.0f}s)", flush=True)


def write_corpus(folder: Path, num_videos: int, seconds: float, seed: int) -> list[dict]:
    """Writes synthetic videos of two scenes each; returns their known content."""
    rng = random.Random(seed)
    colours = sorted(COLOURS)
    corpus = []
    for index in range(num_videos):
        first, second = rng.sample(colours, 2)
        split = round(rng.uniform(0.35, 0.65) * seconds, 1)
        scenes = [
            Scene(split, first, rng.choice(["square", "circle"]), "right"),
            Scene(seconds - split, second, rng.choice(["square", "circle"]), "left"),
        ]
        name = f"video_{index:03d}.mp4"
        write_synthetic_video(folder / name, scenes, fps=8)
        corpus.append({"video": name, "scenes": [asdict(scene) for scene in scenes], "split": split})
    return corpus


def known_content_mcq(corpus: list[dict]) -> list[dict]:
    """Multiple-choice questions in the Video-MME schema whose answers the synthetic videos show."""
    rows = []
    colours = sorted(COLOURS)
    for index, item in enumerate(corpus):
        first, second = item["scenes"]
        for position, (scene, when) in enumerate(((first, "at the start"), (second, "at the end"))):
            rng = random.Random(f"{item['video']}:{position}")
            options = [scene["colour"], *rng.sample([c for c in colours if c != scene["colour"]], 3)]
            rng.shuffle(options)
            letter = "ABCD"[options.index(scene["colour"])]
            rows.append(
                {
                    "video_id": f"{index:03d}",
                    "videoID": Path(item["video"]).stem,
                    "question_id": f"{index:03d}-{position}",
                    "duration": "short",
                    "domain": "Synthetic",
                    "sub_category": "Colours",
                    "task_type": "Temporal Perception" if position else "Object Recognition",
                    "question": f"What colour is the moving shape {when} of the video?",
                    "options": [f"{'ABCD'[i]}. {option}" for i, option in enumerate(options)],
                    "answer": letter,
                }
            )
    return rows


def main(config: QuickstartConfig) -> dict[str, str]:
    from datasets import Dataset

    from .curation.config import CurationConfig
    from .curation.run import run_curation
    from .data import default_video_root, load_preference_dataset
    from .eval.benchmarks import get_benchmark
    from .eval.config import EvalConfig
    from .eval.results import eval_results
    from .eval.run import evaluate
    from .hub.space import write_space

    output_dir = Path(config.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    progress = _Progress(total=7)

    progress.stage(f"Writing {config.num_videos} synthetic videos with known content")
    video_dir = output_dir / "videos"
    corpus = write_corpus(video_dir, config.num_videos, config.video_seconds, config.seed)
    (output_dir / "corpus.json").write_text(json.dumps(corpus, indent=2))
    # Known captions and whole-video questions, the way existing annotations enter curation
    annotations = [
        {
            "video": item["video"],
            "caption": " ".join(
                f"A {s['colour']} {s['shape']} moves {s['direction']} for {s['seconds']:.1f} seconds."
                for s in item["scenes"]
            ),
            "question": "Describe the video from start to end.",
        }
        for item in corpus
    ]
    annotations_file = output_dir / "annotations.jsonl"
    Dataset.from_list(annotations).to_json(str(annotations_file))

    progress.stage(f"Building the tiny {config.family} model")
    model_dir = save_tiny_model(output_dir / "base-model", config.family, seed=config.seed)

    progress.stage("Curating TPO pairs: localized (segment vs. video without it) + comprehensive (dense vs. sparse)")
    dataset_dir = output_dir / "dataset"
    curation = run_curation(
        CurationConfig(
            dataset_name=str(annotations_file),
            video_root=str(video_dir),
            caption_column="caption",
            question_column="question",
            video_model=str(model_dir),
            # A random tiny model writes no usable questions or verdicts: localized questions come from the
            # task templates and the judge is off. With real models, leave both to the LLMs.
            question_backend="template",
            use_judge=False,
            output_dir=str(dataset_dir),
            num_frames=config.num_frames,
            sparse_num_frames=2,
            segment_fraction=0.3,
            caption_max_new_tokens=12,
            answer_max_new_tokens=12,
            batch_size=4,
            dtype="float32",
            device="cpu",
            seed=config.seed,
            license="apache-2.0",
            pretty_name="TPO quickstart pairs",
        )
    )
    final = curation.report["final"] if curation is not None else {}
    counts = ", ".join(f"{count} {name}" for name, count in final.get("by_granularity", {}).items())

    progress.stage(f"Training TPO (LoRA, {config.max_steps} steps)")
    adapter_dir = output_dir / "adapter"
    trainer = _train(
        config, model_dir, load_preference_dataset(str(dataset_dir)), default_video_root(str(dataset_dir)), adapter_dir
    )

    progress.stage("Evaluating base vs. TPO: multiple choice + video needle-in-a-haystack")
    mcq_file = output_dir / "eval_questions.jsonl"
    Dataset.from_list(known_content_mcq(corpus)).to_json(str(mcq_file))
    eval_dir = output_dir / "eval"
    results = evaluate(
        EvalConfig(
            model_name_or_path=str(model_dir),
            adapter_path=str(adapter_dir),
            benchmark="videomme",
            dataset_name=str(mcq_file),
            video_dir=str(video_dir),
            num_frames=config.num_frames,
            batch_size=4,
            max_new_tokens=4,
            vniah=True,
            vniah_haystack_dir=str(video_dir),
            vniah_lengths=[16, 32],
            vniah_depths=[0.0, 0.5, 1.0],
            vniah_fps=8,
            dtype="float32",
            device="cpu",
            output_dir=str(eval_dir),
        )
    )

    progress.stage("Writing the model card (with evaluation results) and the Space folder")
    # The questions use Video-MME's schema but are about the synthetic corpus: say so in the model-index
    evaluations = eval_results(results, model_tag="tpo")
    for evaluation in evaluations:
        if evaluation.dataset_type == get_benchmark("videomme").hub_id:
            evaluation.dataset_type, evaluation.dataset_name = "tpo-hf/quickstart-mcq", "Quickstart colour questions"
    trainer.create_model_card(
        model_name="tpo-quickstart",
        dataset_name=str(dataset_dir),
        eval_results=evaluations,
        output_dir=str(adapter_dir),
    )
    space_dir = write_space(
        output_dir / "space",
        adapter=str(adapter_dir),
        base_model=str(model_dir),
        num_frames=config.num_frames,
        max_new_tokens=16,
        examples=[str(video_dir / corpus[0]["video"])],
    )

    progress.stage("Summary")
    summary = _accuracy_lines(results)
    artifacts = {
        "videos": str(video_dir),
        "base model": str(model_dir),
        "dataset + card": f"{dataset_dir}  ({counts} pairs; README.md, curation_report.json)",
        "adapter + card": f"{adapter_dir}  (README.md, training curves PNG)",
        "evaluation": f"{eval_dir}  (results.md, vniah_heatmap.png)",
        "space": f"{space_dir}  (tpo-hf space --adapter {adapter_dir} --local)",
    }
    print(
        f"\nTPO quickstart done in {time.time() - progress.start:.0f}s (a random tiny model: the numbers show the "
        "mechanics, not quality)"
    )
    for line in summary:
        print(line)
    width = max(len(name) for name in artifacts)
    print(f"\n{'artifact':<{width}}  where\n{'-' * width}  {'-' * 60}")
    for name, path in artifacts.items():
        print(f"{name:<{width}}  {path}")
    return {name: path.split("  (")[0] for name, path in artifacts.items()}


def _train(config: QuickstartConfig, model_dir: Path, dataset, video_root: str | None, adapter_dir: Path):
    from peft import LoraConfig

    from .processing import VideoPreferenceProcessor
    from .trainer import TPOTrainer

    processor = VideoPreferenceProcessor.from_pretrained(
        model_dir, num_frames=config.num_frames, video_root=video_root
    )
    args = tiny_tpo_config(
        adapter_dir,
        num_frames=config.num_frames,
        video_root=video_root,
        max_steps=config.max_steps,
        learning_rate=5e-4,
        seed=config.seed,
    )
    trainer = TPOTrainer(
        str(model_dir),
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0),
    )
    trainer.train()
    trainer.save_model(str(adapter_dir))
    return trainer


def _accuracy_lines(results: dict) -> list[str]:
    """One line per benchmark and model: accuracy and how many replies named no option."""
    sections = [(b.get("pretty_name", n), b["models"]) for n, b in results.get("benchmarks", {}).items()]
    if "vniah" in results:
        sections.append(("V-NIAH", results["vniah"]["summary"]["models"]))
    lines = []
    for name, models in sections:
        scores = ", ".join(
            f"{tag} {s['accuracy']:.1%} ({s['unparseable']}/{s['total']} replies unparseable)"
            for tag, s in models.items()
        )
        lines.append(f"{name} accuracy: {scores}")
    return lines


def cli_main(argv: list[str] | None = None) -> None:
    from trl import TrlParser

    (config,) = TrlParser((QuickstartConfig,)).parse_args_and_config(args=argv)
    main(config)


if __name__ == "__main__":
    cli_main()
