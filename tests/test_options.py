"""Every TRL / transformers option of the "TRL and transformers options" table in docs/training.md: it trains on video
pairs or TPOConfig refuses it with the reason and what to use instead. One test per row (`ROW_TESTS` maps rows to
tests)."""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path

import pytest
import torch
from peft import LoraConfig

from tpo_hf import TPOConfig, TPOTrainer
from tpo_hf.config import REFUSED_OPTIONS
from tpo_hf.tiny import tiny_tpo_config

TRAINING_DOC = Path(__file__).resolve().parents[1] / "docs" / "training.md"

# table row (the option as written in its first column) -> the test that checks it
ROW_TESTS = {
    "use_liger_kernel": "test_refused_options_say_why_and_what_instead",
    "padding_free": "test_refused_options_say_why_and_what_instead",
    "torch_compile": "test_refused_options_say_why_and_what_instead",
    "fp16": "test_refused_options_say_why_and_what_instead",
    "bf16": "test_bf16_trains_on_cpu",
    "use_logits_to_keep": "test_use_logits_to_keep_is_not_an_option",
    "precompute_ref_log_probs": "test_trainer.py::test_precomputed_reference_log_probs",
    "ref_model": "test_explicit_reference_model_trains",
    "loss_type": "test_pair_losses_train_with_the_sft_term",
    "loss_weights": "test_sft_weight_is_the_one_weight_of_the_sft_term",
    "activation_checkpointing_kwargs": "test_activation_checkpointing_kwargs_train",
    "gradient_checkpointing_kwargs": "test_deprecated_checkpointing_names_still_work",
}


def train_one_step(tmp_path, video_dir, preference_dataset, tiny_model, ref_model=None, peft=True, **overrides):
    model, processor = tiny_model("qwen2_vl")
    settings = dict(video_root=str(video_dir), learning_rate=1e-3, warmup_ratio=0.0, disable_tqdm=True)
    trainer = TPOTrainer(
        model,
        ref_model=ref_model(model) if ref_model else None,
        args=tiny_tpo_config(tmp_path / "out", **{**settings, **overrides}),
        train_dataset=preference_dataset(),
        processing_class=processor,
        peft_config=LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0) if peft else None,
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(math.isfinite(loss) for loss in losses)
    return trainer


