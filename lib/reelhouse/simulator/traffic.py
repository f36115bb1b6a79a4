"""The behaviour model: sessions of feed pages and organic plays, turned into encoded contract events.

No Kafka here: :class:`TrafficGenerator` returns :class:`EventBlock` objects (keys, values and
the ground truth behind them), so tests and the producing loop share exactly the same events.

How users behave (all latent variables live in the :class:`Catalogue`):

- A session belongs to a user drawn by activity. A feed session shows pages of ``page_size``
  videos (one ``request_id`` per page, ``position`` 0..n-1) recalled from global Zipf popularity,
  from a topic drawn from the user's taste, or fresh uploads / exploration. An organic session
  (search, profiles) plays videos with ``request_id`` ``""``; ``organic_share`` of the shown
  videos are organic.
- Every shown video gets an outcome from :mod:`reelhouse.simulator.behaviour` (shared with the
  closed loop): a ``skip`` (short watch) or a ``play`` whose watch ratio grows with
  ``taste . topic_mix``, quality and the user's bias; ``like``/``share``/``comment``/``follow``
  follow plays with probabilities rising with the same score.
- Time: the simulated clock advances ``ms_per_event`` per event (global rate across processes).
  Sessions last at most ``MAX_SESSION_MS`` (20 min) of shown videos. Events never get a time
  after ``now_ms``; if the clock would come closer than ``session_margin_ms`` (30 min) to it, it
  is held back, so sessions rarely reach into the future and need capping.

Encoding is vectorised with Arrow string kernels over pre-rendered JSON fragments (per user,
video, session and page): about 1 µs of CPU per event, generation and encoding together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reelhouse.events.contract import EVENT_TYPES, SCHEMA_VERSION
from reelhouse.simulator.behaviour import (
    COMMENT,
    ENGAGEMENT,
    FOLLOW,
    IMPRESSION,
    LIKE,
    MAX_PAGES,
    MAX_SESSION_MS,
    PAGES_P,
    PLAY,
    SHARE,
    SKIP,
    SWIPE_GAP_MS,
    engages,
    react,
)
from reelhouse.simulator.catalogue import APP_VERSIONS, COUNTRIES, OS_NAMES, Catalogue, user_id, video_id
from reelhouse.simulator.malformed import MALFORMED_KINDS, corrupt

__all__ = [
    "COMMENT", "FOLLOW", "IMPRESSION", "LIKE", "MAX_SESSION_MS", "NETWORKS", "NETWORK_WEIGHTS", "PLAY", "SHARE",
    "SKIP", "VALID", "EventBlock", "TrafficGenerator",
]  # fmt: skip
NETWORKS = ("wifi", "cellular", "unknown", "offline")
NETWORK_WEIGHTS = np.array([0.62, 0.34, 0.03, 0.01])
VALID = -1  # EventBlock.kind of a valid event; malformed ones hold an index into MALFORMED_KINDS

# What the open loop shows (the closed loop asks the feed service instead).
_RECALL_POPULAR, _RECALL_TOPIC = 0.45, 0.40  # the rest: fresh uploads and exploration
_ORGANIC_P, _MAX_ORGANIC = 0.4, 8  # organic plays per organic session: geometric, mean ~2.5


@dataclass
class EventBlock:
    """One block of messages in production order, with the ground truth behind each message.

    Message ``i`` is ``replacements[i]`` for a malformed one, else ``data[offsets[i]:offsets[i + 1]]``:
    the producing loop slices right before handing a message to librdkafka (which copies it),
    which is cheaper than holding a block's worth of separate ``bytes`` objects.
    """

    keys: list[bytes]
    data: bytes
    offsets: list[int]
    replacements: dict[int, bytes]  # index -> malformed message
    kind: np.ndarray  # int8: VALID or an index into MALFORMED_KINDS
    event_type: np.ndarray  # int8 index into EVENT_TYPES (of the event before any corruption)
    user: np.ndarray  # user index
    video: np.ndarray  # video index
    event_time_ms: np.ndarray  # epoch ms
    watch_ms: np.ndarray  # -1 where not a play/skip
    video_duration_ms: np.ndarray
    affinity: np.ndarray  # true taste . topic_mix of the (user, video) pair
    visible_videos: int  # videos that existed when the block was generated

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def values(self) -> list[bytes]:
        """Every message as its own ``bytes`` (for tests and small consumers)."""
        data, offsets = self.data, self.offsets
        values = [data[a:b] for a, b in zip(offsets, islice(offsets, 1, None))]
        for index, value in self.replacements.items():
            values[index] = value
        return values


class _Recall:
    """Samplers over the videos visible at a point in time (a prefix of the catalogue)."""

    def __init__(self, catalogue: Catalogue, visible: int) -> None:
        videos = catalogue.videos
        self.visible = visible
        self.initial = min(catalogue.initial_videos, visible)
        popularity = videos.popularity[:visible]
        self.cum = np.cumsum(popularity)
        topic = videos.topic[:visible]
        self.order = np.argsort(topic, kind="stable")
        self.topic_cum = np.cumsum(popularity[self.order])
        bounds = np.searchsorted(topic[self.order], np.arange(len(catalogue.topics) + 1))
        self.topic_start, self.topic_stop = bounds[:-1], bounds[1:]
        padded = np.concatenate([[0.0], self.topic_cum])
        self.topic_lo, self.topic_hi = padded[self.topic_start], padded[self.topic_stop]

    def popular(self, rng: np.random.Generator, n: int) -> np.ndarray:
        picks = np.searchsorted(self.cum, rng.random(n) * self.cum[-1], side="right")
        return np.minimum(picks, self.visible - 1)

    def by_topic(self, rng: np.random.Generator, topics: np.ndarray) -> np.ndarray:
        lo, hi = self.topic_lo[topics], self.topic_hi[topics]
        picks = np.searchsorted(self.topic_cum, lo + rng.random(len(topics)) * (hi - lo), side="right")
        picks = np.clip(picks, self.topic_start[topics], np.maximum(self.topic_stop[topics] - 1, 0))
        found = self.order[np.minimum(picks, self.visible - 1)]
        empty = hi <= lo
        if empty.any():
            found[empty] = self.popular(rng, int(empty.sum()))
        return found

    def fresh(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Half recent uploads (if any), half uniform exploration of the whole catalogue."""
        uniform = rng.integers(0, self.visible, size=n)
        if self.visible == self.initial:
            return uniform
        recent = rng.integers(max(self.initial, self.visible - 5_000), self.visible, size=n)
        return np.where(rng.random(n) < 0.5, recent, uniform)


