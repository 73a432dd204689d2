"""Stage 2 of the flow: build TPO preference pairs (localized + comprehensive) from videos.

- `segments`: which segment a localized query is about; the views each side of a pair sees.
- `prompts`: caption, question (paper's task types) and judge prompts, and robust reply parsing.
- `backends`: local transformers models (batched, left padded) and OpenAI-compatible endpoints.
- `pipeline`: the resumable, sharded, multi-process run; `card`: the dataset card and the one-commit Hub push.

Entry point: `tpo-hf curate --config FILE.yaml` (`tpo_hf.curate`).
"""

from .backends import BackendError, GenerationBackend, GenerationRequest, OpenAIBackend, TransformersBackend
from .card import push_dataset, render_dataset_card
from .config import CurationConfig
from .pipeline import Backends, CurationResult, VideoItem, build_backends, curate_shard, list_videos, run_curation
from .prompts import TASK_TYPES, JudgeVerdict, ParsedQuestion, parse_judge_reply, parse_question_reply
from .segments import SegmentSpec, choose_segments, comprehensive_views, localized_views, video_seed

__all__ = [
    "BackendError",
    "Backends",
    "CurationConfig",
    "CurationResult",
    "GenerationBackend",
    "GenerationRequest",
    "JudgeVerdict",
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
    "push_dataset",
    "render_dataset_card",
    "run_curation",
    "video_seed",
]
