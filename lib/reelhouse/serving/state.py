"""What the service holds between requests: the loaded resources, their reload threads, the user state.

The store calls are :mod:`reelhouse.serving.store_client`; the user state and its writer are
:mod:`reelhouse.serving.user_state`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

from reelhouse.clock import clock_for
from reelhouse.config import ReelhouseConfig
from reelhouse.experiments.bucketing import Bucketing
from reelhouse.lake import Lake
from reelhouse.online.store import OnlineStore, open_online_store
from reelhouse.serving.collector import EventProducer
from reelhouse.serving.metrics import ServingMetrics
from reelhouse.serving.ranking import RankerRegistry
from reelhouse.serving.recall import RecallIndex, RecallTables
from reelhouse.serving.store_client import HEALTH_S, StoreClient, close_quietly
from reelhouse.serving.user_state import StateWriter
from reelhouse.serving.videos import VideoFeatureTable

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- threads
class Poller:
    """Runs ``task`` every ``interval_s`` on a daemon thread until stopped; failures are logged."""

    def __init__(self, name: str, interval_s: float, task: Callable[[], object]) -> None:
        self.name, self.interval_s, self.task = name, interval_s, task
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reelhouse-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.task()
            except Exception:  # noqa: BLE001 - a poller must survive anything
                log.exception("%s failed", self.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


# ----------------------------------------------------------------------------- the whole state
def ranker_refs(config: ReelhouseConfig) -> list[str]:
    """Every ranker reference the config can route a request to (default feed first)."""
    refs = [f"alias:{config.serving.ranker_alias}"]
    refs += [variant.ranker for experiment in config.experiments for variant in experiment.variants]
    return list(dict.fromkeys(refs))


class ServingState:
    """Everything a request reads, loaded and kept current (module docstring)."""

    def __init__(self, config: ReelhouseConfig) -> None:
        self.config = config
        self.clock = clock_for(config.serving.clock_file)  # the wall clock, unless a simulation sets one
        self.metrics = ServingMetrics()
        self.bucketing = Bucketing(config.experiments)
        self.recall = RecallTables(Lake(config.lake), config.recall, on_reload=self._recall_reloaded)
        self.rankers = RankerRegistry(
            config.mlflow, config.training.registered_model, ranker_refs(config), on_event=self._ranker_event
        )
        self.store = StoreClient(config.online_store, self.metrics)
        self.videos = VideoFeatureTable()
        self._video_store: OnlineStore | None = None  # the video refresh thread's client
        self._video_failing = False
        self.writer = StateWriter(
            lambda: open_online_store(config.online_store),
            seen_max=config.serving.seen_max,
            recent_max=config.recall.covisit_recent_items,
            ttl_ms=int(config.serving.seen_ttl_h * 3_600_000),
            metrics=self.metrics,
            now_ms=self.clock.now_ms,
        )
        self.producer: EventProducer | None = None
        self.producer_error: str | None = None
        self.started_at: dt.datetime | None = None
        self._pollers: list[Poller] = []

    def _recall_reloaded(self, index: RecallIndex | None, error: Exception | None) -> None:
        self.metrics.table_reloads.labels("loaded" if index is not None else "failed").inc()
        if index is not None:
            for role, version in index.versions.items():
                self.metrics.table_version.labels(role).set(-1 if version is None else version)

    def _ranker_event(self, kind: str, ref: str, version: int) -> None:
        self.metrics.model_loads.labels(kind).inc()
        if kind == "loaded":  # a failed load leaves the reference on the version it had
            self.metrics.ranker_version.labels(ref).set(version)

    def _kafka_outcome(self, kind: str, ok: bool) -> None:
        (self.metrics.produced if ok else self.metrics.produce_failed).labels(kind).inc()

    @property
    def index(self) -> RecallIndex:
        return self.recall.current

    def refresh_videos(self) -> None:
        """Take the video feature rows written since the last refresh (videos.py); on failure the
        values held stay in use and the next refresh reconnects."""
        try:
            store = self._video_store = self._video_store or open_online_store(self.config.online_store)
            self.videos.refresh(store)
        except Exception as e:  # noqa: BLE001 - keep serving the values held
            self.metrics.video_refreshes.labels("failed").inc()
            if not self._video_failing:
                log.warning("video features not refreshed (%d held): %s: %s", len(self.videos), type(e).__name__, e)
            self._video_failing = True
            store, self._video_store = self._video_store, None
            if store is not None:
                close_quietly(store)
            return
        if self._video_failing:
            log.info("video features refreshed again")
        self._video_failing = False
        self.metrics.video_refreshes.labels("ok").inc()
        self.metrics.video_rows.set(len(self.videos))

    def start(self) -> None:
        """Load what can be loaded (each part may fail on its own), then start the threads."""
        serving = self.config.serving
        self.started_at = dt.datetime.now(dt.UTC)
        self.recall.refresh()
        self.rankers.refresh()
        self.store.open()
        self.store.warm()
        self.refresh_videos()
        try:
            self.producer = EventProducer(self.config.kafka, serving, self._kafka_outcome)
            self.producer.start()
        except Exception as e:  # noqa: BLE001 - bad client settings: serve feeds, count impressions as failed
            self.producer_error = f"{type(e).__name__}: {e}"
            log.error("Kafka producer could not be created (%s): impressions and events will be refused", e)
        self.writer.start()
        self._pollers = [
            Poller("recall-tables", serving.tables_poll_s, self.recall.refresh),
            Poller("ranker-aliases", serving.alias_poll_s, self.rankers.refresh),
            Poller("store-health", HEALTH_S, self.store.check),
            Poller("store-purge", self.config.online_store.purge_interval_s, self.store.purge),
            Poller("video-features", serving.video_features_refresh_s, self.refresh_videos),
        ]
        for poller in self._pollers:
            poller.start()

    def stop(self) -> None:
        for poller in self._pollers:
            poller.stop()
        self.writer.close()
        if self.producer is not None:
            self.producer.close()  # logs and counts, per kind, what was not delivered
        self.store.close()
        if self._video_store is not None:
            close_quietly(self._video_store)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when the default ranker is loaded, the online store answers, recall is loaded and
        the video features are in memory.

        The checks hold only facts safe to show whoever reaches ``/readyz`` (the ref, the serving
        label, table versions, the store type): why a part fails is exception text that names
        hosts, paths and URIs, so it goes to the log where the failure happens, not here."""
        default = f"alias:{self.config.serving.ranker_alias}"
        ranker, _ = self.rankers.get(default)
        checks = {
            "ranker": {"ok": ranker is not None, "ref": default, "serving": getattr(ranker, "label", None)},
            "online_store": {"ok": self.store.reachable, "type": self.config.online_store.type},
            "recall": {"ok": self.recall.loaded and self.index.has_candidates, "versions": self.index.versions},
            "video_features": {"ok": self.videos.loaded, "rows": len(self.videos)},
            "kafka": {"ok": self.producer is not None},
        }
        ready = all(checks[name]["ok"] for name in ("ranker", "online_store", "recall", "video_features"))
        return ready, checks
