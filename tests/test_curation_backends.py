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


@pytest.mark.parametrize(
    "hedge",
    [
        "Yes, with minor errors (the colour is wrong)",
        "Yes (not entirely)",
        "Yes, largely",
        "Yes, apart from the timing",
        "Yes, if we ignore the timing",
        "Yes, except for the timing",
        "Yes, unless the timing counts",
        "Yes, mostly",
        "Yes, it is partially right",
        "Yes, not completely",
        "Yes, with a mistake in the colour",
        "Yes; the colour is wrong",
        "Yes, the order is incorrect",
    ],
)
def test_a_hedged_yes_is_an_unread_verdict(hedge):
    """Probe b/j13: a judge's hedged Yes that the qualifier words missed ("Yes, with minor errors", "Yes (not
    entirely)", "Yes, largely", "Yes, apart from the timing", "Yes, if we ignore the timing") was read as a plain Yes:
    the pair was kept as correct. A hedged verdict is unread (`judge_unparseable`), as "No ..., but" is; a Yes
    followed by an explanation that agrees is still a Yes."""
    from tpo_hf.curation import parse_judge_reply

    verdict = parse_judge_reply(f"1. Yes\n2. No\n3. {hedge}")
    assert (verdict.better, verdict.contradiction, verdict.correct) == (True, False, None)
    assert verdict.drop_reason() == "judge_unparseable"
    for agreeing in (
        "Yes, because answer 1 names the colour.",
        "Yes. The answer matches the caption.",
        "Yes, no errors",
    ):
        assert parse_judge_reply(f"1. Yes\n2. No\n3. {agreeing}").passed, agreeing


def test_a_verdict_revised_on_a_later_line_is_unread():
    """Probe b/j14: `1. Yes\\n2. No\\n3. Yes\\nWait, 1. No: answer 2 is better.` was read as Yes, No, Yes (the last
    complete block, the revision after it ignored): the pair was kept as better. A check that a later line gives
    another verdict is unread (which one rules is not for a parser to guess); one repeated with the same verdict,
    an explanation after the verdict and a draft before it change nothing."""
    from tpo_hf.curation import parse_judge_reply

    def read(reply):
        verdict = parse_judge_reply(reply)
        return verdict.better, verdict.contradiction, verdict.correct

    block = "1. Yes\n2. No\n3. Yes\n"
    assert read(block + "Wait, 1. No: answer 2 is better.") == (None, False, True)
    assert parse_judge_reply(block + "Wait, 1. No: answer 2 is better.").drop_reason() == "judge_unparseable"
    assert read(block + "Actually, check 1 should be No.") == (None, False, True)
    assert read(block + "1. No") == (None, False, True)  # a later partial block
    assert read(block + "Correction: 3. Yes, but only partly") == (True, False, None)  # revised to a hedge
    # agreeing repetitions, explanations and Reason lines, and drafts before the verdict keep it
    assert read(block + "So 1. Yes: answer 1 names the colour.") == (True, False, True)
    assert read(block + "Reason: 2. No contradiction; answer 1 is right.") == (True, False, True)
    assert read(block + "\nExplanation:\n1. Answer 1 names the colour.\n2. Nothing contradicts.") == (
        True,
        False,
        True,
    )
    assert read("1. No\n2. Yes\n3. No\nWait, let me redo it.\n" + block) == (True, False, True)


