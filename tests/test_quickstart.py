"""`tpo-hf quickstart` (the README's first command) runs the whole loop offline and writes every artifact."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from huggingface_hub import DatasetCard, ModelCard

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_end_to_end(tmp_path):
    command = [shutil.which("tpo-hf")] if shutil.which("tpo-hf") else [sys.executable, "-m", "tpo_hf.cli"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1")
    out = tmp_path / "qs"
    result = subprocess.run(
        [*command, "quickstart", "--output_dir", str(out)], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    stdout = result.stdout
    for stage in range(1, 8):
        assert f"[{stage}/7]" in stdout  # progress is shown stage by stage
    assert "TPO quickstart done" in stdout and "Video-MME accuracy: base" in stdout and "V-NIAH accuracy" in stdout

    # Curated dataset with its card; the counts in the card match the data
    from datasets import load_from_disk

    dataset = load_from_disk(str(out / "dataset"))
    assert set(dataset["granularity"]) == {"localized", "comprehensive"}
    report = json.loads((out / "dataset" / "curation_report.json").read_text())
    assert report["final"]["total"] == len(dataset)
    assert DatasetCard.load(out / "dataset" / "README.md").data.pretty_name == "TPO quickstart pairs"

    # Adapter with its model card (evaluation results in model-index), curves and video settings
    card = ModelCard.load(out / "adapter" / "README.md")
    assert "tpo" in card.data.tags and card.data.eval_results
    assert {r.dataset_type for r in card.data.eval_results} == {"tpo-hf/quickstart-mcq", "tpo-hf/v-niah"}
    for name in ("adapter_model.safetensors", "training_curves.png", "tpo_video_config.json"):
        assert (out / "adapter" / name).exists(), name

    # Evaluation outputs and the Space folder
    results = json.loads((out / "eval" / "results.json").read_text())
    assert set(results["benchmarks"]["videomme"]["models"]) == {"base", "tpo"}
    assert (out / "eval" / "vniah_heatmap.png").stat().st_size > 0
    for name in ("README.md", "app.py", "requirements.txt"):
        assert (out / "space" / name).exists(), name
