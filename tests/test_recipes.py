"""Contract tests: every recipe parses with the real parser, every accelerate config loads with accelerate's own
loader, and every command written in the README, the docs, the experiment write-ups and the recipe READMEs parses
with the real parser of what it runs; the option tables of the docs name real config fields and their defaults."""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
import runpy
import shlex
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
RECIPES = REPO_ROOT / "recipes"
MODEL_FOLDERS = sorted(p for p in RECIPES.iterdir() if p.is_dir() and p.name != "accelerate_configs")
REQUIRED_MODELS = {
    "Qwen2.5-VL-7B-Instruct",
    "Qwen3-VL-8B-Instruct",
    "Qwen3-VL-30B-A3B-Instruct",
    "SmolVLM2-2.2B-Instruct",
    "InternVL3-8B-hf",
    "GLM-4.1V-9B-Thinking",
    "VideoLLaMA3-2B-Image-HF",
    "Qwen2.5-Omni-7B",
    "llava-onevision-qwen2-7b-ov-hf",
    "LLaVA-NeXT-Video-7B-hf",
    "GLM-4.5V",
    "Qwen3-Omni-30B-A3B-Instruct",
    "Qwen2-VL-7B-Instruct",
}
# The family of each recipe's checkpoint (its config's `model_type`, which needs the Hub, resolved by hand): every
# registry family must have a recipe, and a recipe for a checkpoint missing here fails until it is added.
CHECKPOINT_FAMILIES = {
    "Qwen/Qwen2-VL-7B-Instruct": "qwen2_vl",
    "Qwen/Qwen2.5-VL-7B-Instruct": "qwen2_5_vl",
    "Qwen/Qwen3-VL-8B-Instruct": "qwen3_vl",
    "Qwen/Qwen3-VL-30B-A3B-Instruct": "qwen3_vl_moe",
    "HuggingFaceTB/SmolVLM2-2.2B-Instruct": "smolvlm",
    "OpenGVLab/InternVL3-8B-hf": "internvl",
    "zai-org/GLM-4.1V-9B-Thinking": "glm4v",
    "zai-org/GLM-4.5V": "glm4v_moe",
    "lkhl/VideoLLaMA3-2B-Image-HF": "video_llama_3",
    "Qwen/Qwen2.5-Omni-7B": "qwen2_5_omni",
    "Qwen/Qwen3-Omni-30B-A3B-Instruct": "qwen3_omni_moe",
    "llava-hf/llava-onevision-qwen2-7b-ov-hf": "llava_onevision",
    "llava-hf/LLaVA-NeXT-Video-7B-hf": "llava_next_video",
}
# Recipes are written for GPUs (bf16); on the CPU test machine the parser needs use_cpu to accept bf16.
CPU_OVERRIDES = ["--use_cpu", "true"]


# `python -m MODULE` -> the `tpo-hf` subcommand it runs
LAUNCH_MODULES = {
    "tpo_hf.train": "train",
    "tpo_hf.curate": "curate",
    "tpo_hf.eval": "eval",
    "tpo_hf.commands.eval": "eval",
}
# where each subcommand's `make_parser()` lives: the commands package, or the module that held it before it
COMMAND_MODULES = {
    "train": ("tpo_hf.commands.train", "tpo_hf.train"),
    "curate": ("tpo_hf.commands.curate", "tpo_hf.curate"),
    "eval": ("tpo_hf.commands.eval", "tpo_hf.eval.cli"),
    "push": ("tpo_hf.commands.push",),
    "space": ("tpo_hf.commands.space",),
}


def parser_for(module: str):
    """The real parser of the stage a command runs (`tpo-hf NAME` or `python -m MODULE`)."""
    command = LAUNCH_MODULES.get(module, module)
    assert command in COMMAND_MODULES, f"no parser known for {module}"
    for name in COMMAND_MODULES[command]:
        try:
            found = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        if hasattr(found, "make_parser"):
            return found.make_parser()
    from trl import TrlParser

    from tpo_hf.hub.push import PushArguments
    from tpo_hf.hub.space import SpaceArguments

    return TrlParser(({"push": PushArguments, "space": SpaceArguments}[command],))


