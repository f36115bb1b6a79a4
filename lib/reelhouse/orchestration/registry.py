"""The promotion decision of a training run, checked against what the model registry holds.

The training job (``jobs/train_ranker.py``) runs the promotion gate itself and prints the decision
in its JSON result. The daily DAG's ``promote`` step reads that result and confirms it in the
registry: the ``champion`` alias must point at the version the decision names, and the decision
must be recorded on the candidate's run. A mismatch (another training run in between, a failed
alias update) fails the step rather than report a champion that does not serve.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import ReelhouseError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


def parse_train_result(output: str | None) -> dict[str, Any]:
    """The JSON result of ``jobs/train_ranker.py`` (its last line of output)."""
    lines = [line for line in (output or "").strip().splitlines() if line.strip()]
    if not lines:
        raise ReelhouseError("the training step returned no result; see its log")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise ReelhouseError(f"the training step's last line is not its JSON result: {lines[-1][:200]!r}") from e
    if not isinstance(result, dict) or not isinstance(result.get("promotion"), dict):
        raise ReelhouseError("the training result has no promotion decision; was the gate run?")
    return result


def check_promotion(config: ReelhouseConfig, train_output: str | None) -> dict[str, Any]:
    """The decision of the training run, once the registry confirms it; raises if it does not."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    decision = parse_train_result(train_output)["promotion"]
    name = decision.get("registered_model") or config.training.registered_model
    uri = config.mlflow.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        aliases = client.get_registered_model(name).aliases
        run_tags = client.get_run(decision["candidate_run_id"]).data.tags
    except MlflowException as e:
        raise ReelhouseError(f"cannot read {name} from the registry at {uri}: {e}") from e
    champion = aliases.get(CHAMPION)
    if champion is None or int(champion) != int(decision["champion_version"]):
        raise ReelhouseError(
            f"the training run decided {decision['decision']} with champion v{decision['champion_version']}, "
            f"but {name}@{CHAMPION} is {champion!r} in the registry; did another training run promote since?"
        )
    if run_tags.get("promotion.decision") != decision["decision"]:
        raise ReelhouseError(
            f"run {decision['candidate_run_id']} records promotion.decision={run_tags.get('promotion.decision')!r}, "
            f"not {decision['decision']!r}"
        )
    report = {
        "registered_model": name,
        "decision": decision["decision"],
        "reason": decision.get("reason"),
        "metric": decision.get("metric"),
        "candidate": {
            "kind": decision.get("candidate_kind"),
            "version": decision.get("candidate_version"),
            "score": decision.get("candidate_score"),
        },
        "previous_champion_version": decision.get("previous_champion_version"),
        "champion_version": int(champion),
        "challenger_version": None if aliases.get(CHALLENGER) is None else int(aliases[CHALLENGER]),
    }
    log.info("%s: %s; champion v%s (%s)", name, report["decision"], champion, report["reason"])
    return report
