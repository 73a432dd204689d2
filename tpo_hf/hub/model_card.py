"""Stage 6 of the flow (publish): the model card of a TPO adapter, rendered from `hub_cards/model_card.md`.

Everything in the card comes from the run itself: the hyperparameters the trainer actually used (TPOConfig, the
adapter's LoRA config, the quantization config), the final training metrics from `trainer.state.log_history`, and
evaluation results when given (written as `model-index` through `EvalResult`). Nothing is left as a placeholder:
a field that is unknown is left out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..paper import TPO_CITATION, TPO_TAG
from ..templates import template_path
from ..version import __version__
from ..video_settings import VideoSettings

logger = logging.getLogger(__name__)

TPO_TAGS = [TPO_TAG, "tpo", "dpo", "trl", "video", "video-text-to-text"]
PLOT_FILE = "training_curves.png"
PIPELINE_TAG = "video-text-to-text"

CARD_INFO_FILE = "tpo_card.json"  # the run's numbers, saved beside the card so it can be re-rendered for any repo
# The adapter weights file whose sha256 `tpo_card.json` records (`WEIGHTS_HASH_KEY`): `tpo-hf push` checks that the
# weights it publishes are the ones the card's numbers describe
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"
WEIGHTS_HASH_KEY = "adapter_weights_sha256"
# where a card edited by hand after the run wrote it is kept when the run writes a new one (`keep_edited_readme`)
EDITED_README = "README.edited.md"

# log_history key -> row name in the "Training results" table
RESULT_METRICS = {
    "loss": "Final training loss",
    "rewards/accuracies": "Reward accuracy",
    "rewards/margins": "Reward margin",
    "rewards/chosen": "Chosen reward",
    "rewards/rejected": "Rejected reward",
    "eval_loss": "Final eval loss",
    "eval_rewards/accuracies": "Eval reward accuracy",
    "eval_rewards/margins": "Eval reward margin",
}


def final_metrics(log_history: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The last logged value of each metric of `RESULT_METRICS` (plus `train_loss`, the run's average)."""
    metrics: dict[str, float] = {}
    for entry in log_history:
        for key in (*RESULT_METRICS, "train_loss"):
            if key in entry and entry[key] is not None:
                metrics[key] = float(entry[key])
    return metrics


def _format(value: Any) -> str:
    # a "|" (e.g. in a LoRA target regex) would split the Markdown table cell
    return _format_value(value).replace("|", "\\|")


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple, set)):
        return (
            ", ".join(str(item) for item in sorted(value) if item is not None)
            if isinstance(value, set)
            else (", ".join(str(item) for item in value))
        )
    return str(value)


def trainer_hyperparameters(trainer: Any) -> dict[str, Any]:
    """The TPO hyperparameters a trainer actually ran with: objective, optimisation, video, LoRA, quantization."""
    args = trainer.args
    world_size = getattr(args, "world_size", 1) or 1
    # The losses TRL really combined (the trainer's, not a setting that may have been changed after): the card's
    # alpha is the weight the "sft" term trained with, 0 when there was none.
    loss_types = list(getattr(trainer, "loss_types", None) or args.loss_type)
    loss_weights = list(getattr(trainer, "loss_weights", None) or args.loss_weights or [1.0] * len(loss_types))
    hyperparameters: dict[str, Any] = {
        "beta": getattr(trainer, "beta", args.beta),
        "sft_weight": loss_weights[loss_types.index("sft")] if "sft" in loss_types else 0.0,
        "loss_type": loss_types,
        "loss_weights": loss_weights,
        "learning_rate": args.learning_rate,
        "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        "warmup_ratio": args.warmup_ratio,
        "num_train_epochs": args.num_train_epochs,
        "max_steps": args.max_steps if args.max_steps and args.max_steps > 0 else None,
        "global_step": trainer.state.global_step,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "total_train_batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size,
        # what training sampled with: the processor's settings, fitted to `max_video_tokens` (`VideoSettings`)
        **VideoSettings.of(getattr(trainer, "video_processor", None) or args).to_dict(),
        "max_length": args.max_length,
        # a modality the family leaves out (the Omni thinker's audio), as its registry entry states it
        "inputs": getattr(getattr(trainer, "family", None), "card_inputs", None),
        "seed": args.seed,
        "precision": "bf16" if args.bf16 else ("fp16" if args.fp16 else "fp32"),
    }
    model = trainer.accelerator.unwrap_model(trainer.model) if hasattr(trainer, "accelerator") else trainer.model
    peft_config = getattr(model, "peft_config", None)
    if peft_config:
        lora = peft_config.get("default") or next(iter(peft_config.values()))
        hyperparameters.update(
            peft_type=str(getattr(lora.peft_type, "value", lora.peft_type)),
            lora_r=getattr(lora, "r", None),
            lora_alpha=getattr(lora, "lora_alpha", None),
            lora_dropout=getattr(lora, "lora_dropout", None),
            lora_target_modules=sorted(lora.target_modules)
            if isinstance(lora.target_modules, (set, list, tuple))
            else lora.target_modules,
        )
    hyperparameters["quantization"] = describe_quantization(getattr(model.config, "quantization_config", None))
    return {key: value for key, value in hyperparameters.items() if value is not None}


