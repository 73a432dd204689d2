"""Multiple-choice evaluation end to end on tiny models: the three benchmark schemas, base vs. LoRA adapter in one
run, per-breakdown accuracy, resume after an interruption, and the `tpo-hf eval` CLI with its outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from datasets import Dataset

from tpo_hf.eval.answers import UNPARSEABLE
from tpo_hf.eval.benchmarks import load_benchmark
from tpo_hf.eval.mcq import SampleResult, evaluate_mcq, summarize
from tpo_hf.families import LANGUAGE_MODEL_LORA_TARGETS
from tpo_hf.processing import VideoPreferenceProcessor

FRAMES = 4
MAX_NEW_TOKENS = 3

# Rows in each benchmark's own schema (field names as lmms-eval reads them; see tpo_hf/eval/benchmarks.py).
VIDEOMME_ROWS = [
    {
        "video_id": f"{i:03d}",
        "videoID": video,
        "question_id": f"{i:03d}-1",
        "duration": duration,
        "domain": "Life Record",
        "sub_category": "Daily Life",
        "task_type": task,
        "question": question,
        "options": ["A. red", "B. blue", "C. green", "D. yellow"],
        "answer": answer,
        "url": "https://example.invalid",
    }
    for i, (video, duration, task, question, answer) in enumerate(
        [
            ("red_blue", "short", "Attribute Perception", "What colour is the shape at the start?", "A"),
            ("red_blue", "medium", "Temporal Perception", "What colour is the shape at the end?", "B"),
            ("green_yellow", "long", "Attribute Perception", "What colour is the first shape?", "C"),
            ("green_yellow", "short", "Temporal Reasoning", "What colour does the shape turn?", "D"),
        ]
    )
]
MLVU_ROWS = [
    {
        "video_name": video,
        "duration": 8.0,
        "question": question,
        "candidates": ["square", "circle", "triangle", "star"],
        "answer": answer,  # the original MLVU json stores the option text
        "question_type": task,
    }
    for video, question, answer, task in [
        ("red_blue.mp4", "Which shape appears first?", "square", "plotQA"),
        ("red_blue.mp4", "Which shape appears last?", "circle", "order"),
        ("green_yellow.mp4", "Which shape appears first?", "circle", "plotQA"),
    ]
]
LVB_ROWS = [
    {
        "id": f"lvb-{i}",
        "video_id": video.removesuffix(".mp4"),
        "video_path": video,
        "question": question,
        "option0": "left",
        "option1": "right",
        "option2": "up",
        "option3": "N/A",
        "option4": "N/A",
        "correct_choice": correct,
        "duration_group": group,
        "question_category": "T2O",
        "duration": 8.0,
    }
    for i, (video, question, correct, group) in enumerate(
        [
            ("red_blue.mp4", "Where does the square move?", 1, 15),
            ("red_blue.mp4", "Where does the circle move?", 0, 60),
            ("green_yellow.mp4", "Where does the circle move?", 1, 15),
            ("green_yellow.mp4", "Where does the square move?", 0, 600),
            ("green_yellow.mp4", "Does anything move up?", 2, 600),
            ("red_blue.mp4", "Does anything move up?", 2, 60),
        ]
    )
]


@pytest.fixture(scope="module")
def peft_model():
    """A tiny Qwen2.5-VL with a randomly initialised (non-zero) LoRA adapter, so base and adapter differ."""
    from peft import LoraConfig, get_peft_model

    from tpo_hf.tiny import build_tiny_model

    model, processor = build_tiny_model("qwen2_5_vl")
    config = LoraConfig(r=4, lora_alpha=64, target_modules=LANGUAGE_MODEL_LORA_TARGETS, init_lora_weights=False)
    return get_peft_model(model, config).eval(), VideoPreferenceProcessor(processor, num_frames=FRAMES)


def test_schemas_load_from_local_copies(video_dir, tmp_path):
    videomme_file = tmp_path / "videomme.parquet"
    Dataset.from_list(VIDEOMME_ROWS).to_parquet(videomme_file)
    videomme = load_benchmark("videomme", str(videomme_file))
    # a local snapshot of the Hub repository (parquet under videomme/, split named by the file) reads the same
    (tmp_path / "Video-MME" / "videomme").mkdir(parents=True)
    shutil.copy(videomme_file, tmp_path / "Video-MME" / "videomme" / "test-00000-of-00001.parquet")
    assert [s.sample_id for s in load_benchmark("videomme", str(tmp_path / "Video-MME"))] == [
        s.sample_id for s in videomme
    ]
    assert [s.answer for s in videomme] == ["A", "B", "C", "D"]
    assert videomme[0].options == ["red", "blue", "green", "yellow"]
    assert videomme[0].breakdowns == {
        "duration": "short",
        "task_type": "Attribute Perception",
        "domain": "Life Record",
        "sub_category": "Daily Life",
    }
    # lmms-eval 0.7.3 `videomme`, default post prompt (its leading newline leaves a blank line)
    question = VIDEOMME_ROWS[0]["question"]
    assert videomme[0].prompt == (
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        f"Respond with only the letter (A, B, C, or D) of the correct option.\n{question}\n"
        "A. red\nB. blue\nC. green\nD. yellow\n\nAnswer with the option's letter from the given choices directly."
    )
    llava_vid = load_benchmark("videomme", str(videomme_file), variant="llava_vid")
    assert llava_vid[0].prompt.endswith("A. red\nB. blue\nC. green\nD. yellow\nThe best answer is:")
    with pytest.raises(ValueError, match="no prompt variant 'plm'"):
        load_benchmark("videomme", str(videomme_file), variant="plm")

    mlvu_folder = tmp_path / "mlvu"
    Dataset.from_list(MLVU_ROWS).save_to_disk(mlvu_folder)
    mlvu = load_benchmark("mlvu_dev", str(mlvu_folder), split="train")
    assert [s.answer for s in mlvu] == ["A", "B", "B"]
    # a folder of one saved Dataset holds one split, read by default (not refused as lacking the benchmark's split)
    assert [s.sample_id for s in load_benchmark("mlvu_dev", str(mlvu_folder))] == [s.sample_id for s in mlvu]
    assert mlvu[0].breakdowns == {"task_type": "plotQA"}
    assert "(A) square\n(B) circle" in mlvu[0].prompt
    assert mlvu[0].prompt.endswith("\nOnly give the best option.\nBest option: (")
    assert not mlvu[0].prompt.startswith("\n")  # the pre-April-2025 wording began with a blank line

    lvb_file = tmp_path / "lvb.jsonl"
    lvb_file.write_text("".join(json.dumps(row) + "\n" for row in LVB_ROWS))
    lvb = load_benchmark("longvideobench_val", str(lvb_file), limit=3)
    assert len(lvb) == 3 and [s.answer for s in lvb] == ["B", "A", "B"]
    assert lvb[0].options == ["left", "right", "up"]  # "N/A" options dropped
    assert lvb[0].prompt == (
        "Where does the square move?\nA. left\nB. right\nC. up\n"
        "Answer with the option's letter from the given choices directly.\n"
    )
    assert lvb[0].breakdowns == {"duration_group": "15", "question_category": "T2O"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q?", "options": ["A. x"], "answer": "A"}) + "\n")
    with pytest.raises(KeyError, match="row 0 has no field 'videoID'"):
        load_benchmark("videomme", str(bad))


def test_base_and_adapter_side_by_side(video_dir, tmp_path, peft_model):
    model, processor = peft_model
    # MLVU groups videos in per-task folders: the loader looks one folder down
    (tmp_path / "videos" / "plotQA").mkdir(parents=True)
    for name in ("red_blue.mp4", "green_yellow.mp4"):
        shutil.copy(video_dir / name, tmp_path / "videos" / "plotQA" / name)
    data = tmp_path / "mlvu.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in MLVU_ROWS))
    samples = load_benchmark("mlvu_dev", str(data))
    run = evaluate_mcq(
        model,
        processor,
        samples,
        video_dir=tmp_path / "videos",
        num_frames=FRAMES,
        batch_size=2,
        max_new_tokens=MAX_NEW_TOKENS,
        progress=False,
    )
    assert list(run.results) == ["base", "tpo"]
    base, tpo = run.results["base"], run.results["tpo"]
    assert [r.sample_id for r in base] == [s.sample_id for s in samples] == [r.sample_id for r in tpo]
    assert all(r.num_frames == FRAMES for r in base + tpo)
    # the adapter changes the answers, and the disabled adapter gives exactly the plain base model's answers
    assert [r.reply for r in base] != [r.reply for r in tpo]
    with model.disable_adapter():
        plain = processor.generate(
            model.get_base_model(),
            [s.prompt for s in samples],
            [processor.load_video(tmp_path / "videos" / "plotQA" / s.video) for s in samples],
            do_sample=False,
            max_new_tokens=MAX_NEW_TOKENS,
        )
    assert [r.reply for r in base] == plain

    summary = run.summary(["task_type"])
    for tag, results in run.results.items():
        entry = summary["models"][tag]
        assert entry["total"] == 3 and entry["correct"] == sum(r.prediction == r.answer for r in results)
        assert set(entry["by"]["task_type"]) == {"plotQA", "order"}
        assert entry["by"]["task_type"]["plotQA"]["total"] == 2
    agreement = summary["agreement"]
    assert agreement["same_prediction"] == sum(a.prediction == b.prediction for a, b in zip(base, tpo))
    assert agreement["total"] == 3


def test_interrupted_run_resumes_without_recomputing(video_dir, tmp_path, peft_model):
    model, processor = peft_model
    data = tmp_path / "lvb.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in LVB_ROWS))
    samples = load_benchmark("longvideobench_val", str(data))
    cache = tmp_path / "cache.jsonl"
    settings = dict(
        video_dir=video_dir,
        num_frames=FRAMES,
        batch_size=2,
        max_new_tokens=MAX_NEW_TOKENS,
        cache_path=cache,
        fingerprint="tiny",
        progress=False,
    )

    def stop_after_two(batches_done: int) -> None:
        if batches_done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate_mcq(model, processor, samples, on_batch_done=stop_after_two, **settings)
    lines = [json.loads(line) for line in cache.read_text().splitlines()]
    first_ids = [s.sample_id for s in samples[:4]]
    assert sorted((line["model"], line["sample_id"]) for line in lines) == sorted(
        (tag, sample_id) for tag in ("base", "tpo") for sample_id in first_ids
    )

    resumed = evaluate_mcq(model, processor, samples, **settings)
    rest_ids = [s.sample_id for s in samples[4:]]
    assert resumed.computed == {"base": rest_ids, "tpo": rest_ids}
    assert resumed.cached == {"base": first_ids, "tpo": first_ids}
    assert len(cache.read_text().splitlines()) == 2 * len(samples)
    cached_replies = {(line["model"], line["sample_id"]): line["reply"] for line in lines}
    for tag, results in resumed.results.items():
        for result in results[:4]:
            assert result.reply == cached_replies[(tag, result.sample_id)]

    again = evaluate_mcq(model, processor, samples, **settings)
    assert again.computed == {}
    # another frame count or other weights are other results: nothing is reused for them
    other = evaluate_mcq(model, processor, samples[:2], **{**settings, "num_frames": 2})
    assert other.computed == {"base": first_ids[:2], "tpo": first_ids[:2]}
    other_model = evaluate_mcq(model, processor, samples[:1], **{**settings, "fingerprint": "other"})
    assert other_model.cached == {}

    summary = resumed.summary(["duration_group"])
    groups = summary["models"]["tpo"]["by"]["duration_group"]
    assert {value: entry["total"] for value, entry in groups.items()} == {"15": 2, "60": 2, "600": 2}


def test_summarize_counts_exactly():
    def result(model, sample_id, prediction, answer, group):
        return SampleResult(model, sample_id, 4, prediction, prediction, answer, prediction == answer, {"g": group})

    results = {
        "base": [
            result("base", "1", "A", "A", "x"),
            result("base", "2", "B", "C", "x"),
            result("base", "3", UNPARSEABLE, "D", "y"),
        ],
        "tpo": [
            result("tpo", "1", "A", "A", "x"),
            result("tpo", "2", "C", "C", "x"),
            result("tpo", "3", "A", "D", "y"),
        ],
    }
    summary = summarize(results, ["g"])
    assert summary["models"]["base"]["accuracy"] == pytest.approx(100 / 3)
    assert summary["models"]["base"]["unparseable"] == 1
    assert summary["models"]["tpo"]["by"]["g"] == {
        "x": {"accuracy": 100.0, "correct": 2, "total": 2, "unparseable": 0},
        "y": {"accuracy": 0.0, "correct": 0, "total": 1, "unparseable": 0},
    }
    assert summary["agreement"] == {
        "models": ["base", "tpo"],
        "same_prediction": 1,
        "agreement": pytest.approx(100 / 3),
        "both_correct": 1,
        "only_base_correct": 0,
        "only_tpo_correct": 1,
        "both_wrong": 1,
        "total": 3,
    }


def test_cli_runs_benchmark_and_vniah_with_adapter(video_dir, tmp_path, tiny_model_dirs):
    from huggingface_hub import ModelCard
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from tpo_hf.commands.eval import cli_main

    model_dir = tiny_model_dirs("qwen2_5_vl")
    adapter_dir = tmp_path / "adapter"
    base = AutoModelForImageTextToText.from_pretrained(model_dir)
    lora = LoraConfig(r=4, lora_alpha=64, target_modules=LANGUAGE_MODEL_LORA_TARGETS, init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(adapter_dir)

    data = tmp_path / "videomme.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in VIDEOMME_ROWS))
    out = tmp_path / "out"
    config = {
        "model_name_or_path": str(model_dir),
        "adapter_path": str(adapter_dir),
        "benchmark": "videomme",
        "dataset_name": str(data),
        "video_dir": str(video_dir),
        "num_frames": FRAMES,
        "batch_size": 2,
        "max_new_tokens": MAX_NEW_TOKENS,
        "dtype": "float32",
        "device": "cpu",
        "vniah": True,
        "vniah_lengths": [4, 8],
        "vniah_depths": [0.0, 1.0],
        "output_dir": str(out),
        "progress": False,
    }
    config_file = tmp_path / "eval.yaml"
    config_file.write_text(yaml.safe_dump(config))
    results = cli_main(["--config", str(config_file), "--limit", "3"])

    benchmark = results["benchmarks"]["videomme"]
    assert set(benchmark["models"]) == {"base", "tpo"}
    for entry in benchmark["models"].values():
        assert entry["total"] == 3
        assert set(entry["by"]["duration"]) == {"short", "medium", "long"}
        assert set(entry["by"]["task_type"]) == {"Attribute Perception", "Temporal Perception"}
    assert benchmark["agreement"]["total"] == 3
    assert json.loads((out / "results.json").read_text()) == results
    side_by_side = [json.loads(line) for line in (out / "samples_videomme.jsonl").read_text().splitlines()]
    assert [row["sample_id"] for row in side_by_side] == ["000-1", "001-1", "002-1"]
    assert all({"base_prediction", "tpo_prediction", "agree"} <= set(row) for row in side_by_side)

    vniah = results["vniah"]
    for scores in vniah["models"].values():
        assert scores["lengths"] == [4, 8] and scores["depths"] == [0.0, 1.0]
        assert len(scores["accuracy"]) == 2 and all(len(row) == 2 for row in scores["accuracy"])
    assert (out / "vniah_heatmap.png").stat().st_size > 0

    table = (out / "results.md").read_text()
    assert "### Video-MME (4 frames)" in table and "| duration: long |" in table and "V-NIAH: tpo" in table

    card = ModelCard("---\n" + (out / "model_index.yaml").read_text() + "---\n")
    entries = card.data.eval_results
    # the first 3 of the local file's 4 questions: recorded as that file and that subset, not as Video-MME
    scored = "Video-MME questions from videomme.jsonl (first 3 of 4 questions: a subset, not the full split)"
    assert [e.dataset_name for e in entries] == [scored] * 3 + ["V-NIAH (synthetic)"]
    assert entries[0].metric_type == "accuracy" and entries[0].task_type == "multiple-choice"
    assert entries[0].metric_value == pytest.approx(round(benchmark["models"]["tpo"]["accuracy"], 2))
    assert entries[0].dataset_type == str(data) and entries[0].dataset_split == "train[:3]"
    assert "lmms-eval 0.7.3 parser" in entries[1].metric_name
    assert entries[2].metric_type == "unparseable_rate"
    assert entries[2].metric_value == pytest.approx(round(benchmark["models"]["tpo"]["unparseable_rate"], 2))
    assert "| Unparseable replies (%) |" in table
    assert {"base_lmms_eval_prediction", "tpo_lmms_eval_prediction"} <= set(side_by_side[0])

    # run again: everything comes from the cache
    lines_before = (out / "cache_videomme.jsonl").read_text()
    cli_main(["--config", str(config_file), "--limit", "3"])
    assert (out / "cache_videomme.jsonl").read_text() == lines_before


@pytest.mark.parametrize(
    "path",
    sorted(Path(__file__).resolve().parents[1].glob("recipes/*/eval/config.yaml")),
    ids=lambda p: p.parent.parent.name,
)
def test_eval_recipes_parse(path):
    from tpo_hf.commands.eval import make_parser

    assert path.read_text().startswith("# Hardware:")
    (config,) = make_parser().parse_args_and_config(args=["--config", str(path)])
    assert config.model_name_or_path and config.adapter_path and config.benchmark == "videomme"
    assert config.vniah and config.vniah_lengths == sorted(config.vniah_lengths)


def test_eval_config_rejects_what_cannot_run():
    from tpo_hf.eval.config import EvalConfig

    with pytest.raises(ValueError, match="Unknown benchmark 'mmlu'"):
        EvalConfig(model_name_or_path="m", benchmark="mmlu")
    with pytest.raises(ValueError, match="Nothing to evaluate"):
        EvalConfig(model_name_or_path="m")
    with pytest.raises(ValueError, match="vniah_depths"):
        EvalConfig(model_name_or_path="m", vniah=True, vniah_depths=[0.5, 2.0])


def test_mlvu_headline_is_the_mean_of_task_accuracies():
    """MLVU's M-Avg weighs each task equally, unlike the pooled accuracy; the unparseable rate sits beside it."""

    def result(sample_id: str, correct: bool, task: str, prediction: str = "A") -> SampleResult:
        return SampleResult(
            "tpo", sample_id, 4, prediction, prediction, "A" if correct else "B", correct, {"task_type": task}
        )

    results = {
        "tpo": [
            result("1", True, "count"),
            result("2", True, "order"),
            result("3", False, "order"),
            result("4", False, "order", UNPARSEABLE),
        ]
    }
    entry = summarize(results, ["task_type"], headline="task_mean")["models"]["tpo"]
    assert entry["accuracy"] == pytest.approx(50.0)
    assert entry["score"] == pytest.approx((100.0 + 100.0 / 3) / 2)
    assert entry["unparseable"] == 1 and entry["unparseable_rate"] == pytest.approx(25.0)
    assert summarize(results, ["task_type"])["models"]["tpo"]["score"] == pytest.approx(50.0)


