"""Stage 6 of the flow (publish), from inside a training run: what `TPOTrainer`'s Hub methods do.

transformers and TRL call these methods themselves: `init_hf_repo` when the trainer is built with `push_to_hub=True`,
`create_model_card` at every checkpoint save, `push_to_hub` at the end. `TPOTrainer` keeps them as thin calls into
this module, so a run publishes through the same pieces as `tpo-hf push`: the card of `model_card` (the run's real
numbers) and the one-commit upload of `push`, failing with the same `PushError`, which names the command to rerun.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from huggingface_hub import HfApi

from .. import compat
from .model_card import save_trainer_card
from .push import PushError, check_visibility, check_write_access, push_adapter, push_failed


def write_training_card(
    trainer: Any,
    output_dir: str | None = None,
    model_name: str | None = None,
    dataset_name: str | list[str] | None = None,
    tags: str | list[str] | None = None,
    eval_results: list[Any] | None = None,
    license: str | None = None,
) -> None:
    """Writes the model card, training-curve PNG and run info of `trainer` into `output_dir` (main process only).

    `dataset_name`, `eval_results` and `license` given once are kept on the trainer for the cards written by later
    saves, which transformers makes without them.
    """
    if not trainer.is_world_process_zero():
        return
    card_info = trainer.__dict__.setdefault("_tpo_card_info", {})
    for key, value in (("dataset_name", dataset_name), ("eval_results", eval_results), ("license", license)):
        if value is not None:
            card_info[key] = value
    tags = [tags] if isinstance(tags, str) else list(tags or [])
    save_trainer_card(
        trainer,
        output_dir or trainer.args.output_dir,
        repo_id=trainer.hub_model_id or trainer.args.hub_model_id or model_name,
        tags=[*tags, *(tag for tag in trainer._tag_names if tag not in tags)],
        **card_info,
    )


def create_training_repo(
    trainer: Any, create: Callable[..., None], token: str | None = None, private: bool | None = None
) -> None:
    """Creates the run's model repo with `create` (transformers' `Trainer.init_hf_repo` of `trainer`) and checks,
    before the training, that the token can write it and that an existing repo has the visibility asked for (the
    checks of `push.prepare_repo`).

    Raises:
        PushError: the repo could not be created or written, or is public when asked private; names the repo and the
            commands that train, then push.
    """
    try:
        if compat.INIT_HF_REPO_TAKES_PRIVATE:
            create(token=token, private=private)
        else:
            if private is not None:
                trainer.args.hub_private_repo = private  # what transformers < 5.23 reads
            create(token=token)
        if trainer.is_world_process_zero():
            # create_repo succeeds for an existing repo the token only reads: asked now, not after the training
            api = HfApi(token=token if token is not None else trainer.args.hub_token)
            check_write_access(api, trainer.hub_model_id)
            asked = private if private is not None else trainer.args.hub_private_repo
            check_visibility(api, trainer.hub_model_id, asked, "--hub_private_repo")
    except PushError:  # asked private, the repo is public
        raise
    except Exception as error:
        repo = trainer.args.hub_model_id or os.path.basename(os.path.abspath(trainer.args.output_dir))
        raise push_failed(
            "Creating the model repo",
            repo,
            error,
            f"tpo-hf train ... (without --push_to_hub), then tpo-hf push --adapter_dir {trainer.args.output_dir} "
            f"--repo_id {repo}",
            kept="Nothing was trained or changed yet.",
        ) from error


def push_training_run(
    trainer: Any,
    commit_message: str | None = "End of training",
    token: str | None = None,
    revision: str | None = None,
    private: bool | None = None,
    **card_kwargs: Any,
) -> Any:
    """Saves `trainer`'s model, then uploads adapter + processor + model card + training-curve PNG in one commit.

    `card_kwargs` go to `trainer.create_model_card`. Returns the commit (main process; `None` on the others).

    Raises:
        PushError: the upload failed; names the folder (left intact) and the command to rerun.
    """
    if trainer.hub_model_id is None:
        compat.init_hf_repo(trainer, token=token, private=private)
    trainer.save_model(_internal_call=True)
    if not trainer.is_world_process_zero():
        return None
    card_kwargs.pop("model_name", None)
    trainer.create_model_card(**card_kwargs)
    return push_adapter(
        trainer.args.output_dir,
        trainer.hub_model_id,
        private=private,
        revision=revision if revision is not None else trainer.args.hub_revision,
        commit_message=commit_message,
        token=token if token is not None else trainer.args.hub_token,
    )
