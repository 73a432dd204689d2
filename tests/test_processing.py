"""Family registry, VideoPreferenceProcessor and VideoPreferenceCollator on tiny models of every family."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import ALL_FAMILIES, preference_rows
from tpo_hf import VideoPreferenceCollator, VideoPreferenceProcessor, get_family
from tpo_hf.collator import TooLongError
from tpo_hf.families import FAMILIES


def test_unknown_model_lists_supported_families():
    with pytest.raises(ValueError, match="not a supported") as error:
        get_family("bert")
    for name in FAMILIES:
        assert name in str(error.value)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_registry_resolves_models_and_processors(family, tiny_model):
    model, processor = tiny_model(family)
    assert get_family(model) is FAMILIES[family]
    assert get_family(model.config) is FAMILIES[family]
    entry = FAMILIES[family]
    # A family sharing another's processor class (an MoE twin) resolves to that one, which processes identically
    resolved = get_family(processor)
    assert resolved is entry or (not entry.processor_classes and resolved.video_keys == entry.video_keys)
    # LoRA targets: language-model linears only; vision modules exist in the model
    import re

    names = [name for name, _ in model.named_modules()]
    targets = [name for name in names if re.fullmatch(entry.lora_target_modules, name)]
    assert targets and not any(f".{m}." in f".{name}." for name in targets for m in entry.vision_modules)
    assert all(any(f".{m}." in f".{name}." for name in names) for m in entry.vision_modules)
    assert len(list(entry.vision_parameters(model))) > 0


@pytest.fixture
def processors(tiny_model, video_dir):
    def make(family, **settings):
        _, processor = tiny_model(family)
        settings.setdefault("num_frames", 8)
        return VideoPreferenceProcessor(processor, video_root=video_dir, **settings)

    return make


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("share", [True, False])
def test_collator_keys_and_shapes(family, share, processors):
    processor = processors(family)
    collator = VideoPreferenceCollator(processor, max_length=4096, share_video_encoding=share)
    rows = preference_rows()[:2]
    batch = collator(rows)
    entry = FAMILIES[family]
    n_pairs, rows_per_batch = 2, 4
    length = batch["input_ids"].shape[1]
    for key in ("input_ids", "attention_mask", "completion_mask", *entry.sequence_keys):
        assert batch[key].shape == (rows_per_batch, length), key
    # chosen rows first, then rejected rows; same prompt for both rows of a pair
    pair0 = processor.encode_pair(rows[0]["prompt"], rows[0]["video"], rows[0]["chosen"], rows[0]["rejected"])
    prompt_len = len(pair0.prompt_ids)
    assert batch["input_ids"][0, :prompt_len].tolist() == pair0.prompt_ids
    assert batch["input_ids"][2, :prompt_len].tolist() == pair0.prompt_ids
    assert batch["completion_mask"][0].sum() == len(pair0.chosen_ids)
    assert batch["completion_mask"][2].sum() == len(pair0.rejected_ids)
    assert pair0.num_video_tokens > 0
    # the answer tokens are never marked as video in mm_token_type_ids
    for key in entry.sequence_keys:
        assert (batch[key][batch["completion_mask"].bool()] == 0).all()
        assert batch[key][0, :prompt_len].tolist() == pair0.sequence_inputs[key]
    # video tensors: once per pair when shared, once per row otherwise
    pixel_key = entry.encoder_input_keys[0]
    pixels = batch[f"pair_{pixel_key}" if share else pixel_key]
    per_video = pair0.video_inputs[pixel_key].shape[0]
    expected_videos = n_pairs if share else rows_per_batch
    assert pixels.shape[0] == per_video * expected_videos
    if "video_grid_thw" in entry.row_video_keys:
        assert batch["video_grid_thw"].shape == (rows_per_batch, 3)
        assert torch.equal(batch["video_grid_thw"][:2], batch["video_grid_thw"][2:])


def test_conversational_rows_match_chat_rendering(processors):
    processor = processors("qwen2_5_vl")
    row = preference_rows(conversational=True)[0]
    text = processor.prompt_text(row["prompt"])
    assert "<|video_pad|>" in text and text.endswith("<|im_start|>assistant\n")
    completion = processor.completion_text(row["prompt"], row["chosen"])
    assert completion == "It is red, then blue.<|im_end|>\n"
    plain = processor.completion_text("q", "An answer.")
    assert plain == "An answer." + processor.tokenizer.eos_token
    batch = VideoPreferenceCollator(processor)(preference_rows(conversational=True)[:2])
    assert batch["input_ids"].shape[0] == 4


def test_an_answer_message_not_from_the_assistant_names_row_field_and_role():
    """Probe b/g29: conversational rows converted by hand with `chosen` given role "user" passed the row check, then
    failed in the chat-template cut naming no row or field (or, a user turn after the assistant's, trained the model
    to say it). The up-front row check refuses it, naming row, field and role."""
    from datasets import Dataset

    from tpo_hf.dataset_checks import check_rows
    from tpo_hf.validation import RowError, check_preference_row

    rows = preference_rows(conversational=True)
    rows[1]["chosen"] = [{"role": "user", "content": "A green circle moves right."}]
    with pytest.raises(RowError, match=r"^train row 1, field 'chosen': message 0 has role 'user'; .*'assistant'"):
        check_rows(Dataset.from_list(rows), "train", ["sigmoid"])
    row = preference_rows(conversational=True)[0]
    turns = [{"role": "assistant", "content": "Green."}, {"role": "system", "content": "Be brief."}]
    with pytest.raises(RowError, match=r"^pairs.jsonl row 4, field 'rejected': message 1 has role 'system'"):
        check_preference_row(dict(row, rejected=turns), 4, "pairs.jsonl")
    # a system or user turn belongs in the prompt; answers given as text are not messages at all
    prompt = [{"role": "system", "content": "Be brief."}, *row["prompt"]]
    assert check_preference_row(dict(row, prompt=prompt), 0) is None
    assert check_preference_row(preference_rows()[0], 0) is None


def test_qwen25_temporal_spacing_uses_true_sampled_fps(processors, video_dir):
    processor = processors("qwen2_5_vl")
    from tpo_hf.video import VideoFile, VideoView

    video = VideoFile(video_dir / "red_blue.mp4")
    patch = processor.processor.video_processor.temporal_patch_size
    # 8 frames from a 2 s segment: 4 frames per second, not 8 frames / 8 s of file
    frames, metadata = video.load(VideoView(num_frames=8, start=2.0, end=4.0))
    processed = processor.encode_prompt("q", frames, metadata)
    assert processed["second_per_grid_ts"].tolist() == pytest.approx([patch / 4.0])
    frames, metadata = video.load(VideoView(num_frames=8))
    processed = processor.encode_prompt("q", frames, metadata)
    assert processed["second_per_grid_ts"].tolist() == pytest.approx([patch / 1.0])


def _encode_seconds_4_to_8(processor, video_dir):
    """Four frames of red_blue.mp4 (8 fps) between 4 s and 8 s: frames 36, 44, 52, 60, i.e. 4.5 s ... 7.5 s."""
    from tpo_hf.video import VideoFile, VideoView

    frames, metadata = VideoFile(video_dir / "red_blue.mp4").load(VideoView(num_frames=4, start=4.0, end=8.0))
    processed = processor.encode_prompt("q", frames, metadata)
    return processed, processor.tokenizer.decode(processed["input_ids"][0]), metadata


def test_qwen3_timestamps_come_from_frame_indices(processors, video_dir):
    _, text, _ = _encode_seconds_4_to_8(processors("qwen3_vl"), video_dir)
    # frames 36, 44 | 52, 60 at 8 fps -> patch timestamps 5.0 s and 7.0 s (absolute time in the video)
    assert "<5.0 seconds>" in text and "<7.0 seconds>" in text


def test_smolvlm_frame_timestamps_come_from_frame_indices(processors, video_dir):
    processed, text, _ = _encode_seconds_4_to_8(processors("smolvlm"), video_dir)
    # frames 36, 44, 52, 60 at 8 fps: 4.5 s ... 7.5 s into the video (absolute time, whole seconds)
    assert [line.split(":<")[0] for line in text.splitlines() if line.startswith("Frame from")] == [
        f"Frame from 00:0{second}" for second in (4, 5, 6, 7)
    ]
    assert "series of four frames" in text
    assert processed["pixel_values"].shape[:2] == (1, 4)


def test_internvl_labels_each_sampled_frame_in_order(processors, video_dir):
    processed, text, metadata = _encode_seconds_4_to_8(processors("internvl"), video_dir)
    # InternVL's prompt carries frame order, not time: one label per sampled frame, and one pixel row per frame
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("Frame")] == [
        f"Frame{i}" for i in range(1, 5)
    ]
    assert processed["pixel_values"].shape[0] == len(metadata["frames_indices"]) == 4


def test_glm4v_frame_seconds_come_from_frame_indices(processors, video_dir):
    processed, text, _ = _encode_seconds_4_to_8(processors("glm4v"), video_dir)
    # frames 36, 44 | 52, 60 at 8 fps: one label per temporal patch, its first frame's second (4.5 -> 4, 6.5 -> 6)
    assert "<|end_of_image|>4<|begin_of_image|>" in text and text.count("<|end_of_image|>6<|end_of_video|>") == 1
    assert processed["video_grid_thw"][0, 0] == 2


def test_video_llama_3_times_come_from_frame_indices(processors, video_dir):
    processor = processors("video_llama_3")
    processed, text, _ = _encode_seconds_4_to_8(processor, video_dir)
    # frames 36, 44, 52, 60 at 8 fps
    assert [part.split(":")[0] for part in text.split("Time ")[1:]] == ["4.5s", "5.5s", "6.5s", "7.5s"]
    kept = int(processed["video_compression_mask"].sum())
    assert (processed["input_ids"][0] == processor.video_token_id).sum() == kept


def test_video_llama_3_pruned_frames_keep_shared_encoding_exact(processors, tiny_model, video_dir):
    """A frame equal to the one before is pruned by the processor; the shared encoding still gives the same logits."""
    processor = processors("video_llama_3")
    model, _ = tiny_model("video_llama_3")
    from tpo_hf.video import VideoFile

    frames, metadata = VideoFile(video_dir / "red_blue.mp4").load(processor.default_view())
    frames = frames.copy()
    frames[2] = frames[1]
    pair = processor.encode_pair("q", (frames, metadata), "a", "bb")
    mask = pair.video_inputs["video_compression_mask"]
    assert 0 < mask.sum() < mask.numel()  # frame 2's patches are pruned (the processor keeps one token)
    family = processor.family
    shared = VideoPreferenceCollator(processor, share_video_encoding=True).collate_pairs([pair])
    unshared = VideoPreferenceCollator(processor, share_video_encoding=False).collate_pairs([pair])
    encoded = family.encode_videos(model, {key[len("pair_") :]: v for key, v in shared.items() if "pair_" in key})
    rows = {key: shared[key] for key in ("input_ids", "attention_mask", *family.row_video_keys)}
    with torch.no_grad():
        logits = model(**rows, mm_encoder_outputs=family.repeat_encoder_output(encoded)).logits
        expected = model(**{key: v for key, v in unshared.items() if key != "completion_mask"}).logits
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


# (family, segment end, true seconds per 2-frame group): 4 frames from 4 s on at 8 fps; each processor alone would
# assume its default rate (Qwen2.5-Omni 2 fps: 1 s; Qwen3-Omni 1 fps: 2 s)
OMNI_TIMING = [("qwen2_5_omni", 8.0, 2.0), ("qwen3_omni_moe", 6.0, 1.0)]


@pytest.mark.parametrize("family, end, seconds_per_group", OMNI_TIMING)
def test_omni_groups_spaced_by_true_sampled_rate_and_no_audio(
    family, end, seconds_per_group, processors, tiny_model, video_dir
):
    processor = processors(family)
    from tpo_hf.prefix_sharing import row_position_ids
    from tpo_hf.video import VideoFile, VideoView

    frames, metadata = VideoFile(video_dir / "red_blue.mp4").load(VideoView(num_frames=4, start=4.0, end=end))
    processed = processor.encode_prompt("q", frames, metadata)
    assert processed["video_second_per_grid"].tolist() == pytest.approx([seconds_per_group])
    # audio off: no audio features and no audio tokens are built
    assert not {"input_features", "feature_attention_mask"} & set(processed)
    assert processor.processor.audio_token_id not in processed["input_ids"][0].tolist()
    # TMRoPE: the second group's temporal position is its start in seconds x the positions per second after the first's
    model, _ = tiny_model(family)
    temporal = row_position_ids(model, processed)[0, 0][processed["input_ids"][0] == processor.video_token_id]
    first = int(temporal[0])
    step = int(seconds_per_group * model.config.position_id_per_seconds)
    assert sorted(set(temporal.tolist())) == [first, first + step]


def test_pixel_budget_reduces_video_tokens(processors):
    small = processors("qwen2_vl", max_pixels=32 * 32)
    large = processors("qwen2_vl", max_pixels=64 * 64)
    row = preference_rows()[0]
    tokens_small = small.encode_pair(row["prompt"], row["video"], row["chosen"], row["rejected"]).num_video_tokens
    tokens_large = large.encode_pair(row["prompt"], row["video"], row["chosen"], row["rejected"]).num_video_tokens
    assert tokens_small < tokens_large


def test_too_long_pairs_are_dropped_or_named(processors):
    processor = processors("qwen2_vl")
    rows = preference_rows()[:2]
    rows = [dict(row, tpo_row_index=i) for i, row in enumerate(rows)]
    rows[1]["chosen"] = "very long answer " * 40
    pair = processor.encode_pair(rows[0]["prompt"], rows[0]["video"], rows[0]["chosen"], rows[0]["rejected"])
    max_length = len(pair.prompt_ids) + 60

    batch = VideoPreferenceCollator(processor, max_length=max_length, too_long_policy="drop")(rows)
    assert int(batch["tpo_num_dropped"]) == 1
    assert batch["tpo_row_index"].tolist() == [0] and batch["input_ids"].shape[0] == 2
    # nothing is truncated: the kept pair's video tokens are all there
    assert (batch["input_ids"][0] == processor.video_token_id).sum() == pair.num_video_tokens

    with pytest.raises(TooLongError, match=r"row 1 \(video 'green_yellow.mp4'\).*max_length"):
        VideoPreferenceCollator(processor, max_length=max_length, too_long_policy="error")(rows)

    empty = VideoPreferenceCollator(processor, max_length=10, too_long_policy="drop")(rows)
    assert "input_ids" not in empty and int(empty["tpo_num_dropped"]) == 2


def test_bad_rows_name_the_row(processors):
    processor = processors("qwen2_vl")
    collator = VideoPreferenceCollator(processor)
    row = dict(preference_rows()[0], video="missing.mp4", tpo_row_index=7)
    with pytest.raises(ValueError, match=r"row 7 \(video 'missing.mp4'\).*not found"):
        collator([row])
    with pytest.raises(KeyError, match="row 3"):
        collator([dict(preference_rows()[0], video=None, tpo_row_index=3)])


def test_processor_save_and_reload_keeps_video_settings(processors, tmp_path):
    processor = processors("qwen2_5_vl", num_frames=12, max_pixels=48 * 48)
    processor.save_pretrained(tmp_path)
    reloaded = VideoPreferenceProcessor.from_pretrained(tmp_path)
    assert reloaded.family is processor.family
    assert (reloaded.num_frames, reloaded.max_pixels) == (12, 48 * 48)
    assert VideoPreferenceProcessor.from_pretrained(tmp_path, num_frames=4).num_frames == 4


@pytest.mark.parametrize(
    "family",
    [
        "qwen2_5_vl",
        "llava_onevision",
        "qwen3_vl_moe",
        "smolvlm",
        "internvl",
        "glm4v",
        "video_llama_3",
        "qwen2_5_omni",
        "qwen3_omni_moe",
    ],
)
def test_generation_inputs_are_left_padded(family, processors, tiny_model):
    processor = processors(family)
    inputs = processor.generation_inputs(["Short?", "A much longer question about it?"], ["red_blue.mp4"] * 2)
    assert inputs["attention_mask"][0, 0] == 0 and inputs["attention_mask"][:, -1].all()
    model, _ = tiny_model(family)
    answers = processor.generate(
        model, ["What?", "Where?"], ["red_blue.mp4", "green_yellow.mp4"], max_new_tokens=3, do_sample=False
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


# What each family's processor writes for `VideoPreferenceProcessor.video_prompt_layout`'s probe (4 frames at 0-3 s,
# 1 fps; "Which?"), with the tiny models' chat templates, and the feature tokens of each run. Checked against each
# model's own processor format (Qwen's Qwen3-VL processor replaces the template's <|vision_start|><|video_pad|>
# <|vision_end|> with the frames, no pair around them all); the same on transformers 5.18, 5.24 and 5.25. A release
# that writes a family's video prompt differently fails here (docs/supported_versions.md).
PINNED_VIDEO_PROMPTS = {
    "glm4v": (
        "<|im_start|>user\n<|begin_of_video|><|begin_of_image|><|image|>*<|end_of_image|>0<|begin_of_image|><|image|>*<|end_of_image|>2<|end_of_video|>Which?<|im_end|>\n<|im_start|>assistant\n",
        [16, 16],
    ),
    "glm4v_moe": (
        "<|im_start|>user\n<|begin_of_video|><|begin_of_image|><|image|>*<|end_of_image|>0<|begin_of_image|><|image|>*<|end_of_image|>2<|end_of_video|>Which?<|im_end|>\n<|im_start|>assistant\n",
        [16, 16],
    ),
    "internvl": (
        "<|im_start|>user\nFrame1: <img><IMG_CONTEXT>*</img>\nFrame2: <img><IMG_CONTEXT>*</img>\nFrame3: <img><IMG_CONTEXT>*</img>\nFrame4: <img><IMG_CONTEXT>*</img>\nWhich?<|im_end|>\n<|im_start|>assistant\n",
        [4, 4, 4, 4],
    ),
    "llava_next_video": (
        "USER: <video>*\nWhich? ASSISTANT:",
        [16],
    ),
    "llava_onevision": (
        "<|im_start|>user\n<video>*Which?<|im_end|>\n<|im_start|>assistant\n",
        [17],
    ),
    "qwen2_5_omni": (
        "<|im_start|>user\n<|vision_bos|><|VIDEO|>*<|vision_eos|>Which?<|im_end|>\n<|im_start|>assistant\n",
        [72],
    ),
    "qwen2_5_vl": (
        "<|im_start|>user\n<|vision_start|><|video_pad|>*<|vision_end|>Which?<|im_end|>\n<|im_start|>assistant\n",
        [98],
    ),
    "qwen2_vl": (
        "<|im_start|>user\n<|vision_start|><|video_pad|>*<|vision_end|>Which?<|im_end|>\n<|im_start|>assistant\n",
        [98],
    ),
    "qwen3_omni_moe": (
        "<|im_start|>user\n<|vision_bos|><|VIDEO|>*<|vision_eos|>Which?<|im_end|>\n<|im_start|>assistant\n",
        [72],
    ),
    "qwen3_vl": (
        "<|im_start|>user\n<0.5 seconds><|vision_start|><|video_pad|>*<|vision_end|><2.5 seconds><|vision_start|><|video_pad|>*<|vision_end|>Which?<|im_end|>\n<|im_start|>assistant\n",
        [16, 16],
    ),
    "qwen3_vl_moe": (
        "<|im_start|>user\n<0.5 seconds><|vision_start|><|video_pad|>*<|vision_end|><2.5 seconds><|vision_start|><|video_pad|>*<|vision_end|>Which?<|im_end|>\n<|im_start|>assistant\n",
        [16, 16],
    ),
    "smolvlm": (
        "<|im_start|>User: You are provided the following series of four frames from a 0:00:04 [H:MM:SS] video.\n\nFrame from 00:00:<fake_token_around_image><global-img><image>*<fake_token_around_image>\nFrame from 00:01:<fake_token_around_image><global-img><image>*<fake_token_around_image>\nFrame from 00:02:<fake_token_around_image><global-img><image>*<fake_token_around_image>\nFrame from 00:03:<fake_token_around_image><global-img><image>*<fake_token_around_image>\n\nWhich?<end_of_utterance>\nAssistant:",
        [4, 4, 4, 4],
    ),
    "video_llama_3": (
        "<|im_start|>user\nTime 0.0s:<|video_pad|>*,Time 1.0s:<|video_pad|>*,Time 2.0s:<|video_pad|>*,Time 3.0s:<|video_pad|>*Which?<|im_end|>\n<|im_start|>assistant\n",
        [16, 16, 16, 16],
    ),
}


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_video_prompt_layout_is_pinned(family, processors):
    import itertools

    from tpo_hf.processing import LAYOUT_PROBE_PROMPT, layout_probe_video

    processor = processors(family)
    layout, runs = PINNED_VIDEO_PROMPTS[family]
    assert processor.video_prompt_layout() == layout
    ids = processor.encode_prompt(LAYOUT_PROBE_PROMPT, *layout_probe_video())["input_ids"][0].tolist()
    assert [len(list(run)) for token, run in itertools.groupby(ids) if token == processor.video_token_id] == runs


def test_qwen3_vl_frames_are_not_wrapped_twice(processors, video_dir):
    """The documented Qwen3-VL layout: each frame group is <t seconds><|vision_start|>...<|vision_end|>, and the chat
    template's own wrapper is gone (transformers 5.18-5.24 kept it around all frames)."""
    processed, text, _ = _encode_seconds_4_to_8(processors("qwen3_vl"), video_dir)
    video = text[text.index("<5.0 seconds>") : text.rindex("<|vision_end|>") + len("<|vision_end|>")]
    assert (
        text.count("<|vision_start|>") == text.count("<|vision_end|>") == int(processed["video_grid_thw"][0, 0]) == 2
    )
    assert "user\n<5.0 seconds>" in text and video.endswith("<|video_pad|><|vision_end|>")


