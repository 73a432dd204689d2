"""Scoring and report of the method-validity experiment (`tpo_hf.world.experiment`): scores the held-out replies
(accuracy per question type, kind and scene count; chance), paired differences between arms with 95% intervals from
resampling held-out videos, and writes results.md and the figures. It reads run results; it trains nothing.

A little over 500 lines on purpose: the scores and the tables and figures that show them sit together, so a new
score and its place in results.md change in one module.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .questions import COMPREHENSIVE_KINDS, LOCALIZED_KINDS

QUESTION_TYPES = ("localized", "comprehensive", "needle")
# short clips, the forgetting check: videos of at most this many scenes (the base was pretrained on 1-3)
SHORT_CLIP_MAX_SCENES = 3
# each question kind on its own: TPO can only teach a kind that its curated pairs hold with a right chosen answer
QUESTION_KINDS = (*LOCALIZED_KINDS, *COMPREHENSIVE_KINDS, "needle")


def accuracies(samples: list[dict[str, Any]], long_min_scenes: int) -> dict[str, float]:
    """Accuracy (percent) on long videos per question type and overall, on short clips, and per scene count."""

    def pct(rows):
        return 100.0 * sum(r["correct"] for r in rows) / len(rows) if rows else float("nan")

    long = [s for s in samples if int(s["scenes"]) >= long_min_scenes]
    short = [s for s in samples if int(s["scenes"]) <= SHORT_CLIP_MAX_SCENES]
    scores = {"overall": pct(long), "short_clips": pct(short)}
    for kind in QUESTION_TYPES:
        scores[kind] = pct([s for s in long if s["type"] == kind])
    for kind in QUESTION_KINDS:
        scores[f"kind_{kind}"] = pct([s for s in long if s["kind"] == kind])
        scores[f"short_kind_{kind}"] = pct([s for s in short if s["kind"] == kind])
    scores["content_lookup"] = pct([s for s in long if s["kind"] in CONTENT_LOOKUP_KINDS])
    for count in sorted({int(s["scenes"]) for s in samples}):
        scores[f"scenes_{count}"] = pct([s for s in samples if int(s["scenes"]) == count])
    scores["unparseable"] = 100.0 * sum(s["prediction"] == "unparseable" for s in long) / max(len(long), 1)
    return scores


def chance(samples: list[dict[str, Any]], long_min_scenes: int) -> float:
    """Expected accuracy of a uniform random guess on the long-video questions (options per question vary)."""
    long = [s for s in samples if int(s["scenes"]) >= long_min_scenes]
    return 100.0 * statistics.mean(1.0 / (4 if s["kind"] != "order" else 2) for s in long)


def order_errors_by_option(runs: list[dict[str, Any]]) -> dict[str, dict[str, list[int]]]:
    """Short-clip "which comes first" questions per arm, a list over seeds of: how many were asked, answered wrong
    naming the shape the question names first (option A), wrong naming the other one, and not answered (unparseable).
    A model that learned "answer the first-named shape" shows it as a lopsided wrong column."""
    by_arm: dict[str, dict[str, list[int]]] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        asked = [s for s in run["samples"] if s["kind"] == "order" and int(s["scenes"]) <= SHORT_CLIP_MAX_SCENES]
        counts = {
            "questions": len(asked),
            "wrong_first_named": sum(s["prediction"] == "A" != s["answer"] for s in asked),
            "wrong_second_named": sum(s["prediction"] == "B" != s["answer"] for s in asked),
            "unanswered": sum(s["prediction"] not in ("A", "B") for s in asked),
        }
        row = by_arm.setdefault(run["arm"], {key: [] for key in counts})
        for key, value in counts.items():
            row[key].append(value)
    return by_arm


def _mean_std(values: list[float]) -> dict[str, Any]:
    if any(math.isnan(v) for v in values):  # a kind the questions never asked: statistics' exact sums reject nan
        return {"mean": math.nan, "std": math.nan, "per_seed": [round(v, 2) for v in values]}
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "per_seed": [round(v, 2) for v in values],
    }


def summarize(arms: Iterable[str], runs: list[dict[str, Any]], long_min_scenes: int) -> dict[str, Any]:
    """Per arm (in the order of `arms`), each score of `accuracies` as mean, std and per-seed values over its runs."""
    table: dict[str, dict[str, Any]] = {}
    for arm in arms:
        per_seed = [accuracies(r["samples"], long_min_scenes) for r in runs if r["arm"] == arm]
        keys = per_seed[0].keys() if per_seed else []
        table[arm] = {key: _mean_std([s[key] for s in per_seed]) for key in keys}
    return table


def paired_comparisons(arms: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """What each paired comparison asks: every arm of `arms` other than the base against the base (gain on long
    videos, forgetting on short clips), in the given order, then TPO 5:5 against the paper's baselines."""
    return (
        *((arm, "base") for arm in arms if arm != "base"),
        ("tpo_5_5", "sft_self"),
        ("tpo_5_5", "sft_oracle"),
        ("tpo_5_5", "dpo_only"),
        ("tpo_5_5", "tpo_random_rejected"),
        ("tpo_5_5", "localized_only"),
        ("tpo_5_5", "comprehensive_only"),
    )


