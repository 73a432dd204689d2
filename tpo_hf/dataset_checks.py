"""Stage 3 of the flow (data): the checks a whole preference dataset passes when `TPOTrainer` takes it.

`validation.check_preference_row` judges one row; `TPOTrainer` runs it here over every row before the first step,
so a wrong value (or text that is not UTF-8, or holds the processor's video placeholder token) fails before any
training, naming row and field. Also here: the required columns (named, beside those the dataset has), degenerate
pairs dropped and counted by reason rather than trained on, anchor rows (chosen == rejected) accepted only with a loss
that leaves them to the SFT term, rows longer than `max_length` counted from token counts (`check_lengths`), and a
dataset with no usable pair refused (`NoTrainingDataError`) rather than trained on nothing. Reference log-prob
columns a dataset brings (an earlier precompute's) are dropped, named: they are computed for this run. The collator
decodes the videos; here only each video's frame count, rate and size are read (`PairLengthCounter` says when more is
decoded).
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .collator import REQUIRED_COLUMNS, ROW_INDEX_COLUMN, TooLongError, VideoPreferenceCollator, describe_row
from .config import MARGIN_LOSS_TYPES
from .processing import VideoProcessingError
from .ref_logps_cache import REF_LOGPS_COLUMNS
from .validation import check_placeholder_tokens, check_preference_row
from .video import VideoFile, VideoLoadError, VideoView

logger = logging.getLogger(__name__)


class NoTrainingDataError(RuntimeError):
    """Training would run on nothing (every pair dropped): refused instead of saving an untrained model."""


def check_columns(dataset: Any, name: str) -> None:
    """Raises `ValueError` naming the TPO columns `dataset` (called `name` in the message) lacks."""
    columns = dataset.column_names or list(next(iter(dataset)).keys())
    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {missing}; a TPO dataset has {list(REQUIRED_COLUMNS)} "
            f"(plus optional granularity/segment_start/segment_end/anchor). It has {columns}."
        )


def drop_ref_logps_columns(dataset: Any, dataset_name: str, precompute: bool) -> Any:
    """`dataset` without the reference log-prob columns it brings (left by an earlier precompute, maybe for another
    model or other frames), with a warning naming them. TRL adds its own when it precomputes (a second copy fails
    with Arrow's "duplicated columns" after the whole reference pass) and ignores them otherwise; values it did not
    compute under this run's key (`TPOTrainer.ref_logps_key`) would be stale."""
    stale = [column for column in REF_LOGPS_COLUMNS if column in (dataset.column_names or [])]
    if not stale:
        return dataset
    logger.warning(
        "%s dataset: dropped its column(s) %s: %s",
        dataset_name,
        stale,
        "the reference log-probs are computed again for this model and these settings (precompute_ref_log_probs)"
        if precompute
        else "the reference model computes them at each step (precompute_ref_log_probs is off)",
    )
    return dataset.remove_columns(stale)


def check_rows(
    dataset: Any, dataset_name: str, loss_types: list[str], placeholders: tuple[str, ...] = ()
) -> tuple[Any, Counter]:
    """`dataset` with a row index column and without its degenerate pairs, and the count of those by reason.

    The row index lets errors and precomputed reference log-probs name and find their row. Every row is checked
    first: a wrong type, text that is not valid UTF-8, or a text holding one of `placeholders` (the processor's
    video/image placeholder tokens, `validation.placeholder_tokens`) raises naming row and field; a degenerate pair
    (empty text, chosen == rejected) is dropped. A dataset that is already indexed, or cannot be indexed in place
    (iterable), is returned unchecked.

    Raises:
        RowError: a row holds a value of the wrong type, text that is not UTF-8, or a placeholder token.
        ValueError: anchor rows with a loss that would train on them as pairs (`check_anchor_loss`).
        NoTrainingDataError: no row is left.
    """
    if ROW_INDEX_COLUMN in (dataset.column_names or []):
        return dataset, Counter()
    if not (hasattr(dataset, "add_column") and hasattr(dataset, "__len__")):
        return dataset.map(lambda _, index: {ROW_INDEX_COLUMN: index}, with_indices=True), Counter()
    columns = [
        c
        for c in (*REQUIRED_COLUMNS, "granularity", "segment_start", "segment_end", "anchor")
        if c in dataset.column_names
    ]
    kept, dropped, anchors = [], Counter(), 0
    for index, row in enumerate(dataset.select_columns(columns)):
        reason = check_preference_row(row, index, source=dataset_name)
        check_placeholder_tokens(row, index, placeholders, source=dataset_name)
        if reason is None:
            kept.append(index)
            anchors += bool(row.get("anchor"))
        else:
            dropped[reason] += 1
    if dropped:
        logger.warning(
            "%s: dropped %d degenerate pair(s) that teach nothing (%s); %d left.",
            dataset_name,
            sum(dropped.values()),
            ", ".join(f"{count} {reason}" for reason, count in sorted(dropped.items())),
            len(kept),
        )
    check_anchor_loss(anchors, dataset_name, loss_types)
    if not kept:
        raise NoTrainingDataError(
            f"{dataset_name} dataset: no usable pair among its {len(dataset)} rows "
            f"({', '.join(f'{count} {reason}' for reason, count in sorted(dropped.items())) or 'no rows'})."
        )
    dataset = dataset.add_column(ROW_INDEX_COLUMN, list(range(len(dataset))))
    return (dataset.select(kept) if dropped else dataset), dropped


def check_anchor_loss(num_anchors: int, dataset_name: str, loss_types: list[str]) -> None:
    """Anchor rows need a loss of the pair's margin, and train nothing without the SFT term (warned)."""
    # an anchor row trains only through the SFT term, which holds only for losses of the pair's margin
    if not num_anchors:
        return
    unsafe = [loss for loss in loss_types if loss not in (*MARGIN_LOSS_TYPES, "sft")]
    if unsafe:
        raise ValueError(
            f"{dataset_name} dataset has {num_anchors} anchor row(s) (chosen == rejected), which only losses of "
            f"the pair's margin {list(MARGIN_LOSS_TYPES)} leave to the SFT term; `loss_type` has {unsafe}. Drop "
            "the anchor rows (`dataset.filter(lambda row: not row['anchor'])`) or use such a loss."
        )
    if "sft" not in loss_types:
        logger.warning(
            "%s: %d anchor row(s) train nothing without the SFT term (sft_weight=0).", dataset_name, num_anchors
        )
    else:
        logger.info("%s: %d anchor row(s), trained by the SFT term only.", dataset_name, num_anchors)


# --- lengths, counted before the first step ---------------------------------------------------------------------------
LENGTH_PROBE_PROMPT = "Which?"  # the prompt the video part is counted with (its own tokens are taken off)
SMALL_FRAME = (64, 64)  # (height, width) of the blank frames the timing part of the video tokens is counted on


def _metadata(frames: int, height: int, width: int, fps: float = 1.0, indices: list[int] | None = None) -> dict:
    indices = list(range(frames)) if indices is None else indices
    total = max(indices) + 1
    return {
        "total_num_frames": total,
        "fps": fps,
        "width": width,
        "height": height,
        "duration": total / fps,
        "video_backend": "pyav",
        "frames_indices": indices,
    }


def _blank(frames: int, height: int, width: int) -> Any:
    import numpy as np

    # a read-only view of one black pixel: no memory for the frames, whatever the resolution
    return np.broadcast_to(np.zeros((1, 1, 1, 3), dtype=np.uint8), (frames, height, width, 3))


def _noise(frames: int, height: int, width: int) -> Any:
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)