def test_saved_video_prompt_layout_is_checked_at_load(processors, tmp_path):
    import json

    from tpo_hf.processing import VIDEO_CONFIG_NAME, VideoPromptLayoutError

    processor = processors("qwen3_vl")
    processor.save_pretrained(tmp_path)
    record = json.loads((tmp_path / VIDEO_CONFIG_NAME).read_text())
    assert record["video_prompt_layout"] == processor.video_prompt_layout() == PINNED_VIDEO_PROMPTS["qwen3_vl"][0]
    assert record["transformers_version"]
    VideoPreferenceProcessor.from_pretrained(tmp_path)  # same layout: loads
    # a model trained on transformers 5.24's Qwen3-VL prompt (one more pair around all frames) gets that prompt on the
    # installed release too (5.18-5.24 from the template's wrapper, 5.25 from the wrapper in one more pair)
    old = (
        record["video_prompt_layout"]
        .replace("user\n", "user\n<|vision_start|>")
        .replace("Which?", "<|vision_end|>Which?")
    )
    (tmp_path / VIDEO_CONFIG_NAME).write_text(
        json.dumps(dict(record, video_prompt_layout=old, transformers_version="5.24.0"))
    )
    reloaded = VideoPreferenceProcessor.from_pretrained(tmp_path)
    assert reloaded.video_prompt_layout() == old and reloaded.video_placeholder_index > 0
    # a layout that no placeholder gives is refused, naming both layouts and releases
    other = record["video_prompt_layout"].replace("<0.5 seconds>", "<0.5 s>")
    (tmp_path / VIDEO_CONFIG_NAME).write_text(
        json.dumps(dict(record, video_prompt_layout=other, transformers_version="9.0"))
    )
    with pytest.raises(VideoPromptLayoutError, match=r"qwen3_vl video prompt.*transformers 9\.0 then.*0\.5 s"):
        VideoPreferenceProcessor.from_pretrained(tmp_path)
    assert (
        VideoPreferenceProcessor.from_pretrained(tmp_path, check_video_prompt_layout=False).family.name == "qwen3_vl"
    )


