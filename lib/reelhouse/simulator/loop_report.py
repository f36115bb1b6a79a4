"""The report of the multi-day closed loop: per-day A/B statistics, a markdown page, a learning curve, JSON.

``reelhouse simulate --closed-loop --days N`` runs the feed service for ``N`` simulated days. The
users of one experiment are bucketed into two variants: ``learning`` serves the registry's current
champion (the daily batch flow retrains and may promote a new one at the end of every day) and
``frozen`` keeps the day-0 champion all run. This module is pure: it turns each day's reacted
impressions and the flow's decisions into statistics and writes them out; it runs nothing.

Statistics are those of :mod:`reelhouse.experiments.stats`: users are the randomisation unit and a
user's impressions are correlated, so each rate is a ratio metric over users (per-user sums over
per-user impression counts) with a delta-method 95% interval, and the learning-minus-frozen delta
has the interval of a difference of two disjoint groups. ``coverage`` is the number of distinct
videos a variant showed over the videos in the catalogue that day (no interval).

Off-policy check: at the end of day ``d`` the flow estimates the watch ratio of that day's candidate
``v`` from day ``d``'s logs. If ``v`` later serves the learning variant (``champion`` names it), the
estimate is paired with the learning variant's watch ratio on the *first later day* it served;
``within_ci`` says whether that realised value lies inside the estimate's interval.

Targets (:attr:`LoopReport.targets`), all judged on the run's last day unless said otherwise:

- ``last_day_delta_ci_excludes_zero_and_positive``: the watch-ratio delta's interval lies above 0;
- ``new_video_share_not_below_frozen``: learning's new-video share is not *significantly* below
  frozen's (the upper end of the delta interval of ``new_video`` is >= 0); false when it cannot be
  estimated (a variant missing, or a single user);
- ``off_policy_within_ci_share``: over all paired estimates with a realised value, the share whose
  interval holds it (None when there is none).

Every number in :meth:`LoopReport.to_dict` is rounded to 6 decimals, and NaN or infinity becomes
``null``, so the JSON is strict.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from reelhouse.errors import ExperimentDataError
from reelhouse.experiments.stats import summarize

LEARNING = "learning"  # serves the registry's current champion
FROZEN = "frozen"  # keeps the day-0 champion
VARIANTS = (LEARNING, FROZEN)
# The report's name of each rate -> the per-impression column it averages.
RATES: dict[str, str] = {
    "play_rate": "played",
    "watch_ratio": "watch_ratio",
    "like_rate": "liked",
    "share_rate": "shared",
    "new_video_share": "new_video",
}
REQUIRED_COLUMNS = ("user_id", "variant", "video_id", *RATES.values())
ALPHA = 0.05  # 95% intervals
DIGITS = 6  # decimals kept in the JSON
PROMOTED = "promoted"
_VERSION = re.compile(r"/(\d+)$")


# ---------------------------------------------------------------- statistics of one day


def variant_day_stats(
    impressions: pd.DataFrame, catalogue_videos: int, *, alpha: float = ALPHA
) -> dict[str, dict[str, Any]]:
    """Per variant: ``users``, ``impressions``, each rate of :data:`RATES` as ``{"mean", "ci": [lo, hi]}``,
    ``videos`` (distinct videos shown), ``coverage`` (videos / ``catalogue_videos``, NaN without a
    catalogue) and ``rankers`` (impressions per ranker label the service reported, when the frame has
    a ``ranker`` column).

    Variants come learning, frozen, then any other by name; a variant without impressions is absent
    (an empty frame gives ``{}``). Bad data (a missing column, a null id, a non-finite metric) raises
    :class:`~reelhouse.errors.ExperimentDataError`.
    """
    if impressions.empty:
        return {}
    _require_columns(impressions, REQUIRED_COLUMNS)
    variant = impressions["variant"].astype(str)
    out: dict[str, dict[str, Any]] = {}
    for name in _ordered(variant.unique()):
        rows = impressions[variant == name]
        # With the variant as its own control, summarize gives exactly its mean and delta-method CI.
        summaries = {
            s.metric: s
            for s in summarize(
                rows, experiment=_experiment_of(rows), control=name, metrics=tuple(RATES.values()), alpha=alpha
            )
        }
        first = summaries[RATES["watch_ratio"]]
        videos = int(rows["video_id"].nunique())
        stats: dict[str, Any] = {"users": first.users, "impressions": first.impressions}
        for rate, column in RATES.items():
            s = summaries[column]
            stats[rate] = {"mean": s.mean, "ci": [s.ci_low, s.ci_high]}
        stats["videos"] = videos
        stats["coverage"] = videos / catalogue_videos if catalogue_videos and catalogue_videos > 0 else math.nan
        if "ranker" in rows.columns:
            stats["rankers"] = {str(k): int(v) for k, v in rows["ranker"].astype(str).value_counts().items()}
        out[name] = stats
    return out


def delta(
    impressions: pd.DataFrame,
    metric: str = "watch_ratio",
    treatment: str = LEARNING,
    control: str = FROZEN,
    *,
    alpha: float = ALPHA,
) -> dict[str, Any]:
    """``treatment - control`` of one metric: ``{"delta", "ci": [lo, hi], "p_value"}`` (two-sided z-test).

    ``metric`` is a column (``played``, ``watch_ratio``, ``new_video``...) or a report name of
    :data:`RATES` (``play_rate``, ``new_video_share``...). Only the two variants' rows are compared
    (so no multiple-testing adjustment applies). All values are NaN when either variant has no
    impressions, and the interval and p-value are NaN when either has a single user. A user in both
    variants raises :class:`~reelhouse.errors.ExperimentDataError`.
    """
    column = RATES.get(metric, metric)
    if impressions.empty:
        return no_delta()
    _require_columns(impressions, ("user_id", "variant", column))
    variant = impressions["variant"].astype(str)
    rows = impressions[variant.isin([treatment, control])]
    present = set(variant[rows.index])
    if treatment not in present or control not in present:
        return no_delta()
    summaries = summarize(rows, experiment=_experiment_of(rows), control=control, metrics=(column,), alpha=alpha)
    s = next(s for s in summaries if s.variant == treatment)
    return {"delta": s.delta, "ci": [s.delta_ci_low, s.delta_ci_high], "p_value": s.p_value}


def no_delta() -> dict[str, Any]:
    """The delta of a day on which a variant had no impressions."""
    return {"delta": math.nan, "ci": [math.nan, math.nan], "p_value": math.nan}


# ---------------------------------------------------------------- the report


@dataclass
class LoopDay:
    """One simulated day: what served, what the flow decided at the end of it, and the users' engagement.

    ``gate`` is the promotion decision made at the END of the day (None when the flow did not run);
    ``off_policy`` the estimate of that day's candidate on that day's logs (None without one).
    Build it with :meth:`from_impressions`; ``variants`` and the deltas are empty/NaN otherwise.
    """

    day: int
    date: str
    catalogue_videos: int
    champion: str  # served the learning variant this day, e.g. "reelhouse-ranker/7"
    frozen_model: str
    gate: dict[str, Any] | None = None
    off_policy: dict[str, Any] | None = None
    flow_s: float = math.nan
    traffic_s: float = math.nan
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # variant_day_stats
    delta: dict[str, Any] = field(default_factory=no_delta)  # learning - frozen watch ratio
    new_video_delta: dict[str, Any] = field(default_factory=no_delta)  # learning - frozen new-video share
    flow: dict[str, Any] | None = None  # the daily flow's result (rows, versions, seconds per step)
    serving: dict[str, Any] | None = None  # the day's feeds, errors and latencies as the users saw them

    @classmethod
    def from_impressions(
        cls,
        impressions: pd.DataFrame,
        *,
        day: int,
        date: str,
        catalogue_videos: int,
        champion: str,
        frozen_model: str,
        gate: Mapping[str, Any] | None = None,
        off_policy: Mapping[str, Any] | None = None,
        flow_s: float = math.nan,
        traffic_s: float = math.nan,
        flow: Mapping[str, Any] | None = None,
        serving: Mapping[str, Any] | None = None,
        alpha: float = ALPHA,
    ) -> LoopDay:
        """The day with its statistics computed from its reacted impressions (the frame is not kept)."""
        return cls(
            day=int(day),
            date=str(date),
            catalogue_videos=int(catalogue_videos),
            champion=str(champion),
            frozen_model=str(frozen_model),
            gate=dict(gate) if gate is not None else None,
            off_policy=dict(off_policy) if off_policy is not None else None,
            flow_s=float(flow_s),
            traffic_s=float(traffic_s),
            variants=variant_day_stats(impressions, catalogue_videos, alpha=alpha),
            delta=delta(impressions, "watch_ratio", alpha=alpha),
            new_video_delta=delta(impressions, "new_video", alpha=alpha),
            flow=dict(flow) if flow is not None else None,
            serving=dict(serving) if serving is not None else None,
        )

    @property
    def gate_decision(self) -> str | None:
        return None if self.gate is None else _str_or_none(self.gate.get("decision"))

    @property
    def promoted(self) -> bool:
        return self.gate_decision == PROMOTED


@dataclass
class LoopReport:
    """The run: its days (kept in day order) and its settings (users, days, seed, epsilon, ...).

    :attr:`off_policy` and :attr:`targets` are derived from the days on every access.
    """

    days: list[LoopDay]
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.days = sorted(self.days, key=lambda d: d.day)

    @property
    def off_policy(self) -> list[dict[str, Any]]:
        return pair_off_policy(self.days)

    @property
    def targets(self) -> dict[str, Any]:
        last = self.days[-1] if self.days else None
        low = last.delta["ci"][0] if last is not None else math.nan
        new_high = last.new_video_delta["ci"][1] if last is not None else math.nan
        judged = [p["within_ci"] for p in self.off_policy if p["within_ci"] is not None]
        return {
            "last_day_delta_ci_excludes_zero_and_positive": bool(_finite(low) and low > 0),
            "new_video_share_not_below_frozen": bool(_finite(new_high) and new_high >= 0),
            "off_policy_within_ci_share": sum(judged) / len(judged) if judged else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """The benchmark's JSON: numbers rounded to 6 decimals, NaN as None."""
        return json_safe(
            {
                "benchmark": "loop",
                "settings": dict(self.settings),
                "days": [_day_dict(d) for d in self.days],
                "off_policy": self.off_policy,
                "targets": self.targets,
            }
        )

    def to_json(self) -> str:
        """:meth:`to_dict` on one line."""
        return orjson.dumps(self.to_dict()).decode()


