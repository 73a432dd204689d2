"""Pretraining the world's base video-LMM on short clips (1-3 scenes): captions and questions about them.

This is the stand-in for a video-LMM's instruction tuning on short videos: the model learns to see (colours),
to caption, and to answer localized / comprehensive / needle questions about *short* clips. Long videos
(6+ scenes) are never shown, which is what makes them hard for the base model, as in the TPO paper, where the
base model is good on short clips and worse on long videos.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..curation.prompts import CAPTION_PROMPTS
from .questions import COMPREHENSIVE_KINDS, LETTER_POST_PROMPT, LOCALIZED_KINDS, POST_PROMPT, ask, caption
from .timeline import FPS, Layout, WorldVideo, frame_metadata, layout_video, make_video, render_video, world_rng

logger = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """How the base is pretrained; everything that changes its weights (the cache key of `tpo-hf world pretrain`)."""

    seed: int = 0
    steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    min_scenes: int = 1
    max_scenes: int = 3
    needle_probability: float = 0.25
    caption_probability: float = 0.15
    hidden_size: int = 128
    num_layers: int = 4
    family: str = "qwen3_vl"  # frames after their timestamps as text; "qwen2_vl": M-RoPE time positions (the experiment write-up)
    # 0..N filler tokens between the video and the question, drawn per example: real instruction data varies the text
    # around the video, so a frame's distance to the question says nothing about which frame it is
    max_gap_tokens: int = 0
    # each clip's frames start 0..N time positions later (M-RoPE, qwen2_vl only), as if cut from later in a longer
    # video; randomized positions let a model trained on short inputs read positions that only long inputs reach
    max_time_offset: int = 0
    # a jump of 0..N positions (no tokens) between the video and the question, drawn per example, any family: the
    # question meets the first frame at the distances it has in long videos (the shipped base: 45; benchmarks/results/method_validity/README.md)
    max_question_offset: int = 45
    # 1 (the shipped base): Qwen3-VL's video prompt as transformers 5.18-5.24 wrote it, with one more
    # <|vision_start|>...<|vision_end|> pair around all frames (written on every release, and recorded with the
    # model), and the loss mask of that time, which also covers the prompt's last tokens (it counted the frame tokens
    # but not their timestamps and per-frame pairs). 2: the documented layout and a loss on the answer
    # alone (docs/supported_versions.md: what each gave)
    format_version: int = 1
    # the clip layout (`timeline.Layout`), drawn per clip, off at these values (the shipped base): each scene lasts
    # 1..`max_scene_frames` frames; 0..`max_blank_frames` blank frames before the first and after the last scene;
    # the clip is a window whose timestamps start at a random second, ending before `max_timestamp` seconds. What
    # the shortcut-free held-out sets draw (benchmarks/results/method_validity/README.md)
    max_scene_frames: int = 1
    max_blank_frames: int = 0
    max_timestamp: int = 0

    @property
    def layout(self) -> Layout:
        return Layout(self.max_scene_frames, self.max_blank_frames, self.max_timestamp)


def short_clip(
    rng: random.Random, config: PretrainConfig, index: int, render: bool = True
) -> tuple[WorldVideo, np.ndarray | None]:
    """A random clip of `min_scenes`..`max_scenes` scenes, maybe with a needle, laid out by `config.layout`."""
    num_scenes = rng.randint(config.min_scenes, config.max_scenes)
    video = make_video(f"pretrain-{index}", rng, num_scenes, with_needle=rng.random() < config.needle_probability)
    video = layout_video(video, config.layout, rng)
    return video, (render_video(video) if render else None)


def training_example(rng: random.Random, config: PretrainConfig, index: int, render: bool = True) -> tuple:
    """(prompt, answer, frames) of one pretraining example; `frames` is `(frames, metadata)` when the clip is a
    window that does not start at second 0 (`max_timestamp`)."""
    example, _ = _example_and_video(rng, config, index, render)
    return example


def _example_and_video(rng: random.Random, config: PretrainConfig, index: int, render: bool = True):
    video, frames = short_clip(rng, config, index, render)
    if render and video.offset:
        frames = (frames, frame_metadata(len(frames), offset=video.offset))
    if rng.random() < config.caption_probability:
        prompt = CAPTION_PROMPTS["localized" if rng.random() < 0.5 else "comprehensive"]
        return (prompt, caption(video.scenes), frames), video
    kinds = list(LOCALIZED_KINDS + COMPREHENSIVE_KINDS)
    if any(scene.needle for scene in video.scenes):
        kinds += ["needle"] * 3
    while True:
        question = ask(video, rng.choice(kinds), rng)
        if question is not None:
            # the answer is the option's text: the evaluation's answer extraction maps it to its letter
            prompt = question.prompt
            if rng.random() < 0.3:
                prompt = prompt.replace(POST_PROMPT, LETTER_POST_PROMPT)
            return (prompt, question.answer, frames), video


def pretraining_batches(config: PretrainConfig, render: bool = True):
    """The pretraining stream, batch by batch: (examples, videos, gaps, frame offsets, question offsets), the random
    draws in the order `pretrain` makes them (so `render=False` replays which clips a base saw, cheaply)."""
    rng = world_rng("pretrain", config.seed)
    for step in range(config.steps):
        drawn = [
            _example_and_video(rng, config, step * config.batch_size + i, render) for i in range(config.batch_size)
        ]
        examples, videos = [e for e, _ in drawn], [v for _, v in drawn]
        # drawn only when used, so settings without them keep the random stream of bases built before these options
        gaps = [rng.randint(0, config.max_gap_tokens) for _ in examples] if config.max_gap_tokens else None
        offsets = question_offsets = None
        if config.max_time_offset or config.max_question_offset:  # drawn only when used, as above
            offsets = [rng.randint(0, config.max_time_offset) for _ in examples]
            question_offsets = [rng.randint(0, config.max_question_offset) for _ in examples]
        yield examples, videos, gaps, offsets, question_offsets


def pretraining_video_keys(config: PretrainConfig) -> set:
    """`WorldVideo.key()` of every clip a base pretrained with `config` saw (replayed, nothing rendered)."""
    return {video.key() for _, videos, *_ in pretraining_batches(config, render=False) for video in videos}


GAP_FILLER = "\n"  # one token of the world tokenizer
VIDEO_END = "<|vision_end|>"


def encode_batch(
    processor, examples: list[tuple[str, str, np.ndarray]], gaps: list[int] | None = None, answer_only: bool = True
):
    """Model inputs with labels on the answers (prompt and padding masked with -100); `gaps[i]` filler tokens go
    right after example i's video. `answer_only=False`: format 1's mask (see `PretrainConfig.format_version`)."""

    prompts = [processor.prompt_text(prompt) for prompt, _, _ in examples]
    if gaps is not None:  # the world families (Qwen2-VL, Qwen3-VL) close every video with this token
        prompts = [text.replace(VIDEO_END, VIDEO_END + GAP_FILLER * gap, 1) for text, gap in zip(prompts, gaps)]
    texts = [text + processor.completion_text(prompt, answer) for text, (prompt, answer, _) in zip(prompts, examples)]
    videos = [
        frames if isinstance(frames, tuple) else (frames, frame_metadata(len(frames))) for *_, frames in examples
    ]
    inputs = processor._process(texts, videos, padding=True, padding_side="right")
    labels = inputs["input_ids"].clone()
    labels[inputs["attention_mask"] == 0] = -100
    for row, (prompt, answer, _) in enumerate(examples):
        if answer_only:
            # the answer is the row's last tokens (it follows the prompt's closing newline, so it tokenizes on its
            # own); counted from the answer, the processor's expansion of the video needs no count
            completion = processor.completion_text(prompt, answer)
            answer_length = len(processor.tokenizer(completion, add_special_tokens=False)["input_ids"])
            prompt_length = int(inputs["attention_mask"][row].sum()) - answer_length
        else:
            prompt_length = len(processor.tokenizer(prompts[row], add_special_tokens=False)["input_ids"])
            prompt_length += int((inputs["input_ids"][row] == processor.video_token_id).sum()) - 1
        labels[row, :prompt_length] = -100
    inputs["labels"] = labels
    return inputs


def pair_around_frames(processor) -> str:
    """The documented Qwen3-VL layout of `processor` with one more <|vision_start|>...<|vision_end|> pair around all
    frames: what transformers 5.18-5.24 wrote, and the shipped base (format 1) was trained on."""
    documented = processor.video_prompt_layout()
    start, end = processor.processor.vision_start_token, processor.processor.vision_end_token
    first, last = documented.index("<0.0 seconds>"), documented.rindex(end) + len(end)
    return documented[:first] + start + documented[first:last] + end + documented[last:]


def shifted_position_ids(model, inputs, video_token_id: int, frame_offsets: list[int], question_offsets=None):
    """The M-RoPE positions (time, height, width) the model gives `inputs`, with row i's frames `frame_offsets[i]`
    time steps later (Qwen2-VL: the clip sits where the last frames of a longer video would) and the text after the
    video `frame_offsets[i] + question_offsets[i]` positions later. Offsets 0 give the model's own positions."""
    import inspect

    accepted = inspect.signature(model.model.get_rope_index).parameters  # its arguments differ across versions
    positions, _ = model.model.get_rope_index(**{k: v for k, v in inputs.items() if k in accepted})
    positions = positions.clone()
    question_offsets = question_offsets or [0] * len(frame_offsets)
    for row, (offset, question_offset) in enumerate(zip(frame_offsets, question_offsets)):
        frames = (inputs["input_ids"][row] == video_token_id).nonzero().flatten()
        start, end = int(frames[0]), int(frames[-1]) + 1
        positions[0, row, start:end] += offset
        positions[:, row, end:] += offset + question_offset
    return positions


