"""Shared offline fixtures: tiny random models of every family and synthetic mp4 videos written with PyAV."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import sys  # noqa: E402
import types  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# lmms-eval's dependency latex2sympy2 installs a top-level `tests` package into site-packages, which would shadow this
# folder in the tests' own `from tests.test_x import ...`: bind the name `tests` to this folder.
_TESTS = types.ModuleType("tests")
_TESTS.__path__ = [str(Path(__file__).resolve().parent)]
sys.modules["tests"] = _TESTS

from tpo_hf.families import FAMILIES  # noqa: E402
from tpo_hf.synthetic import Scene, write_synthetic_video  # noqa: E402
from tpo_hf.tiny import build_tiny_model, save_tiny_model  # noqa: E402

ALL_FAMILIES = sorted(FAMILIES)


# --- skip markers (TRL's require_* style): registered in pyproject.toml, enforced here ---------------------------------
def _has_bitsandbytes() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None


def _has_deepspeed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


def _has_torch_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


SKIP_MARKERS = {
    "require_bitsandbytes": (_has_bitsandbytes, "needs bitsandbytes (pip install bitsandbytes)"),
    "require_torch_accelerator": (_has_torch_accelerator, "needs a GPU (CUDA or XPU)"),
    "require_deepspeed": (_has_deepspeed, "needs DeepSpeed (pip install deepspeed)"),
}


# Families whose processor needs a module that is not installed (e.g. SmolVLM's num2words): their tests skip
MISSING_FAMILY_REQUIREMENTS = {
    name: missing for name, family in FAMILIES.items() if (missing := family.missing_requirements())
}


def pytest_collection_modifyitems(items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        family = callspec.params.get("family") if callspec is not None else None
        names = [family] if family else [name for name in MISSING_FAMILY_REQUIREMENTS if name in item.name]
        for name in names:
            if name in MISSING_FAMILY_REQUIREMENTS:
                missing = " ".join(MISSING_FAMILY_REQUIREMENTS[name])
                item.add_marker(pytest.mark.skip(reason=f"the {name} family needs {missing}"))


def pytest_runtest_setup(item):
    for name, (available, reason) in SKIP_MARKERS.items():
        if item.get_closest_marker(name) is not None and not available():
            pytest.skip(f"{name}: {reason}")


# Two 8-second clips (8 fps, 64x128) whose halves differ, so segments and exclusions change what the model sees.
VIDEO_SCENES = {
    "red_blue.mp4": [Scene(4, "red", "square", "right"), Scene(4, "blue", "circle", "left")],
    "green_yellow.mp4": [Scene(3, "green", "circle", "right"), Scene(5, "yellow", "square", "left")],
}


@pytest.fixture(scope="session")
def video_dir(tmp_path_factory):
    """A folder with the synthetic clips of `VIDEO_SCENES` (paths relative to it in datasets)."""
    folder = tmp_path_factory.mktemp("videos")
    for name, scenes in VIDEO_SCENES.items():
        write_synthetic_video(folder / name, scenes, fps=8)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory):
    """Factory: family name -> folder with a saved tiny model + processor (built once per session)."""
    cache = {}

    def make(family: str):
        if family not in cache:
            cache[family] = save_tiny_model(tmp_path_factory.mktemp(f"tiny-{family}"), family)
        return cache[family]

    return make


@pytest.fixture
def tiny_model():
    """Factory: family name -> fresh (model, processor) built in memory."""
    return build_tiny_model


def preference_rows(conversational: bool = False, repeat: int = 2) -> list[dict]:
    """Rows in the TPO training schema over the clips of `VIDEO_SCENES`."""
    rows = [
        {
            "prompt": "What colour is the moving shape?",
            "chosen": "It is red, then blue.",
            "rejected": "Green.",
            "video": "red_blue.mp4",
            "granularity": "comprehensive",
            "segment_start": None,
            "segment_end": None,
        },
        {
            "prompt": "What happens between 0 and 3 seconds?",
            "chosen": "A green circle moves right.",
            "rejected": "Nothing happens at all here.",
            "video": "green_yellow.mp4",
            "granularity": "localized",
            "segment_start": 0.0,
            "segment_end": 3.0,
        },
    ]
    if conversational:
        for row in rows:
            row["prompt"] = [{"role": "user", "content": row["prompt"]}]
            row["chosen"] = [{"role": "assistant", "content": row["chosen"]}]
            row["rejected"] = [{"role": "assistant", "content": row["rejected"]}]
    return rows * repeat


@pytest.fixture
def preference_dataset():
    """Factory: a `datasets.Dataset` of `preference_rows`."""
    from datasets import Dataset

    def make(conversational: bool = False, repeat: int = 2):
        return Dataset.from_list(preference_rows(conversational, repeat))

    return make
