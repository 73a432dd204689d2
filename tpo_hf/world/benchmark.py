"""The world's held-out questions as an eval benchmark (`tpo-hf eval --benchmark tpo_world`).

Registered through the `tpo_hf.eval_benchmarks` entry-point group (pyproject.toml), the plugin point any package
uses (`tpo_hf.plugins`); rows are written by `tpo_hf.world.corpus.eval_rows`, with the full prompt and the video's
frame count (every frame is shown). Local files only: the world is never on the Hub.
"""

from __future__ import annotations

from typing import Any

from ..eval.benchmarks import Benchmark, MCQSample, answer_letter, require_field, require_list


def tpo_world_sample(row: dict[str, Any], index: int, variant: str = "default", **_: Any) -> MCQSample:
    """A row of `tpo_hf.world.corpus.eval_rows` -> `MCQSample`."""
    options = require_list(row, ("options",), "tpo_world", index)
    return MCQSample(
        sample_id=str(require_field(row, ("sample_id",), "tpo_world", index)),
        video=str(require_field(row, ("video",), "tpo_world", index)),
        question=str(require_field(row, ("question",), "tpo_world", index)),
        options=options,
        answer=answer_letter(require_field(row, ("answer",), "tpo_world", index), options, "tpo_world", index),
        prompt=str(require_field(row, ("prompt",), "tpo_world", index)),
        breakdowns={name: str(row[name]) for name in ("type", "kind", "scenes") if row.get(name) is not None},
        num_frames=row.get("num_frames"),
        start=row.get("start"),
    )


BENCHMARK = Benchmark(
    "tpo_world",
    "TPO world (held-out)",
    "tpo-hf/temporal-world",
    "test",
    ("type", "kind", "scenes"),
    tpo_world_sample,
    lmms_eval_task=None,
    max_new_tokens=6,  # the world model answers with an option's text ("the red shape")
)
