"""load_video / VideoFile: frame sampling, timestamps, decode-once views and every error case."""

from __future__ import annotations

from fractions import Fraction

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


# --- odd inputs: phone rotation, variable frame rate, audio only, odd endings, URLs, relative paths ------------------
def _with_display_rotation(source, target):
    """`source` with a 90-degree display matrix written into its track header (as a phone stores a portrait video)."""
    import struct

    data = bytearray(source.read_bytes())
    at = data.find(b"tkhd")
    version = data[at + 4]
    # box version/flags, then times, track id and duration (wider in version 1), reserved, layer, group, volume
    matrix = at + 8 + (8 + 8 + 4 + 4 + 8 if version == 1 else 4 + 4 + 4 + 4 + 4) + 8 + 2 + 2 + 2 + 2
    height = 64  # the fixture clips' stored height, the translation a 90-degree turn needs
    data[matrix : matrix + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, height << 16, 0, 0x40000000)
    target.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("reader", ["decord", "pyav"])
def test_rotated_phone_video_is_read_upright_by_both_readers(video_dir, tmp_path, reader):
    if reader == "decord":
        pytest.importorskip("decord")
    rotated = _with_display_rotation(video_dir / "red_blue.mp4", tmp_path / "portrait.mp4")
    frames, metadata = VideoFile(rotated, reader=reader).load(num_frames=4)
    assert frames.shape == (4, 128, 64, 3)  # stored 128x64 landscape, shown 64x128 portrait
    assert (metadata["width"], metadata["height"]) == (64, 128)
    # turned back a quarter counter-clockwise, each frame shows its index stamp where it was written
    assert [read_frame_stamp(np.ascontiguousarray(np.rot90(f, 1))) for f in frames] == metadata["frames_indices"]


def _write_variable_rate_video(path):
    """24 frames at 16 fps (0-1.5 s), then 8 frames at 2 fps (1.5-5.5 s); returns each frame's presentation time."""
    import av

    from tpo_hf.synthetic import Scene, synthetic_frames

    frames = synthetic_frames([Scene(3, "red"), Scene(1, "blue", "circle", "left")], fps=8)  # 32 stamped frames
    times = [i / 16 for i in range(24)] + [1.5 + (i - 24) / 2 for i in range(24, 32)]
    time_base = Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=16)
        stream.width, stream.height, stream.pix_fmt = 128, 64, "yuv420p"
        stream.codec_context.time_base = stream.time_base = time_base
        for frame, time in zip(frames, times):
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts, picture.time_base = round(time * 1000), time_base
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return np.array(times)


@pytest.mark.parametrize("reader", ["decord", "pyav"])
def test_variable_frame_rate_views_cut_by_true_frame_times(tmp_path, reader, caplog):
    import logging

    if reader == "decord":
        pytest.importorskip("decord")
    path = tmp_path / f"vfr_{reader}.mp4"
    times = _write_variable_rate_video(path)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
        video = VideoFile(path, reader=reader)
        VideoFile(path, reader=reader)  # warned once per video
    warned = [r.getMessage() for r in caplog.records if "variable frame rate" in r.getMessage()]
    assert len(warned) == 1 and str(path) in warned[0]
    assert 5.0 < video.duration <= 5.5  # the last frame starts at 5.0 s and lasts up to 0.5 s (not 32 / average rate)
    segment = video.frame_indices(start=2.0, end=4.0)
    assert segment.tolist() == [i for i, t in enumerate(times) if 2.0 <= t < 4.0]  # 2.0, 2.5, 3.0, 3.5 s
    without = video.frame_indices(exclude=(2.0, 4.0))
    assert without.tolist() == [i for i, t in enumerate(times) if not 2.0 <= t < 4.0]
    frames, metadata = video.load(num_frames=3, start=2.0, end=4.0)
    assert [read_frame_stamp(f) for f in frames] == metadata["frames_indices"]
    assert all(2.0 <= times[i] < 4.0 for i in metadata["frames_indices"])
    assert len(video.frame_indices(fps=1.0, start=2.0, end=4.0)) == 2  # 2 seconds at 1 fps


