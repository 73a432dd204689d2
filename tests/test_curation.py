"""Curation mechanics: segments and views, reply parsing, mix and size, the shard pipeline with the judge, the
dataset card, training on the curated data, and the HTTP backend against a real `transformers serve`."""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tpo_hf.curation import (
    BackendError,
    Backends,
    CurationConfig,
    GenerationBackend,
    GenerationRequest,
    OpenAIBackend,
    SegmentSpec,
    TransformersBackend,
    choose_segments,
    comprehensive_views,
    curate_shard,
    list_videos,
    localized_views,
    parse_judge_reply,
    parse_question_reply,
    run_curation,
    video_seed,
)
from tpo_hf.curation.dataset_card import render_dataset_card
from tpo_hf.curation.mixing import chosen_option, mix_and_size
from tpo_hf.curation.prompts import TASK_TYPES, question_prompt
from tpo_hf.synthetic import read_frame_stamp
from tpo_hf.tiny import save_tiny_model, save_tiny_text_model
from tpo_hf.video import VideoFile
from tpo_hf.video_settings import VideoSettings

TINY = dict(
    num_frames=8,
    sparse_num_frames=4,
    caption_max_new_tokens=8,
    question_max_new_tokens=8,
    answer_max_new_tokens=8,
    judge_max_new_tokens=8,
    progress=False,
)


# --- segments and views -------------------------------------------------------------------------------------------
def test_segments_bounded_seeded_and_per_video():
    spec = SegmentSpec(fraction=0.25, min_seconds=1.0, edge_margin=0.1)
    for duration in (5.0, 8.0, 60.0, 3600.0):
        for video_id in ("a.mp4", "b.mp4"):
            rng = random.Random(video_seed(video_id, 7))
            segments = choose_segments(duration, spec, 3, rng)
            assert len(segments) == 3
            for start, end in segments:
                assert 0.1 * duration - 1e-3 <= start < end <= 0.9 * duration + 1e-3
                assert end - start == pytest.approx(max(0.25 * duration, 1.0), abs=2e-3)
    same = [choose_segments(60, spec, 2, random.Random(video_seed("a.mp4", 7))) for _ in range(2)]
    assert same[0] == same[1]
    assert choose_segments(60, spec, 2, random.Random(video_seed("b.mp4", 7))) != same[0]
    assert choose_segments(60, spec, 2, random.Random(video_seed("a.mp4", 8))) != same[0]
    # seconds take precedence over the fraction; a video too short for the segment yields none
    assert all(
        e - s == pytest.approx(2.0, abs=2e-3)
        for s, e in choose_segments(60, SegmentSpec(seconds=2.0), 2, random.Random(0))
    )
    assert choose_segments(1.5, SegmentSpec(seconds=2.0), 2, random.Random(0)) == []
    with pytest.raises(ValueError, match="segment_fraction"):
        SegmentSpec(fraction=1.5)


def test_localized_views_frames_inside_and_outside_segment(video_dir):
    video = VideoFile(video_dir / "red_blue.mp4")
    segment = (2.5, 5.0)
    views = localized_views(segment, VideoSettings(num_frames=8))
    sparse = comprehensive_views(VideoSettings(num_frames=8), sparse_num_frames=3)
    decoded = video.load_views({**views, **{f"c/{k}": v for k, v in sparse.items()}})
    preferred_frames, preferred = decoded["preferred"]
    rejected_frames, rejected = decoded["rejected"]
    fps = video.fps
    assert len(preferred["frames_indices"]) == len(rejected["frames_indices"]) == 8
    assert all(segment[0] <= i / fps < segment[1] for i in preferred["frames_indices"])
    assert all(not segment[0] <= i / fps < segment[1] for i in rejected["frames_indices"])
    # the pixels really are those frames (each frame carries its index as a stamp)
    assert [read_frame_stamp(f) for f in preferred_frames] == preferred["frames_indices"]
    assert [read_frame_stamp(f) for f in rejected_frames] == rejected["frames_indices"]
    assert len(decoded["c/rejected"][0]) == 3 and len(decoded["c/preferred"][0]) == 8
    # decode once: every frame of the four views decoded exactly once
    union = {i for _, meta in decoded.values() for i in meta["frames_indices"]}
    assert video.frames_decoded == len(union)


def test_views_sample_at_a_rate_when_num_frames_is_none(video_dir):
    """Curation samples its views with the same settings as training: a rate and its cap as well as a count."""
    video = VideoFile(video_dir / "red_blue.mp4")  # 8 s at 8 fps
    settings = VideoSettings(num_frames=None, video_fps=2.0, max_frames=5)
    localized = localized_views((0.0, 2.0), settings)
    comprehensive = comprehensive_views(settings, sparse_num_frames=2)
    assert len(video.frame_indices(localized["preferred"])) == 4  # 2 s at 2 fps
    assert len(video.frame_indices(localized["rejected"])) == 5  # 6 s at 2 fps, capped at max_frames
    assert len(video.frame_indices(comprehensive["preferred"])) == 5
    assert len(video.frame_indices(comprehensive["rejected"])) == 2


# --- parsing ------------------------------------------------------------------------------------------------------
QUESTION_REPLIES = [
    ("Question: What colour is the square?\nAnswer: Red.", "ok", "What colour is the square?", "Red."),
    (
        "**Question:** Why does the circle move left?\n**Answer:** Because it bounces.",
        "ok",
        "Why does the circle move left?",
        "Because it bounces.",
    ),
    (
        "Sure! Here it is.\n\nQ: What happens first?\nA: A red square appears.",
        "ok",
        "What happens first?",
        "A red square appears.",
    ),
    ('{"question": "How many shapes appear?", "answer": "Two"}', "ok", "How many shapes appear?", "Two"),
    (
        '```json\n{"Question": "Where is the circle?", "Answer": "On the left"}\n```',
        "ok",
        "Where is the circle?",
        "On the left",
    ),
    ("Question 1: What moves to the right?\nAnswer 1: The square", "ok", "What moves to the right?", "The square"),
    ("Question:\nWhat is shown at the end?\nAnswer: A blue circle.", "ok", "What is shown at the end?", None),
    ("What is the colour of the background?", "ok", "What is the colour of the background?", None),
    ("None", "none", None, None),
    ("none.", "none", None, None),
    ("**None**", "none", None, None),
    ("N/A", "none", None, None),
    ("Question: None", "none", None, None),
    ('{"question": null}', "none", None, None),
    ("", "unparseable", None, None),
    (None, "unparseable", None, None),
    ("\x1e~�|gU", "unparseable", None, None),
    ("The caption describes a red square moving.\nIt is nice.", "unparseable", None, None),
    ("Question: ?", "unparseable", None, None),
    ("{not json", "unparseable", None, None),
    ('{"answer": "no question here"}', "unparseable", None, None),
]


@pytest.mark.parametrize("reply,status,question,answer", QUESTION_REPLIES)
def test_parse_question_reply(reply, status, question, answer):
    parsed = parse_question_reply(reply)
    assert parsed.status == status
    if question is not None:
        assert parsed.question == question
    if answer is not None:
        assert parsed.answer == answer


JUDGE_REPLIES = [
    ("1. Yes\n2. No\n3. Yes\nReason: consistent.", (True, False, True), None),
    ("1) yes\n2) no\n3) yes", (True, False, True), None),
    ("1. No\n2. No\n3. Yes", (False, False, True), "judge_not_better"),
    ("1. Yes\n2. Yes\n3. Yes", (True, True, True), "judge_contradiction_or_ambiguous"),
    ("1. Yes\n2. No\n3. No", (True, False, False), "judge_incorrect"),
    (
        "1. Is Answer 1 better than Answer 2? Yes\n2. Does it contradict? No\n3. Is it correct? Yes",
        (True, False, True),
        None,
    ),
    ("**1.** Yes\n**2.** No\n**3.** Yes", (True, False, True), None),
    ('{"better": "yes", "contradiction": "no", "correct": "yes", "reason": "fine"}', (True, False, True), None),
    ('{"check1": true, "check2": false, "check3": false}', (True, False, False), "judge_incorrect"),
    ("Yes, No, Yes", (True, False, True), None),
    ("Yes\nNo\nYes", (True, False, True), None),
    ("1. Yes\n2. No", (True, False, None), "judge_unparseable"),
    ("1. Maybe\n2. No\n3. Yes", (None, False, True), "judge_unparseable"),
    ("I think answer one is better overall.", (None, None, None), "judge_unparseable"),
    ("", (None, None, None), "judge_empty"),
    (None, (None, None, None), "judge_empty"),
    ("\x1e~�|gU", (None, None, None), "judge_unparseable"),
]


@pytest.mark.parametrize("reply,verdicts,drop_reason", JUDGE_REPLIES)
def test_parse_judge_reply(reply, verdicts, drop_reason):
    verdict = parse_judge_reply(reply)
    assert (verdict.better, verdict.contradiction, verdict.correct) == verdicts
    assert verdict.drop_reason() == drop_reason
    assert verdict.passed == (drop_reason is None)


def test_question_prompts_cover_paper_task_types():
    assert set(TASK_TYPES) == {
        "temporal",
        "action",
        "causal_reasoning",
        "information_extraction",
        "descriptive",
        "summarization",
        "object",
        "spatial_reasoning",
    }
    for task in TASK_TYPES:
        prompt = question_prompt("A red square moves right.", task)
        assert TASK_TYPES[task] in prompt and "None" in prompt and "A red square moves right." in prompt
    with pytest.raises(ValueError, match="Unknown task type"):
        question_prompt("x", "poetry")


# --- mix and size -------------------------------------------------------------------------------------------------
def _records(localized: int, comprehensive: int) -> list[dict]:
    rows = [{"video": f"v{i}.mp4", "prompt": f"q{i}", "granularity": "localized"} for i in range(localized)]
    rows += [{"video": f"v{i}.mp4", "prompt": f"Q {i}", "granularity": "comprehensive"} for i in range(comprehensive)]
    return rows


def _config(tmp_path, **kwargs) -> CurationConfig:
    return CurationConfig(video_dir=str(tmp_path), video_model="unused", output_dir=str(tmp_path / "out"), **kwargs)


@pytest.mark.parametrize(
    "localized,comprehensive,ratio,target,expected",
    [
        (10, 10, "5:5", None, (10, 10)),
        (10, 4, "5:5", None, (4, 4)),
        (10, 10, "7:3", None, (10, 4)),
        (10, 10, "5:5", 6, (3, 3)),
        (10, 10, "7:3", 10, (7, 3)),
        (2, 10, "5:5", 10, (2, 5)),
        (5, 5, "1:0", None, (5, 0)),
    ],
)
def test_mix_ratio_and_size(tmp_path, localized, comprehensive, ratio, target, expected):
    config = _config(tmp_path, mix_ratio=ratio, target_size=target)
    chosen, counts = mix_and_size(_records(localized, comprehensive), config)
    got = Counter(r["granularity"] for r in chosen)
    assert (got["localized"], got["comprehensive"]) == expected
    assert counts["short_localized"] + counts["short_comprehensive"] == (
        0 if target is None else target - sum(expected)
    )
    again, _ = mix_and_size(_records(localized, comprehensive), config)
    assert again == chosen  # seeded


def test_mix_deduplicates(tmp_path):
    rows = _records(3, 3) + [{"video": "v0.mp4", "prompt": "  Q   0", "granularity": "comprehensive"}]
    chosen, counts = mix_and_size(rows, _config(tmp_path))
    assert counts["dropped_duplicate"] == 1 and len(chosen) == 6
    with pytest.raises(ValueError, match="mix_ratio"):
        _config(tmp_path, mix_ratio="half")


