"""Hub round trips against a local Hub-compatible server on loopback, with the real clients.

The clients run in subprocesses (`tests/_hub_scripts.py`, the `tpo-hf` CLI) so that `HF_ENDPOINT` is set before
`huggingface_hub` is imported, as a user would set it; the session-wide `HF_HUB_OFFLINE=1` is lifted for them only.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import HubServer, point_clients_at

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).with_name("_hub_scripts.py")
sys.path.insert(0, str(Path(__file__).parent))
from _hub_scripts import ADAPTER_REPO, BASE_REPO, CLI_REPO, DATASET_REPO, EVAL_RESULTS, MERGED_REPO  # noqa: E402


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with HubServer(tmp_path_factory.mktemp("hub")) as server:
        yield server


def hub_env(hub: HubServer, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        HF_ENDPOINT=hub.endpoint,
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(home),  # a fresh cache: every file must come from the server
        HF_TOKEN="hf_local_test_token",
        PYTHONPATH=f"{REPO_ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}",
        NO_PROXY="127.0.0.1,localhost",
    )
    env.pop("TRANSFORMERS_OFFLINE", None)
    return env


def run(args: list[str], env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="module")
def published(hub, video_dir, tmp_path_factory):
    """Everything a user publishes, through the real clients in three processes (importing torch is the cost):

    1. push the preference dataset, load it back with `load_dataset`, push a tiny base model, train a LoRA adapter
       on it with `TPOTrainer` on the reloaded dataset, `trainer.push_to_hub(...)`;
    2. `tpo-hf push` of the trained folder while the server fails one commit, two reruns, then `--merge`;
    3. from a fresh cache, load the adapter with `PeftModel.from_pretrained` and `AutoModelForImageTextToText`, the
       merged model, and the card with `ModelCard.load`.
    """
    out = tmp_path_factory.mktemp("published")
    run([str(SCRIPTS), "train_and_push", str(out), str(video_dir)], hub_env(hub, out / "hf_home_train"))
    out_digest = _digest(out / "run")
    hub.fail_next_commits(1)
    run([str(SCRIPTS), "cli_pushes", str(out)], hub_env(hub, out / "hf_home_push"))
    assert _digest(out / "run") == out_digest, "pushing changed the local training output"
    run([str(SCRIPTS), "load_back", str(out), str(video_dir)], hub_env(hub, out / "hf_home_load"))
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_dataset_push_to_hub_and_load_dataset(hub, published):
    result = json.loads((published / "dataset.json").read_text())
    assert result["loaded"] == result["rows"]
    assert any(path.endswith(".parquet") for path in hub.files(DATASET_REPO, "dataset"))


def test_trainer_push_to_hub_one_commit(hub, published):
    files = hub.files(ADAPTER_REPO)
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "README.md",
        "training_curves.png",
        "tokenizer.json",
        "processor_config.json",
        "tpo_video_config.json",
    ):
        assert name in files, f"{name} missing from the pushed repo: {sorted(files)}"
    assert not any(name.startswith("checkpoint-") or name in ("training_args.bin", "tpo_card.json") for name in files)
    assert files["training_curves.png"].startswith(b"\x89PNG")
    assert len(hub.commits(ADAPTER_REPO)) == 2  # repo creation + exactly one upload commit
    assert json.loads(files["adapter_config.json"])["base_model_name_or_path"] == BASE_REPO


def test_pushed_adapter_and_merged_model_reproduce_trained_logits(published):
    import torch

    trained = torch.load(published / "trained_logits.pt")
    assert torch.allclose(torch.load(published / "peft_logits.pt"), trained, atol=1e-5)
    assert torch.allclose(torch.load(published / "auto_logits.pt"), trained, atol=1e-5)
    assert torch.allclose(torch.load(published / "merged_logits.pt"), trained, atol=1e-4)


def test_card_reloads_with_trainer_numbers(published):
    log_history = json.loads((published / "train.json").read_text())["log_history"]
    last = [entry for entry in log_history if "rewards/margins" in entry][-1]
    card = json.loads((published / "card.json").read_text())
    data, text = card["data"], card["text"]
    assert data["base_model"] == BASE_REPO
    assert data["datasets"] == [DATASET_REPO]
    assert data["library_name"] == "peft"
    assert data["pipeline_tag"] == "video-text-to-text"
    assert {"temporal-preference-optimization", "tpo", "dpo", "trl", "video"} <= set(data["tags"])
    (result,) = data["model-index"][0]["results"]
    assert result["dataset"]["type"] == EVAL_RESULTS[0]["dataset_type"]
    assert result["metrics"][0] == {"type": "accuracy", "value": EVAL_RESULTS[0]["metric_value"]}
    assert f"| Final training loss | {last['loss']:.4g} |" in text
    assert f"| Reward accuracy | {last['rewards/accuracies']:.4g} |" in text
    assert f"| Reward margin | {last['rewards/margins']:.4g} |" in text
    for row in (
        "| DPO beta | 0.3 |",
        "| SFT weight (alpha) | 0.5 |",
        "| Learning rate | 0.005 |",
        "| Frames per video | 8 |",
        "| LoRA rank | 4 |",
        "| LoRA alpha | 8 |",
        "| Quantization | none |",
        "| Optimizer steps run | 2 |",
    ):
        assert row in text
    assert f'PeftModel.from_pretrained(base, "{ADAPTER_REPO}")' in text
    assert "arXiv:2501.13919" in text and "![Training curves](training_curves.png)" in text
    assert "More Information Needed" not in text
    assert card["num_frames"] == 8


def test_cli_push_failure_is_reported_and_retry_does_not_duplicate(hub, published):
    failed, retried, again, merged = json.loads((published / "cli_pushes.json").read_text())
    adapter_dir = published / "run"
    assert failed["code"] == 1
    assert f"Rerun `tpo-hf push --adapter_dir {adapter_dir} --repo_id {CLI_REPO}`" in failed["message"]
    assert f"Nothing in {adapter_dir} was changed" in failed["message"]
    commits = hub.commits(CLI_REPO)
    assert failed["head"] == commits[0]["id"]  # the repo was created, nothing was committed
    assert retried["code"] == 0 and retried["head"] == commits[1]["id"]
    assert again["code"] == 0 and again["head"] == retried["head"]  # same files, same paths: no new commit
    assert len(commits) == 2
    files = hub.files(CLI_REPO)
    assert set(files) == set(hub.files(ADAPTER_REPO))
    # the card is re-rendered for the repo it is pushed to
    assert f'PeftModel.from_pretrained(base, "{CLI_REPO}")' in files["README.md"].decode()

    assert merged["code"] == 0
    merged_files = hub.files(MERGED_REPO)
    assert "model.safetensors" in merged_files and "config.json" in merged_files
    assert "adapter_config.json" not in merged_files and "tokenizer.json" in merged_files
    assert "library_name: transformers" in merged_files["README.md"].decode()


# --- probe fixes: a Hub model is keyed by its commit; a truncated weights file is not pushed ------------------------
IDENTITY_SCRIPT = """
import json, sys
from huggingface_hub import HfApi, constants, hf_hub_download
from tpo_hf.fingerprint import model_identity
repo, push = sys.argv[1], sys.argv[2]
api = HfApi()
if push != "no":
    api.create_repo(repo, exist_ok=True)
    api.upload_file(path_or_fileobj=push.encode(), path_in_repo="adapter_config.json", repo_id=repo)
    hf_hub_download(repo, "adapter_config.json")  # as loading it would: the cache's refs now name this commit
