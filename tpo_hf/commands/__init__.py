"""The `tpo-hf` command: one module per subcommand, each thin over the library, with TRL's script shape
(`make_parser()`, `main(...)`, `cli_main(argv)`; `python -m tpo_hf.commands.NAME` runs it too).

    tpo-hf curate | train | eval | push | space | quickstart [--config FILE.yaml] [--flag value ...]

Installed packages add subcommands as entry points of the group `tpo_hf.commands` (`tpo_hf.plugins`): a module with
`HELP` (one line) and `cli_main(argv)`. tpo-hf's synthetic world adds `tpo-hf world` that way.

A user error (a setting refused, a missing file, an output folder in use, data that yields nothing: `is_user_error`)
ends a command with one line, `tpo-hf NAME: message`, on stderr and exit status 1; any other error is a bug and keeps
its traceback. `--debug` (any command; or `TPO_HF_DEBUG=1`) shows the traceback of user errors too.
"""

from __future__ import annotations

import contextvars
import dis
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# name -> (module, one line of help); importing a module is left to the moment its command runs (`tpo-hf --help`
# must not load torch)
BUILTIN_COMMANDS = {
    "curate": ("tpo_hf.commands.curate", "Build TPO preference pairs from videos (localized + comprehensive)"),
    "train": ("tpo_hf.commands.train", "Train with TPO (DPO + SFT) through TRL"),
    "eval": ("tpo_hf.commands.eval", "Evaluate base vs. TPO: multiple-choice video QA and V-NIAH"),
    "push": ("tpo_hf.commands.push", "Push a trained adapter (or merged model) with its model card to the Hub"),
    "space": ("tpo_hf.commands.space", "Write, push or run locally a Gradio Space demo"),
    "quickstart": ("tpo_hf.commands.quickstart", "The whole TPO loop offline on the synthetic world, base -> TPO"),
}


DEBUG_FLAG = "--debug"
DEBUG_ENV = "TPO_HF_DEBUG"

# The errors a user causes and fixes, by module: shown as one line. Looked up only in modules already imported (an
# error whose module was never imported cannot have been raised), so that this list loads nothing.
USER_ERRORS = {
    "tpo_hf.commands": ("ConfigError",),
    "tpo_hf.locks": ("OutputDirLockedError", "OutputDirError"),
    "tpo_hf.hub.push": ("PushError",),
    "tpo_hf.checkpoints": ("CheckpointError", "CheckpointSaveError"),
    "tpo_hf.ref_logps_cache": ("RefLogpsCacheError",),
    "tpo_hf.curation.run": ("NoPairsError",),
    "tpo_hf.curation.storage": ("CurationWriteError",),
    "tpo_hf.curation.backends": ("BackendError",),
    "tpo_hf.dataset_checks": ("NoTrainingDataError",),
    "tpo_hf.validation": ("RowError",),
    "tpo_hf.collator": ("TooLongError",),
    "tpo_hf.processing": ("VideoPromptLayoutError", "VideoProcessingError"),
    "tpo_hf.video": ("VideoLoadError",),
    "tpo_hf.video_settings": ("VideoSettingsError",),
    "tpo_hf.eval.mcq": ("ResultsCacheError",),
    "tpo_hf.eval.results": ("EvalOutputError",),
}
# tpo-hf's own checks raise these with a message naming the thing at fault; the same classes raised anywhere else
# (a ValueError deep inside torch) are bugs
CHECK_ERRORS = (ValueError, KeyError, FileNotFoundError)
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_debug = contextvars.ContextVar("tpo_hf_debug", default=False)


class ConfigError(ValueError):
    """A setting the command's parser or the config's validation refused (a bad value, a missing or unreadable
    `--config` file)."""


def debug_requested() -> bool:
    """Whether user errors show their traceback: `--debug` given to the command, or `TPO_HF_DEBUG=1`."""
    return _debug.get() or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def _raised_by_tpo_hf(error: BaseException) -> bool:
    """Whether a `raise` statement in tpo-hf's own code raised `error` (not a call that failed inside it)."""
    traceback = error.__traceback__
    if traceback is None:
        return False
    while traceback.tb_next is not None:
        traceback = traceback.tb_next
    code = traceback.tb_frame.f_code
    if not Path(code.co_filename).resolve().is_relative_to(_PACKAGE_DIR):
        return False
    return any(
        instruction.offset == traceback.tb_lasti and instruction.opname == "RAISE_VARARGS"
        for instruction in dis.get_instructions(code)
    )