def _write_rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_benchmark_rows_with_ambiguous_options_are_refused_or_lettered(tmp_path):
    """Options without their letter get "A. " .. in the prompt that asks for a letter; duplicate option texts, a gap
    among LongVideoBench's option0..4 and an unreadable `correct_choice` are refused naming the row; a letter works."""
    videomme = dict(videoID="v1", question_id="q1", question="Which colour?", duration="short")
    bare = load_benchmark(
        "videomme", _write_rows(tmp_path / "bare.jsonl", [dict(videomme, options=["red", "blue"], answer="B")])
    )
    assert "\nA. red\nB. blue\n" in bare[0].prompt and bare[0].options == ["red", "blue"] and bare[0].answer == "B"
    mixed = _write_rows(tmp_path / "mixed.jsonl", [dict(videomme, options=["A. red", "blue"], answer="B")])
    with pytest.raises(ValueError, match=r"row 0, field 'options': options \[1\] have no letter prefix"):
        load_benchmark("videomme", mixed)
    for answer in ("B", "red"):
        duplicated = [dict(videomme, options=["A. red", "B. red", "C. blue"], answer=answer)]
        with pytest.raises(ValueError, match=r"row 0, field 'options': option 1 \('red'\) repeats option 0"):
            load_benchmark("videomme", _write_rows(tmp_path / "dup.jsonl", duplicated))

    lvb = dict(video_path="v1.mp4", id="l1", question="Which?")
    gap = _write_rows(
        tmp_path / "gap.jsonl", [dict(lvb, option0="red", option2="blue", option3="green", correct_choice=2)]
    )
    with pytest.raises(ValueError, match="LongVideoBench row 0: option1 is missing"):
        load_benchmark("longvideobench_val", gap)
    letter = _write_rows(
        tmp_path / "letter.jsonl", [dict(lvb, candidates=["red", "blue", "green"], correct_choice="B")]
    )
    assert load_benchmark("longvideobench_val", letter)[0].answer == "B"
    for bad in ("second", True):
        rows = [dict(lvb, candidates=["red", "blue"], correct_choice=bad)]
        with pytest.raises(ValueError, match="row 0, field 'correct_choice': expected the 0-based index"):
            load_benchmark("longvideobench_val", _write_rows(tmp_path / "bad.jsonl", rows))


