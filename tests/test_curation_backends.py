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


# --- replies as real judges and endpoints give them --------------------------------------------------------------
@pytest.mark.parametrize(
    ("reply", "verdicts"),
    [
        ('{"better": 1, "contradiction": 0, "correct": 1}', (True, False, True)),
        ('{"answer_1_better": true, "contradicts_caption": false, "answer_1_correct": true}', (True, False, True)),
        ('{"isBetter": "Yes.", "isAmbiguous": "No.", "isCorrect": "Yes."}', (True, False, True)),
        ("1. Yes\n2. Not at all.\n3. Yes", (True, False, True)),
        ("1. Yes\n2. None\n3. Yes", (True, False, True)),
        ("Answer 1 is better: Yes\nContradiction: No\nCorrect: Yes", (True, False, True)),
        ("1. Yes\n2. No - consistent with the caption.\n3. Yes", (True, False, True)),
        ("1) Yes 2) No 3) Yes", (True, False, True)),
        # qualified verdicts answer both ways: unread (the pair is dropped as judge_unparseable), never read as No
        ("1. Yes\n2. No contradiction, but the question is ambiguous.\n3. Yes", (True, None, True)),
        ("1. Yes, though only slightly\n2. No\n3. Yes", (None, False, True)),
        (
            '{"better": "yes", "contradiction": "No, however the question is vague", "correct": "yes"}',
            (True, None, True),
        ),
        ("1. Yes/No\n2. Yes/No\n3. Yes/No", (None, None, None)),  # the prompt's template echoed
        ("1. Yes\n2. N/A\n3. Yes", (True, None, True)),  # not read as "n", nor by word order
        ('{"better": 2, "contradiction": 0, "correct": 1}', (None, False, True)),
        ('{"better": true, "contradiction": null, "correct": true}', (True, None, True)),  # null is no "None"
    ],
)
def test_judge_verdicts_are_read_when_clear_and_left_unread_when_qualified(reply, verdicts):
    from tpo_hf.curation import parse_judge_reply

    verdict = parse_judge_reply(reply)
    assert (verdict.better, verdict.contradiction, verdict.correct) == verdicts
    assert verdict.passed is (verdicts == (True, False, True))


@pytest.fixture
def online(monkeypatch):
    """conftest sets HF_HUB_OFFLINE; huggingface_hub then refuses all HTTP, loopback included."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def fake_endpoint():
    """A loopback OpenAI-compatible chat endpoint answering every POST with `reply(request_json) -> body` (a completion
    body, or any JSON, sent with HTTP 200); yields a setter `(reply) -> base_url`, and records the requests it got."""
    import http.server
    import threading

    state = {"reply": None, "requests": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"].append(request)
            body = json.dumps(state["reply"](request)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve(reply):
        state["reply"] = reply
        return f"http://127.0.0.1:{server.server_port}"

    serve.requests = state["requests"]
    yield serve
    server.shutdown()
    server.server_close()


def completion(content, finish_reason="stop"):
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "finish_reason": finish_reason, "message": {"role": "assistant", "content": content}}
        ],
    }


def test_a_judge_answering_json_with_1_and_0_is_read(oracle_backends, video_dir, tmp_path, online, fake_endpoint):
    """`{"better": 1, "contradiction": 0, "correct": 1}` from an OpenAI-compatible judge keeps the pairs instead of
    stopping the run as a judge none of whose replies parse."""
    url = fake_endpoint(lambda request: completion('{"better": 1, "contradiction": 0, "correct": 1, "reason": "ok"}'))
    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="oracle-video",
        video_backend="oracle",
        question_backend="template",
        judge_backend="openai",
        judge_model="judge",
        judge_base_url=url,
        max_retries=0,
        output_dir=str(tmp_path / "out"),
        num_frames=4,
        sparse_num_frames=2,
        mix_ratio="1:1",
        progress=False,
    )
    result = run_curation(config)
    assert result.report["judge"]["parsed"] == 1.0 and result.report["judge"]["passed"] == 1.0
    assert result.report["final"]["total"] == 4 and len(fake_endpoint.requests) == 4


def test_openai_backend_joins_content_parts_and_names_replies_it_cannot_read(online, fake_endpoint):
    """`message.content` as a list of text parts is joined (the OpenAI API allows it); an HTTP 200 body with no choices
    or with an error object is one error naming the endpoint and model and quoting the server, retried only when the
    error's code says overloaded."""
    from tpo_hf.curation.backends import BackendError, GenerationRequest
    from tpo_hf.curation.openai_backend import OpenAIBackend

    parts = [{"type": "text", "text": "A red square, "}, {"type": "text", "text": "then a blue circle."}]
    backend = OpenAIBackend("fake-vlm", base_url=fake_endpoint(lambda r: completion(parts)), max_retries=1)
    assert backend.generate([GenerationRequest("Describe.")], 8) == ["A red square, then a blue circle."]

    def error(code):
        return lambda r: {"error": {"message": "The model `fake-vlm` does not exist.", "type": "bad", "code": code}}

    for reply, match in [
        (lambda r: {**completion("x"), "choices": []}, "model fake-vlm.*1 attempt.*not retried.*no choices"),
        (error(404), "model fake-vlm.*1 attempt.*not retried.*HTTP 200 with an error.*`fake-vlm` does not exist"),
        (error(503), "model fake-vlm.*2 attempt.*HTTP 200 with an error.*code 503"),
    ]:
        backend = OpenAIBackend("fake-vlm", base_url=fake_endpoint(reply), max_retries=1, retry_backoff=0.01)
        with pytest.raises(BackendError, match=match) as raised:
            backend.generate([GenerationRequest("Describe.")], 8)
        assert backend.base_url in str(raised.value)