head = None if constants.HF_HUB_OFFLINE else api.model_info(repo).sha
print(json.dumps({"identity": model_identity(repo), "head": head}))
"""


def test_a_hub_model_is_keyed_by_its_commit_online_and_offline(hub, tmp_path):
    """`model_identity` of a Hub id is the commit it resolves to: a repo pushed again gets another identity (the eval
    cache and the curation key then hold no stale answers); offline, the commit the local cache last loaded."""
    env = hub_env(hub, tmp_path / "home")
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    repo = "tester/identity-adapter"

    def identity(push: str, environment=env) -> dict:
        return json.loads(run(["-c", IDENTITY_SCRIPT, repo, push], environment).stdout.strip().splitlines()[-1])

    first = identity('{"r": 4}')
    assert first["identity"] == f"{repo}@commit:{first['head']}"
    second = identity('{"r": 8}')  # the adapter retrained and pushed again
    assert second["identity"] == f"{repo}@commit:{second['head']}" != first["identity"]
    assert identity("no", offline)["identity"] == second["identity"]  # offline: the cached refs
    assert identity("no")["identity"] == second["identity"]  # nothing pushed since: the same


def test_push_refuses_a_truncated_weights_file(hub, tmp_path):
    """A kill or a full disk during the final save leaves a short `adapter_model.safetensors`: `tpo-hf push` names it
    in one line and pushes nothing."""
    import numpy as np
    from safetensors.numpy import save_file

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    weights = adapter / "adapter_model.safetensors"
    save_file({"a": np.ones((16, 16), dtype=np.float32), "b": np.zeros(8, dtype=np.float32)}, str(weights))
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])

    repo = "tester/truncated-adapter"
    command = ["-m", "tpo_hf.commands", "push", "--adapter_dir", str(adapter), "--repo_id", repo]
    refused = run(command, hub_env(hub, tmp_path / "home"), check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"tpo-hf push: {weights} is incomplete (its tensors end at byte {len(whole)}")
    assert not hub.store.exists("model", repo)  # nothing pushed, not even an empty repo

    from tpo_hf.hub.push import incomplete_weights

    assert "the file has" in incomplete_weights(weights)
    weights.write_bytes(whole)
    assert incomplete_weights(weights) is None


# --- second probe: an adapter and a full model never share a repo; repo ids are checked before any upload ----------
KIND_SCRIPT = """
import json, logging, sys
logging.basicConfig(level=logging.WARNING)
from huggingface_hub import HfApi
from tpo_hf.hub.push import push_adapter
folder, repo = sys.argv[1], sys.argv[2]
push_adapter(folder, repo)
print(json.dumps(sorted(HfApi().list_repo_files(repo))))
"""


def _weights(path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(path))


def test_push_of_one_kind_deletes_the_other_kinds_files(hub, tmp_path):
    """g61: a full model pushed over a repo holding an adapter deletes adapter_config.json and the adapter weights in
    the same commit (else transformers loads the stale adapter on top of the new weights), naming them in the log;
    an adapter pushed over a full model deletes the full-model weights."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    _weights(adapter / "adapter_model.safetensors")
    full = tmp_path / "full"
    full.mkdir()
    (full / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    _weights(full / "model.safetensors")
    env = hub_env(hub, tmp_path / "home")
    repo = "tester/kinds"

    run(["-c", KIND_SCRIPT, str(adapter), repo], env)
    pushed = run(["-c", KIND_SCRIPT, str(full), repo], env)
    files = json.loads(pushed.stdout.strip().splitlines()[-1])
    assert "adapter_config.json" not in files and "adapter_model.safetensors" not in files, files
    assert "model.safetensors" in files and "config.json" in files
    assert "adapter_config.json, adapter_model.safetensors" in pushed.stderr
    assert len(hub.commits(repo)) == 3  # creation + one commit per push: the deletes went in with the upload

    again = run(["-c", KIND_SCRIPT, str(adapter), repo], env)
    files = json.loads(again.stdout.strip().splitlines()[-1])
    assert "model.safetensors" not in files and "adapter_config.json" in files, files
    assert "model.safetensors" in again.stderr


def test_push_refuses_an_invalid_repo_id_before_uploading(tmp_path):
    """g26: 'a/b/c' or a name with a space: one line naming the id, no "once the Hub is reachable" advice."""
    from tpo_hf.hub.push import PushError, push_adapter

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))

    class NoHub:
        def __getattr__(self, name):
            raise AssertionError(f"the Hub was called ({name}) for an invalid repo id")

    for repo_id in ("a/b/c", "tester/bad name"):
        with pytest.raises(PushError) as raised:
            push_adapter(adapter, repo_id, api=NoHub())
        message = str(raised.value)
        assert repr(repo_id) in message and "\n" not in message and "reachable" not in message


