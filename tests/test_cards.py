"""Model card pieces in-process: templates shipped in the wheel, quantization/plot helpers, and the card that
`TPOTrainer.save_model()` writes (the Hub round trips are in test_hub.py)."""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_every_template_ships_in_the_wheel():
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    setuptools = pyproject["tool"]["setuptools"]
    # the templates install as data of tpo_hf (tpo_hf/_cards/), not as a second top-level package
    assert setuptools["package-dir"] == {"tpo_hf._cards": "hub_cards"}
    assert "hub_cards" not in setuptools["packages"] and "tpo_hf._cards" in setuptools["packages"]
    patterns = setuptools["package-data"]["tpo_hf._cards"]
    templates = [p.name for p in (REPO_ROOT / "hub_cards").iterdir() if p.is_file()]
    assert {"dataset_card.md", "model_card.md", "space_readme.md", "space_app.py.j2"} <= set(templates)
    for name in templates:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), f"hub_cards/{name} is not package data"


def test_describe_quantization():
    import torch
    from transformers import BitsAndBytesConfig

    from tpo_hf.hub.model_card import describe_quantization

    assert describe_quantization(None) == "none"
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    assert describe_quantization(config) == "4-bit nf4 (bitsandbytes), compute bfloat16"
    assert describe_quantization({"load_in_8bit": True}) == "8-bit (bitsandbytes)"


def test_training_curves_png(tmp_path):
    from tpo_hf.hub.plots import plot_training_curves

    assert plot_training_curves([{"train_runtime": 1.0, "step": 2}], tmp_path / "none.png") is None
    history = [{"step": s, "loss": 1.0 / s, "rewards/accuracies": 0.5, "rewards/margins": 0.1 * s} for s in (1, 2, 3)]
    path = plot_training_curves(history, tmp_path / "curves.png")
    assert path.read_bytes().startswith(b"\x89PNG")


def test_save_model_writes_card_from_the_run(tmp_path, tiny_model, preference_dataset, video_dir):
    from huggingface_hub import EvalResult, ModelCard
    from peft import LoraConfig

    from tpo_hf import TPOTrainer
    from tpo_hf.tiny import tiny_tpo_config

    model, processor = tiny_model("qwen2_5_vl")
    args = tiny_tpo_config(tmp_path / "out", video_root=str(video_dir), beta=0.2, sft_weight=1.0, learning_rate=1e-3)
    trainer = TPOTrainer(
        model,
        args=args,
        train_dataset=preference_dataset(repeat=1),
        processing_class=processor,
        peft_config=LoraConfig(r=2, lora_alpha=4),
    )
    trainer.train()
    evals = [
        EvalResult(
            task_type="video-text-to-text",
            dataset_type="MLVU/MVLU",
            dataset_name="MLVU",
            metric_type="accuracy",
            metric_value=0.5,
        )
    ]
    trainer.create_model_card(dataset_name="user/pairs", eval_results=evals)
    trainer.save_model()  # a later save keeps the dataset and eval results given once
    out = Path(args.output_dir)
    card = ModelCard.load(out / "README.md")
    assert card.data.datasets == ["user/pairs"]
    assert card.data.eval_results[0].metric_value == 0.5 and card.data.eval_results[0].dataset_name == "MLVU"
    assert card.data.base_model is None  # an in-memory model has no Hub id to link
    assert card.data.library_name == "peft"
    loss = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry][-1]
    for row in (
        f"| Final training loss | {loss:.4g} |",
        "| DPO beta | 0.2 |",
        "| SFT weight (alpha) | 1 |",
        "| LoRA rank | 2 |",
        "| Frames per video | 4 |",
    ):
        assert row in card.text
    assert (out / "training_curves.png").exists() and (out / "tpo_card.json").exists()
    assert "More Information Needed" not in card.text


def test_full_fine_tune_card_is_no_merged_update(tmp_path, tiny_model_dirs, preference_dataset, video_dir):
    """f12: a trained full model's card called it "a version of ... with a merged TPO update" (what a `--merge` push
    of an adapter is), and `tpo-hf push` of the folder re-rendered it as a LoRA adapter. The run records which."""
    import json

    from huggingface_hub import ModelCard

    from tpo_hf import TPOTrainer
    from tpo_hf.hub.push import _render_card
    from tpo_hf.tiny import tiny_tpo_config

    base = tiny_model_dirs("qwen2_vl")
    args = tiny_tpo_config(tmp_path / "out", video_root=str(video_dir), max_steps=1)
    trainer = TPOTrainer(str(base), args=args, train_dataset=preference_dataset(repeat=1))
    trainer.train()
    trainer.save_model()
    out = Path(args.output_dir)
    assert json.loads((out / "tpo_card.json").read_text())["full_fine_tune"] is True
    for card in (ModelCard.load(out / "README.md"), _render_card(out, "user/full", merged=False)):
        assert f"is a full fine-tune of `{base.name}` (a local folder when trained)," in card.text
        assert "merged" not in card.text and "PeftModel" not in card.text and "LoRA" not in card.text
        assert card.data.library_name == "transformers" and "lora" not in card.data.tags


def test_card_of_a_run_from_a_relative_base_folder_links_no_hub_model(
    tmp_path, tiny_model_dirs, preference_dataset, video_dir, monkeypatch, caplog
):
    """f20: trained from `model_name_or_path: models/qwen-vl`, then pushed from another folder: the card had
    `base_model: models/qwen-vl` (a Hub link to nothing) and loaded "models/qwen-vl" in its usage snippet. The run
    records that the base was a local folder; the push warns and names it."""
    import json
    import logging
    import shutil

    from peft import LoraConfig

    from tpo_hf import TPOTrainer
    from tpo_hf.hub.push import _render_card
    from tpo_hf.tiny import tiny_tpo_config

    project = tmp_path / "project"
    shutil.copytree(tiny_model_dirs("qwen2_vl"), project / "models" / "qwen-vl")
    monkeypatch.chdir(project)
    args = tiny_tpo_config("outputs/run", video_root=str(video_dir), max_steps=1)
    trainer = TPOTrainer(
        "models/qwen-vl", args=args, train_dataset=preference_dataset(repeat=1), peft_config=LoraConfig(r=2)
    )
    trainer.train()
    trainer.save_model()
    info = json.loads((project / "outputs" / "run" / "tpo_card.json").read_text())
    assert info["base_model_local_path"] == str(project / "models" / "qwen-vl")
    # the adapter's own config names the folder it can be found at from anywhere, not the path as written
    adapter_config = json.loads((project / "outputs" / "run" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(project / "models" / "qwen-vl")

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub.push"):
        card = _render_card(project / "outputs" / "run", "user/rel-tpo", merged=False)
    assert f"was a local folder when trained ({project / 'models' / 'qwen-vl'})" in caplog.text
    assert card.data.base_model is None and "models/qwen-vl" not in card.text
    assert "a LoRA adapter for `qwen-vl` (a local folder when trained)" in card.text
    assert 'from_pretrained("path/to/qwen-vl"' in card.text
