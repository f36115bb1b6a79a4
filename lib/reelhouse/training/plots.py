"""Training plots, written as PNG files: ROC curves, a reliability diagram, feature importance.

Figures are drawn on matplotlib's Agg canvas without pyplot, so no display and no global figure
state are involved (jobs run headless, and several may draw at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from reelhouse.training.metrics import Calibration, auc


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")
    return path


def save_roc_curves(path: Path, labels: np.ndarray, scores: Mapping[str, np.ndarray], title: str) -> Path:
    """One ROC curve per named score on the same labels, each with its AUC in the legend."""
    figure = Figure(figsize=(5.5, 5))
    axes = figure.add_subplot()
    for name, score in scores.items():
        false_positive, true_positive, _ = roc_curve(labels, np.nan_to_num(score, nan=-np.inf))
        axes.plot(false_positive, true_positive, label=f"{name} (AUC {auc(labels, score):.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="random")
    axes.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1))
    axes.legend(loc="lower right")
    return _save(figure, path)


def save_calibration_plot(path: Path, curve: Calibration, title: str) -> Path:
    """Reliability diagram (observed share of positives per predicted-probability bin) over a histogram."""
    figure = Figure(figsize=(5.5, 6.5))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    filled = curve.counts > 0
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    top.plot(
        curve.mean_predicted[filled], curve.fraction_positive[filled], marker="o", label=f"model (ECE {curve.ece:.4f})"
    )
    top.set(ylabel="observed share of positives", title=title, xlim=(0, 1), ylim=(0, 1))
    top.legend(loc="upper left")
    widths = np.diff(curve.bin_edges)
    bottom.bar(curve.bin_edges[:-1], curve.counts, width=widths, align="edge", edgecolor="white")
    bottom.set(xlabel="predicted P(label=1)", ylabel="examples")
    return _save(figure, path)


def save_feature_importance(path: Path, importance: pd.Series, title: str, top: int = 30) -> Path:
    """Horizontal bars of the ``top`` largest importances, largest at the top."""
    shown = importance.sort_values(ascending=False).head(top)[::-1]
    figure = Figure(figsize=(7, 0.25 * len(shown) + 1.2))
    axes = figure.add_subplot()
    axes.barh([str(name) for name in shown.index], shown.to_numpy())
    axes.set(xlabel=importance.name or "importance", title=title)
    axes.tick_params(axis="y", labelsize=7)
    return _save(figure, path)
