"""TRL ships `trl.experimental.tpo` (Triple Preference Optimization): both "TPO"s import side by side, and ours say which."""

import os

import pytest


def test_both_tpos_import_in_one_program():
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    trl_tpo = pytest.importorskip("trl.experimental.tpo")

    from tpo_hf import TPOConfig, TPOTrainer

    assert TPOTrainer is not trl_tpo.TPOTrainer and TPOConfig is not trl_tpo.TPOConfig
    assert TPOTrainer.__module__.startswith("tpo_hf") and TPOConfig.__module__.startswith("tpo_hf")
    for cls in (TPOTrainer, TPOConfig):
        doc = " ".join(cls.__doc__.split())
        assert "Temporal Preference Optimization" in doc and "Triple Preference Optimization" in doc


def test_every_card_and_the_trainer_carry_the_disambiguating_tag():
    from tpo_hf import TPOTrainer
    from tpo_hf.hub.model_card import TPO_TAGS
    from tpo_hf.paper import TPO_TAG

    assert TPO_TAG == "temporal-preference-optimization"
    assert TPO_TAG in TPOTrainer._tag_names and TPO_TAG in TPO_TAGS
    readme_head = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()[:600]
    assert "Triple" in readme_head and TPO_TAG in readme_head
