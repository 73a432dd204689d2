"""`python -m tpo_hf.commands ...`: the `tpo-hf` command without its console script."""

from . import main

if __name__ == "__main__":
    main()
