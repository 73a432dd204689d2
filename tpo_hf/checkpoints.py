"""Stage 4 of the flow (training): checkpoints that a kill cannot leave half-written, and resuming from them.

`Trainer` writes a checkpoint's weights, optimizer and state one file after the other, and rotates old checkpoints
out right after: a kill during a save (preemption, out of memory) can leave a newest `checkpoint-N` that looks
resumable but is not, with the older complete ones already deleted. `TPOTrainer` therefore writes a completion
file last into every checkpoint, rotates only after it, and resumes only from a folder that holds it
(`resume_from_checkpoint=True` picks the newest such folder and removes the interrupted ones above it).

A checkpoint is resumed from only when the files a resume needs are there (state, optimizer and scheduler unless the
run saved only the model, weights) and read back (safetensors headers and lengths, whole torch archives: a damaged
newest one falls back to the previous complete one, with a warning) and when it was trained with the run's settings
and data (`check_resume_settings`: video and LoRA settings, every training argument but those a resume may change
-- where outputs, logs and saves go, how far to train, how data is loaded and devices used --, the number of processes,
the base model, the chat template and video prompt layout, the training rows' count and hash and their video files'
sizes and times; the changes are named, and `TPO_HF_RESUME_CHANGED=1` resumes anyway -- except for learning-rate,
schedule and optimizer hyperparameters, which a restored optimizer and scheduler would not apply). How far to train
may change, but with a decaying schedule (cosine, linear) that mixes two schedules, which is warned about by name.
A bare `checkpoint-N` not found from the current folder is read in output_dir; a full fine-tune's weights are loaded
with the model's key conversion (`load_full_weights`), a checkpoint whose weights do not fit the model refused.
A save that fails for lack of disk space says so, naming the folder.
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .fingerprint import (
    atomic_path,
    atomic_write_json,
    file_content_hash,
    key_hash,
    legacy_model_files,
    model_files,
    model_identity,
    no_space_left,
    same_model,
)

logger = logging.getLogger(__name__)

# Written last into every checkpoint folder: only a folder holding it is a complete checkpoint to resume from.
CHECKPOINT_COMPLETE_FILE = "tpo_checkpoint_complete.json"
BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False, "": False}
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# Set to 1 to resume from a checkpoint trained with other settings (the changes are then only warned about).
RESUME_CHANGED_ENV = "TPO_HF_RESUME_CHANGED"
# The completion record's sha256 of each adapter weights file, as saved: a resume from weights replaced since (a copy
# from another run's folder) is refused by name (`check_saved_weights`)
WEIGHTS_RECORD = "adapter_weights_sha256"
# Settings that a resume cannot change even with TPO_HF_RESUME_CHANGED=1: the optimizer's hyperparameters come back
# with its restored state and the learning-rate schedule with the restored scheduler (base rates and step), so a new
# value would not (or only partly) take effect while the model card reported it.
RESUME_FIXED_SETTINGS = (
    "learning_rate",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_ratio",
    "warmup_steps",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
)
# Learning-rate schedules that do not depend on how far the run trains: the others (linear, cosine, polynomial, ...)
# decay over max_steps, so a resume that changes it mixes two schedules (`schedule_horizon_change`)
HORIZON_FREE_SCHEDULERS = ("constant", "constant_with_warmup", "inverse_sqrt", "reduce_lr_on_plateau")
# The training arguments a resume may change: where outputs, logs, saves, pushes and evaluations go and how often, how
# far to train (a larger max_steps / num_train_epochs trains further), and how the same steps are run (data loading,
# devices and launcher, compilation, kernels, memory savers, video root: the videos are compared by their files).
# Every other field of the run's config -- new TRL / transformers fields included -- changes what trains and is
# compared (`resume_compared_settings`), so a loss option added upstream is refused when changed, not mixed silently.
RESUME_FREE_SETTINGS = frozenset(
    {
        # outputs, logs, saves, pushes
        "output_dir",
        "overwrite_output_dir",
        "resume_from_checkpoint",
        "ignore_data_skip",
        "restore_callback_states_from_checkpoint",
        "enable_jit_checkpoint",
        "run_name",
        "project",
        "report_to",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "disable_tqdm",
        "skip_memory_metrics",
        "include_num_input_tokens_seen",
        "include_tokens_per_second",
        "push_to_hub",
        # evaluation
        "do_train",
        "do_eval",
        "do_predict",
        "per_device_eval_batch_size",
        "per_gpu_eval_batch_size",
        "prediction_loss_only",
        "batch_eval_metrics",
        "include_for_metrics",
        "include_inputs_for_metrics",
        "metric_for_best_model",
        "greater_is_better",
        "load_best_model_at_end",
        "bf16_full_eval",
        "fp16_full_eval",
        "label_names",
        "evaluation_strategy",
        "generate_during_eval",
        # how far to train
        "num_train_epochs",
        "max_steps",
        # data loading
        "dataloader_num_workers",
        "dataloader_pin_memory",
        "dataloader_persistent_workers",
        "dataloader_prefetch_factor",
        "dataloader_multiprocessing_context",
        "dataloader_in_order",
        "dataset_num_proc",
        "precompute_ref_log_probs",
        "precompute_ref_batch_size",
        "remove_unused_columns",
        "length_column_name",
        "video_root",
        # devices, launcher, compilation, kernels, memory
        "use_cpu",
        "no_cuda",
        "use_mps_device",
        "local_rank",
        "deepspeed",
        "fsdp",
        "fsdp_config",
        "fsdp_min_num_params",
        "fsdp_transformer_layer_cls_to_wrap",
        "accelerator_config",
        "parallelism_config",
        "tpu_num_cores",
        "tpu_metrics_debug",
        "debug",
        "tf32",
        "full_determinism",
        "trust_remote_code",
        "use_cache",
        "use_liger_kernel",
        "liger_kernel_config",
        "activation_checkpointing",
        "activation_checkpointing_kwargs",
        "gradient_checkpointing",
        "gradient_checkpointing_kwargs",
        "activation_offloading",
        "torch_empty_cache_steps",
        "share_video_encoding",
        "prefix_sharing",
        "prefix_sharing_attention",
    }
)
# Families of such fields, by prefix (`hub_model_id`, `logging_steps`, `save_total_limit`, `eval_steps`, `ddp_timeout`,
# `torch_compile_mode`, `trackio_space_id`, `push_to_hub_model_id`, ...)
RESUME_FREE_PREFIXES = ("hub_", "logging_", "save_", "eval_", "ddp_", "torch_compile", "trackio_", "push_to_hub_")
# The columns whose values identify a training dataset (recorded in every checkpoint, compared on resume)
DATASET_IDENTITY_COLUMNS = ("prompt", "chosen", "rejected", "video")
# adapter_config.json field -> the `tpo-hf train` flag that sets it (trl.ModelConfig)
LORA_SETTINGS = {
    "r": "lora_r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "target_modules": "lora_target_modules",
    "modules_to_save": "lora_modules_to_save",
    "use_dora": "use_dora",
    "use_rslora": "use_rslora",
}
# Where a checkpoint keeps its weights: the adapter beside `adapter_config.json`, else the model (one file or an index)
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MODEL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# What each file a resume needs holds, for the message when it is missing
NEEDED_FILES = {
    "trainer_state.json": "the step, epoch and log history to resume from",
    "optimizer.pt": "the optimizer's state: without it Adam's moments start again from zero",
    "scheduler.pt": "the learning-rate schedule's position: without it the schedule starts again",
    "adapter_model.safetensors": "the adapter weights, beside adapter_config.json",
    "model.safetensors": "the model weights",
}
# A base model's files that hold its weights and architecture (the others, tokenizer and processor files, change
# what the chat template / video prompt check already names)
BASE_WEIGHT_FILES = ("*.safetensors", "*.bin", "*.index.json", "config.json")


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from: a damaged file, or settings other than the run's (named)."""


