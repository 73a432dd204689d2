"""Stage 4 entry point: train TPO from a YAML recipe.

    tpo-hf train --config recipes/Qwen2.5-VL-7B-Instruct/tpo/config_lora.yaml
    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml -m tpo_hf.train --config FILE.yaml

Arguments are parsed with TRL's `TrlParser` over (`TPOScriptArguments`, `TPOConfig`, `trl.ModelConfig`): every
field can be set in the YAML file or as a flag, and flags override the file.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config, get_quantization_config

from .config import TPOConfig

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


def load_preference_dataset(name: str, config: str | None = None, split: str = "train"):
    """Loads a TPO preference dataset from the Hub, a `save_to_disk` folder or a data file."""
    from datasets import DatasetDict, load_dataset, load_from_disk

    if os.path.isdir(name) and (
        os.path.exists(os.path.join(name, "dataset_info.json"))
        or os.path.exists(os.path.join(name, "dataset_dict.json"))
    ):
        dataset = load_from_disk(name)
        if isinstance(dataset, DatasetDict):
            if split not in dataset:
                raise ValueError(f"Dataset folder {name} has splits {list(dataset)}, not {split!r}.")
            dataset = dataset[split]
        return dataset
    if os.path.isfile(name):
        extension = name.rsplit(".", 1)[-1].lower()
        builder = {"jsonl": "json", "json": "json", "parquet": "parquet", "csv": "csv"}.get(extension)
        if builder is None:
            raise ValueError(f"Cannot read dataset file {name}: use json, jsonl, parquet or csv.")
        return load_dataset(builder, data_files=name, split=split)
    return load_dataset(name, config, split=split)


def default_video_root(dataset_name: str) -> str | None:
    """Where relative paths in the `video` column live when `video_root` is not set.

    Local datasets keep them next to their data. A Hub dataset published by `tpo-hf curate --upload_videos true`
    keeps them under `videos/` in its repository: those files are downloaded (once, into the Hub cache) and the
    snapshot folder is the root, so `load_dataset(REPO_ID)` plus the repo's videos train without manual steps.
    """
    if os.path.isdir(dataset_name):
        return dataset_name
    if os.path.isfile(dataset_name):
        return os.path.dirname(os.path.abspath(dataset_name))
    from huggingface_hub import HfApi, snapshot_download

    try:
        has_videos = any(
            path.startswith("videos/") for path in HfApi().list_repo_files(dataset_name, repo_type="dataset")
        )
    except Exception as error:  # offline, private or not a Hub dataset: the user must set video_root
        logger.info(
            "No video folder found for dataset %s (%s); set video_root if its paths are relative.", dataset_name, error
        )
        return None
    if not has_videos:
        return None
    return snapshot_download(dataset_name, repo_type="dataset", allow_patterns=["videos/*", "videos/**"])


def main(script_args: TPOScriptArguments, training_args: TPOConfig, model_args: ModelConfig):
    """Loads data, model and processor, trains, and saves the adapter (or model) and processor to `output_dir`."""
    from .processing import VideoPreferenceProcessor
    from .trainer import TPOTrainer

    if not script_args.dataset_name:
        raise ValueError("Set `dataset_name` (a Hub dataset id, a `save_to_disk` folder or a data file).")
    if not model_args.model_name_or_path:
        raise ValueError("Set `model_name_or_path` (a Hub model id or a local model folder).")
    if training_args.video_root is None:
        training_args.video_root = default_video_root(script_args.dataset_name)

    train_dataset = load_preference_dataset(
        script_args.dataset_name, script_args.dataset_config, script_args.dataset_train_split
    )
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset = load_preference_dataset(
            script_args.dataset_name, script_args.dataset_config, script_args.dataset_test_split
        )

    training_args.model_init_kwargs = {
        **(training_args.model_init_kwargs or {}),
        "revision": model_args.model_revision,
        "dtype": model_args.dtype,
        **({"attn_implementation": model_args.attn_implementation} if model_args.attn_implementation else {}),
    }
    processor = VideoPreferenceProcessor.from_pretrained(
        model_args.model_name_or_path,
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        **training_args.video_settings(),
    )
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
    parser = make_parser()
    script_args, training_args, model_args = parser.parse_args_and_config(args=argv)
    main(script_args, training_args, model_args)


if __name__ == "__main__":
    cli_main()
