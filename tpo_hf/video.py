"""Stage 1 of the flow: decode videos and sample frames (decord where it installs, else PyAV).

`load_video` returns frames plus the metadata a transformers video processor needs with `do_sample_frames=False`.
`VideoFile` keeps one video open so curation can cut several views from it (the segment, the video without the
segment, a dense and a sparse view) while every frame is decoded at most once.

Frame `i` belongs to the time window `[a, b)` when `a <= t_i < b`: a localized view of `[a, b)` holds only such
frames and the view that excludes `[a, b)` holds none of them. `t_i` is `i / fps` for a constant-frame-rate video, and
the frame's presentation time (from the first frame's) for one whose times stray from that by more than a frame
(variable frame rate, e.g. phone recordings); such a video is warned about once, naming it, since the times a model
reads beside the frames are still `frames_indices / fps`.

Readers: decord (x86-64 Linux and Windows wheels only) is the default where it is installed; elsewhere (macOS arm64,
aarch64 Linux) PyAV reads the file. Both count frames in decode order and report the stream's average frame rate, so
the same view selects the same frame indices and timestamps with either; `TPO_HF_VIDEO_READER=pyav` forces PyAV.
A file decord cannot open or decode (some frames under 32 pixels wide) is read with PyAV, warned once naming it.
Containers without a frame index (MPEG-TS, MPEG-PS: .ts, .m2ts, .mpg, .mpeg, .vob; raw streams), by the format PyAV
reports, are always read with PyAV: decord returns other frames than those asked from them, or absurd times. Frame
times beyond the video's duration are never trusted: decord's send the file to PyAV, PyAV's are ignored (`i / fps`).
Both give frames upright: a display matrix's rotation (phone videos) is applied, as decord does, by the PyAV reader.
Both read the same stream of a file with several (FFmpeg's best video stream, never a cover picture before the clip),
and both scale the frames of a video whose resolution changes mid-stream to its first frame's size (PyAV warns once).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.client
import logging
import math
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

# The fields of `transformers.video_utils.VideoMetadata`; the metadata dict holds exactly these so it can be passed on.
METADATA_FIELDS = ("total_num_frames", "fps", "width", "height", "duration", "video_backend", "frames_indices")
# File endings taken for videos wherever a folder is searched (curation inputs, benchmark videos, V-NIAH haystacks);
# matched case-insensitively.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".ts", ".3gp")
# Endings of files that are probably videos too: a folder listing names those it leaves out, rather than silently.
LIKELY_VIDEO_EXTENSIONS = (
    *VIDEO_EXTENSIONS,
    *(".wmv", ".flv", ".f4v", ".m2ts", ".mts", ".m2v", ".vob", ".ogv", ".3g2", ".asf", ".mxf", ".qt", ".divx"),
    *(".rm", ".rmvb", ".y4m", ".h264", ".h265", ".hevc"),
)


def normalize_video_extensions(extensions: tuple[str, ...] | list[str]) -> list[str]:
    """`extensions` as lower-case endings with their dot (`"MP4"` -> `".mp4"`), so a list written without dots works."""
    return [f".{str(extension).strip().lstrip('.').lower()}" for extension in extensions if str(extension).strip(". ")]


def is_video_file(path: str | os.PathLike, extensions: tuple[str, ...] | list[str] = VIDEO_EXTENSIONS) -> bool:
    """Whether `path` ends with one of `extensions` (case-insensitive; `"mp4"` and `".mp4"` alike)."""
    return Path(path).suffix.lower() in normalize_video_extensions(extensions)


def _walk_following_links(folder: Path) -> list[Path]:
    """Every entry under `folder`, linked folders' entries included (`Path.rglob` skips them before Python 3.13),
    each real folder searched once: a link back to a folder above (a loop) or a second link to one folder adds
    nothing."""
    entries = []
    searched = set()
    for directory, folder_names, file_names in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in searched:
            folder_names[:] = []  # reached before through another link: its entries are listed already
            continue
        searched.add(real)
        folder_names.sort()  # the first path found to a folder linked twice is the one listed, on every run
        entries += [Path(directory, name) for name in folder_names + file_names]
    return entries


def list_video_files(
    folder: str | os.PathLike, extensions: tuple[str, ...] | list[str] = VIDEO_EXTENSIONS
) -> list[Path]:
    """Every video file under `folder` (recursive), sorted by path.

    A broken link with a video extension (its target gone, or a link loop) is listed too, with a warning naming it
    and its target: reading it then fails by name (`VideoLoadError`), so curation skips it (or raises, per
    `on_video_error`) like any undecodable video and a V-NIAH haystack names it, rather than the file silently not
    being there. A folder with a video extension is not listed. Files whose ending is not in `extensions` but looks
    like a video's (`LIKELY_VIDEO_EXTENSIONS`) are named in one warning, not silently left out. Linked folders are
    searched too (a corpus on another disk linked in), each real folder once, so a link loop ends.
    """
    found = []
    left_out = []
    for path in _walk_following_links(Path(folder)):
        if not is_video_file(path, extensions):
            if is_video_file(path, LIKELY_VIDEO_EXTENSIONS) and path.is_file():
                left_out.append(path)
            continue
        if path.is_file():
            found.append(path)
        elif path.is_symlink() and not path.exists():
            try:
                target = os.readlink(path)
            except OSError as error:
                target = f"<unreadable: {error}>"
            logger.warning(
                "Video file %s is a broken link -> %s: listed, so reading it fails by name (skipped or raised).",
                path,
                target,
            )
            found.append(path)
    if left_out:
        left_out.sort()
        shown = ", ".join(str(path) for path in left_out[:5]) + (
            f" and {len(left_out) - 5} more" if len(left_out) > 5 else ""
        )
        logger.warning(
            "Left out %d file(s) under %s that look like videos but whose ending is not among the video extensions "
            "%s: %s. Add their endings to `video_extensions` (tpo-hf curate --video_extensions) to use them.",
            len(left_out),
            folder,
            ", ".join(normalize_video_extensions(extensions)),
            shown,
        )
    return sorted(found)


def outside_own_folders(
    paths: list[Path],
    listed_under: str | os.PathLike,
    output_dir: str | os.PathLike,
    written_videos: str,
    other_own_folders: tuple[str | os.PathLike, ...] = (),
) -> list[Path]:
    """`paths`, as `list_video_files(listed_under)` gives them, less the files under a run's own folders when those
    lie inside `listed_under`: what a run writes is not input for the next run (curation's copies under
    `output_dir/videos`, V-NIAH's needle videos under `output_dir/vniah_videos`). The own folders are `output_dir`,
    or only `output_dir/<written_videos>` when `listed_under` lies at or under `output_dir`, and `other_own_folders`
    (curation's work folder); one that holds `listed_under` itself leaves nothing out."""
    root, output = Path(listed_under).resolve(), Path(output_dir).resolve()
    own = [output / written_videos if root.is_relative_to(output) else output]
    own += [Path(folder).resolve() for folder in other_own_folders]
    own = [folder for folder in own if folder.is_relative_to(root) and not root.is_relative_to(folder)]
    if not own:
        return paths
    inside = [folder.relative_to(root) for folder in own]  # compared as paths relative to listed_under, as listed
    kept = [path for path in paths if not any(path.relative_to(listed_under).is_relative_to(f) for f in inside)]
    if len(kept) < len(paths):
        logger.info(
            "Left out %d video file(s) under the run's own output folder(s) inside %s: %s.",
            len(paths) - len(kept),
            listed_under,
            ", ".join(str(folder) for folder in own),
        )
    return kept


class VideoLoadError(ValueError):
    """A video cannot be opened, decoded or sampled as asked; the message names the file and the values."""


VIDEO_READERS = ("decord", "pyav")


def default_video_reader() -> str:
    """`TPO_HF_VIDEO_READER` if set, else decord where it is installed, else PyAV."""
    import importlib.util

    chosen = os.environ.get("TPO_HF_VIDEO_READER")
    if chosen:
        if chosen not in VIDEO_READERS:
            raise VideoLoadError(f"TPO_HF_VIDEO_READER={chosen!r}: use one of {VIDEO_READERS}")
        return chosen
    return "decord" if importlib.util.find_spec("decord") is not None else "pyav"


class _NoVideoStream(Exception):
    """The file opens but holds no video stream (an audio-only .mp4, say)."""


# decord's errors start with its log prefix, "[00:27:05] /github/workspace/src/video/video_reader.cc:151: "
_DECORD_LOG_PREFIX = re.compile(r"^\[\d{2}:\d{2}:\d{2}\] \S+:\d+: ")


def _reader_error_text(error: BaseException) -> str:
    """The error's text without decord's log prefix (time, source file and line), which says nothing to a user."""
    return _DECORD_LOG_PREFIX.sub("", str(error))


class _DecordReader:
    def __init__(self, path: str):
        import decord

        try:
            self._reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        except decord.DECORDError as error:
            if "cannot find video stream" in str(error):
                raise _NoVideoStream() from error
            raise
        self.total_num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())
        self._frame_times: tuple[np.ndarray, float] | None = None

    def frame_times(self) -> tuple[np.ndarray, float] | None:
        """Each frame's presentation time in seconds from the first frame's, and when the last frame ends."""
        if self.total_num_frames == 0:
            return None
        if self._frame_times is None:  # asked twice: checked when opened, then used
            spans = np.asarray(self._reader.get_frame_timestamp(list(range(self.total_num_frames))), np.float64)
            self._frame_times = spans[:, 0] - spans[0, 0], float(spans[-1, 1] - spans[0, 0])
        return self._frame_times

    def get_batch(self, indices: list[int]) -> np.ndarray:
        return self._reader.get_batch(indices).asnumpy()


class _UnreadableVideo(Exception):
    """Neither reader opens the file or decodes its first frame; the text says why (each reader's error)."""


def _open_reader(reader: str, path: str) -> tuple[Any, np.ndarray | None]:
    """`reader` ("decord" or "pyav") opened on `path`, and the file's first frame (`None` when it has none)."""
    opened = (_DecordReader if reader == "decord" else _PyAVReader)(path)
    return opened, (opened.get_batch([0])[0] if opened.total_num_frames else None)


# Container formats (FFmpeg's names, as PyAV reports them) whose frames carry no index to seek by: MPEG transport
# streams (.ts, .m2ts, .mts), MPEG program streams (.mpg, .mpeg, .vob) and raw elementary streams. From these decord
# silently returns other frames than those asked (MPEG-TS: frames 27-47 for 3-45) or frame times of ~1e14 s
# (MPEG-PS); PyAV decodes them in order from the start, right.
UNINDEXED_CONTAINER_FORMATS = frozenset({"mpegts", "mpegtsraw", "mpeg", "mpegvideo", "h264", "hevc", "m4v"})


@dataclass(frozen=True)
class _Container:
    """What PyAV reports of a file's container: its format names and its duration in seconds (`None`: not given)."""

    format_names: frozenset[str]
    duration: float | None


def _probe_container(path: str) -> _Container | None:
    """The container of `path` as PyAV reports it (headers only, no frame decoded); `None` when PyAV cannot open it
    (the readers then say why). Remembered per file version (path, size, time): a run opens the same video many times."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _probe_container_version(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _probe_container_version(path: str, size: int, mtime_ns: int) -> _Container | None:
    import av

    try:
        with av.open(path) as container:
            duration = container.duration / av.time_base if container.duration else None
            return _Container(frozenset(container.format.name.split(",")), duration)
    except Exception:  # PyAV's FFmpegError or OSError for a file it cannot open
        return None


def _implausible_frame_time(times: np.ndarray, end: float, duration: float) -> float | None:
    """The frame time (or end time) furthest off among those that cannot be right, or `None`: a time that is not
    finite, or lies before the first frame or past `duration` by more than a second plus a tenth of the duration."""
    values = np.append(times, end)
    tolerance = 1.0 + 0.1 * duration
    wrong = values[~np.isfinite(values) | (values < -tolerance) | (values > duration + tolerance)]
    if wrong.size == 0:
        return None
    return float(wrong[np.argmax(np.nan_to_num(np.abs(wrong), nan=np.inf))])


_NOTED_READ_WITH_PYAV: set[str] = set()  # videos logged about by `_note_read_with_pyav` in this process


def _note_read_with_pyav(path: str, why: str, level: int = logging.WARNING) -> None:
    """Logs, once per video per process, that PyAV reads it instead of decord, and `why`."""
    if path in _NOTED_READ_WITH_PYAV:
        return
    _NOTED_READ_WITH_PYAV.add(path)
    logger.log(
        level,
        "Video %s: %s, so PyAV reads this file instead (TPO_HF_VIDEO_READER=pyav reads every video with PyAV).",
        path,
        why,
    )


def _main_video_stream(container: Any) -> Any:
    """The video stream decord reads (FFmpeg's best one: `av_find_best_stream`, which prefers a stream of many frames
    to a one-frame cover picture), so both readers read the same stream of a file with several; never an attached
    picture (a cover, a thumbnail) while the file has another video stream."""
    import av

    attached_picture = getattr(av.stream.Disposition, "attached_pic", 0)
    best = container.streams.best("video") or container.streams.video[0]
    if best.disposition & attached_picture:
        moving = [stream for stream in container.streams.video if not stream.disposition & attached_picture]
        return moving[0] if moving else best
    return best


_WARNED_SIZE_CHANGE: set[str] = set()  # videos warned about by `_warn_size_change` in this process


def _warn_size_change(path: str, first_size: tuple[int, int], size: tuple[int, int], index: int) -> None:
    """Warns, once per video per process, that its frames change size mid-stream and are scaled to the first's."""
    if path in _WARNED_SIZE_CHANGE:
        return
    _WARNED_SIZE_CHANGE.add(path)
    logger.warning(
        "Video %s changes resolution mid-stream (%dx%d from frame %d on, %dx%d before): its frames are scaled to the "
        "first frame's size, %dx%d, as decord does. Re-encode it to one size to avoid the scaling.",
        path,
        *size,
        index,
        *first_size,
        *first_size,
    )


class _PyAVReader:
    """Frames by decode-order index, like decord: the file is decoded from the start up to the last frame asked for."""

    def __init__(self, path: str):
        import av

        self._path = path
        with av.open(path) as container:
            if not container.streams.video:
                raise _NoVideoStream()
            stream = _main_video_stream(container)
            self._stream_index = stream.index
            self.container_duration = container.duration / av.time_base if container.duration else None
            rate = stream.average_rate or stream.guessed_rate
            self.fps = float(rate) if rate else 0.0
            # Counted from the packets (no decoding): the container's frame count can be missing or rounded
            packets = [(packet.pts, packet.duration) for packet in container.demux(stream) if packet.size > 0]
            self.total_num_frames = len(packets)
            self._packet_times = (packets, stream.time_base)

    def frame_times(self) -> tuple[np.ndarray, float] | None:
        """Each frame's presentation time in seconds from the first frame's, and when the last frame ends (from the
        packets read when the file was opened: frames come out of the decoder in presentation order)."""
        packets, time_base = self._packet_times
        if not packets or not time_base or any(pts is None for pts, _ in packets):
            return None
        tick = time_base.numerator / time_base.denominator
        packets = sorted(packets, key=lambda packet: packet[0])
        first = packets[0][0]
        times = np.array([(pts - first) * tick for pts, _ in packets], dtype=np.float64)
        last_pts, last_duration = packets[-1]
        if last_duration:
            end = (last_pts + last_duration - first) * tick
        else:
            end = float(times[-1] + (times[-1] - times[-2] if len(times) > 1 else 0.0))
        return times, end

    def get_batch(self, indices: list[int]) -> np.ndarray:
        import av

        wanted = set(indices)
        found: dict[int, np.ndarray] = {}
        first_size, resized_from = None, None
        with av.open(self._path) as container:
            for index, frame in enumerate(container.decode(container.streams[self._stream_index])):
                first_size = first_size or (frame.width, frame.height)
                if (frame.width, frame.height) != first_size and resized_from is None:
                    resized_from = index
                if index in wanted:
                    if (frame.width, frame.height) != first_size:
                        # a resolution change mid-stream (clips joined without re-encoding): scaled to the first
                        # frame's size, as decord does, so the frames stack and both readers agree
                        _warn_size_change(self._path, first_size, (frame.width, frame.height), resized_from)
                    image = frame.to_ndarray(format="rgb24", width=first_size[0], height=first_size[1])
                    # a display matrix (phone videos) says how to turn the stored picture upright, as decord does:
                    # FFmpeg's angle is counter-clockwise, np.rot90's too
                    quarter_turns = round((getattr(frame, "rotation", 0) or 0) / 90) % 4
                    if quarter_turns:
                        image = np.ascontiguousarray(np.rot90(image, quarter_turns))
                    found[index] = image
                    if len(found) == len(wanted):
                        break
        missing = sorted(wanted - found.keys())
        if missing:
            raise IndexError(f"frames {missing[:5]} are past the last decodable frame")
        return np.stack([found[i] for i in indices])


@dataclass(frozen=True)
class VideoView:
    """How to sample one view of a video. All times are in seconds.

    Args:
        num_frames: exact number of frames, spread uniformly (takes precedence over `fps`).
        fps: sample at this rate instead of a fixed count.
        max_frames: cap on the number of frames, whichever of the above is used.
        start, end: window to sample from (default: the whole video).
        exclude: `(t0, t1)` window to leave out (the localized TPO dis-preferred view).
        repeat_frames: when the video (or window) has fewer frames than asked, repeat frames up to the count asked
            instead of giving each frame once. Only for families that need a fixed frame count per batch
            (`VideoFamily.needs_fixed_frame_count`); repeats add tokens, never information.

    Fewer frames than asked: a video (or window) with fewer frames than `num_frames` (or than `fps` asks for) gives
    each of its frames once, no repeats, so it costs fewer tokens rather than repeats of the same frames; with
    `repeat_frames` the frames are repeated (evenly) up to the count asked. Either way a warning names the video and
    the counts, once per video per process.
    """

    num_frames: int | None = None
    fps: float | None = None
    max_frames: int | None = None
    start: float | None = None
    end: float | None = None
    exclude: tuple[float, float] | None = None
    repeat_frames: bool = False


_WARNED_FEWER_FRAMES: set[str] = set()  # videos warned about by `_warn_fewer_frames` in this process


def _warn_fewer_frames(path: str, asked: int, available: int, view: VideoView) -> None:
    """Warns, once per video per process, that a view asks for more frames than the video (or window) has."""
    if path in _WARNED_FEWER_FRAMES:
        return
    _WARNED_FEWER_FRAMES.add(path)
    setting = f"num_frames={view.num_frames}" if view.num_frames is not None else f"fps={view.fps}"
    window = "" if view.start is None and view.end is None and view.exclude is None else " in the window sampled"
    outcome = (
        f"its frames are repeated to make {asked} (repeat_frames: the model needs a fixed frame count)"
        if view.repeat_frames
        else f"each is given once ({available} frames, not {asked})"
    )
    logger.warning(
        "Video %s has %d frame(s)%s, fewer than the %d asked (%s): %s. Further views of this video are not warned "
        "about.",
        path,
        available,
        window,
        asked,
        setting,
        outcome,
    )


_WARNED_VARIABLE_RATE: set[str] = set()  # videos warned about by `_warn_variable_frame_rate` in this process


def _warn_variable_frame_rate(path: str, fps: float, largest_drift: float) -> None:
    """Warns, once per video per process, that its frame times are not `index / fps`."""
    if path in _WARNED_VARIABLE_RATE:
        return
    _WARNED_VARIABLE_RATE.add(path)
    logger.warning(
        "Video %s has a variable frame rate: its frames' presentation times stray up to %.2f s from frame index / "
        "%.3f fps (the average rate). Windows and exclusions are cut by the true frame times, but the times a model "
        "reads beside the frames are frame index / average rate, off by up to that much; re-encode it at a constant "
        "rate for exact times (ffmpeg -i in.mp4 -fps_mode cfr out.mp4).",
        path,
        largest_drift,
        fps,
    )


_WARNED_IMPLAUSIBLE_TIMES: set[str] = set()  # videos warned about by `_warn_implausible_frame_times` in this process


def _warn_implausible_frame_times(path: str, stray: float, duration: float, fps: float) -> None:
    """Warns, once per video per process, that its frame times are ignored for one that cannot be right."""
    if path in _WARNED_IMPLAUSIBLE_TIMES:
        return
    _WARNED_IMPLAUSIBLE_TIMES.add(path)
    logger.warning(
        "Video %s reports a frame time of %.6g s in a video of %.3f s, which cannot be right: its frame times are "
        "ignored and frame i is taken at i / %.3f fps; re-encode it if its frame rate varies "
        "(ffmpeg -i in.ts -fps_mode cfr out.mp4).",
        path,
        stray,
        duration,
        fps,
    )


# Content types of a web page: a login or error page a server answers with status 200 in place of the video
_WEB_PAGE_TYPES = ("text/html", "application/xhtml+xml")


def is_video_url(path: str | os.PathLike) -> bool:
    """Whether `path` is an http(s) URL, its scheme written in any case (`HTTP://` is the same scheme, RFC 3986)."""
    return os.fspath(path)[:8].lower().startswith(("http://", "https://"))


def _other_unicode_form(path: Path) -> Path | None:
    """The existing file or folder `path` names with its names in another Unicode normalisation form, or None: macOS
    writes file names decomposed (NFD, `e` + combining accent), while a dataset typed elsewhere holds them composed
    (NFC), so the two spellings of one name look identical but do not match byte for byte."""
    import unicodedata

    if path.exists():
        return path
    if path.name.isascii() or path.parent == path:
        return None
    parent = _other_unicode_form(path.parent) if not path.parent.exists() else path.parent
    if parent is None:
        return None
    wanted = unicodedata.normalize("NFC", path.name)
    try:
        names = os.listdir(parent)
    except OSError:
        return None
    for name in names:
        if unicodedata.normalize("NFC", name) == wanted:
            return parent / name
    return None


def local_video_path(video: str | os.PathLike) -> str:
    """`video` as the local path it names: a `file://` URL as its path (percent-escapes decoded), a leading `~` as the
    home folder, as a shell would; anything else (relative paths, http(s) URLs) as given.

    Raises:
        VideoLoadError: a `file://` URL naming another host, which cannot be read as a local file.
    """
    video = os.fspath(video)
    if video[:7].lower() == "file://":
        url = urllib.parse.urlparse(video)
        if url.netloc not in ("", "localhost"):
            raise VideoLoadError(
                f"Video {video}: a file:// URL on another host ({url.netloc}) is not a local file; give its local "
                "path, or an http(s) URL"
            )
        return urllib.request.url2pathname(url.path)
    if video.startswith("~"):
        return os.path.expanduser(video)
    return video


def _resolve_local_path(path: str | os.PathLike) -> Path:
    """Local path for `path` (`file://` URLs and `~` as `local_video_path` reads them); http(s) URLs are downloaded
    once into a cache folder.

    A web page answered in place of the video (Content-Type text/html) or a body cut short of its Content-Length is
    refused by name and never cached, so a rerun once the server is fixed fetches the video; a cached download that
    does not decode is removed by `VideoFile`.
    """
    path_str = str(path)
    if is_video_url(path_str):
        return _cached_download(path_str)
    local = Path(local_video_path(path_str))
    if not local.exists() and (found := _other_unicode_form(local)) is not None:
        logger.info("Video %s is read from %s: the same name in another Unicode form (NFC / NFD).", path_str, found)
        return found
    return local


def video_cache_dir() -> Path:
    """Where video URLs are downloaded: `TPO_HF_VIDEO_CACHE`, default `~/.cache/tpo_hf/videos`."""
    return Path(os.environ.get("TPO_HF_VIDEO_CACHE", Path.home() / ".cache" / "tpo_hf" / "videos"))


# RFC 3986 characters a path (or query) may hold as they are; `%` keeps escapes already there (`%20`), never
# decoded and encoded again
_PATH_SAFE = "/%:@!$&'()*+,;=~"
_QUERY_SAFE = _PATH_SAFE + "?"


def _request_url(url: str) -> str:
    """`url` as sent to its server: its path and query percent-encoded where they hold what a request line cannot (a
    space, non-ASCII letters, as in a URL pasted from a browser's address bar: `/my video é.mp4` is sent as
    `/my%20video%20%C3%A9.mp4`), escapes already there (`%20`), `/`, `?`, `=` and `&` kept, a `%` that starts no
    escape sent as `%25`, a non-ASCII host name in IDNA. The URL as written stays the video's name: in messages, and the cache file's name and
    the video's identity, so caches made before are still found."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if not netloc.isascii():
        userinfo, at, host = netloc.rpartition("@")
        name, colon, port = host.partition(":")
        with contextlib.suppress(UnicodeError):  # a name IDNA refuses: sent as written, and named by the failure
            netloc = userinfo + at + name.encode("idna").decode("ascii") + colon + port

    def encoded(text: str, safe: str) -> str:
        return urllib.parse.quote(re.sub(r"%(?![0-9A-Fa-f]{2})", "%25", text), safe=safe)

    return urllib.parse.urlunsplit(
        (parts.scheme, netloc, encoded(parts.path, _PATH_SAFE), encoded(parts.query, _QUERY_SAFE), "")
    )


# RFC 3986 unreserved characters: an escape of one (`%65`) is the character itself
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def video_url_key(url: str) -> str:
    """What tells two spellings of one video URL apart from two videos: the URL as requested (`_request_url`: a
    pasted `my video.mp4` is `my%20video.mp4`), its scheme and host in lower case, escapes in upper case and those of
    unreserved characters decoded (`%65` is `e`), as RFC 3986 compares URLs; the fragment dropped (never sent)."""
    parts = urllib.parse.urlsplit(_request_url(url))
    userinfo, at, host = parts.netloc.rpartition("@")

    def escape(match: re.Match) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else match.group(0).upper()

    path, query = (re.sub(r"%([0-9A-Fa-f]{2})", escape, text) for text in (parts.path or "/", parts.query))
    return urllib.parse.urlunsplit((parts.scheme, userinfo + at + host.lower(), path, query, ""))


def _cache_target(url: str) -> Path:
    suffix = Path(url.split("#")[0].split("?")[0]).suffix or ".mp4"
    return video_cache_dir() / (hashlib.sha256(url.encode()).hexdigest()[:32] + suffix)


def _validator_path(target: Path) -> Path:
    """Beside a cached download: the server's version of it (`url_version`) when it was fetched."""
    return target.with_name(target.name + ".version")


# url -> the version its server reports (`url_version`), asked once per process
_SERVER_VERSIONS: dict[str, str | None] = {}
# url -> why its server named no version when asked online, until the warning that its cached copy is used unchecked
# is given (once per process) or the video is downloaded (then the copy is the server's current one)
_UNCHECKED: dict[str, str] = {}
# url -> the length its server named when it named no version (`_ask_version`): not the video's version, but a length
# other than the cached copy's still tells a replaced video, however large (`_refresh_unversioned`)
_SERVER_LENGTHS: dict[str, int] = {}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _version_of(headers: Any) -> str | None:
    """What identifies one version of a file on a web server: its ETag, else Last-Modified. Not its length alone:
    another video of the same byte size has it too, so a server naming only a length names no version, and its
    video is known by its content (`url_version`)."""
    for name, label in (("ETag", "etag"), ("Last-Modified", "last-modified")):
        value = (headers.get(name) or "").strip()
        if value:
            return f"{label} {value}"
    return None


def _length_of(headers: Any, ranged: bool = False) -> int | None:
    """The file's length a server names: Content-Length, or for the answer to a ranged GET (206) the file's after
    the slash of Content-Range, not the range's."""
    length = (headers.get("Content-Range") or "").rpartition("/")[2] if ranged else headers.get("Content-Length")
    length = (length or "").strip()
    return int(length) if length.isdigit() else None


def _ask_version(url: str) -> tuple[str | None, str, int | None]:
    """(the version of `url` its server reports, why there is none, the length it names where it names no version):
    a HEAD request, else a GET of its first byte (`Range: bytes=0-0`, closed without reading a body the server sends
    whole) for servers that refuse HEAD (405, 403 for URLs signed for GET, 501) or answer it without ETag or
    Last-Modified."""
    length = None
    try:
        with urllib.request.urlopen(urllib.request.Request(_request_url(url), method="HEAD"), timeout=30) as response:
            version, length = _version_of(response.headers), _length_of(response.headers)
        if version:
            return version, "", None
        head = "HEAD named no ETag or Last-Modified"
    except urllib.error.HTTPError as error:
        error.close()
        head = f"HEAD refused: {error}"
    except (OSError, http.client.HTTPException, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, (ConnectionRefusedError, TimeoutError, socket.gaierror)):  # no server to ask a GET
            return None, f"unreachable: {error}", None
        head = f"HEAD failed: {error}"
    try:
        request = urllib.request.Request(_request_url(url), headers={"Range": "bytes=0-0"})
        with urllib.request.urlopen(request, timeout=30) as response:
            version = _version_of(response.headers)
            length = length or _length_of(response.headers, ranged=response.status == 206)
        if version:
            return version, "", None
        # a length alone is no version: two videos of one size have it (a clip re-encoded to the same byte count)
        only = f" (only a length, {length} bytes, which another video of that size has too)" if length else ""
        return None, f"{head}; a ranged GET named none either{only}", length
    except (OSError, http.client.HTTPException, ValueError) as error:
        return None, f"{head}; a ranged GET failed: {error}", length


def _server_version(url: str) -> str | None:
    """The version of `url` its server reports now (`_ask_version`, once per process), or None: offline
    (`HF_HUB_OFFLINE`), unreachable, or the server names none (a length alone is none)."""
    if url in _SERVER_VERSIONS:
        return _SERVER_VERSIONS[url]
    version = None
    if not _offline():
        version, why, length = _ask_version(url)
        _SERVER_LENGTHS.pop(url, None)
        if version is None:
            _UNCHECKED[url] = why
            if length is not None:
                _SERVER_LENGTHS[url] = length
    _SERVER_VERSIONS[url] = version
    return version


# A cached copy of a URL whose server names no version (no ETag or Last-Modified: a dynamic server sending chunked
# bodies, or one naming only a length) is downloaded again once per run while it is smaller than this, so a video
# replaced there is noticed by its content; a larger one is used as cached, with a warning, unless the server names
# a length other than its size (`_refresh_unversioned`)
UNVERSIONED_REFETCH_BYTES = 256 * 2**20


def _warn_unchecked(url: str, target: Path) -> None:
    """Warns, once per process, that the cached copy of `url` is used though its server named no version online."""
    why = _UNCHECKED.pop(url, None)
    if why is None:
        return
    logger.warning(
        "Video %s: no version of it could be had from its server (%s), so the copy cached at %s is used without "
        "knowing whether the server now serves another video under that URL. To download it afresh (once the server "
        "answers), delete %s (or set TPO_HF_VIDEO_CACHE to another folder) and rerun: the video is known by its "
        "content then, so a new one is curated and answered again.",
        url,
        why,
        target,
        target,
    )


def _warn_changed(url: str, target: Path, then: str, now: str, done: str) -> None:
    """Warns that video `url` is not the one cached at `target` (`then`) any more but `now`, and that what was made
    from the old video outside tpo-hf's caches (a curated dataset whose rows hold the URL) no longer describes it."""
    logger.warning(
        "Video %s changed on its server since it was cached at %s (%s, now %s): %s. Pairs, captions and answers made "
        "from the old video no longer describe it: a dataset curated from %s must be curated again before training "
        "on it (rerun tpo-hf curate with the same settings, which curates a changed URL video again); tpo-hf's own "
        "caches (curation shards, eval answers, reference log-probs) key the video by its version and are redone.",
        url,
        target,
        then,
        now,
        done,
        url,
    )


def _cached_version(target: Path) -> str | None:
    try:
        return _validator_path(target).read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _content_version(target: Path) -> str:
    """The version of a cached copy by its content, for a URL whose server names none (`url_version`)."""
    from .fingerprint import file_content_hash

    return f"sha256 {file_content_hash(target)}"


def url_version(url: str) -> str | None:
    """The version of video `url` the run uses: what its server reports now (ETag or Last-Modified, asked with
    HEAD or a ranged GET), else what it reported when the cached copy was downloaded (downloading it first where
    there is none, so the answer is the same before and after the first download), else, for a server that names no
    version (or only a length, which another video of that size has too), the content of the cached copy
    (`sha256 <hash>`: a copy downloaded afresh that differs is another video). Online, such a copy under
    `UNVERSIONED_REFETCH_BYTES` (256 MiB) is downloaded again first, once per run, so a video replaced on its server
    is noticed; a larger one, or one whose server cannot be reached, is used as cached with a warning
    (`_warn_unchecked`), unless the server names a length other than the copy's. None when the video cannot be had at all. Part of the video's
    identity in cache keys (`fingerprint.video_file_identity`), so a video replaced on its server is curated and
    answered again. A server's version other than the cached copy's is settled first by downloading the video again:
    the same bytes keep the version recorded before (`_fetch`), so a server sending a new ETag on every answer for
    one video (dynamic and edge origins) does not make it another video each run."""
    target = _cache_target(url)
    version = _server_version(url)
    if version is not None and target.exists() and version != _cached_version(target):
        with contextlib.suppress(VideoLoadError):  # the load that needs the video says what is wrong
            _cached_download(url)
        version = _server_version(url)  # the recorded version where the bytes are the same
    if version is None and target.exists():
        _refresh_unversioned(url, target)
    version = version or _cached_version(target)
    if version is None and not target.exists():
        with contextlib.suppress(VideoLoadError):  # the load that needs the video says what is wrong
            _cached_download(url)
        version = _cached_version(target)
    if version is None and target.exists():
        with contextlib.suppress(OSError):  # unreadable: the load that needs the video says so
            version = _content_version(target)
    return version


def video_file_identity(path: str | os.PathLike, earlier: bool = False) -> str:
    """`<size>:sha256:<16 hex>` of a local video: its size and the hash of its bytes (`file_content_hash`, read once
    per file version), `missing` for a local path that is no file (a broken link), the URL of a remote one with the
    version its server reports (`url_version`: ETag or Last-Modified; for a server that names none, the content
    hash of the cached copy), so a video replaced on its server is not served from old answers. Not the path:
    where the video is known by a name of its own (a curation id, a benchmark's video name), the same file under a
    folder moved or spelled otherwise is the same video. Not its modification time: a copy (`cp -r`, a restore from
    a backup) is the same video. `earlier`: the `<size>:<mtime_ns>` tpo-hf keyed a local video by before, which
    records written then hold (`same_video_file` accepts them)."""
    path = os.fspath(path)
    if "://" in path:
        version = url_version(path) if is_video_url(path) else None
        return f"{path}@{version}" if version else path
    if not os.path.isfile(path):
        return "missing"
    from .fingerprint import file_content_hash, file_identity

    stamp = file_identity(path).rsplit("@", 1)[1]
    if earlier:
        return stamp
    # videos of 1 MiB or more keep their hash under the cache folder: a rerun over a corpus reads no video again
    identity = f"{stamp.split(':')[0]}:sha256:{file_content_hash(path, remember_bytes=1 << 20)[:16]}"
    _EARLIER_IDENTITIES.setdefault(identity, set()).add(stamp)
    return identity


# `video_file_identity` -> the `<size>:<mtime_ns>` stamps the files it was taken of had (earlier records' form)
_EARLIER_IDENTITIES: dict[str, set[str]] = {}


def same_video_file(recorded: Any, current: str) -> bool:
    """Whether a video identity a key recorded names the video whose `video_file_identity` is `current` now: equal,
    or, recorded by a tpo-hf that keyed local videos by size and modification time, a stamp a file of that content
    had when its identity was taken in this process, so records written before are still recognised for the files
    as they were then."""
    return recorded == current or (isinstance(recorded, str) and recorded in _EARLIER_IDENTITIES.get(current, ()))


def _refresh_unversioned(url: str, target: Path) -> None:
    """For a cached copy of `url` whose server named no version when asked in this run (`_UNCHECKED`): downloads it
    again, once per run, when the server answered and the copy is under `UNVERSIONED_REFETCH_BYTES`, warning when
    the new copy's content differs (the video was replaced there); else (larger, server unreachable, or the download
    fails) warns that the cached copy is used unchecked. Nothing offline, nor for a copy fetched in this run."""
    why = _UNCHECKED.get(url)
    if why is None:
        return
    try:
        size = target.stat().st_size
    except OSError:
        return
    # a length the server names other than the copy's is another video, however large the copy
    other_length = _SERVER_LENGTHS.get(url) not in (None, size)
    large = size >= UNVERSIONED_REFETCH_BYTES and not other_length
    if large and not why.startswith("unreachable"):
        _UNCHECKED[url] = (
            f"{why}; at {size / 2**20:.0f} MiB the cached copy is not downloaded again each run, as copies under "
            f"{UNVERSIONED_REFETCH_BYTES // 2**20} MiB are"
        )
    if large or why.startswith("unreachable"):
        _warn_unchecked(url, target)
        return
    try:
        before = _content_version(target)
        _fetch(url, target, replace=True)  # pops `_UNCHECKED[url]`: the copy is the server's current one
    except (OSError, VideoLoadError) as error:
        _UNCHECKED[url] = f"{why}; downloading it again failed: {error}"
        _warn_unchecked(url, target)
        return
    with contextlib.suppress(OSError):  # removed since by another process: its load names what is wrong
        after = _content_version(target)
        if after != before:
            _warn_changed(
                url,
                target,
                before,
                after,
                f"its server names no version but a length other than the cached copy's {size} bytes, so it was "
                "downloaded again"
                if size >= UNVERSIONED_REFETCH_BYTES
                else "its server names no version, so a copy under "
                f"{UNVERSIONED_REFETCH_BYTES // 2**20} MiB is downloaded again each run, and the new one differs",
            )


def _cached_download(url: str) -> Path:
    """The copy of video `url` in the cache folder, downloaded on first use, and again when its server reports
    another version (ETag or Last-Modified) than the one cached: a video replaced on its server is fetched anew, with
    a warning, not served from the old copy. Offline the cached copy is used; online with the server naming no
    version (or only a length), a copy under `UNVERSIONED_REFETCH_BYTES` is downloaded again once per run, else (or with the
    server unreachable) used with a warning (`_refresh_unversioned`). Each download writes a file of its own and
    moves it into place whole, so processes fetching one URL at once (DDP ranks) each end with the complete video."""
    _warn_fragment(url)
    target = _cache_target(url)
    if target.exists():
        now, then = _server_version(url), _cached_version(target)
        if now is None:
            _refresh_unversioned(url, target)
        if now is None or now == then:
            return target
        # kept with no version (its server named none then, or an older tpo-hf), whose length tells no video from
        # another of its size; or a server naming a new version (ETag) on every answer for the same bytes: only the
        # bytes tell
        then = then or "no version recorded"
        if _fetch(url, target):
            _warn_changed(url, target, then, now, "downloaded it again")
        return target
    _fetch(url, target)
    return target


# URLs whose fragment `_warn_fragment` named in this process
_FRAGMENTS_NAMED: set[str] = set()


def _warn_fragment(url: str) -> None:
    """Warns, once per URL and process, that its fragment (a media fragment `#t=0,10` asking for a time range) is
    not applied: it is never sent to the server, and the whole video is read."""
    fragment = url.partition("#")[2]
    if fragment and url not in _FRAGMENTS_NAMED:
        _FRAGMENTS_NAMED.add(url)
        logger.warning(
            "Video %s: its fragment #%s is not applied (a URL's fragment is never sent to its server, and tpo-hf "
            "reads no media fragment such as #t=start,end): the whole video is read. To use only a time range, cut "
            "it into a video file of its own and give that.",
            url,
            fragment,
        )


def _fetch(url: str, target: Path, replace: bool = False) -> bool:
    """Downloads `url` into the cache file `target`, with the version its server names beside it; whether it put
    other bytes there than were cached. A download another process finished first is kept unless its version
    differs, or `replace` (a server naming no version: only the bytes tell). A cached copy of the very same bytes is
    kept with the version recorded for it, which the run then takes for the server's (`_server_version`): a server
    naming a new version (ETag) for the same bytes has not replaced the video."""
    cache_dir = video_cache_dir()
    partial = cache_dir / f"{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.part"
    try:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            out = open(partial, "wb")
        except OSError as error:
            raise VideoLoadError(_video_cache_problem(url, cache_dir, error)) from error
        try:
            fetched = _download(url, out, cache_dir)
        except BaseException:
            with contextlib.suppress(OSError):  # the .part is removed below: a failed flush of it does not matter
                out.close()
            raise
        try:
            out.close()  # flushes the last bytes; a network filesystem reports a failed write only here
        except OSError as error:
            raise VideoLoadError(_video_cache_problem(url, cache_dir, error)) from error
        # recorded as the HEAD (or ranged GET) request reports it, where it does, since that is what later runs
        # compare (servers do not always send the same headers to HEAD and GET)
        version = _server_version(url) or fetched
        _UNCHECKED.pop(url, None)  # the copy is the one the server serves now
        recorded = _cached_version(target)
        if (replace or recorded != version) and _same_bytes(partial, target):
            # the same video under a new version: the copy and its recorded version stay, and with them its
            # identity in cache keys (`url_version`), so shards and answers made from it are reused
            try:
                if recorded is None and version is not None:
                    _validator_path(target).write_text(version, encoding="utf-8")
            except OSError as error:
                raise VideoLoadError(_video_cache_problem(url, cache_dir, error)) from error
            if recorded is not None:
                _SERVER_VERSIONS[url] = recorded
            return False
        # else another process finished the same download first: its file is the same video, unless the server's
        # version changed, which replaces it
        if replace or not target.exists() or recorded != version:
            try:
                partial.replace(target)
                if version is not None:
                    _validator_path(target).write_text(version, encoding="utf-8")
                else:
                    _validator_path(target).unlink(missing_ok=True)
            except OSError as error:
                raise VideoLoadError(_video_cache_problem(url, cache_dir, error)) from error
            return True
        return False
    finally:
        with contextlib.suppress(OSError):  # a read-only folder refuses even the removal of a file it never got
            partial.unlink(missing_ok=True)


def _same_bytes(download: Path, cached: Path) -> bool:
    """Whether a finished download holds the bytes of the copy cached before (False where there is none)."""
    import filecmp

    try:
        return filecmp.cmp(download, cached, shallow=False)
    except OSError:
        return False


def _download(url: str, out: Any, cache_dir: Path) -> str | None:
    """Writes the body of `url` to the open file `out`; returns the version the server names for it (`_version_of`).
    A web page answered in place of the video, or a body shorter than its Content-Length (a dropped connection: a
    prefix of a faststart mp4 decodes as a shorter video), is refused by name."""
    try:
        response = urllib.request.urlopen(_request_url(url))
    except (OSError, http.client.HTTPException) as error:
        raise VideoLoadError(f"Could not download video {url}: {error}") from error
    with response:
        content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type in _WEB_PAGE_TYPES:
            raise VideoLoadError(
                f"Could not download video {url}: the server answered {response.status} with a web page "
                f"(Content-Type {content_type}, starting {response.read(80)!r}), not a video. Nothing was cached: a "
                "rerun fetches it again."
            )
        announced = (response.headers.get("Content-Length") or "").strip()
        received = 0
        while True:
            try:
                chunk = response.read(1 << 20)
            except (OSError, http.client.HTTPException) as error:  # a chunked body cut short: IncompleteRead
                raise VideoLoadError(
                    f"Could not download video {url}: {error!r} after {received} bytes. Nothing was cached: a rerun "
                    "fetches it again."
                ) from error
            if not chunk:
                break
            try:
                out.write(chunk)
            except OSError as error:
                raise VideoLoadError(_video_cache_problem(url, cache_dir, error)) from error
            received += len(chunk)
    # http.client ends a body cut short without an error when it was sent with a Content-Length
    if announced.isdigit() and received < int(announced):
        raise VideoLoadError(
            f"Could not download video {url}: the connection ended after {received} of the {announced} bytes the "
            "server announced (Content-Length). Nothing was cached: a rerun fetches it again."
        )
    return _version_of(response.headers)


def _video_cache_problem(url: str, cache_dir: Path, error: OSError) -> str:
    """One line for a download that cannot be written into `cache_dir`, naming `TPO_HF_VIDEO_CACHE` (which sets it)."""
    from .fingerprint import NOT_WRITABLE_ERRNOS, no_space_left

    # a read-only or forbidden folder says so itself; the free-space guess would call a small one full
    refused = getattr(error, "errno", None) in NOT_WRITABLE_ERRNOS
    full = None if refused else no_space_left(error, cache_dir)
    cause = full or f"{error.strerror or error} ({type(error).__name__})"
    fix = "free space there or set" if full else "set"
    return (
        f"Cannot cache video {url} in {cache_dir}: {cause}. tpo-hf downloads a video URL once into that folder "
        f"(TPO_HF_VIDEO_CACHE, default ~/.cache/tpo_hf/videos); {fix} TPO_HF_VIDEO_CACHE to a writable folder with "
        "room for the videos."
    )


def _drop_undecodable_download(local_path: Path) -> str:
    """Removes a cached download that does not decode (so a rerun fetches it again); says what it held."""
    try:
        size = local_path.stat().st_size
        with open(local_path, "rb") as cached:
            head = cached.read(80)
        local_path.unlink()
        _validator_path(local_path).unlink(missing_ok=True)
    except OSError as error:
        return f". The download cached at {local_path} could not be removed ({error}): delete it to fetch it again."
    return (
        f". The server's answer ({size} bytes, starting {head!r}) is not a video; it was removed from the cache "
        f"({local_path}), so a rerun fetches it again."
    )


class VideoFile:
    """One opened video that serves many views; each frame is decoded at most once while the file is open.

    Example:
        >>> video = VideoFile("clip.mp4")
        >>> views = video.load_views({"segment": VideoView(num_frames=8, start=4, end=8),
        ...                           "without_segment": VideoView(num_frames=8, exclude=(4, 8))})
        >>> frames, metadata = views["segment"]
    """

    def __init__(self, path: str | os.PathLike, cache_frames: bool = True, reader: str | None = None):
        self.path = str(path)
        self.reader = reader or default_video_reader()
        if self.reader not in VIDEO_READERS:
            raise VideoLoadError(f"reader={self.reader!r}: use one of {VIDEO_READERS}")
        local_path = _resolve_local_path(path)
        if not local_path.exists():
            link = f" (broken link -> {os.readlink(local_path)})" if local_path.is_symlink() else ""
            relative = ""
            if not is_video_url(self.path) and not local_path.is_absolute():
                relative = (
                    f" (a relative path, looked for under the working directory {Path.cwd()}: set `video_root` to "
                    "the folder the dataset's video paths are relative to, or push a Hub dataset with "
                    "--upload_videos true so its videos travel with it)"
                )
            raise VideoLoadError(f"Video file not found: {self.path}{link}{relative}")
        if local_path.is_dir():
            raise VideoLoadError(
                f"Video {self.path} is a folder, not a video file: a video is read from one file (.mp4, .mkv, ...); "
                "a folder of extracted frames, or a list of frame images, is not read as a video. Encode the frames "
                "into one, e.g. ffmpeg -framerate 8 -pattern_type glob -i 'frames/*.jpg' -pix_fmt yuv420p video.mp4"
            )
        if not is_video_url(self.path) and local_path.is_file() and local_path.stat().st_size == 0:
            raise VideoLoadError(f"Video file {self.path} is empty (0 bytes)")
        try:
            self._reader, first_frame = self._open(str(local_path))
        except _NoVideoStream as error:
            raise VideoLoadError(f"{self.path} has no video stream (audio only?)") from error
        except _UnreadableVideo as error:
            dropped = _drop_undecodable_download(local_path) if is_video_url(self.path) else ""
            raise VideoLoadError(f"Could not decode video {self.path}: {error}{dropped}") from error.__cause__
        self.total_num_frames = self._reader.total_num_frames
        if self.total_num_frames == 0:
            raise VideoLoadError(f"Video {self.path} has zero frames")
        self.fps = self._reader.fps
        if not self.fps > 0:
            raise VideoLoadError(f"Video {self.path} reports an invalid frame rate ({self.fps})")
        self.duration = self.total_num_frames / self.fps
        # A constant-rate video keeps `index / fps` for its frame times; a variable-rate one uses the true ones
        self._frame_times: np.ndarray | None = None
        self._frame_durations: np.ndarray | None = None
        self._use_presentation_times()
        self.height, self.width = first_frame.shape[:2]
        self._cache: dict[int, np.ndarray] | None = {} if cache_frames else None
        self.frames_decoded = 0  # how many frames this object decoded (the decode-once benchmark reads it)

    def __repr__(self) -> str:
        return f"VideoFile({self.path!r}, frames={self.total_num_frames}, fps={self.fps:.3f})"

    def _open(self, local_path: str) -> tuple[Any, np.ndarray | None]:
        """The reader of `local_path` and its first frame (decoded for the frame size; `None` without frames).

        Where decord is the reader, PyAV reads instead (for this file alone, logged once naming it): a container
        without a frame index (`UNINDEXED_CONTAINER_FORMATS`: decord returns wrong frames or times from it, silently;
        logged at info level, as nothing is wrong with the file); a file decord cannot open or decode (it fails on
        some frames under 32 pixels wide, e.g. 8x8); and one whose frame times decord reports past its duration
        (never trusted: windows cut by them would hold no frame or the wrong ones).
        """
        self._container_duration: float | None = None
        if self.reader == "pyav":
            try:
                opened = _open_reader("pyav", local_path)
            except _NoVideoStream:
                raise
            except Exception as error:  # PyAV raises its FFmpegError for broken files
                raise _UnreadableVideo(_reader_error_text(error)) from error
            self._container_duration = opened[0].container_duration
            return opened
        container = _probe_container(local_path)
        self._container_duration = container.duration if container else None
        unindexed = sorted(container.format_names & UNINDEXED_CONTAINER_FORMATS) if container else []
        if unindexed:
            why = f"its container ({unindexed[0]}) has no frame index, from which decord returns wrong frames or times"
            return self._open_with_pyav(local_path, why, logging.INFO)
        try:
            opened = _open_reader("decord", local_path)
        except _NoVideoStream:
            raise
        except Exception as error:  # decord raises its own DECORDError for broken files
            return self._open_with_pyav(
                local_path, f"decord cannot read it ({_reader_error_text(error)})", cause=error
            )
        timing = opened[0].frame_times() if opened[0].total_num_frames > 1 else None
        if timing is not None:
            duration = self._longest_duration(opened[0].total_num_frames, opened[0].fps)
            stray = _implausible_frame_time(*timing, duration)
            if stray is not None:
                why = f"decord reports frame times up to {stray:.6g} s in a video of {duration:.3f} s, which cannot be right"
                return self._open_with_pyav(local_path, why)
        return opened

    def _longest_duration(self, total_num_frames: int, fps: float) -> float:
        """The longer of the container's duration and frames / average rate: what frame times are checked against
        (an MPEG-PS container's duration is estimated from its bit rate, and can be short of the frames')."""
        return max(self._container_duration or 0.0, total_num_frames / fps if fps > 0 else 0.0)

    def _open_with_pyav(
        self, local_path: str, why: str, level: int = logging.WARNING, cause: BaseException | None = None
    ) -> tuple[Any, np.ndarray | None]:
        """PyAV's reader of `local_path` and its first frame, in place of decord's (`why`: logged once, naming it)."""
        try:
            opened = _open_reader("pyav", local_path)
        except _NoVideoStream:
            raise
        except Exception as pyav_error:
            raise _UnreadableVideo(
                f"{why} (decord; PyAV cannot read it either: {_reader_error_text(pyav_error)})"
            ) from (cause or pyav_error)
        _note_read_with_pyav(self.path, why, level)
        self.reader = "pyav"
        self._container_duration = opened[0].container_duration
        return opened

    def _use_presentation_times(self) -> None:
        """Takes the frames' presentation times when they stray from `index / fps` by more than a frame (variable
        frame rate), so windows, exclusions and the duration are true; warns once naming the video."""
        timing = self._reader.frame_times() if self.total_num_frames > 1 else None
        if timing is None or len(timing[0]) != self.total_num_frames:
            return  # no per-frame times: `index / fps`, as for a constant-rate video
        times, end = timing
        # PyAV's times past the duration (a timestamp wrap, a broken muxer) are ignored rather than cut windows by
        duration = self._longest_duration(self.total_num_frames, self.fps)
        stray = _implausible_frame_time(times, end, duration)
        if stray is not None:
            _warn_implausible_frame_times(self.path, stray, duration, self.fps)
            return
        largest_drift = float(np.abs(times - np.arange(self.total_num_frames) / self.fps).max())
        if largest_drift <= 1.0 / self.fps:
            return
        self._frame_times = times
        self.duration = max(end, float(times[-1]))
        self._frame_durations = np.diff(np.append(times, self.duration))
        _warn_variable_frame_rate(self.path, self.fps, largest_drift)

    # --- sampling -------------------------------------------------------------------------------------------------
    def _frame_range(self, start: float, end: float) -> range:
        """Indices of the frames whose timestamp lies in [start, end)."""
        if self._frame_times is not None:
            first = int(np.searchsorted(self._frame_times, start - 1e-6, side="left"))
            last = int(np.searchsorted(self._frame_times, end - 1e-6, side="left"))
            if end >= self.duration - 1e-6:
                last = self.total_num_frames
            return range(first, max(first, last))
        first = max(0, math.ceil(start * self.fps - 1e-6))
        last = min(self.total_num_frames, math.ceil(end * self.fps - 1e-6))
        if end >= self.duration - 1e-6:
            last = self.total_num_frames
        return range(first, max(first, last))

    def frame_indices(self, view: VideoView | None = None, **kwargs: Any) -> np.ndarray:
        """Indices of the frames that `view` (or the same fields as keyword arguments) selects."""
        view = view or VideoView(**kwargs)
        start = 0.0 if view.start is None else float(view.start)
        end = self.duration if view.end is None else float(view.end)
        tolerance = 1.0 / self.fps  # containers round the duration to a frame
        if start < 0 or start > self.duration:
            raise VideoLoadError(f"start={start} s is outside video {self.path} (duration {self.duration:.3f} s)")
        if end > self.duration + tolerance:
            raise VideoLoadError(f"end={end} s is outside video {self.path} (duration {self.duration:.3f} s)")
        if start >= end:
            raise VideoLoadError(f"start={start} s must be before end={end} s for video {self.path}")
        for name, value in (("num_frames", view.num_frames), ("max_frames", view.max_frames)):
            if value is not None and value < 1:
                raise VideoLoadError(f"{name}={value} must be at least 1 (video {self.path})")
        if view.fps is not None and view.fps <= 0:
            raise VideoLoadError(f"fps={view.fps} must be positive (video {self.path})")

        window = self._frame_range(start, end)
        if view.exclude is not None:
            excluded_start, excluded_end = (float(t) for t in view.exclude)
            if excluded_start >= excluded_end:
                raise VideoLoadError(
                    f"exclude=({excluded_start}, {excluded_end}) must have start < end (video {self.path})"
                )
            if excluded_start < 0 or excluded_end > self.duration + tolerance:
                raise VideoLoadError(
                    f"exclude=({excluded_start}, {excluded_end}) is outside video {self.path} "
                    f"(duration {self.duration:.3f} s)"
                )
            excluded = self._frame_range(excluded_start, excluded_end)
            kept = np.array([i for i in window if i not in excluded], dtype=np.int64)
            if kept.size == 0:
                raise VideoLoadError(
                    f"exclude=({excluded_start}, {excluded_end}) covers the whole window [{start}, {end}] of video "
                    f"{self.path}: no frame is left to sample"
                )
        else:
            kept = np.arange(window.start, window.stop, dtype=np.int64)
            if kept.size == 0:
                raise VideoLoadError(f"The window [{start}, {end}] s of video {self.path} contains no frame")

        if view.num_frames is not None:
            count = view.num_frames
        elif view.fps is not None:
            seconds = (
                kept.size / self.fps if self._frame_durations is None else float(self._frame_durations[kept].sum())
            )
            count = max(1, round(seconds * view.fps))
        else:
            count = kept.size
        if view.max_frames is not None:
            count = min(count, view.max_frames)
        if count > kept.size:
            _warn_fewer_frames(self.path, count, kept.size, view)
            if not view.repeat_frames:
                count = kept.size  # each frame once: repeats would add tokens, never information
        # Uniform over the kept frames (centre of each of `count` equal bins); repeats only with `repeat_frames`
        positions = np.floor((np.arange(count) + 0.5) * kept.size / count).astype(np.int64)
        return kept[np.clip(positions, 0, kept.size - 1)]

    # --- decoding -------------------------------------------------------------------------------------------------
    def get_frames(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Decodes frames by index (uint8 [T, H, W, 3]); frames decoded before are taken from the cache."""
        indices = [int(i) for i in indices]
        cache = self._cache if self._cache is not None else {}
        missing = sorted(set(indices) - cache.keys())
        if missing:
            try:
                decoded = self._reader.get_batch(missing)
            except Exception as error:
                other_reader = (
                    " (read with decord: TPO_HF_VIDEO_READER=pyav reads videos with PyAV instead)"
                    if self.reader == "decord"
                    else ""
                )
                raise VideoLoadError(
                    f"Could not decode frames {missing[:5]}... of video {self.path}: {_reader_error_text(error)}"
                    f"{other_reader}"
                ) from error
            self.frames_decoded += len(missing)
            cache.update(zip(missing, decoded))
        frames = np.stack([cache[i] for i in indices])
        return frames

    def metadata(self, indices: np.ndarray | list[int]) -> dict[str, Any]:
        """Metadata for frames sampled at `indices`, with exactly the fields of transformers' `VideoMetadata`."""
        return {
            "total_num_frames": self.total_num_frames,
            "fps": self.fps,
            "width": self.width,
            "height": self.height,
            "duration": self.duration,
            "video_backend": self.reader,
            "frames_indices": [int(i) for i in indices],
        }

    def load(self, view: VideoView | None = None, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Samples one view: `(frames uint8 [T, H, W, 3], metadata)`."""
        indices = self.frame_indices(view, **kwargs)
        return self.get_frames(indices), self.metadata(indices)

    def load_views(self, views: dict[str, VideoView]) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
        """Samples several views, decoding the union of their frames in one pass."""
        indices = {name: self.frame_indices(view) for name, view in views.items()}
        union = np.unique(np.concatenate(list(indices.values())))
        self.get_frames(union)  # one decode pass; the views below read the cache
        return {name: (self.get_frames(idx), self.metadata(idx)) for name, idx in indices.items()}

    def clear_cache(self) -> None:
        """Drops decoded frames (e.g. before moving on to the next video)."""
        if self._cache is not None:
            self._cache.clear()


def load_video(
    path: str | os.PathLike,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
    exclude: tuple[float, float] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decodes one view of a video.

    Args:
        path: local path or http(s) URL of the video.
        num_frames: number of frames, spread uniformly over the window (default: every frame, or `fps`). A video
            (or window) with fewer frames gives each of its frames once, no repeats, and a warning naming the video
            (once per video per process); `VideoView(repeat_frames=True)` repeats frames up to the count instead.
        fps: sampling rate in frames per second, used when `num_frames` is not given (the same rule above the
            file's own rate).
        max_frames: cap on the number of frames.
        start, end: window in seconds (default: the whole video).
        exclude: `(t0, t1)` window in seconds whose frames are left out.

    Returns:
        `(frames, metadata)`: frames uint8 `[T, H, W, 3]`; metadata with `fps` (of the file), `total_num_frames`,
        `frames_indices`, `duration`, `width`, `height`, `video_backend`, ready for a transformers video processor with
        `do_sample_frames=False`.
    """
    video = VideoFile(path, cache_frames=False)
    return video.load(
        VideoView(num_frames=num_frames, fps=fps, max_frames=max_frames, start=start, end=end, exclude=exclude)
    )


def sampled_fps(metadata: dict[str, Any]) -> float:
    """The true rate of the sampled frames: file fps over the typical gap between consecutive sampled frames.

    transformers derives the rate as `len(frames_indices) / total_num_frames * fps`, which is only right when the
    frames span the whole video; a segment view or a capped frame count gives a stale rate and wrong temporal
    positions (ms-swift #5110). The median gap is right for windows, and for a view with a hole cut out of it.
    """
    indices = np.asarray(metadata["frames_indices"])
    gaps = np.diff(indices)
    gaps = gaps[gaps > 0]
    if gaps.size == 0:
        return float(metadata["fps"])
    return float(metadata["fps"]) / float(np.median(gaps))
