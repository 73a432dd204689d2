"""The method-validity experiment: does TPO make the world's base model better on long videos, and why?

For every seed: write a training corpus of 2-9-scene videos, curate pairs with the real pipeline (the base model
captions and answers, the world's question writer and timeline judge fill the LLM roles), then train one model per
arm from the same pool of pairs and score every arm on the same held-out questions with `tpo_hf.eval`:

- base: the pretrained model, untouched;
- sft_self: SFT on the chosen answers of the 5:5 set (the paper's SFT_self);
- localized_only / comprehensive_only: the TPO objective on one granularity;
- tpo_5_5 (the paper's mix), tpo_1_9, tpo_9_1;
- controls against TPO 5:5 on the same rows and steps (`tpo_hf.world.controls`): dpo_only (no SFT term, anchors
  dropped), sft_oracle (SFT on the timeline's answers to the same candidates, not filtered by the base; the paper's
  SFT_LLM), tpo_random_rejected (a random wrong option as the rejected answer).

Every arm gets the same number of pairs and steps. Arms run in parallel processes with one torch thread each,
which is the fastest layout on a 2-core machine. With `self_training_rounds` > 1 every trained arm self-trains:
each further round merges the arm's adapter into its model, curates a fresh corpus with that model (the round's own
split of videos) and trains the merged model again on it, as the paper's self-training would be iterated.

The scoring and the report (accuracies, paired differences, results.md, figures) live in `tpo_hf.world.report`.
Over 500 lines: the config and its arms, the pieces each worker runs (curate, train, evaluate, probe) and the
orchestration that writes results.json stay together, one experiment's runs.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..curation.config import CurationConfig
from ..curation.mixing import chosen_option
from ..eval.answers import split_mcq_prompt
from .controls import CONTROL_DATA, control_dir, derive
from .corpus import CorpusSpec, corpus_videos, eval_rows, eval_samples, write_corpus, write_curation_inputs
from .questions import COMPREHENSIVE_KINDS, LOCALIZED_KINDS, match_question
from .report import (
    SHORT_CLIP_MAX_SCENES,
    accuracies,
    chance,
    chance_by_kind,
    markdown,
    order_errors_by_option,
    paired_differences,
    plot,
    summarize,
)
from .timeline import FPS, NEEDLE_SHAPE, Layout, WorldVideo, read_timeline, write_world_video

logger = logging.getLogger(__name__)

# arm -> (localized:comprehensive mix of its pairs, TRL loss types; TPOConfig adds the SFT term at `sft_weight` to
# the pair loss); None = the untouched base
ARMS: dict[str, tuple[str, list[str]] | None] = {
    "base": None,
    "sft_self": ("5:5", ["sft"]),
    "localized_only": ("10:0", ["sigmoid"]),
    "comprehensive_only": ("0:10", ["sigmoid"]),
    "tpo_5_5": ("5:5", ["sigmoid"]),
    "tpo_1_9": ("1:9", ["sigmoid"]),
    "tpo_9_1": ("9:1", ["sigmoid"]),
    # controls (`controls.CONTROL_DATA`: their rows are derived from the 5:5 set)
    "dpo_only": ("5:5", ["sigmoid"]),
    "sft_oracle": ("5:5", ["sft"]),
    "tpo_random_rejected": ("5:5", ["sigmoid"]),
}
# the SFT term's weight where it is not `sft_weight` (SFT-only arms train it at 1; dpo_only not at all)
ARM_SFT_WEIGHT = {"sft_self": 1.0, "sft_oracle": 1.0, "dpo_only": 0.0}
# the arms a run trains by default: the mix ablations 1:9 and 9:1 are left to `--arms` to keep a run under an hour
DEFAULT_ARMS = [
    "base",
    "sft_self",
    "sft_oracle",
    "dpo_only",
    "tpo_random_rejected",
    "localized_only",
    "comprehensive_only",
    "tpo_5_5",
]
# the shortcut-free held-out layout the experiment's script uses (`benchmarks/method_validity.py`): scenes of 1-2
# frames, 0-2 blank frames before and after, timestamps starting at a random second (the last below 30)
SHORTCUT_FREE = {"heldout_max_scene_frames": 2, "heldout_max_blank_frames": 2, "heldout_max_timestamp": 30}


@dataclass
class ExperimentConfig:
    """Sizes and settings of one experiment run (`benchmarks/method_validity.py` flags map onto these)."""

    out_dir: str = "method-validity"
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    arms: list[str] = field(default_factory=lambda: list(DEFAULT_ARMS))
    base_model: str | None = None  # default: the world base shipped with tpo-hf (built on first use if absent)
    # without `base_model`: pretrain the base on the held-out layout (`base_pretraining`: scenes of 1-2 frames, blank
    # frames, random start seconds, as `tpo-hf world pretrain --max_scene_frames 2 --max_blank_frames 2
    # --max_timestamp 30 --format_version 2` does). With the held-out layout's default settings that base ships with
    # tpo-hf (`world.base.SHIPPED_HELDOUT_LAYOUT_BASE`); other layouts build once into tpo-hf's cache (~20-50 min)
    base_on_heldout_layout: bool = False
    workers: int = 2
    # training corpus: 2-9 scenes. Curating long videos only (6-9) made the DPO arms forget more on short clips
    # (dev seed 100: TPO 5:5 short clips 79.6% vs 83.0% with 2-9, long videos 59.0% vs 58.0%)
    train_videos: int = 1500  # enough that every mix, comprehensive-only included, fills `pairs_per_arm`
    train_min_scenes: int = 2
    train_max_scenes: int = 9
    needle_probability: float = 0.5
    # the training corpus's layout (`timeline.Layout`; windows always start at second 0: curation reads whole files)
    train_max_scene_frames: int = 1
    train_max_blank_frames: int = 0
    # curation
    localized_per_video: int = 3
    comprehensive_per_video: int = 3
    segment_seconds: float = 2.0
    sparse_num_frames: int = 3
    sparse_frame_fraction: float | None = None
    pairs_per_arm: int = 600
    # "which comes first" pairs whose chosen answer is the first-named option taught TPO to answer the first-named
    # option (dev seed 100, one-sided pair sets: 2-3-scene errors naming it 14 -> 77), so each option is chosen
    # equally often. It evens the pairs, not the whole lean: with balanced pairs TPO still leans to the first-named
    # option on most held-out seeds (benchmarks/results/method_validity/README.md, "What balancing did")
    balance_chosen_options: bool = True
    # Anchor rows, 0.5 per pair (300 with 600 pairs): whole-video questions the model answers the same from both
    # views (on 2-3-scene videos the views are the same frames, so those never make pairs), kept when the judge finds
    # the answer right, trained by the SFT term only. Comprehensive pairs all come from longer videos, and short-clip
    # "which comes first" is where TPO forgot (2-scene 100 -> 83-88% on dev seeds 100-103). Dev probes (dev question
    # set): 150 anchors from 2-3-scene videos with timeline answers standing in for judged ones put 2-scene "which
    # comes first" from 82.7 to 93.3 (dev seed 100) and 84.7 to 89.3 (dev seed 101), while 80 steps without anchors
    # (pairs seen as often) left it at 84.7; the real judged anchors, half of them from 4-9-scene videos, gave 86.7
    # at 0.25 per pair and 98.0 at 0.5 (short clips 87.4 / 87.2, base 86.3; long videos 58.0 / 59.0, 59.3 without)
    anchor_ratio: float = 0.5
    # training (LoRA on the language model)
    max_steps: int = 100
    batch_size: int = 16
    learning_rate: float = 1e-3
    beta: float = 0.3
    sft_weight: float = 0.5
    lora_r: int = 32
    # held-out evaluation: videos per scene count; long = at least `long_min_scenes`
    eval_scene_counts: list[int] = field(default_factory=lambda: [2, 3, 4, 5, 6, 7, 8, 9])
    eval_videos_per_count: int = 30
    # short clips (2-3 scenes) are the forgetting check: 30 videos each gave a 95% interval of about +-3.4 points on
    # a paired difference, too wide to tell a 1-2 point loss from none; 150 each narrow it about 2x (cheap: short)
    eval_short_videos_per_count: int = 150
    long_min_scenes: int = 6
    vniah_lengths: list[int] = field(default_factory=lambda: [4, 8, 12, 16])
    vniah_depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    # the held-out set: drawn per `heldout_seed` (0 with the plain layout: the set of every run before the ninth,
    # and the quickstart's); its layout (`timeline.Layout`; `SHORTCUT_FREE` is the experiment's); `heldout_exclude_seen`:
    # no held-out video equals (`WorldVideo.key`) a video of the seeds' training corpora or a clip the base was
    # pretrained on (impossible with the plain layout, where pretraining saw every short clip)
    heldout_seed: int = 0
    heldout_max_scene_frames: int = 1
    heldout_max_blank_frames: int = 0
    heldout_max_timestamp: int = 0
    heldout_exclude_seen: bool = False
    # probes of what a model reads (`tpo_hf.world.probes`), run on these arms (every seed of a trained arm)
    probes: list[str] = field(default_factory=list)
    probe_arms: list[str] = field(default_factory=lambda: ["base", "tpo_5_5"])
    # DPO reward margins / accuracies over training, on this many non-anchor rows of each arm's own training set
    # (TRL's evaluation every `reward_eval_steps` steps and before the first; 0: none, the quickstart's setting;
    # the experiment's script asks 64)
    reward_eval_rows: int = 0
    reward_eval_steps: int = 25
    # self-training rounds per trained arm (1: one curation with the base and one training). Each further round
    # curates a fresh corpus (split `train-round<k>`, same size and layout) with the arm's model of the round before
    # and trains it again with the same rows and steps; the held-out set excludes every round's corpus
    self_training_rounds: int = 1

    @property
    def heldout_layout(self) -> Layout:
        return Layout(self.heldout_max_scene_frames, self.heldout_max_blank_frames, self.heldout_max_timestamp)

    @property
    def train_layout(self) -> Layout:
        return Layout(self.train_max_scene_frames, self.train_max_blank_frames, 0)


# --- the pieces, each runnable in a worker process --------------------------------------------------------------
def base_pretraining(config: ExperimentConfig):
    """The `PretrainConfig` of the run's base when `base_model` is not given: the shipped base's, or with
    `base_on_heldout_layout` the same pretraining on the held-out layout (format 2: the documented video prompt)."""
    from .pretrain import PretrainConfig

    if not config.base_on_heldout_layout:
        return PretrainConfig()
    layout = config.heldout_layout
    return PretrainConfig(
        format_version=2,
        max_scene_frames=layout.max_scene_frames,
        max_blank_frames=layout.max_blank_frames,
        max_timestamp=layout.max_timestamp,
    )


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def curate(
    config: ExperimentConfig, seed: int, base_model: str, progress: bool = False, self_training_round: int = 1
) -> dict[str, Any]:
    """Writes the seed's training corpus (of `self_training_round`) and curates it once with `base_model`; each
    arm's pair set is then a re-mix of the same shards (mix and size are not part of the shard fingerprint, so
    nothing is generated again). `progress` shows curation's bar (the quickstart's)."""
    _single_thread()
    from ..curation.run import run_curation

    root = Path(config.out_dir) / f"seed-{seed}"
    corpus_dir = root / "corpus"
    videos = write_corpus(train_spec(config, seed, self_training_round), corpus_dir)
    inputs = write_curation_inputs(videos, root / "curation_inputs.jsonl", config.comprehensive_per_video, seed)
    reports = {}
    mixes = sorted({ARMS[arm][0] for arm in config.arms if ARMS.get(arm)})
    for mix in mixes:
        settings = curation_config(config, seed, base_model, root, inputs, mix)
        settings.progress = progress
        result = run_curation(settings)
        pairs = result.dataset.filter(lambda row: not row["anchor"])
        anchors = result.dataset.filter(lambda row: row["anchor"])
        reports[mix] = result.report
        reports[mix]["pairs_by_kind"] = pairs_by_kind(pairs)
        reports[mix]["pairs_by_scenes"] = pairs_by_scenes(pairs, corpus_dir)
        reports[mix]["chosen_options"] = chosen_options(pairs)
        reports[mix]["anchors_by_kind"] = pairs_by_kind(anchors)
        reports[mix]["anchors_by_scenes"] = pairs_by_scenes(anchors, corpus_dir)
    controls = {}
    if any(arm in CONTROL_DATA for arm in config.arms):
        controls = derive(root, pairs_dir(root, "5:5"), corpus_dir, seed)
    return {"seed": seed, "reports": reports, "controls": controls}


def train_spec(config: ExperimentConfig, seed: int, self_training_round: int = 1) -> CorpusSpec:
    """The seed's training corpus of a self-training round (round 1: the `train` split; round k: `train-round<k>`,
    other videos drawn with the same sizes and layout)."""
    return CorpusSpec(
        "train" if self_training_round == 1 else f"train-round{self_training_round}",
        config.train_videos,
        config.train_min_scenes,
        config.train_max_scenes,
        config.needle_probability,
        seed,
        config.train_layout,
    )


def curation_config(
    config: ExperimentConfig, seed: int, base_model: str, seed_root: Path, inputs: Path, mix: str
) -> CurationConfig:
    """The `tpo-hf curate` settings of one seed's pair set `mix`: the base captions and answers, the world's question
    writer and timeline judge fill the LLM roles, shards shared by every mix of the seed (`curation-shards/`)."""
    return CurationConfig(
        dataset_name=str(inputs),
        video_root=str(seed_root / "corpus"),
        caption_column="caption",
        question_column="question",
        answer_column="answer",
        video_model=base_model,
        question_backend="world_questions",
        judge_backend="world_judge",
        num_frames=None,
        video_fps=FPS,  # every frame: the world's videos show one frame per second
        sparse_num_frames=config.sparse_num_frames,
        sparse_frame_fraction=config.sparse_frame_fraction,
        segment_seconds=config.segment_seconds,
        segment_min_seconds=1.0,
        localized_per_video=config.localized_per_video,
        caption_max_new_tokens=40,
        answer_max_new_tokens=4,
        batch_size=32,
        dtype="float32",
        device="cpu",
        seed=seed,
        mix_ratio=mix,
        target_size=config.pairs_per_arm,
        balance_chosen_options=config.balance_chosen_options,
        anchor_ratio=config.anchor_ratio,
        work_dir=str(seed_root / "curation-shards"),
        output_dir=str(pairs_dir(seed_root, mix)),
        copy_videos=False,
        progress=False,
    )


def check_equal_pair_counts(config: ExperimentConfig, curated: list[dict[str, Any]]) -> None:
    """Every trained arm must get `pairs_per_arm` pairs (and its `anchor_ratio` share of anchors), or arms differ in
    data as well as in objective. A mix can fall short when one granularity's pool is small (comprehensive pairs need
    videos long enough that sparse and dense frames differ); the fix is a larger corpus, not a smaller arm."""
    short = []
    for c in curated:
        for arm in config.arms:
            if not ARMS.get(arm):  # the base trains on nothing
                continue
            mix = ARMS[arm][0]
            if arm in CONTROL_DATA:  # derived from the 5:5 set, checked there
                continue
            final = c["reports"][mix]["final"]
            anchors = final.get("anchors", 0)
            pairs = final["total"] - anchors
            if pairs < config.pairs_per_arm:
                short.append(f"seed {c['seed']}, {arm} (mix {mix}): {pairs} pairs")
            if anchors < round(config.anchor_ratio * config.pairs_per_arm):
                short.append(f"seed {c['seed']}, {arm} (mix {mix}): {anchors} anchors")
    if short:
        raise ValueError(
            f"arms must train on equal pair counts (pairs_per_arm={config.pairs_per_arm}), but curation gave fewer for "
            + "; ".join(short)
            + ". Raise train_videos (or comprehensive_per_video) so every granularity's pool holds enough pairs "
            "(and anchors)."
        )


def pairs_dir(seed_root: str | Path, mix: str) -> Path:
    """Where a seed's pair set of `mix` ("5:5") is saved (`pairs-5_5`), for curation to write and training to read."""
    return Path(seed_root) / f"pairs-{mix.replace(':', '_')}"