def is_user_error(error: BaseException) -> bool:
    """The one rule for what `tpo-hf` shows as one line instead of a traceback: the error classes of `USER_ERRORS`,
    a missing file, and a `ValueError` / `KeyError` / `FileNotFoundError` raised by tpo-hf's own checks. Anything
    else is a bug."""
    for module_name, names in USER_ERRORS.items():
        module = sys.modules.get(module_name)
        classes = tuple(getattr(module, name) for name in names if hasattr(module, name))
        if classes and isinstance(error, classes):
            return True
    if isinstance(error, FileNotFoundError):
        return True
    return isinstance(error, CHECK_ERRORS) and _raised_by_tpo_hf(error)


def _message(error: BaseException) -> str:
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]  # str(KeyError) quotes its message
    return str(error) or type(error).__name__


def run_command(name: str, function: Callable[..., Any], *args: Any, debug: bool = False) -> Any:
    """Runs a command's `main` (or `cli_main`): a user error (`is_user_error`: a refused setting, a missing file, a
    folder in use, a failed Hub push) ends it with one paragraph, `tpo-hf NAME: message` on stderr and exit status 1,
    instead of a traceback, also under `accelerate launch -m tpo_hf.commands.NAME`. With `debug` (or
    `TPO_HF_DEBUG=1`), and for every other error, the traceback is kept."""
    token = _debug.set(True) if debug else None
    try:
        return function(*args)
    except Exception as error:
        if debug_requested() or not is_user_error(error):
            raise
        raise SystemExit(f"tpo-hf {name}: {_message(error)}") from None
    finally:
        if token is not None:
            _debug.reset(token)


def take_debug_flag(argv: Sequence[str] | None) -> tuple[list[str], bool]:
    """`argv` (default `sys.argv[1:]`) without `--debug`, and whether it was there. Only a bare `--debug` is taken:
    one followed by a value is `TrainingArguments.debug` (`--debug underflow_overflow`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    kept = [
        arg
        for index, arg in enumerate(argv)
        if not (arg == DEBUG_FLAG and (index + 1 == len(argv) or argv[index + 1].startswith("-")))
    ]
    return kept, len(kept) != len(argv)


def run_cli(name: str, make_parser: Callable[[], Any], main: Callable[..., Any], argv: Sequence[str] | None) -> Any:
    """What every command's `cli_main` does: takes `--debug` out of `argv`, parses the rest with the command's
    `TrlParser` (a value it or the config's validation refuses, or a missing `--config` file, is a `ConfigError`)
    and runs `main(*parsed)`, all through `run_command`."""
    argv, debug = take_debug_flag(argv)

    def parse_and_run() -> Any:
        import yaml

        try:
            parsed = make_parser().parse_args_and_config(args=argv)
        except (ValueError, FileNotFoundError, yaml.YAMLError) as error:
            raise ConfigError(_message(error)) from error
        return main(*parsed)

    return run_command(name, parse_and_run, debug=debug)


def _plugin_commands() -> dict[str, Any]:
    from ..plugins import COMMANDS_GROUP, plugin_entry_points

    return {name: point for name, point in plugin_entry_points(COMMANDS_GROUP).items() if name not in BUILTIN_COMMANDS}


def _usage() -> str:
    lines = ["usage: tpo-hf <command> [--config FILE.yaml] [options]", "", "commands:"]
    lines += [f"  {name:<11} {help_text}" for name, (_, help_text) in BUILTIN_COMMANDS.items()]
    for name, point in _plugin_commands().items():
        lines.append(f"  {name:<11} {getattr(point.load(), 'HELP', '')} (plugin)")
    lines += ["", "Run `tpo-hf <command> --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return
    command, rest = argv[0], argv[1:]
    # kept for the built-in commands, whose `run_cli` takes it out again; a plugin's parser never sees it
    rest_without_flag, debug = take_debug_flag(rest)
    if command in BUILTIN_COMMANDS:
        module = importlib.import_module(BUILTIN_COMMANDS[command][0])
    elif command in (plugins := _plugin_commands()):
        module = plugins[command].load()
        rest = rest_without_flag
    else:
        print(f"tpo-hf: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    run_command(command, module.cli_main, rest, debug=debug)
