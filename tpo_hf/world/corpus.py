"""World corpora on disk: videos + timelines for curation, and held-out evaluation sets as `MCQSample`s.

Splits never share a video: every video's content is drawn from a generator seeded by (split, seed, index), and the
evaluation split uses its own split name, so curation and training never see an evaluation video or question.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..eval.benchmarks import MCQSample
from .questions import COMPREHENSIVE_KINDS, ask, caption
from .timeline import Layout, WorldVideo, layout_video, make_video, read_timeline, world_rng, write_world_video


@dataclass(frozen=True)
class CorpusSpec:
    """Which videos a split holds: `num_videos` videos of `min_scenes`..`max_scenes` scenes."""

    split: str
    num_videos: int
    min_scenes: int
    max_scenes: int
    needle_probability: float = 0.0
    seed: int = 0
    layout: Layout = Layout()  # scene lengths, blank frames, window offset (`timeline.Layout`); plain by default
    # `WorldVideo.key()`s a video of this split must not have (other splits' videos, the base's pretraining clips):
    # such a draw is drawn again, from the same video's generator
    exclude: frozenset = frozenset()


def corpus_videos(spec: CorpusSpec) -> list[WorldVideo]:
    """The timelines of a split (no files written)."""
    videos = []
    for index in range(spec.num_videos):
        rng = world_rng(spec.split, spec.seed, index)
        for _ in range(1000):
            num_scenes = rng.randint(spec.min_scenes, spec.max_scenes)
            with_needle = rng.random() < spec.needle_probability
            video = make_video(f"{spec.split}-{spec.seed}-{index:04d}", rng, num_scenes, with_needle)
            video = layout_video(video, spec.layout, rng)
            if video.key() not in spec.exclude:
                break
        else:
            raise ValueError(f"Split {spec.split!r}: no video of {num_scenes} scenes outside `exclude` in 1000 draws.")
        videos.append(video)
    return videos


def write_corpus(spec: CorpusSpec, folder: str | Path) -> list[WorldVideo]:
    """Writes every video of `spec` (mp4 + timeline json) into `folder`; existing identical files are kept."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    videos = corpus_videos(spec)
    for video in videos:
        mp4 = folder / f"{video.video_id}.mp4"
        timeline = folder / f"{video.video_id}.json"
        if mp4.is_file() and timeline.is_file() and _timeline_or_none(timeline) == video:
            continue
        write_world_video(video, folder)
    return videos


def _timeline_or_none(path: Path) -> WorldVideo | None:
    """The timeline at `path`, or None when it is unreadable (torn by a kill): the corpus writes it again."""
    try:
        return read_timeline(path)
    except ValueError:
        return None


def refuse_other_world_videos(spec: CorpusSpec, folder: str | Path) -> None:
    """Refuses a folder holding world videos of another corpus (another split, seed or size): `curate --video_dir`
    of the folder would take them all, while `curation_inputs.jsonl` lists this corpus only (a held-out split
    written beside a training one would leak into training)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    ours = {video.video_id for video in corpus_videos(spec)}
    others = sorted(
        mp4.name for mp4 in folder.glob("*.mp4") if mp4.with_suffix(".json").is_file() and mp4.stem not in ours
    )
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise ValueError(
            f"{folder} holds {len(others)} world video(s) of another corpus ({shown}): written beside them, this "
            f"corpus would mix with them for `tpo-hf curate --video_dir {folder}`. Set another --output_dir (one per "
            "split), or remove those videos."
        )


def curation_rows(videos: list[WorldVideo], comprehensive_per_video: int = 2, seed: int = 0) -> list[dict]:
    """Rows for `tpo-hf curate --dataset_name`: one per comprehensive question (the "existing QA annotations" input
    of the curation pipeline), with the video's true caption; localized questions are written during curation from
    the model's own captions of each segment."""
    rows = []
    for video in videos:
        rng = world_rng("curation-questions", seed, video.video_id)
        kinds = list(COMPREHENSIVE_KINDS)
        rng.shuffle(kinds)
        asked = 0
        for kind in kinds * 2:
            if asked == comprehensive_per_video:
                break
            question = ask(video, kind, rng)
            if question is None:
                continue
            rows.append(
                {
                    "video": f"{video.video_id}.mp4",
                    "caption": caption(video.scenes),
                    "question": question.prompt,
                    "answer": question.letter,
                }
            )
            asked += 1
    return rows


def write_curation_inputs(
    videos: list[WorldVideo], path: str | Path, comprehensive_per_video: int = 2, seed: int = 0
) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(row) + "\n" for row in curation_rows(videos, comprehensive_per_video, seed)))
    return path


def eval_samples(videos: list[WorldVideo], per_video: dict[str, int], seed: int = 0) -> list[MCQSample]:
    """Held-out questions: `per_video[kind]` questions of each kind per video (fewer where a video cannot support
    more), each an `MCQSample` broken down by type (localized / comprehensive / needle), kind and scene count."""
    samples = []
    for video in videos:
        rng = world_rng("eval-questions", seed, video.video_id)
        for kind, count in per_video.items():
            seen = set()
            for _ in range(count * 3):
                if len(seen) == count:
                    break
                question = ask(video, kind, rng)
                if question is None or question.question in seen:
                    continue
                seen.add(question.question)
                sample = question.to_sample(
                    f"{video.video_id}-{kind}-{len(seen)}",
                    f"{video.video_id}.mp4",
                    num_frames=video.num_frames,  # the model sees every frame: no question is lost to sampling
                    scenes=str(len(video.events)),
                )
                if video.offset:  # a window of the file: its frames' timestamps start at `offset` seconds
                    sample.start = float(video.offset)
                samples.append(sample)
    return samples


def eval_rows(samples: list[MCQSample]) -> list[dict]:
    """`samples` as rows of the `tpo_world` benchmark (`tpo-hf eval --benchmark tpo_world --dataset_name F.jsonl`)."""
    return [
        {
            "sample_id": s.sample_id,
            "video": s.video,
            "question": s.question,
            "options": s.options,
            "answer": s.answer,
            "prompt": s.prompt,
            "num_frames": s.num_frames,
            **({"start": s.start} if s.start else {}),
            **s.breakdowns,
        }
        for s in samples
    ]
