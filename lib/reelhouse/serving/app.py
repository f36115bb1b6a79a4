"""The feed service's HTTP API (FastAPI): the app factory, its lifespan and its routes.

The routes are thin: each hands the request to its handler in handlers.py (what a route does)
and declares what the OpenAPI document says of it.

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
from fastapi.responses import Response
from starlette.exceptions import HTTPException

import reelhouse
from reelhouse.config import ReelhouseConfig
from reelhouse.serving import openapi, security
from reelhouse.serving.handlers import EventsHandler, FeedHandler, JsonResponse, readiness
from reelhouse.serving.metrics import CONTENT_TYPE
from reelhouse.serving.state import ServingState

log = logging.getLogger(__name__)

SWITCH_INTERVAL_S = 0.001


def create_app(config: ReelhouseConfig, state: ServingState | None = None) -> FastAPI:
    """The feed service for ``config``. Nothing is loaded until the app starts (its lifespan), so
    building it is cheap (e.g. to write its OpenAPI document)."""
    state = state or ServingState(config)
    feed_handler, events_handler = FeedHandler(state), EventsHandler(state)

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
        return await feed_handler(request)

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
        return await events_handler(request)

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
        return readiness(state)

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
