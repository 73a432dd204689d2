"""The `tpo-hf` command: one module per subcommand, each thin over the library, with TRL's script shape
(`make_parser()`, `main(...)`, `cli_main(argv)`; `python -m tpo_hf.commands.NAME` runs it too).

    tpo-hf curate | train | eval | push | space | quickstart [--config FILE.yaml] [--flag value ...]

Installed packages add subcommands as entry points of the group `tpo_hf.commands` (`tpo_hf.plugins`): a module with
`HELP` (one line) and `cli_main(argv)`. tpo-hf's synthetic world adds `tpo-hf world` that way.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
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


def run_command(name: str, function: Callable[..., Any], *args: Any) -> Any:
    """Runs a command's `main`; a failed Hub push ends it with one paragraph (what failed, what was kept, what to
    rerun) instead of the Hub client's traceback, also under `accelerate launch -m tpo_hf.commands.NAME`."""
    from ..hub.push import PushError

    try:
        return function(*args)
    except PushError as error:
        raise SystemExit(f"tpo-hf {name}: {error}") from None


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
    if command in BUILTIN_COMMANDS:
        module = importlib.import_module(BUILTIN_COMMANDS[command][0])
    elif command in (plugins := _plugin_commands()):
        module = plugins[command].load()
    else:
        print(f"tpo-hf: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    run_command(command, module.cli_main, rest)
