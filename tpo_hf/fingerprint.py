"""The one rule for every cache and resumable state (eval answers, reference log-probs, curation shards).

A cached value may be reused only when its *key* matches: a dict naming everything that determines the value --
input files by identity (`file_identity`: path, size and modification time; `video.video_file_identity`, size and
content hash only, for a video known by a name of its own), every setting that changes the output, every prompt
and template text a model is given and what the model's processor wraps around it (chat template, video prompt
layout; `text_hashes`, one entry per text so that a mismatch names it), and the format version of the code that
wrote it. Keys are stored next to the values as plain dicts (not only as hashes), so a mismatch can say *what*
changed (`changed_fields`) instead of silently reusing or silently recomputing. A write of such state that fails for
lack of disk space is told apart from other failures by one rule (`no_space_left`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def atomic_write_json(path: Path, data: Any) -> None:
    """Writes `data` so that `path` either holds the old content or the complete new one, even after SIGKILL, with
    the usual permissions (`atomic_path`: a teammate sharing the folder reads it as they read the rest)."""
    with atomic_path(path) as temporary:
        with open(temporary, "w") as file:
            json.dump(data, file)
            file.flush()
            os.fsync(file.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` (UTF-8, newlines as given) as `atomic_write_json` writes JSON: by a new file renamed over `path`,
    so a hard-linked copy of the folder (`cp -al`, rsnapshot backups) keeps its own old file, as it keeps
    the data files and weights that are written the same way."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file beside `path` for the body to write, renamed over `path` when the body ends and removed when
    it raises: `path` holds its old content or the complete new one, never a torn file (a kill, a full disk). The body
    creates the file, so it gets the usual permissions (umask), as `path` written directly would. The name ends in
    `.tmp`, so that one a kill leaves is never listed as a video or result: writers that pick a format by the file's
    ending (PyAV, matplotlib) are told it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


DISK_FULL_BYTES = 64 * 2**20  # less free space than this after a failed write: the disk filled up
# the errnos of a folder that refuses a write whatever the room left: read-only, or no permission
NOT_WRITABLE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def no_space_left(error: BaseException, folder: str | os.PathLike) -> str | None:
    """The one rule for telling a full disk from other write errors (checkpoints, caches, outputs): "no space left on
    device (N bytes free)" when `error`, raised while writing into `folder`, came from a full disk -- ENOSPC / EDQUOT
    anywhere in its chain, or (torch's "unexpected pos" carries no errno) almost no space left and no OS error of
    another kind in its chain -- else None."""
    import errno
    import shutil

    chain, seen = [], error
    while seen is not None and len(chain) < 16:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    # safetensors' SafetensorError carries the OS error in its text only ("No space left on device (os error 28)")
    texts = (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT))
    full = any(
        getattr(item, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(text in str(item) for text in texts)
        for item in chain
    )
    if not full and any(isinstance(item, OSError) and item.errno is not None for item in chain):
        # the OS said what went wrong (a read-only file system, a missing permission...): a small disk is no clue then
        return None
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        free = None
    if not full and (free is None or free >= DISK_FULL_BYTES):
        return None
    return "no space left on device" + (f" ({free} bytes free)" if free is not None else "")


def file_identity(path: str | os.PathLike | None) -> str:
    """`path@size:mtime_ns` for a local file (recursively summed for a folder); the path alone for a remote one.

    Size plus modification time catches a file repaired, re-encoded or replaced in place without reading it.
    """
    if path is None:
        return "None"
    path = os.fspath(path)
    if "://" in path or not os.path.exists(path):
        return path
    if os.path.isdir(path):
        size, newest = 0, 0
        for folder, _, names in os.walk(path):
            for name in names:
                stat = os.stat(os.path.join(folder, name))
                size, newest = size + stat.st_size, max(newest, stat.st_mtime_ns)
        return f"{path}@{size}:{newest}"
    stat = os.stat(path)
    return f"{path}@{stat.st_size}:{stat.st_mtime_ns}"


# The files of a model folder that decide its outputs: weights and their index, the model / adapter / generation /
# processor configs and the tokenizer. Not its subfolders (`eval/`, `checkpoint-*/`) nor what a run writes beside the
# weights (card, trainer state, plots), so an eval written into `<adapter>/eval` does not change the adapter's identity.
MODEL_FILE_PATTERNS = (
    "*.safetensors",
    "*.bin",
    "*.index.json",
    "*config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "*.model",
    "*.tiktoken",
)
NOT_MODEL_FILES = ("training_args.bin",)
_UNRESOLVED: set[str] = set()  # Hub ids already named in the log as unresolved


def model_identity(name_or_path: str | os.PathLike | None, revision: str | None = None) -> str:
    """What a model (or adapter) given by folder or Hub id *is*, for a cache key: the one rule for every cache that
    depends on a model (eval answers, curation shards, a checkpoint's base model).

    - a local folder: `files:<size>:<hash>` over the name, size and content hash (`file_content_hash`) of each of its
      weight, config and tokenizer files (`MODEL_FILE_PATTERNS`, top level only): weights saved again into the same
      folder change it, outputs written into its subfolders do not. Not its path nor its files' modification times:
      the same folder given by a relative or an absolute path, through a link, after the project moved, or copied
      with `cp -r` (new modification times, same bytes) is the same model;
    - a Hub id: `id@commit:<sha>`, the commit `revision` (default `main`) resolves to: asked of the Hub when online,
      read from the local cache's refs when offline (`HF_HUB_OFFLINE=1`) or when the Hub does not answer; a re-pushed
      repo changes it;
    - anything else (a model name at an API endpoint, a Hub id that resolves nowhere): the name itself, with a note
      in the log when it looked like a Hub id.
    """
    if name_or_path is None:
        return "None"
    name = os.fspath(name_or_path)
    if os.path.isdir(name):
        entries = [[file_name, size, digest] for file_name, (size, digest) in _model_file_contents(name).items()]
        return f"files:{sum(e[1] for e in entries)}:{key_hash(entries)[:16]}"
    sha = hub_commit(name, revision)
    if sha is not None:
        return f"{name}@commit:{sha}"
    return name


def legacy_model_identity(name_or_path: str | os.PathLike | None) -> str | None:
    """The identity tpo-hf 0.x before content hashing gave a local model folder (`files:<size>:<newest mtime>:<hash>`
    over names, sizes and modification times), or None for anything but a folder: what keys written then hold, so
    state made with the same files on disk is still recognised after an upgrade (`same_model`)."""
    if name_or_path is None or not os.path.isdir(name_or_path):
        return None
    entries = _model_file_stats(os.fspath(name_or_path))
    size, newest = sum(e[1] for e in entries), max((e[2] for e in entries), default=0)
    return f"files:{size}:{newest}:{key_hash(entries)[:16]}"


def same_model(stored: Any, name_or_path: str | os.PathLike | None, current: str) -> bool:
    """Whether an identity stored in a key names the model `name_or_path` (whose `model_identity` is `current`):
    equal, or the pre-content-hash identity of the same, unchanged folder (`legacy_model_identity`)."""
    return stored == current or (stored is not None and stored == legacy_model_identity(name_or_path))


def _model_file_stats(folder: str) -> list[list[Any]]:
    """[name, size, mtime_ns] of each file of a model folder that `model_identity` keys it by, sorted by name."""
    import fnmatch

    entries = []
    for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
        if (
            entry.is_file()
            and entry.name not in NOT_MODEL_FILES
            and any(fnmatch.fnmatch(entry.name, pattern) for pattern in MODEL_FILE_PATTERNS)
        ):
            stat = entry.stat()
            entries.append([entry.name, stat.st_size, stat.st_mtime_ns])
    return entries


def _model_file_contents(folder: str) -> dict[str, tuple[int, str]]:
    """name -> (size, content hash) of each file of a model folder that `model_identity` keys it by."""
    return {
        name: (size, file_content_hash(os.path.join(folder, name)))
        for name, size, _ in _model_file_stats(os.fspath(folder))
    }


def model_files(folder: str | os.PathLike) -> dict[str, str]:
    """name -> `size:sha256:<hash>` of the files of a local model folder that `model_identity` keys it by: kept per
    file where a change must be named (a checkpoint's base model)."""
    return {name: f"{size}:sha256:{digest[:16]}" for name, (size, digest) in _model_file_contents(folder).items()}


def legacy_model_files(folder: str | os.PathLike) -> dict[str, str]:
    """name -> `size:mtime_ns`, what `model_files` gave before content hashing (records written then hold it)."""
    return {name: f"{size}:{mtime}" for name, size, mtime in _model_file_stats(os.fspath(folder))}


def cache_root() -> Path:
    """tpo-hf's own cache folder: `TPO_HF_CACHE`, else `$XDG_CACHE_HOME/tpo_hf` (default `~/.cache/tpo_hf`)."""
    root = os.environ.get("TPO_HF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tpo_hf"
    )
    return Path(root)


# content hashes already computed in this process, by file version: (real path, device, inode, size, mtime_ns,
# ctime_ns); the change time, which no copy or `touch` can set back, tells a file written anew within one tick of
# a coarse clock from the one it replaced
_CONTENT_HASHES: dict[tuple, str] = {}
# files above this size are announced in the log before they are hashed (a large model's first use pauses)
_ANNOUNCE_HASH_BYTES = 1 << 30
# smaller files (adapters, configs, tokenizers) are hashed again in each process (a fraction of a second) rather than
# leaving a remembered hash behind for every checkpoint ever evaluated
_REMEMBER_HASH_BYTES = 64 << 20


def file_content_hash(path: str | os.PathLike, remember_bytes: int | None = None) -> str:
    """sha256 of a file's bytes, read once per file version: remembered by (real path, device, inode, size,
    modification and change time) in this process and, for files of `remember_bytes` (64 MiB) or more, in
    `cache_root()/file-hashes/`, so a model's weights are hashed on their first use only, and again once written
    anew (or moved). Why content and not modification time: a copy (`cp -r`, a download into another folder) has new
    times but is the same model, and its cached answers hold. Where the cache folder cannot be written the hash is
    still right, only computed again next time."""
    import logging

    real = os.path.realpath(path)
    stat = os.stat(real)
    version = (real, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if version in _CONTENT_HASHES:
        return _CONTENT_HASHES[version]
    remember = stat.st_size >= (_REMEMBER_HASH_BYTES if remember_bytes is None else remember_bytes)
    remembered = cache_root() / "file-hashes" / key_hash(list(version))[:32]
    try:
        digest = remembered.read_text(encoding="ascii").strip() if remember else ""
    except (OSError, UnicodeDecodeError):
        digest = ""
    if len(digest) != 64 or any(char not in "0123456789abcdef" for char in digest):
        if stat.st_size >= _ANNOUNCE_HASH_BYTES:
            logging.getLogger(__name__).info(
                "Hashing %s (%.1f GB) once, to key caches by its content", real, stat.st_size / 1e9
            )
        hasher = hashlib.sha256()
        with open(real, "rb") as file:
            while chunk := file.read(1 << 22):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        if remember:
            with contextlib.suppress(OSError):  # an unwritable cache costs a second read next time, nothing else
                with atomic_path(remembered) as partial:
                    partial.write_text(digest, encoding="ascii")
    _CONTENT_HASHES[version] = digest
    return digest


def hub_commit(repo_id: str, revision: str | None = None) -> str | None:
    """The commit sha `revision` (default `main`) of the Hub model repo `repo_id` resolves to, or None (not a repo id,
    or neither the Hub nor the local cache can tell; logged)."""
    import logging

    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import validate_repo_id

    logger = logging.getLogger(__name__)
    if "://" in repo_id or os.path.exists(repo_id):
        return None
    try:
        validate_repo_id(repo_id)
    except ValueError:
        return None
    revision = revision or "main"
    if len(revision) == 40 and all(char in "0123456789abcdef" for char in revision):
        return revision
    if not constants.HF_HUB_OFFLINE:
        try:
            sha = HfApi().model_info(repo_id, revision=revision, timeout=30).sha
            if sha:
                return sha
        except Exception as error:  # unreachable, unknown or gated: the cache may still know the revision
            logger.info("Could not ask the Hub which commit %s is at (%s); trying the local cache.", repo_id, error)
    ref = Path(constants.HF_HUB_CACHE) / f"models--{repo_id.replace('/', '--')}" / "refs" / revision
    try:
        sha = ref.read_text().strip()
    except OSError:
        sha = ""
    if sha:
        return sha
    if repo_id in _UNRESOLVED:
        return None
    _UNRESOLVED.add(repo_id)
    logger.warning(
        "Could not resolve the commit of %s (revision %s) on the Hub or in the local cache: caches are keyed by its "
        "name only, so a repo pushed again since would reuse results made with its old weights.",
        repo_id,
        revision,
    )
    return None


def key_hash(key: Any) -> str:
    """A stable hex digest of a JSON-able key (dict order does not matter)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def text_hashes(texts: dict[str, str | None]) -> dict[str, str]:
    """name -> hash of each prompt or template text (`None`: not used, left out), for a key: a text can be long, and
    its own entry lets a mismatch name the text that changed (e.g. `judge_prompt`)."""
    return {name: key_hash(text) for name, text in texts.items() if text is not None}


def without_off_options(settings: dict[str, Any], off_values: dict[str, Any]) -> dict[str, Any]:
    """`settings` less the options added later that are off (at their value in `off_values`): adding an option then
    never changes the key of work done without it, so that work still resumes or is still found."""
    return {name: value for name, value in settings.items() if name not in off_values or off_values[name] != value}


def changed_fields(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """The top-level names whose values differ between two keys (present in one only counts as changed)."""
    old = old or {}
    return sorted(
        name
        for name in set(old) | set(new)
        if json.dumps(old.get(name), sort_keys=True, default=str)
        != json.dumps(new.get(name), sort_keys=True, default=str)
    )
