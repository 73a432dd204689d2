"""Stage 5 of the flow (evaluation): video needle-in-a-haystack (V-NIAH), the test of the TPO paper's Figure 3.

A haystack video of `length` frames is cut from any videos; a needle (a rendered frame with a big coloured shape and
a word, or a short clip) is inserted at a depth (0 = first frame, 1 = last frames), and the model is asked a
multiple-choice question that only the needle answers ("What colour is the big shape ...?"). The model sees every
frame of the haystack, so the test measures whether a single moment of a long video reaches the answer. Scores are
laid out per (length, depth) and drawn as a heatmap (depth on the y axis, length on the x axis, like the figure).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fingerprint import atomic_write_json, changed_fields, no_space_left
from ..synthetic import COLOURS, write_video
from ..video import same_video_file, video_file_identity
from .answers import option_letters
from .benchmarks import MCQSample
from .results import EvalOutputError

logger = logging.getLogger(__name__)

NEEDLE_QUESTION = "One frame of this video shows a big coloured {shape}. What colour is the {shape}?"
# Written beside the haystack videos: what they were built from and their identities, so that a rerun reuses them
# (rewritten, each would have a new modification time and its cached answers would be generated again)
SUITE_MANIFEST = "vniah_suite.json"
# 2: one record per video (length, depth, file), so that a grid extended keeps the videos it had (1 is read as such)
SUITE_FORMAT_VERSION = 2
# decimals of a percent a depth keeps in its video's file name: depths closer than this share a name and are refused
DEPTH_NAME_DECIMALS = 6


@dataclass(frozen=True)
class Needle:
    """The rendered needle: a big `shape` of `colour` (a key of `COLOURS`) with `text` written on it, shown
    for `num_frames` consecutive frames. `distractors` are the wrong colours offered as options."""

    colour: str = "red"
    shape: str = "circle"  # "circle" or "square"
    text: str = "NEEDLE"
    num_frames: int = 1
    distractors: tuple[str, ...] = ("green", "blue", "yellow")

    def __post_init__(self):
        for name in (self.colour, *self.distractors):
            if name not in COLOURS:
                raise ValueError(f"Needle colour {name!r} is not one of {sorted(COLOURS)}.")
        if self.colour in self.distractors:
            raise ValueError(f"The needle colour {self.colour!r} cannot also be a distractor.")
        if self.shape not in ("circle", "square"):
            raise ValueError(f"Needle shape must be 'circle' or 'square', got {self.shape!r}.")
        if self.num_frames < 1:
            raise ValueError(f"Needle num_frames must be at least 1, got {self.num_frames}.")


def render_needle_frame(needle: Needle, height: int, width: int) -> np.ndarray:
    """A uint8 [H, W, 3] frame: grey background, a shape of the needle colour covering most of it, and its text."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    margin_y, margin_x = height // 10, width // 10
    box = (margin_x, margin_y, width - margin_x - 1, height - margin_y - 1)
    colour = COLOURS[needle.colour]
    if needle.shape == "circle":
        draw.ellipse(box, fill=colour)
    else:
        draw.rectangle(box, fill=colour)
    if needle.text:
        draw.text((width // 2, height // 2), needle.text, fill=(255, 255, 255), anchor="mm")
    return np.asarray(image, dtype=np.uint8).copy()


def needle_clip(needle: Needle, height: int, width: int, clip: np.ndarray | None = None) -> np.ndarray:
    """The needle's frames: `clip` (any uint8 [T, H, W, 3], resized) or the rendered frame repeated."""
    if clip is not None:
        return _resize_frames(clip, height, width)
    frame = render_needle_frame(needle, height, width)
    return np.repeat(frame[None], needle.num_frames, axis=0)


def _resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    if frames.shape[1:3] == (height, width):
        return frames
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])