def test_a_final_answer_wrapped_in_answer_tags_is_read():
    """Probe b/j27: GLM-4.1V-Thinking (a shipped recipe family) answers `<think>...</think><answer>...</answer>`;
    the judge's verdict and the question writer's question were unread (`<answer>1. Yes` is no numbered line), and
    curate stopped after its first shard as if the judge could not answer. The text inside the last `<answer>`
    block is the final reply; a reply cut off inside it is read up to the cut; the prompt's `Answer: <answer>`
    echoed is no wrapper."""
    from tpo_hf.curation import parse_judge_reply
    from tpo_hf.curation.prompts import final_reply, parse_question_reply

    verdict = parse_judge_reply("<think>Answer 1 matches the caption.</think><answer>1. Yes\n2. No\n3. Yes</answer>")
    assert (verdict.better, verdict.contradiction, verdict.correct) == (True, False, True)
    assert parse_judge_reply("<answer>1. No\n2. No\n3. Yes</answer>\n<answer>1. Yes\n2. No\n3. Yes</answer>").passed
    parsed = parse_question_reply(
        "<think>Red first.</think>\n<answer>Question: What colour is first?\nAnswer: red</answer>"
    )
    assert (parsed.status, parsed.question, parsed.answer) == ("ok", "What colour is first?", "red")
    assert final_reply("<think>x</think><answer>1. Yes\n2. No") == "1. Yes\n2. No"
    assert final_reply("Question: <question>\nAnswer: <answer>") == "Question: <question>\nAnswer: <answer>"


