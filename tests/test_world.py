"""The synthetic temporal world: every question's answer is what the timeline says, rendering shows what the
timeline says, splits never share a video, and the curation roles (question writer, timeline judge) behave."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tpo_hf.curation.backends import GenerationRequest
from tpo_hf.curation.candidate import Candidate
from tpo_hf.curation.prompts import parse_judge_reply, parse_question_reply
from tpo_hf.eval.answers import extract_answer_letter, split_mcq_prompt
from tpo_hf.synthetic import COLOURS
from tpo_hf.video import load_video
from tpo_hf.world.backends import WorldJudgeBackend, WorldQuestionBackend
from tpo_hf.world.corpus import CorpusSpec, corpus_videos, curation_rows, eval_samples, write_corpus
from tpo_hf.world.questions import TEMPLATES, ask, caption, match_question, parse_caption, true_answer
from tpo_hf.world.timeline import (
    FPS,
    WorldScene,
    WorldVideo,
    make_video,
    read_timeline,
    render_scene,
    render_video,
)

KINDS = sorted(TEMPLATES)


def _videos(count=40, seed=0):
    rng = random.Random(seed)
    return [make_video(f"v{i}", rng, rng.randint(1, 9), with_needle=i % 2 == 0) for i in range(count)]


def _expected(video: WorldVideo, question) -> str:
    """The answer computed here, independently of `tpo_hf.world.questions`, from the timeline."""
    events = [s for s in video.scenes if not s.needle]
    colours = [s.colour for s in events]
    text = question.question
    if question.kind in ("after", "before"):
        anchor = text.removesuffix(" shape?").split()[-1]
        return colours[colours.index(anchor) + (1 if question.kind == "after" else -1)]
    if question.kind == "first":
        return colours[0]
    if question.kind == "last":
        return colours[-1]
    if question.kind == "order":
        a, b = text.removeprefix("Which comes first, the ").removesuffix(" shape?").split(" shape or the ")
        return f"the {a if colours.index(a) < colours.index(b) else b} shape"
    return next(s for s in video.scenes if s.needle).colour


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
        assert match_question(question.question)[0] == kind
        # the prompt round-trips through the judge's reading of it
        assert split_mcq_prompt(question.prompt) == (question.question, list(question.options))
    assert asked >= 10


def test_colours_are_unique_so_names_are():
    for video in _videos(60):
        assert len({scene.colour for scene in video.scenes}) == len(video.scenes)  # the needle's colour too
    with pytest.raises(ValueError, match="at most"):
        make_video("x", random.Random(0), len(COLOURS))


def test_unanswerable_questions_are_refused():
    video = WorldVideo("x", (WorldScene("red"), WorldScene("blue")))
    rng = random.Random(0)
    assert ask(video, "after", rng, target=1) is None  # nothing after the last scene
    assert ask(video, "needle", rng) is None  # no needle
    options = ["red", "blue", "green", "white"]
    assert true_answer(video, "What colour is the shape right after the green shape?", options)[0] is None
    assert true_answer(video, "What colour is the shape right after the blue shape?", options)[0] is None
    assert true_answer(video, "How are you?", options)[0] is None


def test_captions_round_trip():
    for video in _videos(20):
        assert parse_caption(caption(video.scenes)) == list(video.scenes)


def test_rendering_shows_the_timeline():
    for colour in COLOURS:
        (frame,) = render_scene(WorldScene(colour))
        ys, xs = np.nonzero(np.all(frame == COLOURS[colour], axis=-1))
        assert len(ys) > 300 and abs(ys.mean() - 15.5) < 1 and abs(xs.mean() - 15.5) < 1  # a big centred square
        assert np.all(frame[0, 0] == 128)
    (needle,) = render_scene(WorldScene("cyan", needle=True))
    needle_pixels = np.all(needle == COLOURS["cyan"], axis=-1).sum()
    assert needle_pixels > len(ys) and np.all(needle[0, 0] == 128)  # the needle is the bigger picture


def test_corpus_on_disk_decodes_to_the_timeline(tmp_path):
    spec = CorpusSpec("train", 3, 2, 6, needle_probability=1.0, seed=5)
    videos = write_corpus(spec, tmp_path)
    for video in videos:
        frames, metadata = load_video(tmp_path / f"{video.video_id}.mp4")
        assert len(frames) == video.num_frames and metadata["fps"] == pytest.approx(FPS)
        expected = render_video(video).astype(int)
        assert np.abs(frames.astype(int) - expected).mean() < 6  # H.264 keeps the picture
        assert json.loads((tmp_path / f"{video.video_id}.json").read_text())["video_id"] == video.video_id
    assert write_corpus(spec, tmp_path) == videos  # deterministic; second call keeps the files


def test_splits_never_share_a_video():
    train = corpus_videos(CorpusSpec("train", 50, 6, 9, 0.5, seed=0))
    held_out = corpus_videos(CorpusSpec("eval8", 50, 8, 8, 0.5, seed=0))
    assert not {v.scenes for v in train} & {v.scenes for v in held_out}
    assert corpus_videos(CorpusSpec("train", 50, 6, 9, 0.5, seed=1))[0].scenes != train[0].scenes


def test_eval_samples_and_curation_rows():
    videos = corpus_videos(CorpusSpec("eval9", 5, 9, 9, 1.0))
    samples = eval_samples(videos, {kind: 1 for kind in KINDS})
    assert len(samples) == 5 * len(KINDS)
    for sample in samples:
        video = next(v for v in videos if sample.video == f"{v.video_id}.mp4")
        answer = true_answer(video, sample.question, sample.options)[0]
        assert sample.options.index(answer) == "ABCD".index(sample.answer)
        assert sample.num_frames == video.num_frames and sample.breakdowns["scenes"] == "9"
    rows = curation_rows(videos, comprehensive_per_video=2)
    assert len(rows) == 10
    for row in rows:
        video = next(v for v in videos if row["video"] == f"{v.video_id}.mp4")
        assert row["caption"] == caption(video.scenes)
        question, options = split_mcq_prompt(row["question"])
        assert "ABCD"[options.index(true_answer(video, question, options)[0])] == row["answer"]


def _judge_request(video_path, question, chosen, rejected):
    candidate = Candidate(
        video_path.name,
        "localized",
        "localized0",
        "temporal",
        question=question.prompt,
        chosen=chosen,
        rejected=rejected,
    )
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
    absent = next(c for c in COLOURS if c not in {s.colour for s in video.scenes})
    ghost = ask(WorldVideo("g", (WorldScene(absent), WorldScene(video.scenes[0].colour))), "after", random.Random(0))
    (reply,) = judge.generate([_judge_request(path, ghost, ghost.answer, "x")], max_new_tokens=64)
    verdict = parse_judge_reply(reply)
    assert verdict.contradiction is True and not verdict.passed
    with pytest.raises(FileNotFoundError, match="timeline"):
        judge.generate([_judge_request(tmp_path / "missing.mp4", question, "a", "b")], max_new_tokens=8)


def test_question_writer_reads_the_caption():
    writer = WorldQuestionBackend(seed=0)
    scenes = (WorldScene("red"), WorldScene("blue"))
    requests = [
        GenerationRequest("prompt", candidate=Candidate("v.mp4", "localized", "l0", task, caption=caption(scenes)))
        for task in ("temporal", "action", "object", "summarization")
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


def test_question_writer_asks_the_curated_localized_kinds():
    """By default the writer asks "right after X" only (its "before" pairs caused the short-clip forgetting on the dev
    set); both kinds stay available, and the held-out questions still ask both."""
    colours = list(COLOURS)
    captions = [caption(tuple(WorldScene(c) for c in colours[i : i + 3])) for i in range(len(colours) - 2)]
    requests = [
        GenerationRequest("prompt", candidate=Candidate("v.mp4", "localized", "l0", task, caption=text))
        for text in captions
        for task in ("temporal", "action")
    ]

    def kinds_asked(writer):
        replies = writer.generate(requests, max_new_tokens=128)
        return {match_question(split_mcq_prompt(parse_question_reply(r).question)[0])[0] for r in replies}

    assert kinds_asked(WorldQuestionBackend(seed=0)) == {"after"}
    assert kinds_asked(WorldQuestionBackend(seed=0, localized_kinds=("after", "before"))) == {"after", "before"}
    with pytest.raises(ValueError, match="unknown kinds \\['first'\\]"):
        WorldQuestionBackend(localized_kinds=("first",))


def test_heldout_questions_load_as_the_tpo_world_benchmark(tmp_path):
    from tpo_hf.eval.benchmarks import load_benchmark
    from tpo_hf.world.corpus import eval_rows

    videos = corpus_videos(CorpusSpec("eval4", 3, 4, 4, 1.0))
    samples = eval_samples(videos, {kind: 1 for kind in KINDS})
    path = tmp_path / "heldout.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in eval_rows(samples)))
    loaded = load_benchmark("tpo_world", str(path))
    assert [(s.sample_id, s.prompt, s.answer, s.num_frames, s.breakdowns) for s in loaded] == [
        (s.sample_id, s.prompt, s.answer, s.num_frames, s.breakdowns) for s in samples
    ]


def test_world_roles_plug_in_by_name(tmp_path):
    from tpo_hf.curation.backends import build_backends
    from tpo_hf.curation.config import CurationConfig

    config = CurationConfig(
        video_dir=str(tmp_path),
        video_model="unused",
        video_backend="world_questions",
        question_backend="world_questions",
        judge_backend="world_judge",
    )
    with pytest.raises(ValueError, match="cannot take the video role"):
        build_backends(config)
    config.video_backend = "transformers"
    from tpo_hf.curation.backends import backend_factory

    question = backend_factory("world_questions")(config, "question", None)
    judge = backend_factory("world_judge")(config, "judge", None)
    assert isinstance(question, WorldQuestionBackend) and isinstance(judge, WorldJudgeBackend)
    assert judge.video_root == str(tmp_path)


def test_curation_keeps_judged_anchors_from_short_videos(tmp_path):
    """With `anchor_ratio`, whole-video questions on 2-3-scene videos (whose dense and sparse views are the same
    frames, so they make no pair) are answered once by the shipped base and kept as anchor rows when the timeline
    judge finds the answer right: chosen == rejected, every kept answer the timeline's, every wrong one dropped."""
    from tpo_hf.curation.run import run_curation
    from tpo_hf.world.base import SHIPPED_BASE
    from tpo_hf.world.corpus import write_curation_inputs
    from tpo_hf.world.experiment import ExperimentConfig, curation_config
    from tpo_hf.world.timeline import read_timeline

    corpus = tmp_path / "corpus"
    videos = write_corpus(CorpusSpec("train", 16, 2, 3, 0.5, 0), corpus)
    inputs = write_curation_inputs(videos, tmp_path / "inputs.jsonl", 3, 0)

    def curate(name: str, anchor_ratio: float):
        # the experiment's curation settings on a pool with no whole-video pairs (2-3 scenes), so localized pairs
        # only (10:0) and no target size; every anchor kept (no option balancing), shards and output of their own
        experiment = ExperimentConfig(
            localized_per_video=1, segment_seconds=1.0, balance_chosen_options=False, anchor_ratio=anchor_ratio
        )
        settings = curation_config(experiment, 0, str(SHIPPED_BASE), tmp_path, inputs, "10:0")
        work = dict(target_size=None, work_dir=str(tmp_path / f"{name}-shards"), output_dir=str(tmp_path / name))
        return run_curation(dataclasses.replace(settings, **work))

    plain = curate("plain", 0.0)
    assert plain.report["drop_reasons"]["identical_views"] > 0 and not any(plain.dataset["anchor"])

    anchored = curate("anchored", 100.0)  # more than there are: every kept anchor is in the set
    rows = list(anchored.dataset)
    anchors = [row for row in rows if row["anchor"]]
    assert anchors and len(anchors) == anchored.report["anchors_before_mix"] == anchored.report["final"]["anchors"]
    assert len(rows) - len(anchors) == len(plain.dataset)  # the pairs are the same count
    for row in anchors:
        assert row["chosen"] == row["rejected"] and row["keep_reason"] == "kept_anchor"
        assert row["granularity"] == "comprehensive" and row["judge_correct"] is True
        question, options = split_mcq_prompt(row["prompt"])
        truth, _ = true_answer(read_timeline((corpus / row["video"]).with_suffix(".json")), question, options)
        assert row["chosen"] == truth
    # anchor candidates the base answered wrongly were dropped, for the reason they would have been without anchors
    shards = [json.loads(p.read_text()) for p in sorted((tmp_path / "anchored-shards").rglob("shard-*.json"))]
    answered_wrong = [
        r
        for shard in shards
        for r in shard["records"]
        if r["keep_reason"] in ("identical_views", "identical_answers") and r["chosen"]
    ]
    assert answered_wrong and all(r["judge_correct"] is False and r["chosen"] == r["rejected"] for r in answered_wrong)
    # the judge's pass rates are the pairs' (an anchor fails "answer 1 better than answer 2" by construction)
    assert anchored.report["judge"] == plain.report["judge"]
    card = (tmp_path / "anchored" / "README.md").read_text()
    assert f"**Anchor rows**: {len(anchors)} of the {len(rows)} rows" in card


