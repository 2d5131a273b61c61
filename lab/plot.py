"""The drill's timeline as a PNG: which node answered each poll, failures, and the faults."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display in CI or over ssh

import matplotlib.pyplot as plt

from lab.client import Sample
from lab.scenarios import Result

FAILED = "failed"


def plot_timeline(
    path: Path, samples: list[Sample], results: list[Result], nodes: list[str], start: float
) -> None:
    rows = [*nodes, FAILED]
    figure, axes = plt.subplots(figsize=(12, 1.2 + 0.6 * len(rows)))
    for row, name in enumerate(rows):
        times = [s.time - start for s in samples if (s.node or FAILED) == name]
        color = "tab:red" if name == FAILED else f"C{row}"
        axes.scatter(times, [row] * len(times), s=4, marker="|", color=color)
    for result in results:
        axes.axvspan(result.started - start, result.ended - start, alpha=0.06, color="grey")
        axes.text(result.started - start, len(rows) - 0.4, result.title, fontsize=7, va="bottom")
        for at, label in ((result.fault_at, "fault"), (result.recover_at, "recover")):
            if at is not None:
                axes.axvline(at - start, color="black", linewidth=0.6, linestyle="--")
                axes.text(at - start, -0.7, label, fontsize=6, rotation=90, va="bottom")
    axes.set_yticks(range(len(rows)), rows)
    axes.set_ylim(-0.8, len(rows) + 0.2)
    axes.set_xlabel("seconds since the drill started")
    axes.set_title("Who answered through the reserved IP (one mark per 50 ms poll)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
