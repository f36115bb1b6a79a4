"""The running service keeps the promises of its OpenAPI document, and the feed keeps its token.

schemathesis reads the checked-in docs/openapi.json (the document of conf/local.yaml's limits,
which the service it fuzzes is given and serves) and sends what it generates from it to the
service on the session's environment (real store, registry, broker): documented examples, the
coverage phase's boundary cases and ``MAX_EXAMPLES`` fuzzed requests per operation, valid and
invalid ones, each with the token. Every built-in check runs on every answer (status code,
content type, body and headers as documented, valid data accepted, invalid data refused, auth
enforced, undocumented methods refused with 405 and Allow); on top, every 4xx says why, and no
answer is a 5xx other than a documented 503.

Generation is seeded: ``REELHOUSE_CONTRACT_SEED`` (printed) replays a run. Posted events that are
valid land in the environment's topic, as a client's would.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from reelhouse.config import load_config
from reelhouse.events.contract import COMMON_FIELDS, TYPE_FIELDS
from reelhouse.serving.server import ServingServer
from tests.conftest import PROJECT_DIR
from tests.integration.serving.conftest import AUTH, ServingEnvironment, TopicReader, serving_config

pytestmark = pytest.mark.integration

DOCUMENT = PROJECT_DIR / "docs" / "openapi.json"
SEED = int(os.environ.get("REELHOUSE_CONTRACT_SEED", "1212"))
MAX_EXAMPLES = 50  # per operation in the fuzzing phase; the examples and coverage phases add their own
MIN_CASES = 75
UNAVAILABLE = 503  # deliberate (overload, Kafka, readiness) and documented; any other 5xx is a failure
INTEGER_FIELDS = frozenset(
    {"schema_version"}
    | {spec.name for spec in COMMON_FIELDS if spec.kind is int}
    | {spec.name for specs in TYPE_FIELDS.values() for spec in (*specs[0], *specs[1]) if spec.kind is int}
)
# The limits the document states (conf/local.yaml's); the fuzzed service is given the same.
DOCUMENTED = {
    "serving": ("default_k", "max_k", "max_body_bytes", "max_events_per_request"),
    "ingest": ("max_payload_bytes", "max_clock_skew_s", "max_event_age_days"),
}


class Ledger:
    """What the run sent and got: (operation, status) counts, for the test that checks its reach."""

    def __init__(self) -> None:
        self.answers: Counter[tuple[str, int]] = Counter()

    def count(self, operation: str, low: int, high: int) -> int:
        return sum(n for (name, status), n in self.answers.items() if name == operation and low <= status <= high)


LEDGER = Ledger()

print(f"schemathesis seed {SEED} (REELHOUSE_CONTRACT_SEED={SEED} replays this run)")
schema = schemathesis.openapi.from_path(
    DOCUMENT,
    config=SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
            "checks": {
                "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", str(UNAVAILABLE)]},
                # 413 refuses a documented limit (maxItems of the batch) as much as 422 does.
                "negative_data_rejection": {
                    "expected-statuses": ["400", "401", "404", "405", "406", "413", "415", "422", "5xx"]
                },
            },
        }
    ),
)


@pytest.fixture(scope="module")
def documented_server(serving_env: ServingEnvironment) -> Iterator[ServingServer]:
    """The service on the session environment with the limits docs/openapi.json states, serving that document."""
    documented = load_config(PROJECT_DIR / "conf" / "local.yaml", environ={})
    limits = {
        section: {name: getattr(getattr(documented, section), name) for name in names}
        for section, names in DOCUMENTED.items()
    }
    with ServingServer(serving_config(serving_env.config, **limits)) as running:
        served = httpx.get(f"{running.url}/openapi.json").json()
        assert served == json.loads(DOCUMENT.read_text()), (
            "the fuzzed service does not serve docs/openapi.json: regenerate it "
            "(reelhouse serve --write-openapi docs/openapi.json) or align DOCUMENTED with what the document states"
        )
        yield running


def a_refusal_says_why(ctx: Any, response: Any, case: Any) -> None:
    """Every 4xx carries ``{"detail": [{"reason": <non-empty>, ...}, ...]}``, whoever answered it."""
    if 400 <= response.status_code < 500:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("detail"), list) and body["detail"], body
        for problem in body["detail"]:
            assert isinstance(problem.get("reason"), str) and problem["reason"], body


def as_the_document_says_in_words(body: Any) -> None:
    """Two rules of the event contract JSON Schema cannot state, so the document states them in
    words and a client follows them: the event time lies in a window around its receipt (every
    integer ``event_time`` becomes the current time), and integers are written as integers (an
    integral float that JSON Schema counts as an integer, 5.0, is sent as 5). Only values the schema
    already admits change, so a case generated invalid stays invalid."""
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        return
    now_ms = int(time.time() * 1000)
    for event in body["events"]:
        if not isinstance(event, dict):
            continue
        for name in INTEGER_FIELDS:
            value = event.get(name)
            if type(value) is float and value.is_integer():
                event[name] = int(value)
        if type(event.get("event_time")) is int:
            event["event_time"] = now_ms


@schema.parametrize()
def test_every_generated_request_is_answered_as_documented(case, documented_server: ServingServer):
    if case.operation.path == "/v1/events":
        as_the_document_says_in_words(case.body)
    response = case.call_and_validate(
        base_url=documented_server.url, headers=AUTH, additional_checks=[a_refusal_says_why]
    )
    LEDGER.answers[(case.operation.label, response.status_code)] += 1


def test_the_run_reached_valid_and_invalid_requests_of_every_operation():
    answers = LEDGER.answers
    assert answers, "runs after test_every_generated_request_is_answered_as_documented (run the whole module)"
    print(f"schemathesis seed {SEED}: {sum(answers.values())} cases, by operation and status: {dict(answers)}")
    assert sum(answers.values()) >= MIN_CASES
    assert LEDGER.count("GET /v1/feed", 200, 200) and LEDGER.count("GET /v1/feed", 422, 422)
    assert LEDGER.count("POST /v1/events", 202, 202), "no generated batch was valid: the document admits none"
    assert LEDGER.count("POST /v1/events", 422, 422)
    for operation in ("GET /healthz", "GET /readyz", "GET /metrics"):
        assert LEDGER.count(operation, 200, 200), operation
    assert not any(status >= 500 and status != UNAVAILABLE for _, status in answers)


# ----------------------------------------------------------------------------- the feed's token
def test_the_feed_without_the_token_is_refused_and_changes_nothing(
    server: ServingServer, serving_env: ServingEnvironment, topic: TopicReader
):
    user = serving_env.users[36]
    metrics = server.state.metrics
    before = (metrics.in_flight._value.get(), metrics.rejected_requests.labels("feed", "401")._value.get())
    refused = ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer"}, {"Authorization": "Basic x"})
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for headers in refused:
            # Parameters that would be refused too: the token is checked before anything else.
            response = client.get("/v1/feed", params={"user_id": user, "k": 4, "usr": "x"}, headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            problem = {"field": "authorization", "reason": "unauthorized"}
            assert [{k: p[k] for k in problem} for p in response.json()["detail"]] == [problem]
        assert metrics.rejected_requests.labels("feed", "401")._value.get() == before[1] + 4
        assert metrics.in_flight._value.get() == before[0]
        assert server.state.writer.overlay(user) == ([], [])  # nothing marked seen
        # With the token the same user gets a page whose impressions reach Kafka: the refused
        # requests before it wrote none (the topic is read in order, per user key).
        page = client.get("/v1/feed", params={"user_id": user, "k": 4}, headers=AUTH)
        assert page.status_code == 200, page.text
        request_id = page.json()["request_id"]
    messages = topic.wait_for(lambda found: sum(v.get("request_id") == request_id for _, v in found) == 4)
    mine = [v for key, v in messages if key == user]
    assert {v["request_id"] for v in mine} == {request_id} and len(mine) == 4
