"""Stage 3 of the flow (data): the checks a whole preference dataset passes when `TPOTrainer` takes it.

`validation.check_preference_row` judges one row; `TPOTrainer` runs it here over every row before the first step,
so a wrong value fails before any training, naming row and field. Also here: the required columns (named, beside
those the dataset has), degenerate pairs dropped and counted by reason rather than trained on, anchor rows
(chosen == rejected) accepted only with a loss that leaves them to the SFT term, and a dataset with no usable pair
refused (`NoTrainingDataError`) rather than trained on nothing. No video is decoded here: the collator does that.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from .collator import REQUIRED_COLUMNS, ROW_INDEX_COLUMN
from .config import MARGIN_LOSS_TYPES
from .validation import check_preference_row

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


def check_rows(dataset: Any, dataset_name: str, loss_types: list[str]) -> tuple[Any, Counter]:
    """`dataset` with a row index column and without its degenerate pairs, and the count of those by reason.

    The row index lets errors and precomputed reference log-probs name and find their row. Every row is checked
    first: a wrong type raises naming row and field, a degenerate pair (empty text, chosen == rejected) is dropped.
    A dataset that is already indexed, or cannot be indexed in place (iterable), is returned unchecked.

    Raises:
        RowError: a row holds a value of the wrong type.
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