def test_world_corpus_command(tmp_path, capsys):
    from tpo_hf.world.cli import cli_main

    cli_main(["corpus", "--output_dir", str(tmp_path), "--num_videos", "2", "--needle_probability", "1"])
    assert "2 videos with timelines" in capsys.readouterr().out
    assert len(list(tmp_path.glob("*.mp4"))) == 2 and len(list(tmp_path.glob("train-0-*.json"))) == 2
    rows = [json.loads(line) for line in (tmp_path / "curation_inputs.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(row["video"].endswith(".mp4") for row in rows)


def test_shipped_base_matches_the_default_pretraining_config():
    """The shipped base is what `tpo-hf world pretrain` builds by default, so nothing is rebuilt at run time (fields
    added later, at their default, leave the fingerprint unchanged)."""
    from tpo_hf.world.base import SHIPPED_BASE, _matches, config_fingerprint
    from tpo_hf.world.pretrain import PretrainConfig

    assert _matches(SHIPPED_BASE, PretrainConfig())
    assert config_fingerprint(PretrainConfig(family="qwen2_vl")) != config_fingerprint(PretrainConfig())


def test_the_experiment_scripts_default_base_is_shipped():
    """`benchmarks/method_validity.py`'s default design pretrains its base on the held-out layout; that base ships
    with the package (built once, 20-50 minutes on 2 cores), so the one command stays within its hour on a fresh
    machine. It loads with the documented video prompt it records, on every transformers release allowed."""
    import importlib.util

    from tpo_hf.processing import VIDEO_CONFIG_NAME, VideoPreferenceProcessor
    from tpo_hf.world.base import SHIPPED_HELDOUT_LAYOUT_BASE, _matches, world_base_model
    from tpo_hf.world.experiment import ExperimentConfig, base_pretraining

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "method_validity.py"
    spec = importlib.util.spec_from_file_location("method_validity_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pretraining = base_pretraining(ExperimentConfig(**module.SCRIPT_DEFAULTS))
    assert _matches(SHIPPED_HELDOUT_LAYOUT_BASE, pretraining)  # checked first: a mismatch would start a build
    assert world_base_model(pretraining) == SHIPPED_HELDOUT_LAYOUT_BASE
    record = json.loads((SHIPPED_HELDOUT_LAYOUT_BASE / VIDEO_CONFIG_NAME).read_text())
    processor = VideoPreferenceProcessor.from_pretrained(SHIPPED_HELDOUT_LAYOUT_BASE)  # checks the layout
    assert record["video_prompt_layout"] == processor.video_prompt_layout()
    assert "<0.0 seconds><|vision_start|><|video_pad|>*<|vision_end|><1.0 seconds>" in record["video_prompt_layout"]


def test_shipped_base_records_its_video_prompt(caplog):
    """The base was trained on Qwen3-VL's video prompt as transformers 5.24 wrote it (one more pair around all
    frames), which it records; tpo-hf writes that layout on the installed release too (any release it allows), so
    the base's numbers do not depend on the release."""
    from tpo_hf.processing import VIDEO_CONFIG_NAME, VideoPreferenceProcessor
    from tpo_hf.world.base import SHIPPED_BASE

    record = json.loads((SHIPPED_BASE / VIDEO_CONFIG_NAME).read_text())
    processor = VideoPreferenceProcessor.from_pretrained(SHIPPED_BASE)  # checks the layout
    assert record["video_prompt_layout"] == processor.video_prompt_layout()
    layout = record["video_prompt_layout"]
    assert "user\n<|vision_start|><0.0 seconds><|vision_start|><|video_pad|>*<|vision_end|><1.0 seconds>" in layout
    assert "<|vision_end|><|vision_end|>Which?" in layout
    assert "without a video prompt layout" not in caplog.text
    pretrain_record = json.loads((SHIPPED_BASE / "world_pretrain.json").read_text())
    assert pretrain_record["transformers_version"] == record["transformers_version"]


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl"])
def test_world_model_families_train_on_a_clip(family):
    """Both world architectures encode a pretraining batch (one visual token per frame; Qwen3-VL's frames each after
    their timestamp) and take a gradient step with loss on the answers only."""
    import torch

    from tpo_hf.processing import VideoPreferenceProcessor
    from tpo_hf.world.model import build_world_model
    from tpo_hf.world.pretrain import (
        PretrainConfig,
        encode_batch,
        pair_around_frames,
        pretrain,
        shifted_position_ids,
        training_example,
    )

    model, hf_processor = build_world_model(0, hidden_size=32, num_layers=1, family=family)
    processor = VideoPreferenceProcessor(hf_processor, num_frames=None, video_fps=FPS)
    rng = random.Random(0)
    examples = [training_example(rng, PretrainConfig(family=family, min_scenes=3), i) for i in range(2)]
    inputs = encode_batch(processor, examples)
    frames = sum(len(frames) for _, _, frames in examples)
    assert int((inputs["input_ids"] == processor.video_token_id).sum()) == frames
    text = hf_processor.tokenizer.decode(inputs["input_ids"][0])
    assert ("<1.0 seconds>" in text) == (family == "qwen3_vl")
    loss = model(**inputs).loss
    loss.backward()
    assert torch.isfinite(loss) and model.lm_head.weight.grad.abs().sum() > 0

    # a gap of filler tokens right after the video's last frame (PretrainConfig.max_gap_tokens); the answer labels
    # are unchanged
    gapped = encode_batch(processor, examples, gaps=[0, 3])

    def answer_ids(batch, row):
        return batch["input_ids"][row][batch["labels"][row] != -100].tolist()

    for row, gap in enumerate([0, 3]):
        ids = gapped["input_ids"][row][gapped["attention_mask"][row] == 1].tolist()
        plain = inputs["input_ids"][row][inputs["attention_mask"][row] == 1].tolist()
        end = len(plain) - plain[::-1].index(hf_processor.tokenizer.convert_tokens_to_ids("<|vision_end|>"))
        (filler,) = hf_processor.tokenizer("\n", add_special_tokens=False)["input_ids"]
        assert ids == plain[:end] + [filler] * gap + plain[end:]
        assert answer_ids(gapped, row) == answer_ids(inputs, row)

    # the loss is on the answer and its end token alone; format 1's mask (the shipped base's) counted Qwen2-VL's
    # prompt right, and on Qwen3-VL also took the prompt's last tokens (as many as the timestamps and per-frame pairs)
    for row, (_, answer, _) in enumerate(examples):
        assert hf_processor.tokenizer.decode(answer_ids(inputs, row)) == answer + hf_processor.tokenizer.eos_token
    format_1 = encode_batch(processor, examples, answer_only=False)
    if family == "qwen2_vl":
        assert torch.equal(format_1["labels"], inputs["labels"])
    else:
        processor.use_video_prompt_layout(pair_around_frames(processor))
        format_1 = encode_batch(processor, examples, answer_only=False)
        for row in range(len(examples)):
            answer = answer_ids(inputs, row)
            assert answer_ids(format_1, row)[-len(answer) :] == answer and len(answer_ids(format_1, row)) > len(answer)

    # positions moved (PretrainConfig.max_time_offset: frames later in time, Qwen2-VL; max_question_offset: the
    # question further from the video); offsets 0 give the model's own positions
    def positions(frame_offset, question_offset):
        return shifted_position_ids(model, inputs, processor.video_token_id, [0, frame_offset], [0, question_offset])

    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, model(**inputs, position_ids=positions(0, 0)).logits)
    frame_shift = 4 if family == "qwen2_vl" else 0
    own, shifted = positions(0, 0), positions(frame_shift, 3)
    frames = (inputs["input_ids"][1] == processor.video_token_id).nonzero().flatten()
    start, end = int(frames[0]), int(frames[-1]) + 1
    assert torch.equal(shifted[:, 0], own[:, 0]) and torch.equal(shifted[:, 1, :start], own[:, 1, :start])
    assert torch.equal(shifted[0, 1, start:end], own[0, 1, start:end] + frame_shift)  # time only
    assert torch.equal(shifted[1:, 1, start:end], own[1:, 1, start:end])
    assert torch.equal(shifted[:, 1, end:], own[:, 1, end:] + frame_shift + 3)  # the text after the video moves
    if family == "qwen3_vl":  # its frames follow their timestamps as text: moving the frames alone is refused
        with pytest.raises(ValueError, match="max_time_offset"):
            pretrain("unused", PretrainConfig(family=family, max_time_offset=2))
    with pytest.raises(ValueError, match="family"):
        build_world_model(family="llava")


def test_experiment_reports_pairs_and_accuracy_per_question_kind(tmp_path):
    """The method-validity report breaks long-video accuracy down by question kind and counts the curated pairs
    of each kind, read back from the saved pair set (a kind without pairs is one TPO cannot teach)."""
    from datasets import Dataset, load_from_disk

    from tpo_hf.world.experiment import ExperimentConfig, chosen_options, pairs_by_kind, pairs_by_scenes
    from tpo_hf.world.report import QUESTION_KINDS, accuracies, markdown, order_errors_by_option, summarize

    rng = random.Random(0)
    videos = [v for v in _videos(40) if len(v.events) >= 3]
    rows, samples = [], []
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for video in videos:
        (corpus / f"{video.video_id}.json").write_text(json.dumps(video.to_json()))
    asked_videos, asked_questions = [], []
    for index, kind in enumerate(["after", "last", "last", "order", "first"]):
        video, question = next((v, q) for v in videos if (q := ask(v, kind, rng)) is not None)
        asked_videos.append(video)
        asked_questions.append(question)
        rows.append(
            {
                "prompt": question.prompt,
                "chosen": question.answer,
                "rejected": "none",
                "video": f"/elsewhere/{video.video_id}.mp4",
                "granularity": "localized" if index < 2 else "comprehensive",
            }
        )
    rows.append(
        {
            "prompt": "Describe the video.",
            "chosen": "a",
            "rejected": "b",
            "video": f"{videos[0].video_id}.mp4",
            "granularity": "comprehensive",
        }
    )
    asked_videos.append(videos[0])
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "pairs"))
    saved = load_from_disk(str(tmp_path / "pairs"))  # counted as saved, the way the experiment trains on them
    # the source video's scene count is read from its timeline beside it in the corpus, needles not counted
    scene_counts = Counter(len(v.events) for v in asked_videos)
    assert pairs_by_scenes(saved, corpus) == dict(sorted(scene_counts.items()))
    assert pairs_by_kind(saved) == {
        "localized": {"after": 1, "last": 1},
        "comprehensive": {"last": 1, "order": 1, "first": 1, "other": 1},
    }
    # the chosen answer's option letter, per option count (the open-ended row has none)
    letters: dict[str, dict[str, int]] = {}
    for question in asked_questions:
        by_letter = letters.setdefault(str(len(question.options)), {})
        by_letter[question.letter] = by_letter.get(question.letter, 0) + 1
    assert chosen_options(saved) == {n: dict(sorted(by_letter.items())) for n, by_letter in sorted(letters.items())}

    for kind, correct in [("after", True), ("after", False), ("last", False), ("needle", True)]:
        granularity = {"after": "localized", "last": "comprehensive", "needle": "needle"}[kind]
        samples.append({"kind": kind, "type": granularity, "scenes": "7", "correct": correct, "prediction": "A"})
    samples.append({"kind": "last", "type": "comprehensive", "scenes": "2", "correct": True, "prediction": "A"})
    scores = accuracies(samples, long_min_scenes=6)
    assert scores["kind_after"] == 50.0 and scores["kind_last"] == 0.0 and scores["kind_needle"] == 100.0
    assert np.isnan(scores["kind_first"])  # no long "first" question was asked
    config = ExperimentConfig(seeds=[0], arms=["base"])
    table = summarize(config.arms, [{"arm": "base", "samples": samples}], config.long_min_scenes)
    curation = {
        0: {
            "5:5": {
                "pairs_by_kind": pairs_by_kind(saved),
                "final": {"total": 6},
                "pairs_by_scenes": {2: 1},
            }
        }
    }
    # short-clip "which comes first" answers by the option they name; long videos and other kinds are not counted
    order = [
        {"kind": "order", "scenes": "2", "answer": "B", "prediction": "A"},
        {"kind": "order", "scenes": "3", "answer": "B", "prediction": "A"},
        {"kind": "order", "scenes": "2", "answer": "A", "prediction": "B"},
        {"kind": "order", "scenes": "3", "answer": "A", "prediction": "A"},
        {"kind": "order", "scenes": "2", "answer": "A", "prediction": "unparseable"},
        {"kind": "order", "scenes": "7", "answer": "B", "prediction": "A"},
        {"kind": "first", "scenes": "2", "answer": "B", "prediction": "A"},
    ]
    order_errors = order_errors_by_option(
        [{"arm": "tpo_5_5", "seed": 1, "samples": order[:4]}, {"arm": "tpo_5_5", "seed": 0, "samples": order}]
    )
    assert order_errors == {
        "tpo_5_5": {
            "questions": [5, 4],  # seed 0 first
            "wrong_first_named": [2, 2],
            "wrong_second_named": [1, 1],
            "unanswered": [1, 0],
        }
    }
    curation[0]["5:5"]["chosen_options"] = {"2": {"A": 3, "B": 1}}
    curation[0]["7:3"] = {
        "pairs_by_kind": {"localized": {"after": 1}},
        "final": {"total": 4, "anchors": 3},
        "anchors_by_kind": {"comprehensive": {"order": 2, "first": 1}},
        "anchors_by_scenes": {2: 3},
    }
    text = markdown(table, [0], 29.5, curation, order_errors=order_errors)
    assert "| tpo_5_5 | 2 / 2 | 1 / 1 | 1 / 0 | 5 / 4 |" in text
    assert "by scenes of the video: 2: 1; chosen option: 2 options A 3 B 1" in text
    assert "| " + " | ".join(QUESTION_KINDS) + " |" in text
    assert "| base | 50.0 ± 0.0 | nan" in text
    assert (
        "- seed 0, mix 5:5 (6 pairs): comprehensive: first 1, last 1, order 1, other 1; localized: after 1, last 1; "
        "by scenes of the video: 2: 1" in text
    )
    # anchor rows are counted apart from the pairs
    assert "- seed 0, mix 7:3 (1 pairs): localized: after 1; plus 3 anchors: first 1, order 2; by scenes: 2: 3" in text


