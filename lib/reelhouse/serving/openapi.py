"""The service's OpenAPI document: the shapes of its answers, its errors, and the JSON Schema of an event.

FastAPI builds the document from the routes (app.py), but the handlers parse their input
themselves (security.py, collector.py), so FastAPI sees neither the feed's query parameters nor
the event batch. This module describes them exactly: the feed's parameters from the same
patterns and limits security.py checks, the event schema generated from the event contract's own
field specs (lib/reelhouse/events/contract.py: required fields, patterns, enums, bounds, the
per-type fields), and every error answer with its reasons and headers. ``docs/openapi.json`` is
the document of conf/local.yaml's limits; ``tests/integration/serving/test_api_contract.py``
fuzzes the running service from its own document with schemathesis.

Not expressible in JSON Schema, so said in descriptions: an event's ``event_time`` must lie within
the ingestion's window around the time the service receives it, and a serialised event (and the
whole body) has a size limit.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from reelhouse.config import ReelhouseConfig
from reelhouse.events.contract import (
    COMMON_FIELDS,
    DEVICE_FIELDS,
    EVENT_TYPES,
    REASON_EMPTY,
    REASON_VALUE,
    REASONS,
    SUPPORTED_VERSIONS,
    TYPE_FIELDS,
    FieldSpec,
    make_event,
)
from reelhouse.serving import collector, security

BEARER = "bearer"
SECURITY = [{BEARER: []}]
SCHEMAS = "#/components/schemas/"
TEXT = {"schema": {"type": "string"}}

# Reasons of answers refused outside security.py and the contract (the literals live where the
# answers are made: app.py, collector.py); the error answers below list them as enums.
OVERLOADED = "overloaded"
EVENTS_BODY_REASONS = (collector.INVALID_BODY, collector.TOO_MANY_EVENTS)
KAFKA_REASONS = (collector.KAFKA_UNAVAILABLE, collector.KAFKA_BACKLOG, collector.NOT_DELIVERED)


class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- answers
class FeedItem(_Closed):
    video_id: str
    position: int = Field(ge=0, description="0-based slot on the page.")
    score: float = Field(description="The ranker's score (a probability for model rankers).")
    source: str = Field(
        description="Recall source: als, covisit, topic, embedding, popularity, realtime, trending, exploration."
    )


class FeedResponse(_Closed):
    request_id: str = Field(description="r-<uuid hex>; every impression of the page carries it.")
    user_id: str
    experiment: str | None = Field(description="The running experiment the user is bucketed in, if any.")
    variant: str | None = Field(description="The user's variant in that experiment.")
    ranker: str = Field(description="<registered model>/<version>, popularity, random, or trending (fallback).")
    degraded: list[str] = Field(description="Why parts of the answer fell back; empty when every stage worked.")
    items: list[FeedItem]


class Accepted(_Closed):
    accepted: int = Field(ge=0, description="Events of the batch Kafka acknowledged: all of them.")


class Health(_Closed):
    status: Literal["ok"]


class Check(BaseModel):
    """One part the service needs, with facts safe to show (refs, labels, versions, types); why a
    part fails goes to the service's log, never into this answer."""

    model_config = ConfigDict(extra="allow")
    ok: bool


class Readiness(_Closed):
    ready: bool = Field(
        description="The default ranker is loaded, the online store answers, recall is loaded, the video features "
        "are in memory."
    )
    failing: list[str] = Field(description="Names of the checks that fail (kafka does not make the service unready).")
    checks: dict[str, Check]


# ----------------------------------------------------------------------------- errors
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying (serving.retry_after_s).",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {"description": "The scheme to use.", "required": True, "schema": {"const": "Bearer"}}
}


def problems_schema(reasons: tuple[str, ...], *, indexed: bool = False, extra: dict[str, Any] | None = None) -> dict:
    """``{"detail": [{"field" | "index", "reason", "detail"}, ...]}`` with ``reason`` one of ``reasons``."""
    problem: dict[str, Any] = {
        "type": "object",
        "required": ["reason", "detail"],
        "additionalProperties": False,
        "properties": {
            "field": {"type": ["string", "null"], "description": "The parameter or part of the request at fault."},
            "reason": {"type": "string", "enum": sorted(set(reasons)), "description": "Machine-readable reason."},
            "detail": {"type": "string", "description": "What is wrong, for people."},
        },
    }
    if indexed:
        problem["properties"]["index"] = {
            "type": "integer",
            "minimum": 0,
            "description": "Position of the event in the batch.",
        }
    return {
        "type": "object",
        "required": ["detail"],
        "additionalProperties": False,
        "properties": {"detail": {"type": "array", "minItems": 1, "items": problem}, **(extra or {})},
    }


