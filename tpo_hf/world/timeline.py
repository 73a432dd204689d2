"""The synthetic temporal world: procedural videos whose timeline is known exactly (the ground truth of the method-validity experiment).

A world video is a sequence of *scenes*, one frame (one second) each: a big square of one colour in the middle of a
grey frame. The colours of a video are all different, so "the red shape" names one scene. A *needle* is a scene
that breaks the pattern: a big circle filling the frame (the V-NIAH needle of the TPO paper, drawn by
`tpo_hf.eval.vniah.render_needle_frame`).

Why so plain: colour is what a CPU-sized vision tower learns in minutes. Shapes, motion, and even colour placed in
one quadrant of the frame were measured to stay at chance for 300-1000+ pretraining steps, and the method is about
*when* things happen, not about seeing hard things. Everything is a pure function of a seed, so a corpus (and its held-out split) is rebuilt bit
for bit on any machine, and the timeline saved beside each video is what question generators and the judge read.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from ..synthetic import COLOURS

# The project's one colour table (synthetic.COLOURS)
NEEDLE_SHAPE = "circle"
BACKGROUND = (128, 128, 128)

FPS = 1  # one frame per second; a scene is one frame, one visual token
FRAME_SIZE = 32  # rendered side in pixels; the world model's processor resizes to 16x16 (2x2 patches of 8 pixels)


@dataclass(frozen=True)
class WorldScene:
    """One scene of a world video: a `colour` square shown for `frames` seconds (one frame each); a `needle` is a
    bigger circle of `colour` (always one frame)."""

    colour: str
    needle: bool = False
    frames: int = 1

    @property
    def name(self) -> str:
        """How questions refer to the scene ("the red shape")."""
        return f"{self.colour} shape"

    @property
    def num_frames(self) -> int:
        return self.frames


@dataclass(frozen=True)
class WorldVideo:
    """A video's id and timeline: `lead` blank frames, the scenes in order (each `scene.frames` frames), `trail`
    blank frames. `offset`: the video is a window that starts `offset` seconds into a longer file (grey frames before
    it, never shown), so its frames' timestamps start at `offset` (Qwen3-VL writes them from the frame indices).
    With the defaults (0, 0, 0 and one frame per scene) scene `i` is frame `i`, shown at second `i`."""

    video_id: str
    scenes: tuple[WorldScene, ...]
    lead: int = 0
    trail: int = 0
    offset: int = 0

    @property
    def num_frames(self) -> int:
        """Frames the model is shown (the window: blanks and scenes)."""
        return self.lead + sum(scene.num_frames for scene in self.scenes) + self.trail

    @property
    def file_frames(self) -> int:
        """Frames of the file: the window and the `offset` frames before it."""
        return self.offset + self.num_frames

    @property
    def duration(self) -> float:
        return self.num_frames / FPS

    @property
    def events(self) -> list[WorldScene]:
        """The ordinary scenes (needles excluded), in order."""
        return [scene for scene in self.scenes if not scene.needle]

    @property
    def plain(self) -> bool:
        """One frame per scene, no blank frames, no offset: the layout of every world video before these options."""
        return not (self.lead or self.trail or self.offset) and all(s.frames == 1 for s in self.scenes)

    def key(self) -> tuple:
        """What the model is shown, as a value (scenes with their lengths, blanks, offset): two videos with the same
        key are the same video whatever their ids (how held-out sets are kept apart from training and pretraining)."""
        return (tuple((s.colour, s.needle, s.frames) for s in self.scenes), self.lead, self.trail, self.offset)

    def to_json(self) -> dict:
        data = {"video_id": self.video_id, "fps": FPS, "scenes": [asdict(scene) for scene in self.scenes]}
        if not self.plain:  # plain videos keep the timeline files they always had
            data |= {"lead": self.lead, "trail": self.trail, "offset": self.offset}
        else:
            for scene in data["scenes"]:
                scene.pop("frames")
        return data

    @classmethod
    def from_json(cls, data: dict) -> WorldVideo:
        return cls(
            data["video_id"],
            tuple(WorldScene(**scene) for scene in data["scenes"]),
            data.get("lead", 0),
            data.get("trail", 0),
            data.get("offset", 0),
        )


def world_rng(*parts: object) -> random.Random:
    """A private generator from a tuple of parts (split name, seed, index, purpose), stable across machines."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def random_scenes(rng: random.Random, count: int) -> list[WorldScene]:
    """`count` scenes of different colours (so "the red shape" names one scene)."""
    if count > len(COLOURS) - 1:  # one colour stays free for a needle
        raise ValueError(f"A world video has at most {len(COLOURS) - 1} scenes (one colour each), not {count}.")
    return [WorldScene(colour) for colour in rng.sample(list(COLOURS), count)]


def needle_scene(rng: random.Random, avoid_colours: set[str] = frozenset()) -> WorldScene:
    """A needle: a big circle in a colour none of `avoid_colours` (so its colour is unique in the video)."""
    colours = [c for c in COLOURS if c not in avoid_colours] or list(COLOURS)
    return WorldScene(rng.choice(colours), needle=True)


