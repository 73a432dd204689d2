"""Data-parallel evaluation: `accelerate launch --multi_gpu --num_processes 2 -m tpo_hf.commands.eval` on the CPU (gloo, see
tests/test_distributed.py) splits the questions across two processes and writes the same result files as one
process; a second launch, and a single process after it, resume from the two cache shards without generating."""

from __future__ import annotations

import json
import shutil
import sys

import yaml

from tests.test_distributed import launch
from tests.test_eval_mcq import VIDEOMME_ROWS

FRAMES = 4


def test_two_processes_write_the_one_process_results(tiny_model_dirs, video_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.eval.run import evaluate
    from tpo_hf.families import LANGUAGE_MODEL_LORA_TARGETS

    model_dir = tiny_model_dirs("qwen2_5_vl")
    adapter_dir = tmp_path / "adapter"
    lora = LoraConfig(r=4, lora_alpha=64, target_modules=LANGUAGE_MODEL_LORA_TARGETS, init_lora_weights=False)
    get_peft_model(AutoModelForImageTextToText.from_pretrained(model_dir), lora).save_pretrained(adapter_dir)
    data = tmp_path / "videomme.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in VIDEOMME_ROWS))
    settings = {
        "model_name_or_path": str(model_dir),
        "adapter_path": str(adapter_dir),
        "benchmark": "videomme",
        "dataset_name": str(data),
        "video_dir": str(video_dir),
        "num_frames": FRAMES,
        "max_new_tokens": 4,
        "dtype": "float32",
        "device": "cpu",
        "progress": False,
    }
    one, two = tmp_path / "one", tmp_path / "two"
    evaluate(EvalConfig(**settings, output_dir=str(one)))

    config = tmp_path / "two.yaml"
    config.write_text(yaml.safe_dump({**settings, "output_dir": str(two)}))
    accelerate = [shutil.which("accelerate") or "accelerate"]
    if accelerate[0] == "accelerate":
        accelerate = [sys.executable, "-m", "accelerate.commands.accelerate_cli"]
    command = [*accelerate, "launch", "--multi_gpu", "--num_processes", "2", "-m", "tpo_hf.commands.eval"]
    command += ["--config", str(config)]
    double = launch(command, tmp_path)
    assert double.returncode == 0, double.stderr[-4000:]

    for name in ("results.json", "samples_videomme.jsonl", "results.md", "model_index.yaml"):
        assert (two / name).read_text() == (one / name).read_text(), name
    shards = [two / "cache_videomme.rank0.jsonl", two / "cache_videomme.rank1.jsonl"]
    ids = [{json.loads(line)["sample_id"] for line in shard.read_text().splitlines()} for shard in shards]
    assert ids == [{"000-1", "002-1"}, {"001-1", "003-1"}]  # every other question, base and adapter each
    before = [shard.read_text() for shard in shards]

    # resume: a second launch and then a single process generate nothing new
    again = launch(command, tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    assert [shard.read_text() for shard in shards] == before
    evaluate(EvalConfig(**settings, output_dir=str(two)))
    assert not (two / "cache_videomme.jsonl").exists() or not (two / "cache_videomme.jsonl").read_text()
    assert (two / "results.json").read_text() == (one / "results.json").read_text()
