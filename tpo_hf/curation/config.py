"""The settings of a curation run (`tpo-hf curate --config FILE.yaml`), one dataclass parsed by `trl.TrlParser`."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..fingerprint import without_off_options
from ..video import VIDEO_EXTENSIONS, normalize_video_extensions
from ..video_settings import VideoSettings
from .backends import TEMPLATE_QUESTIONS, backend_names
from .prompts import COMPREHENSIVE_TASK_TYPES, LOCALIZED_TASK_TYPES, TASK_TYPES
from .segments import SegmentSpec

# (field, lowest allowed value, whether that value itself is allowed), checked by `CurationConfig._check_ranges`
CURATION_RANGE_CHECKS = (
    ("max_videos", 1, True),
    ("sparse_num_frames", 1, True),
    ("localized_per_video", 0, True),
    ("comprehensive_per_video", 0, True),
    ("segment_seconds", 0.0, False),
    ("segment_fraction", 0.0, False),
    ("segment_min_seconds", 0.0, True),
    ("segment_max_seconds", 0.0, False),
    ("target_size", 1, True),
    ("request_timeout", 0.0, False),
    ("max_retries", 0, True),
    ("retry_backoff", 0.0, True),
    ("max_concurrency", 1, True),
    ("batch_size", 1, True),
    ("temperature", 0.0, True),
    ("caption_max_new_tokens", 1, True),
    ("question_max_new_tokens", 1, True),
    ("answer_max_new_tokens", 1, True),
    ("judge_max_new_tokens", 1, True),
    ("anchor_ratio", 0.0, True),
)


# list-typed options: one string given alone is a one-item list
CURATION_LIST_FIELDS = ("video_extensions", "localized_task_types", "comprehensive_task_types")


# options added after shards were first written, at their "off" value: left out of the shard fingerprint when off, so
# shards written before an option existed still resume
CURATION_LATER_FIELDS = {"sparse_frame_fraction": None, "video_fps": None, "max_frames": None, "cut_answers": None}
# what `cut_answers` may say (None: the backend's own rule)
CUT_ANSWER_RULES = ("drop", "keep")


@dataclass
class CurationConfig(VideoSettings):
    """Settings of `tpo-hf curate`: every field can be set in the YAML file given with `--config` or as a flag.

    > Parameters that control the inputs

    Args:
        video_dir: folder of videos (searched recursively for `video_extensions`).
        dataset_name: instead of `video_dir`, a Hub dataset id, `save_to_disk` folder or json/jsonl/parquet/csv file
            with a video column; relative paths are resolved against `video_root` (default: the dataset's folder).
        caption_column / question_column / answer_column: optional columns with existing captions and question(-answer)
            annotations; existing questions are used instead of generated comprehensive questions.

    > Parameters that control the output

    Args:
        output_dir: where the `save_to_disk` dataset, the copied videos (`videos/`), the dataset card and the run
            report go. Shards of the (resumable) run go to `work_dir` (default `output_dir/_curation`).
        push_to_hub: Hub dataset repo id to push the dataset, its card and optionally the videos to, in one commit.

    > Parameters that control the models (each role: a backend registered in `tpo_hf.curation.backends.BACKENDS`
    > or installed as a plugin,
    > e.g. a local transformers model or an OpenAI-compatible endpoint)

    > Parameters that control the videos (`tpo_hf.VideoSettings`, the same fields and defaults as in training)

    Args:
        num_frames / video_fps / max_frames: how each view is sampled (the preferred views, the whole video without
            the segment, and captioning); `sparse_num_frames` is the dis-preferred comprehensive view.
        max_pixels / max_video_tokens: the per-frame pixel budget, and the video-token budget that frames and
            resolution are fitted to for the video model, as in training and evaluation.

    > Parameters that control the pairs (segments, views, task types, judge, mix and size)
    """

    # Inputs
    video_dir: str | None = field(default=None, metadata={"help": "Folder of videos to curate (recursive)."})
    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset id, save_to_disk folder or data file with a video column."}
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of `dataset_name`."})
    video_column: str = field(default="video", metadata={"help": "Column of `dataset_name` with the video paths."})
    video_root: str | None = field(default=None, metadata={"help": "Folder that relative video paths are taken from."})
    caption_column: str | None = field(default=None, metadata={"help": "Column with existing whole-video captions."})
    question_column: str | None = field(default=None, metadata={"help": "Column with existing questions."})
    answer_column: str | None = field(default=None, metadata={"help": "Column with the answers of those questions."})
    video_extensions: list[str] = field(
        default_factory=lambda: list(VIDEO_EXTENSIONS), metadata={"help": "Video file endings."}
    )
    max_videos: int | None = field(default=None, metadata={"help": "Use only the first N videos (sorted by path)."})

    # Output
    output_dir: str = field(default="tpo-curated", metadata={"help": "Folder of the resulting dataset."})
    work_dir: str | None = field(
        default=None, metadata={"help": "Folder of the shards (default output_dir/_curation)."}
    )
    copy_videos: bool = field(
        default=True,
        metadata={"help": "Copy the videos to output_dir/videos so the folder is a self-contained snapshot."},
    )
    on_video_error: str = field(
        default="skip", metadata={"help": "'skip' undecodable/missing videos (listed in the report) or 'raise'."}
    )
    push_to_hub: str | None = field(default=None, metadata={"help": "Hub dataset repo id to push to (one commit)."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})
    upload_videos: bool = field(default=False, metadata={"help": "Also upload the videos under videos/ on the Hub."})
    license: str = field(default="unknown", metadata={"help": "License id written in the dataset card."})
    pretty_name: str | None = field(default=None, metadata={"help": "Dataset name shown on the card."})

    # Models
    video_model: str | None = field(
        default=None, metadata={"help": "Video-LMM for captions and answers (the model you will train)."}
    )
    video_backend: str = field(
        default="transformers", metadata={"help": "A registered backend: 'transformers', 'openai', ..."}
    )
    video_base_url: str | None = field(default=None, metadata={"help": "Endpoint of an 'openai' video backend."})
    question_model: str | None = field(default=None, metadata={"help": "LLM for questions (default: video_model)."})
    question_backend: str = field(
        default="transformers",
        metadata={"help": "A registered backend ('transformers', 'openai', ...) or 'template' (no LLM)."},
    )
    question_base_url: str | None = field(default=None, metadata={"help": "Endpoint of an 'openai' question backend."})
    use_judge: bool = field(default=True, metadata={"help": "Filter pairs with the judge's three checks."})
    judge_model: str | None = field(default=None, metadata={"help": "Judge LLM (default: question_model)."})
    judge_backend: str | None = field(default=None, metadata={"help": "Default: question_backend."})
    judge_base_url: str | None = field(default=None, metadata={"help": "Default: question_base_url."})
    api_key: str | None = field(default=None, metadata={"help": "Bearer token for 'openai' endpoints."})
    request_timeout: float = field(default=120.0, metadata={"help": "Seconds per HTTP request."})
    max_retries: int = field(default=3, metadata={"help": "HTTP retries on timeouts, 429 and 5xx."})
    retry_backoff: float = field(default=2.0, metadata={"help": "Seconds before the first retry (doubles)."})
    max_concurrency: int = field(default=4, metadata={"help": "HTTP requests in flight at once."})
    batch_size: int = field(default=8, metadata={"help": "Prompts per generate call of local models."})
    dtype: str = field(default="auto", metadata={"help": "dtype of local models ('auto', 'bfloat16', ...)."})
    device: str | None = field(default=None, metadata={"help": "Device of local models (default: the process's)."})
    do_sample: bool = field(
        default=False, metadata={"help": "Sample instead of greedy decoding (seeded per video; same for both sides)."}
    )
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature when do_sample is set."})
    caption_max_new_tokens: int = field(default=256, metadata={"help": "Token budget of captions."})
    question_max_new_tokens: int = field(default=128, metadata={"help": "Token budget of question replies."})
    answer_max_new_tokens: int = field(default=256, metadata={"help": "Token budget of answers."})
    judge_max_new_tokens: int = field(default=64, metadata={"help": "Token budget of judge replies."})
    cut_answers: str | None = field(
        default=None,
        metadata={
            "help": "An answer cut at answer_max_new_tokens (the model had not finished): 'drop' its pair "
            "(drop reason truncated_answer) or 'keep' it (counted and warned about). None: the backend's rule, "
            "'drop' for 'openai' endpoints, 'keep' for local 'transformers' models (a model that never emits its end "
            "token, e.g. an untrained one, would otherwise make no pair)."
        },
    )

    # Pairs (the video sampling fields, num_frames ... max_video_tokens, come from VideoSettings)
    sparse_num_frames: int = field(
        default=8, metadata={"help": "Frames of the dis-preferred (sparse) comprehensive view."}
    )
    sparse_frame_fraction: float | None = field(
        default=None,
        metadata={
            "help": "Also cap the sparse view at this fraction (0-1) of the dense view's distinct frames, at least 1, "
            "so that short videos, whose dense view has no more frames than sparse_num_frames, still give a sparser "
            "view and comprehensive pairs. None: always sparse_num_frames."
        },
    )
    localized_per_video: int = field(default=1, metadata={"help": "Localized queries per video."})
    comprehensive_per_video: int = field(default=1, metadata={"help": "Generated comprehensive queries per video."})
    segment_seconds: float | None = field(default=None, metadata={"help": "Segment length in seconds."})
    segment_fraction: float | None = field(
        default=0.25, metadata={"help": "Segment length as a fraction of duration."}
    )
    segment_min_seconds: float = field(default=1.0, metadata={"help": "Shortest segment."})
    segment_max_seconds: float | None = field(default=None, metadata={"help": "Longest segment."})
    segment_edge_margin: float = field(default=0.05, metadata={"help": "Fraction of duration kept free at each end."})
    localized_task_types: list[str] = field(
        default_factory=lambda: list(LOCALIZED_TASK_TYPES), metadata={"help": f"Task types among {list(TASK_TYPES)}."}
    )
    comprehensive_task_types: list[str] = field(
        default_factory=lambda: list(COMPREHENSIVE_TASK_TYPES), metadata={"help": "Task types of whole-video queries."}
    )
    mix_ratio: str = field(default="5:5", metadata={"help": "localized:comprehensive ratio of the final dataset."})
    target_size: int | None = field(
        default=None, metadata={"help": "Number of pairs (default: as many as the ratio allows)."}
    )
    deduplicate: bool = field(default=True, metadata={"help": "Drop pairs repeating a (video, question)."})
    balance_chosen_options: bool = field(
        default=False,
        metadata={
            "help": "For multiple-choice questions (options listed as 'A. ...' lines), drop pairs until every option "
            "position is the chosen answer equally often (per granularity and option count): the judge keeps the "
            "model's right answers, so the pairs inherit the model's option bias, which DPO then reinforces."
        },
    )
    anchor_ratio: float = field(
        default=0.0,
        metadata={
            "help": "Anchor rows per preference pair in the dataset (0: none, as in the paper). An anchor is a question "
            "the model answers the same from both views (or whose two views are the same frames, as on short videos), "
            "kept when the judge finds the answer correct, with chosen == rejected: its DPO term is zero, so only the "
            "SFT term trains on it. It keeps what the model already does right where no pair can be made."
        },
    )
    seed: int = field(default=42, metadata={"help": "Seed of segments, task types, sampling and the mix."})
    videos_per_shard: int = field(
        default=1, metadata={"help": "At most this many videos per shard (the unit of resume and batching)."}
    )
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self):
        super().__post_init__()  # the video fields' one validation (VideoSettings)
        for name in CURATION_LIST_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str):  # YAML `localized_task_types: temporal` means one item, not its letters
                setattr(self, name, [value])
            elif not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
                raise ValueError(f"{name} must be a list of strings (or one string), got {value!r}.")
        # "mp4,mkv" (a comma list on the command line) or ".mp4 .mkv" (one YAML string) means two endings
        split_extensions = [part for item in self.video_extensions for part in re.split(r"[\s,;]+", item)]
        # "*.mp4", a glob as a shell user writes it, means the ending ".mp4"; other patterns name no ending
        split_extensions = [part.lstrip("*") for part in split_extensions]
        patterns = [part for part in split_extensions if re.search(r"[*?\[\]]", part)]
        if patterns:
            raise ValueError(
                f"video_extensions holds {patterns}: give file endings such as .mp4 (or *.mp4), not other patterns."
            )
        self.video_extensions = normalize_video_extensions(split_extensions)  # "mp4", ".MP4": ".mp4"
        for name in ("output_dir", "work_dir"):
            # `--output_dir "$OUT"` with OUT unset: "" is the current folder, whose files the dataset would replace
            value = getattr(self, name)
            if value is not None and not str(value).strip():
                raise ValueError(f"{name} is empty ({value!r}): set it to the folder to write (an unset variable?).")
        if (self.video_dir is None) == (self.dataset_name is None):
            raise ValueError("Set exactly one of `video_dir` (a folder of videos) and `dataset_name`.")
        if self.video_model is None:
            raise ValueError("Set `video_model` (the video-LMM that captions and answers; usually the one to train).")
        for role in ("video", "question", "judge"):
            backend = getattr(self, f"{role}_backend")
            # backends are looked up by name: the registry (tpo_hf.curation.backends.BACKENDS) and installed plugins
            backends = tuple(backend_names())
            allowed = (*backends, TEMPLATE_QUESTIONS) if role == "question" else backends
            if backend is not None and backend not in allowed:  # judge_backend None = the documented default
                raise ValueError(f"{role}_backend={backend!r}: use one of {allowed}.")
            own_url = getattr(self, f"{role}_base_url")
            if own_url and not own_url.lower().startswith(("http://", "https://")):
                # "127.0.0.1:8000" as a server prints it: huggingface_hub would take it for a Hub model id
                raise ValueError(
                    f"{role}_base_url={own_url!r} has no scheme: write it as http://{own_url} (or https://...)."
                )
            resolved, _, base_url = self.role_settings(role)
            if resolved == "openai" and not base_url and (role != "judge" or self.use_judge):
                raise ValueError(f"{role}_backend='openai' needs {role}_base_url (e.g. http://127.0.0.1:8000).")
        # checked here, not when a local model loads (`torch.bf16` would fail there with a traceback)
        from ..models import check_dtype_name

        check_dtype_name(self.dtype, "dtype")
        for name in ("localized_task_types", "comprehensive_task_types"):
            unknown = sorted(set(getattr(self, name)) - set(TASK_TYPES))
            if unknown:
                raise ValueError(f"{name} has unknown task types {unknown}; choose from {list(TASK_TYPES)}.")
        if self.on_video_error not in ("skip", "raise"):
            raise ValueError(f"on_video_error={self.on_video_error!r}: use 'skip' or 'raise'.")
        self.mix_weights()  # validates
        if self.num_frames is not None and self.sparse_num_frames >= self.num_frames:
            # the dis-preferred comprehensive view is the down-sampled one; checked again on the copy fitted to
            # max_video_tokens (`fitted_to_video_model`), whose num_frames may be lower
            fitted = f" (the frames max_video_tokens={self.max_video_tokens} fits)" if self.max_video_tokens else ""
            raise ValueError(
                f"sparse_num_frames={self.sparse_num_frames} must be below num_frames={self.num_frames}{fitted}: the "
                "dis-preferred comprehensive view is the sparse one. Lower sparse_num_frames"
                + (" or raise max_video_tokens." if fitted else " or raise num_frames.")
            )
        if self.max_frames is not None and self.sparse_num_frames >= self.max_frames:
            # max_frames caps the dense view too: with sparse_num_frames at or above it, the "sparse" view would have
            # as many frames as the dense one or more (an inverted pair)
            fitted = f" (the frames max_video_tokens={self.max_video_tokens} fits)" if self.max_video_tokens else ""
            raise ValueError(
                f"sparse_num_frames={self.sparse_num_frames} must be below max_frames={self.max_frames}{fitted}, which "
                "caps the dense (preferred) comprehensive view: the dis-preferred view is the sparse one. Lower "
                "sparse_num_frames" + (" or raise max_video_tokens." if fitted else " or raise max_frames.")
            )
        if self.sparse_frame_fraction is not None and not 0 < self.sparse_frame_fraction < 1:
            raise ValueError(
                f"sparse_frame_fraction={self.sparse_frame_fraction} must lie between 0 and 1 (exclusive)."
            )
        if self.videos_per_shard < 1:
            raise ValueError("videos_per_shard must be at least 1.")
        self._check_ranges()
        self._check_task_types()
        if self.cut_answers is not None and self.cut_answers not in CUT_ANSWER_RULES:
            raise ValueError(f"cut_answers={self.cut_answers!r} must be one of {list(CUT_ANSWER_RULES)} or None.")
        if self.do_sample and self.temperature == 0:
            # transformers refuses it only after the models load, with its own traceback
            raise ValueError(
                "do_sample=True needs temperature > 0, got temperature=0: set a positive temperature, or "
                "do_sample=False for greedy decoding."
            )
        if self.anchor_ratio > 0 and not self.use_judge:
            raise ValueError(
                f"anchor_ratio={self.anchor_ratio} needs the judge (use_judge=True): an anchor is kept only when the "
                "judge finds its answer correct, or the SFT term would rehearse the model's mistakes."
            )

    def _check_task_types(self) -> None:
        """An empty task type list leaves nothing to draw the questions of its granularity from: refused where that
        granularity has pairs to make (queries per video, and a share of the mix), allowed where it has none."""
        weights = dict(zip(("localized", "comprehensive"), self.mix_weights(), strict=True))
        for granularity, weight in weights.items():
            per_video = getattr(self, f"{granularity}_per_video")
            if not getattr(self, f"{granularity}_task_types") and per_video > 0 and weight > 0:
                raise ValueError(
                    f"{granularity}_task_types is empty, but {granularity}_per_video={per_video} and mix_ratio="
                    f"{self.mix_ratio!r} ask for {granularity} pairs: list task types among {list(TASK_TYPES)}, or "
                    f"set {granularity}_per_video to 0 to make none."
                )

    def _check_ranges(self) -> None:
        """Numbers out of range are refused here, not turned into an empty or wrong dataset later."""
        for name, low, inclusive in CURATION_RANGE_CHECKS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__}).")
            if value < low or (value == low and not inclusive) or value != value:
                raise ValueError(f"{name} must be {'>=' if inclusive else '>'} {low}, got {value}.")
        if self.localized_per_video == 0 and self.comprehensive_per_video == 0 and self.question_column is None:
            raise ValueError("localized_per_video and comprehensive_per_video are both 0: no pair would be made.")
        fraction_default = type(self).__dataclass_fields__["segment_fraction"].default
        if self.segment_seconds is not None and self.segment_fraction not in (None, fraction_default):
            # segment_seconds takes precedence (`SegmentSpec.length`): the fraction would be silently unused
            raise ValueError(
                f"segment_fraction={self.segment_fraction} is ignored: segment_seconds={self.segment_seconds} takes "
                "precedence; set segment_seconds: null (None) to cut segments by fraction, or leave segment_fraction "
                "out."
            )
        if self.segment_seconds is not None:
            # min/max_seconds bound every length (`SegmentSpec.length`): an explicit length outside them would be
            # silently replaced by the bound
            low, high = self.segment_min_seconds, self.segment_max_seconds
            if self.segment_seconds < low:
                raise ValueError(
                    f"segment_seconds={self.segment_seconds} is below segment_min_seconds={low}, which bounds it: "
                    f"segments would be {low} s long. Lower segment_min_seconds to {self.segment_seconds} or less, "
                    "or raise segment_seconds."
                )
            if high is not None and self.segment_seconds > high:
                raise ValueError(
                    f"segment_seconds={self.segment_seconds} is above segment_max_seconds={high}, which bounds it: "
                    f"segments would be {high} s long. Raise segment_max_seconds (or leave it out), or lower "
                    "segment_seconds."
                )
        # the segment rules live in SegmentSpec, which each shard builds from these fields: checked here, before any
        # model loads
        SegmentSpec.of(self)

    def role_settings(self, role: str) -> tuple[str, str | None, str | None]:
        """(backend, model, base_url) of `role` ("video", "question" or "judge"), with the documented defaults:
        questions default to the video model; the judge defaults to the question model (or the video model when
        questions come from templates)."""
        if role == "video":
            return self.video_backend, self.video_model, self.video_base_url
        question_model = self.question_model or self.video_model
        question_url = self.question_base_url or (self.video_base_url if self.question_model is None else None)
        if role == "question":
            return self.question_backend, question_model, question_url
        if self.question_backend == "template":
            fallback = (
                (self.video_backend, self.video_model, self.video_base_url)
                if self.question_model is None
                else ("transformers", self.question_model, self.question_base_url)
            )
        else:
            fallback = (self.question_backend, question_model, question_url)
        backend = self.judge_backend or fallback[0]
        model = self.judge_model or fallback[1]
        url = self.judge_base_url or (fallback[2] if self.judge_model is None else None)
        return backend, model, url

    def mix_weights(self) -> tuple[float, float]:
        """(localized, comprehensive) weights parsed from `mix_ratio` ("5:5", "7:3", ...)."""
        try:
            localized, comprehensive = (float(x) for x in str(self.mix_ratio).split(":"))
        except ValueError as error:
            # YAML 1.1 reads an unquoted 7:3 as the base-60 number 423
            sexagesimal = (
                f" A YAML file read an unquoted {self.mix_ratio // 60}:{self.mix_ratio % 60} as the number "
                f"{self.mix_ratio}: quote it, mix_ratio: '{self.mix_ratio // 60}:{self.mix_ratio % 60}'."
                if isinstance(self.mix_ratio, int) and not isinstance(self.mix_ratio, bool) and self.mix_ratio >= 60
                else ""
            )
            raise ValueError(
                f"mix_ratio={self.mix_ratio!r} must look like '5:5' (localized:comprehensive).{sexagesimal}"
            ) from error
        if not (math.isfinite(localized) and math.isfinite(comprehensive)):
            # float() reads "nan" and "inf": the mix would fail only after every video was answered
            raise ValueError(f"mix_ratio={self.mix_ratio!r} needs finite parts (not nan or inf), e.g. '5:5'.")
        if localized < 0 or comprehensive < 0 or localized + comprehensive == 0:
            raise ValueError(f"mix_ratio={self.mix_ratio!r} needs non-negative parts, not both zero.")
        return localized, comprehensive

    # The fields that change which pairs a shard holds; a resumed run must agree with the shards on all of them.
    def fingerprint_fields(self) -> dict:
        skip = {
            "output_dir",
            "work_dir",
            "push_to_hub",
            "hub_private",
            "upload_videos",
            "license",
            "pretty_name",
            "progress",
            "copy_videos",
            "max_concurrency",
            "request_timeout",
            "max_retries",
            "retry_backoff",
            "api_key",
            "on_video_error",
            "mix_ratio",
            "target_size",
            "deduplicate",
            "balance_chosen_options",
            "anchor_ratio",  # how many anchors the mix draws; whether shards hold any is `wants_anchors` below
            "device",
            "video_base_url",
            "question_base_url",
            "judge_base_url",
        }
        fields = {k: v for k, v in vars(self).items() if k not in skip}
        # Folders are keyed by what they are, not by how their path is spelled (relative, absolute, moved). Videos are
        # keyed in each shard by their id (the path under `video_dir`), size and modification time
        # (`storage.shard_inputs`): `video_dir` itself decides nothing a shard holds.
        del fields["video_dir"]
        for name in ("video_model", "question_model", "judge_model", "dataset_name", "video_root"):
            if isinstance(fields[name], str) and os.path.exists(fields[name]):  # a local model folder or data file
                fields[name] = os.path.realpath(fields[name])
        if self.wants_anchors:  # shards then also answer and judge the anchor candidates
            fields["anchors"] = True
        return without_off_options(fields, CURATION_LATER_FIELDS)

    @property
    def shard_dir(self) -> Path:
        """Where the shards and the manifest live: `work_dir`, default `output_dir/_curation`."""
        return Path(self.work_dir or Path(self.output_dir) / "_curation")

    @property
    def wants_anchors(self) -> bool:
        """Whether candidates that cannot make a pair (identical views or answers) are kept as anchor candidates."""
        return self.anchor_ratio > 0
