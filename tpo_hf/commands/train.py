"""`tpo-hf train` (stage 4 of the flow): train TPO from a YAML recipe.

    tpo-hf train --config recipes/Qwen2.5-VL-7B-Instruct/tpo/config_lora.yaml
    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml -m tpo_hf.commands.train --config FILE.yaml

Arguments are parsed with TRL's `TrlParser` over (`TPOScriptArguments`, `TPOConfig`, `trl.ModelConfig`): every
field can be set in the YAML file or as a flag, and flags override the file.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass, field

from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config, get_quantization_config

from ..config import TPOConfig
from ..data import (
    default_video_root,
    load_preference_dataset,
    refuse_overlapping_splits,
    refuse_training_output_dir,
)
from ..locks import dataset_reader_mark, is_main_process, output_dir_lock, refuse_if_read
from . import ConfigError, run_cli

logger = logging.getLogger(__name__)


@dataclass
class TPOScriptArguments(ScriptArguments):
    """Where the preference dataset comes from.

    `dataset_name` is a Hub dataset id, a folder written by `Dataset.save_to_disk` / `tpo-hf curate`, or a local
    json/jsonl/parquet/csv file. Relative paths in its `video` column are resolved against `video_root`
    (`TPOConfig`), which defaults to the dataset's folder for local datasets.
    """

    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset id, `save_to_disk` folder, or json/parquet/csv file."}
    )


# trl.ModelConfig's LoRA fields: read only with `use_peft`
LORA_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(ModelConfig)
    if f.name.startswith("lora_") or f.name in ("use_rslora", "use_dora")
)


def check_peft_arguments(training_args: TPOConfig, model_args: ModelConfig) -> None:
    """Refuses LoRA settings that would not take effect: set without `use_peft` (a full fine-tune would run and
    ignore them), or a LoRA rank that is not a positive integer.

    Raises:
        ConfigError: naming the fields.
    """
    if not model_args.use_peft:
        defaults = ModelConfig()
        ignored = [name for name in LORA_FIELDS if getattr(model_args, name) != getattr(defaults, name)]
        if training_args.lora_include_experts:
            ignored.append("lora_include_experts")
        if ignored:
            raise ConfigError(
                f"{' / '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} set but use_peft is false; add "
                f"--use_peft true, or drop {'it' if len(ignored) == 1 else 'them'} for a full fine-tune."
            )
        return
    rank = model_args.lora_r
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ConfigError(f"lora_r must be a positive integer (the LoRA rank), got {rank!r}.")


def is_resume(resume_from_checkpoint: str | bool | None) -> bool:
    """Whether `resume_from_checkpoint` asks for a resume (`True`, `"true"`, a checkpoint's path) or a fresh run."""
    from ..checkpoints import BOOLEAN_WORDS

    if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.strip().lower() in BOOLEAN_WORDS:
        return BOOLEAN_WORDS[resume_from_checkpoint.strip().lower()]
    return resume_from_checkpoint not in (None, False)


def clear_earlier_checkpoints(training_args: TPOConfig) -> None:
    """A fresh run (no `resume_from_checkpoint`) into an `output_dir` holding `checkpoint-N` folders of an earlier
    run is refused, naming them: the checkpoint rotation (`save_total_limit`) keeps the highest step numbers, so it
    would delete this run's checkpoints and keep the earlier run's, which a later resume would then pick up. With
    `overwrite_output_dir` they are removed instead, with a warning.

    Raises:
        ConfigError: naming the checkpoints and the choices.
    """
    from ..checkpoints import checkpoint_step

    output_dir = training_args.output_dir
    if is_resume(training_args.resume_from_checkpoint) or not os.path.isdir(output_dir):
        return
    earlier = sorted(
        (
            name
            for name in os.listdir(output_dir)
            if checkpoint_step(name) >= 0 and os.path.isdir(os.path.join(output_dir, name))
        ),
        key=checkpoint_step,
    )
    if not earlier:
        return
    if not training_args.overwrite_output_dir:
        raise ConfigError(
            f"output_dir {output_dir} holds checkpoints of an earlier run ({', '.join(earlier)}), and this run starts "
            "fresh: checkpoint rotation would keep the highest steps, the earlier run's, and delete this run's. Set "
            "resume_from_checkpoint true to resume that run, set another output_dir, or remove those checkpoints "
            "(overwrite_output_dir true removes them)."
        )
    if is_main_process():  # the main process removes them for its launch
        logger.warning(
            "Removing the checkpoints of an earlier run in %s (%s): overwrite_output_dir is set and this run starts "
            "fresh.",
            output_dir,
            ", ".join(earlier),
        )
        for name in earlier:
            shutil.rmtree(os.path.join(output_dir, name))


def load_processor(training_args: TPOConfig, model_args: ModelConfig):
    """The model's `VideoPreferenceProcessor` with the run's video settings, at `model_revision`.

    Raises:
        ConfigError: `model_revision` does not exist for the model on the Hub, or the model is a gated Hub repo this
            token has no access to.
    """
    from huggingface_hub.errors import GatedRepoError, RevisionNotFoundError

    from ..processing import VideoPreferenceProcessor

    try:
        return VideoPreferenceProcessor.from_pretrained(
            model_args.model_name_or_path,
            revision=model_args.model_revision,
            trust_remote_code=training_args.trust_remote_code,
            **training_args.video_settings(),
        )
    except OSError as error:  # transformers turns the Hub's RevisionNotFoundError / GatedRepoError into an OSError
        if isinstance(error, GatedRepoError) or isinstance(error.__cause__, GatedRepoError):
            from ..models import gated_repo_access

            name = model_args.model_name_or_path
            raise ConfigError(f"model_name_or_path {name} {gated_repo_access(name)}.") from None
        if not isinstance(error, RevisionNotFoundError) and not isinstance(error.__cause__, RevisionNotFoundError):
            raise
        raise ConfigError(
            f"model_revision {model_args.model_revision!r} does not exist for the model "
            f"{model_args.model_name_or_path} (no branch, tag or commit of that name); set model_revision to one of "
            "its revisions, or leave it out for main."
        ) from None


def main(script_args: TPOScriptArguments, training_args: TPOConfig, model_args: ModelConfig):
    """Loads data, model and processor, trains, and saves the adapter (or model) and processor to `output_dir`,
    holding `output_dir` and marking a local dataset folder as read (`tpo_hf.locks`) from the start to the end of the
    push."""
    from ..models import check_model_loadable
    from ..trainer import TPOTrainer

    if not script_args.dataset_name:
        raise ValueError("Set `dataset_name` (a Hub dataset id, a `save_to_disk` folder or a data file).")
    if not model_args.model_name_or_path:
        raise ValueError("Set `model_name_or_path` (a Hub model id or a local model folder).")
    check_peft_arguments(training_args, model_args)
    test_split_default = next(f.default for f in dataclasses.fields(script_args) if f.name == "dataset_test_split")
    if training_args.eval_strategy == "no" and script_args.dataset_test_split != test_split_default:
        # a held-out split set for evaluation, which `eval_strategy: no` (the default) never runs
        logger.warning(
            "dataset_test_split is %r but eval_strategy is 'no': the split is not loaded and nothing is evaluated. "
            "Set eval_strategy (e.g. steps, with eval_steps) to evaluate on it.",
            script_args.dataset_test_split,
        )
    if training_args.video_root is None:
        training_args.video_root = default_video_root(script_args.dataset_name)
    # before the lock file or anything else is written there: not a dataset's or a full model's (the base's) folder
    refuse_training_output_dir(training_args.output_dir)

    # the dataset folder is marked before it is checked for a curation writing it, so that one of the two refuses
    with (
        output_dir_lock(training_args.output_dir, "train"),
        dataset_reader_mark(script_args.dataset_name, "train"),
    ):
        refuse_if_read(training_args.output_dir, "train")  # an eval reading the adapter there (`reader_mark`)
        clear_earlier_checkpoints(training_args)
        train_dataset = load_preference_dataset(
            script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split
        )
        eval_dataset = None
        if training_args.eval_strategy != "no":
            refuse_overlapping_splits(  # a "held-out" slice that shares rows with the training one
                script_args.dataset_name,
                script_args.dataset_config,
                script_args.dataset_train_split,
                script_args.dataset_test_split,
            )
            eval_dataset = load_preference_dataset(
                script_args.dataset_name, script_args.dataset_config, script_args.dataset_test_split
            )

        check_model_loadable(model_args.model_name_or_path)  # one line, not transformers' OSError about repo ids
        training_args.model_init_kwargs = {
            **(training_args.model_init_kwargs or {}),
            "revision": model_args.model_revision,
            "dtype": model_args.dtype,
            **({"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}),
        }
        processor = load_processor(training_args, model_args)
        trainer = TPOTrainer(
            model=model_args.model_name_or_path,
            args=training_args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processor,
            quantization_config=get_quantization_config(model_args),
            peft_config=get_peft_config(model_args),
        )
        trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model(training_args.output_dir)
        trainer.save_state()  # trainer_state.json: the loss curve and metrics, read by model cards and tests
        logger.info("Saved to %s", training_args.output_dir)
        if training_args.push_to_hub:
            trainer.push_to_hub(dataset_name=script_args.dataset_name)
        return trainer


def make_parser(subparsers=None) -> TrlParser:
    dataclass_types = (TPOScriptArguments, TPOConfig, ModelConfig)
    if subparsers is not None:
        return subparsers.add_parser("train", help="Train TPO", dataclass_types=dataclass_types)
    return TrlParser(dataclass_types)


def cli_main(argv: list[str] | None = None) -> None:
    run_cli("train", make_parser, main, argv)


if __name__ == "__main__":
    cli_main()