def test_eval_config_refuses_a_bad_dtype_or_device_before_the_model_loads():
    """`--dtype fp16` / `--device gpu` fail as the config is read, naming the setting, with the lmms plugin's rule."""
    from tpo_hf.eval.config import EvalConfig

    with pytest.raises(ValueError, match=r"`dtype`='fp16' is not a dtype; use one of auto, bfloat16"):
        EvalConfig(model_name_or_path="m", benchmark="videomme", dtype="fp16")
    with pytest.raises(ValueError, match=r"`dtype`='int8' is not a dtype"):
        EvalConfig(model_name_or_path="m", benchmark="videomme", dtype="int8")
    with pytest.raises(ValueError, match=r"`device`='gpu' is not a torch device"):
        EvalConfig(model_name_or_path="m", benchmark="videomme", device="gpu")
    EvalConfig(model_name_or_path="m", benchmark="videomme", dtype="float16", device="cuda:1")


def test_a_limited_run_or_a_local_file_is_not_recorded_as_the_benchmark(video_dir, tmp_path, tiny_model_dirs, caplog):
    """model_index.yaml is pasted into model cards, where the Hub shows it as the benchmark's result: a run of the
    first N questions (`limit`) records that subset (name, split `train[:N]`) and warns that it is not a benchmark
    score; a local question file is recorded as that file, not as the benchmark's Hub id; a Hub benchmark cut by
    `limit` keeps its id with the split `test[:N]`; a `limit` past the split's end scores it all, no subset."""
    import logging

    from huggingface_hub import ModelCard

    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.eval.results import eval_results
    from tpo_hf.eval.run import evaluate

    data = tmp_path / "videomme.jsonl"
    _write_rows(data, VIDEOMME_ROWS)
    settings = dict(
        model_name_or_path=str(tiny_model_dirs("qwen2_5_vl")),
        benchmark="videomme",
        dataset_name=str(data),
        video_dir=str(video_dir),
        num_frames=FRAMES,
        max_new_tokens=MAX_NEW_TOKENS,
        dtype="float32",
        device="cpu",
        progress=False,
    )

    def recorded(out: Path) -> set[tuple[str, str, str]]:
        entries = ModelCard("---\n" + (out / "model_index.yaml").read_text() + "---\n").data.eval_results
        return {(e.dataset_type, e.dataset_name, e.dataset_split) for e in entries}

    with caplog.at_level(logging.WARNING, logger="tpo_hf.eval.run"):
        results = evaluate(EvalConfig(**settings, limit=1, output_dir=str(tmp_path / "limited")))
    assert "first 1 of the 4 questions" in caplog.text and "not a Video-MME score" in caplog.text
    entry = results["benchmarks"]["videomme"]
    assert (entry["dataset"], entry["local_dataset"], entry["split"]) == (str(data), True, "train")
    assert (entry["questions"], entry["split_questions"], entry["subset"]) == (1, 4, True)
    subset_name = "Video-MME questions from videomme.jsonl (first 1 of 4 questions: a subset, not the full split)"
    assert recorded(tmp_path / "limited") == {(str(data), subset_name, "train[:1]")}
    table = (tmp_path / "limited" / "results.md").read_text()
    assert f"Subset: the first 1 of the 4 questions of {data} (split train), not a benchmark score." in table

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.eval.run"):
        whole = evaluate(EvalConfig(**settings, limit=10, output_dir=str(tmp_path / "whole")))
    assert "subset" not in caplog.text and not whole["benchmarks"]["videomme"]["subset"]
    assert recorded(tmp_path / "whole") == {(str(data), "Video-MME questions from videomme.jsonl", "train")}

    hub_subset = dict(entry, dataset="lmms-eval/Video-MME", local_dataset=False, split="test", split_questions=2700)
    first = eval_results({"benchmarks": {"videomme": hub_subset}}, "base")[0]
    assert (first.dataset_type, first.dataset_name, first.dataset_split) == (
        "lmms-eval/Video-MME",
        "Video-MME (first 1 of 2700 questions: a subset, not the full split)",
        "test[:1]",
    )


def test_missing_videos_are_all_named_before_anything_is_generated(video_dir, tmp_path, peft_model, monkeypatch):
    """Two questions whose videos are not in `video_dir`: one error names both (video, row, question id) and the
    folder, raised before the model loads (`tpo-hf eval`) and before any answer is generated (`evaluate_mcq`)."""
    import re

    import tpo_hf.eval.run as eval_run
    from tpo_hf.eval.config import EvalConfig

    videos = ["red_blue", "lost_one", "green_yellow", "lost_two"]
    rows = [dict(VIDEOMME_ROWS[i], videoID=video, question_id=f"q{i}") for i, video in enumerate(videos)]
    data = _write_rows(tmp_path / "videomme.jsonl", rows)
    missing = (
        rf"2 of 4 questions name a video \(2 distinct\) that is not in {re.escape(str(video_dir))} .*: "
        r"'lost_one' \(row 1, question q1\), 'lost_two' \(row 3, question q3\)\. Nothing was generated"
    )

    def load_video_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the videos were checked")

    monkeypatch.setattr(eval_run, "load_video_model", load_video_model)
    out = tmp_path / "out"
    config = EvalConfig(
        model_name_or_path=str(tmp_path / "model"),
        benchmark="videomme",
        dataset_name=data,
        video_dir=str(video_dir),
        num_frames=FRAMES,
        device="cpu",
        progress=False,
        output_dir=str(out),
    )
    with pytest.raises(FileNotFoundError, match="Video-MME: " + missing):
        eval_run.evaluate(config)
    assert not list(out.glob("cache_*"))

    model, processor = peft_model
    cache = tmp_path / "cache.jsonl"
    with pytest.raises(FileNotFoundError, match=missing):
        evaluate_mcq(
            model,
            processor,
            load_benchmark("videomme", data),
            video_dir=video_dir,
            max_new_tokens=MAX_NEW_TOKENS,
            cache_path=cache,
            progress=False,
        )
    assert not cache.exists() or cache.read_text() == ""  # no answer generated