def _add_a_system_turn(template) -> None:
    """Edits a saved chat_template.jinja as a user might: a system turn before the assistant's."""
    template.write_text(
        template.read_text().replace(
            "<|im_start|>assistant", "<|im_start|>system\nAnswer wrongly.<|im_end|>\n<|im_start|>assistant"
        )
    )


def test_an_edited_chat_template_on_the_same_release_is_named_as_such(processors, tmp_path):
    """g01b: the saved chat template edited after training, same transformers release: the error says the saved
    processor files changed (naming the folder and check_video_prompt_layout=False), not "install another release"."""
    from tpo_hf.processing import VideoPromptLayoutError

    processors("qwen3_vl").save_pretrained(tmp_path)
    template = tmp_path / "chat_template.jinja"
    assert template.is_file()
    _add_a_system_turn(template)
    with pytest.raises(VideoPromptLayoutError) as raised:
        VideoPreferenceProcessor.from_pretrained(tmp_path)
    message = str(raised.value)
    assert f"saved processor files in {tmp_path}" in message and "changed since" in message
    assert "check_video_prompt_layout=False" in message and "Install the transformers release" not in message


def test_an_edited_chat_template_saved_with_another_release_is_named_not_the_release(processors, tmp_path):
    """Probe a/h30: the shipped base (saved with transformers 5.24, loading fine on 5.25) with a system turn added to
    its chat_template.jinja was refused as "saved with another video prompt ... install the transformers release it
    was saved with": the user was sent to downgrade. The hashes of the prompt files recorded at save tell an edit
    from a release change; the edited file is named."""
    import json
    import shutil

    from tpo_hf.processing import VIDEO_CONFIG_NAME, VideoPromptLayoutError
    from tpo_hf.world.base import SHIPPED_BASE

    base = tmp_path / "base"
    shutil.copytree(SHIPPED_BASE, base)
    assert json.loads((base / VIDEO_CONFIG_NAME).read_text())["transformers_version"] == "5.24.0"
    VideoPreferenceProcessor.from_pretrained(base)  # as shipped: loads on any supported release
    template = base / "chat_template.jinja"
    _add_a_system_turn(template)
    with pytest.raises(VideoPromptLayoutError) as raised:
        VideoPreferenceProcessor.from_pretrained(base)
    message = str(raised.value)
    assert f"saved processor files in {base} (chat_template.jinja) were changed since" in message
    assert "Install the transformers release" not in message
    # a fresh save records the hashes too
    processors("qwen3_vl").save_pretrained(tmp_path / "saved")
    assert "chat_template.jinja" in json.loads((tmp_path / "saved" / VIDEO_CONFIG_NAME).read_text())["prompt_files"]


