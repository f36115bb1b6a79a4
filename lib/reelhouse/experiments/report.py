"""The A/B report: silver impressions and their outcomes in, per-variant statistics out.

For a data interval ``[start, end)`` and each selected experiment of ``config.experiments``:

1. Impressions whose ``variant`` is ``"<experiment>:<variant>"`` (what the feed service stamps)
   are attributed their outcomes by the training-set builder's own logic
   (:func:`reelhouse.training.dataset.attributed_impressions`: same request, user and video
   within ``training.attribution_window_s``; first impression of a key kept, impressions without
   a request id skipped). Per impression: ``played``, ``watch_ratio`` (capped at 1, 0 without a
   play), ``liked``, ``shared``.
2. Spark sums them per (experiment, variant, user); only those per-user rows reach the driver.
   A user seen in two variants of one experiment (a changed salt or share mid-interval) breaks
   the randomisation and is left out, and counted.
3. :func:`reelhouse.experiments.stats.summarize_users` gives means, deltas against the control
   (the experiment's first variant), delta-method intervals and Holm-adjusted p-values.
4. The rows replace the ``run`` partition (``<experiment>__<start>_<end>``) of the Delta table
   ``ab_results``: re-running an interval leaves the same rows. A markdown report, a plot of
   the means with their intervals, and the summaries as JSON go to the output directory
   (default ``<data_dir>/ab/<experiment>/<start>_<end>/``), as ``<experiment>.md|.png|.json``.

Experiments whose configured ``start``/``end`` do not overlap the interval are skipped unless
asked for by name. An experiment without impressions, or without control users, is reported as
not analysed and makes the result not ``ok``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa

from reelhouse.config import ReelhouseConfig
from reelhouse.config.models import ExperimentConfig
from reelhouse.errors import ExperimentDataError, ReelhouseError
from reelhouse.experiments.bucketing import Bucketing
from reelhouse.experiments.stats import (
    DEFAULT_METRICS,
    SRM_ALPHA,
    SUM_SUFFIX,
    MetricSummary,
    sample_ratio_p_value,
    summarize_users,
    to_markdown,
)
from reelhouse.lake import Lake, TableSpec
from reelhouse.lake.partitions import hour_partition
from reelhouse.silver.tables import SILVER_EVENTS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

ALPHA = 0.05
_UTC = pa.timestamp("us", tz="UTC")

AB_RESULTS = TableSpec(
    "ab_results",
    pa.schema(
        [
            pa.field("run", pa.string(), nullable=False),
            pa.field("experiment", pa.string(), nullable=False),
            pa.field("interval_start", _UTC, nullable=False),
            pa.field("interval_end", _UTC, nullable=False),
            pa.field("variant", pa.string(), nullable=False),
            pa.field("is_control", pa.bool_(), nullable=False),
            pa.field("metric", pa.string(), nullable=False),
            pa.field("users", pa.int64(), nullable=False),
            pa.field("impressions", pa.int64(), nullable=False),
            pa.field("mean", pa.float64(), nullable=False),
            pa.field("ci_low", pa.float64()),
            pa.field("ci_high", pa.float64()),
            pa.field("delta", pa.float64()),
            pa.field("delta_ci_low", pa.float64()),
            pa.field("delta_ci_high", pa.float64()),
            pa.field("relative_lift", pa.float64()),
            pa.field("p_value", pa.float64()),
            pa.field("significant", pa.bool_()),
            pa.field("alpha", pa.float64(), nullable=False),
            pa.field("silver_version", pa.int64(), nullable=False),
        ]
    ),
    ("run",),
    "A/B results: one row per experiment, variant and metric of an interval; each run partition is "
    "replaced when its (experiment, interval) is analysed again.",
)

STATUS_ANALYSED = "analysed"
STATUS_NOT_RUNNING = "not_running"  # the configured start/end do not overlap the interval
STATUS_NO_IMPRESSIONS = "no_impressions"
STATUS_NOT_ANALYSABLE = "not_analysable"  # e.g. no users in the control


@dataclass
class ExperimentReport:
    status: str
    control: str
    users: dict[str, int] = field(default_factory=dict)  # per variant, after exclusions
    excluded_users: int = 0  # seen in more than one variant
    srm_p_value: float | None = None  # users per variant against the configured shares (chi-square)
    significant: list[str] = field(default_factory=list)  # "<metric>:<variant>" with adjusted p < alpha
    detail: str = ""
    report: str | None = None
    plot: str | None = None


@dataclass
class AbReportResult:
    table: str
    version: int | None
    start: str
    end: str
    silver_version: int
    rows: int
    experiments: dict[str, ExperimentReport] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(e.status in (STATUS_ANALYSED, STATUS_NOT_RUNNING) for e in self.experiments.values())

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok}, sort_keys=True)


# ---------------------------------------------------------------- transforms (DataFrame -> DataFrame)


def experiment_events(events: DataFrame, experiments: Sequence[str]) -> DataFrame:
    """Silver rows the analysis needs: every outcome, and impressions stamped for one of ``experiments``.

    Splits at the first ``:`` by hand because experiment names may hold ``_``, a LIKE wildcard.
    """
    from pyspark.sql import functions as F

    stamped = F.instr(F.col("variant"), ":") > 0
    experiment = F.substring_index(F.col("variant"), ":", 1)
    is_impression = F.col("event_type") == "impression"
    return events.where(~is_impression | (stamped & experiment.isin(list(experiments))))


def per_user_outcomes(attributed: DataFrame, metrics: Sequence[str] = DEFAULT_METRICS) -> DataFrame:
    """Attributed impressions (with ``variant`` carried) -> one row per (experiment, variant, user).

    Columns: ``experiment``, ``variant``, ``user_id``, ``impressions`` and ``<metric>_sum``.
    """
    from pyspark.sql import functions as F

    split = attributed.select(
        F.substring_index("variant", ":", 1).alias("experiment"),
        F.expr("substr(variant, instr(variant, ':') + 1)").alias("variant"),
        "user_id",
        *metrics,
    )
    return split.groupBy("experiment", "variant", "user_id").agg(
        F.count(F.lit(1)).alias("impressions"),
        *(F.sum(F.col(m).cast("double")).alias(f"{m}{SUM_SUFFIX}") for m in metrics),
    )


# ---------------------------------------------------------------- pure helpers (pandas, Arrow, text)


def exclusive_users(per_user: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop the users seen in more than one variant; return the rest and how many were dropped."""
    variants = per_user.groupby("user_id")["variant"].transform("nunique")
    return per_user[variants == 1], int(per_user.loc[variants > 1, "user_id"].nunique())


