"""The promotion gate: which registered ranker serves (alias ``champion``) and which waits (``challenger``).

Of the versions one training run registers, the best on ``training.promotion_metric`` is the
candidate. The current champion is loaded from the registry and scored on the same test set with
the same metric. The candidate takes ``champion`` only if there is no champion yet or its score is
at least the champion's plus ``training.promotion_margin``; it is then joined by the run's other
new version as ``challenger``. Otherwise the champion keeps its alias and the candidate becomes
the ``challenger``.

A champion that cannot be loaded or scored on the new test set (an input column it needs is gone,
the installed libraries cannot load it) cannot be compared; since it could not serve today's
inputs either, the candidate is promoted and the decision's reason says why.

The decision is recorded as ``promotion.*`` tags on the candidate's run, as a ``promotion`` tag on
its model version and, given the training run, as ``promotion.json`` on that run.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import ReelhouseError
from reelhouse.training.columns import LABEL, MODEL_INPUT_COLUMNS
from reelhouse.training.metrics import classifier_scores

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
USER_COLUMN = "user_id"  # ranking metrics are per user


@dataclass(frozen=True)
class Candidate:
    """A newly registered version and its score on the promotion metric."""

    kind: str
    version: int
    run_id: str
    score: float


@dataclass(frozen=True)
class PromotionDecision:
    registered_model: str
    metric: str
    margin: float
    decision: Literal["promoted", "kept_champion"]
    reason: str
    candidate_kind: str
    candidate_version: int
    candidate_run_id: str
    candidate_score: float
    previous_champion_version: int | None  # the champion before the decision
    previous_champion_score: float | None  # its score on this test set (None: none, or not scorable)
    champion_version: int  # who holds each alias after the decision
    challenger_version: int | None

    @property
    def promoted(self) -> bool:
        return self.decision == "promoted"

    def to_dict(self) -> dict[str, Any]:
        return {key: _finite_or_none(value) for key, value in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def tags(self) -> dict[str, str]:
        """``promotion.<field>`` run tags (MLflow tag values are strings; absent values are left out)."""
        return {f"promotion.{key}": str(value) for key, value in self.to_dict().items() if value is not None}


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def _orderable(score: float) -> float:
    return -math.inf if math.isnan(score) else score


def metric_on(test: pd.DataFrame, probabilities: Any, metric: str) -> float:
    """``metric`` (``test_auc``, ``test_ndcg_at_10`` ...) of ``probabilities`` on the test rows."""
    scores = classifier_scores(test[USER_COLUMN], test[LABEL], probabilities)
    name = metric.removeprefix("test_")
    if name not in scores:
        known = sorted(f"test_{k}" for k in scores)
        raise ReelhouseError(f"unknown promotion metric {metric!r}; expected one of {known}")
    return scores[name]


def _current_champion(client: MlflowClient, name: str) -> int | None:
    from mlflow.exceptions import MlflowException

    try:
        aliases = client.get_registered_model(name).aliases
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    version = aliases.get(CHAMPION)
    return None if version is None else int(version)


def _champion_score(name: str, version: int, metric: str, test: pd.DataFrame) -> tuple[float | None, str]:
    """The champion's score on ``test``, or None and why it could not be had."""
    from reelhouse.training.models import load_registered

    try:
        model = load_registered(name, version)
        probabilities = model.predict_proba(test.loc[:, list(MODEL_INPUT_COLUMNS)])[:, 1]
    # Whatever stops the old model from scoring today's inputs (missing columns, changed dtypes,
    # a library that no longer unpickles it) means it cannot be compared, nor serve: see the docstring.
    except Exception as e:
        return None, f"champion v{version} could not be scored on this test set ({type(e).__name__}: {e})"
    return metric_on(test, probabilities, metric), ""


def _off_policy_guard(config: ReelhouseConfig, version: int) -> tuple[bool, str]:
    """``training.off_policy_guard``: False when the candidate's off-policy estimate (SNIPS, on the
    test split's logged traffic) is below the logged policy's value with both CIs apart."""
    from reelhouse.evaluation.off_policy import evaluate_off_policy

    try:
        result = evaluate_off_policy(config, f"version:{version}")
    except ReelhouseError as e:  # no propensities logged (e.g. open-loop traffic): nothing to guard with
        return True, f"off-policy guard not applied ({e})"
    estimate, logged = result.headline("snips"), result.to_dict()["logged"]
    high, low = estimate["ci"][1], logged["ci_low"]
    text = f"off-policy watch ratio {estimate['estimate']} (CI high {high}) vs logged {logged['mean']} (CI low {low})"
    if high is not None and low is not None and high < low:
        return False, f"held back: {text}"
    return True, text