class CheckpointSaveError(OSError):
    """A save of the training run -- a checkpoint, or the trained model at the end -- that failed because the disk is
    full (names the folder and what can be resumed)."""


def checkpoint_step(folder: str | os.PathLike) -> int:
    """The step N of a `checkpoint-N` folder, -1 for any other folder."""
    match = _CHECKPOINT_RE.match(os.path.basename(os.path.normpath(folder)))
    return int(match.group(1)) if match else -1


def checkpoint_is_complete(folder: str | os.PathLike) -> bool:
    """A checkpoint folder is complete when its completion file is there, or (checkpoints written before tpo-hf
    marked them) when its `trainer_state.json`, written after the weights and optimizer, reads back."""
    if os.path.isfile(os.path.join(folder, CHECKPOINT_COMPLETE_FILE)):
        return True
    try:
        with open(os.path.join(folder, "trainer_state.json")) as handle:
            return isinstance(json.load(handle).get("global_step"), int)
    except (OSError, ValueError, AttributeError):
        return False


def latest_complete_checkpoint(
    output_dir: str | os.PathLike, below: int | None = None
) -> tuple[str | None, list[str]]:
    """(the newest complete `checkpoint-N` in `output_dir` with N < `below`, the incomplete ones newer than it)."""
    if not os.path.isdir(output_dir):
        return None, []
    steps = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := _CHECKPOINT_RE.match(name))
        and os.path.isdir(os.path.join(output_dir, name))
        and (below is None or int(match.group(1)) < below)
    )
    incomplete = []
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        if checkpoint_is_complete(path):
            return path, incomplete
        incomplete.append(path)
    return None, incomplete


