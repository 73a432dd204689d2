"""Stage 6 of the flow (publish): the training-curve PNG uploaded beside the model card."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

# (log_history key, panel title); a panel is drawn only for keys that were logged
CURVES = (
    ("loss", "Training loss"),
    ("rewards/accuracies", "Reward accuracy"),
    ("rewards/margins", "Reward margin (chosen - rejected)"),
)


def plot_training_curves(log_history: Sequence[dict[str, Any]], path: str | Path) -> Path | None:
    """Draws loss, reward accuracy and reward margin against the step from a trainer's `log_history`.

    Returns the PNG path, or None when nothing was logged (e.g. a run shorter than `logging_steps`).
    """
    import matplotlib

    matplotlib.use("Agg")  # headless: training nodes and CI have no display
    import matplotlib.pyplot as plt

    series = {}
    for key, title in CURVES:
        points = [(entry["step"], entry[key]) for entry in log_history if key in entry and "step" in entry]
        if points:
            series[title] = points
    if not series:
        return None
    figure, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), 3.2), squeeze=False)
    for axis, (title, points) in zip(axes[0], series.items()):
        steps, values = zip(*points)
        axis.plot(steps, values, marker="o" if len(points) < 30 else None, linewidth=1.5)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    figure.suptitle("TPO training", fontsize=11)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
