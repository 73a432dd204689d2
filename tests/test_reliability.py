"""Never a silent wrong result: each case a reliability probe found silent or poor becomes a test.

Caches keyed by everything they depend on (eval answers, precomputed reference log-probs, curation shards and skip
decisions), config validation in one place, runs that did no work failing loudly, bad rows named by row and field,
degenerate pairs dropped and counted, one `PushError` for every push, and resume from the latest complete
checkpoint. Real components throughout: tiny models, generated videos, a port with nothing listening as a down Hub,
the local Hub-compatible server as a faulty one. New names are imported inside the tests, so that on the old code
each test fails on its own case rather than all on one import.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset, load_from_disk
from peft import LoraConfig

from tests.conftest import ALL_FAMILIES, preference_rows
from tpo_hf import TPOTrainer, VideoPreferenceCollator, VideoPreferenceProcessor
from tpo_hf.curation import Backends, CurationConfig, GenerationBackend, run_curation
from tpo_hf.curation.run import NoPairsError
from tpo_hf.synthetic import Scene, write_synthetic_video
from tpo_hf.tiny import build_tiny_model, tiny_tpo_config

FAMILY = "qwen2_vl"


def make_args(tmp_path, video_dir, **overrides):
    settings = dict(video_root=str(video_dir), max_steps=1, learning_rate=1e-3, warmup_ratio=0.0, disable_tqdm=True)
    return tiny_tpo_config(tmp_path / "out", **{**settings, **overrides})


def lora():
    return LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0)


def make_trainer(model, processor, rows, tmp_path, video_dir):
    """A one-step TPOTrainer on `rows` (a list of dicts or a Dataset), output in `tmp_path / "out"`."""
    dataset = rows if isinstance(rows, Dataset) else Dataset.from_list(rows)
    return TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora(),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- 2. config validation in one place -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(beta=-0.3), "beta"),
        (dict(beta=0.0), "beta"),
        (dict(learning_rate=-1e-4), "learning_rate"),
        (dict(learning_rate=0.0), "learning_rate"),  # trains nothing, then saves and publishes the untrained adapter
        (dict(max_steps=0), "max_steps"),
        (dict(num_train_epochs=0.0), "num_train_epochs"),
        (dict(weight_decay=-0.1), "weight_decay"),
        (dict(warmup_ratio=1.5), "warmup_ratio"),
        (dict(loss_type=["sigmoid", "hinge"], loss_weights=[1.0, -0.5]), "loss_weights"),
    ],
)
def test_training_config_refuses_out_of_range_values(tmp_path, overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_tpo_config(tmp_path, **overrides)


def test_sft_weight_has_one_source_of_truth_and_the_card_shows_what_trained(video_dir, tmp_path):
    from tpo_hf.hub.model_card import trainer_hyperparameters
    from tpo_hf.train import make_parser

    flags = ["--output_dir", str(tmp_path), "--use_cpu", "true", "--bf16", "false", "--dataset_name", "d"]
    _, args, _ = make_parser().parse_args_and_config(
        args=[*flags, "--model_name_or_path", "m", "--loss_type", "sigmoid", "--sft_weight", "0.5"]
    )
    assert (args.loss_type, args.loss_weights) == (["sigmoid", "sft"], [1.0, 0.5])

    model, processor = build_tiny_model(FAMILY)
    dataset = Dataset.from_list(preference_rows(repeat=1))
    # A setting changed after the config was built would be silently ignored (TRL reads loss_weights): refused
    for name, value in (("sft_weight", 0.0), ("beta", -0.3)):
        args = make_args(tmp_path, video_dir, sft_weight=0.5)
        setattr(args, name, value)
        with pytest.raises(ValueError, match=name):
            TPOTrainer(model, args=args, train_dataset=dataset, processing_class=processor, peft_config=lora())
    # The card reports the SFT weight the trainer combined, not a field edited afterwards
    trainer = make_trainer(model, processor, dataset, tmp_path, video_dir)
    trainer.args.sft_weight = 0.9
    shown = trainer_hyperparameters(trainer)
    assert shown["sft_weight"] == 0.5 and shown["loss_type"] == ["sigmoid", "sft"]


def test_curation_and_eval_configs_refuse_out_of_range_values(tmp_path):
    from tpo_hf.eval.config import EvalConfig

    base = dict(video_dir=str(tmp_path), video_model="m", output_dir=str(tmp_path / "out"))
    for field, value in (
        ("localized_per_video", -1),
        ("comprehensive_per_video", -2),
        ("segment_seconds", -5.0),
        ("max_retries", -1),
        ("target_size", 0),
        ("answer_max_new_tokens", 0),
    ):
        with pytest.raises(ValueError, match=field):
            CurationConfig(**base, **{field: value})
    with pytest.raises(ValueError, match="limit"):
        EvalConfig(benchmark="mlvu_dev", limit=0)
    with pytest.raises(ValueError, match="vniah_lengths"):
        EvalConfig(vniah=True, vniah_lengths=[])


# --- 3. runs that did no real work fail loudly ------------------------------------------------------------------------
def test_every_pair_too_long_fails_instead_of_saving_an_untrained_model(video_dir, tmp_path):
    from tpo_hf.trainer import NoTrainingDataError

    model, processor = build_tiny_model(FAMILY)
    # A collator TPOTrainer cannot count rows for before training (here a plain function): the check after the
    # steps is the backstop (test_rows_too_long_are_refused_before_the_first_step: the counted case)
    collator = VideoPreferenceCollator(VideoPreferenceProcessor(processor, num_frames=4, video_root=video_dir), 16)
    trainer = TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir, max_length=16, max_steps=2),
        data_collator=lambda rows: collator(rows),
        train_dataset=Dataset.from_list(preference_rows(repeat=1)),
        processing_class=processor,
        peft_config=lora(),
    )
    with pytest.raises(NoTrainingDataError, match="max_length=16"):
        trainer.train()
    logged = [
        entry["too_long/dropped_total"] for entry in trainer.state.log_history if "too_long/dropped_total" in entry
    ]
    assert logged and logged[-1] == 4  # 2 steps x 2 pairs, all in the logs


def test_dropped_totals_reach_trainer_state_json(video_dir, tmp_path):
    rows = preference_rows(repeat=1)
    rows[1]["chosen"] = "a long answer " * 60
    rows += [dict(rows[0], chosen=rows[0]["rejected"])]  # degenerate: chosen == rejected
    probe = VideoPreferenceProcessor(build_tiny_model(FAMILY)[1], num_frames=4, video_root=video_dir)
    prompt_len = len(probe.encode_pair(rows[0]["prompt"], rows[0]["video"], "x", "y").prompt_ids)
    model, processor = build_tiny_model(FAMILY)
    trainer = TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir, max_length=prompt_len + 40),
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        peft_config=lora(),
    )
    trainer.train()
    trainer.save_state()
    final = json.loads((Path(trainer.args.output_dir) / "trainer_state.json").read_text())["log_history"][-1]
    assert "train_loss" in final
    assert final["too_long/dropped_total"] == 1 and final["degenerate/dropped_total"] == 1


def test_zero_pairs_curated_fails_with_the_reason_in_error_summary_and_report(video_dir, tmp_path, capsys):
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="frames",
        output_dir=str(tmp_path / "out"),
        question_backend="template",
        use_judge=False,
        comprehensive_per_video=0,
        segment_seconds=100.0,  # longer than every 8 s video
        num_frames=4,
        sparse_num_frames=2,
        progress=False,
    )
    with pytest.raises(NoPairsError, match="segment_seconds=100.0"):
        run_curation(config, Backends(FrameBackend(), None, None))
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    assert "did not fit" in report["no_pairs_reason"] and report["segments_missing_short_video"] == 2
    assert "NO PAIRS" in capsys.readouterr().out


def test_zero_samples_evaluated_is_an_error(tmp_path):
    from tpo_hf.eval.benchmarks import load_benchmark
    from tpo_hf.eval.mcq import evaluate_mcq

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(Exception, match="empty|no rows"):
        load_benchmark("mlvu_dev", str(empty))
    model, processor = build_tiny_model(FAMILY)
    with pytest.raises(ValueError, match="No samples"):
        evaluate_mcq(model, VideoPreferenceProcessor(processor, num_frames=2), [], progress=False)


# --- 4. bad rows named by row and field; degenerate pairs dropped and counted ------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [
        ("chosen", 5),
        ("chosen", [1, 2]),
        ("chosen", {"text": "hi"}),
        ("rejected", [{"role": "assistant"}]),
        ("prompt", 3.5),
        ("video", 7),
        ("segment_start", "soon"),
    ],
)
def test_wrong_types_name_row_and_field(video_dir, field, value):
    processor = VideoPreferenceProcessor(build_tiny_model(FAMILY)[1], num_frames=2, video_root=video_dir)
    rows = preference_rows(repeat=1)
    rows[1][field] = value
    with pytest.raises(ValueError, match=rf"row 1.*'{field}'"):
        VideoPreferenceCollator(processor)(rows)


def test_wrong_type_in_a_dataset_is_named_before_training(video_dir, tmp_path):
    rows = [dict(row, chosen=index) for index, row in enumerate(preference_rows(repeat=1))]  # an int column
    model, processor = build_tiny_model(FAMILY)
    with pytest.raises(ValueError, match=r"train row 0, field 'chosen'.*int"):
        make_trainer(model, processor, rows, tmp_path, video_dir)


def test_degenerate_pairs_are_dropped_with_count_and_reason(video_dir, tmp_path, caplog):
    from tpo_hf.trainer import NoTrainingDataError

    good = preference_rows(repeat=1)
    bad = [
        dict(good[0], chosen="   "),
        dict(good[0], rejected=good[0]["chosen"]),
        dict(good[1], prompt=""),
        dict(good[1], chosen=[{"role": "assistant", "content": ""}], rejected=[{"role": "assistant", "content": "x"}]),
    ]
    for row in bad[3:]:
        row["prompt"] = [{"role": "user", "content": "What happens?"}]
    model, processor = build_tiny_model(FAMILY)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.trainer"):
        trainer = make_trainer(model, processor, good + bad[:3], tmp_path, video_dir)
    assert len(trainer.train_dataset) == 2
    assert dict(trainer.degenerate_dropped) == {"empty chosen": 1, "chosen == rejected": 1, "empty prompt": 1}
    assert "dropped 3 degenerate pair(s)" in caplog.text
    with pytest.raises(NoTrainingDataError, match="empty chosen"):
        make_trainer(model, processor, bad[3:], tmp_path, video_dir)


def test_anchor_rows_train_through_the_sft_term_only(video_dir, tmp_path):
    """An anchor row (`anchor` true, its one answer as chosen and rejected) is kept, not dropped as degenerate. The
    margin of a preference loss is zero on it whatever the weights, so the DPO term gives it no gradient and only the
    SFT term trains on it; losses that score chosen and rejected apart are refused on such a dataset."""
    from tpo_hf.trainer import TPOTrainer

    rows = preference_rows(repeat=1)
    anchors = [dict(row, rejected=row["chosen"], anchor=True) for row in rows]
    pairs = [dict(row, anchor=False) for row in rows]

    def gradient_norm(dataset_rows, **overrides) -> float:
        model, processor = build_tiny_model(FAMILY)
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, **overrides),
            train_dataset=Dataset.from_list(dataset_rows),
            processing_class=processor,
            peft_config=lora(),
        )
        assert len(trainer.train_dataset) == len(dataset_rows) and not trainer.degenerate_dropped
        trainer.model.train()
        batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        trainer.compute_loss(trainer.model, batch).backward()
        grads = [p.grad.norm() for p in trainer.model.parameters() if p.requires_grad and p.grad is not None]
        return float(torch.stack(grads).norm()) if grads else 0.0

    dpo_only = dict(loss_type=["sigmoid"], sft_weight=0.0)
    assert gradient_norm(anchors, **dpo_only) < 1e-6 * gradient_norm(pairs, **dpo_only)
    assert gradient_norm(anchors, loss_type=["sigmoid"], sft_weight=0.5) > 1e-3
    model, processor = build_tiny_model(FAMILY)
    with pytest.raises(ValueError, match=r"2 anchor row\(s\).*'apo_zero'"):
        TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, loss_type=["apo_zero"]),
            train_dataset=Dataset.from_list(anchors + pairs),
            processing_class=processor,
            peft_config=lora(),
        )
    model, processor = build_tiny_model(FAMILY)
    with pytest.raises(ValueError, match=r"train row 1 is an anchor row .* differ"):
        make_trainer(model, processor, [anchors[0], dict(pairs[1], anchor=True)], tmp_path, video_dir)


def test_data_files_with_clashing_types_name_row_and_field(tmp_path):
    from tpo_hf.data import load_preference_dataset

    rows = preference_rows(repeat=1)
    rows[1]["chosen"] = 42
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ValueError, match=r"pairs.jsonl: row 1, field 'chosen' is a number"):
        load_preference_dataset(str(data))
    data.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        load_preference_dataset(str(data))


def test_curation_annotations_of_the_wrong_type_are_named(video_dir, tmp_path):
    from tpo_hf.curation import list_videos

    data = tmp_path / "videos.json"
    data.write_text(json.dumps([{"video": "red_blue.mp4", "question": ["What", "is", "red?"]}]))
    config = CurationConfig(
        dataset_name=str(data), video_root=str(video_dir), question_column="question", video_model="m"
    )
    with pytest.raises(ValueError, match=r"Row 0 .*field 'question': expected a string, got list"):
        list_videos(config)


def test_eval_rows_with_bad_options_are_named(tmp_path):
    from tpo_hf.eval.benchmarks import load_benchmark

    row = {"sample_id": "s0", "video": "a.mp4", "question": "Q?", "prompt": "Q?", "answer": "A"}
    for options, match in (([], "options"), ("ABCD", "options"), (["red", None], "option 1")):
        data = tmp_path / "world.jsonl"
        data.write_text(json.dumps({**row, "options": options}) + "\n")
        with pytest.raises(ValueError, match=f"row 0.*{match}"):
            load_benchmark("tpo_world", str(data))


# --- 1. caches keyed by everything they depend on ---------------------------------------------------------------------
LVB_ROWS = [
    {
        "id": f"q{i}",
        "video_path": video,
        "question": question,
        "candidates": ["left", "right", "up"],
        "correct_choice": 1,
    }
    for i, (video, question) in enumerate([("red_blue.mp4", "Where does it move?"), ("green_yellow.mp4", "Where?")])
]


def test_eval_cache_is_keyed_by_question_answer_settings_and_video_file(video_dir, tmp_path):
    from tpo_hf.eval.benchmarks import load_benchmark
    from tpo_hf.eval.mcq import evaluate_mcq

    videos = tmp_path / "videos"
    shutil.copytree(video_dir, videos)
    model, processor = build_tiny_model(FAMILY)
    processor = VideoPreferenceProcessor(processor, num_frames=2)
    cache = tmp_path / "cache.jsonl"

    def run(rows, processor=processor, max_new_tokens=2, videos=videos):
        data = tmp_path / "lvb.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        samples = load_benchmark("longvideobench_val", str(data))
        return evaluate_mcq(
            model,
            processor,
            samples,
            video_dir=videos,
            max_new_tokens=max_new_tokens,
            cache_path=cache,
            fingerprint="tiny",
            progress=False,
        )

    assert run(LVB_ROWS).computed == {"base": ["q0", "q1"]}
    assert run(LVB_ROWS).computed == {}  # nothing changed: every answer comes from the cache
    changes = {
        "question": [dict(LVB_ROWS[0], question="Which way?"), LVB_ROWS[1]],
        "options": [dict(LVB_ROWS[0], candidates=["up", "down", "left"]), LVB_ROWS[1]],
        "answer key": [dict(LVB_ROWS[0], correct_choice=0), LVB_ROWS[1]],
    }
    for name, rows in changes.items():
        assert run(rows).computed == {"base": ["q0"]}, name
        run(LVB_ROWS)  # back to the original
    assert run(LVB_ROWS, max_new_tokens=3).computed == {"base": ["q0", "q1"]}
    run(LVB_ROWS)
    other_pixels = VideoPreferenceProcessor(processor.processor, num_frames=2, max_pixels=32 * 32)
    assert run(LVB_ROWS, processor=other_pixels).computed == {"base": ["q0", "q1"]}
    run(LVB_ROWS)
    write_synthetic_video(videos / "green_yellow.mp4", [Scene(8, "red", "circle", "up")], fps=8)  # re-encoded file
    assert run(LVB_ROWS).computed == {"base": ["q1"]}
    # the video file is keyed by size and modification time, not its path (as curation keys it): the same videos
    # after their folder moved keep their answers, and so do answers cached under the older `path@size:mtime` keys
    moved = videos.rename(tmp_path / "moved")
    assert run(LVB_ROWS, videos=moved).computed == {}
    lines = [json.loads(line) for line in cache.read_text().splitlines()]
    for line in lines:
        line["inputs"]["video_file"] = f"{videos}/video.mp4@{line['inputs']['video_file']}"
    cache.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert run(LVB_ROWS, videos=moved).computed == {}


def test_precomputed_reference_log_probs_follow_frames_and_video_files(video_dir, tmp_path):
    videos = tmp_path / "videos"
    shutil.copytree(video_dir, videos)
    Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(tmp_path / "data"))
    dataset = load_from_disk(str(tmp_path / "data"))  # on disk: TRL caches the log-probs beside it

    def reference(**overrides):
        model, processor = build_tiny_model(FAMILY)
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, videos, precompute_ref_log_probs=True, **overrides),
            train_dataset=dataset,
            processing_class=processor,
            peft_config=lora(),
        )
        return torch.tensor(trainer.train_dataset["ref_chosen_logps"])

    first = reference()
    torch.testing.assert_close(reference(), first)  # same everything: reused (or recomputed identically)
    assert not torch.allclose(reference(num_frames=2), first)  # other frames: recomputed
    write_synthetic_video(videos / "red_blue.mp4", [Scene(8, "yellow", "square", "up")], fps=8)
    changed = reference()
    assert not torch.isclose(changed[0], first[0]) and torch.isclose(changed[1], first[1])


class FrameBackend(GenerationBackend):
    """A video backend whose reply depends on what it is shown (frame count and indices), like a real model."""

    model_id = "frames"

    def generate(self, requests, max_new_tokens, seed=0):
        replies = []
        for request in requests:
            if request.video is None:
                replies.append("text")
            else:
                frames, metadata = request.video
                replies.append(f"{len(frames)} frames {metadata['frames_indices']}")
        return replies


def curation_config(video_folder, output_dir, **overrides):
    settings = dict(
        video_dir=str(video_folder),
        video_model="frames",
        output_dir=str(output_dir),
        question_backend="template",
        use_judge=False,
        localized_per_video=1,
        comprehensive_per_video=1,
        num_frames=4,
        sparse_num_frames=2,
        progress=False,
    )
    return CurationConfig(**{**settings, **overrides})


def test_curation_resume_redoes_repaired_videos_and_honours_on_video_error(video_dir, tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(video_dir / "red_blue.mp4", folder / "a.mp4")
    (folder / "b.mp4").write_bytes(b"not a video")
    config = curation_config(folder, tmp_path / "out")
    first = run_curation(config, Backends(FrameBackend(), None, None))
    assert [s["video"] for s in first.report["videos"]["skipped"]] == ["b.mp4"]

    # the run's settings now say "raise": the old skip decision must not stand
    with pytest.raises(ValueError, match="b.mp4"):
        run_curation(
            curation_config(folder, tmp_path / "out", on_video_error="raise"), Backends(FrameBackend(), None, None)
        )
    shutil.copy(video_dir / "green_yellow.mp4", folder / "b.mp4")  # repaired
    repaired = run_curation(config, Backends(FrameBackend(), None, None))
    assert repaired.report["videos"]["skipped"] == []
    assert "videos/b.mp4" in set(repaired.dataset["video"])

    # settings that change the shards are refused by name
    with pytest.raises(ValueError, match="changed: .*seed"):
        run_curation(curation_config(folder, tmp_path / "out", seed=7), Backends(FrameBackend(), None, None))


def test_one_frame_video_gives_no_pair_from_identical_views(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_synthetic_video(folder / "still.mp4", [Scene(0.125, "red", "square", "right")], fps=8)  # one frame
    write_synthetic_video(folder / "moving.mp4", [Scene(4, "blue", "circle", "left")], fps=8)
    result = run_curation(
        curation_config(folder, tmp_path / "out", localized_per_video=0, mix_ratio="0:1"),
        Backends(FrameBackend(), None, None),
    )
    assert result.report["drop_reasons"].get("identical_views") == 1
    assert set(result.dataset["video"]) == {"videos/moving.mp4"}


def test_curation_summary_says_when_the_pools_could_not_fill_the_mix(tmp_path, capsys):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_synthetic_video(folder / "moving.mp4", [Scene(4, "blue", "circle", "left")], fps=8)
    # one video, one comprehensive question: 1 pair where the 0:1 mix asks for 5
    result = run_curation(
        curation_config(folder, tmp_path / "out", localized_per_video=0, mix_ratio="0:1", target_size=5),
        Backends(FrameBackend(), None, None),
    )
    assert len(result.dataset) == 1 and result.report["mix"]["short_comprehensive"] == 4
    summary = capsys.readouterr().out
    assert "mix 0:1 short by" in summary and "0 localized, 4 comprehensive (more videos fill it)" in summary
    # a mix that fills leaves the row out
    run_curation(
        curation_config(folder, tmp_path / "full", localized_per_video=0, mix_ratio="0:1", target_size=1),
        Backends(FrameBackend(), None, None),
    )
    assert "short by" not in capsys.readouterr().out


def test_sparse_frame_fraction_gives_short_videos_a_sparser_view(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    two_frames = [Scene(0.125, "red", "square", "right"), Scene(0.125, "blue", "circle", "left")]
    write_synthetic_video(folder / "short.mp4", two_frames, fps=8)
    comprehensive_only = dict(localized_per_video=0, mix_ratio="0:1")
    # 2 distinct frames and sparse_num_frames=2: both views are the whole video, so no pair
    with pytest.raises(NoPairsError, match="1 identical_views"):
        run_curation(
            curation_config(folder, tmp_path / "plain", **comprehensive_only), Backends(FrameBackend(), None, None)
        )
    capped = run_curation(
        curation_config(folder, tmp_path / "capped", sparse_frame_fraction=0.5, **comprehensive_only),
        Backends(FrameBackend(), None, None),
    )
    assert capped.report["frames"]["sparse_frame_fraction"] == 0.5
    [row] = capped.dataset
    assert len(row["rejected_frame_indices"]) == 1 and len(set(row["chosen_frame_indices"])) == 2
    with pytest.raises(ValueError, match="sparse_frame_fraction=1.5"):
        curation_config(folder, tmp_path / "bad", sparse_frame_fraction=1.5)
    # off (None) leaves the shard fingerprint as it was before the option existed
    assert "sparse_frame_fraction" not in curation_config(folder, tmp_path / "x").fingerprint_fields()


# --- 5. push failures and checkpoints ---------------------------------------------------------------------------------
@pytest.fixture
def down_hub(monkeypatch):
    """A Hub endpoint where nothing listens (an outage), seen by every client built in this process."""
    import huggingface_hub.constants

    endpoint = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_local_test_token")
    return endpoint


def test_push_failures_raise_the_same_push_error_everywhere(down_hub, video_dir, tmp_path):
    from tpo_hf.hub.push import PushError, push_adapter, push_dataset
    from tpo_hf.hub.space import push_space

    config = curation_config(video_dir, tmp_path / "curated")
    curated = run_curation(config, Backends(FrameBackend(), None, None))
    with pytest.raises(PushError) as dataset_error:
        push_dataset(curated.output_dir, "user/pairs", curated.dataset, curated.report, config)
    space = tmp_path / "space"
    space.mkdir()
    (space / "app.py").write_text("print('demo')\n")
    with pytest.raises(PushError) as space_error:
        push_space(space, "user/demo")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with pytest.raises(PushError) as adapter_error:
        push_adapter(adapter, "user/model")
    model, processor = build_tiny_model(FAMILY)
    with pytest.raises(PushError) as train_error:
        TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, push_to_hub=True, hub_model_id="user/model"),
            train_dataset=Dataset.from_list(preference_rows(repeat=1)),
            processing_class=processor,
            peft_config=lora(),
        )
    for error, repo, command in (
        (dataset_error, "user/pairs", "tpo-hf curate"),
        (
            space_error,
            "user/demo",
            "tpo_hf.hub.space.push_space(",
        ),  # the Python call it came from (the CLI passes its command)
        (adapter_error, "user/model", "tpo-hf push"),
        (train_error, "user/model", "tpo-hf train"),
    ):
        message = str(error.value)
        assert down_hub in message and repo in message and f"Rerun `{command}" in message, message


# huggingface_hub 2.x hands raw bytes to httpx's deprecated `data=` when uploading LFS files (not our call)
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_push_error_from_a_faulty_hub_and_through_the_cli(video_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants
    from hub_server import HubServer

    from tpo_hf.commands import main as cli_main
    from tpo_hf.hub.push import PushError, push_dataset

    config = curation_config(video_dir, tmp_path / "curated")
    curated = run_curation(config, Backends(FrameBackend(), None, None))
    with HubServer(tmp_path / "hub") as hub:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", "hf_local_test_token")
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        hub.fail_next_commits(10)
        with pytest.raises(PushError, match=f"user/pairs on {hub.endpoint}.*commit failed on purpose"):
            push_dataset(curated.output_dir, "user/pairs", curated.dataset, curated.report, config)
        hub.fail_next_commits(0)
        push_dataset(curated.output_dir, "user/pairs", curated.dataset, curated.report, config)  # the rerun works
        assert [c["title"] for c in hub.commits("user/pairs", "dataset")][-1].startswith("Add TPO preference pairs")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{free_port()}")  # an outage
    with pytest.raises(SystemExit) as exit_info:  # the CLI prints one message, no traceback
        cli_main(["push", "--adapter_dir", str(adapter), "--repo_id", "user/model"])
    assert "tpo-hf push" in str(exit_info.value) and "user/model" in str(exit_info.value)


def test_resume_true_picks_the_latest_complete_checkpoint(video_dir, tmp_path):
    complete_file = "tpo_checkpoint_complete.json"  # written last into each checkpoint (TPOTrainer)
    dataset = Dataset.from_list(preference_rows(repeat=1))

    def trainer(max_steps):
        model, processor = build_tiny_model(FAMILY)
        args = make_args(
            tmp_path, video_dir, max_steps=max_steps, save_strategy="steps", save_steps=1, save_total_limit=2
        )
        return TPOTrainer(model, args=args, train_dataset=dataset, processing_class=processor, peft_config=lora())

    first = trainer(2)
    first.train()
    output = Path(first.args.output_dir)
    # a SIGKILL during the save of checkpoint-2: weights written, optimizer cut short, no state, no completion file
    interrupted = output / "checkpoint-2"
    (interrupted / complete_file).unlink(missing_ok=True)
    (interrupted / "trainer_state.json").unlink()
    (interrupted / "optimizer.pt").write_bytes((interrupted / "optimizer.pt").read_bytes()[:100])

    with pytest.raises(ValueError, match="checkpoint-2 is incomplete.*checkpoint-1"):
        trainer(3).train(resume_from_checkpoint=str(interrupted))
    resumed = trainer(3)
    resumed.train(resume_from_checkpoint="true")  # as `--resume_from_checkpoint true` passes it
    assert resumed.state.global_step == 3
    steps = [entry["step"] for entry in resumed.state.log_history if "loss" in entry]
    assert steps[0] == 1 and steps[-1] == 3  # the history of step 1 came from checkpoint-1; steps 2-3 retrained
    # rotation (save_total_limit=2) ran only once the new checkpoint was complete
    assert sorted(path.name for path in output.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    assert all((output / f"checkpoint-{step}" / complete_file).is_file() for step in (2, 3))


# --- smaller items ---------------------------------------------------------------------------------------------------
def test_http_backend_does_not_claim_retries_it_did_not_make(monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    import huggingface_hub.constants

    from tpo_hf.curation import BackendError, GenerationRequest, OpenAIBackend

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    calls = []

    class BadRequest(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            calls.append(self.path)
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "bad request"}')

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), BadRequest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend(
            "m", base_url=f"http://127.0.0.1:{server.server_port}", max_retries=3, retry_backoff=0.01
        )
        with pytest.raises(BackendError, match=r"after 1 attempt\(s\) \(not retried"):
            backend.generate([GenerationRequest("hi")], 4)
    finally:
        server.shutdown()
    assert len(calls) == 1


# --- refused before wasted work, bad rows named, fewer frames than asked -------------------------
def test_rows_too_long_are_refused_before_the_first_step(video_dir, tmp_path):
    from tpo_hf.collator import TooLongError
    from tpo_hf.trainer import NoTrainingDataError

    model, processor = build_tiny_model(FAMILY)
    dataset = Dataset.from_list(preference_rows(repeat=1))
    # None fits: refused when the trainer is built, before any step, naming the setting, the rows and the lengths
    with pytest.raises(NoTrainingDataError, match="max_length=16") as error:
        TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, max_length=16),
            train_dataset=dataset,
            processing_class=processor,
            peft_config=lora(),
        )
    message = str(error.value)
    assert "2 of the 2 rows of the train dataset" in message and "shortest" in message and "longest" in message
    assert "Raise max_length (to at least" in message and "num_frames" in message
    # too_long_policy="error": the first row over is named, before training
    model, processor = build_tiny_model(FAMILY)
    with pytest.raises(TooLongError, match=r"train row 0 \(video 'red_blue.mp4'\).*over max_length=16"):
        TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, max_length=16, too_long_policy="error"),
            train_dataset=dataset,
            processing_class=processor,
            peft_config=lora(),
        )


def test_rows_too_long_are_counted_before_training_and_an_answer_over_max_length_named(video_dir, tmp_path, caplog):
    from tpo_hf.collator import TooLongError

    rows = preference_rows(repeat=1)
    rows[1]["chosen"] = "a long answer " * 60
    probe = VideoPreferenceProcessor(build_tiny_model(FAMILY)[1], num_frames=4, video_root=video_dir)
    prompt_len = len(probe.encode_pair(rows[0]["prompt"], rows[0]["video"], "x", "y").prompt_ids)
    model, processor = build_tiny_model(FAMILY)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.dataset_checks"):
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, max_length=prompt_len + 40),
            train_dataset=Dataset.from_list(rows),
            processing_class=processor,
            peft_config=lora(),
        )
    assert trainer.state.global_step == 0
    assert "1 of the 2 rows of the train dataset are longer than max_length" in caplog.text
    assert "will drop them (rows 1)" in caplog.text
    # an answer that alone is longer than max_length is said so, with its field
    model, processor = build_tiny_model(FAMILY)
    with pytest.raises(TooLongError, match=r"train row 1 .*The answer alone \(field 'chosen'\) is \d+ tokens"):
        TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, max_length=prompt_len + 40, too_long_policy="error"),
            train_dataset=Dataset.from_list(rows),
            processing_class=processor,
            peft_config=lora(),
        )


@pytest.mark.parametrize("family", ALL_FAMILIES)
@pytest.mark.parametrize("settings", [dict(num_frames=5), dict(num_frames=None, video_fps=2.0), dict(num_frames=90)])
def test_lengths_counted_before_training_are_the_collators(family, settings, video_dir, tmp_path):
    """The length pass counts each row's tokens without decoding its frames, and gets what the collator encodes
    (exactly; for a family whose video tokens depend on the pixels, bounds holding it)."""
    from tpo_hf.dataset_checks import PairLengthCounter

    odd = tmp_path / "odd.mp4"  # another size and rate than the fixture clips
    write_synthetic_video(odd, [Scene(3, "red"), Scene(2.5, "blue", "circle", "left")], fps=6, height=96, width=176)
    processor = VideoPreferenceProcessor(build_tiny_model(family)[1], video_root=video_dir, **settings)
    collator = VideoPreferenceCollator(processor)
    counter = PairLengthCounter(processor, collator.video_view())
    rows = preference_rows(repeat=1) + preference_rows(conversational=True, repeat=1)
    rows.append(dict(rows[0], video=str(odd)))
    for index, row in enumerate(rows):
        counted = counter.lengths(row, index)
        pair = collator._encode(row, index)
        assert (counted.chosen, counted.rejected) == (len(pair.chosen_ids), len(pair.rejected_ids))
        assert counted.prompt <= len(pair.prompt_ids) <= counted.prompt_max, (index, counted)
        if counted.prompt != counted.prompt_max:  # pixels count: between the bounds, the row's frames are decoded
            between = counter.lengths(row, index, max_length=counted.longest)
            assert between.prompt == between.prompt_max == len(pair.prompt_ids)
        else:
            assert counted.prompt == len(pair.prompt_ids)


@pytest.mark.parametrize(
    "family, field, token",
    [
        ("qwen2_vl", "prompt", "<|video_pad|>"),
        ("qwen2_vl", "chosen", "<|vision_start|>"),
        ("llava_onevision", "rejected", "<video>"),
        ("llava_onevision", "prompt", "<image>"),
    ],
)
def test_placeholder_tokens_in_text_are_named_by_row_and_field(video_dir, tmp_path, family, field, token):
    rows = preference_rows(repeat=1)
    rows[1][field] = f"Look at {token} here: {rows[1][field]}"
    model, processor = build_tiny_model(family)
    pattern = rf"row 1, field '{field}'.*placeholder token.*{token.replace('|', '.')}"
    # before training, from the whole dataset (not "Found total 2 <|video_pad|> tokens and 1 videos" mid-run)
    with pytest.raises(ValueError, match="train " + pattern):
        make_trainer(model, processor, rows, tmp_path, video_dir)
    # and by the collator, for rows that did not go through the trainer's checks
    video_processor = VideoPreferenceProcessor(processor, num_frames=2, video_root=video_dir)
    with pytest.raises(ValueError, match=pattern):
        VideoPreferenceCollator(video_processor)(rows)


@pytest.mark.parametrize("field", ["prompt", "chosen", "rejected"])
def test_text_that_is_not_utf8_is_named_by_row_and_field(video_dir, field):
    from tpo_hf.validation import RowError

    processor = VideoPreferenceProcessor(build_tiny_model(FAMILY)[1], num_frames=2, video_root=video_dir)
    rows = preference_rows(repeat=1)
    rows[1][field] = "A cut emoji \ud83d, then more."
    with pytest.raises(
        RowError, match=rf"row 1, field '{field}': the text is not valid UTF-8.*'\\ud83d' at character 12"
    ):
        VideoPreferenceCollator(processor)(rows)
    conversational = preference_rows(conversational=True, repeat=1)
    conversational[0][field] = [{"role": "user" if field == "prompt" else "assistant", "content": "bad \udc80"}]
    with pytest.raises(RowError, match=rf"row 0, field '{field}': the text is not valid UTF-8"):
        VideoPreferenceCollator(processor)(conversational)


def test_a_video_shorter_than_num_frames_is_not_repeated_except_where_a_fixed_count_is_needed(tmp_path, caplog):
    short = tmp_path / "short.mp4"
    write_synthetic_video(short, [Scene(2, "red")], fps=4)  # 8 frames
    rows = [dict(preference_rows(repeat=1)[0], video=str(short))]
    with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
        # a family that batches any frame count: each frame once, not 20 frames of which 8 distinct
        pair = VideoPreferenceCollator(VideoPreferenceProcessor(build_tiny_model(FAMILY)[1], num_frames=20))._encode(
            rows[0], 0
        )
        assert pair.frames_indices == list(range(8))
        # a family that cannot batch different frame counts: repeated up to num_frames, so batches stay batchable
        collator = VideoPreferenceCollator(
            VideoPreferenceProcessor(build_tiny_model("llava_onevision")[1], num_frames=20)
        )
        batch = collator(rows * 2)
        assert batch["pair_pixel_values_videos"].shape[:2] == (2, 20)
    warned = [record.getMessage() for record in caplog.records if str(short) in record.getMessage()]
    assert len(warned) == 1, warned  # once per video per process
    assert "has 8 frame(s), fewer than the 20 asked (num_frames=20)" in warned[0]


# --- one writer per output folder ---------------------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[1]
HOLD_LOCK = """
import sys, time
from tpo_hf.locks import output_dir_lock
with output_dir_lock(sys.argv[1], "curate"):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_output_dir(folder):
    """A real second process holding `folder` (as a running `tpo-hf curate` would), once it says so."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RANK", None)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_on_an_output_folder_in_use_is_refused_naming_the_holder(video_dir, tmp_path):
    import os
    import subprocess
    import sys

    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.eval.run import evaluate
    from tpo_hf.locks import OutputDirLockedError

    folder = tmp_path / "out"
    holder = hold_output_dir(folder)
    try:
        named = rf"in use by another run: pid {holder.pid} on host {socket.gethostname()} \(`.*`, curate\) since "
        with pytest.raises(OutputDirLockedError, match=named):
            run_curation(curation_config(video_dir, folder), Backends(FrameBackend(), None, None))
        model, processor = build_tiny_model(FAMILY)
        trainer = make_trainer(model, processor, preference_rows(repeat=1), tmp_path, video_dir)
        with pytest.raises(OutputDirLockedError, match=named):
            trainer.train()
        assert trainer.state.global_step == 0
        with pytest.raises(OutputDirLockedError, match=named):
            evaluate(EvalConfig(model_name_or_path="not/loaded", benchmark="videomme", output_dir=str(folder)))

        # the command: one line naming the holder, no traceback, status 1
        command = [sys.executable, "-m", "tpo_hf.commands.curate", "--video_dir", str(video_dir)]
        command += ["--video_model", "frames", "--output_dir", str(folder)]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
        refused = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert refused.returncode == 1
        assert "Traceback" not in refused.stderr
        last = refused.stderr.strip().splitlines()[-1]
        assert last.startswith(f"tpo-hf curate: output folder {folder} is in use by another run: pid {holder.pid} ")
        assert f"(`{Path(sys.executable).name} -c 'import sys, time from tpo_hf.locks" in last  # its command
        assert f"delete {folder / '.tpo-hf.lock'}" in last
        assert holder.poll() is None and json.loads((folder / ".tpo-hf.lock").read_text())["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over(video_dir, tmp_path, caplog):
    import signal

    folder = tmp_path / "out"
    holder = hold_output_dir(folder)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert json.loads((folder / ".tpo-hf.lock").read_text())["pid"] == holder.pid  # the killed run left its file
    with caplog.at_level(logging.WARNING, logger="tpo_hf.locks"):
        result = run_curation(curation_config(video_dir, folder), Backends(FrameBackend(), None, None))
    assert len(result.dataset) > 0
    assert f"Taking over the lock on {folder} left by pid {holder.pid} " in caplog.text
    assert not (folder / ".tpo-hf.lock").exists()  # released at the end of the run


def test_the_lock_file_decides_by_pid_on_this_host_and_by_flock_elsewhere(tmp_path, monkeypatch):
    """What a lock file whose flock is free means: its holder is gone (a record copied from a live run's folder
    included). Without flock, the pid decides: a live pid on this host holds it, one on another host does not."""
    import os
    import subprocess
    import sys

    import tpo_hf.locks
    from tpo_hf.locks import LOCK_NAME, OutputDirLockedError, output_dir_lock

    folder = tmp_path / "out"
    folder.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        for flock_works, holder, refused in (
            (True, {"pid": live.pid, "host": socket.gethostname()}, False),
            (True, {"pid": dead.pid, "host": socket.gethostname()}, False),
            (True, {"pid": live.pid, "host": "another-host"}, False),
            (False, {"pid": live.pid, "host": socket.gethostname()}, True),
            (False, {"pid": dead.pid, "host": socket.gethostname()}, False),
            (False, {"pid": live.pid, "host": "another-host"}, True),
        ):
            if not flock_works:  # a file system without flock: the pid decides
                monkeypatch.setattr(tpo_hf.locks, "fcntl", None)
            (folder / LOCK_NAME).write_text(json.dumps({**holder, "command": "tpo-hf train", "what": "train"}))
            if refused:
                with pytest.raises(OutputDirLockedError, match=f"pid {live.pid} on host {holder['host']}"):
                    with output_dir_lock(folder, "eval"):
                        pass
            else:
                with output_dir_lock(folder, "eval") as path:
                    assert json.loads(path.read_text())["pid"] == os.getpid()
                    with output_dir_lock(folder, "eval"):  # the same process again (the CLI around the job): fine
                        pass
                    assert path.exists()
                    # the other ranks of a launch take no lock: they are one writer with their main process
                    monkeypatch.setenv("RANK", "1")
                    monkeypatch.setenv("WORLD_SIZE", "2")
                    with output_dir_lock(folder, "eval") as other_rank:
                        assert other_rank is None
                    monkeypatch.delenv("RANK")
                    monkeypatch.delenv("WORLD_SIZE")
                assert not (folder / LOCK_NAME).exists()
    finally:
        live.kill()
        live.wait()


# --- caches keyed by prompt texts; incremental curation ------------------------------------------------------------------
class CountingBackend(FrameBackend):
    """`FrameBackend` that also answers text prompts as a judge that passes every pair, and records the video of every
    request it gets (`calls`), and optionally says what its model reads around a prompt (`prompt_format`)."""

    def __init__(self, layout: str | None = None):
        self.calls: list[str] = []
        self.layout = layout

    def generate(self, requests, max_new_tokens, seed=0):
        self.calls += [request.candidate.video_id for request in requests]
        replies = super().generate(requests, max_new_tokens, seed)
        return ["1. Yes\n2. No\n3. Yes" if r.video is None else reply for r, reply in zip(requests, replies)]

    def prompt_format(self, video):
        return self.layout if video else None


def test_edited_prompts_and_templates_are_not_served_from_old_shards(tmp_path, monkeypatch):
    """Curate with the judge on, edit the judge prompt, run again into the same folder: the run refuses, naming
    `judge_prompt`, instead of returning the old verdicts (0 judge calls). The same for the question templates, the
    caption prompts and the video model's prompt layout; a text the run does not use (the judge's, judge off)
    changes nothing."""
    from tpo_hf.curation import prompts

    folder = tmp_path / "videos"
    folder.mkdir()
    write_synthetic_video(folder / "a.mp4", [Scene(2, "red", "square", "right"), Scene(2, "blue", "circle")], fps=8)
    config = curation_config(folder, tmp_path / "out", use_judge=True)
    judge = CountingBackend()
    first = run_curation(config, Backends(FrameBackend(), None, judge))
    assert judge.calls and len(first.dataset) > 0

    monkeypatch.setattr(
        prompts, "JUDGE_PROMPT", prompts.JUDGE_PROMPT.replace("three checks", "3 checks") + " Be strict."
    )
    judge.calls.clear()
    with pytest.raises(ValueError, match=r"other prompts \(changed: judge_prompt\)"):
        run_curation(config, Backends(FrameBackend(), None, judge))
    assert judge.calls == []
    # a folder of its own curates with the edited prompt, and its card shows the prompt it used
    edited = run_curation(
        curation_config(folder, tmp_path / "edited", use_judge=True), Backends(FrameBackend(), None, judge)
    )
    assert judge.calls and "Be strict." in (tmp_path / "edited" / "README.md").read_text()
    monkeypatch.undo()

    monkeypatch.setitem(
        prompts.TEMPLATE_QUESTIONS, "temporal", ["What happens from {start:.1f} s to {end:.1f} s?", "Order?"]
    )
    with pytest.raises(ValueError, match=r"changed: question_templates\)"):
        run_curation(config, Backends(FrameBackend(), None, judge))
    monkeypatch.undo()
    monkeypatch.setitem(prompts.CAPTION_PROMPTS, "localized", "Describe this clip.")
    with pytest.raises(ValueError, match=r"changed: caption_prompt_localized\)"):
        run_curation(config, Backends(FrameBackend(), None, judge))
    monkeypatch.undo()
    # the video model's prompt layout (another transformers release, another chat template)
    with pytest.raises(ValueError, match=r"changed: video_prompt_layout\)"):
        run_curation(config, Backends(CountingBackend(layout="<video>* {prompt}"), None, judge))
    assert run_curation(config, Backends(FrameBackend(), None, judge)).dataset.to_list() == first.dataset.to_list()

    # without the judge, its prompt is not part of the key
    plain = curation_config(folder, tmp_path / "plain")
    run_curation(plain, Backends(FrameBackend(), None, None))
    monkeypatch.setattr(prompts, "JUDGE_PROMPT", "Another judge prompt.")
    assert len(run_curation(plain, Backends(FrameBackend(), None, None)).dataset) > 0
    assert len(edited.dataset) > 0


def test_shards_written_before_prompt_texts_were_recorded_are_refused_by_name(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_synthetic_video(folder / "a.mp4", [Scene(2, "red", "square", "right"), Scene(2, "blue", "circle")], fps=8)
    work = tmp_path / "out" / "_curation"
    work.mkdir(parents=True)
    config = curation_config(folder, tmp_path / "out")
    # a manifest as tpo-hf wrote it before (shard format 2): a hash, the settings and the shards' video lists
    old = {"fingerprint": "0" * 64, "num_shards": 1, "shards": [["a.mp4"]], "config": config.fingerprint_fields()}
    (work / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="written before prompt texts were recorded"):
        run_curation(config, Backends(FrameBackend(), None, None))


def test_the_models_prompt_formats_are_keyed_from_their_processors(tiny_model_dirs, tmp_path):
    """Without loaded backends (the command), the key holds the video model's video prompt layout and the text
    roles' chat templates, read from the processor alone; editing the chat template changes both, by name."""
    from tpo_hf.curation.storage import curation_key, model_prompt_formats
    from tpo_hf.curation.transformers_backend import TransformersBackend
    from tpo_hf.fingerprint import changed_fields
    from tpo_hf.processing import VideoPreferenceProcessor

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dirs(FAMILY), model_dir)
    config = curation_config(
        tmp_path, tmp_path / "out", video_model=str(model_dir), question_backend="transformers", use_judge=True
    )
    formats = model_prompt_formats(config)
    assert sorted(formats) == ["judge_chat_template", "question_chat_template", "video_prompt_layout"]
    processor = VideoPreferenceProcessor.from_pretrained(model_dir)
    assert formats["video_prompt_layout"] == processor.video_prompt_layout()
    assert "{prompt}" in formats["question_chat_template"]
    model, _ = build_tiny_model(FAMILY)
    loaded = TransformersBackend.from_model(model, processor)
    assert model_prompt_formats(config, Backends(loaded, loaded, loaded)) == formats

    template = model_dir / "chat_template.jinja"
    template.write_text("{{ 'You are a careful video assistant.\n' }}" + template.read_text())
    changed = changed_fields(curation_key(config, formats), curation_key(config, model_prompt_formats(config)))
    assert changed == ["judge_chat_template", "question_chat_template", "video_prompt_layout"]


def test_shards_depend_on_their_own_videos_only():
    """Adding a video regroups its own shard (and rarely the next): every other shard keeps its videos, so its file
    (named by its videos) is reused; with one video per shard nothing else moves at all."""
    from tpo_hf.curation.inputs import VideoItem, make_shards

    ids = [f"clip_{i:03d}.mp4" for i in range(0, 200, 2)]
    for per_shard in (1, 4, 8):
        before = make_shards([VideoItem(i, i) for i in ids], per_shard)
        assert all(1 <= len(shard) <= per_shard for shard in before)
        for new in ("clip_000a.mp4", "clip_101.mp4", "clip_199.mp4"):
            after = make_shards([VideoItem(i, i) for i in sorted([*ids, new])], per_shard)
            old = {tuple(v.video_id for v in shard) for shard in before}
            now = {tuple(v.video_id for v in shard) for shard in after}
            assert len(old - now) <= (0 if per_shard == 1 else 2), (per_shard, new, old - now)


def test_incremental_curation_adds_and_removes_videos_and_reuses_every_finished_shard(tmp_path, caplog):
    """A rerun after videos were added curates only those; removed videos have their pairs (and copies) dropped; a
    video changed in place is curated again; each is named in the log and counted in the report, the summary and the
    card. The result is the dataset a fresh run on the new folder makes. Settings still refuse by name."""
    from huggingface_hub import DatasetCard

    folder = tmp_path / "videos"
    folder.mkdir()
    colours = {"a.mp4": "red", "b.mp4": "green", "c.mp4": "blue", "d.mp4": "purple"}

    def write(name, direction="right"):
        write_synthetic_video(
            folder / name, [Scene(2, colours[name], "square", direction), Scene(2, "white", "circle")], fps=8
        )

    for name in ("a.mp4", "b.mp4", "c.mp4"):
        write(name)
    output = tmp_path / "out"

    def curate(out=output, **overrides):
        backend = CountingBackend()
        result = run_curation(curation_config(folder, out, **overrides), Backends(backend, None, None))
        return result, sorted(set(backend.calls))

    first, called = curate()
    assert called == ["a.mp4", "b.mp4", "c.mp4"] and first.report["videos"]["added"] == []

    write("d.mp4")
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation"):
        grown, called = curate()
    assert called == ["d.mp4"]  # only the new video
    assert "1 video(s) added since the last run (curated now): d.mp4." in caplog.text
    assert grown.report["videos"]["added"] == ["d.mp4"] and grown.report["videos"]["total"] == 4
    assert "videos/d.mp4" in set(grown.dataset["video"])
    fresh, _ = curate(tmp_path / "fresh")
    assert grown.dataset.to_list() == fresh.dataset.to_list()
    card = DatasetCard.load(output / "README.md").text
    assert "1 video(s) added and curated" in card

    (folder / "a.mp4").unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation"):
        shrunk, called = curate()
    assert called == []  # nothing to curate
    assert "1 video(s) removed since the last run (their pairs are dropped): a.mp4." in caplog.text
    assert shrunk.report["videos"]["removed"] == ["a.mp4"] and "videos/a.mp4" not in set(shrunk.dataset["video"])
    assert not (output / "videos" / "a.mp4").exists()
    assert (
        "0 video(s) added and curated,\n1 removed (their pairs dropped)" in DatasetCard.load(output / "README.md").text
    )

    write("b.mp4", direction="left")  # the same name, another file
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation"):
        changed, called = curate()
    assert called == ["b.mp4"]
    assert "1 video(s) changed in place since the last run (curated now): b.mp4." in caplog.text
    assert changed.report["videos"]["changed"] == ["b.mp4"]

    again, called = curate()  # nothing changed since: nothing curated, nothing reported
    assert called == [] and again.report["videos"]["added"] == again.report["videos"]["removed"] == []
    assert again.dataset.to_list() == changed.dataset.to_list()
    fewer, called = curate(max_videos=2)  # choosing fewer videos is a change of the video set, not of settings
    assert called == [] and fewer.report["videos"]["removed"] == ["d.mp4"]
    with pytest.raises(ValueError, match=r"other settings \(changed: seed\)"):
        curate(seed=7)


