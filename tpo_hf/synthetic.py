"""Synthetic videos with known content, written with PyAV (test fixtures and the quickstart corpus).

Each frame carries its own index as a row of black/white blocks (readable back after H.264 compression with
`read_frame_stamp`), a background that drifts over time, and a square that moves across the frame. A video is made of
`scenes`: each scene names a colour and shape, so questions about "what happens between 4 s and 6 s" have a known
answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

STAMP_BITS = 12  # frame indices up to 4095
STAMP_BLOCK = 8  # pixels per bit block; large enough to survive compression

# The named colours of every rendered shape: scenes here, V-NIAH needles (`tpo_hf.eval.vniah`), quickstart questions
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 80, 230),
    "yellow": (230, 220, 40),
    "purple": (160, 60, 200),
    "magenta": (220, 40, 220),
    "cyan": (40, 220, 230),
    "white": (240, 240, 240),
    "orange": (245, 140, 20),
    "black": (20, 20, 20),
}


@dataclass(frozen=True)
class Scene:
    """A stretch of a synthetic video: `seconds` long, showing a `colour` `shape` moving `direction`."""

    seconds: float
    colour: str = "red"
    shape: str = "square"  # "square" or "circle"
    direction: str = "right"  # "right" or "left"


def _draw_frame(index: int, num_frames: int, scene: Scene, progress: float, height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    drift = index / max(num_frames - 1, 1)
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[..., 0] = (40 + 60 * drift + 20 * ys / height).astype(np.uint8)
    frame[..., 1] = (40 + 30 * xs / width).astype(np.uint8)
    frame[..., 2] = np.uint8(90 - 50 * drift)

    size = max(height // 4, 8)
    travel = width - size
    x0 = int(progress * travel) if scene.direction == "right" else int((1 - progress) * travel)
    y0 = (height - size) // 2
    colour = np.array(COLOURS[scene.colour], dtype=np.uint8)
    if scene.shape == "circle":
        cy, cx, r = y0 + size / 2, x0 + size / 2, size / 2
        mask = (ys - cy) ** 2 + (xs - cx) ** 2 <= r**2
        frame[mask] = colour
    else:
        frame[y0 : y0 + size, x0 : x0 + size] = colour

    # Frame index stamp: bit k as a black or white block along the top row
    for bit in range(STAMP_BITS):
        value = 255 if (index >> bit) & 1 else 0
        frame[0:STAMP_BLOCK, bit * STAMP_BLOCK : (bit + 1) * STAMP_BLOCK] = value
    return frame


def read_frame_stamp(frame: np.ndarray) -> int:
    """Reads back the frame index that `write_synthetic_video` stamped into `frame` (uint8 [H, W, 3])."""
    index = 0
    for bit in range(STAMP_BITS):
        block = frame[1 : STAMP_BLOCK - 1, bit * STAMP_BLOCK + 1 : (bit + 1) * STAMP_BLOCK - 1]
        if block.mean() > 127:
            index |= 1 << bit
    return index


def synthetic_frames(scenes: list[Scene], fps: int = 8, height: int = 64, width: int = 128) -> np.ndarray:
    """Renders `scenes` to uint8 frames [T, H, W, 3]."""
    if width < STAMP_BITS * STAMP_BLOCK:
        raise ValueError(f"width must be at least {STAMP_BITS * STAMP_BLOCK} pixels to hold the frame stamp")
    frames_per_scene = [max(1, round(scene.seconds * fps)) for scene in scenes]
    num_frames = sum(frames_per_scene)
    frames = []
    index = 0
    for scene, count in zip(scenes, frames_per_scene):
        for local in range(count):
            frames.append(_draw_frame(index, num_frames, scene, local / max(count - 1, 1), height, width))
            index += 1
    return np.stack(frames)


def write_video(path: str | Path, frames: np.ndarray, fps: int = 8) -> Path:
    """Encodes uint8 frames [T, H, W, 3] as an H.264 mp4 (high quality, every frame a keyframe-friendly GOP); width and
    height must be even. Written to a temporary file renamed over `path` once whole (`fingerprint.atomic_path`): a
    full disk or a kill leaves no torn video that a later run would read."""
    import av

    from .fingerprint import atomic_path

    path = Path(path)
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:  # libx264's yuv420p halves the colour planes; refused before a file is begun
        raise ValueError(f"Cannot write {path}: H.264 (yuv420p) needs an even width and height, got {width}x{height}.")
    # the container FFmpeg would pick by the name's ending: the temporary file's name ends in `.tmp`
    endings = {".mkv": "matroska", ".m4v": "mp4", ".mpg": "mpeg", ".ts": "mpegts"}
    container_format = endings.get(path.suffix.lower(), path.suffix.lower()[1:] or "mp4")
    with atomic_path(path) as temporary, av.open(str(temporary), mode="w", format=container_format) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "g": str(2 * fps)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_synthetic_video(
    path: str | Path,
    scenes: list[Scene] | None = None,
    seconds: float = 8.0,
    fps: int = 8,
    height: int = 64,
    width: int = 128,
) -> Path:
    """Writes a synthetic mp4 made of `scenes` (default: one red square moving right for `seconds`)."""
    scenes = scenes or [Scene(seconds=seconds)]
    return write_video(path, synthetic_frames(scenes, fps=fps, height=height, width=width), fps=fps)