# the kinds whose answer needs a lookup by content (a named shape's neighbour, the order of two named shapes), not a
# position at the video's ends
CONTENT_LOOKUP_KINDS = ("after", "before", "order")


def chance_by_kind(samples: list[dict[str, Any]], long_min_scenes: int) -> dict[str, dict[str, float]]:
    """Expected accuracy (%) of a uniform guess per subset (long videos / short clips) and kind, from each question's
    own option count."""
    subsets = {
        "long_videos": [s for s in samples if int(s["scenes"]) >= long_min_scenes],
        "short_clips": [s for s in samples if int(s["scenes"]) <= SHORT_CLIP_MAX_SCENES],
    }
    out: dict[str, dict[str, float]] = {}
    for name, rows in subsets.items():
        out[name] = {"overall": _chance(rows)}
        for kind in QUESTION_KINDS:
            out[name][kind] = _chance([s for s in rows if s["kind"] == kind])
        out[name]["content_lookup"] = _chance([s for s in rows if s["kind"] in CONTENT_LOOKUP_KINDS])
    return out


def _chance(rows: list[dict[str, Any]]) -> float:
    if not rows:
        return float("nan")
    return round(100.0 * statistics.mean(1.0 / len(s["options"]) if "options" in s else _guess(s) for s in rows), 2)


def _guess(sample: dict[str, Any]) -> float:
    return 1.0 / (2 if sample["kind"] == "order" else 4)


def video_of(sample_id: str) -> str:
    """The held-out video a question asks about (`eval_samples` names questions `<video>-<kind>-<n>`)."""
    return sample_id.rsplit("-", 2)[0]