def test_reference_log_probs_are_keyed_by_the_video_prompt_layout(video_dir, tmp_path):
    """Another transformers release writes Qwen3-VL's video prompt differently (`VideoFamily.video_placeholders`):
    precomputed reference log-probs of the other layout are not reused."""
    from tpo_hf.fingerprint import changed_fields

    model, processor = build_tiny_model("qwen3_vl")
    dataset = Dataset.from_list(preference_rows(repeat=1))
    trainer = make_trainer(model, processor, dataset, tmp_path, video_dir)
    trainer._tpo_reference_hash = "the reference weights"  # TRL's part of the key, set when log-probs are computed
    key = trainer.ref_logps_key(trainer.train_dataset)
    layouts = {}
    for index in (0, 1, 2):
        trainer.video_processor.video_placeholder_index = index
        layouts[index] = trainer.video_processor.video_prompt_layout()
        if layouts[index] != layouts[0]:  # the layout of another release
            assert changed_fields(key, trainer.ref_logps_key(trainer.train_dataset)) == ["video_prompt_layout"]
    assert len(set(layouts.values())) > 1


# --- probe fixes: curation files and inputs


def _three_videos(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in (("a.mp4", "red"), ("b.mp4", "green"), ("c.mp4", "blue")):
        write_synthetic_video(folder / name, [Scene(2, colour, "square", "right"), Scene(2, "white", "circle")], fps=8)
    return folder


def _curate_counting(folder, output, **overrides):
    backend = CountingBackend()
    result = run_curation(curation_config(folder, output, **overrides), Backends(backend, None, None))
    return result, sorted(set(backend.calls))


def _tear(path):
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


def test_a_damaged_shard_file_is_named_and_its_videos_curated_again(tmp_path, caplog):
    """A shard file torn by a disk error counts as absent: a warning names it, its video is curated again, and the
    dataset is the one of the first run (it was a JSONDecodeError naming no file)."""
    folder = _three_videos(tmp_path / "videos")
    output = tmp_path / "out"
    first, _ = _curate_counting(folder, output)
    shards = sorted((output / "_curation" / "shards").glob("shard-*.json"))
    torn = next(s for s in shards if json.loads(s.read_text())["videos"] == ["b.mp4"])
    _tear(torn)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation"):
        again, called = _curate_counting(folder, output)
    assert called == ["b.mp4"]
    assert f"Shard file {torn} is damaged" in caplog.text
    assert again.dataset.to_list() == first.dataset.to_list()


def test_a_damaged_manifest_is_rebuilt_from_shards_of_this_run_and_refused_for_other_settings(tmp_path, caplog):
    """A torn `_curation/manifest.json`: the shards record the hash of the run's key, so a run with the same
    settings goes on (the manifest named, nothing curated again, the same dataset), while a run with other
    settings is refused, naming the manifest and how to start over: no shard of an unknown key is reused."""
    folder = _three_videos(tmp_path / "videos")
    output = tmp_path / "out"
    manifest = output / "_curation" / "manifest.json"
    first, _ = _curate_counting(folder, output)
    _tear(manifest)
    with pytest.raises(ValueError, match=rf"{manifest} is damaged .*other settings or prompts.*delete"):
        _curate_counting(folder, output, seed=7)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation"):
        again, called = _curate_counting(folder, output)
    assert called == [] and f"The curation manifest {manifest} is damaged" in caplog.text
    assert again.dataset.to_list() == first.dataset.to_list()
    assert json.loads(manifest.read_text())["videos"]  # written whole again

    # with the manifest deleted (as the refusal says), a video replaced since is curated again and its copy in
    # output_dir/videos is the new file, not the old one
    manifest.unlink()
    replacement = tmp_path / "new_b.mp4"
    write_synthetic_video(replacement, [Scene(2, "purple", "circle", "left"), Scene(2, "white", "square")], fps=8)
    shutil.move(replacement, folder / "b.mp4")
    _, called = _curate_counting(folder, output)
    assert called == ["b.mp4"]
    assert (output / "videos" / "b.mp4").read_bytes() == (folder / "b.mp4").read_bytes()


def _no_pairs_config(video_dir, output):
    return curation_config(video_dir, output, comprehensive_per_video=0, segment_seconds=100.0)


def test_a_curation_with_no_pairs_leaves_its_report_and_nothing_that_loads_as_a_dataset(video_dir, tmp_path):
    """A run that ends with no pair writes its report but no dataset skeleton (state.json, dataset_info.json, card),
    and removes the dataset an earlier run left in the folder; loading the folder says it holds no rows and points
    to the report (training on the skeleton was an IndexError from `datasets`)."""
    from tpo_hf.data import load_preference_dataset

    output = tmp_path / "out"
    Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(output))  # an earlier dataset in the folder
    (output / "README.md").write_text("an earlier card")
    (output / "curation_report.json").write_text("{}")  # an earlier curation's: a folder of the user's is refused
    with pytest.raises(NoPairsError):
        run_curation(_no_pairs_config(video_dir, output), Backends(FrameBackend(), None, None))
    left = sorted(p.name for p in output.iterdir())
    assert "curation_report.json" in left
    assert not {"state.json", "dataset_info.json", "README.md"} & set(left) and not list(output.glob("*.arrow"))
    with pytest.raises(ValueError, match=rf"{output} holds no data \(0 rows\).*no pair.*curation_report.json"):
        load_preference_dataset(str(output))

    # a skeleton as earlier versions left it: `save_to_disk` of 0 rows
    skeleton = tmp_path / "skeleton"
    Dataset.from_list(preference_rows(repeat=1)).select([]).save_to_disk(str(skeleton))
    with pytest.raises(ValueError, match=rf"{skeleton} holds no data \(0 rows\)"):
        load_preference_dataset(str(skeleton))


@pytest.mark.parametrize("damage", ["state.json", "dataset_info.json", "data file"])
def test_a_damaged_dataset_folder_is_named_with_its_file(tmp_path, damage):
    """A curated folder whose state.json or dataset_info.json is torn, or whose data file is gone: one ValueError
    naming the folder and the file, and saying to curate again (it was a JSONDecodeError traceback)."""
    from tpo_hf.data import load_preference_dataset

    folder = tmp_path / "data"
    Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(folder))
    if damage == "data file":
        lost = next(folder.glob("data-*.arrow"))
        lost.unlink()
        expected = rf"{folder} is damaged \({lost.name} is missing\)"
    else:
        _tear(folder / damage)
        expected = rf"{folder} is damaged \({damage}: "
    with pytest.raises(ValueError, match=expected + r".*rerun `tpo-hf curate`"):
        load_preference_dataset(str(folder))


def test_output_and_work_dirs_inside_video_dir_are_not_curated_as_new_videos(tmp_path):
    """`output_dir` (and `work_dir`) inside `video_dir`: the copies a run places in output_dir/videos are not videos
    of the next run (they were curated as new videos, duplicating pairs)."""
    folder = _three_videos(tmp_path / "videos")
    first, called = _curate_counting(folder, folder / "out", work_dir=str(folder / "work"))
    assert called == ["a.mp4", "b.mp4", "c.mp4"] and list((folder / "out" / "videos").glob("*.mp4"))
    (folder / "work" / "stray.mp4").write_bytes((folder / "a.mp4").read_bytes())  # anything under work_dir too
    again, called = _curate_counting(folder, folder / "out", work_dir=str(folder / "work"))
    assert called == [] and again.report["videos"]["total"] == 3 and again.report["videos"]["added"] == []
    assert again.dataset.to_list() == first.dataset.to_list()
    # the videos of a video_dir that is the output folder itself are curated; only its videos/ copies are left out
    own = _three_videos(tmp_path / "own")
    _curate_counting(own, own, work_dir=str(tmp_path / "work2"))
    inside, called = _curate_counting(own, own, work_dir=str(tmp_path / "work2"))
    assert called == [] and inside.report["videos"]["total"] == 3 and len(inside.dataset) == len(first.dataset)


def test_a_torn_world_base_record_is_a_cache_miss_and_rebuilt(tmp_path, monkeypatch):
    """A `world_pretrain.json` torn by a kill while it was rewritten: the cached base is built again, with a warning
    naming the record (it was a JSONDecodeError on every later call)."""
    from tpo_hf.world.base import RECORD_NAME, world_base_model
    from tpo_hf.world.pretrain import PretrainConfig

    monkeypatch.setenv("TPO_HF_CACHE", str(tmp_path / "cache"))
    config = PretrainConfig(steps=2, batch_size=2, warmup_steps=1)
    folder = world_base_model(config, progress=False)
    _tear(folder / RECORD_NAME)
    with pytest.warns(UserWarning, match=rf"{folder / RECORD_NAME} is unreadable"):
        assert world_base_model(config, progress=False) == folder
    assert json.loads((folder / RECORD_NAME).read_text())["fingerprint"]
    assert world_base_model(config, progress=False) == folder  # whole again: no warning, no rebuild


# --- probe fixes: eval, push, locks, model identity ------------------------------------------------------------------
def test_a_model_folder_is_keyed_by_its_weight_and_config_files_only(tiny_model_dirs, tmp_path):
    """Curation shards and eval answers depend on the model's weights: a model saved again into the same folder is
    named as what changed (the shards of the old weights were reused); what runs write into and beside the folder
    (`<adapter>/eval`, checkpoints, the card, the trainer state) is not the model (every eval rerun answered again)."""
    import os

    from tpo_hf.curation.storage import check_manifest, curation_key, model_identities, write_manifest
    from tpo_hf.fingerprint import changed_fields, legacy_model_identity, model_identity

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dirs(FAMILY), model_dir)
    config = curation_config(tmp_path, tmp_path / "out", video_model=str(model_dir))
    key = curation_key(config)
    assert key["video_model_weights"] == model_identity(model_dir)
    (model_dir / "eval").mkdir()
    (model_dir / "eval" / "cache_videomme.jsonl").write_text("{}\n")
    (model_dir / "checkpoint-1").mkdir()
    (model_dir / "checkpoint-1" / "model.safetensors").write_bytes(b"other weights")
    (model_dir / "trainer_state.json").write_text("{}")
    (model_dir / "README.md").write_text("a card")
    assert curation_key(config) == key

    weights = next(model_dir.glob("*.safetensors"))
    content = weights.read_bytes()
    weights.write_bytes(content)  # the same bytes written again (a new modification time): the same model
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert curation_key(config) == key
    weights.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))  # saved again in place: same size and name
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # even with the old modification time
    assert changed_fields(key, curation_key(config)) == ["video_model_weights"]
    write_manifest(tmp_path / "work", key, None)
    with pytest.raises(ValueError, match=r"\(changed: video_model_weights\)"):
        check_manifest(tmp_path / "work", curation_key(config))
    # an older tpo-hf keyed the same folder by sizes and modification times: curated again, not refused
    current, legacy = curation_key(config), model_identities(config, legacy_model_identity)
    write_manifest(tmp_path / "old", {**current, "video_model_weights": legacy["video_model_weights"]}, None)
    assert check_manifest(tmp_path / "old", current, legacy) is None
    # a model behind an API endpoint has no files to key by; a name that is no folder is kept as it is
    served = curation_config(tmp_path, tmp_path / "o", video_backend="openai", video_base_url="http://127.0.0.1:9")
    assert "video_model_weights" not in curation_key(served)
    assert model_identity("/no/such/model") == "/no/such/model"


