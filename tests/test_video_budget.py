"""`max_video_tokens`: one function (`VideoPreferenceProcessor`, through the family registry) fits frames and
resolution to a per-prompt video-token budget, and curation, training and evaluation all apply it the same way."""

from __future__ import annotations

import dataclasses

import pytest
from datasets import Dataset
from peft import LoraConfig

from tpo_hf import TPOTrainer, VideoPreferenceProcessor
from tpo_hf.curation.config import CurationConfig
from tpo_hf.curation.run import fitted_to_video_model
from tpo_hf.families import FAMILIES
from tpo_hf.hub.model_card import trainer_hyperparameters
from tpo_hf.tiny import build_tiny_model, tiny_tpo_config

CLIP = "red_blue.mp4"


def _video_tokens(processor: VideoPreferenceProcessor, video_dir) -> int:
    pair = processor.encode_pair("What happens?", str(video_dir / CLIP), "A square.", "A circle.")
    return pair.num_video_tokens


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_qwen_budget_lowers_resolution_then_frames(family, video_dir):
    _, processor = build_tiny_model(family)
    unbounded = _video_tokens(VideoPreferenceProcessor(processor, num_frames=8), video_dir)
    budget = 20
    assert unbounded > budget
    fitted = VideoPreferenceProcessor(processor, num_frames=8, max_video_tokens=budget)
    # the same 8 frames at a lower resolution
    assert fitted.num_frames == 8 and fitted.max_pixels is not None
    assert 0 < _video_tokens(fitted, video_dir) <= budget
    # below the smallest frames' size: frames go too (whole temporal patches)
    tiny = VideoPreferenceProcessor(processor, num_frames=8, max_video_tokens=9)
    assert tiny.num_frames == 4 and _video_tokens(tiny, video_dir) <= 9
    with pytest.raises(ValueError, match="max_video_tokens=3 is below one frame group"):
        VideoPreferenceProcessor(processor, num_frames=8, max_video_tokens=3)


@pytest.mark.parametrize("family", ["llava_onevision", "llava_next_video"])
def test_fixed_size_family_budget_drops_frames(family, video_dir):
    _, processor = build_tiny_model(family)
    per_video = _video_tokens(VideoPreferenceProcessor(processor, num_frames=8), video_dir)
    fitted = VideoPreferenceProcessor(processor, num_frames=8, max_video_tokens=per_video // 2)
    assert fitted.num_frames < 8 and fitted.max_pixels is None
    assert per_video // 2 - 5 <= _video_tokens(fitted, video_dir) <= per_video // 2


def test_budget_is_saved_and_applied_in_training_and_curation(tmp_path, video_dir):
    model, processor = build_tiny_model("qwen2_5_vl")
    budget = 150
    expected = VideoPreferenceProcessor(processor, num_frames=8, max_video_tokens=budget)

    # training: TPOConfig's video settings build the same processor; the model card records the fitted values
    args = tiny_tpo_config(tmp_path / "out", video_root=str(video_dir), num_frames=8, max_video_tokens=budget)
    rows = [{"prompt": "What happens?", "chosen": "A square.", "rejected": "A circle.", "video": CLIP}]
    trainer = TPOTrainer(
        model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        peft_config=LoraConfig(r=4, lora_alpha=8),
    )
    assert (trainer.video_processor.num_frames, trainer.video_processor.max_pixels) == (8, expected.max_pixels)
    card = trainer_hyperparameters(trainer)
    assert card["max_video_tokens"] == budget and card["max_pixels"] == expected.max_pixels

    # saved with the processor (what evaluation of the trained model loads) and fitted again identically
    trainer.video_processor.save_pretrained(tmp_path / "saved")
    reloaded = VideoPreferenceProcessor.from_pretrained(tmp_path / "saved", num_frames=8)
    assert (reloaded.num_frames, reloaded.max_pixels, reloaded.max_video_tokens) == (8, expected.max_pixels, budget)

    # curation: the same fit for the video model's processor; the report (dataset card) reads these fields
    config = CurationConfig(
        output_dir=str(tmp_path / "curated"),
        video_dir=str(video_dir),
        video_model=str(tmp_path / "saved"),
        num_frames=8,
        sparse_num_frames=4,
        max_video_tokens=budget,
    )
    fitted = fitted_to_video_model(config)
    assert (fitted.num_frames, fitted.max_pixels) == (8, expected.max_pixels)
    assert (config.num_frames, config.max_pixels) == (8, None)  # a validated config is never mutated
    # room for 4 frames of 2 x 2 patches, with 4 sparse ones: the fitted copy is refused, naming the budget
    tight = dataclasses.replace(config, max_video_tokens=9)
    with pytest.raises(ValueError, match=r"sparse_num_frames=4 must be below num_frames=\d+ \(the frames max_video_"):
        fitted_to_video_model(tight)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_fits_the_budget_or_refuses_it(family, video_dir):
    """No family may accept a budget and then exceed it: the fit holds, or the processor refuses at once."""
    _, processor = build_tiny_model(family)
    unbounded = _video_tokens(VideoPreferenceProcessor(processor, num_frames=8), video_dir)
    budget = unbounded // 2
    try:
        fitted = VideoPreferenceProcessor(processor, num_frames=8, max_video_tokens=budget)
    except ValueError as error:
        # refused only where no fit is written (an MoE twin's processor resolves to its dense family's entry)
        assert FAMILIES[family].video_token_budget is None and "max_video_tokens is not supported" in str(error)
        return
    assert 0 < _video_tokens(fitted, video_dir) <= budget