def test_push_failed_gives_no_retry_advice_for_a_refusal():
    """g26: a 4xx answer (no write access, bad token) is not fixed by waiting for the Hub."""
    from types import SimpleNamespace

    from tpo_hf.hub.push import push_failed

    class Refused(Exception):
        response = SimpleNamespace(status_code=403)

    refused = str(push_failed("Uploading", "tester/x", Refused("403 Forbidden"), "tpo-hf push ...", kept="Kept."))
    assert "once the Hub is reachable" not in refused and "HTTP 403" in refused
    offline = str(push_failed("Uploading", "tester/x", ConnectionError("down"), "tpo-hf push ..."))
    assert "once the Hub is reachable" in offline


def test_push_uploads_only_model_files_and_lists_the_rest(hub, tmp_path):
    """g24: eval output, an optimizer dump, wandb logs and notes in the adapter folder stay local, each named with its
    size in a warning; the card's linked plot goes up."""
    adapter = tmp_path / "adapter"
    (adapter / "eval").mkdir(parents=True)
    (adapter / "wandb").mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    _weights(adapter / "adapter_model.safetensors")
    (adapter / "tokenizer.json").write_text("{}")
    (adapter / "README.md").write_text("# card\n\n![Curves](training_curves.png)\n")
    (adapter / "training_curves.png").write_bytes(b"\x89PNG")
    (adapter / "eval" / "results.json").write_text("{}")
    (adapter / "optimizer_dump.pt").write_bytes(b"0" * 2000)
    (adapter / "wandb" / "debug.log").write_text("log")
    (adapter / "notes.txt").write_text("token")
    repo = "tester/allow-list"
    pushed = run(["-c", KIND_SCRIPT, str(adapter), repo], hub_env(hub, tmp_path / "home"))
    files = json.loads(pushed.stdout.strip().splitlines()[-1])
    assert files == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "training_curves.png",
    ]
    for left in ("eval/results.json (2 B)", "optimizer_dump.pt (2.0 kB)", "wandb/debug.log (3 B)", "notes.txt (5 B)"):
        assert left in pushed.stderr


def test_push_failed_under_hf_hub_offline_says_to_unset_it(tmp_path, monkeypatch):
    """`tpo-hf push` with HF_HUB_OFFLINE=1 still exported said "Rerun once the Hub is reachable": wrong advice, the
    Hub was never asked. The message says to rerun with HF_HUB_OFFLINE unset."""
    import huggingface_hub.constants

    from tpo_hf.hub.push import PushError, push_adapter

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": "x"}))
    _weights(adapter / "adapter_model.safetensors")
    with pytest.raises(PushError) as raised:
        push_adapter(adapter, "tester/offline", token="hf_local_test_token")
    message = str(raised.value)
    assert "once the Hub is reachable" not in message and "HF_HUB_OFFLINE=0 tpo-hf push" in message, message


# --- fifth probe: visibility, write access and gated repos are checked before the work; other splits are kept ------
@pytest.fixture
def on_hub(hub, tmp_path, monkeypatch):
    """The clients of this process pointed at the module's server, with a fresh cache."""
    return point_clients_at(hub, tmp_path, monkeypatch)


def _adapter(folder: Path, base: str = "x") -> Path:
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "base_model_name_or_path": base}))
    _weights(folder / "adapter_model.safetensors")
    return folder