def test_a_large_files_content_hash_is_remembered_per_file_version(tmp_path, monkeypatch):
    """A model's weights are hashed once (`fingerprint.file_content_hash`, remembered under TPO_HF_CACHE for files of
    64 MiB or more): a later process reads the hash back instead of the weights; a file written anew is hashed again;
    an unwritable cache folder only costs the remembering."""
    import hashlib
    import os

    from tpo_hf import fingerprint

    monkeypatch.setenv("TPO_HF_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(bytes(64 << 20))
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert fingerprint.file_content_hash(weights) == digest
    (remembered,) = (tmp_path / "cache" / "file-hashes").iterdir()
    monkeypatch.setattr(fingerprint, "_CONTENT_HASHES", {})  # a new process
    remembered.write_text("f" * 64)  # what it reads back, not the weights
    assert fingerprint.file_content_hash(weights) == "f" * 64
    weights.write_bytes(bytes(64 << 20)[:-1] + b"\x01")  # written anew: hashed again
    assert fingerprint.file_content_hash(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()
    small = tmp_path / "adapter_model.safetensors"
    small.write_bytes(b"small")
    assert fingerprint.file_content_hash(small) == hashlib.sha256(b"small").hexdigest()
    assert len(list((tmp_path / "cache" / "file-hashes").iterdir())) == 2  # small files are not remembered
    monkeypatch.setenv("TPO_HF_CACHE", str(weights))  # a file where the cache folder should be
    monkeypatch.setattr(fingerprint, "_CONTENT_HASHES", {})
    os.utime(weights, ns=(0, 0))
    assert fingerprint.file_content_hash(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()


def test_state_files_are_written_with_the_usual_permissions(tmp_path):
    """Probe a/G20: curation reports, manifests, shards, the reference cache key and the checkpoint marker were
    written 0600 (`mkstemp`), whatever the umask, so a teammate sharing the project folder could read the data files
    but not the report or the marker beside them."""
    import os
    import stat

    from tpo_hf.fingerprint import atomic_write_json

    previous = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "state" / "curation_report.json", {"ok": 1})
    finally:
        os.umask(previous)
    written = tmp_path / "state" / "curation_report.json"
    assert stat.S_IMODE(written.stat().st_mode) == 0o644 and json.loads(written.read_text()) == {"ok": 1}
    assert [p.name for p in written.parent.iterdir()] == ["curation_report.json"]  # no temporary file left


def test_push_and_eval_refuse_a_folder_another_run_is_writing(tiny_model_dirs, tmp_path):
    """`tpo-hf push` / `tpo-hf eval` of an adapter (or model) folder a running training holds: refused, naming that
    run (it pushed a mix of old weights and a new card). A lock left by a killed run refuses nothing."""
    import signal

    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.eval.run import evaluate
    from tpo_hf.hub.push import push_adapter
    from tpo_hf.locks import OutputDirLockedError, refuse_if_locked

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    holder = hold_output_dir(adapter)
    try:
        named = rf"{adapter} is being written by another run: pid {holder.pid} on host {socket.gethostname()} "
        with pytest.raises(OutputDirLockedError, match=named):
            push_adapter(adapter, "tester/never-pushed")  # refused before any request
        with pytest.raises(OutputDirLockedError, match=named):
            evaluate(EvalConfig(adapter_path=str(adapter), benchmark="videomme", output_dir=str(tmp_path / "e1")))
        with pytest.raises(OutputDirLockedError, match=named):
            evaluate(EvalConfig(model_name_or_path=str(adapter), benchmark="videomme", output_dir=str(tmp_path / "e")))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (adapter / ".tpo-hf.lock").exists()  # left by the killed run: no run holds the folder
    refuse_if_locked(adapter, "push")


def test_a_full_model_given_as_the_adapter_is_refused_in_one_line(tiny_model_dirs, tmp_path):
    """`--adapter_path` naming a folder without adapter_config.json (a full model): our error, shown as one line."""
    from tpo_hf.commands import is_user_error
    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.eval.run import evaluate
    from tpo_hf.models import load_video_model

    model_dir = tiny_model_dirs(FAMILY)
    message = rf"{model_dir} is not a LoRA adapter folder \(no adapter_config.json\) but a full model"
    with pytest.raises(ValueError, match=message) as refused:
        evaluate(EvalConfig(adapter_path=str(model_dir), benchmark="videomme", output_dir=str(tmp_path / "out")))
    assert is_user_error(refused.value) and "--model_name_or_path" in str(refused.value)
    with pytest.raises(ValueError, match=message):
        load_video_model(model_dir, model_dir)


def test_an_output_dir_that_is_a_file_or_not_writable_is_one_user_error(tmp_path):
    """The lock is the first thing a job writes: an output_dir that is a file, or on a read-only file system, is named
    in one line (it was a FileExistsError / OSError traceback out of `locks.py`)."""
    import os

    from tpo_hf.commands import is_user_error, run_command
    from tpo_hf.locks import OutputDirError, output_dir_lock

    a_file = tmp_path / "file"
    a_file.write_text("hello")
    for output_dir in (a_file, a_file / "below"):
        with pytest.raises(OutputDirError, match=rf"output_dir {output_dir} is a file, not a folder") as refused:
            with output_dir_lock(output_dir, "train"):
                pass
        assert is_user_error(refused.value)
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.access(read_only, os.W_OK):  # root writes anyway; sysfs refuses root too
        read_only = Path("/sys")
    try:

        def train():
            with output_dir_lock(read_only, "train"):
                pass

        with pytest.raises(SystemExit, match=rf"^tpo-hf train: output_dir {read_only} is not writable: "):
            run_command("train", train)
    finally:
        (tmp_path / "read_only").chmod(0o755)


# --- probe fixes: training resume and caches --------------------------------------------------------------------------
def _resumable(video_dir, tmp_path, max_steps, lora_r=4, **overrides):
    """A trainer saving a checkpoint every step into tmp_path/out (one pair per step's batch of two)."""
    model, processor = build_tiny_model(FAMILY)
    settings = {"max_steps": max_steps, "save_strategy": "steps", "save_steps": 1, **overrides}
    return TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir, **settings),
        train_dataset=Dataset.from_list(preference_rows(repeat=1)),
        processing_class=processor,
        peft_config=LoraConfig(r=lora_r, lora_alpha=8, lora_dropout=0.0),
    )


def test_resume_with_other_settings_is_refused_naming_each_change(video_dir, tmp_path, monkeypatch, caplog):
    """Resuming with other frames and learning rate mixed the two settings silently (and the card claimed the new
    ones); another LoRA rank failed in a wall of "size mismatch" lines. Harmless fields may change."""
    from tpo_hf.checkpoints import CheckpointError
    from tpo_hf.commands import is_user_error

    _resumable(video_dir, tmp_path, 1).train()
    with pytest.raises(CheckpointError, match=r"changed: num_frames 4 -> 2, max_grad_norm \S+ -> 0\.5\)") as info:
        _resumable(video_dir, tmp_path, 2, num_frames=2, max_grad_norm=0.5).train(resume_from_checkpoint=True)
    assert "checkpoint-1" in str(info.value) and "TPO_HF_RESUME_CHANGED=1" in str(info.value)
    assert is_user_error(info.value)
    with pytest.raises(CheckpointError, match=r"changed: lora_r 4 -> 8\)"):
        _resumable(video_dir, tmp_path, 2, lora_r=8).train(resume_from_checkpoint="true")
    with pytest.raises(CheckpointError, match=r"changed: loss_weights \[1\.0, 0\.5\] -> \[1\.0, 1\.0\], sft_weight"):
        _resumable(video_dir, tmp_path, 2, sft_weight=1.0).train(resume_from_checkpoint=True)
    # where logs and saves go, and how far to train, are not what the checkpoint trained with
    harmless = _resumable(video_dir, tmp_path, 2, logging_steps=2, save_steps=2, dataloader_num_workers=0)
    harmless.train(resume_from_checkpoint=True)
    assert harmless.state.global_step == 2
    monkeypatch.setenv("TPO_HF_RESUME_CHANGED", "1")  # the documented escape hatch: warned, not refused
    with caplog.at_level(logging.WARNING, logger="tpo_hf.checkpoints"):
        changed = _resumable(video_dir, tmp_path, 3, max_grad_norm=0.5)
        changed.train(resume_from_checkpoint=True)
    assert changed.state.global_step == 3 and "max_grad_norm" in caplog.text and "-> 0.5" in caplog.text


def test_a_damaged_checkpoint_is_named_and_the_previous_complete_one_resumed(video_dir, tmp_path, caplog):
    """A truncated adapter in the newest complete checkpoint was a SafetensorError traceback naming nothing."""
    import re

    from tpo_hf.checkpoints import CheckpointError, damaged_file

    first = _resumable(video_dir, tmp_path, 2)
    first.train()
    output = Path(first.args.output_dir)
    adapter = output / "checkpoint-2" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[: adapter.stat().st_size // 3])
    previous = output / "checkpoint-1"
    with pytest.raises(CheckpointError, match=re.escape(f"{adapter} is damaged")) as info:
        _resumable(video_dir, tmp_path, 3).train(resume_from_checkpoint=str(adapter.parent))
    assert f"--resume_from_checkpoint {previous}" in str(info.value)
    resumed = _resumable(video_dir, tmp_path, 3)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.checkpoints"):
        resumed.train(resume_from_checkpoint=True)
    assert str(adapter) in caplog.text and f"Falling back to {previous}" in caplog.text
    assert resumed.state.global_step == 3
    steps = [entry["step"] for entry in resumed.state.log_history if "loss" in entry]
    assert steps == [1, 2, 3]  # step 1 from checkpoint-1; 2 and 3 trained again
    assert damaged_file(adapter.parent) is None  # checkpoint-2 saved again, whole


def test_a_damaged_reference_log_prob_cache_is_named_and_recomputed(video_dir, tmp_path, caplog):
    """A truncated `cache-*.arrow` of precomputed reference log-probs was a pyarrow ArrowInvalid traceback."""
    Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(tmp_path / "data"))

    def reference():
        model, processor = build_tiny_model(FAMILY)
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, precompute_ref_log_probs=True),
            train_dataset=load_from_disk(str(tmp_path / "data")),
            processing_class=processor,
            peft_config=lora(),
        )
        return torch.tensor(trainer.train_dataset["ref_chosen_logps"])

    first = reference()
    [cache] = [
        path
        for path in (tmp_path / "data").glob("cache-*.arrow")
        if "ref_chosen_logps" in Dataset.from_file(str(path)).column_names
    ]
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    with caplog.at_level(logging.WARNING, logger="tpo_hf.ref_logps_cache"):
        again = reference()
    assert str(cache) in caplog.text and "computing the reference log-probs again" in caplog.text
    torch.testing.assert_close(again, first)
    assert "ref_chosen_logps" in Dataset.from_file(str(cache)).column_names  # written again, whole


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, where every write fails with ENOSPC")
def test_a_full_disk_during_a_checkpoint_save_is_named(video_dir, tmp_path):
    """A checkpoint save on a full disk ended in torch's "unexpected pos" or a bare OSError, never saying disk full."""
    import re

    from tpo_hf.checkpoints import CheckpointSaveError
    from tpo_hf.commands import is_user_error

    trainer = _resumable(video_dir, tmp_path, 1)
    folder = Path(trainer.args.output_dir) / "checkpoint-1"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").symlink_to("/dev/full")  # this file's write fails as on a full disk
    with pytest.raises(CheckpointSaveError, match=re.escape(f"{folder} failed: no space left on device")) as info:
        trainer.train()
    assert "training starts over" in str(info.value) and is_user_error(info.value)


def test_an_output_dir_holding_a_dataset_is_refused(video_dir, tmp_path):
    """Training into the curated dataset folder it read overwrote the dataset card (README.md) with a model card."""
    import re

    from tpo_hf.train import cli_main

    saved = tmp_path / "saved"
    Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(saved))
    curated = tmp_path / "curated"
    curated.mkdir()
    (curated / "curation_report.json").write_text("{}")
    (curated / "README.md").write_text("the dataset card")
    for folder, found in ((saved, "a saved dataset"), (curated, "a curated dataset")):
        model, processor = build_tiny_model(FAMILY)
        with pytest.raises(ValueError, match=re.escape(f"output_dir {folder} holds {found}")):
            TPOTrainer(
                model,
                args=tiny_tpo_config(folder, video_root=str(video_dir)),
                train_dataset=load_from_disk(str(saved)),
                processing_class=processor,
                peft_config=lora(),
            )
    with pytest.raises(SystemExit) as info:  # the command refuses before it loads or writes anything
        cli_main(
            ["--model_name_or_path", "unused", "--dataset_name", str(saved), "--output_dir", str(curated), "--use_cpu"]
        )
    assert f"output_dir {curated} holds a curated dataset" in str(info.value)
    assert (curated / "README.md").read_text() == "the dataset card" and not (curated / ".tpo-hf.lock").exists()


# --- second probe: broken links


def test_a_broken_link_in_video_dir_is_skipped_by_name_not_dropped(video_dir, tmp_path, caplog):
    """g36: a dangling `gone.mp4` link beside a good video was neither listed, skipped nor counted ("1 curated / 1")."""
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(video_dir / "red_blue.mp4", folder / "a.mp4")
    (folder / "gone.mp4").symlink_to(tmp_path / "deleted" / "gone.mp4")
    with caplog.at_level(logging.WARNING):
        result = run_curation(curation_config(folder, tmp_path / "out"), Backends(FrameBackend(), None, None))
    assert f"gone.mp4 is a broken link -> {tmp_path / 'deleted' / 'gone.mp4'}" in caplog.text
    skipped = result.report["videos"]["skipped"]
    assert [s["video"] for s in skipped] == ["gone.mp4"] and "gone.mp4" in skipped[0]["reason"]
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    assert [s["video"] for s in report["videos"]["skipped"]] == ["gone.mp4"]
    assert "videos/a.mp4" in set(result.dataset["video"])

    with pytest.raises(ValueError, match="gone.mp4"):  # on_video_error="raise" names the link
        run_curation(
            curation_config(folder, tmp_path / "out2", on_video_error="raise"), Backends(FrameBackend(), None, None)
        )


def test_list_video_files_names_broken_links_instead_of_dropping_them(tmp_path, caplog):
    """The V-NIAH haystack listing uses `list_video_files` too: a broken link is named, not silently left out."""
    from tpo_hf.video import VideoFile, VideoLoadError, list_video_files

    (tmp_path / "ok.mp4").write_bytes(b"x")
    (tmp_path / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    (tmp_path / "loop.mp4").symlink_to(tmp_path / "loop.mp4")  # a link to itself: unreadable too
    (tmp_path / "folder.mp4").mkdir()  # a folder is not a video
    (tmp_path / "notes.txt").symlink_to(tmp_path / "nowhere.txt")  # not a video extension: not listed
    with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
        listed = list_video_files(tmp_path)
    assert [path.name for path in listed] == ["gone.mp4", "loop.mp4", "ok.mp4"]
    assert f"gone.mp4 is a broken link -> {tmp_path / 'nowhere.mp4'}" in caplog.text
    assert "loop.mp4 is a broken link" in caplog.text and "notes.txt" not in caplog.text
    with pytest.raises(VideoLoadError, match="gone.mp4"):  # reading it, as V-NIAH's haystack builder does, names it
        VideoFile(listed[0])


# --- second probe: training -------------------------------------------------------------------------------------------
def _resumable_on(video_dir, tmp_path, max_steps, rows, **overrides):
    """Like `_resumable`, training on `rows`."""
    model, processor = build_tiny_model(FAMILY)
    settings = {"max_steps": max_steps, "save_strategy": "steps", "save_steps": 1, **overrides}
    return TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir, **settings),
        train_dataset=Dataset.from_list(rows),
        processing_class=processor,
        peft_config=lora(),
    )


def test_resume_on_other_training_data_is_refused_naming_what_changed(video_dir, tmp_path, monkeypatch, caplog):
    """g11/g11b/g12: rows added to the dataset, the rows reordered or edited, or another dataset resumed silently
    (the skipped batches and the rest of the epoch then came from other data than the checkpoint trained on)."""
    from tpo_hf.checkpoints import CHECKPOINT_COMPLETE_FILE, CheckpointError

    rows = preference_rows(repeat=1)
    _resumable_on(video_dir, tmp_path, 1, rows).train()
    record = json.loads((tmp_path / "out" / "checkpoint-1" / CHECKPOINT_COMPLETE_FILE).read_text())
    assert record["dataset"]["rows"] == len(rows) and len(record["dataset"]["sha256"]) == 64
    added = rows + [dict(rows[0], prompt="Which colour comes second?")] * 2
    with pytest.raises(CheckpointError, match=rf"changed: dataset rows {len(rows)} -> {len(rows) + 2}\)"):
        _resumable_on(video_dir, tmp_path, 2, added).train(resume_from_checkpoint=True)
    with pytest.raises(CheckpointError, match=r"dataset rows .* with other contents"):  # same rows, other order
        _resumable_on(video_dir, tmp_path, 2, rows[::-1]).train(resume_from_checkpoint=True)
    edited = [dict(rows[0], chosen=rows[0]["chosen"] + " Indeed.")] + rows[1:]
    with pytest.raises(CheckpointError, match=r"dataset rows .* with other contents"):
        _resumable_on(video_dir, tmp_path, 2, edited).train(resume_from_checkpoint=True)
    same = _resumable_on(video_dir, tmp_path, 2, [dict(row) for row in rows])  # the same data, loaded again
    same.train(resume_from_checkpoint=True)
    assert same.state.global_step == 2
    monkeypatch.setenv("TPO_HF_RESUME_CHANGED", "1")  # the escape hatch covers other data: warned, not refused
    with caplog.at_level(logging.WARNING, logger="tpo_hf.checkpoints"):
        changed = _resumable_on(video_dir, tmp_path, 3, added)
        changed.train(resume_from_checkpoint=True)
    assert changed.state.global_step == 3 and f"dataset rows {len(rows)} -> {len(rows) + 2}" in caplog.text


def test_learning_rate_changes_are_refused_even_with_the_escape_hatch(video_dir, tmp_path, monkeypatch):
    """g30: with TPO_HF_RESUME_CHANGED=1 a new learning rate was "applied" per the warning and the card, while the
    restored optimizer and scheduler kept the old one."""
    from tpo_hf.checkpoints import CheckpointError

    _resumable(video_dir, tmp_path, 1).train()
    monkeypatch.setenv("TPO_HF_RESUME_CHANGED", "1")
    for overrides, change in [
        (dict(learning_rate=0.05), r"learning_rate 0\.001 -> 0\.05"),
        (dict(warmup_steps=3), r"warmup_steps 0 -> 3"),
        (dict(lr_scheduler_type="constant"), r"lr_scheduler_type \S+ -> 'constant'"),
    ]:
        with pytest.raises(CheckpointError, match=rf"{change}.*not take effect \(not even with TPO_HF_RESUME"):
            _resumable(video_dir, tmp_path, 2, **overrides).train(resume_from_checkpoint=True)
    resumed = _resumable(video_dir, tmp_path, 2)
    resumed.train(resume_from_checkpoint=True)
    resumed.save_model()
    card = json.loads((tmp_path / "out" / "tpo_card.json").read_text())
    assert card["hyperparameters"]["learning_rate"] == 0.001  # the value every step trained with


def test_output_dir_holding_a_full_model_is_refused(video_dir, tmp_path):
    """g41: training into the base model's own folder wrote the adapter beside its weights; the "base" then loaded
    with the adapter applied. A folder a training run wrote (full fine-tune trained again, resumed) stays allowed."""
    from tpo_hf.data import refuse_training_output_dir

    model, processor = build_tiny_model(FAMILY)
    base = tmp_path / "base"
    model.save_pretrained(base)
    with pytest.raises(ValueError, match=rf"output_dir {base} holds a full model \(config\.json, model\.safetensors"):
        TPOTrainer(
            model,
            args=tiny_tpo_config(base, video_root=str(video_dir), max_steps=1),
            train_dataset=Dataset.from_list(preference_rows(repeat=1)),
            processing_class=processor,
            peft_config=lora(),
        )
    assert not (base / "adapter_config.json").exists() and not (base / "README.md").exists()
    (tmp_path / "trained").mkdir()
    for name in ("config.json", "model.safetensors", "tpo_card.json"):
        (tmp_path / "trained" / name).write_text("{}")
    refuse_training_output_dir(tmp_path / "trained")  # written by a run: allowed
    (tmp_path / "adapter").mkdir()
    for name in ("config.json", "adapter_config.json", "adapter_model.safetensors"):
        (tmp_path / "adapter" / name).write_text("{}")
    refuse_training_output_dir(tmp_path / "adapter")
    refuse_training_output_dir(tmp_path / "missing")


def test_an_unfinished_curation_folder_is_named_when_loaded(tmp_path):
    """g15: a curation killed before it saved its dataset left `_curation/` only; training on it was a
    DatasetGenerationError traceback."""
    from tpo_hf.data import load_preference_dataset

    folder = tmp_path / "cur"
    (folder / "_curation" / "shards").mkdir(parents=True)
    (folder / "_curation" / "shards" / "shard-00000.json").write_text("[]")
    (folder / "videos").mkdir()
    with pytest.raises(ValueError, match=r"cur is an unfinished curation \(no dataset saved yet\): rerun tpo-hf"):
        load_preference_dataset(str(folder))


# --- second probe: push, plugin, messages -----------------------------------------------------------------------------
def test_an_unreachable_adapter_is_one_line(tmp_path, monkeypatch):
    """g33/g33b: an adapter path that is no local folder and no cached Hub repo (offline, or a typo) is refused by
    tpo-hf in one line naming it, not by PEFT's traceback about adapter_config.json."""
    from huggingface_hub import constants

    from tpo_hf.commands import run_command
    from tpo_hf.models import load_video_model

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    for adapter, words in (
        ("tester/never-pushed", "is not a local folder and is not in the Hub cache (offline"),
        (str(tmp_path / "tr0-typo"), "is not a local folder (no such folder)"),
    ):
        with pytest.raises(SystemExit) as raised:
            run_command("eval", load_video_model, str(tmp_path / "model"), adapter)
        message = str(raised.value.code)
        assert message.startswith(f"tpo-hf eval: adapter_path {adapter} ") and words in message
        assert "\n" not in message