def _mcq(video: int, options: list[str], chosen: str, granularity: str = "comprehensive") -> dict:
    listed = "\n".join(f"{letter}. {text}" for letter, text in zip("ABCD", options))
    prompt = f"Which comes first, shape {video}?\n{listed}\nAnswer with the option's text."
    return {"video": f"v{video}.mp4", "prompt": prompt, "chosen": chosen, "granularity": granularity}


def test_chosen_option_reads_the_option_the_chosen_answer_names():
    assert chosen_option(_mcq(0, ["the red shape", "the blue shape"], "the blue shape")) == (2, "B")
    assert chosen_option(_mcq(0, ["red", "blue", "green", "cyan"], "C")) == (4, "C")
    assert chosen_option(_mcq(0, ["red", "blue"], "no idea")) is None  # names no option
    assert chosen_option({"prompt": "What happens?", "chosen": "A dog runs."}) is None  # open-ended


def test_mix_balances_the_chosen_options_of_multiple_choice_pairs(tmp_path):
    # 70 two-option pairs chose the first option and 30 the second (the model's lean, passed on by the judge); 40
    # four-option pairs are balanced already; 50 open-ended pairs have no options
    rows = [_mcq(i, ["the red shape", "the blue shape"], "the red shape") for i in range(70)]
    rows += [_mcq(100 + i, ["the red shape", "the blue shape"], "the blue shape") for i in range(30)]
    rows += [
        _mcq(200 + i, ["red", "blue", "green", "cyan"], ["red", "blue", "green", "cyan"][i % 4]) for i in range(40)
    ]
    rows += [{"video": f"w{i}.mp4", "prompt": f"q{i}", "chosen": "x", "granularity": "localized"} for i in range(50)]

    plain, plain_counts = mix_and_size(rows, _config(tmp_path, mix_ratio="0:1"))
    assert "dropped_by_option_balance" not in plain_counts  # off by default: the paper's curation
    assert Counter(chosen_option(r) for r in plain)[(2, "A")] == 70

    # 1:2 takes every pair that survives balancing: 50 localized, 100 comprehensive
    balanced, counts = mix_and_size(rows, _config(tmp_path, mix_ratio="1:2", balance_chosen_options=True))
    assert counts["dropped_by_option_balance"] == 40  # the first option's surplus, nothing else
    got = Counter(chosen_option(r) for r in balanced)
    assert got[(2, "A")] == got[(2, "B")] == 30
    assert all(got[(4, letter)] == 10 for letter in "ABCD") and got[None] == 50

    # a draw smaller than the pool stays balanced (a random draw from a balanced pool would not be, exactly)
    for target in (20, 41, 61):
        drawn, _ = mix_and_size(
            rows, _config(tmp_path, mix_ratio="0:1", target_size=target, balance_chosen_options=True)
        )
        assert len(drawn) == target
        for num_options in (2, 4):
            per_letter = [
                n for (k, _), n in Counter(filter(None, map(chosen_option, drawn))).items() if k == num_options
            ]
            assert max(per_letter) - min(per_letter) <= 1, (target, num_options, per_letter)
    again, _ = mix_and_size(rows, _config(tmp_path, mix_ratio="0:1", target_size=41, balance_chosen_options=True))
    assert (
        again == mix_and_size(rows, _config(tmp_path, mix_ratio="0:1", target_size=41, balance_chosen_options=True))[0]
    )


def test_option_balance_drops_a_group_whose_option_was_never_chosen(tmp_path):
    rows = [_mcq(i, ["the red shape", "the blue shape"], "the red shape") for i in range(5)]
    rows += [_mcq(10 + i, ["red", "blue", "green", "cyan"], "blue") for i in range(3)]
    rows += [_mcq(20 + i, ["red", "blue", "green", "cyan"], c) for i, c in enumerate(["red", "green", "cyan"])]
    balanced, counts = mix_and_size(rows, _config(tmp_path, mix_ratio="0:1", balance_chosen_options=True))
    # no pair chose "B" of the two-option questions: none of them can be kept balanced
    assert counts["dropped_by_option_balance"] == 5 + 2 and len(balanced) == 4
    assert Counter(chosen_option(r) for r in balanced) == {(4, letter): 1 for letter in "ABCD"}


def test_mix_draws_anchor_rows_apart_from_the_pairs(tmp_path):
    pairs = _records(20, 20)
    anchors = [
        _mcq(300 + i, ["red", "blue", "green", "cyan"], ["red", "blue", "green", "cyan"][i % 4]) for i in range(30)
    ]
    anchors += [dict(_mcq(300, ["red", "blue", "green", "cyan"], "red"))]  # repeats a (video, question)
    for row in anchors:
        row.update(anchor=True, rejected=row["chosen"])
    without, _ = mix_and_size(pairs + anchors, _config(tmp_path, target_size=20))
    assert not any(r.get("anchor") for r in without)  # anchor_ratio 0: none drawn, pairs drawn as before

    config = _config(tmp_path, target_size=20, anchor_ratio=0.5)
    drawn, counts = mix_and_size(pairs + anchors, config)
    drawn_pairs = [r for r in drawn if not r.get("anchor")]
    drawn_anchors = [r for r in drawn if r.get("anchor")]
    # the same pairs as without anchors (the anchors draw on their own stream), plus 0.5 anchors per pair
    assert sorted(map(str, drawn_pairs)) == sorted(map(str, without))
    assert len(drawn_anchors) == 10 and counts["anchors"] == 10 and counts["short_anchors"] == 0
    assert counts["dropped_duplicate_anchor"] == 1
    # every mix of a run draws the same anchors
    other, _ = mix_and_size(pairs + anchors, _config(tmp_path, target_size=20, anchor_ratio=0.5, mix_ratio="7:3"))
    assert sorted(map(str, (r for r in other if r.get("anchor")))) == sorted(map(str, drawn_anchors))
    # more than the pool holds: all of them, and the report says how many were missing
    _, counts = mix_and_size(pairs + anchors, _config(tmp_path, target_size=20, anchor_ratio=2.0))
    assert counts["anchors"] == 30 and counts["short_anchors"] == 10
    # balanced chosen options apply to anchors too
    lopsided = anchors[:28] + [dict(anchors[0], video=f"x{i}.mp4") for i in range(12)]  # 7 each, 12 more "red"
    balanced, counts = mix_and_size(
        pairs + lopsided, _config(tmp_path, target_size=20, anchor_ratio=0.6, balance_chosen_options=True)
    )
    letters = Counter(chosen_option(r) for r in balanced if r.get("anchor"))
    assert sum(letters.values()) == 12 and set(letters.values()) == {3}
    assert counts["anchors_dropped_by_option_balance"] == 12


def test_anchor_ratio_needs_the_judge_and_leaves_shards_of_runs_without_it_alone(tmp_path):
    assert "anchors" not in _config(tmp_path).fingerprint_fields()  # off: the key of earlier runs
    on = _config(tmp_path, anchor_ratio=0.25).fingerprint_fields()
    # whether shards hold anchor candidates is part of the key; how many the mix draws is not
    assert on["anchors"] is True and on == _config(tmp_path, anchor_ratio=0.5).fingerprint_fields()
    with pytest.raises(ValueError, match="anchor_ratio=0.25 needs the judge"):
        _config(tmp_path, anchor_ratio=0.25, use_judge=False)
    with pytest.raises(ValueError, match="anchor_ratio must be >= 0.0"):
        _config(tmp_path, anchor_ratio=-1.0)


# --- the pipeline with scripted question/judge models -------------------------------------------------------------
class ScriptedBackend(GenerationBackend):
    """Replies from a function of the prompt: stands in for an instruction-following LLM that tiny random models
    cannot imitate, so the pipeline's bookkeeping of good, declined and broken replies can be checked."""

    def __init__(self, reply, model_id="scripted"):
        self.reply, self.model_id, self.calls = reply, model_id, 0

    def generate(self, requests, max_new_tokens, seed=0):
        self.calls += len(requests)
        return [self.reply(r.prompt) for r in requests]


def _question_reply(prompt: str) -> str:
    for task, focus in TASK_TYPES.items():
        if focus in prompt:
            if task == "object":
                return "None"
            if task == "descriptive":
                return "garbled ~~"
            return f"Question: Which {task} detail does the clip show?\nAnswer: The {task} one."
    raise AssertionError(prompt)


def _judge_reply(prompt: str) -> str:
    return "1. No\n2. No\n3. Yes" if "temporal" in prompt else "1. Yes\n2. No\n3. Yes\nReason: fine."


@pytest.fixture(scope="module")
def tiny_backend():
    from tpo_hf.processing import VideoPreferenceProcessor
    from tpo_hf.tiny import build_tiny_model

    model, processor = build_tiny_model("qwen2_5_vl")
    return TransformersBackend.from_model(
        model, VideoPreferenceProcessor(processor, num_frames=8), "tiny-qwen", batch_size=8
    )


def test_curate_shard_records_verdicts_and_reasons(video_dir, tiny_backend, tmp_path):
    config = _config(video_dir, localized_per_video=3, comprehensive_per_video=3, seed=3, **TINY)
    items = list_videos(config)
    backends = Backends(tiny_backend, ScriptedBackend(_question_reply), ScriptedBackend(_judge_reply, "judge"))
    shard = curate_shard(items, backends, config)
    records = shard["records"]
    assert len(records) == 2 * 6 and not shard["skipped"]
    statuses = Counter(r["keep_reason"] for r in records)
    by_task = {r["task_type"]: r for r in records}
    for record in records:
        task = record["task_type"]
        if task == "object":
            assert record["keep_reason"] == "question_none" and not record["kept"]
        elif task == "descriptive":
            assert record["keep_reason"] == "question_unparseable"
        elif record["keep_reason"] not in ("identical_answers", "empty_answer"):
            assert record["judge_better"] is (task != "temporal")
            assert record["judge_contradiction"] is False and record["judge_correct"] is True
            assert record["keep_reason"] == ("judge_not_better" if task == "temporal" else "kept_judge_passed")
            assert record["kept"] == (task != "temporal")
            assert record["prompt"] == f"Which {task} detail does the clip show?"
            assert record["reference_answer"] == f"The {task} one."
        # frame indices of both views are recorded, and match the granularity's contrast
        fps = 8.0
        if record["granularity"] == "localized":
            start, end = record["segment_start"], record["segment_end"]
            assert all(start <= i / fps < end for i in record["chosen_frame_indices"])
            assert all(not start <= i / fps < end for i in record["rejected_frame_indices"])
        else:
            assert record["segment_start"] is None
            assert len(record["chosen_frame_indices"]) == 8 and len(record["rejected_frame_indices"]) == 4
    assert sum(statuses.values()) == len(records) and by_task
    assert shard["stats"]["question_ok"] + shard["stats"]["question_none"] + shard["stats"][
        "question_unparseable"
    ] == len(records)
    # deterministic: the same shard twice gives the same records
    again = curate_shard(items, backends, config)
    assert again["records"] == records