def build_haystack(
    videos: list[str | os.PathLike],
    num_frames: int,
    height: int | None = None,
    width: int | None = None,
    fps: float | None = None,
    max_side: int | None = None,
) -> np.ndarray:
    """`num_frames` frames cut from `videos` in order (looping over them when they are short).

    Args:
        videos: the haystack sources.
        num_frames: haystack length.
        height, width: frame size, even numbers (default: the first video's, scaled down to `max_side`, each side
            rounded down to an even number as H.264 needs).
        fps: sample the sources at this rate (LongVA's V-NIAH uses 1 fps); `None` takes every frame.
        max_side: cap on the longer side of the frames, so that long haystacks of HD videos fit in memory.
    """
    from ..video import VideoFile, VideoView

    if not videos:
        raise ValueError("V-NIAH needs at least one haystack video.")
    if (height is not None and height % 2) or (width is not None and width % 2):
        raise ValueError(
            f"V-NIAH haystack frames must have an even size (H.264, `write_video`), got {width}x{height}."
        )
    frames: list[np.ndarray] = []
    total = 0
    while total < num_frames:
        for path in videos:
            video = VideoFile(path, cache_frames=False)
            indices = video.frame_indices(VideoView(fps=fps)) if fps else np.arange(video.total_num_frames)
            chunk = video.get_frames(indices[: num_frames - total])
            if height is None or width is None:
                height, width = chunk.shape[1:3]
                if max_side is not None and max(height, width) > max_side:
                    scale = max_side / max(height, width)
                    height, width = round(height * scale), round(width * scale)
                # H.264 in yuv420p (`write_video`) halves the colour planes: both sides even (720x480 at 448: 448x298)
                height, width = max(2, height - height % 2), max(2, width - width % 2)
            frames.append(_resize_frames(chunk, height, width))
            total += len(chunk)
            if total >= num_frames:
                break
    return np.concatenate(frames)[:num_frames]


def needle_start(length: int, needle_frames: int, depth: float) -> int:
    """First frame of the needle in a video of `length` frames at `depth` in [0, 1] (1 = the needle ends the video)."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"Needle depth must be in [0, 1], got {depth}.")
    if needle_frames >= length:
        raise ValueError(f"A {needle_frames}-frame needle does not fit in a {length}-frame haystack.")
    return int(round(depth * (length - needle_frames)))


def insert_needle(haystack: np.ndarray, needle: np.ndarray, depth: float) -> tuple[np.ndarray, int]:
    """The haystack with `needle` inserted so that the result keeps the haystack's length; returns the video and
    the needle's first frame index."""
    length = len(haystack)
    start = needle_start(length, len(needle), depth)
    # the haystack's first length - n frames, with the needle spliced in: nothing of the haystack is overwritten
    kept = haystack[: length - len(needle)]
    video = np.concatenate([kept[:start], needle.astype(haystack.dtype), kept[start:]])
    return video, start


@dataclass
class VNIAHSample(MCQSample):
    """A V-NIAH question: an `MCQSample` plus the haystack length, the depth, and where the needle really is."""

    length: int = 0
    depth: float = 0.0
    needle_start: int = 0
    needle_frames: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    # the haystack video's content (`sha256:<hex>`), which its cached answers are keyed by instead of its path and
    # modification time: an output folder copied (`cp -r`) or moved keeps them (`mcq.answer_key`)
    video_identity: str = ""


def haystack_sources(haystack_dir: str | os.PathLike, output_dir: str | os.PathLike) -> list[Path]:
    """The videos under `haystack_dir` to cut haystacks from, less the files under the eval's own `output_dir` when
    it lies inside `haystack_dir`: the needle videos a run writes to `output_dir/vniah_videos` are not haystacks for
    the next run (each would carry a second needle, and every cached answer would be thrown away). With
    `haystack_dir` at or under `output_dir`, only `output_dir/vniah_videos` is left out (`outside_own_folders`, the
    rule curation follows for its output inside `video_dir`)."""
    from ..video import list_video_files, outside_own_folders

    needle_videos = Path(output_dir).resolve() / "vniah_videos"
    if Path(haystack_dir).resolve().is_relative_to(needle_videos):
        # unlike curation's copies, needle videos are never a source: every haystack would carry a second needle
        raise ValueError(
            f"vniah_haystack_dir {haystack_dir} is the folder this eval writes its needle videos to "
            f"({needle_videos}): name the folder of the original videos."
        )
    return outside_own_folders(list_video_files(haystack_dir), haystack_dir, output_dir, "vniah_videos")