def test_push_merge_with_a_full_temp_folder_is_one_line(tmp_path, monkeypatch):
    """g25b: `push --merge` stages the merged model under TMPDIR; a full disk there is a `PushError` naming the temp
    folder, "no space left on device" and TMPDIR, not safetensors' traceback."""
    from safetensors import SafetensorError

    import tpo_hf.hub.push as push

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    base = tmp_path / "base"  # a local base passes push's check that the base loads; the merge itself fails
    base.mkdir()
    config = {"peft_type": "LORA", "base_model_name_or_path": str(base)}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(push.tempfile, "tempdir", None)

    def full_disk(adapter_dir, output_dir, base_model=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(push, "merge_adapter", full_disk)
    monkeypatch.setattr(push, "prepare_repo", lambda *args, **kwargs: None)  # the repo's checks pass (no Hub here)
    with pytest.raises(push.PushError) as raised:
        push.push_adapter(adapter, "tester/merged", merge=True, api=object())
    message = str(raised.value)
    assert "no space left on device" in message and str(temp) in message and "TMPDIR" in message


def test_a_lock_path_that_is_a_directory_is_named(tmp_path):
    """g44: a folder named `.tpo-hf.lock` in the output folder: the message names the lock path as a directory, not
    a file (not "output_dir is not writable: Is a directory"); reading the folder (push, eval of it) is not refused."""
    from tpo_hf.locks import LOCK_NAME, OutputDirError, output_dir_lock, refuse_if_locked

    lock = tmp_path / "out" / LOCK_NAME
    lock.mkdir(parents=True)
    with pytest.raises(OutputDirError) as raised:
        with output_dir_lock(tmp_path / "out", "eval"):
            pass
    assert f"{lock} (tpo-hf's lock file for {tmp_path / 'out'}) is a directory, not a file" in str(raised.value)
    refuse_if_locked(tmp_path / "out", "push")


# --- third probe: dataset columns and model loading -------------------------------------------------------------------
def test_stale_reference_log_prob_columns_are_dropped_named_before_the_reference_pass(video_dir, tmp_path, caplog):
    """f09b: `ref_chosen_logps` / `ref_rejected_logps` left in a dataset by an earlier precompute are dropped with a
    warning naming them, before the reference pass (which then adds its own, not Arrow's "duplicated columns")."""
    rows = [dict(row, ref_chosen_logps=0.0, ref_rejected_logps=-1000.0) for row in preference_rows(repeat=1)]
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "data"))
    dataset = load_from_disk(str(tmp_path / "data"))  # on disk: TRL caches the log-probs beside it
    model, processor = build_tiny_model(FAMILY)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.dataset_checks"):
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, precompute_ref_log_probs=True),
            train_dataset=dataset,
            processing_class=processor,
            peft_config=lora(),
        )
    assert "dropped its column(s) ['ref_chosen_logps', 'ref_rejected_logps']" in caplog.text
    assert "computed again" in caplog.text
    computed = torch.tensor(trainer.train_dataset["ref_chosen_logps"])
    assert torch.isfinite(computed).all() and (computed != 0.0).all()
    caplog.clear()
    model, processor = build_tiny_model(FAMILY)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.dataset_checks"):
        trainer = make_trainer(model, processor, rows, tmp_path, video_dir)  # no precompute: not read either
    assert "ref_chosen_logps" not in trainer.train_dataset.column_names and "at each step" in caplog.text


def test_a_video_feature_column_trains_from_its_files(video_dir, tmp_path, monkeypatch):
    """f10c: a `video` column of `datasets.Video` features (which `datasets` decodes only through torchcodec) is read
    as paths: embedded bytes of a `save_to_disk` folder are written once to the video cache, plain paths kept."""
    from datasets import Video

    from tpo_hf.data import load_preference_dataset

    monkeypatch.setenv("TPO_HF_VIDEO_CACHE", str(tmp_path / "cache"))
    rows = [dict(row, video=str(video_dir / row["video"])) for row in preference_rows(repeat=1)]
    dataset = Dataset.from_list(rows).cast_column("video", Video())
    dataset.save_to_disk(str(tmp_path / "data"))  # embeds the files' bytes, keeping only their base names
    loaded = load_preference_dataset(str(tmp_path / "data"))
    for row, path in zip(rows, loaded["video"]):
        assert path.startswith(str(tmp_path / "cache")) and Path(path).name == Path(row["video"]).name
        assert Path(path).read_bytes() == Path(row["video"]).read_bytes()
    assert load_preference_dataset(str(tmp_path / "data"))["video"] == loaded["video"]  # same files again
    model, processor = build_tiny_model(FAMILY)
    trainer = make_trainer(model, processor, dataset, tmp_path, video_dir)  # in memory: the paths as given
    assert trainer.train_dataset["video"] == [row["video"] for row in rows]
    trainer.train()


# --- third probe: checkpoints and resume ------------------------------------------------------------------------------
def _resumable_from(model_dir, video_dir, tmp_path, max_steps, **overrides):
    """Like `_resumable`, on the model saved in `model_dir` (given by path, as `tpo-hf train` gives it)."""
    settings = {"max_steps": max_steps, "save_strategy": "steps", "save_steps": 1, **overrides}
    return TPOTrainer(
        str(model_dir),
        args=make_args(tmp_path, video_dir, **settings),
        train_dataset=Dataset.from_list(preference_rows(repeat=1)),
        peft_config=lora(),
    )


def test_resume_on_another_base_model_or_chat_template_is_refused_naming_it(video_dir, tmp_path):
    """f05/f07: a resume with `--model_name_or_path` at another base (same family, other weights), or after the
    model folder's chat_template.jinja was edited, trained half the steps on each, exit 0, no warning."""
    from tpo_hf.checkpoints import CheckpointError
    from tpo_hf.tiny import save_tiny_model

    base, other = save_tiny_model(tmp_path / "base", FAMILY), save_tiny_model(tmp_path / "other", FAMILY, seed=1)
    _resumable_from(base, video_dir, tmp_path, 1).train()
    with pytest.raises(CheckpointError, match=rf"changed: base model {base} -> {other}\)"):
        _resumable_from(other, video_dir, tmp_path, 2).train(resume_from_checkpoint=True)
    template = base / "chat_template.jinja"
    original = template.read_text()
    template.write_text("<|im_start|>system\nYou are a careful video analyst.<|im_end|>\n" + original)
    with pytest.raises(CheckpointError) as info:  # one change named, not the base model's files again
        _resumable_from(base, video_dir, tmp_path, 2).train(resume_from_checkpoint=True)
    assert "changed: chat template sha256 " in str(info.value) and "careful video analyst" in str(info.value)
    assert "base model" not in str(info.value)
    template.write_text(original)
    save_tiny_model(base, FAMILY, seed=1)  # other weights saved into the same folder
    with pytest.raises(CheckpointError, match=rf"base model {base}: .*model\.safetensors.* changed since the"):
        _resumable_from(base, video_dir, tmp_path, 2).train(resume_from_checkpoint=True)


def test_resume_on_a_copied_base_or_from_a_record_made_before_content_hashing(video_dir, tmp_path):
    """A base model folder copied with `cp -r` (new modification times, same bytes) is the same model: a resume on it
    goes on. A checkpoint recorded before model identities were keyed by content (sizes and modification times)
    still resumes on the unchanged folder, and still names a weight file changed since."""
    from tpo_hf.checkpoints import CHECKPOINT_COMPLETE_FILE, CheckpointError
    from tpo_hf.fingerprint import legacy_model_files, legacy_model_identity
    from tpo_hf.tiny import save_tiny_model

    base = save_tiny_model(tmp_path / "base", FAMILY)
    _resumable_from(base, video_dir, tmp_path, 1).train()
    copied = tmp_path / "copied"
    shutil.copytree(base, copied, copy_function=shutil.copy)  # as `cp -r`: new modification times
    resumed = _resumable_from(copied, video_dir, tmp_path, 2)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 2
    completion = tmp_path / "out" / "checkpoint-2" / CHECKPOINT_COMPLETE_FILE
    record = json.loads(completion.read_text())
    assert all(":sha256:" in value for value in record["base_model"]["files"].values())
    legacy = {"name": str(base), "identity": legacy_model_identity(base), "files": legacy_model_files(base)}
    completion.write_text(json.dumps({**record, "base_model": legacy}))  # as an older tpo-hf recorded it
    resumed = _resumable_from(base, video_dir, tmp_path, 3)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 3
    record = json.loads((tmp_path / "out" / "checkpoint-3" / CHECKPOINT_COMPLETE_FILE).read_text())
    completion = tmp_path / "out" / "checkpoint-3" / CHECKPOINT_COMPLETE_FILE
    completion.write_text(json.dumps({**record, "base_model": legacy}))
    save_tiny_model(base, FAMILY, seed=1)  # other weights saved into the same folder
    with pytest.raises(CheckpointError, match=rf"base model {base}: .*model\.safetensors.* changed since the"):
        _resumable_from(base, video_dir, tmp_path, 4).train(resume_from_checkpoint=True)


def test_a_checkpoint_missing_a_file_a_resume_needs_is_named_and_skipped(video_dir, tmp_path, caplog):
    """f08/f09: a checkpoint without optimizer.pt and scheduler.pt resumed silently with a new learning-rate schedule
    and Adam state; one without adapter_model.safetensors failed in transformers' "Can't find a valid checkpoint"."""
    import re

    from tpo_hf.checkpoints import CHECKPOINT_COMPLETE_FILE, CheckpointError, damaged_file

    first = _resumable(video_dir, tmp_path, 2)
    first.train()
    output = Path(first.args.output_dir)
    previous, newest = output / "checkpoint-1", output / "checkpoint-2"
    (newest / "optimizer.pt").unlink()
    (newest / "scheduler.pt").unlink()
    resumed = _resumable(video_dir, tmp_path, 3)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.checkpoints"):
        resumed.train(resume_from_checkpoint=True)
    assert f"{newest / 'optimizer.pt'} is missing (the optimizer's state" in caplog.text
    assert f"Falling back to {previous}" in caplog.text
    assert [entry["step"] for entry in resumed.state.log_history if "loss" in entry] == [1, 2, 3]
    (newest / "adapter_model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=re.escape(f"{newest / 'adapter_model.safetensors'} is missing")) as info:
        _resumable(video_dir, tmp_path, 3).train(resume_from_checkpoint=str(newest))
    assert f"--resume_from_checkpoint {previous}" in str(info.value)
    for folder in output.glob("checkpoint-*"):
        (folder / "trainer_state.json").unlink()
    with pytest.raises(CheckpointError, match=r"trainer_state\.json is missing .* no older complete checkpoint"):
        _resumable(video_dir, tmp_path, 3).train(resume_from_checkpoint=True)
    # a run with save_only_model=True keeps no optimizer nor scheduler: their absence is not damage there
    record = json.loads((previous / CHECKPOINT_COMPLETE_FILE).read_text())
    assert record["save_only_model"] is False
    (previous / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    (previous / "optimizer.pt").unlink()
    assert damaged_file(previous)[0] == str(previous / "optimizer.pt")
    (previous / CHECKPOINT_COMPLETE_FILE).write_text(json.dumps({**record, "save_only_model": True}))
    assert damaged_file(previous) is None


def test_resume_with_another_number_of_processes_is_refused_naming_the_global_batch(video_dir, tmp_path, monkeypatch):
    """f25: 2 steps on 2 processes resumed on 1 halved the global batch: rows trained twice or never, exit 0."""
    from tpo_hf.checkpoints import CHECKPOINT_COMPLETE_FILE, CheckpointError

    _resumable(video_dir, tmp_path, 1).train()
    completion = tmp_path / "out" / "checkpoint-1" / CHECKPOINT_COMPLETE_FILE
    record = json.loads(completion.read_text())
    assert record["world_size"] == 1 and record["global_batch_size"] == 2  # 1 process x 2 pairs x 1 accumulation
    completion.write_text(json.dumps({**record, "world_size": 2, "global_batch_size": 4}))  # as 2 processes save it
    with pytest.raises(CheckpointError, match=r"changed: number of processes 2 -> 1 \(global batch 4 -> 2: processes"):
        _resumable(video_dir, tmp_path, 2).train(resume_from_checkpoint=True)
    monkeypatch.setenv("TPO_HF_RESUME_CHANGED", "1")  # a data-order change like the batch size: the hatch covers it
    resumed = _resumable(video_dir, tmp_path, 2)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 2


def test_resume_after_a_training_video_was_replaced_is_refused_naming_it(video_dir, tmp_path):
    """f29: a training video replaced by another clip under the same name resumed silently (rows unchanged)."""
    from tpo_hf.checkpoints import CheckpointError

    videos = tmp_path / "videos"
    shutil.copytree(video_dir, videos)
    _resumable(videos, tmp_path, 1).train()
    write_synthetic_video(videos / "red_blue.mp4", [Scene(8, "purple", "circle", "up")], fps=8)
    with pytest.raises(
        CheckpointError, match=r"re-encoded under the same name: red_blue\.mp4 \((\d+ -> \d+ bytes|same size)"
    ):
        _resumable(videos, tmp_path, 2).train(resume_from_checkpoint=True)


def test_an_adapters_base_not_in_the_hub_cache_offline_is_one_line(tmp_path, monkeypatch):
    """f22: offline, an adapter whose adapter_config.json names a Hub base model that is not cached: one line naming
    the base, the adapter config it comes from and what to do, not transformers' "couldn't connect" traceback."""
    from huggingface_hub import constants

    from tpo_hf.commands import run_command
    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.eval.run import evaluate
    from tpo_hf.models import load_video_model

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "base_model_name_or_path": "tester/tiny-base"}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    expected = (
        f"The adapter's base model tester/tiny-base (base_model_name_or_path in {adapter / 'adapter_config.json'}) "
        "is not a local folder and is not in the Hub cache (offline, HF_HUB_OFFLINE=1)"
    )
    with pytest.raises(SystemExit) as raised:
        run_command("eval", load_video_model, None, str(adapter))
    message = str(raised.value.code)
    assert message.startswith(f"tpo-hf eval: {expected}") and "--model_name_or_path" in message
    assert "\n" not in message
    eval_config = EvalConfig(adapter_path=str(adapter), benchmark="videomme", output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError) as refused:
        evaluate(eval_config)
    assert str(refused.value).startswith(expected)


# --- probe fixes: curation's dataset folder, resume across path spellings, writes that fail -------------------------
def test_a_curated_dataset_keeps_its_videos_when_a_source_is_overwritten_in_place(tmp_path):
    """F03: `videos/` of a curated dataset held hard links to the sources, so `cp other.mp4 a.mp4` onto a source (which
    writes into the same file) silently changed the video under the curated pairs. Now a copy, a snapshot; a link an
    older tpo-hf made is replaced by a copy; `copy_videos=False` still gives the sources' own paths."""
    import os

    folder = _three_videos(tmp_path / "videos")
    output = tmp_path / "out"
    first, _ = _curate_counting(folder, output)
    copy = output / "videos" / "a.mp4"
    kept = copy.read_bytes()
    assert not os.path.samefile(copy, folder / "a.mp4")
    shutil.copyfile(folder / "b.mp4", folder / "a.mp4")  # into the same file, as `cp` does
    assert copy.read_bytes() == kept
    assert load_from_disk(str(output)).to_list() == first.dataset.to_list()

    linked = output / "videos" / "b.mp4"
    linked.unlink()
    os.link(folder / "b.mp4", linked)  # as an older tpo-hf placed it
    _curate_counting(folder, output)
    assert not os.path.samefile(linked, folder / "b.mp4") and linked.read_bytes() == (folder / "b.mp4").read_bytes()

    plain_config = curation_config(folder, tmp_path / "plain", copy_videos=False)
    plain = run_curation(plain_config, Backends(FrameBackend(), None, None))
    assert set(plain.dataset["video"]) <= {str(folder / name) for name in ("a.mp4", "b.mp4", "c.mp4")}
    assert not (tmp_path / "plain" / "videos").exists()


def test_a_video_folder_spelled_otherwise_or_moved_resumes_every_finished_shard(tmp_path, monkeypatch, caplog):
    """F01: the same videos given by a relative, then an absolute `video_dir`, or after the folder moved, were refused
    (`changed: video_dir`: delete every finished shard). Videos are keyed by id, size and time, not by the folder's
    path; a model folder by the path it resolves to. A real change of settings is still refused by name."""
    monkeypatch.chdir(tmp_path)
    _three_videos(tmp_path / "videos")
    first, called = _curate_counting(Path("videos"), tmp_path / "out")
    assert called == ["a.mp4", "b.mp4", "c.mp4"]
    again, called = _curate_counting(tmp_path / "videos", tmp_path / "out")
    assert called == [] and again.dataset.to_list() == first.dataset.to_list()
    (tmp_path / "videos").rename(tmp_path / "moved")
    moved, called = _curate_counting(Path("moved"), tmp_path / "out")
    assert called == [] and moved.dataset.to_list() == first.dataset.to_list()
    assert moved.report["videos"]["changed"] == []
    with pytest.raises(ValueError, match=r"other settings \(changed: seed\)"):
        _curate_counting(Path("moved"), tmp_path / "out", seed=7)
    # the manifest of an older shard format (which keyed video_dir): no refusal, its shards are checked one by one
    manifest = tmp_path / "out" / "_curation" / "manifest.json"
    older = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**older, "key": {**older["key"], "shard_format": 3, "video_dir": "videos"}}))
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation"):
        assert _curate_counting(Path("moved"), tmp_path / "out")[0].dataset.to_list() == first.dataset.to_list()
    assert "holds shards of an older tpo-hf (shard format 3; this one writes" in caplog.text

    (tmp_path / "model").mkdir()
    relative = curation_config(Path("moved"), "out", video_model="model").fingerprint_fields()
    absolute = curation_config(tmp_path / "moved", tmp_path / "out", video_model=str(tmp_path / "model"))
    assert relative == absolute.fingerprint_fields() and relative["video_model"] == str(tmp_path.resolve() / "model")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, where every write fails with ENOSPC")
def test_curation_on_a_full_disk_or_an_unwritable_work_dir_is_one_line_and_keeps_finished_shards(
    tmp_path, monkeypatch
):
    """F13/F23: a curation write on a full disk was a bare `OSError: [Errno 28]` naming no file, and a `work_dir` on
    a read-only file system a traceback. Now `work_dir` is refused before any work as `output_dir` is, and a failed
    write is one `CurationWriteError` naming the folder and saying the finished shards are kept: the rerun, once
    there is room, reuses them and gives the dataset of a clean run."""
    import os

    from tpo_hf.commands import is_user_error
    from tpo_hf.curation.storage import CurationWriteError
    from tpo_hf.locks import OutputDirError

    folder = _three_videos(tmp_path / "videos")
    import errno

    import tpo_hf.curation.run as curation_run

    output = tmp_path / "out"

    def full_disk(path, text):  # the card is written by a rename (a/i26), so no /dev/full link can stand in for it
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with monkeypatch.context() as patched:
        patched.setattr(curation_run, "atomic_write_text", full_disk)
        with pytest.raises(CurationWriteError) as raised:
            _curate_counting(folder, output)
    message = str(raised.value)
    assert message.startswith(f"Cannot write {output / 'README.md'}: no space left on device")
    assert is_user_error(raised.value)
    assert f"The shards finished so far are kept in {output / '_curation'}: free space there, then rerun" in message
    again, called = _curate_counting(folder, output)
    assert called == []
    assert again.dataset.to_list() == _curate_counting(folder, tmp_path / "clean")[0].dataset.to_list()

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    work_dir = read_only / "shards"
    if os.access(read_only, os.W_OK):  # root writes anyway; sysfs refuses root too
        work_dir = Path("/sys/tpo-hf-shards")
    try:
        backend = CountingBackend()
        config = curation_config(folder, tmp_path / "out2", work_dir=str(work_dir))
        with pytest.raises(OutputDirError, match=rf"^work_dir {work_dir} is not writable: ") as refused:
            run_curation(config, Backends(backend, None, None))
        assert backend.calls == [] and is_user_error(refused.value)
    finally:
        read_only.chmod(0o755)


def test_loading_a_dataset_folder_a_curation_is_writing_is_refused_naming_it(tmp_path):
    """F15: `tpo-hf train --dataset_name D` while `tpo-hf curate` re-curated D trained on the old rows and exited 0
    (push and eval refused a folder in use; loading did not). Now loading refuses, naming the run. Once that curate
    is killed, the folder is an unfinished curation (a/h28), refused until it is rerun or its lock file deleted."""
    import signal

    from tpo_hf.commands import is_user_error
    from tpo_hf.data import load_preference_dataset
    from tpo_hf.locks import OutputDirLockedError

    folder = tmp_path / "data"
    Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(folder))
    holder = hold_output_dir(folder)
    try:
        named = rf"^{folder} is being written by another run: pid {holder.pid} on host {socket.gethostname()} .*"
        with pytest.raises(OutputDirLockedError, match=named + "Loading this dataset would read a mix") as refused:
            load_preference_dataset(str(folder))
        assert is_user_error(refused.value)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with pytest.raises(ValueError, match=rf"^{folder} is an unfinished curation: .*delete {folder}/\.tpo-hf\.lock"):
        load_preference_dataset(str(folder))
    (folder / ".tpo-hf.lock").unlink()
    assert len(load_preference_dataset(str(folder))) == len(preference_rows(repeat=1))


