"""Stage 6 of the flow (publish): one-commit pushes to the Hub: a trained adapter, merged weights, a dataset.

    tpo-hf push --adapter_dir DIR --repo_id USER/NAME [--merge] [--private] [--revision BRANCH]

`push_dataset` does the same for a curated dataset (`tpo-hf curate --push_to_hub`): data, card and videos.

What goes up: the adapter (`adapter_config.json` + `adapter_model.safetensors`) or, with `--merge`, the base model
with the adapter merged in (for serving without PEFT); the processor (tokenizer, chat template, processor configs,
`tpo_video_config.json`); the model card (`README.md`, re-rendered for the target repo from the run's numbers saved
by `TPOTrainer.create_model_card`; a `checkpoint-N`'s from its `trainer_state.json`) and the training-curve PNG
(and any file the card links). Nothing else in the
folder goes up (`UPLOAD_PATTERNS`; eval output, optimizer dumps, logs are listed in a warning); files of the other
kind (an adapter's when a full model is pushed, and the reverse) are deleted from the repo in the same commit. Everything lands in a single
`HfApi.create_commit`, so the repo never holds half an upload. A retry uploads the same files to the same paths:
files already on the Hub are skipped, and nothing changes if all of them are there. Before any of it (and before a
merge), every push creates the repo if missing and asks the Hub whether the token can write it and whether an
existing repo has the visibility asked for (`prepare_repo`).
With `--merge`, the merged model is staged in a temporary folder named after the pushing process; the next push
removes the ones killed pushes left (`remove_stale_staging`).
"""

from __future__ import annotations

import fnmatch
import io
import json
import logging
import os
import re
import shlex
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, ModelCard

from ..checkpoints import incomplete_weights
from ..fingerprint import no_space_left
from ..locks import holder_alive, refuse_if_locked
from .model_card import (
    ADAPTER_WEIGHTS_FILE,
    CARD_INFO_FILE,
    PLOT_FILE,
    WEIGHTS_HASH_KEY,
    build_model_card,
    is_local_path,
    readme_edited_after_save,
)

logger = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")
# Full-model weight files (and their shard indexes) at the repo root: a repo holding an adapter must not keep them
FULL_MODEL_WEIGHT_PATTERNS = (
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model-*-of-*.bin",
    "pytorch_model.bin.index.json",
)
# Training by-products that do not belong in a model repo
EXCLUDE_PATTERNS = (
    "checkpoint-*",
    "runs",
    "_*",
    ".*",
    "training_args.bin",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state*",
    "trainer_state.json",
    CARD_INFO_FILE,
)


# What a model repo holds, at its root: the adapter or the model weights, the processor and tokenizer files, the
# video settings, the card and the plot it links. Anything else in the folder (eval/ output, optimizer dumps, wandb
# logs, notes) is left out, listed in a warning.
UPLOAD_PATTERNS = (
    *ADAPTER_FILES,
    *FULL_MODEL_WEIGHT_PATTERNS,
    "config.json",
    "generation_config.json",
    "processor_config.json",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "spiece.model",
    "chat_template.jinja",
    "chat_template.json",
    "tpo_video_config.json",
    "README.md",
    PLOT_FILE,
)


def _size(nbytes: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    return f"{nbytes} B"


def select_upload(files: dict[str, Path], readme: Path | None = None) -> tuple[dict[str, Path], dict[str, Path]]:
    """Splits `collect_files` output into what belongs in a model repo (`UPLOAD_PATTERNS`, plus files the pushed
    README links to by a relative path) and the rest."""
    import re

    linked: set[str] = set()
    if readme is not None and readme.is_file():
        for target in re.findall(r"\]\(([^)\s]+)", readme.read_text(errors="replace")):
            if "://" not in target and not target.startswith(("#", "/", "..")):
                linked.add(target.split("#", 1)[0].removeprefix("./"))
    kept, left = {}, {}
    for path, local in files.items():
        wanted = path in linked or ("/" not in path and any(fnmatch.fnmatch(path, p) for p in UPLOAD_PATTERNS))
        (kept if wanted else left)[path] = local
    return kept, left


class PushError(RuntimeError):
    """An upload failed; the message names the endpoint, the repo, the folder (left intact) and the command to rerun.

    Every push (`tpo-hf push`, `curate --push_to_hub`, `train --push_to_hub`, `tpo-hf space`) raises this one error,
    built by `push_failed`, instead of the Hub client's traceback.
    """


def hub_endpoint(api: HfApi | None = None) -> str:
    """The Hub endpoint pushes go to (`HF_ENDPOINT`, default https://huggingface.co)."""
    from huggingface_hub import constants

    return getattr(api, "endpoint", None) or constants.ENDPOINT


def push_failed(
    what: str, repo_id: str | None, error: BaseException, rerun: str, api: HfApi | None = None, kept: str = ""
) -> PushError:
    """The `PushError` for a failed push: endpoint, repo, the cause in one line, what was kept and what to rerun."""
    cause = " ".join(line.strip() for line in str(error).splitlines() if line.strip())  # one line, server's words kept
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):  # no request was made: waiting for the Hub changes nothing
        return PushError(
            f"{what} to {repo_id} on {hub_endpoint(api)} failed: HF_HUB_OFFLINE is set, so huggingface_hub makes no "
            f"request.\n{kept + ' ' if kept else ''}Rerun with HF_HUB_OFFLINE unset: `HF_HUB_OFFLINE=0 {rerun}`."
        )
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 429):
        # the Hub answered and refused (bad token, no write access, invalid name...): waiting for it changes nothing
        return PushError(
            f"{what} to {repo_id} on {hub_endpoint(api)} failed: {type(error).__name__}: {cause[:500]}\n"
            f"{kept + ' ' if kept else ''}The Hub refused the request (HTTP {status}); fix what it names (token, "
            f"write access, repo id), then rerun `{rerun}`."
        )
    return PushError(
        f"{what} to {repo_id} on {hub_endpoint(api)} failed: {type(error).__name__}: {cause[:500]}\n"
        f"{kept + ' ' if kept else ''}Rerun `{rerun}` once the Hub is reachable; files already uploaded are skipped, "
        "so a retry does not duplicate anything."
    )


