"""Stage 5 of the flow (evaluation): `EvalConfig`, the settings of `tpo-hf eval`, parsed by `trl.TrlParser`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..video_settings import VideoSettings


@dataclass
class EvalConfig(VideoSettings):
    """Settings of `tpo-hf eval`.

    > Parameters that control the model

    Args:
        model_name_or_path: base model (Hub id or folder).
        adapter_path: TPO LoRA adapter folder or Hub id; with it, base and adapter are evaluated side by side.
        compare_base: with an adapter, also evaluate the adapter-disabled base model.
        dtype: "auto", "bfloat16", "float16" or "float32".
        device: "cuda", "cpu", ... (default: cuda when available).
        attn_implementation: e.g. "sdpa" or "flash_attention_2".

    > Parameters that control the multiple-choice benchmark

    Args:
        benchmark: "videomme", "videomme_w_subtitle", "mlvu_dev" or "longvideobench_val" (lmms-eval tasks `videomme`,
            `videomme_w_subtitle`, `mlvu_dev`, `longvideobench_val_v`); leave unset to run only V-NIAH.
        prompt_variant: the lmms-eval prompt variant: "default" (lmms-eval's default), or a model-specific one of the
            task YAML such as "llava_vid" (Video-MME's "The best answer is:").
        subtitle_dir: folder of Video-MME's `.srt` subtitles (`videomme_w_subtitle`).
        dataset_name: Hub id, `save_to_disk` folder, or json/jsonl/parquet/csv file (default: the benchmark's id).
        dataset_config, dataset_split: Hub config and split (default: the benchmark's split).
        video_dir: folder holding the benchmark's videos.
        limit: evaluate only the first `limit` questions.
        num_frames, max_frames, max_pixels, max_video_tokens: the video settings (`tpo_hf.VideoSettings`, the same
            fields and default as in training): frames per video (default 32; the paper evaluates with 96-128; a
            fixed count, as questions are batched; `max_frames`, a cap for sampling by rate, may not be below it nor
            below the V-NIAH lengths), the per-frame pixel budget, and the video-token budget that frames and
            resolution are fitted to as in training (an adapter saved by `TPOTrainer` carries its training budget,
            used when this is unset).
        batch_size: questions per `generate` call.
        max_new_tokens: generation budget per answer (default: the lmms-eval task's, 16 or 32; V-NIAH 16).

    > Parameters that control V-NIAH

    Args:
        vniah: run the video needle-in-a-haystack test.
        vniah_haystack_dir: folder of videos to cut haystacks from (default: `video_dir`).
        vniah_lengths: haystack lengths in frames.
        vniah_depths: needle depths in [0, 1].
        vniah_needle_colour, vniah_needle_shape, vniah_needle_frames, vniah_needle_text: the rendered needle.
        vniah_fps: frame rate of the written haystack videos.
        vniah_haystack_fps: rate the source videos are sampled at to build haystacks (LongVA's V-NIAH: 1 fps).
        vniah_max_side: cap on the longer side of haystack frames.

    > Parameters that control the outputs

    Args:
        output_dir: where results, cache and heatmap go.
        resume: reuse finished samples from the results cache in `output_dir`.
        progress: show progress bars.
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "Base model: Hub id or local folder."})
    adapter_path: str | None = field(default=None, metadata={"help": "TPO LoRA adapter (folder or Hub id)."})
    compare_base: bool = field(default=True, metadata={"help": "With an adapter, also evaluate the base model."})
    dtype: str = field(default="auto", metadata={"help": "auto, bfloat16, float16 or float32."})
    device: str | None = field(default=None, metadata={"help": "Device (default: cuda when available, else cpu)."})
    attn_implementation: str | None = field(default=None, metadata={"help": "Attention implementation."})

    benchmark: str | None = field(
        default=None, metadata={"help": "videomme, mlvu_dev or longvideobench_val (unset: V-NIAH only)."}
    )
    prompt_variant: str = field(
        default="default", metadata={"help": "lmms-eval prompt variant: default, llava_vid, gpt4v, qwen3_vl, plm."}
    )
    subtitle_dir: str | None = field(
        default=None, metadata={"help": "Folder of Video-MME's .srt subtitles (videomme_w_subtitle)."}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub id, save_to_disk folder or data file (default: benchmark's Hub id)."}
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset config."})
    dataset_split: str | None = field(default=None, metadata={"help": "Split (default: the benchmark's)."})
    video_dir: str | None = field(default=None, metadata={"help": "Folder with the benchmark's videos."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate only the first N questions."})
    batch_size: int = field(default=1, metadata={"help": "Questions per generate call."})
    max_new_tokens: int | None = field(
        default=None, metadata={"help": "Generation budget per answer (default: the lmms-eval task's)."}
    )

    vniah: bool = field(default=False, metadata={"help": "Run the video needle-in-a-haystack test."})
    vniah_haystack_dir: str | None = field(
        default=None, metadata={"help": "Videos to cut haystacks from (default: video_dir)."}
    )
    vniah_lengths: list[int] = field(
        default_factory=lambda: [32, 64, 128], metadata={"help": "Haystack lengths in frames."}
    )
    vniah_depths: list[float] = field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0], metadata={"help": "Needle depths in [0, 1]."}
    )
    vniah_needle_colour: str = field(default="red", metadata={"help": "Colour of the rendered needle."})
    vniah_needle_shape: str = field(default="circle", metadata={"help": "circle or square."})
    vniah_needle_frames: int = field(default=1, metadata={"help": "Frames the needle lasts."})
    vniah_needle_text: str = field(default="NEEDLE", metadata={"help": "Text written on the needle ('' for none)."})
    vniah_fps: int = field(default=8, metadata={"help": "Frame rate of the written haystack videos."})
    vniah_haystack_fps: float | None = field(
        default=1.0, metadata={"help": "Rate the haystack sources are sampled at (LongVA: 1 fps); unset: every frame."}
    )
    vniah_max_side: int | None = field(
        default=448, metadata={"help": "Cap on the longer side of haystack frames (memory of long haystacks)."}
    )

    output_dir: str = field(default="eval_results", metadata={"help": "Where results, cache and heatmap go."})
    resume: bool = field(default=True, metadata={"help": "Reuse finished samples from the results cache."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self):
        super().__post_init__()  # the video fields' one validation (VideoSettings)
        if self.num_frames is None:
            raise ValueError(
                "EvalConfig: set `num_frames`: questions are batched, so every video gives the same number of frames "
                "(`video_fps` alone would make it depend on each video's length)."
            )
        self.check_fixed_frame_count()  # a cap below the count would sample max_frames while every output says num_frames
        if self.benchmark is not None:
            from .benchmarks import get_benchmark

            benchmark = get_benchmark(self.benchmark)  # fails early, naming the benchmarks there are
            if self.prompt_variant not in benchmark.variants:
                raise ValueError(
                    f"`prompt_variant` {self.prompt_variant!r} is not one of {self.benchmark}'s lmms-eval variants "
                    f"{list(benchmark.variants)}."
                )
        if self.benchmark is None and not self.vniah:
            raise ValueError("Nothing to evaluate: set `benchmark` and/or `vniah: true`.")
        for name in ("batch_size", "max_new_tokens", "vniah_needle_frames", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1, got {getattr(self, name)}.")
        if self.vniah and (not self.vniah_lengths or any(length < 1 for length in self.vniah_lengths)):
            raise ValueError(f"`vniah_lengths` must be positive frame counts, got {self.vniah_lengths}.")
        if self.vniah and not self.vniah_depths:
            raise ValueError("`vniah_depths` is empty: V-NIAH would evaluate nothing.")
        if self.vniah_fps < 1 or (self.vniah_haystack_fps is not None and self.vniah_haystack_fps <= 0):
            raise ValueError(
                f"`vniah_fps` ({self.vniah_fps}) and `vniah_haystack_fps` ({self.vniah_haystack_fps}) must be positive."
            )
        for depth in self.vniah_depths:
            if not 0.0 <= depth <= 1.0:
                raise ValueError(f"`vniah_depths` must lie in [0, 1], got {depth}.")
        # checked here, not when the model has loaded (or the whole benchmark has run before V-NIAH starts)
        from ..models import check_dtype_name

        check_dtype_name(self.dtype, "`dtype`")
        if self.device is not None:
            import torch

            try:
                torch.device(self.device)
            except (RuntimeError, TypeError, ValueError) as error:
                raise ValueError(
                    f"`device`={self.device!r} is not a torch device (e.g. cuda, cuda:1, cpu, mps): {error}"
                ) from None
        if self.vniah:
            self._check_vniah()

    def _check_vniah(self) -> None:

        from .vniah import Needle

        try:  # the needle's own checks: a known colour, circle or square
            Needle(
                colour=self.vniah_needle_colour,
                shape=self.vniah_needle_shape,
                num_frames=self.vniah_needle_frames,
                text=self.vniah_needle_text,
            )
        except ValueError as error:
            raise ValueError(f"`vniah_needle_colour` / `vniah_needle_shape`: {error}") from None
        if self.max_frames is not None and self.max_frames < max(self.vniah_lengths):
            raise ValueError(
                f"`max_frames` ({self.max_frames}) is below the longest V-NIAH haystack ({max(self.vniah_lengths)} "
                "frames, `vniah_lengths`): V-NIAH shows the model every haystack frame, and the cap would skip the "
                "needle's; raise `max_frames` or leave it out."
            )
        if self.vniah_needle_frames >= min(self.vniah_lengths):
            raise ValueError(
                f"`vniah_needle_frames` ({self.vniah_needle_frames}) must be shorter than every haystack in "
                f"`vniah_lengths` {self.vniah_lengths}."
            )

    def check_vniah_haystack_dir(self) -> None:
        """Refuses, before anything loads, a V-NIAH run without a folder of haystack videos. A run-time check, not a
        parse-time one: a recipe names folders that exist only on the machine it runs on."""
        import os

        haystack_dir = self.vniah_haystack_dir or self.video_dir
        if self.vniah and (not haystack_dir or not os.path.isdir(haystack_dir)):
            raise ValueError(
                f"V-NIAH needs a folder of haystack videos: set `vniah_haystack_dir` (got {haystack_dir})."
            )