# --- third probe: eval inputs (a torn adapter, a read-only datasets cache) --------------------------------------------
def test_eval_of_an_adapter_with_torn_weights_names_the_file(tiny_model_dirs, tmp_path):
    """F18: `--adapter_path` of a folder whose adapter_model.safetensors was cut short (training killed, or the disk
    full, during the final save): safetensors' "incomplete metadata" traceback named no file. Now one line does,
    before the model is loaded."""
    import re

    from peft import get_peft_model

    from tpo_hf.commands import is_user_error
    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.eval.run import evaluate
    from tpo_hf.families import LANGUAGE_MODEL_LORA_TARGETS
    from tpo_hf.models import load_video_model

    model_dir = tiny_model_dirs(FAMILY)
    adapter = tmp_path / "adapter"
    model, _ = build_tiny_model(FAMILY)
    get_peft_model(model, LoraConfig(r=4, target_modules=LANGUAGE_MODEL_LORA_TARGETS)).save_pretrained(adapter)
    weights = adapter / "adapter_model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    message = rf"^Adapter weights {re.escape(str(weights))} are incomplete \("
    config = EvalConfig(
        model_name_or_path=str(model_dir),
        adapter_path=str(adapter),
        benchmark="videomme",
        output_dir=str(tmp_path / "o"),
    )
    with pytest.raises(ValueError, match=message) as refused:
        evaluate(config)
    assert is_user_error(refused.value) and "checkpoint" in str(refused.value)
    with pytest.raises(ValueError, match=message):
        load_video_model(model_dir, adapter)


def test_a_read_only_datasets_cache_is_named_not_the_dataset_file(tmp_path, monkeypatch):
    """F22: with HF_HOME read-only, loading a local JSONL said "Cannot read dataset file X: OSError: [Errno 30]
    Read-only file system: '<HF_HOME>/datasets'", blaming the file (which reads). Now the datasets cache is named,
    with HF_DATASETS_CACHE as the way out."""
    import os
    import re

    import datasets

    from tpo_hf.commands import is_user_error
    from tpo_hf.data import load_preference_dataset

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in preference_rows(repeat=1)))
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    cache = read_only / "datasets"
    if os.access(read_only, os.W_OK):  # root writes anyway; sysfs refuses root too
        cache = Path("/sys/tpo-hf-datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)  # what HF_HOME / HF_DATASETS_CACHE set
    try:
        message = rf"^Cannot load dataset file {re.escape(str(data))}: the datasets cache {cache} is not writable \("
        with pytest.raises(ValueError, match=message) as refused:
            load_preference_dataset(str(data))
        assert "HF_DATASETS_CACHE" in str(refused.value) and is_user_error(refused.value)
    finally:
        read_only.chmod(0o755)


def test_reference_log_probs_follow_the_processors_pixel_budget(tiny_model_dirs, video_dir, tmp_path, caplog):
    """F27: lowering the pixel budget in the model folder's processor_config.json (size.longest_edge 4096 -> 1024)
    reused the reference log-probs precomputed at the old budget, without a word. Now the processor's image and video
    processing are part of the key, the recompute names the change, and an unchanged processor reuses the cache."""
    from transformers import AutoProcessor

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dirs(FAMILY), model_dir)
    Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(tmp_path / "data"))

    def reference():
        model, _ = build_tiny_model(FAMILY)  # the same weights as the saved model's
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, precompute_ref_log_probs=True),
            train_dataset=load_from_disk(str(tmp_path / "data")),
            processing_class=AutoProcessor.from_pretrained(str(model_dir)),
            peft_config=lora(),
        )
        return torch.tensor(trainer.train_dataset["ref_chosen_logps"])

    def caches():
        return sorted((tmp_path / "data").glob("cache-*.arrow"))

    first, cached = reference(), caches()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.ref_logps_cache"):
        torch.testing.assert_close(reference(), first)
    assert caches() == cached and "again" not in caplog.text  # nothing changed: the same key, the cache reused

    config_file = model_dir / "processor_config.json"
    config = json.loads(config_file.read_text())
    for name in ("image_processor", "video_processor"):
        config[name]["size"]["longest_edge"] = 1024
    config_file.write_text(json.dumps(config, indent=2))
    with caplog.at_level(logging.WARNING, logger="tpo_hf.ref_logps_cache"):
        lowered = reference()
    assert "Computing the reference log-probs of" in caplog.text
    assert "another image_processor.size, video_processor.size" in caplog.text
    assert len(caches()) == len(cached) + 1 and not torch.allclose(lowered, first)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, where every write fails with ENOSPC")
def test_a_full_disk_during_the_final_save_is_named_and_leaves_no_half_saved_model(video_dir, tmp_path):
    """F14: the final save (save_strategy no) on a full disk was safetensors' raw "No space left on device" naming no
    folder, and left a README.md without an adapter. Now it is one `CheckpointSaveError` naming the folder and what
    can be resumed, and the files the save had written are removed."""
    from tpo_hf.checkpoints import CheckpointSaveError
    from tpo_hf.commands import is_user_error

    def fail_final_save(trainer):
        output = Path(trainer.args.output_dir)
        # written after the weights and the README: its write fails as on a full disk, the other two half a model
        (output / "adapter_config.json").symlink_to("/dev/full")
        with pytest.raises(CheckpointSaveError) as info:
            trainer.save_model(str(output))
        assert not (output / "README.md").exists() and not (output / "adapter_model.safetensors").exists()
        assert str(info.value).startswith(f"Saving the trained model to {output} failed: no space left on device")
        assert is_user_error(info.value)
        return str(info.value)

    model, processor = build_tiny_model(FAMILY)
    trainer = make_trainer(model, processor, preference_rows(repeat=1), tmp_path / "no_checkpoint", video_dir)
    trainer.train()
    message = fail_final_save(trainer)
    assert "removed (README.md, adapter_model.safetensors)" in message
    assert "no checkpoint was saved, so the 1 trained step(s) are lost" in message

    trainer = _resumable(video_dir, tmp_path / "checkpointed", 1)
    trainer.train()
    message = fail_final_save(trainer)
    checkpoint = Path(trainer.args.output_dir) / "checkpoint-1"
    assert f"rerun with --resume_from_checkpoint true to resume from {checkpoint} (step 1 of 1)" in message


def test_a_full_disk_under_the_reference_log_prob_cache_is_named(video_dir, tmp_path):
    """F30: precompute_ref_log_probs with the dataset folder on a full disk ended in pyarrow's "ValueError: I/O
    operation on closed file" (the ENOSPC buried in its context), naming no file. A small tmpfs holds the dataset."""
    import os
    import subprocess

    from tpo_hf.commands import is_user_error
    from tpo_hf.ref_logps_cache import RefLogpsCacheError

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs is not permitted here")
    try:
        Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(disk / "data"))
        dataset = load_from_disk(str(disk / "data"))
        filler = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(filler, b"\0" * 4096):  # until the disk is full
                pass
        except OSError:
            pass
        finally:
            os.close(filler)
        model, processor = build_tiny_model(FAMILY)
        with pytest.raises(RefLogpsCacheError) as info:
            TPOTrainer(
                model,
                args=make_args(tmp_path, video_dir, precompute_ref_log_probs=True),
                train_dataset=dataset,
                processing_class=processor,
                peft_config=lora(),
            )
        message = str(info.value)
        assert message.startswith(f"Writing the reference log-prob cache {disk / 'data'}/cache-")
        assert "no space left on device" in message and "No space left on device" in message  # ENOSPC, not pyarrow's
        assert is_user_error(info.value)
        del dataset
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_push_staging_left_by_a_killed_push_is_removed_by_the_next(tmp_path, monkeypatch, caplog):
    """F19: `tpo-hf push --merge` killed (the out-of-memory killer) after the merge left `$TMPDIR/tpo-push-XXXX/`
    with the whole merged model, forever. Staging folders now carry their push's pid and host; the next push removes
    those whose process no longer runs (named with their size) and keeps those of live pushes."""
    import os
    import socket
    import subprocess
    import sys

    import tpo_hf.hub.push as push

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(push.tempfile, "tempdir", None)
    host = socket.gethostname()
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # a pid that no longer runs
    stale = tmp_path / f"tpo-push-{finished.pid}@{host}-abc123"
    (stale / "merged").mkdir(parents=True)
    (stale / "merged" / "model.safetensors").write_bytes(b"\0" * 3000)
    live = tmp_path / f"tpo-push-{os.getpid()}@{host}-def456"  # a push still running (this process)
    elsewhere = tmp_path / f"tpo-push-{finished.pid}@another-host-ghi789"  # another host's: cannot be checked
    unnamed = tmp_path / "tpo-push-jkl012"  # an older tpo-hf's: no owner recorded
    for folder in (live, elsewhere, unnamed):
        folder.mkdir()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub.push"):
        with push.push_staging() as staging:
            assert staging.parent == tmp_path and staging.name.startswith(f"tpo-push-{os.getpid()}@{host}-")
            assert not stale.exists() and live.is_dir() and elsewhere.is_dir() and unnamed.is_dir()
    assert not staging.exists()
    assert f"Removed {stale} (3.0 kB)" in caplog.text and f"(pid {finished.pid})" in caplog.text


def test_lora_targets_that_match_nothing_are_named_before_the_model_is_wrapped(
    tiny_model_dirs, video_dir, tmp_path, caplog
):
    """f12: `lora_target_modules: [q_projj, v_projj]` was PEFT's NoMatchingPeftModuleError traceback from inside
    TRL. Refused before wrapping, for a model given built or by its folder (checked on an empty skeleton), with the
    language model's linear names; a typo beside a name that matches is warned about, not silently dropped."""
    model, processor = build_tiny_model(FAMILY)
    rows = Dataset.from_list(preference_rows(repeat=1))
    typos = LoraConfig(r=4, lora_alpha=8, target_modules=["q_projj", "v_projj"])
    for source, processing_class in ((model, processor), (str(tiny_model_dirs(FAMILY)), None)):
        with pytest.raises(
            ValueError,
            match=r"lora_target_modules \['q_projj', 'v_projj'\] match no module of the model; its language "
            r"model's linear layers are q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj: ",
        ):
            TPOTrainer(
                source,
                args=make_args(tmp_path, video_dir),
                train_dataset=rows,
                processing_class=processing_class,
                peft_config=typos,
            )
    one_typo = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_projj"])
    with caplog.at_level(logging.WARNING, logger="tpo_hf.model_setup"):
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir),
            train_dataset=rows,
            processing_class=processor,
            peft_config=one_typo,
        )
    assert "lora_target_modules: v_projj match no module of the model" in caplog.text
    assert trainer.model.peft_config["default"].target_modules == {"q_proj", "v_projj"}


def test_a_model_folder_without_a_video_processor_is_named(tiny_model_dirs, tmp_path):
    """f12: a model folder whose processor has no video processor was transformers' OSError, advising to check for
    a local folder shadowing a Hub id."""
    import re

    folder = tmp_path / "novideo"
    shutil.copytree(tiny_model_dirs(FAMILY), folder)
    config = json.loads((folder / "processor_config.json").read_text())
    config.pop("video_processor")
    (folder / "processor_config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError,
        match=rf"^{re.escape(str(folder))}: its processor has no video processor \(no `video_processor` entry in "
        r"processor_config.json and no video_preprocessor_config.json\).*needs a video-LMM",
    ):
        VideoPreferenceProcessor.from_pretrained(str(folder))


# huggingface_hub 2.x hands raw bytes to httpx's deprecated `data=` when uploading LFS files (not our call)
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_a_dataset_push_deletes_the_videos_the_dataset_no_longer_holds(video_dir, tmp_path, monkeypatch, caplog):
    """A video removed from video_dir and curate --push_to_hub --upload_videos rerun: the dataset no longer held it,
    but the Hub repo kept videos/<removed>.mp4. Files under data/ and videos/ that the push does not carry are
    deleted in the same commit, named in a warning."""
    import huggingface_hub.constants
    from hub_server import HubServer
    from huggingface_hub import HfApi

    from tpo_hf.hub.push import push_dataset

    config = curation_config(video_dir, tmp_path / "curated", copy_videos=True)
    curated = run_curation(config, Backends(FrameBackend(), None, None))
    videos = sorted(set(curated.dataset["video"]))
    assert len(videos) > 1
    with HubServer(tmp_path / "hub") as hub:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setenv("HF_TOKEN", "hf_local_test_token")
        push_dataset(curated.output_dir, "user/pairs", curated.dataset, curated.report, config, upload_videos=True)
        kept = curated.dataset.filter(lambda row: row["video"] != videos[0])  # the rerun without that video
        with caplog.at_level(logging.WARNING, logger="tpo_hf.hub"):
            push_dataset(curated.output_dir, "user/pairs", kept, curated.report, config, upload_videos=True)
        files = HfApi(endpoint=hub.endpoint).list_repo_files("user/pairs", repo_type="dataset")
        assert videos[0] not in files and all(video in files for video in videos[1:]), files
        assert videos[0] in caplog.text
        assert len(hub.commits("user/pairs", "dataset")) == 3  # creation + one commit per push
        # a push without videos leaves videos/ alone: its rows still point at the videos uploaded before
        push_dataset(curated.output_dir, "user/pairs", kept, curated.report, config, upload_videos=False)
        files = HfApi(endpoint=hub.endpoint).list_repo_files("user/pairs", repo_type="dataset")
        assert all(video in files for video in videos[1:]), files


def test_an_unwritable_or_full_embedded_video_cache_is_one_line_naming_the_setting(video_dir, tmp_path, monkeypatch):
    """TPO_HF_VIDEO_CACHE read-only or full while a `datasets.Video` column's bytes were written out: a raw OSError
    traceback not naming the setting, and a `<name>.<pid>.part` file left in the full cache. Now one line naming the
    folder and TPO_HF_VIDEO_CACHE, and no .part file."""
    import hashlib
    import os

    from datasets import Video

    from tpo_hf.commands import is_user_error
    from tpo_hf.data import load_preference_dataset

    rows = [dict(row, video=str(video_dir / row["video"])) for row in preference_rows(repeat=1)]
    Dataset.from_list(rows).cast_column("video", Video()).save_to_disk(str(tmp_path / "data"))

    (tmp_path / "a_file").write_text("")  # a cache below a file cannot be made: as a read-only mount would refuse
    monkeypatch.setenv("TPO_HF_VIDEO_CACHE", str(tmp_path / "a_file" / "cache"))
    with pytest.raises(ValueError, match=r"a_file/cache/embedded: .*set TPO_HF_VIDEO_CACHE to a writable folder") as e:
        load_preference_dataset(str(tmp_path / "data"))
    assert is_user_error(e.value) and "\n" not in str(e.value)

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full to write into")
    cache = tmp_path / "full"
    monkeypatch.setenv("TPO_HF_VIDEO_CACHE", str(cache))
    first = Path(rows[0]["video"])
    folder = cache / "embedded" / hashlib.sha256(first.read_bytes()).hexdigest()[:32]
    folder.mkdir(parents=True)
    (folder / f"{first.name}.{os.getpid()}.part").symlink_to("/dev/full")  # writes into it fail with ENOSPC
    with pytest.raises(ValueError, match=r"no space left on device.*TPO_HF_VIDEO_CACHE") as e:
        load_preference_dataset(str(tmp_path / "data"))
    assert is_user_error(e.value) and str(folder.parent) in str(e.value)
    assert not [path for path in cache.rglob("*") if path.name.endswith(".part")]  # no torn file left behind


def test_a_copy_of_a_live_runs_output_folder_is_not_locked_by_the_copied_record(tmp_path, caplog):
    """`cp -r out snap` of a running job's folder: the copy's lock record names a live pid on this host, so eval, push
    and train refused `snap`, though nothing holds its lock. Where flock works, a free flock is decisive: the copy is
    read (and taken) with a warning naming the copied record."""
    import os

    from tpo_hf.locks import LOCK_NAME, output_dir_lock, refuse_if_locked

    out, snap = tmp_path / "out", tmp_path / "snap"
    with output_dir_lock(out, "train"):
        shutil.copytree(out, snap)  # the record names this live process
        assert (snap / LOCK_NAME).is_file()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.locks"):
            refuse_if_locked(snap, "push")
            assert f"pid {os.getpid()}" in caplog.text and str(snap / LOCK_NAME) in caplog.text
            caplog.clear()
            with output_dir_lock(snap, "eval"):
                assert "Taking over the lock" in caplog.text and f"pid {os.getpid()}" in caplog.text


# --- fifth probe: a curation into the dataset folder a training run reads ----------------------------------------------
HOLD_READER_MARK = """
import sys, time
from tpo_hf.locks import dataset_reader_mark
with dataset_reader_mark(sys.argv[1], "train") as mark:
    print(mark, flush=True)
    time.sleep(600)
"""


def start_mark_holder(script: str, folder: Path) -> subprocess.Popen:
    """Another process (not a child thread: its pid is what the mark names) running `script` on `folder`; it prints
    its mark's path once the mark is made and then holds it until killed."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("RANK", None)
    return subprocess.Popen(
        [sys.executable, "-c", script, str(folder)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True
    )


def test_a_curation_into_a_dataset_folder_a_training_run_reads_is_refused_naming_it(video_dir, tmp_path, caplog):
    """Training refused a folder a curation was writing, but a curation rerun into the dataset folder a training run
    read rewrote it under that run. The reader's mark (what `tpo-hf train` holds on its dataset folder) makes the
    curation refuse at once, naming the reader; once the reader is gone (killed: its flock is free) curation works."""
    import re
    import signal

    from tpo_hf.locks import LOCK_NAME, READERS_NAME, OutputDirLockedError

    folder = tmp_path / "curated"
    config = curation_config(video_dir, folder)
    run_curation(config, Backends(FrameBackend(), None, None))
    dataset_files = {path.name: path.stat().st_mtime_ns for path in folder.iterdir() if path.is_file()}
    reader = start_mark_holder(HOLD_READER_MARK, folder)
    try:
        mark = Path(reader.stdout.readline().strip())
        assert mark.parent == folder / READERS_NAME and mark.is_file()
        named = (
            rf"output folder {re.escape(str(folder))} holds a dataset that another run is reading: pid {reader.pid} "
            rf"on host {re.escape(socket.gethostname())} \(`.*`, train\) since .*delete {re.escape(str(mark))}\.$"
        )
        with pytest.raises(OutputDirLockedError, match=named):
            run_curation(config, Backends(FrameBackend(), None, None))
        assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir() if path.is_file()} == dataset_files
        assert reader.poll() is None and mark.is_file()
    finally:
        reader.send_signal(signal.SIGKILL)
        reader.wait()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.locks"):
        result = run_curation(config, Backends(FrameBackend(), None, None))
    assert len(result.dataset) > 0
    assert f"Removing the dataset reader mark {mark} left by pid {reader.pid} " in caplog.text
    assert not (folder / READERS_NAME).exists() and not (folder / LOCK_NAME).exists()


def test_training_marks_its_dataset_folder_while_it_runs_and_not_a_read_only_one(tiny_model_dirs, video_dir, tmp_path):
    """`tpo-hf train` holds the mark from the start to the end of its run (a curation into its dataset folder is
    refused meanwhile, and works after); a dataset folder it cannot write (a read-only mount) is read unmarked."""
    import os
    import threading
    import time

    from tpo_hf.locks import READERS_NAME, OutputDirLockedError, dataset_reader_mark
    from tpo_hf.train import cli_main

    folder = tmp_path / "data"
    Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(folder))
    (folder / "curation_report.json").write_text("{}")  # a curation's folder: one of the user's is refused (b/j32)
    args = ["--model_name_or_path", str(tiny_model_dirs(FAMILY)), "--dataset_name", str(folder)]
    args += ["--output_dir", str(tmp_path / "run"), "--video_root", str(video_dir), "--use_cpu", "true"]
    args += ["--dtype", "float32", "--bf16", "false", "--use_peft", "true", "--lora_r", "4", "--num_frames", "4"]
    args += ["--max_steps", "1", "--per_device_train_batch_size", "2", "--save_strategy", "no", "--report_to", "none"]
    args += ["--activation_checkpointing", "false", "--disable_tqdm", "true"]
    failed: list[BaseException] = []

    def train():
        try:
            cli_main(args)
        except BaseException as error:  # reported by the test's thread
            failed.append(error)

    training = threading.Thread(target=train)
    training.start()
    refused = None
    while training.is_alive() and refused is None:
        if list((folder / READERS_NAME).glob("*.json")):
            with pytest.raises(OutputDirLockedError) as refused:
                run_curation(curation_config(video_dir, folder), Backends(FrameBackend(), None, None))
        time.sleep(0.01)
    training.join()
    assert not failed and (tmp_path / "run" / "adapter_model.safetensors").exists()
    assert (
        refused is not None and f"pid {os.getpid()} " in str(refused.value) and ", train) since" in str(refused.value)
    )
    assert not (folder / READERS_NAME).exists()  # released with the run
    assert len(run_curation(curation_config(video_dir, folder), Backends(FrameBackend(), None, None)).dataset) > 0

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.access(read_only, os.W_OK):  # root writes anyway; sysfs refuses root too
        read_only = Path("/sys")
    try:
        with dataset_reader_mark(read_only, "train") as mark:
            assert mark is None and not (read_only / READERS_NAME).exists()
    finally:
        (tmp_path / "read_only").chmod(0o755)


def test_resume_with_another_loss_option_is_refused_every_config_field_compared_by_default(video_dir, tmp_path):
    """f13: `--f_divergence_type js_divergence` on resume (a TRL loss option missing from a hand-kept list of settings)
    trained the rest of the run with another loss, silently. Every field of the config is compared but those a resume
    may change (outputs, logs, saves, length, data loading, devices), so a field TRL adds later is compared too."""
    import dataclasses

    from tpo_hf.checkpoints import CheckpointError
    from tpo_hf.config import TPOConfig

    _resumable(video_dir, tmp_path, 1).train()
    with pytest.raises(CheckpointError, match=r"changed: f_divergence_type 'reverse_kl' -> 'js_divergence'\)"):
        _resumable(video_dir, tmp_path, 2, f_divergence_type="js_divergence").train(resume_from_checkpoint=True)
    from tpo_hf.checkpoints import resume_compared_settings

    compared = set(resume_compared_settings(make_args(tmp_path, video_dir)))
    assert {"f_divergence_type", "f_alpha_divergence_coef", "discopop_tau", "disable_dropout", "beta"} <= compared
    assert not {"output_dir", "max_steps", "logging_steps", "hub_model_id", "save_steps", "num_frames"} & compared

    @dataclasses.dataclass
    class LaterConfig(TPOConfig):  # a TRL release to come, with a new loss option
        new_loss_option: float = 0.0

    assert "new_loss_option" in resume_compared_settings(LaterConfig(str(tmp_path / "later"), use_cpu=True))
    resumed = _resumable(video_dir, tmp_path, 2, logging_steps=2, hub_model_id="me/tpo", dataloader_num_workers=0)
    resumed.train(resume_from_checkpoint=True)
    assert resumed.state.global_step == 2


@contextlib.contextmanager
def _small_tmpfs(folder, size="1m"):
    """A tmpfs of `size` mounted at `folder` for the body (skips the test where mounting is not permitted)."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    ).returncode:
        pytest.skip("mounting a small tmpfs is not permitted here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill_leaving_pages(disk, pages):
    """Fills the file system of `disk` with `disk/filler`, then frees `pages` memory pages (tmpfs allocates by page)."""
    import os

    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 65536):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    page = os.sysconf("SC_PAGE_SIZE")
    size = filler.stat().st_size
    os.truncate(filler, size - size % page - pages * page)
    return filler