def check_repo_id(repo_id: str, setting: str = "--repo_id") -> None:
    """Refuses a repo id the Hub would refuse (`huggingface_hub`'s own validator), before anything is uploaded;
    `setting` names the option that gave it.

    Raises:
        PushError: one line naming the setting, the id and what is wrong with it.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        cause = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
        raise PushError(
            f"{setting} {repo_id!r} is not a valid Hub repo id ({cause}); use NAME or NAMESPACE/NAME (letters, "
            "digits, '-', '_', '.'). Nothing was pushed."
        ) from None


def check_write_access(api: HfApi, repo_id: str, repo_type: str = "model") -> None:
    """Asks the Hub whether this token may commit to `repo_id`, changing nothing: the "preupload" request every
    commit starts with (`HfApi.create_commit`), for one empty file. `create_repo(exist_ok=True)` succeeds for an
    existing repo the token only reads, so without this a push learns it at its commit, after the work before it (a
    `--merge`, a training run).

    Raises:
        HfHubHTTPError: the Hub's refusal (401/403 naming the repo), or its being unreachable.
    """
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    response = get_session().post(
        f"{hub_endpoint(api)}/api/{repo_type}s/{repo_id}/preupload/main",
        json={"files": [{"path": "README.md", "sample": "", "size": 0}]},
        headers=build_hf_headers(token=api.token),
    )
    hf_raise_for_status(response)


def check_visibility(api: HfApi, repo_id: str, private: bool | None, setting: str, repo_type: str = "model") -> None:
    """Compares an existing repo's visibility with the `private` asked for (`setting` names the flag), which the Hub
    applies only when it creates a repo. Asked private, a public repo is refused before anything is uploaded: the
    user expects the files not to be public. Asked public, a private repo stays private, said in a warning.

    Raises:
        PushError: `private` is True and the repo is public; names how to make it private.
    """
    if private is None:
        return
    is_private = api.repo_info(repo_id, repo_type=repo_type).private
    if is_private is None or bool(is_private) == private:
        return
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    how = (
        f'`huggingface_hub.update_repo_settings("{repo_id}", private={private}'
        + ("" if repo_type == "model" else f', repo_type="{repo_type}"')
        + f")`, or the repo's settings page {hub_endpoint(api)}/{prefix}{repo_id}/settings"
    )
    if private:
        raise PushError(
            f"{repo_id} already exists on {hub_endpoint(api)} and is public: {setting} true does not change an "
            f"existing repo's visibility, so this push would publish the files. Nothing was pushed. Make the repo "
            f"private first ({how}) and rerun, or push without {setting} to publish the files."
        )
    logger.warning(
        "%s is private and stays private: %s false does not change an existing repo's visibility. To make it "
        "public: %s.",
        repo_id,
        setting,
        how,
    )


def prepare_repo(
    api: HfApi, repo_id: str, *, private: bool | None, setting: str, repo_type: str = "model", **create: Any
) -> None:
    """Creates `repo_id` if missing (`create`: more `create_repo` arguments), then checks what the Hub would otherwise
    say only at the commit: that this token can write the repo (`check_write_access`), and that an existing repo has
    the visibility asked for (`check_visibility`). Every push calls it before its first upload, and before a
    `--merge`.

    Raises:
        PushError: asked private, the repo is public.
        HfHubHTTPError: the Hub refused (no write access, bad token) or is unreachable; callers report it with
            `push_failed`.
    """
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, **create)
    check_write_access(api, repo_id, repo_type)
    check_visibility(api, repo_id, private, setting, repo_type)


def stale_other_kind(repo_files: list[str], pushed: set[str], merged: bool) -> list[str]:
    """Files of `repo_files` (the target revision) that a push of the other kind left behind and this push must
    delete: adapter files when pushing a merged/full model (else transformers loads the stale adapter on top of the
    merged weights), full-model weight files when pushing an adapter. Files this push uploads are kept."""
    if merged:
        stale = [path for path in repo_files if path in ADAPTER_FILES]
    else:
        stale = [
            path
            for path in repo_files
            if "/" not in path and any(fnmatch.fnmatch(path, pattern) for pattern in FULL_MODEL_WEIGHT_PATTERNS)
        ]
    return sorted(path for path in stale if path not in pushed)


def _excluded(relative: Path) -> bool:
    return any(fnmatch.fnmatch(part, pattern) for part in relative.parts for pattern in EXCLUDE_PATTERNS)


def collect_files(folder: str | Path) -> dict[str, Path]:
    """path in repo -> local file, for everything in `folder` that belongs in the model repo (sorted, stable)."""
    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not _excluded(relative):
            files[relative.as_posix()] = path
    return files


def check_weights(folder: str | Path, files: Any = None) -> None:
    """Refuses a folder whose weights (`*.safetensors`, torch zip `*.bin`) are not whole, naming the file: pushed,
    they would load nowhere, or (sharded) load only in part.

    Raises:
        PushError: naming the file and what is wrong with it.
    """
    folder = Path(folder)
    paths = files.values() if isinstance(files, dict) else sorted(folder.iterdir())
    for path in paths:
        path = Path(path)
        if path.is_file() and path.name.endswith((".safetensors", ".bin")):
            problem = incomplete_weights(path)
            if problem is not None:
                raise PushError(
                    f"{path} is incomplete ({problem}): its save was cut short (killed, or the disk was full). "
                    "Nothing was pushed; save the weights again (rerun the training, or resume it from its last "
                    "complete checkpoint) and push then."
                )


def _rerun_command(
    adapter_dir: Path, repo_id: str, merge: bool, revision: str | None, base_model: str | None = None
) -> str:
    command = f"tpo-hf push --adapter_dir {adapter_dir} --repo_id {repo_id}"
    if merge:
        command += " --merge"
    if base_model:
        command += f" --base_model {base_model}"
    if revision:
        command += f" --revision {revision}"
    return command


# The first heading of the card PEFT's `save_pretrained` writes into an adapter folder (a checkpoint's README.md)
PEFT_TEMPLATE_HEADING = "# Model Card for Model ID"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _hub_safe_card(readme: Path) -> ModelCard | None:
    """The folder's own README.md when its metadata names a local folder as `base_model` (the Hub cannot link one),
    with that left out; None when it can go up as it is."""
    try:
        card = ModelCard.load(readme)
    except Exception:  # no metadata block, or metadata the Hub would refuse: pushed as it is, as upload_folder would
        return None
    bases = card.data.base_model
    local = [base for base in ([bases] if isinstance(bases, str) else bases or []) if is_local_path(str(base))]
    if not local:
        return None
    logger.warning(
        "%s names the local folder %s as base_model: left out of the pushed card's metadata (the Hub cannot link it).",
        readme,
        ", ".join(map(str, local)),
    )
    card.data.base_model = None
    card.data.tags = [tag for tag in card.data.tags or [] if not any(str(base) in tag for base in local)] or None
    return card


def _card_without_run_info(adapter_dir: Path, repo_id: str, merged: bool) -> ModelCard | None:
    """The card for a folder without `tpo_card.json`: a `checkpoint-N` of a run (whose README.md is PEFT's template,
    naming the base's local path), or a model saved outside `tpo-hf train`. Rendered from what the folder says
    (adapter config, `trainer_state.json`) and the run's settings when its output_dir has `tpo_card.json`; a README
    someone wrote goes up as it is, without a local base in its metadata."""
    from ..checkpoints import checkpoint_step
    from .model_card import final_metrics

    readme = adapter_dir / "README.md"
    step = checkpoint_step(adapter_dir)
    state = _read_json(adapter_dir / "trainer_state.json")
    if step < 0 and not state:
        if readme.is_file() and PEFT_TEMPLATE_HEADING not in readme.read_text(errors="replace"):
            return _hub_safe_card(readme)
        if not (adapter_dir / "adapter_config.json").is_file():
            return None  # a model saved outside tpo-hf, without a card: nothing says it was trained with TPO
    run_info_path = adapter_dir.parent / CARD_INFO_FILE
    run_info = _read_json(run_info_path) if step >= 0 else {}  # the run's settings, which the checkpoint shares
    adapter = _read_json(adapter_dir / "adapter_config.json")
    base = adapter.get("base_model_name_or_path") or run_info.get("base_model")
    hyperparameters = dict(run_info.get("hyperparameters") or {})
    if state.get("global_step") is not None:
        hyperparameters["global_step"] = state["global_step"]
    full_fine_tune = not (adapter_dir / "adapter_config.json").is_file()
    card = build_model_card(
        repo_id=repo_id,
        base_model=base,
        hyperparameters=hyperparameters,
        metrics=final_metrics(state.get("log_history") or []),
        datasets=run_info.get("datasets"),
        license=run_info.get("license"),
        merged=merged,
        tags=run_info.get("tags"),
        plot_file=None,
        full_fine_tune=full_fine_tune and not merged,
        base_is_local=True if run_info.get("base_model_local_path") else None,
    )
    if step >= 0:
        of_steps = f" of {state['max_steps']}" if state.get("max_steps") else ""
        note = (
            f"This is `{adapter_dir.name}` of a TPO run: the weights after {state.get('global_step', step)}"
            f"{of_steps} optimizer steps, with the numbers logged up to that step.\n"
        )
        heading = card.text.find("\n# ")
        end = card.text.find("\n", heading + 1) if heading >= 0 else -1
        card.text = card.text[: end + 1] + "\n" + note + card.text[end + 1 :] if end >= 0 else note + card.text
    logger.warning(
        "%s has no %s (%s), so its README.md is not the run's card: the card pushed is rendered from %s. %s",
        adapter_dir,
        CARD_INFO_FILE,
        "a checkpoint folder" if step >= 0 else "not the output_dir of `tpo-hf train`",
        " and ".join(
            name
            for name, used in (
                ("adapter_config.json", bool(adapter)),
                ("trainer_state.json", bool(state)),
                (f"the run's settings in {run_info_path}", bool(run_info)),
            )
            if used
        )
        or "what the folder holds",
        f"The run's final save ({adapter_dir.parent}, when training ended) has the card with the whole run's numbers."
        if step >= 0
        else "",
    )
    return card


def checkpoint_of_swapped_weights(adapter_dir: Path, rerun: str) -> Path | None:
    """The `checkpoint-N` folder whose adapter weights `adapter_dir/adapter_model.safetensors` now holds, when they
    are not the weights the run saved there (`tpo_card.json` records their sha256): an earlier checkpoint's weights
    copied over the final ones ("the best step"). Its card (its step, the numbers logged up to it) is the one to
    publish with them. None when the weights are the saved ones, or nothing was recorded (runs before tpo-hf recorded
    it, a checkpoint-time card, a model without an adapter).

    Raises:
        PushError: the weights are neither the saved ones nor any checkpoint's: the card's numbers would describe
            other weights.
    """
    from ..checkpoints import checkpoint_step
    from ..fingerprint import file_content_hash

    weights = adapter_dir / ADAPTER_WEIGHTS_FILE
    recorded = _read_json(adapter_dir / CARD_INFO_FILE).get(WEIGHTS_HASH_KEY)
    if not isinstance(recorded, str) or not weights.is_file():
        return None
    current = file_content_hash(weights)
    if current == recorded:
        return None
    checkpoints = sorted(
        (path for path in adapter_dir.iterdir() if path.is_dir() and checkpoint_step(path) >= 0),
        key=checkpoint_step,
    )
    for checkpoint in checkpoints:
        kept = checkpoint / ADAPTER_WEIGHTS_FILE
        if kept.is_file() and file_content_hash(kept) == current:
            return checkpoint
    raise PushError(
        f"{weights} changed since the training run saved it (its sha256 is not the one {CARD_INFO_FILE} records) and "
        f"matches none of the checkpoints in {adapter_dir}: the card's numbers (steps, losses) describe the weights "
        "the run saved, not these. Nothing was pushed. Push the checkpoint you mean (`tpo-hf push --adapter_dir "
        f"{adapter_dir}/checkpoint-N`), or put the saved weights back; to publish these weights without the run's "
        f"numbers, move {CARD_INFO_FILE}, README.md and trainer_state.json out of {adapter_dir} and rerun `{rerun}`."
    )


def _render_card(adapter_dir: Path, repo_id: str, merged: bool) -> ModelCard | None:
    """Re-renders the card from the saved run info for `repo_id` (so the usage snippet names the real repo); without
    run info, `_card_without_run_info`. None: the folder's README.md goes up as it is."""
    info_path = adapter_dir / CARD_INFO_FILE
    if not info_path.exists():
        return _card_without_run_info(adapter_dir, repo_id, merged)
    info = json.loads(info_path.read_text())
    # whether the base was a local folder is recorded where training ran (older runs: the name is judged here)
    base_local_path = info.get("base_model_local_path")
    if base_local_path or (info.get("base_model") and is_local_path(info["base_model"])):
        logger.warning(
            "The base model of %s was a local folder when trained (%s): the card cannot link it on the Hub, so "
            "base_model is left out of its metadata and its usage snippet asks for the base's path. Train from the "
            "base's Hub id to have it linked.",
            adapter_dir,
            base_local_path or info["base_model"],
        )
    # a trained full model, not a merged update (older runs did not record it: the folder holds no adapter)
    full_fine_tune = info.get("full_fine_tune", not (adapter_dir / "adapter_config.json").is_file())
    return build_model_card(
        repo_id=repo_id,
        base_model=info.get("base_model"),
        hyperparameters=info.get("hyperparameters", {}),
        metrics=info.get("metrics", {}),
        datasets=info.get("datasets"),
        eval_results=info.get("eval_results"),
        license=info.get("license"),
        merged=merged,
        tags=info.get("tags"),
        plot_file=PLOT_FILE if (adapter_dir / PLOT_FILE).exists() else None,
        full_fine_tune=full_fine_tune and not merged,
        base_is_local=bool(base_local_path) if "base_model_local_path" in info else None,
    )


# Staging folders of pushes under the temporary folder: `tpo-push-<pid>@<host>-<random>`, so that a push killed
# before it cleaned up (SIGKILL, the out-of-memory killer during --merge) can be told from one still running
STAGING_PREFIX = "tpo-push-"


def _staging_owner(name: str) -> tuple[int, str] | None:
    """(pid, host) of the push that made the staging folder `name`, or None for a name of another shape."""
    if not name.startswith(STAGING_PREFIX) or "@" not in name:
        return None
    pid, _, rest = name[len(STAGING_PREFIX) :].partition("@")
    host = rest.rpartition("-")[0]
    return (int(pid), host) if pid.isdigit() and host else None


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def remove_stale_staging(temp_dir: str | Path | None = None) -> list[Path]:
    """Removes the staging folders that pushes killed on this host left under `temp_dir` (default: the temporary
    folder, `TMPDIR`): a merged model each, as large as the base in float32. A folder is stale when the process named
    in it no longer runs; folders of live pushes and of other hosts are kept. Returns the folders removed."""
    temp_dir = Path(temp_dir or tempfile.gettempdir())
    host = socket.gethostname()
    removed = []
    for folder in sorted(temp_dir.glob(f"{STAGING_PREFIX}*")):
        owner = _staging_owner(folder.name)
        if owner is None or owner[1] != host or not folder.is_dir() or holder_alive({"pid": owner[0], "host": host}):
            continue
        size = _folder_size(folder)
        shutil.rmtree(folder, ignore_errors=True)
        logger.warning(
            "Removed %s (%s), the staging folder of a push (pid %d) that was killed before it cleaned up.",
            folder,
            _size(size),
            owner[0],
        )
        removed.append(folder)
    return removed


@contextmanager
def push_staging() -> Iterator[Path]:
    """A temporary folder for a push (merged model, re-rendered card) named after this process, removed at the end;
    the ones that killed pushes left behind are removed first (`remove_stale_staging`)."""
    remove_stale_staging()
    folder = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}@{socket.gethostname()}-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, base_model: str | None = None) -> Path:
    """Loads `base_model` (default: the base named in the adapter config), merges the adapter in and saves the result
    (float32)."""
    from ..models import load_video_model

    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    model, _ = load_video_model(base_model, adapter_dir, dtype="float32", device="cpu")
    model.merge_and_unload().save_pretrained(output_dir)
    return output_dir


