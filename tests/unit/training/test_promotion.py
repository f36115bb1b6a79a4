"""The promotion gate's off-policy guard (training.off_policy_guard), with the estimate faked."""

from __future__ import annotations

import pytest

from reelhouse.errors import EvaluationError
from reelhouse.training import promotion


class _Result:
    def __init__(self, estimate, ci, logged):
        self._estimate, self._ci, self._logged = estimate, ci, logged

    def headline(self, estimator):
        return {"version": 3, "estimator": estimator, "estimate": self._estimate, "ci": self._ci}

    def to_dict(self):
        return {"logged": self._logged}


@pytest.mark.parametrize(
    ("estimate", "ci", "logged_low", "allowed"),
    [
        (0.40, [0.35, 0.45], 0.50, False),  # clearly worse than what is served: held back
        (0.52, [0.45, 0.60], 0.50, True),  # the CIs overlap: the offline metric decides
        (None, [None, None], 0.50, True),  # no estimate: nothing to guard with
    ],
)
def test_the_guard_holds_back_only_a_candidate_clearly_worse_than_the_logged_policy(
    monkeypatch, estimate, ci, logged_low, allowed
):
    logged = {"mean": 0.55, "ci_low": logged_low, "ci_high": 0.6, "n": 100}
    monkeypatch.setattr(
        "reelhouse.evaluation.off_policy.evaluate_off_policy", lambda config, ref: _Result(estimate, ci, logged)
    )
    ok, reason = promotion._off_policy_guard(object(), 3)
    assert ok is allowed
    assert "off-policy watch ratio" in reason and (ok or reason.startswith("held back"))


def test_without_logged_propensities_the_guard_steps_aside(monkeypatch):
    def fail(config, ref):
        raise EvaluationError("no rows with a propensity in the window")

    monkeypatch.setattr("reelhouse.evaluation.off_policy.evaluate_off_policy", fail)
    ok, reason = promotion._off_policy_guard(object(), 3)
    assert ok and "not applied" in reason and "propensity" in reason
