"""The training entry point runs from a YAML recipe on a tiny model saved to disk (`python -m tpo_hf.train`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from datasets import Dataset

from tests.conftest import preference_rows
from tpo_hf.data import load_preference_dataset
from tpo_hf.train import TPOScriptArguments, make_parser

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_dataset_folder(folder: Path, video_dir: Path) -> Path:
    Dataset.from_list(preference_rows()).save_to_disk(str(folder))
    for video in video_dir.glob("*.mp4"):
        shutil.copy(video, folder / video.name)
    return folder


def write_recipe(path: Path, model_dir: Path, dataset_dir: Path, output_dir: Path, **extra) -> Path:
    recipe = {
        # Model arguments
        "model_name_or_path": str(model_dir),
        "dtype": "float32",
        "use_peft": True,
        "lora_r": 4,
        "lora_alpha": 8,
        # Data arguments
        "dataset_name": str(dataset_dir),
        "num_frames": 4,
        # Training arguments
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 2,
        "max_steps": 2,
        "learning_rate": 1.0e-3,
        "logging_steps": 1,
        "bf16": False,
        "activation_checkpointing": False,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        **extra,
    }
    if not recipe["use_peft"]:  # a full fine-tune's recipe has no LoRA fields (they would be refused as ignored)
        recipe = {key: value for key, value in recipe.items() if not key.startswith("lora_")}
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", TQDM_DISABLE="1")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_train_module_from_yaml(tiny_model_dirs, video_dir, tmp_path):
    model_dir = tiny_model_dirs("qwen2_vl")
    dataset_dir = write_dataset_folder(tmp_path / "data", video_dir)
    output_dir = tmp_path / "run"
    recipe = write_recipe(tmp_path / "config.yaml", model_dir, dataset_dir, output_dir)
    # flags override the file
    result = run_cli([sys.executable, "-m", "tpo_hf.train", "--config", str(recipe), "--max_steps", "1"], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (output_dir / "adapter_config.json").exists()
    assert (output_dir / "tpo_video_config.json").exists()
    assert json.loads((output_dir / "tpo_video_config.json").read_text())["num_frames"] == 4
    state = (
        json.loads((output_dir / "trainer_state.json").read_text())
        if (output_dir / "trainer_state.json").exists()
        else None
    )
    if state is not None:
        assert state["global_step"] == 1


def test_tpo_hf_train_command(tiny_model_dirs, video_dir, tmp_path):
    model_dir = tiny_model_dirs("llava_onevision")
    dataset_dir = write_dataset_folder(tmp_path / "data", video_dir)
    output_dir = tmp_path / "run"
    recipe = write_recipe(tmp_path / "config.yaml", model_dir, dataset_dir, output_dir)
    command = [shutil.which("tpo-hf")] if shutil.which("tpo-hf") else [sys.executable, "-m", "tpo_hf.commands"]
    result = run_cli([*command, "train", "--config", str(recipe)], tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    assert (output_dir / "adapter_model.safetensors").exists()
    assert "train_loss" in result.stdout + result.stderr


def test_parser_reads_every_field_kind(tmp_path):
    recipe = tmp_path / "c.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": "m",
                "dataset_name": "d",
                "output_dir": "o",
                "num_frames": 16,
                "sft_weight": 0.25,
                "beta": 0.1,
                "lora_r": 8,
                "bf16": False,
                "too_long_policy": "error",
            }
        )
    )
    script_args, training_args, model_args = make_parser().parse_args_and_config(args=["--config", str(recipe)])
    assert isinstance(script_args, TPOScriptArguments) and script_args.dataset_name == "d"
    assert (training_args.num_frames, training_args.beta, training_args.too_long_policy) == (16, 0.1, "error")
    assert training_args.loss_weights == [1.0, 0.25]
    assert model_args.lora_r == 8
    with pytest.raises(ValueError, match="not_a_field"):
        recipe.write_text(yaml.safe_dump({"output_dir": "o", "bf16": False, "not_a_field": 1}))
        make_parser().parse_args_and_config(args=["--config", str(recipe)])


def test_load_preference_dataset_sources(tmp_path):
    rows = preference_rows()
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "disk"))
    assert len(load_preference_dataset(str(tmp_path / "disk"))) == len(rows)
    Dataset.from_list(rows).to_json(str(tmp_path / "rows.jsonl"))
    assert load_preference_dataset(str(tmp_path / "rows.jsonl"))["video"][0] == "red_blue.mp4"
    (tmp_path / "rows.txt").write_text("x")
    with pytest.raises(ValueError, match="rows.txt"):
        load_preference_dataset(str(tmp_path / "rows.txt"))


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tmp_path, monkeypatch):
    """`run_command` is the one place: a setting refused while parsing (here by transformers' own check) or by a tpo-hf
    check ends the command with `tpo-hf NAME: message`; an error raised inside a library (a bug) keeps its traceback,
    and so does every error with `debug` or `TPO_HF_DEBUG=1`."""
    import torch

    from tpo_hf.commands import run_command
    from tpo_hf.eval.mcq import headline_score
    from tpo_hf.train import cli_main

    monkeypatch.delenv("TPO_HF_DEBUG", raising=False)
    args = ["--model_name_or_path", "m", "--dataset_name", "d", "--output_dir", str(tmp_path / "run")]
    mismatched = ["--load_best_model_at_end", "true", "--save_strategy", "steps", "--eval_strategy", "no"]
    with pytest.raises(SystemExit, match=r"^tpo-hf train: .*load_best_model_at_end"):
        cli_main([*args, *mismatched])
    with pytest.raises(SystemExit, match=r"^tpo-hf train: .*beta"):
        cli_main([*args, "--beta", "-1"])
    with pytest.raises(ValueError, match="beta"):
        cli_main([*args, "--beta", "-1", "--debug"])

    with pytest.raises(SystemExit, match="^tpo-hf eval: Unknown headline metric 'best'"):
        run_command("eval", headline_score, {}, "best")
    # the same class raised by a library's code is a bug: its traceback is kept
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        run_command("eval", torch.nn.functional.interpolate, torch.ones(1, 1, 2), 1, 2.0)
    with pytest.raises(ValueError, match="invalid literal"):
        run_command("eval", int, "x")
    monkeypatch.setenv("TPO_HF_DEBUG", "1")
    with pytest.raises(ValueError, match="Unknown headline metric"):
        run_command("eval", headline_score, {}, "best")


def test_lora_settings_that_would_not_take_effect_are_refused(tmp_path, monkeypatch):
    """f12: `lora_r` / `lora_target_modules` without `use_peft` ran a full fine-tune that ignored them (and a card
    calling it a merged update); `lora_r: 0` was PEFT's traceback. Both are one line before anything loads."""
    from tpo_hf.train import cli_main

    monkeypatch.delenv("TPO_HF_DEBUG", raising=False)
    args = ["--model_name_or_path", "m", "--dataset_name", "d", "--output_dir", str(tmp_path / "run")]
    args += ["--bf16", "false", "--use_cpu", "true", "--report_to", "none"]
    with pytest.raises(
        SystemExit,
        match=r"^tpo-hf train: lora_r / lora_target_modules are set but use_peft is false; add --use_peft true, "
        r"or drop them for a full fine-tune\.$",
    ):
        cli_main([*args, "--lora_r", "8", "--lora_target_modules", "q_proj"])
    with pytest.raises(SystemExit, match=r"^tpo-hf train: lora_r must be a positive integer \(the LoRA rank\), got 0"):
        cli_main([*args, "--use_peft", "true", "--lora_r", "0"])
    assert not (tmp_path / "run").exists()


def test_a_missing_model_revision_is_named(tiny_model_dirs, video_dir, tmp_path):
    """f24: `model_revision: v2` that the Hub repo does not have was transformers' OSError traceback ("v2 is not a
    valid git identifier"). Against the local Hub server, which answers an unknown revision as the Hub does."""
    from hub_server import HubServer

    with HubServer(tmp_path / "hub") as hub:
        env = dict(
            os.environ,
            PYTHONPATH=str(REPO_ROOT),
            HF_ENDPOINT=hub.endpoint,
            HF_HUB_OFFLINE="0",
            HF_HUB_DISABLE_XET="1",
            HF_HOME=str(tmp_path / "hf_home"),
            HF_TOKEN="hf_local_test_token",
            NO_PROXY="127.0.0.1,localhost",
            TQDM_DISABLE="1",
        )
        upload = (
            "from huggingface_hub import HfApi; api = HfApi(); api.create_repo('tester/tiny-base'); "
            f"api.upload_folder(repo_id='tester/tiny-base', folder_path={str(tiny_model_dirs('qwen2_vl'))!r})"
        )
        subprocess.run([sys.executable, "-c", upload], env=env, check=True, capture_output=True, timeout=300)
        dataset_dir = write_dataset_folder(tmp_path / "data", video_dir)
        recipe = write_recipe(
            tmp_path / "c.yaml", "tester/tiny-base", dataset_dir, tmp_path / "run", model_revision="v2"
        )
        result = subprocess.run(
            [sys.executable, "-m", "tpo_hf.commands", "train", "--config", str(recipe)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-4000:]
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("tpo-hf train: model_revision 'v2' does not exist for the model tester/tiny-base")
    )


def test_a_folder_of_videos_with_its_data_file_loads_that_file(video_dir, tmp_path):
    """A folder a user fills by hand -- pairs.jsonl and the videos beside it -- loads pairs.jsonl, which `datasets`
    alone ignores once the videos outnumber it (it reads a `videofolder`: one `video` column); several data files
    beside videos are named, with how to pass one."""
    rows = preference_rows()
    folder = tmp_path / "pairs"
    folder.mkdir()
    for index in range(3):
        for video in video_dir.glob("*.mp4"):
            shutil.copy(video, folder / (video.name if index == 0 else f"{video.stem}-{index}.mp4"))
    Dataset.from_list(rows).to_json(str(folder / "pairs.jsonl"))
    dataset = load_preference_dataset(str(folder))
    assert dataset.column_names[:4] == ["prompt", "chosen", "rejected", "video"] and len(dataset) == len(rows)
    assert dataset["video"][0] == "red_blue.mp4"  # relative to the folder, as `default_video_root` resolves it
    Dataset.from_list(rows).to_json(str(folder / "more.jsonl"))
    with pytest.raises(ValueError, match=r"pairs holds the data files more.jsonl, pairs.jsonl .*pairs/more.jsonl"):
        load_preference_dataset(str(folder))


def test_a_hub_style_folder_without_the_split_names_its_splits(tmp_path):
    """A Hub-style folder whose only split is test (data/test-*.parquet) asked for 'train': one line naming the
    folder, its splits and the setting, not `datasets`' "Unknown split" traceback."""
    (tmp_path / "hub" / "data").mkdir(parents=True)
    Dataset.from_list(preference_rows()).to_parquet(str(tmp_path / "hub" / "data" / "test-00000-of-00001.parquet"))
    with pytest.raises(ValueError, match=r"hub has splits \['test'\], not 'train'.*dataset_train_split"):
        load_preference_dataset(str(tmp_path / "hub"))
    assert len(load_preference_dataset(str(tmp_path / "hub"), split="test")) == len(preference_rows())
    assert len(load_preference_dataset(str(tmp_path / "hub"), split="test[:1]")) == 1


def test_a_saved_dataset_folder_reads_split_slices_and_refuses_other_splits(tmp_path):
    """Probe b/g16: a `save_to_disk` folder of one `Dataset` (what `tpo-hf curate` writes) honours `train[:2]` as a
    data file does, and refuses `test` (naming the folder and its one split) instead of answering with the training
    rows, which an eval would log as a held-out score; a DatasetDict folder reads slices of its splits too."""
    from datasets import DatasetDict

    from tpo_hf.commands import run_command

    rows = preference_rows(repeat=3)
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "disk"))
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dict"))
    disk = str(tmp_path / "disk")
    assert len(load_preference_dataset(disk, split="train[:2]")) == 2
    assert load_preference_dataset(disk, split="train[50%:]")["chosen"] == [row["chosen"] for row in rows[3:]]
    assert len(load_preference_dataset(str(tmp_path / "dict"), split="train[:2]")) == 2
    for split in ("test", "validation", "train[:1]+test"):
        with pytest.raises(
            SystemExit, match=rf"^tpo-hf train: Dataset folder .*disk holds one split .*not '{re.escape(split)}'"
        ):
            run_command("train", load_preference_dataset, disk, None, split)
    with pytest.raises(SystemExit, match=r"^tpo-hf train: Split 'train\[x\]' of dataset folder .*split syntax"):
        run_command("train", load_preference_dataset, disk, None, "train[x]")


