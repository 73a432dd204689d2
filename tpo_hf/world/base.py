"""The world's pretrained base model: shipped inside the package, or built once and cached.

`tpo-hf world pretrain` builds it deterministically from `PretrainConfig` (one torch thread; ~20 minutes on 2 cores)
and writes it with a model card saying how it was made. The package ships two results (~4 MB each): the default
(`tpo_hf/world/base_model/`, the quickstart's and the tests') and the method-validity script's base on its held-out
layout (`tpo_hf/world/base_model_heldout_layout/`), so neither the quickstart nor the experiment waits for a build
(20-50 minutes) or downloads anything; for any other settings `world_base_model()` builds the base into the cache
folder instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import asdict
from pathlib import Path

from ..fingerprint import cache_root, without_off_options
from .pretrain import PretrainConfig, pretrain

SHIPPED_BASE = Path(__file__).parent / "base_model"
# `PretrainConfig(format_version=2, max_scene_frames=2, max_blank_frames=2, max_timestamp=30)`: the base of
# `benchmarks/method_validity.py`'s default design (`--base_on_heldout_layout`)
SHIPPED_HELDOUT_LAYOUT_BASE = Path(__file__).parent / "base_model_heldout_layout"
SHIPPED_BASES = (SHIPPED_BASE, SHIPPED_HELDOUT_LAYOUT_BASE)
RECORD_NAME = "world_pretrain.json"

CARD = """---
library_name: transformers
pipeline_tag: video-text-to-text
tags:
- tpo-hf
- temporal-preference-optimization
- synthetic
license: apache-2.0
---

# tpo-hf world base ({params:.2f} M parameters)

A small {architecture} pretrained from scratch on CPU by
`tpo-hf world pretrain` on the synthetic temporal world of `tpo_hf.world`. It is the base model of tpo-hf's
method-validity experiment and quickstart: good on short clips, worse on long videos, like the base models the
TPO paper starts from.

- Architecture: text {num_layers} layers x hidden {hidden_size}, vision depth 2; frames resized to 16x16, 8-pixel
  patches, 2x2 merge, temporal patch 1: one visual token per frame ({frame_positions}).
- Use: `AutoModelForImageTextToText.from_pretrained(path)` and `tpo_hf.VideoPreferenceProcessor.from_pretrained(path)`
  (every frame, 1 fps).
- Tokenizer: byte-level BPE whose merges were learned from the world's sentences (deterministic).
- Data: generated on the fly, {steps} steps x batch {batch_size}; clips of {min_scenes}-{max_scenes} scenes (a scene is
  one second, one frame: a square of one colour), a 1-frame "needle" (a big circle) in {needle_pct:.0f}% of clips;
  targets: captions ({caption_pct:.0f}%) and the option's text as the answer to localized ("what colour comes right
  after the red shape?"), comprehensive (first / last / which comes first) and needle questions. Long videos (6+
  scenes) are never shown.
- Positions: {position_note}
- Optimiser: AdamW lr {learning_rate}, cosine with {warmup_steps} warmup steps, weight decay {weight_decay}, seed {seed}.
- Build time: {minutes:.1f} minutes ({machine}), transformers {transformers_version}. The video prompt it was
  trained on is recorded in `tpo_video_config.json` (`video_prompt_layout`) and checked when it loads.