def build_vniah_suite(
    haystack_videos: list[str | os.PathLike],
    output_dir: str | os.PathLike,
    lengths: list[int],
    depths: list[float],
    needle: Needle | None = None,
    fps: int = 8,
    height: int | None = None,
    width: int | None = None,
    needle_clip_frames: np.ndarray | None = None,
    haystack_fps: float | None = None,
    max_side: int | None = None,
) -> list[VNIAHSample]:
    """Writes one haystack mp4 per (length, depth) into `output_dir` and returns the questions about them.

    Every sample's `num_frames` is its length: the model sees every frame, so the needle is never skipped by frame
    sampling. Options are the needle colour and its distractors, in a fixed shuffled order per sample.
    `haystack_fps` and `max_side` are passed to `build_haystack`; the other arguments are the grid and the needle.
    Videos already in `output_dir` and built from the same inputs (`SUITE_MANIFEST`) are reused, not written again,
    so that their cached answers are reused too.
    """

    needle = needle or Needle()
    # a value listed twice is one cell of the grid, asked once (not one question counted several times)
    lengths, depths = _distinct("vniah_lengths", lengths), _distinct("vniah_depths", depths)
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    names = _video_names(lengths, depths)
    # what every video of the folder is cut from; each one's own length and depth are recorded with it
    inputs = {
        "format": SUITE_FORMAT_VERSION,
        "haystack_videos": [_source_identity(path) for path in haystack_videos],
        "needle": asdict(needle),
        "needle_clip": None
        if needle_clip_frames is None
        else [list(needle_clip_frames.shape), hashlib.sha256(np.ascontiguousarray(needle_clip_frames)).hexdigest()],
        "fps": fps,
        "height": height,
        "width": width,
        "haystack_fps": haystack_fps,
        "max_side": max_side,
    }
    manifest = output_dir / SUITE_MANIFEST
    stale, built, reidentified = _stale_suite(manifest, inputs, names, output_dir)
    if reidentified and not stale:
        # the kept videos' new modification times (a copied folder) or their content hashes (an older record)
        _write_manifest(manifest, {"inputs": inputs, "videos": built}, output_dir)
    if stale:
        if manifest.exists():
            logger.info("Writing the V-NIAH videos in %s (%s).", output_dir, _described(stale, names))
        # a haystack's first frames are those of a longer one: the longest to write serves them all
        longest = build_haystack(
            haystack_videos, max(length for length, _ in stale), height, width, haystack_fps, max_side
        )
        needle_frames = needle_clip(needle, *longest.shape[1:3], needle_clip_frames)
        path = manifest
        try:
            # recorded as each video is written whole (`write_video` renames it into place): a run cut short (a kill,
            # a full disk) keeps what it wrote, and the next one writes the rest
            atomic_write_json(manifest, {"inputs": inputs, "videos": built})
            for length, depth in stale:
                path = output_dir / names[(length, depth)]
                write_video(path, insert_needle(longest[:length], needle_frames, depth)[0], fps=fps)
                built[path.name] = {
                    "length": length,
                    "depth": depth,
                    "file": video_file_identity(path),
                    "content": _content_identity(path),
                }
                path = manifest
                atomic_write_json(manifest, {"inputs": inputs, "videos": built})
        except OSError as error:
            full = no_space_left(error, output_dir)
            if full is None:
                raise
            raise EvalOutputError(
                f"Could not write the V-NIAH video file {path}: {full}. The videos written whole before it are kept "
                f"and reused: free space in {output_dir} (or evaluate into an output_dir on a disk with room) and "
                "rerun the same command."
            ) from error
    needle_length = len(needle_clip_frames) if needle_clip_frames is not None else needle.num_frames
    samples = []
    colours = [needle.colour, *needle.distractors]
    letters = option_letters(len(colours))
    question = NEEDLE_QUESTION.format(shape=needle.shape)
    for length in lengths:
        for depth in depths:
            start = needle_start(length, needle_length, depth)  # where `insert_needle` put it
            name = names[(length, depth)]
            rotation = (lengths.index(length) * len(depths) + depths.index(depth)) % len(colours)
            options = colours[rotation:] + colours[:rotation]
            listed = question + "\n" + "\n".join(f"{letter}. {option}" for letter, option in zip(letters, options))
            samples.append(
                VNIAHSample(
                    sample_id=f"vniah-len{length}-depth{_exact(depth, '.3f')}",
                    video=str((output_dir / name).resolve()),
                    question=question,
                    options=options,
                    answer=letters[options.index(needle.colour)],
                    prompt=f"{listed}\nAnswer with the option's letter from the given choices directly.",
                    breakdowns={"length": str(length), "depth": _exact(depth, "g")},
                    num_frames=length,
                    length=length,
                    depth=depth,
                    needle_start=start,
                    needle_frames=needle_length,
                    video_identity=built[name]["content"],
                )
            )
    return samples


