"""tpo-hf: Temporal Preference Optimization (arXiv 2501.13919) for video-LMMs, on TRL, PEFT and the Hugging Face Hub.

The flow of data is the layout: `video` (decode, sample frames) -> `curation` (build preference pairs) ->
`processing` / `collator` (pairs -> model inputs) -> `trainer` (TPOTrainer on TRL's DPOTrainer) -> `eval` -> `hub`
(cards, push, Space). Model-family differences live in `families`.
"""

__version__ = "0.1.0"

from .collator import VideoPreferenceCollator
from .config import TPOConfig
from .families import FAMILIES, VideoFamily, get_family
from .processing import VideoPreferenceProcessor
from .trainer import TPOTrainer
from .video import VideoFile, VideoLoadError, VideoView, load_video

__all__ = [
    "FAMILIES",
    "TPOConfig",
    "TPOTrainer",
    "VideoFamily",
    "VideoFile",
    "VideoLoadError",
    "VideoPreferenceCollator",
    "VideoPreferenceProcessor",
    "VideoView",
    "get_family",
    "load_video",
]
