"""The synthetic temporal world: procedural videos whose timeline is known exactly (the ground truth of issue 17).

A world video is a sequence of *scenes*. Each scene shows one object on a grey background for `FRAMES_PER_SCENE`
frames: it has a colour, a shape and a direction in which it moves. A *needle* is a scene that breaks the pattern:
a single frame filled by a big shape (the V-NIAH needle of the TPO paper, rendered in the world's own style).

Everything is a pure function of a seed, so a corpus (and its held-out split) is rebuilt bit for bit on any
machine, and the timeline written beside each video is what question generators and the judge read.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..synthetic import COLOURS

# The project's one colour table (synthetic.COLOURS); shapes and motions are the world's own.
SHAPES = ("square", "ring", "bar", "column")
NEEDLE_SHAPES = ("circle", "square")  # the V-NIAH needle shapes of `tpo_hf.eval.vniah`
MOTIONS = ("left", "right", "up", "down")
BACKGROUND = (128, 128, 128)

FPS = 2  # frames per second of every world video
FRAMES_PER_SCENE = 4  # a scene lasts two seconds: two visual tokens (temporal patches of 2 frames)
NEEDLE_FRAMES = 2  # a needle is one temporal patch
FRAME_SIZE = 32  # rendered side in pixels; the world model's processor resizes to 16x16 (one token per 2 frames)
MOVE_PIXELS = 6  # how far the object moves from one frame to the next (3 px after resizing to 16x16)


@dataclass(frozen=True)
class WorldScene:
    """Two seconds of a world video: a `colour` `shape` moving `motion`; `needle` scenes are a big still shape."""

    colour: str
    shape: str
    motion: str = "right"
    needle: bool = False

    @property
    def name(self) -> str:
        """How questions refer to the scene's object ("the red ring")."""
        return f"{self.colour} {self.shape}"

    @property
    def num_frames(self) -> int:
        return NEEDLE_FRAMES if self.needle else FRAMES_PER_SCENE


@dataclass(frozen=True)
class WorldVideo:
    """A video's id and timeline. `scene_starts()` gives each scene's first frame; times are frames / FPS."""

    video_id: str
    scenes: tuple[WorldScene, ...]

    def scene_starts(self) -> list[int]:
        starts, position = [], 0
        for scene in self.scenes:
            starts.append(position)
            position += scene.num_frames
        return starts

    @property
    def num_frames(self) -> int:
        return sum(scene.num_frames for scene in self.scenes)

    @property
    def duration(self) -> float:
        return self.num_frames / FPS

    @property
    def events(self) -> list[WorldScene]:
        """The ordinary scenes (needles excluded), in order."""
        return [scene for scene in self.scenes if not scene.needle]

    def scene_at_frame(self, frame: int) -> int:
        """Index of the scene shown at `frame`."""
        for index, start in enumerate(self.scene_starts()):
            if start <= frame < start + self.scenes[index].num_frames:
                return index
        raise IndexError(f"frame {frame} is outside video {self.video_id} ({self.num_frames} frames)")

    def scenes_in_window(self, start: float, end: float, min_overlap: float = 0.5) -> list[int]:
        """Scenes showing for at least `min_overlap` of their frames inside [start, end) seconds."""
        chosen = []
        for index, first in enumerate(self.scene_starts()):
            count = self.scenes[index].num_frames
            inside = sum(1 for f in range(first, first + count) if start <= f / FPS < end)
            if inside / count >= min_overlap:
                chosen.append(index)
        return chosen

    def to_json(self) -> dict:
        return {"video_id": self.video_id, "fps": FPS, "scenes": [asdict(scene) for scene in self.scenes]}

    @classmethod
    def from_json(cls, data: dict) -> WorldVideo:
        return cls(data["video_id"], tuple(WorldScene(**scene) for scene in data["scenes"]))


