"""Curation throughput, measured side by side in one run on the same corpus:

1. decode-once (`VideoFile.load_views`: the union of the frames of a video's 4 views decoded in one pass) against
   decoding each view separately (`load_video` per view, as a naive pipeline would);
2. batched generation (batch 8) against one prompt at a time (batch 1): curated pairs per second of
   `curate_shard` with a tiny random video-LMM on CPU.

    python benchmarks/curation.py [--videos 4] [--seconds 30] [--repeats 3]

Targets: decode-once >= 2x fewer decode seconds per video; batch 8 >= 3x the pairs per second of batch 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tpo_hf.curation import Backends, CurationConfig, TransformersBackend, curate_shard, list_videos  # noqa: E402
from tpo_hf.curation.segments import comprehensive_views, localized_views  # noqa: E402
from tpo_hf.synthetic import COLOURS, Scene, synthetic_frames  # noqa: E402
from tpo_hf.video import VideoFile, load_video  # noqa: E402
from tpo_hf.video_settings import VideoSettings  # noqa: E402

COLOUR_NAMES = list(COLOURS)


def write_with_gop(path: Path, frames, fps: int, gop: int) -> Path:
    """H.264 with a keyframe every `gop` frames (x264's default is 250; the test helper uses 2 s)."""
    import av
    import numpy as np

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "g": str(gop)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return path


def make_corpus(folder: Path, count: int, seconds: float, fps: int, gop: int) -> list[Path]:
    paths = []
    for index in range(count):
        scenes = [
            Scene(
                seconds / 3,
                COLOUR_NAMES[(index + k) % len(COLOUR_NAMES)],
                ("square", "circle")[k % 2],
                ("right", "left")[k % 2],
            )
            for k in range(3)
        ]
        frames = synthetic_frames(scenes, fps=fps, height=240, width=320)
        paths.append(write_with_gop(folder / f"clip{index}.mp4", frames, fps, gop))
    return paths


def four_views(duration: float, num_frames: int, sparse: int) -> dict:
    segment = (round(duration * 0.4, 3), round(duration * 0.6, 3))
    settings = VideoSettings(num_frames=num_frames)
    views = {f"localized/{k}": v for k, v in localized_views(segment, settings).items()}
    views.update({f"comprehensive/{k}": v for k, v in comprehensive_views(settings, sparse).items()})
    return views


def bench_decode(paths: list[Path], num_frames: int, sparse: int, repeats: int) -> tuple[float, float, int, int]:
    """Seconds per video (separate, once) and frames decoded per video (separate, once), best of `repeats`."""
    separate_times, once_times = [], []
    frames_separate = frames_once = 0
    for _ in range(repeats):
        started = time.perf_counter()
        frames_separate = 0
        for path in paths:
            views = four_views(VideoFile(path).duration, num_frames, sparse)
            for view in views.values():
                frames, _ = load_video(
                    path, num_frames=view.num_frames, start=view.start, end=view.end, exclude=view.exclude
                )
                frames_separate += len(frames)
        separate_times.append(time.perf_counter() - started)

        started = time.perf_counter()
        frames_once = 0
        for path in paths:
            video = VideoFile(path)
            video.load_views(four_views(video.duration, num_frames, sparse))
            frames_once += video.frames_decoded
        once_times.append(time.perf_counter() - started)
    count = len(paths)
    return min(separate_times) / count, min(once_times) / count, frames_separate // count, frames_once // count


def bench_generation(
    folder: Path, batch_sizes: tuple[int, int], max_new_tokens: int, repeats: int, max_pixels: int
) -> dict:
    """Pairs per second of `curate_shard` for each batch size (same corpus, model and settings).

    Two rates per batch size: end to end (decoding and bookkeeping included, the same work at both sizes) and over
    the generation calls alone (processor + `generate`, from the shard's own `seconds_*` timers), which is what
    batching changes.
    """
    from tpo_hf.processing import VideoPreferenceProcessor
    from tpo_hf.tiny import build_tiny_model

    model, processor = build_tiny_model("qwen2_5_vl")
    # A random model stops at a random EOS; fixed-length answers make both batch sizes do the same work
    model.generation_config.min_new_tokens = max_new_tokens
    video_processor = VideoPreferenceProcessor(processor, num_frames=8, max_pixels=max_pixels)
    config = CurationConfig(
        video_dir=str(folder),
        video_model="tiny",
        output_dir=str(folder / "out"),
        question_backend="template",
        use_judge=False,
        num_frames=8,
        sparse_num_frames=4,
        localized_per_video=2,
        comprehensive_per_video=2,
        caption_max_new_tokens=max_new_tokens,
        answer_max_new_tokens=max_new_tokens,
        progress=False,
    )
    items = list_videos(config)
    results = {}
    for batch_size in batch_sizes:
        backend = TransformersBackend.from_model(model, video_processor, "tiny", batch_size=batch_size)
        curate_shard(items[:1], Backends(backend, None, None), config)  # warm-up
        best, best_generation, pairs = float("inf"), float("inf"), 0
        for _ in range(repeats):
            started = time.perf_counter()
            shard = curate_shard(items, Backends(backend, None, None), config)
            best = min(best, time.perf_counter() - started)
            generation = sum(
                v for k, v in shard["stats"].items() if k.startswith("seconds_") and k != "seconds_decode"
            )
            best_generation = min(best_generation, generation)
            pairs = len(shard["records"])
        results[batch_size] = {"end_to_end": pairs / best, "generation": pairs / best_generation}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--num_frames", type=int, default=32)
    parser.add_argument("--sparse_num_frames", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--gop", type=int, default=250, help="keyframe interval of the corpus (x264 default: 250)")
    parser.add_argument("--max_pixels", type=int, default=32 * 32, help="per-frame pixel budget for generation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_corpus(folder, args.videos, args.seconds, args.fps, args.gop)
        separate, once, frames_separate, frames_once = bench_decode(
            paths, args.num_frames, args.sparse_num_frames, args.repeats
        )
        generation = bench_generation(folder, (1, 8), args.max_new_tokens, args.repeats, args.max_pixels)

    decode_ratio = separate / once
    end_to_end_ratio = generation[8]["end_to_end"] / generation[1]["end_to_end"]
    batch_ratio = generation[8]["generation"] / generation[1]["generation"]
    print(
        f"corpus: {args.videos} videos x {args.seconds:.0f} s at {args.fps} fps (320x240), 4 views per video "
        f"({args.num_frames} frames; sparse {args.sparse_num_frames}), keyframe every {args.gop} frames; generation: "
        f"tiny qwen2_5_vl on CPU ({torch.get_num_threads()} thread(s)), 8 frames of <= {args.max_pixels} pixels, "
        f"{args.max_new_tokens} new tokens"
    )
    print(f"{'measure':<44} {'baseline':>12} {'ours':>12} {'ratio':>8} {'target':>8}")
    print(
        f"{'decode seconds per video (separate / once)':<44} {separate:>12.4f} {once:>12.4f} "
        f"{decode_ratio:>7.2f}x {'>= 2x':>8}"
    )
    print(
        f"{'frames decoded per video (separate / once)':<44} {frames_separate:>12d} {frames_once:>12d} "
        f"{frames_separate / max(frames_once, 1):>7.2f}x {'':>8}"
    )
    print(
        f"{'pairs/s of generation (batch 1 / batch 8)':<44} {generation[1]['generation']:>12.2f} "
        f"{generation[8]['generation']:>12.2f} {batch_ratio:>7.2f}x {'>= 3x':>8}"
    )
    print(
        f"{'pairs/s end to end, decoding incl. (1 / 8)':<44} {generation[1]['end_to_end']:>12.2f} "
        f"{generation[8]['end_to_end']:>12.2f} {end_to_end_ratio:>7.2f}x {'':>8}"
    )


if __name__ == "__main__":
    main()