def push_adapter(
    adapter_dir: str | Path,
    repo_id: str,
    merge: bool = False,
    *,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    api: HfApi | None = None,
    base_model: str | None = None,
) -> Any:
    """Uploads a trained adapter folder (or, with `merge=True`, the merged model) to `repo_id` in one commit.

    Args:
        adapter_dir: a `TPOTrainer` output folder (adapter, processor, README.md, training_curves.png).
        repo_id: target model repo, created if missing.
        merge: upload the base model with the adapter merged in (library `transformers`) instead of the adapter.
        private: visibility when the repo is created; True refuses an existing public repo, False leaves an
            existing private one private (`check_visibility`).
        revision: branch to commit to (default `main`).
        base_model: with `merge`, the base to merge into (Hub id or folder; default: `base_model_name_or_path` of the
            adapter config), e.g. a local copy of a gated base.

    Returns:
        The `CommitInfo` of the commit (or of the current head when nothing changed).

    Raises:
        PushError: naming the folder, whose files are left untouched, and the command to rerun; or naming a weights
            file whose save was cut short, or a public repo asked to be private (nothing is pushed). A token that
            cannot write the repo is refused before the merge.
        OutputDirLockedError: another run is writing into `adapter_dir` (`tpo_hf.locks`), e.g. training.
    """
    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file() and not (adapter_dir / "config.json").is_file():
        from ..models import killed_run_checkpoints

        checkpoints = killed_run_checkpoints(adapter_dir)
        if checkpoints:
            raise PushError(
                f"{adapter_dir} has no adapter_config.json or config.json: {checkpoints} Nothing was pushed."
            )
        raise PushError(
            f"{adapter_dir} holds neither an adapter (adapter_config.json) nor a model (config.json); pass the "
            "output_dir of `tpo-hf train` or a folder written by `save_pretrained`."
        )
    if merge and not (adapter_dir / "adapter_config.json").is_file():
        raise PushError(f"--merge needs an adapter, but {adapter_dir} has no adapter_config.json.")
    if base_model and not merge:
        raise PushError(f"--base_model {base_model} is read by --merge only; an adapter is pushed as it is.")
    check_repo_id(repo_id)
    refuse_if_locked(adapter_dir, "push")  # a run training into it: half old, half new files
    check_weights(adapter_dir, collect_files(adapter_dir))
    api = api or HfApi(token=token)
    rerun = _rerun_command(adapter_dir, repo_id, merge, revision, base_model)
    # weights copied over the saved ones (an earlier checkpoint's): the card is that checkpoint's, or none fits
    swapped = checkpoint_of_swapped_weights(adapter_dir, rerun)
    try:  # before the merge (minutes, a float32 copy of the base) and any upload
        prepare_repo(api, repo_id, private=private, setting="--private")
    except PushError:
        raise
    except Exception as error:
        raise push_failed(
            f"Pushing {'the merged model of ' if merge else ''}{adapter_dir}",
            repo_id,
            error,
            rerun,
            api,
            kept=f"Nothing was {'merged or ' if merge else ''}uploaded; {adapter_dir} is unchanged.",
        ) from error
    if merge:  # the base to merge into must load, before the merge starts (a gated or unreachable base)
        from ..models import check_adapter_loadable

        try:
            check_adapter_loadable(adapter_dir, base_model, base_option="--base_model")
        except ValueError as error:
            raise PushError(f"{error} Nothing was merged or pushed.") from None
    with push_staging() as staging:
        files = collect_files(adapter_dir)
        if merge:
            try:
                merged_files = collect_files(merge_adapter(adapter_dir, staging / "merged", base_model))
            except Exception as error:
                full = no_space_left(error, staging)
                if full is None:
                    raise
                raise PushError(
                    f"Merging {adapter_dir} into a temporary folder ({staging}) failed: {full}. "
                    f"Nothing was pushed; free space under {Path(staging).parent} or set TMPDIR to a folder with room "
                    f"for the merged model (float32), then rerun `{rerun}`."
                ) from None
            files = {path: local for path, local in files.items() if path not in ADAPTER_FILES} | merged_files
        if swapped is not None:
            logger.warning(
                "%s holds the weights of %s (the same file content), not the weights the run saved at its end: the "
                "card pushed is %s's (its step, the numbers logged up to it), not the whole run's.",
                adapter_dir / ADAPTER_WEIGHTS_FILE,
                swapped,
                swapped.name,
            )
            card = _card_without_run_info(swapped, repo_id, merged=merge)
        else:
            card = _render_card(adapter_dir, repo_id, merged=merge)
        edited = readme_edited_after_save(adapter_dir)
        if card is not None and edited is not None:
            logger.warning(
                "%s was changed after training wrote it (it is newer than %s): the card pushed is re-rendered for %s "
                "from %s, so edits made to README.md by hand are not in it. To publish the hand-edited card, upload "
                "it after this push (check that its usage snippet names %s): `hf upload %s %s README.md%s`.",
                edited,
                CARD_INFO_FILE,
                repo_id,
                CARD_INFO_FILE,
                repo_id,
                repo_id,
                edited,
                f" --revision {revision}" if revision else "",
            )
        if card is not None:
            card.save(staging / "README.md")
            files["README.md"] = staging / "README.md"
        files, left_out = select_upload(files, files.get("README.md"))
        if left_out:
            logger.warning(
                "Not pushing %d file(s) of %s that are not model, adapter, processor or card files: %s",
                len(left_out),
                adapter_dir,
                ", ".join(f"{path} ({_size(local.stat().st_size)})" for path, local in left_out.items()),
            )
        operations = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(local)) for path, local in files.items()
        ]
        # a full model or an adapter is pushed, never both: files of the other kind from an earlier push go in the
        # same commit (a stale adapter_config.json would make transformers apply the old adapter on top)
        pushes_full_model = merge or not (adapter_dir / "adapter_config.json").is_file()
        try:
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            stale = stale_other_kind(api.list_repo_files(repo_id, revision=revision), set(files), pushes_full_model)
            if stale:
                logger.warning(
                    "Deleting from %s, in the same commit, files of an earlier %s push that would load with this "
                    "one: %s",
                    repo_id,
                    "adapter" if pushes_full_model else "full-model",
                    ", ".join(stale),
                )
                operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
            commit = api.create_commit(
                repo_id,
                operations=operations,
                commit_message=commit_message or f"Upload TPO {'merged model' if merge else 'adapter'}",
                revision=revision,
            )
        except Exception as error:
            raise push_failed(
                f"Uploading {len(operations)} files from {adapter_dir}",
                repo_id,
                error,
                rerun,
                api,
                kept=f"Nothing in {adapter_dir} was changed.",
            ) from error
    logger.info("Pushed %d files from %s to %s (%s)", len(operations), adapter_dir, repo_id, commit.oid)
    return commit