def test_a_full_disk_when_eval_results_are_written_is_one_line_and_leaves_no_torn_file(
    tiny_model_dirs, video_dir, tmp_path
):
    """f05: the eval's volume filled after the last answer was cached: a raw `OSError: [Errno 28]` traceback from
    model_index.yaml's write_text, and a 0-byte model_index.yaml left. Each result file is written whole or not at all
    (the previous one kept), a full disk is one line naming the file, and with space freed the same command writes
    them from the cache."""
    import re

    from tests.test_eval_mcq import VIDEOMME_ROWS
    from tpo_hf.commands import is_user_error
    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.eval.run import evaluate

    questions = tmp_path / "videomme.jsonl"
    questions.write_text("".join(json.dumps(row) + "\n" for row in VIDEOMME_ROWS[:2]))
    with _small_tmpfs(tmp_path / "disk") as disk:
        output = disk / "ev"
        config = EvalConfig(
            model_name_or_path=str(tiny_model_dirs(FAMILY)),
            benchmark="videomme",
            dataset_name=str(questions),
            video_dir=str(video_dir),
            num_frames=2,
            max_new_tokens=2,
            dtype="float32",
            device="cpu",
            progress=False,
            output_dir=str(output),
        )
        evaluate(config)
        results = [path for path in output.iterdir() if not path.name.startswith("cache_")]
        written = {path.name: path.read_bytes() for path in results}
        assert {"results.json", "results.md", "model_index.yaml"} <= set(written)
        for path in results:  # as when the disk fills after the last answer was cached, before any result file
            path.unlink()
        filler = _fill_leaving_pages(disk, 1)  # the page the lock file takes
        with pytest.raises(OSError, match=rf"^Could not write {re.escape(str(output))}/\S+: no space left") as full:
            evaluate(config)
        from tpo_hf.eval.results import EvalOutputError

        assert isinstance(full.value, EvalOutputError) and is_user_error(full.value)
        assert "rerun the same command" in str(full.value)
        assert sorted(path.name for path in output.iterdir()) == ["cache_videomme.jsonl"]  # nothing torn, no temp file
        filler.unlink()
        evaluate(config)  # from the cache
        assert {path.name: path.read_bytes() for path in results} == written


def test_a_full_disk_while_vniah_videos_are_written_is_one_line_and_leaves_no_torn_video(video_dir, tmp_path):
    """f06: `eval --vniah true` on a nearly full volume: PyAV's `[Errno 28]` traceback naming the mp4, and a torn mp4
    left for the next run. Each video is written under a temporary name and renamed once whole; a full disk is one
    line naming the file, and the videos written whole before it are kept and reused."""
    from tpo_hf.commands import is_user_error
    from tpo_hf.eval.vniah import build_vniah_suite

    with _small_tmpfs(tmp_path / "disk") as disk:
        videos = disk / "vniah_videos"
        build_vniah_suite([video_dir / "red_blue.mp4"], videos, [8], [0.0])  # one video's size, to leave room for
        one_video = (videos / "vniah_len8_depth000.mp4").stat().st_size
        shutil.rmtree(videos)
        filler = _fill_leaving_pages(disk, 2 + one_video // 4096 + 1)  # the record, one video, not a second
        with pytest.raises(OSError, match=r"^Could not write the V-NIAH video file \S+\.mp4: no space") as full:
            build_vniah_suite([video_dir / "red_blue.mp4"], videos, [8], [0.0, 0.5, 1.0])
        from tpo_hf.eval.results import EvalOutputError

        assert isinstance(full.value, EvalOutputError) and is_user_error(full.value)
        left = sorted(path.name for path in videos.iterdir())
        assert left == ["vniah_len8_depth000.mp4", "vniah_suite.json"]  # no torn video, no temporary file
        kept = (videos / "vniah_len8_depth000.mp4").stat().st_mtime_ns
        filler.unlink()
        build_vniah_suite([video_dir / "red_blue.mp4"], videos, [8], [0.0, 0.5, 1.0])
        assert len(list(videos.glob("*.mp4"))) == 3 and (videos / "vniah_len8_depth000.mp4").stat().st_mtime_ns == kept


def test_an_extended_vniah_grid_keeps_the_videos_it_had(video_dir, tmp_path, caplog):
    """f07: V-NIAH at length 8, then 8 and 16 into the same folder: the length-8 videos, byte-identical, were written
    again and all their answers generated again ("changed: video file"). Only the new videos are written now; a
    folder recorded by the format-1 manifest (one record for the whole grid) keeps its videos too."""
    from tpo_hf.eval.vniah import SUITE_MANIFEST, build_vniah_suite

    videos = tmp_path / "vniah_videos"
    hay = [video_dir / "red_blue.mp4"]

    def times():
        return {path.name: path.stat().st_mtime_ns for path in videos.glob("*.mp4")}

    build_vniah_suite(hay, videos, [8], [0.0, 0.5])
    first = times()
    with caplog.at_level(logging.INFO, logger="tpo_hf.eval.vniah"):
        build_vniah_suite(hay, videos, [8, 16], [0.0, 0.5])
    extended = times()
    assert {name: extended[name] for name in first} == first and len(extended) == 4
    assert "new in the grid: vniah_len16_depth000.mp4, vniah_len16_depth050.mp4; the other 2 are kept" in caplog.text
    # the manifest an older tpo-hf wrote: one record of the grid, each video by its path-ful identity
    record = json.loads((videos / SUITE_MANIFEST).read_text())
    inputs = {**record["inputs"], "format": 1, "lengths": [8, 16], "depths": [0.0, 0.5]}
    old = {name: f"{videos / name}@{video['file']}" for name, video in record["videos"].items()}
    (videos / SUITE_MANIFEST).write_text(json.dumps({"inputs": inputs, "videos": old}))
    build_vniah_suite(hay, videos, [8, 16], [0.0, 0.5, 1.0])
    grown = times()
    assert {name: grown[name] for name in extended} == extended and len(grown) == 6


def test_a_rank_left_in_the_shell_without_a_launch_still_locks_the_output_folder(tmp_path, monkeypatch, caplog):
    """f09: with `RANK=1` exported (left from a torchrun job script, set per pod by a cluster wrapper), two
    single-process evals into one output folder were not refused: the lock trusted RANK alone. The launch's world
    decides now: a RANK without WORLD_SIZE > 1 is a single process, which locks (warned once); rank 1 of 2 is one
    writer with rank 0."""
    import os
    import subprocess
    import sys

    from tpo_hf.locks import OutputDirLockedError, output_dir_lock

    folder = tmp_path / "ev"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "RANK": "1"}
    env.pop("WORLD_SIZE", None)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(folder)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("RANK", "1")
        monkeypatch.delenv("WORLD_SIZE", raising=False)
        with caplog.at_level(logging.WARNING, logger="tpo_hf.locks"):
            with pytest.raises(OutputDirLockedError, match=rf"in use by another run: pid {holder.pid} "):
                with output_dir_lock(folder, "eval"):
                    pass
        assert "RANK=1 is set but WORLD_SIZE is not set" in caplog.text
    finally:
        holder.kill()
        holder.wait()
    from tpo_hf.locks import is_main_process

    monkeypatch.setenv("WORLD_SIZE", "2")  # a launch of two processes: rank 1 writes with its main process
    assert not is_main_process()
    with output_dir_lock(folder, "eval") as other_rank:
        assert other_rank is None
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


def test_a_stale_lock_file_of_another_user_is_named_with_its_owner(tmp_path):
    """f10: a lock file left by a colleague's killed run (theirs, mode 0644) in a shared, writable folder gave
    "output_dir ... is not writable: Permission denied ... set output_dir to a folder on a writable file system". The
    lock file, its owner and the run that left it are named now, and what to do: remove it (no run holds it)."""
    import os
    import pwd
    import subprocess
    import sys

    from tpo_hf.locks import LOCK_NAME

    folder = tmp_path / "ev"
    folder.mkdir()
    lock = folder / LOCK_NAME
    left = {"pid": 999999, "host": socket.gethostname(), "command": "tpo-hf eval --config eval.yaml", "what": "eval"}
    lock.write_text(json.dumps({**left, "since": "2026-12-01T10:00:00+00:00"}))
    take = "import sys\nfrom tpo_hf.locks import output_dir_lock\nwith output_dir_lock(sys.argv[1], 'eval'):\n    pass"
    command = [sys.executable, "-c", take, str(folder)]
    if os.geteuid() == 0:  # root writes any file: drop the capabilities that let it, as a colleague's account has none
        if shutil.which("setpriv") is None:
            pytest.skip("needs setpriv to run without root's file capabilities")
        os.chown(lock, 65534, 65534)
        lock.chmod(0o644)
        folder.chmod(0o777)
        drop = "-dac_override,-dac_read_search,-fowner"
        command = ["setpriv", f"--inh-caps={drop}", f"--bounding-set={drop}", *command]
    else:
        lock.chmod(0o444)
    owner = pwd.getpwuid(lock.stat().st_uid).pw_name
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert f"OutputDirError: The lock file {lock} of output folder {folder} belongs to user {owner}" in last, last
    assert "left by pid 999999 on host" in last and "no run holds it now" in last and f"rm {lock}" in last
    assert "not writable" not in last


def test_reference_log_probs_are_reused_with_the_dataset_given_by_another_path(video_dir, tmp_path, monkeypatch):
    """f16: precompute_ref_log_probs with the dataset folder given relative, then absolute (or after the project moved)
    computed the reference log-probs again -- a full forward pass over the dataset -- since their key held each
    video's path. Videos are keyed by name, size and time (`fingerprint.video_file_identity`), as eval answers are."""
    project = tmp_path / "project"
    data = project / "data"
    Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(data))
    for video in video_dir.glob("*.mp4"):
        shutil.copy2(video, data / video.name)

    def reference(dataset, video_root):
        model, processor = build_tiny_model(FAMILY)
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, video_root, precompute_ref_log_probs=True),
            train_dataset=load_from_disk(str(dataset)),
            processing_class=processor,
            peft_config=lora(),
        )
        return torch.tensor(trainer.train_dataset["ref_chosen_logps"])

    def caches(folder):
        return [
            p.name
            for p in folder.glob("cache-*.arrow")
            if "ref_chosen_logps" in Dataset.from_file(str(p)).column_names
        ]

    monkeypatch.chdir(project)
    first = reference("data", "data")
    [cache] = caches(data)
    torch.testing.assert_close(reference(data, data), first)  # the same folder by its absolute path: reused
    assert caches(data) == [cache]
    project.rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved")
    reference("data", "data")
    assert caches(tmp_path / "moved" / "data") == [cache]


def test_an_output_folder_removed_under_a_live_eval_stops_its_writes(tmp_path):
    """f22: `rm -rf ev` while an eval wrote it, then the eval again into ev/: the second run locked the new folder and
    the first went on appending its answers into it (mixed caches). The lock holder checks that its lock file is still
    there before each append; it stops naming it, and leaves the new run's lock file alone."""
    import re

    from tpo_hf.eval.mcq import ResultsCache, SampleResult
    from tpo_hf.locks import LOCK_NAME, OutputDirLockedError, output_dir_lock

    folder = tmp_path / "ev"
    answer = SampleResult(
        model="base", sample_id="q1", num_frames=4, reply="A", prediction="A", answer="A", correct=True
    )
    with output_dir_lock(folder, "eval"):
        cache = ResultsCache(folder / "cache_videomme.jsonl")
        cache.add([answer])
        shutil.rmtree(folder)  # a run believed dead
        other = hold_output_dir(folder)  # the eval started again into ev/
        try:
            lock = re.escape(str(folder / LOCK_NAME))
            with pytest.raises(OutputDirLockedError, match=rf"^The lock file {lock} that this run holds .* removed"):
                cache.add([SampleResult(**{**answer.__dict__, "sample_id": "q2"})])
            assert not (folder / "cache_videomme.jsonl").exists()  # nothing appended into the other run's folder
        except BaseException:
            other.kill()
            other.wait()
            raise
    try:
        assert json.loads((folder / LOCK_NAME).read_text())["pid"] == other.pid  # its lock file is left alone
    finally:
        other.kill()
        other.wait()


# --- an output folder deleted under a live curation or training run ---------------------------------------------------
class FolderRemovingBackend(FrameBackend):
    """`FrameBackend` that deletes `folder` at its first call, as an `rm -rf` of a run believed dead does."""

    def __init__(self, folder):
        self.folder = folder

    def generate(self, requests, max_new_tokens, seed=0):
        if self.folder.exists():
            shutil.rmtree(self.folder)
        return super().generate(requests, max_new_tokens, seed)


def test_a_curation_whose_output_folder_is_deleted_under_it_stops_naming_its_lock(video_dir, tmp_path):
    """`rm -rf out` while `tpo-hf curate` ran: the run went on writing shards into a new `out` (perhaps another run's
    by then). It stops at its next write, naming the lock file it lost, and writes nothing."""
    from tpo_hf.locks import LOCK_NAME, OutputDirLockedError

    out = tmp_path / "out"
    with pytest.raises(OutputDirLockedError, match=f"lock file {out / LOCK_NAME} .* was removed or replaced"):
        run_curation(curation_config(video_dir, out), Backends(FolderRemovingBackend(out), None, None))
    assert not out.exists()


def test_a_training_run_whose_output_folder_is_deleted_under_it_stops_before_saving(tiny_model, video_dir, tmp_path):
    """`rm -rf out` while `tpo-hf train` ran: its checkpoint went into a new `out`. It stops at the save, naming the
    lock file it lost, and writes no checkpoint."""
    from transformers import TrainerCallback

    from tpo_hf.locks import LOCK_NAME, OutputDirLockedError

    class RemoveOutputFolder(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            shutil.rmtree(args.output_dir)

    model, processor = tiny_model("qwen2_vl")
    trainer = TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir, save_strategy="steps", save_steps=1),
        train_dataset=Dataset.from_list(preference_rows(repeat=1)),
        processing_class=processor,
        peft_config=lora(),
        callbacks=[RemoveOutputFolder()],
    )
    out = tmp_path / "out"
    with pytest.raises(OutputDirLockedError, match=f"lock file {out / LOCK_NAME} .* was removed or replaced"):
        trainer.train()
    assert not out.exists()


def test_reference_log_probs_are_reused_when_only_the_lora_initialisation_changes(video_dir, tmp_path):
    """a/F36: precompute_ref_log_probs with LoRA, a rerun changing only `seed` or `lora_r` computed the reference
    log-probs again -- TRL's key hashed the whole model, the adapter's random initialisation included -- though the
    reference (the base, adapter off) is the same. Its weights are keyed without the adapter's."""
    Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(tmp_path / "data"))
    dataset = load_from_disk(str(tmp_path / "data"))

    def reference(rank=4, **overrides):
        model, processor = build_tiny_model(FAMILY)
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir, precompute_ref_log_probs=True, **overrides),
            train_dataset=dataset,
            processing_class=processor,
            peft_config=LoraConfig(r=rank, lora_alpha=8, lora_dropout=0.0),
        )
        return torch.tensor(trainer.train_dataset["ref_chosen_logps"])

    def caches():
        return sorted(
            path.name
            for path in (tmp_path / "data").glob("cache-*.arrow")
            if "ref_chosen_logps" in Dataset.from_file(str(path)).column_names
        )

    first = reference(seed=1)
    [cache] = caches()
    torch.testing.assert_close(reference(seed=2), first)
    torch.testing.assert_close(reference(rank=8, seed=1), first)
    assert caches() == [cache]
    assert not torch.allclose(reference(num_frames=2), first) and len(caches()) == 2  # a setting that matters


HOLD_ADAPTER_MARK = """
import sys, time
from tpo_hf.locks import reader_mark
with reader_mark(sys.argv[1], "eval", "adapter") as mark:
    print(mark, flush=True)
    time.sleep(600)
"""


def test_training_into_an_adapter_folder_an_eval_reads_is_refused_naming_it(tmp_path, monkeypatch):
    """a/F12: `tpo-hf train --output_dir AD` while `tpo-hf eval --adapter_path AD` ran rewrote the weights under the
    eval, whose results named AD but described the old weights. The eval marks the adapter folder it reads
    (`reader_mark`), and training into it refuses at once, naming the eval."""
    import re
    import signal

    from tpo_hf.eval import run as eval_run
    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.locks import READERS_NAME
    from tpo_hf.train import cli_main

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    seen = []
    # what the eval holds while it runs: its mark on the adapter folder
    monkeypatch.setattr(
        eval_run,
        "_evaluate_locked",
        lambda config, *_: seen.extend(json.loads(mark.read_text()) for mark in (adapter / READERS_NAME).iterdir()),
    )
    eval_run.evaluate(EvalConfig(adapter_path=str(adapter), benchmark="videomme", output_dir=str(adapter / "eval")))
    assert len(seen) == 1 and seen[0]["reads"] == "adapter" and seen[0]["what"] == "eval"
    assert not (adapter / READERS_NAME).exists()  # released with the eval

    reader = start_mark_holder(HOLD_ADAPTER_MARK, adapter)
    try:
        mark = Path(reader.stdout.readline().strip())
        args = ["--model_name_or_path", "m", "--dataset_name", "d", "--output_dir", str(adapter)]
        args += ["--bf16", "false", "--use_cpu", "true", "--report_to", "none"]
        named = (
            rf"^tpo-hf train: output folder {re.escape(str(adapter))} holds an adapter that another run is reading: "
            rf"pid {reader.pid} on host .* \(`.*`, eval\) since .* would rewrite its weights under that run"
        )
        with pytest.raises(SystemExit, match=named):
            cli_main(args)
        assert reader.poll() is None and mark.is_file()
    finally:
        reader.send_signal(signal.SIGKILL)
        reader.wait()


@pytest.mark.parametrize(
    "field, content, named",
    [
        ("prompt", [{"type": "image"}, {"type": "text", "text": "What colour?"}], r"message 0 has an image part"),
        ("prompt", [{"type": "video"}, {"type": "video"}, {"type": "text", "text": "Q?"}], r"2 video parts"),
        ("chosen", [{"type": "video"}, {"type": "text", "text": "Red."}], r"message 0 has a video part; an answer"),
    ],
)
def test_media_parts_a_row_cannot_fill_are_named_by_row_and_field(field, content, named):
    """b/f13: a conversational prompt with an `{"type": "image"}` part (a LLaVA-style row reused) or two video parts
    failed inside transformers naming no row. A row brings one video: one video part in its prompt, nothing else."""
    from tpo_hf.validation import RowError, check_preference_row

    row = preference_rows(conversational=True, repeat=1)[0]
    role = "user" if field == "prompt" else "assistant"
    row[field] = [{"role": role, "content": content}]
    with pytest.raises(RowError, match=rf"^train row 3, field '{field}': {named}"):
        check_preference_row(row, 3, "train")
    row = preference_rows(conversational=True, repeat=1)[0]
    row["prompt"] = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What colour?"}]}]
    assert check_preference_row(row, 3, "train") is None  # one video part: where the video goes


# --- seventh probe: curation work_dir ---
class CountingFrameBackend(FrameBackend):
    """`FrameBackend` that counts its generate calls: none means every shard was reused."""

    def __init__(self, before_call=None):
        self.calls = 0
        self.before_call = before_call

    def generate(self, requests, max_new_tokens, seed=0):
        self.calls += 1
        if self.before_call is not None:
            self.before_call()
        return super().generate(requests, max_new_tokens, seed)


def two_corpora(video_dir, tmp_path):
    """Two folders of clips named alike (`a.mp4`, `b.mp4`) with other content: a train and a held-out corpus."""
    train, heldout = tmp_path / "train", tmp_path / "heldout"
    for folder, names in ((train, ("red_blue", "green_yellow")), (heldout, ("green_yellow", "red_blue"))):
        folder.mkdir()
        for clip, name in zip(("a.mp4", "b.mp4"), names, strict=True):
            shutil.copy(video_dir / f"{name}.mp4", folder / clip)
    return train, heldout