def describe_quantization(quantization_config: Any) -> str:
    """'none', or e.g. '4-bit nf4 (bitsandbytes), compute bfloat16'."""
    if quantization_config is None:
        return "none"
    config = quantization_config if isinstance(quantization_config, dict) else quantization_config.to_dict()
    if config.get("load_in_4bit"):
        return (
            f"4-bit {config.get('bnb_4bit_quant_type', '')} (bitsandbytes), "
            f"compute {config.get('bnb_4bit_compute_dtype', 'float32')}"
        ).replace("  ", " ")
    if config.get("load_in_8bit"):
        return "8-bit (bitsandbytes)"
    return str(config.get("quant_method", "quantized"))


_HYPERPARAMETER_NAMES = {
    "beta": "DPO beta",
    "sft_weight": "SFT weight (alpha)",
    "learning_rate": "Learning rate",
    "lr_scheduler_type": "LR scheduler",
    "warmup_ratio": "Warmup ratio",
    "num_train_epochs": "Epochs",
    "max_steps": "Max steps",
    "global_step": "Optimizer steps run",
    "per_device_train_batch_size": "Per-device batch size",
    "gradient_accumulation_steps": "Gradient accumulation",
    "total_train_batch_size": "Global batch size",
    "num_frames": "Frames per video",
    "video_fps": "Video sampling fps",
    "max_frames": "Max frames",
    "max_pixels": "Max pixels per frame",
    "max_video_tokens": "Video-token budget per prompt",
    "max_length": "Max sequence length",
    "inputs": "Inputs",
    "seed": "Seed",
    "precision": "Precision",
    "peft_type": "PEFT method",
    "lora_r": "LoRA rank",
    "lora_alpha": "LoRA alpha",
    "lora_dropout": "LoRA dropout",
    "lora_target_modules": "LoRA targets",
    "quantization": "Quantization",
}


def usage_snippet(repo_id: str, base_model: str, merged: bool = False, base_local: bool = False) -> str:
    """Python that loads what was pushed with `from_pretrained` and answers a question about a video.

    `merged`: the repo holds a whole model (merged or fully fine-tuned). `base_local`: the adapter's base was a local
    folder when trained, so the snippet asks for its path instead of naming a Hub id."""
    if merged:
        load = f'model = AutoModelForImageTextToText.from_pretrained("{repo_id}", dtype="auto", device_map="auto")'
        imports = "from transformers import AutoModelForImageTextToText"
    else:
        name = os.path.basename(os.path.normpath(base_model)) if base_local else base_model
        base_path = f"path/to/{name}" if base_local else base_model
        comment = f"# the base model was a local folder ({name}) when trained: pass its path\n" if base_local else ""
        load = (
            f'{comment}base = AutoModelForImageTextToText.from_pretrained("{base_path}", dtype="auto", '
            'device_map="auto")\n'
            f'model = PeftModel.from_pretrained(base, "{repo_id}")'
        )
        imports = "from peft import PeftModel\nfrom transformers import AutoModelForImageTextToText"
    return (
        f"{imports}\n\nfrom tpo_hf import VideoPreferenceProcessor\n\n{load}\n"
        f"# the processor keeps the frame sampling the model was trained with\nprocessor = "
        f'VideoPreferenceProcessor.from_pretrained("{repo_id}")\n'
        'answer = processor.generate(model, ["What happens after the person opens the door?"], ["video.mp4"],'
        " max_new_tokens=128)[0]\nprint(answer)"
    )