def _distinct(setting: str, values: list[Any]) -> list[Any]:
    """`values` in order, each once; a value listed twice is named in a warning."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) < len(values):
        repeated = sorted({value for value in values if values.count(value) > 1})
        logger.warning(
            "%s lists %s more than once: each is evaluated once (%d values, not %d).",
            setting,
            ", ".join(f"{value:g}" for value in repeated),
            len(distinct),
            len(values),
        )
    return distinct


def _exact(depth: float, spec: str) -> str:
    """`depth` formatted by `spec` when that reads back as the same depth, else with every digit it needs: two
    depths never share a sample id or a breakdown value."""
    text = format(depth, spec)
    return text if float(text) == depth else repr(depth)


def _depth_name(depth: float) -> str:
    """The depth in percent as its video's file name holds it: whole percents as three digits (`050`, the names
    written before), a finer depth with its decimals (`000.4` for 0.004), so that 0.0 and 0.004 are two videos."""
    percent = round(depth * 100, DEPTH_NAME_DECIMALS)
    if percent == int(percent):
        return f"{int(percent):03d}"
    decimals = f"{percent:.{DEPTH_NAME_DECIMALS}f}".rstrip("0")
    return decimals.zfill(len(decimals) + max(0, 3 - len(decimals.split(".")[0])))


def _video_names(lengths: list[int], depths: list[float]) -> dict[tuple[int, float], str]:
    """(length, depth) -> the file name of its V-NIAH video; depths too close to tell apart by name are refused."""
    by_name: dict[str, float] = {}
    for depth in depths:
        clash = by_name.setdefault(_depth_name(depth), depth)
        if clash != depth:
            raise ValueError(
                f"vniah_depths {clash!r} and {depth!r} are too close to tell apart (less than "
                f"{10 ** -(DEPTH_NAME_DECIMALS + 2):g} apart): both put the needle at the same frame; list one of them."
            )
    return {
        (length, depth): f"vniah_len{length}_depth{_depth_name(depth)}.mp4" for length in lengths for depth in depths
    }


def _source_identity(path: str | os.PathLike) -> str:
    """A haystack source as the suite record keys it: `<file name>@<video_file_identity>` (size and content hash),
    not its folder nor its modification time, so that a haystack folder moved (`mv`), spelled otherwise or copied
    (`cp -r`) keeps the videos cut from it and their answers."""
    real = os.path.realpath(path)
    return f"{os.path.basename(real)}@{video_file_identity(real)}"


def _earlier_sources(recorded: Any, current: list[str]) -> Any:
    """The haystack sources a suite record holds, each one recorded by a tpo-hf that keyed them by size and
    modification time (`name@size:mtime_ns`) read as the source `current` names when it is that file, untouched
    since (`same_video_file`); others as they are."""
    if not isinstance(recorded, list) or len(recorded) != len(current):
        return recorded
    return [
        now
        if isinstance(then, str)
        and then.rpartition("@")[0] == now.rpartition("@")[0]
        and same_video_file(then.rpartition("@")[2], now.rpartition("@")[2])
        else then
        for then, now in zip(recorded, current, strict=True)
    ]


def _content_identity(path: Path) -> str:
    """`sha256:<hex>` of a written V-NIAH video: what it is known by when its modification time changed (a copy)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def _write_manifest(manifest: Path, record: dict[str, Any], output_dir: Path) -> None:
    try:
        atomic_write_json(manifest, record)
    except OSError as error:
        full = no_space_left(error, output_dir)
        if full is None:
            raise
        raise EvalOutputError(
            f"Could not write the V-NIAH suite record {manifest}: {full}. Free space in {output_dir} (or evaluate "
            "into an output_dir on a disk with room) and rerun the same command."
        ) from error