def error_response(
    description: str,
    reasons: tuple[str, ...],
    *,
    headers: dict[str, Any] | None = None,
    indexed: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": problems_schema(reasons, indexed=indexed, extra=extra)}},
    }
    if headers:
        response["headers"] = headers
    return response


UNAUTHORIZED = error_response(
    "Missing or wrong `Authorization: Bearer <serving.token>`; nothing was done.",
    (security.UNAUTHORIZED,),
    headers=WWW_AUTHENTICATE,
)


def http_reason(status: int) -> str:
    """The reason of an error the router answers itself (404, 405): its status phrase, snake_cased."""
    return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")


# ----------------------------------------------------------------------------- the feed
def feed_parameters(config: ReelhouseConfig) -> list[dict[str, Any]]:
    serving = config.serving

    def query(name: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}

    device = security.DEFAULT_DEVICE
    return [
        query("user_id", "The user (event contract id).", {"type": "string", "pattern": security.ID_PATTERN}, True),
        query(
            "k",
            f"Videos on the page (default serving.default_k, here {serving.default_k}).",
            {"type": "integer", "minimum": 1, "maximum": serving.max_k},
        ),
        query(
            "session_id",
            "The app session (default: derived from the user and the UTC day).",
            {"type": "string", "pattern": security.ID_PATTERN},
        ),
        query("os", "Device OS.", {"type": "string", "enum": list(security.OS_CHOICES), "default": device["os"]}),
        query(
            "app_version",
            "App version.",
            {"type": "string", "pattern": security.APP_VERSION_PATTERN, "default": device["app_version"]},
        ),
        query(
            "country",
            "Device country (ISO 3166 alpha-2).",
            {"type": "string", "pattern": security.COUNTRY_PATTERN, "default": device["country"]},
        ),
        query(
            "network",
            "Network type.",
            {"type": "string", "enum": list(security.NETWORK_CHOICES), "default": device["network"]},
        ),
    ]


FEED_DESCRIPTION = (
    "Called by the app's gateway (its backend), which signs the user in and holds the service token; "
    "the feed has side effects (impressions to Kafka, the user's seen state), so it is never open to "
    "browsers or other sites. Unknown and repeated parameters are refused."
)


def feed_responses() -> dict[int, dict[str, Any]]:
    return {
        200: {"model": FeedResponse, "description": "A page of the feed (degraded lists any fallback taken)."},
        401: UNAUTHORIZED,
        422: error_response("Invalid parameters, every problem listed.", security.FEED_PARAMETER_REASONS),
        503: error_response(
            "Too many feed requests in progress; retry after Retry-After.", (OVERLOADED,), headers=RETRY_AFTER
        ),
    }


# ----------------------------------------------------------------------------- events
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def field_schema(spec: FieldSpec, nullable: bool = False) -> dict[str, Any]:
    """The JSON Schema of one contract field: its type, pattern, choices and bounds."""
    kinds = spec.kind if isinstance(spec.kind, tuple) else (spec.kind,)
    types = [_JSON_TYPES[kind] for kind in kinds] + (["null"] if nullable else [])
    schema: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    if spec.pattern is not None:
        schema["pattern"] = spec.pattern
    if spec.choices is not None:
        schema["enum"] = sorted(spec.choices) + ([None] if nullable else [])
    if spec.ge is not None:
        schema["minimum"] = spec.ge
    if spec.gt is not None:
        schema["exclusiveMinimum"] = spec.gt
    if spec.le is not None:
        schema["maximum"] = spec.le
    if spec.max_length is not None:
        schema["maxLength"] = spec.max_length
    return schema


def _event_name(event_type: str) -> str:
    return f"{event_type.capitalize()}Event"


