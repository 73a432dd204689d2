"""The lmms-eval model plugin: found through the `lmms_eval.models` entry-point group, loads a tiny model + adapter
with tpo-hf's code, and answers lmms-eval requests exactly as `tpo_hf.eval` does; our prompts, parsers and metrics
against the installed lmms-eval's. Needs the `lmms` extra: skipped without lmms-eval, except where TPO_HF_REQUIRE_LMMS_EVAL=1 (CI's default job, which
installs the extra)."""

from __future__ import annotations

import os
import sys

import pytest

if os.environ.get("TPO_HF_REQUIRE_LMMS_EVAL") == "1":  # CI's default job installs the `lmms` extra: run, never skip
    import lmms_eval.models.registry_v2 as registry_v2
else:
    registry_v2 = pytest.importorskip("lmms_eval.models.registry_v2", reason="lmms-eval is not installed")

FRAMES = 4


@pytest.fixture(scope="module")
def model_and_adapter(tiny_model_dirs, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from tpo_hf.families import LANGUAGE_MODEL_LORA_TARGETS

    model_dir = tiny_model_dirs("qwen2_5_vl")
    adapter_dir = tmp_path_factory.mktemp("lmms-adapter")
    lora = LoraConfig(r=4, lora_alpha=64, target_modules=LANGUAGE_MODEL_LORA_TARGETS, init_lora_weights=False)
    get_peft_model(AutoModelForImageTextToText.from_pretrained(model_dir), lora).save_pretrained(adapter_dir)
    return model_dir, adapter_dir


def test_entry_point_registers_the_model(tmp_path, monkeypatch):
    # a distribution on sys.path declaring the entry point exactly as pyproject.toml does
    dist_info = tmp_path / "tpo_hf_entry_point_check-0.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: tpo-hf-entry-point-check\nVersion: 0.0\n")
    (dist_info / "entry_points.txt").write_text("[lmms_eval.models]\ntpo_hf = tpo_hf.eval.lmms_plugin:manifest\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = registry_v2.ModelRegistryV2()
    registry.load_entrypoint_manifests()  # lmms-eval logs, rather than raises, entry points that fail to load
    assert "tpo_hf" in registry.list_model_names() and "tpo-hf" in registry.list_model_names()
    from tpo_hf.eval.lmms_plugin import TPOHFModel

    assert registry.get_model_class("tpo_hf") is TPOHFModel  # also validates it is a simple lmms model


def test_answers_lmms_eval_requests_like_tpo_hf_eval(model_and_adapter, video_dir):
    from lmms_eval.api.instance import Instance

    from tpo_hf.eval.benchmarks import MCQSample
    from tpo_hf.eval.lmms_plugin import manifest
    from tpo_hf.eval.mcq import evaluate_mcq

    model_dir, adapter_dir = model_and_adapter
    registry = registry_v2.ModelRegistryV2()
    registry.register_manifest(manifest())
    model_class = registry.get_model_class("tpo_hf")
    args = f"pretrained={model_dir},adapter={adapter_dir},num_frames={FRAMES},batch_size=2,device=cpu,dtype=float32"
    tpo = model_class.create_from_arg_string(args)
    base = model_class.create_from_arg_string(args + ",use_adapter=false")

    docs = [
        {"video": "red_blue.mp4", "question": "What colour is the square?"},
        {"video": "green_yellow.mp4", "question": "What colour is the circle?"},
        {"video": "red_blue.mp4", "question": "Which way does the circle move?"},
    ]
    for lmm in (tpo, base):
        lmm.task_dict = {"toy": {"test": docs}}

    def doc_to_visual(doc):
        return [str(video_dir / doc["video"])]

    gen_kwargs = {"max_new_tokens": 3, "temperature": 0, "until": ["\n\n"]}
    requests = [
        Instance(
            request_type="generate_until",
            arguments=(doc["question"], dict(gen_kwargs), doc_to_visual, index, "toy", "test"),
            idx=0,
            metadata={"task": "toy", "doc_id": index, "repeats": 1},
        )
        for index, doc in enumerate(docs)
    ]
    tpo_replies = tpo.generate_until(requests)
    base_replies = base.generate_until(requests)
    assert len(tpo_replies) == len(base_replies) == len(docs)

    samples = [
        MCQSample(str(i), doc["video"], doc["question"], ["x", "y"], "A", doc["question"])
        for i, doc in enumerate(docs)
    ]
    run = evaluate_mcq(
        tpo.model,
        tpo.processor,
        samples,
        video_dir=video_dir,
        num_frames=FRAMES,
        batch_size=2,
        max_new_tokens=3,
        progress=False,
    )
    assert tpo_replies == [r.reply.split("\n\n")[0] for r in run.results["tpo"]]
    assert base_replies == [r.reply.split("\n\n")[0] for r in run.results["base"]]
    assert tpo_replies != base_replies

    with pytest.raises(NotImplementedError):
        tpo.loglikelihood(requests)
    with pytest.raises(ValueError, match="Unknown --model_args"):
        model_class.create_from_arg_string(args + ",frames=8")
    assert "lmms_eval" in sys.modules


def _task_kwargs(task_dir: str, yaml_name: str, variant: str = "default") -> dict:
    """`lmms_eval_specific_kwargs` of an installed lmms-eval task YAML, resolved for a model as lmms-eval does."""
    from pathlib import Path

    import lmms_eval
    import yaml

    text = (Path(lmms_eval.__file__).parent / "tasks" / task_dir / yaml_name).read_text()
    config = yaml.safe_load("".join(line for line in text.splitlines(True) if "!function" not in line))
    kwargs = config["lmms_eval_specific_kwargs"]
    return dict(kwargs[variant]) if variant in kwargs else {**kwargs, **kwargs["default"]}


def test_prompts_are_lmms_eval_s_byte_for_byte(video_dir, tmp_path, monkeypatch):
    """Every benchmark and prompt variant: our prompt == the installed lmms-eval task's `doc_to_text` output."""
    import importlib.metadata

    from lmms_eval.tasks.longvideobench import utils as lvb_utils
    from lmms_eval.tasks.mlvu import utils as mlvu_utils
    from lmms_eval.tasks.videomme import utils as videomme_utils

    from tests.test_eval_mcq import LVB_ROWS, VIDEOMME_ROWS
    from tpo_hf.eval.benchmarks import (
        LMMS_EVAL_VERSION,
        longvideobench_sample,
        mlvu_sample,
        videomme_sample,
        videomme_subtitle_sample,
    )

    assert importlib.metadata.version("lmms-eval") == LMMS_EVAL_VERSION
    for variant in ("default", "llava_vid", "gpt4v", "qwen3_vl"):
        kwargs = _task_kwargs("videomme", "videomme.yaml", variant)
        for index, row in enumerate(VIDEOMME_ROWS):
            assert videomme_sample(row, index, variant).prompt == videomme_utils.videomme_doc_to_text(row, kwargs)

    # with subtitles: lmms-eval reads <HF_HOME>/videomme/{data,subtitle}/<videoID>.{mp4,srt}
    root = tmp_path / "hf" / "videomme"
    (root / "data").mkdir(parents=True)
    (root / "subtitle").mkdir()
    for name in ("red_blue", "green_yellow"):
        (root / "data" / f"{name}.mp4").write_bytes((video_dir / f"{name}.mp4").read_bytes())
    font = '<font color="white" size=".72c">{}</font>'
    (root / "subtitle" / "red_blue.srt").write_text(
        "1\n00:00:00,000 --> 00:00:01,500\n" + font.format("A red square.") + "\n\n"
        "2\n00:00:01,500 --> 00:00:04,000\n" + font.format("It turns blue.") + "\n\n"
        "3\n00:00:04,000 --> 00:00:05,000\nno font tag here\n\n"
    )
    monkeypatch.setattr(videomme_utils, "base_cache_dir", str(tmp_path / "hf"))
    for variant in ("default", "llava_vid", "qwen3_vl"):
        kwargs = _task_kwargs("videomme", "videomme_w_subtitle.yaml", variant)
        for index, row in enumerate(VIDEOMME_ROWS):
            ours = videomme_subtitle_sample(
                row, index, variant, video_dir=root / "data", subtitle_dir=root / "subtitle"
            ).prompt
            assert ours == videomme_utils.videomme_doc_to_text_subtitle(row, kwargs), (variant, index)
    assert (
        "A red square.\nIt turns blue."
        in videomme_subtitle_sample(
            VIDEOMME_ROWS[0], 0, video_dir=root / "data", subtitle_dir=root / "subtitle"
        ).prompt
    )

    mlvu_rows = [  # lmms-eval's sy1998/MLVU_dev rows carry the options in the question
        {"video_name": "red_blue.mp4", "question": "Which shape appears first?\n(A) square\n(B) circle\n(C) star",
         "candidates": ["square", "circle", "star"], "answer": "A", "task_type": "plotQA"},
        {"video_name": "green_yellow.mp4", "question": "How many shapes?\n(A) 1\n(B) 2\n(C) 3\n(D) 4 ",
         "candidates": ["1", "2", "3", "4"], "answer": "B", "task_type": "count"},
    ]  # fmt: skip
    for variant in ("default", "plm"):
        kwargs = _task_kwargs("mlvu", "mlvu_dev.yaml", variant)
        for index, row in enumerate(mlvu_rows):
            assert mlvu_sample(row, index, variant).prompt == mlvu_utils.mlvu_doc_to_text(row, kwargs)

    kwargs = _task_kwargs("longvideobench", "longvideobench_val_v.yaml")
    for index, row in enumerate(LVB_ROWS):
        assert longvideobench_sample(row, index).prompt == lvb_utils.longvideobench_doc_to_text(row, kwargs)


def test_lmms_eval_parsers_are_ported_exactly():
    import random

    from lmms_eval.tasks._task_utils.mcq_extract import extract_mcq_answer
    from lmms_eval.tasks.longvideobench.utils import parse_multi_choice_response

    from tests.eval_reply_table import OPTION_SETS, TABLE
    from tpo_hf.eval.benchmarks import lmms_eval_longvideobench_answer, lmms_eval_mcq_answer

    replies = [reply for _, reply, _ in TABLE] + ["The answer is", "Best option: (B) x", "D. A book"]
    for reply in replies:
        assert lmms_eval_mcq_answer(reply, list("ABCD")) == extract_mcq_answer(reply, choices=list("ABCD")), reply
    for option_set, reply, _ in TABLE:
        choices = list("ABCDE"[: len(OPTION_SETS[option_set])])
        random.seed(7)
        theirs = parse_multi_choice_response(reply, choices, {})
        assert lmms_eval_longvideobench_answer(reply, choices, random.Random(7)) == theirs, reply


def test_lmms_eval_parser_score_is_lmms_eval_s_metric():
    """The `lmms_eval_parser` score of a run == lmms-eval's `process_results` + aggregation over the same replies,
    for Video-MME (overall), MLVU (M-Avg over its 7 dev tasks) and LongVideoBench (random guesses included)."""
    import random

    from lmms_eval.tasks.longvideobench import utils as lvb_utils
    from lmms_eval.tasks.mlvu import utils as mlvu_utils
    from lmms_eval.tasks.videomme import utils as videomme_utils

    from tests.eval_reply_table import TABLE
    from tpo_hf.eval.benchmarks import get_benchmark, lmms_eval_predictions
    from tpo_hf.eval.mcq import SampleResult, summarize

    replies = [reply for _, reply, _ in TABLE]
    tasks = ["anomaly_reco", "count", "ego", "needle", "order", "plotQA", "topic_reasoning"]
    docs = {
        "videomme": [
            {"question_id": f"q{i}", "videoID": "v", "duration": ["short", "medium", "long"][i % 3],
             "domain": "Knowledge", "sub_category": "Astronomy", "task_type": "OCR Problems",
             "question": "q", "options": ["A. a", "B. b", "C. c", "D. d"], "answer": "ABCD"[i % 4]}
            for i in range(len(replies))
        ],
        "mlvu_dev": [
            {"video_name": "v.mp4", "question": f"q{i}\n(A) a\n(B) b\n(C) c\n(D) d", "candidates": list("abcd"),
             "answer": "ABCD"[i % 4], "task_type": tasks[i % len(tasks)]}
            for i in range(len(replies))
        ],
        "longvideobench_val": [
            {"id": f"q{i}", "video_path": "v.mp4", "question": "q", "option0": "a", "option1": "b", "option2": "c",
             "option3": "d", "option4": "N/A", "correct_choice": i % 4, "duration_group": 60,
             "question_category": "T2O"}
            for i in range(len(replies))
        ],
    }  # fmt: skip
    random.seed(0)  # lmms-eval's default --seed for Python's random
    theirs = {
        "videomme": videomme_utils.videomme_aggregate_results(
            [videomme_utils.videomme_process_results(d, [r])["videomme_perception_score"] for d, r in zip(docs["videomme"], replies)]
        ),
        "mlvu_dev": mlvu_utils.mlvu_aggregate_results_dev(
            [mlvu_utils.mlvu_process_results(d, [r])["mlvu_percetion_score"] for d, r in zip(docs["mlvu_dev"], replies)]
        ),
        "longvideobench_val": 100 * lvb_utils.longvideobench_aggregate_results(
            [lvb_utils.longvideobench_process_results(d, [r])["lvb_acc"] for d, r in zip(docs["longvideobench_val"], replies)]
        ),
    }  # fmt: skip
    for name, rows in docs.items():
        benchmark = get_benchmark(name)
        samples = [benchmark.to_sample(row, index) for index, row in enumerate(rows)]
        results = [
            SampleResult("tpo", s.sample_id, 4, reply, "?", s.answer, False, s.breakdowns)
            for s, reply in zip(samples, replies)
        ]
        letters = {"tpo": lmms_eval_predictions(name, replies, samples)}
        summary = summarize({"tpo": results}, benchmark.breakdowns, benchmark.headline, letters)
        assert summary["models"]["tpo"]["lmms_eval_parser"]["score"] == pytest.approx(theirs[name], abs=1e-3), name


def _local_videomme_task(tasks, data, hf_home) -> str:
    """lmms-eval's own `videomme` task YAML, reading `data` (a jsonl in the Video-MME schema) instead of the Hub."""
    import re
    from pathlib import Path

    import lmms_eval

    text = (Path(lmms_eval.__file__).parent / "tasks" / "videomme" / "videomme.yaml").read_text()
    text = re.sub(r"dataset_path:.*?\ntask: videomme\n", "", text, flags=re.DOTALL)
    text = text.replace("!function utils.", "!function videomme_local.")
    header = f"task: tpo_hf_videomme_local\ndataset_path: json\ndataset_kwargs:\n  data_files: {data}\n"
    (tasks / "videomme_local.yaml").write_text(header + text.replace("test_split: test", "test_split: train"))
    (tasks / "videomme_local.py").write_text(
        "from lmms_eval.tasks.videomme.utils import (videomme_aggregate_results, videomme_doc_to_text,\n"
        "    videomme_doc_to_visual, videomme_process_results)\n"
    )
    return "tpo_hf_videomme_local"


def test_lmms_eval_command_matches_tpo_hf_eval(model_and_adapter, video_dir, tmp_path):
    """The real `python -m lmms_eval --model tpo_hf` on a local copy of the `videomme` task (lmms-eval's YAML, prompt,
    parser and metric) and `tpo-hf eval --benchmark videomme` on the same rows: same replies, letters and score."""
    import json
    import os
    import subprocess
    from pathlib import Path

    from tests.test_eval_mcq import VIDEOMME_ROWS
    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.eval.run import evaluate

    model_dir, adapter_dir = model_and_adapter
    dist_info = tmp_path / "site" / "tpo_hf_entry_point_check-0.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: tpo-hf-entry-point-check\nVersion: 0.0\n")
    (dist_info / "entry_points.txt").write_text("[lmms_eval.models]\ntpo_hf = tpo_hf.eval.lmms_plugin:manifest\n")
    hf_home = tmp_path / "hf"
    (hf_home / "videomme" / "data").mkdir(parents=True)
    for name in ("red_blue", "green_yellow"):
        (hf_home / "videomme" / "data" / f"{name}.mp4").write_bytes((video_dir / f"{name}.mp4").read_bytes())
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    data = tasks / "videomme.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in VIDEOMME_ROWS))
    task = _local_videomme_task(tasks, data, hf_home)
    repo_root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(repo_root), str(tasks)]),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(hf_home),
    }
    model_args = f"pretrained={model_dir},adapter={adapter_dir},num_frames={FRAMES},device=cpu,dtype=float32"
    command = [sys.executable, "-m", "lmms_eval", "--model", "tpo_hf", "--model_args", model_args]
    command += ["--tasks", task, "--include_path", str(tasks), "--batch_size", "1", "--log_samples"]
    command += ["--output_path", str(tmp_path / "out")]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    results_files = list((tmp_path / "out").rglob("*_results.json"))
    assert len(results_files) == 1, (completed.stdout[-2000:], completed.stderr[-4000:])
    lmms_results = json.loads(results_files[0].read_text())
    (samples_file,) = (tmp_path / "out").rglob(f"*_samples_{task}.jsonl")
    lmms_samples = sorted(
        (json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"]
    )
    assert lmms_results["n-samples"][task]["effective"] == len(VIDEOMME_ROWS)

    ours = evaluate(
        EvalConfig(
            model_name_or_path=str(model_dir),
            adapter_path=str(adapter_dir),
            compare_base=False,
            benchmark="videomme",
            dataset_name=str(data),
            video_dir=str(video_dir),
            num_frames=FRAMES,
            dtype="float32",
            device="cpu",
            output_dir=str(tmp_path / "ours"),
            progress=False,
        )
    )
    rows = [json.loads(line) for line in (tmp_path / "ours" / "samples_videomme.jsonl").read_text().splitlines()]
    for row, sample in zip(rows, lmms_samples, strict=True):
        theirs = sample["filtered_resps"]
        theirs = theirs if isinstance(theirs, str) else theirs[0]
        assert row["tpo_reply"].strip() == theirs.strip()
        assert row["tpo_lmms_eval_prediction"] == sample["videomme_perception_score"]["pred_answer"]
    entry = ours["benchmarks"]["videomme"]["models"]["tpo"]
    lmms_score = lmms_results["results"][task]["videomme_perception_score,none"]
    assert entry["lmms_eval_parser"]["score"] == pytest.approx(lmms_score)


# --- second probe: --model_args are checked before anything loads ---------------------------------------------------
@pytest.mark.parametrize(
    "args, words",
    [
        ("use_adapter=ture", ["use_adapter", "true/1/yes/on/false/0/no/off"]),  # a typo is not `false`
        ("dtype=bf16", ["dtype", "bfloat16", "float16", "float32", "auto"]),
        ("batch_size=0", ["batch_size", "at least 1"]),
        ("num_frames=eight", ["num_frames", "whole number"]),
        ("max_pixels=lots", ["max_pixels", "whole number or none"]),
    ],
)
def test_model_args_are_refused_naming_the_key(args, words, tmp_path):
    from lmms_eval.utils import simple_parse_args_string

    from tpo_hf.eval.lmms_plugin import TPOHFModel

    parsed = simple_parse_args_string(f"pretrained={tmp_path / 'nowhere'},adapter={tmp_path / 'none'},{args}")
    with pytest.raises(ValueError) as raised:
        TPOHFModel(**parsed)  # refused before the (missing) model is looked for
    for word in words:
        assert word in str(raised.value)


def test_model_args_none_and_flags_parse():
    from tpo_hf.eval.lmms_plugin import _as_bool, _as_int

    assert (
        _as_int("None", "max_pixels", optional=True) is None and _as_int("none", "max_pixels", optional=True) is None
    )
    assert _as_int("8.0", "num_frames") == 8 and _as_int(2, "batch_size", minimum=1) == 2
    assert [_as_bool(word) for word in ("yes", "On", "1", "TRUE")] == [True] * 4
    assert [_as_bool(word) for word in ("no", "off", "0", "False")] == [False] * 4
