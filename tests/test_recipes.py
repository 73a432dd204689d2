"""Contract tests: every recipe parses with the real parser, every accelerate config loads with accelerate's own
loader, and the commands written in the recipe READMEs are the ones checked here."""

from __future__ import annotations

import re
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


def parser_for(module: str):
    """The real parser of the stage a command runs."""
    if module in ("tpo_hf.train", "train"):
        from tpo_hf.train import make_parser

        return make_parser()
    if module in ("tpo_hf.curate", "curate"):
        from tpo_hf.curate import make_parser

        return make_parser()
    if module in ("tpo_hf.eval.cli", "eval"):
        from tpo_hf.eval.cli import make_parser

        return make_parser()
    if module in ("push", "space"):
        from trl import TrlParser

        from tpo_hf.hub.push import PushArguments
        from tpo_hf.hub.space import SpaceArguments

        return TrlParser(({"push": PushArguments, "space": SpaceArguments}[module],))
    raise AssertionError(f"no parser known for {module}")


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


def readme_commands() -> list[tuple[Path, str]]:
    commands = []
    for readme in [REPO_ROOT / "README.md", *(folder / "README.md" for folder in MODEL_FOLDERS)]:
        in_code = False
        for line in readme.read_text().splitlines():
            if line.strip().startswith("```"):
                in_code = not in_code
                continue
            command = line.split("  #", 1)[0].strip()  # drop trailing comments
            if in_code and re.match(r"^(ACCELERATE_LOG_LEVEL=\S+ )?(accelerate launch|tpo-hf) ", command):
                commands.append((readme, command))
    return commands


@pytest.mark.parametrize(
    "readme, command", readme_commands(), ids=lambda v: str(v)[-60:] if isinstance(v, str) else ""
)
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
    if "--config" not in script_args:
        parser_for(module).parse_args_and_config(args=[*script_args, *(CPU_OVERRIDES if module == "train" else [])])
        return
    recipe = REPO_ROOT / script_args[script_args.index("--config") + 1]
    if not recipe.exists() and "my_config.yaml" in str(recipe):
        pytest.skip("the top-level README uses a user-supplied recipe name")
    assert recipe.exists(), f"{readme}: {command!r} names a missing recipe"
    parse_recipe(module, recipe)