# --- probe fixes: MLVU without tasks, plain subtitles, a frame cap below the frame count ------------------------------
def test_mlvu_questions_without_a_task_are_refused_not_scored_zero(tmp_path):
    """f03: MLVU rows without `task_type` / `question_type` loaded, and the headline M-Avg (a mean over tasks) was
    0.0 over no tasks, whatever the answers. The rows are refused naming the field; a task mean over no tasks raises."""
    rows = [{k: v for k, v in row.items() if k != "question_type"} for row in MLVU_ROWS]
    with pytest.raises(KeyError, match=r"MLVU row 0 has no field 'task_type' .* or 'question_type'.*M-Avg"):
        load_benchmark("mlvu_dev", _write_rows(tmp_path / "mlvu.jsonl", rows))
    assert load_benchmark("mlvu_dev", _write_rows(tmp_path / "typed.jsonl", MLVU_ROWS))[1].breakdowns == {
        "task_type": "order"
    }
    right = [SampleResult("tpo", str(i), 4, "A", "A", "A", True) for i in range(3)]
    with pytest.raises(ValueError, match="task-mean headline needs every question's `task_type`: 3 of 3"):
        summarize({"tpo": right}, ["task_type"], headline="task_mean")


def test_videomme_subtitles_read_plain_srt_files_and_name_a_bad_timing_line(video_dir, tmp_path):
    """f06: a standard .srt (no Video-MME `<font>` tags) put no subtitle in the prompt, silently; '.' before the
    milliseconds failed with "not enough values to unpack" naming neither file nor line. Video-MME's tagged files
    read as lmms-eval reads them (an untagged entry among tagged ones is dropped)."""
    row = dict(VIDEOMME_ROWS[0], videoID="red_blue")
    data = _write_rows(tmp_path / "vm.jsonl", [row])
    plain = (
        "1\n00:00:00,000 --> 00:00:04,000\nThe <i>red</i> square.\n\n2\n00:00:04,000 --> 00:00:08,000\nA blue one.\n"
    )
    font = '<font color="white" size=".72c">{}</font>'
    tagged = f"1\n00:00:00,000 --> 00:00:04,000\n{font.format('Red.')}\n\n2\n00:00:04,000 --> 00:00:08,000\nuntagged\n"

    def subtitles(text: str) -> str:
        folder = tmp_path / f"srt{len(list(tmp_path.glob('srt*')))}"
        folder.mkdir()
        (folder / "red_blue.srt").write_text(text)
        prompt = load_benchmark("videomme_w_subtitle", data, video_dir=video_dir, subtitle_dir=folder)[0].prompt
        return prompt.split("This video's subtitles are listed below: \n")[1].split("\nSelect the best answer")[0]

    assert subtitles(plain) == "The red square.\nA blue one."
    assert subtitles(plain.replace(",000", ".000")) == "The red square.\nA blue one."
    assert subtitles(plain.replace("\n", "\r\n")) == "The red square.\nA blue one."
    assert subtitles(tagged) == "Red."
    with pytest.raises(ValueError, match=r"row 0 of .*red_blue\.srt, line 6: '00:00:04 --> 00:00:08' is not an SRT"):
        subtitles(plain.replace("00:00:04,000 --> 00:00:08,000", "00:00:04 --> 00:00:08"))
    with pytest.raises(ValueError, match=r"red_blue\.srt: no subtitle entry read"):
        subtitles("just some text\nwith no timing\n")


def test_eval_refuses_a_frame_cap_below_the_frames_it_records(video_dir, tmp_path):
    """f20: `--num_frames 4 --max_frames 2` sampled 2 frames per video while results.md and model_index.yaml said
    "4 frames". The config is refused naming both (and a cap below the V-NIAH lengths); so is a cap saved with the
    processor, before any answer."""
    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.eval.run import evaluate
    from tpo_hf.tiny import build_tiny_model

    settings = dict(model_name_or_path="m", benchmark="videomme", device="cpu")
    with pytest.raises(ValueError, match=r"`max_frames` \(2\) is below `num_frames` \(4\)"):
        EvalConfig(**settings, num_frames=4, max_frames=2)
    with pytest.raises(ValueError, match=r"`max_frames` \(8\) is below the longest V-NIAH haystack \(16 frames"):
        EvalConfig(**settings, num_frames=4, max_frames=8, vniah=True, vniah_lengths=[4, 16])
    EvalConfig(**settings, num_frames=4, max_frames=4)

    model, processor = build_tiny_model("qwen2_vl")
    capped = VideoPreferenceProcessor(processor, num_frames=4, max_frames=2)
    config = EvalConfig(
        **settings | {"benchmark": "longvideobench_val"},
        dataset_name=_write_rows(tmp_path / "lvb.jsonl", LVB_ROWS[:1]),
        video_dir=str(video_dir),
        num_frames=4,
        output_dir=str(tmp_path / "out"),
        progress=False,
    )
    with pytest.raises(
        ValueError, match=r"capped at 2 frames \(the max_frames saved with the processor\), below the 4"
    ):
        evaluate(config, model, capped)
    assert not list((tmp_path / "out").glob("cache_*"))


# --- probe fixes (round 6): one name in two task folders, subtitle files as users have them, placeholders, windows ---
def test_one_video_name_in_two_task_folders_takes_the_rows_task_folder_or_is_refused(video_dir, tmp_path):
    """f18: MLVU's `order/clip.mp4` and `plotQA/clip.mp4` are different videos; rows naming just `clip.mp4` both got
    the first folder's video, silently. The row's task picks the folder (`plotQA` or MLVU's `1_plotQA`); a row whose
    task names none of them is refused naming the row and both files."""
    from tpo_hf.eval.benchmarks import find_videos

    videos = tmp_path / "videos"
    (videos / "order").mkdir(parents=True)
    (videos / "1_plotQA").mkdir()
    shutil.copy(video_dir / "red_blue.mp4", videos / "order" / "clip.mp4")
    shutil.copy(video_dir / "green_yellow.mp4", videos / "1_plotQA" / "clip.mp4")
    rows = [
        dict(MLVU_ROWS[0], video_name="clip.mp4", question_type="order", question_id="q-order"),
        dict(MLVU_ROWS[1], video_name="clip.mp4", question_type="plotQA", question_id="q-plot"),
    ]
    samples = load_benchmark("mlvu_dev", _write_rows(tmp_path / "mlvu.jsonl", rows))
    assert find_videos(samples, videos, "MLVU (dev)") == {
        "q-order": str(videos / "order" / "clip.mp4"),
        "q-plot": str(videos / "1_plotQA" / "clip.mp4"),
    }
    other = load_benchmark("mlvu_dev", _write_rows(tmp_path / "other.jsonl", [dict(rows[0], question_type="count")]))
    with pytest.raises(ValueError, match=r"MLVU \(dev\): row 0: Video 'clip.mp4' of sample q-order .* 2 sub-folders.*"
                       r"1_plotQA/clip\.mp4.*order/clip\.mp4"):  # fmt: skip
        find_videos(other, videos, "MLVU (dev)")


def _subtitle_text(data: str, video_dir: Path, folder: Path) -> str:
    prompt = load_benchmark("videomme_w_subtitle", data, video_dir=video_dir, subtitle_dir=folder)[0].prompt
    return prompt.split("This video's subtitles are listed below: \n")[1].split("\nSelect the best answer")[0]


def test_subtitles_with_blank_lines_of_spaces_or_a_bom_read_right_and_other_encodings_name_the_file(
    video_dir, tmp_path
):
    """f22: separator lines holding a space glued entry 2's number and timing into entry 1's text, silently; a
    UTF-16 file (Notepad's "Unicode") and a cp1252 one failed naming the jsonl row but not the .srt file. UTF-16 and
    UTF-8 with a BOM read; another encoding is refused naming the subtitle file."""
    data = _write_rows(tmp_path / "vm.jsonl", [dict(VIDEOMME_ROWS[0], videoID="red_blue")])
    srt = "1\n00:00:00,000 --> 00:00:04,000\nLe café est rouge\n\n2\n00:00:04,000 --> 00:00:08,000\nPuis bleu\n"
    expected = "Le café est rouge\nPuis bleu"
    cases = {
        "spaces": srt.replace("\n\n", "\n \n").encode(),
        "tab_crlf": srt.replace("\n\n", "\n\t\n").replace("\n", "\r\n").encode(),
        "utf16": srt.encode("utf-16"),
        "utf8_bom": srt.encode("utf-8-sig"),
    }
    for name, content in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "red_blue.srt").write_bytes(content)
        assert _subtitle_text(data, video_dir, tmp_path / name) == expected, name
    (tmp_path / "cp1252").mkdir()
    (tmp_path / "cp1252" / "red_blue.srt").write_bytes(srt.encode("cp1252"))
    with pytest.raises(ValueError, match=r"row 0 of .*: Subtitle file .*cp1252/red_blue\.srt is not UTF-8"):
        _subtitle_text(data, video_dir, tmp_path / "cp1252")