def test_existing_annotations_replace_generated_questions(video_dir, tiny_backend, tmp_path):
    from datasets import Dataset

    rows = [
        {
            "video": "red_blue.mp4",
            "caption": "A red square, then a blue circle.",
            "question": "What turns blue?",
            "answer": "The shape.",
        },
        {
            "video": "red_blue.mp4",
            "caption": "A red square, then a blue circle.",
            "question": "What is red?",
            "answer": "The square.",
        },
    ]
    data_file = tmp_path / "qa.jsonl"
    Dataset.from_list(rows).to_json(str(data_file))
    config = CurationConfig(
        dataset_name=str(data_file),
        video_root=str(video_dir),
        video_model="unused",
        output_dir=str(tmp_path / "out"),
        caption_column="caption",
        question_column="question",
        answer_column="answer",
        localized_per_video=1,
        use_judge=False,
        question_backend="template",
        **TINY,
    )
    items = list_videos(config)
    assert [i.video_id for i in items] == ["red_blue.mp4"] and len(items[0].questions) == 2
    question_llm = ScriptedBackend(_question_reply)
    shard = curate_shard(items, Backends(tiny_backend, None, None), config)
    comprehensive = [r for r in shard["records"] if r["granularity"] == "comprehensive"]
    assert [r["prompt"] for r in comprehensive] == ["What turns blue?", "What is red?"]
    assert all(r["question_source"] == "annotation" and r["caption_source"] == "annotation" for r in comprehensive)
    assert comprehensive[0]["caption"] == "A red square, then a blue circle."
    assert question_llm.calls == 0


def test_missing_and_broken_videos_are_skipped_or_fatal(video_dir, tiny_backend, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    os.link(video_dir / "red_blue.mp4", folder / "ok.mp4")
    (folder / "broken.mp4").write_bytes(b"not a video at all")
    config = _config(folder, use_judge=False, question_backend="template", **TINY)
    shard = curate_shard(list_videos(config), Backends(tiny_backend, None, None), config)
    assert [s["video"] for s in shard["skipped"]] == ["broken.mp4"]
    assert "broken.mp4" in shard["skipped"][0]["reason"]
    assert {r["video"] for r in shard["records"]} == {"ok.mp4"}
    config.on_video_error = "raise"
    with pytest.raises(ValueError, match="broken.mp4"):
        curate_shard(list_videos(config), Backends(tiny_backend, None, None), config)


# --- end to end in process: dataset on disk, card, training -------------------------------------------------------
def test_run_curation_card_and_training(video_dir, tiny_backend, tmp_path):
    from huggingface_hub import DatasetCard
    from peft import LoraConfig

    from tpo_hf import TPOTrainer
    from tpo_hf.data import default_video_root, load_preference_dataset

    output_dir = tmp_path / "curated"
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="tiny-qwen",
        output_dir=str(output_dir),
        localized_per_video=2,
        comprehensive_per_video=2,
        question_backend="template",
        judge_model="judge",
        pretty_name="Tiny TPO pairs",
        license="cc-by-4.0",
        mix_ratio="1:0",
        **TINY,
    )
    judge = ScriptedBackend(lambda p: "1. Yes\n2. No\n3. Yes" if "between" in p else "1. Yes\n2. Yes\n3. Yes")
    result = run_curation(config, Backends(tiny_backend, None, judge))
    dataset = load_preference_dataset(str(output_dir))
    assert dataset.to_list() == result.dataset.to_list() and len(dataset) > 0
    report = json.loads((output_dir / "curation_report.json").read_text())
    assert report["final"]["total"] == len(dataset)
    assert set(dataset["granularity"]) == {"localized"}  # mix 1:0; the judge also dropped every comprehensive pair
    assert report["drop_reasons"].get("judge_contradiction_or_ambiguous", 0) >= 1
    assert all(v.startswith("videos/") for v in dataset["video"])

    card = DatasetCard.load(output_dir / "README.md")
    assert card.data.license == "cc-by-4.0" and card.data.pretty_name == "Tiny TPO pairs"
    assert f"| **total** | **{len(dataset)}** |" in card.text
    for task, count in Counter(dataset["task_type"]).items():
        assert f"| {task} | {count} |" in card.text
    assert f"| localized | {len(dataset)} |" in card.text
    assert f"| judge pass rate | {report['judge']['passed']} |" in card.text
    rendered = render_dataset_card(result.dataset, report, config, repo_id="user/tiny", videos_included=True)
    assert "user/tiny" in str(rendered) and "under `videos/`" in str(rendered)

    from tpo_hf.tiny import build_tiny_model, tiny_tpo_config

    model, processor = build_tiny_model("qwen2_5_vl")
    args = tiny_tpo_config(tmp_path / "train", num_frames=8, video_root=default_video_root(str(output_dir)))
    trainer = TPOTrainer(
        model, args=args, train_dataset=dataset, processing_class=processor, peft_config=LoraConfig(r=4, lora_alpha=8)
    )
    trainer.train()
    assert any("loss" in entry for entry in trainer.state.log_history)


def test_transformers_backend_text_prompts(tiny_backend, tmp_path):
    replies = tiny_backend.generate([GenerationRequest("Write a question."), GenerationRequest("Hi")], 4)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    # a plain causal LM for the text roles: left-padded batches give the same greedy replies as one at a time
    model_dir = save_tiny_text_model(tmp_path / "tiny-lm")
    text_backend = TransformersBackend(str(model_dir), batch_size=4)
    assert not text_backend.is_video
    prompts = [GenerationRequest("a"), GenerationRequest("a much longer prompt than the first one")]
    batched = text_backend.generate(prompts, 6)
    single = [text_backend.generate([p], 6)[0] for p in prompts]
    assert batched == single
    with pytest.raises(BackendError, match="not a video-LMM"):
        text_backend.generate([GenerationRequest("x", (np.zeros((2, 8, 8, 3), np.uint8), {}))], 2)


# --- the HTTP backend against a real `transformers serve` ---------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served_model(tmp_path_factory):
    """A real `transformers serve` on loopback; it loads the model a request names, here one of two tiny model
    directories written here: a text LM (yielded) and a video-LMM (`tiny-vl` beside it, see `served_video_model`)."""
    from transformers.utils.import_utils import is_serve_available

    if not is_serve_available():
        pytest.skip("transformers serve needs `transformers[serving]` (fastapi, uvicorn, openai)")
    model_dir = save_tiny_text_model(tmp_path_factory.mktemp("served") / "tiny-lm")
    save_tiny_model(model_dir.parent / "tiny-vl", "qwen2_5_vl")
    port = _free_port()
    log = open(model_dir.parent / "serve.log", "w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300  # a loaded 2-core CI machine can take minutes to import torch and start
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"transformers serve did not start: {(model_dir.parent / 'serve.log').read_text()}")
            time.sleep(0.5)
        yield url, str(model_dir)
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def online(monkeypatch):
    """conftest sets HF_HUB_OFFLINE; huggingface_hub then refuses all HTTP, loopback included."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def test_openai_backend_refuses_offline_mode_clearly(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackendError, match="HF_HUB_OFFLINE"):
        OpenAIBackend("m", base_url="http://127.0.0.1:1")


def test_openai_backend_against_transformers_serve(served_model, video_dir, tmp_path, online):
    url, model_id = served_model
    backend = OpenAIBackend(model_id, base_url=url + "/v1", timeout=60, max_retries=1, max_concurrency=2)
    requests = [GenerationRequest(f"Prompt number {i}") for i in range(3)]
    replies = backend.generate(requests, max_new_tokens=6)
    assert len(replies) == 3 and all(isinstance(r, str) and r for r in replies)
    assert backend.generate(requests[:1], max_new_tokens=6) == replies[:1]  # greedy: same reply again

    # the question role served over HTTP inside a curation run: gibberish replies are counted, never fatal
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="tiny-qwen",
        question_model=model_id,
        question_backend="openai",
        question_base_url=url,
        use_judge=False,
        output_dir=str(tmp_path / "out"),
        **TINY,
    )
    from tpo_hf.processing import VideoPreferenceProcessor
    from tpo_hf.tiny import build_tiny_model

    model, processor = build_tiny_model("qwen2_5_vl")
    video = TransformersBackend.from_model(model, VideoPreferenceProcessor(processor, num_frames=8))
    question = OpenAIBackend(model_id, base_url=url)
    shard = curate_shard(list_videos(config)[:1], Backends(video, question, None), config)
    stats = shard["stats"]
    assert stats["requests_question"] == 2
    assert stats.get("question_ok", 0) + stats.get("question_none", 0) + stats.get("question_unparseable", 0) == 2


@pytest.fixture(scope="module")
def served_video_model(served_model):
    url, text_model = served_model
    return url, str(Path(text_model).parent / "tiny-vl")


def test_openai_backend_sends_video_as_mp4_of_the_sampled_frames(video_dir, tmp_path, online):
    """The request body: one `video_url` part whose mp4 holds exactly the frames the training path sampled (here a
    view with a hole cut out of it), at their sampled rate, as transformers' own video reader decodes it."""
    from transformers.video_utils import load_video as hf_load_video

    from tpo_hf.video import load_video, sampled_fps

    frames, metadata = load_video(str(video_dir / "red_blue.mp4"), num_frames=6, exclude=(3.0, 5.0))
    request = GenerationRequest("What changes?", (frames, metadata))
    backend = OpenAIBackend("m", base_url="http://127.0.0.1:1")
    (message,) = backend.messages(request)
    video_part, text_part = message["content"]
    assert video_part["type"] == "video_url" and text_part == {"type": "text", "text": "What changes?"}
    prefix = "data:video/mp4;base64,"
    assert video_part["video_url"]["url"].startswith(prefix)
    mp4 = tmp_path / "sent.mp4"
    mp4.write_bytes(base64.b64decode(video_part["video_url"]["url"][len(prefix) :]))
    decoded, decoded_metadata = hf_load_video(str(mp4), backend="pyav")
    np.testing.assert_array_equal(decoded, frames)  # lossless: bit-exact frames, none added or dropped
    assert decoded_metadata.fps == pytest.approx(sampled_fps(metadata), rel=1e-3)
    # the image form (after a refusal) carries the same frames one image each
    parts = backend.messages(request, as_images=True)[0]["content"]
    assert [p["type"] for p in parts] == ["image_url"] * len(frames) + ["text"]


def test_openai_backend_video_then_image_fallback_on_transformers_serve(served_video_model, video_dir, online, caplog):
    """`transformers serve` 5.x cannot decode a `data:` video URL (its `load_video` takes http(s) URLs and server-side
    paths only, and needs torchcodec + FFmpeg): the video form is tried first, the server answers HTTP 500, the
    backend warns once and sends images from then on."""
    from tpo_hf.video import load_video

    url, model_id = served_video_model
    views = [load_video(str(video_dir / name), num_frames=4) for name in ("red_blue.mp4", "green_yellow.mp4")]
    requests = [GenerationRequest("Describe the video.", view) for view in views]
    # one retry, as any client of a real server keeps: a CI run once saw one image request fail among the
    # concurrent ones, not reproduced since; the log of both sides is in the failure message if it happens again
    backend = OpenAIBackend(model_id, base_url=url, timeout=120, max_retries=1, retry_backoff=0.5, max_concurrency=2)
    served_log_path = Path(model_id).parent / "serve.log"
    with caplog.at_level(logging.INFO, logger="tpo_hf.curation.openai_backend"):
        try:
            replies = backend.generate(requests, max_new_tokens=4)
            replies += backend.generate(requests[:1], max_new_tokens=4)
        except BackendError as error:
            pytest.fail(
                f"{error}\n--- client log\n{caplog.text}\n--- server log\n{served_log_path.read_text()[-6000:]}"
            )
    warnings = [r.getMessage() for r in caplog.records if "refused a video" in r.getMessage()]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0], caplog.text
    assert backend.video_refused.startswith("HTTP 500")
    served_log = served_log_path.read_text()
    assert "torchcodec" in served_log  # the server received the video part and failed to decode it
    assert len(replies) == 3 and all(isinstance(r, str) for r in replies)
    # after the fallback the replies are the image form's: the same greedy replies as a backend sending images
    images_only = OpenAIBackend(model_id, base_url=url, timeout=120, max_retries=0)
    images_only.video_refused = "test: images from the start"
    assert images_only.generate(requests, max_new_tokens=4) == replies[:2]
    assert replies[2] == replies[0]


