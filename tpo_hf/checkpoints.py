"""Stage 4 of the flow (training): checkpoints that a kill cannot leave half-written, and resuming from them.

`Trainer` writes a checkpoint's weights, optimizer and state one file after the other, and rotates old checkpoints
out right after: a kill during a save (preemption, out of memory) can leave a newest `checkpoint-N` that looks
resumable but is not, with the older complete ones already deleted. `TPOTrainer` therefore writes a completion
file last into every checkpoint, rotates only after it, and resumes only from a folder that holds it
(`resume_from_checkpoint=True` picks the newest such folder and removes the interrupted ones above it).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .fingerprint import atomic_write_json

logger = logging.getLogger(__name__)

# Written last into every checkpoint folder: only a folder holding it is a complete checkpoint to resume from.
CHECKPOINT_COMPLETE_FILE = "tpo_checkpoint_complete.json"
BOOLEAN_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False, "": False}
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


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


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> tuple[str | None, list[str]]:
    """(the newest complete `checkpoint-N` in `output_dir`, the incomplete ones newer than it)."""
    if not os.path.isdir(output_dir):
        return None, []
    steps = sorted(
        (int(match.group(1)), name)
        for name in os.listdir(output_dir)
        if (match := _CHECKPOINT_RE.match(name)) and os.path.isdir(os.path.join(output_dir, name))
    )
    incomplete = []
    for _, name in reversed(steps):
        path = os.path.join(output_dir, name)
        if checkpoint_is_complete(path):
            return path, incomplete
        incomplete.append(path)
    return None, incomplete


def resolve_checkpoint(
    resume_from_checkpoint: str | bool | None, output_dir: str | os.PathLike, should_save: bool
) -> str | None:
    """`True` -> the newest complete checkpoint of `output_dir` (incomplete newer ones, left by a kill during a
    save, are removed by the process that saves); a path -> checked to be complete.

    Raises:
        ValueError: no complete checkpoint to resume from, naming the newest complete one where there is one.
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
        if latest is None:
            raise ValueError(
                f"resume_from_checkpoint=True but {output_dir} holds no complete checkpoint"
                f"{f' ({len(incomplete)} interrupted one(s) removed)' if incomplete else ''}; train from scratch "
                "by leaving resume_from_checkpoint unset."
            )
        logger.info("Resuming from %s, the newest complete checkpoint", latest)
        return latest
    if not checkpoint_is_complete(resume_from_checkpoint):
        latest, _ = latest_complete_checkpoint(os.path.dirname(os.path.abspath(resume_from_checkpoint)))
        raise ValueError(
            f"Checkpoint {resume_from_checkpoint} is incomplete (its save was interrupted) or not a checkpoint. "
            + (f"The newest complete one is {latest}; " if latest else "")
            + "pass that path, or resume_from_checkpoint=True to pick it."
        )
    return str(resume_from_checkpoint)


def save_complete_checkpoint(trainer: Any, save: Callable[[], None], trial: Any) -> None:
    """Runs `save` (the `Trainer._save_checkpoint` of `trainer`), then marks the new checkpoint complete.

    Old checkpoints are rotated out only after the new one is marked complete, so a kill at any moment leaves at
    least one complete checkpoint behind.
    """
    args = trainer.args
    limit = args.save_total_limit
    args.save_total_limit = None
    try:
        save()
    finally:
        args.save_total_limit = limit
    run_dir = trainer._get_output_dir(trial=trial)
    folder = os.path.join(run_dir, f"checkpoint-{trainer.state.global_step}")
    trainer.accelerator.wait_for_everyone()
    if args.should_save and os.path.isdir(folder):
        atomic_write_json(Path(folder) / CHECKPOINT_COMPLETE_FILE, {"global_step": trainer.state.global_step})
        if limit is not None:
            from transformers.trainer_utils import rotate_checkpoints

            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=limit,
                best_model_checkpoint=trainer.state.best_model_checkpoint,
                use_mtime=False,
            )
