"""Never a silent wrong result: each case a reliability probe found silent or poor becomes a test.

Caches keyed by everything they depend on (eval answers, precomputed reference log-probs, curation shards and skip
decisions), config validation in one place, runs that did no work failing loudly, bad rows named by row and field,
degenerate pairs dropped and counted, one `PushError` for every push, and resume from the latest complete
checkpoint. Real components throughout: tiny models, generated videos, a port with nothing listening as a down Hub,
the local Hub-compatible server as a faulty one. New names are imported inside the tests, so that on the old code
each test fails on its own case rather than all on one import.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
from pathlib import Path

import pytest
import torch
from datasets import Dataset, load_from_disk
from peft import LoraConfig

from tests.conftest import preference_rows
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
    trainer = TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora(),
    )
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
    trainer = TPOTrainer(
        model,
        args=make_args(tmp_path, video_dir, max_length=16, max_steps=2),
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
        TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir),
            train_dataset=Dataset.from_list(rows),
            processing_class=processor,
            peft_config=lora(),
        )


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
        trainer = TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir),
            train_dataset=Dataset.from_list(good + bad[:3]),
            processing_class=processor,
            peft_config=lora(),
        )
    assert len(trainer.train_dataset) == 2
    assert dict(trainer.degenerate_dropped) == {"empty chosen": 1, "chosen == rejected": 1, "empty prompt": 1}
    assert "dropped 3 degenerate pair(s)" in caplog.text
    with pytest.raises(NoTrainingDataError, match="empty chosen"):
        TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir),
            train_dataset=Dataset.from_list(bad[3:]),
            processing_class=processor,
            peft_config=lora(),
        )


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
        TPOTrainer(
            model,
            args=make_args(tmp_path, video_dir),
            train_dataset=Dataset.from_list([anchors[0], dict(pairs[1], anchor=True)]),
            processing_class=processor,
            peft_config=lora(),
        )


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

    def run(rows, processor=processor, max_new_tokens=2):
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
        (space_error, "user/demo", "tpo-hf space"),
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