def test_openai_backend_retries_with_backoff_then_names_endpoint(online):
    port = _free_port()  # nothing listens there
    backend = OpenAIBackend("m", base_url=f"http://127.0.0.1:{port}", timeout=2, max_retries=2, retry_backoff=0.2)
    started = time.perf_counter()
    with pytest.raises(BackendError, match=f"127.0.0.1:{port}.*3 attempt"):
        backend.generate([GenerationRequest("hi")], 4)
    assert time.perf_counter() - started >= 0.2 + 0.4  # two backoffs: 0.2 s then 0.4 s


def test_openai_backend_reports_the_image_error_when_images_fail_too(video_dir, online):
    """A server that fails the video form and then the image form too is not refusing video: the error that is
    retried and reported is the image form's (here a 503 naming its cause), chained to the video form's 500."""
    import http.server
    import threading

    seen = []

    class Failing(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            is_video = b'"video_url"' in body
            seen.append("video" if is_video else "images")
            self.send_response(500 if is_video else 503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "%s"}' % (b"cannot decode video" if is_video else b"model overloaded"))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        from tpo_hf.video import load_video

        view = load_video(str(video_dir / "red_blue.mp4"), num_frames=2)
        backend = OpenAIBackend(
            "m", base_url=f"http://127.0.0.1:{server.server_port}", max_retries=1, retry_backoff=0.1
        )
        with pytest.raises(BackendError, match="2 attempt.*503") as raised:
            backend.generate([GenerationRequest("Describe the video.", view)], 4)
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["video", "images", "video", "images"]  # retried (503), video first each time: never refused
    assert backend.video_refused is None
    assert "500" in str(raised.value.__cause__.__cause__)  # BackendError <- image 503 <- video 500


def test_upper_case_finish_reasons_of_a_gateway_are_read_as_the_api_names_them(online, caplog):
    """Probe b/i37: a gateway passing its upstream's `finish_reason: "STOP"` had every reply counted as ended early
    (a warning each, then `answer_ended_early` dropped every pair): finish reasons are compared in lower case, so
    `STOP`/`END_TURN` end normally and `MAX_TOKENS`/`LENGTH` are a cut at the token budget."""
    import http.server
    import threading

    from tpo_hf.curation.backends import ended_early, is_truncated

    finish = {"reason": None}

    class Gateway(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            self.rfile.read(int(self.headers["Content-Length"]))
            choice = {
                "index": 0,
                "finish_reason": finish["reason"],
                "message": {"role": "assistant", "content": "Red."},
            }
            body = json.dumps(
                {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = OpenAIBackend("m", base_url=f"http://127.0.0.1:{server.server_port}", max_retries=0)
    try:
        for reason, cut in (("STOP", False), ("End_Turn", False), ("EOS_TOKEN", False), ("MAX_TOKENS", True)):
            finish["reason"] = reason
            caplog.clear()
            with caplog.at_level(logging.WARNING):
                (reply,) = backend.generate([GenerationRequest("Describe.")], 8)
            assert reply == "Red." and is_truncated(reply) is cut and ended_early(reply) is None, reason
            assert caplog.text == "", reason
        finish["reason"] = "LENGTH"
        (reply,) = backend.generate([GenerationRequest("Describe.")], 8)
        assert is_truncated(reply) and ended_early(reply) is None
        # another end still counts as ended early, named as the server spelled it
        finish["reason"] = "CONTENT_FILTER"
        with caplog.at_level(logging.WARNING):
            (reply,) = backend.generate([GenerationRequest("Describe.")], 8)
        assert ended_early(reply) == "CONTENT_FILTER" and "'CONTENT_FILTER'" in caplog.text
    finally:
        server.shutdown()
        server.server_close()


def test_video_extensions_without_dots_find_the_videos(tmp_path, video_dir):
    """`video_extensions: [mp4, M4V]` in a YAML config means `.mp4` and `.m4v`, not "No videos found"."""
    import shutil

    shutil.copy(video_dir / "red_blue.mp4", tmp_path / "a.mp4")
    shutil.copy(video_dir / "red_blue.mp4", tmp_path / "holiday.m4v")
    config = _config(tmp_path, video_extensions=["mp4", "M4V"])
    assert config.video_extensions == [".mp4", ".m4v"]
    assert [item.video_id for item in list_videos(config)] == ["a.mp4", "holiday.m4v"]


# --- reasoning judges, unreadable judges, endpoint frame size, dataset video ids -----------------------------------
def test_reasoning_replies_are_parsed_from_their_final_answer():
    """A reasoning model's `<think>` draft never counts, with or without its opening tag (chat templates that open
    it in the prompt); of several answer blocks the last complete one is the verdict (or the question)."""
    final = "1. No\n2. Yes\n3. No\nReason: Answer 1 contradicts the caption."
    draft = "Let me check.\n1. Yes, answer 1 looks better.\n2. No\n3. Yes\nWait, the colour is wrong."
    for reply in (f"<think>\n{draft}\n</think>\n\n{final}", f"{draft}\n</think>\n{final}", f"{draft}\n\n{final}"):
        verdict = parse_judge_reply(reply)
        assert (verdict.better, verdict.contradiction, verdict.correct) == (False, True, False), reply
        assert verdict.reason == "Answer 1 contradicts the caption."
    # the checks repeated as a list before the answers: the answers are the verdict
    listed = "1. Is Answer 1 better?\n2. Does it contradict?\n3. Is it correct?\n\n1. Yes\n2. No\n3. Yes"
    assert parse_judge_reply(listed).passed
    # cut off while thinking: no final answer, counted apart from replies that say something unreadable
    assert parse_judge_reply(f"<think>\n{draft}").drop_reason() == "judge_empty"
    assert parse_judge_reply("1. Sí\n2. No\n3. Sí").drop_reason() == "judge_unparseable"

    parsed = parse_question_reply(
        "<think>Question: What is red?\nAnswer: Nothing.</think>\nQuestion: What moves?\nAnswer: A square."
    )
    assert (parsed.status, parsed.question, parsed.answer) == ("ok", "What moves?", "A square.")
    assert parse_question_reply("Question: Draft?\nAnswer: x\nQuestion: Which comes first?\nAnswer: red").question == (
        "Which comes first?"
    )
    assert parse_question_reply("<think>Question: What is red?\nAnswer: Nothing.").status == "unparseable"


class _FramesBackend(GenerationBackend):
    """A video backend whose reply names the frames it is shown, so the two views of a pair answer differently."""

    model_id = "frames"

    def generate(self, requests, max_new_tokens, seed=0):
        return ["text" if r.video is None else f"frames {r.video[1]['frames_indices']}" for r in requests]


def test_a_judge_whose_replies_never_parse_stops_the_run_quoting_one(video_dir, tmp_path):
    """A judge answering in another language: the run stops after the first shard's replies (none parsed) instead
    of judging every video, quotes a reply and the accepted format, and writes no shard of unread verdicts (so a
    repaired judge judges them again)."""
    from tpo_hf.curation.judge import JudgeRepliesUnreadableError

    judge = ScriptedBackend(lambda prompt: "1. Sí\n2. No\n3. Sí\nRazón: la respuesta 1 es correcta.", "judge")
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="frames",
        output_dir=str(tmp_path / "out"),
        question_backend="template",
        localized_per_video=6,
        comprehensive_per_video=6,
        **TINY,
    )
    with pytest.raises(JudgeRepliesUnreadableError, match=r"(?s)None of the \d+ replies.*'1. Sí.*Accepted: numbered"):
        run_curation(config, Backends(_FramesBackend(), None, judge))
    assert 8 <= judge.calls <= 12  # the first of the two videos only (12 queries)
    assert not list((tmp_path / "out" / "_curation").rglob("shard-*.json"))


def test_judge_empty_replies_are_counted_apart_and_check_rates_count_parsed_replies(video_dir, tmp_path):
    replies = iter(["1. Yes\n2. No\n3. Yes", "", "1. Sí\n2. No\n3. Sí"] * 100)
    judge = ScriptedBackend(lambda prompt: next(replies), "judge")
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="frames",
        output_dir=str(tmp_path / "out"),
        question_backend="template",
        localized_per_video=3,
        comprehensive_per_video=3,
        **TINY,
    )
    run_curation(config, Backends(_FramesBackend(), None, judge))
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    rates, dropped = report["judge"], report["drop_reasons"]
    assert dropped["judge_empty"] >= 1 and dropped["judge_unparseable"] >= 1
    assert rates["parsed_replies"] == rates["judged"] - dropped["judge_empty"] - dropped["judge_unparseable"]
    # the Spanish replies' "2. No" is not a passed check 2: the rates are over the replies that parsed
    assert rates["check1_chosen_better"] == rates["check2_no_contradiction"] == rates["check3_chosen_correct"] == 1.0
    assert f"({rates['parsed_replies']} of {rates['judged']};" in (tmp_path / "out" / "README.md").read_text()


def test_openai_backend_sends_frames_within_max_pixels(video_dir, tmp_path, online):
    """`max_pixels` holds for an endpoint as for a local model: the frames sent, as a video or as images, are scaled
    down (aspect ratio kept) to the budget the run records, not sent at their native 128x64."""
    import io

    from PIL import Image
    from transformers.video_utils import load_video as hf_load_video

    from tpo_hf.video import load_video

    frames, metadata = load_video(str(video_dir / "red_blue.mp4"), num_frames=3)
    assert frames.shape[1:3] == (64, 128)
    config = _config(
        video_dir, video_backend="openai", video_base_url="http://127.0.0.1:1", max_pixels=2048, use_judge=False
    )
    backend = OpenAIBackend.from_config(config, "video")
    request = GenerationRequest("What changes?", (frames, metadata))
    url = backend.messages(request)[0]["content"][0]["video_url"]["url"]
    (tmp_path / "sent.mp4").write_bytes(base64.b64decode(url.split(",", 1)[1]))
    sent, _ = hf_load_video(str(tmp_path / "sent.mp4"), backend="pyav")
    assert sent.shape[:3] == (3, 32, 64)  # 2048 pixels, 2:1 as the source

    def image_sizes(backend):
        parts = backend.messages(request, as_images=True)[0]["content"][:-1]
        return {Image.open(io.BytesIO(base64.b64decode(p["image_url"]["url"].split(",", 1)[1]))).size for p in parts}

    assert image_sizes(backend) == {(64, 32)}
    # a budget that the frames meet: sent as sampled
    assert image_sizes(OpenAIBackend("m", base_url="http://127.0.0.1:1", max_pixels=10_000)) == {(128, 64)}


def test_dataset_videos_keep_distinct_ids_and_stay_under_videos(video_dir, tmp_path):
    """Two absolute paths with one file name (cam_a/clip.mp4, cam_b/clip.mp4) stay two videos, known by their
    folders; a path going up a level (`../media/clip one.mp4`) is copied under `videos/`, not beside it; a video
    whose name no other shares keeps its file-name id (the id earlier runs' shards are keyed by)."""
    import shutil

    for folder, name in (("cam_a", "red_blue.mp4"), ("cam_b", "green_yellow.mp4"), ("media", "red_blue.mp4")):
        (tmp_path / folder).mkdir()
        shutil.copy(video_dir / name, tmp_path / folder / ("clip one.mp4" if folder == "media" else "clip.mp4"))
    shutil.copy(video_dir / "green_yellow.mp4", tmp_path / "alone.mp4")
    (tmp_path / "data").mkdir()
    rows = [
        {"video": str(tmp_path / "cam_a" / "clip.mp4"), "question": "Which colour comes first?"},
        {"video": str(tmp_path / "cam_b" / "clip.mp4"), "question": "Which shape comes first?"},
        {"video": "../media/clip one.mp4", "question": "What comes last?"},
        {"video": str(tmp_path / "alone.mp4"), "question": "What moves?"},
    ]
    data_file = tmp_path / "data" / "qa.jsonl"
    data_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    settings = dict(
        dataset_name=str(data_file),
        question_column="question",
        video_model="frames",
        question_backend="template",
        use_judge=False,
        localized_per_video=0,
        mix_ratio="0:1",
        **TINY,
    )
    config = CurationConfig(output_dir=str(tmp_path / "out"), **settings)
    items = {item.video_id: item for item in list_videos(config)}
    assert set(items) == {"cam_a/clip.mp4", "cam_b/clip.mp4", "media/clip one.mp4", "alone.mp4"}
    assert items["cam_b/clip.mp4"].questions == [("Which shape comes first?", None)]

    result = run_curation(config, Backends(_FramesBackend(), None, None))
    out = tmp_path / "out"
    assert sorted(result.dataset["video"]) == [
        "videos/alone.mp4",
        "videos/cam_a/clip.mp4",
        "videos/cam_b/clip.mp4",
        "videos/media/clip one.mp4",
    ]
    for video in result.dataset["video"]:
        source = items[video.removeprefix("videos/")].path
        assert (out / video).read_bytes() == Path(source).read_bytes()
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["_curation", "videos"]  # nothing beside videos/

    # ids that would still clash are refused, naming both rows
    clash = tmp_path / "clash.jsonl"
    clash.write_text(json.dumps({"video": "media/clip one.mp4"}) + "\n" + json.dumps(rows[2]) + "\n")
    with pytest.raises(ValueError, match=r"Rows 0 \(media/clip one.mp4\) and 1 \(../media/clip one.mp4\)"):
        list_videos(CurationConfig(output_dir=str(tmp_path / "o2"), **{**settings, "dataset_name": str(clash)}))


def test_upload_videos_refuses_a_video_the_hub_would_refuse_before_curating(video_dir, tmp_path):
    import shutil

    (tmp_path / "in" / ".cache").mkdir(parents=True)
    shutil.copy(video_dir / "red_blue.mp4", tmp_path / "in" / ".cache" / "a.mp4")
    data_file = tmp_path / "in" / "qa.jsonl"
    data_file.write_text(json.dumps({"video": ".cache/a.mp4"}) + "\n")
    config = CurationConfig(
        dataset_name=str(data_file),
        video_model="frames",
        output_dir=str(tmp_path / "out"),
        push_to_hub="user/x",
        upload_videos=True,
        **TINY,
    )
    with pytest.raises(ValueError, match=r"videos/.cache/a.mp4, a path the Hub refuses \(segment '.cache'\)"):
        list_videos(config)


def test_a_question_writer_whose_replies_never_parse_stops_the_run_naming_it(video_dir, tmp_path):
    """A question writer answering every prompt with judge-like lines stops the run after its first replies (the
    judge's watch, `ReplyWatch`), naming its model and backend, quoting a reply and the accepted format, instead of
    asking about every video in vain; the shard of an earlier run stays, the unread one is not written. Empty
    replies are told apart (the token budget is named)."""
    import shutil

    from tpo_hf.curation.ask import QuestionRepliesUnreadableError

    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(video_dir / "red_blue.mp4", videos / "a.mp4")
    settings = dict(
        video_dir=str(videos),
        video_model="frames",
        question_model="writer-llm",
        output_dir=str(tmp_path / "out"),
        localized_per_video=6,
        comprehensive_per_video=6,
        **TINY,
    )
    run_curation(CurationConfig(**settings), Backends(_FramesBackend(), ScriptedBackend(_question_reply), None))
    shards = tmp_path / "out" / "_curation" / "shards"
    finished = sorted(shards.glob("shard-*.json"))
    assert len(finished) == 1

    for name in ("b.mp4", "c.mp4", "d.mp4"):  # videos added: their questions go to a writer that broke
        shutil.copy(video_dir / "green_yellow.mp4", videos / name)
    writer = ScriptedBackend(lambda prompt: "1. Yes\n2. No\n3. Yes", "writer-llm")
    with pytest.raises(
        QuestionRepliesUnreadableError,
        match=r"(?s)None of the 12 replies of question writer model 'writer-llm' \(transformers backend\) could be "
        r"read as a question.*One reply: '1. Yes.*Accepted: the lines 'Question: <question>'.*--question_backend "
        r"template",
    ):
        run_curation(CurationConfig(**settings), Backends(_FramesBackend(), writer, None))
    assert writer.calls == 12  # the first new video's questions only, not the whole corpus
    assert sorted(shards.glob("shard-*.json")) == finished  # the earlier shard stays, no unread one written

    empty = ScriptedBackend(lambda prompt: "<think>Let me see what the caption says", "writer-llm")
    with pytest.raises(QuestionRepliesUnreadableError, match=r"Every reply was empty.*question_max_new_tokens=8"):
        run_curation(CurationConfig(**settings), Backends(_FramesBackend(), empty, None))


def test_the_sparse_view_never_has_more_frames_than_the_dense_view(video_dir, tmp_path):
    """The dis-preferred comprehensive view is the sparse one: `max_frames` caps it as it caps the dense view,
    sparse_num_frames at or above max_frames is refused, and a video whose dense view (sampled by rate) has no more
    frames than the sparse one makes no comprehensive pair, counted in the report, instead of an inverted pair."""
    from tpo_hf.curation.run import NoPairsError

    with pytest.raises(ValueError, match=r"sparse_num_frames=4 must be below max_frames=2"):
        _config(tmp_path, num_frames=8, sparse_num_frames=4, max_frames=2)
    video = VideoFile(video_dir / "red_blue.mp4")  # 8 s at 8 fps
    capped = comprehensive_views(VideoSettings(num_frames=None, video_fps=2.0, max_frames=3), sparse_num_frames=8)
    assert len(video.frame_indices(capped["rejected"])) <= len(video.frame_indices(capped["preferred"])) == 3

    settings = dict(
        video_dir=str(video_dir),
        video_model="frames",
        question_backend="template",
        use_judge=False,
        localized_per_video=0,
        comprehensive_per_video=1,
        mix_ratio="0:1",
        **{**TINY, "num_frames": None, "video_fps": 2.0},
    )
    # 16 dense frames against 4 sparse ones: pairs as before
    config = CurationConfig(output_dir=str(tmp_path / "out"), **settings)
    shard = curate_shard(list_videos(config), Backends(_FramesBackend(), None, None), config)
    assert [len(r["rejected_frame_indices"]) for r in shard["records"]] == [4, 4]
    assert all(len(r["chosen_frame_indices"]) == 16 and r["kept"] for r in shard["records"])
    # 0.5 frame per second: 4 dense frames against 8 sparse ones
    config = CurationConfig(output_dir=str(tmp_path / "out"), **{**settings, "video_fps": 0.5, "sparse_num_frames": 8})
    with pytest.raises(NoPairsError, match=r"2 sparse_view_not_sparser.*set sparse_frame_fraction"):
        run_curation(config, Backends(_FramesBackend(), None, None))
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    assert report["drop_reasons"] == {"sparse_view_not_sparser": 2} and report["final"]["total"] == 0


def test_the_local_video_model_samples_by_rate_when_num_frames_is_none(video_dir, tiny_model_dirs, tmp_path):
    """`num_frames: null` with `video_fps` (the documented rate mode) reaches the local video model's processor as
    such, not dropped as "unset" and replaced by the default frame count, which refused the rate beside it."""
    from tpo_hf.curation import GenerationRequest

    config = CurationConfig(
        video_dir=str(video_dir),
        output_dir=str(tmp_path / "out"),
        video_model=str(tiny_model_dirs("qwen2_5_vl")),
        question_backend="template",
        use_judge=False,
        device="cpu",
        **{**TINY, "num_frames": None, "video_fps": 1.0},
    )
    backend = TransformersBackend.from_config(config, "video")
    assert (backend.processor.settings.num_frames, backend.processor.settings.video_fps) == (None, 1.0)
    view = VideoFile(video_dir / "red_blue.mp4").load_views({"whole": VideoSettings.of(config).view()})["whole"]
    assert len(view[1]["frames_indices"]) == 8  # 8 s at 1 frame per second
    assert isinstance(backend.generate([GenerationRequest("Describe the video.", view)], 2)[0], str)


def test_sampling_at_temperature_zero_is_refused_before_any_model_loads(tmp_path):
    with pytest.raises(ValueError, match=r"do_sample=True needs temperature > 0, got temperature=0"):
        _config(tmp_path, do_sample=True, temperature=0)
    _config(tmp_path, do_sample=False, temperature=0)  # greedy decoding reads no temperature


def test_a_dataset_video_column_of_any_name_is_read_as_paths(video_dir, tmp_path):
    """A `datasets.Video` column named by `video_column` (not `video`) becomes paths, as a `video` column does,
    instead of being decoded by `datasets` (torchcodec)."""
    from datasets import Dataset, Video

    paths = [str(video_dir / name) for name in ("green_yellow.mp4", "red_blue.mp4")]
    dataset = Dataset.from_dict({"clip": paths, "caption": ["a", "b"]}).cast_column("clip", Video())
    dataset.save_to_disk(str(tmp_path / "clips"))
    config = CurationConfig(
        dataset_name=str(tmp_path / "clips"),
        video_column="clip",
        caption_column="caption",
        video_model="frames",
        question_backend="template",
        use_judge=False,
        output_dir=str(tmp_path / "out"),
        **TINY,
    )
    items = list_videos(config)
    assert [(item.video_id, item.caption) for item in items] == [("green_yellow.mp4", "a"), ("red_blue.mp4", "b")]
    for item, source in zip(items, paths):
        assert Path(item.path).read_bytes() == Path(source).read_bytes()


def test_dataset_and_benchmark_videos_given_as_file_urls_or_home_paths_are_local_files(
    video_dir, tmp_path, monkeypatch
):
    """`~/clip.mp4` and `file:///.../clip.mp4` in a curation dataset or a benchmark name local files, as training
    reads them (they were joined to the video folder: `<root>/~/clip.mp4`)."""
    import shutil

    from tpo_hf.eval.benchmarks import find_video

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(video_dir / "red_blue.mp4", home / "red_blue.mp4")
    monkeypatch.setenv("HOME", str(home))
    rows = [{"video": "~/red_blue.mp4"}, {"video": (home / "red_blue.mp4").as_uri()}]
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = CurationConfig(
        dataset_name=str(data),
        video_root=str(tmp_path / "elsewhere"),
        video_model="unused",
        output_dir=str(tmp_path / "out"),
        use_judge=False,
        question_backend="template",
        **TINY,
    )
    (item,) = list_videos(config)  # both rows name the one file
    assert Path(item.path) == home / "red_blue.mp4"
    assert find_video(tmp_path / "elsewhere", "~/red_blue.mp4") == str(home / "red_blue.mp4")
    assert find_video(tmp_path / "elsewhere", (home / "red_blue.mp4").as_uri()) == str(home / "red_blue.mp4")


def test_cut_answers_of_a_local_model_are_kept_and_warned_about_or_dropped_when_asked(
    video_dir, tiny_backend, tmp_path, caplog
):
    """The tiny random model never emits its end token, so every answer is cut at answer_max_new_tokens. By default a
    local model's cut answers stay paired (counted, with a warning naming the option that drops them);
    `cut_answers="drop"` drops those pairs (`truncated_answer`), and a value of neither kind is refused."""
    from tpo_hf.curation.run import NoPairsError

    settings = dict(video_dir=str(video_dir), video_model="tiny-qwen", question_backend="template", use_judge=False)
    settings.update(mix_ratio="1:0", localized_per_video=3, **{**TINY, "answer_max_new_tokens": 3})
    with caplog.at_level(logging.WARNING):
        keep = CurationConfig(output_dir=str(tmp_path / "keep"), **settings)
        result = run_curation(keep, Backends(tiny_backend, None, None))
    assert len(result.dataset) > 0 and result.report["truncated_replies"]["answer"] > 0
    assert "truncated_answer" not in result.report["drop_reasons"]
    assert "cut_answers=drop drops them" in caplog.text
    with pytest.raises(NoPairsError, match="truncated_answer.*answer_max_new_tokens=3"):
        run_curation(
            CurationConfig(output_dir=str(tmp_path / "drop"), cut_answers="drop", **settings),
            Backends(tiny_backend, None, None),
        )
    report = json.loads((tmp_path / "drop" / "curation_report.json").read_text())
    assert set(report["drop_reasons"]) == {"truncated_answer"}
    with pytest.raises(ValueError, match=r"cut_answers='cut' must be one of \['drop', 'keep'\]"):
        CurationConfig(output_dir=str(tmp_path / "x"), cut_answers="cut", **settings)


class _ThinkingFramesBackend(GenerationBackend):
    """A reasoning video model: each reply thinks first (`<think>...</think>`), then names the frames it is shown."""

    model_id = "thinking-frames"

    def generate(self, requests, max_new_tokens, seed=0):
        return [
            "text"
            if r.video is None
            else f"<think>\nFrame 1 shows red; check {r.video[1]['frames_indices']}.\n</think>\n\n"
            f"Answer {r.video[1]['frames_indices']}."
            for r in requests
        ]


def test_a_reasoning_video_models_thinking_is_removed_from_the_stored_answers(video_dir, tmp_path):
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="thinking-frames",
        output_dir=str(tmp_path / "out"),
        question_backend="template",
        use_judge=False,
        localized_per_video=2,
        comprehensive_per_video=2,
        **TINY,
    )
    result = run_curation(config, Backends(_ThinkingFramesBackend(), None, None))
    assert len(result.dataset) > 0
    for row in result.dataset:
        assert row["chosen"].startswith("Answer [") and row["rejected"].startswith("Answer [")
        assert "think>" not in row["chosen"] + row["rejected"]
    assert result.report["answers_thinking_removed"] >= 2 * len(result.dataset)


def test_answers_differing_only_in_case_spacing_or_final_punctuation_make_no_pair(video_dir, tmp_path):
    """'The square is red.' against 'the square is  red' teaches no preference: dropped as identical_answers."""
    from tpo_hf.curation.run import NoPairsError

    forms = iter(["The square is red.", "the square is  red", "THE SQUARE IS RED!", "**The square** is red"] * 1000)
    video = ScriptedBackend(lambda prompt: next(forms), "near-identical")
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="near-identical",
        output_dir=str(tmp_path / "out"),
        question_backend="template",
        use_judge=False,
        localized_per_video=2,
        comprehensive_per_video=2,
        **TINY,
    )
    with pytest.raises(NoPairsError, match="identical_answers"):
        run_curation(config, Backends(video, None, None))
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    assert set(report["drop_reasons"]) == {"identical_answers"}


