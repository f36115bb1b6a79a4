"""The evaluation report: a markdown table per K, a bar chart, and the metrics as JSON."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from reelhouse.evaluation.protocol import EvaluationResult
from reelhouse.recall.metrics import METRICS

log = logging.getLogger(__name__)

PLOTTED: tuple[str, ...] = ("ndcg", "recall")


def _cell(value: float | None) -> str:
    return "–" if value is None or value != value else f"{value:.4f}"


def markdown_report(result: EvaluationResult, details: dict[str, Any] | None = None) -> str:
    """Models x metrics, one table per K, best value of each column in bold."""
    lines = [
        "# Offline evaluation",
        "",
        f"{result.users} users evaluated over a catalogue of {result.catalogue} items "
        f"({result.train_pairs} training pairs); items seen in training are never recommended.",
        "",
    ]
    for key, value in (details or {}).items():
        if value is not None:
            lines.append(f"- {key}: {value}")
    if result.pipeline.get("summary"):
        lines.append(f"- pipeline: {result.pipeline['summary']}")
    if details or result.pipeline:
        lines.append("")
    for k in result.k:
        columns = [f"{metric}@{k}" for metric in METRICS]
        best = {
            column: max((m[column] for m in result.models.values() if m[column] == m[column]), default=None)
            for column in columns
        }
        lines += [
            f"## K = {k}",
            "",
            "| model | " + " | ".join(columns) + " | seconds |",
            "|---|" + "---:|" * (len(columns) + 1),
        ]
        for name, metrics in result.models.items():
            cells = [
                f"**{_cell(metrics[c])}**" if best[c] is not None and metrics[c] == best[c] else _cell(metrics[c])
                for c in columns
            ]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {result.seconds.get(name, float('nan')):.1f} |")
        lines.append("")
    return "\n".join(lines)


def plot_metrics(result: EvaluationResult, path: Path) -> Path:
    """Grouped bars: one panel per plotted metric, one group per model, one bar per K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = list(result.models)
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(max(6.0, 1.3 * len(models)) * len(PLOTTED) / 1.5, 4.2))
    width = 0.8 / len(result.k)
    x = np.arange(len(models))
    for ax, metric in zip(np.atleast_1d(axes), PLOTTED, strict=True):
        for i, k in enumerate(result.k):
            values = [result.models[m][f"{metric}@{k}"] for m in models]
            ax.bar(x + (i - (len(result.k) - 1) / 2) * width, values, width, label=f"@{k}")
        ax.set_xticks(x, models, rotation=30, ha="right")
        ax.set_title(f"{metric.upper() if metric == 'ndcg' else metric.capitalize()}@K")
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
    fig.suptitle(f"Offline evaluation: {result.users} users")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(result: EvaluationResult, output_dir: Path, details: dict[str, Any] | None = None) -> dict[str, Path]:
    """``report.md``, ``metrics.png`` and ``metrics.json`` in ``output_dir``; returns their paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": output_dir / "report.md",
        "plot": output_dir / "metrics.png",
        "json": output_dir / "metrics.json",
    }
    paths["markdown"].write_text(markdown_report(result, details) + "\n")
    plot_metrics(result, paths["plot"])
    paths["json"].write_text(
        json.dumps({**result.to_dict(), "seconds": result.seconds, "details": details or {}}, indent=2)
    )
    log.info("evaluation report written to %s", output_dir)
    return paths
