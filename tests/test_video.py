"""load_video / VideoFile: frame sampling, timestamps, decode-once views and every error case."""

from __future__ import annotations

import numpy as np
import pytest

from tpo_hf import VideoFile, VideoLoadError, VideoView, load_video
from tpo_hf.synthetic import read_frame_stamp
from tpo_hf.video import METADATA_FIELDS, sampled_fps

FPS, SECONDS = 8, 8  # the fixture clips: 64 frames


@pytest.fixture
def clip(video_dir):
    return str(video_dir / "red_blue.mp4")


def test_uniform_num_frames_and_metadata(clip):
    frames, metadata = load_video(clip, num_frames=8)
    assert frames.shape == (8, 64, 128, 3) and frames.dtype == np.uint8
    assert set(metadata) == set(METADATA_FIELDS)
    assert metadata["fps"] == FPS and metadata["total_num_frames"] == FPS * SECONDS
    assert metadata["duration"] == pytest.approx(SECONDS)
    assert metadata["frames_indices"] == [4, 12, 20, 28, 36, 44, 52, 60]
    # The decoded frames are the requested ones (each frame carries its index in pixels)
    assert [read_frame_stamp(frame) for frame in frames] == metadata["frames_indices"]


def test_timestamps_agree_with_fps_and_transformers_metadata(clip):
    from transformers.video_utils import VideoMetadata

    _, metadata = load_video(clip, num_frames=6, start=2.0, end=5.0)
    video_metadata = VideoMetadata(**metadata)  # the dict is accepted as-is by transformers
    assert video_metadata.timestamps == [i / FPS for i in metadata["frames_indices"]]
    assert all(2.0 <= t < 5.0 for t in video_metadata.timestamps)
    # The true sampled rate of a window, not the whole-file rate transformers would infer
    assert sampled_fps(metadata) == pytest.approx(FPS / 4)


def test_window_and_exclusion_views(clip):
    video = VideoFile(clip)
    inside = video.frame_indices(num_frames=8, start=3.0, end=5.0)
    assert all(3.0 <= i / FPS < 5.0 for i in inside)
    outside = video.frame_indices(num_frames=16, exclude=(3.0, 5.0))
    assert len(outside) == 16
    assert all(not (3.0 <= i / FPS < 5.0) for i in outside)
    assert outside.min() < 3 * FPS and outside.max() >= 5 * FPS  # both sides of the hole are sampled
    # A window plus an exclusion inside it
    partial = video.frame_indices(num_frames=4, start=2.0, end=6.0, exclude=(3.0, 5.0))
    assert all(2.0 <= i / FPS < 3.0 or 5.0 <= i / FPS < 6.0 for i in partial)


def test_fps_sampling_and_max_frames(clip):
    video = VideoFile(clip)
    assert len(video.frame_indices(fps=2)) == 2 * SECONDS
    assert len(video.frame_indices(fps=2, max_frames=5)) == 5
    assert len(video.frame_indices(num_frames=32, max_frames=12)) == 12
    sparse = video.frame_indices(num_frames=4)
    assert len(sparse) == 4 and len(set(sparse.tolist())) == 4
    assert len(video.frame_indices()) == FPS * SECONDS  # no count: every frame of the window


def test_views_share_one_decode(clip):
    video = VideoFile(clip)
    views = {
        "segment": VideoView(num_frames=8, start=2.0, end=4.0),
        "without_segment": VideoView(num_frames=8, exclude=(2.0, 4.0)),
        "dense": VideoView(num_frames=16),
        "sparse": VideoView(num_frames=4),
    }
    loaded = video.load_views(views)
    union = set()
    for name, (frames, metadata) in loaded.items():
        assert len(frames) == len(metadata["frames_indices"])
        assert [read_frame_stamp(f) for f in frames] == metadata["frames_indices"], name
        union |= set(metadata["frames_indices"])
    assert video.frames_decoded == len(union)  # each distinct frame decoded exactly once
    video.load(views["dense"])
    assert video.frames_decoded == len(union)  # a repeated view decodes nothing more


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": 5.0, "end": 3.0}, "must be before end"),
        ({"start": 4.0, "end": 4.0}, "must be before end"),
        ({"start": 9.5}, "outside video"),
        ({"end": 12.0}, "outside video"),
        ({"start": -1.0}, "outside video"),
        ({"exclude": (0.0, 8.0)}, "covers the whole window"),
        ({"start": 2.0, "end": 4.0, "exclude": (1.0, 5.0)}, "covers the whole window"),
        ({"exclude": (5.0, 3.0)}, "must have start < end"),
        ({"exclude": (6.0, 20.0)}, "outside video"),
        ({"start": 7.99, "end": 7.995}, "contains no frame"),
        ({"num_frames": 0}, "num_frames=0"),
        ({"fps": -1.0}, "fps=-1.0"),
    ],
)
def test_bad_views_name_the_file_and_values(clip, kwargs, message):
    with pytest.raises(VideoLoadError, match=message) as error:
        load_video(clip, **kwargs)
    assert clip in str(error.value)