@pytest.mark.parametrize(
    "first, second",
    [
        ("It's red.", "It\u2019s red."),  # curly apostrophe
        ('He said "red"', "He said \u201cred\u201d"),  # curly quotes
        ("Red...", "Red\u2026"),  # ellipsis character
        ("Red.", "\uff32\uff45\uff44\uff0e"),  # full-width letters and stop
        ("red-blue", "red\u2013blue"),  # en dash
        ("red - blue", "red \u2014 blue"),  # em dash
        ("A red square.", "A red square.\u200b"),  # trailing zero-width space
        ("A red square", "A red squ\u00adare"),  # soft hyphen
    ],
)
def test_answers_differing_only_typographically_are_the_same_answer(first, second):
    """Probe b/G20: answers that differ only in typography (curly vs straight quotes, '...' vs '…', full-width forms,
    dashes, invisible format characters) teach no preference, so they make no pair."""
    from tpo_hf.curation.answer import same_answer

    assert same_answer(first, second)
    # what they say still counts: another word or sign is another answer, whatever its typography
    assert not same_answer(first, second + " blue")
    assert not same_answer("5 - 3", "5 + 3") and not same_answer("It's red.", "It\u2019s not red.")


@pytest.mark.parametrize(
    "first, second",
    [
        ("*red*", "red"),  # Markdown italics
        ("_red_", "red"),
        ("The *red* square.", "the red square"),
        ("The square is _dark red_", "The square is dark red."),  # a phrase
        ("***Red***", "red"),  # bold italics
    ],
)
def test_answers_differing_only_in_markdown_italics_are_the_same_answer(first, second):
    """Probe b/h8: `*red*` against `red` made a pair (only `**red**` was set aside): single `*`/`_` emphasis around a
    word or phrase teaches no preference."""
    from tpo_hf.curation.answer import same_answer

    assert same_answer(first, second)
    assert not same_answer(first, "blue")


