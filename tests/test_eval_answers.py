"""Answer-letter extraction over the reply shapes video-LMMs produce, including adversarial ones; the answer cache
those replies are kept in."""

from __future__ import annotations

import json
import logging
import os
from collections import Counter

import pytest

from tests.eval_reply_table import OPTION_SETS, TABLE
from tpo_hf.eval.answers import UNPARSEABLE, extract_answer_letter, strip_option_prefix

OPTIONS = ["A red square", "A blue circle", "A green triangle", "Nothing moves"]

CASES = [
    # bare letters and their punctuation
    ("B", "B"),
    ("(B)", "B"),
    ("B.", "B"),
    ("B)", "B"),
    ("[C]", "C"),
    ("  D  \n", "D"),
    ("**C**", "C"),
    ("b", "B"),
    ("(c)", "C"),
    ("d.", "D"),
    # explicit answer phrases
    ("The answer is B", "B"),
    ("The answer is B.", "B"),
    ("The best answer is: (C)", "C"),
    ("Answer: B) A blue circle", "B"),
    ("answer: d", "D"),
    ("the correct option is c.", "C"),
    ("Option C", "C"),
    ("Best option: (A) A red square", "A"),
    ("I think the answer would be D because nothing happens.", "D"),
    # letter first, explanation after
    ("B. A blue circle moves to the left.", "B"),
    ("C) A green triangle", "C"),
    ("(A) A red square, since it is visible at the start.", "A"),
    ("D because the video is static.", "D"),
    ("B: the circle", "B"),
    ("A - the square", "A"),
    ("A", "A"),
    # the option text itself
    ("A blue circle", "B"),
    ("a green triangle.", "C"),
    ("It is a red square moving right.", "A"),
    ("NOTHING MOVES", "D"),
    # a letter somewhere in a sentence
    ("I believe it's B.", "B"),
    ("Looking at the frames, (C) fits best", "C"),
    # adversarial: several letters
    ("A or B", UNPARSEABLE),
    ("B, C", UNPARSEABLE),
    ("A and D", UNPARSEABLE),
    ("It could be B or it could be C.", UNPARSEABLE),
    ("The answer is B. No wait, the answer is C.", UNPARSEABLE),
    # adversarial: letters inside words, articles, no answer
    ("Because", UNPARSEABLE),
    ("CAT DOG", UNPARSEABLE),
    ("A dog runs across the field.", UNPARSEABLE),
    ("Definitely not sure.", UNPARSEABLE),
    ("The answer is a mystery", UNPARSEABLE),
    ("I don't know", UNPARSEABLE),
    # adversarial: empty and out-of-range
    ("", UNPARSEABLE),
    ("   ", UNPARSEABLE),
    (None, UNPARSEABLE),
    ("E", UNPARSEABLE),
    ("The answer is F", UNPARSEABLE),
]


@pytest.mark.parametrize("reply, expected", CASES, ids=[repr(reply) for reply, _ in CASES])
def test_extract_answer_letter(reply, expected):
    assert extract_answer_letter(reply, OPTIONS) == expected


def test_option_text_needs_the_longest_unique_match():
    options = ["red", "red square", "blue"]
    assert extract_answer_letter("a red square", options) == "B"
    assert extract_answer_letter("red or blue", options) == UNPARSEABLE


def test_letters_follow_the_number_of_options():
    assert extract_answer_letter("E", num_options=5) == "E"
    assert extract_answer_letter("E") == UNPARSEABLE  # four options by default
    assert extract_answer_letter("The answer is E.", ["a", "b", "c", "d", "e"]) == "E"


def test_strip_option_prefix():
    assert strip_option_prefix("A. a red square") == "a red square"
    assert strip_option_prefix("(B) blue") == "blue"
    assert strip_option_prefix("C) 3 birds") == "3 birds"
    assert strip_option_prefix("A red square") == "A red square"


