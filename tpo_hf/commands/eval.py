"""`tpo-hf eval` (stage 5 of the flow): evaluates a model, and its TPO adapter against it.

    tpo-hf eval --config recipes/Qwen2.5-VL-7B-Instruct/eval/config.yaml
    tpo-hf eval --model_name_or_path Qwen/Qwen2.5-VL-7B-Instruct --adapter_path out/tpo-lora \\
        --benchmark videomme --dataset_name lmms-eval/Video-MME --video_dir /data/videomme/data --num_frames 96

Arguments are one `EvalConfig` dataclass parsed with TRL's `TrlParser`: every field can be set in the YAML file or
as a flag, and flags override the file. The run itself is `tpo_hf.eval.run.evaluate`. Data parallel:

    accelerate launch --num_processes 2 -m tpo_hf.commands.eval --config FILE.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trl import TrlParser

from ..eval.config import EvalConfig
from ..eval.run import evaluate
from ..locks import is_main_process
from . import run_cli


def main(config: EvalConfig) -> dict[str, Any]:
    """Evaluates as configured, prints the results table, and returns the results (as in `results.json`)."""
    results = evaluate(config)
    if is_main_process():  # under `accelerate launch`, the main process prints the table
        print((Path(config.output_dir) / "results.md").read_text())
    return results


def make_parser(subparsers=None) -> TrlParser:
    if subparsers is not None:
        return subparsers.add_parser("eval", help="Evaluate base vs. TPO", dataclass_types=(EvalConfig,))
    return TrlParser((EvalConfig,))


def cli_main(argv: list[str] | None = None) -> dict[str, Any]:
    """`tpo-hf eval [--config FILE.yaml] [--flag value ...]`."""
    return run_cli("eval", make_parser, main, argv)


if __name__ == "__main__":
    cli_main()
