"""The lmms-eval model plugin: found through the `lmms_eval.models` entry-point group, loads a tiny model + adapter
with tpo-hf's code, and answers lmms-eval requests exactly as `tpo_hf.eval` does. Skipped without lmms-eval (it is not
a dependency of tpo-hf)."""

from __future__ import annotations

import sys

import pytest

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


TOY_TASK = """task: tpo_hf_toy_video_mcq
dataset_path: json
dataset_kwargs:
  data_files: {data}
test_split: train
output_type: generate_until
doc_to_visual: !function toy_utils.doc_to_visual
doc_to_text: !function toy_utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 3
  temperature: 0
  do_sample: false
process_results: !function toy_utils.process_results
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
TOY_UTILS = """from tpo_hf.eval.answers import extract_answer_letter

def doc_to_visual(doc):
    return [{video_dir!r} + "/" + doc["video"]]

def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"] + "\\nA. red\\nB. blue\\nAnswer with the option's letter from the given choices directly."

def process_results(doc, results):
    return {{"acc": float(extract_answer_letter(results[0], ["red", "blue"]) == doc["answer"])}}
"""


def test_lmms_eval_command_runs_a_task_with_the_plugin(model_and_adapter, video_dir, tmp_path):
    """The real `python -m lmms_eval --model tpo_hf` on a local two-question video task."""
    import json
    import os
    import subprocess
    from pathlib import Path

    model_dir, adapter_dir = model_and_adapter
    dist_info = tmp_path / "site" / "tpo_hf_entry_point_check-0.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: tpo-hf-entry-point-check\nVersion: 0.0\n")
    (dist_info / "entry_points.txt").write_text("[lmms_eval.models]\ntpo_hf = tpo_hf.eval.lmms_plugin:manifest\n")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    data = tasks / "toy.jsonl"
    data.write_text(
        json.dumps({"video": "red_blue.mp4", "question": "What colour is the square?", "answer": "A"})
        + "\n"
        + json.dumps({"video": "green_yellow.mp4", "question": "What colour is the circle?", "answer": "B"})
        + "\n"
    )
    (tasks / "toy.yaml").write_text(TOY_TASK.format(data=data))
    (tasks / "toy_utils.py").write_text(TOY_UTILS.format(video_dir=str(video_dir)))
    repo_root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(repo_root), str(tasks)]),
        "HF_HUB_OFFLINE": "1",
    }
    model_args = f"pretrained={model_dir},adapter={adapter_dir},num_frames=4,device=cpu,dtype=float32"
    command = [sys.executable, "-m", "lmms_eval", "--model", "tpo_hf", "--model_args", model_args]
    command += ["--tasks", "tpo_hf_toy_video_mcq", "--include_path", str(tasks), "--batch_size", "1"]
    command += ["--output_path", str(tmp_path / "out")]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    (results_file,) = (tmp_path / "out").rglob("*_results.json")
    results = json.loads(results_file.read_text())
    assert results["n-samples"]["tpo_hf_toy_video_mcq"]["effective"] == 2
    assert 0.0 <= results["results"]["tpo_hf_toy_video_mcq"]["acc,none"] <= 1.0