def pair_off_policy(days: Sequence[LoopDay]) -> list[dict[str, Any]]:
    """Each day's off-policy estimate next to the realised learning watch ratio of its version.

    Realised is read on the first day after the estimate's day on which ``champion`` is that
    version; ``realised``, ``realised_ci``, ``served_on_day`` and ``within_ci`` are None/NaN when the
    version never served (or served a day without learning impressions).
    """
    ordered = sorted(days, key=lambda d: d.day)
    pairs: list[dict[str, Any]] = []
    for day in ordered:
        estimate = day.off_policy
        if estimate is None:
            continue
        version = _int_or_none(estimate.get("version"))
        ci = _pair(estimate.get("ci"))
        served = next(
            (d for d in ordered if d.day > day.day and version is not None and champion_version(d.champion) == version),
            None,
        )
        stats = served.variants.get(LEARNING) if served is not None else None
        realised = stats["watch_ratio"]["mean"] if stats is not None else math.nan
        realised_ci = list(stats["watch_ratio"]["ci"]) if stats is not None else [math.nan, math.nan]
        within = ci[0] <= realised <= ci[1] if all(_finite(x) for x in (realised, *ci)) else None
        pairs.append(
            {
                "version": version,
                "estimate": _float(estimate.get("estimate")),
                "ci": ci,
                "realised": realised,
                "realised_ci": realised_ci,
                "within_ci": within,
                "estimated_on_day": day.day,
                "served_on_day": served.day if served is not None else None,
            }
        )
    return pairs