def test_subtitle_files_match_in_any_case_or_with_one_language_and_none_found_is_warned(video_dir, tmp_path, caplog):
    """f37: `red_blue.SRT` and yt-dlp's `red_blue.en.srt` were not found: "No subtitles available" in every prompt,
    without a word. Both are read; two languages without a plain `<videoID>.srt` are refused naming the files; a
    subtitle folder holding no video's subtitles is warned about once, naming it."""
    import logging

    data = _write_rows(tmp_path / "vm.jsonl", [dict(VIDEOMME_ROWS[0], videoID="red_blue")])
    srt = "1\n00:00:00,000 --> 00:00:04,000\nThe red one\n\n2\n00:00:04,000 --> 00:00:08,000\nThen blue\n"
    for name in ("red_blue.SRT", "red_blue.en.srt", "Red_Blue.srt"):
        folder = tmp_path / name.replace(".", "_")
        folder.mkdir()
        (folder / name).write_text(srt)
        assert _subtitle_text(data, video_dir, folder) == "The red one\nThen blue", name
    both = tmp_path / "both"
    both.mkdir()
    (both / "red_blue.en.srt").write_text(srt)
    (both / "red_blue.fr.srt").write_text(srt.replace("The red one", "Le rouge"))
    with pytest.raises(ValueError, match=r"row 0: video 'red_blue' has subtitles in several languages .*"
                       r"\['red_blue.en.srt', 'red_blue.fr.srt'\]"):  # fmt: skip
        _subtitle_text(data, video_dir, both)
    (both / "red_blue.srt").write_text(srt)  # the plain name wins over the languages
    assert _subtitle_text(data, video_dir, both) == "The red one\nThen blue"

    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "other_video.srt").write_text(srt)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.eval.benchmarks"):
        assert _subtitle_text(data, video_dir, wrong) == "No subtitles available"
    warnings = [r.getMessage() for r in caplog.records if "has a subtitle file" in r.getMessage()]
    assert len(warnings) == 1 and str(wrong) in warnings[0]


def test_a_question_holding_the_video_placeholder_is_refused_before_any_answer(video_dir, tmp_path):
    """f20: a Video-MME question starting with LLaVA data's `<video>\\n`, answered by llava_next_video, failed deep in
    transformers ("Found total 2 <video> tokens and 1 videos") naming no row. Refused naming row, id and field, with
    no answer generated."""
    from tpo_hf.tiny import build_tiny_model

    model, processor = build_tiny_model("llava_next_video")
    rows = [VIDEOMME_ROWS[2], dict(VIDEOMME_ROWS[0], question="<video>\nWhat colour is the shape at the start?")]
    cache = tmp_path / "cache.jsonl"
    with pytest.raises(ValueError, match=r"row 1 \(question 000-1\), field 'question': .*placeholder token.*<video>"):
        evaluate_mcq(
            model,
            VideoPreferenceProcessor(processor, num_frames=FRAMES),
            load_benchmark("videomme", _write_rows(tmp_path / "vm.jsonl", rows)),
            video_dir=video_dir,
            max_new_tokens=MAX_NEW_TOKENS,
            cache_path=cache,
            progress=False,
        )
    assert not cache.exists() or cache.read_text() == ""


def test_a_sample_window_past_its_video_end_is_refused_before_any_answer(video_dir, tmp_path, peft_model):
    """f24: a held-out row with `start: 20` on an 8 s video failed after row 0 was answered, naming neither row nor
    question. `find_videos` refuses it first, naming the row, the id and the field."""
    from tpo_hf.eval.benchmarks import MCQSample

    prompt = "What colour comes first?\nA. red\nB. blue\nAnswer with the option's letter."
    samples = [
        MCQSample("w0", "red_blue.mp4", "What colour comes first?", ["red", "blue"], "A", prompt),
        MCQSample("w1", "green_yellow.mp4", "What colour comes first?", ["red", "blue"], "A", prompt, start=20.0),
    ]
    model, processor = peft_model
    cache = tmp_path / "cache.jsonl"
    with pytest.raises(ValueError, match=r"row 1 \(question w1\), field 'start': 20.0 s is outside its video "
                       r".*green_yellow\.mp4 \(duration 8\.000 s\); nothing was generated"):  # fmt: skip
        evaluate_mcq(
            model, processor, samples, video_dir=video_dir, max_new_tokens=MAX_NEW_TOKENS, cache_path=cache,
            progress=False,
        )  # fmt: skip
    assert not cache.exists() or cache.read_text() == ""


# --- probe fixes (round 7): a question mentioning "(A)", options with initials, a video whose header does not open ---
def test_an_mlvu_question_mentioning_a_letter_still_gets_its_options_listed(tmp_path):
    """Probe b/G5: an MLVU row (original json: options only in `candidates`) whose question says "The sign marked
    (A) ..." was taken as listing its options already: the prompt showed no option, silently. The options count as
    listed only when the question has a "(A) ..", "(B) .." line for each; lmms-eval's copy is still read as is."""
    row = dict(MLVU_ROWS[0], question="The sign marked (A) appears when?", answer="triangle")
    sample = load_benchmark("mlvu_dev", _write_rows(tmp_path / "mentions.jsonl", [row]))[0]
    assert sample.prompt == (
        "The sign marked (A) appears when?\n(A) square\n(B) circle\n(C) triangle\n(D) star\n"
        "Only give the best option.\nBest option: ("
    )
    assert sample.answer == "C"
    listed = "Which shape appears first?\n(A) square\n(B) circle\n(C) triangle\n(D) star"
    lmms_copy = dict(MLVU_ROWS[0], question=listed, answer="A")  # sy1998/MLVU_dev: options in the question
    sample = load_benchmark("mlvu_dev", _write_rows(tmp_path / "listed.jsonl", [lmms_copy]))[0]
    assert sample.prompt == listed + "\nOnly give the best option.\nBest option: ("


def test_options_starting_with_an_initial_are_not_taken_as_lettered(tmp_path):
    """Probe b/G6: Video-MME options stored without letters but each starting with an initial ("B. Obama") were taken
    as lettered: the prompt listed "B. Obama" first while the key A meant Obama, and MLVU's "A. Lincoln",
    "G. Washington" lost their initials. Options are lettered only when their prefixes are A, B, C, ... in order."""
    from tpo_hf.eval.answers import extract_answer_letter

    names = ["B. Obama", "D. Trump", "J. Biden", "G. Bush"]
    videomme = dict(videoID="v1", question_id="q1", question="Who is shown?", duration="short", answer="A")
    sample = load_benchmark("videomme", _write_rows(tmp_path / "vm.jsonl", [dict(videomme, options=names)]))[0]
    assert "\nA. B. Obama\nB. D. Trump\nC. J. Biden\nD. G. Bush\n" in sample.prompt
    assert sample.options == names and sample.answer == "A"
    assert extract_answer_letter("A", sample.options) == "A"
    for reply in ("B. D. Trump", "Trump"):  # the option as the prompt shows it, or its text
        assert extract_answer_letter(reply, sample.options) == "B", reply
    lettered = load_benchmark(
        "videomme", _write_rows(tmp_path / "lettered.jsonl", [dict(videomme, options=["A. red", "B. blue"])])
    )[0]
    assert lettered.options == ["red", "blue"] and "\nA. red\nB. blue\n" in lettered.prompt

    candidates = ["A. Lincoln", "G. Washington", "T. Jefferson", "J. Adams"]
    row = dict(MLVU_ROWS[0], question="Who speaks first?", candidates=candidates, answer="G. Washington")
    sample = load_benchmark("mlvu_dev", _write_rows(tmp_path / "mlvu.jsonl", [row]))[0]
    assert sample.options == candidates and sample.answer == "B"
    assert "\n(A) A. Lincoln\n(B) G. Washington\n(C) T. Jefferson\n(D) J. Adams\n" in sample.prompt