def event_schemas(config: ReelhouseConfig) -> dict[str, dict[str, Any]]:
    """Component schemas of an event (one per type, under ``Event``'s discriminator) and its device."""
    ingest = config.ingest
    device = {
        "type": "object",
        "description": "The device (unknown fields pass the contract and are dropped by ingestion).",
        "required": [spec.name for spec in DEVICE_FIELDS],
        "properties": {spec.name: field_schema(spec) for spec in DEVICE_FIELDS},
    }
    common = {spec.name: field_schema(spec) for spec in COMMON_FIELDS}
    common["event_time"]["description"] = (
        "Epoch milliseconds (UTC), at most ingest.max_clock_skew_s "
        f"({ingest.max_clock_skew_s} s) after and ingest.max_event_age_days ({ingest.max_event_age_days} days) "
        "before the time the service receives the event."
    )
    common["request_id"]["description"] = "The feed response that showed the video; empty for organic events."
    schemas: dict[str, dict[str, Any]] = {"Device": device}
    for event_type in EVENT_TYPES:
        required, optional = TYPE_FIELDS[event_type]
        properties = {
            "schema_version": {"type": "integer", "enum": sorted(SUPPORTED_VERSIONS)},
            **common,
            "event_type": {"type": "string", "const": event_type},
            "device": {"$ref": SCHEMAS + "Device"},
            **{spec.name: field_schema(spec) for spec in required},
            **{spec.name: field_schema(spec, nullable=True) for spec in optional},
        }
        schemas[_event_name(event_type)] = {
            "type": "object",
            "description": f"A {event_type} event; unknown fields pass the contract and are dropped by ingestion.",
            "required": ["schema_version", *(s.name for s in COMMON_FIELDS), "device", *(s.name for s in required)],
            "properties": properties,
        }
    schemas["Event"] = {
        "description": "An activity-log event (docs/events.md), as lib/reelhouse/events/contract.py validates it; "
        f"serialised, at most ingest.max_payload_bytes ({ingest.max_payload_bytes}) bytes. Integer fields are "
        "JSON integers written without a fraction or exponent (5, not 5.0 or 5e0).",
        "oneOf": [{"$ref": SCHEMAS + _event_name(t)} for t in EVENT_TYPES],
        "discriminator": {
            "propertyName": "event_type",
            "mapping": {t: SCHEMAS + _event_name(t) for t in EVENT_TYPES},
        },
    }
    return schemas


def _example_batch() -> dict[str, Any]:
    device = {"os": "ios", "app_version": "32.1.0", "country": "US", "network": "wifi"}
    shown = dict(user_id="u42", video_id="v1337", session_id="s-77", request_id="r-5", device=device)
    return {
        "events": [
            make_event(
                event_id="e-1",
                event_type="play",
                event_time_ms=1795237212964,
                watch_ms=8200,
                video_duration_ms=15000,
                **shown,
            ),
            make_event(event_id="e-2", event_type="like", event_time_ms=1795237213410, **shown),
        ]
    }


def events_body(config: ReelhouseConfig) -> dict[str, Any]:
    serving = config.serving
    return {
        "required": True,
        "description": f"At most serving.max_body_bytes ({serving.max_body_bytes}) bytes. The batch is produced "
        "only when every event is valid.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["events"],
                    "additionalProperties": False,
                    "properties": {
                        "events": {
                            "type": "array",
                            "maxItems": serving.max_events_per_request,
                            "description": "At most serving.max_events_per_request events.",
                            "items": {"$ref": SCHEMAS + "Event"},
                        }
                    },
                },
                "example": _example_batch(),
            }
        },
    }


EVENTS_DESCRIPTION = (
    "202 only once Kafka acknowledged every event of the batch; a 503 after producing lists the "
    "indices that were delivered (`delivered`) and the others with reason not_delivered."
)


def events_responses() -> dict[int, dict[str, Any]]:
    # The contract's reasons (an empty body is invalid JSON here, not an empty payload) and the body's.
    invalid = (*(r for r in REASONS if r != REASON_EMPTY), EVENTS_BODY_REASONS[0])
    return {
        202: {"model": Accepted, "description": "Every event is on the broker."},
        400: error_response("A malformed Content-Length.", (REASON_VALUE,)),
        401: UNAUTHORIZED,
        413: error_response(
            "The body exceeds serving.max_body_bytes, or the batch serving.max_events_per_request.",
            (security.BODY_TOO_LARGE, EVENTS_BODY_REASONS[1]),
        ),
        422: error_response(
            "Not a batch, or events that fail the contract (each listed with its index); nothing was produced.",
            invalid,
            indexed=True,
        ),
        503: error_response(
            "Overloaded, Kafka unavailable or backlogged (nothing produced), or not every event delivered.",
            (OVERLOADED, *KAFKA_REASONS),
            headers=RETRY_AFTER,
            indexed=True,
            extra={
                "delivered": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0},
                    "description": "Indices of the events Kafka acknowledged (after a partial delivery).",
                }
            },
        ),
    }


# ----------------------------------------------------------------------------- the document
def complete(document: dict[str, Any], config: ReelhouseConfig) -> dict[str, Any]:
    """What FastAPI cannot generate: the bearer scheme and the event schemas."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "description": "serving.token, held by the app's gateway (the backend that calls the service).",
    }
    components.setdefault("schemas", {}).update(event_schemas(config))
    return document
