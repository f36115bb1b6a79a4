"""What the feed service's routes do, one handler per route; ``app.py`` wires them to FastAPI.

Each handler checks the service token first (a request without it has no effect but a 401 and
the rejection counter), then its own in-flight bound (``serving.max_in_flight``: beyond it a 503
with ``Retry-After`` at once), then does its work. Every refusal has the service's one error shape
``{"detail": [{"field" | "index", "reason", "detail"}, ...]}``.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from reelhouse.features.engagement import is_engagement
from reelhouse.serving import collector, openapi, security
from reelhouse.serving.collector import EVENT, limits, parse_events
from reelhouse.serving.feed import FeedPipeline
from reelhouse.serving.security import RequestError, parse_feed_params
from reelhouse.serving.state import ServingState

log = logging.getLogger(__name__)


class JsonResponse(JSONResponse):
    """JSON by orjson; a JSONResponse, so the OpenAPI document declares its bodies as JSON."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error_response(error: RequestError, headers: dict[str, str] | None = None) -> JsonResponse:
    return JsonResponse({"detail": error.problems}, status_code=error.status, headers=headers)


def unauthorized(state: ServingState, route: str) -> JsonResponse:
    """401 for a request without the service token: counted as rejected, nothing else done."""
    state.metrics.rejected_requests.labels(route, "401").inc()
    detail = "send Authorization: Bearer <serving.token>"
    problem = security.problem(security.AUTHORIZATION, security.UNAUTHORIZED, detail)
    return JsonResponse({"detail": [problem]}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def overloaded(
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


class FeedHandler:
    """``GET /v1/feed``: a page of the user's feed from the recall -> rank -> re-rank pipeline (feed.py)."""

    def __init__(self, state: ServingState) -> None:
        self.state = state
        self.serving = state.config.serving
        self.pipeline = FeedPipeline(state)
        self.in_flight = 0

    async def __call__(self, request: Request) -> Response:
        # The token first: a request without it costs nothing and changes nothing (no impressions,
        # no seen state, no metric but the rejection).
        if not security.authorized(request.headers.get("authorization"), self.serving.token):
            return unauthorized(self.state, "feed")
        if self.in_flight >= self.serving.max_in_flight:
            return overloaded(self.state, "feed")
        self.in_flight += 1
        self.state.metrics.in_flight.inc()
        try:
            params = parse_feed_params(request.query_params.multi_items(), self.serving)
            return JsonResponse(await self.pipeline.run(params))
        except RequestError as e:
            self.state.metrics.rejected_requests.labels("feed", str(e.status)).inc()
            return error_response(e)
        except Exception:
            log.exception("feed request failed")
            self.state.metrics.errors.labels("feed").inc()
            return JsonResponse(
                {"detail": [{"field": None, "reason": "internal_error", "detail": "the feed could not be built"}]},
                status_code=500,
            )
        finally:
            self.in_flight -= 1
            self.state.metrics.in_flight.dec()


class EventsHandler:
    """``POST /v1/events``: validated client events into Kafka, 202 only once Kafka acknowledged them."""

    def __init__(self, state: ServingState) -> None:
        self.state = state
        self.config = state.config
        self.serving = state.config.serving
        self.bounds = limits(state.config.ingest)
        self.in_flight = 0

    def record_engagement(self, batch: list[dict[str, Any]], now_ms: int) -> None:
        """Every event's video is seen by its user; engagement (the training label's definition,
        features/engagement.py) also seeds realtime recall."""
        by_user: dict[str, tuple[list[str], list[str]]] = {}
        ratio = self.config.training.positive_watch_ratio
        for event in batch:
            seen, liked = by_user.setdefault(event["user_id"], ([], []))
            seen.append(event["video_id"])
            if is_engagement(event, ratio):
                liked.append(event["video_id"])
        for user, (seen, liked) in by_user.items():
            self.state.writer.record(user, seen, liked, now_ms)

    async def __call__(self, request: Request) -> Response:
        if not security.authorized(request.headers.get("authorization"), self.serving.token):
            return unauthorized(self.state, "events")
        if self.in_flight >= self.serving.max_in_flight:
            return overloaded(self.state, "events")
        self.in_flight += 1
        try:
            body = await security.read_bounded(
                request.stream(), request.headers.get("content-length"), self.serving.max_body_bytes
            )
            now_ms = self.state.clock.now_ms()
            batch = parse_events(body, now_ms, self.bounds, self.serving.max_events_per_request)
        except RequestError as e:
            self.state.metrics.rejected_requests.labels("events", str(e.status)).inc()
            for problem in e.problems:
                if "index" in problem:
                    self.state.metrics.rejected_events.labels(problem["reason"]).inc()
            return error_response(e)
        finally:
            self.in_flight -= 1
        producer = self.state.producer
        if producer is None:
            return overloaded(
                self.state, "events", collector.KAFKA_UNAVAILABLE, "no Kafka producer (see the service log)"
            )
        if producer.room() < len(batch):  # produce nothing rather than part of the batch
            return overloaded(
                self.state, "events", collector.KAFKA_BACKLOG, "the Kafka producer's queue is full; retry later"
            )
        self.in_flight += 1  # waiting for Kafka's acknowledgements is in flight too
        try:
            delivery = await producer.deliver(EVENT, [(e["user_id"].encode(), orjson.dumps(e)) for e in batch])
        except Exception:
            log.exception("events could not be handed over")
            self.state.metrics.errors.labels("events").inc()
            return JsonResponse(
                {
                    "detail": [
                        {"field": None, "reason": "internal_error", "detail": "the events could not be handed over"}
                    ]
                },
                status_code=500,
            )
        finally:
            self.in_flight -= 1
        delivered = [batch[i] for i in delivery.delivered]
        self.state.metrics.events_accepted.inc(len(delivered))
        try:
            self.record_engagement(delivered, now_ms)
        except Exception:  # the events are in Kafka all the same: the answer must say so
            log.exception("the engagement of delivered events could not be recorded")
            self.state.metrics.errors.labels("events").inc()
        if not delivery.complete:
            # Exactly what Kafka acknowledged: the client resends the rest (resending all is harmless too,
            # event ids deduplicate downstream).
            return JsonResponse(
                {"detail": delivery.problems(), "delivered": delivery.delivered},
                status_code=503,
                headers={"Retry-After": str(self.serving.retry_after_s)},
            )
        return JsonResponse({"accepted": len(batch)}, status_code=202)


def readiness(state: ServingState) -> Response:
    """``/readyz``: 200 when ready, else 503; ``failing`` names the parts that are not."""
    ready, checks = state.readiness()
    failing = [name for name, check in checks.items() if not check["ok"]]
    return JsonResponse({"ready": ready, "failing": failing, "checks": checks}, status_code=200 if ready else 503)
