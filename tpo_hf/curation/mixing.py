"""Stage 2 of the flow (curation): de-duplicate, then draw the localized:comprehensive mix and the dataset size."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from .config import CurationConfig

GRANULARITIES = ("localized", "comprehensive")


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def mix_and_size(records: list[dict[str, Any]], config: CurationConfig) -> tuple[list[dict[str, Any]], Counter]:
    """De-duplicates, then draws the localized:comprehensive mix (seeded) up to `target_size`.

    Without `target_size` the set is as large as the ratio allows. With it, each side gets its share of the target;
    a side that has fewer pairs than its share is not topped up from the other (the ratio is kept), and the report
    says so.
    """
    counts: Counter = Counter()
    seen: set[tuple[str, str]] = set()
    unique = []
    for record in records:
        key = (record["video"], _normalize(record["prompt"]))
        if config.deduplicate and key in seen:
            counts["dropped_duplicate"] += 1
            continue
        seen.add(key)
        unique.append(record)
    by_side = {g: [r for r in unique if r["granularity"] == g] for g in GRANULARITIES}
    rng = random.Random(config.seed)
    for side in GRANULARITIES:
        rng.shuffle(by_side[side])
    weight_localized, weight_comprehensive = config.mix_weights()
    total_weight = weight_localized + weight_comprehensive
    available_l, available_c = len(by_side["localized"]), len(by_side["comprehensive"])
    if config.target_size is not None:
        want_l = round(config.target_size * weight_localized / total_weight)
        want_c = config.target_size - want_l
    elif weight_localized == 0 or weight_comprehensive == 0:
        want_l = available_l if weight_localized else 0
        want_c = available_c if weight_comprehensive else 0
    else:
        scale = min(available_l / weight_localized, available_c / weight_comprehensive)
        want_l, want_c = int(scale * weight_localized + 1e-9), int(scale * weight_comprehensive + 1e-9)
    take_l, take_c = min(want_l, available_l), min(want_c, available_c)
    counts["short_localized"] = want_l - take_l
    counts["short_comprehensive"] = want_c - take_c
    counts["dropped_by_mix"] = available_l - take_l + available_c - take_c
    chosen = by_side["localized"][:take_l] + by_side["comprehensive"][:take_c]
    rng.shuffle(chosen)
    return chosen, counts