# huggingface_hub 2.x hands raw bytes to httpx's deprecated `data=` when uploading LFS files (not our call)
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_private_asked_for_an_existing_public_repo_is_refused_before_uploading(on_hub, tmp_path, caplog):
    """f01: `push --private true` onto a repo an earlier push made public exited 0 and the repo stayed public (the Hub
    applies `private` only when it creates a repo). Now nothing is uploaded and the message names the repo, that it
    is public and how to make it private; the same for a Space. Asked public, a private repo stays private, warned."""
    import logging

    from huggingface_hub import HfApi

    from tpo_hf.hub.push import PushError, push_adapter
    from tpo_hf.hub.space import push_space

    adapter = _adapter(tmp_path / "adapter")
    repo = "tester/was-public"
    push_adapter(adapter, repo)
    commits = len(on_hub.commits(repo))
    with pytest.raises(PushError) as raised:
        push_adapter(adapter, repo, private=True)
    message = str(raised.value)
    assert f"{repo} already exists on {on_hub.endpoint} and is public" in message, message
    assert "Nothing was pushed" in message and f'update_repo_settings("{repo}", private=True)' in message
    assert len(on_hub.commits(repo)) == commits and repo not in on_hub.private

    space = tmp_path / "space"
    space.mkdir()
    (space / "app.py").write_text("print('demo')\n")
    HfApi().create_repo("tester/public-demo", repo_type="space", space_sdk="gradio")
    with pytest.raises(PushError, match='tester/public-demo already exists .* is public.*repo_type="space"'):
        push_space(space, "tester/public-demo", private=True)
    assert len(on_hub.commits("tester/public-demo", "space")) == 1  # the creation only

    HfApi().create_repo("tester/was-private", private=True)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub"):
        push_adapter(adapter, "tester/was-private", private=False)
    assert "tester/was-private is private and stays private: --private false" in caplog.text


def test_merge_push_without_write_access_fails_before_merging(on_hub, tmp_path):
    """f02: `push --merge` with a token that only reads the repo merged the base in float32 (minutes, a model-sized
    folder) and failed at the commit. The write access is asked first: nothing is merged."""
    from tpo_hf.hub.push import PushError, push_adapter

    adapter = _adapter(tmp_path / "adapter", base="tester/no-such-base")  # merging would fail on this base
    repo = "tester/read-only-merged"
    on_hub.store.create("model", repo)
    on_hub.read_only.add(repo)
    with pytest.raises(PushError) as raised:
        push_adapter(adapter, repo, merge=True)
    message = str(raised.value)
    assert f"Pushing the merged model of {adapter} to {repo}" in message and "HTTP 403" in message, message
    assert "Nothing was merged or uploaded" in message
    assert not any("no-such-base" in path for _, path in on_hub.requests)  # the base was never asked for


def test_train_push_to_hub_without_write_access_fails_before_training(on_hub, video_dir, tmp_path):
    """f20: `train --push_to_hub --hub_model_id` of a repo the token only reads: transformers' create_repo(exist_ok)
    succeeds for it, so the write access was found after the training. The trainer now refuses when it is built."""
    from conftest import preference_rows
    from datasets import Dataset
    from peft import LoraConfig

    from tpo_hf import TPOTrainer
    from tpo_hf.hub.push import PushError
    from tpo_hf.tiny import build_tiny_model, tiny_tpo_config

    repo = "tester/read-only-run"
    on_hub.store.create("model", repo)
    on_hub.read_only.add(repo)
    model, processor = build_tiny_model()
    args = tiny_tpo_config(tmp_path / "run", video_root=video_dir, push_to_hub=True, hub_model_id=repo)
    with pytest.raises(PushError) as raised:
        TPOTrainer(
            model,
            args=args,
            train_dataset=Dataset.from_list(preference_rows(repeat=1)),
            processing_class=processor,
            peft_config=LoraConfig(r=4, lora_alpha=8),
        )
    message = str(raised.value)
    assert repo in message and "HTTP 403" in message and "Nothing was trained" in message, message


def curate_by_frames(video_dir, output_dir, **settings):
    """A real curation of `video_dir` whose model replies name the frames it was shown (as a video model's depend on
    them): the (result, config) the dataset push tests push."""
    from test_reliability import FrameBackend, curation_config

    from tpo_hf.curation import Backends, run_curation

    config = curation_config(video_dir, output_dir, **settings)
    return run_curation(config, Backends(FrameBackend(), None, None)), config


def test_a_gated_base_is_named_with_how_to_get_access(on_hub, tmp_path):
    """f03: a gated Hub base without access: `train` ended in transformers' traceback, eval and `push --merge` said
    "check that the Hub is reachable". Now one line naming the repo, that it is gated, and how to get access."""
    from trl import ModelConfig

    from tpo_hf.commands import ConfigError
    from tpo_hf.commands.train import load_processor
    from tpo_hf.models import check_adapter_loadable
    from tpo_hf.tiny import tiny_tpo_config

    base = "tester/gated-base"
    on_hub.store.create("model", base)
    on_hub.store.commit("model", base, "weights", {"config.json": b"{}"}, [])
    on_hub.gated.add(base)
    adapter = _adapter(tmp_path / "adapter", base=base)
    access = f"is a gated Hub repo and this token has no access to it: request access on {on_hub.endpoint}/{base}"
    with pytest.raises(ValueError) as raised:
        check_adapter_loadable(adapter)
    message = str(raised.value)
    assert f"The adapter's base model {base}" in message and access in message and "hf auth login" in message
    assert "reachable" not in message

    with pytest.raises(ConfigError) as raised:
        load_processor(tiny_tpo_config(tmp_path / "run"), ModelConfig(model_name_or_path=base))
    assert str(raised.value).startswith(f"model_name_or_path {base} {access}"), str(raised.value)


