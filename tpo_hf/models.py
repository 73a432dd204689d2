"""Loading a video-LMM for inference: the base model, optionally a TPO (LoRA) adapter on it, and its processor.

`load_video_model` is the one loader behind evaluation (`tpo-hf eval`, the lmms-eval plugin), the Space demo, the
local curation backend and `tpo-hf push --merge`, so all of them see the same weights, frame sampling and family
handling.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .checkpoints import ADAPTER_WEIGHTS, incomplete_weights

logger = logging.getLogger(__name__)

PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


def check_adapter_folder(adapter: str | os.PathLike) -> None:
    """Refuses a local folder that is not a LoRA adapter (no `adapter_config.json`), e.g. a full model given as the
    adapter, with what to pass instead (PEFT's own error is a traceback about a missing file); and one whose weights
    file is not whole (a save cut short by a kill or a full disk; safetensors' own error names no file)."""
    if not os.path.isdir(adapter):
        return
    if not os.path.isfile(os.path.join(adapter, "adapter_config.json")):
        checkpoints = killed_run_checkpoints(adapter)
        if checkpoints:
            raise ValueError(f"{adapter} is not a LoRA adapter folder (no adapter_config.json): " + checkpoints)
        full_model = os.path.isfile(os.path.join(adapter, "config.json"))
        raise ValueError(
            f"{adapter} is not a LoRA adapter folder (no adapter_config.json)"
            + (" but a full model (config.json)" if full_model else "")
            + "; pass it as --model_name_or_path, or give the adapter's folder as --adapter_path."
        )
    for name in ADAPTER_WEIGHTS:
        weights = os.path.join(adapter, name)
        problem = incomplete_weights(weights) if os.path.isfile(weights) else None
        if problem is not None:
            raise ValueError(
                f"Adapter weights {weights} are incomplete ({problem}): their save was cut short (killed, or the disk "
                "was full). Save the adapter again (rerun the training, or resume it from its last complete "
                "checkpoint), or pass a complete checkpoint-N folder as --adapter_path."
            )


def killed_run_checkpoints(folder: str | os.PathLike) -> str | None:
    """What to say of a training output_dir that holds `checkpoint-N` folders but no final save (the run was killed
    or stopped before it ended): the checkpoints found, and to resume the run or pass one of them; None for a folder
    without checkpoints."""
    from .checkpoints import checkpoint_is_complete, checkpoint_step

    if not os.path.isdir(folder):
        return None
    found = sorted(
        (checkpoint_step(entry.path), entry.path)
        for entry in os.scandir(folder)
        if entry.is_dir() and checkpoint_step(entry.path) >= 0 and checkpoint_is_complete(entry.path)
    )
    if not found:
        return None
    names = ", ".join(os.path.basename(path) for _, path in found)
    return (
        f"it holds the checkpoint(s) {names} of a training run that did not reach its final save (killed or "
        f"stopped). Resume the run (`tpo-hf train` with the same --output_dir and --resume_from_checkpoint true), or "
        f"pass a checkpoint folder, e.g. {found[-1][1]}."
    )


def check_adapter_loadable(
    adapter: str | os.PathLike,
    model_name_or_path: str | os.PathLike | None = None,
    base_option: str = "--model_name_or_path",
) -> str:
    """Refuses, in one line, an adapter that is neither a local folder nor loadable from the Hub -- a mistyped folder,
    or a Hub id that is not in the cache while offline, not on the Hub, or unreachable (PEFT's own error is a
    traceback saying it "can't find adapter_config.json") -- and, without `model_name_or_path`, the base model its
    config names when that is not loadable either, naming the base and the adapter config it comes from
    (transformers' own error names neither), with `base_option` as the command's option that names another base.
    Returns the base model to load: `model_name_or_path`, else that base."""
    adapter = str(adapter)
    not_local = f"adapter_path {adapter} is not a local folder"
    if os.path.exists(adapter) and not os.path.isdir(adapter):
        raise ValueError(f"{not_local} but a file; pass the adapter's folder (with adapter_config.json).")
    problem = _unloadable(adapter, "adapter_config.json")
    if problem == NOT_A_REPO_ID:
        raise ValueError(f"{not_local} (no such folder) and not a Hub repo id; check the path.")
    if problem == HUB_GATED:
        raise ValueError(f"adapter_path {adapter} {gated_repo_access(adapter)}.")
    if problem == HUB_OFFLINE:
        raise ValueError(
            f"{not_local} and is not in the Hub cache (offline, HF_HUB_OFFLINE=1): check the folder's path for a "
            "typo, or download the adapter while online (`hf download REPO`) before evaluating offline."
        )
    # the repo answered that it has no adapter_config.json: a full model there is the other kind of repo, not a typo
    missing_file = problem is not None and problem.startswith(("RemoteEntryNotFoundError", "EntryNotFoundError"))
    if missing_file and hub_file_problem(adapter, "config.json") is None:
        raise ValueError(
            f"adapter_path {adapter} is a Hub repo that holds a full model (config.json, no adapter_config.json), not "
            "a LoRA adapter; pass it as --model_name_or_path, or give the adapter's repo as --adapter_path."
        )
    # no model repo of that id: one's dataset (or Space) repo of that id is a mix-up, not a typo
    other_kind = other_repo_kind(adapter) if problem and problem.startswith("RepositoryNotFoundError") else None
    if other_kind is not None:
        raise ValueError(
            f"adapter_path {adapter} is a {other_kind} repo on the Hub, not a model repo with a LoRA adapter: pass "
            "the id of the adapter's model repo (what `tpo-hf push --repo_id` or `train --push_to_hub` published)."
        )
    if problem is not None:
        raise ValueError(
            f"{not_local} and could not be loaded from the Hub ({problem}): check the folder's path or the repo id "
            "for a typo, and that the Hub is reachable."
        )
    if model_name_or_path:
        return str(model_name_or_path)
    base = adapter_base_model(adapter)
    config = os.path.join(adapter, "adapter_config.json")
    check_model_loadable(
        base,
        named=f"The adapter's base model {base} (base_model_name_or_path in {config})",
        instead=f"or pass the base model as {base_option}",
    )
    return base


HUB_OFFLINE = "offline"  # what `hub_file_problem` says when the file is not cached and HF_HUB_OFFLINE is set
NOT_A_REPO_ID = "not a repo id"  # what `_unloadable` says of a path that is no local folder and no Hub repo id
HUB_GATED = "gated"  # what `hub_file_problem` says of a gated repo this token has no access to


def gated_repo_access(repo_id: str) -> str:
    """The end of a one-line error about the gated Hub repo `repo_id`: that it is gated, and how to get access (the
    Hub's own error is a traceback, and transformers' blames the connection)."""
    from huggingface_hub import constants

    return (
        f"is a gated Hub repo and this token has no access to it: request access on {constants.ENDPOINT}/{repo_id} "
        "while logged in, then use a token of that account (`hf auth login`, or HF_TOKEN)"
    )


def other_repo_kind(repo_id: str, kinds: tuple[str, ...] = ("dataset", "space")) -> str | None:
    """Which of `kinds` of Hub repo `repo_id` is, if any (asked of the Hub): a model id that is not found is often the
    user's dataset or Space repo of that name. None when it is none of them, or the Hub does not answer."""
    from huggingface_hub import HfApi

    api = HfApi()
    for kind in kinds:
        try:
            if api.repo_exists(repo_id, repo_type=kind):
                return kind
        except Exception:  # unreachable Hub: the caller's error already says the repo could not be loaded
            return None
    return None


def check_model_loadable(name: str, named: str | None = None, instead: str = "") -> None:
    """Refuses a model that is neither a local folder nor a Hub repo whose config loads, before anything is loaded
    (transformers' OSError about repo ids came with a traceback). `named`: how the message names it (default
    `model_name_or_path NAME`); `instead`: another way on, appended to each message ("or pass ... as ...").

    Raises:
        ValueError: not a folder and not a valid repo id, a gated repo, not cached while offline, or not loadable
            from the Hub (its error in one line).
    """
    problem = _unloadable(str(name), "config.json")
    if problem is None:
        return
    named = named or f"model_name_or_path {name}"
    instead = f", {instead}" if instead else ""
    if problem == NOT_A_REPO_ID:
        raise ValueError(
            f"{named} is neither a local folder (no such folder) nor a Hub repo id: check the path{instead}."
        )
    if problem == HUB_GATED:
        raise ValueError(f"{named} {gated_repo_access(name)}{instead}.")
    if problem == HUB_OFFLINE:
        raise ValueError(
            f"{named} is not a local folder and is not in the Hub cache (offline, HF_HUB_OFFLINE=1): check the "
            f"folder's path for a typo, or download it while online (`hf download {name}`){instead}."
        )
    raise ValueError(
        f"{named} is not a local folder and could not be loaded from the Hub ({problem}): check the path or the repo "
        f"id for a typo, and that the Hub is reachable{instead}."
    )


def _unloadable(path: str, filename: str) -> str | None:
    """Why `path` is neither a local folder nor a Hub repo whose `filename` loads: `NOT_A_REPO_ID`, or what
    `hub_file_problem` says; None when it loads."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if os.path.isdir(path):
        return None
    try:
        validate_repo_id(path)
    except HFValidationError:
        return NOT_A_REPO_ID
    return hub_file_problem(path, filename)


def hub_file_problem(repo_id: str, filename: str) -> str | None:
    """Why `filename` of the Hub model repo `repo_id` can be neither read from the cache nor downloaded: `HUB_OFFLINE`
    (not cached, HF_HUB_OFFLINE set), `HUB_GATED` (a gated repo this token has no access to), or the Hub's error in
    one line (not on the Hub, no access, unreachable); None when it can."""
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError

    if isinstance(try_to_load_from_cache(repo_id, filename), str):
        return None  # cached: loads offline too
    if constants.HF_HUB_OFFLINE:
        return HUB_OFFLINE
    try:
        hf_hub_download(repo_id, filename)
    except GatedRepoError:
        return HUB_GATED
    except Exception as error:  # not on the Hub, no access, or the Hub unreachable
        cause = " ".join(line.strip() for line in str(error).splitlines() if line.strip())[:300]
        return f"{type(error).__name__}: {cause}"
    return None


# Class names, anywhere in an error's chain, of a connection that failed (httpx, requests, urllib3, the builtin)
_CONNECTION_ERRORS = {"ConnectError", "ConnectTimeout", "ConnectionError", "TimeoutException", "NetworkError"}


def hub_unreachable_error(repo_id: str, error: BaseException) -> str | None:
    """One line for a failed load of the Hub repo `repo_id` (an adapter) whose cause is the Hub being unreachable --
    PEFT asks the Hub even when every file is cached, and its error is a traceback ending in a ConnectError -- saying
    whether the cached copy can be used with HF_HUB_OFFLINE=1; None for any other error or a local folder."""
    if os.path.isdir(repo_id):
        return None
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    cause = next((link for link in chain if {c.__name__ for c in type(link).__mro__} & _CONNECTION_ERRORS), None)
    if cause is None:
        return None
    from huggingface_hub import constants, try_to_load_from_cache

    said = " ".join(str(cause).split())[:200]

    def in_cache(name: str) -> bool:
        return isinstance(try_to_load_from_cache(repo_id, name), str)

    cached = in_cache("adapter_config.json") and any(in_cache(name) for name in ADAPTER_WEIGHTS)
    unreachable = (
        f"adapter_path {repo_id}: the Hub ({constants.ENDPOINT}) is unreachable ({type(cause).__name__}: {said})"
    )
    if cached:
        return f"{unreachable}; the adapter is in the Hub cache: set HF_HUB_OFFLINE=1 to use the cached copy."
    return f"{unreachable} and the adapter is not (wholly) in the Hub cache: rerun once the Hub is reachable."


def adapter_base_model(adapter: str | os.PathLike) -> str:
    """The base model an adapter was trained on (`base_model_name_or_path` of its PEFT config)."""
    from peft import PeftConfig

    check_adapter_folder(adapter)
    base = PeftConfig.from_pretrained(str(adapter)).base_model_name_or_path
    if not base:
        raise ValueError(f"The adapter config of {adapter} names no base_model_name_or_path; pass the base model.")
    return base


def _same_model(first: str, second: str) -> bool:
    """Whether two model names or paths are the same model: the same folder, two folders holding the same weight,
    config and tokenizer files (a `cp -r` copy: `fingerprint.model_identity` keys folders by content), or the same
    name."""
    if os.path.exists(first) and os.path.exists(second):
        if os.path.realpath(first) == os.path.realpath(second):
            return True
        if os.path.isdir(first) and os.path.isdir(second):
            from .fingerprint import model_identity

            return model_identity(first) == model_identity(second)
        return False
    return first.rstrip("/") == second.rstrip("/")


def adapter_base_mismatch(
    model_name_or_path: str | os.PathLike | None, adapter: str | os.PathLike | None
) -> str | None:
    """The base an adapter's config names when `model_name_or_path` is another model (a folder elsewhere, another
    Hub id), else None. The adapter's weights were trained against that base: on other weights its numbers describe
    a pairing that was never trained."""
    if not model_name_or_path or adapter is None:
        return None
    try:
        trained_on = adapter_base_model(adapter)
    except (OSError, ValueError):
        return None
    return None if _same_model(str(model_name_or_path), trained_on) else trained_on


def _has_processor(path: str) -> bool:
    """Whether an adapter folder or Hub repo carries its own processor (TPOTrainer saves one beside the adapter)."""
    if os.path.isdir(path):
        return any(os.path.isfile(os.path.join(path, name)) for name in PROCESSOR_FILES)
    try:
        from huggingface_hub import file_exists

        return any(file_exists(path, name) for name in PROCESSOR_FILES)
    except Exception:  # unreachable Hub: try the adapter's processor, as a Space does
        return True


def load_family_model(model_id: str, family: Any, args: Any, quantization_config: Any = None) -> Any:
    """Loads `model_id` with its family's `load_class` (e.g. the Qwen2.5-Omni thinker out of an Omni checkpoint), with
    the `model_init_kwargs`, device placement and quantization TRL's `DPOTrainer` would use for a model id."""
    from trl.trainer.utils import create_model_from_path

    kwargs = dict(args.model_init_kwargs or {})
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    if args.distributed_state.distributed_type in ("MULTI_GPU", "DEEPSPEED"):
        kwargs["device_map"] = None  # as TRL: "auto" fails under distributed training
    kwargs.setdefault("trust_remote_code", args.trust_remote_code)
    return create_model_from_path(model_id, architecture=family.load_model_class(), **kwargs)


DTYPES = ("auto", "bfloat16", "float16", "float32")


def check_dtype_name(dtype: Any, setting: str) -> None:
    """The one dtype rule of the CLI and the lmms-eval plugin: "auto" or a floating-point torch dtype's name, checked
    before a model loads (`resolve_dtype` would fail only then, or accept an integer dtype)."""
    if not isinstance(dtype, str):
        return
    import torch

    if dtype != "auto" and not (
        isinstance(getattr(torch, dtype, None), torch.dtype) and getattr(torch, dtype).is_floating_point
    ):
        raise ValueError(f"{setting}={dtype!r} is not a dtype; use one of {', '.join(DTYPES)}.")


def resolve_dtype(dtype: str | Any) -> Any:
    """`"auto"` stays as is; a name such as `"bfloat16"` becomes the `torch.dtype`."""
    import torch

    return getattr(torch, dtype) if isinstance(dtype, str) and dtype != "auto" else dtype


def load_video_model(
    model_name_or_path: str | os.PathLike | None,
    adapter: str | os.PathLike | None = None,
    *,
    dtype: str | Any = "auto",
    device: str | None = None,
    attn_implementation: str | None = None,
    **video_settings: Any,
) -> tuple[Any, Any]:
    """The model (a `PeftModel` when `adapter` is given) in eval mode on its device, and its processor.

    Args:
        model_name_or_path: base model, Hub id or folder; `None` takes the base named in the adapter's config.
        adapter: a LoRA adapter folder or Hub id (e.g. a `TPOTrainer` output).
        dtype: `"auto"` or a torch dtype (name).
        device: default `cuda` when available, else `cpu`.
        attn_implementation: e.g. `"sdpa"`.
        video_settings: `VideoPreferenceProcessor` settings (`num_frames`, `max_pixels`, ...); `None` values keep
            the settings saved with the processor, except `num_frames=None` given with a `video_fps`: sample by rate.

    The processor comes from the adapter when it carries one (its saved video settings are those of training),
    else from the base model.
    """
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from .processing import VideoPreferenceProcessor

    adapter = str(adapter) if adapter is not None else None
    if adapter is not None:
        check_adapter_folder(adapter)
        loaded_base = check_adapter_loadable(adapter, model_name_or_path)
        trained_on = adapter_base_mismatch(model_name_or_path, adapter)
        if trained_on is not None:
            # two local folders are compared by content: then they are known to hold other weights
            both_here = os.path.isdir(trained_on) and os.path.isdir(str(model_name_or_path))
            logger.warning(
                "The adapter %s was trained on %s (base_model_name_or_path of its adapter_config.json) but is loaded "
                "on %s: %s, what it gives is not what it was trained to give.",
                adapter,
                trained_on,
                model_name_or_path,
                "their weight, config or tokenizer files differ, so"
                if both_here
                else "unless these are the same weights",
            )
    if not model_name_or_path:
        if adapter is None:
            raise ValueError("Set `model_name_or_path` (a Hub model id or a local model folder).")
        model_name_or_path = loaded_base
    model_name_or_path = str(model_name_or_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(dtype)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    from .families import get_family

    try:
        family_class = get_family(AutoConfig.from_pretrained(model_name_or_path)).load_model_class()
    except ValueError:  # not a registry family: the processor refuses it below with the list of families
        family_class = None
    model_class = family_class or AutoModelForImageTextToText
    model = model_class.from_pretrained(model_name_or_path, **kwargs)
    if adapter is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter)
        except Exception as error:
            unreachable = hub_unreachable_error(adapter, error)
            if unreachable is None:
                raise
            raise ValueError(unreachable) from None
    model.to(device).eval()
    processor_source = adapter if adapter is not None and _has_processor(adapter) else model_name_or_path
    settings = {name: value for name, value in video_settings.items() if value is not None}
    if "num_frames" in video_settings and video_settings["num_frames"] is None and "video_fps" in settings:
        # num_frames=None beside a rate is the fps mode (sample by rate), not "keep the saved frame count"
        settings["num_frames"] = None
    return model, VideoPreferenceProcessor.from_pretrained(processor_source, **settings)