def parse_recipe(module: str, path: Path):
    overrides = CPU_OVERRIDES if module in ("tpo_hf.train", "train") else []
    return parser_for(module).parse_args_and_config(args=["--config", str(path), *overrides])


def test_required_models_have_all_recipes():
    assert REQUIRED_MODELS <= {folder.name for folder in MODEL_FOLDERS}
    for folder in MODEL_FOLDERS:
        for name in ("tpo/config_full.yaml", "tpo/config_lora.yaml", "tpo/config_qlora.yaml", "README.md"):
            assert (folder / name).exists(), f"{folder.name} lacks {name}"


def test_every_family_has_a_recipe():
    import yaml

    from tpo_hf.families import FAMILIES

    checkpoints = {
        yaml.safe_load(path.read_text())["model_name_or_path"] for path in RECIPES.glob("*/tpo/config_*.yaml")
    }
    assert set(CHECKPOINT_FAMILIES.values()) <= set(FAMILIES), "CHECKPOINT_FAMILIES names a family not in the registry"
    covered = {CHECKPOINT_FAMILIES.get(checkpoint) for checkpoint in checkpoints}
    missing = sorted(set(FAMILIES) - covered)
    assert not missing, f"registry families without a recipe under recipes/: {missing}"


@pytest.mark.parametrize(
    "path", sorted(RECIPES.glob("*/tpo/config_*.yaml")), ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_training_recipes_parse(path):
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# Hardware:"), "the first line of a recipe names the hardware"
    script_args, training_args, model_args = parse_recipe("tpo_hf.train", path)
    assert script_args.dataset_name and model_args.model_name_or_path
    assert training_args.loss_type == ["sigmoid", "sft"]
    assert training_args.freeze_vision_tower
    if path.name == "config_full.yaml":
        # the paper's hyperparameters
        assert (training_args.beta, training_args.sft_weight, training_args.learning_rate) == (0.3, 0.5, 4e-6)
        assert (training_args.num_train_epochs, training_args.lr_scheduler_type.value) == (1, "cosine")
        assert training_args.warmup_ratio == 0.1 and not model_args.use_peft
    from tpo_hf.families import get_family

    assert model_args.model_name_or_path in CHECKPOINT_FAMILIES, (
        f"{path}: add {model_args.model_name_or_path!r} and its family to CHECKPOINT_FAMILIES"
    )
    if get_family(CHECKPOINT_FAMILIES[model_args.model_name_or_path]).is_moe:
        # MoE: the load-balancing loss on, experts out of LoRA unless asked
        assert training_args.router_aux_loss_coef > 0 and not training_args.lora_include_experts
    if path.name == "config_qlora.yaml":
        assert model_args.load_in_4bit and model_args.use_peft
        assert "Memory estimate" in path.read_text()


@pytest.mark.parametrize("path", sorted((RECIPES / "accelerate_configs").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_load(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    expected = {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}[path.stem]
    assert config.distributed_type.value == expected
    if path.stem.startswith("zero"):
        assert config.deepspeed_config["zero_stage"] == int(path.stem[-1])


def documents() -> list[Path]:
    """Every page that shows commands: the README, the docs, the experiment write-ups, the recipe READMEs."""
    pages = [REPO_ROOT / "README.md", *sorted(REPO_ROOT.glob("docs/*.md"))]
    pages += sorted(REPO_ROOT.glob("benchmarks/results/**/README.md"))
    return pages + [folder / "README.md" for folder in MODEL_FOLDERS]


def code_blocks(page: Path, language: str | None = None) -> list[str]:
    """The fenced code blocks of a page (of one language, if given)."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [body for lang, body in blocks if language is None or lang == language]


def readme_commands(
    pattern: str = r"^(ACCELERATE_LOG_LEVEL=\S+ )?(accelerate launch|tpo-hf) ",
) -> list[tuple[Path, str]]:
    commands = []
    for page in documents():
        for block in code_blocks(page):
            for line in block.splitlines():
                command = line.split("  #", 1)[0].strip()  # drop trailing comments
                if re.match(pattern, command):
                    commands.append((page, command))
    return commands


def _id(value) -> str:
    return str(value.relative_to(REPO_ROOT)) if isinstance(value, Path) else value[-60:]


def test_every_page_with_commands_is_read():
    pages = {page for page, _ in readme_commands()}
    for name in ("README.md", "docs/curation.md", "docs/training.md", "docs/evaluation.md", "docs/hub_and_spaces.md"):
        assert REPO_ROOT / name in pages, f"no command found in {name}: the code-block reader missed them"


def test_readme_walks_through_every_stage():
    """The README's own-videos section shows a parsed command for each stage, in the order a user runs them."""
    readme = REPO_ROOT / "README.md"
    section = readme.read_text().split("## TPO on your own videos", 1)[1].split("\n## ", 1)[0]
    commands = [command for page, command in readme_commands() if page == readme and command in section]
    stages = []
    for command in commands:
        args = shlex.split(command)
        stage = args[args.index("-m") + 1] if "-m" in args else args[1]
        stage = LAUNCH_MODULES.get(stage, stage)
        if not stages or stages[-1] != stage:
            stages.append(stage)
    assert stages == ["curate", "train", "eval", "push", "space"]


@pytest.mark.parametrize("readme, command", readme_commands(), ids=_id)
def test_readme_commands_are_valid(readme, command):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    args = shlex.split(command)
    if args[0].startswith("ACCELERATE_LOG_LEVEL="):
        args = args[1:]
    if args[0] == "accelerate":
        launch_args = launch_command_parser().parse_args(args[2:])
        if launch_args.config_file:
            assert (REPO_ROOT / launch_args.config_file).exists(), launch_args.config_file
            load_config_from_file(str(REPO_ROOT / launch_args.config_file))
        assert launch_args.module, "recipes launch a module (-m)"
        module, script_args = launch_args.training_script, launch_args.training_script_args
    else:
        module, script_args = args[1], args[2:]
    if module == "quickstart":
        return
    if module == "world":  # `tpo-hf world <command> ...`: the command's own parser
        from tpo_hf.world.cli import make_parser

        make_parser(script_args[0]).parse_args_and_config(args=script_args[1:])
        return
    overrides = CPU_OVERRIDES if LAUNCH_MODULES.get(module, module) == "train" else []
    if "--config" in script_args:
        at = script_args.index("--config") + 1
        recipe = REPO_ROOT / script_args[at]
        if not recipe.exists() and recipe.name == "my_config.yaml":
            # a user's own file: the rest of the command is still parsed, over a recipe of the same stage
            stage = {"train": "tpo/config_lora.yaml", "curate": "curate/config.yaml", "eval": "eval/config.yaml"}
            recipe = RECIPES / "Qwen2.5-VL-7B-Instruct" / stage[LAUNCH_MODULES.get(module, module)]
        assert recipe.exists(), f"{readme}: {command!r} names a missing recipe"
        script_args = [*script_args[:at], str(recipe), *script_args[at + 1 :]]
    # the whole command, every flag included, through the real parser; a misspelt flag fails here, a shortened one
    # too (argparse would take `--num_frame` for `--num_frames`, and the page would teach a spelling nobody checks)
    parser = parser_for(module)
    parser.allow_abbrev = False
    parser.parse_args_and_config(args=[*script_args, *overrides])


class _Parsed(Exception):
    """Raised in place of running a benchmark script once its arguments parsed."""


@pytest.mark.parametrize("readme, command", readme_commands(r"^python benchmarks/\S+\.py\b"), ids=_id)
def test_benchmark_commands_parse(readme, command, monkeypatch):
    """`python benchmarks/X.py ...` commands: the script exists and its own argparse parser accepts every flag."""
    script, *args = shlex.split(command)[1:]
    path = REPO_ROOT / script
    assert path.exists(), f"{readme}: {command!r} names a missing script"
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(parser, *_, **__):
        parser.allow_abbrev = False
        try:
            parse_args(parser, args)
        except SystemExit as error:  # argparse's exit on a bad flag
            raise AssertionError(f"{readme}: {command!r}: {script} rejects its arguments") from error
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    with pytest.raises(_Parsed):
        runpy.run_path(str(path), run_name="benchmark_under_test")["main"]()


def test_python_blocks_compile_and_import_what_exists():
    """The Python examples of the README and the docs compile, and what they import from tpo_hf exists."""
    import tpo_hf

    for page in documents():
        for block in code_blocks(page, "python"):
            tree = ast.parse(block, filename=str(page))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module == "tpo_hf":
                    for alias in node.names:
                        assert hasattr(tpo_hf, alias.name), f"{page}: `from tpo_hf import {alias.name}` fails"


# docs page -> the config class its "field | default | what it does" tables describe
OPTION_TABLES = {
    "docs/training.md": "tpo_hf.config:TPOConfig",
    "docs/curation.md": "tpo_hf.curation.config:CurationConfig",
}


@pytest.mark.parametrize("page, config", sorted(OPTION_TABLES.items()))
def test_option_tables_name_real_fields_and_defaults(page, config):
    import dataclasses

    module, _, name = config.partition(":")
    fields = {field.name: field for field in dataclasses.fields(getattr(importlib.import_module(module), name))}
    rows = re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", (REPO_ROOT / page).read_text(), flags=re.MULTILINE)
    assert rows, f"{page} has no option table"
    for field_name, default in rows:
        assert field_name in fields, f"{page}: `{field_name}` is not a field of {name}"
        actual = fields[field_name].default
        if isinstance(actual, float) and not isinstance(actual, bool):
            assert float(default) == actual, f"{page}: `{field_name}` defaults to {actual!r}, not {default}"
        else:
            assert default == str(actual), f"{page}: `{field_name}` defaults to {actual!r}, not {default}"


def test_a_recipe_number_yaml_reads_as_text_is_refused_naming_the_recipe(tmp_path, monkeypatch):
    """Probe b/i50: `max_steps: 1e3` (YAML 1.1 reads a number in exponent form without a dot as text) and
    `learning_rate: 5e-7x` (a typo) ended in argparse's 166-line usage, blaming `--max_steps` under the program name
    `__main__.py`, the recipe unnamed. Refused in one line naming the recipe and each field; a text value the
    field's type reads (`learning_rate: 5e-7`, `max_steps: '12'`) is converted as before."""
    from tpo_hf.commands import run_cli
    from tpo_hf.commands.train import cli_main, make_parser

    monkeypatch.delenv("TPO_HF_DEBUG", raising=False)
    settings = f"model_name_or_path: m\ndataset_name: d\nbf16: false\nuse_cpu: true\noutput_dir: {tmp_path / 'run'}\n"
    recipe = tmp_path / "r_sci.yaml"
    recipe.write_text(settings + "max_steps: 1e3\nlearning_rate: 5e-7x\n")
    message = (
        rf"^tpo-hf train: {recipe}: `max_steps: '1e3'` is not a whole number \(YAML reads 1e3 as text: write 1000\); "
        r"`learning_rate: '5e-7x'` is not a number\.$"
    )
    with pytest.raises(SystemExit, match=message):
        cli_main(["--config", str(recipe)])
    recipe.write_text(settings + "max_steps: '12'\nlearning_rate: 5e-7\n")
    parsed = run_cli("train", make_parser, lambda *parsed: parsed, ["--config", str(recipe)])
    config = next(arguments for arguments in parsed if hasattr(arguments, "learning_rate"))
    assert (config.max_steps, config.learning_rate) == (12, 5e-7)


def test_a_recipe_env_value_that_is_a_list_is_refused(tmp_path, monkeypatch):
    """Probe b/i26: a recipe's `env: {HF_DATASETS_CACHE: [a, b]}` was set as the text "['a', 'b']": `datasets`
    cached into a folder of that name in the working directory, nothing said. Refused in one line naming the recipe
    and the variable, before any variable of the recipe is set."""
    from tpo_hf.commands import apply_recipe_env
    from tpo_hf.commands.train import cli_main

    monkeypatch.delenv("TPO_HF_DEBUG", raising=False)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "shell-cache"))
    monkeypatch.delenv("TPO_HF_PROBE_SET", raising=False)
    recipe = tmp_path / "r_envval.yaml"
    recipe.write_text(
        "model_name_or_path: m\ndataset_name: d\nenv:\n  TPO_HF_PROBE_SET: 3\n  HF_DATASETS_CACHE: [a, b]\n"
    )
    apply_recipe_env(["--config", str(recipe)])  # before the command runs: left to the command to name
    assert os.environ["HF_DATASETS_CACHE"] == str(tmp_path / "shell-cache")
    assert "TPO_HF_PROBE_SET" not in os.environ
    message = (
        rf"^tpo-hf train: {recipe}: env: `HF_DATASETS_CACHE: \['a', 'b'\]` is a list; an environment variable holds "
        "one value"
    )
    with pytest.raises(SystemExit, match=message):
        cli_main(["--config", str(recipe), "--output_dir", str(tmp_path / "run")])
    assert os.environ["HF_DATASETS_CACHE"] == str(tmp_path / "shell-cache")


def test_a_recipe_number_yaml_reads_in_base_8_or_60_is_refused_naming_the_recipe(tmp_path, monkeypatch):
    """Probe b/j15: `seed: 0123` in a recipe is octal to YAML 1.1 (PyYAML): curate ran with seed 83 and recorded it,
    nothing said; `1:30` is base 60 (90). Refused in one line naming the recipe, the key, its line and the value
    YAML gives, before the parser (which reads the file again with PyYAML) runs; also in `env:` and lists. Quoted,
    such a value is text as written; `0` and `07` (the same in base 8) and `1_000` read as written."""
    from tpo_hf.commands import read_recipe, run_cli
    from tpo_hf.commands.train import cli_main, make_parser

    monkeypatch.delenv("TPO_HF_DEBUG", raising=False)
    settings = f"model_name_or_path: m\ndataset_name: d\nbf16: false\nuse_cpu: true\noutput_dir: {tmp_path / 'run'}\n"
    recipe = tmp_path / "r_octal.yaml"
    recipe.write_text(settings + "seed: 0123\n")
    message = (
        rf'^tpo-hf train: {recipe}: `seed: 0123` \(line 6\) reads as octal 83 in YAML 1.1: write 123 \(or "0123" '
        r"quoted, for text\)\.$"
    )
    with pytest.raises(SystemExit, match=message):
        cli_main(["--config", str(recipe)])
    recipe.write_text(settings + "max_steps: 1:30\n")
    with pytest.raises(SystemExit, match=r"`max_steps: 1:30` \(line 6\) reads as 90 \(base 60\) in YAML 1\.1"):
        cli_main(["--config", str(recipe)])
    for nested in ("env:\n  UMASK: 0022\n", "vniah_lengths: [8, 010]\n"):
        recipe.write_text(settings + nested)
        with pytest.raises(SystemExit, match=r"reads as octal (18|8) in YAML 1\.1"):
            cli_main(["--config", str(recipe)])
    recipe.write_text(settings + "seed: '0123'\nmax_steps: 1_000\nsave_total_limit: 07\nenv:\n  UMASK: '0022'\n")
    assert read_recipe(["--config", str(recipe)])[1]["env"] == {"UMASK": "0022"}
    parsed = run_cli("train", make_parser, lambda *parsed: parsed, ["--config", str(recipe)])
    config = next(arguments for arguments in parsed if hasattr(arguments, "seed"))
    assert (config.seed, config.max_steps, config.save_total_limit) == (123, 1000, 7)
