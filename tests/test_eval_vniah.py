"""V-NIAH: the needle really sits at the requested depth in the decoded haystack video; scores and heatmap grid."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tpo_hf.eval.mcq import SampleResult
from tpo_hf.eval.vniah import (
    Needle,
    build_vniah_suite,
    insert_needle,
    needle_start,
    plot_vniah_heatmap,
    vniah_scores,
)
from tpo_hf.synthetic import COLOURS, read_frame_stamp
from tpo_hf.video import load_video


def _is_needle(frame: np.ndarray, colour: str) -> bool:
    """The centre of a needle frame is the needle colour (the haystack's synthetic frames never are)."""
    height, width = frame.shape[:2]
    centre = frame[height // 3 : 2 * height // 3, width // 8 : width // 3].reshape(-1, 3).astype(float).mean(0)
    return bool(np.abs(centre - np.array(COLOURS[colour])).max() < 40)


def test_needle_sits_at_the_requested_depth_in_the_decoded_video(video_dir, tmp_path):
    lengths, depths = [12, 20], [0.0, 0.5, 1.0]
    needle = Needle(colour="magenta", shape="square", num_frames=2)
    samples = build_vniah_suite(
        [video_dir / "red_blue.mp4", video_dir / "green_yellow.mp4"], tmp_path, lengths, depths, needle=needle, fps=8
    )
    assert len(samples) == len(lengths) * len(depths)
    for sample in samples:
        frames, metadata = load_video(sample.video)  # every frame of the written H.264 file
        assert len(frames) == sample.length == sample.num_frames
        expected_start = int(round(sample.depth * (sample.length - needle.num_frames)))
        assert sample.needle_start == expected_start
        flags = [_is_needle(frame, "magenta") for frame in frames]
        needle_positions = [i for i, flag in enumerate(flags) if flag]
        assert needle_positions == list(range(expected_start, expected_start + needle.num_frames)), sample.sample_id
        # the haystack around the needle is the source video in order: stamps 0, 1, 2, ... skipping the needle
        stamps = [read_frame_stamp(frame) for i, frame in enumerate(frames) if not flags[i]]
        assert stamps == list(range(sample.length - needle.num_frames))
        # the question is answered by the needle colour only
        assert sample.options[ord(sample.answer) - ord("A")] == "magenta"
    assert samples[0].depth == 0.0 and samples[0].needle_start == 0
    assert samples[2].needle_start == 12 - 2  # depth 1: the needle ends the video


def test_insert_needle_keeps_length_and_rejects_bad_depths():
    haystack = np.zeros((10, 4, 4, 3), dtype=np.uint8)
    needle = np.full((3, 4, 4, 3), 255, dtype=np.uint8)
    video, start = insert_needle(haystack, needle, 0.5)
    assert video.shape == haystack.shape and start == 4
    assert video[4:7].min() == 255 and video[:4].max() == 0 and video[7:].max() == 0
    with pytest.raises(ValueError, match="depth"):
        needle_start(10, 3, 1.5)
    with pytest.raises(ValueError, match="does not fit"):
        needle_start(3, 3, 0.0)


def test_scores_and_heatmap_grid(video_dir, tmp_path):
    lengths, depths = [8, 12], [0.0, 0.5, 1.0]
    samples = build_vniah_suite([video_dir / "red_blue.mp4"], tmp_path / "videos", lengths, depths)
    # base right only at depth 0, tpo right everywhere except (depth 1, length 12)
    results = {
        "base": [SampleResult("base", s.sample_id, s.length, "", "A", s.answer, s.depth == 0.0) for s in samples],
        "tpo": [
            SampleResult("tpo", s.sample_id, s.length, "", "A", s.answer, not (s.depth == 1.0 and s.length == 12))
            for s in samples
        ],
    }
    scores = {tag: vniah_scores(samples, tag_results) for tag, tag_results in results.items()}
    assert scores["base"]["lengths"] == lengths and scores["base"]["depths"] == depths
    assert scores["base"]["accuracy"] == [[100.0, 100.0], [0.0, 0.0], [0.0, 0.0]]
    assert scores["tpo"]["accuracy"] == [[100.0, 100.0], [100.0, 100.0], [100.0, 0.0]]

    path = tmp_path / "heatmap.png"
    figure = plot_vniah_heatmap(scores, path)
    assert len(figure.axes) == 3  # two heatmaps and the colour bar
    for axis, tag in zip(figure.axes[:2], scores):
        data = axis.images[0].get_array()
        assert data.shape == (len(depths), len(lengths))
        np.testing.assert_allclose(np.asarray(data), scores[tag]["accuracy"])
        assert [t.get_text() for t in axis.get_xticklabels()] == ["8", "12"]
        assert [t.get_text() for t in axis.get_yticklabels()] == ["0%", "50%", "100%"]
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (1100, 400)  # figsize (5 * 2 models + 1, 4) inches at 100 dpi


def test_haystack_sampling_rate_and_size_cap(video_dir):
    from tpo_hf.eval.vniah import build_haystack

    # 2 fps out of an 8 fps, 8 s clip: every 4th frame (bin centres 2, 6, 10, ...), then the next clip
    frames = build_haystack([video_dir / "red_blue.mp4", video_dir / "green_yellow.mp4"], 20, fps=2)
    assert [read_frame_stamp(frame) for frame in frames] == [4 * i + 2 for i in range(16)] + [2, 6, 10, 14]
    small = build_haystack([video_dir / "red_blue.mp4"], 40, max_side=64)  # loops over the 64-frame clip
    assert small.shape == (40, 32, 64, 3)


# --- probe fixes: the haystack videos of a rerun ----------------------------------------------------------------------
def test_a_rerun_reuses_the_haystack_videos_and_their_cached_answers(video_dir, tmp_path, caplog):
    """Running the same V-NIAH eval again wrote every haystack mp4 again, so every cached answer was generated again
    ("changed: video file"). Videos built from the same inputs are kept; other inputs write them again."""
    import logging

    from tpo_hf.eval.mcq import evaluate_mcq
    from tpo_hf.processing import VideoPreferenceProcessor
    from tpo_hf.tiny import build_tiny_model

    model, processor = build_tiny_model("qwen2_vl")
    processor = VideoPreferenceProcessor(processor, num_frames=2)
    videos, cache = tmp_path / "videos", tmp_path / "cache_vniah.jsonl"

    def run(needle=None):
        samples = build_vniah_suite([video_dir / "red_blue.mp4"], videos, [4, 6], [0.0, 1.0], needle=needle)
        run = evaluate_mcq(model, processor, samples, max_new_tokens=2, cache_path=cache, progress=False)
        return samples, {path.name: path.stat().st_mtime_ns for path in videos.glob("*.mp4")}, run

    first, written, _ = run()
    samples, again, rerun = run()
    assert again == written and rerun.computed == {} and len(rerun.cached["base"]) == 4
    assert [(s.needle_start, s.needle_frames, s.video) for s in samples] == [
        (s.needle_start, s.needle_frames, s.video) for s in first
    ]
    with caplog.at_level(logging.INFO, logger="tpo_hf.eval"):
        _, other, changed = run(Needle(colour="magenta"))  # another needle: other videos, answered again
    assert all(other[name] != written[name] for name in written) and len(changed.computed["base"]) == 4
    assert "Writing the V-NIAH videos in" in caplog.text and "(changed: needle)" in caplog.text


def test_the_haystacks_leave_out_the_evals_own_output_folder(video_dir, tmp_path):
    """With output_dir inside the haystack folder, a rerun cut haystacks from its own needle videos too (each then
    held a second needle, and every cached answer was thrown away). The eval's own output folder is left out."""
    import shutil

    from tpo_hf.eval.vniah import haystack_sources

    hay = tmp_path / "videos"
    hay.mkdir()
    shutil.copy(video_dir / "red_blue.mp4", hay / "red_blue.mp4")
    out = hay / "eval"
    build_vniah_suite(haystack_sources(hay, out), out / "vniah_videos", [4], [0.0, 1.0])
    assert list((out / "vniah_videos").glob("*.mp4"))  # the first run's needle videos, inside the haystack folder
    assert haystack_sources(hay, out) == [hay / "red_blue.mp4"]
    # with the haystack folder at output_dir, only the needle videos are left out
    shutil.rmtree(out)
    build_vniah_suite([hay / "red_blue.mp4"], hay / "vniah_videos", [4], [0.0])
    assert haystack_sources(hay, hay) == [hay / "red_blue.mp4"]
    # the needle-video folder itself is refused as a haystack folder, naming it
    with pytest.raises(ValueError, match="writes its needle videos to"):
        haystack_sources(hay / "vniah_videos", hay)


def test_eval_config_refuses_bad_vniah_settings_before_anything_runs(tmp_path):
    """A bad needle fails as `tpo-hf eval` reads its settings, a missing haystack folder as the run starts: neither
    after the benchmark."""
    from tpo_hf.eval.config import EvalConfig

    settings = dict(model_name_or_path="m", benchmark="videomme", vniah=True, vniah_haystack_dir=str(tmp_path))
    with pytest.raises(ValueError, match="`vniah_needle_colour` / `vniah_needle_shape`: Needle shape"):
        EvalConfig(**settings | {"vniah_needle_shape": "star"})
    with pytest.raises(ValueError, match="`vniah_needle_colour` / `vniah_needle_shape`: Needle colour 'mauve'"):
        EvalConfig(**settings | {"vniah_needle_colour": "mauve"})
    with pytest.raises(ValueError, match=r"`vniah_needle_frames` \(8\) must be shorter"):
        EvalConfig(**settings | {"vniah_needle_frames": 8, "vniah_lengths": [8, 16]})
    # a missing haystack folder: checked when the run starts (a recipe's folders exist only where it runs)
    missing = EvalConfig(**settings | {"vniah_haystack_dir": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="V-NIAH needs a folder of haystack videos"):
        missing.check_vniah_haystack_dir()
    EvalConfig(**settings)


# --- probe fixes: haystacks whose scaled size is odd ------------------------------------------------------------------
def test_haystacks_scaled_to_an_odd_size_are_written_even_and_checked_before_the_model_loads(tmp_path, monkeypatch):
    """f07: 720x480 (DVD) haystacks scaled to `vniah_max_side` 448 are 448x299, which H.264 cannot encode: libx264's
    error came after the model had loaded. The size is rounded to even numbers, `write_video` refuses an odd size
    naming it, and the haystack videos are built before the model loads."""
    import tpo_hf.eval.run as eval_run
    from tpo_hf.eval.config import EvalConfig
    from tpo_hf.synthetic import Scene, synthetic_frames, write_video
    from tpo_hf.video import VideoLoadError

    hay = tmp_path / "hay"
    write_video(hay / "wide.mp4", synthetic_frames([Scene(1, "green")], fps=8, height=120, width=180), fps=8)
    samples = build_vniah_suite([hay / "wide.mp4"], tmp_path / "vniah", [6], [0.5], max_side=112)  # 112 x 74.7
    frames, _ = load_video(samples[0].video)
    assert frames.shape[1:3] == (74, 112)
    with pytest.raises(ValueError, match=r"odd\.mp4: H\.264 \(yuv420p\) needs an even width and height, got 112x75"):
        write_video(tmp_path / "odd.mp4", np.zeros((2, 75, 112, 3), dtype=np.uint8))
    assert not (tmp_path / "odd.mp4").exists()

    (hay / "broken.mp4").write_bytes(b"not a video")

    def load_video_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the haystack videos were built")

    monkeypatch.setattr(eval_run, "load_video_model", load_video_model)
    config = EvalConfig(
        model_name_or_path=str(tmp_path / "model"),
        vniah=True,
        vniah_haystack_dir=str(hay),
        vniah_lengths=[6],
        vniah_depths=[0.5],
        num_frames=2,
        device="cpu",
        output_dir=str(tmp_path / "out"),
        progress=False,
    )
    with pytest.raises(VideoLoadError, match=r"Could not decode video .*broken\.mp4"):
        eval_run.evaluate(config)


# --- probe fixes: depths that shared a video name, a repeated grid value, a moved haystack folder, a copied output ----
def test_depths_a_fraction_of_a_percent_apart_get_their_own_videos_and_a_repeated_value_is_asked_once(
    video_dir, tmp_path, caplog
):
    """Depths 0.0 and 0.004 were both named `..._depth000.mp4`: the question of depth 0.0 was asked about the video of
    depth 0.004 (needle at frame 1, not 0). A grid listing a length or depth twice counted each question several
    times. Now each depth has its own video, a repeated value is asked once with a warning, and depths too close to
    name apart are refused."""
    import json
    import logging

    out = tmp_path / "videos"
    needle = Needle(colour="magenta")
    samples = build_vniah_suite([video_dir / "red_blue.mp4"], out, [200], [0.0, 0.004, 0.5], needle=needle)
    assert [s.needle_start for s in samples] == [0, 1, 100]
    assert len({s.video for s in samples}) == len({s.sample_id for s in samples}) == 3
    for sample in samples:
        frames, _ = load_video(sample.video)
        assert [i for i, frame in enumerate(frames) if _is_needle(frame, "magenta")] == [sample.needle_start]
    recorded = json.loads((out / "vniah_suite.json").read_text())["videos"]
    assert sorted((v["length"], v["depth"]) for v in recorded.values()) == [(200, 0.0), (200, 0.004), (200, 0.5)]
    assert (out / "vniah_len200_depth050.mp4").exists()  # a whole percent keeps the name it had

    with caplog.at_level(logging.WARNING, logger="tpo_hf.eval.vniah"):
        repeated = build_vniah_suite([video_dir / "red_blue.mp4"], tmp_path / "b", [16, 16], [0.5, 0.5], max_side=32)
    assert len(repeated) == 1 and "vniah_lengths lists 16 more than once" in caplog.text
    assert "vniah_depths lists 0.5 more than once" in caplog.text
    with pytest.raises(ValueError, match="vniah_depths 0.5 and 0.5000000001 are too close to tell apart"):
        build_vniah_suite([video_dir / "red_blue.mp4"], tmp_path / "c", [16], [0.5, 0.5000000001])


def test_a_moved_haystack_folder_keeps_the_videos_cut_from_it(video_dir, tmp_path):
    """The haystack folder moved with `mv` (same files, sizes and times): the suite record keyed its sources by
    absolute path, so every needle video was written again and every cached answer generated again. Sources are
    keyed by name, size and modification time; a record written before (absolute paths) is read as such."""
    import json
    import shutil

    (tmp_path / "hay1").mkdir()
    shutil.copy2(video_dir / "red_blue.mp4", tmp_path / "hay1" / "red_blue.mp4")
    out = tmp_path / "out"

    def build(folder):
        build_vniah_suite([folder / "red_blue.mp4"], out, [4], [0.0, 1.0])
        return {path.name: path.stat().st_mtime_ns for path in out.glob("*.mp4")}

    written = build(tmp_path / "hay1")
    (tmp_path / "hay1").rename(tmp_path / "hay2")
    assert build(tmp_path / "hay2") == written
    # a record of the earlier format, sources by absolute path: read as the same sources
    manifest = json.loads((out / "vniah_suite.json").read_text())
    manifest["inputs"]["haystack_videos"] = [
        f"{tmp_path}/hay0/{name}" for name in manifest["inputs"]["haystack_videos"]
    ]
    (out / "vniah_suite.json").write_text(json.dumps(manifest))
    assert build(tmp_path / "hay2") == written


def test_a_copied_output_folder_reuses_its_haystack_videos_and_answers(video_dir, tmp_path):
    """An eval output folder copied with `cp -r` (new modification times) and rerun into the copy: every haystack
    video was written again and every answer generated again ("changed: question ... or video name", the answers
    keyed by the video's absolute path). The videos are kept by content, their answers keyed by name and content."""
    import shutil

    from tpo_hf.eval.mcq import evaluate_mcq
    from tpo_hf.processing import VideoPreferenceProcessor
    from tpo_hf.tiny import build_tiny_model

    model, processor = build_tiny_model("qwen2_vl")
    processor = VideoPreferenceProcessor(processor, num_frames=2)

    def run(out):
        samples = build_vniah_suite([video_dir / "red_blue.mp4"], out / "vniah_videos", [4], [0.0, 1.0])
        return evaluate_mcq(
            model, processor, samples, max_new_tokens=2, cache_path=out / "cache_vniah.jsonl", progress=False
        )

    assert len(run(tmp_path / "ev").computed["base"]) == 2
    shutil.copytree(tmp_path / "ev", tmp_path / "ev2", copy_function=shutil.copy)  # as `cp -r`: new mtimes
    copied = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "ev2" / "vniah_videos").glob("*.mp4")}
    rerun = run(tmp_path / "ev2")
    assert rerun.computed == {} and len(rerun.cached["base"]) == 2
    assert {path.name: path.stat().st_mtime_ns for path in (tmp_path / "ev2" / "vniah_videos").glob("*.mp4")} == copied
    # a video changed in the copy is not kept: written again (the same bytes, so its answer still holds)
    damaged = tmp_path / "ev2" / "vniah_videos" / "vniah_len4_depth000.mp4"
    damaged.write_bytes(b"not the video")
    assert run(tmp_path / "ev2").computed == {}
    assert damaged.read_bytes() == (tmp_path / "ev" / "vniah_videos" / "vniah_len4_depth000.mp4").read_bytes()
