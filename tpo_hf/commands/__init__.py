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

import contextlib
import contextvars
import dataclasses
import dis
import functools
import importlib
import logging
import os
import sys
import types
import typing
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
CONFIG_FLAG = "--config"

logger = logging.getLogger(__name__)

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
    `TPO_HF_DEBUG=1`), and for every other error, the traceback is kept. Ctrl-C ends it with one line too,
    `tpo-hf NAME: stopped (Ctrl-C).` and what the job kept (a curation says so in its `KeyboardInterrupt`), and
    exit status 130 (as a shell reports a command stopped by SIGINT)."""
    token = _debug.set(True) if debug else None
    try:
        return function(*args)
    except KeyboardInterrupt as error:
        if debug_requested():
            raise
        detail = str(error)  # empty for Python's own; a job's says what it kept and how to resume
        print(f"tpo-hf {name}: stopped (Ctrl-C).{f' {detail}' if detail else ''}", file=sys.stderr)
        raise SystemExit(130) from None
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


def split_config_flag(argv: Sequence[str]) -> list[str]:
    """`argv` with `--config=FILE` written as `--config FILE`: TRL's parser looks for the bare flag only, and would
    otherwise leave the recipe unread."""
    split: list[str] = []
    for arg in argv:
        if arg.startswith(CONFIG_FLAG + "="):
            split += [CONFIG_FLAG, arg[len(CONFIG_FLAG) + 1 :]]
        else:
            split.append(arg)
    return split


class _RecipeYamlError(Exception):
    """A recipe that PyYAML would read without a word, but not as written: a key set twice (the last one kept), a
    number YAML 1.1 reads in base 8 or 60 (`seed: 0123` is 83)."""


def _yaml11_number_problem(key: Any, node: Any, value: Any) -> str | None:
    """Why the plain scalar `node` (the value of `key`, read as `value`) is not the number written, or None: YAML 1.1
    (PyYAML) reads a leading zero as octal and colons as base 60 (`1:30` is 90); YAML 1.2 reads neither."""
    import re

    text = node.value
    if node.style is not None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return None  # quoted text, or not a number
    where = f"`{key}: {text}` (line {node.start_mark.line + 1})"
    if re.fullmatch(r"[-+]?0[0-7_]+", text) and value != int(text.replace("_", "")):
        return (
            f"{where} reads as octal {value} in YAML 1.1: write {int(text.replace('_', ''))} "
            f'(or "{text}" quoted, for text)'
        )
    if re.fullmatch(r"[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?", text):
        return f'{where} reads as {value} (base 60) in YAML 1.1: write the number meant (or "{text}" quoted, for text)'
    return None


@functools.cache
def _recipe_loader() -> type:
    """PyYAML's safe loader, refusing a key written twice in one mapping: `yaml.safe_load` keeps the last one without
    a word, so a setting left in twice after an edit trained with whichever came last; and a value (or list item)
    YAML 1.1 reads in base 8 or 60 (`seed: 0123` ran with seed 83, `_yaml11_number_problem`)."""
    import yaml

    class RecipeLoader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue  # `<<: *base` then a key of its own overrides the base: YAML's meaning, not a slip
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:  # an unhashable key: the constructor names it
                        continue
                    if first is not key_node:
                        raise _RecipeYamlError(
                            f"`{key}` is set twice, on line {first.start_mark.line + 1} and line "
                            f"{key_node.start_mark.line + 1} (YAML would keep only the last one): remove one of them."
                        )
                for key_node, value_node in node.value:
                    scalars = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                    for scalar in scalars:
                        if isinstance(scalar, yaml.ScalarNode) and (
                            problem := _yaml11_number_problem(
                                key_node.value, scalar, self.construct_object(scalar, deep=True)
                            )
                        ):
                            raise _RecipeYamlError(problem + ".")
            return super().construct_mapping(node, deep=deep)

    return RecipeLoader


def read_recipe(argv: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    """(path, mapping) of the `--config` YAML file in `argv`; None without one, or where it cannot be read (TRL's
    parser then names the problem).

    Raises:
        ConfigError: the recipe sets a key twice, naming the key and both lines; writes a number YAML 1.1 reads in
            base 8 or 60 (`seed: 0123`), naming it; or gives an `env:` variable a list or mapping, naming it.
    """
    argv = list(argv)
    if CONFIG_FLAG not in argv or argv.index(CONFIG_FLAG) + 1 >= len(argv):
        return None
    path = argv[argv.index(CONFIG_FLAG) + 1]
    try:
        import yaml

        with open(path) as file:
            recipe = yaml.load(file, Loader=_recipe_loader())  # a SafeLoader
    except _RecipeYamlError as error:
        raise ConfigError(f"{path}: {error}") from None
    except Exception:  # a missing or malformed file: named by the parser with its own message
        return None
    if not isinstance(recipe, dict):
        return None
    env = recipe.get("env")
    # TRL's parser and `apply_recipe_env` set `str(value)`: `HF_DATASETS_CACHE: [a, b]` became a cache folder named
    # "['a', 'b']" in the working directory
    nested = [
        f"`{key}: {value}` is a {'list' if isinstance(value, list) else 'mapping'}"
        for key, value in (env.items() if isinstance(env, dict) else ())
        if isinstance(value, (list, dict))
    ]
    if nested:
        raise ConfigError(
            f"{path}: env: {', '.join(nested)}; an environment variable holds one value (text or a number): write it "
            "as one."
        )
    return path, recipe


def _expand_home(value: Any) -> Any:
    return os.path.expanduser(value) if isinstance(value, str) and value.startswith("~") else value


def expand_home_paths(argv: Sequence[str], recipe: tuple[str, dict[str, Any]] | None, parser: Any) -> list[str]:
    """`argv` with `~` expanded in path values, as a shell does: a quoted flag value, and a recipe's values (YAML keeps
    `~/data` literal, so eval and curate made a folder named `~` in the current one and train looked `~/data` up on
    the Hub). A recipe value starting with `~` is passed as its flag, expanded (flags override the recipe), unless
    `argv` gives that flag itself. Hub ids and model names never start with `~`."""
    expanded = []
    for token in argv:
        flag, equals, value = token.partition("=")
        expanded.append(f"{flag}={_expand_home(value)}" if equals and flag.startswith("--") else _expand_home(token))
    if recipe is None:
        return expanded
    given = {token.partition("=")[0] for token in expanded if token.startswith("--")}
    for key, value in recipe[1].items():
        flag = f"--{key}"
        if key == "env" or flag in given or flag not in parser._option_string_actions:
            continue
        if isinstance(value, str) and value.startswith("~"):
            expanded += [flag, _expand_home(value)]
        elif isinstance(value, list) and any(isinstance(item, str) and item.startswith("~") for item in value):
            expanded += [flag, *(str(_expand_home(item)) for item in value)]
    return expanded


def apply_recipe_env(argv: Sequence[str]) -> None:
    """Sets the environment variables of the recipe's `env:` mapping (TRL's `TrlParser` sets them only while
    parsing) before the command's module is imported: `datasets`, `transformers` and `huggingface_hub` read their
    cache folders (`HF_DATASETS_CACHE`, `HF_HOME`, ...) once, when imported."""
    try:
        recipe = read_recipe(split_config_flag(argv))
    except ConfigError:
        return  # named by the command's `run_cli`, as one line, before anything runs
    env = recipe[1].get("env") if recipe else None
    if isinstance(env, dict):
        for key, value in env.items():
            if value is not None:  # see `_null_env_keys`
                os.environ[str(key)] = str(value)


def _null_env_keys(recipe: tuple[str, dict[str, Any]] | None) -> list[str]:
    """The keys of the recipe's `env:` left empty (`HF_DATASETS_CACHE:`, YAML null). Such an entry means "not set
    here", as in a Docker Compose file: the variable is left as it was (the shell's value, or the library default).
    TRL's parser would set it to the text "None", a `./None` cache folder that moves with the working directory."""
    env = recipe[1].get("env") if recipe else None
    return [str(key) for key, value in env.items() if value is None] if isinstance(env, dict) else []