def _pick_topics(rng: np.random.Generator, taste: np.ndarray) -> np.ndarray:
    cum = np.cumsum(taste, axis=1)
    return np.minimum((cum < rng.random(len(taste))[:, None] * cum[:, -1:]).sum(axis=1), taste.shape[1] - 1)


def _exclusive_cumsum_within(values: np.ndarray, group_first: np.ndarray, group_of: np.ndarray) -> np.ndarray:
    """Per element, the sum of the earlier values of its (contiguous) group."""
    exclusive = np.cumsum(values) - values
    return exclusive - exclusive[group_first][group_of]


class _Fragments:
    """Pre-rendered JSON pieces; an event is the concatenation of one piece of each column.

    JSON key order is free, so fields are ordered to need few pieces: the user's fragment carries
    its device, the session's carries the network, the page's request id leads into the video.
    """

    def __init__(self, catalogue: Catalogue, id_prefix: str) -> None:
        users = catalogue.users
        self.id_prefix = id_prefix
        self.head = pa.scalar(f'{{"schema_version":{SCHEMA_VERSION},"event_id":"e{id_prefix}')
        self.event_type = pa.array([f'","event_type":"{t}","user_id":"' for t in EVENT_TYPES])
        self.user = pa.array(
            [
                f'{user_id(i)}","device":{{"os":"{OS_NAMES[o]}","app_version":"{APP_VERSIONS[a]}",'
                f'"country":"{COUNTRIES[c]}","network":"'
                for i, (o, a, c) in enumerate(
                    zip(users.os.tolist(), users.app_version.tolist(), users.country.tolist())
                )
            ]
        )
        self.network = pa.array([f'{n}"}},"session_id":"s{id_prefix}' for n in NETWORKS])
        self.session_tail = pa.scalar('","request_id":"')
        self.request_head = pa.scalar(f"r{id_prefix}")
        self.request_tail = pa.scalar('","video_id":"')
        self.video = pa.array([], pa.string())

    def extend_videos(self, count: int) -> None:
        have = len(self.video)
        if count > have:
            more = pa.array([f'{video_id(i)}","event_time":' for i in range(have, count)])
            self.video = pa.concat_arrays([self.video, more]) if have else more