# huggingface_hub 2.x hands raw bytes to httpx's deprecated `data=` when uploading LFS files (not our call)
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Could not find a config file in tester/gated-vlm")  # peft's save, offline
def test_push_merge_into_another_base_when_the_adapters_base_is_gated(on_hub, tiny_model_dirs, tmp_path):
    """`push --merge` of an adapter whose base is gated named `--model_name_or_path`, an option push does not have.
    It names its own `--base_model` (nothing merged or pushed), which merges into a local copy of the base."""
    from huggingface_hub import HfApi
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from tpo_hf.hub.push import PushError, push_adapter

    gated = "tester/gated-vlm"
    on_hub.store.create("model", gated)
    on_hub.store.commit("model", gated, "weights", {"config.json": b"{}"}, [])
    on_hub.gated.add(gated)
    local_base = tiny_model_dirs("qwen2_vl")
    model = get_peft_model(
        AutoModelForImageTextToText.from_pretrained(local_base), LoraConfig(r=2, target_modules=["q_proj"])
    )
    model.peft_config["default"].base_model_name_or_path = gated  # trained on the Hub's copy
    model.save_pretrained(tmp_path / "adapter")
    repo = "tester/merged-from-gated"
    with pytest.raises(PushError) as raised:
        push_adapter(tmp_path / "adapter", repo, merge=True)
    message = str(raised.value)
    assert f"The adapter's base model {gated}" in message and "gated Hub repo" in message, message
    assert "pass the base model as --base_model" in message and "--model_name_or_path" not in message
    assert "Nothing was merged or pushed" in message
    with pytest.raises(PushError, match="--base_model .* is read by --merge only"):
        push_adapter(tmp_path / "adapter", repo, base_model=str(local_base))
    push_adapter(tmp_path / "adapter", repo, merge=True, base_model=str(local_base))
    files = set(HfApi().list_repo_files(repo))
    assert "config.json" in files and "adapter_config.json" not in files
    assert any(name.endswith(".safetensors") for name in files)


# huggingface_hub 2.x hands raw bytes to httpx's deprecated `data=` when uploading LFS files (not our call)
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_a_dataset_push_leaves_another_split_and_the_videos_it_uses(on_hub, video_dir, tmp_path, caplog):
    """f14: an incremental `curate --push_to_hub` deleted `data/test-00000-of-00001.parquet` that a colleague had
    added, as a file "of an earlier push". Only tpo-hf's own files go (the train split's other shards, the videos
    only its earlier train split used); another split and its videos stay, named, and the card lists the split."""
    import io
    import logging

    from datasets import Dataset
    from huggingface_hub import CommitOperationAdd, HfApi

    from tpo_hf.hub.push import push_dataset

    curated, config = curate_by_frames(video_dir, tmp_path / "curated", copy_videos=True)
    videos = sorted(set(curated.dataset["video"]))
    repo = "tester/pairs-and-a-test-split"
    push_dataset(curated.output_dir, repo, curated.dataset, curated.report, config, upload_videos=True)

    test_split = io.BytesIO()
    Dataset.from_list(
        [
            {"prompt": "q", "chosen": "a", "rejected": "b", "video": video}
            for video in ("videos/held_out.mp4", videos[0])
        ]
    ).to_parquet(test_split)
    HfApi().create_commit(
        repo,
        [
            CommitOperationAdd("data/test-00000-of-00001.parquet", test_split.getvalue()),
            CommitOperationAdd("videos/held_out.mp4", b"a held-out video"),
            CommitOperationAdd("data/train-00001-of-00002.parquet", test_split.getvalue()),  # a stale train shard
        ],
        commit_message="Add a test split",
        repo_type="dataset",
    )
    without_first = curated.dataset.filter(lambda row: row["video"] != videos[0])
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub"):
        push_dataset(curated.output_dir, repo, without_first, curated.report, config, upload_videos=True)
    files = on_hub.files(repo, "dataset")
    assert "data/test-00000-of-00001.parquet" in files and "videos/held_out.mp4" in files, sorted(files)
    assert videos[0] in files  # the test split uses it
    assert "data/train-00001-of-00002.parquet" not in files  # would load beside the new train split
    assert "Deleting from" in caplog.text and "data/train-00001-of-00002.parquet" in caplog.text
    kept = [record.getMessage() for record in caplog.records if record.getMessage().startswith("Leaving in")]
    assert kept and "data/test-00000-of-00001.parquet" in kept[0] and "videos/held_out.mp4" in kept[0], kept
    assert "- split: test\n    path: data/test-*" in files["README.md"].decode()