@contextlib.contextmanager
def _keep_null_env(recipe: tuple[str, dict[str, Any]] | None) -> Any:
    """Leaves the recipe's empty `env:` entries (`_null_env_keys`) as they were while TRL's parser sets the rest."""
    kept = {key: os.environ.get(key) for key in _null_env_keys(recipe)}
    try:
        yield
    finally:
        for key, value in kept.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _launched_command_argv() -> list[str] | None:
    """The arguments of `python -m tpo_hf.commands.NAME ...` (`accelerate launch -m ...`, `tpo_hf.train`,
    `tpo_hf.curate`), whose module imports the heavy libraries right after this package; None for any other
    program."""
    argv = list(getattr(sys, "orig_argv", None) or [])
    if "-m" not in argv[:-1]:
        return None
    module = argv[argv.index("-m") + 1]
    ours = {"tpo_hf.commands", "tpo_hf.train", "tpo_hf.curate", *(path for path, _ in BUILTIN_COMMANDS.values())}
    return argv[argv.index("-m") + 2 :] if module in ours else None


def _parser_settings(parser: Any) -> set[str]:
    return {action.dest for action in getattr(parser, "_actions", [])}


def refuse_recipe_of_another_command(name: str, parser: Any, recipe: tuple[str, dict[str, Any]] | None) -> None:
    """Refuses a recipe written for another command (the eval recipe given to `train`), naming that command, before
    the parser reads it: it would otherwise fail on whichever default its missing settings leave (bf16 on a machine
    without a GPU), differently from one machine to the next.

    Raises:
        ConfigError: naming the recipe, the settings this command does not take and the command that does.
    """
    if recipe is None:
        return
    path, settings = recipe
    ours = _parser_settings(parser)
    foreign = [key for key in settings if key not in ours and key != "env"]
    if not foreign:
        return
    best: tuple[str, list[str]] | None = None
    for other, (module_name, _) in BUILTIN_COMMANDS.items():
        if other == name:
            continue
        try:
            make_parser = getattr(importlib.import_module(module_name), "make_parser", None)
        except ImportError:  # a command whose optional dependencies are not installed: not the one meant
            continue
        if make_parser is None:
            continue
        theirs = _parser_settings(make_parser())
        matched = [key for key in foreign if key in theirs]
        if matched and (best is None or len(matched) > len(best[1])):
            best = (other, matched)
    if best is None:
        return  # unknown keys of no command (a typo): named by the parser
    other, matched = best
    raise ConfigError(
        f"{path} looks like a recipe for `tpo-hf {other}`, not `tpo-hf {name}`: it sets {', '.join(matched)}, "
        f"which `tpo-hf {other}` takes and `tpo-hf {name}` does not. Give it to `tpo-hf {other}`, or give "
        f"`tpo-hf {name}` a recipe of its own."
    )