def _suite_record(manifest: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]] | None:
    """(what the videos in a folder were cut from, file name -> its length, depth and `video_file_identity`) as
    `manifest` records them -- a format-1 manifest, one record for the whole grid, read as one record per video --
    or None when there is none to read."""
    try:
        recorded = json.loads(manifest.read_text())
        inputs, videos = dict(recorded["inputs"]), dict(recorded["videos"])
        if inputs.get("format") == 1:
            grid = _video_names(inputs.pop("lengths"), inputs.pop("depths"))
            inputs["format"] = SUITE_FORMAT_VERSION
            videos = {
                name: {"length": length, "depth": depth, "file": str(videos.get(name)).rsplit("@", 1)[-1]}
                for (length, depth), name in grid.items()
            }
        if not all(isinstance(video, dict) for video in videos.values()):
            return None
        # sources recorded by absolute path before (`path@size:mtime_ns`): read as `_source_identity` keys them now
        inputs["haystack_videos"] = [os.path.basename(str(source)) for source in inputs.get("haystack_videos", [])]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
    return inputs, videos


def _stale_suite(
    manifest: Path, inputs: dict[str, Any], names: dict[tuple[int, float], str], folder: Path
) -> tuple[dict[tuple[int, float], str], dict[str, dict[str, Any]], bool]:
    """(the (length, depth) of each V-NIAH video of `names` to write, with why, in grid order; the records of the
    videos in `folder` that can be kept; whether a kept record was updated). A video is kept when it was cut from the
    same `inputs` for the same length and depth and its file is as written (same size and modification time, or, a
    copy, the same content); so a grid extended with a length or depth writes only the new videos."""
    record = _suite_record(manifest)
    if record is None:
        return {key: "no record of how the videos were built" for key in names}, {}, False
    recorded_inputs, recorded_videos = record
    recorded_inputs["haystack_videos"] = _earlier_sources(
        recorded_inputs.get("haystack_videos"), inputs["haystack_videos"]
    )
    changed = changed_fields(recorded_inputs, inputs)
    if changed:
        return {key: f"changed: {', '.join(changed)}" for key in names}, {}, False
    built, reidentified = {}, False
    for name, video in recorded_videos.items():
        path = folder / name
        on_disk = video_file_identity(path)
        if same_video_file(video.get("file"), on_disk):
            if not video.get("content") or video.get("file") != on_disk:  # recorded before content hashes were
                built[name], reidentified = {**video, "file": on_disk, "content": _content_identity(path)}, True
            else:
                built[name] = video
        elif (
            video.get("content")
            and on_disk.split(":")[0] == str(video.get("file")).split(":")[0]  # same size: worth reading
            and _content_identity(path) == video["content"]
        ):
            # the same bytes with another modification time: a copied output folder (`cp -r`)
            built[name], reidentified = {**video, "file": on_disk}, True
    stale = {}
    for (length, depth), name in names.items():
        if name not in recorded_videos:
            stale[(length, depth)] = "new in the grid"
        elif name not in built:
            stale[(length, depth)] = "missing or changed since written"
        elif (built[name].get("length"), built[name].get("depth")) != (length, depth):
            stale[(length, depth)] = "written for another length or depth"
    return stale, built, reidentified