def test_answers_cut_at_the_token_budget_drop_their_pair_and_are_counted(
    video_dir, tmp_path, online, fake_endpoint, caplog
):
    """An endpoint that stops answers at `max_tokens` (`finish_reason: "length"`) gives answers that end mid-word: they
    make no pair (`truncated_answer`), every cut reply is counted by stage in the report, and the run names the
    setting to raise."""
    import logging

    def reply(request):
        prompt = json.dumps(request["messages"])
        if "Describe in detail" in prompt:  # captions come whole
            return completion("A red square moves right, then a blue circle moves left.")
        return completion(f"The red square moves to the right and then a blue circ{len(prompt) % 97}", "length")

    config = CurationConfig(
        video_dir=str(video_dir),
        video_model="fake-vlm",
        video_backend="openai",
        video_base_url=fake_endpoint(reply),
        question_backend="template",
        use_judge=False,
        max_retries=0,
        output_dir=str(tmp_path / "out"),
        num_frames=4,
        sparse_num_frames=2,
        mix_ratio="1:1",
        progress=False,
    )
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(NoPairsError, match="truncated_answer.*answer_max_new_tokens"),
    ):
        run_curation(config)
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    assert report["drop_reasons"] == {"truncated_answer": 4}
    assert report["truncated_replies"] == {"caption": 0, "question": 0, "answer": 8, "judge": 0}
    assert "raise answer_max_new_tokens" in caplog.text


def test_a_local_reply_is_cut_when_it_spends_the_budget_without_its_end_token(video_dir):
    """A local model's reply that generated `max_new_tokens` tokens without an end-of-sequence token is marked
    truncated; one that ends with it exactly at the budget (the world's 4-token answers) is complete."""
    from collections import Counter

    from tpo_hf.curation.backends import GenerationRequest, is_truncated
    from tpo_hf.curation.generate import generate
    from tpo_hf.curation.transformers_backend import TransformersBackend
    from tpo_hf.processing import VideoPreferenceProcessor
    from tpo_hf.tiny import build_tiny_model
    from tpo_hf.video import load_video

    model, processor = build_tiny_model("qwen2_5_vl")
    backend = TransformersBackend.from_model(model, VideoPreferenceProcessor(processor, num_frames=4), "tiny")
    request = GenerationRequest("What happens?", load_video(str(video_dir / "red_blue.mp4"), num_frames=4))
    inputs = backend.processor.generation_inputs([request.prompt], [request.video])
    tokens = model.generate(**inputs, **backend._generate_kwargs(6))[0, inputs["input_ids"].shape[1] :].tolist()
    # the step whose greedy token has not come before: made the end token, generation stops there
    step = next(i for i in range(1, len(tokens)) if tokens[i] not in tokens[:i] + [backend.tokenizer.pad_token_id])
    assert is_truncated(backend.generate([request], max_new_tokens=step + 1)[0])  # the random model never ends
    model.generation_config.eos_token_id = tokens[step]
    (reply,) = backend.generate([request], max_new_tokens=step + 1)
    assert not is_truncated(reply)
    assert is_truncated(backend.generate([request], max_new_tokens=step)[0])
    # counted by stage for the report; a local model's cut answers are counted, not dropped
    stats = Counter()
    generate(backend, [request, request], max_new_tokens=step, seed=0, stats=stats, stage="answer")
    assert stats["truncated_answer"] == 2 and not backend.drops_cut_answers
