"""The training step's result, which the promote step reads before asking the registry."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from reelhouse.config import load_config
from reelhouse.errors import ReelhouseError
from reelhouse.orchestration.registry import check_promotion, parse_train_result
from reelhouse.orchestration.settings import project_dir


def test_the_training_result_is_its_last_line():
    result = {"promotion": {"decision": "promoted", "champion_version": 3}}
    assert parse_train_result("log line\n" + json.dumps(result) + "\n") == result


@pytest.mark.parametrize(
    ("output", "message"),
    [(None, "no result"), ("", "no result"), ("Traceback ...", "not its JSON result"), ('{"models": {}}', "no promotion")],
)
def test_a_training_step_without_a_decision_fails_the_promote_step(output, message):
    with pytest.raises(ReelhouseError, match=message):
        parse_train_result(output)


class FakeRegistry:
    """What check_promotion asks MLflow: the model's aliases and the candidate run's tags."""

    def __init__(self, aliases: dict[str, str], run_tags: dict[str, str]) -> None:
        self.aliases, self.run_tags = aliases, run_tags

    def __call__(self, tracking_uri: str, registry_uri: str) -> FakeRegistry:
        return self

    def get_registered_model(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(aliases=self.aliases)

    def get_run(self, run_id: str) -> SimpleNamespace:
        return SimpleNamespace(data=SimpleNamespace(tags=self.run_tags))


DECISION = {
    "registered_model": "reelhouse-ranker", "metric": "test_auc", "decision": "promoted", "reason": "no champion yet",
    "candidate_kind": "lightgbm", "candidate_version": 4, "candidate_run_id": "r4", "candidate_score": 0.71,
    "previous_champion_version": 2, "champion_version": 4, "challenger_version": 3,
}  # fmt: skip


@pytest.fixture
def config():
    return load_config(project_dir() / "conf" / "local.yaml", environ={})


def run_check(monkeypatch, config, aliases, run_tags, decision=DECISION):
    import mlflow

    monkeypatch.setattr(mlflow, "MlflowClient", FakeRegistry(aliases, run_tags))
    return check_promotion(config, json.dumps({"promotion": decision}))


def test_a_decision_the_registry_confirms_is_reported(monkeypatch, config):
    report = run_check(monkeypatch, config, {"champion": "4", "challenger": "3"}, {"promotion.decision": "promoted"})

    assert report["decision"] == "promoted"
    assert (report["champion_version"], report["challenger_version"]) == (4, 3)
    assert report["candidate"] == {"kind": "lightgbm", "version": 4, "score": 0.71}


def test_a_champion_alias_elsewhere_fails_the_check(monkeypatch, config):
    # Another training run promoted version 5 after this one decided.
    with pytest.raises(ReelhouseError, match="reelhouse-ranker@champion is '5'"):
        run_check(monkeypatch, config, {"champion": "5"}, {"promotion.decision": "promoted"})


def test_a_decision_missing_from_the_run_fails_the_check(monkeypatch, config):
    with pytest.raises(ReelhouseError, match="records promotion.decision=None"):
        run_check(monkeypatch, config, {"champion": "4"}, {})
