"""`tpo-hf quickstart` (the README's first command) runs the whole loop offline, writes every artifact, and TPO
really improves the world's base model on held-out long-video questions (a CI-sized check of the method-validity experiment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from huggingface_hub import DatasetCard, ModelCard

from tpo_hf.world.experiment import ExperimentConfig, chosen_options

REPO_ROOT = Path(__file__).resolve().parents[1]

# Measured by `benchmarks/method_validity.py` (benchmarks/results/method_validity/README.md): the seed-to-seed standard deviation of the
# long-video accuracy is 0.4 points for TPO 5:5 and at most 2.8 for any arm, and TPO 5:5 gains +28.2. The quickstart
# is that experiment's TPO 5:5 arm on seed 0 (a smaller corpus, its own held-out videos), so it must clear the issue's
# +10 target, which is also far above the spread.
MARGIN = 10.0
LONG_MIN_SCENES = 6


def test_quickstart_end_to_end(tmp_path):
    # the `tpo-hf` command of this interpreter (a venv's python may run without its bin/ on PATH)
    command = [sys.executable, "-m", "tpo_hf.commands"]
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1")
    out = tmp_path / "qs"
    result = subprocess.run(
        [*command, "quickstart", "--output_dir", str(out)], env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-4000:]
    stdout = result.stdout
    for stage in range(1, 7):
        assert f"[{stage}/6]" in stdout  # progress is shown stage by stage
    assert "TPO quickstart done" in stdout and "TPO world (held-out) accuracy: base" in stdout
    assert "V-NIAH accuracy" in stdout
    # one line per stage, then the summary: the trainer's log dicts and third-party warnings go to the log file
    assert len(stdout.splitlines()) < 30, stdout
    assert "{'loss'" not in stdout + result.stderr and "Warning" not in stdout + result.stderr, result.stderr[-2000:]
    log = (out / "quickstart.log").read_text()
    assert str(out / "quickstart.log") in stdout and "'loss'" in log
    # the stages' own bars (curation shards, training steps, evaluation answers) show on the terminal
    assert all(bar in result.stderr for bar in ("curate", "train", "eval")), result.stderr[-2000:]

    # Curated dataset with its card; the counts in the card match the data
    from datasets import load_from_disk

    dataset_dir = out / "seed-0" / "pairs-5_5"
    dataset = load_from_disk(str(dataset_dir))
    assert set(dataset["granularity"]) == {"localized", "comprehensive"}
    report = json.loads((dataset_dir / "curation_report.json").read_text())
    assert report["final"]["total"] == len(dataset)
    assert DatasetCard.load(dataset_dir / "README.md").data.task_categories
    # the chosen options of multiple-choice pairs are balanced (the judge keeps the base's right answers, which lean
    # to the first-named option of "which comes first"): per option count, every letter equally often, within one
    assert "dropped_by_option_balance" in report["mix"]
    pairs = dataset.filter(lambda row: not row["anchor"])
    for num_options, by_letter in chosen_options(pairs).items():
        assert sorted(by_letter) == list("ABCD"[: int(num_options)]), (num_options, by_letter)
        assert max(by_letter.values()) - min(by_letter.values()) <= 1, (num_options, by_letter)
    # anchor rows (`anchor_ratio` per pair): answers the base gives alike from both views, right per the timeline judge
    anchors = dataset.filter(lambda row: row["anchor"])
    assert len(anchors) == report["final"]["anchors"] == round(ExperimentConfig.anchor_ratio * len(pairs))
    assert all(row["chosen"] == row["rejected"] and row["judge_correct"] for row in anchors)

    # Adapter with its model card (evaluation results in model-index), curves and video settings
    adapter_dir = out / "seed-0" / "adapters" / "tpo_5_5"
    card = ModelCard.load(adapter_dir / "README.md")
    assert "tpo" in card.data.tags and card.data.eval_results
    # the held-out questions are a local file: recorded as that file (`tpo_hf.eval.results.scored_dataset`)
    heldout = str(out.resolve() / "heldout_questions.jsonl")
    assert {r.dataset_type for r in card.data.eval_results} == {heldout, "tpo-hf/v-niah"}
    for name in ("adapter_model.safetensors", "training_curves.png", "tpo_video_config.json"):
        assert (adapter_dir / name).exists(), name

    # The method works: TPO beats the base on held-out questions by more than the seed spread; base above chance
    results = json.loads((out / "eval" / "results.json").read_text())
    samples = [json.loads(line) for line in (out / "eval" / "samples_tpo_world.jsonl").read_text().splitlines()]
    long = [s for s in samples if int(s["scenes"]) >= LONG_MIN_SCENES]
    accuracy = {
        tag: 100 * sum(s[f"{tag}_prediction"] == s["answer"] for s in long) / len(long) for tag in ("base", "tpo")
    }
    # the base is above chance on the held-out set (far above on short clips; on long videos it is close to chance,
    # 31.9% vs 29.5% in the experiment, which is the room TPO has to work with)
    rows = [json.loads(line) for line in (out / "heldout_questions.jsonl").read_text().splitlines()]
    chance = 100 * sum(1 / len(row["options"]) for row in rows) / len(rows)
    base_overall = results["benchmarks"]["tpo_world"]["models"]["base"]["accuracy"]
    assert base_overall > chance + 10, (base_overall, chance)
    assert accuracy["tpo"] > accuracy["base"] + MARGIN, accuracy
    assert "long videos (6+ scenes) accuracy: base" in stdout
    # the forgetting check comes with its interval: the short-clip set is small, so a change is shown with its 95%
    # interval over held-out videos, not as a bare difference
    assert "TPO - base, same questions" in stdout and "short clips" in stdout.split("TPO - base, same questions")[1]
    # the heatmap figure has a base panel and a TPO panel; together they are not all one colour (a random model's is
    # all red; TPO may well fill its own panel: 100% at every length and depth)
    heatmaps = [results["vniah"]["models"][tag]["accuracy"] for tag in ("base", "tpo")]
    assert len({value for heatmap in heatmaps for row in heatmap for value in row}) > 1
    assert (out / "eval" / "vniah_heatmap.png").stat().st_size > 0
    for name in ("README.md", "app.py", "requirements.txt"):
        assert (out / "space" / name).exists(), name


def test_counts_below_one_are_refused_before_the_corpus_is_made(tmp_path):
    """Probe b/h50: `tpo-hf quickstart --max_steps 0` (or -1) was not refused: it wrote and curated the corpus for
    minutes before training met the count. Every count is checked when the settings are parsed, in one line."""
    import pytest

    from tpo_hf.commands.quickstart import cli_main

    for flag in ("--max_steps", "--pairs", "--train_videos"):
        with pytest.raises(SystemExit, match=rf"^tpo-hf quickstart: {flag[2:]}=0: each of .* must be 1 or more\.$"):
            cli_main([flag, "0", "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