def run_key(experiment: str, start: dt.datetime, end: dt.datetime) -> str:
    """The ``run`` partition of one (experiment, interval); safe in paths (no ``:``)."""
    return f"{experiment}__{_compact(start)}_{_compact(end)}"


def results_table(
    summaries: Sequence[MetricSummary], start: dt.datetime, end: dt.datetime, alpha: float, silver_version: int
) -> pa.Table:
    """``ab_results`` rows for the summaries: null where a value cannot be estimated (NaN in the
    summaries, e.g. the interval of a single-user variant) and in the control's comparison columns."""
    rows = []
    for s in summaries:
        rows.append(
            {
                **{k: _json_safe(v) for k, v in asdict(s).items()},
                "run": run_key(s.experiment, start, end),
                "interval_start": start.astimezone(dt.UTC),
                "interval_end": end.astimezone(dt.UTC),
                "is_control": s.delta is None,
                "alpha": alpha,
                "silver_version": silver_version,
            }
        )
    return pa.Table.from_pylist(rows, schema=AB_RESULTS.schema)


def markdown_report(
    experiment: str,
    summaries: Sequence[MetricSummary],
    *,
    start: dt.datetime,
    end: dt.datetime,
    control: str,
    silver_version: int,
    alpha: float,
    notes: Sequence[str] = (),
) -> str:
    treatments = sorted({s.variant for s in summaries} - {control})
    lines = [
        f"# A/B report: {experiment}",
        "",
        f"- interval: [{start.isoformat()}, {end.isoformat()}), silver_events v{silver_version}",
        f"- control: `{control}`; treatments: {', '.join(f'`{t}`' for t in treatments) or 'none'}",
        f"- per-impression rates per variant; users are the randomisation unit (delta-method variances); "
        f"{1 - alpha:.0%} intervals; two-sided z-tests against the control, p-values Holm-adjusted across "
        f"the treatments of each metric; significant when the adjusted p < {alpha}",
        *(f"- {note}" for note in notes),
        "",
        to_markdown(summaries),
        "How to read: `mean` is the metric per impression (e.g. the share of impressions played); `delta` is "
        "the difference to the control and its interval; `lift` is delta / control mean. An interval that "
        "excludes 0 and `significant = yes` mean the difference is unlikely to be chance. `n/a` marks a value "
        "that cannot be estimated (e.g. a variant with a single user has no variance).",
        "",
    ]
    return "\n".join(lines)