def _write_audio_only_mp4(path):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (0.2 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440)).astype(np.float32)[None, :]
        for start in range(0, samples.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("reader", ["decord", "pyav"])
def test_audio_only_and_empty_files_are_named_plainly(tmp_path, video_dir, reader):
    if reader == "decord":
        pytest.importorskip("decord")
    audio = _write_audio_only_mp4(tmp_path / "voice memo.mp4")
    with pytest.raises(VideoLoadError) as error:
        VideoFile(audio, reader=reader)
    assert str(error.value) == f"{audio} has no video stream (audio only?)"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoLoadError, match=r"empty\.mp4 is empty \(0 bytes\)"):
        VideoFile(empty, reader=reader)
    # decord's errors lose their log prefix ("[00:27:05] /github/workspace/src/video/video_reader.cc:151: ")
    truncated = tmp_path / "truncated.mp4"
    data = (video_dir / "red_blue.mp4").read_bytes()
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoLoadError) as error:
        VideoFile(truncated, reader=reader).load(num_frames=4)
    assert "/github/workspace" not in str(error.value) and ".cc:" not in str(error.value)


def test_video_endings_odd_and_dotless_are_listed_and_left_out_ones_named(video_dir, tmp_path, caplog):
    import logging
    import shutil

    from tpo_hf.video import is_video_file, list_video_files

    for name in ("holiday.m4v", "camcorder.MTS", "clip.MP4", "broadcast.ts", "old.3gp", "notes.txt"):
        shutil.copy(video_dir / "red_blue.mp4", tmp_path / name)
    with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
        listed = [p.name for p in list_video_files(tmp_path)]
    assert listed == ["broadcast.ts", "clip.MP4", "holiday.m4v", "old.3gp"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "camcorder.MTS" in warned[0] and "--video_extensions" in warned[0]
    assert "notes.txt" not in warned[0]
    # endings given without their dot, in any case, as a YAML list `[mp4, M4V]` gives them
    assert is_video_file(tmp_path / "clip.MP4", ["mp4"]) and is_video_file("a.m4v", ["M4V"])
    assert [p.name for p in list_video_files(tmp_path, ["mp4", "M4V"])] == ["clip.MP4", "holiday.m4v"]


def _serve(answers):
    """A local HTTP server answering each GET with the next `(content_type, body)` of `answers`; returns its URL."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            content_type, body = answers.pop(0)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/clips/red_blue.mp4"


def test_url_answered_with_a_web_page_or_garbage_is_not_cached(video_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TPO_HF_VIDEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    video = (video_dir / "red_blue.mp4").read_bytes()
    answers = [
        ("text/html; charset=utf-8", b"<html><body>Please sign in</body></html>"),
        ("application/octet-stream", b"Access denied" * 10),
        ("video/mp4", video),
    ]
    server, url = _serve(answers)
    try:
        with pytest.raises(VideoLoadError, match="Content-Type text/html") as error:
            load_video(url, num_frames=2)
        assert "Please sign in" in str(error.value) and url in str(error.value)
        assert not any((tmp_path / "cache").iterdir())  # the login page is not kept as the video
        with pytest.raises(VideoLoadError, match="Access denied") as error:
            load_video(url, num_frames=2)
        assert "removed from the cache" in str(error.value)
        assert not any((tmp_path / "cache").iterdir())
        frames, _ = load_video(url, num_frames=2)  # the server fixed: fetched again, then cached
        assert frames.shape == (2, 64, 128, 3) and len(list((tmp_path / "cache").glob("*.mp4"))) == 1
    finally:
        server.shutdown()


def test_missing_relative_path_names_the_folder_it_was_looked_for_in(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VideoLoadError) as error:
        load_video("videos/sub dir/x y#1.mp4", num_frames=2)
    message = str(error.value)
    assert "videos/sub dir/x y#1.mp4" in message and str(tmp_path) in message
    assert "video_root" in message and "--upload_videos" in message


def _write_small_video(path, width, height, pixel_format="yuv420p"):
    """8 frames at 8 fps: 4 red, then 4 blue."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        for index in range(8):
            picture = np.zeros((height, width, 3), dtype=np.uint8)
            picture[..., 0 if index < 4 else 2] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_tiny_video_decord_cannot_read_is_read_by_pyav_naming_it(tmp_path, caplog, monkeypatch):
    """p4 t01a: decord fails on some frames under 32 pixels wide (8x8, 1x1) with a bare DECORDError naming no file;
    such a file is read by PyAV (the same frames as forcing PyAV), warned once naming it. One neither reader reads
    names the file and both errors."""
    import logging

    pytest.importorskip("decord")
    monkeypatch.delenv("TPO_HF_VIDEO_READER", raising=False)
    small = _write_small_video(tmp_path / "tiny 8x8.mp4", 8, 8)
    one_pixel = _write_small_video(tmp_path / "one_px.mp4", 1, 1, "yuv444p")
    for path in (small, one_pixel):
        with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
            frames, metadata = load_video(path, num_frames=4)  # the default reader: decord
            load_video(path, num_frames=4)
        warned = [r.getMessage() for r in caplog.records if "PyAV reads this file instead" in r.getMessage()]
        assert len(warned) == 1 and str(path) in warned[0] and "decord cannot read it" in warned[0]
        caplog.clear()
        assert metadata["video_backend"] == "pyav"
        by_pyav, pyav_metadata = VideoFile(path, reader="pyav").load(num_frames=4)
        assert np.array_equal(frames, by_pyav) and metadata == pyav_metadata
        assert frames[0, ..., 0].min() > 200 and frames[-1, ..., 2].min() > 200  # red first, blue last

    garbage = tmp_path / "not a video.mp4"
    garbage.write_bytes(b"definitely not a video" * 100)
    with pytest.raises(VideoLoadError) as error:
        VideoFile(garbage, reader="decord")
    message = str(error.value)
    assert message.startswith(f"Could not decode video {garbage}: ") and "PyAV cannot read it either" in message
    assert "/github/workspace" not in message


# --- containers without a frame index, absurd frame times, and the forms a video value takes (probe 5) ---------------
def _write_clip_in(path, codec, container_format):
    """48 stamped frames at 12 fps (2 s red, 2 s blue) in `container_format` (FFmpeg's name) with `codec`."""
    import av

    from tpo_hf.synthetic import Scene, synthetic_frames

    frames = synthetic_frames([Scene(2, "red"), Scene(2, "blue")], fps=12)
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height, stream.pix_fmt = 128, 64, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _has_decord() -> bool:
    import importlib.util

    return importlib.util.find_spec("decord") is not None


def test_mpeg_transport_and_program_streams_are_read_by_pyav_even_where_decord_is_the_reader(tmp_path, caplog):
    """p5 F04/F05: decord silently returns other frames from an MPEG-TS file (3..45 -> 27..47) and ~1e14 s frame
    times from an MPEG-PS one (every window empty); files in containers without a frame index are read by PyAV, by
    the format PyAV reports (a .mp4-named transport stream too), logged once per file."""
    import logging

    videos = {
        "camera.ts": _write_clip_in(tmp_path / "camera.ts", "libx264", "mpegts"),
        "home_video.mpg": _write_clip_in(tmp_path / "home_video.mpg", "mpeg2video", "mpeg"),
        "misnamed_ts.mp4": _write_clip_in(tmp_path / "misnamed_ts.mp4", "libx264", "mpegts"),
    }
    for name, path in videos.items():
        for reader in ("pyav", "decord") if _has_decord() else ("pyav",):
            with caplog.at_level(logging.INFO, logger="tpo_hf.video"):
                video = VideoFile(path, reader=reader)
                VideoFile(path, reader=reader)
            assert video.reader == "pyav" and video.total_num_frames == 48 and video.duration == pytest.approx(4.0)
            frames, metadata = video.load(num_frames=8)
            assert (
                [read_frame_stamp(f) for f in frames] == metadata["frames_indices"] == [3, 9, 15, 21, 27, 33, 39, 45]
            )
            segment, segment_metadata = video.load(num_frames=4, start=1.0, end=2.0)
            assert [read_frame_stamp(f) for f in segment] == segment_metadata["frames_indices"] == [13, 16, 19, 22]
            logged = [r for r in caplog.records if str(path) in r.getMessage() and "PyAV reads" in r.getMessage()]
            if reader == "decord":
                assert len(logged) == 1 and "has no frame index" in logged[0].getMessage(), name
                assert logged[0].levelno == logging.INFO and metadata["video_backend"] == "pyav"
            caplog.clear()


def test_decord_frame_times_past_the_duration_are_never_trusted(tmp_path, caplog, monkeypatch):
    """p5 F05: decord's frame times of an MPEG-PS file run to ~1e14 s in a 4 s video ("variable frame rate", then
    every window empty). Such times are not trusted whatever the container: the file is read by PyAV, warned naming
    it. Here the container rule is switched off (tpo-hf's own list) so that only the time check stands between."""
    import logging

    from tpo_hf import video as video_module

    pytest.importorskip("decord")
    monkeypatch.setattr(video_module, "UNINDEXED_CONTAINER_FORMATS", frozenset(), raising=False)
    path = _write_clip_in(tmp_path / "home_video.mpg", "mpeg2video", "mpeg")
    with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
        video = VideoFile(path, reader="decord")
    warned = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert len(warned) == 1 and "cannot be right" in warned[0] and "PyAV reads this file instead" in warned[0]
    assert "variable frame rate" not in warned[0] and video.reader == "pyav"
    frames, metadata = video.load(num_frames=4, start=1.0, end=2.0)
    assert [read_frame_stamp(f) for f in frames] == metadata["frames_indices"] == [13, 16, 19, 22]
    # the rule itself: not finite, or past the duration by more than a second and a tenth of it
    assert video_module._implausible_frame_time(np.array([0.0, 1.0, 3.9]), 4.0, 4.0) is None
    assert video_module._implausible_frame_time(np.array([0.0, 1e14, 2.0]), 4.0, 4.0) == 1e14
    assert np.isnan(video_module._implausible_frame_time(np.array([0.0, np.nan]), 1.0, 4.0))


def test_a_folder_of_frames_given_as_the_video_is_named_as_a_folder(tmp_path):
    """p5 F09b: a folder of extracted frames gave "Could not decode video .../frames: Error reading ..."."""
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(np.full((64, 128, 3), index * 60, np.uint8)).save(folder / f"frame_{index:04d}.jpg")
    with pytest.raises(VideoLoadError) as error:
        load_video(folder, num_frames=2)
    message = str(error.value)
    assert message.startswith(f"Video {folder} is a folder, not a video file") and "ffmpeg" in message


def test_file_urls_and_home_relative_paths_name_local_files(video_dir, tmp_path, monkeypatch):
    """p5 F09d/e: `file:///abs/x.mp4` and `~/x.mp4` were joined to video_root ("Video file not found: <root>/file:///
    ..."). Both name the local file, in `load_video` and in the processor, whose resolved path keys the caches."""
    import shutil
    import urllib.parse

    from tpo_hf import VideoPreferenceProcessor
    from tpo_hf.fingerprint import file_identity
    from tpo_hf.tiny import build_tiny_model

    home = tmp_path / "home"
    (home / "clips").mkdir(parents=True)
    local = shutil.copy(video_dir / "red_blue.mp4", home / "clips" / "red blue#1.mp4")
    monkeypatch.setenv("HOME", str(home))
    file_url = "file://" + urllib.parse.quote(str(local))
    expected, _ = load_video(local, num_frames=4)
    for value in (file_url, "file://localhost" + urllib.parse.quote(str(local)), "~/clips/red blue#1.mp4"):
        frames, _ = load_video(value, num_frames=4)
        assert np.array_equal(frames, expected), value
    processor = VideoPreferenceProcessor(build_tiny_model()[1], num_frames=4, video_root=video_dir)
    for value in (file_url, "~/clips/red blue#1.mp4"):
        assert processor.resolve_video(value) == str(local), value
        assert file_identity(processor.resolve_video(value)) == file_identity(local)
    assert processor.resolve_video("red_blue.mp4") == str(video_dir / "red_blue.mp4")
    with pytest.raises(VideoLoadError, match="file:// URL on another host \\(nas\\)"):
        processor.resolve_video("file://nas/share/clip.mp4")


# --- probe 6 (b) -------------------------------------------------------------------------------------------------------
def test_linked_folders_are_searched_once_each_and_a_link_loop_ends(video_dir, tmp_path):
    """p6 b/f01: a linked folder of videos (a corpus on another disk, cam1 -> store/cam1) was skipped by the search,
    silently (Path.rglob does not follow linked folders before Python 3.13): its clips are listed now, for curation
    and V-NIAH haystacks alike, and a link back to a folder above ends rather than loops."""
    import shutil

    from tpo_hf.eval.vniah import haystack_sources
    from tpo_hf.video import list_video_files

    store, listed_dir = tmp_path / "store" / "cam1", tmp_path / "in"
    store.mkdir(parents=True)
    listed_dir.mkdir()
    shutil.copy(video_dir / "red_blue.mp4", store / "a.mp4")
    shutil.copy(video_dir / "green_yellow.mp4", listed_dir / "local.mp4")
    (listed_dir / "cam1").symlink_to(store, target_is_directory=True)
    (store / "up").symlink_to(listed_dir, target_is_directory=True)  # a loop: in/cam1/up -> in
    (listed_dir / "again").symlink_to(store, target_is_directory=True)  # one folder linked twice: listed once

    listed = [str(path.relative_to(listed_dir)) for path in list_video_files(listed_dir)]
    assert listed == ["again/a.mp4", "local.mp4"]
    assert [path.name for path in haystack_sources(listed_dir, tmp_path / "eval")] == ["a.mp4", "local.mp4"]


def test_a_cover_picture_stream_before_the_clip_is_not_what_pyav_reads(tmp_path):
    """p6 b/f02: an .mkv whose first video stream is a one-frame cover (yt-dlp --embed-thumbnail, some cameras) and
    whose second is the clip: PyAV read the cover (1 frame, 1 fps) where decord reads the clip. PyAV now takes the
    stream decord takes (FFmpeg's best video stream), so both read the clip's frames."""
    import av

    from tpo_hf.synthetic import Scene, synthetic_frames

    frames = synthetic_frames([Scene(2, "red"), Scene(2, "blue")], fps=8)
    path = tmp_path / "with cover.mkv"
    with av.open(str(path), "w") as container:
        cover = container.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 64, 64, "yuvj420p"
        clip = container.add_stream("libx264", rate=8)
        clip.width, clip.height, clip.pix_fmt = 128, 64, "yuv420p"
        picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="rgb24")
        for packet in [*cover.encode(picture), *cover.encode()]:
            container.mux(packet)
        for frame in frames:
            for packet in clip.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in clip.encode():
            container.mux(packet)

    readers = ["pyav", "decord"] if _has_decord() else ["pyav"]
    for reader in readers:
        video = VideoFile(path, reader=reader)
        assert (video.total_num_frames, video.fps, video.width, video.height) == (32, 8.0, 128, 64), reader
        sampled, metadata = video.load(num_frames=4)
        assert [read_frame_stamp(frame) for frame in sampled] == list(metadata["frames_indices"]), reader