def _eval_result(result: EvalResult | dict[str, Any]) -> EvalResult:
    if isinstance(result, EvalResult):
        return result
    result = dict(result)
    result.setdefault("task_type", "video-text-to-text")
    return EvalResult(**result)


def _framework_versions() -> list[tuple[str, str]]:
    from importlib.metadata import PackageNotFoundError, version

    versions = [("tpo-hf", __version__)]
    for package in ("trl", "transformers", "peft", "torch", "datasets", "huggingface_hub"):
        try:
            versions.append((package, version(package)))
        except PackageNotFoundError:
            continue
    return versions


def is_local_path(name: str) -> bool:
    """Whether a model name is a local folder (here, now) or written as a path: never a Hub id the card can link."""
    return os.path.isdir(name) or os.path.isabs(name) or name.startswith((".", "~"))


def base_model_license(base_model: str | None) -> str | None:
    """The `license` of the base model's own card on the Hub, when it can be read (None offline or unknown)."""
    if not base_model or is_local_path(base_model):
        return None
    try:
        return ModelCard.load(base_model).data.license
    except Exception:  # offline, gated, no card: the license stays unknown rather than guessed
        return None


def build_model_card(
    *,
    repo_id: str,
    base_model: str | None,
    hyperparameters: dict[str, Any],
    metrics: dict[str, float],
    datasets: Iterable[str] | None = None,
    eval_results: Iterable[EvalResult | dict[str, Any]] | None = None,
    license: str | None = None,
    merged: bool = False,
    tags: Iterable[str] | None = None,
    plot_file: str | None = PLOT_FILE,
    model_name: str | None = None,
    full_fine_tune: bool = False,
    base_is_local: bool | None = None,
) -> ModelCard:
    """Renders `hub_cards/model_card.md` into a `ModelCard`.

    Args:
        repo_id: where the model lives (or will) on the Hub; used in the usage snippet and the `model-index`.
        base_model: Hub id of the base model, or the local folder it was loaded from (left out of the metadata: the
            Hub cannot link it).
        hyperparameters: e.g. from `trainer_hyperparameters(trainer)`.
        metrics: final metrics, e.g. from `final_metrics(trainer.state.log_history)`.
        datasets: Hub ids of the training datasets.
        eval_results: `EvalResult`s, or dicts of its arguments (`dataset_type`, `dataset_name`, `metric_type`,
            `metric_value`, ...; `task_type` defaults to "video-text-to-text"). They become the `model-index`.
        license: the base model's license when known (see `base_model_license`).
        merged: the repo holds merged weights (library `transformers`) rather than an adapter (library `peft`).
        plot_file: path in the repo of the training-curve PNG, or None when there is no plot.
        full_fine_tune: the run trained every weight (no adapter): a whole model (library `transformers`), which the
            card calls a full fine-tune, not a merged update.
        base_is_local: whether `base_model` was a local folder when trained (`tpo_card.json` records it); None
            decides now (`is_local_path`), which a relative path read from another folder gets wrong.
    """
    model_name = model_name or repo_id.split("/")[-1]
    if base_is_local is None:
        base_is_local = bool(base_model) and is_local_path(base_model)
    hub_base = base_model if base_model and not base_is_local else None
    whole_model = merged or full_fine_tune
    evals = [_eval_result(result) for result in eval_results or []]
    # Local folders cannot be linked or listed in Hub metadata; the card names them as text instead
    dataset_names = [name for name in datasets or [] if name and not os.path.exists(name)]
    local_datasets = [name for name in datasets or [] if name and os.path.exists(name)]
    all_tags = list(dict.fromkeys([*TPO_TAGS, *(tags or []), *([] if whole_model else ["lora"])]))
    card_data = ModelCardData(
        model_name=model_name,
        base_model=hub_base,
        datasets=dataset_names or None,
        library_name="transformers" if whole_model else "peft",
        pipeline_tag=PIPELINE_TAG,
        tags=all_tags,
        license=license,
        eval_results=evals or None,
    )
    # a rate recorded beside a frame count (runs before tpo-hf refused the pair) was never sampled with
    unused = {"video_fps"} if hyperparameters.get("num_frames") is not None else set()
    rows = [
        (_HYPERPARAMETER_NAMES.get(key, key), _format(value))
        for key, value in hyperparameters.items()
        if key not in ("loss_type", "loss_weights", *unused)
    ]
    results = [(name, _format(metrics[key])) for key, name in RESULT_METRICS.items() if key in metrics]
    if "train_loss" in metrics:
        results.append(("Average training loss", _format(metrics["train_loss"])))
    from huggingface_hub import constants

    return ModelCard.from_template(
        card_data,
        template_path=str(template_path("model_card.md")),
        model_name=model_name,
        base_model=hub_base or (os.path.basename(os.path.normpath(base_model)) if base_model else "the base model"),
        base_on_hub=hub_base is not None,
        base_local=bool(base_model) and base_is_local,
        hub_url=constants.ENDPOINT,
        merged=merged,
        full_fine_tune=full_fine_tune and not merged,
        dataset_names=dataset_names,
        local_datasets=local_datasets,
        # the fence is rendered here rather than in the template, so formatters do not read Jinja as Python
        usage_block="```python\n"
        + usage_snippet(repo_id, hub_base or base_model or "BASE_MODEL_ID", whole_model, base_is_local)
        + "\n```",
        hyperparameters={
            "loss_type": hyperparameters.get("loss_type"),
            "loss_weights": hyperparameters.get("loss_weights"),
        },
        hyperparameter_rows=rows,
        result_rows=results or [("Training steps run", str(hyperparameters.get("global_step", 0)))],
        plot_file=plot_file,
        eval_rows=[
            {
                "dataset_name": result.dataset_name,
                "metric_name": result.metric_name,
                "metric_type": result.metric_type,
                "metric_value": _format(result.metric_value),
            }
            for result in evals
        ],
        versions=_framework_versions(),
        citation=TPO_CITATION,
    )