@pytest.fixture
def online(monkeypatch):
    """conftest sets HF_HUB_OFFLINE; huggingface_hub then refuses all HTTP, loopback included."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture
def fake_endpoint(raw_endpoint):
    """A loopback OpenAI-compatible chat endpoint answering every POST with `reply(request_json) -> body` (a completion
    body, or any JSON, sent with HTTP 200); yields a setter `(reply) -> base_url`, and records the requests it got."""
    requests = []

    def serve(reply):
        def answer(request):
            requests.append(request)
            return 200, {}, json.dumps(reply(request)).encode()

        return raw_endpoint(answer)

    serve.requests = requests
    return serve


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


def endpoint_judged_config(video_dir, tmp_path, judge_base_url, judge_model="judge"):
    """Curation settings with the oracle video backend, template questions and a judge at an OpenAI endpoint."""
    return CurationConfig(
        video_dir=str(video_dir),
        video_model="oracle-video",
        video_backend="oracle",
        question_backend="template",
        judge_backend="openai",
        judge_model=judge_model,
        judge_base_url=judge_base_url,
        max_retries=0,
        output_dir=str(tmp_path / "out"),
        num_frames=4,
        sparse_num_frames=2,
        mix_ratio="1:1",
        progress=False,
    )


def test_a_judge_answering_json_with_1_and_0_is_read(oracle_backends, video_dir, tmp_path, online, fake_endpoint):
    """`{"better": 1, "contradiction": 0, "correct": 1}` from an OpenAI-compatible judge keeps the pairs instead of
    stopping the run as a judge none of whose replies parse."""
    url = fake_endpoint(lambda request: completion('{"better": 1, "contradiction": 0, "correct": 1, "reason": "ok"}'))
    result = run_curation(endpoint_judged_config(video_dir, tmp_path, url))
    assert result.report["judge"]["parsed"] == 1.0 and result.report["judge"]["passed"] == 1.0
    # 4 verdicts, after the short request (the judge's own budget) that checks the judge before any video is answered
    assert result.report["final"]["total"] == 4 and len(fake_endpoint.requests) == 5
    assert fake_endpoint.requests[0]["max_tokens"] == 64


def test_a_judge_model_its_endpoint_does_not_serve_is_refused_before_any_video(
    oracle_backends, video_dir, tmp_path, online, fake_endpoint
):
    """Probe b/f51: a typo in `judge_model` (the endpoint answers 404) was found only after every video of the first
    shard was answered, and a rerun asked for those answers again. The judge is now asked one token first."""
    from tpo_hf.commands import is_user_error
    from tpo_hf.curation.backends import BackendError

    def reply(request):
        if request["model"] != "judge":
            return {"error": {"message": f"The model `{request['model']}` does not exist", "code": 404}}
        return completion('{"better": 1, "contradiction": 0, "correct": 1}')

    with pytest.raises(BackendError) as refused:
        run_curation(endpoint_judged_config(video_dir, tmp_path, fake_endpoint(reply), judge_model="judje"))
    message = str(refused.value)
    assert message.startswith("The judge model cannot be used, checked before any video was sent: ")
    assert "model judje" in message and "`judje` does not exist" in message and "`judge_model`" in message
    assert (
        oracle_backends["video"].requests == [] and len(fake_endpoint.requests) == 1 and is_user_error(refused.value)
    )


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


def test_a_reply_that_ends_other_than_normally_or_refuses_is_cut_and_named(online, fake_endpoint, caplog):
    """Probe b/G8: an Azure-style content filter's partial text (`finish_reason: "content_filter"`) was taken as a
    complete answer, so it could become a chosen or rejected text. Any end other than a normal one (stop, eos_token,
    ...) marks the reply cut, named in a warning; a refusal (`message.refusal`, no content) is quoted."""
    import logging

    from tpo_hf.curation.backends import GenerationRequest, ended_early, is_truncated
    from tpo_hf.curation.openai_backend import OpenAIBackend

    cases = [
        (completion("The red square moves to the", "content_filter"), "The red square moves to the", "content_filter"),
        (completion(None, "tool_calls"), "", "'tool_calls'"),
        (completion("A red square.", "abort"), "A red square.", "'abort'"),
    ]
    refusal = completion(None)
    refusal["choices"][0]["message"]["refusal"] = "I can't help with that request."
    cases.append((refusal, "", "I can't help with that request."))
    for body, text, named in cases:
        backend = OpenAIBackend("fake-vlm", base_url=fake_endpoint(lambda r, body=body: body), max_retries=0)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            (reply,) = backend.generate([GenerationRequest("Describe.")], 8)
        assert reply == text and is_truncated(reply) and ended_early(reply) is not None
        assert named in caplog.text and backend.base_url in caplog.text
    # normal ends stay complete answers, and a cut at the budget stays a plain cut (no warning of its own)
    for finish, cut in (("stop", False), ("eos_token", False), (None, False), ("length", True)):
        backend = OpenAIBackend("m", base_url=fake_endpoint(lambda r, f=finish: completion("Red.", f)))  # as served
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            (reply,) = backend.generate([GenerationRequest("Describe.")], 8)
        assert reply == "Red." and is_truncated(reply) is cut and caplog.text == ""


def _whole_captions_and_answers_ending(answer: str, finish_reason: str):
    """An endpoint's reply function: whole captions, and answers (`answer` formatted with a number that differs per
    prompt, so chosen and rejected differ) that end with `finish_reason`."""

    def reply(request):
        prompt = json.dumps(request["messages"])
        if "Describe in detail" in prompt:
            return completion("A red square moves right, then a blue circle moves left.")
        return completion(answer.format(len(prompt) % 97), finish_reason)

    return reply


def _answers_from_endpoint(video_dir, tmp_path, base_url: str, **overrides) -> CurationConfig:
    """A curation whose video model is the endpoint at `base_url`, questions from templates, no judge."""
    settings = dict(
        video_dir=str(video_dir),
        video_model="fake-vlm",
        video_backend="openai",
        video_base_url=base_url,
        question_backend="template",
        use_judge=False,
        max_retries=0,
        output_dir=str(tmp_path / "out"),
        num_frames=4,
        sparse_num_frames=2,
        mix_ratio="1:1",
        progress=False,
    )
    return CurationConfig(**(settings | overrides))


def test_answers_cut_at_the_token_budget_drop_their_pair_and_are_counted(
    video_dir, tmp_path, online, fake_endpoint, caplog
):
    """An endpoint that stops answers at `max_tokens` (`finish_reason: "length"`) gives answers that end mid-word: they
    make no pair (`truncated_answer`), every cut reply is counted by stage in the report, and the run names the
    setting to raise."""
    import logging

    reply = _whole_captions_and_answers_ending("The red square moves to the right and then a blue circ{}", "length")

    config = _answers_from_endpoint(video_dir, tmp_path, fake_endpoint(reply))
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(NoPairsError, match="truncated_answer.*answer_max_new_tokens"),
    ):
        run_curation(config)
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    assert report["drop_reasons"] == {"truncated_answer": 4}
    assert report["truncated_replies"] == {"caption": 0, "question": 0, "answer": 8, "judge": 0}
    assert "raise answer_max_new_tokens" in caplog.text


def test_answers_that_end_early_are_counted_apart_from_budget_cuts(video_dir, tmp_path, online, fake_endpoint, caplog):
    """Content-filtered answers (`finish_reason: "content_filter"`) were counted as cut at the token budget: the run's
    warning and its no-pairs error said to raise `answer_max_new_tokens`, which does not help them, and under
    `cut_answers=keep` their partial text was paired. They are now counted apart (`ended_early_replies`), drop their
    pair whatever `cut_answers` says (`answer_ended_early`), and the messages say a larger budget does not help."""
    import logging

    reply = _whole_captions_and_answers_ending("The red square moves to the {}", "content_filter")

    config = _answers_from_endpoint(video_dir, tmp_path, fake_endpoint(reply), cut_answers="keep")
    with caplog.at_level(logging.WARNING), pytest.raises(NoPairsError) as raised:
        run_curation(config)
    assert "answer_ended_early" in str(raised.value) and "answer_max_new_tokens does not help" in str(raised.value)
    report = json.loads((tmp_path / "out" / "curation_report.json").read_text())
    assert report["drop_reasons"] == {"answer_ended_early": 4}
    assert report["truncated_replies"]["answer"] == 0 and report["ended_early_replies"]["answer"] == 8
    assert "8 answer replies ended early, not at their token budget" in caplog.text
    assert "raise answer_max_new_tokens" not in caplog.text


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


# --- endpoints that answer in unexpected ways: rate limits, non-JSON bodies, other API shapes, bad URLs ----------
@pytest.fixture
def raw_endpoint():
    """A loopback endpoint answering every POST with `reply(request_json) -> (status, headers, body bytes)`; yields a
    setter `(reply) -> base_url`, and records when each request came."""
    import http.server
    import threading
    import time

    state = {"reply": None, "times": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the stdlib's name
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["times"].append(time.monotonic())
            status, headers, body = state["reply"](request)
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def serve(reply):
        state["reply"], state["times"][:] = reply, []
        return f"http://127.0.0.1:{server.server_port}"

    serve.times = state["times"]
    yield serve
    server.shutdown()
    server.server_close()


def test_a_rate_limited_endpoint_is_retried_after_the_wait_its_retry_after_asks(online, raw_endpoint, caplog):
    """A 429 (or 503) with `Retry-After` (seconds or an HTTP date) is retried after that wait, not after the far
    shorter exponential backoff that the server refuses again; a wait above `MAX_RETRY_AFTER` is capped, and logged."""
    import email.utils
    import logging
    import time

    from tpo_hf.curation import openai_backend
    from tpo_hf.curation.backends import GenerationRequest
    from tpo_hf.curation.openai_backend import OpenAIBackend

    def limited(status, retry_after):
        def reply(request):
            if len(raw_endpoint.times) == 1:
                body = {"error": {"message": "Rate limit reached", "type": "rate_limit", "code": status}}
                return status, {"Retry-After": retry_after()}, json.dumps(body).encode()
            return 200, {}, json.dumps(completion("A red square.")).encode()

        return reply

    cases = [
        (429, lambda: "1", 1.0),
        (503, lambda: email.utils.formatdate(time.time() + 2, usegmt=True), 1.0),  # whole seconds: 1 to 2 s away
    ]
    for status, retry_after, waited in cases:
        url = raw_endpoint(limited(status, retry_after))
        backend = OpenAIBackend("fake-vlm", base_url=url, max_retries=2, retry_backoff=0.01)
        with caplog.at_level(logging.WARNING):
            assert backend.generate([GenerationRequest("Describe.")], 8) == ["A red square."]
        first, second = raw_endpoint.times
        assert second - first >= waited - 0.05
        assert "Rate limit reached" in caplog.text and "the server's Retry-After" in caplog.text

    caplog.clear()
    openai_backend.MAX_RETRY_AFTER = 0.2
    try:
        backend = OpenAIBackend("fake-vlm", base_url=raw_endpoint(limited(429, lambda: "3600")), max_retries=1)
        with caplog.at_level(logging.WARNING):
            assert backend.generate([GenerationRequest("Describe.")], 8) == ["A red square."]
    finally:
        openai_backend.MAX_RETRY_AFTER = 60.0
    assert "retry 1 in 0.2 s (the server's Retry-After, capped from 3600 s)" in caplog.text


def test_a_reply_that_is_no_chat_completion_is_named_for_what_it_is(online, raw_endpoint):
    """HTTP 200 with an HTML login page, a stream of server-sent events (a gateway that always streams) or the legacy
    completions shape (`choices[0].text`) is one error naming the endpoint and quoting the body, not retried; not a
    JSON parser's "Expecting value" nor a run of empty answers."""
    from tpo_hf.curation.backends import BackendError, GenerationRequest
    from tpo_hf.curation.openai_backend import OpenAIBackend

    html = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please sign in.</body></html>"
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "A red square."}}]}
    sse = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()
    legacy = {"object": "text_completion", "choices": [{"index": 0, "finish_reason": "stop", "text": "A red square."}]}
    for status_headers_body, match in [
        (
            (200, {"Content-Type": "text/html"}, html),
            r"not JSON; it looks like an HTML page.*begins '<!DOCTYPE.*Sign in",
        ),
        ((200, {"Content-Type": "text/event-stream"}, sse), r"not JSON; it looks like server-sent events.*not asked"),
        ((200, {}, json.dumps(legacy).encode()), r"legacy completions shape \(`choices\[0\].text`.*chat/completions"),
    ]:
        url = raw_endpoint(lambda request, reply=status_headers_body: reply)
        backend = OpenAIBackend("fake-vlm", base_url=url, max_retries=2, retry_backoff=0.01)
        with pytest.raises(BackendError, match=f"{url} .*1 attempt.*not retried.*{match}"):
            backend.generate([GenerationRequest("Describe.")], 8)
        assert len(raw_endpoint.times) == 1