# --- sixth probe: checkpoint folders, killed runs, hand-edited cards, the wrong kind of Hub repo, the Hub down -------
def _checkpoint(folder: Path, base: Path, step: int = 3, max_steps: int = 6) -> Path:
    """A `checkpoint-N` as the Trainer saves it: PEFT's template README (naming the base's local path), no
    tpo_card.json, trainer_state.json with the numbers logged so far."""
    _adapter(folder, base=str(base))
    (folder / "README.md").write_text(
        f"---\nbase_model: {base}\nlibrary_name: peft\ntags:\n- base_model:adapter:{base}\n- lora\n---\n\n"
        "# Model Card for Model ID\n\n<!-- Provide a quick summary of what the model is/does. -->\n"
    )
    state = {
        "global_step": step,
        "max_steps": max_steps,
        "log_history": [{"loss": 0.25, "rewards/accuracies": 0.75, "step": step}],
    }
    (folder / "trainer_state.json").write_text(json.dumps(state))
    return folder


@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_push_of_a_checkpoint_renders_the_tpo_card_without_the_local_base(on_hub, tmp_path, caplog):
    """a/F19: `push --adapter_dir OUT/checkpoint-1` pushed PEFT's "Model Card for Model ID" template with the base's
    local path as base_model. The card is now rendered from the checkpoint (its step, its logged numbers) and the
    run's settings; a README someone wrote for a folder without tpo_card.json goes up without a local base."""
    import logging

    from huggingface_hub import ModelCard

    from tpo_hf.hub.push import push_adapter

    base = tmp_path / "base"
    base.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "tpo_card.json").write_text(json.dumps({"hyperparameters": {"beta": 0.1, "max_steps": 6}, "tags": []}))
    checkpoint = _checkpoint(out / "checkpoint-3", base)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub"):
        push_adapter(checkpoint, "tester/checkpoint-card")
    card = on_hub.files("tester/checkpoint-card")["README.md"].decode()
    assert "Model Card for Model ID" not in card and str(base) not in card, card
    assert ModelCard(card).data.base_model is None
    assert "This is `checkpoint-3` of a TPO run: the weights after 3 of 6 optimizer steps" in card
    assert "| DPO beta | 0.1 |" in card and "| Optimizer steps run | 3 |" in card and "0.75" in card
    assert f"{checkpoint} has no tpo_card.json (a checkpoint folder)" in caplog.text

    own = _adapter(tmp_path / "saved", base=str(base))
    (own / "README.md").write_text(f"---\nbase_model: {base}\nlicense: mit\n---\n\n# My adapter\n\nNotes.\n")
    push_adapter(own, "tester/own-card")
    card = ModelCard(on_hub.files("tester/own-card")["README.md"].decode())
    assert card.data.base_model is None and card.data.license == "mit" and "# My adapter" in card.text


def test_eval_and_push_of_a_killed_runs_output_dir_name_its_checkpoints(tmp_path):
    """a/F57: an output_dir holding only checkpoint-N (the run killed before its final save) got "pass it as
    --model_name_or_path" from eval and "pass the output_dir of `tpo-hf train`" from push. Both now name the
    checkpoints, to resume the run or to pass OUT/checkpoint-N."""
    from tpo_hf.hub.push import PushError, push_adapter
    from tpo_hf.models import check_adapter_folder

    out = tmp_path / "out"
    out.mkdir()
    for step in (1, 2):
        _checkpoint(out / f"checkpoint-{step}", tmp_path, step=step)
    advice = (
        "checkpoint(s) checkpoint-1, checkpoint-2 of a training run that did not reach its final save",
        "--resume_from_checkpoint true",
        f"pass a checkpoint folder, e.g. {out / 'checkpoint-2'}",
    )
    with pytest.raises(ValueError) as raised:
        check_adapter_folder(out)
    assert all(part in str(raised.value) for part in advice) and "--model_name_or_path" not in str(raised.value)
    with pytest.raises(PushError) as raised:
        push_adapter(out, "tester/killed-run")
    assert all(part in str(raised.value) for part in advice) and "Nothing was pushed" in str(raised.value)


@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_push_of_a_hand_edited_readme_says_the_card_is_re_rendered(on_hub, tmp_path, caplog):
    """a/F32: README.md edited by hand after training, then `tpo-hf push`: the Hub card dropped the edit without a
    word. The push names the file, that the card is re-rendered from tpo_card.json, and how to upload the edited
    one; a README not touched since training is re-rendered without that warning."""
    import logging

    from tpo_hf.hub.push import push_adapter

    adapter = _adapter(tmp_path / "adapter")
    readme, info = adapter / "README.md", adapter / "tpo_card.json"
    readme.write_text("# adapter\n")
    info.write_text(json.dumps({"base_model": "x", "hyperparameters": {}, "metrics": {}}))
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub"):
        push_adapter(adapter, "tester/card-as-saved")
    assert "changed after training wrote it" not in caplog.text
    readme.write_text("# adapter\n\nMY-EDIT\n")
    saved = readme.stat().st_mtime - 60
    os.utime(info, (saved, saved))
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub"):
        push_adapter(adapter, "tester/card-edited")
    assert "MY-EDIT" not in on_hub.files("tester/card-edited")["README.md"].decode()
    assert f"{readme} was changed after training wrote it" in caplog.text
    assert f"`hf upload tester/card-edited {readme} README.md`" in caplog.text


