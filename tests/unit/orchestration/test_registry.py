"""The training steps' results, which the promote step reads to know what to gate."""

from __future__ import annotations

import json

import pytest

from reelhouse.errors import ReelhouseError
from reelhouse.orchestration.registry import parse_job_result, registered_versions


def test_the_job_result_is_its_last_line():
    result = {"models": {"lightgbm": {"version": 4}}, "promotion": None}
    assert parse_job_result("log line\n" + json.dumps(result) + "\n", "train_lightgbm") == result


@pytest.mark.parametrize(
    ("output", "message"),
    [(None, "no result"), ("", "no result"), ("Traceback ...", "not its JSON result"), ("[1, 2]", "not a JSON object")],
)
def test_a_step_without_a_result_fails_the_reader(output, message):
    with pytest.raises(ReelhouseError, match=message):
        parse_job_result(output, "train_lightgbm")


def test_the_versions_a_training_step_registered():
    output = json.dumps({"models": {"lightgbm": {"version": 7, "run_id": "r7"}}})
    assert registered_versions(output, "lightgbm") == [7]


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ({}, "no lightgbm model"),
        ({"lightgbm": {"version": None}}, "no registered version"),
        (None, "no lightgbm model"),
    ],
)
def test_a_training_step_without_its_version_fails_the_promote_step(models, message):
    with pytest.raises(ReelhouseError, match=message):
        registered_versions(json.dumps({"models": models}), "lightgbm")