def test_a_shared_work_dir_is_locked_and_a_shard_replaced_under_the_run_is_refused(video_dir, tmp_path):
    """Probe a/G1: two curations of corpora whose clips are named alike, into their own output_dir but one shared
    work_dir, ran at once: one output got the other corpus's pairs. The work_dir is locked like output_dir, and a
    shard that another writer replaced during the run is refused at the merge, naming it."""
    from tpo_hf.curation.storage import read_shard
    from tpo_hf.locks import OutputDirLockedError

    train, heldout = two_corpora(video_dir, tmp_path)
    work = tmp_path / "work"
    holder = hold_output_dir(work)  # another run curating into the shared work_dir
    try:
        named = rf"^work_dir {work} is in use by another run: pid {holder.pid} .* set another work_dir"
        with pytest.raises(OutputDirLockedError, match=named):
            run_curation(
                curation_config(train, tmp_path / "out_train", work_dir=str(work)),
                Backends(FrameBackend(), None, None),
            )
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "out_train" / "state.json").exists()

    # a writer the lock cannot keep out (another host): the held-out corpus's shard of a.mp4 lands in this run's
    run_curation(
        curation_config(heldout, tmp_path / "out_heldout", work_dir=str(tmp_path / "work_h")),
        Backends(FrameBackend(), None, None),
    )
    shards = {tuple(read_shard(p)["videos"]): p for p in (tmp_path / "work_h" / "shards").glob("shard-*.json")}
    other = shards[("a.mp4",)].read_text()
    target = work / "shards" / shards[("a.mp4",)].name  # named by the video id alone, as in every work_dir

    def overwrite():
        if target.exists() and target.read_text() != other:
            target.write_text(other)

    with pytest.raises(ValueError, match=rf"Curation shard {target} no longer matches this run \(.*a\.mp4\)"):
        run_curation(
            curation_config(train, tmp_path / "out_train", work_dir=str(work)),
            Backends(CountingFrameBackend(overwrite), None, None),
        )
    assert not (tmp_path / "out_train" / "state.json").exists()  # no dataset of mixed corpora


def test_a_work_dir_reused_for_another_corpus_is_refused_naming_both(video_dir, tmp_path, caplog):
    """Probe a/G12: one work_dir used in turn for two corpora whose clips are named alike said "3 video(s) changed
    in place" and overwrote the first corpus's shards. The manifest records the video source and output_dir its
    shards serve: another source into another output is refused naming both; a moved folder resumes."""
    train, heldout = two_corpora(video_dir, tmp_path)
    work = str(tmp_path / "work")
    run_curation(curation_config(train, tmp_path / "out_train", work_dir=work), Backends(FrameBackend(), None, None))
    named = (
        rf"^work_dir {work} holds the shards of output_dir {tmp_path / 'out_train'} \(videos from {train}\); this run "
        rf"curates {heldout} into {tmp_path / 'out_heldout'}, and 2 of its video\(s\) are other files named as there "
        r"\(a\.mp4, b\.mp4\)"
    )
    with pytest.raises(ValueError, match=named):
        run_curation(
            curation_config(heldout, tmp_path / "out_heldout", work_dir=work), Backends(FrameBackend(), None, None)
        )

    # the same videos moved (times kept), curated into another output: every shard is reused
    moved = tmp_path / "moved"
    shutil.copytree(train, moved)
    backend = CountingFrameBackend()
    run_curation(curation_config(moved, tmp_path / "out_moved", work_dir=work), Backends(backend, None, None))
    assert backend.calls == 0

    # another folder curated into the same output: said as it is, not "changed in place"
    with caplog.at_level(logging.WARNING, logger="tpo_hf.curation.storage"):
        run_curation(
            curation_config(heldout, tmp_path / "out_moved", work_dir=work), Backends(FrameBackend(), None, None)
        )
    assert f"2 video(s) named as there but other files from the last run's (which curated {moved}; " in caplog.text
    assert "changed in place" not in caplog.text


def test_a_resume_with_another_batch_size_keeps_the_finished_shards_under_the_escape_hatch(
    video_dir, tmp_path, monkeypatch
):
    """Probe a/G8: a curation resumed after a crash with a smaller batch_size (or another videos_per_shard) was
    refused with no way on but discarding every shard. The refusal says why batching changes pairs and names
    TPO_HF_RESUME_CHANGED=1, which resumes keeping the finished shards, across later resumes too."""
    from tpo_hf.curation.storage import read_shard

    monkeypatch.delenv("TPO_HF_RESUME_CHANGED", raising=False)
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("red_blue", "green_yellow"):
        shutil.copy(video_dir / f"{name}.mp4", folder / f"{name}.mp4")
    out = tmp_path / "out"
    first = run_curation(curation_config(folder, out, batch_size=8), Backends(FrameBackend(), None, None))
    shards = {tuple(read_shard(p)["videos"]): p for p in (out / "_curation" / "shards").glob("shard-*.json")}
    shards[("red_blue.mp4",)].unlink()  # the crash: one shard not written

    hatch = r"batching settings \(changed: batch_size\): .*pads each prompt .* Set TPO_HF_RESUME_CHANGED=1 to resume"
    with pytest.raises(ValueError, match=hatch):
        run_curation(curation_config(folder, out, batch_size=2), Backends(FrameBackend(), None, None))

    monkeypatch.setenv("TPO_HF_RESUME_CHANGED", "1")
    backend = CountingFrameBackend()
    resumed = run_curation(curation_config(folder, out, batch_size=2), Backends(backend, None, None))
    assert backend.calls > 0 and shards[("red_blue.mp4",)].exists()  # the missing shard only
    assert sorted(resumed.dataset["chosen"]) == sorted(first.dataset["chosen"])
    assert read_shard(shards[("green_yellow.mp4",)])["settings"] != read_shard(shards[("red_blue.mp4",)])["settings"]
    # the kept shards are named with their batching values in the report and the dataset card
    assert resumed.report["earlier_batching"] == [{"batch_size": 8, "videos": ["green_yellow.mp4"]}]
    card = (out / "README.md").read_text()
    assert "The pairs of 1 video(s) were kept from an earlier run" in card and "(batch_size 8)" in card

    # videos_per_shard likewise: the finished one-video shards are kept whole
    backend = CountingFrameBackend()
    run_curation(curation_config(folder, out, batch_size=2, videos_per_shard=2), Backends(backend, None, None))
    assert backend.calls == 0
    monkeypatch.delenv("TPO_HF_RESUME_CHANGED")  # the next resume with the same values needs no hatch
    backend = CountingFrameBackend()
    again = run_curation(curation_config(folder, out, batch_size=2, videos_per_shard=2), Backends(backend, None, None))
    assert backend.calls == 0
    assert sorted(again.dataset["chosen"]) == sorted(first.dataset["chosen"])


# --- probe 9 (h6): curation reruns after a model folder copy, a card edit or Ctrl-C; the ref-logps early check ------
def test_a_video_model_folder_copied_with_the_same_weights_reuses_every_shard(tiny_model_dirs, tmp_path, caplog):
    """Probe a/i14: the `video_model` folder copied with `cp -r` (identical weights, new modification times) was
    refused (`changed: video_model`) though the key records the weights (`video_model_weights`) alike: the path
    alone forced a full recuration. The copy now reuses every shard, with a note; other weights are still refused."""
    folder = _three_videos(tmp_path / "videos")
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dirs(FAMILY), model)
    out = tmp_path / "out"
    first, called = _curate_counting(folder, out, video_model=str(model))
    assert called == ["a.mp4", "b.mp4", "c.mp4"]

    copy = tmp_path / "copy"
    shutil.copytree(model, copy, copy_function=shutil.copyfile)  # `cp -r`: same bytes, new modification times
    with caplog.at_level(logging.INFO, logger="tpo_hf.curation"):
        again, called = _curate_counting(folder, out, video_model=str(copy))
    assert called == []
    pairs = ["prompt", "chosen", "rejected", "video"]
    assert again.dataset.select_columns(pairs).to_list() == first.dataset.select_columns(pairs).to_list()
    assert f"video_model moved: same weights, shards reused ({model} -> {copy})" in caplog.text
    assert again.dataset["video_model"][0] == str(copy)  # the rows name the model the run was given
    _, called = _curate_counting(folder, out, video_model=str(copy))  # and again from the copy
    assert called == []

    weights = next(copy.glob("*.safetensors"))
    content = weights.read_bytes()
    weights.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))  # the copy's weights saved again, changed
    with pytest.raises(ValueError, match=r"other settings \(changed: video_model, video_model_weights\)"):
        _curate_counting(folder, out, video_model=str(copy))


def test_a_rerun_over_a_hand_edited_dataset_card_is_refused_naming_it(tmp_path):
    """Probe a/i2: a finished curation's dataset card (README.md) edited by hand was silently written over when the
    same curate command was rerun (e.g. to add --push_to_hub): the edited-dataset refusal covered the data files
    only. The card's hash is recorded with them; an edited card is refused before any work, naming README.md and
    the ways on (copy it elsewhere to keep it, delete it to go on); an unedited or deleted card is no refusal. A
    manifest written before the hash was recorded was written after the card: a card newer than it is refused."""
    folder = _three_videos(tmp_path / "videos")
    out = tmp_path / "out"
    first, _ = _curate_counting(folder, out)
    _, called = _curate_counting(folder, out)  # the card as the curation wrote it: no refusal
    assert called == []
    card = out / "README.md"
    edited = card.read_text() + "\n## My notes: these pairs were reviewed by hand\n"
    card.write_text(edited)

    named = rf"output_dir {out} holds a dataset card, README.md, edited since the last curation wrote it \(it differs "
    with pytest.raises(
        ValueError, match=named + rf".* copy it elsewhere first .* delete {card} and rerun this command"
    ):
        _curate_counting(folder, out)
    assert card.read_text() == edited  # nothing written over it

    card.unlink()  # the user's way on: a new card is written, the shards reused
    again, called = _curate_counting(folder, out)
    assert called == [] and "My notes" not in card.read_text()
    assert again.dataset.to_list() == first.dataset.to_list()

    # a manifest of a tpo-hf that recorded no card hash: it was written after the card, which is newer if edited
    manifest = out / "_curation" / "manifest.json"

    def forget_card():
        recorded = json.loads(manifest.read_text())
        del recorded["card"]
        manifest.write_text(json.dumps(recorded))

    forget_card()
    _, called = _curate_counting(folder, out)  # the card as written: no refusal
    assert called == []
    forget_card()
    card.write_text(edited)
    os.utime(card, (manifest.stat().st_mtime + 60,) * 2)
    with pytest.raises(ValueError, match=r"README.md, edited since the last curation wrote it \(it is newer than "):
        _curate_counting(folder, out)
    assert card.read_text() == edited


class StoppedBackend(FrameBackend):
    """`FrameBackend` whose process gets Ctrl-C (a `KeyboardInterrupt`, as SIGINT raises it) when asked about
    `stop_at`: a curation stopped by hand in the middle of its shards."""

    def __init__(self, stop_at: str):
        self.stop_at = stop_at

    def generate(self, requests, max_new_tokens, seed=0):
        if any(request.candidate.video_id == self.stop_at for request in requests):
            raise KeyboardInterrupt
        return super().generate(requests, max_new_tokens, seed)


def test_a_curation_stopped_with_ctrl_c_says_what_it_kept_and_leaves_its_folder_unfinished(tmp_path, capsys):
    """Probe a/i41: a curate rerun (videos added) stopped with Ctrl-C printed a torch traceback ending in
    KeyboardInterrupt, nothing about the shards kept, and released its lock: `train` then read the previous
    dataset as finished (a killed rerun is refused as `an unfinished curation`). Now the command says in one line
    what was kept and that rerunning resumes (exit status 130), and the lock record is left as a kill leaves it:
    loading the folder is refused as unfinished until the rerun, which resumes and finishes it."""
    from tpo_hf.commands import run_command
    from tpo_hf.data import load_preference_dataset
    from tpo_hf.locks import output_dir_lock

    folder = _three_videos(tmp_path / "videos")
    out = tmp_path / "out"
    first, _ = _curate_counting(folder, out)
    for name in ("d.mp4", "e.mp4"):
        shutil.copy(folder / "a.mp4", folder / name)

    def curate():
        with output_dir_lock(out, "curate"):  # the command's own hold around the run (`tpo_hf.commands.curate`)
            return run_curation(curation_config(folder, out), Backends(StoppedBackend("e.mp4"), None, None))

    def command_status(job):
        """The exit status `run_command` ends `job` with (a KeyboardInterrupt going through would end pytest)."""
        try:
            run_command("curate", job)
        except SystemExit as stopped:
            return stopped.code
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C went through the command as a KeyboardInterrupt (a traceback)")
        pytest.fail("the command ended normally")

    capsys.readouterr()
    assert command_status(curate) == 130
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line == (
        f"tpo-hf curate: stopped (Ctrl-C). 4 of 5 shard(s) are finished and kept in {out / '_curation'}: rerun the "
        f"same command to resume (only the other shards are curated). Until it finishes, {out} holds the dataset of "
        "an earlier run, not this run's, and loading it is refused as an unfinished curation."
    )
    record = json.loads((out / ".tpo-hf.lock").read_text())
    assert record["pid"] == os.getpid() and record["what"] == "curate" and record["stopped"]
    unfinished = rf"^{out} is an unfinished curation: the last tpo-hf curate into it \(pid {os.getpid()} .*, stopped "
    with pytest.raises(ValueError, match=unfinished + r"with Ctrl-C at .*\) did not finish"):
        load_preference_dataset(str(out))

    again, called = _curate_counting(folder, out)  # the same command again: the stopped shard only
    assert called == ["e.mp4"] and len(again.dataset) > len(first.dataset)
    assert not (out / ".tpo-hf.lock").exists()
    assert len(load_preference_dataset(str(out))) == len(again.dataset)

    # Ctrl-C in another command, or outside the curation's run (its push): the line alone, and no record left
    def push():
        with output_dir_lock(out, "curate"):
            raise KeyboardInterrupt

    capsys.readouterr()
    assert command_status(push) == 130 and capsys.readouterr().err.strip() == "tpo-hf curate: stopped (Ctrl-C)."
    assert not (out / ".tpo-hf.lock").exists()


def test_a_read_only_dataset_with_only_other_runs_ref_logps_caches_is_refused_before_the_model_load(
    video_dir, tmp_path, monkeypatch
):
    """Probe a/i32: with the dataset folder and TPO_HF_CACHE both read-only, the early check (before the model load)
    let any `cache-*.arrow` in the folder through, so a folder holding only an earlier run's reference log-probs
    (other num_frames) was refused at precompute time, after the model (and reference) loaded. A cache whose key
    record holds another value of what the run's arguments already say is now no reason to go on; one that may be
    this run's still is (whether it is, is decided once the whole key is known)."""
    from tests.test_trainer import read_only_later
    from tpo_hf.commands import is_user_error
    from tpo_hf.ref_logps_cache import RefLogpsCacheError, check_ref_logps_cache_writable

    with read_only_later(tmp_path / "shared") as make_read_only:
        data = tmp_path / "shared" / "data"
        Dataset.from_list(preference_rows(repeat=1)).save_to_disk(str(data))
        (tmp_path / "shared" / "cache").mkdir()
        earlier = make_args(tmp_path / "a", video_dir, precompute_ref_log_probs=True, num_frames=4)
        model, processor = build_tiny_model(FAMILY)
        TPOTrainer(model, args=earlier, train_dataset=load_from_disk(str(data)), processing_class=processor)
        assert len(list(data.glob("cache-*.key.json"))) == 1  # the earlier run's cache, with its key
        make_read_only()
        monkeypatch.setenv("TPO_HF_CACHE", str(tmp_path / "shared" / "cache"))
        dataset = load_from_disk(str(data))

        check_ref_logps_cache_writable(dataset, earlier)  # the earlier run's settings: its cache may serve
        check_ref_logps_cache_writable(dataset)  # nothing known of the run: nothing refused before the load
        other = make_args(tmp_path / "b", video_dir, precompute_ref_log_probs=True, num_frames=6)
        with pytest.raises(RefLogpsCacheError) as info:
            check_ref_logps_cache_writable(dataset, other)
        message = str(info.value)
        assert message.startswith(
            f"Cannot write the reference log-prob cache (precompute_ref_log_probs): the dataset folder {data} cannot "
            "be written ("
        )
        assert "The reference log-prob cache(s) there (1) were computed with another video_settings.num_frames" in (
            message
        )
        assert "Set TPO_HF_CACHE to a writable folder" in message and is_user_error(info.value)
        with pytest.raises(RefLogpsCacheError, match=r"another max_length \(the newest\)"):
            check_ref_logps_cache_writable(
                dataset, make_args(tmp_path / "c", video_dir, num_frames=4, max_length=4096)
            )
        # the trainer makes the same check before it loads the model (there is none at this path)
        with pytest.raises(RefLogpsCacheError, match=r"another video_settings.num_frames \(the newest\)"):
            TPOTrainer(str(tmp_path / "no-such-model"), args=other, train_dataset=dataset)
        del dataset


# --- probe-10 fixes: hard-linked snapshots, replaced checkpoint weights, a hand-edited card -------------------------
def _files_of(folder):
    """name -> bytes of every file under `folder` (a hard-linked snapshot's contents)."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_a_hard_linked_snapshot_of_a_curated_folder_keeps_its_own_card(tmp_path):
    """Probe a/i26: after `cp -al cur snap` and a rerun into cur over a changed video, snap's data files were kept
    (written by rename) but its README.md was written in place through the link: snap's card described cur's dataset."""
    folder = _three_videos(tmp_path / "videos")
    output, snapshot = tmp_path / "cur", tmp_path / "snap"
    _curate_counting(folder, output)
    subprocess.run(["cp", "-al", str(output), str(snapshot)], check=True)
    before = _files_of(snapshot)
    write_synthetic_video(folder / "a.mp4", [Scene(3, "purple", "circle", "up"), Scene(2, "white", "square")], fps=8)
    _curate_counting(folder, output)
    assert (output / "README.md").read_bytes() != before["README.md"]  # the rerun wrote a new card...
    assert _files_of(snapshot) == before  # ...beside the snapshot's, which is unchanged with everything else


def test_a_hard_linked_backup_of_an_adapter_folder_keeps_its_card_and_run_info(video_dir, tmp_path):
    """Probe a/i24: after `cp -al run backup` and a retrain into run, backup's README.md and tpo_card.json (and the
    configs PEFT and transformers write in place) were written through the links: the backup's own card and run info
    were lost, and pushing it was refused as if its weights had changed."""
    first = make_trainer(*build_tiny_model(FAMILY), preference_rows(repeat=1), tmp_path, video_dir)
    first.train()
    first.save_model()  # as `tpo-hf train` saves at the end
    output, backup = tmp_path / "out", tmp_path / "backup"
    subprocess.run(["cp", "-al", str(output), str(backup)], check=True)
    before = _files_of(backup)
    assert {"README.md", "tpo_card.json", "training_curves.png", "adapter_config.json"} <= set(before)
    model, processor = build_tiny_model(FAMILY)
    retrained = TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir, learning_rate=0.05),
        train_dataset=Dataset.from_list(preference_rows(repeat=1)),
        processing_class=processor,
        peft_config=lora(),
    )
    retrained.train()
    retrained.save_model()
    assert json.loads((output / "tpo_card.json").read_text())["hyperparameters"]["learning_rate"] == 0.05
    assert _files_of(backup) == before


def test_resume_from_a_checkpoint_whose_weights_were_replaced_is_refused_naming_the_file(
    video_dir, tmp_path, monkeypatch, caplog
):
    """Probe a/i28: the newest checkpoint's adapter weights replaced by other weights (a copy from another run) were
    resumed from without a word: the run trained on from the other weights under its own card."""
    import re

    from tpo_hf.checkpoints import CheckpointError
    from tpo_hf.commands import is_user_error

    _resumable(video_dir, tmp_path, 2).train()
    output = tmp_path / "out"
    weights = output / "checkpoint-2" / "adapter_model.safetensors"
    shutil.copyfile(output / "checkpoint-1" / "adapter_model.safetensors", weights)  # whole, but not step 2's
    with pytest.raises(CheckpointError, match=re.escape(f"{weights} is not the file the run saved there")) as info:
        _resumable(video_dir, tmp_path, 3).train(resume_from_checkpoint=True)
    assert f"--resume_from_checkpoint {output / 'checkpoint-1'}" in str(info.value)
    assert "TPO_HF_RESUME_CHANGED=1" in str(info.value) and is_user_error(info.value)
    monkeypatch.setenv("TPO_HF_RESUME_CHANGED", "1")  # the escape hatch the other resume checks have: warned
    resumed = _resumable(video_dir, tmp_path, 3)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.checkpoints"):
        resumed.train(resume_from_checkpoint=True)
    assert str(weights) in caplog.text and resumed.state.global_step == 3


def test_a_card_edited_by_hand_before_a_resume_is_kept_beside_the_new_card(video_dir, tmp_path, caplog):
    """Probe a/i21: notes added by hand to a stopped run's README.md were written over by the resumed run's card
    without a word (push and curate reruns detect an edited card; training did not)."""
    _resumable(video_dir, tmp_path, 1).train()
    output = tmp_path / "out"
    readme = output / "README.md"
    edited = readme.read_text() + "\n## My notes\nReviewed by hand.\n"
    readme.write_text(edited)
    later = (output / "tpo_card.json").stat().st_mtime + 10  # edited well after the run wrote its card
    os.utime(readme, (later, later))
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub.model_card"):
        resumed = _resumable(video_dir, tmp_path, 2)
        resumed.train(resume_from_checkpoint=True)
        earlier = (output / "tpo_card.json").stat().st_mtime - 10  # the last checkpoint's card, a while before the end
        os.utime(output / "tpo_card.json", (earlier, earlier))
        resumed.save_model()  # to the end, as `tpo-hf train` saves (PEFT rewrites README.md first)
    kept = output / "README.edited.md"
    assert kept.read_text() == edited and "My notes" not in readme.read_text()
    assert str(readme) in caplog.text and str(kept) in caplog.text
    # the run's own cards, rewritten by its later saves, are never taken for an edit
    assert caplog.text.count("was edited after the run wrote it") == 1 and not (output / "README.edited.2.md").exists()