def champion_version(label: str | None) -> int | None:
    """The registry version in a ranker label: ``"reelhouse-ranker/7"`` -> 7; None for e.g. ``"trending"``."""
    match = _VERSION.search(label or "")
    return int(match.group(1)) if match else None


def json_safe(value: Any) -> Any:
    """A copy with floats rounded to :data:`DIGITS` decimals, NaN/inf as None, numpy scalars as Python ones."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return round(float(value), DIGITS) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _day_dict(day: LoopDay) -> dict[str, Any]:
    gate = day.gate or {}
    return {
        "day": day.day,
        "date": day.date,
        LEARNING: _variant_dict(day.variants.get(LEARNING)),
        FROZEN: _variant_dict(day.variants.get(FROZEN)),
        "delta": day.delta["delta"],
        "delta_ci": list(day.delta["ci"]),
        "champion": day.champion,
        "frozen_model": day.frozen_model,
        "gate": day.gate_decision,
        "gate_reason": _str_or_none(gate.get("reason")),
        "traffic_s": day.traffic_s,
        "flow_s": day.flow_s,
        # Beyond the benchmark's keys: what a reader needs to check a day (and the loop's test does).
        "gate_detail": day.gate,
        "new_video_delta": day.new_video_delta["delta"],
        "new_video_delta_ci": list(day.new_video_delta["ci"]),
        "flow": day.flow,
        "serving": day.serving,
    }


def _variant_dict(stats: Mapping[str, Any] | None) -> dict[str, Any]:
    if stats is None:  # no impressions in this variant that day
        return {
            "watch_ratio": None,
            "ci": [None, None],
            "new_video_share": None,
            "coverage": None,
            "play_rate": None,
            "like_rate": None,
            "share_rate": None,
            "users": 0,
            "impressions": 0,
        }
    return {
        "watch_ratio": stats["watch_ratio"]["mean"],
        "ci": list(stats["watch_ratio"]["ci"]),
        "new_video_share": stats["new_video_share"]["mean"],
        "coverage": stats["coverage"],
        "play_rate": stats["play_rate"]["mean"],
        "like_rate": stats["like_rate"]["mean"],
        "share_rate": stats["share_rate"]["mean"],
        "users": stats["users"],
        "impressions": stats["impressions"],
    }


# ---------------------------------------------------------------- markdown


def render_markdown(report: LoopReport) -> str:
    """The run as markdown: engagement per day and variant, deltas, gate decisions, off-policy vs realised, targets."""
    days = report.days
    lines = [f"## Closed loop over {len(days)} day(s): learning vs frozen", ""]
    if report.settings:
        lines += ["Settings: " + ", ".join(f"{k}={_setting(v)}" for k, v in report.settings.items()) + ".", ""]
    lines += [
        "`learning` serves the registry's current champion (retrained daily, promoted by the gate at the end of a "
        "day); `frozen` keeps the day-0 champion. Rates are per impression with 95% intervals by the delta method "
        "over users (a user's impressions are correlated); coverage = distinct videos shown / videos in the "
        "catalogue that day. `n/a` marks a value that cannot be estimated.",
        "",
        "### Engagement per day and variant",
        "",
        "| day | date | variant | model | users | impressions | play rate [95% CI] | watch ratio [95% CI] "
        "| like rate [95% CI] | share rate [95% CI] | new-video share [95% CI] | coverage |",
        "|---:|---|---|---|---:|---:|---|---|---|---|---|---:|",
    ]
    for day in days:
        for variant in _ordered([*VARIANTS, *day.variants]):
            stats = day.variants.get(variant)
            model = {LEARNING: day.champion, FROZEN: day.frozen_model}.get(variant, "")
            if stats is None:
                lines.append(
                    f"| {day.day} | {day.date} | {variant} | {_cell(model)} | 0 | 0 | n/a | n/a | n/a | n/a | n/a | n/a |"
                )
                continue
            rates = " | ".join(_with_ci(stats[rate]) for rate in RATES)
            lines.append(
                f"| {day.day} | {day.date} | {variant} | {_cell(_served(model, stats.get('rankers')))} | "
                f"{stats['users']:,} | {stats['impressions']:,} | {rates} | {_num(stats['coverage'])} |"
            )
    lines += [
        "",
        "### Learning minus frozen, per day",
        "",
        "| day | date | learning model | frozen model | watch ratio delta [95% CI] | p | new-video share delta "
        "[95% CI] | p |",
        "|---:|---|---|---|---|---:|---|---:|",
    ]
    for day in days:
        lines.append(
            f"| {day.day} | {day.date} | {_cell(day.champion)} | {_cell(day.frozen_model)} | "
            f"{_delta_cell(day.delta)} | {_pval(day.delta['p_value'])} | {_delta_cell(day.new_video_delta)} | "
            f"{_pval(day.new_video_delta['p_value'])} |"
        )
    lines += [
        "",
        "### Promotion gate (decided at the end of each day; a promoted candidate serves `learning` the next day)",
        "",
        "| day | date | champion serving | decision | candidate | champion | reason | traffic s | flow s |",
        "|---:|---|---|---|---:|---:|---|---:|---:|",
    ]
    for day in days:
        gate = day.gate or {}
        decision = day.gate_decision or "no flow"
        if day.promoted:
            decision = f"**{decision}**"
        lines.append(
            f"| {day.day} | {day.date} | {_cell(day.champion)} | {_cell(decision)} | "
            f"{_text(gate.get('candidate_version'))} | {_text(gate.get('champion_version'))} | "
            f"{_cell(_text(gate.get('reason')))} | {_seconds(day.traffic_s)} | {_seconds(day.flow_s)} |"
        )
    pairs = report.off_policy
    estimators = sorted(
        {str(d.off_policy.get("estimator")) for d in days if d.off_policy and "estimator" in d.off_policy}
    )
    lines += [
        "",
        "### Off-policy estimate vs realised online watch ratio",
        "",
        "Each candidate's watch ratio estimated on its day's logs"
        + (f" ({', '.join(estimators)})" if estimators else "")
        + ", next to the `learning` watch ratio on the first later day it served as champion.",
        "",
    ]
    if pairs:
        lines += [
            "| candidate | estimated on day | estimate [95% CI] | served on day | realised [95% CI] | within CI |",
            "|---:|---:|---|---:|---|:---:|",
        ]
        for p in pairs:
            within = {True: "yes", False: "**no**", None: "n/a"}[p["within_ci"]]
            served = "never" if p["served_on_day"] is None else str(p["served_on_day"])
            lines.append(
                f"| {_text(p['version'])} | {p['estimated_on_day']} | "
                f"{_with_ci({'mean': p['estimate'], 'ci': p['ci']})} | {served} | "
                f"{_with_ci({'mean': p['realised'], 'ci': p['realised_ci']})} | {within} |"
            )
    else:
        lines.append("_No off-policy estimate was made._")
    targets = report.targets
    judged = [p for p in pairs if p["within_ci"] is not None]
    last = days[-1] if days else None
    share = targets["off_policy_within_ci_share"]
    lines += [
        "",
        "### Targets",
        "",
        f"- Last day's watch-ratio delta is positive and its 95% CI excludes 0: "
        f"{_yes(targets['last_day_delta_ci_excludes_zero_and_positive'])}"
        + (f" ({_delta_cell(last.delta)})" if last is not None else ""),
        f"- Learning's new-video share is not significantly below frozen's on the last day: "
        f"{_yes(targets['new_video_share_not_below_frozen'])}"
        + (f" ({_delta_cell(last.new_video_delta)})" if last is not None else ""),
        "- Off-policy estimates whose CI holds the realised watch ratio: "
        + (f"{sum(p['within_ci'] for p in judged)} of {len(judged)} ({share:.0%})" if share is not None else "n/a"),
        "",
    ]
    return "\n".join(lines)


def _served(model: str, rankers: Mapping[str, int] | None) -> str:
    """The configured model, plus the share of impressions any other ranker label served (e.g. a fallback)."""
    if not rankers:
        return model
    total = sum(rankers.values())
    others = [f"{name} {count / total:.0%}" for name, count in rankers.items() if name != model]
    return f"{model} ({', '.join(others)})" if others else model


def _with_ci(stat: Mapping[str, Any]) -> str:
    low, high = stat["ci"]
    if not _finite(stat["mean"]):
        return "n/a"
    return f"{_num(stat['mean'])} [{_num(low)}, {_num(high)}]"


def _delta_cell(d: Mapping[str, Any]) -> str:
    low, high = d["ci"]
    return f"{_num(d['delta'], signed=True)} [{_num(low, signed=True)}, {_num(high, signed=True)}]"


def _num(value: Any, *, signed: bool = False) -> str:
    if not _finite(value):
        return "n/a"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _pval(value: Any) -> str:
    if not _finite(value):
        return "n/a"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


def _seconds(value: Any) -> str:
    return f"{value:.1f}" if _finite(value) else "n/a"


def _text(value: Any) -> str:
    return "—" if value is None else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _yes(flag: bool) -> str:
    return "**yes**" if flag else "no"


def _setting(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- plot


def plot_learning_curve(report: LoopReport, path: Path | str) -> Path:
    """PNG: watch ratio per day and variant (95% CI), new-video share per variant, and the delta with its CI.

    A dashed green line between day ``d`` and ``d + 1`` marks a promotion at the end of day ``d``.
    Drawn on matplotlib's Agg canvas without pyplot (as :mod:`reelhouse.training.plots` does).
    """
    from matplotlib.figure import Figure

    path = Path(path)
    days = report.days
    x = np.array([d.day for d in days], dtype=float)
    figure = Figure(figsize=(8, 9))
    top, middle, bottom = figure.subplots(3, 1, sharex=True)
    styles = {
        LEARNING: ("tab:blue", -0.05, "learning (current champion)"),
        FROZEN: ("tab:orange", 0.05, "frozen (day-0 champion)"),
    }
    for axes, rate, ylabel in (
        (top, "watch_ratio", "watch ratio per impression"),
        (middle, "new_video_share", "new-video share of impressions"),
    ):
        for variant, (color, shift, label) in styles.items():
            stats = [d.variants.get(variant, {}).get(rate) for d in days]
            mean = np.array([s["mean"] if s else math.nan for s in stats], dtype=float)
            low = np.array([s["ci"][0] if s else math.nan for s in stats], dtype=float)
            high = np.array([s["ci"][1] if s else math.nan for s in stats], dtype=float)
            axes.errorbar(x + shift, mean, yerr=_yerr(mean, low, high), fmt="o-", color=color, capsize=3, label=label)
        axes.set(ylabel=ylabel)
    mean = np.array([d.delta["delta"] for d in days], dtype=float)
    low = np.array([d.delta["ci"][0] for d in days], dtype=float)
    high = np.array([d.delta["ci"][1] for d in days], dtype=float)
    bottom.errorbar(x, mean, yerr=_yerr(mean, low, high), fmt="o-", color="tab:purple", capsize=3, label="delta")
    bottom.axhline(0.0, color="grey", linestyle=":", linewidth=0.8)
    bottom.set(xlabel="simulated day", ylabel="watch ratio: learning - frozen")
    marked = False
    for day in days:
        if not day.promoted:
            continue
        version = (day.gate or {}).get("candidate_version")
        for axes in (top, middle, bottom):
            axes.axvline(
                day.day + 0.5,
                color="tab:green",
                linestyle="--",
                linewidth=0.9,
                label=None if marked or axes is not top else "gate promoted",
            )
        marked = True
        if version is not None:
            top.annotate(
                f"v{version}",
                (day.day + 0.5, 1.0),
                xycoords=("data", "axes fraction"),
                ha="center",
                va="bottom",
                fontsize=8,
                color="tab:green",
            )
    for axes in (top, middle, bottom):
        axes.legend(loc="best", fontsize=8)
    if len(days):
        bottom.set_xticks(x, [str(d.day) for d in days])
    else:
        top.text(0.5, 0.5, "no days", transform=top.transAxes, ha="center")
    figure.suptitle("Closed loop: learning vs frozen champion (95% CI)", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")
    return path


def _yerr(mean: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Asymmetric error bars; an interval that cannot be estimated draws none."""
    return np.nan_to_num(np.vstack([mean - low, high - mean]), nan=0.0).clip(min=0.0)