def world_rng(*parts: object) -> random.Random:
    """A private generator from a tuple of parts (split name, seed, index, purpose), stable across machines."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def random_scenes(rng: random.Random, count: int) -> list[WorldScene]:
    """`count` scenes whose (colour, shape) pairs are all different, so "the red ring" names one scene, and whose
    neighbours differ in colour, so every scene boundary is visible."""
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    scenes: list[WorldScene] = []
    while len(scenes) < count:
        used = {(scene.colour, scene.shape) for scene in scenes}
        allowed = [combo for combo in combos if combo not in used and (not scenes or combo[0] != scenes[-1].colour)]
        colour, shape = rng.choice(allowed)
        scenes.append(WorldScene(colour, shape, rng.choice(MOTIONS)))
    return scenes


def needle_scene(rng: random.Random, avoid_colours: set[str] = frozenset()) -> WorldScene:
    """A needle: a big still shape, in a colour none of `avoid_colours` (so its colour is unique)."""
    colours = [c for c in COLOURS if c not in avoid_colours] or list(COLOURS)
    return WorldScene(rng.choice(colours), rng.choice(NEEDLE_SHAPES), "still", needle=True)


def make_video(video_id: str, rng: random.Random, num_scenes: int, with_needle: bool = False) -> WorldVideo:
    """A random video of `num_scenes` scenes, optionally with a needle inserted between two of them."""
    scenes = random_scenes(rng, num_scenes)
    if with_needle:
        needle = needle_scene(rng, {scene.colour for scene in scenes})
        scenes.insert(rng.randint(0, len(scenes)), needle)
    return WorldVideo(video_id, tuple(scenes))


# --- rendering ------------------------------------------------------------------------------------------------------
def _shape_mask(shape: str, centre: tuple[float, float], radius: float, size: int) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    dy, dx = ys - centre[0], xs - centre[1]
    if shape == "square":
        return (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    if shape == "ring":
        return (np.abs(dy) <= radius) & (np.abs(dx) <= radius) & ~((np.abs(dy) <= radius / 2) & (np.abs(dx) <= radius / 2))
    if shape == "bar":
        return (np.abs(dy) <= radius / 2.5) & (np.abs(dx) <= radius * 1.3)
    if shape == "column":
        return (np.abs(dx) <= radius / 2.5) & (np.abs(dy) <= radius * 1.3)
    raise ValueError(f"Unknown shape {shape!r}; the world has {SHAPES} and needles {NEEDLE_SHAPES}.")


def render_scene(scene: WorldScene, size: int = FRAME_SIZE) -> np.ndarray:
    """The frames of one scene, uint8 [num_frames, size, size, 3]."""
    frames = np.empty((scene.num_frames, size, size, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    colour = np.array(COLOURS[scene.colour], dtype=np.uint8)
    if scene.needle:  # drawn by the V-NIAH renderer, so world needles and V-NIAH needles are the same picture
        from ..eval.vniah import Needle, render_needle_frame

        frames[:] = render_needle_frame(Needle(scene.colour, scene.shape, text="", distractors=()), size, size)
        return frames
    step = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}[scene.motion]
    radius = size * 0.17
    for index in range(scene.num_frames):
        offset = (index - (scene.num_frames - 1) / 2) * MOVE_PIXELS
        centre = (size / 2 + step[0] * offset, size / 2 + step[1] * offset)
        frames[index][_shape_mask(scene.shape, centre, radius, size)] = colour
    return frames


def render_video(video: WorldVideo, size: int = FRAME_SIZE) -> np.ndarray:
    """All frames of `video`, uint8 [T, size, size, 3]."""
    return np.concatenate([render_scene(scene, size) for scene in video.scenes])


def frame_metadata(num_frames: int, indices: list[int] | None = None) -> dict:
    """Metadata in the shape `tpo_hf.load_video` returns, for frames rendered in memory."""
    indices = list(range(num_frames)) if indices is None else list(indices)
    return {"fps": float(FPS), "total_num_frames": num_frames, "frames_indices": indices, "duration": num_frames / FPS}


def write_world_video(video: WorldVideo, folder: str | Path) -> Path:
    """Writes `<folder>/<video_id>.mp4` and its timeline `<video_id>.json`; returns the mp4 path."""
    from ..synthetic import write_video

    folder = Path(folder)
    path = write_video(folder / f"{video.video_id}.mp4", render_video(video), fps=FPS)
    (folder / f"{video.video_id}.json").write_text(json.dumps(video.to_json()) + "\n")
    return path


def read_timeline(path: str | Path) -> WorldVideo:
    """The timeline saved beside a world video (`x.mp4` -> `x.json`, or the json path itself)."""
    path = Path(path)
    return WorldVideo.from_json(json.loads(path.with_suffix(".json").read_text()))
