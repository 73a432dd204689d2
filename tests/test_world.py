"""The synthetic temporal world: every question's answer is what the timeline says, rendering shows what the
timeline says, splits never share a video, and the curation roles (question writer, timeline judge) behave."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from tpo_hf.curation.backends import GenerationRequest
from tpo_hf.curation.candidate import Candidate
from tpo_hf.curation.prompts import parse_judge_reply, parse_question_reply
from tpo_hf.eval.answers import extract_answer_letter
from tpo_hf.video import load_video
from tpo_hf.world.backends import WorldJudgeBackend, WorldQuestionBackend, split_mcq_prompt
from tpo_hf.world.corpus import CorpusSpec, corpus_videos, curation_rows, eval_samples, write_corpus
from tpo_hf.world.questions import TEMPLATES, ask, caption, parse_caption, true_answer
from tpo_hf.synthetic import COLOURS
from tpo_hf.world.timeline import (
    FPS,
    MOTIONS,
    WorldScene,
    WorldVideo,
    make_video,
    render_scene,
    render_video,
)

KINDS = sorted(TEMPLATES)


def _videos(count=40, seed=0):
    rng = random.Random(seed)
    return [make_video(f"v{i}", rng, rng.randint(1, 16), with_needle=i % 2 == 0) for i in range(count)]


def _expected(video: WorldVideo, question) -> str:
    """The answer computed here, independently of `tpo_hf.world.questions`, from the timeline."""
    events = [s for s in video.scenes if not s.needle]
    names = [f"{s.colour} {s.shape}" for s in events]
    text = question.question
    if question.kind == "motion":
        return events[names.index(text.removeprefix("Which way does the ").removesuffix(" move?"))].motion
    if question.kind == "after":
        name = text.removeprefix("What colour is the shape right after the ").removesuffix("?")
        return events[names.index(name) + 1].colour
    if question.kind == "before":
        name = text.removeprefix("What shape comes right before the ").removesuffix("?")
        return events[names.index(name) - 1].shape
    if question.kind == "first":
        return events[0].colour
    if question.kind == "last":
        return events[-1].colour
    if question.kind == "order":
        a, b = text.removeprefix("Which comes first, the ").removesuffix("?").split(" or the ")
        return f"the {a if names.index(a) < names.index(b) else b}"
    needle = next(s for s in video.scenes if s.needle)
    return needle.colour


@pytest.mark.parametrize("kind", KINDS)
def test_every_answer_is_what_the_timeline_says(kind):
    rng = random.Random(kind)
    asked = 0
    for video in _videos():
        question = ask(video, kind, rng)
        if question is None:
            continue
        asked += 1
        assert question.answer == _expected(video, question)
        assert question.answer in question.options and len(set(question.options)) == len(question.options)
        assert extract_answer_letter(question.answer, list(question.options)) == question.letter
        assert true_answer(video, question.question, list(question.options))[0] == question.answer
        # the prompt round-trips through the judge's reading of it
        assert split_mcq_prompt(question.prompt) == (question.question, list(question.options))
    assert asked >= 10


def test_names_are_unique_and_neighbours_differ():
    for video in _videos(60):
        events = video.events
        assert len({e.name for e in events}) == len(events)
        assert all(a.colour != b.colour for a, b in zip(events, events[1:]))


def test_unanswerable_questions_are_refused():
    video = WorldVideo("x", (WorldScene("red", "ring", "left"), WorldScene("blue", "square", "up")))
    rng = random.Random(0)
    assert ask(video, "after", rng, target=1) is None  # nothing after the last scene
    assert ask(video, "needle", rng) is None  # no needle
    options = ["red", "blue", "green", "white"]
    assert true_answer(video, "What colour is the shape right after the green bar?", options)[0] is None
    assert true_answer(video, "What colour is the shape right after the blue square?", options)[0] is None
    assert true_answer(video, "How are you?", options)[0] is None


def test_captions_round_trip():
    for video in _videos(20):
        assert parse_caption(caption(video.scenes)) == list(
            WorldScene(s.colour, s.shape, "still" if s.needle else s.motion, s.needle) for s in video.scenes
        )


def test_rendering_shows_the_timeline():
    for colour in COLOURS:
        for motion in MOTIONS:
            frames = render_scene(WorldScene(colour, "square", motion))
            assert frames.shape[0] == 4
            centroids = []
            for frame in frames:
                mask = np.all(frame == COLOURS[colour], axis=-1)
                assert mask.sum() > 50
                ys, xs = np.nonzero(mask)
                centroids.append((ys.mean(), xs.mean()))
            dy, dx = np.subtract(centroids[-1], centroids[0])
            assert {"left": dx < 0, "right": dx > 0, "up": dy < 0, "down": dy > 0}[motion]
    needle = render_scene(WorldScene("cyan", "circle", "still", needle=True))
    assert needle.shape[0] == 2 and np.all(needle[:, 16, 16] == COLOURS["cyan"])


def test_corpus_on_disk_decodes_to_the_timeline(tmp_path):
    spec = CorpusSpec("train", 3, 2, 4, needle_probability=1.0, seed=5)
    videos = write_corpus(spec, tmp_path)
    for video in videos:
        frames, metadata = load_video(tmp_path / f"{video.video_id}.mp4")
        assert len(frames) == video.num_frames and metadata["fps"] == pytest.approx(FPS)
        expected = render_video(video).astype(int)
        assert np.abs(frames.astype(int) - expected).mean() < 6  # H.264 keeps the picture
        assert json.loads((tmp_path / f"{video.video_id}.json").read_text())["video_id"] == video.video_id
    assert write_corpus(spec, tmp_path) == videos  # deterministic; second call keeps the files


def test_splits_never_share_a_video():
    train = corpus_videos(CorpusSpec("train", 50, 8, 16, 0.5, seed=0))
    held_out = corpus_videos(CorpusSpec("eval8", 50, 8, 8, 0.5, seed=0))
    assert not {v.scenes for v in train} & {v.scenes for v in held_out}
    assert corpus_videos(CorpusSpec("train", 50, 8, 16, 0.5, seed=1))[0].scenes != train[0].scenes


def test_eval_samples_and_curation_rows():
    videos = corpus_videos(CorpusSpec("eval12", 5, 12, 12, 1.0))
    samples = eval_samples(videos, {kind: 1 for kind in KINDS})
    assert len(samples) == 5 * len(KINDS)
    for sample in samples:
        video = next(v for v in videos if sample.video == f"{v.video_id}.mp4")
        answer = true_answer(video, sample.question, sample.options)[0]
        assert sample.options.index(answer) == "ABCD".index(sample.answer)
        assert sample.num_frames == video.num_frames and sample.breakdowns["scenes"] == "12"
    rows = curation_rows(videos, comprehensive_per_video=2)
    assert len(rows) == 10
    for row in rows:
        video = next(v for v in videos if row["video"] == f"{v.video_id}.mp4")
        assert row["caption"] == caption(video.scenes)
        question, options = split_mcq_prompt(row["question"])
        assert "ABCD"[options.index(true_answer(video, question, options)[0])] == row["answer"]


def _judge_request(video_path, question, chosen, rejected):
    candidate = Candidate(video_path.name, "localized", "localized0", "temporal", question=question.prompt,
                          chosen=chosen, rejected=rejected)
    return GenerationRequest("judge prompt", candidate=candidate)


def test_timeline_judge_applies_the_three_checks(tmp_path):
    (video,) = write_corpus(CorpusSpec("judge", 1, 6, 6, 0.0, seed=3), tmp_path)
    path = tmp_path / f"{video.video_id}.mp4"
    question = ask(video, "after", random.Random(0))
    wrong = next(o for o in question.options if o != question.answer)
    judge = WorldJudgeBackend(tmp_path)
    replies = judge.generate(
        [
            _judge_request(path, question, question.answer, wrong),  # kept
            _judge_request(path, question, question.letter, wrong),  # a letter is an answer too
            _judge_request(path, question, wrong, question.answer),  # chosen wrong
            _judge_request(path, question, question.answer, question.answer),  # not better
            _judge_request(path, question, "maybe", wrong),  # names no option
        ],
        max_new_tokens=64,
    )
    verdicts = [parse_judge_reply(reply) for reply in replies]
    assert [v.drop_reason() for v in verdicts] == [
        None,
        None,
        "judge_not_better",
        "judge_not_better",
        "judge_not_better",
    ]
    assert verdicts[2].correct is False and verdicts[4].correct is False
    ghost = ask(WorldVideo("g", (WorldScene("white", "bar", "up"), WorldScene("red", "ring", "up"))), "after",
                random.Random(0))
    (reply,) = judge.generate([_judge_request(path, ghost, ghost.answer, "x")], max_new_tokens=64)
    verdict = parse_judge_reply(reply)
    assert verdict.contradiction is True and not verdict.passed
    with pytest.raises(FileNotFoundError, match="timeline"):
        judge.generate([_judge_request(tmp_path / "missing.mp4", question, "a", "b")], max_new_tokens=8)


def test_question_writer_reads_the_caption():
    writer = WorldQuestionBackend(seed=0)
    scenes = (WorldScene("red", "ring", "left"), WorldScene("blue", "square", "up"))
    requests = [
        GenerationRequest("prompt", candidate=Candidate("v.mp4", "localized", "l0", task, caption=caption(scenes)))
        for task in ("temporal", "action", "object", "descriptive")
    ]
    requests.append(
        GenerationRequest("prompt", candidate=Candidate("v.mp4", "localized", "l0", "action", caption="No name."))
    )
    replies = writer.generate(requests, max_new_tokens=128)
    for reply in replies[:-1]:
        parsed = parse_question_reply(reply)
        assert parsed.status == "ok"
        question, options = split_mcq_prompt(parsed.question)
        answer, _ = true_answer(WorldVideo("c", scenes), question, options)
        assert answer is not None and parsed.answer == "ABCD"[options.index(answer)]
    assert parse_question_reply(replies[-1]).status == "none"
