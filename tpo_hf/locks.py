"""One writer per output folder: the lock every job (`tpo-hf curate`, `train`, `eval`) takes on its `output_dir`.

Two runs writing the same folder interleave shards, checkpoints or answer caches into a result neither run made. So
a job holds `<output_dir>/.tpo-hf.lock` while it runs, and a second one refuses at once with `OutputDirLockedError`,
naming the holder (pid, host, command, since when).

The lock is an exclusive `flock` on that file, held for the life of the job, and the file holds the holder as JSON.
The kernel drops a `flock` when its process dies, so a run that was killed (SIGKILL, out of memory, a lost node)
leaves the file but no lock: the next run takes it over, with a warning naming the run that left it (a curation
stopped with Ctrl-C leaves its file so too, `mark_stopped`: its folder is as unfinished as a killed one's). Where
`flock` is not available (a file system without it, or one that accepts it and locks nothing), the pid decides on the
same host: a holder whose process no longer exists (or is a zombie, or is another process under a reused pid) is
stale; one on another host is taken as alive. Where `flock` works, a free flock is decisive whatever the record says:
a folder copied from a live run's (`cp -r`) carries its record, but no run holds the copy.

Under `accelerate launch` / torchrun only the main process (global rank 0 of `WORLD_SIZE` > 1) takes the lock: the
ranks of one launch are one writer, and a refused main process ends the whole launch. A `RANK` left in the shell
without such a `WORLD_SIZE` is no launch: that single process takes the lock (`is_main_process`). The lock is
re-entrant within a process (the CLI holds it around a whole job, `TPOTrainer.train` again inside it). A lock file
another user left, which this user cannot write, is named with its owner; a run whose folder is removed under it
stops at its next checked write (`check_lock_held`) rather than write into the folder a new run made there.

Readers mark a folder too: a training run marks the local dataset folder it trains from (`dataset_reader_mark`),
and an eval the adapter folder it evaluates (`reader_mark`); a curation or a training run into that folder, which
would rewrite its data files, videos or weights under the reader, refuses at once naming it (`refuse_if_read`). Each
reader holds an exclusive `flock` on its own record file in `<folder>/.tpo-hf.readers/`, so a killed reader's mark is
free and cleared by the next check, as above.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import logging
import os
import shlex
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from stat import S_IMODE, S_ISVTX
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: the pid check alone decides there
    fcntl = None

logger = logging.getLogger(__name__)

LOCK_NAME = ".tpo-hf.lock"
READERS_NAME = ".tpo-hf.readers"  # one record file per run reading the folder (`reader_mark`)
# what a reader reads -> what a writer into its folder would rewrite under it
READ_CONTENTS = {"dataset": "its data files and videos", "adapter": "its weights"}

# lock path -> (open file descriptor holding the flock, how many nested `output_dir_lock` hold it in this process,
# whether a hold asked to leave the record when stopped with Ctrl-C: `mark_stopped`)
_HELD: dict[str, list[int]] = {}


class OutputDirLockedError(RuntimeError):
    """Another run holds the output folder; the message names it (pid, host, command, since when)."""


class OutputDirError(RuntimeError):
    """The output folder (or another folder a job writes, such as curation's `work_dir`) cannot be used at all: it is
    a file, or it (or its file system) is not writable."""


_STRAY_RANK_WARNED: list[str] = []  # the stray RANK value warned about, once per process


def _env_int(name: str) -> int | None:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return None


def is_main_process() -> bool:
    """Whether this process writes for its launch: global rank 0 of a launch of several processes -- torch.distributed
    once initialized, else the launcher's `WORLD_SIZE` > 1 with `RANK` (or `LOCAL_RANK`) as `accelerate launch` and
    torchrun set them -- and a single process always. A `RANK` without a `WORLD_SIZE` above 1 (left exported by a job
    script, or set per pod by a cluster wrapper) is no launch: trusting it, two single runs on one folder would both
    take no lock. It is warned about once."""
    torch = sys.modules.get("torch")  # not imported here: a process that has not imported torch runs no process group
    distributed = getattr(torch, "distributed", None)
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        return distributed.get_rank() == 0
    world_size = _env_int("WORLD_SIZE")
    rank = _env_int("RANK")
    if world_size is not None and world_size > 1:
        return (rank if rank is not None else _env_int("LOCAL_RANK") or 0) == 0
    if rank not in (None, 0) and not _STRAY_RANK_WARNED:
        _STRAY_RANK_WARNED.append(os.environ["RANK"])
        logger.warning(
            "RANK=%s is set but WORLD_SIZE is %s: not a launch of several processes, so this single process takes "
            "the output folder's lock as any run does (unset RANK if it was left from another job).",
            os.environ["RANK"],
            os.environ.get("WORLD_SIZE", "not set"),
        )
    return True


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux `/proc`), which tells a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # fields after the command name, which is in parentheses and may hold spaces: state is field 3, start time 22
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]  # a zombie has exited: its start time is no proof of life


def holder_alive(holder: dict[str, Any], other_hosts: bool = True) -> bool:
    """Whether the process a lock file names still runs. Only a holder on this host can be checked; one on another
    host counts as `other_hosts` says."""
    if holder.get("host") != socket.gethostname():
        return other_hosts
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    if os.name == "nt":  # os.kill would end the process there: it cannot be checked, so it counts as alive
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    started = _start_time(pid)
    if started is None and Path("/proc/self/stat").exists():
        return False  # a zombie (exited, not yet reaped)
    return holder.get("started") is None or started is None or holder["started"] == started


def describe_holder(holder: dict[str, Any] | None) -> str:
    """`pid 123 on host h (`tpo-hf train --config x.yaml`, train) since 2025-01-01T10:00:00+00:00`."""
    if not holder:
        return "a run that left no details"
    stopped = f", stopped with Ctrl-C at {holder['stopped']}" if holder.get("stopped") else ""
    return (
        f"pid {holder.get('pid')} on host {holder.get('host')} (`{holder.get('command')}`, {holder.get('what')}) "
        f"since {holder.get('since')}{stopped}"
    )


def _command() -> str:
    """How this process was started, on one line: `tpo-hf train --config x.yaml`, `python -m tpo_hf.commands.eval ...`."""
    argv = list(getattr(sys, "orig_argv", None) or sys.argv)  # orig_argv (3.10+) keeps `python -m module`
    if sys.argv and Path(sys.argv[0]).name == "tpo-hf":
        argv = ["tpo-hf", *sys.argv[1:]]
    elif argv:
        argv[0] = Path(argv[0]).name
    text = shlex.join(" ".join(arg.split()) for arg in argv)
    return text if len(text) <= 300 else text[:297] + "..."


def _read(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        holder = json.loads(data)
    except ValueError:
        return None  # empty (just created) or torn by a kill mid-write
    return holder if isinstance(holder, dict) else None


def _flock(fd: int) -> bool | None:
    """Takes the exclusive `flock` without waiting: True taken, False held by another, None unsupported here."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        return None  # ENOLCK, EOPNOTSUPP, ...: a file system without flock
    return True


def _flock_takes_effect(path: Path) -> bool:
    """Whether the flock this process just took on `path` keeps out another open of it (some network or FUSE file
    systems accept `flock` and lock nothing, where a free flock would prove nothing)."""
    try:
        other = os.open(path, os.O_RDONLY)
    except OSError:
        return True
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        return error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
    finally:
        os.close(other)  # closing drops a lock taken through it
    return False


def _refusal(
    path: Path, what: str, holder: dict[str, Any] | None, setting: str = "output_dir"
) -> OutputDirLockedError:
    folder = "output folder" if setting == "output_dir" else setting
    return OutputDirLockedError(
        f"{folder} {path.parent} is in use by another run: {describe_holder(holder)}. Two runs writing one "
        f"folder would mix their results. Wait for it to end or set another {setting}; if that run is gone (e.g. "
        f"on another host), delete {path} and start {what} again."
    )


def _this_run(what: str) -> dict[str, Any]:
    """The record a lock file holds of this process: who it is (pid, host, start time), its command and since when."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(),
        "what": what,
        "since": datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds"),
        "started": _start_time(os.getpid()),
    }


def _acquire(path: Path, what: str, setting: str = "output_dir") -> int:
    me = _this_run(what)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            locked = _flock(fd)
            holder = _read(fd)
            if locked is False:
                raise _refusal(path, what, holder, setting)
            try:
                same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same_file = False
            if not same_file:  # the holder removed the file between our open and our flock: try the new one
                os.close(fd)
                continue
            if locked and not _flock_takes_effect(path):
                locked = None  # a file system that accepts flock and locks nothing: the pid decides, as without it
            # a free flock is decisive: the record was left by a run that ended (killed?), or copied with the folder
            # (`cp -r` of a live run's output), whatever process now has its pid. Without flock, the pid decides
            if holder is not None and locked is None and holder_alive(holder):
                raise _refusal(path, what, holder, setting)
            if holder is not None:
                logger.warning(
                    "Taking over the lock on %s left by %s: no run holds it (that run was killed, or the folder was "
                    "copied from a running one's); its results so far are resumed or checked as usual.",
                    path.parent,
                    describe_holder(holder),
                )
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(me).encode())
            os.fsync(fd)
            return fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise


def _lock_file_of_another_user(path: Path, what: str) -> OutputDirError | OutputDirLockedError | None:
    """Why this process cannot take the lock file `path` that is there when it can write the folder: the file belongs
    to another user (a run of theirs left it, mode 0644). A run of theirs that holds it is refused as any live run
    is; otherwise the file, its owner and what to do are named. None where the lock file is not the cause."""
    folder = path.parent
    try:
        status = path.lstat()
    except OSError:
        return None
    if os.access(path, os.W_OK) or not os.access(folder, os.W_OK | os.X_OK):
        return None  # the lock file is writable (not the cause), or the folder is not (the folder is named)
    try:
        import pwd

        owner = pwd.getpwuid(status.st_uid).pw_name
    except (ImportError, KeyError):
        owner = f"uid {status.st_uid}"
    holder, held = None, None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        fd = None
    if fd is not None:
        try:
            holder = _read(fd)
            if fcntl is not None:
                try:  # a shared flock, let go at once: taken only while no run holds the exclusive one
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    held = False if _flock_takes_effect(path) else None
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError as error:
                    held = True if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else None
        finally:
            os.close(fd)
    if held is None and holder is not None and holder_alive(holder):
        held = True
    if held:
        return _refusal(path, what, holder)
    folder_status = folder.stat()
    sticky = folder_status.st_mode & S_ISVTX and folder_status.st_uid != os.geteuid()
    remove = (
        f"ask {owner} (or an administrator) to remove it: the folder's sticky bit lets only them"
        if sticky
        else f"remove it (rm {path}; the folder lets you)"
    )
    state = (
        "no run holds it now (that run ended or was killed)"
        if held is False
        else f"whether that run is still live cannot be told here: check with {owner} first"
    )
    return OutputDirError(
        f"The lock file {path} of output folder {folder} belongs to user {owner} (mode "
        f"{S_IMODE(status.st_mode):04o}), so this user cannot take it over for {what}. It was left by "
        f"{describe_holder(holder)}; {state}. To use this folder, {remove}, then start {what} again; or set another "
        "output_dir."
    )


def _not_writable(folder: Path, what: str, error: OSError, setting: str = "output_dir") -> OutputDirError:
    return OutputDirError(
        f"{setting} {folder} is not writable: {error.strerror or error}. {what.capitalize()} writes its results "
        f"there; set {setting} to a folder on a writable file system."
    )


def _make_folder(folder: Path, what: str, setting: str = "output_dir") -> None:
    """Creates `folder` (and the folders above it), or raises `OutputDirError` naming `setting`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise OutputDirError(
            f"{setting} {folder} is a file, not a folder{'' if folder.exists() else ' (a folder above it is a file)'}"
            f"; set {setting} to a folder (new or existing) for {what} to write into."
        ) from error
    except OSError as error:
        raise _not_writable(folder, what, error, setting) from error


def check_writable_folder(folder: str | os.PathLike, what: str, setting: str) -> None:
    """Creates `folder` and makes (and removes) a file in it, so that a folder a job writes besides its `output_dir`
    (curation's `work_dir`) is refused as `output_dir` is, before any work: one line naming `setting`.

    Raises:
        OutputDirError: the folder is a file, or is not writable (read-only file system, no permission).
    """
    import tempfile

    folder = Path(folder)
    _make_folder(folder, what, setting)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise _not_writable(folder, what, error, setting) from error


def _lock_record(path: str | os.PathLike | None) -> tuple[Path, dict[str, Any] | None, bool] | None:
    """The lock file of the local folder `path`, its record and whether a live run holds it (as `_acquire` decides:
    a held flock, else a live pid on this host); None where there is nothing to check: no local folder, no lock file,
    one this process holds, or a non-main process of a launch (its main process checks)."""
    if path is None or not os.path.isdir(path) or not is_main_process():  # the main process checks for its launch
        return None
    lock = Path(path) / LOCK_NAME
    if os.path.realpath(lock) in _HELD or lock.is_dir():  # a folder by that name is no lock any run could hold
        return None
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:  # no lock file: no run holds the folder
        return None
    try:
        holder = _read(fd)
        held: bool | None = None
        if fcntl is not None:
            try:  # a shared flock, let go at once: taken only while no run holds the exclusive one
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                held = False if _flock_takes_effect(lock) else None  # else a flock that locks nothing: pid decides
                fcntl.flock(fd, fcntl.LOCK_UN)
            except OSError as error:
                held = True if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else None
        # a free flock is decisive: the record was left by a killed run, or copied with the folder from a live one's
        alive = bool(held or (held is None and holder is not None and holder_alive(holder)))
    finally:
        os.close(fd)
    return lock, holder, alive


def lock_left_by_killed_run(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """The record of the lock file in the local folder `path` when no run holds it: the run that wrote it was killed
    (SIGKILL, out of memory, a lost node) or stopped with Ctrl-C (`output_dir_lock`'s `mark_stopped`, the record's
    `stopped`) while it held the folder, or the folder was copied from a running one's.
    Its `what` names the job ("curate", "train", "eval"). None where a live run holds the lock, or there is none."""
    found = _lock_record(path)
    if found is None or found[2]:
        return None
    return found[1]


def refuse_if_locked(path: str | os.PathLike | None, what: str) -> None:
    """Refuses to read a folder (an adapter to push or evaluate, a model to evaluate, a dataset to load) that a live
    run of another process is writing into (it holds the folder's `.tpo-hf.lock`, e.g. training into it): what is
    there may be half old, half new. Takes no lock. Nothing to check for a path that is not a local folder, or one
    this process holds; under `accelerate launch` the main process checks (the other ranks of a launch would see
    their main process). A training run killed there before its final save (its lock record left, `checkpoint-N`
    folders newer than the weights saved at the top) is refused too: those weights are an earlier training's.

    Raises:
        OutputDirLockedError: naming the run that holds the folder, or the killed training's checkpoints.
    """
    found = _lock_record(path)
    if found is None:
        return
    lock, holder, alive = found
    newer = _checkpoints_after_save(path) if not alive and (holder or {}).get("what") == "train" else []
    if newer:
        # a training run into a folder holding an earlier run's save, killed before its own final save: the weights
        # there are the earlier run's, and the card its checkpoint saves rewrote is its own
        raise OutputDirLockedError(
            f"{path} holds the lock record of a training run that was killed before its final save "
            f"({describe_holder(holder)}): its checkpoint(s) {', '.join(newer)} are newer than the weights saved in "
            f"{path}, which are an earlier training's. {what.capitalize()} would read those. Resume the run (`tpo-hf "
            f"train` with the same output_dir and --resume_from_checkpoint true), or give its checkpoint folder "
            f"({Path(path) / newer[-1]}); to {what} the earlier weights anyway, delete {lock} (the README.md and "
            "tpo_card.json there describe the killed run: its checkpoint saves rewrote them)."
        )
    if not alive and holder is not None:
        logger.warning(
            "%s holds a lock record of %s, but no run holds its lock (that run was killed, or the folder was copied "
            "from a running one's): reading it.",
            lock,
            describe_holder(holder),
        )
    if alive:
        raise OutputDirLockedError(
            f"{path} is being written by another run: {describe_holder(holder)}. {what.capitalize()} would read a mix "
            f"of old and new files; wait for that run to end. If it is gone (e.g. on another host), delete {lock}."
        )


# what a training run's final save writes at the top of its output_dir: an adapter's or a model's weights
_SAVED_WEIGHTS = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
)


def _checkpoints_after_save(folder: str | os.PathLike) -> list[str]:
    """The `checkpoint-N` folders in `folder` written after the weights saved at its top (all of them when none are
    there), in step order."""
    import re

    saved = [os.path.join(folder, name) for name in _SAVED_WEIGHTS]
    saved_at = max((os.path.getmtime(path) for path in saved if os.path.isfile(path)), default=float("-inf"))
    found = []
    for entry in os.scandir(folder):
        match = re.fullmatch(r"checkpoint-(\d+)", entry.name)
        if match and entry.is_dir() and entry.stat().st_mtime > saved_at:
            found.append((int(match[1]), entry.name))
    return [name for _, name in sorted(found)]


@contextlib.contextmanager
def output_dir_lock(
    output_dir: str | os.PathLike, what: str, setting: str = "output_dir", mark_stopped: bool = False
) -> Iterator[Path | None]:
    """Holds `<output_dir>/.tpo-hf.lock` for the body (creating the folder); yields the lock file's path, or None
    on the non-main processes of a launch, which take no lock.

    Args:
        output_dir: the job's output folder (or another folder it writes, such as curation's `work_dir`).
        what: the job, for the holder's record and messages ("curate", "train", "eval").
        setting: the setting that names the folder, for messages ("output_dir", "work_dir").
        mark_stopped: a Ctrl-C (`KeyboardInterrupt`) in the body leaves the lock record in the folder, marked
            `stopped`, as a killed run leaves it (the lock itself is let go): a reader of the folder then tells an
            unfinished job (`lock_left_by_killed_run`), and the next run takes it over. Held re-entrantly, the
            outermost hold leaves it where any hold asked.

    Raises:
        OutputDirLockedError: another live run holds the folder.
        OutputDirError: the folder is a file, or is not writable (read-only file system, no permission).
    """
    if not is_main_process():
        yield None
        return
    folder = Path(output_dir)
    _make_folder(folder, what, setting)
    path = folder / LOCK_NAME
    key = os.path.realpath(path)
    if key in _HELD:  # this process holds it already (the CLI around the job, the job inside): re-entrant
        _HELD[key][1] += 1
        try:
            yield path
        except KeyboardInterrupt:
            _HELD[key][2] = _HELD[key][2] or mark_stopped
            raise
        finally:
            _HELD[key][1] -= 1
        return
    try:
        fd = _acquire(path, what, setting)
    except OutputDirLockedError:
        raise
    except IsADirectoryError as error:  # something made a folder where the lock file goes
        raise OutputDirError(
            f"{path} (tpo-hf's lock file for {folder}) is a directory, not a file. Nothing else uses that name: "
            f"remove it (rm -r {path}) and rerun; {what} takes the lock there to keep two runs out of one folder."
        ) from error
    except OSError as error:  # read-only file system, no permission, disk full
        raise _lock_file_of_another_user(path, what) or _not_writable(folder, what, error, setting) from error
    _HELD[key] = [fd, 1, False]
    try:
        yield path
    except KeyboardInterrupt:
        _HELD[key][2] = _HELD[key][2] or mark_stopped
        raise
    finally:
        stopped = _HELD.pop(key)[2]
        if stopped:  # left as a kill leaves it, so that the folder reads as the unfinished job's
            _record_stopped(fd)
        # the file goes while the flock is still held, so that no other run can take a lock on a removed file; not
        # another run's, when this one's was removed under it (`check_lock_held`)
        elif _is_the_file(fd, path):
            with contextlib.suppress(OSError):
                os.unlink(path)
        os.close(fd)


def _record_stopped(fd: int) -> None:
    """Adds to the lock record open as `fd` when its run was stopped with Ctrl-C (`describe_holder` names it)."""
    now = datetime.datetime.now(datetime.timezone.utc).astimezone()
    data = json.dumps({**(_read(fd) or {}), "stopped": now.isoformat(timespec="seconds")}).encode()
    with contextlib.suppress(OSError):  # not cut first: a full disk must not leave an empty record (read as no run)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.ftruncate(fd, len(data))
        os.fsync(fd)


def _is_the_file(fd: int, path: Path) -> bool:
    """Whether `path` is still the file open as `fd` (not removed, nor replaced by another of the same name)."""
    try:
        held, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


def check_lock_held(output_dir: str | os.PathLike) -> None:
    """Checks, before a write into `output_dir`, that the lock this process took on it is still its lock file: a
    folder removed under a live run (`rm -rf` of a run believed dead) takes the lock file with it, and a run started
    on the same path then locks a new folder while this one would go on writing into it. Nothing to check where this
    process holds no lock on `output_dir` (the other ranks of a launch).

    Raises:
        OutputDirLockedError: the lock file was removed or replaced, naming it.
    """
    path = Path(output_dir) / LOCK_NAME
    held = _HELD.get(os.path.realpath(path))
    if held is None or _is_the_file(held[0], path):
        return
    raise OutputDirLockedError(
        f"The lock file {path} that this run holds on its output folder was removed or replaced while the run was "
        f"writing {output_dir} (the folder deleted under it?): stopping, since another run may now be writing there. "
        "Start this one again once no other run writes there."
    )


def _mark_as_read(dataset: Path, what: str, reads: str = "dataset") -> tuple[int, Path] | None:
    """Writes this run's record (with what it `reads` there) into `<dataset>/.tpo-hf.readers/`, holding its
    `flock`: (file descriptor, record file), or None where the folder cannot be written."""
    readers = dataset / READERS_NAME
    me = {**_this_run(what), "reads": reads}
    name = f"{me['host']}-{me['pid']}-{os.urandom(4).hex()}.json"  # never another run's name, even a reused pid's
    staging = readers / f".{name}.tmp"  # renamed once locked, so that `refuse_if_read` never sees it unlocked
    for _ in range(3):  # again when the last reader before this one removed the folder between mkdir and open
        try:
            readers.mkdir(exist_ok=True)
            fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            break
        except FileNotFoundError:
            continue
        except OSError as error:  # read-only, no permission: nothing can curate into it either
            logger.debug("Not marking %s as read: %s.", dataset, error)
            return None
    else:
        return None
    try:
        _flock(fd)
        os.write(fd, json.dumps(me).encode())
        os.replace(staging, readers / name)
    except OSError as error:  # a full disk: the run goes on unmarked
        logger.debug("Not marking %s as read: %s.", dataset, error)
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(staging)
        return None
    return fd, readers / name


def dataset_reader_mark(dataset: str | os.PathLike | None, what: str) -> contextlib.AbstractContextManager:
    """`reader_mark` on the local dataset folder a training run trains from: a curation into it refuses instead of
    rewriting its data files and videos under the run."""
    return reader_mark(dataset, what, "dataset")


@contextlib.contextmanager
def reader_mark(folder: str | os.PathLike | None, what: str, reads: str) -> Iterator[Path | None]:
    """Marks the local `folder` as read by this run for the body (`reads`: "dataset" or "adapter", a key of
    `READ_CONTENTS`), so that a job writing into it refuses (`refuse_if_read`) instead of rewriting it under the
    run; yields the mark's file, or None where there is none to take: a Hub id or a file, a non-main process of a
    launch (the main process marks for it), or a folder this process cannot write (a read-only mount: no job can
    write there either).

    The mark is an exclusive `flock` on this run's own record file in `<folder>/.tpo-hf.readers/`, held for the
    body and dropped by the kernel if the process dies.
    """
    marked = None
    if folder is not None and os.path.isdir(folder) and is_main_process():
        marked = _mark_as_read(Path(folder), what, reads)
    if marked is None:
        yield None
        return
    fd, mark = marked
    try:
        yield mark
    finally:
        with contextlib.suppress(OSError):
            os.unlink(mark)
        os.close(fd)
        with contextlib.suppress(OSError):  # the folder goes with the last reader
            mark.parent.rmdir()


def refuse_if_read(output_dir: str | os.PathLike, what: str) -> None:
    """Refuses to write into a folder that a live run reads (`reader_mark`): a training run's dataset, whose data
    files and videos rewritten under it would train it on a mix of two datasets, or an eval's adapter, whose weights
    rewritten under it would give results that name the folder but describe other weights. Marks of readers that
    are gone (killed: their `flock` is free) are removed. Call it holding the folder's `output_dir_lock`, so a
    reader that starts later sees the lock and refuses in turn.

    Raises:
        OutputDirLockedError: naming the reading run (pid, host, command, since when).
    """
    readers = Path(output_dir) / READERS_NAME
    if not readers.is_dir() or not is_main_process():
        return
    live: list[tuple[Path, dict[str, Any] | None]] = []
    for mark in sorted(readers.glob("*.json")):
        try:
            fd = os.open(mark, os.O_RDONLY)
        except OSError:  # its reader just ended
            continue
        try:
            holder = _read(fd)
            locked = _flock(fd)
            if locked and not _flock_takes_effect(mark):
                locked = None  # a file system that accepts flock and locks nothing: the pid decides
            # a free flock is decisive (the reader was killed); without flock, the pid decides
            alive = locked is False or (locked is None and holder is not None and holder_alive(holder))
        finally:
            os.close(fd)
        if alive:
            live.append((mark, holder))
            continue
        logger.warning(
            "Removing the %s reader mark %s left by %s: no run holds it.",
            (holder or {}).get("reads", "dataset"),
            mark,
            describe_holder(holder),
        )
        with contextlib.suppress(OSError):
            mark.unlink()
    if not live:
        with contextlib.suppress(OSError):  # empty once the marks of readers that are gone are removed
            readers.rmdir()
        return
    mark, holder = live[0]
    others = f" (and {len(live) - 1} other run(s))" if len(live) > 1 else ""
    reads = (holder or {}).get("reads")
    reads = reads if reads in READ_CONTENTS else "dataset"  # marks written before the record said what they read
    article = "an" if reads[0] in "aeiou" else "a"
    raise OutputDirLockedError(
        f"output folder {output_dir} holds {article} {reads} that another run is reading: {describe_holder(holder)}"
        f"{others}. {what.capitalize()} would rewrite {READ_CONTENTS[reads]} under that run; wait for it to "
        f"end or set another output_dir. If that run is gone (e.g. on another host), delete {mark}."
    )