def paired_differences(
    runs: list[dict[str, Any]],
    long_min_scenes: int,
    resamples: int = 2000,
    seed: int = 0,
    arms: Iterable[str] | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Accuracy differences (points) between two arms on the same held-out questions, with a 95% interval.

    The seed spread says how much training varies; it does not say whether a 1-point change on a few hundred
    questions is more than the luck of which questions were asked. Here each question's difference is averaged over
    the seeds both arms ran, and the interval comes from resampling the held-out *videos* (a video's questions are
    not independent of each other) with replacement. The comparisons are those of `paired_comparisons(arms)` that
    both arms ran (`arms` None: the arms of `runs`, first seen first). `{"tpo_5_5 - base": {"long_videos": {...},
    "short_clips": {...}}}`, each with `diff`, `low`, `high` and the number of `questions` and `videos`."""
    import numpy as np

    correct: dict[tuple[str, int], dict[str, bool]] = {}
    scenes: dict[str, int] = {}
    for run in runs:
        correct[(run["arm"], run["seed"])] = {s["sample_id"]: bool(s["correct"]) for s in run["samples"]}
        scenes.update({s["sample_id"]: int(s["scenes"]) for s in run["samples"]})
    kinds: dict[str, str] = {}
    for run in runs:
        kinds.update({s["sample_id"]: s.get("kind", "") for s in run["samples"]})
    subsets = {
        "long_videos": lambda q: scenes[q] >= long_min_scenes,
        "short_clips": lambda q: scenes[q] <= SHORT_CLIP_MAX_SCENES,  # the forgetting check
        # long videos, the kinds that need a lookup by content
        "long_content_lookup": lambda q: scenes[q] >= long_min_scenes and kinds[q] in CONTENT_LOOKUP_KINDS,
    }
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, dict[str, float]]] = {}
    if arms is None:
        arms = dict.fromkeys(run["arm"] for run in runs)
    for arm, reference in paired_comparisons(arms):
        seeds = sorted({s for a, s in correct if a == arm} & {s for a, s in correct if a == reference})
        if not seeds:
            continue
        out[f"{arm} - {reference}"] = {}
        for name, keep in subsets.items():
            ids = sorted(q for q in correct[(arm, seeds[0])] if keep(q))
            if not ids:
                continue
            per_question = np.array(
                [np.mean([correct[(arm, s)][q] - correct[(reference, s)][q] for s in seeds]) for q in ids]
            )
            videos = [video_of(q) for q in ids]
            names = sorted(set(videos))
            index = {v: i for i, v in enumerate(names)}
            video_index = [index[v] for v in videos]
            # per video: the sum of its questions' differences and their count; a resample draws whole videos
            sums = np.zeros(len(names))
            counts = np.zeros(len(names))
            np.add.at(sums, video_index, per_question)
            np.add.at(counts, video_index, 1)
            draws = rng.integers(0, len(names), size=(resamples, len(names)))
            boot = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
            out[f"{arm} - {reference}"][name] = {
                "diff": round(100 * float(per_question.mean()), 2),
                "low": round(100 * float(np.percentile(boot, 2.5)), 2),
                "high": round(100 * float(np.percentile(boot, 97.5)), 2),
                "questions": len(ids),
                "videos": len(names),
            }
    return out


def paired_markdown(paired: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    lines = [
        "Paired differences on the same held-out questions (points; each question averaged over seeds; 95% interval "
        "from resampling held-out videos). An interval that holds 0 is a change this question set cannot tell from "
        "no change:",
        "",
        "| comparison | long videos | short clips (2-3 scenes) | long videos, content lookup (after, before, order) |",
        "|---|---|---|---|",
    ]
    for name, by_subset in paired.items():
        cells = [
            f"{d['diff']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]" if d else "-"
            for d in (by_subset.get(k) for k in ("long_videos", "short_clips", "long_content_lookup"))
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def kind_markdown(table: dict[str, Any], chances: dict[str, dict[str, float]], prefix: str) -> list[str]:
    """Accuracy per question kind (mean ± std over seeds), with a first row giving each kind's chance."""
    keys = [*QUESTION_KINDS, "content_lookup"] if prefix == "kind_" else list(QUESTION_KINDS)
    subset = "long_videos" if prefix == "kind_" else "short_clips"
    lines = [
        "| arm | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
        "| *chance* | " + " | ".join(f"*{chances[subset].get(k, math.nan):.1f}*" for k in keys) + " |",
    ]
    for arm, scores in table.items():
        column = {k: f"{prefix}{k}" if k != "content_lookup" else "content_lookup" for k in keys}
        cells = [
            f"{scores[column[k]]['mean']:.1f} ± {scores[column[k]]['std']:.1f}" if column[k] in scores else "-"
            for k in keys
        ]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def probes_markdown(probes: dict[str, Any], table: dict[str, Any], chances: dict[str, Any]) -> list[str]:
    """Accuracy under each probe next to the unaltered held-out accuracy, per kind (long videos), mean over seeds."""
    lines = [
        "Probes of what the models read (`tpo_hf.world.probes`; long videos, accuracy %, mean over seeds; "
        "`as asked`: the held-out accuracy above). Timestamps blanked: every frame at `<0.0 seconds>`; frames "
        "shuffled: the scenes in another order, scored against the order shown; frames blanked: all frames grey "
        "(what is left comes from the text alone):",
        "",
    ]
    keys = ["overall", *(f"kind_{k}" for k in QUESTION_KINDS)]
    lines += ["| arm | probe | " + " | ".join(k.removeprefix("kind_") for k in keys) + " |"]
    lines += ["|---|---|" + "---|" * len(keys)]
    lines += [
        "| | *chance* | "
        + " | ".join(f"*{chances['long_videos'].get(k.removeprefix('kind_'), math.nan):.1f}*" for k in keys)
        + " |"
    ]
    for arm, per_seed in probes.items():  # arm -> a list over seeds of {probe: scores}
        if arm in table:
            cells = [f"{table[arm][k]['mean']:.1f}" if k in table[arm] else "-" for k in keys]
            lines.append(f"| {arm} | as asked | " + " | ".join(cells) + " |")
        for probe in dict.fromkeys(name for run in per_seed for name in run):
            cells = []
            for k in keys:
                values = [
                    run[probe]["long_videos"][k]["accuracy"] for run in per_seed if k in run[probe]["long_videos"]
                ]
                cells.append(f"{statistics.mean(values):.1f}" if values else "-")
            lines.append(f"| {arm} | {probe} | " + " | ".join(cells) + " |")
    shuffled = [
        (arm, run["frames_shuffled"]["long_videos"]["overall"])
        for arm, per_seed in probes.items()
        for run in per_seed
        if "agrees_with_original" in run.get("frames_shuffled", {}).get("long_videos", {}).get("overall", {})
    ]
    if shuffled:
        lines += [
            "",
            "Frames shuffled, the questions whose answer the shuffle changed: answers that give the answer of the "
            "order *not* shown, the original one (%, per seed; a model reading the frames gives it at chance or "
            "below): "
            + "; ".join(
                f"{arm} {o['agrees_with_original']:.1f} ({o['changed_questions']} questions)" for arm, o in shuffled
            ),
        ]
    return lines


def rewards_markdown(rewards: dict[str, list[list[dict[str, float]]]]) -> list[str]:
    """DPO reward margin and accuracy on each arm's non-anchor training rows, first and last evaluation, mean over
    seeds."""
    lines = [
        "DPO implicit rewards on non-anchor rows of each arm's own training set (TRL's evaluation on a fixed sample; "
        "margin = beta x (log-ratio chosen - log-ratio rejected); accuracy: share of rows with chosen > rejected), "
        "at the first and the last evaluation, mean over seeds:",
        "",
        "| arm | margin, start | margin, end | accuracy, start | accuracy, end |",
        "|---|---|---|---|---|",
    ]
    for arm, per_seed in rewards.items():
        curves = [c for c in per_seed if c]
        if not curves:
            continue

        def mean_of(key: str, at: int, curves: list = curves) -> float:
            return statistics.mean(c[at].get(key, math.nan) for c in curves)

        lines.append(
            f"| {arm} | {mean_of('rewards/margins', 0):+.3f} | {mean_of('rewards/margins', -1):+.3f} | "
            f"{100 * mean_of('rewards/accuracies', 0):.1f} | {100 * mean_of('rewards/accuracies', -1):.1f} |"
        )
    return lines


def _mean_std_table(table: dict[str, Any], keys: list[str], headers: list[str]) -> list[str]:
    """Markdown rows: one per arm, a `mean ± std` cell per key."""
    lines = ["| arm | " + " | ".join(headers) + " |", "|---|" + "---|" * len(keys)]
    for arm, scores in table.items():
        cells = [f"{scores[k]['mean']:.1f} ± {scores[k]['std']:.1f}" for k in keys]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def markdown(
    table: dict[str, Any],
    seeds: list[int],
    chance_level: float,
    curation: dict[Any, Any] | None = None,
    paired: dict[str, Any] | None = None,
    order_errors: dict[str, Any] | None = None,
    chances: dict[str, Any] | None = None,
    probes: dict[str, Any] | None = None,
    rewards: dict[str, Any] | None = None,
    heldout: dict[str, Any] | None = None,
) -> str:
    columns = ["overall", "localized", "comprehensive", "needle", "short_clips", "unparseable"]
    lines = [
        f"Held-out accuracy (%) on long videos (mean ± std over seeds {seeds}; chance {chance_level:.1f}%). "
        "`short_clips`: 2-3-scene clips (forgetting check).",
        "",
        *_mean_std_table(table, columns, columns),
        "",
        "Long videos by question kind (localized: after, before; comprehensive: first, last, order):",
        "",
        *_mean_std_table(table, [f"kind_{kind}" for kind in QUESTION_KINDS], list(QUESTION_KINDS)),
    ]
    if chances:
        lines += [
            "",
            "By question kind with chance (the first row: a uniform guess over each question's options). Long videos "
            "(`content_lookup`: after, before and order together, the kinds whose answer needs a lookup by content):",
            "",
            *kind_markdown(table, chances, "kind_"),
            "",
            "Short clips (2-3 scenes) by question kind:",
            "",
            *kind_markdown(table, chances, "short_kind_"),
        ]
    lines += ["", "Per seed (overall, long videos):", ""]
    for arm, scores in table.items():
        lines.append(f"- {arm}: {scores['overall']['per_seed']}")
    if heldout:
        lines += ["", "Held-out set: " + "; ".join(f"{k} {v}" for k, v in heldout.items())]
    if paired:
        lines += ["", *paired_markdown(paired)]
    if probes:
        lines += ["", *probes_markdown(probes, table, chances or {"long_videos": {}})]
    if rewards:
        lines += ["", *rewards_markdown(rewards)]
    if order_errors:
        lines += [
            "",
            'Short-clip "which comes first" questions, per seed: wrong answers naming the shape the question names '
            "first / naming the other / unanswered (of the questions asked):",
            "",
            "| arm | wrong, first-named | wrong, second-named | unanswered | questions |",
            "|---|---|---|---|---|",
        ]
        for arm, counts in order_errors.items():
            cells = [
                " / ".join(str(v) for v in counts[key])
                for key in ("wrong_first_named", "wrong_second_named", "unanswered", "questions")
            ]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    if curation:
        lines += ["", "Curated pairs by question kind (per seed and mix, as trained):", ""]
        for seed, mixes in curation.items():
            for mix, report in mixes.items():
                counts = report.get("pairs_by_kind") or {}
                listed = "; ".join(
                    f"{granularity}: " + ", ".join(f"{kind} {n}" for kind, n in sorted(by_kind.items()))
                    for granularity, by_kind in sorted(counts.items())
                )
                final = report.get("final") or {}
                total, anchors = final.get("total"), final.get("anchors", 0)
                size = f" ({total - anchors} pairs)" if total is not None else ""
                by_scenes = report.get("pairs_by_scenes") or {}
                if by_scenes:
                    listed += "; by scenes of the video: " + ", ".join(f"{n}: {k}" for n, k in by_scenes.items())
                options = report.get("chosen_options") or {}
                if options:
                    listed += "; chosen option: " + "; ".join(
                        f"{n} options " + " ".join(f"{letter} {k}" for letter, k in by_letter.items())
                        for n, by_letter in options.items()
                    )
                if anchors:
                    kinds: dict[str, int] = {}
                    for by_kind in (report.get("anchors_by_kind") or {}).values():
                        for kind, n in by_kind.items():
                            kinds[kind] = kinds.get(kind, 0) + n
                    by_scenes = report.get("anchors_by_scenes") or {}
                    listed += f"; plus {anchors} anchors: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
                    listed += "; by scenes: " + ", ".join(f"{n}: {k}" for n, k in by_scenes.items())
                lines.append(f"- seed {seed}, mix {mix}{size}: {listed}")
    return "\n".join(lines) + "\n"


def plot(
    table: dict[str, Any],
    out_dir: Path,
    scene_counts: list[int],
    paired: dict[str, Any] | None = None,
    chances: dict[str, Any] | None = None,
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    arms = list(table)
    kinds = ["overall", *QUESTION_TYPES, "short_clips"]

    def grouped_bars(ax, shown_arms: list[str], keys: list[str], labels: list[str]) -> None:
        """One group of bars (mean, std as error bar) per key, one bar per arm."""
        width = 0.8 / max(len(shown_arms), 1)
        for i, arm in enumerate(shown_arms):
            means = [table[arm][k]["mean"] for k in keys]
            stds = [table[arm][k]["std"] for k in keys]
            ax.bar(np.arange(len(keys)) + i * width, means, width, yerr=stds, capsize=2, label=arm)
        ax.set_xticks(np.arange(len(keys)) + width * (len(shown_arms) - 1) / 2, labels)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)

    fig, ax = plt.subplots(figsize=(11, 4.5))
    grouped_bars(ax, arms, kinds, kinds)
    ax.set_title("Held-out accuracy by question type (long videos; short_clips = 2-3 scenes)")
    ax.legend(ncol=4, fontsize=8)
    fig.tight_layout()
    paths.append(out_dir / "accuracy_by_arm.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    shown = [a for a in ("base", "sft_self", "tpo_5_5") if a in table]
    by_kind = [
        a for a in ("base", "sft_self", "sft_oracle", "dpo_only", "tpo_random_rejected", "tpo_5_5") if a in table
    ]
    subsets = [("kind_", "long videos (6+ scenes)")]
    if chances and all(f"short_kind_{k}" in table[by_kind[0]] for k in QUESTION_KINDS):
        subsets.append(("short_kind_", "short clips (2-3 scenes)"))
    fig, axes = plt.subplots(1, len(subsets), figsize=(9 * len(subsets), 4.2), squeeze=False)
    for ax, (prefix, title) in zip(axes[0], subsets):
        grouped_bars(ax, by_kind, [f"{prefix}{k}" for k in QUESTION_KINDS], list(QUESTION_KINDS))
        if chances:  # each kind's chance as a dashed line over its group of bars
            subset = "long_videos" if prefix == "kind_" else "short_clips"
            for i, kind in enumerate(QUESTION_KINDS):
                level = chances[subset].get(kind, math.nan)
                ax.hlines(
                    level,
                    i - 0.1,
                    i + 0.9,
                    colors="black",
                    linestyles="dashed",
                    linewidth=1.2,
                    label="chance" if i == 0 else None,
                )
        ax.set_title(f"Held-out accuracy by question kind, {title}")
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths.append(out_dir / "accuracy_by_kind.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for arm in shown:
        means = [table[arm][f"scenes_{n}"]["mean"] for n in scene_counts]
        stds = [table[arm][f"scenes_{n}"]["std"] for n in scene_counts]
        ax.errorbar(scene_counts, means, yerr=stds, marker="o", capsize=3, label=arm)
    ax.set_xlabel("video length (scenes = frames; pretraining saw 1-3)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("Accuracy against video length")
    ax.legend()
    fig.tight_layout()
    paths.append(out_dir / "accuracy_vs_length.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    if paired:
        # the paired differences with their intervals: a gain or a loss is real where its bar misses the 0 line
        names = list(paired)
        fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(names) + 1.5), sharey=True)
        for ax, (subset, title) in zip(
            axes, (("long_videos", "long videos (6+ scenes)"), ("short_clips", "short clips (2-3 scenes): forgetting"))
        ):
            diffs = np.array([paired[n][subset]["diff"] for n in names])
            lows = np.array([paired[n][subset]["low"] for n in names])
            highs = np.array([paired[n][subset]["high"] for n in names])
            ax.errorbar(diffs, np.arange(len(names)), xerr=[diffs - lows, highs - diffs], fmt="o", capsize=3)
            ax.axvline(0, color="grey", linewidth=1)
            ax.set_title(title)
            ax.set_xlabel("difference (points, 95% interval)")
        axes[0].set_yticks(np.arange(len(names)), names)
        axes[0].invert_yaxis()
        fig.tight_layout()
        paths.append(out_dir / "paired_differences.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths
