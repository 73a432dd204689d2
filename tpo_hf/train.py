"""`accelerate launch ... -m tpo_hf.train --config FILE.yaml`: the launch line of every recipe README; the command
itself is `tpo_hf.commands.train` (`tpo-hf train`)."""

from .commands.train import TPOScriptArguments, cli_main, main, make_parser

__all__ = ["TPOScriptArguments", "cli_main", "main", "make_parser"]

if __name__ == "__main__":
    cli_main()