def test_emphasis_signs_inside_identifiers_and_arithmetic_keep_their_meaning():
    """Probe b/h8: only a marker wrapping a word is emphasis: `snake_case` is no `snakecase`, `2*3` no `23`."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer("snake_case", "snakecase") and not same_answer("my_var_name", "myvarname")
    assert not same_answer("2*3", "23") and not same_answer("2*3*4", "234") and not same_answer("2 * 3 * 4", "2 3 4")
    assert same_answer("snake_case", "`snake_case`") and same_answer("2*3", "2*3.")


def test_double_emphasis_signs_inside_expressions_and_python_names_keep_their_meaning():
    """Probe b/i2: `**` and `__` were removed everywhere, so `x**2` was `x2` and `__init__` was `init`, and their pair
    was dropped as identical answers. Only bold around a word or phrase is set aside now."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer("x**2", "x2") and not same_answer("2**3**4", "234") and not same_answer("a ** b", "a b")
    assert not same_answer("__init__", "init") and not same_answer("__init__.py", "init.py")
    assert same_answer("**red**", "red") and same_answer("**The square** is red", "the square is red")
    assert same_answer("__dark red__", "dark red") and same_answer("**1.** Yes **2.** No", "1. yes 2. no")


@pytest.mark.parametrize(
    "first, second", [("10\u00b2", "102"), ("2\u00b3", "23"), ("H\u2082O", "H2O"), ("km\u00b2", "km2")]
)
def test_superscripts_and_subscripts_are_not_folded_into_plain_digits(first, second):
    """Probe b/i1: NFKC folding made `10²` the same answer as `102` (and `2³` as `23`), so their pair was dropped as
    identical answers. Superscripts and subscripts are kept; NFKC's other folds still apply."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer(first, second)
    assert same_answer(first, first.upper() + ".")
    assert same_answer("\uff11\uff10\u00b2", "10\u00b2")  # full-width digits, the superscript kept


@pytest.mark.parametrize(
    "first, second",
    [
        ('"red"', "red"),
        ("'red'", "red"),
        ("\u201cRed.\u201d", "red"),  # curly quotes, the stop inside
        ('"red".', "red"),  # the stop outside
        ("\u2018red\u2019", "red"),
        ("\u00abred\u00bb", "red"),  # guillemets
        ("\u300cred\u300d", "red"),  # corner brackets
        ("(red)", "red"),
        ("[Red]", "red"),
        ('("red")', "red"),  # nested
        ("'It's red'", "It's red"),  # an apostrophe inside
    ],
)
def test_answers_differing_only_in_wrapping_quotes_or_brackets_are_the_same_answer(first, second):
    """Probe b/h9: `"red"` against `red` made a pair: quotes or brackets wrapping the whole answer teach no
    preference."""
    from tpo_hf.curation.answer import same_answer

    assert same_answer(first, second)
    assert not same_answer(first, '"blue"')


def test_quotes_or_brackets_that_wrap_no_whole_answer_are_kept():
    """Probe b/h9: only one pair around all of the answer is a wrapper: '"a" or "b"' and '(1, 2) and (3, 4)' are not
    wrapped, and a bracketed part of an answer is part of what it says."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer('"a" or "b"', 'a" or "b')
    assert not same_answer("(1, 2) and (3, 4)", "1, 2) and (3, 4")
    assert not same_answer("(red) and blue", "red and blue")


@pytest.mark.parametrize(
    "first, second",
    [
        ("~~red~~", "red"),  # Markdown strikethrough
        ("The square is ~~blue~~ red.", "the square is red"),  # struck text is deleted text (probe b/j2)
        ("- red", "red"),  # a list bullet
        ("* Red.", "red"),
        ("\u2022 red", "red"),
        ("> red", "red"),  # a block quote
        ("> - **red**", "red"),  # a bullet inside a quote, bold inside that
        ("- red\n- blue", "red\nblue"),  # a marker on each line
    ],
)
def test_answers_differing_only_in_strikethrough_or_a_list_or_quote_marker_are_the_same_answer(first, second):
    """Probe b/i3: `~~red~~`, `- red` and `> red` against `red` made a pair (2 of 2 pairs of a run whose endpoint
    answered `~~red~~` / `red`): Markdown strikethrough and list or quote markers teach no preference."""
    from tpo_hf.curation.answer import same_answer

    assert same_answer(first, second)
    assert not same_answer(first, "blue")


def test_a_sign_or_comparison_before_a_number_is_no_list_or_quote_marker():
    """Probe b/i3: only a marker before words is set aside: `- 3` may be minus three and `> 5` more than five."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer("- 3", "3") and not same_answer("+ 3", "3") and not same_answer("> 5", "5")
    assert not same_answer("> three", "three") and not same_answer("-5", "5") and not same_answer("5 - 3", "5 3")
    assert not same_answer("~red~", "red")  # a single `~` is no strikethrough


@pytest.mark.parametrize(
    "first, second",
    [
        ("\\boxed{5}", "5"),  # a reasoning model's boxed answer
        ("$5$", "5"),  # inline math
        ("$\\boxed{5}$", "5."),
        ("\\(5\\)", "5"),
        ("$$5$$", "5"),
        ("\\boxed{\\text{Red}}", "red"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # the argument kept whole
        ("<b>red</b>", "red"),  # inline HTML
        ("<i>red</i>", "red"),
        ("<strong><em>Red</em></strong>.", "red"),
    ],
)
def test_answers_differing_only_in_html_tags_or_latex_wrappers_are_the_same_answer(first, second):
    """Probe b/i4: `\\boxed{red}` against `red` made a pair (2 of 2 pairs of a run), and so did `$5$`, `<b>red</b>`
    and `<i>red</i>`: the wrappers of a reasoning model's or an HTML-writing model's answer teach no preference."""
    from tpo_hf.curation.answer import same_answer

    assert same_answer(first, second)
    assert not same_answer(first, "6") and not same_answer(first, "blue")


def test_prices_superscripts_and_unclosed_latex_are_not_taken_for_wrappers():
    """Probe b/i4: a `$` price is no math (`$5` is not `5`, nor `$5 and $10` `5 and 10`), `<sup>` keeps its meaning
    (`10<sup>2</sup>` is not `102`), and a brace left open is left as it is."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer("$5", "5") and not same_answer("$5 and $10", "5 and 10")
    assert not same_answer("$5-$10", "5-10") and not same_answer("10<sup>2</sup>", "102")
    assert not same_answer("\\boxed{5", "5") and not same_answer("\\frac{1}{2}", "12")