# ---------------------------------------------------------------- files


def write_report(report: LoopReport, directory: Path | str) -> dict[str, str]:
    """``loop-<UTC stamp>.md``, ``.json`` (:meth:`LoopReport.to_json`) and ``.png`` under ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    paths = {
        "markdown": directory / f"loop-{stamp}.md",
        "json": directory / f"loop-{stamp}.json",
        "png": directory / f"loop-{stamp}.png",
    }
    paths["markdown"].write_text(render_markdown(report))
    paths["json"].write_text(report.to_json() + "\n")
    plot_learning_curve(report, paths["png"])
    return {kind: str(path) for kind, path in paths.items()}


# ---------------------------------------------------------------- helpers


def _require_columns(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ExperimentDataError(f"impressions must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ExperimentDataError(f"the impressions frame lacks column(s) {missing}; it has {list(frame.columns)}")


def _ordered(variants: Any) -> list[str]:
    """learning, frozen, then any other variant by name (each once)."""
    names = {str(v) for v in variants}
    return [v for v in VARIANTS if v in names] + sorted(names - set(VARIANTS))


def _experiment_of(rows: pd.DataFrame) -> str:
    if "experiment" not in rows.columns:
        return "loop"
    return ", ".join(sorted(str(e) for e in rows["experiment"].dropna().unique())) or "loop"


def _finite(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and math.isfinite(value)


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _pair(value: Any) -> list[float]:
    if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str) and len(value) == 2:
        return [_float(value[0]), _float(value[1])]
    return [math.nan, math.nan]


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