# The one data file a curated dataset push writes: the whole train split, in the layout of `Dataset.push_to_hub`
DATASET_TRAIN_FILE = "data/train-00000-of-00001.parquet"
# A split's shard in that layout; the train split's other shards are stale (they would load beside the new one),
# any other split's are someone else's
_SPLIT_SHARD = re.compile(r"data/(\w+(?:\.\w+)*)-\d{5}-of-\d{5}\.parquet")


def _parquet_videos(api: HfApi, repo_id: str, path: str) -> set[str] | None:
    """The `video` values of the dataset repo's parquet file `path` (empty without that column); None when it cannot
    be read."""
    import pyarrow.parquet as pq
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    try:  # read once, in memory: not worth a place in the user's cache
        response = get_session().get(
            f"{hub_endpoint(api)}/datasets/{repo_id}/resolve/main/{path}",
            headers=build_hf_headers(token=api.token),
            follow_redirects=True,
        )
        hf_raise_for_status(response)
        table = pq.read_table(io.BytesIO(response.content))
    except Exception:  # unreadable or not a parquet file
        return None
    if "video" not in table.column_names:
        return set()
    return {value for value in table.column("video").to_pylist() if isinstance(value, str)}


def dataset_push_leftovers(
    api: HfApi, repo_id: str, repo_files: list[str], pushed: set[str], upload_videos: bool
) -> tuple[list[str], list[str]]:
    """(stale, kept): the files of the dataset repo `repo_id` under `data/` and `videos/` that this push does not
    write, split into those earlier tpo-hf pushes wrote (deleted in the same commit) and the rest (left).

    Only what tpo-hf pushes is deleted: other shards of the train split (they would load beside the new one) and,
    when this push uploads videos, the videos the train split on the Hub points to that no row of this dataset and
    no other split points to. Another split (e.g. `data/test-00000-of-00001.parquet`, added with
    `Dataset.push_to_hub(split="test")`), the videos it uses and files added by hand are left.
    """
    leftovers = sorted(path for path in repo_files if path.startswith(("data/", "videos/")) and path not in pushed)
    stale = [path for path in leftovers if (match := _SPLIT_SHARD.fullmatch(path)) and match[1] == "train"]
    old_videos = [path for path in leftovers if path.startswith("videos/")]
    if upload_videos and old_videos:
        pushed_before = _parquet_videos(api, repo_id, DATASET_TRAIN_FILE) or set()
        for path in repo_files:  # another split's videos stay, whoever uploaded them
            if path.startswith("data/") and path.endswith(".parquet") and path not in stale + [DATASET_TRAIN_FILE]:
                used = _parquet_videos(api, repo_id, path)
                pushed_before = set() if used is None else pushed_before - used  # unreadable: delete no video
        stale += [path for path in old_videos if path in pushed_before]
    kept = [path for path in leftovers if path not in stale and (upload_videos or not path.startswith("videos/"))]
    return sorted(stale), kept


