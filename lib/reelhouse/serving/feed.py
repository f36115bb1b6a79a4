"""One feed request: bucketing, recall, features, ranking, re-ranking, response, impressions.

Stages and what each does when something fails (the response then lists the reason in
``degraded`` and ``reelhouse_feed_fallbacks_total`` counts it; the request still answers 200):

* store: one online-store read per request, within ``serving.budgets.store_ms``: the user's state
  (seen, recent engagement) and, when the ranker reads them, the user's feature row and the user x
  topic rows of every topic (the topics are few; a catalogue with more than ``PREFETCH_TOPICS``
  reads its candidates' topics in a second read after recall). Without an answer
  (``state_unavailable``) only this process's own record of the user is excluded and realtime
  recall has no seeds, and a model ranker has no user features (``features_unavailable``).
* recall: the in-memory index cannot be slow; tables missing at start give
  ``candidates_unavailable`` (exploration only), a variant whose sources recall nothing for the
  user ``recall_empty`` (trending tops up), a user with seeds but no neighbours table
  ``neighbours_unavailable``.
* features: the candidates' video rows come from the process's in-memory copy of
  ``video_features`` (videos.py), the user's rows from the store read; with the copy not loaded
  yet, or the user's rows unread, the candidates are ordered by trending (``features_unavailable``).
* rank: the ranker scores on the request's thread (see ``_rank``); a ranker that is not loaded
  (``model_unavailable``) or fails (``rank_failed``) gives way to the trending order. A reference whose newest version could not be loaded ranks with the previous
  one (``ranker_stale``).
* rerank: pure CPU (rerank.py).

Trending order: a candidate's score in the ``'*'`` list (0 when it is not in it), so the
response's ``ranker`` is ``trending``.

After the response is built its items go to Kafka as impressions (never waiting for the broker)
and to the state writer as seen.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from reelhouse.config import VariantConfig
from reelhouse.events.contract import SCHEMA_VERSION
from reelhouse.experiments.bucketing import Assignment
from reelhouse.recall.blend import EXPLORATION
from reelhouse.serving.collector import IMPRESSION
from reelhouse.serving.features import (
    VIEWS,
    FeatureDecoder,
    FeatureKeys,
    ModelInputs,
    RequestContext,
    assemble,
    feature_keys,
    user_topic_keys,
)
from reelhouse.serving.ranking import TRENDING, ModelRanker, Ranker, request_seed
from reelhouse.serving.recall import Candidates, RecallIndex
from reelhouse.serving.rerank import explore, rerank
from reelhouse.serving.security import FeedParams
from reelhouse.serving.state import ServingState
from reelhouse.serving.store_client import StoreUnavailable
from reelhouse.serving.user_state import RECENT_VIEW, SEEN_VIEW, live_videos

log = logging.getLogger(__name__)

_EMPTY = np.zeros(0, dtype=np.int32)
PREFETCH_TOPICS = 256  # user x topic rows read with the user's state when the catalogue has at most this many topics
Rows = dict[str, dict[str, Any]]  # what OnlineStore.read_many returns


def new_request_id() -> str:
    return "r-" + uuid.uuid4().hex


def derived_session_id(user_id: str, now: dt.datetime) -> str:
    """A session id for requests that bring none: stable per user and UTC day (silver re-derives
    sessions from event gaps anyway)."""
    return f"s-{hashlib.blake2b(user_id.encode(), digest_size=8).hexdigest()}-{now:%Y%m%d}"


@dataclass
class _Request:
    """What the stages of one request share."""

    params: FeedParams
    request_id: str
    now: dt.datetime
    now_ms: int
    index: RecallIndex  # this request's index, whatever reloads meanwhile
    assignment: Assignment | None
    degraded: list[str] = field(default_factory=list)

    @property
    def variant(self) -> VariantConfig | None:
        return self.assignment.variant if self.assignment is not None else None


class FeedPipeline:
    def __init__(self, state: ServingState) -> None:
        self.state = state
        self.config = state.config
        self.serving = state.config.serving
        self.budgets = state.config.serving.budgets
        self._rng = np.random.default_rng()
        self.decoder = FeatureDecoder()

    async def run(self, params: FeedParams) -> dict[str, Any]:
        state, serving = self.state, self.serving
        started = time.perf_counter()
        now_ms = state.clock.now_ms()  # the wall clock, unless a simulation sets the time (clock.py)
        now = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
        request = _Request(
            params, new_request_id(), now, now_ms, state.index, state.bucketing.assign(params.user_id, now)
        )
        variant = request.variant
        ranker_ref = variant.ranker if variant is not None else f"alias:{serving.ranker_alias}"
        ranker, ref_state = state.rankers.get(ranker_ref)
        if ref_state is not None and ref_state.stale:
            request.degraded.append("ranker_stale")

        rows = await self._read(request, ranker)
        t_store = time.perf_counter()
        user_code, candidates = self._recall(request, rows)
        t_recall = time.perf_counter()
        video_ids = request.index.videos.ids(candidates.video)
        inputs = await self._features(request, ranker, rows, user_code, candidates, video_ids)
        t_features = time.perf_counter()
        scores, label = await self._scores(request, ranker, inputs, candidates)
        t_rank = time.perf_counter()
        index = request.index
        page = rerank(
            scores,
            index.video_topic[candidates.video],
            index.video_creator[candidates.video],
            candidates.source == index.source_code(EXPLORATION),
            params.k,
            serving.max_per_topic,
            serving.max_per_creator,
            serving.exploration_slots,
        )
        rng = np.random.default_rng(np.random.SeedSequence([request_seed(request.request_id), 1]))
        picked, propensities = explore(page.picked, scores, serving.explore_epsilon, rng)
        t_rerank = time.perf_counter()

        items = [
            {
                "video_id": video_ids[i],
                "position": position,
                "score": float(scores[i]),
                "source": index.source_names[int(candidates.source[i])],
            }
            for position, i in enumerate(picked.tolist())
        ]
        body = {
            "request_id": request.request_id,
            "user_id": params.user_id,
            "experiment": request.assignment.experiment if request.assignment is not None else None,
            "variant": variant.name if variant is not None else None,
            "ranker": label,
            "degraded": request.degraded,
            "items": items,
        }
        self._log_impressions(request, items, propensities)
        state.writer.record(params.user_id, [item["video_id"] for item in items], (), request.now_ms)

        metrics = state.metrics
        stage = metrics.stage
        stage["store"].observe(t_store - started)
        stage["recall"].observe(t_recall - t_store)
        stage["features"].observe(t_features - t_recall)
        stage["rank"].observe(t_rank - t_features)
        stage["rerank"].observe(t_rerank - t_rank)
        stage["total"].observe(time.perf_counter() - started)
        kind = "model" if isinstance(ranker, ModelRanker) and label != TRENDING else label
        metrics.requests.labels(kind, "yes" if request.degraded else "no").inc()
        for reason in request.degraded:
            metrics.fallbacks.labels(reason).inc()
        return body

    async def _read(self, request: _Request, ranker: Ranker | None) -> Rows | None:
        """The request's one online-store read, within ``budgets.store_ms``: the user's state rows
        and, when the ranker reads them, the user's feature row and user x topic rows for every
        topic of the catalogue (up to ``PREFETCH_TOPICS``; beyond, the candidates' topics are read
        after recall). None when the store did not answer (``state_unavailable``)."""
        user_id = request.params.user_id
        keys: dict[str, list[str]] = {SEEN_VIEW: [user_id], RECENT_VIEW: [user_id]}
        entities = ranker.entities if ranker is not None else ()
        if "user" in entities:
            keys[VIEWS["user"]] = [user_id]
        topics = request.index.topics
        if "user_topic" in entities and 0 < len(topics) <= PREFETCH_TOPICS:
            keys[VIEWS["user_topic"]] = user_topic_keys(user_id, topics)
        try:
            return await self.state.store.read_many(keys, self.budgets.store_ms / 1000, "request", self.decoder)
        except StoreUnavailable:
            request.degraded.append("state_unavailable")
            return None

    def _recall(self, request: _Request, rows: Rows | None) -> tuple[int, Candidates]:
        """The in-memory recall, excluding what the user has seen (the store's rows and this
        process's own record of the user)."""
        user_id, index, now_ms = request.params.user_id, request.index, request.now_ms
        seen_ids, engaged_ids = self.state.writer.overlay(user_id)
        if rows is not None:
            ttl_ms = int(self.serving.seen_ttl_h * 3_600_000)
            seen_ids = live_videos(rows.get(SEEN_VIEW, {}).get(user_id), now_ms, ttl_ms) + seen_ids
            engaged_ids = live_videos(rows.get(RECENT_VIEW, {}).get(user_id), now_ms, ttl_ms) + engaged_ids
        recall = self.config.recall
        user_code = index.user_code(user_id)
        seen = np.unique(index.videos.codes(seen_ids)) if seen_ids else _EMPTY
        recent = index.videos.codes(engaged_ids[::-1][: recall.covisit_recent_items]) if engaged_ids else _EMPTY
        sources = request.variant.recall_sources if request.variant is not None else None
        candidates = index.recall(
            user_code,
            n=self.serving.candidates,
            seen=seen,
            recent=recent,
            sources=sources,
            explore=recall.exploration_slots,
            new_video_hours=recall.new_video_hours,
            realtime_limit=recall.covisit_neighbours,
            now_s=now_ms / 1000,
            rng=self._rng,
        )
        if not index.has_candidates:
            request.degraded.append("candidates_unavailable")
        elif sources is not None and user_code >= 0 and candidates.personal == 0:
            request.degraded.append("recall_empty")
        if len(recent) and not index.has_neighbours:
            request.degraded.append("neighbours_unavailable")
        return user_code, candidates

    async def _features(
        self,
        request: _Request,
        ranker: Ranker | None,
        rows: Rows | None,
        user_code: int,
        candidates: Candidates,
        video_ids: list[str],
    ) -> ModelInputs | None:
        """The model inputs of the candidates: video rows from the in-memory table, the user's rows
        from the request's store read. None when the ranker needs none or they are unavailable."""
        if ranker is None:
            request.degraded.append("model_unavailable")
            return None
        entities = ranker.entities
        if not entities or not len(candidates):
            return None
        videos = self.state.videos
        if ("video" in entities and not videos.loaded) or (rows is None and set(entities) - {"video"}):
            request.degraded.append("features_unavailable")
            return None
        index, params = request.index, request.params
        keys: FeatureKeys = feature_keys(
            params.user_id, video_ids, index.video_topic[candidates.video], index.topics, entities
        )
        rows = rows or {}
        topic_view = VIEWS["user_topic"]
        if "user_topic" in entities and keys.topics and topic_view not in rows:  # more topics than prefetched
            try:
                more = await self.state.store.read_many(
                    {topic_view: user_topic_keys(params.user_id, keys.topics)},
                    self.budgets.store_ms / 1000,
                    "topics",
                    self.decoder,
                )
            except StoreUnavailable:
                request.degraded.append("features_unavailable")
                return None
            rows = {**rows, **more}
        country, age_group = index.user_attributes(user_code)
        context = RequestContext(params.os, params.network, country, age_group, request.now.hour)
        video_block = videos.lookup(video_ids, request.now_ms) if "video" in entities else None
        return assemble(keys, rows, context, video_block)

    async def _scores(
        self, request: _Request, ranker: Ranker | None, inputs: ModelInputs | None, candidates: Candidates
    ) -> tuple[np.ndarray, str]:
        """The ranker's scores and its label, or the trending order and ``trending``."""
        n = len(candidates)
        if ranker is not None and not n:
            return np.zeros(0), ranker.label
        if ranker is not None and (inputs is not None or not ranker.entities):
            scores = self._rank(ranker, inputs, n, request.request_id, request.degraded)
            if scores is not None:
                return scores, ranker.label
        trending = request.index.trending_score_of[candidates.video].astype(np.float64)
        return np.nan_to_num(trending, nan=0.0), TRENDING

    def _rank(
        self, ranker: Ranker, inputs: ModelInputs | None, n: int, request_id: str, degraded: list[str]
    ) -> np.ndarray | None:
        """The ranker's scores, computed on the request's own thread: scoring a few hundred rows is
        a millisecond or two of CPU (the LightGBM fast path releases the GIL meanwhile), which a hand-over
        to a thread pool would only add to (measured: docs/serving.md). Scoring that takes longer than
        ``budgets.rank_ms`` is still used, and counted in ``reelhouse_rank_over_budget_total``: a model
        too large for the budget shows there, and the fix is a smaller model or more workers."""
        started = time.perf_counter()
        try:
            scores = ranker.score(inputs, n, request_seed(request_id))
        except Exception:  # noqa: BLE001 - a model that fails on today's inputs must not fail the feed
            log.exception("ranker %s failed", ranker.label)
            degraded.append("rank_failed")
            return None
        if time.perf_counter() - started > self.budgets.rank_ms / 1000:
            self.state.metrics.rank_over_budget.inc()
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n,):
            degraded.append("rank_failed")
            return None
        return scores

    def _log_impressions(self, request: _Request, items: list[dict[str, Any]], propensities: np.ndarray) -> None:
        producer = self.state.producer
        if not items:
            return
        if producer is None:
            self.state.metrics.produce_failed.labels(IMPRESSION).inc(len(items))
            return
        params = request.params
        session_id = params.session_id or derived_session_id(params.user_id, request.now)
        device = params.device
        key = params.user_id.encode()
        variant = request.assignment.label if request.assignment is not None else None
        for item, propensity in zip(items, propensities.tolist(), strict=True):
            event = {
                "schema_version": SCHEMA_VERSION,
                "event_id": f"{request.request_id}.{item['position']}",
                "event_type": IMPRESSION,
                "user_id": params.user_id,
                "video_id": item["video_id"],
                "event_time": request.now_ms,
                "session_id": session_id,
                "request_id": request.request_id,
                "device": device,
                "position": item["position"],
                "propensity": propensity,  # of this video at this slot (rerank.explore)
            }
            if variant is not None:
                event["variant"] = variant
            producer.produce(IMPRESSION, key, orjson.dumps(event))
