"""`accelerate launch ... -m tpo_hf.curate --config FILE.yaml`: the launch line of every recipe README; the command
itself is `tpo_hf.commands.curate` (`tpo-hf curate`)."""

from .commands.curate import cli_main, main, make_parser

__all__ = ["cli_main", "main", "make_parser"]

if __name__ == "__main__":
    cli_main()