Settings fingerprint: `{fingerprint}`.
"""


# pretraining options that are off (at these values) are left out of the fingerprint, so adding an option never
# changes the fingerprint of a base built without it
_LATER_FIELDS = {
    "max_gap_tokens": 0,
    "max_time_offset": 0,
    "max_scene_frames": 1,
    "max_blank_frames": 0,
    "max_timestamp": 0,
}


def config_fingerprint(config: PretrainConfig) -> str:
    settings = without_off_options(asdict(config), _LATER_FIELDS)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _matches(folder: Path, config: PretrainConfig) -> bool:
    record = folder / RECORD_NAME
    if not (record.is_file() and (folder / "model.safetensors").is_file()):
        return False
    try:
        return json.loads(record.read_text()).get("fingerprint") == config_fingerprint(config)
    except (ValueError, AttributeError) as error:  # torn (killed while written) or not a record: a cache miss
        warnings.warn(f"World base record {record} is unreadable ({error}): the base is built again.", stacklevel=2)
        return False


def cache_dir() -> Path:
    return cache_root() / "world-base"


def build_base(
    output_dir: str | Path, config: PretrainConfig | None = None, progress: bool = True, setting: str = "output_dir"
) -> Path:
    """Pretrains the base into `output_dir` (model, processor, record, model card); a folder that cannot be written
    is refused before the pretraining, naming `setting` (the option or variable that chose it)."""
    from ..locks import check_writable_folder

    config = config or PretrainConfig()
    check_writable_folder(output_dir, "world pretrain", setting)
    pretrain(output_dir, config, progress=progress)
    return describe_base(output_dir, config)


_ARCHITECTURES = {
    "qwen2_vl": (
        "Qwen2-VL (`Qwen2VLForConditionalGeneration`, registry family `qwen2_vl`)",
        "M-RoPE time position per frame",
    ),
    "qwen3_vl": (
        "Qwen3-VL (`Qwen3VLForConditionalGeneration`, registry family `qwen3_vl`)",
        'each frame after its timestamp as text, "<3.0 seconds>"',
    ),
}


def position_note(config: PretrainConfig) -> str:
    """What the pretraining did to the positions the model sees (the card's "Positions" line)."""
    notes = []
    if config.max_time_offset:
        notes.append(f"each clip's frames start 0-{config.max_time_offset} time positions late")
    if config.max_question_offset:
        notes.append(
            f"the question starts 0-{config.max_question_offset} positions after the video (a jump, no tokens)"
        )
    if config.max_gap_tokens:
        notes.append(f"0-{config.max_gap_tokens} filler tokens between the video and the question")
    if config.max_scene_frames > 1:
        notes.append(f"each scene lasts 1-{config.max_scene_frames} frames")
    if config.max_blank_frames:
        notes.append(f"0-{config.max_blank_frames} blank frames before the first and after the last scene")
    if config.max_timestamp:
        notes.append(f"each clip's timestamps start at a random second, the last below {config.max_timestamp}")
    return "; ".join(notes) + ", drawn per clip" if notes else "the model's own, unchanged"


def describe_base(output_dir: str | Path, config: PretrainConfig) -> Path:
    """Adds the settings fingerprint to the pretraining record and writes the model card."""
    import platform

    output_dir = Path(output_dir)
    record = json.loads((output_dir / RECORD_NAME).read_text())
    record["fingerprint"] = config_fingerprint(config)
    staged = output_dir / f".{RECORD_NAME}.tmp"  # written beside, then renamed: a kill never leaves half a record
    staged.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(staged, output_dir / RECORD_NAME)
    (output_dir / "README.md").write_text(
        CARD.format(
            params=record["parameters"] / 1e6,
            fingerprint=record["fingerprint"],
            minutes=record["seconds"] / 60,
            transformers_version=record.get("transformers_version", "unknown"),
            machine=f"{platform.machine()}, {os.cpu_count()} CPUs, one torch thread",
            architecture=_ARCHITECTURES[config.family][0],
            frame_positions=_ARCHITECTURES[config.family][1],
            position_note=position_note(config),
            needle_pct=100 * config.needle_probability,
            caption_pct=100 * config.caption_probability,
            **asdict(config),
        )
    )
    return output_dir


def world_base_model(config: PretrainConfig | None = None, progress: bool = True) -> Path:
    """The folder of the pretrained base: a shipped copy when one matches `config`, else the cached build
    (built now if missing)."""
    config = config or PretrainConfig()
    for shipped in SHIPPED_BASES:
        if _matches(shipped, config):
            return shipped
    cached = cache_dir() / config_fingerprint(config)
    if not _matches(cached, config):
        build_base(cached, config, progress=progress, setting="the world base cache (TPO_HF_CACHE or XDG_CACHE_HOME)")
    return cached