def make_video(video_id: str, rng: random.Random, num_scenes: int, with_needle: bool = False) -> WorldVideo:
    """A random video of `num_scenes` scenes, optionally with a needle inserted between two of them."""
    scenes = random_scenes(rng, num_scenes)
    if with_needle:
        needle = needle_scene(rng, {scene.colour for scene in scenes})
        scenes.insert(rng.randint(0, len(scenes)), needle)
    return WorldVideo(video_id, tuple(scenes))


@dataclass(frozen=True)
class Layout:
    """How a video's frames are laid out beyond its scenes, drawn per video (`layout_video`); the defaults draw
    nothing (the plain layout). Every option removes an answer that could be read without the content:

    - `max_scene_frames`: each ordinary scene lasts 1..N frames, so "right after X" is not "the next frame";
    - `max_blank_frames`: 0..N blank (grey) frames before the first scene and, drawn apart, after the last, so the
      first / last shape is not the first / last frame;
    - `max_timestamp`: the shown frames are a window starting at a random second so that the last one falls before
      `max_timestamp` seconds, so the first frame does not always follow `<0.0 seconds>` (0: windows start at 0).
    """

    max_scene_frames: int = 1
    max_blank_frames: int = 0
    max_timestamp: int = 0

    @property
    def plain(self) -> bool:
        return self.max_scene_frames <= 1 and self.max_blank_frames <= 0 and self.max_timestamp <= 0


def layout_video(video: WorldVideo, layout: Layout, rng: random.Random) -> WorldVideo:
    """`video` with scene lengths, blank frames and a window offset drawn from `rng` (`video` itself for the plain
    layout, drawing nothing, so plain streams stay what they were)."""
    if layout.plain:
        return video
    scenes = tuple(
        scene if scene.needle else replace(scene, frames=rng.randint(1, max(1, layout.max_scene_frames)))
        for scene in video.scenes
    )
    lead = rng.randint(0, layout.max_blank_frames)
    trail = rng.randint(0, layout.max_blank_frames)
    shown = lead + sum(s.frames for s in scenes) + trail
    offset = rng.randint(0, max(0, layout.max_timestamp - shown)) if layout.max_timestamp else 0
    return WorldVideo(video.video_id, scenes, lead, trail, offset)


# --- rendering ------------------------------------------------------------------------------------------------------
def render_scene(scene: WorldScene, size: int = FRAME_SIZE) -> np.ndarray:
    """The frame of one scene, uint8 [1, size, size, 3]."""
    if scene.needle:  # drawn by the V-NIAH renderer, so world needles and V-NIAH needles are the same picture
        from ..eval.vniah import Needle, render_needle_frame

        return render_needle_frame(Needle(scene.colour, NEEDLE_SHAPE, text="", distractors=()), size, size)[None]
    frame = np.empty((1, size, size, 3), dtype=np.uint8)
    frame[:] = BACKGROUND
    margin = size * 3 // 16  # a square over the middle of all four 8-pixel patches (after resizing to 16x16)
    frame[0, margin : size - margin, margin : size - margin] = COLOURS[scene.colour]
    return frame


def blank_frames(count: int, size: int = FRAME_SIZE) -> np.ndarray:
    """`count` grey frames (no shape), uint8 [count, size, size, 3]."""
    frames = np.empty((count, size, size, 3), dtype=np.uint8)
    frames[:] = BACKGROUND
    return frames


def render_video(video: WorldVideo, size: int = FRAME_SIZE, with_offset: bool = False) -> np.ndarray:
    """The frames of `video` the model is shown (blanks and scenes), uint8 [T, size, size, 3]; `with_offset`: the
    whole file, with the `offset` grey frames before the window."""
    parts = [blank_frames(video.offset if with_offset else 0, size), blank_frames(video.lead, size)]
    parts += [np.repeat(render_scene(scene, size), scene.num_frames, axis=0) for scene in video.scenes]
    parts.append(blank_frames(video.trail, size))
    return np.concatenate(parts)


def frame_metadata(num_frames: int, indices: list[int] | None = None, offset: int = 0) -> dict:
    """Metadata in the shape `tpo_hf.load_video` returns, for frames rendered in memory; `offset`: the frames are a
    window starting at that second of a longer video (their timestamps start there)."""
    indices = list(range(offset, offset + num_frames)) if indices is None else list(indices)
    total = max(offset + num_frames, max(indices, default=-1) + 1)
    return {"fps": float(FPS), "total_num_frames": total, "frames_indices": indices, "duration": total / FPS}


def write_world_video(video: WorldVideo, folder: str | Path) -> Path:
    """Writes `<folder>/<video_id>.mp4` (the whole file: `offset` grey frames, then the window) and its timeline
    `<video_id>.json`; returns the mp4 path."""
    from ..synthetic import write_video

    folder = Path(folder)
    path = write_video(folder / f"{video.video_id}.mp4", render_video(video, with_offset=True), fps=FPS)
    (folder / f"{video.video_id}.json").write_text(json.dumps(video.to_json()) + "\n")
    return path


def read_timeline(path: str | Path) -> WorldVideo:
    """The timeline saved beside a world video (`x.mp4` -> `x.json`, or the json path itself)."""
    path = Path(path).with_suffix(".json")
    try:
        return WorldVideo.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as error:  # torn by a kill, or not a timeline
        raise ValueError(
            f"World timeline {path} is unreadable ({error}); `tpo-hf world corpus` with the same settings writes it "
            "again."
        ) from error