def test_a_relative_dataset_path_missing_under_the_working_directory_is_one_line(tmp_path, monkeypatch):
    """Probe b/g21: a recipe beside its data (`dataset_name: data/pairs.jsonl`, or `data`) run from another folder:
    one line saying it is no local path under the working directory (relative paths are read from there, not from the
    recipe's folder) nor a Hub dataset, instead of `datasets`' traceback about reaching the Hub."""
    from tpo_hf.commands import run_command

    (tmp_path / "proj" / "data").mkdir(parents=True)
    Dataset.from_list(preference_rows()).to_json(str(tmp_path / "proj" / "data" / "pairs.jsonl"))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    # a data file's name never reaches the Hub; a name that may be a Hub id does, and fails (offline in the tests)
    for name in ("data/pairs.jsonl", "../data/pairs.jsonl", f"missing-{tmp_path.name}"):
        with pytest.raises(SystemExit) as raised:
            run_command("train", load_preference_dataset, name)
        message = str(raised.value)
        assert message.startswith(f"tpo-hf train: Dataset {name} is not a local file or folder under the working ")
        assert str(tmp_path / "elsewhere") in message and "not from the recipe's folder" in message
        assert "\n" not in message and "reachable on the Hub" in message
    monkeypatch.chdir(tmp_path / "proj")
    assert len(load_preference_dataset("data/pairs.jsonl")) == len(preference_rows())


