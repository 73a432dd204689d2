"""The control arms' training sets, derived from a seed's curated TPO 5:5 set and its curation shards.

Each control changes one thing against TPO 5:5 and keeps the row count and the steps:

- `dpo_only`: the 5:5 pairs without the anchor rows (which only the SFT term trains on), trained with the SFT term
  off: does the preference term alone do anything?
- `sft_oracle`: SFT on the oracle's answers (the true timeline's) to questions drawn from the same curation
  candidates, *without* keeping only those the base answered right from the full view and wrong from the degraded
  one: as many localized / comprehensive rows as TPO 5:5 trains on. The world's analogue of the paper's SFT_LLM (SFT
  on an LLM's answers); here the "LLM" reads the timeline, so its answers are always right;
- `tpo_random_rejected`: the 5:5 rows with each pair's rejected answer replaced by a wrong option drawn at random
  (seeded) instead of the base's answer from the degraded view: a preference without the temporal contrast.

The rejected column of `sft_oracle` rows (unused by its SFT loss) holds the base's answer from the degraded view when
that answer is wrong, else a random wrong option, so the DPO reward diagnostics can be logged for every arm.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from ..eval.answers import split_mcq_prompt
from .questions import match_question, true_answer
from .timeline import read_timeline

# arm -> how its training set is made from the seed's 5:5 set (`derive`); arms not named here train on the 5:5 set
CONTROL_DATA = {"dpo_only": "pairs_only", "sft_oracle": "oracle", "tpo_random_rejected": "random_rejected"}


def control_dir(seed_root: str | Path, arm: str) -> Path:
    return Path(seed_root) / f"pairs-{arm}"


def _wrong_option(prompt: str, right: str, rng: random.Random, avoid: str | None = None) -> str | None:
    """A wrong option of the question in `prompt` (its text, as the world model answers), drawn with `rng`."""
    _, options = split_mcq_prompt(prompt)
    wrong = [o for o in options if o.strip().lower() != right.strip().lower() and o != avoid]
    return rng.choice(wrong) if wrong else None


def shard_records(seed_root: str | Path) -> list[dict[str, Any]]:
    """Every candidate of the seed's curation (kept or dropped), as the shards store them."""
    records = []
    for path in sorted((Path(seed_root) / "curation-shards").rglob("shard-*.json")):
        records += json.loads(path.read_text()).get("records", [])
    return records


def oracle_rows(
    records: list[dict[str, Any]], corpus_dir: str | Path, wanted: dict[str, int], seed: int
) -> list[dict[str, Any]]:
    """`wanted[granularity]` rows of distinct (video, question) candidates whose question the timeline can answer,
    drawn at random (seeded) whatever the base answered; chosen = the true answer."""
    rng = random.Random(f"sft-oracle-{seed}")
    seen, pool = set(), {g: [] for g in wanted}
    for record in records:
        granularity, prompt = record.get("granularity"), record.get("prompt") or ""
        if granularity not in pool or not prompt or (record["video"], prompt) in seen:
            continue
        question, options = split_mcq_prompt(prompt)
        if not options or match_question(question) is None:
            continue
        timeline = read_timeline(Path(corpus_dir) / Path(record["video"]).name)
        answer, _ = true_answer(timeline, question, options)
        if answer is None:
            continue
        seen.add((record["video"], prompt))
        pool[granularity].append((record, answer))
    rows = []
    for granularity, count in wanted.items():
        candidates = pool[granularity]
        rng.shuffle(candidates)
        if len(candidates) < count:
            raise ValueError(f"sft_oracle: {len(candidates)} {granularity} questions in the shards, {count} wanted")
        for record, answer in candidates[:count]:
            degraded = record.get("rejected") or ""
            rejected = degraded if degraded and degraded.strip().lower() != answer.lower() else None
            rejected = rejected or _wrong_option(record["prompt"], answer, rng) or "none"
            video = str((Path(corpus_dir) / Path(record["video"]).name).resolve())  # as curation places them
            rows.append({**record, "video": video, "chosen": answer, "rejected": rejected, "anchor": False})
    rng.shuffle(rows)
    return rows


def derive(seed_root: str | Path, pairs_5_5: str | Path, corpus_dir: str | Path, seed: int) -> dict[str, Any]:
    """Writes each control arm's training set beside the 5:5 set (`pairs-<arm>`); returns counts per arm."""
    from datasets import Dataset, load_from_disk

    dataset = load_from_disk(str(pairs_5_5))
    rows = dataset.to_list()
    counts: dict[str, Any] = {}

    pairs = [r for r in rows if not r["anchor"]]
    Dataset.from_list(pairs, features=dataset.features).save_to_disk(str(control_dir(seed_root, "dpo_only")))
    counts["dpo_only"] = {"rows": len(pairs)}

    rng = random.Random(f"random-rejected-{seed}")
    swapped, same_as_before = [], 0
    for row in rows:
        if not row["anchor"]:
            rejected = _wrong_option(row["prompt"], row["chosen"], rng)
            if rejected is not None:
                same_as_before += rejected.strip().lower() == (row["rejected"] or "").strip().lower()
                row = {**row, "rejected": rejected}
        swapped.append(row)
    Dataset.from_list(swapped, features=dataset.features).save_to_disk(
        str(control_dir(seed_root, "tpo_random_rejected"))
    )
    counts["tpo_random_rejected"] = {"rows": len(swapped), "rejected_unchanged_by_chance": same_as_before}

    wanted: dict[str, int] = {}
    for row in rows:  # the 5:5 set's rows by granularity, anchors included
        wanted[row["granularity"]] = wanted.get(row["granularity"], 0) + 1
    oracle = oracle_rows(shard_records(seed_root), corpus_dir, wanted, seed)
    base_right = sum(r.get("keep_reason") == "kept_judge_passed" for r in oracle)
    columns = list(dataset.features)
    models = {c: rows[0][c] for c in ("video_model", "question_model", "judge_model") if c in columns}
    oracle = [{c: r.get(c) for c in columns} | models for r in oracle]
    Dataset.from_list(oracle, features=dataset.features).save_to_disk(str(control_dir(seed_root, "sft_oracle")))
    counts["sft_oracle"] = {"rows": len(oracle), "by_granularity": wanted, "also_kept_as_tpo_pairs": base_right}
    return counts