def test_adapter_path_of_a_full_model_hub_repo_says_to_pass_it_as_the_model(on_hub):
    """a/F16: `eval --adapter_path USER/merged` (a repo holding a full model) said "check ... for a typo, and that the
    Hub is reachable". It now says the repo holds a full model and to pass it as --model_name_or_path."""
    from tpo_hf.models import check_adapter_loadable

    repo = "tester/full-model"
    on_hub.store.create("model", repo)
    on_hub.store.commit("model", repo, "weights", {"config.json": b"{}"}, [])
    with pytest.raises(ValueError) as raised:
        check_adapter_loadable(repo)
    message = str(raised.value)
    assert message.startswith(f"adapter_path {repo} is a Hub repo that holds a full model"), message
    assert "pass it as --model_name_or_path" in message and "typo" not in message


def test_adapter_path_of_a_dataset_or_space_repo_names_its_kind(on_hub):
    """Probe a/G14: `eval --adapter_path USER/tpo-data` (the user's dataset repo) said "Repository Not Found" and to
    check for a typo: a dataset (or Space) repo of that id is named as such; an id of no repo still says typo."""
    from tpo_hf.models import check_adapter_loadable

    on_hub.store.create("dataset", "tester/tpo-data")
    on_hub.store.commit("dataset", "tester/tpo-data", "data", {"data.txt": b"x"}, [])
    on_hub.store.create("space", "tester/tpo-demo")
    for repo, kind in (("tester/tpo-data", "dataset"), ("tester/tpo-demo", "space")):
        with pytest.raises(ValueError) as raised:
            check_adapter_loadable(repo, "tester/tiny-base")
        message = str(raised.value)
        assert message.startswith(f"adapter_path {repo} is a {kind} repo on the Hub, not a model repo"), message
        assert "typo" not in message and "Not Found" not in message, message
    with pytest.raises(ValueError, match="could not be loaded from the Hub .*for a typo"):
        check_adapter_loadable("tester/no-such-repo", "tester/tiny-base")


@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_a_cached_hub_adapter_with_the_hub_down_says_to_set_hf_hub_offline(on_hub, tiny_model_dirs, tmp_path):
    """a/F37: a Hub adapter evaluated once (cached), then the Hub down without HF_HUB_OFFLINE: PEFT still asks the Hub
    and the run ended in a ConnectError traceback. One line now says the Hub is unreachable and to set
    HF_HUB_OFFLINE=1 to use the cached copy."""
    import socket

    import huggingface_hub.constants
    import huggingface_hub.hf_api
    from huggingface_hub import snapshot_download
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from tpo_hf.hub.push import push_adapter
    from tpo_hf.models import load_video_model

    base = tiny_model_dirs("qwen2_vl")
    model = get_peft_model(
        AutoModelForImageTextToText.from_pretrained(base), LoraConfig(r=2, target_modules=["q_proj"])
    )
    model.save_pretrained(tmp_path / "adapter")
    repo = "tester/cached-adapter"
    push_adapter(tmp_path / "adapter", repo)
    snapshot_download(repo)  # the first, online evaluation
    with socket.socket() as closed:  # a port nothing listens on: connection refused
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(huggingface_hub.constants, "ENDPOINT", down)
        mp.setattr(
            huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", down + "/{repo_id}/resolve/{revision}/{filename}"
        )
        mp.setattr(huggingface_hub.hf_api.api, "endpoint", down)  # peft's `file_exists`, bound at import
        with pytest.raises(ValueError) as raised:
            load_video_model(str(base), repo, dtype="float32", device="cpu")
    finally:
        mp.undo()
    message = str(raised.value)
    assert message.startswith(f"adapter_path {repo}: the Hub ({down}) is unreachable"), message
    assert message.endswith("set HF_HUB_OFFLINE=1 to use the cached copy.")


# --- ninth probe: a retrain killed in place; weights swapped after the run saved them ----------------------------
@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_push_and_eval_refuse_an_adapter_folder_whose_retraining_was_killed(on_hub, tmp_path):
    """Probe a/i10: a trained adapter folder retrained in place and SIGKILLed after checkpoint-4: `tpo-hf push` pushed
    the earlier training's adapter (with the card the retrain's checkpoint saves rewrote), noting only that a lock
    record was left. Push and eval now refuse it, naming the checkpoints, to resume or to delete the lock file; a
    killed run's lock record without newer checkpoints (a folder copied from a running one's) is read as before."""
    from tpo_hf.hub.push import push_adapter
    from tpo_hf.locks import OutputDirLockedError, refuse_if_locked

    run = _adapter(tmp_path / "run")
    saved = (run / "adapter_model.safetensors").stat().st_mtime
    # the record of a `train` run whose process is gone (its flock is free)
    record = {"pid": 999999, "host": "elsewhere", "command": "tpo-hf train --config t.yaml", "what": "train"}
    (run / ".tpo-hf.lock").write_text(json.dumps(record))
    for step in (2, 4):
        _checkpoint(run / f"checkpoint-{step}", tmp_path, step=step, max_steps=400)
    os.utime(run / "checkpoint-2", (saved - 60, saved - 60))  # one of the earlier training, kept
    os.utime(run / "checkpoint-4", (saved + 60, saved + 60))
    ways_on = ("--resume_from_checkpoint true", f"({run / 'checkpoint-4'})", f"delete {run / '.tpo-hf.lock'}")
    with pytest.raises(OutputDirLockedError) as refused:
        push_adapter(run, "tester/killed-retrain")
    message = str(refused.value)
    assert (
        "a training run that was killed before its final save" in message and "checkpoint(s) checkpoint-4 " in message
    )
    assert all(part in message for part in ways_on) and "Push would read those" in message, message
    with pytest.raises(OutputDirLockedError, match="Eval would read those"):
        refuse_if_locked(run, "eval")  # what `tpo-hf eval --adapter_path run` checks first
    os.utime(run / "checkpoint-4", (saved - 30, saved - 30))  # no checkpoint after the save: read, with a warning
    refuse_if_locked(run, "push")
    assert not on_hub.store.exists("model", "tester/killed-retrain")


@pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")
def test_push_of_weights_swapped_for_a_checkpoints_publishes_that_checkpoints_card(on_hub, tmp_path, caplog):
    """Probe a/i39: after a 3-step run, checkpoint-1's weights copied over the saved ones ("the best step"), then
    `tpo-hf push`: the card said 3 steps and the final loss. The run records its weights' sha256 in tpo_card.json;
    weights that match a checkpoint's are pushed with that checkpoint's card (said in a warning), weights that match
    none are refused, naming adapter_model.safetensors."""
    import logging

    import numpy as np
    from safetensors.numpy import save_file

    from tpo_hf.hub.push import PushError, push_adapter

    run = _adapter(tmp_path / "run")
    weights = run / "adapter_model.safetensors"
    info = {
        "base_model": "x",
        "hyperparameters": {"beta": 0.1, "max_steps": 3, "global_step": 3},
        "metrics": {"loss": 3.321},
        "adapter_weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
    }
    (run / "tpo_card.json").write_text(json.dumps(info))
    first = _checkpoint(run / "checkpoint-1", tmp_path, step=1, max_steps=3)
    save_file({"w": np.full((4, 4), 2.0, dtype=np.float32)}, str(first / "adapter_model.safetensors"))
    push_adapter(run, "tester/ad-final")
    assert "| Optimizer steps run | 3 |" in on_hub.files("tester/ad-final")["README.md"].decode()

    weights.write_bytes((first / "adapter_model.safetensors").read_bytes())
    with caplog.at_level(logging.WARNING, logger="tpo_hf.hub"):
        push_adapter(run, "tester/ad-best")
    files = on_hub.files("tester/ad-best")
    card = files["README.md"].decode()
    assert files["adapter_model.safetensors"] == weights.read_bytes()
    assert "This is `checkpoint-1` of a TPO run: the weights after 1 of 3 optimizer steps" in card, card
    assert "| Optimizer steps run | 1 |" in card and "3.321" not in card and "0.75" in card, card
    assert f"{weights} holds the weights of {first} (the same file content)" in caplog.text, caplog.text

    save_file({"w": np.full((4, 4), 5.0, dtype=np.float32)}, str(weights))  # weights of no checkpoint
    with pytest.raises(PushError) as refused:
        push_adapter(run, "tester/ad-other")
    message = str(refused.value)
    assert f"{weights} changed since the training run saved it" in message and "Nothing was pushed" in message
    assert (
        f"--adapter_dir {run}/checkpoint-N" in message
        and "move tpo_card.json, README.md and trainer_state.json out" in message
    )
    assert not on_hub.store.exists("model", "tester/ad-other")


def test_a_trained_run_records_the_sha256_of_its_saved_adapter_weights(published):
    """Probe a/i39, through `TPOTrainer`: the run saved by `trainer.push_to_hub` records in tpo_card.json the sha256
    of the adapter_model.safetensors beside it, which `tpo-hf push` compares."""
    run = published / "run"
    info = json.loads((run / "tpo_card.json").read_text())
    weights = hashlib.sha256((run / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert info["adapter_weights_sha256"] == weights, info


def test_the_run_records_the_sha256_of_the_adapter_weights_it_saved(tiny_model_dirs, tmp_path):
    """Probe a/i39, the save side: tpo_card.json records the sha256 of adapter_model.safetensors when the file holds
    the model's adapter weights as they are (the final save, written just before the card); a card written while the
    folder holds other weights (a checkpoint save into a folder with an earlier run's adapter) records none."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from tpo_hf.families import get_family
    from tpo_hf.hub.model_card import saved_adapter_hash

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dirs("qwen2_5_vl"))
    config = LoraConfig(r=2, target_modules=get_family(base.config).lora_target_modules, init_lora_weights=False)
    model = get_peft_model(base, config)
    assert saved_adapter_hash(model, tmp_path) is None  # nothing saved there
    model.save_pretrained(tmp_path)
    saved = hashlib.sha256((tmp_path / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert saved_adapter_hash(model, tmp_path) == saved
    with torch.no_grad():  # training went on after that save
        next(param for name, param in model.named_parameters() if "lora_A" in name).add_(1.0)
    assert saved_adapter_hash(model, tmp_path) is None