def test_a_bare_dataset_name_is_not_read_from_another_local_folders_cache(tmp_path, monkeypatch):
    """Offline, `dataset_name: data` with no `data` folder here was loaded from `datasets`' cache of an earlier,
    different local folder also named `data` (it caches a folder under its base name), with only a log line: the
    other folder's rows were trained on. A name without a namespace now needs the Hub to confirm it."""
    from tpo_hf.commands import run_command

    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    (tmp_path / "first" / "data").mkdir(parents=True)
    Dataset.from_list(preference_rows()[:2]).to_json(str(tmp_path / "first" / "data" / "pairs.jsonl"))
    monkeypatch.chdir(tmp_path / "first")
    assert len(load_preference_dataset("data")) == 2  # now in the cache, under `data`
    (tmp_path / "second").mkdir()
    monkeypatch.chdir(tmp_path / "second")
    with pytest.raises(SystemExit) as raised:
        run_command("train", load_preference_dataset, "data")
    message = str(raised.value)
    assert message.startswith("tpo-hf train: Dataset data is not a local file or folder under the working ")
    assert "offline (HF_HUB_OFFLINE=1), and a name without a namespace is not read from `datasets`' cache" in message
    monkeypatch.chdir(tmp_path)
    assert len(load_preference_dataset("first/data")) == 2  # a path still loads