def trainer_base_model(trainer: Any) -> str | None:
    """The base model a trainer fine-tuned: the adapter's `base_model_name_or_path`, else the model's name."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    peft_config = getattr(model, "peft_config", None)
    if peft_config:
        base = (peft_config.get("default") or next(iter(peft_config.values()))).base_model_name_or_path
        if base:
            return base
    return getattr(model.config, "_name_or_path", None) or None


def trainer_model_card(
    trainer: Any,
    repo_id: str | None = None,
    dataset_name: str | Sequence[str] | None = None,
    eval_results: Iterable[EvalResult | dict[str, Any]] | None = None,
    tags: Iterable[str] | None = None,
    license: str | None = None,
    plot_file: str | None = PLOT_FILE,
) -> ModelCard:
    """The model card of a trained `TPOTrainer`, from its args, its model's adapter config and its log history."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    peft_config = getattr(model, "peft_config", None)
    base_model = trainer_base_model(trainer)
    repo_id = repo_id or trainer.args.hub_model_id or os.path.basename(os.path.abspath(trainer.args.output_dir))
    datasets = [dataset_name] if isinstance(dataset_name, str) else list(dataset_name or [])
    return build_model_card(
        repo_id=repo_id,
        base_model=base_model,
        hyperparameters=trainer_hyperparameters(trainer),
        metrics=final_metrics(trainer.state.log_history),
        datasets=datasets,
        eval_results=eval_results,
        license=license if license is not None else base_model_license(base_model),
        full_fine_tune=not peft_config,
        tags=tags,
        plot_file=plot_file,
    )