def test_a_base_url_without_its_scheme_is_refused_naming_the_setting(tmp_path):
    """`127.0.0.1:8000` as a server prints it: huggingface_hub would take it for a Hub model id and ask for a token."""
    from tpo_hf.curation.backends import BackendError
    from tpo_hf.curation.openai_backend import OpenAIBackend

    common = {"video_dir": str(tmp_path), "video_model": "m", "video_backend": "openai"}
    with pytest.raises(ValueError, match=r"video_base_url='127.0.0.1:8000' has no scheme.*http://127.0.0.1:8000"):
        CurationConfig(**common, video_base_url="127.0.0.1:8000")
    with pytest.raises(ValueError, match=r"judge_base_url='localhost:8001/v1' has no scheme"):
        CurationConfig(**common, video_base_url="http://127.0.0.1:8000", judge_base_url="localhost:8001/v1")
    CurationConfig(**common, video_base_url="HTTPS://example.com/v1")
    with pytest.raises(BackendError, match=r"base_url='localhost:8000' has no scheme"):
        OpenAIBackend("m", base_url="localhost:8000")


def test_a_refused_request_quotes_the_servers_message_and_names_its_video(online, raw_endpoint):
    """An HTTP 400 (vLLM's "maximum context length", its message at the body's top level) quotes the server's message
    and names the video and query the request was about, not a bare "Bad request:"."""
    from tpo_hf.curation.backends import BackendError, GenerationRequest
    from tpo_hf.curation.candidate import Candidate
    from tpo_hf.curation.openai_backend import OpenAIBackend

    message = "This model's maximum context length is 4096 tokens. However, you requested 5123 tokens."
    body = {"object": "error", "message": message, "type": "BadRequestError", "code": 400}
    backend = OpenAIBackend("judge", base_url=raw_endpoint(lambda r: (400, {}, json.dumps(body).encode())))
    candidate = Candidate("clips/v2.mp4", "localized", "v2/0", "temporal_reasoning", segment=(0.0, 2.0))
    with pytest.raises(
        BackendError, match=r"video 'clips/v2.mp4' \(localized temporal_reasoning.*HTTP 400 .*5123 tok"
    ):
        backend.generate([GenerationRequest("Check the following.", candidate=candidate)], 8)


