"""tpo-hf: Temporal Preference Optimization (arXiv 2501.13919) for video-LMMs, on TRL, PEFT and the Hugging Face Hub.

The flow of data is the layout: `video` (decode, sample frames) -> `curation` (build preference pairs) ->
`data` / `processing` / `collator` (pairs -> model inputs) -> `trainer` (TPOTrainer on TRL's DPOTrainer) -> `eval`
-> `hub` (cards, pushes, Space). Model-family differences live in `families`.

Importing `tpo_hf` is cheap: the public names below are imported on first use (as transformers and TRL do), so
`import tpo_hf` and `tpo-hf --help` do not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# submodule -> the public names it defines (imported on first use)
_IMPORT_STRUCTURE = {
    "collator": ["VideoPreferenceCollator"],
    "config": ["TPOConfig"],
    "data": ["load_preference_dataset"],
    "families": ["FAMILIES", "VideoFamily", "get_family"],
    "models": ["load_video_model"],
    "processing": ["VideoPreferenceProcessor"],
    "trainer": ["TPOTrainer"],
    "video": ["VideoFile", "VideoLoadError", "VideoView", "load_video"],
    "video_settings": ["VideoSettings"],
}
_LAZY_IMPORTS = {name: module for module, names in _IMPORT_STRUCTURE.items() for name in names}

__all__ = [
    "FAMILIES",
    "TPOConfig",
    "TPOTrainer",
    "VideoFamily",
    "VideoFile",
    "VideoLoadError",
    "VideoPreferenceCollator",
    "VideoPreferenceProcessor",
    "VideoSettings",
    "VideoView",
    "__version__",
    "get_family",
    "load_preference_dataset",
    "load_video",
    "load_video_model",
]

if TYPE_CHECKING:
    from .collator import VideoPreferenceCollator
    from .config import TPOConfig
    from .data import load_preference_dataset
    from .families import FAMILIES, VideoFamily, get_family
    from .models import load_video_model
    from .processing import VideoPreferenceProcessor
    from .trainer import TPOTrainer
    from .video import VideoFile, VideoLoadError, VideoView, load_video
    from .video_settings import VideoSettings


def __getattr__(name: str) -> Any:
    if name not in _LAZY_IMPORTS:
        raise AttributeError(f"module 'tpo_hf' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY_IMPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