def pairs_by_kind(pairs: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """How many curated pairs (rows of the saved pair set) of each granularity ask each question kind."""
    counts: dict[str, dict[str, int]] = {}
    for row in pairs:
        matched = match_question(split_mcq_prompt(row["prompt"])[0])  # read the way the judge reads it
        kind = matched[0] if matched else "other"
        by_kind = counts.setdefault(row["granularity"], {})
        by_kind[kind] = by_kind.get(kind, 0) + 1
    return counts


def chosen_options(pairs: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """How often each option letter is the chosen answer, per number of options ("2": the "which comes first" pairs,
    where A is the shape the question names first): whether the pairs lean to one option."""
    counts: dict[str, dict[str, int]] = {}
    for row in pairs:
        found = chosen_option(row)
        if found is not None:
            by_letter = counts.setdefault(str(found[0]), {})
            by_letter[found[1]] = by_letter.get(found[1], 0) + 1
    return {n: dict(sorted(by_letter.items())) for n, by_letter in sorted(counts.items())}


def pairs_by_scenes(pairs: Iterable[dict[str, Any]], corpus_dir: str | Path) -> dict[int, int]:
    """How many curated pairs come from videos of each scene count (needles not counted, as in the held-out split):
    the short clips' share says whether training still sees what the forgetting check asks about."""
    counts: dict[int, int] = {}
    for row in pairs:
        scenes = len(read_timeline(Path(corpus_dir) / Path(row["video"]).name).events)
        counts[scenes] = counts.get(scenes, 0) + 1
    return dict(sorted(counts.items()))


def train_arm(config: ExperimentConfig, seed: int, arm: str, base_model: str) -> str:
    """Trains one arm (unless its adapter exists) and returns the adapter folder."""
    _single_thread()
    adapter_dir = Path(config.out_dir) / f"seed-{seed}" / "adapters" / arm
    if not (adapter_dir / "adapter_model.safetensors").is_file():
        train(config, seed, arm, base_model)
    return str(adapter_dir)


def train(config: ExperimentConfig, seed: int, arm: str, base_model: str, callbacks: list | None = None):
    """Trains one arm on its pair set (LoRA on the language model), saves it and returns the `TPOTrainer`;
    `callbacks` are transformers `TrainerCallback`s (the quickstart's step bar)."""
    from peft import LoraConfig

    from ..data import load_preference_dataset
    from ..processing import VideoPreferenceProcessor
    from ..tiny import tiny_tpo_config
    from ..trainer import TPOTrainer

    mix, loss_type = ARMS[arm]
    root = Path(config.out_dir) / f"seed-{seed}"
    adapter_dir = root / "adapters" / arm
    dataset_dir = control_dir(root, arm) if arm in CONTROL_DATA else pairs_dir(root, mix)
    corpus_dir = root / "corpus"
    processor = VideoPreferenceProcessor.from_pretrained(
        base_model, num_frames=None, video_fps=FPS, video_root=str(corpus_dir)
    )
    args = tiny_tpo_config(
        adapter_dir,
        num_frames=None,
        video_fps=FPS,
        video_root=str(corpus_dir),
        per_device_train_batch_size=config.batch_size,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        beta=config.beta,
        # SFT-only arms train the SFT term alone at weight 1; TPO arms add it to DPO at `sft_weight` (TPOConfig's
        # rule); dpo_only at 0
        sft_weight=ARM_SFT_WEIGHT.get(arm, config.sft_weight),
        loss_type=loss_type,
        warmup_ratio=0.1,
        logging_steps=5,
        seed=seed,
        data_seed=seed,
        disable_tqdm=True,
        **reward_eval_settings(config),
    )
    train_dataset = load_preference_dataset(str(dataset_dir))
    trainer = TPOTrainer(
        base_model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=reward_eval_rows(train_dataset, config.reward_eval_rows, seed),
        processing_class=processor,
        peft_config=LoraConfig(r=config.lora_r, lora_alpha=2 * config.lora_r, lora_dropout=0.0),
        callbacks=callbacks,
    )
    trainer.train()
    trainer.save_model(str(adapter_dir))
    if config.reward_eval_rows:
        (adapter_dir / REWARDS_FILE).write_text(json.dumps(reward_curve(trainer.state.log_history)) + "\n")
    return trainer


REWARDS_FILE = "reward_curve.json"


def reward_eval_settings(config: ExperimentConfig) -> dict[str, Any]:
    """TPOConfig fields for the reward diagnostics (TRL's evaluation loop on `reward_eval_rows`), none when off."""
    if not config.reward_eval_rows:
        return {}
    return dict(
        eval_strategy="steps",
        eval_steps=config.reward_eval_steps,
        eval_on_start=True,
        per_device_eval_batch_size=config.batch_size,
    )


def reward_eval_rows(dataset, count: int, seed: int):
    """`count` non-anchor rows of a training set (seeded): where the DPO reward margins are measured over training
    (anchor rows have chosen = rejected, so their margin is 0 by construction)."""
    if not count:
        return None
    pairs = dataset.filter(lambda row: not row["anchor"]).shuffle(seed=seed)
    return pairs.select(range(min(count, len(pairs))))


def reward_curve(log_history: list[dict[str, Any]]) -> list[dict[str, float]]:
    """The DPO reward diagnostics TRL logged on the evaluation rows, step by step."""
    keys = ("eval_rewards/margins", "eval_rewards/accuracies", "eval_rewards/chosen", "eval_rewards/rejected")
    return [
        {"step": entry["step"], **{k.removeprefix("eval_"): entry[k] for k in keys if k in entry}}
        for entry in log_history
        if "eval_rewards/margins" in entry
    ]


def seen_video_keys(config: ExperimentConfig, base_model: str | None = None) -> set:
    """`WorldVideo.key()` of every video the run's models saw before evaluation: the seeds' training corpora and the
    clips the base was pretrained on (replayed from the settings recorded with it)."""
    from .base import RECORD_NAME, world_base_model
    from .pretrain import PretrainConfig, pretraining_video_keys

    keys = {
        video.key()
        for seed in config.seeds
        for self_training_round in range(1, config.self_training_rounds + 1)
        for video in corpus_videos(train_spec(config, seed, self_training_round))
    }
    folder = Path(base_model or config.base_model or world_base_model(base_pretraining(config)))
    recorded = json.loads((folder / RECORD_NAME).read_text())["config"]
    return keys | pretraining_video_keys(PretrainConfig(**recorded))


def eval_sets(config: ExperimentConfig) -> tuple[Path, Path]:
    """The held-out videos (their own splits, drawn per `heldout_seed`, never curated or trained on) and their
    questions as a `tpo_world` benchmark file; written once."""
    folder = Path(config.out_dir) / "eval-videos"
    questions = Path(config.out_dir) / "heldout_questions.jsonl"
    exclude = frozenset(seen_video_keys(config)) if config.heldout_exclude_seen else frozenset()
    videos = []
    for count in config.eval_scene_counts:
        per_count = (
            config.eval_short_videos_per_count if count <= SHORT_CLIP_MAX_SCENES else config.eval_videos_per_count
        )
        spec = CorpusSpec(
            f"eval{count}",
            per_count,
            count,
            count,
            config.needle_probability,
            config.heldout_seed,
            config.heldout_layout,
            exclude,
        )
        videos += write_corpus(spec, folder)
    if not config.heldout_layout.plain:
        # V-NIAH cuts haystacks from every file of its folder: the plain copies, without the grey frames before a
        # window (and, as before, the same scenes)
        for video in videos:
            if video.num_frames >= 6:
                write_world_video(
                    WorldVideo(video.video_id, tuple(replace(s, frames=1) for s in video.scenes)), vniah_dir(config)
                )
    per_video = {**{k: 1 for k in LOCALIZED_KINDS}, **{k: 1 for k in COMPREHENSIVE_KINDS}, "needle": 1}
    rows = eval_rows(eval_samples(videos, per_video, seed=config.heldout_seed))
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder, questions


def vniah_dir(config: ExperimentConfig) -> Path:
    """The V-NIAH haystack sources: the held-out videos themselves with the plain layout, else plain copies."""
    name = "eval-videos" if config.heldout_layout.plain else "vniah-haystack"
    return Path(config.out_dir) / name


def heldout_eval_config(
    config: ExperimentConfig, base_model: str, adapter: str | None, output_dir: Path, compare_base: bool = False
):
    """How every arm (and the quickstart) is scored: the `tpo_world` benchmark plus V-NIAH through `tpo_hf.eval`."""
    from ..eval.config import EvalConfig

    video_dir, questions = Path(config.out_dir) / "eval-videos", Path(config.out_dir) / "heldout_questions.jsonl"
    return EvalConfig(
        model_name_or_path=base_model,
        adapter_path=adapter,
        benchmark="tpo_world",
        dataset_name=str(questions),
        video_dir=str(video_dir),
        num_frames=32,  # each question carries its video's frame count: the model sees every frame
        batch_size=32,
        max_new_tokens=6,
        compare_base=compare_base,
        vniah=True,
        vniah_haystack_dir=str(vniah_dir(config)),
        vniah_lengths=config.vniah_lengths,
        vniah_depths=config.vniah_depths,
        vniah_needle_colour="magenta",
        vniah_needle_shape=NEEDLE_SHAPE,
        vniah_needle_frames=1,  # a needle is one frame, one scene
        vniah_needle_text="",  # the world's needle picture (see `timeline.render_scene`)
        vniah_fps=2,
        dtype="float32",
        device="cpu",
        progress=False,
        output_dir=str(output_dir),
    )


def evaluate_arm(
    config: ExperimentConfig, seed: int, arm: str, model: str, adapter: str | None = None
) -> dict[str, Any]:
    """Scores one arm (`model` with its `adapter`, none for the base) with the project's evaluation
    (`tpo_hf.eval.run.evaluate`): generated replies, answer extraction, per-sample records, V-NIAH on haystacks cut
    from held-out world videos."""
    _single_thread()
    from ..eval.run import evaluate

    output_dir = Path(config.out_dir) / f"seed-{seed}" / "eval" / arm
    results = evaluate(heldout_eval_config(config, model, adapter, output_dir))
    tag = "base" if adapter is None else "tpo"
    samples = read_samples(output_dir / "samples_tpo_world.jsonl", tag)
    rewards_file = Path(adapter) / REWARDS_FILE if adapter else None
    rewards = json.loads(rewards_file.read_text()) if rewards_file and rewards_file.is_file() else []
    return {"arm": arm, "seed": seed, "samples": samples, "vniah": results["vniah"]["models"][tag], "rewards": rewards}


def probe_arm(config: ExperimentConfig, seed: int, arm: str, model: str, adapter: str | None = None) -> dict[str, Any]:
    """The probes (`tpo_hf.world.probes`) of one arm and seed (`model` with its `adapter`, none for the base)."""
    from .probes import run_probes

    out = Path(config.out_dir)
    results = run_probes(
        model,
        adapter,
        out / "heldout_questions.jsonl",
        out / "eval-videos",
        config.probes,
        config.long_min_scenes,
        SHORT_CLIP_MAX_SCENES,
        seed=config.heldout_seed,
    )
    return {"arm": arm, "seed": seed, "probes": results}


def read_samples(samples_file: Path, tag: str) -> list[dict[str, Any]]:
    """One model's records from an evaluation's per-sample file (`tag` "base" or "tpo"; a `compare_base` run holds
    both): each question with that model's `prediction`, `reply` and whether it is `correct`."""
    samples = []
    for line in samples_file.read_text().splitlines():
        record = json.loads(line)
        record["prediction"] = record.pop(f"{tag}_prediction")
        record["reply"] = record.pop(f"{tag}_reply")
        record["correct"] = record["prediction"] == record["answer"]
        samples.append(record)
    return samples


def self_train(config: ExperimentConfig, seed: int, arm: str, base_model: str) -> tuple[str, str, list[dict]]:
    """Trains `arm` for `self_training_rounds` rounds and returns the model and adapter to score, with each later
    round's curation report. Round k lives in `seed-<seed>/round-<k>-<arm>/` (the merged model of round k-1 in
    `model/`, its corpus, pairs and adapter laid out like a seed folder of its own); finished pieces are reused."""
    model, adapter = base_model, train_arm(config, seed, arm, base_model)
    rounds = []
    for self_training_round in range(2, config.self_training_rounds + 1):
        round_config = replace(
            config, out_dir=str(Path(config.out_dir) / f"seed-{seed}" / f"round-{self_training_round}-{arm}")
        )
        model = merge_into_model(model, adapter, Path(round_config.out_dir) / "model")
        curated = curate(replace(round_config, arms=[arm]), seed, model, self_training_round=self_training_round)
        check_equal_pair_counts(replace(round_config, arms=[arm]), [curated])
        adapter = train_arm(round_config, seed, arm, model)
        report = curated["reports"][ARMS[arm][0]]
        rounds.append({"round": self_training_round, "final": report.get("final"), "judge": report.get("judge")})
    return model, adapter, rounds


def merge_into_model(model: str, adapter: str, output_dir: Path) -> str:
    """`model` with `adapter` merged in, saved as a model folder of its own (weights, and the processor, chat
    template and world records copied from `model`) that the next self-training round curates and trains from."""
    import shutil
    import tempfile

    from ..hub.push import merge_adapter

    if (output_dir / "model.safetensors").is_file():
        return str(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    # written beside and renamed at the end, so a killed merge never leaves a folder that looks finished
    staging = Path(tempfile.mkdtemp(prefix=".merging-", dir=output_dir.parent))
    merge_adapter(adapter, staging)
    for item in Path(model).iterdir():
        if item.is_file() and item.name != "README.md" and not (staging / item.name).exists():
            shutil.copy2(item, staging / item.name)
    staging.rename(output_dir)
    return str(output_dir)


def _train_and_eval(config: ExperimentConfig, seed: int, arm: str, base_model: str) -> dict[str, Any]:
    model, adapter, rounds = base_model, None, []
    if arm != "base":
        model, adapter, rounds = self_train(config, seed, arm, base_model)
    result = evaluate_arm(config, seed, arm, model, adapter)
    if rounds:
        result["self_training"] = rounds
    if config.probes and arm in config.probe_arms:
        result["probes"] = probe_arm(config, seed, arm, model, adapter)["probes"]
    return result


def run_experiment(config: ExperimentConfig) -> dict[str, Any]:
    """Runs every (seed, arm), writes `results.json`, `results.md` and the plots into `out_dir`; returns results."""
    from .base import world_base_model

    started = time.perf_counter()
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base_model = config.base_model or str(world_base_model(base_pretraining(config)))
    eval_sets(config)  # written once, before workers read them
    with ProcessPoolExecutor(max_workers=config.workers) as pool:
        curated = [f.result() for f in [pool.submit(curate, config, seed, base_model) for seed in config.seeds]]
        check_equal_pair_counts(config, curated)
        jobs = [(seed, arm) for seed in config.seeds for arm in config.arms if arm != "base"]
        futures = [pool.submit(_train_and_eval, config, seed, arm, base_model) for seed, arm in jobs]
        base_runs = [pool.submit(_train_and_eval, config, config.seeds[0], "base", base_model)]
        runs = [f.result() for f in futures]
        base_result = base_runs[0].result()
    # the base is deterministic (greedy decoding, same weights, same questions): one evaluation serves every seed
    runs += [{**base_result, "seed": seed} for seed in config.seeds] if "base" in config.arms else []
    table = summarize(config.arms, runs, config.long_min_scenes)
    chance_level = chance(runs[0]["samples"], config.long_min_scenes)
    chances = chance_by_kind(runs[0]["samples"], config.long_min_scenes)
    probes: dict[str, list] = {}
    rewards: dict[str, list] = {}
    for r in sorted(runs, key=lambda r: r["seed"]):
        if r.get("probes") and (r["arm"] != "base" or r["seed"] == config.seeds[0]):
            probes.setdefault(r["arm"], []).append(r["probes"])
        if r["arm"] != "base":
            rewards.setdefault(r["arm"], []).append(r.get("rewards") or [])
    heldout = heldout_summary(config, base_model)
    import transformers

    results = {
        "config": asdict(config),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "transformers_version": transformers.__version__,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "chance": chance_level,
        "chance_by_kind": chances,
        "heldout": heldout,
        "controls": {c["seed"]: c.get("controls") for c in curated},
        "curation": {
            c["seed"]: {
                mix: {
                    key: r.get(key)
                    for key in (
                        "videos",
                        "candidates",
                        "questions",
                        "judge",
                        "drop_reasons",
                        "kept_before_mix",
                        "anchors_before_mix",
                        "mix",
                        "final",
                        "pairs_by_kind",
                        "pairs_by_scenes",
                        "chosen_options",
                        "anchors_by_kind",
                        "anchors_by_scenes",
                    )
                }
                for mix, r in c["reports"].items()
            }
            for c in curated
        },
        "table": table,
        "paired": paired_differences(runs, config.long_min_scenes, arms=list(ARMS)),
        "order_errors": order_errors_by_option(runs),
        # per arm, a list over seeds (the base: its one evaluation) of each probe's scores
        "probes": probes,
        # per arm, a list over seeds of the DPO reward diagnostics on non-anchor training rows, step by step
        "rewards": rewards,
        # every arm x seed x question type (and scene count), and the V-NIAH grid
        "runs": [
            {
                "arm": r["arm"],
                "seed": r["seed"],
                "accuracy": accuracies(r["samples"], config.long_min_scenes),
                "vniah": r["vniah"],
                # later self-training rounds' curation (pairs kept, judge counts), when there were any
                **({"self_training": r["self_training"]} if r.get("self_training") else {}),
            }
            for r in runs
        ],
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    with (out_dir / "samples.jsonl").open("w") as handle:  # every reply of every run, for a closer look
        for r in runs:
            for sample in r["samples"]:
                handle.write(json.dumps({"arm": r["arm"], "seed": r["seed"], **sample}) + "\n")
    (out_dir / "results.md").write_text(
        markdown(
            table,
            config.seeds,
            chance_level,
            results["curation"],
            results["paired"],
            results["order_errors"],
            chances,
            probes,
            rewards,
            heldout,
        )
    )
    plot(table, out_dir, config.eval_scene_counts, results["paired"], chances)
    return results


def heldout_summary(config: ExperimentConfig, base_model: str) -> dict[str, Any]:
    """What the held-out set is: its seed, layout, size, and the check that none of its videos was seen before."""
    rows = [json.loads(line) for line in (Path(config.out_dir) / "heldout_questions.jsonl").read_text().splitlines()]
    videos = sorted({row["video"] for row in rows})
    summary: dict[str, Any] = {
        "heldout_seed": config.heldout_seed,
        "layout": asdict(config.heldout_layout),
        "videos": len(videos),
        "questions": len(rows),
    }
    if config.heldout_exclude_seen:
        seen = seen_video_keys(config, base_model)
        folder = Path(config.out_dir) / "eval-videos"
        summary["seen_videos_checked"] = len(seen)
        summary["heldout_videos_seen_before"] = sum(read_timeline(folder / v).key() in seen for v in videos)
    return summary
