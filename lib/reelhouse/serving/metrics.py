"""The feed service's Prometheus metrics, on a registry of its own (one per app instance).

A registry per app rather than prometheus_client's global one: tests and benchmarks may build
several apps in one process, and a second app must not collide with (or report) the first one's
series. ``GET /metrics`` renders this registry in the Prometheus text format.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

STAGES = ("store", "recall", "features", "rank", "rerank", "total")
# Seconds; fine below 50 ms, where the latency target of a feed request sits.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServingMetrics:
    """Every series the service exports; label values are small fixed sets (never ids)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.stage_seconds = Histogram(
            "reelhouse_feed_stage_seconds",
            "Time a feed request spent per stage.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = {stage: self.stage_seconds.labels(stage) for stage in STAGES}
        self.requests = Counter(
            "reelhouse_feed_requests",
            "Feed responses sent, by ranker kind and whether degraded.",
            ["ranker", "degraded"],
            registry=r,
        )
        self.fallbacks = Counter(
            "reelhouse_feed_fallbacks",
            "Feed responses that fell back, by reason (the response's `degraded`).",
            ["reason"],
            registry=r,
        )
        self.errors = Counter(
            "reelhouse_errors", "Requests that failed with a server error, by route.", ["route"], registry=r
        )
        self.overload = Counter(
            "reelhouse_overload_rejections",
            "Requests answered 503 because too many were in flight.",
            ["route"],
            registry=r,
        )
        self.in_flight = Gauge("reelhouse_feed_in_flight", "Feed requests in progress.", registry=r)
        self.rejected_events = Counter(
            "reelhouse_events_rejected",
            "Events refused by POST /v1/events, by contract reason.",
            ["reason"],
            registry=r,
        )
        self.rejected_requests = Counter(
            "reelhouse_requests_rejected",
            "Requests refused before any work, by status (401, 413, 422).",
            ["route", "status"],
            registry=r,
        )
        self.events_accepted = Counter(
            "reelhouse_events_accepted", "Client events Kafka acknowledged (POST /v1/events).", registry=r
        )
        self.produced = Counter(
            "reelhouse_kafka_delivered",
            "Messages the broker acknowledged, by kind (impression, event).",
            ["kind"],
            registry=r,
        )
        self.produce_failed = Counter(
            "reelhouse_kafka_failed", "Messages that could not be queued or delivered, by kind.", ["kind"], registry=r
        )
        self.state_writes = Counter(
            "reelhouse_state_writes",
            "Seen / recent-engagement updates written to the online store, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.state_dropped_videos = Counter(
            "reelhouse_state_dropped_videos",
            "Seen / engaged videos dropped from the state writer's buffer before they reached the store, by "
            "reason: `evicted` (the buffer was full: lost), `trimmed` (beyond the newest a user's list keeps).",
            ["reason"],
            registry=r,
        )
        self.store_purged = Counter(
            "reelhouse_store_purged",
            "Expired rows (SQLite) or change-log entries of deleted rows (Redis) the service's purge removed.",
            registry=r,
        )
        self.model_loads = Counter(
            "reelhouse_ranker_loads", "Ranker loads from the registry, by outcome.", ["outcome"], registry=r
        )
        self.ranker_version = Gauge(
            "reelhouse_ranker_version",
            "Registered-model version each ranker reference serves (0: none).",
            ["ref"],
            registry=r,
        )
        self.table_version = Gauge(
            "reelhouse_recall_table_version",
            "Delta version of each recall table in memory (-1: missing).",
            ["table"],
            registry=r,
        )
        self.table_reloads = Counter(
            "reelhouse_recall_reloads", "Recall index rebuilds from Delta, by outcome.", ["outcome"], registry=r
        )
        self.rank_over_budget = Counter(
            "reelhouse_rank_over_budget",
            "Feed requests whose ranker took longer than serving.budgets.rank_ms (the scores are still used).",
            registry=r,
        )
        self.video_rows = Gauge(
            "reelhouse_video_features_rows", "Videos whose online features this process holds in memory.", registry=r
        )
        self.video_refreshes = Counter(
            "reelhouse_video_features_refreshes",
            "Refreshes of the in-memory video features from the online store, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.store_failures = Counter(
            "reelhouse_store_failures",
            "Online-store calls that failed or ran out of time, by call and kind.",
            ["call", "kind"],
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