def test_the_readiness_check_asks_the_roles_own_token_budget_which_a_gateway_takes(
    oracle_backends, video_dir, tmp_path, online, raw_endpoint
):
    """Probe b/h30: a gateway refusing `max_tokens` below 16 (HTTP 400) stopped the run at the one-token check of the
    judge, though every real request asks more. The check asks the judge's own `judge_max_new_tokens`."""
    asked = []

    def gateway(request):
        asked.append(request["max_tokens"])
        if request["max_tokens"] < 16:
            body = {"error": {"message": "max_tokens must be at least 16", "type": "invalid_request_error"}}
            return 400, {}, json.dumps(body).encode()
        return 200, {}, json.dumps(completion("OK")).encode()

    config = endpoint_judged_config(video_dir, tmp_path, raw_endpoint(gateway))
    config.judge_max_new_tokens = 20
    assert build_backends(config).judge is not None
    assert asked == [20]


def test_trash_and_system_folders_of_drives_and_nas_shares_are_left_out_of_video_dir(tmp_path, caplog):
    """Probe b/h44: deleted videos in a USB drive's `$RECYCLE.BIN/` and a Synology share's `#recycle/` (and the
    thumbnails in `@eaDir/`, `System Volume Information/`, `lost+found/`) were curated with the videos, silently."""
    import logging

    from tpo_hf.curation.inputs import list_videos

    videos = tmp_path / "videos"
    kept = ["keep.mp4", "recycled/clip.mp4"]  # an ordinary folder whose name only resembles a trash folder's
    left_out = [
        "$RECYCLE.BIN/S-1-5-21/$R8K2J1.mp4",
        "$Recycle.Bin/old.mp4",
        "#recycle/deleted.mp4",
        "@eaDir/keep.mp4/SYNOVIDEO_VIDEO_SCREENSHOT.mp4",
        "System Volume Information/copy.mp4",
        "lost+found/#1234.mp4",
        ".Trashes/501/gone.mp4",
    ]
    for name in kept + left_out:
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        (videos / name).write_bytes(b"video")
    config = CurationConfig(video_dir=str(videos), video_model="m", output_dir=str(tmp_path / "out"))
    with caplog.at_level(logging.WARNING):
        assert [item.video_id for item in list_videos(config)] == kept
    assert "Left out 7 hidden video file(s)" in caplog.text
    assert "#recycle/deleted.mp4" in caplog.text and "$RECYCLE.BIN" in caplog.text


