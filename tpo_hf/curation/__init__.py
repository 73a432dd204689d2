"""Stage 2 of the flow: build TPO preference pairs (localized + comprehensive) from videos.

A run (`run`) cuts the input videos (`inputs`) into shards; each shard's videos are decoded once (`decode`) into
typed `Candidate`s (`candidate`) that go through the stages `caption` -> `ask` -> `answer` -> `judge`, each a
generate-then-parse step (`generate`) on the role's backend (`backends`: a registry of named backends;
`transformers_backend`, `openai_backend`). Candidates become shard records (`candidate.to_record`), stored
atomically for kill-resume (`storage`); the merge de-duplicates and mixes them (`mixing`), builds the dataset
(`records`) and the run report (`report`). Prompts and reply parsing: `prompts`; segments and views: `segments`;
settings: `config`. The dataset card and the Hub push live in `tpo_hf.hub`.

Entry point: `tpo-hf curate --config FILE.yaml` (`tpo_hf.commands.curate`).
"""

from .backends import (
    BACKENDS,
    BackendError,
    Backends,
    GenerationBackend,
    GenerationRequest,
    build_backends,
    register_backend,
)
from .candidate import Candidate
from .config import CurationConfig
from .inputs import VideoItem, list_videos
from .openai_backend import OpenAIBackend
from .prompts import TASK_TYPES, JudgeVerdict, ParsedQuestion, parse_judge_reply, parse_question_reply
from .report import CurationReport
from .run import CurationResult, NoPairsError, curate_shard, run_curation
from .segments import SegmentSpec, choose_segments, comprehensive_views, localized_views, video_seed
from .transformers_backend import TransformersBackend

__all__ = [
    "BACKENDS",
    "BackendError",
    "Backends",
    "Candidate",
    "CurationConfig",
    "CurationReport",
    "CurationResult",
    "GenerationBackend",
    "GenerationRequest",
    "JudgeVerdict",
    "NoPairsError",
    "OpenAIBackend",
    "ParsedQuestion",
    "SegmentSpec",
    "TASK_TYPES",
    "TransformersBackend",
    "VideoItem",
    "build_backends",
    "choose_segments",
    "comprehensive_views",
    "curate_shard",
    "list_videos",
    "localized_views",
    "parse_judge_reply",
    "parse_question_reply",
    "register_backend",
    "run_curation",
    "video_seed",
]