def incomplete_weights(path: str | Path) -> str | None:
    """Why a weights file is not whole (a kill or a full disk during its save), or None when it reads as complete.

    A `*.safetensors` file: its header (8-byte length, then JSON) must read and the file must end exactly where its
    last tensor does. A `*.bin` file in torch's zip format: its zip directory (written last) must be there. Reads
    the header only, never the tensors."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        if path.name.endswith(".safetensors"):
            head = handle.read(8)
            if len(head) < 8:
                return f"{size} bytes, shorter than a safetensors header"
            length = int.from_bytes(head, "little")
            if 8 + length > size:
                return f"its header says {length} bytes of metadata but the file has {size} bytes"
            try:
                header = json.loads(handle.read(length))
                end = max(
                    (int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"),
                    default=0,
                )
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
                return f"its header does not read ({type(error).__name__}: {error})"
            if 8 + length + end != size:
                return f"its tensors end at byte {8 + length + end} but the file has {size} bytes"
        elif path.name.endswith(".bin") and handle.read(2) == b"PK":
            if not zipfile.is_zipfile(path):
                return f"a torch zip file of {size} bytes without its zip directory"
    return None


def _saved_only_model(folder: Path) -> bool:
    """Whether the run that saved `folder` saved only the model (`save_only_model`: no optimizer, scheduler, RNG)."""
    recorded = (_read_json(str(folder / CHECKPOINT_COMPLETE_FILE)) or {}).get("save_only_model")
    if isinstance(recorded, bool):
        return recorded
    if (folder / "training_args.bin").is_file():  # a checkpoint saved before tpo-hf recorded it
        try:
            import torch

            return bool(
                getattr(torch.load(folder / "training_args.bin", weights_only=False), "save_only_model", False)
            )
        except Exception:
            pass
    return False


def missing_file(folder: str | os.PathLike) -> str | None:
    """The name of a file that a resume from the checkpoint `folder` needs and that is not there, or None:
    `trainer_state.json`; the optimizer and scheduler states, unless the run saved only the model (DeepSpeed keeps
    both in its `global_step*` folder); the adapter weights beside `adapter_config.json`, else the model weights, and
    every shard their index lists (DeepSpeed and FSDP keep the weights in their own files)."""
    folder = Path(folder)
    names = {path.name for path in folder.iterdir()}
    deepspeed = any(name.startswith("global_step") for name in names)
    if "trainer_state.json" not in names:
        return "trainer_state.json"
    if not deepspeed and not _saved_only_model(folder):
        if not any(name.startswith("optimizer") for name in names):  # optimizer.pt, FSDP's optimizer.bin / _0
            return "optimizer.pt"
        if "scheduler.pt" not in names:
            return "scheduler.pt"
    if deepspeed or any(name.startswith("pytorch_model_fsdp") for name in names):
        return None
    weights = ADAPTER_WEIGHTS if "adapter_config.json" in names else MODEL_WEIGHTS
    present = [name for name in weights if name in names]
    if not present:
        return weights[0]
    for index in (name for name in present if name.endswith(".index.json")):
        shards = ((_read_json(str(folder / index)) or {}).get("weight_map") or {}).values()
        missing = sorted(set(shards) - names)
        if missing:
            return missing[0]
    return None


def damaged_file(folder: str | os.PathLike) -> tuple[str, str] | None:
    """(path, why) of the first file of a checkpoint folder that is missing (`missing_file`; why starts with
    "missing") or cannot be read back -- a safetensors file with a wrong header or length, a torch file (`.pt`,
    `.pth`, `.bin`) that is not a whole archive -- or None."""
    missing = missing_file(folder)
    if missing is not None:
        what = NEEDED_FILES.get(missing, "a weights shard its index lists")
        return str(Path(folder) / missing), f"missing ({what})"
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file():
            continue
        if path.suffix == ".safetensors":
            why = incomplete_weights(path)  # the one header check, also push's and eval's
        elif path.suffix in (".pt", ".pth", ".bin"):
            why = None if zipfile.is_zipfile(path) else "truncated: not a whole torch archive"
        else:
            continue
        if why is not None:
            return str(path), why
    return None


def _named(damage: tuple[str, str]) -> str:
    """`"<path> is missing (...)"` or `"<path> is damaged (<why>)"` for a `damaged_file` answer."""
    path, why = damage
    return f"{path} is {why}" if why.startswith("missing") else f"{path} is damaged ({why})"


def _readable_checkpoint(output_dir: str | os.PathLike, latest: str | None) -> tuple[str | None, list[str]]:
    """(the newest complete checkpoint from `latest` down whose files are all there and read back, the damaged ones
    above it)."""
    damaged = []
    while latest is not None and (damage := damaged_file(latest)) is not None:
        damaged.append(latest)
        latest, _ = latest_complete_checkpoint(output_dir, below=checkpoint_step(latest))
        logger.warning(
            "Checkpoint %s cannot be resumed from: %s. %s",
            damaged[-1],
            _named(damage),
            f"Falling back to {latest}, the previous complete checkpoint." if latest else "",
        )
    return latest, damaged


def resolve_checkpoint(
    resume_from_checkpoint: str | bool | None, output_dir: str | os.PathLike, should_save: bool
) -> str | None:
    """`True` -> the newest complete checkpoint of `output_dir` whose files read back (incomplete newer ones, left
    by a kill during a save, and damaged ones, named with their file, are removed by the process that saves); a
    path -> checked to be complete and readable.

    Raises:
        ValueError: no complete checkpoint to resume from, naming the newest complete one where there is one.
        CheckpointError: the checkpoint given (or every complete one) has a damaged file, named with the previous
            complete checkpoint to pass instead.
    """
    if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.strip().lower() in BOOLEAN_WORDS:
        # `--resume_from_checkpoint true` arrives as a string (TrainingArguments types it `str`)
        resume_from_checkpoint = BOOLEAN_WORDS[resume_from_checkpoint.strip().lower()]
    if resume_from_checkpoint in (None, False):
        return None
    if resume_from_checkpoint is True:
        latest, incomplete = latest_complete_checkpoint(output_dir)
        if incomplete and should_save:
            for path in incomplete:
                logger.warning("Removing %s: its save was interrupted (no %s).", path, CHECKPOINT_COMPLETE_FILE)
                shutil.rmtree(path, ignore_errors=True)
        newest = latest
        latest, damaged = _readable_checkpoint(output_dir, latest)
        if newest is not None and latest is None:
            damage = damaged_file(newest) or ("a file", "unreadable")
            raise CheckpointError(
                f"resume_from_checkpoint=True but the newest complete checkpoint {newest} cannot be resumed from: "
                f"{_named(damage)}, and no older complete checkpoint with all its files whole is left in "
                f"{output_dir}; train from scratch by leaving resume_from_checkpoint unset."
            )
        if damaged and should_save:  # the resumed run saves these steps again
            for path in damaged:
                logger.warning("Removing %s: a file of it is missing or damaged (see above).", path)
                shutil.rmtree(path, ignore_errors=True)
        if latest is None:
            raise ValueError(
                f"resume_from_checkpoint=True but {output_dir} holds no complete checkpoint"
                f"{f' ({len(incomplete)} interrupted one(s) removed)' if incomplete else ''}; train from scratch "
                "by leaving resume_from_checkpoint unset."
            )
        logger.info("Resuming from %s, the newest complete checkpoint", latest)
        return latest
    given = os.fspath(resume_from_checkpoint)
    in_output_dir = os.path.join(output_dir, given)
    if not os.path.exists(given) and not os.path.isabs(given) and os.path.isdir(in_output_dir):
        # `checkpoint-2` as `ls output_dir` shows it: a relative path not found from the current folder
        logger.warning("Resuming from %s (%s read relative to output_dir).", in_output_dir, given)
        given = resume_from_checkpoint = in_output_dir
    if not os.path.exists(given):
        latest, _ = latest_complete_checkpoint(output_dir)
        raise ValueError(
            f"Checkpoint {given} does not exist"
            + ("" if os.path.isabs(given) else f" (read relative to the current folder {os.getcwd()})")
            + ". "
            + (
                f"The newest complete checkpoint of output_dir is {latest}: pass that path, or "
                "resume_from_checkpoint=True to pick it."
                if latest
                else f"output_dir {output_dir} holds no complete checkpoint either: pass the checkpoint's path."
            )
        )
    if not checkpoint_is_complete(given):
        latest, _ = latest_complete_checkpoint(os.path.dirname(os.path.abspath(given)))
        raise ValueError(
            f"Checkpoint {given} is incomplete (its save was interrupted) or not a checkpoint. "
            + (
                f"The newest complete one is {latest}: pass that path, or resume_from_checkpoint=True to pick it."
                if latest
                else "No complete checkpoint is beside it: pass another checkpoint's path."
            )
        )
    damage = damaged_file(resume_from_checkpoint)
    if damage is not None:
        parent = os.path.dirname(os.path.abspath(resume_from_checkpoint))
        previous, _ = latest_complete_checkpoint(parent, below=checkpoint_step(resume_from_checkpoint))
        previous, _ = _readable_checkpoint(parent, previous)
        raise CheckpointError(
            f"Checkpoint {resume_from_checkpoint} cannot be resumed from: {_named(damage)}. "
            + (
                f"Resume from the previous complete checkpoint: --resume_from_checkpoint {previous}"
                if previous
                else f"No older complete checkpoint is left in {parent}: train from scratch."
            )
        )
    return str(resume_from_checkpoint)


def holds_full_weights(folder: str | os.PathLike) -> bool:
    """Whether the checkpoint `folder` holds a full model's weights (`MODEL_WEIGHTS`), not a LoRA adapter's."""
    names = set(os.listdir(folder))
    return "adapter_config.json" not in names and any(name in names for name in MODEL_WEIGHTS)


def load_full_weights(model: Any, checkpoint: str | os.PathLike) -> None:
    """Loads the model weights of a full fine-tune's `checkpoint` into `model`, in place (its parameters stay the
    ones the optimizer and devices hold), read as `from_pretrained` reads them.

    A checkpoint is saved in the model's original key layout (`save_pretrained` reverts the key conversion of
    transformers 5, e.g. `model.layers.*` for a model holding `model.language_model.layers.*`), which
    `Trainer._load_from_checkpoint`'s plain `load_state_dict` matched none of: it only logged "missing keys" and
    training went on from the base weights. `from_pretrained` of the model's class applies the conversion.

    Raises:
        CheckpointError: a weight of the model is missing from the checkpoint, the checkpoint holds weights the
            model has not, or one has another shape (named: the checkpoint is of another model).
    """
    import torch

    loaded, info = type(model).from_pretrained(os.fspath(checkpoint), output_loading_info=True)
    state = loaded.state_dict()
    names = model.state_dict().keys()  # the run's model, which may differ from its class built from the checkpoint
    problems = {
        "missing from the checkpoint": sorted(set(info.get("missing_keys") or ()) | (names - state.keys())),
        "not in the model": sorted(set(info.get("unexpected_keys") or ()) | (state.keys() - names)),
        "of another shape": sorted(str(item[0]) for item in info.get("mismatched_keys") or ()),
    }
    named = [
        f"{len(keys)} {what} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})"
        for what, keys in problems.items()
        if keys
    ]
    if named:
        raise CheckpointError(
            f"Cannot resume from {checkpoint}: its weights do not match the model being trained (weights "
            f"{'; '.join(named)}): it is a checkpoint of another model or architecture. Resume from a checkpoint of "
            "this run, or train into another output_dir."
        )
    with torch.no_grad():
        model.load_state_dict(state, strict=True)
    del loaded, state
    logger.info("Loaded the model weights of %s.", checkpoint)


def save_complete_checkpoint(trainer: Any, save: Callable[[], None], trial: Any) -> None:
    """Runs `save` (the `Trainer._save_checkpoint` of `trainer`), then marks the new checkpoint complete.

    Old checkpoints are rotated out only after the new one is marked complete, so a kill at any moment leaves at
    least one complete checkpoint behind.
    """
    args = trainer.args
    limit = args.save_total_limit
    args.save_total_limit = None
    run_dir = trainer._get_output_dir(trial=trial)
    folder = os.path.join(run_dir, f"checkpoint-{trainer.state.global_step}")
    if args.should_save and os.path.isfile(os.path.join(folder, CHECKPOINT_COMPLETE_FILE)):
        # saved again (a resume from an older checkpoint): complete only once this save is
        os.unlink(os.path.join(folder, CHECKPOINT_COMPLETE_FILE))
    try:
        save()
    except Exception as error:
        raise_if_disk_full(error, folder)
        raise
    finally:
        args.save_total_limit = limit
    trainer.accelerator.wait_for_everyone()
    if args.should_save and os.path.isdir(folder):
        record = {"global_step": trainer.state.global_step, **_run_record(trainer)}
        weights = [name for name in ADAPTER_WEIGHTS if os.path.isfile(os.path.join(folder, name))]
        if weights:
            record[WEIGHTS_RECORD] = {name: file_content_hash(os.path.join(folder, name)) for name in weights}
        atomic_write_json(Path(folder) / CHECKPOINT_COMPLETE_FILE, record)
        if limit is not None:
            from transformers.trainer_utils import rotate_checkpoints

            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=limit,
                best_model_checkpoint=trainer.state.best_model_checkpoint,
                use_mtime=False,
            )


def check_saved_weights(checkpoint: str | os.PathLike) -> None:
    """Refuses to resume from `checkpoint` when an adapter weights file in it is not the one the run saved there (its
    sha256 is not the one its completion record holds): replaced or modified since, e.g. by a copy from another run's
    folder, the resumed run would train on from other weights. With `TPO_HF_RESUME_CHANGED=1` it is only warned about.
    Checkpoints saved before tpo-hf recorded the hashes are not checked.

    Raises:
        CheckpointError: naming the file, both hashes and the ways on.
    """
    recorded = (_read_json(os.path.join(checkpoint, CHECKPOINT_COMPLETE_FILE)) or {}).get(WEIGHTS_RECORD)
    if not isinstance(recorded, dict):
        return
    for name, saved in recorded.items():
        path = os.path.join(checkpoint, name)
        if not os.path.isfile(path):  # a missing file is named by `missing_file`
            continue
        current = file_content_hash(path)
        if current == saved:
            continue
        changed = (
            f"{path} is not the file the run saved there (sha256 {current[:12]}..., where {CHECKPOINT_COMPLETE_FILE} "
            f"records {str(saved)[:12]}...): it was replaced or modified since, e.g. copied from another run"
        )
        if os.environ.get(RESUME_CHANGED_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
            logger.warning("Resuming from %s anyway (%s=1): %s.", checkpoint, RESUME_CHANGED_ENV, changed)
            continue
        parent = os.path.dirname(os.path.abspath(checkpoint))
        previous, _ = latest_complete_checkpoint(parent, below=checkpoint_step(checkpoint))
        raise CheckpointError(
            f"Cannot resume from {checkpoint}: {changed}, so the resumed run would train on from other weights. "
            + (f"Resume from another checkpoint (--resume_from_checkpoint {previous}), " if previous else "")
            + f"put the saved file back, or set {RESUME_CHANGED_ENV}=1 to resume from these weights anyway."
        )


def unshare_hard_links(folder: str | os.PathLike) -> None:
    """Gives each file directly in `folder` that is hard-linked elsewhere (`cp -al`, rsnapshot backups) a copy
    of its own (same content and times), before a save writes into the folder: PEFT, transformers and torch write
    configs, the PEFT card and `training_args.bin` in place, which would change the linked copy too. safetensors
    files are left linked: safetensors writes a new file; so are hidden ones (the run's lock file, held by inode)."""
    if not os.path.isdir(folder):
        return
    for entry in os.scandir(folder):
        if entry.name.startswith(".") or entry.name.endswith(".safetensors"):
            continue
        if entry.is_file(follow_symlinks=False):
            if entry.stat(follow_symlinks=False).st_nlink > 1:
                with atomic_path(entry.path) as temporary:
                    shutil.copy2(entry.path, temporary)


def raise_if_disk_full(error: BaseException, folder: str | os.PathLike) -> None:
    """Raises `CheckpointSaveError` naming `folder` when `error`, raised while saving into it, came from a full disk
    (`no_space_left`)."""
    full = no_space_left(error, folder)
    if full is None:
        return
    latest, _ = latest_complete_checkpoint(os.path.dirname(os.path.abspath(folder)), below=checkpoint_step(folder))
    raise CheckpointSaveError(
        f"Saving checkpoint {folder} failed: {full} [{type(error).__name__}: {error}]. Free space (or keep fewer "
        "checkpoints: save_total_limit), then "
        + (
            f"rerun with --resume_from_checkpoint true to resume from {latest} (the checkpoint cut short is removed)."
            if latest
            else "rerun: no checkpoint was complete yet, so training starts over."
        )
    ) from error


def _file_states(folder: str | os.PathLike) -> dict[str, tuple[int, int, int]]:
    """name -> (inode, size, modification time) of the files directly in `folder`, less hidden ones (its lock file)."""
    if not os.path.isdir(folder):
        return {}
    states = {}
    for entry in os.scandir(folder):
        if not entry.name.startswith(".") and entry.is_file(follow_symlinks=False):
            stat = entry.stat(follow_symlinks=False)
            states[entry.name] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return states


def save_final_model(
    trainer: Any, save: Callable[[], None], output_dir: str | os.PathLike, not_saving: tuple[type, ...] = ()
) -> None:
    """Runs `save` (the trained model's save into `output_dir`, at the end of training). When the disk fills up, the
    files it had written are removed -- a README beside a cut-short adapter looks like a trained model -- and
    `CheckpointSaveError` names the folder and what can be resumed instead of safetensors' traceback. Errors of the
    `not_saving` types (an upload's after the save) go through as they are, the saved files kept."""
    before = _file_states(output_dir) if trainer.args.should_save else {}
    try:
        save()
    except Exception as error:
        full = None if isinstance(error, not_saving) else no_space_left(error, output_dir)
        if full is None:
            raise
        written = []
        if trainer.args.should_save:
            written = sorted(name for name, state in _file_states(output_dir).items() if before.get(name) != state)
            for name in written:
                os.unlink(os.path.join(output_dir, name))
        latest, _ = latest_complete_checkpoint(output_dir)
        steps = trainer.state.global_step
        raise CheckpointSaveError(
            f"Saving the trained model to {output_dir} failed: {full} [{type(error).__name__}: {error}]"
            + (f"; the files it had written are removed ({', '.join(written)})" if written else "")
            + ". Free space (or pick another output_dir), then "
            + (
                f"rerun with --resume_from_checkpoint true to resume from {latest} (step {checkpoint_step(latest)} "
                f"of {steps}) and save the model again."
                if latest
                else f"rerun: no checkpoint was saved, so the {steps} trained step(s) are lost."
            )
        ) from error


def dataset_identity(dataset: Any, batch_rows: int = 1024) -> dict[str, Any] | None:
    """What identifies a training dataset for resuming: its row count and a sha256 of its rows' prompt, chosen,
    rejected and video values (in order); None for a dataset without a length (an iterable one)."""
    import hashlib

    try:
        rows = len(dataset)
    except TypeError:
        return None
    names = getattr(dataset, "column_names", None) or []
    columns = [name for name in DATASET_IDENTITY_COLUMNS if name in names]
    digest = hashlib.sha256(json.dumps(columns).encode())
    if hasattr(dataset, "select_columns") and hasattr(dataset, "with_format"):
        table = dataset.select_columns(columns).with_format("arrow")  # undecoded (videos stay paths), in row order
        for start in range(0, rows, batch_rows):
            batch = table[start : start + batch_rows].to_pylist()
            digest.update(json.dumps(batch, sort_keys=True, default=repr).encode())
    else:
        for index in range(rows):
            row = dataset[index]
            digest.update(json.dumps({name: row.get(name) for name in columns}, sort_keys=True, default=repr).encode())
    return {"rows": rows, "sha256": digest.hexdigest()}


def video_files(dataset: Any, resolve: Callable[[str], str], batch_rows: int = 4096) -> dict[str, str] | None:
    """video value -> `video_file_identity` of its local file (size and content hash, read once per file version;
    `missing` for a local file not there), for each distinct local video of a training dataset; None without a
    `video` column or a length. A clip replaced, repaired or re-encoded under the same name keeps the rows' values but
    changes this; a copy (`cp -r`, a restore from a backup) does not. Records written before content hashing hold
    `size:mtime_ns` (`same_video_file` accepts those of untouched files)."""
    names = getattr(dataset, "column_names", None) or []
    if "video" not in names:
        return None
    try:
        rows = len(dataset)
    except TypeError:
        return None
    videos: set[str] = set()
    if hasattr(dataset, "select_columns") and hasattr(dataset, "with_format"):
        table = dataset.select_columns(["video"]).with_format("arrow")  # the paths, never decoded
        for start in range(0, rows, batch_rows):
            videos.update(v for v in table[start : start + batch_rows]["video"].to_pylist() if isinstance(v, str))
    else:
        videos.update(v for index in range(rows) if isinstance(v := dataset[index].get("video"), str))
    stamps = {}
    from .video import video_file_identity

    for video in sorted(videos):
        path = resolve(video)
        if "://" not in path:  # a URL's server is not asked at each checkpoint
            stamps[video] = video_file_identity(path)
    return stamps


def base_model_record(model: Any) -> dict[str, Any] | None:
    """The base model a run trains: its name (`config._name_or_path`), identity (`fingerprint.model_identity`: a
    local folder by its weight / config / tokenizer files, a Hub id by the commit it was loaded from) and, for a
    folder, each of those files' size and content hash (`model_files`); None for a model built in memory (no name)."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(model, "config", None)
    name = getattr(config, "_name_or_path", None)
    if not name:
        return None
    name = os.fspath(name)
    record = {"name": name, "identity": model_identity(name, getattr(config, "_commit_hash", None))}
    if os.path.isdir(name):
        record["files"] = model_files(name)
    return record


def _content_keyed(files: dict[str, Any]) -> bool:
    """Whether a base model's recorded files (`model_files`) are keyed by content (`size:sha256:...`), as since
    content hashing; records written before hold `size:mtime_ns`."""
    return all(isinstance(value, str) and ":sha256:" in value for value in files.values())


def checkpoint_record(trainer: Any) -> dict[str, Any]:
    """What a checkpoint records of its run beside `training_args.bin` (into its completion file; compared on
    resume): the training rows (`dataset_identity`) and their video files (`video_files`), the base model
    (`base_model_record`), a hash of the processor's chat template, the number of processes and the global batch
    (rows per optimizer step), and whether the run saved only the model."""
    args = trainer.args
    processor = trainer.video_processor
    template = getattr(processor.processor, "chat_template", None)
    return {
        "dataset": getattr(trainer, "dataset_identity", None),
        "videos": video_files(trainer.train_dataset, processor.resolve_video),
        "base_model": base_model_record(trainer.model),
        "chat_template": None if template is None else key_hash(template),
        "world_size": args.world_size,
        "global_batch_size": args.world_size * args.per_device_train_batch_size * args.gradient_accumulation_steps,
        "save_only_model": bool(args.save_only_model),
    }


def _run_record(trainer: Any) -> dict[str, Any]:
    """`checkpoint_record` of `trainer`, as taken when its `train()` started (`check_resume_settings`)."""
    record = getattr(trainer, "_tpo_checkpoint_record", None)
    if record is None:
        record = trainer._tpo_checkpoint_record = checkpoint_record(trainer)
    return record


def _prompt_change(trainer: Any, checkpoint: str | os.PathLike, recorded: dict[str, Any]) -> str | None:
    """`"chat template sha256 a -> b (...)"` or `"video prompt layout ...'x' -> ...'y'"` when the run's processor
    writes the prompt otherwise than the checkpoint's did: its chat template (hash in the completion record) or the
    video prompt layout (`tpo_video_config.json`, what the model reads around its frames); None when the same."""
    processor = trainer.video_processor
    current = _run_record(trainer).get("chat_template")
    template_changed = "chat_template" in recorded and recorded["chat_template"] != current
    saved = _read_json(os.path.join(checkpoint, "tpo_video_config.json")) or {}
    old_layout = saved.get("video_prompt_layout")
    new_layout = processor.video_prompt_layout() if isinstance(old_layout, str) else None
    layout = ""
    if isinstance(old_layout, str) and old_layout != new_layout:
        start = len(os.path.commonprefix([old_layout, new_layout]))
        context = slice(max(0, start - 20), start + 60)
        layout = f"...{old_layout[context]!r} -> ...{new_layout[context]!r}"
    if template_changed:
        return f"chat template sha256 {str(recorded['chat_template'])[:12]} -> {str(current)[:12]}" + (
            f" (the video prompt: {layout})" if layout else ""
        )
    if layout:
        import transformers

        then = saved.get("transformers_version")
        return f"video prompt layout {layout} " + (
            f"(transformers {then} then, {transformers.__version__} now)"
            if then and then != transformers.__version__
            else "(tokenizer or processor files changed)"
        )
    return None


def _base_model_change(recorded: Any, current: dict[str, Any] | None, prompt_changed: bool) -> str | None:
    """`"base model A -> B"` (another model), `"base model A: model.safetensors changed since the checkpoint"` (its
    files changed) or `"base model id@commit:x -> id@commit:y"`; None when the same or either side unknown. Where the
    chat template / video prompt change is named already, the base model's tokenizer and processor files are not
    named again."""
    if not isinstance(recorded, dict) or current is None:
        return None
    if same_model(recorded.get("identity"), current["name"], current["identity"]):
        return None
    import fnmatch

    old_files, new_files = recorded.get("files"), current.get("files")
    if isinstance(old_files, dict) and new_files is not None and not _content_keyed(old_files):
        new_files = legacy_model_files(current["name"])  # a record written before content hashing: sizes and times
    if isinstance(old_files, dict) and new_files is not None:
        changed = sorted(
            name for name in old_files.keys() | new_files.keys() if old_files.get(name) != new_files.get(name)
        )
        if prompt_changed:
            changed = [name for name in changed if any(fnmatch.fnmatch(name, p) for p in BASE_WEIGHT_FILES)]
        if not changed:
            return None
        if recorded.get("name") == current["name"]:
            return f"base model {current['name']}: {', '.join(changed)} changed since the checkpoint"
    if recorded.get("name") != current["name"]:
        return f"base model {recorded.get('name')} -> {current['name']}"
    return f"base model {recorded.get('identity')} -> {current['identity']}"


def _file_change(old: str, new: str, path: str | None = None) -> str:
    """`"30672 -> 30068 bytes"`, `"same size, other content (sha256 1a2b... -> 3c4d...)"`, `"same size, modified
    2026-05-01T10:00:00"` (`old` recorded by size and modification time, before content hashing: the time of
    `path` now) or `"missing now"` for two identities of one file (`video_files`)."""
    if new == "missing":
        return "missing now"
    old_size, new_size = old.split(":")[0], new.split(":")[0]
    if not (old_size.isdigit() and new_size.isdigit()):
        return f"{old} -> {new}"
    if old_size != new_size:
        return f"{old_size} -> {new_size} bytes"
    if ":sha256:" in old:
        return f"same size, other content (sha256 {old.rsplit(':', 1)[1][:8]}... -> {new.rsplit(':', 1)[1][:8]}...)"
    try:
        modified = datetime.datetime.fromtimestamp(os.stat(path).st_mtime_ns / 1e9) if path else None
    except OSError:
        modified = None
    return f"same size, modified {modified.isoformat(timespec='seconds')}" if modified else "same size, other time"


def _record_changes(trainer: Any, checkpoint: str | os.PathLike) -> list[str]:
    """What changed between the run recorded in `checkpoint`'s completion file and `trainer`'s, beyond the settings
    and rows: the base model, chat template / video prompt, number of processes and the training videos' files."""
    recorded = _read_json(os.path.join(checkpoint, CHECKPOINT_COMPLETE_FILE)) or {}
    current = _run_record(trainer)
    changes = []
    prompt = _prompt_change(trainer, checkpoint, recorded)
    base = _base_model_change(recorded.get("base_model"), current["base_model"], prompt is not None)
    changes += [change for change in (base, prompt) if change]
    old_world = recorded.get("world_size")
    if isinstance(old_world, int) and old_world != current["world_size"]:
        changes.append(
            f"number of processes {old_world} -> {current['world_size']} (global batch "
            f"{recorded.get('global_batch_size')} -> {current['global_batch_size']}: processes x per-device batch x "
            "gradient accumulation; the rows each step trained on and those skipped on resume would not match)"
        )
    old_videos, new_videos = recorded.get("videos"), current["videos"]
    if isinstance(old_videos, dict) and new_videos is not None:
        from .video import same_video_file

        changed = sorted(
            video
            for video in old_videos.keys() & new_videos.keys()
            if not same_video_file(old_videos[video], new_videos[video])
        )
        if changed:
            resolve = trainer.video_processor.resolve_video
            listed = ", ".join(
                f"{video} ({_file_change(str(old_videos[video]), new_videos[video], resolve(video))})"
                for video in changed[:5]
            )
            more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
            changes.append(f"video files replaced or re-encoded under the same name: {listed}{more}")
    return changes


def _dataset_change(trainer: Any, checkpoint: str | os.PathLike) -> str | None:
    """`"dataset rows 12 -> 14"` (or `"dataset rows ... (other rows)"`) when the checkpoint was trained on other data
    than `trainer`'s run; None when the same, or when either side has no record (older checkpoints)."""
    recorded = (_read_json(os.path.join(checkpoint, CHECKPOINT_COMPLETE_FILE)) or {}).get("dataset")
    current = getattr(trainer, "dataset_identity", None)
    if not isinstance(recorded, dict) and current is not None:
        logger.warning(
            "%s records no training dataset (saved by an older tpo-hf): the resumed run's data is not compared with "
            "the data it was trained on.",
            checkpoint,
        )
    if not isinstance(recorded, dict) or current is None or recorded == current:
        return None
    if recorded.get("rows") != current.get("rows"):
        return f"dataset rows {recorded.get('rows')} -> {current.get('rows')}"
    return (
        f"dataset rows {current.get('rows')} -> {current.get('rows')} with other contents (prompt/chosen/rejected/"
        f"video values or their order; sha256 {str(recorded.get('sha256'))[:12]} -> {str(current.get('sha256'))[:12]})"
    )


def _plain(value: Any) -> Any:
    """A setting as plain JSON-able data (enums by value, sets sorted), so recorded and current values compare."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(item) for item in value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def _lora_settings(config: Any) -> dict[str, Any]:
    """The LoRA settings of a PEFT config (a dict from adapter_config.json, or a config object); {} for none."""
    if config is None:
        return {"use_peft": False}
    config = config if isinstance(config, dict) else config.to_dict()
    return {"use_peft": True, **{flag: _plain(config.get(name)) for name, flag in LORA_SETTINGS.items()}}


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def resume_compared_settings(args: Any) -> list[str]:
    """The fields of a run's training arguments (a `TPOConfig`, any `TrainingArguments`) that a resume compares with
    its checkpoint's, in field order: all of them but those a resume may change (`RESUME_FREE_SETTINGS` and
    `RESUME_FREE_PREFIXES`) and the video settings (compared as `tpo_video_config.json` records them)."""
    import dataclasses

    from .video_settings import VideoSettings

    video = {field.name for field in dataclasses.fields(VideoSettings)}
    return [
        field.name
        for field in dataclasses.fields(args)
        if field.init
        and not field.name.startswith("_")
        and field.name not in RESUME_FREE_SETTINGS
        and not field.name.startswith(RESUME_FREE_PREFIXES)
        and field.name not in video
    ]


def resume_settings_changes(trainer: Any, checkpoint: str | os.PathLike) -> list[str]:
    """`"name old -> new"` for each setting that changes what trains between `checkpoint` and `trainer`'s run: the
    video settings (`tpo_video_config.json`), the training arguments (`training_args.bin`; every field but those a
    resume may change, `resume_compared_settings`) and the LoRA settings (`adapter_config.json`). A record that cannot
    be read is warned about and not compared."""
    import torch

    recorded: dict[str, Any] = {}
    current: dict[str, Any] = {}
    saved_args = None
    args_file = os.path.join(checkpoint, "training_args.bin")
    if os.path.isfile(args_file):
        try:  # the TrainingArguments pickled by Trainer into its own checkpoint
            saved_args = torch.load(args_file, weights_only=False)
        except Exception as error:
            logger.warning("Could not read %s (%s): the training arguments are not compared.", args_file, error)
    video = _read_json(os.path.join(checkpoint, "tpo_video_config.json"))
    run_video = trainer.video_processor.video_settings()
    if video is not None:
        recorded.update({name: video.get(name) for name in run_video})
        current.update(run_video)
    elif saved_args is not None:
        from .video_settings import VideoSettings

        recorded.update(VideoSettings.of(saved_args).to_dict())
        current.update(VideoSettings.of(trainer.args).to_dict())
    if saved_args is not None:
        for name in resume_compared_settings(trainer.args):
            if hasattr(saved_args, name):
                recorded[name] = _plain(getattr(saved_args, name))
                current[name] = _plain(getattr(trainer.args, name))
    adapter = os.path.join(checkpoint, "adapter_config.json")
    peft_configs = getattr(trainer.model, "peft_config", None) or {}
    recorded.update(_lora_settings(_read_json(adapter) if os.path.isfile(adapter) else None))
    current.update(_lora_settings(peft_configs.get("default") or next(iter(peft_configs.values()), None)))
    changes = [
        f"{name} {recorded.get(name)!r} -> {current.get(name)!r}"
        for name in current
        if json.dumps(recorded.get(name), sort_keys=True, default=str)
        != json.dumps(current.get(name), sort_keys=True, default=str)
    ]
    dataset = _dataset_change(trainer, checkpoint)
    return changes + _record_changes(trainer, checkpoint) + ([dataset] if dataset else [])


def _training_horizon(args: Any) -> str:
    """`"max_steps 5"`, or `"num_train_epochs 3.0"` where max_steps is unset: the length a run's schedule spans."""
    max_steps = getattr(args, "max_steps", -1)
    return f"max_steps {max_steps}" if max_steps > 0 else f"num_train_epochs {getattr(args, 'num_train_epochs', None)}"