def plot_summaries(experiment: str, summaries: Sequence[MetricSummary], path: Path) -> Path:
    """One panel per metric: each variant's mean with its interval; the control's mean dashed; * = significant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(s.metric for s in summaries))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics) + 1, 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        rows = [s for s in summaries if s.metric == metric]
        xs = range(len(rows))
        means = [s.mean for s in rows]
        low = [0.0 if math.isnan(s.ci_low) else s.mean - s.ci_low for s in rows]
        high = [0.0 if math.isnan(s.ci_high) else s.ci_high - s.mean for s in rows]
        colors = ["tab:gray" if s.delta is None else ("tab:green" if s.significant else "tab:blue") for s in rows]
        for x, mean, lo, hi, color in zip(xs, means, low, high, colors, strict=True):
            ax.errorbar([x], [mean], yerr=[[lo], [hi]], fmt="o", color=color, capsize=4)
        control = next((s for s in rows if s.delta is None), None)
        if control is not None:
            ax.axhline(control.mean, color="tab:gray", linestyle="--", linewidth=0.8)
        for x, s in zip(xs, rows, strict=True):
            if s.significant:
                ax.annotate("*", (x, s.ci_high if not math.isnan(s.ci_high) else s.mean), ha="center", va="bottom")
        ax.set_xticks(list(xs), [s.variant for s in rows], rotation=30, ha="right")
        ax.set_title(metric)
        ax.margins(x=0.3, y=0.2)
    fig.suptitle(f"{experiment}: mean per impression, 95% CI (* significant vs control)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _compact(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _json_safe(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _running(experiment: ExperimentConfig, start: dt.datetime, end: dt.datetime) -> bool:
    """Whether the experiment's configured window overlaps ``[start, end)`` (times checked by :class:`Bucketing`)."""
    first, last = (None if t is None else dt.datetime.fromisoformat(t) for t in (experiment.start, experiment.end))
    return (first is None or first < end) and (last is None or last > start)


def _config_order(summaries: list[MetricSummary], experiment: ExperimentConfig) -> list[MetricSummary]:
    """Variants in config order (unconfigured ones after, by name), metrics as computed."""
    rank = {v.name: i for i, v in enumerate(experiment.variants)}
    metric_rank = {m: i for i, m in enumerate(dict.fromkeys(s.metric for s in summaries))}
    return sorted(summaries, key=lambda s: (metric_rank[s.metric], rank.get(s.variant, len(rank)), s.variant))


# ---------------------------------------------------------------- the job's body


def control_of(experiment: ExperimentConfig) -> str:
    """The variant the others are compared with: the first one configured."""
    return experiment.variants[0].name


def select_experiments(config: ReelhouseConfig, name: str | None) -> list[ExperimentConfig]:
    if not config.experiments:
        raise ReelhouseError("config.experiments is empty: configure an experiment before asking for its report")
    Bucketing(config.experiments)  # the serving's own checks: unique names, zoned ISO times, end after start
    if name is None:
        return list(config.experiments)
    chosen = [e for e in config.experiments if e.name == name]
    if not chosen:
        known = ", ".join(e.name for e in config.experiments)
        raise ReelhouseError(f"experiment {name!r} is not in config.experiments (configured: {known})")
    return chosen


