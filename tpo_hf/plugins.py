"""Plugin points: how a package adds `tpo-hf` subcommands, curation generation backends and eval benchmarks.

A package declares what it adds as Python entry points in its own `pyproject.toml` (the mechanism lmms-eval uses for
external models, `lmms_eval.models`), and tpo-hf finds them by name when they are asked for:

    [project.entry-points."tpo_hf.commands"]            # `tpo-hf NAME ...`: a module with HELP and cli_main(argv)
    mycommand = "my_package.cli"
    [project.entry-points."tpo_hf.curation_backends"]   # `--question_backend NAME`: factory(config, role, device)
    mybackend = "my_package.backends:MyBackend.from_config"
    [project.entry-points."tpo_hf.eval_benchmarks"]     # `--benchmark NAME`: a tpo_hf.eval.benchmarks.Benchmark
    mybenchmark = "my_package.benchmark:BENCHMARK"

tpo-hf's own synthetic world is added this way too (its entry points are in pyproject.toml), so the library never
imports it. An installed package's entry points are read from its metadata: reinstall it after changing them.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

COMMANDS_GROUP = "tpo_hf.commands"
BACKENDS_GROUP = "tpo_hf.curation_backends"
BENCHMARKS_GROUP = "tpo_hf.eval_benchmarks"


def plugin_entry_points(group: str) -> dict[str, EntryPoint]:
    """The entry points installed under `group`, by name (read afresh each call: a test may install one)."""
    return {entry_point.name: entry_point for entry_point in entry_points(group=group)}


def load_plugin(group: str, name: str) -> Any | None:
    """The object the entry point `name` of `group` names, or `None` where no installed package declares it."""
    entry_point = plugin_entry_points(group).get(name)
    return entry_point.load() if entry_point is not None else None
