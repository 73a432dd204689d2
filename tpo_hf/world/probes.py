"""Probes of what a model reads: the held-out questions again, each with one thing taken out of the video.

- `timestamps_blanked`: every frame's timestamp written as `<0.0 seconds>` (the frame indices set to 0): accuracy
  that holds comes from the frames, not from the timestamp text;
- `frames_shuffled`: the scenes shown in another order (blank frames stay at the ends, timestamps stay in order),
  scored against the truth of the order shown; questions the new order makes unanswerable ("right after" the scene
  now last) are left out. A model that reads the content keeps its accuracy; one that answers from where a frame
  sits, or from the text, does not. `agrees_with_original` is how often it gives the answer of the order it was
  *not* shown, on the questions whose answer the shuffle changed;
- `frames_blanked`: every frame grey: what is left above chance comes from the question and options alone.

Run on the long videos and the short clips of the held-out set, scored per question kind with each kind's chance.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np

from ..eval.answers import extract_answer_letter, option_letters
from .questions import true_answer
from .timeline import BACKGROUND, WorldVideo, read_timeline

PROBES = ("timestamps_blanked", "frames_shuffled", "frames_blanked")


def scene_spans(video: WorldVideo) -> list[tuple[int, int]]:
    """(first, end) frame of each scene within the frames shown."""
    spans, at = [], video.lead
    for scene in video.scenes:
        spans.append((at, at + scene.num_frames))
        at += scene.num_frames
    return spans


def shuffled(video: WorldVideo, frames: np.ndarray, rng: random.Random) -> tuple[WorldVideo, np.ndarray]:
    """The video with its scenes in another random order (the same order when it has one scene)."""
    order = list(range(len(video.scenes)))
    if len(order) > 1:
        while order == sorted(order):
            rng.shuffle(order)
    spans = scene_spans(video)
    parts = [frames[: video.lead], *(frames[spans[i][0] : spans[i][1]] for i in order), frames[spans[-1][1] :]]
    scenes = tuple(video.scenes[i] for i in order)
    return WorldVideo(video.video_id, scenes, video.lead, video.trail, video.offset), np.concatenate(parts)


def _letter(options: list[str], answer: str | None) -> str | None:
    return None if answer is None else option_letters(len(options))[options.index(answer)]


def probe_items(rows: list[dict[str, Any]], decoded: dict[str, tuple], probe: str, seed: int = 0) -> list[dict]:
    """The questions as `probe` asks them: prompt, (frames, metadata), the letter that counts as right."""
    items = []
    for row in rows:
        frames, metadata, video = decoded[row["sample_id"]]
        truth, other = row["answer"], None
        if probe == "timestamps_blanked":
            metadata = {**metadata, "frames_indices": [0] * len(frames)}
        elif probe == "frames_blanked":
            frames = np.empty_like(frames)
            frames[:] = BACKGROUND
        elif probe == "frames_shuffled":
            new_video, frames = shuffled(video, frames, random.Random(f"shuffle-{seed}-{row['sample_id']}"))
            truth = _letter(row["options"], true_answer(new_video, row["question"], row["options"])[0])
            if truth is None:
                continue
            other = row["answer"] if row["answer"] != truth else None
        elif probe != "none":
            raise ValueError(f"Unknown probe {probe!r}; choose from {PROBES}.")
        items.append(
            {"row": row, "prompt": row["prompt"], "video": (frames, metadata), "truth": truth, "other": other}
        )
    return items


def chance_of(rows: list[dict[str, Any]]) -> float:
    return 100.0 * float(np.mean([1 / len(r["options"]) for r in rows])) if rows else float("nan")


def score(items: list[dict], predictions: list[str], long_min_scenes: int, short_max_scenes: int) -> dict:
    """Accuracy (%) per subset (long videos / short clips) overall and per kind, with chance and counts."""
    out: dict[str, Any] = {}
    for subset, keep in (
        ("long_videos", lambda n: n >= long_min_scenes),
        ("short_clips", lambda n: n <= short_max_scenes),
    ):
        chosen = [(item, p) for item, p in zip(items, predictions) if keep(int(item["row"]["scenes"]))]
        groups: dict[str, list] = {"overall": chosen}
        for item, p in chosen:
            groups.setdefault(f"kind_{item['row']['kind']}", []).append((item, p))
        entry = {}
        for name, members in groups.items():
            if not members:
                continue
            right = sum(p == item["truth"] for item, p in members)
            changed = [(item, p) for item, p in members if item["other"] is not None]
            entry[name] = {
                "accuracy": round(100.0 * right / len(members), 2),
                "chance": round(chance_of([item["row"] for item, _ in members]), 2),
                "questions": len(members),
            }
            if changed:
                agree = sum(p == item["other"] for item, p in changed)
                entry[name]["agrees_with_original"] = round(100.0 * agree / len(changed), 2)
                entry[name]["changed_questions"] = len(changed)
        out[subset] = entry
    return out


def run_probes(
    base_model: str,
    adapter: str | None,
    questions: str | Path,
    video_dir: str | Path,
    probes: list[str] | tuple[str, ...] = PROBES,
    long_min_scenes: int = 6,
    short_max_scenes: int = 3,
    batch_size: int = 32,
    seed: int = 0,
) -> dict[str, Any]:
    """Answers the held-out questions of long videos and short clips under each probe; returns `score` per probe."""
    import torch

    from ..models import load_video_model
    from ..video import VideoView

    torch.set_num_threads(1)
    rows = [json.loads(line) for line in Path(questions).read_text().splitlines()]
    rows = [r for r in rows if int(r["scenes"]) >= long_min_scenes or int(r["scenes"]) <= short_max_scenes]
    model, processor = load_video_model(base_model, adapter, num_frames=32, dtype="float32", device="cpu")
    decoded = {}
    for row in rows:
        path = Path(video_dir) / row["video"]
        frames, metadata = processor.load_video(path, VideoView(num_frames=row["num_frames"], start=row.get("start")))
        decoded[row["sample_id"]] = (frames, metadata, read_timeline(path))
    results = {}
    for probe in probes:
        items = probe_items(rows, decoded, probe, seed)
        items.sort(key=lambda item: len(item["video"][0]))  # batches of one frame count
        predictions = []
        with torch.no_grad():
            for start in range(0, len(items), batch_size):
                batch = items[start : start + batch_size]
                replies = processor.generate(
                    model, [i["prompt"] for i in batch], [i["video"] for i in batch], do_sample=False, max_new_tokens=6
                )
                predictions += [extract_answer_letter(r, i["row"]["options"]) for r, i in zip(replies, batch)]
        results[probe] = score(items, predictions, long_min_scenes, short_max_scenes)
    return results