def _ints(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


class TrafficGenerator:
    """Generates blocks of events for the users of one producer process.

    Process ``process_index`` of ``processes`` simulates the users whose index is congruent to
    it, so a user's sessions come from one process in order. Everything is a function of
    ``(catalogue.seed, processes, process_index, start_ms)`` and the ``now_ms`` caps; with caps
    that never bind (the normal case) the same arguments give the same messages.
    """

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        start_ms: int,
        ms_per_event: float,
        malformed_share: float = 0.0,
        oversized_bytes: int = 20_000,
        process_index: int = 0,
        processes: int = 1,
        page_size: int = 8,
        organic_share: float = 0.08,
        session_margin_ms: int = MAX_SESSION_MS + 10 * 60_000,
    ) -> None:
        if not 0 <= process_index < processes:
            raise ValueError(f"process_index {process_index} is not in [0, {processes})")
        if processes > len(catalogue.users):
            raise ValueError(f"{processes} processes need at least as many users, got {len(catalogue.users)}")
        self.catalogue = catalogue
        self.start_ms = int(start_ms)
        # Each process covers the whole simulated span with 1/processes of the events.
        self.ms_per_event = ms_per_event * processes
        self.malformed_share = malformed_share
        self.oversized_bytes = oversized_bytes
        self.page_size = page_size
        # Share of sessions that are organic, such that `organic_share` of the items are.
        feed_items = page_size * (1 - (1 - PAGES_P) ** MAX_PAGES) / PAGES_P
        organic_items = (1 - (1 - _ORGANIC_P) ** _MAX_ORGANIC) / _ORGANIC_P
        self._organic_session_share = (
            organic_share * feed_items / (organic_share * feed_items + (1 - organic_share) * organic_items)
        )
        self.session_margin_ms = session_margin_ms
        self.rng = np.random.default_rng(np.random.SeedSequence([catalogue.seed, 2, processes, process_index]))
        self.clock_ms = 0.0  # offset of the next block from start_ms
        self.events_generated = 0
        self.sessions_generated = 0
        self.pages_generated = 0
        # Ids carry seed, start and process, so runs and processes never collide.
        prefix = f"{catalogue.seed:x}.{self.start_ms:x}.{processes}.{process_index}."
        self.fragments = _Fragments(catalogue, prefix)
        self.user_keys = [user_id(i).encode() for i in range(len(catalogue.users))]
        self.shard = np.arange(process_index, len(catalogue.users), processes)
        self.shard_cum = np.cumsum(catalogue.users.activity[self.shard])
        self._recall: _Recall | None = None
        self._events_per_session = 40.0

    def _visible(self, offset_ms: float) -> _Recall:
        visible = self.catalogue.uploads_until(offset_ms)
        if self._recall is None or self._recall.visible != visible:
            self._recall = _Recall(self.catalogue, visible)
            self.fragments.extend_videos(visible)
        return self._recall

    def next_block(
        self, target_events: int = 65_536, now_ms: int | None = None, max_events: int | None = None
    ) -> EventBlock:
        """About ``target_events`` events (whole sessions), at most ``max_events``; none later than ``now_ms``."""
        rng = self.rng
        if now_ms is not None:
            # Never let the simulated clock overtake the wall clock.
            self.clock_ms = min(self.clock_ms, now_ms - self.start_ms - self.session_margin_ms)
        recall = self._visible(self.clock_ms)  # uploads up to the block start, so never shown early
        users = self.catalogue.users

        # Sessions: users, networks, feed pages or organic plays.
        n_sessions = max(1, math.ceil(target_events / self._events_per_session))
        picks = np.searchsorted(self.shard_cum, rng.random(n_sessions) * self.shard_cum[-1], side="right")
        session_user = self.shard[np.minimum(picks, len(self.shard) - 1)]
        session_network = np.searchsorted(np.cumsum(NETWORK_WEIGHTS), rng.random(n_sessions) * NETWORK_WEIGHTS.sum())
        session_network = np.minimum(session_network, len(NETWORKS) - 1)
        organic = rng.random(n_sessions) < self._organic_session_share
        # Feed sessions come first, organic ones after, so each session's items are contiguous.
        order = np.argsort(organic, kind="stable")
        session_user, session_network, organic = session_user[order], session_network[order], organic[order]
        n_feed = int((~organic).sum())
        pages_per_session = np.minimum(rng.geometric(PAGES_P, size=n_feed), MAX_PAGES)
        organic_items = np.minimum(rng.geometric(_ORGANIC_P, size=n_sessions - n_feed), _MAX_ORGANIC)
        n_pages = int(pages_per_session.sum())
        page_size = self.page_size
        items_per_session = np.concatenate([pages_per_session * page_size, organic_items])
        n_items = int(items_per_session.sum())
        n_feed_items = n_pages * page_size
        item_session = np.repeat(np.arange(n_sessions), items_per_session)
        item_page = np.full(n_items, -1, dtype=np.int64)
        item_page[:n_feed_items] = np.repeat(np.arange(n_pages), page_size)
        item_position = np.full(n_items, -1, dtype=np.int64)
        item_position[:n_feed_items] = np.tile(np.arange(page_size), n_pages)
        item_user = session_user[item_session]

        # Recall: which video each item shows.
        source = rng.random(n_items)
        item_video = np.empty(n_items, dtype=np.int64)
        from_popular = source < _RECALL_POPULAR
        from_topic = (source >= _RECALL_POPULAR) & (source < _RECALL_POPULAR + _RECALL_TOPIC)
        is_organic_item = item_page < 0
        from_topic |= is_organic_item & ~from_popular  # organic plays are searches within a taste
        from_fresh = ~(from_popular | from_topic)
        item_video[from_popular] = recall.popular(rng, int(from_popular.sum()))
        item_video[from_topic] = recall.by_topic(rng, _pick_topics(rng, users.taste[item_user[from_topic]]))
        item_video[from_fresh] = recall.fresh(rng, int(from_fresh.sum()))
        self._deduplicate_pages(item_page[:n_feed_items], item_video[:n_feed_items], recall)

        # Outcomes.
        reactions = react(users, self.catalogue.videos, item_user, item_video, rng)
        affinity, score, skipped = reactions.affinity, reactions.score, reactions.skipped
        watch, duration = reactions.watch_ms, reactions.duration_ms

        # Time: items play back to back within a session, pages start when reached.
        session_first_item = np.concatenate([[0], np.cumsum(items_per_session)[:-1]])
        gap = rng.integers(*SWIPE_GAP_MS, size=n_items)
        item_start = _exclusive_cumsum_within(watch + gap, session_first_item, item_session)

        # A session ends after MAX_SESSION_MS: later pages (and organic plays) never happen.
        page_start = item_start[:n_feed_items][::page_size]
        shown_from = item_start.copy()
        shown_from[:n_feed_items] = page_start[item_page[:n_feed_items]]
        kept = np.flatnonzero(shown_from <= MAX_SESSION_MS)

        # Events: impressions, then outcomes, then engagements (a stable sort keeps that order on ties).
        feed_items = kept[kept < n_feed_items]
        ev_item = [feed_items, kept]
        ev_type = [np.full(len(feed_items), IMPRESSION, np.int8), np.where(skipped[kept], SKIP, PLAY).astype(np.int8)]
        ev_offset = [page_start[item_page[feed_items]] + item_position[feed_items], item_start[kept] + watch[kept]]
        played = kept[~skipped[kept]]
        for event_type in ENGAGEMENT:
            hit = played[engages(event_type, score[played], rng)]
            ev_item.append(hit)
            ev_type.append(np.full(len(hit), event_type, np.int8))
            ev_offset.append(item_start[hit] + 1 + (rng.random(len(hit)) * watch[hit]).astype(np.int64))
        ev_item_all = np.concatenate(ev_item)
        n_events = len(ev_item_all)
        self._events_per_session = 0.8 * self._events_per_session + 0.2 * n_events / n_sessions

        # Sessions start spread over the block's share of simulated time.
        span = n_events * self.ms_per_event
        session_start = self.clock_ms + rng.random(n_sessions) * span
        ev_session = item_session[ev_item_all]
        ev_offset_all = (session_start[ev_session] + np.concatenate(ev_offset)).astype(np.int64)
        order = np.argsort(ev_offset_all, kind="stable")
        if max_events is not None and max_events < n_events:
            order = order[:max_events]
            n_events = max_events
        self.clock_ms += span
        ev_item_all, ev_session = ev_item_all[order], ev_session[order]
        ev_type_all = np.concatenate(ev_type)[order]
        event_time = self.start_ms + ev_offset_all[order]
        if now_ms is not None:
            np.minimum(event_time, now_ms, out=event_time)

        ev_user = item_user[ev_item_all]
        ev_video = item_video[ev_item_all]
        ev_watch = np.where((ev_type_all == PLAY) | (ev_type_all == SKIP), watch[ev_item_all], -1)
        data, offsets = self._render(
            ev_type_all, ev_user, ev_video, event_time, ev_session, session_network,
            item_page[ev_item_all], item_position[ev_item_all], ev_watch, duration[ev_item_all], n_sessions, n_pages,
        )  # fmt: skip
        kind, replacements = self._corrupt(data, offsets)
        self.events_generated += n_events
        self.sessions_generated += n_sessions
        self.pages_generated += n_pages
        keys = self.user_keys
        return EventBlock(
            keys=[keys[u] for u in ev_user.tolist()],
            data=data,
            offsets=offsets,
            replacements=replacements,
            kind=kind,
            event_type=ev_type_all,
            user=ev_user,
            video=ev_video,
            event_time_ms=event_time,
            watch_ms=ev_watch,
            video_duration_ms=duration[ev_item_all],
            affinity=affinity[ev_item_all],
            visible_videos=recall.visible,
        )

    def _deduplicate_pages(self, page: np.ndarray, video: np.ndarray, recall: _Recall) -> None:
        """A page never shows a video twice (outcomes are joined to impressions by request and video)."""
        if len(page) == 0 or recall.visible < 2 * self.page_size:
            return
        for _ in range(100):
            key = page * recall.visible + video
            _, first = np.unique(key, return_index=True)
            duplicate = np.ones(len(key), dtype=bool)
            duplicate[first] = False
            if not duplicate.any():
                return
            video[duplicate] = self.rng.integers(0, recall.visible, size=int(duplicate.sum()))

    def _render(
        self,
        event_type: np.ndarray,
        user: np.ndarray,
        video: np.ndarray,
        event_time: np.ndarray,
        session: np.ndarray,
        session_network: np.ndarray,
        page: np.ndarray,
        position: np.ndarray,
        watch: np.ndarray,
        duration: np.ndarray,
        n_sessions: int,
        n_pages: int,
    ) -> tuple[bytes, list[int]]:
        """All events as one buffer of concatenated JSON objects, and their offsets."""
        f = self.fragments
        n = len(event_type)
        join = pc.binary_join_element_wise
        sessions = join(
            f.network.take(pa.array(session_network)),
            _ints(np.arange(self.sessions_generated, self.sessions_generated + n_sessions)),
            f.session_tail,
            "",
        )
        # Page requests, plus the empty request id of organic events at index n_pages.
        requests = join(
            f.request_head, _ints(np.arange(self.pages_generated, self.pages_generated + n_pages)), f.request_tail, ""
        )
        requests = pa.concat_arrays([requests, pa.array([f.request_tail.as_py()])])
        # The per-type fields, rendered per type and then put in event order.
        impression, play, skip = event_type == IMPRESSION, event_type == PLAY, event_type == SKIP
        tails = pa.concat_arrays(
            [
                join(',"position":', _ints(position[impression]), "}", ""),
                join(',"watch_ms":', _ints(watch[play]), ',"video_duration_ms":', _ints(duration[play]), "}", ""),
                join(',"watch_ms":', _ints(watch[skip]), "}", ""),
                pa.array(["}"]),
            ]
        )
        tail_index = np.full(n, len(tails) - 1, dtype=np.int64)
        start = 0
        for mask in (impression, play, skip):
            count = int(mask.sum())
            tail_index[mask] = np.arange(start, start + count)
            start += count
        joined = join(
            f.head,
            _ints(np.arange(self.events_generated, self.events_generated + n)),
            f.event_type.take(pa.array(event_type)),
            f.user.take(pa.array(user)),
            sessions.take(pa.array(session)),
            requests.take(pa.array(np.where(page < 0, n_pages, page))),
            f.video.take(pa.array(video)),
            _ints(event_time),
            tails.take(pa.array(tail_index)),
            "",
        )
        offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32, count=n + 1, offset=joined.offset * 4)
        return joined.buffers()[2].to_pybytes(), offsets.tolist()

    def _corrupt(self, data: bytes, offsets: list[int]) -> tuple[np.ndarray, dict[int, bytes]]:
        kind = np.full(len(offsets) - 1, VALID, dtype=np.int8)
        if self.malformed_share <= 0:
            return kind, {}
        broken = np.flatnonzero(self.rng.random(len(kind)) < self.malformed_share)
        kind[broken] = self.rng.integers(0, len(MALFORMED_KINDS), size=len(broken))
        replacements = {
            index: corrupt(data[offsets[index] : offsets[index + 1]], k, self.rng, self.oversized_bytes)
            for index, k in zip(broken.tolist(), kind[broken].tolist())
        }
        return kind, replacements
