"""The checked-in OpenAPI document is the app's: regenerate it with
``reelhouse serve --write-openapi docs/openapi.json`` when the API changes."""

from __future__ import annotations

import json
import time

import jsonschema_rs

from reelhouse.cli import main
from reelhouse.config import load_config
from reelhouse.events.contract import EVENT_TYPES, Invalid, make_event, validate_object
from reelhouse.serving.app import create_app
from tests.conftest import PROJECT_DIR

DOCUMENT = PROJECT_DIR / "docs" / "openapi.json"


def config():
    return load_config(PROJECT_DIR / "conf" / "local.yaml", environ={})


def test_docs_openapi_json_is_the_apps_document():
    assert json.loads(DOCUMENT.read_text()) == create_app(config()).openapi(), (
        "docs/openapi.json is out of date: run `reelhouse serve --write-openapi docs/openapi.json`"
    )


def test_the_document_describes_every_route_and_its_errors():
    document = create_app(config()).openapi()
    assert set(document["paths"]) == {"/v1/feed", "/v1/events", "/healthz", "/readyz", "/metrics"}
    feed = document["paths"]["/v1/feed"]["get"]
    assert [p["name"] for p in feed["parameters"]] == [
        "user_id",
        "k",
        "session_id",
        "os",
        "app_version",
        "country",
        "network",
    ]
    assert feed["parameters"][1]["schema"]["maximum"] == config().serving.max_k
    assert set(feed["responses"]) == {"200", "401", "422", "503"}
    events = document["paths"]["/v1/events"]["post"]
    assert set(events["responses"]) == {"202", "400", "401", "413", "422", "503"}
    for operation in (feed, events):
        assert operation["security"] == [{"bearer": []}]
        assert operation["responses"]["401"]["headers"]["WWW-Authenticate"]["required"]
        assert operation["responses"]["503"]["headers"]["Retry-After"]["required"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert set(document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(document["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}


def test_every_json_answer_has_a_schema_that_json_can_satisfy():
    # The old document declared `"type": "string"` beside each answer's $ref: no JSON object fits.
    document = create_app(config()).openapi()
    for path, operations in document["paths"].items():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                for media_type, content in response.get("content", {}).items():
                    schema = content["schema"]
                    expected = "object" if "json" in media_type else "string"
                    assert set(schema) == {"$ref"} or schema.get("type") == expected, (path, status, schema)


def test_error_answers_list_their_reasons():
    document = create_app(config()).openapi()

    def reasons(path: str, method: str, status: str) -> set[str]:
        schema = document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
        return set(schema["properties"]["detail"]["items"]["properties"]["reason"]["enum"])

    assert reasons("/v1/feed", "get", "401") == {"unauthorized"}
    assert reasons("/v1/feed", "get", "422") == {
        "missing_field",
        "invalid_value",
        "unknown_parameter",
        "repeated_parameter",
    }
    assert reasons("/v1/feed", "get", "503") == {"overloaded"}
    assert {"invalid_json", "invalid_body", "missing_field", "unknown_event_type", "timestamp_out_of_range"} <= reasons(
        "/v1/events", "post", "422"
    )
    assert reasons("/v1/events", "post", "413") == {"body_too_large", "too_many_events"}
    assert reasons("/v1/events", "post", "503") == {"overloaded", "kafka_unavailable", "kafka_backlog", "not_delivered"}


# ----------------------------------------------------------------------------- the event schema
NOW_MS = int(time.time() * 1000)
DEVICE = {"os": "android", "app_version": "31.2", "country": "BR", "network": "cellular"}


def event(kind: str = "like", /, **fields) -> dict:
    extra = {"play": {"watch_ms": 10, "video_duration_ms": 100}}.get(kind, {})
    base = make_event(
        event_id="e1",
        event_type=kind,
        user_id="u1",
        video_id="v1",
        event_time_ms=NOW_MS,
        session_id="s1",
        device=DEVICE,
        **extra,
    )
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ABSENT}


ABSENT = object()


def without(name: str, kind: str = "like") -> dict:
    return event(kind, **{name: ABSENT})


EVENTS = [
    *(event(t) for t in EVENT_TYPES),
    event("impression", position=3, variant="exp:a"),
    event("impression", position=None, variant=None),
    event("impression", position=10_000),
    event("impression", position=-1),
    event("impression", variant="x" * 65),
    event("impression", position="3"),
    event("skip", watch_ms=None),
    event("skip", watch_ms=5),
    event("play", watch_ms=None),
    without("watch_ms", "play"),
    event("play", video_duration_ms=0),
    event("play", watch_ms=True),
    event(comment="unknown fields pass"),
    event(schema_version=None),
    event(schema_version=2),
    event(schema_version=True),
    event(schema_version="1"),
    *(without(name) for name in ("schema_version", "event_id", "event_type", "user_id", "video_id", "event_time")),
    *(without(name) for name in ("session_id", "request_id", "device")),
    *(event(**{name: None}) for name in ("event_id", "user_id", "video_id", "event_time", "session_id", "device")),
    event(event_type="stare"),
    event(user_id="u 1"),
    event(user_id=""),
    event(user_id="u" * 65),
    event(request_id=""),
    event(request_id="r/1"),
    event(event_time=float(NOW_MS) + 0.5),
    event(event_time=str(NOW_MS)),
    event(device="ios"),
    event(device={**DEVICE, "os": "windows"}),
    event(device={**DEVICE, "country": "br"}),
    event(device={k: v for k, v in DEVICE.items() if k != "network"}),
    event(device={**DEVICE, "network": None}),
    event(device={**DEVICE, "model": "unknown fields pass"}),
    "not an object",
    [event()],
]


def contract_accepts(value) -> bool:
    try:
        validate_object(value, NOW_MS)
    except Invalid:
        return False
    return True


def test_the_event_schema_admits_exactly_what_the_contract_accepts():
    # Events timed now: the event_time window is relative to the time of receipt, which JSON Schema
    # cannot state (the document says it in words).
    components = create_app(config()).openapi()["components"]
    validator = jsonschema_rs.validator_for({"$ref": "#/components/schemas/Event", "components": components})
    verdicts = [(value, validator.is_valid(value), contract_accepts(value)) for value in EVENTS]
    assert [v for v in verdicts if v[1] != v[2]] == []
    assert sum(accepted for _, accepted, _ in verdicts) >= len(EVENT_TYPES) + 6  # both kinds are covered
    assert sum(not accepted for _, accepted, _ in verdicts) >= 30


def test_the_cli_writes_the_document(tmp_path):
    target = tmp_path / "openapi.json"
    assert main(["serve", "--config", str(PROJECT_DIR / "conf" / "local.yaml"), "--write-openapi", str(target)]) == 0
    assert json.loads(target.read_text()) == json.loads(DOCUMENT.read_text())


def test_serve_refuses_to_start_without_a_token(tmp_path, capsys, monkeypatch):
    import uvicorn

    def started(*args, **kwargs):
        raise AssertionError("the service started without a token")

    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.delenv("REELHOUSE__SERVING__TOKEN", raising=False)
    # A copy of conf/local.yaml alone: a git-ignored conf/local.local.yaml beside the original may set a token.
    (tmp_path / "conf").mkdir()
    copy = tmp_path / "conf" / "local.yaml"
    copy.write_text((PROJECT_DIR / "conf" / "local.yaml").read_text())
    assert main(["serve", "--config", str(copy)]) == 2
    error = capsys.readouterr().err
    assert "serving.token is not set" in error and "REELHOUSE__SERVING__TOKEN" in error