def _recipe_fields(parser: Any) -> dict[str, tuple[Any, Any]]:
    """name -> (type annotation, default) of each field of the parser's dataclasses; the default is
    `dataclasses.MISSING` for a field without one, and a list or mapping built by its factory is not spelled out."""
    fields: dict[str, tuple[Any, Any]] = {}
    for dtype in getattr(parser, "dataclass_types", ()):
        hints = typing.get_type_hints(dtype)
        for item in dataclasses.fields(dtype):
            default = ... if item.default_factory is not dataclasses.MISSING else item.default
            fields.setdefault(item.name, (hints.get(item.name, Any), default))
    return fields


def _without_none(hint: Any) -> tuple[Any, bool]:
    """(the annotation without `None`, whether it allowed `None`)."""
    if hint is Any or hint is None or hint is type(None):
        return hint, True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kept = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return (kept[0] if len(kept) == 1 else hint), len(kept) != len(typing.get_args(hint))
    return hint, typing.get_origin(hint) is typing.Literal and None in typing.get_args(hint)


def check_recipe_values(parser: Any, recipe: tuple[str, dict[str, Any]] | None, argv: Sequence[str]) -> None:
    """Checks the recipe's values as the parser checks a flag's: TRL's parser makes them the defaults, which argparse
    neither converts (`max_steps: 2.5` stayed a float, refused by transformers mid-run) nor checks against `choices`
    (`dtype: float31`), and `null` reached fields that need a value (`beta: null`, a TypeError at the first step).
    Values a flag in `argv` overrides are left to argparse.

    Raises:
        ConfigError: naming the recipe, each field at fault and what it takes.
    """
    if recipe is None:
        return
    path, settings = recipe
    actions = parser._option_string_actions
    given = {actions[flag].dest for flag in (token.partition("=")[0] for token in argv) if flag in actions}
    fields = _recipe_fields(parser)
    problems = []
    for key, value in settings.items():
        action = actions.get(f"--{key}")
        if key == "env" or key in given or action is None or key not in fields:
            continue  # unknown keys are named by the parser
        hint, default = fields[key]
        base, allows_none = _without_none(hint)
        if value is None:
            if not allows_none and default is not None:
                if default is dataclasses.MISSING:
                    fix = "set one"
                else:
                    fix = "set one, or leave the line out for its default" + (
                        "" if default is ... else f", {default!r}"
                    )
                problems.append(f"`{key}: null` leaves {key} without a value: {fix}")
            continue
        if typing.get_origin(base) is list and not isinstance(value, (list, str)):
            # a number for a list field failed deep inside (`vniah_lengths: 8`); a string is one item to TRL's and
            # tpo-hf's configs (PEFT reads `lora_target_modules` as a regex: `model_setup` says so)
            problems.append(f"`{key}: {value}`: {key} takes a list: write `{key}: [{value}]`")
            continue
        items = value if isinstance(value, list) else [value]
        integer = base is int or (typing.get_origin(base) is list and typing.get_args(base) == (int,))
        if integer and any(isinstance(item, (float, bool)) for item in items):
            problems.append(f"`{key}: {value}`: {key} takes a whole number (an integer)")
        elif isinstance(value, str) and callable(action.type) and (refused := _type_problem(action.type, value)):
            # argparse converts a text default with the flag's type (`learning_rate: 5e-7`, which YAML 1.1 reads as
            # text, is a float); one it cannot convert ended in its whole usage, blaming a flag that was never given
            problems.append(_string_value_problem(key, value, integer, base, refused))
        elif action.choices is not None:
            allowed = [str(choice) for choice in action.choices]
            if any(item not in action.choices and str(item) not in allowed for item in items if item is not None):
                # YAML 1.1 reads an unquoted no / off / yes / on as a bool (`save_strategy: no`)
                quote = (
                    " (YAML reads an unquoted no/yes/off/on as false/true: quote it)"
                    if isinstance(value, bool)
                    else ""
                )
                problems.append(f"`{key}: {value}` is not one of {key}'s values: {', '.join(allowed)}{quote}")
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems) + ".")