def schedule_horizon_change(trainer: Any, checkpoint: str | os.PathLike) -> str | None:
    """`"max_steps 3 -> max_steps 5 under the cosine learning-rate schedule: ..."` when resuming `checkpoint` with
    `trainer`'s run length mixes two schedules, else None. A decaying schedule (cosine, linear, ...: not
    `HORIZON_FREE_SCHEDULERS`) spans the run's length; the resume restores the rate the optimizer had reached (near 0
    at the end of a finished run) and goes on along a schedule over the new length."""
    import torch

    schedule = _plain(trainer.args.lr_scheduler_type)
    if schedule in HORIZON_FREE_SCHEDULERS:
        return None
    try:
        saved = torch.load(os.path.join(checkpoint, "training_args.bin"), weights_only=False)
    except Exception:  # not readable: `resume_settings_changes` warns about it
        return None
    old, new = _training_horizon(saved), _training_horizon(trainer.args)
    if old == new:
        return None
    state = _read_json(os.path.join(checkpoint, "trainer_state.json")) or {}
    try:  # the rate the restored optimizer trains its next step at
        rate = torch.load(os.path.join(checkpoint, "scheduler.pt"), weights_only=True)["_last_lr"][0]
        reached = f" ({rate:.3g} after step {state.get('global_step')} of {state.get('max_steps')})"
    except Exception:
        reached = ""
    return (
        f"{old} -> {new} under the {schedule} learning-rate schedule: it decays over the run's length, and the "
        f"resume restores the rate the optimizer had reached{reached}, so the resumed steps follow neither the old "
        f"schedule nor the {schedule} schedule over {new} that the model card reports. To train longer, train a fresh "
        f"run with {new} into another output_dir; a run meant to be extended by resuming needs lr_scheduler_type "
        "constant"
    )


