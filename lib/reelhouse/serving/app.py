"""The feed service's HTTP API (FastAPI): the app factory and its routes.

``GET /v1/feed`` (feed.py), ``POST /v1/events`` (collector.py), ``/healthz``, ``/readyz``,
``/metrics``. The API is documented by ``docs/serving.md``; ``docs/openapi.json`` is this app's
OpenAPI document (openapi.py describes what FastAPI cannot see), checked in
(``reelhouse serve --write-openapi docs/openapi.json`` regenerates it).

The feed and the event collector both need ``Authorization: Bearer <serving.token>``: the token is
held by the app's gateway, which calls the service for the signed-in user. It is checked before
anything else, so a request without it has no effect but a 401 and the rejection counter.

Handlers parse and validate their input themselves (security.py) rather than through FastAPI's
parameter models: the checks are the event contract's, the limits come from config, unknown
parameters are refused, and every refusal, the router's 404 and 405 included, has one shape:
``{"detail": [{"field" | "index", "reason", "detail"}, ...]}``.

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
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

import reelhouse
from reelhouse.config import ReelhouseConfig
from reelhouse.features.engagement import is_engagement
from reelhouse.serving import collector, openapi, security
from reelhouse.serving.collector import EVENT, limits, parse_events
from reelhouse.serving.feed import FeedPipeline
from reelhouse.serving.metrics import CONTENT_TYPE
from reelhouse.serving.security import RequestError, parse_feed_params
from reelhouse.serving.state import ServingState

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.001


class JsonResponse(JSONResponse):
    """JSON by orjson; a JSONResponse, so the OpenAPI document declares its bodies as JSON."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(error: RequestError, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse({"detail": error.problems}, status_code=error.status, headers=headers)


def _unauthorized(state: ServingState, route: str) -> JsonResponse:
    """401 for a request without the service token: counted as rejected, nothing else done."""
    state.metrics.rejected_requests.labels(route, "401").inc()
    detail = "send Authorization: Bearer <serving.token>"
    problem = security.problem(security.AUTHORIZATION, security.UNAUTHORIZED, detail)
    return JsonResponse({"detail": [problem]}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def _overloaded(
    state: ServingState,
    route: str,
    reason: str = openapi.OVERLOADED,
    detail: str = "too many requests in progress; retry later",
) -> JsonResponse:
    state.metrics.overload.labels(route).inc()
    return JsonResponse(
        {"detail": [{"field": None, "reason": reason, "detail": detail}]},
        status_code=503,
        headers={"Retry-After": str(state.config.serving.retry_after_s)},
    )


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

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi.complete(generate_openapi(), config)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        """The router's own refusals (404, 405) in the service's one error shape, headers (Allow) kept."""
        problem = security.problem(None, openapi.http_reason(error.status_code), str(error.detail))
        return JsonResponse({"detail": [problem]}, status_code=error.status_code, headers=error.headers)

    @app.get(
        "/v1/feed",
        summary="A page of the user's For-You feed",
        description=openapi.FEED_DESCRIPTION,
        response_class=JsonResponse,
        responses=openapi.feed_responses(),
        openapi_extra={"parameters": openapi.feed_parameters(config), "security": openapi.SECURITY},
    )
    async def feed(request: Request) -> Response:
        # The token first: a request without it costs nothing and changes nothing (no impressions,
        # no seen state, no metric but the rejection).
        if not security.authorized(request.headers.get("authorization"), serving.token):
            return _unauthorized(state, "feed")
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
        """Every event's video is seen by its user; engagement (the training label's definition,
        features/engagement.py) also seeds realtime recall."""
        by_user: dict[str, tuple[list[str], list[str]]] = {}
        ratio = config.training.positive_watch_ratio
        for event in batch:
            seen, liked = by_user.setdefault(event["user_id"], ([], []))
            seen.append(event["video_id"])
            if is_engagement(event, ratio):
                liked.append(event["video_id"])
        for user, (seen, liked) in by_user.items():
            state.writer.record(user, seen, liked, now_ms)

    @app.post(
        "/v1/events",
        summary="Collect client events (impressions, plays, likes ...) into Kafka",
        description=openapi.EVENTS_DESCRIPTION,
        status_code=202,
        response_class=JsonResponse,
        responses=openapi.events_responses(),
        openapi_extra={"requestBody": openapi.events_body(config), "security": openapi.SECURITY},
    )
    async def events(request: Request) -> Response:
        if not security.authorized(request.headers.get("authorization"), serving.token):
            return _unauthorized(state, "events")
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
            return _overloaded(state, "events", collector.KAFKA_UNAVAILABLE, "no Kafka producer (see the service log)")
        if producer.room() < len(batch):  # produce nothing rather than part of the batch
            return _overloaded(
                state, "events", collector.KAFKA_BACKLOG, "the Kafka producer's queue is full; retry later"
            )
        in_flight["events"] += 1  # waiting for Kafka's acknowledgements is in flight too
        try:
            delivery = await producer.deliver(EVENT, [(e["user_id"].encode(), orjson.dumps(e)) for e in batch])
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
        finally:
            in_flight["events"] -= 1
        delivered = [batch[i] for i in delivery.delivered]
        state.metrics.events_accepted.inc(len(delivered))
        try:
            record_engagement(delivered, now_ms)
        except Exception:  # the events are in Kafka all the same: the answer must say so
            log.exception("the engagement of delivered events could not be recorded")
            state.metrics.errors.labels("events").inc()
        if not delivery.complete:
            # Exactly what Kafka acknowledged: the client resends the rest (resending all is harmless too,
            # event ids deduplicate downstream).
            return JsonResponse(
                {"detail": delivery.problems(), "delivered": delivery.delivered},
                status_code=503,
                headers={"Retry-After": str(serving.retry_after_s)},
            )
        return JsonResponse({"accepted": len(batch)}, status_code=202)

    @app.get(
        "/healthz",
        summary="The process is up",
        response_class=JsonResponse,
        responses={200: {"model": openapi.Health}},
    )
    async def healthz() -> Response:
        return JsonResponse({"status": "ok"})

    @app.get(
        "/readyz",
        summary="Ready to serve: ranker loaded, online store reachable, recall loaded",
        response_class=JsonResponse,
        responses={
            200: {"model": openapi.Readiness, "description": "Ready."},
            503: {"model": openapi.Readiness, "description": "Not ready: `failing` names what is missing."},
        },
    )
    async def readyz() -> Response:
        ready, checks = state.readiness()
        failing = [name for name, check in checks.items() if not check["ok"]]
        return JsonResponse({"ready": ready, "failing": failing, "checks": checks}, status_code=200 if ready else 503)

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"description": "The Prometheus text format.", "content": {"text/plain": openapi.TEXT}}},
    )
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    return app


def openapi_document(config: ReelhouseConfig) -> bytes:
    """The app's OpenAPI document as checked in at docs/openapi.json (sorted keys, indented)."""
    return orjson.dumps(create_app(config).openapi(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
