"""`tpo-hf world pretrain | corpus`: build the world's base model, write world corpora.

tpo-hf world pretrain [--output_dir DIR] [--steps N ...]   # default: the cache folder (the shipped copy if same)
tpo-hf world corpus --output_dir DIR --split train --num_videos 100 --min_scenes 6 --max_scenes 9
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields

# `tpo-hf world` is a plugin command (entry point `tpo_hf.commands` in pyproject.toml): its line in `tpo-hf --help`
HELP = "The synthetic temporal world: pretrain its base model, write corpora"


@dataclass
class CorpusArguments:
    """Settings of `tpo-hf world corpus`."""

    output_dir: str = field(default="world-corpus", metadata={"help": "Folder for the mp4 files and timelines."})
    split: str = field(default="train", metadata={"help": "Split name: different names never share a video."})
    num_videos: int = field(default=100, metadata={"help": "Number of videos."})
    min_scenes: int = field(default=6, metadata={"help": "Fewest scenes per video."})
    max_scenes: int = field(default=9, metadata={"help": "Most scenes per video (at most 9: one colour each)."})
    needle_probability: float = field(default=0.5, metadata={"help": "Share of videos with a 1-frame needle."})
    seed: int = field(default=0, metadata={"help": "Seed of the split's content."})
    curation_inputs: bool = field(
        default=True, metadata={"help": "Also write curation_inputs.jsonl (comprehensive questions + captions)."}
    )


@dataclass
class PretrainArguments:
    """Settings of `tpo-hf world pretrain` (the `PretrainConfig` fields plus where to write)."""

    output_dir: str | None = field(default=None, metadata={"help": "Where to write (default: the cache folder)."})


def make_parser(command: str):
    """The `TrlParser` of `tpo-hf world <command>` ("pretrain" or "corpus")."""
    from trl import TrlParser

    from .pretrain import PretrainConfig

    if command not in COMMANDS:
        raise ValueError(f"Unknown world command {command!r}; use one of {sorted(COMMANDS)}.")
    return TrlParser((PretrainArguments, PretrainConfig) if command == "pretrain" else (CorpusArguments,))


def _pretrain(argv: list[str]) -> None:
    from .base import build_base, world_base_model

    where, config = make_parser("pretrain").parse_args_and_config(args=argv)
    folder = (
        build_base(where.output_dir, config, setting="--output_dir") if where.output_dir else world_base_model(config)
    )
    print(f"world base model: {folder}")


def _corpus(argv: list[str]) -> None:
    from pathlib import Path

    from .corpus import CorpusSpec, refuse_other_world_videos, write_corpus, write_curation_inputs

    (args,) = make_parser("corpus").parse_args_and_config(args=argv)
    spec_fields = {f.name for f in fields(CorpusSpec)}
    spec = CorpusSpec(**{k: v for k, v in vars(args).items() if k in spec_fields})
    refuse_other_world_videos(spec, args.output_dir)
    videos = write_corpus(spec, args.output_dir)
    if args.curation_inputs:
        write_curation_inputs(videos, Path(args.output_dir) / "curation_inputs.jsonl", seed=args.seed)
    print(f"{len(videos)} videos with timelines in {args.output_dir}")


COMMANDS = {"pretrain": _pretrain, "corpus": _corpus}


def cli_main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: tpo-hf world {{{' | '.join(COMMANDS)}}} [options]   (--help for each)", file=sys.stderr)
        raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)
    COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    cli_main()
