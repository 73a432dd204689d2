"""`VideoSettings` owns the video fields: one default, one validation and one budget fit, for the training, curation
and eval configs, the processor, the lmms-eval plugin and the Space."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest

from tpo_hf import TPOConfig, VideoPreferenceProcessor, VideoSettings
from tpo_hf.curation.config import CurationConfig
from tpo_hf.eval.config import EvalConfig
from tpo_hf.tiny import build_tiny_model
from tpo_hf.video_settings import DEFAULT_NUM_FRAMES, VideoSettingsError

SETTING_NAMES = [f.name for f in dataclasses.fields(VideoSettings)]


def configs(**video):
    """One config of each stage with the given video fields."""
    return {
        "TPOConfig": lambda: TPOConfig("out", use_cpu=True, report_to="none", **video),
        "CurationConfig": lambda: CurationConfig(
            video_dir="videos", video_model="model", sparse_num_frames=1, **video
        ),
        "EvalConfig": lambda: EvalConfig(vniah=True, **video),
    }


def test_every_config_takes_its_video_fields_from_video_settings():
    """Same names, defaults and help text in every config: inherited, not copied."""
    owner = {f.name: f for f in dataclasses.fields(VideoSettings)}
    for name, make in configs().items():
        config = make()
        assert isinstance(config, VideoSettings), name
        fields = {f.name: f for f in dataclasses.fields(config)}
        for setting in SETTING_NAMES:
            assert fields[setting].default == owner[setting].default, (name, setting)
            assert fields[setting].metadata["help"] == owner[setting].metadata["help"], (name, setting)
        assert VideoSettings.of(config) == VideoSettings(), name
    # the processor, the lmms-eval plugin and the Space start from the same default
    assert inspect.signature(VideoPreferenceProcessor).parameters["num_frames"].default == DEFAULT_NUM_FRAMES
    lmms_plugin = pytest.importorskip("tpo_hf.eval.lmms_plugin")
    assert inspect.signature(lmms_plugin.TPOHFModel).parameters["num_frames"].default == DEFAULT_NUM_FRAMES


@pytest.mark.parametrize(
    "video, field_name",
    [
        (dict(num_frames=0), "num_frames"),
        (dict(max_pixels=-4), "max_pixels"),
        (dict(max_frames=True), "max_frames"),
        (dict(max_video_tokens=2.5), "max_video_tokens"),
        (dict(num_frames=None, video_fps=0.0), "video_fps"),
        (dict(num_frames=None), "video_fps"),
        (dict(num_frames=None, video_fps=1.0, max_video_tokens=100), "max_frames"),
    ],
)
def test_one_validation_refuses_the_same_settings_everywhere(video, field_name):
    with pytest.raises(VideoSettingsError, match=field_name):
        VideoSettings(**video)
    for name, make in configs(**video).items():
        with pytest.raises(VideoSettingsError, match=field_name) as refused:
            make()
        assert str(refused.value).startswith(f"{name}:")


def test_rate_sampling_is_a_video_setting_of_curation_too():
    config = CurationConfig(
        video_dir="videos", video_model="model", num_frames=None, video_fps=1.0, max_frames=64, sparse_num_frames=4
    )
    assert VideoSettings.of(config).describe() == "1 frame per second, at most 64"
    assert VideoSettings(num_frames=32, max_frames=64).describe() == "32 frames"
    # evaluation batches questions: it needs a fixed frame count
    with pytest.raises(ValueError, match="num_frames"):
        EvalConfig(vniah=True, num_frames=None, video_fps=1.0)


def test_the_budget_fit_returns_a_fitted_copy():
    _, hf_processor = build_tiny_model("qwen2_5_vl")
    asked = VideoSettings(num_frames=8, max_video_tokens=40)
    processor = VideoPreferenceProcessor(hf_processor, **asked.to_dict())
    fitted = processor.settings
    assert asked == VideoSettings(num_frames=8, max_video_tokens=40)  # left as given
    assert fitted is not asked and fitted.max_video_tokens == 40
    assert fitted.max_pixels is not None and fitted.num_frames <= 8
    assert fitted.fitted(hf_processor, processor.family) == fitted  # fitting a fitted copy changes nothing
    assert VideoSettings(num_frames=8).fitted(hf_processor, processor.family) == VideoSettings(num_frames=8)
    # the processor's settings are read-only views of that one object
    assert (processor.num_frames, processor.max_pixels) == (fitted.num_frames, fitted.max_pixels)
    with pytest.raises(AttributeError):
        processor.num_frames = 3


def test_a_rate_beside_a_frame_count_is_refused_not_ignored(tmp_path):
    """f14: `video_fps: 1` with num_frames left at its default trained on 32 frames, while the card and
    tpo_video_config.json listed both. Every config refuses the pair; a folder saved with both by an older tpo-hf
    loads without the rate it never sampled with, and a frame count given when loading replaces a saved rate."""
    from tpo_hf.hub.model_card import build_model_card

    refusal = r"video_fps=1 is ignored: num_frames=32 takes precedence; set num_frames: null"
    with pytest.raises(VideoSettingsError, match=refusal):
        VideoSettings(video_fps=1.0)
    for name, make in configs(video_fps=1.0).items():
        with pytest.raises(VideoSettingsError, match=refusal) as refused:
            make()
        assert str(refused.value).startswith(f"{name}:")

    _, hf_processor = build_tiny_model("qwen2_vl")
    VideoPreferenceProcessor(hf_processor, num_frames=None, video_fps=1.0).save_pretrained(tmp_path)
    assert VideoPreferenceProcessor.from_pretrained(str(tmp_path), num_frames=8).settings == VideoSettings(8)
    record = json.loads((tmp_path / "tpo_video_config.json").read_text())
    (tmp_path / "tpo_video_config.json").write_text(json.dumps({**record, "num_frames": 32}))  # an older save
    assert VideoPreferenceProcessor.from_pretrained(str(tmp_path)).settings == VideoSettings(32)

    card = build_model_card(
        repo_id="u/m", base_model=None, hyperparameters={"num_frames": 32, "video_fps": 1.0}, metrics={}
    )
    assert "| Frames per video | 32 |" in card.text and "Video sampling fps" not in card.text


def test_a_pixel_budget_a_fixed_size_family_cannot_apply_is_warned_and_not_recorded(caplog):
    """`max_pixels` on a family that resizes every frame to its own size (LLaVA-OneVision) changed nothing in the
    tensors, yet `processor.settings` (and so the card and tpo_video_config.json) recorded it. Now a warning names it
    and the recorded settings leave it out; a Qwen family keeps it."""
    import logging

    _, processor = build_tiny_model("llava_onevision")
    with caplog.at_level(logging.WARNING, logger="tpo_hf.video_settings"):
        fixed = VideoPreferenceProcessor(processor, num_frames=4, max_pixels=256)
    assert fixed.settings.max_pixels is None
    assert "max_pixels=256 is ignored" in caplog.text and "llava_onevision" in caplog.text
    _, processor = build_tiny_model("qwen2_vl")
    assert VideoPreferenceProcessor(processor, num_frames=4, max_pixels=4096).settings.max_pixels == 4096


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_a_pixel_budget_below_one_merged_patch_is_refused_naming_the_minimum(family):
    """p6 b/f26: `max_pixels: 20` (or 200, written as if it were tokens) was below the smallest frame a Qwen
    processor makes (one merged patch: 8x8 = 64 pixels on the tiny one, 28x28 on the real checkpoints): frames came
    out at that floor while the settings recorded 20. Now refused, naming `max_pixels` and the minimum."""
    _, hf_processor = build_tiny_model(family)
    with pytest.raises(VideoSettingsError, match=r"max_pixels=20 is below .* at least 64 \(pixels per frame"):
        VideoPreferenceProcessor(hf_processor, num_frames=4, max_pixels=20)
    assert VideoPreferenceProcessor(hf_processor, num_frames=4, max_pixels=64).settings.max_pixels == 64