def other_splits(repo_files: list[str]) -> list[str]:
    """The splits other than train whose shards the dataset repo holds in the `Dataset.push_to_hub` layout."""
    return sorted({match[1] for path in repo_files if (match := _SPLIT_SHARD.fullmatch(path)) and match[1] != "train"})


def _dataset_rerun(output_dir: str | os.PathLike, repo_id: str, upload_videos: bool) -> str:
    """The `tpo-hf curate` command line a failed dataset push names to rerun (quoted: a shell command)."""
    command = f"tpo-hf curate --config ... --output_dir {shlex.quote(str(output_dir))} --push_to_hub "
    return command + shlex.quote(repo_id) + (" --upload_videos true" if upload_videos else "")


def prepare_dataset_push(
    output_dir: str | os.PathLike,
    repo_id: str,
    private: bool = False,
    upload_videos: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
) -> None:
    """What `push_dataset` checks first, asked before the curation (`tpo-hf curate --push_to_hub`), which may take
    hours: the repo id (`check_repo_id`), and that the token can write the dataset repo with the visibility asked for
    (`prepare_repo`, creating it if missing).

    Raises:
        PushError: naming `--push_to_hub` or `--hub_private` and the command to rerun; nothing was curated.
    """
    check_repo_id(repo_id, setting="--push_to_hub")
    api = HfApi(token=token, endpoint=endpoint)
    try:
        prepare_repo(api, repo_id, private=private, setting="--hub_private", repo_type="dataset")
    except PushError:  # asked private, the repo is public
        raise
    except Exception as error:
        raise push_failed(
            "Preparing the dataset push",
            repo_id,
            error,
            _dataset_rerun(output_dir, repo_id, upload_videos),
            api,
            kept="Nothing was curated or pushed by this run.",
        ) from error


