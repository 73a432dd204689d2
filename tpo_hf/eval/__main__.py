"""`accelerate launch -m tpo_hf.eval --config FILE.yaml`: data-parallel `tpo-hf eval` (`tpo_hf.commands.eval`)."""

from ..commands.eval import cli_main

if __name__ == "__main__":
    cli_main()