def test_videos_whose_header_does_not_open_are_all_named_before_any_answer(video_dir, tmp_path, peft_model):
    """Probe b/G22: a benchmark video cut short (no `moov` atom: its header does not open) was found mid-run, after
    the questions before it were answered, naming neither row nor question. Every distinct video is opened once
    before anything is generated, and the unreadable ones are named with their rows and question ids in one error."""
    from tpo_hf.eval.benchmarks import find_videos
    from tpo_hf.video import VideoLoadError

    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("red_blue.mp4", "green_yellow.mp4"):
        shutil.copy(video_dir / name, videos / name)
    whole = (video_dir / "red_blue.mp4").read_bytes()
    (videos / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # the index (moov) is written last
    (videos / "page.mp4").write_bytes(b"<html>Not Found</html>")  # an error page saved as the video
    rows = [
        dict(VIDEOMME_ROWS[0], videoID="red_blue"),
        dict(VIDEOMME_ROWS[1], videoID="cut"),
        dict(VIDEOMME_ROWS[2], videoID="green_yellow"),
        dict(VIDEOMME_ROWS[3], videoID="page"),
        dict(VIDEOMME_ROWS[0], videoID="cut", question_id="004-1"),
    ]
    samples = load_benchmark("videomme", _write_rows(tmp_path / "vm.jsonl", rows))
    message = (
        r"Video-MME: 3 of 5 questions name a video \(2 distinct\) that cannot be opened: 'cut' \(row 1, question "
        r"001-1, and 1 more questions\): Could not decode video .*cut\.mp4.*; 'page' \(row 3, question 003-1\): "
        r"Could not decode video .*page\.mp4.*Nothing was generated"
    )
    with pytest.raises(VideoLoadError, match=message):
        find_videos(samples, videos, "Video-MME")
    model, processor = peft_model
    cache = tmp_path / "cache.jsonl"
    with pytest.raises(VideoLoadError, match=r"cannot be opened: 'cut' \(row 1, question 001-1"):
        evaluate_mcq(
            model, processor, samples, video_dir=videos, max_new_tokens=MAX_NEW_TOKENS, cache_path=cache,
            progress=False,
        )  # fmt: skip
    assert not cache.exists() or cache.read_text() == ""
    assert set(find_videos([samples[0], samples[2]], videos)) == {"000-1", "002-1"}  # readable ones pass


def test_numeric_answers_follow_each_benchmarks_convention(tmp_path):
    """Probe b/g33: an MLVU copy storing numbers as JSON numbers (`candidates: [1, 2, 3, 4], answer: 3`) had its
    answer read as a 0-based index: key D = "4" instead of C = "3", silently. An integer answer follows the
    benchmark's convention: MLVU's is the option text, LongVideoBench's `correct_choice` an index; where none settles
    it (Video-MME's answer is a letter), one that is both a valid index and another option's text is refused."""
    count = dict(MLVU_ROWS[0], question="How many times does the shape change colour?", candidates=[1, 2, 3, 4])
    rows = [dict(count, answer=3), dict(count, question="How many shapes?", candidates=[0, 1, 2, 3], answer=2)]
    samples = load_benchmark("mlvu_dev", _write_rows(tmp_path / "mlvu.jsonl", rows))
    assert [(s.options, s.answer) for s in samples] == [(["1", "2", "3", "4"], "C"), (["0", "1", "2", "3"], "C")]
    shapes = _write_rows(tmp_path / "index.jsonl", [dict(MLVU_ROWS[0], answer=2)])
    assert load_benchmark("mlvu_dev", shapes)[0].answer == "C"  # options no number can be: an index
    with pytest.raises(ValueError, match=r"MLVU row 0, field 'answer': 0 is none of the option texts"):
        load_benchmark("mlvu_dev", _write_rows(tmp_path / "zero.jsonl", [dict(count, answer=0)]))

    lvb = dict(video_path="v1.mp4", id="l1", question="How many?", candidates=[1, 2, 3, 4], correct_choice=2)
    assert load_benchmark("longvideobench_val", _write_rows(tmp_path / "lvb.jsonl", [lvb]))[0].answer == "C"

    options = ["A. 1", "B. 2", "C. 3", "D. 4"]
    videomme = dict(videoID="v1", question_id="q1", question="How many?", duration="short", options=options)
    for answer, letter in (("C", "C"), (0, "A"), (4, "D")):  # a letter; an index no option's text; a text only
        row = dict(videomme, answer=answer)
        assert load_benchmark("videomme", _write_rows(tmp_path / "vm.jsonl", [row]))[0].answer == letter
    with pytest.raises(ValueError, match=r"Video-MME row 0, field 'answer': 3 is both the index of option D"):
        load_benchmark("videomme", _write_rows(tmp_path / "vm.jsonl", [dict(videomme, answer=3)]))


# --- probe fixes (round 8): which option the answer names, and the options the prompt shows ---
def test_a_videomme_letter_answer_is_the_letter_even_where_option_texts_are_letters(tmp_path):
    """Probe b/h18: an OCR question whose option texts are letters (`["A. B", "B. A", ...]`, answer `A`) was keyed as
    the option whose text is "A" (option B), silently. Video-MME's answers are letters: a bare letter is the letter."""
    options = ["A. B", "B. A", "C. C", "D. D"]
    row = dict(videoID="v1", question_id="q-ocr", question="Which letter is on the sign?", duration="short")
    for answer in ("A", "(A)", "A."):
        rows = [dict(row, options=options, answer=answer)]
        sample = load_benchmark("videomme", _write_rows(tmp_path / "vm.jsonl", rows))[0]
        assert (sample.options, sample.answer) == (["B", "A", "C", "D"], "A"), answer
    # MLVU's answer is the option text: there "A" stays the option whose text is "A"
    mlvu = dict(MLVU_ROWS[0], question="Which letter is on the sign?", candidates=["B", "A", "C", "D"], answer="A")
    assert load_benchmark("mlvu_dev", _write_rows(tmp_path / "mlvu.jsonl", [mlvu]))[0].answer == "B"


def test_videomme_options_stored_out_of_letter_order_keep_their_letters(tmp_path):
    """Probe b/h19: options stored with their letters out of order (`["B. blue", "A. red", ...]`, answer `A` = red)
    got letters added ("A. B. blue") and the key became position 0, "blue". The prompt lists them as stored (as
    lmms-eval shows them) and each letter keeps its option, so the key A is "red", as the model reads it."""
    from tpo_hf.eval.answers import extract_answer_letter

    options = ["B. blue", "A. red", "C. green", "D. white"]
    row = dict(videoID="v2", question_id="q-order", question="What colour is the first square?", duration="short")
    for answer in ("A", "red"):
        rows = [dict(row, options=options, answer=answer)]
        sample = load_benchmark("videomme", _write_rows(tmp_path / "vm.jsonl", rows))[0]
        assert "\nB. blue\nA. red\nC. green\nD. white\n" in sample.prompt
        assert sample.options == ["red", "blue", "green", "white"] and sample.answer == "A", answer
    for reply, letter in (("A", "A"), ("red", "A"), ("B. blue", "B"), ("blue", "B")):
        assert extract_answer_letter(reply, sample.options) == letter, reply
    # names with initials that are not the letters A, B, ... keep them as text and get letters (probe b/G6)
    rows = [dict(row, options=["B. Obama", "D. Trump"], answer="A")]
    names = load_benchmark("videomme", _write_rows(tmp_path / "names.jsonl", rows))[0]
    assert (names.options, names.answer) == (["B. Obama", "D. Trump"], "A")
    assert "\nA. B. Obama\nB. D. Trump\n" in names.prompt


def test_an_mlvu_question_listing_its_options_in_another_order_than_the_candidates_is_refused(tmp_path):
    """Probe b/h21: an MLVU question listing `(A) 1 (B) 2 (C) 3` with `candidates: ["3", "1", "2"]` and answer `2`
    kept the question's list in the prompt ("(B) 2") but was keyed C, the candidates' position, silently. A listed
    question must list the candidates in order; else the row is refused, naming it, before anything is generated."""
    question = "How many squares are shown?\n(A) 1\n(B) 2\n(C) 3"
    row = dict(MLVU_ROWS[0], question_id="m1", question=question, candidates=["3", "1", "2"], answer="2")
    message = (
        r"MLVU row 1 \(question m1\): the question lists its options as \['1', '2', '3'\] but the field 'candidates' "
        r"holds \['3', '1', '2'\].*Store the candidates in the order the question lists them"
    )
    with pytest.raises(ValueError, match=message):
        load_benchmark("mlvu_dev", _write_rows(tmp_path / "shuffled.jsonl", [MLVU_ROWS[0], row]))
    for candidates in (["3", "1"], ["1", "2", "3", "4"]):  # a list of another length than the candidates
        rows = [dict(row, candidates=candidates)]
        with pytest.raises(ValueError, match=r"MLVU row 0 \(question m1\): the question lists its options"):
            load_benchmark("mlvu_dev", _write_rows(tmp_path / "length.jsonl", rows))
    # the candidates in the question's order (spacing and case aside) read as before: the prompt is the question's
    for candidates, answer in ((["1", "2", "3"], "2"), ([" 1", "2 ", "3"], "B")):
        rows = [dict(row, candidates=candidates, answer=answer)]
        sample = load_benchmark("mlvu_dev", _write_rows(tmp_path / "ordered.jsonl", rows))[0]
        assert sample.prompt == question + "\nOnly give the best option.\nBest option: (" and sample.answer == "B"


def test_a_reply_checking_each_option_is_read_by_its_verdicts_not_its_first_letter():
    """Probe b/h35: a model checking each option inline (`A: no. B: yes.`, `A: ✗ B: ✓ C: ✗ D: ✗`; correct is B) was
    scored as a wrong answer A, the first letter named, silently. Two letters or more with a verdict: the one marked
    right is the answer, several marked right (or another letter named as the answer) is unparseable."""
    from tpo_hf.eval.answers import extract_answer_letter

    options = ["red", "blue", "green", "white"]
    read = {
        "A: no. B: yes.": "B",
        "A: ✗ B: ✓ C: ✗ D: ✗": "B",
        "A) No\nB) Yes\nC) No\nD) No": "B",
        "Option A: incorrect. Option B: correct.": "B",
        "A - wrong\nB - correct\nC - wrong\nD - wrong": "B",
        "A: red? No. B: blue? Yes.": "B",
        "A: no. B: no. C: yes. D: no.": "C",
        "A: yes. B: yes.": UNPARSEABLE,
        "A: no. B: no. C: no. D: no.": UNPARSEABLE,
        "A: no. B: yes. The answer is C.": UNPARSEABLE,
        "A: not it. B: that's it.": UNPARSEABLE,
        # one letter with a verdict, or a verdict that is an option's text, reads as before
        "B: yes": "B",
        "B is correct, A is wrong.": "B",
    }
    for reply, letter in read.items():
        assert extract_answer_letter(reply, options) == letter, reply
    assert extract_answer_letter("A: yes", ["yes", "no"]) == "A"


# --- probe fixes (round 9): checks written "A. No", option lists in other forms, letter typos, null candidates ---
def test_a_reply_checking_each_option_after_a_period_or_with_0_and_1_is_read_as_a_check():
    """Probe b/i5: `A. No\\nB. Yes` (also `A. no B. yes`, `A = 0, B = 1`; the model means B) was read as the answer A,
    the option it ruled out, while `A) No\\nB) Yes` read B. A verdict after a period, or 0 / 1, is read in a check of
    two letters or more; alone, or where it is an option's own text ("A. Yes" for yes / no), the letter is the answer."""
    from tpo_hf.eval.answers import extract_answer_letter

    colours = ["red", "blue", "green", "white"]
    read = {
        "A. No\nB. Yes": "B",
        "A. no B. yes": "B",
        "A = 0, B = 1": "B",
        "A. No\nB. No\nC. Yes\nD. No": "C",
        "A. wrong\nB. correct": "B",
        "A. No\nB. Yes\nC. Yes": UNPARSEABLE,
        # the answer form and sentences read as before
        "A. red": "A",
        "B. No": "B",  # alone: "No" may be the answer's text
        "The answer is B. Wrong: A.": "B",
        "Not A. Correct answer: B": "B",
        "A: 0.5, B: 1": UNPARSEABLE,  # "0.5" is no verdict: no check
    }
    for reply, letter in read.items():
        assert extract_answer_letter(reply, colours) == letter, reply
    assert extract_answer_letter("A. No\nB. Yes", num_options=4) == "B"
    # a verdict word or number that is an option's own text is that option
    assert extract_answer_letter("A. Yes", ["Yes", "No"]) == "A"
    assert extract_answer_letter("B. No", ["Yes", "No"]) == "B"
    assert extract_answer_letter("A. no B. yes", ["yes", "no"]) == "A"
    assert extract_answer_letter("A = 0, B = 1", ["0", "1", "2"]) == "A"


def test_an_mlvu_question_listing_its_options_in_another_form_must_list_the_candidates_in_order(tmp_path):
    """Probe b/i6: an MLVU question listing its options as `A. 1` lines (or `A) 1`, `(a) 1`, or one line
    `(A) 1 (B) 2 (C) 3`) with `candidates: ["3", "1", "2"]` showed both lists in the prompt and was keyed by the
    candidates (C), silently. These forms count as the question's list, as "(A) 1" lines do: the candidates in the
    question's order give the question as the prompt, another order is refused naming the row."""
    post = "\nOnly give the best option.\nBest option: ("
    forms = (
        "How many squares?\nA. 1\nB. 2\nC. 3",
        "How many squares?\nA) 1\nB) 2\nC) 3",
        "How many squares?\n(a) 1\n(b) 2\n(c) 3",
        "How many squares? (A) 1 (B) 2 (C) 3",
        "How many squares: (A) 1, (B) 2, or (C) 3?",
    )
    for question in forms:
        row = dict(MLVU_ROWS[0], question_id="m1", question=question, candidates=["3", "1", "2"], answer="2")
        message = (
            r"MLVU row 1 \(question m1\): the question lists its options as \['1', '2', '3'\] but the field "
            r"'candidates' holds \['3', '1', '2'\]"
        )
        with pytest.raises(ValueError, match=message):
            load_benchmark("mlvu_dev", _write_rows(tmp_path / "shuffled.jsonl", [MLVU_ROWS[0], row]))
        rows = [dict(row, candidates=["1", "2", "3"])]
        sample = load_benchmark("mlvu_dev", _write_rows(tmp_path / "ordered.jsonl", rows))[0]
        assert (sample.prompt, sample.answer) == (question + post, "B"), question
    # things marked "(A)", "(B)" in a sentence, none a candidate, are no list: the options are listed after it
    question = "What happens between (A) the start and (B) the end?"
    row = dict(MLVU_ROWS[0], question=question, candidates=["red", "blue"], answer="blue")
    sample = load_benchmark("mlvu_dev", _write_rows(tmp_path / "prose.jsonl", [row]))[0]
    assert sample.prompt == question + "\n(A) red\n(B) blue" + post and sample.answer == "B"


def test_videomme_options_with_a_repeated_letter_are_refused_naming_the_row(tmp_path):
    """Probe b/i7: Video-MME options with a letter typo (`["A. red", "B. blue", "B. green", "D. white"]`, answer C)
    were lettered again and scored: the prompt showed `C. B. green`. Options that all start with one of the row's
    letters, but not each once, are refused naming the row; names with other initials still get letters (b/G6)."""
    options = ["A. red", "B. blue", "B. green", "D. white"]
    rows = [VIDEOMME_ROWS[0], dict(VIDEOMME_ROWS[1], options=options, answer="C")]
    message = (
        r"Video-MME row 1, field 'options': the options are lettered \['A', 'B', 'B', 'D'\] \(B repeated, C "
        r"missing\); each of A, B, C, D must label one option"
    )
    with pytest.raises(ValueError, match=message):
        load_benchmark("videomme", _write_rows(tmp_path / "typo.jsonl", rows))
    names = ["B. Obama", "D. Trump", "J. Biden", "G. Bush"]
    rows = [dict(VIDEOMME_ROWS[0], options=names, answer="A")]
    assert load_benchmark("videomme", _write_rows(tmp_path / "names.jsonl", rows))[0].options == names


def test_a_null_or_nan_candidate_is_refused_naming_the_row_not_shown_as_none(tmp_path):
    """Probe b/i9: a null or NaN LongVideoBench / MLVU candidate (a copy exported through pandas pads lists:
    `["red", "blue", "green", "white", null]`) became an option "None" / "nan" in the prompt and was scored. Every
    benchmark's candidates get Video-MME's check: the row is refused naming the option; trailing nulls say why."""
    from tpo_hf.eval.benchmarks import longvideobench_sample, mlvu_sample

    lvb = dict(LVB_ROWS[0])
    for name in ("option0", "option1", "option2", "option3", "option4"):
        lvb.pop(name)
    padded = dict(lvb, id="lvb-pad", candidates=["red", "blue", "green", "white", None], correct_choice=1)
    message = (
        r"LongVideoBench row 1, field 'candidates': option 4 is None, not a non-empty string \(nulls at the end of "
        r"the list are how a copy exported through pandas pads shorter lists: drop them\)"
    )
    with pytest.raises(ValueError, match=message):
        load_benchmark(
            "longvideobench_val", _write_rows(tmp_path / "lvb.jsonl", [dict(lvb, candidates=["a", "b"]), padded])
        )
    with pytest.raises(
        ValueError, match=r"LongVideoBench row 0, field 'candidates': option 4 is nan, not a non-empty"
    ):
        longvideobench_sample(dict(padded, candidates=["red", "blue", "green", "white", float("nan")]), 0)
    row = dict(MLVU_ROWS[0], candidates=["square", None, "triangle"], answer="square")
    with pytest.raises(
        ValueError, match=r"MLVU row 0, field 'candidates': option 1 is None, not a non-empty string\.$"
    ):
        load_benchmark("mlvu_dev", _write_rows(tmp_path / "mlvu.jsonl", [row]))
    with pytest.raises(ValueError, match=r"MLVU row 0, field 'candidates': option 2 is nan"):
        mlvu_sample(dict(row, candidates=["square", "circle", float("nan")]), 0)
    # LongVideoBench's option0..option4: an absent option is None, "N/A", or NaN once exported through pandas
    sample = longvideobench_sample(dict(LVB_ROWS[0], option3=float("nan"), option4=None), 0)
    assert sample.options == ["left", "right", "up"] and "\nC. up\nAnswer with" in sample.prompt


# --- probe fixes (round 10): compound words and signs in replies, answers whose letter and text disagree ---
def test_a_reply_writing_a_compound_option_apart_or_hyphenated_names_the_compound():
    """Probe b/j7: `counter-clockwise` (or `Counter clockwise`) for the options clockwise / counterclockwise was read
    as A, the opposite direction, silently (also `in-visible`, `un-happy`). Words written apart or with a hyphen are
    compared as one word too, and an option that is only a part of such a word loses to the option it spells."""
    from tpo_hf.eval.answers import extract_answer_letter

    read = {
        ("counter-clockwise", ("clockwise", "counterclockwise")): "B",
        ("Counter clockwise", ("clockwise", "counterclockwise")): "B",
        ("It turns counter-clockwise.", ("clockwise", "counterclockwise")): "B",
        ("counterclockwise", ("clockwise", "counter-clockwise")): "B",
        ("in-visible", ("visible", "invisible")): "B",
        ("un-happy", ("happy", "unhappy")): "B",
        ("Clockwise, not counter-clockwise", ("clockwise", "counterclockwise")): "A",
        ("Not counter-clockwise.", ("clockwise", "counterclockwise")): UNPARSEABLE,  # ruled out, as "not red" is
        ("clockwise", ("clockwise", "counterclockwise")): "A",
        # words apart across other punctuation are two words
        ("at the counter, clockwise", ("clockwise", "counterclockwise")): "A",
    }
    for (reply, options), letter in read.items():
        assert extract_answer_letter(reply, list(options)) == letter, reply


def test_a_signed_or_leading_dot_number_in_a_reply_or_an_option_keeps_its_sign_and_value():
    """Probe b/j8: `-4` for the options `−4` (Unicode minus, as exported) / `4` was read as B, 4; `.5` for 0.5 / 5 as
    B, 5; with ASCII options `-4` / `4` both replies were unparseable. Minus signs are one character and part of their
    number on both sides, and `.5` reads as 0.5."""
    from tpo_hf.eval.answers import extract_answer_letter

    read = {
        ("-4", ("\u22124", "4")): "A",
        ("\u22124", ("-4", "4")): "A",
        ("-4", ("-4", "4")): "A",
        ("4", ("-4", "4")): "B",
        ("The answer is -4 degrees.", ("-4", "4")): "A",
        ("minus 4", ("-4", "4")): "A",
        (".5", ("0.5", "5")): "A",
        ("5", ("0.5", "5")): "B",
        ("-.5", ("-0.5", "0.5")): "A",
        ("0.5", ("-0.5", "0.5")): "B",
        ("3-4", ("3-4", "4")): "A",  # a range, not a sign
    }
    for (reply, options), letter in read.items():
        assert extract_answer_letter(reply, list(options)) == letter, reply


def test_a_reply_checking_each_option_with_verdicts_in_brackets_is_read_by_its_verdicts():
    """Probe b/j36: `A (incorrect), B (correct), C (incorrect)` was read as A, the first letter, while `A is
    incorrect. B is correct.` read B. A verdict word in brackets right after a letter is a verdict as after `:`."""
    from tpo_hf.eval.answers import extract_answer_letter

    colours = ["red", "blue", "green", "white"]
    read = {
        "A (incorrect), B (correct), C (incorrect)": "B",
        "A (no)\nB (yes)\nC (no)\nD (no)": "B",
        "A [wrong] B [right]": "B",
        "A (incorrect) B (correct) C (correct)": UNPARSEABLE,
        "B (correct)": "B",
        "A (red), B (blue)": "A",  # option texts in brackets are no verdicts
    }
    for reply, letter in read.items():
        assert extract_answer_letter(reply, colours) == letter, reply
    assert extract_answer_letter("B (right)", ["left", "right"]) == "B"  # "right" is the option's text


def test_a_videomme_answer_whose_letter_and_text_disagree_is_refused_naming_the_row(tmp_path):
    """Probe b/j9: a Video-MME answer `C. blue` (options A. red, B. blue, C. green, D. white) was keyed B, its text,
    the letter dropped silently. An answer with a letter and a text must name one option by both, else the row is
    refused naming it."""
    rows = [VIDEOMME_ROWS[0], dict(VIDEOMME_ROWS[1], options=["A. red", "B. blue", "C. green", "D. white"])]
    message = (
        r"Video-MME row 1, field 'answer': 'C. blue' names option C \('green'\) by its letter but option B "
        r"\('blue'\) by its text; fix the answer so both name the same option\."
    )
    with pytest.raises(ValueError, match=message):
        load_benchmark("videomme", _write_rows(tmp_path / "vm.jsonl", [rows[0], dict(rows[1], answer="C. blue")]))
    for answer in ("B. blue", "(B) blue", "blue", "B"):
        sample = load_benchmark("videomme", _write_rows(tmp_path / "vm.jsonl", [dict(rows[1], answer=answer)]))[0]
        assert sample.answer == "B", answer
    # MLVU's answers too ("(B) 2" is B); names with initials still read as their text
    mlvu = dict(MLVU_ROWS[0], question="How many?", candidates=["1", "2", "3"])
    with pytest.raises(ValueError, match=r"MLVU row 0, field 'answer': '\(C\) 2' names option C \('3'\)"):
        load_benchmark("mlvu_dev", _write_rows(tmp_path / "m.jsonl", [dict(mlvu, answer="(C) 2")]))
    names = dict(MLVU_ROWS[0], question="Who?", candidates=["G. Washington", "A. Lincoln"], answer="A. Lincoln")
    assert load_benchmark("mlvu_dev", _write_rows(tmp_path / "names.jsonl", [names]))[0].answer == "B"


def test_a_longvideobench_correct_choice_that_is_not_a_whole_number_is_refused(tmp_path):
    """Probe b/j10: `correct_choice: 1.7` (a spreadsheet mean, a mis-typed cell) was truncated to 1 and keyed B,
    silently. A number is read only when whole (1.0 is 1); another is refused naming the row and the field."""
    from tpo_hf.eval.benchmarks import longvideobench_sample

    row = dict(LVB_ROWS[0], id="lvb-f")
    for correct in (1.7, float("nan"), float("inf")):
        message = rf"LongVideoBench row 0, field 'correct_choice': expected the 0-based index .* got {correct}\."
        with pytest.raises(ValueError, match=message):
            longvideobench_sample(dict(row, correct_choice=correct), 0)
    assert longvideobench_sample(dict(row, correct_choice=1.0), 0).answer == "B"
    rows = [dict(row, correct_choice=2.5)]
    with pytest.raises(ValueError, match=r"LongVideoBench row 0, field 'correct_choice'.* got 2\.5\."):
        load_benchmark("longvideobench_val", _write_rows(tmp_path / "lvb.jsonl", rows))


def test_an_mlvu_order_question_listing_its_events_gets_its_candidates_listed(tmp_path):
    """Probe b/j11: an MLVU order question listing its events as `(a) ...` lines, with candidates that are orders
    (`a-b-c`, `b-a-c`, ...), was refused as a question listing other options. A list none of whose texts is a
    candidate lists something else: the candidates are listed after the question; a list that holds candidates
    still must hold them all in order (probe b/h21)."""
    events = "Arrange these events in order:\n(a) a man enters\n(b) a dog barks\n(c) the door closes"
    for candidates in (["a-b-c", "b-a-c", "c-b-a", "a-c-b"], ["a-b-c", "b-a-c", "c-b-a"]):
        row = dict(MLVU_ROWS[0], question=events, candidates=candidates, answer="b-a-c")
        sample = load_benchmark("mlvu_dev", _write_rows(tmp_path / "order.jsonl", [row]))[0]
        listed = "".join(f"\n({letter}) {text}" for letter, text in zip("ABCD", candidates))
        assert (sample.prompt, sample.answer) == (
            events + listed + "\nOnly give the best option.\nBest option: (",
            "B",
        )
    shuffled = dict(MLVU_ROWS[0], question="How many?\n(a) 1\n(b) 2\n(c) 3", candidates=["3", "1", "2"], answer="2")
    with pytest.raises(ValueError, match=r"MLVU row 0 \(question .*\): the question lists its options as"):
        load_benchmark("mlvu_dev", _write_rows(tmp_path / "shuffled.jsonl", [shuffled]))


def test_videomme_options_lettered_without_a_space_are_lettered_options(tmp_path):
    """Probe b/j12: Video-MME options `A.red`, `B.blue`, ... were taken as unlettered texts: the prompt showed
    `A. A.red` and the options kept their letters. `A.red` and `A)red` carry their letter as `A. red` does; an
    abbreviation (`A.M.`, `B.C.`) is no letter."""
    from tpo_hf.eval.answers import extract_answer_letter

    row = dict(VIDEOMME_ROWS[0], answer="B")
    for options in (["A.red", "B.blue", "C.green", "D.white"], ["A)red", "B)blue", "C)green", "D)white"]):
        sample = load_benchmark("videomme", _write_rows(tmp_path / "vm.jsonl", [dict(row, options=options)]))[0]
        assert (sample.options, sample.answer) == (["red", "blue", "green", "white"], "B")
        assert "\n" + "\n".join(options) + "\n" in sample.prompt and "A. A" not in sample.prompt
        assert extract_answer_letter("blue", options) == "B"
    eras = dict(row, options=["B.C.", "A.D."], answer="A")
    sample = load_benchmark("videomme", _write_rows(tmp_path / "eras.jsonl", [eras]))[0]
    assert (sample.options, sample.answer) == (["B.C.", "A.D."], "A") and "\nA. B.C.\nB. A.D.\n" in sample.prompt