def _type_problem(convert: Callable[[str], Any], value: str) -> str | None:
    """Why argparse's `convert` (a flag's `type`) refuses `value`, as argparse would refuse it; None when it reads."""
    import argparse

    try:
        convert(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
        return str(error) or type(error).__name__
    return None


def _string_value_problem(key: str, value: str, integer: bool, base: Any, error: str) -> str:
    """A recipe's text `value` that field `key`'s type does not read, for `check_recipe_values`."""
    try:
        number: float | None = float(value)
    except ValueError:
        number = None
    if integer:
        # YAML 1.1 reads a number in exponent form without a dot (`1e3`) as text
        whole = number is not None and number.is_integer()
        fix = f" (YAML reads {value} as text: write {int(number)})" if whole else ""
        return f"`{key}: {value!r}` is not a whole number{fix}"
    if base is float:
        return f"`{key}: {value!r}` is not a number"
    return f"`{key}: {value!r}` is not a value {key} takes ({error})"


def log_output_dir(name: str, parsed: Sequence[Any], argv: Sequence[str], recipe: tuple[str, dict] | None) -> None:
    """Says where the command writes: a warning where `output_dir` was set neither in the recipe nor as a flag (the
    default is a folder in the current one, easy to miss), an info line otherwise."""
    from ..locks import is_main_process

    output_dir = next((arguments.output_dir for arguments in parsed if hasattr(arguments, "output_dir")), None)
    if output_dir is None or not is_main_process():
        return
    given = any(arg == "--output_dir" or arg.startswith("--output_dir=") for arg in argv) or (
        recipe is not None and "output_dir" in recipe[1]
    )
    if given:
        logger.info("tpo-hf %s writes to %s", name, os.path.abspath(output_dir))
    else:
        logger.warning(
            "tpo-hf %s: output_dir is not set, writing to %s (the default, in the current folder).",
            name,
            os.path.abspath(output_dir),
        )


def run_cli(name: str, make_parser: Callable[[], Any], main: Callable[..., Any], argv: Sequence[str] | None) -> Any:
    """What every command's `cli_main` does: takes `--debug` out of `argv`, parses the rest with the command's
    `TrlParser` (a value it or the config's validation refuses, or a missing `--config` file, is a `ConfigError`;
    `--config=FILE` is read as `--config FILE`; a recipe of another command is named as such), says where the
    command writes, and runs `main(*parsed)`, all through `run_command`."""
    argv, debug = take_debug_flag(argv)
    argv = split_config_flag(argv)

    def parse_and_run() -> Any:
        import yaml

        recipe = read_recipe(argv)
        parser = make_parser()
        refuse_recipe_of_another_command(name, parser, recipe)
        check_recipe_values(parser, recipe, argv)
        try:
            with _keep_null_env(recipe):
                parsed = parser.parse_args_and_config(args=expand_home_paths(argv, recipe, parser))
        except (ValueError, FileNotFoundError, yaml.YAMLError) as error:
            raise ConfigError(_message(error)) from error
        log_output_dir(name, parsed, argv, recipe)
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
        apply_recipe_env(rest_without_flag)  # before the command's module imports datasets and transformers
        module = importlib.import_module(BUILTIN_COMMANDS[command][0])
    elif command in (plugins := _plugin_commands()):
        module = plugins[command].load()
        rest = rest_without_flag
    else:
        print(f"tpo-hf: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    run_command(command, module.cli_main, rest, debug=debug)


# `python -m tpo_hf.commands.NAME --config F` imports this package first, then the command's module, which imports
# datasets and transformers: the recipe's `env:` is set now, while they can still read it
if (_launched := _launched_command_argv()) is not None:
    apply_recipe_env(_launched)