def test_a_link_to_a_video_already_listed_is_left_out_naming_both(tmp_path, caplog):
    """Probe b/h25: `linkA.mp4 -> a.mp4` beside its target was curated as a second video (own id, own pairs: a
    duplicate in the dataset). The first name in sorted order is kept; a link to a file outside `video_dir` that no
    other name lists is a video like any other."""
    import logging

    from tpo_hf.curation.inputs import list_videos

    videos, outside = tmp_path / "videos", tmp_path / "elsewhere"
    videos.mkdir()
    outside.mkdir()
    (videos / "a.mp4").write_bytes(b"video a")
    (outside / "c.mp4").write_bytes(b"video c")
    (videos / "linkA.mp4").symlink_to("a.mp4")
    (videos / "c.mp4").symlink_to(outside / "c.mp4")
    config = CurationConfig(video_dir=str(videos), video_model="m", output_dir=str(tmp_path / "out"))
    with caplog.at_level(logging.WARNING):
        assert [item.video_id for item in list_videos(config)] == ["a.mp4", "c.mp4"]
    assert "Left out 1 video file(s)" in caplog.text and "linkA.mp4 (the same file as a.mp4)" in caplog.text


def test_a_hard_link_to_a_video_already_listed_is_left_out_naming_both(tmp_path, caplog):
    """Probe b/i28: a hard link `hard.mp4` to `a.mp4` has its own resolved path, so the link check let it be curated
    as a second video. Files are now told apart by device and inode: the first name in sorted order is kept."""
    import logging
    import os

    from tpo_hf.curation.inputs import list_videos

    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"video a")
    (videos / "b.mp4").write_bytes(b"video a")  # a copy, not a link: another file (same bytes are out of scope)
    os.link(videos / "a.mp4", videos / "hard.mp4")
    config = CurationConfig(video_dir=str(videos), video_model="m", output_dir=str(tmp_path / "out"))
    with caplog.at_level(logging.WARNING):
        assert [item.video_id for item in list_videos(config)] == ["a.mp4", "b.mp4"]
    assert "Left out 1 video file(s)" in caplog.text and "hard.mp4 (the same file as a.mp4)" in caplog.text


