"""`tpo-hf quickstart`: the whole loop on a built-in tiny default, offline, in one command.

1. write a small synthetic video corpus whose content is known (coloured shapes moving, scene by scene);
2. build the tiny default video-LMM (`tpo_hf.tiny`) and save it like a Hub model;
3. build TPO preference pairs over the corpus;
4. train TPO (LoRA) with `TPOTrainer`;
5. save the adapter and processor, and print where everything is.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .synthetic import COLOURS, Scene, write_synthetic_video
from .tiny import DEFAULT_TINY_FAMILY, TINY_BUILDERS, save_tiny_model


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


def known_content_pairs(corpus: list[dict], seconds: float) -> list[dict]:
    """Preference pairs whose preferred answer is what the video shows and whose dis-preferred answer is what a
    model sees without the relevant moment (the other scene), at both TPO granularities."""
    rows = []
    for item in corpus:
        (first, second), split = item["scenes"], item["split"]
        describe = lambda scene: f"A {scene['colour']} {scene['shape']} moving {scene['direction']}."  # noqa: E731
        rows.append(
            {
                "prompt": f"What is shown between {0.0:.1f} and {split:.1f} seconds?",
                "chosen": describe(first),
                "rejected": describe(second),
                "video": item["video"],
                "granularity": "localized",
                "segment_start": 0.0,
                "segment_end": split,
            }
        )
        rows.append(
            {
                "prompt": "Describe the video from start to end.",
                "chosen": f"First a {first['colour']} {first['shape']}, then a {second['colour']} {second['shape']}.",
                "rejected": f"A {second['colour']} {second['shape']} moves.",
                "video": item["video"],
                "granularity": "comprehensive",
                "segment_start": None,
                "segment_end": None,
            }
        )
    return rows


def main(config: QuickstartConfig) -> dict[str, str]:
    from datasets import Dataset
    from peft import LoraConfig

    from .config import TPOConfig
    from .processing import VideoPreferenceProcessor
    from .trainer import TPOTrainer

    output_dir = Path(config.output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    progress = _Progress(total=4)

    progress.stage(f"Writing {config.num_videos} synthetic videos with known content")
    video_dir = output_dir / "videos"
    corpus = write_corpus(video_dir, config.num_videos, config.video_seconds, config.seed)
    (video_dir / "content.json").write_text(json.dumps(corpus, indent=2))

    progress.stage(f"Building the tiny {config.family} model")
    model_dir = save_tiny_model(output_dir / "base-model", config.family, seed=config.seed)

    progress.stage("Building TPO preference pairs (localized + comprehensive)")
    dataset = Dataset.from_list(known_content_pairs(corpus, config.video_seconds))
    dataset_dir = output_dir / "dataset"
    dataset.save_to_disk(str(dataset_dir))

    progress.stage(f"Training TPO (LoRA, {config.max_steps} steps)")
    processor = VideoPreferenceProcessor.from_pretrained(
        model_dir, num_frames=config.num_frames, video_root=str(video_dir)
    )
    adapter_dir = output_dir / "adapter"
    args = TPOConfig(
        str(adapter_dir),
        num_frames=config.num_frames,
        video_root=str(video_dir),
        per_device_train_batch_size=2,
        max_steps=config.max_steps,
        learning_rate=5e-4,
        logging_steps=1,
        bf16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        save_strategy="no",
        report_to=[],
        seed=config.seed,
        dataloader_pin_memory=False,
    )
    trainer = TPOTrainer(
        str(model_dir),
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        peft_config=LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0),
    )
    result = trainer.train()
    trainer.save_model(str(adapter_dir))

    artifacts = {
        "videos": str(video_dir),
        "base model": str(model_dir),
        "dataset": str(dataset_dir),
        "adapter": str(adapter_dir),
    }
    print(f"\nTPO quickstart done in {time.time() - progress.start:.0f}s: final train loss {result.training_loss:.4f}")
    width = max(len(name) for name in artifacts)
    print(f"{'artifact':<{width}}  path\n{'-' * width}  {'-' * 40}")
    for name, path in artifacts.items():
        print(f"{name:<{width}}  {path}")
    return artifacts


def cli_main(argv: list[str] | None = None) -> None:
    from trl import TrlParser

    (config,) = TrlParser((QuickstartConfig,)).parse_args_and_config(args=argv)
    main(config)


if __name__ == "__main__":
    cli_main()
