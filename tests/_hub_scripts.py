"""Programs the Hub tests run in subprocesses, where `HF_ENDPOINT` points at the local server before any import.

Each is `python tests/_hub_scripts.py NAME OUT_DIR [ARGS...]` and writes its results under OUT_DIR.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BASE_REPO = "tester/tiny-qwen2_5_vl"
ADAPTER_REPO = "tester/tiny-qwen2_5_vl-tpo"
DATASET_REPO = "tester/tpo-pairs"
CLI_REPO = "tester/tpo-cli-push"
MERGED_REPO = "tester/tpo-merged"
EVAL_RESULTS = [
    {
        "dataset_type": "lmms-lab/Video-MME",
        "dataset_name": "Video-MME (synthetic subset)",
        "metric_type": "accuracy",
        "metric_value": 0.625,
        "dataset_split": "test",
    },
]


def _probe_logits(model, processor, video: str):
    """Logits of a fixed video question: the fingerprint that must survive push + from_pretrained."""
    import torch

    inputs = processor.generation_inputs(["What colour is the moving shape?"], [video])
    with torch.no_grad():
        return model(**inputs).logits.float()


def train_and_push(out: Path, video_dir: str) -> None:
    """Pushes a tiny base model, trains a LoRA adapter on it with TPOTrainer, pushes it with trainer.push_to_hub."""
    import torch
    from datasets import Dataset, load_dataset
    from huggingface_hub import HfApi
    from peft import LoraConfig
    from transformers import AutoModelForImageTextToText

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import preference_rows

    from tpo_hf import TPOTrainer, VideoPreferenceProcessor
    from tpo_hf.tiny import save_tiny_model, tiny_tpo_config

    rows = preference_rows()
    Dataset.from_list(rows).push_to_hub(DATASET_REPO)
    train_dataset = load_dataset(DATASET_REPO, split="train")
    (out / "dataset.json").write_text(json.dumps({"rows": rows, "loaded": train_dataset.to_list()}))

    base_dir = save_tiny_model(out / "base")
    api = HfApi()
    api.create_repo(BASE_REPO, exist_ok=True)
    api.upload_folder(repo_id=BASE_REPO, folder_path=str(base_dir), commit_message="tiny base")

    # loaded by id, so the adapter's base_model_name_or_path is a repo id that resolves on the (local) Hub
    model = AutoModelForImageTextToText.from_pretrained(BASE_REPO)
    args = tiny_tpo_config(
        out / "run",
        num_frames=8,
        video_root=video_dir,
        max_steps=2,
        learning_rate=5e-3,
        hub_model_id=ADAPTER_REPO,
        seed=0,
    )
    trainer = TPOTrainer(
        model,
        args=args,
        train_dataset=train_dataset,
        peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0),
    )
    trainer.train()
    commit = trainer.push_to_hub(dataset_name=DATASET_REPO, eval_results=EVAL_RESULTS)
    processor = VideoPreferenceProcessor.from_pretrained(str(out / "run"))
    logits = _probe_logits(trainer.model.eval(), processor, str(Path(video_dir) / "red_blue.mp4"))
    torch.save(logits, out / "trained_logits.pt")
    (out / "train.json").write_text(json.dumps({"log_history": trainer.state.log_history, "commit": commit.oid}))


def cli_pushes(out: Path) -> None:
    """`tpo-hf push` as a user runs it: a failed upload (the test server fails one commit), the rerun, a second
    rerun that must change nothing, then `--merge`. Records exit codes, messages and the repo head after each."""
    import contextlib
    import io

    from huggingface_hub import HfApi

    from tpo_hf.commands import main

    adapter_dir = out / "run"
    runs = []
    for argv in (
        ["push", "--adapter_dir", str(adapter_dir), "--repo_id", CLI_REPO],
        ["push", "--adapter_dir", str(adapter_dir), "--repo_id", CLI_REPO],
        ["push", "--adapter_dir", str(adapter_dir), "--repo_id", CLI_REPO],
        ["push", "--adapter_dir", str(adapter_dir), "--repo_id", MERGED_REPO, "--merge"],
    ):
        stdout, code, message = io.StringIO(), 0, ""
        try:
            with contextlib.redirect_stdout(stdout):
                main(argv)
        except SystemExit as exit_:
            code, message = 1, str(exit_.code)
        head = HfApi().repo_info(argv[4]).sha
        runs.append({"argv": argv, "code": code, "message": message, "stdout": stdout.getvalue(), "head": head})
    (out / "cli_pushes.json").write_text(json.dumps(runs))


def load_back(out: Path, video_dir: str) -> None:
    """Loads what was pushed, from the Hub only, every way; saves logits and the reloaded card."""
    import torch
    from huggingface_hub import ModelCard
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from tpo_hf import VideoPreferenceProcessor

    video = str(Path(video_dir) / "red_blue.mp4")
    processor = VideoPreferenceProcessor.from_pretrained(ADAPTER_REPO)
    base = AutoModelForImageTextToText.from_pretrained(BASE_REPO)
    peft_model = PeftModel.from_pretrained(base, ADAPTER_REPO).eval()
    torch.save(_probe_logits(peft_model, processor, video), out / "peft_logits.pt")
    auto_model = AutoModelForImageTextToText.from_pretrained(ADAPTER_REPO).eval()
    torch.save(_probe_logits(auto_model, processor, video), out / "auto_logits.pt")
    merged = AutoModelForImageTextToText.from_pretrained(MERGED_REPO).eval()
    torch.save(_probe_logits(merged, processor, video), out / "merged_logits.pt")
    card = ModelCard.load(ADAPTER_REPO)
    (out / "card.json").write_text(
        json.dumps({"data": card.data.to_dict(), "text": card.text, "num_frames": processor.num_frames})
    )


CURATED_REPO = "tester/tpo-curated"


def train_from_curated_repo(out: Path) -> None:
    """`load_dataset(REPO_ID)` plus the repo's videos train with no manual step (video_root from the repo)."""
    import math

    from datasets import load_dataset
    from peft import LoraConfig

    from tpo_hf import TPOTrainer
    from tpo_hf.data import default_video_root
    from tpo_hf.tiny import build_tiny_model, tiny_tpo_config

    dataset = load_dataset(CURATED_REPO, split="train")
    video_root = default_video_root(CURATED_REPO)
    model, processor = build_tiny_model("qwen2_vl")
    args = tiny_tpo_config(out / "curated_run", video_root=video_root)
    trainer = TPOTrainer(
        model, args=args, train_dataset=dataset, processing_class=processor, peft_config=LoraConfig(r=4, lora_alpha=8)
    )
    trainer.train()
    loss = trainer.state.log_history[-1]["train_loss"]
    assert math.isfinite(loss)
    (out / "curated_train.json").write_text(
        json.dumps({"rows": len(dataset), "columns": dataset.column_names, "video_root": video_root, "loss": loss})
    )


if __name__ == "__main__":
    name, out, *rest = sys.argv[1:]
    globals()[name](Path(out), *rest)