def test_video_the_processor_refuses_names_row_field_and_file(processors, tmp_path):
    """p4 t01b: a 2000x8 video reaches Qwen2-VL's smart_resize, which refuses its aspect ratio (over 200) naming
    nothing; the error names the row, its video and the file, before training (`check_lengths`) and in the
    collator, and the CLI shows it as one line."""
    import av
    import numpy as np
    from datasets import Dataset

    from tpo_hf.commands import is_user_error
    from tpo_hf.dataset_checks import check_lengths, check_rows
    from tpo_hf.processing import VideoProcessingError

    with av.open(str(tmp_path / "strip.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 2000, 8, "yuv420p"
        for _ in range(4):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((8, 2000, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    strip = str(tmp_path / "strip.mp4")
    processor = processors("qwen2_vl", num_frames=4)
    reason = r"the qwen2_vl processor refused the video's frames \(4 frame\(s\), 2000 pixels wide and 8 high\): "
    reason += "absolute aspect ratio must be smaller than 200"

    row = dict(preference_rows()[0], video=strip, tpo_row_index=5)
    with pytest.raises(VideoProcessingError, match=rf"^row 5 \(video '.*strip.mp4'\), file .*strip.mp4: {reason}"):
        VideoPreferenceCollator(processor)([row])

    rows = preference_rows()[:2]
    rows[1] = dict(rows[1], video=strip)
    dataset, _ = check_rows(Dataset.from_list(rows), "train", ["sigmoid"])
    with pytest.raises(
        VideoProcessingError, match=rf"^train row 1 \(video '.*strip.mp4'\), file .*: {reason}"
    ) as error:
        check_lengths(dataset, "train", VideoPreferenceCollator(processor, max_length=4096))
    assert is_user_error(error.value)