def test_experiment_refuses_arms_with_unequal_pair_counts():
    """Arms must differ only in objective: a mix whose pool could not fill `pairs_per_arm` stops the run, naming it."""
    from tpo_hf.world.experiment import ExperimentConfig, check_equal_pair_counts

    config = ExperimentConfig(seeds=[0, 1], arms=["base", "tpo_5_5", "comprehensive_only"], pairs_per_arm=600)
    assert config.anchor_ratio == 0.5  # 300 anchor rows on top of the 600 pairs
    filled = {"total": 900, "anchors": 300}
    full = {"5:5": {"final": filled}, "0:10": {"final": filled}}
    check_equal_pair_counts(config, [{"seed": 0, "reports": full}, {"seed": 1, "reports": full}])
    short = {"5:5": {"final": filled}, "0:10": {"final": {"total": 611, "anchors": 300}}}
    with pytest.raises(ValueError, match=r"seed 1, comprehensive_only \(mix 0:10\): 311 pairs.*train_videos"):
        check_equal_pair_counts(config, [{"seed": 0, "reports": full}, {"seed": 1, "reports": short}])
    few_anchors = {"5:5": {"final": {"total": 700, "anchors": 100}}, "0:10": {"final": filled}}  # 600 + 100
    with pytest.raises(ValueError, match=r"seed 0, tpo_5_5 \(mix 5:5\): 100 anchors"):
        check_equal_pair_counts(config, [{"seed": 0, "reports": few_anchors}, {"seed": 1, "reports": full}])