def test_options_table_lists_every_row_and_each_row_has_a_test():
    text = TRAINING_DOC.read_text(encoding="utf-8")
    table = text.split("## TRL and transformers options", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_0-9]+)`", table, flags=re.MULTILINE)
    assert sorted(rows) == sorted(ROW_TESTS)
    assert set(REFUSED_OPTIONS) <= set(rows)
    names = {name for name in globals() if name.startswith("test_")}
    for test in ROW_TESTS.values():
        if "::" in test:
            file, name = test.split("::")
            assert f"def {name}(" in (Path(__file__).parent / file).read_text(encoding="utf-8")
        else:
            assert test in names


@pytest.mark.parametrize(
    "option, value",
    [("use_liger_kernel", True), ("padding_free", True), ("torch_compile", True), ("fp16", True)],
)
def test_refused_options_say_why_and_what_instead(option, value):
    settings = {"use_cpu": True, "bf16": False, option: value}
    with pytest.raises(ValueError, match=rf"`{option}` is not supported for video pairs: .+\. .+") as error:
        TPOConfig("out", **settings)
    assert REFUSED_OPTIONS[option][1] in str(error.value)


def test_bf16_trains_on_cpu(tmp_path, video_dir, preference_dataset, tiny_model):
    train_one_step(tmp_path, video_dir, preference_dataset, tiny_model, bf16=True)


def test_use_logits_to_keep_is_not_an_option():
    # Removed from TRL's DPOConfig: its fused LM head never builds the full logits, so there is nothing to keep
    with pytest.raises(TypeError, match="use_logits_to_keep"):
        TPOConfig("out", use_cpu=True, use_logits_to_keep=True)


def test_explicit_reference_model_trains(tmp_path, video_dir, preference_dataset, tiny_model):
    """Full fine-tuning against a separate reference model (a frozen copy of the policy)."""
    trainer = train_one_step(
        tmp_path, video_dir, preference_dataset, tiny_model, ref_model=copy.deepcopy, peft=False, max_steps=2
    )
    assert trainer.ref_model is not None and trainer._prefix_sharing
    # The reference is untouched, the policy moved
    policy = dict(trainer.model.named_parameters())
    moved = [name for name, p in trainer.ref_model.named_parameters() if not torch.equal(p, policy[name])]
    assert moved


@pytest.mark.parametrize("loss_type", ["ipo", "robust", "apo_zero", ["hinge", "sigmoid"]])
def test_pair_losses_train_with_the_sft_term(tmp_path, video_dir, preference_dataset, tiny_model, loss_type):
    trainer = train_one_step(tmp_path, video_dir, preference_dataset, tiny_model, loss_type=loss_type)
    expected = [loss_type] if isinstance(loss_type, str) else loss_type
    assert trainer.args.loss_type == [*expected, "sft"] and trainer.args.loss_weights[-1] == 0.5


def test_sft_weight_is_the_one_weight_of_the_sft_term():
    config = TPOConfig("out", use_cpu=True, loss_type=["ipo"], loss_weights=[2.0], sft_weight=0.25)
    assert config.loss_type == ["ipo", "sft"] and config.loss_weights == [2.0, 0.25]
    assert TPOConfig("out", use_cpu=True, loss_type="ipo", sft_weight=0.0).loss_type == ["ipo"]
    # An "sft" entry must carry sft_weight, so the SFT term never has two weights
    assert TPOConfig("out", use_cpu=True, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.5]).loss_weights == [
        1.0,
        0.5,
    ]
    with pytest.raises(ValueError, match=r"set `sft_weight=1.0`"):
        TPOConfig("out", use_cpu=True, loss_type=["sigmoid", "sft"], loss_weights=[1.0, 1.0])
    with pytest.raises(ValueError, match="one weight per `loss_type` entry"):
        TPOConfig("out", use_cpu=True, loss_type=["sigmoid", "ipo"], loss_weights=[1.0])
    with pytest.raises(ValueError, match="unknown `loss_type`"):
        TPOConfig("out", use_cpu=True, loss_type="kto")
    # SFT alone on the chosen answers (the paper's SFT_self baseline), weighted by sft_weight
    sft_only = TPOConfig("out", use_cpu=True, loss_type="sft", sft_weight=1.0)
    assert sft_only.loss_type == ["sft"] and sft_only.loss_weights == [1.0]
    with pytest.raises(ValueError, match="trains nothing"):
        TPOConfig("out", use_cpu=True, loss_type="sft", sft_weight=0.0)


def test_activation_checkpointing_kwargs_train(tmp_path, video_dir, preference_dataset, tiny_model):
    trainer = train_one_step(
        tmp_path,
        video_dir,
        preference_dataset,
        tiny_model,
        activation_checkpointing=True,
        activation_checkpointing_kwargs={"use_reentrant": False},
    )
    assert trainer.args.gradient_checkpointing and trainer.args.gradient_checkpointing_kwargs == {
        "use_reentrant": False
    }


def test_deprecated_checkpointing_names_still_work(recwarn):
    """The pre-5.23 names keep working (transformers itself warns where it deprecates them)."""
    config = TPOConfig(
        "out", use_cpu=True, gradient_checkpointing=False, gradient_checkpointing_kwargs={"use_reentrant": True}
    )
    assert config.activation_checkpointing is False and config.gradient_checkpointing is False
    assert config.activation_checkpointing_kwargs == {"use_reentrant": True}
    assert TPOConfig("out", use_cpu=True).activation_checkpointing is True  # TRL's default, under the new name


def test_activation_checkpointing_flags_parse_on_every_supported_transformers():
    from trl import TrlParser

    def parse(*flags):
        (config,) = TrlParser((TPOConfig,)).parse_args_and_config(
            args=["--output_dir", "o", "--use_cpu", "true", *flags]
        )
        return config

    assert parse("--activation_checkpointing").gradient_checkpointing is True  # a bare flag means True
    assert parse("--activation_checkpointing", "false").gradient_checkpointing is False


def _recipe(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_recipe_key_written_twice_is_refused(tmp_path, monkeypatch):
    """Probe b/g1: a key written twice in a recipe (`num_frames: 4`, further down `num_frames: 2`) trained with the
    last one, without a word (PyYAML keeps the last key). Every command refuses it, naming the key and both lines."""
    from tpo_hf.commands import apply_recipe_env, read_recipe
    from tpo_hf.commands.eval import cli_main as eval_main
    from tpo_hf.train import cli_main

    monkeypatch.delenv("TPO_HF_DEBUG", raising=False)
    recipe = _recipe(tmp_path, "model_name_or_path: m\ndataset_name: d\nnum_frames: 4\nbeta: 0.3\nnum_frames: 2\n")
    with pytest.raises(SystemExit, match=rf"^tpo-hf train: {recipe}: `num_frames` is set twice, on line 3 and line 5"):
        cli_main(["--config", str(recipe), "--output_dir", str(tmp_path / "run")])
    nested = _recipe(tmp_path, "model_name_or_path: m\nenv:\n  HF_HOME: a\n  HF_HOME: b\n", "eval.yaml")
    with pytest.raises(SystemExit, match=r"^tpo-hf eval: .*`HF_HOME` is set twice, on line 3 and line 4"):
        eval_main(["--config", str(nested)])
    apply_recipe_env(["--config", str(nested)])  # before the command runs: left to the command to name
    # a YAML merge (`<<: *base`) followed by a key of its own is an override, not a key written twice
    merged = _recipe(tmp_path, "base: &base\n  beta: 0.1\nother:\n  <<: *base\n  beta: 0.2\n", "merged.yaml")
    assert read_recipe(["--config", str(merged)])[1]["other"] == {"beta": 0.2}


def test_an_empty_recipe_env_entry_leaves_the_variable_as_it_was(tmp_path, monkeypatch):
    """Probe b/g28: a recipe template's `env:` entry left empty (`HF_DATASETS_CACHE:`, null, meant as "default") was
    set to the text "None", so the datasets cache went to a `./None` folder of the working directory. It is left as
    it was, both where the recipe's `env:` is set before the imports and while TRL's parser reads the recipe."""
    from tpo_hf.commands import apply_recipe_env, run_cli
    from tpo_hf.commands.train import make_parser

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "shell-cache"))  # the shell's value: kept
    monkeypatch.delenv("TPO_HF_VIDEO_CACHE", raising=False)  # unset: stays unset
    monkeypatch.setenv("TPO_HF_PROBE_SET", "before")  # a value given: set, as before
    recipe = _recipe(
        tmp_path,
        f"output_dir: {tmp_path / 'run'}\nuse_cpu: true\nenv:\n  HF_DATASETS_CACHE:\n  TPO_HF_VIDEO_CACHE:\n  TPO_HF_PROBE_SET: 3\n",
    )
    expected = {
        "HF_DATASETS_CACHE": str(tmp_path / "shell-cache"),
        "TPO_HF_VIDEO_CACHE": None,
        "TPO_HF_PROBE_SET": "3",
    }
    apply_recipe_env(["--config", str(recipe)])
    assert {key: os.environ.get(key) for key in expected} == expected
    monkeypatch.setenv("TPO_HF_PROBE_SET", "before")
    seen = run_cli(
        "train", make_parser, lambda *parsed: {key: os.environ.get(key) for key in expected}, ["--config", str(recipe)]
    )
    assert seen == expected
    assert {key: os.environ.get(key) for key in expected} == expected
    assert not (Path.cwd() / "None").exists()


@pytest.mark.parametrize(
    "command, key, value, message",
    [
        ("train", "max_steps", "2.5", r"`max_steps: 2.5`: max_steps takes a whole number \(an integer\)"),
        (
            "train",
            "gradient_accumulation_steps",
            "2.5",
            r"`gradient_accumulation_steps: 2.5`: .* takes a whole number",
        ),
        (
            "train",
            "beta",
            "null",
            r"`beta: null` leaves beta without a value: set one, or leave the line out for its default, 0.3",
        ),
        ("train", "learning_rate", "null", r"`learning_rate: null` leaves learning_rate without a value"),
        (
            "train",
            "dtype",
            "float31",
            r"`dtype: float31` is not one of dtype's values: auto, bfloat16, float16, float32",
        ),
        ("train", "save_strategy", "no", r"`save_strategy: False` is not one of .*: no, steps, .* quote it"),
        ("eval", "vniah_lengths", "[8, 16.5]", r"`vniah_lengths: \[8, 16.5\]`: vniah_lengths takes a whole number"),
        # probe b/h4: a number for a list field (a TypeError in EvalConfig)
        (
            "eval",
            "vniah_lengths",
            "8",
            r"`vniah_lengths: 8`: vniah_lengths takes a list: write `vniah_lengths: \[8\]`",
        ),
    ],
)
def test_recipe_values_are_checked_as_flags_are(tmp_path, monkeypatch, command, key, value, message):
    """Probes b/g2, b/g3, b/g4: a recipe's values became the parser's defaults, which argparse neither converts nor
    checks: `max_steps: 2.5` failed in transformers' training loop after the model loaded, `beta: null` at the first
    step in TRL's loss, `dtype: float31` in TRL's model loading. Each is refused before anything loads (model `m`
    does not exist), naming the recipe and the field; a flag given on the command line overrides the recipe."""
    import importlib

    cli_main = importlib.import_module(f"tpo_hf.commands.{command}").cli_main
    monkeypatch.delenv("TPO_HF_DEBUG", raising=False)
    settings = "model_name_or_path: m\n" + (
        "dataset_name: d\nbf16: false\nuse_cpu: true\n" if command == "train" else ""
    )
    recipe = _recipe(tmp_path, f"{settings}{key}: {value}\n")
    args = ["--config", str(recipe), "--output_dir", str(tmp_path / "run")]
    with pytest.raises(SystemExit, match=rf"^tpo-hf {command}: {recipe}: {message}"):
        cli_main(args)
    if command == "train":
        override = {"max_steps": "2", "gradient_accumulation_steps": "2", "beta": "0.2", "learning_rate": "1e-5"}
        with pytest.raises(BaseException) as error:  # the flag overrides the recipe: on to loading dataset `d`
            cli_main([*args, f"--{key}", override.get(key, "float32" if key == "dtype" else "no")])
        assert str(recipe) not in str(error.value)


def test_max_frames_below_num_frames_is_refused_in_training():
    """Probe b/g25: `num_frames: 8` with `max_frames: 4` trained on 4 frames per video while the model card and
    `tpo_video_config.json` said 8 (evaluation refuses the same pair). Refused naming both settings; a cap above
    the count, or a cap on sampling by rate, is what `max_frames` is for."""
    with pytest.raises(ValueError, match=r"`max_frames` \(4\) is below `num_frames` \(8\).*Set `num_frames` 4"):
        TPOConfig("out", use_cpu=True, num_frames=8, max_frames=4)
    assert TPOConfig("out", use_cpu=True, num_frames=4, max_frames=8).max_frames == 8
    assert TPOConfig("out", use_cpu=True, num_frames=None, video_fps=1.0, max_frames=4).max_frames == 4


def test_a_test_split_without_evaluation_is_named(tmp_path, caplog):
    """Probe b/h46: `dataset_test_split: train[6:]` with `eval_strategy` left at its default `no` was never loaded
    nor evaluated, with no word: the user believed the run held rows out and evaluated on them. Now warned."""
    import json
    import logging

    from conftest import preference_rows

    from tpo_hf.commands.train import cli_main

    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in preference_rows()))
    args = ["--dataset_name", str(data), "--model_name_or_path", str(tmp_path / "no-model"), "--use_cpu", "true"]
    for split, warned in (("train[2:]", True), ("test", False)):
        caplog.clear()
        # stops at the model, which is not there: one line, no traceback
        with caplog.at_level(logging.WARNING), pytest.raises(SystemExit, match="no-model is neither a local folder"):
            cli_main([*args, "--output_dir", str(tmp_path / f"run-{warned}"), "--dataset_test_split", split])
        named = "dataset_test_split is 'train[2:]' but eval_strategy is 'no': the split is not loaded"
        assert (named in caplog.text) is warned


def test_one_string_of_lora_targets_is_named_as_a_regex():
    """Probe b/h11: `lora_target_modules: q_proj` (one string where the recipes write a list) was refused with
    "q_proj match no module ...: name some of those", listing q_proj. PEFT reads one string as a regular expression
    over whole module names; the message now says so and how to write the list."""
    from tpo_hf.families import get_family
    from tpo_hf.model_setup import check_lora_targets
    from tpo_hf.tiny import build_tiny_model

    model, _ = build_tiny_model("qwen2_5_vl")
    message = (
        r"lora_target_modules q_proj match no module of the model \(one string is a regular expression .*\[q_proj\]"
    )
    with pytest.raises(ValueError, match=message):
        check_lora_targets(LoraConfig(r=4, target_modules="q_proj"), model, get_family(model))
