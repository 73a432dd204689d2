"""Distributed smoke test: a 2-process CPU `accelerate launch ... -m tpo_hf.train` trains and saves, and its loss
curve matches the 1-process run with the same global batch.

`accelerate launch --cpu --num_processes 2` starts a single process in accelerate 1.15 (multi-CPU goes through
mpirun), so the two processes are started with `--multi_gpu` and the recipe's `use_cpu: true`, which makes them join
one gloo process group on the CPU. The test checks that both ranks really took part.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.test_train_cli import REPO_ROOT, write_dataset_folder, write_recipe


def launch(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", TQDM_DISABLE="1", OMP_NUM_THREADS="1")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def recipe(path: Path, model_dir: Path, dataset_dir: Path, output_dir: Path, per_device: int, **extra) -> Path:
    """The CLI test's tiny recipe, with a constant learning rate and 3 steps so the two curves can be compared."""
    return write_recipe(
        path,
        model_dir,
        dataset_dir,
        output_dir,
        per_device_train_batch_size=per_device,
        max_steps=3,
        lora_dropout=0.0,
        warmup_ratio=0.0,
        lr_scheduler_type="constant",
        seed=0,
        dataloader_pin_memory=False,
        log_level="info",
        **extra,
    )


def losses(output_dir: Path) -> list[float]:
    state = json.loads((output_dir / "trainer_state.json").read_text())
    return [entry["loss"] for entry in state["log_history"] if "loss" in entry]


def test_two_process_run_matches_one_process(tiny_model_dirs, video_dir, tmp_path):
    model_dir = tiny_model_dirs("qwen2_vl")
    dataset_dir = write_dataset_folder(tmp_path / "data", video_dir)
    accelerate = [shutil.which("accelerate") or "accelerate"]
    if accelerate[0] == "accelerate":
        accelerate = [sys.executable, "-m", "accelerate.commands.accelerate_cli"]

    single = launch(
        [
            *accelerate,
            "launch",
            "--cpu",
            "--num_processes",
            "1",
            "-m",
            "tpo_hf.train",
            "--config",
            str(recipe(tmp_path / "one.yaml", model_dir, dataset_dir, tmp_path / "one", per_device=2)),
        ],
        tmp_path,
    )
    assert single.returncode == 0, single.stderr[-4000:]
    double = launch(
        [
            *accelerate,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "-m",
            "tpo_hf.train",
            "--config",
            str(recipe(tmp_path / "two.yaml", model_dir, dataset_dir, tmp_path / "two", per_device=1)),
        ],
        tmp_path,
    )
    assert double.returncode == 0, double.stderr[-4000:]
    # Trainer's own summary: 1 pair per process x 2 processes
    assert "Total train batch size (w. parallel, distributed & accumulation) = 2" in double.stdout + double.stderr
    assert "Instantaneous batch size per device = 1" in double.stdout + double.stderr
    assert (tmp_path / "two" / "adapter_model.safetensors").exists()

    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    # Same global batch of 2 pairs per step. DPO terms average identically; the SFT term averages tokens per rank,
    # so the curves agree up to that weighting.
    for step, (a, b) in enumerate(zip(one, two)):
        assert abs(a - b) <= 0.05 * abs(a), f"step {step + 1}: 1 process {a:.4f} vs 2 processes {b:.4f}"