@dataclass
class PairLength:
    """Token counts of one row as the collator would encode it (`prompt` holds the video's tokens)."""

    index: Any
    video: str
    prompt: int
    chosen: int
    rejected: int
    video_tokens: int  # what the video adds to the prompt (its feature tokens and the text around them)
    # the prompt's count can be a bound: for a family whose video tokens depend on the pixels (VideoLLaMA3 prunes
    # patches that do not change between frames), `prompt` holds the fewest and `prompt_max` the most
    prompt_max: int = -1

    def __post_init__(self):
        if self.prompt_max < 0:
            self.prompt_max = self.prompt

    @property
    def longest(self) -> int:
        """Prompt + the longer answer: what must fit in `max_length` (the collator's rule)."""
        return self.prompt + max(self.chosen, self.rejected)

    @property
    def longest_max(self) -> int:
        return self.prompt_max + max(self.chosen, self.rejected)


class PairLengthCounter:
    """Counts each row's tokens as the collator encodes them, without decoding its video's frames.

    The text is tokenized as the processor renders it. The video's part (feature tokens, timestamps, frame labels)
    is counted by the processor itself on blank frames: its frame count and indices come from the sampling view and
    the video's frame count and rate, its size from the file (`VideoFile` decodes the first frame for it: decord
    reports no size without decoding; no other frame is decoded). That part is the sum of one that depends on the
    resolution (counted once per frame count and size) and one that depends on the timing (counted per video on small
    frames, only where the family writes timing into the prompt). Where the count depends on the pixels themselves
    (a family that prunes unchanging patches), blank frames give the fewest tokens and noise the most: a row between
    the two is counted exactly by decoding its frames, only when `max_length` falls between the bounds.
    """

    def __init__(self, processor: Any, view: VideoView):
        self.processor = processor
        self.view = view
        self._base = self.prompt_text_tokens(LENGTH_PROBE_PROMPT)
        self._small: dict[int, int] = {}  # frames -> count on small blank frames, reference timing
        self._timed: dict[int, bool] = {}  # frames -> whether the timing changes the count
        self._content: dict[int, bool] = {}  # frames -> whether the pixels change the count
        self._resolution: dict[tuple[int, int, int], tuple[int, int]] = {}  # (frames, h, w) -> (fewest, most)
        self._videos: dict[str, tuple[int, int, dict]] = {}  # path -> video tokens (fewest, most), metadata
        self._exact: dict[str, int] = {}  # path -> video tokens counted on its decoded frames

    def _count(self, frames: Any, metadata: dict) -> int:
        with warnings.catch_warnings():
            # the blank frames are a read-only view, which torch warns about; they are never written to
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return int(self.processor.encode_prompt(LENGTH_PROBE_PROMPT, frames, metadata)["input_ids"].shape[-1])

    def prompt_text_tokens(self, prompt: Any) -> int:
        """Tokens of the rendered prompt, the video part not yet expanded."""
        text = self.processor.processor_text(self.processor.prompt_text(prompt))
        return len(self.processor.tokenizer(text)["input_ids"])

    def _probe(self, frames: int) -> None:
        if frames in self._small:
            return
        height, width = SMALL_FRAME
        small = self._count(_blank(frames, height, width), _metadata(frames, height, width))
        far = [100_000 + 997 * i for i in range(frames)]  # timestamps far from the reference ones, at another rate
        self._small[frames] = small
        self._timed[frames] = (
            self._count(_blank(frames, height, width), _metadata(frames, height, width, 7.3, far)) != small
        )
        self._content[frames] = self._count(_noise(frames, height, width), _metadata(frames, height, width)) != small

    def video_tokens(self, path: str) -> tuple[int, int]:
        """What the video at `path` adds to a prompt: (fewest, most) tokens (equal unless the pixels count)."""
        if path in self._videos:
            return self._videos[path][:2]
        video = VideoFile(path, cache_frames=False)
        metadata = video.metadata(video.frame_indices(self.view))
        frames, height, width = len(metadata["frames_indices"]), int(video.height), int(video.width)
        self._probe(frames)
        key = (frames, height, width)
        if key not in self._resolution:
            reference = _metadata(frames, height, width)
            fewest = self._count(_blank(frames, height, width), reference) - self._small[frames]
            most = (
                self._count(_noise(frames, height, width), reference) - self._small[frames]
                if self._content[frames]
                else fewest
            )
            self._resolution[key] = (fewest, most)
        timing = self._small[frames]
        if self._timed[frames]:
            small = dict(metadata, height=SMALL_FRAME[0], width=SMALL_FRAME[1])
            timing = self._count(_blank(frames, *SMALL_FRAME), small)
        fewest, most = (timing + part - self._base for part in self._resolution[key])
        self._videos[path] = (fewest, most, metadata)
        return fewest, most

    def exact_video_tokens(self, path: str) -> int:
        """The video's tokens counted on its decoded frames (only for a family whose count depends on the pixels)."""
        if path not in self._exact:
            frames, metadata = self.processor.load_video(path, self.view)
            self._exact[path] = self._count(frames, metadata) - self._base
        return self._exact[path]

    def lengths(self, row: dict[str, Any], index: Any, max_length: int | None = None) -> PairLength:
        """The token counts of `row`; exact, or bounds that `max_length` does not fall between."""
        processor = self.processor
        path = processor.resolve_video(row["video"])
        fewest, most = self.video_tokens(path)
        text = self.prompt_text_tokens(row["prompt"])
        chosen, rejected = (
            len(processor._tokenize_answer(processor.completion_text(row["prompt"], row[field])))
            for field in ("chosen", "rejected")
        )
        length = PairLength(index, str(row["video"]), text + fewest, chosen, rejected, fewest, text + most)
        if max_length is not None and length.longest <= max_length < length.longest_max:
            exact = self.exact_video_tokens(path)
            length = PairLength(index, str(row["video"]), text + exact, chosen, rejected, exact)
        return length


