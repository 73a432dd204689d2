"""The `tpo-hf` command: one subcommand per stage of the flow, each taking `--config FILE.yaml` plus flags.

    tpo-hf curate | train | eval | push | space | quickstart [--config FILE.yaml] [--flag value ...]

Each subcommand lives in its own module and exposes `cli_main(argv)`; this file only dispatches, so adding a stage
means adding one line to `SUBCOMMANDS`.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "curate": ("tpo_hf.curate", "Build TPO preference pairs from videos (localized + comprehensive)"),
    "train": ("tpo_hf.train", "Train with TPO (DPO + SFT) through TRL"),
    "eval": ("tpo_hf.eval.cli", "Evaluate base vs. TPO: multiple-choice video QA and V-NIAH"),
    "push": ("tpo_hf.hub.push", "Push a trained adapter (or merged model) with its model card to the Hub"),
    "space": ("tpo_hf.hub.space", "Write, push or run locally a Gradio Space demo"),
    "quickstart": ("tpo_hf.quickstart", "The whole loop on a tiny built-in default, offline"),
    "world": ("tpo_hf.world.cli", "The synthetic temporal world: pretrain its base model, write corpora"),
}


def _usage() -> str:
    lines = ["usage: tpo-hf <command> [--config FILE.yaml] [options]", "", "commands:"]
    lines += [f"  {name:<11} {help_text}" for name, (_, help_text) in SUBCOMMANDS.items()]
    lines += ["", "Run `tpo-hf <command> --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"tpo-hf: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        raise SystemExit(2)
    module = importlib.import_module(SUBCOMMANDS[command][0])
    from .hub.push import PushError

    try:
        module.cli_main(rest)
    except PushError as error:
        # the same one-paragraph message for every command that pushes, not the Hub client's traceback
        raise SystemExit(f"tpo-hf {command}: {error}") from None


if __name__ == "__main__":
    main()