def check_resume_settings(trainer: Any, checkpoint: str | os.PathLike | None) -> None:
    """Refuses to resume from `checkpoint` with settings that change what trains, naming each change with both
    values; with `TPO_HF_RESUME_CHANGED=1` the changes are only warned about.

    Raises:
        CheckpointError: the run's settings differ from the checkpoint's.
    """
    # what this run's checkpoints record of it (base model, videos, processes...), taken once as it starts
    trainer._tpo_checkpoint_record = checkpoint_record(trainer)
    if checkpoint is None:
        return
    check_saved_weights(checkpoint)
    horizon = schedule_horizon_change(trainer, checkpoint)
    if horizon is not None:  # how far to train may change on resume; with a decaying schedule, it is named
        logger.warning("Resuming from %s with %s.", checkpoint, horizon)
    changes = resume_settings_changes(trainer, checkpoint)
    if not changes:
        return
    fixed = [change for change in changes if change.split(" ", 1)[0] in RESUME_FIXED_SETTINGS]
    if fixed:
        raise CheckpointError(
            f"Cannot resume from {checkpoint} with {', '.join(fixed)}: the optimizer and learning-rate schedule are "
            "restored from the checkpoint with their old values, so the new ones would not take effect (not even "
            f"with {RESUME_CHANGED_ENV}=1). Resume with the checkpoint's values, or train into another output_dir."
        )
    listed = ", ".join(changes)
    if os.environ.get(RESUME_CHANGED_ENV, "").strip().lower() in ("1", "true", "yes", "on"):
        logger.warning(
            "Resuming from %s with other settings (%s=1; changed: %s): the steps before the checkpoint trained with "
            "the old values (and data), the model card reports the new ones.",
            checkpoint,
            RESUME_CHANGED_ENV,
            listed,
        )
        return
    raise CheckpointError(
        f"Cannot resume from {checkpoint}: it was trained with other settings (changed: {listed}). Resume with the "
        f"checkpoint's settings, train into another output_dir, or set {RESUME_CHANGED_ENV}=1 to resume with the new "
        "ones anyway."
    )