def test_a_dtype_torch_does_not_name_is_refused_with_the_names_to_use(tmp_path):
    """Probe b/h28: `tpo-hf curate --dtype bf16` raised `AttributeError: module 'torch' has no attribute 'bf16'` when
    the local model loaded; the setting is now checked with the config, by the rule eval uses."""
    from tpo_hf.commands import is_user_error

    with pytest.raises(ValueError, match=r"dtype='bf16' is not a dtype; use one of auto, bfloat16") as refused:
        CurationConfig(video_dir=str(tmp_path), video_model="m", dtype="bf16")
    assert is_user_error(refused.value)
    assert CurationConfig(video_dir=str(tmp_path), video_model="m", dtype="bfloat16").dtype == "bfloat16"


def test_a_verdict_overruled_or_qualified_after_its_checks_is_unread():
    """Probe b/j44: three passing checks followed by an overall rejection or a caveat (`Overall: No, I would reject
    this pair.`, `Verdict: reject`, `However, the question itself is ambiguous.`, `(Correction: 3. No)`) were read
    as Yes, No, Yes and the pair kept. Such a reply is unread (the revised check, or all three); an overall Yes, a
    Reason line and an explanation keep it."""
    from tpo_hf.curation import parse_judge_reply

    block = "1. Yes\n2. No\n3. Yes\n"
    for overruling in (
        "Overall: No, I would reject this pair.",
        "Verdict: reject",
        "However, the question itself is ambiguous.",
    ):
        verdict = parse_judge_reply(block + overruling)
        assert (verdict.better, verdict.contradiction, verdict.correct) == (None, None, None), overruling
        assert verdict.drop_reason() == "judge_unparseable"
    assert parse_judge_reply(block + "(Correction: 3. No)").correct is None
    for keeping in ("Overall: Yes, keep it.", "Reason: fine, however short.", "Answer 1 is more detailed."):
        assert parse_judge_reply(block + keeping).passed, keeping


def test_a_question_reply_without_a_question_or_stating_its_answer_is_read_apart():
    """Probes b/j43, b/j42: `Question:\\nAnswer: red` (a blank question) was read as the question "Answer: red",
    and `Question: What colour is the first square? (Answer: red)` kept the answer in the question: the video model
    was asked, and the pair trained on, a question that states its answer. A blank question is unparseable; an
    answer after the question mark is the reply's answer."""
    from tpo_hf.curation.prompts import parse_question_reply

    assert parse_question_reply("Question:\nAnswer: red").status == "unparseable"
    assert parse_question_reply("Question:\nWhat moves first?\nAnswer: red").question == "What moves first?"
    for reply in (
        "Question: What colour is the first square? (Answer: red)",
        "Question: What colour is the first square? Answer: red",
    ):
        parsed = parse_question_reply(reply)
        assert (parsed.status, parsed.question, parsed.answer) == ("ok", "What colour is the first square?", "red")
    assert parse_question_reply("Question: Which answer: left or right?").question == "Which answer: left or right?"