@pytest.mark.parametrize(
    "first, second",
    [
        ("3", "three"),  # a counting question's answer, spelled two ways
        ("Three", "3."),
        ("3 red squares", "Three red squares."),
        ("the 3", "3"),  # a leading article
        ("a red square", "red square"),
        ("The red square.", "A red square"),
        ("An apple", "apple"),
        ("There are twelve.", "There are 12"),
    ],
)
def test_answers_differing_only_in_a_number_word_or_a_leading_article_are_the_same_answer(first, second):
    """Probe b/i41: `3` against `three` and `a red square` against `red square` made a candidate pair that passed the
    same-answer filter, though eval's parser reads `three` as `3` (`eval.answers.NUMBER_WORDS`): a number's spelling
    and a leading article teach no preference."""
    from tpo_hf.curation.answer import same_answer

    assert same_answer(first, second)
    assert not same_answer(first, "4") and not same_answer(first, "blue square")


def test_a_lone_article_or_letter_and_other_numbers_stay_answers():
    """Probe b/i41: only an article before a word is dropped, so `a` and the letter `A` stay answers (not empty, not
    another letter), an article inside an answer stays, and a number word is one only as a whole word."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer("a", "") and not same_answer("A", "") and not same_answer("A", "B")
    assert same_answer("A", "a.") and same_answer("The", "the")
    assert not same_answer("It is a red square", "It is red square")
    assert not same_answer("3", "4") and not same_answer("three", "thirty") and not same_answer("twenty-one", "20-1")
    assert not same_answer("one_hot", "1_hot") and not same_answer("3", "3.0")


@pytest.mark.parametrize(
    "first, second",
    [
        ("a few", "few"),  # some, against hardly any
        ("A few red squares.", "few red squares"),
        ("a little", "little"),
        ("a lot", "lot"),
        ("a bit", "bit"),
        ("the most", "most"),
        ("an hour", "hour"),  # a duration, against a unit
        ("a second", "second"),  # a time, against an ordinal
        ("a third", "third"),  # a fraction, against an ordinal
        ("a minute", "minute"),
    ],
)
def test_an_article_that_makes_the_meaning_is_kept(first, second):
    """Probe b/j1: the leading-article rule made `a few` the same answer as `few` (opposite quantities), and the pair
    was dropped as identical answers. The article stays before the words it gives a meaning to."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer(first, second)
    assert same_answer(first, first.upper() + ".")


def test_an_article_before_other_words_is_still_no_part_of_the_answer():
    """Probe b/j1: only the articles that make the meaning are kept: `the second` is `second` (an ordinal either way),
    `a red square` is `red square`, `the 3` is `3`."""
    from tpo_hf.curation.answer import same_answer

    assert same_answer("the second", "second") and same_answer("a red square", "red square")
    assert (
        same_answer("The 3", "3")
        and same_answer("An apple", "apple")
        and same_answer("a halfway point", "halfway point")
    )


@pytest.mark.parametrize(
    "first, second",
    [
        ("The square is ~~not~~ red", "The square is not red"),  # opposite meanings
        ("~~5~~ 6", "5 6"),
        ("5 ~~6~~", "5 6"),
        ("<del>3</del> 4", "3 4"),
        ("<strike>not</strike> red", "not red"),
        ("<del>a <del>b</del> c</del> d", "a c d"),  # nested
    ],
)
def test_struck_text_inside_an_answer_is_deleted_text(first, second):
    """Probe b/j2: strikethrough inside an answer was unwrapped, so `The square is ~~not~~ red` (which reads `is red`)
    was the same answer as `The square is not red`, and the pair was dropped. Struck text is what the writer deleted:
    it goes with its markup."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer(first, second)
    assert same_answer("The square is ~~not~~ red", "the square is red") and same_answer("<del>3</del> 4", "4")
    assert same_answer("~~5~~ 6", "6") and same_answer("<del>a <del>b</del> c</del> d", "d")


@pytest.mark.parametrize(
    "first, second",
    [("~~red~~.", "red"), ("<del>Red</del>", "red"), ("<strike>red</strike>", "red"), ("**~~red~~**", "red")],
)
def test_a_strikethrough_around_the_whole_answer_is_only_form(first, second):
    """Probe b/j2: a strikethrough around all that an answer says deletes nothing the other answer keeps: it is form;
    `<s>` (a Llama token's text) is no strikethrough."""
    from tpo_hf.curation.answer import same_answer

    assert same_answer(first, second)
    assert not same_answer(first, "blue") and not same_answer("<s>red</s>", "red")


@pytest.mark.parametrize(
    "first, second",
    [
        ("- .5", ".5"),  # a negative decimal
        ("- $5", "$5"),  # a loss
        ("+ \u20ac5", "\u20ac5"),
        ("- \u00a35", "\u00a35"),
        ("> half", "half"),  # a comparison
        ("> a few", "a few"),
        ("> twice", "twice"),
        ("> twenty", "twenty"),
        ("> -5", "-5"),
        ("> $5", "$5"),
        ("> .5", ".5"),
    ],
)
def test_a_sign_or_comparison_before_other_number_forms_is_no_marker(first, second):
    """Probe b/j3: `-` and `>` were markers before anything but a digit, so `- .5` was `.5`, `- $5` was `$5` and
    `> half` was `half`, and the pairs were dropped as identical answers. A sign stays before figures (a digit, a
    decimal point, a currency sign), a comparison before figures or a quantity word."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer(first, second)


def test_stars_and_bullets_are_markers_before_numbers_too():
    """Probe b/j3: `*` and `•` are always bullets (`* -5` is `-5`); `>` before a word that is no quantity is a quote."""
    from tpo_hf.curation.answer import same_answer

    assert (
        same_answer("* -5", "-5") and same_answer("\u2022 3", "3") and same_answer("> halfway there", "halfway there")
    )
    assert not same_answer("* -5", "5")


@pytest.mark.parametrize(
    "first, second",
    [
        ("[0, 1]", "(0, 1)"),  # a closed interval, against an open one
        ("[0, 1]", "0, 1"),
        ("(5)", "5"),  # an accounting negative
        ("[2]", "(2)"),
        ("[a, b]", "(a, b)"),  # an interval written with letters
        ('"(5)"', "5"),
    ],
)
def test_brackets_around_numbers_or_lists_keep_their_meaning(first, second):
    """Probe b/j4: brackets around the whole answer were unwrapped whatever they held, so `[0, 1]` was the same answer
    as `(0, 1)` and `(5)` as `5`. Brackets around a digit or a comma stay; around a word they are still form."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer(first, second)
    assert same_answer("(red)", "red") and same_answer("[Red.]", "red") and same_answer('"(5)"', "(5)")


@pytest.mark.parametrize(
    "first, second",
    [("- three", "three"), ("- three", "3"), ("+ Five apples.", "5 apples"), ("- three\n- four", "3\n4")],
)
def test_a_bullet_before_a_number_word_is_a_marker(first, second):
    """Probe b/j5: number words became digits before the markers were removed, so `- three` was `- 3`, a sign, and
    made a pair with `three` that teaches only Markdown form. Markers are decided on the words as written."""
    from tpo_hf.curation.answer import same_answer

    assert same_answer(first, second)
    assert not same_answer("- 3", "3") and not same_answer("> three", "three")


@pytest.mark.parametrize(
    "first, second",
    [
        ("Answer: red", "red"),
        ("Final answer: Red.", "red"),
        ("The answer is red", "red"),
        ("The final answer is: $\\boxed{5}$", "five"),
        ("**Answer:** red", "red"),
        ('Answer: "red"', "red"),
        ("Answer: a few", "a few"),
    ],
)
def test_a_leading_answer_label_is_no_part_of_the_answer(first, second):
    """Probe b/j6: `Answer: red` against `red` made a pair that teaches dropping a label, not the video: a leading
    answer label is removed before the answers are compared."""
    from tpo_hf.curation.answer import same_answer

    assert same_answer(first, second)
    assert not same_answer(first, "blue")


def test_only_an_answer_label_is_removed():
    """Probe b/j6: a letter label may be an option (`A: red`), `a - b` is an answer, a label with nothing after it
    stays, and what follows the label still counts (`The answer is not red`)."""
    from tpo_hf.curation.answer import same_answer

    assert not same_answer("A: red", "red") and not same_answer("a - b", "b") and not same_answer("Answer:", "")
    assert not same_answer("The answer is not red", "red") and not same_answer("Answer: a few", "few")
    assert not same_answer("The answer isn't red", "n't red")


def test_answers_that_mean_different_things_make_a_pair_through_curation(video_dir, tmp_path):
    """Probe b/j1: a run whose endpoint answered `a few` on one view and `few` on the other ended with no pair
    (`identical_answers`); they mean opposite things, so they make pairs."""
    forms = iter(["a few", "few"] * 1000)
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="few-or-a-few",
        output_dir=str(tmp_path / "out"),
        question_backend="template",
        use_judge=False,
        localized_per_video=2,
        comprehensive_per_video=2,
        **TINY,
    )
    result = run_curation(config, Backends(ScriptedBackend(lambda prompt: next(forms), "few-or-a-few"), None, None))
    assert len(result.dataset) > 0
    assert all({row["chosen"], row["rejected"]} == {"a few", "few"} for row in result.dataset)
    assert "identical_answers" not in result.report["drop_reasons"]


class _NoSkipEndpoint(ScriptedBackend):
    """An endpoint whose server does not skip special tokens: its replies keep the end-of-turn token's text."""

    base_url = "http://127.0.0.1:18732"


def _special_token_run(video_dir, tmp_path, replies):
    forms = iter(replies * 1000)
    video = _NoSkipEndpoint(lambda prompt: next(forms), "no-skip-vlm")
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="no-skip-vlm",
        output_dir=str(tmp_path / "out"),
        question_backend="template",
        use_judge=False,
        localized_per_video=2,
        comprehensive_per_video=2,
        **TINY,
    )
    return run_curation(config, Backends(video, None, None))


def test_an_end_of_turn_token_text_is_removed_from_the_stored_answers(video_dir, tmp_path, caplog):
    """Probe b/h10: an endpoint that does not skip special tokens answered `red<|im_end|>`; the token text was stored
    as an answer to train on, and `red<|im_end|>` against `red` made a pair. The trailing end-of-turn text goes (one
    warning naming the endpoint, the token and the count), and the two answers are the same answer."""
    from tpo_hf.curation.run import NoPairsError

    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation.answer"):
        result = _special_token_run(video_dir, tmp_path / "pairs", ["red<|im_end|>", "blue<|eot_id|>\n"])
    assert len(result.dataset) > 0
    for row in result.dataset:
        assert {row["chosen"], row["rejected"]} == {"red", "blue"}
    warnings = [r.getMessage() for r in caplog.records if r.name == "tpo_hf.curation.answer"]
    assert len(warnings) == 1, warnings  # once per run, not once per shard (videos_per_shard=1: two shards)
    assert "no-skip-vlm at http://127.0.0.1:18732" in warnings[0] and "'<|im_end|>' x" in warnings[0]
    assert "skip_special_tokens" in warnings[0]
    assert result.report["drop_reasons"].get("special_token_answer", 0) == 0
    with pytest.raises(NoPairsError, match="identical_answers"):
        _special_token_run(video_dir, tmp_path / "same", ["red<|im_end|>", "red"])


