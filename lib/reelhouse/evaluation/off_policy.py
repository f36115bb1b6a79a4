"""Off-policy evaluation (OPE): what a registered ranker would have earned on traffic another policy served.

The logging policy. The feed is epsilon-greedy per page slot (:func:`reelhouse.serving.rerank.explore`):
at slot ``p`` of a request, with ``M_p`` candidates not placed yet and ``g_p`` the serving ranker's
next choice, the slot shows ``g_p`` with probability ``(1 - eps) + eps / M_p`` and any other remaining
candidate with probability ``eps / M_p`` (``eps`` is ``serving.explore_epsilon``, at most 0.5). Every
impression logs that probability of its video at its slot as ``propensity``.

What a propensity tells. Because ``eps <= 0.5``, a greedy slot has ``propensity >= 1 - eps >= 0.5``
and an explored one ``eps / M_p <= eps / 2 <= 0.25``, so the slot was greedy iff
``propensity >= 1 - eps`` (:func:`logging_greedy`), and ``eps / M_p`` is ``propensity - (1 - eps)``
for a greedy slot and ``propensity`` otherwise (:func:`explore_probability`). ``M_p = 1`` (the
last candidate; propensity 1) gets weight 1.

The target policy is the evaluated ranker's own epsilon-greedy policy with the same ``eps``.

**The re-ranking approximation.** The target's greedy choice ``t_p`` at slot ``p`` needs the
request's full candidate list, which is not logged. It is approximated by the logged video the
evaluated ranker scores highest among the same request's logged videos at positions ``>= p``
(the ranker re-ranks the shown page; ties go to the earliest position).
A candidate that was never shown can therefore never be the target's choice, which biases the
estimate towards the logged page (docs/off_policy.md). The target's probability of the logged video
``a_p`` is then ``(1 - eps) + eps / M_p`` if ``a_p == t_p`` else ``eps / M_p``
(:func:`slot_target_propensities`), and its importance weight ``w = target_p / logging_p``.

The estimate is per slot: each impression's reward (``watch_ratio``) is weighted by the two
policies' probabilities of its video at its slot *given the slots before as logged*; that the
target's different earlier choices would have changed later slots is ignored.

Estimators (pure functions of numpy arrays):

- :func:`clipped_ips`: ``mean(min(w, clip) * r)``; clipping bounds the variance and biases the
  value down.
- :func:`snips`: ``sum(w r) / sum(w)``, self-normalised: a little biased, far less variance, no clip.
- :func:`logged_mean`: ``mean(r)``, the logging policy's own value on the same rows.

Confidence intervals (95%, normal) are clustered: the impressions of one request (or user) are
correlated, so each estimate is a ratio of per-group sums ``sum_g S_g / sum_g N_g`` and its variance
the delta-method ratio variance of :mod:`reelhouse.experiments.stats` (``S_g`` = the group's
``sum(min(w, clip) r)`` and ``N_g`` its row count for IPS; ``sum(w r)`` and ``sum(w)`` for SNIPS).
Without groups every row is its own group.

:func:`evaluate_off_policy` reads a window of the training set (one row per impression, with
``propensity``), scores it with a registered ranker and returns all three; ``reelhouse evaluate
--off-policy --model version:N`` prints it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

from reelhouse.errors import EvaluationError
from reelhouse.training.columns import ID_COLUMNS, MODEL_INPUT_COLUMNS, PROPENSITY, SPLIT, WATCH_RATIO

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from reelhouse.config import ReelhouseConfig

log = logging.getLogger(__name__)

REQUEST_ID = "request_id"
POSITION = "position"
IMPRESSION_TIME = "impression_time"
DEFAULT_CLIP = 20.0  # cap of the IPS importance weights (``--clip``)
MAX_EPSILON = 0.5  # beyond it a logged propensity no longer tells a greedy slot from an explored one
DEFAULT_SPLIT = "test"  # the window without --start / --end: rows the models were not fitted on
Z_95 = NormalDist().inv_cdf(0.975)
_TOLERANCE = 1e-9  # propensities are floats computed by the feed; compare with this slack
_MODEL_REF = re.compile(r"^(alias):([A-Za-z0-9_\-]+)$|^(version):([0-9]+)$")

APPROXIMATION = (
    "The challenger's greedy choice at slot p is approximated by the logged video it scores highest among "
    "the same request's logged videos at positions >= p (it re-ranks the shown page): the full candidate "
    "list is not logged, so a candidate never shown cannot be its choice, which biases the estimate towards "
    "the logged page."
)
PER_SLOT = (
    "Per-slot estimate: each impression is weighted by both policies' probabilities of its video at its slot "
    "given the slots before as logged; how the challenger's different earlier choices would change later "
    "slots is ignored."
)


# ----------------------------------------------------------------------------- estimates
@dataclass(frozen=True)
class Estimate:
    """One estimator's value of a policy, with a 95% CI clustered by group (NaN with fewer than two groups)."""

    estimator: str  # clipped_ips, snips or logged
    value: float
    ci_low: float
    ci_high: float
    n: int  # rows
    effective_sample_size: float  # (sum w)^2 / sum(w^2) of the weights used
    clipped: int  # rows whose weight was capped at the clip

    def to_dict(self) -> dict[str, Any]:
        return {key: _finite_or_none(value) for key, value in asdict(self).items()}


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _floats(values: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise EvaluationError(f"{name} must be numbers: {e}") from e
    if array.ndim != 1:
        raise EvaluationError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise EvaluationError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise EvaluationError(f"{name} must be a number, got {value!r}") from e


def _check(
    rewards: Any, target_p: Any, logging_p: Any, groups: Any | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated float arrays and integer group codes (every row its own group without ``groups``)."""
    r = _floats(rewards, "rewards")
    target = _floats(target_p, "target propensities")
    logging_ = _floats(logging_p, "logging propensities")
    lengths = {"rewards": len(r), "target propensities": len(target), "logging propensities": len(logging_)}
    if groups is not None:
        groups = np.asarray(groups, dtype=object)
        lengths["groups"] = len(groups)
    if len(set(lengths.values())) != 1:
        raise EvaluationError(f"the inputs of an estimate must have one length each row, got {lengths}")
    if len(r) == 0:
        raise EvaluationError("nothing to estimate: no rows")
    if not np.isfinite(r).all():
        raise EvaluationError(f"rewards must be finite; {int((~np.isfinite(r)).sum())} row(s) are not")
    bad = ~((logging_ > 0) & (logging_ <= 1))
    if bad.any():
        raise EvaluationError(
            f"logging propensities must be in (0, 1]; {int(bad.sum())} row(s) are not (e.g. {logging_[bad][0]!r})"
        )
    bad = ~((target >= 0) & (target <= 1))
    if bad.any():
        raise EvaluationError(
            f"target propensities must be in [0, 1]; {int(bad.sum())} row(s) are not (e.g. {target[bad][0]!r})"
        )
    if groups is None:
        return r, target, logging_, np.arange(len(r))
    import pandas as pd

    codes, _ = pd.factorize(pd.Series(groups, dtype=object), use_na_sentinel=True)
    if (codes < 0).any():
        raise EvaluationError(f"groups must not be null; {int((codes < 0).sum())} row(s) are")
    return r, target, logging_, codes


def _ratio(
    estimator: str, sums: np.ndarray, counts: np.ndarray, codes: np.ndarray, n: int, ess: float, clipped: int
) -> Estimate:
    """``sum(sums) / sum(counts)`` with the delta-method CI of the ratio over groups."""
    from reelhouse.experiments.stats import _ratio_estimate

    groups = int(codes.max()) + 1
    per_group_sums = np.bincount(codes, weights=sums, minlength=groups)
    per_group_counts = np.bincount(codes, weights=counts, minlength=groups)
    estimate = _ratio_estimate(per_group_sums, per_group_counts)
    half = Z_95 * math.sqrt(estimate.variance) if not math.isnan(estimate.variance) else math.nan
    return Estimate(estimator, estimate.mean, estimate.mean - half, estimate.mean + half, n, ess, clipped)


def _effective_sample_size(weights: np.ndarray) -> float:
    squares = float(np.dot(weights, weights))
    return float(weights.sum()) ** 2 / squares if squares > 0 else 0.0


def clipped_ips(
    rewards: Any, target_p: Any, logging_p: Any, clip: float = DEFAULT_CLIP, groups: Any | None = None
) -> Estimate:
    """Clipped inverse propensity scoring: ``mean(min(w, clip) * r)`` with ``w = target_p / logging_p``.

    The CI is clustered by ``groups`` (one label per row, e.g. request ids): the variance of the
    per-group sums of ``min(w, clip) * r`` around the mean times the group sizes, over the mean
    group size (the delta-method ratio variance). ``clipped`` counts the rows with ``w > clip``.
    """
    clip = _number(clip, "clip")
    if not (math.isfinite(clip) and clip >= 1):
        raise EvaluationError(f"clip must be a finite number >= 1 (1 caps every weight at 1), got {clip!r}")
    r, target, logging_, codes = _check(rewards, target_p, logging_p, groups)
    weights = target / logging_
    capped = np.minimum(weights, clip)
    clipped = int((weights > clip).sum())
    ess = _effective_sample_size(capped)
    return _ratio("clipped_ips", capped * r, np.ones(len(r)), codes, len(r), ess, clipped)


def snips(rewards: Any, target_p: Any, logging_p: Any, groups: Any | None = None) -> Estimate:
    """Self-normalised IPS: ``sum(w r) / sum(w)``, its CI the delta method of that ratio over ``groups``."""
    r, target, logging_, codes = _check(rewards, target_p, logging_p, groups)
    weights = target / logging_
    if weights.sum() <= 0:
        raise EvaluationError(
            "SNIPS is undefined: the target policy gives probability 0 to every logged row (no overlap with the logs)"
        )
    return _ratio("snips", weights * r, weights, codes, len(r), _effective_sample_size(weights), 0)


def logged_mean(rewards: Any, groups: Any | None = None) -> Estimate:
    """The logging policy's value on its own rows: ``mean(r)``, CI clustered by ``groups`` like IPS's."""
    r = _floats(rewards, "rewards")
    ones = np.ones(len(r))
    r, _, _, codes = _check(r, ones, ones, groups)
    return _ratio("logged", r, np.ones(len(r)), codes, len(r), float(len(r)), 0)


# ----------------------------------------------------------------------------- propensities
def _check_epsilon(epsilon: Any) -> float:
    epsilon = _number(epsilon, "epsilon")
    if not 0 <= epsilon <= MAX_EPSILON:
        raise EvaluationError(
            f"epsilon (serving.explore_epsilon) must be in [0, {MAX_EPSILON}] for a propensity to tell a greedy "
            f"slot from an explored one, got {epsilon!r}"
        )
    return epsilon


def logging_greedy(propensity: Any, epsilon: float) -> np.ndarray:
    """Whether each logged video was the logging policy's greedy choice at its slot: ``propensity >= 1 - eps``."""
    epsilon = _check_epsilon(epsilon)
    p = _floats(propensity, "propensities")
    bad = ~((p > 0) & (p <= 1))
    if bad.any():
        raise EvaluationError(f"propensities must be in (0, 1]; {int(bad.sum())} row(s) are not (e.g. {p[bad][0]!r})")
    return p >= 1 - epsilon - _TOLERANCE


def explore_probability(propensity: Any, epsilon: float) -> np.ndarray:
    """``eps / M_p`` of each logged slot: ``propensity - (1 - eps)`` if it was greedy, else ``propensity``.

    Raises :class:`EvaluationError` for a propensity no slot of an ``epsilon``-greedy page can have
    (traffic logged with another ``serving.explore_epsilon``, or not by the feed).
    """
    epsilon = _check_epsilon(epsilon)
    p = _floats(propensity, "propensities")
    greedy = logging_greedy(p, epsilon)
    share = np.where(greedy, np.maximum(p - (1 - epsilon), 0.0), p)
    if epsilon == 0:
        inconsistent = ~greedy  # a deterministic page logs propensity 1 only
    else:
        # Greedy: eps / M_p > 0. Explored: M_p >= 2, so eps / M_p <= eps / 2.
        inconsistent = (greedy & (share <= _TOLERANCE)) | (~greedy & (p > epsilon / 2 + _TOLERANCE))
    if inconsistent.any():
        example = p[inconsistent][0]
        raise EvaluationError(
            f"{int(inconsistent.sum())} propensity value(s) (e.g. {example!r}) are impossible on a page that is "
            f"epsilon-greedy with epsilon {epsilon}; was the traffic logged with another serving.explore_epsilon?"
        )
    return share


def slot_target_propensities(frame: pd.DataFrame, scores: Any, epsilon: float) -> np.ndarray:
    """The target policy's probability of each logged row's video at its slot (module docstring).

    ``frame`` has one row per impression with ``request_id``, ``position`` and ``propensity``;
    ``scores`` are the evaluated ranker's scores of its rows, in order. The target's greedy choice at
    slot ``p`` is the row of the highest score among the request's rows at positions ``>= p`` (ties:
    the earliest position); the result is ``(1 - eps) + eps / M_p`` for that row and ``eps / M_p``
    otherwise, and 1 for a slot with one candidate left (``M_p = 1``, propensity 1, ``eps > 0``).
    """
    import pandas as pd

    epsilon = _check_epsilon(epsilon)
    missing = [c for c in (REQUEST_ID, POSITION, PROPENSITY) if c not in frame.columns]
    if missing:
        raise EvaluationError(f"the impressions lack column(s) {missing}")
    s = _floats(scores, "scores")
    if len(s) != len(frame):
        raise EvaluationError(f"{len(s)} scores for {len(frame)} impressions")
    if not np.isfinite(s).all():
        raise EvaluationError(f"scores must be finite; {int((~np.isfinite(s)).sum())} are not")
    for column in (REQUEST_ID, POSITION, PROPENSITY):
        nulls = int(frame[column].isna().sum())
        if nulls:
            raise EvaluationError(f"{column} is null in {nulls} impression(s)")
    propensity = frame[PROPENSITY].to_numpy(dtype=np.float64)
    share = explore_probability(propensity, epsilon)
    if len(frame) == 0:
        return np.empty(0)

    requests, _ = pd.factorize(frame[REQUEST_ID])
    position = frame[POSITION].to_numpy(dtype=np.float64)
    order = np.lexsort((-position, requests))  # by request, then position descending
    same = (requests[order][1:] == requests[order][:-1]) & (position[order][1:] == position[order][:-1])
    if same.any():
        at = order[1:][same][0]
        raise EvaluationError(
            f"request {str(frame[REQUEST_ID].iloc[at])!r} has two impressions at position {position[at]:g}"
        )
    # A suffix maximum per request with one pass: key = request * U + dense score rank is increasing
    # across requests, so its running maximum never crosses from one request into the next.
    _, rank = np.unique(s, return_inverse=True)
    key = requests[order].astype(np.int64) * (int(rank.max()) + 1) + rank[order]
    picked = np.empty(len(s), dtype=bool)
    picked[order] = key == np.maximum.accumulate(key)

    target = np.where(picked, (1 - epsilon) + share, share)
    if epsilon > 0:
        last = propensity >= 1 - _TOLERANCE  # M_p = 1: the only candidate left, whatever either policy prefers
        target[last] = propensity[last]
    return target


# ----------------------------------------------------------------------------- from the lake and the registry
def parse_model_ref(ref: str) -> tuple[str, str]:
    """``version:3`` -> ("version", "3"); ``alias:champion`` -> ("alias", "champion").

    The same references as serving's ranker refs (``reelhouse.serving.ranking.parse_ref``) minus the
    baselines; evaluation does not import the serving package, so this small parser is its own.
    """
    match = _MODEL_REF.match(ref or "")
    if match is None:
        raise EvaluationError(f"model reference {ref!r}: expected version:<n> or alias:<name>")
    return (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))


def estimate_frame(
    frame: pd.DataFrame,
    scores: Any,
    *,
    epsilon: float,
    clip: float = DEFAULT_CLIP,
    reward: str = WATCH_RATIO,
    group: str = REQUEST_ID,
) -> tuple[list[Estimate], Estimate, np.ndarray]:
    """Clipped IPS and SNIPS of ``reward`` for the ranker that gave ``scores``, the logged mean, and the
    target propensities, on impressions ``frame`` (request_id, position, propensity, the reward),
    clustered by ``group``."""
    if reward not in frame.columns or group not in frame.columns:
        raise EvaluationError(f"the impressions lack {reward!r} or {group!r}")
    target = slot_target_propensities(frame, scores, epsilon)
    rewards = frame[reward].to_numpy(dtype=np.float64)
    logging_ = frame[PROPENSITY].to_numpy(dtype=np.float64)
    groups = frame[group].to_numpy(dtype=object)
    estimates = [
        clipped_ips(rewards, target, logging_, clip, groups=groups),
        snips(rewards, target, logging_, groups=groups),
    ]
    return estimates, logged_mean(rewards, groups=groups), target


@dataclass(frozen=True)
class OffPolicyResult:
    model: str  # the reference asked for
    registered_model: str
    version: int  # what it resolved to
    window: dict[str, Any]  # start, end (ISO or None), split (the test split without start / end)
    training_set: dict[str, Any]  # table and version read
    rows: int  # evaluated: impressions with a propensity in the window
    rows_without_propensity: int  # in the window but left out
    epsilon: float
    clip: float
    estimates: list[Estimate]
    logged: Estimate
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "registered_model": self.registered_model,
            "version": self.version,
            "window": dict(self.window),
            "training_set": dict(self.training_set),
            "rows": self.rows,
            "rows_without_propensity": self.rows_without_propensity,
            "epsilon": self.epsilon,
            "clip": self.clip,
            "estimates": [e.to_dict() for e in self.estimates],
            "logged": {
                "mean": _finite_or_none(self.logged.value),
                "ci_low": _finite_or_none(self.logged.ci_low),
                "ci_high": _finite_or_none(self.logged.ci_high),
                "n": self.logged.n,
            },
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def headline(self, estimator: str = "snips") -> dict[str, Any]:
        """One estimate as ``{"version", "estimator", "estimate", "ci": [low, high]}`` (None for NaN),
        the shape the multi-day loop's report pairs with the realised value."""
        chosen = next((e for e in self.estimates if e.estimator == estimator), None)
        if chosen is None:
            raise EvaluationError(f"no {estimator!r} estimate; have {[e.estimator for e in self.estimates]}")
        return {
            "version": self.version,
            "estimator": chosen.estimator,
            "estimate": _finite_or_none(chosen.value),
            "ci": [_finite_or_none(chosen.ci_low), _finite_or_none(chosen.ci_high)],
        }

    def summary(self) -> str:
        """A few lines for people: the window, each estimate next to the logged value."""

        def line(name: str, e: Estimate) -> str:
            extra = f", ESS {e.effective_sample_size:,.0f}" + (f", {e.clipped:,} clipped" if e.clipped else "")
            return f"  {name:<12} {e.value:.4f} [{_num(e.ci_low)}, {_num(e.ci_high)}]{extra}"

        window = self.window
        where = (
            f"split {window['split']!r}"
            if window.get("split")
            else f"[{window.get('start') or '-inf'}, {window.get('end') or '+inf'})"
        )
        lines = [
            f"off-policy {WATCH_RATIO} of {self.registered_model} v{self.version} ({self.model}) on "
            f"{self.rows:,} impressions of {self.training_set.get('table')} v{self.training_set.get('version')} "
            f"{where}; epsilon {self.epsilon}, clip {self.clip}; {self.rows_without_propensity:,} without a propensity",
            *(line(e.estimator, e) for e in self.estimates),
            line("logged", self.logged),
        ]
        return "\n".join(lines)


def _num(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.4f}"


def _utc_iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat()


@dataclass(frozen=True)
class _Window:
    frame: pd.DataFrame  # impressions with a propensity and a position
    table_version: int
    without_propensity: int
    without_position: int  # with a propensity but no position: cannot be placed on the page


def _read_window(config: ReelhouseConfig, start: dt.datetime | None, end: dt.datetime | None) -> _Window:
    """The training set's rows with ``impression_time`` in ``[start, end)`` (neither: the test split),
    read with delta-rs like :func:`reelhouse.training.ranker.read_training_set`."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from reelhouse.lake import Lake

    table = config.training.table
    lake = Lake(config.lake)
    version = lake.version(table)
    snapshot = lake.snapshot(table, version)
    names = set(pa.schema(snapshot.schema().to_arrow()).names)
    needed = list(dict.fromkeys([*ID_COLUMNS, POSITION, WATCH_RATIO, *MODEL_INPUT_COLUMNS]))
    missing = [c for c in needed if c not in names]
    if missing:
        raise EvaluationError(f"{table} v{version} lacks {missing}; rebuild it with the current training-set builder")
    if PROPENSITY not in names:
        raise EvaluationError(
            f"{table} v{version} has no {PROPENSITY!r} column: it was built before impressions carried their "
            "propensity; rebuild it (jobs/build_training_set.py) over traffic the current feed served"
        )
    if start is None and end is None:
        condition = pc.field(SPLIT) == DEFAULT_SPLIT
    else:
        condition = None
        if start is not None:
            condition = pc.field(IMPRESSION_TIME) >= pa.scalar(start.astimezone(dt.UTC))
        if end is not None:
            before = pc.field(IMPRESSION_TIME) < pa.scalar(end.astimezone(dt.UTC))
            condition = before if condition is None else condition & before
    columns = [*needed, PROPENSITY]
    rows: pa.Table = pa.table(snapshot.to_pyarrow_table(columns=columns, filters=condition))
    has_propensity = pc.is_valid(rows[PROPENSITY])
    without_propensity = rows.num_rows - int(pc.sum(has_propensity).as_py() or 0)
    rows = rows.filter(has_propensity)
    has_position = pc.is_valid(rows[POSITION])
    without_position = rows.num_rows - int(pc.sum(has_position).as_py() or 0)
    rows = rows.filter(has_position)
    log.info(
        "read %s v%d: %d impressions with a propensity (%d without, %d without a position)",
        table,
        version,
        rows.num_rows,
        without_propensity,
        without_position,
    )
    return _Window(rows.to_pandas(), version, without_propensity, without_position)


def _score_rows(config: ReelhouseConfig, kind: str, value: str, frame: pd.DataFrame) -> tuple[int, np.ndarray]:
    """Resolve the reference, load that version and score ``frame`` as the promotion gate does
    (:func:`reelhouse.training.models.load_registered`, ``predict_proba``)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from reelhouse.tracking import configure_mlflow
    from reelhouse.training.models import load_registered, model_inputs

    configure_mlflow(config)
    name = config.training.registered_model
    try:
        if kind == "version":
            version = int(value)
        else:
            version = int(MlflowClient().get_model_version_by_alias(name, value).version)
        model = load_registered(name, version)
    except MlflowException as e:
        raise EvaluationError(f"{name} {kind}:{value} cannot be loaded from the registry: {e}") from e
    scores = model.predict_proba(model_inputs(frame).loc[:, list(MODEL_INPUT_COLUMNS)])[:, 1]
    return version, np.asarray(scores, dtype=np.float64)


def evaluate_off_policy(
    config: ReelhouseConfig,
    model_ref: str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    *,
    clip: float = DEFAULT_CLIP,
    epsilon: float | None = None,
) -> OffPolicyResult:
    """Clipped IPS and SNIPS of ``watch_ratio`` for the registered ranker ``model_ref`` (``version:N`` or
    ``alias:<name>`` of ``training.registered_model``) on the training set's impressions with
    ``impression_time`` in ``[start, end)`` (neither given: its ``test`` split), next to the logged
    policy's value; CIs clustered by request. ``epsilon`` defaults to ``serving.explore_epsilon``.
    """
    kind, value = parse_model_ref(model_ref)
    epsilon = _check_epsilon(config.serving.explore_epsilon if epsilon is None else epsilon)
    if epsilon == 0:
        raise EvaluationError(
            "serving.explore_epsilon is 0: a deterministic feed logs no exploration, so no other policy can be "
            "evaluated on its traffic; serve with explore_epsilon > 0 first"
        )
    if start is not None and end is not None and start >= end:
        raise EvaluationError(f"the window is empty: start {_utc_iso(start)} is not before end {_utc_iso(end)}")
    window = _read_window(config, start, end)
    if window.frame.empty:
        raise EvaluationError(
            f"no impression with a propensity in the window ({window.without_propensity} without one); "
            "choose a window of traffic the current feed served"
        )
    version, scores = _score_rows(config, kind, value, window.frame)
    estimates, logged, _ = estimate_frame(window.frame, scores, epsilon=epsilon, clip=clip)

    notes = [APPROXIMATION, PER_SLOT]
    ips = estimates[0]
    if ips.clipped:
        notes.append(
            f"{ips.clipped:,} of {ips.n:,} importance weights exceeded the clip {clip} and were capped "
            "(clipped IPS is biased down by that; SNIPS is not clipped)."
        )
    if start is None and end is None:
        notes.append(
            f"Window: the training set's {DEFAULT_SPLIT!r} split, which rankers trained on this version were not "
            "fitted on."
        )
    else:
        notes.append(
            "Window: every split of the training set in [start, end); rows the model was fitted on bias the "
            "estimate upwards, so prefer a window after the model's training data."
        )
    if window.without_position:
        notes.append(f"{window.without_position:,} impression(s) with a propensity but no position were left out.")
    return OffPolicyResult(
        model=model_ref,
        registered_model=config.training.registered_model,
        version=version,
        window={
            "start": _utc_iso(start),
            "end": _utc_iso(end),
            "split": DEFAULT_SPLIT if start is None and end is None else None,
        },
        training_set={"table": config.training.table, "version": window.table_version},
        rows=len(window.frame),
        rows_without_propensity=window.without_propensity,
        epsilon=epsilon,
        clip=float(clip),
        estimates=estimates,
        logged=logged,
        notes=notes,
    )