def test_labelled_reply_table_agrees_with_people():
    """>= 95% agreement with the hand labels, and a wrong letter (rather than "unparseable") almost never.
    (lmms-eval 0.7.3's `extract_mcq_answer` agrees with 57% of this table, LongVideoBench's parser with 50%.)"""
    assert len(TABLE) >= 150
    disagreements, wrong_letters = [], []
    for option_set, reply, label in TABLE:
        predicted = extract_answer_letter(reply, OPTION_SETS[option_set])
        if predicted != label:
            disagreements.append((reply, label, predicted))
            if predicted != UNPARSEABLE:
                wrong_letters.append((reply, label, predicted))
    assert 1 - len(disagreements) / len(TABLE) >= 0.95, disagreements
    assert len(wrong_letters) <= 2, wrong_letters


@pytest.mark.parametrize("option_set", sorted(OPTION_SETS))
def test_a_reply_that_is_an_option_text_names_that_option(option_set):
    options = OPTION_SETS[option_set]
    for letter, option in zip("ABCDE", options):
        text = strip_option_prefix(option)
        for reply in (text, text.upper(), text.lower() + ".", f"The answer is {text}."):
            assert extract_answer_letter(reply, options) == letter, reply


def test_table_labels_are_valid():
    for option_set, reply, label in TABLE:
        assert label == UNPARSEABLE or label in "ABCDE"[: len(OPTION_SETS[option_set])], (reply, label)


# --- the answer cache: appends after a torn line, base answers shared across adapters, why answers are redone ---------
LVB_ROWS = [
    {
        "id": f"q{i}",
        "video_path": video,
        "question": "Where does it move?",
        "candidates": ["left", "right", "up"],
        "correct_choice": 1,
    }
    for i, video in enumerate(["red_blue.mp4", "green_yellow.mp4"])
]


