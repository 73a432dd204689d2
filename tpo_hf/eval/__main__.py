"""The old spelling of `accelerate launch -m tpo_hf.commands.eval` (data-parallel `tpo-hf eval`), kept so that launch
lines written before the commands package keep working; it says so once and runs the command."""

import runpy
import warnings

warnings.warn("`-m tpo_hf.eval` is now `-m tpo_hf.commands.eval`", FutureWarning, stacklevel=1)
runpy.run_module("tpo_hf.commands.eval", run_name="__main__", alter_sys=True)
