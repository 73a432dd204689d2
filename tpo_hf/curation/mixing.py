"""Stage 2 of the flow (curation): de-duplicate, optionally balance the chosen options of multiple-choice pairs, then
draw the localized:comprehensive mix and the dataset size, and the anchor rows (`anchor_ratio` per pair)."""

from __future__ import annotations

import random
from collections import Counter, deque
from typing import Any

from ..eval.answers import UNPARSEABLE, extract_answer_letter, option_letters, split_mcq_prompt
from .config import CurationConfig

GRANULARITIES = ("localized", "comprehensive")


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def chosen_option(record: dict[str, Any]) -> tuple[int, str] | None:
    """(number of options, letter of the option the chosen answer names) of a multiple-choice pair; `None` when the
    prompt lists fewer than two options or the chosen answer names none of them."""
    _, options = split_mcq_prompt(record["prompt"])
    if len(options) < 2:
        return None
    letter = extract_answer_letter(record.get("chosen"), options)
    return None if letter == UNPARSEABLE else (len(options), letter)


def balance_chosen_options(records: list[dict[str, Any]], rng: random.Random) -> tuple[list[dict[str, Any]], int]:
    """Drops multiple-choice pairs until, within each granularity and number of options, every option position is the
    chosen answer equally often (as often as the least chosen one); other pairs are kept. Returns (kept, dropped).

    Why: the judge keeps pairs whose chosen answer is right, and which those are follows the model's own leanings, so
    a model that leans to option A yields pairs whose right answer is A more often than chance; DPO on them teaches
    "answer A" as much as the content (the world's option-bias probe in
    `benchmarks/results/method_validity/probes/forgetting_probes_dev.json`).
    """
    groups: dict[tuple[str, int], dict[str, list[int]]] = {}
    for index, record in enumerate(records):
        found = chosen_option(record)
        if found is not None:
            num_options, letter = found
            groups.setdefault((record["granularity"], num_options), {}).setdefault(letter, []).append(index)
    dropped: set[int] = set()
    for (_, num_options), by_letter in sorted(groups.items()):
        # a letter never chosen caps every other letter at zero: the group cannot be balanced, so it is all dropped
        keep = min(len(by_letter.get(letter, [])) for letter in option_letters(num_options))
        for letter in sorted(by_letter):
            indices = by_letter[letter]
            rng.shuffle(indices)
            dropped.update(indices[keep:])
    return [r for i, r in enumerate(records) if i not in dropped], len(dropped)


def draw_keeping_options_balanced(shuffled: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The first `count` of `shuffled` (one granularity), except that each multiple-choice slot takes, from the same
    option count, the next pair whose chosen option has been taken least so far: the draw holds as many pairs of each
    option count as the plain draw, with their chosen options as even as the pool allows (a random draw from a
    balanced pool is off by a few points, enough to matter: the world's "which comes first" pairs)."""
    options = [chosen_option(record) for record in shuffled]
    queues: dict[int, dict[str, deque[int]]] = {}
    for index, found in enumerate(options):
        if found is not None:
            queues.setdefault(found[0], {}).setdefault(found[1], deque()).append(index)
    taken: Counter = Counter()
    drawn = []
    for index in range(count):
        if options[index] is None:
            drawn.append(shuffled[index])
            continue
        num_options = options[index][0]
        waiting = {letter: queue for letter, queue in queues[num_options].items() if queue}
        letter = min(sorted(waiting), key=lambda x: taken[num_options, x])
        taken[num_options, letter] += 1
        drawn.append(shuffled[waiting[letter].popleft()])
    return drawn


def mix_and_size(records: list[dict[str, Any]], config: CurationConfig) -> tuple[list[dict[str, Any]], Counter]:
    """De-duplicates, balances the chosen options when `balance_chosen_options` is set, then draws the
    localized:comprehensive mix (seeded) up to `target_size`.

    Without `target_size` the set is as large as the ratio allows. With it, each side gets its share of the target;
    a side that has fewer pairs than its share is not topped up from the other (the ratio is kept), and the report
    says so. Anchor rows (`record["anchor"]`) are drawn apart from the pairs, `anchor_ratio` per pair drawn.
    """
    counts: Counter = Counter()
    pairs = [record for record in records if not record.get("anchor")]
    anchors = [record for record in records if record.get("anchor")]
    unique = _deduplicate(pairs, config, counts, "dropped_duplicate")
    if config.balance_chosen_options:
        # its own seeded stream, so the mix's shuffle below is seeded as it is without balancing
        unique, counts["dropped_by_option_balance"] = balance_chosen_options(unique, random.Random(config.seed + 1))
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
    if config.balance_chosen_options:
        chosen = draw_keeping_options_balanced(by_side["localized"], take_l)
        chosen += draw_keeping_options_balanced(by_side["comprehensive"], take_c)
    else:
        chosen = by_side["localized"][:take_l] + by_side["comprehensive"][:take_c]
    if config.wants_anchors:
        chosen += draw_anchors(anchors, len(chosen), config, counts)
    rng.shuffle(chosen)
    return chosen, counts


def _deduplicate(records: list[dict[str, Any]], config: CurationConfig, counts: Counter, key: str) -> list:
    seen: set[tuple[str, str]] = set()
    unique = []
    for record in records:
        video_and_question = (record["video"], _normalize(record["prompt"]))
        if config.deduplicate and video_and_question in seen:
            counts[key] += 1
            continue
        seen.add(video_and_question)
        unique.append(record)
    return unique


def draw_anchors(
    anchors: list[dict[str, Any]], num_pairs: int, config: CurationConfig, counts: Counter
) -> list[dict[str, Any]]:
    """`round(anchor_ratio * num_pairs)` anchor rows (seeded, on their own stream so every mix of a run draws the
    same ones), their chosen options balanced like the pairs' when `balance_chosen_options` is set. Counts what was
    drawn (`anchors`), what was missing (`short_anchors`) and what was dropped on the way."""
    unique = _deduplicate(anchors, config, counts, "dropped_duplicate_anchor")
    if config.balance_chosen_options:
        unique, counts["anchors_dropped_by_option_balance"] = balance_chosen_options(
            unique, random.Random(config.seed + 3)
        )
    random.Random(config.seed + 2).shuffle(unique)
    want = round(config.anchor_ratio * num_pairs)
    take = min(want, len(unique))
    counts["anchors"] = take
    counts["short_anchors"] = want - take
    return draw_keeping_options_balanced(unique, take) if config.balance_chosen_options else unique[:take]
