"""Generation backends are pluggable by name: a backend registered in `tpo_hf.curation.backends.BACKENDS` runs every
role of a curation run through the same stages as the built-in ones, with no special case in the pipeline."""

from __future__ import annotations

import json

import pytest

from tpo_hf.curation import (
    BACKENDS,
    CurationConfig,
    GenerationBackend,
    NoPairsError,
    register_backend,
    run_curation,
)
from tpo_hf.curation.backends import backend_factory, build_backends


class OracleBackend(GenerationBackend):
    """Answers from the candidate each request carries, never from the prompt text (like a ground-truth judge)."""

    def __init__(self, role: str):
        self.role, self.model_id, self.requests = role, f"oracle-{role}", []

    def generate(self, requests, max_new_tokens, seed=0):
        self.requests += requests
        replies = []
        for request in requests:
            candidate = request.candidate
            assert candidate is not None, "every curation request carries its candidate"
            if self.role == "judge":
                better = "Yes" if candidate.granularity == "localized" else "No"
                replies.append(f"1. {better}\n2. No\n3. Yes\nReason: oracle.")
            elif self.role == "question":
                replies.append(f"Question: What happens in {candidate.video_id}?\nAnswer: Shapes move.")
            elif request.video is None:
                replies.append("unused")
            else:  # video role: a caption, or an answer that depends on the frames seen
                replies.append(f"frames {request.video[1]['frames_indices'][:3]}")
        return replies


@pytest.fixture
def oracle_backends():
    made: dict[str, OracleBackend] = {}

    def factory(config, role, device=None):
        made[role] = OracleBackend(role)
        return made[role]

    register_backend("oracle", factory)
    yield made
    del BACKENDS["oracle"]


def test_registered_backend_runs_every_role(oracle_backends, video_dir, tmp_path):
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="oracle-video",
        video_backend="oracle",
        question_backend="oracle",
        question_model="oracle-question",
        judge_backend="oracle",
        judge_model="oracle-judge",
        output_dir=str(tmp_path / "out"),
        num_frames=4,
        sparse_num_frames=2,
        progress=False,
    )
    backends = build_backends(config)
    assert {backends.video.role, backends.question.role, backends.judge.role} == {"video", "question", "judge"}
    # the judge passed localized pairs only: the ratio 5:5 then keeps as many comprehensive ones, i.e. none, and a
    # run that made no pair fails with the reason, its report written
    with pytest.raises(NoPairsError, match="passed the filters but the mix '5:5' kept none"):
        run_curation(config)
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    assert report["judge"]["check1_chosen_better"] == 0.5
    assert report["drop_reasons"] == {"judge_not_better": 2}
    assert all(r.candidate is not None for r in oracle_backends["judge"].requests)


def test_unknown_backend_names_the_registered_ones(tmp_path):
    with pytest.raises(ValueError, match="judge_backend='nope'.*transformers"):
        CurationConfig(video_dir=str(tmp_path), video_model="m", judge_backend="nope")
    with pytest.raises(ValueError, match="registered"):
        backend_factory("nope")
