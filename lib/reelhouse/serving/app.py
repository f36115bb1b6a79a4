"""The feed service's HTTP API (FastAPI): the app factory and its routes.

``GET /v1/feed`` (feed.py), ``POST /v1/events`` (collector.py), ``/healthz``, ``/readyz``,
``/metrics``. The API is documented by ``docs/serving.md``; ``docs/openapi.json`` is this app's
OpenAPI document, checked in (``reelhouse serve --write-openapi docs/openapi.json`` regenerates it).

Handlers parse and validate their input themselves (security.py) rather than through FastAPI's
parameter models: the checks are the event contract's, the limits come from config, unknown
parameters are refused, and the answers have one shape: ``{"detail": [{"field" | "index",
"reason", "detail"}, ...]}``. The OpenAPI document describes the same parameters.

Overload: at most ``serving.max_in_flight`` feed requests (and as many event posts) are in
progress; beyond that a request is answered 503 with ``Retry-After`` at once, so latency stays
bounded instead of queueing without end.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

import reelhouse
from reelhouse.config import ReelhouseConfig
from reelhouse.events.contract import EVENT_TYPES
from reelhouse.serving import security
from reelhouse.serving.collector import EVENT, limits, parse_events
from reelhouse.serving.feed import FeedPipeline
from reelhouse.serving.metrics import CONTENT_TYPE
from reelhouse.serving.security import RequestError, parse_feed_params
from reelhouse.serving.state import ServingState

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.001
ENGAGED_TYPES = frozenset({"like", "share", "comment"})  # plus plays watched past training.positive_watch_ratio


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# ----------------------------------------------------------------------------- documented shapes
class FeedItem(BaseModel):
    video_id: str
    position: int = Field(description="0-based slot on the page.")
    score: float = Field(description="The ranker's score (a probability for model rankers).")
    source: str = Field(
        description="Recall source: als, covisit, topic, embedding, popularity, realtime, trending, exploration."
    )


class FeedResponse(BaseModel):
    request_id: str = Field(description="r-<uuid hex>; every impression of the page carries it.")
    user_id: str
    experiment: str | None = Field(description="The running experiment the user is bucketed in, if any.")
    variant: str | None = Field(description="The user's variant in that experiment.")
    ranker: str = Field(description="<registered model>/<version>, popularity, random, or trending (fallback).")
    degraded: list[str] = Field(description="Why parts of the answer fell back; empty when every stage worked.")
    items: list[FeedItem]


class Problem(BaseModel):
    field: str | None = Field(None, description="The parameter or part of the body at fault.")
    index: int | None = Field(None, description="Position of the invalid event in the batch.")
    reason: str = Field(description="Machine-readable reason (the event contract's, for events).")
    detail: str


class ErrorResponse(BaseModel):
    detail: list[Problem]


class Accepted(BaseModel):
    accepted: int = Field(description="Events handed to the Kafka producer.")


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, dict[str, Any]]


def _query(name: str, description: str, schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


FEED_PARAMETERS_DOC = [
    _query("user_id", "The user (event contract id).", {"type": "string", "pattern": security.ID_PATTERN}, True),
    _query(
        "k", "Videos on the page, 1 to serving.max_k (default serving.default_k).", {"type": "integer", "minimum": 1}
    ),
    _query(
        "session_id",
        "The app session (default: derived from the user and the UTC day).",
        {"type": "string", "pattern": security.ID_PATTERN},
    ),
    _query("os", "Device OS.", {"type": "string", "enum": list(security.OS_CHOICES), "default": "other"}),
    _query("app_version", "App version.", {"type": "string", "pattern": security.APP_VERSION_PATTERN, "default": "0"}),
    _query(
        "country",
        "Device country (ISO 3166 alpha-2).",
        {"type": "string", "pattern": security.COUNTRY_PATTERN, "default": "ZZ"},
    ),
    _query(
        "network", "Network type.", {"type": "string", "enum": list(security.NETWORK_CHOICES), "default": "unknown"}
    ),
]
EVENTS_BODY_DOC = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["events"],
                "additionalProperties": False,
                "properties": {
                    "events": {
                        "type": "array",
                        "description": "Activity-log events (docs/events.md), at most serving.max_events_per_request.",
                        "items": {
                            "type": "object",
                            "required": [
                                "schema_version",
                                "event_id",
                                "event_type",
                                "user_id",
                                "video_id",
                                "event_time",
                                "session_id",
                                "request_id",
                                "device",
                            ],
                            "properties": {"event_type": {"type": "string", "enum": list(EVENT_TYPES)}},
                        },
                    }
                },
            }
        }
    },
}
_ERRORS = {"model": ErrorResponse}


def _error(error: RequestError, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse({"detail": error.problems}, status_code=error.status, headers=headers)


def _overloaded(
    state: ServingState,
    route: str,
    reason: str = "overloaded",
    detail: str = "too many requests in progress; retry later",
) -> JsonResponse:
    state.metrics.overload.labels(route).inc()
    return JsonResponse(
        {"detail": [{"field": None, "reason": reason, "detail": detail}]},
        status_code=503,
        headers={"Retry-After": str(state.config.serving.retry_after_s)},
    )


def engaged(event: dict[str, Any], positive_watch_ratio: float) -> bool:
    """Whether an event is engagement that seeds realtime recall (as the training label counts it)."""
    kind = event["event_type"]
    if kind in ENGAGED_TYPES:
        return True
    if kind == "play":
        return event["watch_ms"] >= positive_watch_ratio * event["video_duration_ms"]
    return False


def create_app(config: ReelhouseConfig, state: ServingState | None = None) -> FastAPI:
    """The feed service for ``config``. Nothing is loaded until the app starts (its lifespan), so
    building it is cheap (e.g. to write its OpenAPI document)."""
    state = state or ServingState(config)
    serving = config.serving
    pipeline = FeedPipeline(state)
    bounds = limits(config.ingest)
    in_flight = {"feed": 0, "events": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.perf_counter()
        await asyncio.to_thread(state.start)
        # Everything loaded so far (libraries, models, indexes) lives as long as the process: keep
        # it out of the cyclic garbage collector, whose full passes over a million such objects
        # would otherwise stall requests for tens of milliseconds now and then.
        gc.collect()
        gc.freeze()
        # The store and rank threads hand results back to the event loop through the GIL; at
        # Python's default 5 ms switch interval each hand-over can wait that long behind the loop's
        # own work, which alone would spend a stage's budget. 1 ms keeps hand-overs short.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        ready, checks = state.readiness()
        log.info(
            "feed service started in %.1f s; ready: %s%s",
            time.perf_counter() - started,
            ready,
            "" if ready else f" (missing: {', '.join(k for k, v in checks.items() if not v['ok'])})",
        )
        try:
            yield
        finally:
            await asyncio.to_thread(state.stop)

    app = FastAPI(
        title="reelhouse feed service",
        version=reelhouse.__version__,
        description="The For-You feed: recall, ranking and re-ranking per request, and the client event collector. "
        "See docs/serving.md.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.serving = state
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate_openapi()
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["bearer"] = {"type": "http", "scheme": "bearer", "description": "serving.token"}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get(
        "/v1/feed",
        summary="A page of the user's For-You feed",
        response_class=JsonResponse,
        responses={200: {"model": FeedResponse}, 422: _ERRORS, 503: _ERRORS},
        openapi_extra={"parameters": FEED_PARAMETERS_DOC},
    )
    async def feed(request: Request) -> Response:
        if in_flight["feed"] >= serving.max_in_flight:
            return _overloaded(state, "feed")
        in_flight["feed"] += 1
        state.metrics.in_flight.inc()
        try:
            params = parse_feed_params(request.query_params.multi_items(), serving)
            return JsonResponse(await pipeline.run(params))
        except RequestError as e:
            state.metrics.rejected_requests.labels("feed", str(e.status)).inc()
            return _error(e)
        except Exception:
            log.exception("feed request failed")
            state.metrics.errors.labels("feed").inc()
            return JsonResponse(
                {"detail": [{"field": None, "reason": "internal_error", "detail": "the feed could not be built"}]},
                status_code=500,
            )
        finally:
            in_flight["feed"] -= 1
            state.metrics.in_flight.dec()

    def record_engagement(batch: list[dict[str, Any]], now_ms: int) -> None:
        """Every event's video is seen by its user; engagement also seeds realtime recall."""
        by_user: dict[str, tuple[list[str], list[str]]] = {}
        ratio = config.training.positive_watch_ratio
        for event in batch:
            seen, liked = by_user.setdefault(event["user_id"], ([], []))
            seen.append(event["video_id"])
            if engaged(event, ratio):
                liked.append(event["video_id"])
        for user, (seen, liked) in by_user.items():
            state.writer.record(user, seen, liked, now_ms)

    @app.post(
        "/v1/events",
        summary="Collect client events (impressions, plays, likes ...) into Kafka",
        status_code=202,
        response_class=JsonResponse,
        responses={202: {"model": Accepted}, 401: _ERRORS, 413: _ERRORS, 422: _ERRORS, 503: _ERRORS},
        openapi_extra={"requestBody": EVENTS_BODY_DOC, "security": [{"bearer": []}]},
    )
    async def events(request: Request) -> Response:
        if not security.authorized(request.headers.get("authorization"), serving.token):
            state.metrics.rejected_requests.labels("events", "401").inc()
            return JsonResponse(
                {
                    "detail": [
                        {
                            "field": "authorization",
                            "reason": "unauthorized",
                            "detail": "send Authorization: Bearer <serving.token>",
                        }
                    ]
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if in_flight["events"] >= serving.max_in_flight:
            return _overloaded(state, "events")
        in_flight["events"] += 1
        try:
            body = await security.read_bounded(
                request.stream(), request.headers.get("content-length"), serving.max_body_bytes
            )
            now_ms = int(time.time() * 1000)
            batch = parse_events(body, now_ms, bounds, serving.max_events_per_request)
        except RequestError as e:
            state.metrics.rejected_requests.labels("events", str(e.status)).inc()
            for problem in e.problems:
                if "index" in problem:
                    state.metrics.rejected_events.labels(problem["reason"]).inc()
            return _error(e)
        finally:
            in_flight["events"] -= 1
        producer = state.producer
        if producer is None:
            return _overloaded(state, "events", "kafka_unavailable", f"no Kafka producer: {state.producer_error}")
        if producer.room() < len(batch):
            return _overloaded(state, "events", "kafka_backlog", "the Kafka producer's queue is full; retry later")
        try:
            for event in batch:
                producer.produce(EVENT, event["user_id"].encode(), orjson.dumps(event))
            state.metrics.events_accepted.inc(len(batch))
            record_engagement(batch, now_ms)
        except Exception:
            log.exception("events could not be handed over")
            state.metrics.errors.labels("events").inc()
            return JsonResponse(
                {
                    "detail": [
                        {"field": None, "reason": "internal_error", "detail": "the events could not be handed over"}
                    ]
                },
                status_code=500,
            )
        return JsonResponse({"accepted": len(batch)}, status_code=202)

    @app.get("/healthz", summary="The process is up", response_class=JsonResponse)
    async def healthz() -> Response:
        return JsonResponse({"status": "ok"})

    @app.get(
        "/readyz",
        summary="Ready to serve: ranker loaded, online store reachable, recall loaded",
        response_class=JsonResponse,
        responses={200: {"model": Readiness}, 503: {"model": Readiness}},
    )
    async def readyz() -> Response:
        ready, checks = state.readiness()
        return JsonResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    return app


def openapi_document(config: ReelhouseConfig) -> bytes:
    """The app's OpenAPI document as checked in at docs/openapi.json (sorted keys, indented)."""
    return orjson.dumps(create_app(config).openapi(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