def ab_report(
    spark: SparkSession,
    config: ReelhouseConfig,
    start: dt.datetime,
    end: dt.datetime,
    *,
    experiment: str | None = None,
    out_dir: Path | None = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    alpha: float = ALPHA,
) -> AbReportResult:
    """Analyse the experiments' impressions of ``[start, end)``; write ``ab_results`` and the reports."""
    from reelhouse.training.dataset import attributed_impressions

    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise ReelhouseError(f"A/B interval [{start}, {end}) must be non-empty and timezone-aware (UTC)")
    selected = select_experiments(config, experiment)
    lake = Lake(config.lake)
    silver_version = lake.version(SILVER_EVENTS.name, spark)
    result = AbReportResult(AB_RESULTS.name, None, start.isoformat(), end.isoformat(), silver_version, 0)

    analysed: list[ExperimentConfig] = []
    for exp in selected:
        if experiment is None and not _running(exp, start, end):
            result.experiments[exp.name] = ExperimentReport(
                STATUS_NOT_RUNNING, control_of(exp), detail=f"configured from {exp.start} to {exp.end}"
            )
        else:
            analysed.append(exp)

    per_user = pd.DataFrame(columns=["experiment", "variant", "user_id", "impressions"])
    if analysed:
        window_s = config.training.attribution_window_s
        until = end + dt.timedelta(seconds=window_s)
        from pyspark.sql import functions as F

        silver = lake.read(spark, SILVER_EVENTS.name, version=silver_version).where(
            (F.col("event_hour") >= hour_partition(start)) & (F.col("event_hour") <= hour_partition(until))
        )
        events = experiment_events(silver, [e.name for e in analysed])
        attributed = attributed_impressions(
            events, start, end, window_s, config.training.positive_watch_ratio, carry=("variant",)
        )
        log.info("aggregating outcomes per user for %s in [%s, %s)", [e.name for e in analysed], start, end)
        per_user = per_user_outcomes(attributed, metrics).toPandas()
        log.info("collected %d per-user rows", len(per_user))

    all_rows: list[MetricSummary] = []
    for exp in analysed:
        report, summaries = _analyse(exp, per_user[per_user["experiment"] == exp.name], metrics, alpha)
        result.experiments[exp.name] = report
        if not summaries:
            log.warning("experiment %s not analysed: %s", exp.name, report.detail)
            continue
        all_rows += summaries
        directory = out_dir or Path(config.data_dir) / "ab" / exp.name / f"{_compact(start)}_{_compact(end)}"
        directory.mkdir(parents=True, exist_ok=True)
        notes = _notes(exp, report)
        text = markdown_report(
            exp.name, summaries, start=start, end=end, control=report.control, silver_version=silver_version,
            alpha=alpha, notes=notes,
        )  # fmt: skip
        (directory / f"{exp.name}.md").write_text(text)
        (directory / f"{exp.name}.json").write_text(
            json.dumps([{k: _json_safe(v) for k, v in asdict(s).items()} for s in summaries], indent=1) + "\n"
        )
        report.report = str(directory / f"{exp.name}.md")
        report.plot = str(plot_summaries(exp.name, summaries, directory / f"{exp.name}.png"))
        log.info("experiment %s: report in %s; significant: %s", exp.name, directory, report.significant or "none")

    if analysed:
        rows = results_table(all_rows, start, end, alpha, silver_version)
        frame = lake.arrow_frame(spark, rows, AB_RESULTS).coalesce(1)  # a few rows: one file per write
        runs = [run_key(e.name, start, end) for e in analysed]
        commit = lake.replace_partitions(frame, AB_RESULTS, "run", runs)
        result.version, result.rows = commit.version, rows.num_rows
    return result


def _analyse(
    exp: ExperimentConfig, per_user: pd.DataFrame, metrics: Sequence[str], alpha: float
) -> tuple[ExperimentReport, list[MetricSummary]]:
    control = control_of(exp)
    if per_user.empty:
        return ExperimentReport(
            STATUS_NO_IMPRESSIONS, control, detail="no attributable impressions in the interval"
        ), []
    users, excluded = exclusive_users(per_user)
    report = ExperimentReport(STATUS_ANALYSED, control, excluded_users=excluded)
    report.users = {str(v): int(n) for v, n in users.groupby("variant")["user_id"].nunique().items()}
    report.srm_p_value = sample_ratio_p_value(report.users, {v.name: v.share for v in exp.variants})
    try:
        summaries = summarize_users(users, experiment=exp.name, control=control, metrics=metrics, alpha=alpha)
    except ExperimentDataError as e:
        report.status, report.detail = STATUS_NOT_ANALYSABLE, str(e)
        return report, []
    summaries = _config_order(summaries, exp)
    report.significant = [f"{s.metric}:{s.variant}" for s in summaries if s.significant]
    return report, summaries


def _notes(exp: ExperimentConfig, report: ExperimentReport) -> list[str]:
    notes = []
    if report.srm_p_value is not None:
        split = ", ".join(f"{v.name} {report.users.get(v.name, 0)} ({v.share:.0%})" for v in exp.variants)
        notes.append(f"users per variant (configured share): {split}; sample ratio test p = {report.srm_p_value:.4f}")
        if report.srm_p_value < SRM_ALPHA:
            notes.append(
                "**sample ratio mismatch**: the split of users does not match the configured shares; check the "
                "bucketing and the impression logging before trusting the comparisons"
            )
    if report.excluded_users:
        notes.append(f"{report.excluded_users} user(s) seen in more than one variant were left out")
    configured = [v.name for v in exp.variants]
    missing = [v for v in configured if v not in report.users]
    if missing:
        notes.append(f"configured variants without impressions: {', '.join(missing)}")
    unknown = sorted(set(report.users) - set(configured))
    if unknown:
        notes.append(f"variants in the data but not in the config: {', '.join(unknown)}")
    return notes