def promote_if_better(
    config: ReelhouseConfig,
    candidates: Sequence[Candidate],
    test: pd.DataFrame,
    *,
    parent_run_id: str | None = None,
    client: MlflowClient | None = None,
) -> PromotionDecision:
    """Gate ``candidates`` (the versions one training run registered) against the champion.

    ``test`` holds the test rows the candidates were scored on: MODEL_INPUT_COLUMNS in the dtypes
    of :func:`reelhouse.training.models.model_inputs`, the label and ``user_id``. MLflow must be
    configured (:func:`reelhouse.tracking.configure_mlflow`).
    """
    from mlflow import MlflowClient

    if not candidates:
        raise ReelhouseError("the promotion gate needs at least one newly registered version")
    client = client or MlflowClient()
    training = config.training
    name, metric, margin = training.registered_model, training.promotion_metric, training.promotion_margin
    ranked = sorted(candidates, key=lambda c: _orderable(c.score), reverse=True)
    candidate, runner_up = ranked[0], (ranked[1] if len(ranked) > 1 else None)

    champion = _current_champion(client, name)
    champion_score: float | None = None
    if champion is None:
        promote, reason = True, "no champion yet"
    else:
        champion_score, failure = _champion_score(name, champion, metric, test)
        if champion_score is None:
            promote, reason = True, failure
        else:
            promote = candidate.score >= champion_score + margin
            relation = ">=" if promote else "<"
            reason = (
                f"{metric} {candidate.score:.5f} {relation} champion v{champion} {champion_score:.5f} + margin {margin}"
            )
    if promote and champion is not None and training.off_policy_guard:
        promote, guard = _off_policy_guard(config, candidate.version)
        reason = f"{reason}; {guard}"

    if promote:
        client.set_registered_model_alias(name, CHAMPION, str(candidate.version))
        challenger = runner_up.version if runner_up is not None else None
    else:
        challenger = candidate.version
    if challenger is not None:
        client.set_registered_model_alias(name, CHALLENGER, str(challenger))

    decision = PromotionDecision(
        registered_model=name,
        metric=metric,
        margin=margin,
        decision="promoted" if promote else "kept_champion",
        reason=reason,
        candidate_kind=candidate.kind,
        candidate_version=candidate.version,
        candidate_run_id=candidate.run_id,
        candidate_score=candidate.score,
        previous_champion_version=champion,
        previous_champion_score=champion_score,
        champion_version=candidate.version if promote else champion,  # type: ignore[arg-type]
        challenger_version=challenger,
    )
    for key, value in decision.tags().items():
        client.set_tag(candidate.run_id, key, value)
    client.set_model_version_tag(name, str(candidate.version), "promotion", decision.decision)
    if parent_run_id is not None:
        client.log_dict(parent_run_id, decision.to_dict(), "promotion.json")
    log.info("%s v%d (%s): %s; %s", name, candidate.version, candidate.kind, decision.decision, reason)
    return decision


def promote_versions(config: ReelhouseConfig, versions: Sequence[int]) -> PromotionDecision:
    """Gate registered ``versions`` trained separately (the daily DAG's parallel training tasks).

    Every version must come from the same training-set snapshot (the ``training_set_version``
    tag of its run); that snapshot's test split is what the champion is scored on, and each
    candidate's score is the metric its run logged on it. The decision is then confirmed by
    reading the aliases back from the registry.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from reelhouse.tracking import configure_mlflow
    from reelhouse.training.ranker import read_training_set
    from reelhouse.training.splits import split_training_set

    if not versions:
        raise ReelhouseError("promote: give at least one registered version")
    configure_mlflow(config)
    client = MlflowClient()
    training = config.training
    name, metric = training.registered_model, training.promotion_metric
    candidates, snapshots = [], set()
    for version in dict.fromkeys(int(v) for v in versions):
        try:
            model_version = client.get_model_version(name, str(version))
            run = client.get_run(model_version.run_id)
        except MlflowException as e:
            raise ReelhouseError(f"{name} v{version} cannot be read from the registry: {e}") from e
        score = run.data.metrics.get(metric)
        if score is None:
            raise ReelhouseError(f"{name} v{version}: its run {run.info.run_id} logged no {metric}")
        snapshots.add((run.data.tags.get("training_set_table"), run.data.tags.get("training_set_version")))
        kind = model_version.tags.get("model_kind") or run.data.tags.get("model_kind", "unknown")
        candidates.append(Candidate(kind, version, run.info.run_id, float(score)))
    if len(snapshots) != 1 or None in next(iter(snapshots)):
        raise ReelhouseError(
            f"versions {list(versions)} were not trained on one recorded training-set snapshot ({sorted(map(str, snapshots))}); "
            "gate versions of one training run together"
        )
    table, table_version = next(iter(snapshots))
    if table != training.table:
        config = config.model_copy(update={"training": training.model_copy(update={"table": table})})
    rows, _ = read_training_set(config, int(table_version))
    test = split_training_set(rows, config.training).test
    decision = promote_if_better(config, candidates, test, client=client)
    # No training run spans the versions gated here: the decision goes beside the chosen candidate.
    client.log_dict(decision.candidate_run_id, decision.to_dict(), "promotion.json")
    aliases = client.get_registered_model(name).aliases
    if int(aliases.get(CHAMPION, -1)) != decision.champion_version:
        raise ReelhouseError(
            f"{name}@{CHAMPION} is {aliases.get(CHAMPION)!r} after the gate decided v{decision.champion_version}; "
            "did another promotion run at the same time?"
        )
    return decision
