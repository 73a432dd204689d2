"""The one place where tpo-hf bridges API differences across its supported dependency ranges (see pyproject.toml).

Every other module asks this one instead of comparing versions. Each entry names the release that changed the API.

- transformers 5.23 renamed `TrainingArguments.gradient_checkpointing*` to `activation_checkpointing*` and deprecated
  the old names (FutureWarning). `TPOConfig` takes the new names on every supported release; on older releases
  `resolve_activation_checkpointing` hands them to the old fields, so recipes and code use one spelling.
- transformers 5.23 added `private` to `Trainer.init_hf_repo`; before, it read `args.hub_private_repo`
  (`init_hf_repo` below).
- FSDP2 training is verified (tests/test_sharded.py) only from accelerate 1.15, torch 2.14 and transformers 5.24: on
  the lowest supported stack (accelerate 1.10-1.12, torch 2.9, transformers 5.18) a resumed run diverged from the
  uninterrupted one, and with accelerate 1.15 on torch 2.9 / transformers 5.18 full fine-tuning still drifted 1%
  from one process. `TPOTrainer` refuses FSDP2 there (`fsdp2_unverified_versions`).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from transformers import Trainer, TrainingArguments

# transformers >= 5.23: `activation_checkpointing` is a TrainingArguments field and `gradient_checkpointing` its
# deprecated alias
NATIVE_ACTIVATION_CHECKPOINTING = "activation_checkpointing" in {f.name for f in dataclasses.fields(TrainingArguments)}

FSDP2_MIN_VERSIONS = {"accelerate": "1.15", "torch": "2.14", "transformers": "5.24"}


def fsdp2_unverified_versions(installed: dict[str, str] | None = None) -> list[str]:
    """The installed packages older than FSDP2 training was verified on, e.g. ["torch 2.9.0 < 2.14"]."""
    import importlib.metadata

    from packaging.version import Version

    installed = installed or {name: importlib.metadata.version(name) for name in FSDP2_MIN_VERSIONS}
    return [
        f"{name} {installed[name]} < {minimum}"
        for name, minimum in FSDP2_MIN_VERSIONS.items()
        if Version(Version(installed[name]).base_version) < Version(minimum)
    ]


# TRL trains with activation checkpointing on unless told otherwise; TPOConfig keeps that default.
DEFAULT_ACTIVATION_CHECKPOINTING = True


def resolve_activation_checkpointing(args: Any) -> None:
    """Before `TrainingArguments.__post_init__`: applies the default and, on transformers < 5.23, the new names.

    Only the deprecated `gradient_checkpointing*` names given by the user reach transformers' FutureWarning; the
    default is set under the new name.
    """
    if args.activation_checkpointing is None and args.gradient_checkpointing is None:
        args.activation_checkpointing = DEFAULT_ACTIVATION_CHECKPOINTING
    if NATIVE_ACTIVATION_CHECKPOINTING:
        return
    for old, new in (
        ("gradient_checkpointing", "activation_checkpointing"),
        ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs"),
    ):
        if getattr(args, new) is not None:
            setattr(args, old, getattr(args, new))


def mirror_activation_checkpointing(args: Any) -> None:
    """After `TrainingArguments.__post_init__` on transformers < 5.23: the new names read what the old ones hold."""
    if not NATIVE_ACTIVATION_CHECKPOINTING:
        args.activation_checkpointing = bool(args.gradient_checkpointing)
        args.activation_checkpointing_kwargs = args.gradient_checkpointing_kwargs


# transformers >= 5.23: `Trainer.init_hf_repo(token, private)`
INIT_HF_REPO_TAKES_PRIVATE = "private" in inspect.signature(Trainer.init_hf_repo).parameters


def init_hf_repo(trainer: Trainer, token: str | None = None, private: bool | None = None) -> None:
    """Creates the trainer's Hub repo with the visibility asked for, on every supported transformers."""
    if INIT_HF_REPO_TAKES_PRIVATE:
        trainer.init_hf_repo(token=token, private=private)
        return
    if private is not None:
        trainer.args.hub_private_repo = private  # what transformers < 5.23 reads
    trainer.init_hf_repo(token=token)
