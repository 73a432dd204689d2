"""`python -m tpo_hf.eval` / `accelerate launch -m tpo_hf.eval --config FILE.yaml`: the `tpo-hf eval` command."""

from .cli import cli_main

if __name__ == "__main__":
    cli_main()
