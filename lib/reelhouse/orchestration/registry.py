"""What the daily DAG's training steps hand to its promote step: the versions they registered.

Each training task (``jobs/train_ranker.py --models <kind> --no-promote``) prints its result as
JSON on its last line, which Airflow keeps as the task's XCom. The promote step reads the
registered version of every kind from those results and gates them together
(``jobs/promote_ranker.py``); a result without a registered version fails the step rather than
promote from partial training.
"""

from __future__ import annotations

import json
from typing import Any

from reelhouse.errors import ReelhouseError


def parse_job_result(output: str | None, step: str) -> dict[str, Any]:
    """The JSON result a job printed on its last line of output."""
    lines = [line for line in (output or "").strip().splitlines() if line.strip()]
    if not lines:
        raise ReelhouseError(f"the {step} step returned no result; see its log")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        raise ReelhouseError(f"the {step} step's last line is not its JSON result: {lines[-1][:200]!r}") from e
    if not isinstance(result, dict):
        raise ReelhouseError(f"the {step} step's result is not a JSON object: {lines[-1][:200]!r}")
    return result


def registered_versions(train_output: str | None, kind: str) -> list[int]:
    """The versions the training step of ``kind`` registered (one per model it trained)."""
    models = parse_job_result(train_output, f"train_{kind}").get("models")
    if not isinstance(models, dict) or kind not in models:
        raise ReelhouseError(f"the train_{kind} result has no {kind} model; was it trained?")
    versions = [model.get("version") for model in models.values() if isinstance(model, dict)]
    if not versions or not all(isinstance(v, int) for v in versions):
        raise ReelhouseError(f"the train_{kind} result has no registered version: {models}")
    return versions