def test_dataset_config_is_required_where_declared_and_refused_where_there_are_none(tmp_path):
    """Probes b/g23, b/g24: a Hub-layout folder whose README declares two configs, loaded without `dataset_config`,
    names the setting and the configs (not `datasets`' `load_dataset('data', 'localized')` advice); a config given
    for a data file or a `save_to_disk` folder, which have none, is refused instead of ignored (all rows trained)."""
    from tpo_hf.commands import run_command

    rows = preference_rows()
    folder = tmp_path / "configs"
    for sub, part in (("loc", rows[:1]), ("comp", rows[1:])):
        (folder / sub).mkdir(parents=True)
        Dataset.from_list(part).to_parquet(str(folder / sub / "train-00000-of-00001.parquet"))
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: localized\n  data_files:\n  - split: train\n    path: loc/*.parquet\n"
        "- config_name: comprehensive\n  data_files:\n  - split: train\n    path: comp/*.parquet\n---\n"
    )
    with pytest.raises(
        SystemExit,
        match=r"^tpo-hf train: .*configs declares several .*`dataset_config` to one of \['localized', 'comp",
    ):
        run_command("train", load_preference_dataset, str(folder))
    with pytest.raises(SystemExit, match=r"has no config 'nope': set `dataset_config` to one of \['localized'"):
        run_command("train", load_preference_dataset, str(folder), "nope")
    assert len(load_preference_dataset(str(folder), "comprehensive")) == len(rows) - 1

    Dataset.from_list(rows).to_json(str(tmp_path / "pairs.jsonl"))
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "disk"))
    for source in ("pairs.jsonl", "disk"):
        with pytest.raises(
            SystemExit, match=rf"^tpo-hf train: Dataset .*{source} is .* no configs: remove `dataset_c"
        ):
            run_command("train", load_preference_dataset, str(tmp_path / source), "localized")


def test_a_fresh_run_into_a_folder_with_earlier_checkpoints_is_refused(tmp_path, monkeypatch, caplog):
    """a/F01: a fresh run into an output_dir holding checkpoint-3/4 of an earlier run (save_total_limit 2) ended rc 0
    with its own checkpoint-1/2 rotated out and the earlier run's kept (a later resume picked those up). Refused,
    naming them and the choices; with `overwrite_output_dir` they are removed, with a warning; a resume goes on."""
    import logging

    from tpo_hf.train import cli_main

    monkeypatch.delenv("TPO_HF_DEBUG", raising=False)
    out = tmp_path / "run"
    for step in (3, 4):
        (out / f"checkpoint-{step}").mkdir(parents=True)
    args = ["--model_name_or_path", "m", "--dataset_name", str(tmp_path / "missing.jsonl"), "--output_dir", str(out)]
    args += ["--bf16", "false", "--use_cpu", "true", "--report_to", "none", "--save_total_limit", "2"]
    with pytest.raises(
        SystemExit,
        match=rf"^tpo-hf train: output_dir {out} holds checkpoints of an earlier run \(checkpoint-3, checkpoint-4\).*"
        r"resume_from_checkpoint true .* another output_dir, or remove those checkpoints \(overwrite_output_dir",
    ):
        cli_main(args)
    # a resume is no fresh run: it gets past the check (and fails on the missing dataset)
    with pytest.raises(SystemExit, match="missing.jsonl"):
        cli_main([*args, "--resume_from_checkpoint", "true"])
    assert sorted(path.name for path in out.iterdir()) == ["checkpoint-3", "checkpoint-4"]
    with caplog.at_level(logging.WARNING), pytest.raises(SystemExit, match="missing.jsonl"):
        cli_main([*args, "--overwrite_output_dir", "true"])
    assert "Removing the checkpoints of an earlier run" in caplog.text and "checkpoint-3, checkpoint-4" in caplog.text
    assert not list(out.glob("checkpoint-*"))


def test_config_equals_file_is_read(tmp_path, monkeypatch):
    """a/F02: `--config=FILE` (the equals form argparse takes for every other flag) was silently ignored: TRL's parser
    looks for the bare `--config`. Read as `--config FILE`."""
    from tpo_hf.train import cli_main

    monkeypatch.delenv("TPO_HF_DEBUG", raising=False)
    recipe = tmp_path / "c.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "m", "dataset_name": "d", "bf16": False, "beta": -1.0}))
    with pytest.raises(SystemExit, match=r"^tpo-hf train: .*`beta` must be > 0"):
        cli_main([f"--config={recipe}", "--output_dir", str(tmp_path / "run")])


def test_a_recipe_of_another_command_is_named_as_such(tmp_path, monkeypatch):
    """a/F06: the eval (or curation) recipe given to `train` failed on whatever default came first on that machine
    ("Your setup doesn't support bf16/gpu"); the recipe is named with the command it is for."""
    from tpo_hf.commands.eval import cli_main as eval_main
    from tpo_hf.train import cli_main

    monkeypatch.delenv("TPO_HF_DEBUG", raising=False)
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "m", "benchmark": "videomme", "batch_size": 2}))
    with pytest.raises(
        SystemExit,
        match=rf"^tpo-hf train: {recipe} looks like a recipe for `tpo-hf eval`, not `tpo-hf train`: it sets "
        r"batch_size, benchmark, which",
    ):
        cli_main(["--config", str(recipe), "--dataset_name", "d"])
    recipe = tmp_path / "train.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "m", "lora_r": 4, "per_device_train_batch_size": 2}))
    with pytest.raises(SystemExit, match=r"^tpo-hf eval: .* looks like a recipe for `tpo-hf train`"):
        eval_main(["--config", str(recipe)])


def test_a_default_output_dir_is_named_at_the_start(tmp_path, monkeypatch, caplog):
    """a/F103: without output_dir, train / eval / curate wrote to ./trainer_output, ./eval_results, ./tpo-curated
    without saying where. The folder is named at the start."""
    import logging

    from tpo_hf.train import cli_main

    monkeypatch.delenv("TPO_HF_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING), pytest.raises(SystemExit, match="dataset_name"):
        cli_main(["--model_name_or_path", "m", "--bf16", "false", "--use_cpu", "true", "--report_to", "none"])
    assert f"output_dir is not set, writing to {tmp_path / 'trainer_output'}" in caplog.text


@pytest.mark.parametrize("command", [["-m", "tpo_hf.commands", "train"], ["-m", "tpo_hf.commands.train"]])
def test_the_recipes_env_is_set_before_datasets_reads_it(video_dir, tmp_path, command):
    """a/F05: TRL's `env:` mapping of a recipe (`HF_DATASETS_CACHE: scratch`) was set after `datasets` was imported,
    which had read its cache folder already: the cache went to the default. The recipe's env is set first."""
    data = tmp_path / "pairs.jsonl"
    Dataset.from_list(preference_rows(repeat=1)).to_json(str(data))
    scratch = tmp_path / "scratch"
    recipe = tmp_path / "c.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tmp_path / "no-model"),
                "dataset_name": str(data),
                "output_dir": str(tmp_path / "run"),
                "bf16": False,
                "use_cpu": True,
                "report_to": "none",
                "env": {"HF_DATASETS_CACHE": str(scratch)},
            }
        )
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "home"))
    env.pop("HF_DATASETS_CACHE", None)
    result = subprocess.run(
        [sys.executable, *command, "--config", str(recipe)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0 and "no-model" in result.stderr, result.stderr[-3000:]  # after the dataset loaded
    assert list(scratch.glob("json/*")), result.stderr[-3000:]
    assert not (tmp_path / "home" / "datasets").exists()


def test_home_in_recipe_paths_is_expanded_as_a_shell_would(tmp_path, monkeypatch):
    """a/F26: YAML keeps `~/eval_out` literal: eval and curate made a folder named `~` in the current one, and train
    looked `~/data` up on the Hub. A recipe's (or a quoted flag's) `~` is expanded; a flag given beside the recipe
    still wins."""
    from tpo_hf.commands import expand_home_paths, read_recipe
    from tpo_hf.commands.eval import make_parser

    monkeypatch.setenv("HOME", str(tmp_path))
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(
        yaml.safe_dump({"model_name_or_path": "~/models/base", "output_dir": "~/eval_out", "benchmark": "videomme"})
    )
    argv = ["--config", str(recipe), "--video_dir=~/videos", "--model_name_or_path", "Qwen/Qwen2-VL-2B-Instruct"]
    parser = make_parser()
    (config,) = parser.parse_args_and_config(args=expand_home_paths(argv, read_recipe(argv), parser))
    assert config.output_dir == str(tmp_path / "eval_out") and config.video_dir == str(tmp_path / "videos")
    assert config.model_name_or_path == "Qwen/Qwen2-VL-2B-Instruct"  # the flag beside the recipe wins


class _FrameIndexBackend:
    """A curation video backend that answers with the frames it is shown (the two views of a pair differ): a real
    curation without a model."""

    model_id = "frames"
    drops_cut_answers = True

    def generate(self, requests, max_new_tokens, seed=0):
        return ["text" if r.video is None else f"frames {r.video[1]['frames_indices']}" for r in requests]

    def prompt_format(self, video):
        return None

    def check_ready(self):
        pass


def _curate(video_dir: Path, output_dir: Path, copy_videos: bool, **settings):
    """Curates `video_dir` into `output_dir` (template questions, no judge), as `tpo-hf curate` does."""
    from tpo_hf.curation import Backends, CurationConfig, run_curation

    config = CurationConfig(
        video_dir=str(video_dir),
        output_dir=str(output_dir),
        copy_videos=copy_videos,
        video_model="frames",
        question_backend="template",
        use_judge=False,
        num_frames=8,
        sparse_num_frames=4,
        progress=False,
        **settings,
    )
    return run_curation(config, Backends(_FrameIndexBackend(), None, None))


def test_a_curated_folder_whose_videos_changed_since_is_refused_naming_them(video_dir, tmp_path):
    """Probe a/h3: after `curate --copy_videos false` (rows hold the corpus's paths), a corpus clip replaced by another
    under the same name was trained on with the pairs describing the old clip, nothing said, though the curation's
    manifest recorded each video's identity. Loading the folder compares the videos its rows use (a stat each) and
    refuses naming the changed one and the rerun; a copy under `videos/` edited since is refused alike; rerunning
    the curation brings the folder up to date."""
    corpus, out, copied = tmp_path / "corpus", tmp_path / "out", tmp_path / "copied"
    shutil.copytree(video_dir, corpus)
    _curate(corpus, out, copy_videos=False)
    assert str(corpus / "red_blue.mp4") in set(load_preference_dataset(str(out))["video"])
    _curate(corpus, copied, copy_videos=True)

    shutil.copyfile(corpus / "green_yellow.mp4", corpus / "red_blue.mp4")  # another clip under the same name
    with pytest.raises(
        ValueError,
        match=rf"^Dataset folder {out} holds pairs curated from videos that changed since .*{out}/_curation/manifest"
        rf"\.json\): {corpus}/red_blue\.mp4\. .*rerun tpo-hf curate into it .*curates the changed videos again\.$",
    ):
        load_preference_dataset(str(out))
    # the copies are the curation's snapshot: a changed source leaves them as curated, an edited copy does not
    assert len(load_preference_dataset(str(copied)))
    shutil.copytree(copied, tmp_path / "moved", copy_function=shutil.copy)  # new times: the folder copied (`cp -r`)
    assert len(load_preference_dataset(str(tmp_path / "moved")))
    shutil.copyfile(corpus / "red_blue.mp4", copied / "videos" / "red_blue.mp4")  # the copy replaced by hand
    with pytest.raises(
        ValueError,
        match=rf"{copied}/videos/red_blue\.mp4 \(the copy of red_blue\.mp4\)\. .*copies each edited copy",
    ):
        load_preference_dataset(str(copied))

    _curate(corpus, out, copy_videos=False)  # curates red_blue.mp4 again
    assert len(load_preference_dataset(str(out)))

    # a work_dir elsewhere is found where the report names it, and read only while its manifest serves this folder
    elsewhere, work_dir = tmp_path / "elsewhere", tmp_path / "work"
    _curate(corpus, elsewhere, copy_videos=False, work_dir=str(work_dir))
    assert json.loads((elsewhere / "curation_report.json").read_text())["work_dir"] == str(work_dir.resolve())
    shutil.copyfile(video_dir / "red_blue.mp4", corpus / "red_blue.mp4")  # the first clip back
    with pytest.raises(ValueError, match=rf"recorded in {work_dir}/manifest\.json\): {corpus}/red_blue\.mp4\. "):
        load_preference_dataset(str(elsewhere))
    _curate(corpus, tmp_path / "other", copy_videos=False, work_dir=str(work_dir))  # the work_dir serves another now
    assert len(load_preference_dataset(str(elsewhere)))


def test_a_curated_folder_whose_curation_rerun_was_killed_is_refused(video_dir, tmp_path, caplog):
    """Probe a/h28: a finished curation rerun (e.g. with more videos) and SIGKILLed left the previous run's dataset
    (or a mix, killed while saving) and its lock record; training read it with only a note about a stale lock. A
    lock record left by a killed curate is refused as an unfinished curation; one left by another job (train) is
    read as before, and so is the folder once the lock file is deleted (the previous dataset, as the hint says)."""
    import logging
    import signal

    out = tmp_path / "out"
    _curate(video_dir, out, copy_videos=True)

    def left_by_killed(what: str) -> None:
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time\nfrom tpo_hf.locks import output_dir_lock\n"
                f"with output_dir_lock({str(out)!r}, {what!r}):\n    print('held', flush=True)\n    time.sleep(120)",
            ],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGKILL)
        holder.wait()

    left_by_killed("curate")
    lock = out / ".tpo-hf.lock"
    with pytest.raises(
        ValueError,
        match=rf"^{out} is an unfinished curation: the last tpo-hf curate into it \(pid \d+ .*curate\) since .*\) did not "
        r"finish \(it was killed, .*\), so the dataset saved there is the previous run's .*Rerun tpo-hf curate to "
        rf"finish it .*delete {lock}\.$",
    ):
        load_preference_dataset(str(out))
    lock.unlink()
    assert len(load_preference_dataset(str(out)))

    left_by_killed("train")
    with caplog.at_level(logging.WARNING, logger="tpo_hf.locks"):
        assert len(load_preference_dataset(str(out)))
    assert "no run holds its lock" in caplog.text