def _described(stale: dict[tuple[int, float], str], names: dict[tuple[int, float], str]) -> str:
    """`"changed: needle"` (every video) or `"new in the grid: vniah_len16_depth000.mp4, ... and 2 more; the other 3
    are kept"`: the videos to write, by why."""
    by_reason: dict[str, list[str]] = {}
    for key, reason in stale.items():
        by_reason.setdefault(reason, []).append(names[key])
    described = [
        reason
        if len(files) == len(names)
        else f"{reason}: {', '.join(files[:3])}" + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        for reason, files in by_reason.items()
    ]
    kept = len(names) - len(stale)
    return "; ".join(described + ([f"the other {kept} are kept"] if kept else []))


def vniah_scores(samples: list[VNIAHSample], results: list[Any]) -> dict[str, Any]:
    """Accuracy (percent) per (depth, length) as a matrix: rows follow `depths`, columns `lengths` (sorted)."""
    lengths = sorted({s.length for s in samples})
    depths = sorted({s.depth for s in samples})
    correct = np.zeros((len(depths), len(lengths)))
    total = np.zeros((len(depths), len(lengths)))
    by_id = {result.sample_id: result for result in results}
    for sample in samples:
        row, column = depths.index(sample.depth), lengths.index(sample.length)
        total[row, column] += 1
        correct[row, column] += bool(by_id[sample.sample_id].correct)
    with np.errstate(invalid="ignore", divide="ignore"):
        matrix = np.where(total > 0, 100.0 * correct / np.maximum(total, 1), np.nan)
    # None (not NaN) for an empty cell, so the matrix stays valid JSON
    accuracy = [[None if np.isnan(v) else float(v) for v in row] for row in matrix]
    return {"lengths": lengths, "depths": depths, "accuracy": accuracy}


def plot_vniah_heatmap(scores: dict[str, dict[str, Any]], path: str | os.PathLike, title: str = "V-NIAH") -> Any:
    """Draws one heatmap per model (`{tag: vniah_scores(...)}`) side by side and saves it as a PNG at `path`.

    Returns the matplotlib figure; each axis holds one image whose data is the (depths x lengths) accuracy matrix.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.colors import LinearSegmentedColormap

    # red (wrong) -> yellow -> green (right), as in the LongVA / TPO V-NIAH figures
    cmap = LinearSegmentedColormap.from_list("vniah", ["#F0496E", "#EBB839", "#0CD79F"])
    tags = list(scores)
    figure, axes = plt.subplots(1, len(tags), figsize=(5 * len(tags) + 1, 4), squeeze=False, layout="constrained")
    image = None
    for axis, tag in zip(axes[0], tags):
        data = np.array([[np.nan if v is None else v for v in row] for row in scores[tag]["accuracy"]], dtype=float)
        image = axis.imshow(data, cmap=cmap, vmin=0, vmax=100, aspect="auto", origin="upper")
        axis.set_xticks(range(len(scores[tag]["lengths"])), [str(x) for x in scores[tag]["lengths"]])
        axis.set_yticks(range(len(scores[tag]["depths"])), [f"{100 * d:g}%" for d in scores[tag]["depths"]])
        axis.set_xlabel("Frames in the haystack")
        if axis is axes[0][0]:
            axis.set_ylabel("Needle depth")
        # white lines between cells, as in the paper's figure
        axis.set_xticks(np.arange(-0.5, data.shape[1]), minor=True)
        axis.set_yticks(np.arange(-0.5, data.shape[0]), minor=True)
        axis.grid(which="minor", color="white", linewidth=1.5)
        axis.tick_params(which="minor", length=0)
        axis.set_title(f"{title}: {tag}")
    figure.colorbar(image, ax=axes[0].tolist(), label="Accuracy (%)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, format="png")  # not by the name's ending: `write_output` passes a `.tmp` file
    plt.close(figure)
    return figure