def _readme_is_tpo_hf_dataset_card(api: HfApi, repo_id: str, repo_files: list[str]) -> bool | None:
    """Whether the dataset repo's README.md is a card `tpo-hf curate --push_to_hub` wrote (tagged `tpo-hf`): the repo
    holds an earlier curation's push. False without a README, None when it cannot be read."""
    from huggingface_hub import DatasetCard
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    if "README.md" not in repo_files:
        return False
    try:  # read in memory, as `_parquet_videos`: not worth a place in the user's cache
        response = get_session().get(
            f"{hub_endpoint(api)}/datasets/{repo_id}/resolve/main/README.md",
            headers=build_hf_headers(token=api.token),
            follow_redirects=True,
        )
        hf_raise_for_status(response)
        tags = DatasetCard(response.text).data.tags or []
    except Exception:
        return None
    return "tpo-hf" in tags


def push_dataset(
    output_dir: str | os.PathLike,
    repo_id: str,
    dataset: Any,
    report: dict[str, Any],
    config: Any,
    upload_videos: bool = False,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
) -> Any:
    """Pushes the data (`data/train-00000-of-00001.parquet`), the card and optionally `videos/` in ONE commit.

    Returns the `CommitInfo`. The video column already holds `videos/<id>` paths, so `load_dataset(repo_id)` plus a
    snapshot of the repository is ready for `tpo-hf train` with `video_root` set to the snapshot folder. Files of the
    repo that tpo-hf did not push (another split, its videos) are left, named in a warning, and the card's configs
    list the other splits so that `load_dataset` still loads them (`dataset_push_leftovers`). A repo holding another
    dataset (a train split, and a README that is no tpo-hf dataset card) loses every split of it in the same commit,
    named in a warning: its test split was served beside the new train split.
    """
    from ..curation.dataset_card import render_dataset_card

    check_repo_id(repo_id, setting="--push_to_hub")
    api = HfApi(token=token, endpoint=endpoint)
    rerun = _dataset_rerun(output_dir, repo_id, upload_videos)

    def failed(error: Exception) -> PushError:
        # the curated dataset is complete on disk; rerunning the same curate command only redoes the push
        return push_failed(
            f"Pushing the dataset in {output_dir} ({len(dataset)} pairs)",
            repo_id,
            error,
            rerun + " (same settings: every shard is reused)",
            api,
            kept=f"The dataset in {output_dir} is complete and unchanged.",
        )

    videos = []
    if upload_videos:
        output_dir = Path(output_dir)
        for relative in sorted(set(dataset["video"])):
            local = output_dir / relative
            if not relative.startswith("videos/") or not local.is_file():
                raise FileNotFoundError(
                    f"Video {relative!r} is not under {output_dir}/videos; run with copy_videos=True to upload videos."
                )
            videos.append(CommitOperationAdd(relative, str(local)))
    try:
        prepare_repo(api, repo_id, private=private, setting="--hub_private", repo_type="dataset")
        repo_files = api.list_repo_files(repo_id, repo_type="dataset")
    except PushError:
        raise
    except Exception as error:
        raise failed(error) from error
    buffer = io.BytesIO()
    dataset.to_parquet(buffer)
    card = render_dataset_card(dataset, report, config, repo_id=repo_id, videos_included=upload_videos)
    splits = other_splits(repo_files)
    # a repo whose train split no tpo-hf push wrote (its README is no tpo-hf dataset card) holds another, older
    # dataset: its other splits are no part of this one, and the card would serve them beside it. They go, with its
    # train shards, in this commit; a split added beside an earlier curation's push (or to an empty repo) stays
    older_splits = []
    train_shards = [path for path in repo_files if (match := _SPLIT_SHARD.fullmatch(path)) and match[1] == "train"]
    if splits and train_shards and _readme_is_tpo_hf_dataset_card(api, repo_id, repo_files) is False:
        older_splits, splits = splits, []
    if splits and card.data.configs:  # the card replaces the README that may have listed them
        card.data.configs[0]["data_files"] += [{"split": split, "path": f"data/{split}-*"} for split in splits]
    operations = [
        CommitOperationAdd(DATASET_TRAIN_FILE, buffer.getvalue()),
        CommitOperationAdd("README.md", str(card).encode()),
        *videos,
    ]
    try:
        # the train split (and videos/, when this push uploads them) hold this push's files only: a shard or video
        # an earlier push uploaded and this dataset no longer holds goes in the same commit, so the repo does not
        # keep videos no row points to. A push without videos leaves videos/ alone: its rows may point at videos
        # uploaded before
        pushed = {operation.path_in_repo for operation in operations}
        stale, kept = dataset_push_leftovers(api, repo_id, repo_files, pushed, upload_videos)
        older = [path for path in kept if (match := _SPLIT_SHARD.fullmatch(path)) and match[1] in older_splits]
        if older:
            logger.warning(
                "Deleting from %s, in the same commit, the split(s) %s of the dataset it held before (its README.md "
                "is no tpo-hf dataset card): they are no part of this dataset, and would load beside it: %s",
                repo_id,
                ", ".join(older_splits),
                ", ".join(older),
            )
            operations += [CommitOperationDelete(path_in_repo=path) for path in older]
            kept = [path for path in kept if path not in older]
        if stale:
            logger.warning(
                "Deleting from %s, in the same commit, %d file(s) of an earlier push that this dataset no longer "
                "holds: %s",
                repo_id,
                len(stale),
                ", ".join(stale),
            )
            operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
        if kept:
            logger.warning(
                "Leaving in %s %d file(s) that this push does not own (another split, the videos it uses, or files "
                "added by hand)%s: %s",
                repo_id,
                len(kept),
                f"; the card lists the split(s) {', '.join(splits)} beside train" if splits else "",
                ", ".join(kept),
            )
        return api.create_commit(
            repo_id, operations, commit_message=f"Add TPO preference pairs ({len(dataset)} pairs)", repo_type="dataset"
        )
    except Exception as error:
        raise failed(error) from error