def _too_long_message(length: PairLength, max_length: int) -> str:
    answer_field = "chosen" if length.chosen >= length.rejected else "rejected"
    answer = max(length.chosen, length.rejected)
    alone = (
        f" The answer alone (field {answer_field!r}) is {answer} tokens, over max_length by itself."
        if answer > max_length
        else ""
    )
    return (
        f"prompt + answer is {length.longest} tokens, over max_length={max_length} (the prompt is {length.prompt} "
        f"tokens, {length.video_tokens} of them for the video; field {answer_field!r} is {answer}).{alone}"
    )


def check_lengths(dataset: Any, dataset_name: str, collator: VideoPreferenceCollator) -> int:
    """Counts, before the first step, the rows that do not fit the collator's `max_length` (prompt with its video
    tokens + the longer answer), by counting tokens (`PairLengthCounter`: no frame decoded). Returns how many rows
    the collator will drop; it still checks each row it encodes (the backstop).

    Raises:
        TooLongError: a row does not fit and `too_long_policy` is "error" (naming the first such row).
        NoTrainingDataError: no row fits, so nothing would be trained on.
        VideoLoadError: a row's video cannot be opened (naming the row).
        VideoProcessingError: the model's processor refuses a row's video frames (their shape; naming the row).
    """
    max_length = collator.max_length
    if max_length is None or not (hasattr(dataset, "__len__") and hasattr(dataset, "select_columns")):
        return 0  # no limit, or an iterable dataset: only the collator can count
    counter = PairLengthCounter(collator.processor, collator.video_view())
    columns = [c for c in ("prompt", "chosen", "rejected", "video", ROW_INDEX_COLUMN) if c in dataset.column_names]
    lengths, too_long = [], []
    for position, row in enumerate(dataset.select_columns(columns)):
        index = row.get(ROW_INDEX_COLUMN, position)
        try:
            length = counter.lengths(row, index, max_length)
        except VideoLoadError as error:
            raise VideoLoadError(f"{dataset_name} {describe_row(row, position)}: {error}") from error
        except VideoProcessingError as error:
            file = collator.processor.resolve_video(row["video"])
            raise VideoProcessingError(
                f"{dataset_name} {describe_row(row, position)}, file {file}: {error} Found before training."
            ) from error
        lengths.append(length)
        if length.longest > max_length:
            too_long.append(length)
    if not too_long:
        return 0
    shortest, longest = min(lengths, key=lambda n: n.longest), max(lengths, key=lambda n: n.longest)
    summary = (
        f"{len(too_long)} of the {len(lengths)} rows of the {dataset_name} dataset are longer than "
        f"max_length={max_length} (prompt with its video tokens + answer: {shortest.longest} tokens for row "
        f"{shortest.index}, the shortest, to {longest.longest} for row {longest.index}, the longest)"
    )
    remedy = (
        f"Raise max_length (to at least {shortest.longest} for one row, {longest.longest} for all), or lower "
        "num_frames / max_pixels (or set max_video_tokens), or shorten the prompts and answers."
    )
    first = too_long[0]
    if collator.too_long_policy == "error":
        raise TooLongError(
            f"{dataset_name} row {first.index} (video {first.video!r}): {_too_long_message(first, max_length)} "
            f"Found before training: {summary}. {remedy} (Set too_long_policy='drop' to skip such rows instead.)"
        )
    if len(too_long) == len(lengths):
        raise NoTrainingDataError(
            f"No row fits: {summary}, so every pair would be dropped and nothing trained on. {remedy} Refused before "
            "training; nothing was saved."
        )
    named = ", ".join(str(length.index) for length in too_long[:10]) + (", ..." if len(too_long) > 10 else "")
    logger.warning(
        "%s; too_long_policy='drop' will drop them (rows %s), counted in too_long/dropped_total. The first: %s",
        summary,
        named,
        _too_long_message(first, max_length),
    )
    return len(too_long)
