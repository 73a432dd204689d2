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