def test_an_answer_appended_after_a_torn_cache_line_is_kept(video_dir, tmp_path, caplog):
    """A run killed mid-write leaves a last line without its end; the next answer must start a line of its own, not
    be glued onto the torn one and lost (then computed again by every later run)."""
    from tpo_hf.eval.benchmarks import load_benchmark
    from tpo_hf.eval.mcq import evaluate_mcq
    from tpo_hf.processing import VideoPreferenceProcessor
    from tpo_hf.tiny import build_tiny_model

    model, processor = build_tiny_model("qwen2_vl")
    processor = VideoPreferenceProcessor(processor, num_frames=2)
    data = tmp_path / "lvb.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in LVB_ROWS))
    samples = load_benchmark("longvideobench_val", str(data))
    cache = tmp_path / "cache.jsonl"

    def run():
        return evaluate_mcq(
            model, processor, samples, video_dir=video_dir, max_new_tokens=2, cache_path=cache, progress=False
        )

    assert run().computed == {"base": ["q0", "q1"]}
    first, second = cache.read_text().splitlines()
    cache.write_text(first + "\n" + second[: len(second) // 2])  # killed while writing the answer to q1
    with caplog.at_level(logging.WARNING, logger="tpo_hf.eval.mcq"):
        assert run().computed == {"base": ["q1"]}
    assert run().computed == {}  # the answer written after the torn line was read back
    assert "unreadable line 2" in caplog.text and "ends in a torn line" in caplog.text
    lines = cache.read_text().splitlines()
    assert lines[1] == second[: len(second) // 2] and [json.loads(line)["sample_id"] for line in lines[::2]] == [
        "q0",
        "q1",
    ]


def test_a_new_adapter_reuses_the_base_answers_and_says_why_it_answers_again(
    video_dir, tmp_path, tiny_model_dirs, caplog
):
    """`evaluate` keys the base model's answers without the adapter: evaluating another adapter of the same base
    generates only the adapter's answers, and the warning names the adapter as what changed."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from tpo_hf.eval.run import evaluate
    from tpo_hf.families import LANGUAGE_MODEL_LORA_TARGETS

    model_dir = tiny_model_dirs("qwen2_5_vl")
    adapters = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        base = AutoModelForImageTextToText.from_pretrained(model_dir)
        lora = LoraConfig(r=4, lora_alpha=64, target_modules=LANGUAGE_MODEL_LORA_TARGETS, init_lora_weights=False)
        get_peft_model(base, lora).save_pretrained(tmp_path / f"adapter{seed}")
        adapters.append(str(tmp_path / f"adapter{seed}"))
    data = tmp_path / "lvb.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in LVB_ROWS))
    out = tmp_path / "out"

    def run(adapter):
        config = tiny_lvb_eval_config(model_dir, adapter, data, video_dir, out)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.eval.mcq"):
            evaluate(config)
        lines = (out / "cache_longvideobench_val.jsonl").read_text().splitlines()
        return Counter(json.loads(line)["model"] for line in lines)

    assert run(adapters[0]) == {"base": 2, "tpo": 2}
    assert run(adapters[1]) == {"base": 2, "tpo": 4}  # only the new adapter's answers were generated
    assert "Generated again 2 answer(s) (tpo: 2)" in caplog.text and "changed: adapter (2)" in caplog.text
    assert run(adapters[1]) == {"base": 2, "tpo": 4} and not caplog.text  # all cached: nothing to say


# --- probe fixes: eval, push, locks, model identity ------------------------------------------------------------------
def test_an_eval_inside_the_adapter_folder_reuses_its_answers_and_another_base_is_named(
    video_dir, tmp_path, tiny_model_dirs, caplog
):
    """The README's layout, `output_dir: <adapter>/eval`: the eval's own outputs are not the adapter, so a second run
    generates nothing. An adapter evaluated on a base other than the one its config names: a warning names both, and
    results.json records both."""
    import shutil

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from tpo_hf.eval.run import evaluate
    from tpo_hf.families import LANGUAGE_MODEL_LORA_TARGETS

    model_dir = tiny_model_dirs("qwen2_5_vl")
    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(model_dir)
    lora = LoraConfig(r=4, lora_alpha=64, target_modules=LANGUAGE_MODEL_LORA_TARGETS, init_lora_weights=False)
    adapter = tmp_path / "adapter"
    get_peft_model(base, lora).save_pretrained(adapter)
    data = tmp_path / "lvb.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in LVB_ROWS))

    def run(model, out):
        config = tiny_lvb_eval_config(model, str(adapter), data, video_dir, out)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tpo_hf"):
            results = evaluate(config)
        return results, len((out / "cache_longvideobench_val.jsonl").read_text().splitlines())

    inside = adapter / "eval"
    results, lines = run(model_dir, inside)
    assert lines == 4
    assert run(model_dir, inside)[1] == 4 and "Generated again" not in caplog.text  # nothing generated again
    assert results["adapter_base_model"] == str(model_dir) and "adapter_base_mismatch" not in results

    # Probe a/h20: a byte-identical copy of the base (`cp -r`) is the same model: no warning, no mismatch recorded
    copied_base = tmp_path / "copied_base"
    shutil.copytree(model_dir, copied_base)
    results, _ = run(copied_base, tmp_path / "copied")
    assert "was trained on" not in caplog.text and "adapter_base_mismatch" not in results

    other_base = tmp_path / "other_base"  # the same architecture, other weights
    torch.manual_seed(1)
    AutoModelForImageTextToText.from_config(base.config).save_pretrained(other_base)
    for name in os.listdir(model_dir):  # the processor and tokenizer files as they are
        if not os.path.exists(other_base / name):
            shutil.copy(model_dir / name, other_base / name)
    results, _ = run(other_base, tmp_path / "other")
    assert f"The adapter {adapter} was trained on {model_dir}" in caplog.text
    assert f"loaded on {other_base}: their weight, config or tokenizer files differ" in caplog.text
    mismatch = {"trained_on": str(model_dir), "evaluated_on": str(other_base)}
    assert results["adapter_base_mismatch"] == mismatch
    assert json.loads((tmp_path / "other" / "results.json").read_text())["adapter_base_mismatch"] == mismatch


def tiny_lvb_eval_config(model, adapter, data, video_dir, out):
    """`tpo-hf eval` settings of the cache tests: LongVideoBench rows `data` on a tiny model (and adapter), 2 frames,
    2 new tokens, on the CPU."""
    from tpo_hf.eval.config import EvalConfig

    return EvalConfig(
        model_name_or_path=str(model),
        adapter_path=adapter,
        benchmark="longvideobench_val",
        dataset_name=str(data),
        video_dir=str(video_dir),
        num_frames=2,
        max_new_tokens=2,
        dtype="float32",
        device="cpu",
        output_dir=str(out),
        progress=False,
    )


# --- probe fixes: the answer cache keyed by what a model is, a cache that cannot be written ---------------------------
def test_a_model_and_adapter_given_by_other_paths_reuse_the_cached_answers(
    video_dir, tmp_path, tiny_model_dirs, monkeypatch, caplog
):
    """The same model and adapter folders given by relative, then absolute paths, then after the project folder moved
    or was copied with `cp -r`, are the same weights: the second eval generated every answer again ("changed: adapter
    (4), model (8)"); the copy did so until model identities were keyed by content (a/F23)."""
    import shutil

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    from tpo_hf.eval.run import evaluate
    from tpo_hf.families import LANGUAGE_MODEL_LORA_TARGETS

    project = tmp_path / "project"
    shutil.copytree(tiny_model_dirs("qwen2_5_vl"), project / "model")
    torch.manual_seed(0)
    base = AutoModelForImageTextToText.from_pretrained(project / "model")
    lora = LoraConfig(r=4, lora_alpha=64, target_modules=LANGUAGE_MODEL_LORA_TARGETS, init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(project / "adapter")
    data = tmp_path / "lvb.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in LVB_ROWS))
    out = tmp_path / "out"

    def run(model, adapter):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="tpo_hf.eval.mcq"):
            evaluate(tiny_lvb_eval_config(model, adapter, data, video_dir, out))
        return len((out / "cache_longvideobench_val.jsonl").read_text().splitlines())

    monkeypatch.chdir(project)
    assert run("model", "adapter") == 4
    assert run(project / "model", str(project / "adapter")) == 4 and "Generated again" not in caplog.text
    moved = tmp_path / "moved"
    project.rename(moved)
    assert run(moved / "model", str(moved / "adapter")) == 4 and "Generated again" not in caplog.text
    # a copy made as `cp -r` makes it (new modification times, the same bytes) is the same model and adapter too
    copied = tmp_path / "copied"
    shutil.copytree(moved, copied, copy_function=shutil.copy)
    assert run(copied / "model", str(copied / "adapter")) == 4 and "Generated again" not in caplog.text


def _tiny_lvb_samples(tmp_path):
    """A tiny Qwen2-VL model, its processor at 2 frames, and the two LongVideoBench questions of `LVB_ROWS`."""
    from tpo_hf.eval.benchmarks import load_benchmark
    from tpo_hf.processing import VideoPreferenceProcessor
    from tpo_hf.tiny import build_tiny_model

    model, processor = build_tiny_model("qwen2_vl")
    data = tmp_path / "lvb.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in LVB_ROWS))
    return model, VideoPreferenceProcessor(processor, num_frames=2), load_benchmark("longvideobench_val", str(data))


def test_a_results_cache_that_cannot_be_written_is_refused_before_any_answer(video_dir, tmp_path):
    """A cache file made read-only (another user's, a read-only copy): a batch was generated, then lost in a raw
    PermissionError. Now one error names the file before anything is generated."""
    import re

    from tpo_hf.commands import is_user_error
    from tpo_hf.eval.mcq import ResultsCacheError, evaluate_mcq

    model, processor, samples = _tiny_lvb_samples(tmp_path)
    cache = tmp_path / "cache.jsonl"
    batches: list[int] = []

    def run(count):
        return evaluate_mcq(
            model,
            processor,
            samples[:count],
            video_dir=video_dir,
            max_new_tokens=2,
            cache_path=cache,
            progress=False,
            on_batch_done=batches.append,
        )

    assert run(1).computed == {"base": ["q0"]}
    cache.chmod(0o444)
    if os.access(cache, os.W_OK):  # root writes anyway; sysfs refuses root too
        cache.unlink()
        cache.symlink_to("/sys/tpo_hf_cache.jsonl")
    batches.clear()
    try:
        with pytest.raises(ResultsCacheError, match=rf"^Results cache {re.escape(str(cache))} is not writable") as no:
            run(2)
    finally:
        if not cache.is_symlink():
            cache.chmod(0o644)
    assert batches == [] and "nothing was generated" in str(no.value) and is_user_error(no.value)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (writes fail: ENOSPC)")
def test_a_full_disk_while_appending_answers_is_one_error_naming_the_cache(video_dir, tmp_path):
    """An output_dir on a full disk: the append of a finished batch ended in a raw `OSError: [Errno 28]` naming no file.
    Now one error names the cache, and says that the answers written are kept and a rerun resumes."""
    import re

    from tpo_hf.commands import is_user_error
    from tpo_hf.eval.mcq import ResultsCacheError, evaluate_mcq

    model, processor, samples = _tiny_lvb_samples(tmp_path)
    cache = tmp_path / "cache.jsonl"
    cache.symlink_to("/dev/full")  # every write to it fails as on a full disk
    message = rf"^Could not append 1 answer\(s\) to results cache {re.escape(str(cache))}: no space left on device"
    with pytest.raises(ResultsCacheError, match=message) as full:
        evaluate_mcq(
            model, processor, samples, video_dir=video_dir, max_new_tokens=2, cache_path=cache, progress=False
        )
    assert "already written there are kept" in str(full.value) and "rerun" in str(full.value)
    assert is_user_error(full.value)


# --- probe fixes: a second eval into the same output_dir ---------------------------------------------------------------
def test_a_vniah_eval_into_the_folder_of_a_benchmark_eval_keeps_that_benchmarks_results(
    video_dir, tmp_path, tiny_model_dirs, caplog
):
    """A benchmark evaluated, then V-NIAH alone into the same output_dir: results.json, results.md and the model-index
    were written whole again, and the benchmark's results vanished (its answers stayed in its cache). The results of
    the benchmarks a run did not evaluate are kept when they are of the same model and adapter; another model's are
    dropped, named in a warning."""
    import dataclasses

    from tpo_hf.eval.run import evaluate

    data = tmp_path / "lvb.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in LVB_ROWS))
    out = tmp_path / "out"
    config = tiny_lvb_eval_config(tiny_model_dirs("qwen2_5_vl"), None, data, video_dir, out)
    first = evaluate(config)["benchmarks"]["longvideobench_val"]
    vniah = dataclasses.replace(
        config, benchmark=None, vniah=True, vniah_haystack_dir=str(video_dir), vniah_lengths=[4], vniah_depths=[0.5]
    )
    results = evaluate(vniah)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["benchmarks"] == {"longvideobench_val": first} == results["benchmarks"] and "vniah" in on_disk
    assert "LongVideoBench" in (out / "results.md").read_text() and "V-NIAH" in (out / "results.md").read_text()
    model_index = (out / "model_index.yaml").read_text()
    assert "LongVideoBench" in model_index and "needle" in model_index

    # results of another adapter are not mixed in: dropped, named
    from tpo_hf.eval.results import merge_earlier_results

    other = {"model": on_disk["model"], "adapter": "other_adapter", "benchmarks": {}}
    with caplog.at_level(logging.WARNING, logger="tpo_hf.eval.results"):
        assert merge_earlier_results(other, out / "results.json") == []
    assert other["benchmarks"] == {} and "vniah" not in other
    assert "Dropping the results of longvideobench_val, vniah from" in caplog.text
    # the same paths holding other weights (an adapter retrained in place): dropped too, saying why
    retrained = {**on_disk, "benchmarks": {}, "weights": {"adapter": "other weights"}}
    retrained.pop("vniah")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tpo_hf.eval.results"):
        assert merge_earlier_results(retrained, out / "results.json") == []
    assert "the weights have changed since" in caplog.text