def save_trainer_card(
    trainer: Any,
    output_dir: str | os.PathLike,
    repo_id: str | None = None,
    dataset_name: str | Sequence[str] | None = None,
    eval_results: Iterable[EvalResult | dict[str, Any]] | None = None,
    tags: Iterable[str] | None = None,
    license: str | None = None,
) -> ModelCard:
    """Writes `README.md`, the training-curve PNG and the run info (`tpo_card.json`, used by `tpo-hf push` to
    re-render the card for another repo or for merged weights) into `output_dir`."""
    import dataclasses
    import json

    from ..fingerprint import atomic_write_text
    from .plots import plot_training_curves

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Every file is written anew and renamed into place (as the weights are), so a hard-linked copy of the folder
    # (`cp -al`, rsnapshot backups) keeps its own card, run info and plot. matplotlib picks the format by
    # the name's ending.
    partial_plot = output_dir / f".{PLOT_FILE}.{os.getpid()}-{os.urandom(4).hex()}.png"
    try:
        plot = plot_training_curves(trainer.state.log_history, partial_plot)
        if plot:
            os.replace(partial_plot, output_dir / PLOT_FILE)
    finally:
        partial_plot.unlink(missing_ok=True)
    card = trainer_model_card(
        trainer, repo_id, dataset_name, eval_results, tags, license, plot_file=PLOT_FILE if plot else None
    )
    atomic_write_text(output_dir / "README.md", str(card))
    results = [
        {k: v for k, v in dataclasses.asdict(r).items() if v is not None} if isinstance(r, EvalResult) else dict(r)
        for r in eval_results or []
    ]
    base_model = trainer_base_model(trainer)
    model = trainer.accelerator.unwrap_model(trainer.model)
    info = {
        "base_model": base_model,
        # decided where the run loaded it: a relative path read by `tpo-hf push` from another folder is no Hub id
        "base_model_local_path": str(Path(base_model).expanduser().resolve())
        if base_model and is_local_path(base_model)
        else None,
        "full_fine_tune": not getattr(model, "peft_config", None),
        "datasets": card.data.datasets,
        "license": card.data.license,
        "tags": list(tags or []),
        "hyperparameters": trainer_hyperparameters(trainer),
        "metrics": final_metrics(trainer.state.log_history),
        "eval_results": results,
    }
    weights_hash = saved_adapter_hash(model, output_dir)
    if weights_hash is not None:
        info[WEIGHTS_HASH_KEY] = weights_hash
    atomic_write_text(output_dir / CARD_INFO_FILE, json.dumps(info, indent=2, default=str))
    return card


def readme_edited_after_save(adapter_dir: Path) -> Path | None:
    """The folder's README.md when it was changed after training wrote it (training writes README.md, then
    `tpo_card.json`, so the card it saved is never the newer one), else None."""
    readme, info = adapter_dir / "README.md", adapter_dir / CARD_INFO_FILE
    if not (readme.is_file() and info.is_file()):
        return None
    return readme if readme.stat().st_mtime > info.stat().st_mtime + 1 else None


def keep_edited_readme(output_dir: str | os.PathLike) -> Path | None:
    """Moves a README.md edited by hand since a run last wrote its card there (`readme_edited_after_save`: notes added
    to a stopped run's card before it is resumed) to `README.edited.md` (`README.edited.2.md`, ... where that is
    taken), with a warning naming both, so the cards the run writes do not replace the edit. Called as a training run
    starts: during its saves PEFT rewrites README.md in place before the run's card is written. Returns the new
    path."""
    output_dir = Path(output_dir)
    edited = readme_edited_after_save(output_dir)
    if edited is None:
        return None
    kept, number = output_dir / EDITED_README, 1
    while kept.exists():
        number += 1
        kept = output_dir / EDITED_README.replace(".md", f".{number}.md")
    os.replace(edited, kept)
    logger.warning(
        "%s was edited after the run wrote it (it is newer than %s): it is kept as %s, and the run writes its new "
        "card as %s. Carry your edit over into %s if it should stay in the card.",
        edited,
        CARD_INFO_FILE,
        kept,
        edited,
        edited,
    )
    return kept


def saved_adapter_hash(model: Any, output_dir: str | os.PathLike) -> str | None:
    """The sha256 of `output_dir/adapter_model.safetensors` when it holds `model`'s adapter weights as they are now
    (the final save, written just before its card), else None: a card written at a checkpoint save (TRL writes one
    into output_dir at each) describes weights that are not there, but the previous run's or none. A model without
    an adapter, or whose weights this process does not hold whole (sharded over ranks), is not checked."""
    from pathlib import Path

    weights = Path(output_dir) / ADAPTER_WEIGHTS_FILE
    if not getattr(model, "peft_config", None) or not weights.is_file():
        return None
    import torch
    from peft import get_peft_model_state_dict
    from safetensors import safe_open

    from ..fingerprint import file_content_hash

    if (
        torch.distributed.is_available()
        and torch.distributed.is_initialized()
        and torch.distributed.get_world_size() > 1
    ):
        # the card is written by the main process alone: gathering sharded (FSDP) weights here would wait for ranks
        # that never come, so a multi-process run records no hash (and its push checks none)
        return None
    current = get_peft_model_state_dict(model)
    try:
        with safe_open(str(weights), framework="pt") as saved:
            if set(saved.keys()) != set(current):
                return None
            for key, tensor in current.items():
                if not torch.equal(saved.get_tensor(key), tensor.detach().to("cpu")):
                    return None
    except Exception:  # unreadable (cut short): `tpo-hf push` names it by `check_weights`
        return None
    return file_content_hash(weights)