def test_an_answer_holding_special_token_text_inside_drops_its_pair(video_dir, tmp_path, caplog):
    """Probe b/h10: special-token text inside an answer (the endpoint went on into another turn) is no answer to
    train on: its candidate is dropped as `special_token_answer`, counted in the report and named in the warning."""
    from tpo_hf.curation.run import NoPairsError

    replies = ["red<|im_end|>\n<|im_start|>user\nAnd the next one?", "blue"]
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation.answer"):
        with pytest.raises(NoPairsError, match="special_token_answer"):
            _special_token_run(video_dir, tmp_path, replies)
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    assert set(report["drop_reasons"]) == {"special_token_answer"}
    assert "dropped (special_token_answer)" in caplog.text and "no-skip-vlm" in caplog.text


def test_a_local_models_tokenizer_special_tokens_count_as_special_token_text(tiny_backend):
    """Probe b/h10: where the video model's tokenizer is at hand, its own special tokens (placeholders included) are
    looked for too, besides the common end-of-turn texts an endpoint's replies may end with."""
    from tpo_hf.curation.answer import END_TOKEN_TEXTS, special_token_texts, strip_end_tokens

    ends, specials = special_token_texts(tiny_backend)
    assert "<|im_end|>" in ends and {"<|video_pad|>", "<|im_start|>", "<video>"} <= set(specials)
    assert set(END_TOKEN_TEXTS) <= set(ends) <= set(specials)
    assert strip_end_tokens("red <|im_end|>\n<|endoftext|>", ends) == ("red", ["<|endoftext|>", "<|im_end|>"])
    assert strip_end_tokens("red\n", ends) == ("red\n", [])  # untouched when there is none


def test_curate_refuses_an_output_dir_holding_a_trained_adapter_or_a_model(video_dir, tmp_path):
    """The dataset card would replace the adapter's model card (README.md), its files land beside the weights."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    (adapter / "README.md").write_text("model card")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    for folder, found in ((adapter, "adapter_config.json"), (model, "model.safetensors")):
        config = CurationConfig(
            video_dir=str(video_dir), video_model="frames", output_dir=str(folder), question_backend="template", **TINY
        )
        with pytest.raises(ValueError, match=rf"output_dir {folder} holds .*{found}.*another folder"):
            run_curation(config, Backends(_FramesBackend(), None, None))
        assert not (folder / "curation_report.json").exists() and not (folder / "_curation").exists()
    assert (adapter / "README.md").read_text() == "model card"


def test_empty_task_types_are_refused_where_their_granularity_has_pairs_to_make(video_dir, tmp_path):
    for name in ("localized_task_types", "comprehensive_task_types"):
        with pytest.raises(ValueError, match=rf"{name} is empty, but .*_per_video=1 and mix_ratio='5:5'"):
            _config(tmp_path, **{name: []})
    # with no share of the mix, an empty list makes no candidates of that granularity (no crash mid-run)
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="frames",
        output_dir=str(tmp_path / "out"),
        question_backend="template",
        use_judge=False,
        comprehensive_task_types=[],
        mix_ratio="1:0",
        **TINY,
    )
    result = run_curation(config, Backends(_FramesBackend(), None, None))
    assert len(result.dataset) > 0 and set(result.dataset["granularity"]) == {"localized"}


@pytest.mark.parametrize("ratio", ["nan:1", "inf:1", "1:-inf"])
def test_a_non_finite_mix_ratio_is_refused_naming_it(tmp_path, ratio):
    with pytest.raises(ValueError, match=rf"mix_ratio='{ratio}' needs finite parts"):
        _config(tmp_path, mix_ratio=ratio)


@pytest.mark.parametrize("written", [["mp4,mkv"], [".mp4 .mkv"], "mp4, .MKV", ["mp4", "mkv"]])
def test_video_extensions_written_as_one_string_are_split(tmp_path, written):
    assert _config(tmp_path, video_extensions=written).video_extensions == [".mp4", ".mkv"]


def _annotated_rows_config(video_dir, tmp_path, rows, **columns):
    """Comprehensive-only curation of the annotation rows `rows` (written to a jsonl file) with template questions,
    no judge, and the frames backend."""
    data_file = tmp_path / "qa.jsonl"
    data_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return CurationConfig(
        dataset_name=str(data_file),
        video_root=str(video_dir),
        question_column="question",
        video_model="frames",
        output_dir=str(tmp_path / "out"),
        question_backend="template",
        use_judge=False,
        localized_per_video=0,
        mix_ratio="0:1",
        **columns,
        **TINY,
    )


def test_annotation_rows_without_a_question_are_counted_and_logged(video_dir, tmp_path, caplog):
    rows = [
        {"video": "red_blue.mp4", "question": "What colour comes first?"},
        {"video": "red_blue.mp4", "question": None},
        {"video": "green_yellow.mp4", "question": ""},
        {"video": "green_yellow.mp4", "question": "What moves?"},
    ]
    config = _annotated_rows_config(video_dir, tmp_path, rows)
    with caplog.at_level(logging.WARNING):
        result = run_curation(config, Backends(_FramesBackend(), None, None))
    assert "2 row(s) of" in caplog.text and "rows 1, 2" in caplog.text
    assert result.report["drop_reasons"] == {"annotation_without_question": 2}
    assert sorted(result.dataset["prompt"]) == ["What colour comes first?", "What moves?"]


def test_rows_giving_a_video_another_caption_are_named_and_counted(video_dir, tmp_path, caplog):
    """Probe b/G7: two rows of one video giving different captions (a merged annotation file): the first was used and
    the other dropped with no word. Now the rows are named in a warning and counted in the report; a caption alike
    but for case, spacing or final punctuation is no other caption."""
    rows = [
        {"video": "red_blue.mp4", "caption": "A red square, then a blue circle.", "question": "What comes first?"},
        {"video": "red_blue.mp4", "caption": "A blue circle only.", "question": "What comes last?"},
        {"video": "red_blue.mp4", "caption": "a red square, then a blue circle", "question": "What moves?"},
        {"video": "red_blue.mp4", "caption": None, "question": "What is red?"},
        {"video": "green_yellow.mp4", "caption": "green then yellow", "question": "What moves?"},
    ]
    config = _annotated_rows_config(video_dir, tmp_path, rows, caption_column="caption")
    with caplog.at_level(logging.WARNING):
        result = run_curation(config, Backends(_FramesBackend(), None, None))
    warnings = [r.getMessage() for r in caplog.records if "another caption" in r.getMessage()]
    assert len(warnings) == 1 and "red_blue.mp4 (row 0 used, row(s) 1 ignored)" in warnings[0]
    assert result.report["captions_ignored"] == 1
    captions = {item.video_id: item.caption for item in list_videos(config)}
    assert captions == {"red_blue.mp4": "A red square, then a blue circle.", "green_yellow.mp4": "green then yellow"}


def test_dataset_paths_starting_with_dot_slash_are_normalised(video_dir, tmp_path):
    import shutil

    (tmp_path / "clips").mkdir()
    shutil.copy(video_dir / "red_blue.mp4", tmp_path / "clips" / "a.mp4")
    data_file = tmp_path / "qa.csv"
    data_file.write_text("video,question\n./clips/a.mp4,What comes first?\n")
    config = CurationConfig(
        dataset_name=str(data_file),
        question_column="question",
        video_model="frames",
        output_dir=str(tmp_path / "out"),
        question_backend="template",
        push_to_hub="user/data",
        upload_videos=True,
        **TINY,
    )
    items = list_videos(config)  # checks the Hub paths of --upload_videos too
    assert [item.video_id for item in items] == ["clips/a.mp4"]
    assert items[0].path == str(tmp_path / "clips" / "a.mp4")


def test_a_video_file_name_that_is_not_utf8_is_skipped_by_name_or_refused(video_dir, tmp_path, caplog):
    import shutil

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(video_dir / "red_blue.mp4", folder / "normal.mp4")
    try:
        shutil.copy(video_dir / "red_blue.mp4", os.fsdecode(bytes(folder) + b"/caf\xe9.mp4"))
    except OSError:
        pytest.skip("this file system refuses file names that are not UTF-8")
    settings = dict(video_dir=str(folder), video_model="frames", question_backend="template", **TINY)
    with caplog.at_level(logging.WARNING):
        items = list_videos(CurationConfig(output_dir=str(tmp_path / "out"), **settings))
    assert [item.video_id for item in items] == ["normal.mp4"]
    assert "caf\\xe9.mp4" in caplog.text and "not UTF-8" in caplog.text
    with pytest.raises(ValueError, match=r"caf\\xe9\.mp4.*not UTF-8"):
        list_videos(CurationConfig(output_dir=str(tmp_path / "out"), on_video_error="raise", **settings))


def test_hidden_videos_in_video_dir_are_left_out_and_named(video_dir, tmp_path, caplog):
    """Probe b/G18 (and b/G17): a folder on a USB drive or from an unzipped archive holds a deleted take under
    `.Trash-1000/`, a `__MACOSX/` copy and macOS AppleDouble `._clip.mp4` metadata beside each clip; they were
    curated (or tried and skipped) as videos. Hidden files and folders and `__MACOSX` are left out, as `datasets`'
    folder loaders leave them out, named in one warning; a `video_dir` that itself lies in a hidden folder is read."""
    import shutil

    folder = tmp_path / ".usb" / "videos"  # hidden above video_dir: not a reason to leave anything out
    (folder / ".Trash-1000" / "files").mkdir(parents=True)
    (folder / "__MACOSX").mkdir()
    shutil.copy(video_dir / "red_blue.mp4", folder / "red_blue.mp4")
    shutil.copy(video_dir / "green_yellow.mp4", folder / ".Trash-1000" / "files" / "deleted_take.mp4")
    shutil.copy(video_dir / "green_yellow.mp4", folder / "__MACOSX" / "red_blue_copy.mp4")
    (folder / "._red_blue.mp4").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 100)
    config = CurationConfig(
        video_dir=str(folder), video_model="frames", output_dir=str(tmp_path / "out"), question_backend="template"
    )
    with caplog.at_level(logging.WARNING):
        items = list_videos(config)
    assert [item.video_id for item in items] == ["red_blue.mp4"]
    warnings = [r.getMessage() for r in caplog.records if "hidden video" in r.getMessage()]
    assert len(warnings) == 1 and "Left out 3 hidden video file(s)" in warnings[0]
    for name in (".Trash-1000/files/deleted_take.mp4", "__MACOSX/red_blue_copy.mp4", "._red_blue.mp4"):
        assert name in warnings[0]


def test_an_anchor_only_run_says_every_answer_pair_was_identical(video_dir, tmp_path):
    from tpo_hf.curation.run import NoPairsError

    video = ScriptedBackend(lambda prompt: "It is red.", "same-answers")
    judge = ScriptedBackend(lambda prompt: "1. Yes\n2. No\n3. Yes", "judge")
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="same-answers",
        output_dir=str(tmp_path / "out"),
        question_backend="template",
        anchor_ratio=0.5,
        **TINY,
    )
    with pytest.raises(
        NoPairsError, match=r"\d+ candidate\(s\) made no pair \(\d+ identical_answers.*anchor_ratio=0.5"
    ):
        run_curation(config, Backends(video, None, judge))