def test_missing_and_undecodable_files(tmp_path, video_dir):
    with pytest.raises(VideoLoadError, match="not found") as error:
        load_video(tmp_path / "nope.mp4")
    assert "nope.mp4" in str(error.value)

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"definitely not a video" * 100)
    with pytest.raises(VideoLoadError, match="Could not decode") as error:
        load_video(garbage)
    assert str(garbage) in str(error.value)

    truncated = tmp_path / "truncated.mp4"
    data = (video_dir / "red_blue.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoLoadError, match="truncated.mp4"):
        load_video(truncated, num_frames=4)


# --- PyAV, the reader where decord does not install: the same frames and metadata as decord ---------------------------
FALLBACK_VIEWS = {
    "whole": VideoView(num_frames=8),
    "window": VideoView(num_frames=5, start=2.0, end=5.0),
    "hole": VideoView(num_frames=6, exclude=(3.0, 6.0)),
    "rate": VideoView(fps=2.0, max_frames=10),
    "every_frame": VideoView(),
}


@pytest.mark.parametrize("name", ["red_blue.mp4", "green_yellow.mp4"])
def test_pyav_fallback_reads_what_decord_reads(video_dir, name, monkeypatch):
    pytest.importorskip("decord")
    path = str(video_dir / name)
    by_decord = VideoFile(path, reader="decord").load_views(FALLBACK_VIEWS)
    monkeypatch.setenv("TPO_HF_VIDEO_READER", "pyav")  # forced, as on a platform without decord
    by_pyav = load_video(path, num_frames=8)
    assert by_pyav[1]["video_backend"] == "pyav"
    fallback = VideoFile(path)
    assert fallback.reader == "pyav"
    for view, (pyav_frames, pyav_metadata) in fallback.load_views(FALLBACK_VIEWS).items():
        decord_frames, decord_metadata = by_decord[view]
        assert {**pyav_metadata, "video_backend": "decord"} == decord_metadata, view
        assert pyav_frames.shape == decord_frames.shape and pyav_frames.dtype == decord_frames.dtype
        # Same frames (each carries its index in pixels), decoded by the same FFmpeg up to colour conversion rounding
        assert [read_frame_stamp(f) for f in pyav_frames] == [read_frame_stamp(f) for f in decord_frames]
        assert np.abs(pyav_frames.astype(int) - decord_frames.astype(int)).mean() < 2.0, view


def test_unknown_reader_is_named(clip, monkeypatch):
    monkeypatch.setenv("TPO_HF_VIDEO_READER", "opencv")
    with pytest.raises(VideoLoadError, match="TPO_HF_VIDEO_READER='opencv'"):
        load_video(clip, num_frames=2)


def test_more_frames_than_the_video_has_gives_each_once_and_warns_once_per_video(video_dir, tmp_path, caplog):
    import logging
    import shutil

    clip = shutil.copy(video_dir / "red_blue.mp4", tmp_path / "copy.mp4")  # a path no other test warned about
    video = VideoFile(clip)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
        indices = video.frame_indices(num_frames=200)
        assert indices.tolist() == list(range(FPS * SECONDS))  # 64 distinct frames once, not 200 with repeats
        assert len(video.frame_indices(fps=4 * FPS)) == FPS * SECONDS  # a rate above the file's: the same rule
        window = video.frame_indices(num_frames=40, start=2.0, end=4.0)
        assert window.tolist() == list(range(2 * FPS, 4 * FPS))
        # where a fixed frame count is needed: repeats, evenly, up to the count asked
        repeated = video.frame_indices(VideoView(num_frames=200, repeat_frames=True))
        assert len(repeated) == 200 and set(repeated.tolist()) == set(range(FPS * SECONDS))
        frames, metadata = load_video(clip, num_frames=100)
        assert len(frames) == len(metadata["frames_indices"]) == FPS * SECONDS
    warned = [record.getMessage() for record in caplog.records]
    assert len(warned) == 1  # once per video per process
    assert str(clip) in warned[0] and "has 64 frame(s), fewer than the 200 asked (num_frames=200)" in warned[0]