def test_paired_differences_resample_videos_and_average_seeds(tmp_path):
    """The forgetting check's interval: each question's difference is averaged over seeds, and resampling draws
    whole held-out videos. An arm that equals the base has difference 0 with a zero-width interval; one that is right
    where the base is wrong on one video of four shows +25 points on that subset with an interval holding it."""
    from tpo_hf.world.experiment import ExperimentConfig
    from tpo_hf.world.report import paired_differences, paired_markdown, plot, summarize, video_of

    assert video_of("eval2-0-0013-after-1") == "eval2-0-0013"

    def samples(right_videos: set[str], right_seed_only: dict[str, int] | None = None, seed: int = 0):
        rows = []
        for scenes in (2, 7):
            for v in range(4):
                video = f"eval{scenes}-0-{v:04d}"
                for kind in ("after", "first"):
                    right = video in right_videos or (right_seed_only or {}).get(video) == seed
                    granularity = "localized" if kind == "after" else "comprehensive"
                    rows.append(
                        {
                            "sample_id": f"{video}-{kind}-1",
                            "scenes": str(scenes),
                            "kind": kind,
                            "type": granularity,
                            "prediction": "A",
                            "correct": right,
                        }
                    )
        return rows

    base_right = {"eval2-0-0001", "eval2-0-0002", "eval7-0-0001"}
    runs = [{"arm": "base", "seed": s, "samples": samples(base_right)} for s in (0, 1)]
    # sft_self equals the base; tpo_5_5 adds one long video on both seeds and one short video on seed 1 only
    runs += [{"arm": "sft_self", "seed": s, "samples": samples(base_right)} for s in (0, 1)]
    extra = {"eval2-0-0003": 1}
    runs += [
        {"arm": "tpo_5_5", "seed": s, "samples": samples(base_right | {"eval7-0-0002"}, extra, seed=s)} for s in (0, 1)
    ]
    paired = paired_differences(runs, long_min_scenes=6, resamples=500)
    assert set(paired) == {"sft_self - base", "tpo_5_5 - base", "tpo_5_5 - sft_self"}  # only arms that ran
    same = paired["sft_self - base"]["short_clips"]
    assert (same["diff"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    assert same["questions"] == 8 and same["videos"] == 4
    long = paired["tpo_5_5 - base"]["long_videos"]
    assert long["diff"] == 25.0 and long["low"] <= 0.0 < 25.0 <= long["high"]
    short = paired["tpo_5_5 - base"]["short_clips"]
    assert short["diff"] == 12.5  # right on one of four videos, on one of two seeds
    text = "\n".join(paired_markdown(paired))
    assert (
        "| tpo_5_5 - base | +25.0 [" in text and "| sft_self - base | +0.0 [+0.0, +0.0] | +0.0 [+0.0, +0.0] |" in text
    )
    # drawn as well: one panel per subset, a bar per comparison
    config = ExperimentConfig(seeds=[0, 1], arms=["base", "sft_self", "tpo_5_5"])
    paths = plot(summarize(config.arms, runs, config.long_min_scenes), tmp_path, [2, 7], paired)
    assert tmp_path / "paired_differences.png" in paths and all(p.stat().st_size > 0 for p in paths)


# --- shortcut-free held-out sets, probes, control arms ------------------------------------------------------------
def test_layout_draws_scene_lengths_blanks_and_a_window_offset(tmp_path):
    """A laid-out video shows blank frames at both ends and scenes of 1-2 frames, in a window of a longer file whose
    frames' timestamps start at `offset`; the plain layout draws nothing (streams of bases built before stay)."""
    from tpo_hf.world.timeline import BACKGROUND, Layout, layout_video, read_timeline, write_world_video

    rng = random.Random(0)
    video = make_video("v", rng, 5, with_needle=True)
    state = rng.getstate()
    assert layout_video(video, Layout(), rng) is video and rng.getstate() == state
    layout = Layout(max_scene_frames=2, max_blank_frames=2, max_timestamp=30)
    drawn = [layout_video(video, layout, random.Random(i)) for i in range(40)]
    assert {v.lead for v in drawn} == {0, 1, 2} and {v.trail for v in drawn} == {0, 1, 2}
    assert {s.frames for v in drawn for s in v.scenes if not s.needle} == {1, 2}
    assert all(s.frames == 1 for v in drawn for s in v.scenes if s.needle)
    assert all(v.offset + v.num_frames <= 30 for v in drawn) and len({v.offset for v in drawn}) > 5
    laid = next(v for v in drawn if v.lead and v.trail and v.offset)
    frames = render_video(laid)
    assert len(frames) == laid.num_frames and np.all(frames[: laid.lead] == BACKGROUND)
    assert np.all(frames[-laid.trail :] == BACKGROUND)
    assert len(render_video(laid, with_offset=True)) == laid.offset + laid.num_frames == laid.file_frames
    write_world_video(laid, tmp_path)
    assert read_timeline(tmp_path / "v.json") == laid and read_timeline(tmp_path / "v.json").key() == laid.key()
    # the questions and the judge read the scenes, not the frames
    question = ask(laid, "after", random.Random(1))
    assert true_answer(laid, question.question, list(question.options))[0] == question.answer
    # a plain video keeps the timeline file it always had
    assert "lead" not in video.to_json() and "frames" not in video.to_json()["scenes"][0]


def test_heldout_window_timestamps_start_at_the_offset(tmp_path):
    """The shortcut-free held-out questions carry their window's start: evaluation shows the window's frames only,
    timestamped from `offset` seconds, and the first shown frame is not always at <0.0 seconds>."""
    from tpo_hf.eval.benchmarks import load_benchmark
    from tpo_hf.processing import VideoPreferenceProcessor
    from tpo_hf.video import VideoView
    from tpo_hf.world.base import SHIPPED_BASE
    from tpo_hf.world.corpus import eval_rows
    from tpo_hf.world.timeline import Layout

    spec = CorpusSpec("eval7", 4, 7, 7, 0.5, seed=3, layout=Layout(2, 2, 30))
    videos = write_corpus(spec, tmp_path)
    samples = eval_samples(videos, {"first": 1})
    path = tmp_path / "heldout.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in eval_rows(samples)))
    loaded = load_benchmark("tpo_world", str(path))
    processor = VideoPreferenceProcessor.from_pretrained(str(SHIPPED_BASE), num_frames=None, video_fps=FPS)
    for sample, video in zip(loaded, videos):
        assert sample.start == (video.offset or None) and sample.num_frames == video.num_frames
        frames, metadata = processor.load_video(
            tmp_path / sample.video, VideoView(num_frames=sample.num_frames, start=sample.start)
        )
        assert metadata["frames_indices"] == list(range(video.offset, video.offset + video.num_frames))
        assert np.abs(frames.astype(int) - render_video(video).astype(int)).mean() < 6
        text = processor.tokenizer.decode(processor.encode_prompt(sample.prompt, frames, metadata)["input_ids"][0])
        assert f"<{float(video.offset)} seconds>" in text
    assert any(v.offset for v in videos)


def test_heldout_sets_exclude_every_video_seen_before(tmp_path):
    """Drawn per `heldout_seed`, with no video equal (by timeline: scenes, lengths, blanks, offset) to one of the
    seeds' training videos or a clip the base was pretrained on; the plain set of seed 0 is the one of every earlier
    run."""
    from tpo_hf.world.experiment import SHORTCUT_FREE, ExperimentConfig, eval_sets, seen_video_keys, train_spec
    from tpo_hf.world.pretrain import PretrainConfig, pretraining_video_keys

    def config(name, **kw):
        return ExperimentConfig(
            out_dir=str(tmp_path / name),
            seeds=[0],
            train_videos=40,
            eval_scene_counts=[2, 7],
            eval_videos_per_count=6,
            eval_short_videos_per_count=40,
            **kw,
        )

    free = config("free", heldout_seed=5, heldout_exclude_seen=True, **SHORTCUT_FREE)
    folder, questions = eval_sets(free)
    held_out = [read_timeline(p) for p in sorted(folder.glob("*.json"))]
    seen = seen_video_keys(free)
    training = {v.key() for v in corpus_videos(train_spec(free, 0))}
    pretraining = pretraining_video_keys(PretrainConfig())  # the shipped base's clips
    assert training | pretraining == seen and len(held_out) == 46
    assert not {v.key() for v in held_out} & seen
    # a draw that meets an excluded video is drawn again; plain 2-scene clips were all pretrained on, so none is left
    (first,) = corpus_videos(CorpusSpec("eval2", 1, 2, 2, 0.5, 5, free.heldout_layout))
    (again,) = corpus_videos(CorpusSpec("eval2", 1, 2, 2, 0.5, 5, free.heldout_layout, frozenset({first.key()})))
    assert again.key() != first.key()
    with pytest.raises(ValueError, match="outside `exclude`"):
        corpus_videos(CorpusSpec("eval2", 1, 2, 2, 0.0, 0, exclude=frozenset(pretraining)))
    # another heldout_seed, another set; every question's window and frame count match its video
    other, _ = eval_sets(config("other", heldout_seed=6, heldout_exclude_seen=True, **SHORTCUT_FREE))
    assert {read_timeline(p).key() for p in other.glob("*.json")} != {v.key() for v in held_out}
    rows = [json.loads(line) for line in questions.read_text().splitlines()]
    by_id = {v.video_id: v for v in held_out}
    for row in rows:
        video = by_id[row["video"].removesuffix(".mp4")]
        assert row["num_frames"] == video.num_frames and row.get("start", 0) == video.offset
    # V-NIAH cuts its haystacks from plain copies (no grey frames before a window)
    assert all(read_timeline(p).plain for p in (tmp_path / "free" / "vniah-haystack").glob("*.json"))
    # the plain set (quickstart, earlier runs) is unchanged: seed 0, no layout, no check
    plain, _ = eval_sets(config("plain"))
    assert all(
        read_timeline(p) == v
        for p, v in zip(sorted(plain.glob("eval7*.json")), corpus_videos(CorpusSpec("eval7", 6, 7, 7, 0.5, 0)))
    )


def test_probes_take_one_thing_out_of_the_video():
    from tpo_hf.world.probes import probe_items, score, shuffled
    from tpo_hf.world.timeline import BACKGROUND, frame_metadata

    video = WorldVideo(
        "eval7-0-0000",
        tuple(WorldScene(c, frames=1 + i % 2) for i, c in enumerate(["red", "blue", "green", "white", "black"])),
        lead=1,
        trail=2,
        offset=4,
    )
    frames = render_video(video)
    new_video, new_frames = shuffled(video, frames, random.Random(0))
    assert [s.colour for s in new_video.scenes] != [s.colour for s in video.scenes]
    assert np.array_equal(new_frames, render_video(new_video))
    rows = []
    for kind in ("after", "first", "last", "order"):
        question = ask(video, kind, random.Random(kind))
        sample = question.to_sample(f"{video.video_id}-{kind}-1", "v.mp4", video.num_frames, scenes="5")
        rows.append({**eval_rows_of(sample), "scenes": "7", "kind": kind})
    decoded = {row["sample_id"]: (frames, frame_metadata(len(frames), offset=4), video) for row in rows}
    blanked = probe_items(rows, decoded, "timestamps_blanked")
    assert all(i["video"][1]["frames_indices"] == [0] * len(frames) for i in blanked)
    grey = probe_items(rows, decoded, "frames_blanked")
    assert all(np.all(i["video"][0] == BACKGROUND) and i["truth"] == i["row"]["answer"] for i in grey)
    moved = probe_items(rows, decoded, "frames_shuffled")
    for item in moved:  # scored against the order shown
        shown, shown_frames = shuffled(video, frames, random.Random(f"shuffle-0-{item['row']['sample_id']}"))
        assert np.array_equal(item["video"][0], shown_frames)
        truth = true_answer(shown, item["row"]["question"], item["row"]["options"])[0]
        assert item["truth"] == "ABCD"[item["row"]["options"].index(truth)]
    scores = score(moved, [i["truth"] for i in moved], 6, 3)
    assert scores["long_videos"]["overall"]["accuracy"] == 100.0 and scores["short_clips"] == {}
    assert scores["long_videos"]["kind_order"]["chance"] == 50.0


def eval_rows_of(sample):
    from tpo_hf.world.corpus import eval_rows

    (row,) = eval_rows([sample])
    return row


def test_control_arms_change_one_thing_against_tpo(tmp_path):
    """dpo_only: the pairs without anchors; tpo_random_rejected: the same rows, a random wrong option rejected;
    sft_oracle: as many rows per granularity, the timeline's answers to candidates whatever the base answered."""
    from datasets import Dataset, load_from_disk

    from tpo_hf.curation.records import dataset_features
    from tpo_hf.world.controls import control_dir, derive

    corpus = tmp_path / "corpus"
    videos = write_corpus(CorpusSpec("train", 12, 3, 6, 0.0, seed=1), corpus)
    rng = random.Random(0)
    records, rows = [], []
    for index, video in enumerate(videos):
        for kind, granularity in (("after", "localized"), ("first", "comprehensive"), ("order", "comprehensive")):
            question = ask(video, kind, rng)
            wrong = next(o for o in question.options if o != question.answer)
            kept = index % 2 == 0  # the base was right on half of them
            record = {
                "prompt": question.prompt,
                "chosen": question.answer if kept else wrong,
                "rejected": wrong if kept else question.answer,
                "video": f"{video.video_id}.mp4",
                "granularity": granularity,
                "anchor": False,
                "kept": kept,
                "keep_reason": "kept_judge_passed" if kept else "judge_not_better",
            }
            records.append(record)
            if kept:
                rows.append({**record, "video": str((corpus / record["video"]).resolve())})
    rows.append({**rows[0], "rejected": rows[0]["chosen"], "anchor": True})
    (tmp_path / "curation-shards" / "shards").mkdir(parents=True)
    (tmp_path / "curation-shards" / "shards" / "shard-0.json").write_text(json.dumps({"records": records}))
    columns = list(dataset_features())
    Dataset.from_list([{c: r.get(c) for c in columns} for r in rows], features=dataset_features()).save_to_disk(
        str(tmp_path / "pairs-5_5")
    )
    counts = derive(tmp_path, tmp_path / "pairs-5_5", corpus, seed=0)
    dpo = load_from_disk(str(control_dir(tmp_path, "dpo_only")))
    assert len(dpo) == len(rows) - 1 and not any(dpo["anchor"])
    swapped = load_from_disk(str(control_dir(tmp_path, "tpo_random_rejected")))
    assert len(swapped) == len(rows) and swapped["chosen"] == [r["chosen"] for r in rows]
    for row in swapped:
        options = split_mcq_prompt(row["prompt"])[1]
        if row["anchor"]:
            assert row["rejected"] == row["chosen"]
        else:
            assert row["rejected"] in options and row["rejected"] != row["chosen"]
    oracle = load_from_disk(str(control_dir(tmp_path, "sft_oracle")))
    assert Counter(oracle["granularity"]) == Counter(r["granularity"] for r in rows)
    by_name = {f"{v.video_id}.mp4": v for v in videos}
    for row in oracle:
        question, options = split_mcq_prompt(row["prompt"])
        assert row["chosen"] == true_answer(by_name[Path(row["video"]).name], question, options)[0]
        assert row["rejected"] != row["chosen"] and Path(row["video"]).is_file()
    assert counts["sft_oracle"]["rows"] == len(oracle) and counts["dpo_only"]["rows"] == len(dpo)
    # drawn without regard to what the base answered: questions it got wrong are in
    assert counts["sft_oracle"]["also_kept_as_tpo_pairs"] < len(oracle)


def test_reward_curve_keeps_the_evaluation_rows_rewards():
    from tpo_hf.world.experiment import reward_curve

    history = [
        {"step": 0, "eval_rewards/margins": 0.0, "eval_rewards/accuracies": 0.0, "eval_loss": 0.69},
        {"step": 5, "loss": 0.6, "rewards/margins": 0.1},
        {"step": 25, "eval_rewards/margins": 0.8, "eval_rewards/accuracies": 0.9, "eval_rewards/chosen": 0.3},
    ]
    assert reward_curve(history) == [
        {"step": 0, "rewards/margins": 0.0, "rewards/accuracies": 0.0},
        {"step": 25, "rewards/margins": 0.8, "rewards/accuracies": 0.9, "rewards/chosen": 0.3},
    ]


def test_self_training_rounds_curate_a_fresh_corpus_with_the_merged_model(tmp_path):
    """Round 2 of an arm curates its own split of videos with the round-1 model (adapter merged in) and trains that
    model again; the held-out exclusion covers every round's corpus, and a rerun reuses the finished rounds."""
    import torch
    from safetensors.torch import load_file

    from tpo_hf.world.base import world_base_model
    from tpo_hf.world.experiment import ExperimentConfig, curate, seen_video_keys, self_train, train_spec

    config = ExperimentConfig(
        out_dir=str(tmp_path / "run"),
        seeds=[0],
        arms=["tpo_5_5"],
        train_videos=24,
        pairs_per_arm=8,
        max_steps=2,
        batch_size=4,
        self_training_rounds=2,
    )
    base = str(world_base_model())
    curate(config, 0, base)
    model, adapter, rounds = self_train(config, 0, "tpo_5_5", base)

    round_root = tmp_path / "run" / "seed-0" / "round-2-tpo_5_5"
    assert model == str(round_root / "model") and Path(adapter) == round_root / "seed-0" / "adapters" / "tpo_5_5"
    assert json.loads((Path(adapter) / "adapter_config.json").read_text())["base_model_name_or_path"] == model
    # the merged model carries round 1's training: some weights differ from the base's
    merged, original = load_file(f"{model}/model.safetensors"), load_file(f"{base}/model.safetensors")
    assert any(not torch.equal(merged[name], original[name]) for name in original)
    # and is a model folder of its own: processor and world records beside the weights
    assert {"tpo_video_config.json", "world_pretrain.json", "tokenizer.json"} <= {
        p.name for p in Path(model).iterdir()
    }
    # round 2's corpus is another split: no video shared with round 1's, and both are excluded from held-out sets
    first = {v.key() for v in corpus_videos(train_spec(config, 0))}
    second = {v.key() for v in corpus_videos(train_spec(config, 0, 2))}
    assert first and second and not first & second
    assert sorted(p.name for p in (round_root / "seed-0" / "corpus").glob("*.mp4"))[0].startswith("train-round2-0-")
    assert first | second <= seen_video_keys(config)
    assert rounds[0]["round"] == 2 and rounds[0]["final"]["total"] >= 8
    # a rerun reuses the merged model and the trained adapter
    weights = Path(adapter) / "adapter_model.safetensors"
    before = (weights.stat().st_mtime_ns, (Path(model) / "model.safetensors").stat().st_mtime_ns)
    assert self_train(config, 0, "tpo_5_5", base)[:2] == (model, adapter)
    assert (weights.stat().st_mtime_ns, (Path(model) / "model.safetensors").stat().st_mtime_ns) == before


def test_base_on_heldout_layout_is_the_documented_pretrain_command():
    """`base_on_heldout_layout` asks for the same base as the documented `tpo-hf world pretrain` command on the
    held-out layout (same settings fingerprint, so a base built by either serves both); off, the shipped base."""
    from tpo_hf.world.base import config_fingerprint
    from tpo_hf.world.cli import make_parser
    from tpo_hf.world.experiment import SHORTCUT_FREE, ExperimentConfig, base_pretraining
    from tpo_hf.world.pretrain import PretrainConfig

    command = "--max_scene_frames 2 --max_blank_frames 2 --max_timestamp 30 --format_version 2".split()
    _, documented = make_parser("pretrain").parse_args_and_config(args=command)
    on_layout = base_pretraining(ExperimentConfig(base_on_heldout_layout=True, **SHORTCUT_FREE))
    assert config_fingerprint(on_layout) == config_fingerprint(documented)
    assert config_fingerprint(base_pretraining(ExperimentConfig(**SHORTCUT_FREE))) == config_fingerprint(
        PretrainConfig()
    )


def test_world_corpus_refuses_a_folder_of_another_corpus_and_rewrites_a_torn_timeline(tmp_path):
    """Probe 6: a held-out split written into a training split's folder mixed both for `curate --video_dir` (its
    `curation_inputs.jsonl` listed only the new split); a timeline torn by a kill failed the repairing rerun with a
    bare JSONDecodeError naming no file."""
    from tpo_hf.world.cli import cli_main
    from tpo_hf.world.timeline import read_timeline

    corpus = ["corpus", "--output_dir", str(tmp_path), "--num_videos", "2"]
    cli_main(corpus)
    with pytest.raises(ValueError, match=r"holds 2 world video\(s\) of another corpus .*another --output_dir"):
        cli_main([*corpus, "--split", "heldout"])
    assert not list(tmp_path.glob("heldout-*"))
    timeline = sorted(tmp_path.glob("train-0-*.json"))[0]
    timeline.write_text("")
    with pytest.raises(ValueError, match=f"World timeline {timeline} is unreadable"):
        read_timeline(timeline)
    cli_main(corpus)  # the same command repairs it
    assert read_timeline(timeline).video_id == timeline.stem


def test_world_pretrain_into_a_read_only_folder_is_refused_before_training(tmp_path):
    """Probe 6: a read-only `--output_dir` (or cache) failed with an OSError traceback; now one line naming the
    setting, before any step."""
    from tpo_hf.locks import OutputDirError
    from tpo_hf.world.base import build_base

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputDirError, match=r"--output_dir .*file.* is a file"):
        build_base(blocker / "base", setting="--output_dir")