def pretrain(
    output_dir: str | Path, config: PretrainConfig | None = None, progress: bool = True, on_step=None
) -> Path:
    """Pretrains the base from scratch and saves it (model, processor, `world_pretrain.json`) to `output_dir`."""
    import torch
    from tqdm.auto import tqdm

    from ..processing import VideoPreferenceProcessor
    from .model import build_world_model

    config = config or PretrainConfig()
    if config.max_time_offset and config.family != "qwen2_vl":
        raise ValueError(f"max_time_offset shifts Qwen2-VL's M-RoPE time positions; family is {config.family!r}")
    output_dir = Path(output_dir)
    model, hf_processor = build_world_model(config.seed, config.hidden_size, config.num_layers, config.family)
    processor = VideoPreferenceProcessor(hf_processor, num_frames=None, video_fps=FPS)  # every frame
    if config.format_version < 2 and config.family == "qwen3_vl":
        processor.use_video_prompt_layout(pair_around_frames(processor), source="format 1 of the world base")
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress_ = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress_))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    torch.manual_seed(config.seed)
    started, losses = time.perf_counter(), []
    bar = tqdm(pretraining_batches(config), total=config.steps, desc="world pretrain", disable=not progress)
    for step, (examples, _, gaps, offsets, question_offsets) in enumerate(bar):
        inputs = encode_batch(processor, examples, gaps, answer_only=config.format_version >= 2)
        if offsets is not None:
            inputs["position_ids"] = shifted_position_ids(
                model, inputs, processor.video_token_id, offsets, question_offsets
            )
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        if on_step is not None:
            on_step(step + 1, model, processor)
    model.eval()
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    import transformers

    record = {
        "config": asdict(config),
        "transformers_version": transformers.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": time.perf_counter() - started,
        "loss_curve": losses[::10],
    }
    (output_dir / "world_pretrain.json").write_text(json.dumps(record, indent=2) + "\n")
    return output_dir