def test_a_resolution_change_mid_stream_is_scaled_to_the_first_size_naming_the_file(tmp_path, caplog):
    """p6 b/f46: an mp4 whose resolution changes mid-stream (clips joined without re-encoding, `ffmpeg -f concat -c
    copy`): PyAV failed with numpy's "all input arrays must have the same shape", naming nothing. Its later frames are
    now scaled to the first frame's size, as decord does, with one warning naming the file and both sizes."""
    import logging

    import av

    parts = []
    for name, width, height in (("wide.mp4", 128, 64), ("square.mp4", 96, 96)):
        with av.open(str(tmp_path / name), "w") as container:
            encoder = container.add_stream("libx264", rate=8)
            encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
            encoder.options = {"x264-params": "repeat-headers=1"}  # each part's sizes inline, as a joined file has
            for index in range(8):  # 4 red frames, then 4 blue
                picture = np.zeros((height, width, 3), dtype=np.uint8)
                picture[..., 0 if index < 4 else 2] = 255
                for packet in encoder.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                    container.mux(packet)
            for packet in encoder.encode():
                container.mux(packet)
        parts.append(tmp_path / name)
    joined = tmp_path / "joined clips.mp4"
    with av.open(str(parts[0])) as first, av.open(str(parts[1])) as second, av.open(str(joined), "w") as target:
        stream = target.add_stream_from_template(first.streams.video[0])
        offset = 0
        for source in (first, second):
            end = offset
            for packet in source.demux(source.streams.video[0]):
                if packet.dts is None:
                    continue
                packet.pts += offset
                packet.dts += offset
                end = max(end, packet.pts + (packet.duration or 0))
                packet.stream = stream
                target.mux(packet)
            offset = end

    with caplog.at_level(logging.WARNING, logger="tpo_hf.video"):
        frames, _ = VideoFile(joined, reader="pyav").load(num_frames=16)
        VideoFile(joined, reader="pyav").load(num_frames=16)
    assert frames.shape == (16, 64, 128, 3)
    # the scaled second part keeps its colours
    assert frames[8, ..., 0].mean() > 200 and frames[15, ..., 2].mean() > 200
    warned = [r.getMessage() for r in caplog.records if "changes resolution mid-stream" in r.getMessage()]
    assert len(warned) == 1 and str(joined) in warned[0] and "96x96 from frame 8 on, 128x64 before" in warned[0]
    if _has_decord():
        by_decord, _ = VideoFile(joined, reader="decord").load(num_frames=16)
        assert by_decord.shape == frames.shape
        assert np.abs(by_decord.astype(int) - frames.astype(int)).mean() < 8.0


def test_a_file_named_in_another_unicode_form_is_found(video_dir, tmp_path):
    """Probe b/g26: a dataset typed as `café.mp4` (composed, NFC) and the file copied from a Mac named in decomposed
    form (NFD: e + combining accent) gave "Video file not found" for a file the folder listing shows."""
    import shutil
    import unicodedata

    folder = tmp_path / unicodedata.normalize("NFD", "vidéos")
    folder.mkdir()
    shutil.copy(video_dir / "red_blue.mp4", folder / unicodedata.normalize("NFD", "café.mp4"))
    typed = tmp_path / unicodedata.normalize("NFC", "vidéos") / unicodedata.normalize("NFC", "café.mp4")
    assert not typed.exists()
    frames, _ = load_video(str(typed), num_frames=2)
    assert (frames == load_video(str(video_dir / "red_blue.mp4"), num_frames=2)[0]).all()
    with pytest.raises(VideoLoadError, match="Video file not found"):
        load_video(str(tmp_path / "vidéos" / "other.mp4"), num_frames=2)
