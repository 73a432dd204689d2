"""Stage 3 of the flow: a batch of preference rows with videos -> the batch `TPOTrainer` (TRL's DPOTrainer) consumes.

Layout of a batch of B pairs, as TRL expects: rows `0..B-1` are prompt+chosen, rows `B..2B-1` prompt+rejected, right
padded, with `completion_mask` marking the answer tokens. Each pair's prompt and video are processed once:

- `share_video_encoding=True`: the video tensors are emitted once per pair under `pair_<key>` and the trainer runs
  the vision encoder once per pair for the chosen, rejected and reference rows;
- `share_video_encoding=False`: the video tensors are repeated for both rows under the model's own keys (what a
  plain `DPOTrainer` forward expects).

Nothing is ever truncated: a pair whose prompt (video tokens included) plus answer exceeds `max_length` is dropped
(counted in `tpo_num_dropped`, see `BOOKKEEPING_KEYS`) or raises an error naming the row, per `too_long_policy`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import torch

from .processing import EncodedPair, VideoPreferenceProcessor, VideoProcessingError
from .validation import check_placeholder_tokens, check_preference_row, placeholder_tokens
from .video import VideoLoadError, VideoView

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("prompt", "chosen", "rejected", "video")
ROW_INDEX_COLUMN = "tpo_row_index"  # added to the dataset by TPOTrainer so errors and cached values find their row
PAIR_PREFIX = "pair_"  # per-pair video tensors for the shared encoding: `pair_<processor key>`
TOO_LONG_POLICIES = ("drop", "error")
# Batch keys that are bookkeeping for the trainer, never model inputs (TPOTrainer strips them before the forward)
NUM_DROPPED_KEY = "tpo_num_dropped"  # pairs of the batch dropped for length
BATCH_SIZE_KEY = "tpo_batch_size"  # examples the batch was made from, dropped ones included
KEPT_POSITIONS_KEY = "tpo_kept_positions"  # positions (in the examples) of the pairs kept
BOOKKEEPING_KEYS = (NUM_DROPPED_KEY, BATCH_SIZE_KEY, KEPT_POSITIONS_KEY, ROW_INDEX_COLUMN)


class TooLongError(ValueError):
    """A pair does not fit in `max_length` and the policy is "error"."""


def _pad(sequences: list[list[int]], value: int) -> torch.Tensor:
    length = max(len(sequence) for sequence in sequences)
    return torch.tensor([sequence + [value] * (length - len(sequence)) for sequence in sequences], dtype=torch.long)


def describe_row(example: dict[str, Any], position: int) -> str:
    """How errors name a row: its dataset index when known, and its video."""
    index = example.get(ROW_INDEX_COLUMN, position)
    return f"row {index} (video {example.get('video')!r})"


@dataclass
class VideoPreferenceCollator:
    """Collates TRL preference rows (`prompt`, `chosen`, `rejected`, plain or conversational) plus `video`.

    Args:
        processor: the `VideoPreferenceProcessor` that encodes each pair.
        max_length: longest allowed prompt + answer, in tokens (video tokens included); `None` for no limit.
        too_long_policy: `"drop"` (skip the pair, count it) or `"error"` (raise, naming the row).
        share_video_encoding: emit each pair's video once (`pair_*` keys) for the trainer's shared encoding.
    """

    processor: VideoPreferenceProcessor
    max_length: int | None = None
    too_long_policy: str = "drop"
    share_video_encoding: bool = True
    _placeholders: tuple[str, ...] | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self):
        if self.too_long_policy not in TOO_LONG_POLICIES:
            raise ValueError(f"too_long_policy must be one of {TOO_LONG_POLICIES}, got {self.too_long_policy!r}")

    def video_view(self) -> VideoView:
        """How each row's video is sampled: the processor's (`VideoPreferenceProcessor.default_view`)."""
        return self.processor.default_view()

    def _encode(self, example: dict[str, Any], position: int) -> EncodedPair:
        # Wrong types, lone surrogates and placeholder tokens raise here naming row and field, not deep inside the
        # tokenizer, the processor or the video decoder
        index = example.get(ROW_INDEX_COLUMN, position)
        check_preference_row(example, index)
        if self._placeholders is None:
            self._placeholders = placeholder_tokens(self.processor.processor)
        check_placeholder_tokens(example, index, self._placeholders)
        try:
            video = self.processor.load_video(example["video"], self.video_view())
            return self.processor.encode_pair(example["prompt"], video, example["chosen"], example["rejected"])
        except VideoLoadError as error:
            raise VideoLoadError(f"{describe_row(example, position)}: {error}") from error
        except VideoProcessingError as error:
            file = self.processor.resolve_video(example["video"])
            raise VideoProcessingError(f"{describe_row(example, position)}, file {file}: {error}") from error

    def _fits(self, pair: EncodedPair, example: dict[str, Any], position: int) -> bool:
        if self.max_length is None:
            return True
        longest = len(pair.prompt_ids) + max(len(pair.chosen_ids), len(pair.rejected_ids))
        if longest <= self.max_length:
            return True
        message = (
            f"{describe_row(example, position)}: prompt + answer is {longest} tokens, over max_length="
            f"{self.max_length} (the prompt alone is {len(pair.prompt_ids)} tokens, {pair.num_video_tokens} of them "
            "video). Video tokens are never truncated: raise max_length, lower num_frames or max_pixels, or shorten "
            "the answer."
        )
        if self.too_long_policy == "error":
            raise TooLongError(message + " (Set too_long_policy='drop' to skip such pairs instead.)")
        logger.warning("Dropping %s", message)
        return False

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        pairs, kept = [], []
        for position, example in enumerate(examples):
            pair = self._encode(example, position)
            if self._fits(pair, example, position):
                pairs.append(pair)
                kept.append(position)
        num_dropped = len(examples) - len(pairs)
        batch: dict[str, Any] = {
            NUM_DROPPED_KEY: torch.tensor(num_dropped),
            BATCH_SIZE_KEY: torch.tensor(len(examples)),
            KEPT_POSITIONS_KEY: torch.tensor(kept, dtype=torch.long),
        }
        if not pairs:
            return batch
        kept_examples = [examples[i] for i in kept]
        batch[ROW_INDEX_COLUMN] = torch.tensor(
            [example.get(ROW_INDEX_COLUMN, position) for example, position in zip(kept_examples, kept)]
        )
        batch.update(self.collate_pairs(pairs))
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            if key in kept_examples[0]:
                batch[key] = torch.tensor([example[key] for example in kept_examples], dtype=torch.float32)
        return batch

    def collate_pairs(self, pairs: list[EncodedPair]) -> dict[str, torch.Tensor]:
        """Model inputs for already-encoded pairs (chosen rows first, then rejected rows)."""
        family = self.processor.family
        pad_id = self.processor.tokenizer.pad_token_id
        answers = [pair.chosen_ids for pair in pairs] + [pair.rejected_ids for pair in pairs]
        prompts = [pair.prompt_ids for pair in pairs] * 2
        batch = {
            "input_ids": _pad([p + a for p, a in zip(prompts, answers)], pad_id),
            "attention_mask": _pad([[1] * (len(p) + len(a)) for p, a in zip(prompts, answers)], 0),
            "completion_mask": _pad([[0] * len(p) + [1] * len(a) for p, a in zip(prompts, answers)], 0),
        }
        for key in family.sequence_keys:
            if key in pairs[0].sequence_inputs:
                rows = [pair.sequence_inputs[key] for pair in pairs] * 2
                batch[key] = _pad([r + [0] * len(a) for r, a in zip(rows, answers)], 0)

        per_pair = {key: torch.cat([pair.video_inputs[key] for pair in pairs]) for key in pairs[0].video_inputs}
        row_keys = family.row_video_keys if self.share_video_encoding else tuple(per_pair)
        for key in row_keys:
            if key in per_pair:
                batch[key] = torch.cat([per_pair[key], per_pair[key]])  # one copy for the chosen, one for the rejected
        if self.share_video_encoding:
            for key in family.encoder_input_keys:
                batch[PAIR_PREFIX + key] = per_pair[key]
        return batch
