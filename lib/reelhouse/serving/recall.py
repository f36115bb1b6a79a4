"""Recall at request time: compact in-memory indexes of the recall tables, and one user's candidates.

The batch layer writes ``user_candidates`` (each user's blended candidates, plus the ``'*'`` list
of popular videos for users without a row) and ``item_neighbours`` (nearest videos per video);
silver holds ``dim_videos`` (topic, creator, upload time) and ``dim_users`` (country, age group).
:func:`load_recall_index` reads them with delta-rs into a :class:`RecallIndex`: every id becomes
an integer code into a sorted vocabulary (a numpy bytes array searched by bisection), and the
per-user and per-video lists are CSR arrays (offsets + int32 codes + float32 scores), so millions
of candidate rows cost a few bytes each and no Python object per row. :class:`RecallTables`
rebuilds the index in the background when a table's Delta version changes and swaps it in with
one reference assignment: a request keeps the index it started with.

A user's candidates (:meth:`RecallIndex.recall`), in priority order, cut at ``n`` once videos
already seen are removed and repeats keep their first place:

1. ``exploration``: a few videos uploaded within ``recall.new_video_hours``, drawn at random, so
   new videos reach feeds between batch builds (for unknown and new users too);
2. ``realtime``: nearest neighbours of the videos the user engaged with most recently (events
   posted to the service), round robin over those seeds: feedback changes the next feed within
   seconds, long before the next candidates build;
3. the user's own blended candidates, in blend order, keeping the source the blend gave them
   (only the variant's ``recall_sources`` when it names some);
4. ``trending``: the ``'*'`` list, which tops up a short list and is all an unknown user has.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reelhouse.config import RecallConfig
from reelhouse.lake import Lake
from reelhouse.recall.blend import EXPLORATION
from reelhouse.recall.tables import ANY_USER
from reelhouse.silver.tables import DIM_USERS, DIM_VIDEOS

log = logging.getLogger(__name__)

TRENDING = "trending"
REALTIME = "realtime"
SERVING_SOURCES = (EXPLORATION, REALTIME, TRENDING)
NEW_POOL_REFRESH_S = 10.0  # how long the set of new videos is reused before it is recomputed
_EMPTY_CODES = np.zeros(0, dtype=np.int32)


# ----------------------------------------------------------------------------- vocabularies
class IdVocabulary:
    """Sorted unique ids (UTF-8 bytes in a numpy ``S`` array); an id's code is its position."""

    def __init__(self, ids: np.ndarray) -> None:
        self._ids = ids

    @classmethod
    def from_arrow(cls, columns: Sequence[pa.Array | pa.ChunkedArray], exclude: str | None = None) -> IdVocabulary:
        chunks = [c for column in columns for c in (column.chunks if isinstance(column, pa.ChunkedArray) else [column])]
        if not chunks:
            return cls(np.zeros(0, dtype="S1"))
        merged = pa.chunked_array([c.cast(pa.string()) for c in chunks], type=pa.string())
        unique = pc.unique(merged.drop_null())
        if exclude is not None:
            unique = unique.filter(pc.not_equal(unique, exclude))
        unique = unique.take(pc.sort_indices(unique))
        return cls(unique.cast(pa.binary()).to_numpy(zero_copy_only=False).astype("S"))

    def __len__(self) -> int:
        return len(self._ids)

    def code(self, value: str) -> int:
        if not len(self._ids):
            return -1
        key = value.encode()
        at = int(np.searchsorted(self._ids, key))
        return at if at < len(self._ids) and self._ids[at] == key else -1

    def codes(self, values: Sequence[str]) -> np.ndarray:
        """int32 codes of ``values`` (-1 for unknown ids)."""
        if not len(values) or not len(self._ids):
            return np.full(len(values), -1, dtype=np.int32)
        keys = np.array([v.encode() for v in values], dtype="S")
        at = np.minimum(np.searchsorted(self._ids, keys), len(self._ids) - 1)
        return np.where(self._ids[at] == keys, at, -1).astype(np.int32)

    def codes_of(self, column: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """int32 codes of an Arrow string column (build time: vectorised, -1 for unknown or null)."""
        value_set = pa.array(self._ids, type=pa.binary())
        found = pc.index_in(column.cast(pa.binary()), value_set=value_set)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)

    def ids(self, codes: np.ndarray) -> list[str]:
        return [b.decode() for b in self._ids[codes].tolist()]

    def id(self, code: int) -> str:
        return self._ids[code].decode()


def _categories(column: pa.ChunkedArray | None, n: int) -> tuple[np.ndarray, list[str]]:
    """Dictionary-encode a string column: (int32 codes, -1 for null; the distinct values)."""
    if column is None:
        return np.full(n, -1, dtype=np.int32), []
    encoded = column.cast(pa.string()).combine_chunks().dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    return codes, [str(v) for v in encoded.dictionary.to_pylist()]


def _csr(owner: np.ndarray, order_keys: Sequence[np.ndarray], n_owners: int) -> tuple[np.ndarray, np.ndarray]:
    """Row order that groups rows by ``owner`` (then ``order_keys``), and the owners' offsets."""
    keep = np.flatnonzero(owner >= 0)
    order = keep[np.lexsort((*[k[keep] for k in reversed(order_keys)], owner[keep]))]
    offsets = np.searchsorted(owner[order], np.arange(n_owners + 1)).astype(np.int64)
    return order, offsets


# ----------------------------------------------------------------------------- the index
@dataclass
class Candidates:
    """A request's candidates in recall order: video codes, source codes, the source's score."""

    video: np.ndarray  # int32 codes into RecallIndex.videos
    source: np.ndarray  # int16 codes into RecallIndex.source_names
    score: np.ndarray  # float32, NaN when the source gives none
    personal: int = 0  # how many came from the user's own list or from realtime recall

    def __len__(self) -> int:
        return len(self.video)


@dataclass
class RecallIndex:
    versions: dict[str, int | None]  # Delta version of each table read (None: missing)
    videos: IdVocabulary
    users: IdVocabulary
    source_names: list[str]
    video_topic: np.ndarray  # int32 per video code, -1 unknown
    topics: list[str]
    video_creator: np.ndarray
    creators: list[str]
    video_upload_s: np.ndarray  # float64 epoch seconds, NaN unknown
    user_country: np.ndarray  # int32 per user code, -1 unknown
    countries: list[str]
    user_age_group: np.ndarray
    age_groups: list[str]
    cand_offsets: np.ndarray  # int64, n_users + 1
    cand_video: np.ndarray  # int32
    cand_source: np.ndarray  # int16
    cand_score: np.ndarray  # float32
    trending_video: np.ndarray  # int32, the '*' list in order
    trending_score_of: np.ndarray  # float32 per video code: its '*' score, NaN when not trending
    nb_offsets: np.ndarray | None  # int64, n_videos + 1 (None: no neighbours table)
    nb_video: np.ndarray
    nb_score: np.ndarray
    loaded_at: float = field(default_factory=time.time)
    _pool: tuple[float, float, np.ndarray] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ lookups
    @property
    def has_candidates(self) -> bool:
        return self.versions.get("user_candidates") is not None

    @property
    def has_neighbours(self) -> bool:
        return self.nb_offsets is not None

    def source_code(self, name: str) -> int:
        return self.source_names.index(name)

    def user_code(self, user_id: str) -> int:
        return self.users.code(user_id)

    def user_attributes(self, user_code: int) -> tuple[str | None, str | None]:
        """The user's (country, age group) from dim_users; None when unknown."""
        if user_code < 0:
            return None, None
        country, age = int(self.user_country[user_code]), int(self.user_age_group[user_code])
        return (self.countries[country] if country >= 0 else None, self.age_groups[age] if age >= 0 else None)

    def topic_names(self, video: np.ndarray) -> list[str | None]:
        return [self.topics[t] if t >= 0 else None for t in self.video_topic[video].tolist()]

    def new_pool(self, now_s: float, hours: float) -> np.ndarray:
        """Codes of videos uploaded within ``hours`` before ``now_s`` (recomputed every few seconds)."""
        cached = self._pool
        if cached is not None and cached[1] == hours and 0 <= now_s - cached[0] < NEW_POOL_REFRESH_S:
            return cached[2]
        age = now_s - self.video_upload_s
        with np.errstate(invalid="ignore"):
            pool = np.flatnonzero((age >= 0) & (age <= hours * 3600.0)).astype(np.int32)
        self._pool = (now_s, hours, pool)
        return pool

    def neighbours(self, seeds: np.ndarray, limit: int) -> np.ndarray:
        """Neighbours of ``seeds`` (most recent first), round robin: every seed's best, then every
        seed's second ...; unique, at most ``limit``."""
        if self.nb_offsets is None or not len(seeds) or limit <= 0:
            return _EMPTY_CODES
        seeds = seeds[seeds >= 0]
        starts, ends = self.nb_offsets[seeds], self.nb_offsets[seeds + 1]
        lengths = ends - starts
        total = int(lengths.sum())
        if total == 0:
            return _EMPTY_CODES
        seed_of = np.repeat(np.arange(len(seeds)), lengths)
        rank = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        rows = np.repeat(starts, lengths) + rank
        found = self.nb_video[rows[np.lexsort((seed_of, rank))]]
        _, first = np.unique(found, return_index=True)
        return found[np.sort(first)][:limit]

    def recall(
        self,
        user_code: int,
        *,
        n: int,
        seen: np.ndarray = _EMPTY_CODES,
        recent: np.ndarray = _EMPTY_CODES,
        sources: Sequence[str] | None = None,
        explore: int = 0,
        new_video_hours: float = 48.0,
        realtime_limit: int = 50,
        now_s: float | None = None,
        rng: np.random.Generator | None = None,
    ) -> Candidates:
        """Up to ``n`` candidates (module docstring), none of them in ``seen``."""
        now_s = time.time() if now_s is None else now_s
        parts: list[tuple[np.ndarray, int | np.ndarray, np.ndarray | None]] = []
        if explore > 0:
            pool = self.new_pool(now_s, new_video_hours)
            if len(pool):
                rng = rng or np.random.default_rng()
                # A few spare draws stand in for the ones the user has already seen.
                drawn = rng.choice(pool, size=min(len(pool), 4 * explore + min(len(seen), 64)), replace=False)
                drawn = drawn[~np.isin(drawn, seen)][:explore]
                parts.append((drawn, self.source_code(EXPLORATION), None))
        personal = 0
        if len(recent) and (sources is None or REALTIME in sources):
            near = self.neighbours(recent, realtime_limit)
            personal += len(near)
            parts.append((near, self.source_code(REALTIME), None))
        if user_code >= 0:
            start, end = int(self.cand_offsets[user_code]), int(self.cand_offsets[user_code + 1])
            video, source, score = self.cand_video[start:end], self.cand_source[start:end], self.cand_score[start:end]
            if sources is not None:
                allowed = [self.source_names.index(s) for s in sources if s in self.source_names]
                keep = np.isin(source, np.array(allowed, dtype=source.dtype))
                video, source, score = video[keep], source[keep], score[keep]
            personal += len(video)
            parts.append((video, source, score))
        if len(self.trending_video):
            trending = self.trending_video
            parts.append((trending, self.source_code(TRENDING), self.trending_score_of[trending]))
        if not parts:
            return Candidates(_EMPTY_CODES, np.zeros(0, dtype=np.int16), np.zeros(0, dtype=np.float32), personal)
        video = np.concatenate([p[0] for p in parts]).astype(np.int32, copy=False)
        source = np.concatenate(
            [np.full(len(p[0]), p[1], dtype=np.int16) if np.isscalar(p[1]) else p[1] for p in parts]
        ).astype(np.int16, copy=False)
        score = np.concatenate(
            [np.full(len(p[0]), np.nan, dtype=np.float32) if p[2] is None else p[2] for p in parts]
        ).astype(np.float32, copy=False)
        if len(seen):
            fresh = ~np.isin(video, seen)
            video, source, score = video[fresh], source[fresh], score[fresh]
        _, first = np.unique(video, return_index=True)
        keep = np.sort(first)[:n]
        return Candidates(video[keep], source[keep], score[keep], personal)


# ----------------------------------------------------------------------------- building
def build_recall_index(
    candidates: pa.Table | None,
    neighbours: pa.Table | None,
    dim_videos: pa.Table | None,
    dim_users: pa.Table | None,
    versions: dict[str, int | None] | None = None,
) -> RecallIndex:
    """The index of four Arrow tables (any may be None: that part is then empty)."""
    video_columns = []
    if candidates is not None:
        video_columns.append(candidates["video_id"])
    if neighbours is not None:
        video_columns += [neighbours["video_id"], neighbours["neighbour_id"]]
    if dim_videos is not None:
        video_columns.append(dim_videos["video_id"])
    videos = IdVocabulary.from_arrow(video_columns)
    user_columns = []
    if candidates is not None:
        user_columns.append(candidates["user_id"])
    if dim_users is not None:
        user_columns.append(dim_users["user_id"])
    users = IdVocabulary.from_arrow(user_columns, exclude=ANY_USER)
    n_videos, n_users = len(videos), len(users)

    video_topic = np.full(n_videos, -1, dtype=np.int32)
    video_creator = np.full(n_videos, -1, dtype=np.int32)
    video_upload_s = np.full(n_videos, np.nan)
    topics: list[str] = []
    creators: list[str] = []
    if dim_videos is not None and dim_videos.num_rows:
        at = videos.codes_of(dim_videos["video_id"])
        topic_codes, topics = _categories(dim_videos["topic"], dim_videos.num_rows)
        creator_codes, creators = _categories(dim_videos["creator_id"], dim_videos.num_rows)
        video_topic[at], video_creator[at] = topic_codes, creator_codes
        upload = dim_videos["upload_time"].cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        video_upload_s[at] = upload.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
        # Arrow nulls become NaN above only through a float cast; set them explicitly.
        nulls = upload.is_null().to_numpy(zero_copy_only=False)
        video_upload_s[at[nulls]] = np.nan

    user_country = np.full(n_users, -1, dtype=np.int32)
    user_age_group = np.full(n_users, -1, dtype=np.int32)
    countries: list[str] = []
    age_groups: list[str] = []
    if dim_users is not None and dim_users.num_rows:
        at = users.codes_of(dim_users["user_id"])
        country_codes, countries = _categories(dim_users["country"], dim_users.num_rows)
        age_codes, age_groups = _categories(dim_users["age_group"], dim_users.num_rows)
        user_country[at], user_age_group[at] = country_codes, age_codes

    table_sources: list[str] = []
    if candidates is not None and candidates.num_rows:
        table_sources = sorted(pc.unique(candidates["source"]).to_pylist())
    source_names = list(dict.fromkeys([*table_sources, *SERVING_SOURCES]))

    cand_offsets = np.zeros(n_users + 1, dtype=np.int64)
    cand_video, cand_source, cand_score = _EMPTY_CODES, np.zeros(0, dtype=np.int16), np.zeros(0, dtype=np.float32)
    trending_video = _EMPTY_CODES
    trending_score_of = np.full(n_videos, np.nan, dtype=np.float32)
    if candidates is not None and candidates.num_rows:
        user_code = users.codes_of(candidates["user_id"])
        video_code = videos.codes_of(candidates["video_id"])
        source_code = np.asarray(
            pc.index_in(candidates["source"], value_set=pa.array(source_names)).to_numpy(zero_copy_only=False),
            dtype=np.int16,
        )
        score = candidates["score"].cast(pa.float32()).to_numpy(zero_copy_only=False).astype(np.float32)
        position = candidates["position"].to_numpy(zero_copy_only=False).astype(np.int64)
        order, cand_offsets = _csr(user_code, [position], n_users)
        cand_video, cand_source, cand_score = video_code[order], source_code[order], score[order]
        is_any = pc.equal(candidates["user_id"], ANY_USER).to_numpy(zero_copy_only=False)
        any_rows = np.flatnonzero(is_any)
        any_rows = any_rows[np.argsort(position[any_rows], kind="stable")]
        trending_video = video_code[any_rows]
        trending_score_of[trending_video] = score[any_rows]

    nb_offsets = None
    nb_video, nb_score = _EMPTY_CODES, np.zeros(0, dtype=np.float32)
    if neighbours is not None:
        owner = videos.codes_of(neighbours["video_id"])
        rank = neighbours["rank"].to_numpy(zero_copy_only=False).astype(np.int64)
        score = neighbours["score"].cast(pa.float32()).to_numpy(zero_copy_only=False).astype(np.float32)
        order, nb_offsets = _csr(owner, [rank, -score], n_videos)
        nb_video = videos.codes_of(neighbours["neighbour_id"])[order]
        nb_score = score[order]

    return RecallIndex(
        versions=dict(versions or {}),
        videos=videos,
        users=users,
        source_names=source_names,
        video_topic=video_topic,
        topics=topics,
        video_creator=video_creator,
        creators=creators,
        video_upload_s=video_upload_s,
        user_country=user_country,
        countries=countries,
        user_age_group=user_age_group,
        age_groups=age_groups,
        cand_offsets=cand_offsets,
        cand_video=cand_video,
        cand_source=cand_source,
        cand_score=cand_score,
        trending_video=trending_video,
        trending_score_of=trending_score_of,
        nb_offsets=nb_offsets,
        nb_video=nb_video,
        nb_score=nb_score,
    )


_COLUMNS = {
    "user_candidates": ["user_id", "video_id", "source", "score", "position"],
    "item_neighbours": ["video_id", "neighbour_id", "rank", "score"],
    DIM_VIDEOS.name: ["video_id", "creator_id", "topic", "upload_time"],
    DIM_USERS.name: ["user_id", "country", "age_group"],
}


def recall_table_names(recall: RecallConfig) -> dict[str, str]:
    """Role -> Delta table name of the four tables the index reads."""
    return {
        "user_candidates": recall.candidates_table,
        "item_neighbours": recall.neighbours_table,
        DIM_VIDEOS.name: DIM_VIDEOS.name,
        DIM_USERS.name: DIM_USERS.name,
    }


def table_versions(lake: Lake, recall: RecallConfig) -> dict[str, int | None]:
    """The current Delta version of each table (None when it does not exist)."""
    versions: dict[str, int | None] = {}
    for role, name in recall_table_names(recall).items():
        versions[role] = lake.version(name) if lake.exists(name) else None
    return versions


def load_recall_index(lake: Lake, recall: RecallConfig, versions: dict[str, int | None] | None = None) -> RecallIndex:
    """Read the four tables at ``versions`` (default: their current ones) and index them."""
    versions = table_versions(lake, recall) if versions is None else versions
    tables: dict[str, pa.Table | None] = {}
    for role, name in recall_table_names(recall).items():
        version = versions.get(role)
        tables[role] = None if version is None else lake.to_arrow(name, version=version, columns=_COLUMNS[role])
    return build_recall_index(
        tables["user_candidates"], tables["item_neighbours"], tables[DIM_VIDEOS.name], tables[DIM_USERS.name], versions
    )


def empty_index() -> RecallIndex:
    return build_recall_index(None, None, None, None, {})


class RecallTables:
    """The current :class:`RecallIndex`, rebuilt when a table's Delta version changes.

    :meth:`refresh` runs on a background thread (``serving.tables_poll_s``); a failed rebuild
    keeps the previous index (and is logged and counted), so a table being rewritten or briefly
    unreadable never empties the feed.
    """

    def __init__(
        self,
        lake: Lake,
        recall: RecallConfig,
        on_reload: Callable[[RecallIndex | None, Exception | None], None] | None = None,
    ) -> None:
        self.lake = lake
        self.recall = recall
        self.current = empty_index()
        self.loaded = False  # True once a build from the lake succeeded
        self.last_error: str | None = None
        self._on_reload = on_reload
        self._lock = threading.Lock()  # one rebuild at a time

    def refresh(self) -> bool:
        """Rebuild if any table's version moved (or nothing was loaded yet); True if swapped."""
        with self._lock:
            try:
                versions = table_versions(self.lake, self.recall)
                if self.loaded and versions == self.current.versions:
                    return False
                started = time.perf_counter()
                index = load_recall_index(self.lake, self.recall, versions)
            except Exception as e:  # noqa: BLE001 - any read failure keeps the previous index
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning(
                    "recall tables could not be loaded (%s); keeping the index loaded at %s",
                    self.last_error,
                    dt.datetime.fromtimestamp(self.current.loaded_at, dt.UTC).isoformat(),
                )
                if self._on_reload:
                    self._on_reload(None, e)
                return False
            self.current = index
            self.loaded = True
            self.last_error = None
            log.info(
                "recall index loaded in %.2f s: %d users, %d videos, %d candidate rows, %d trending, "
                "%d neighbour rows; versions %s",
                time.perf_counter() - started,
                len(index.users),
                len(index.videos),
                len(index.cand_video),
                len(index.trending_video),
                len(index.nb_video),
                versions,
            )
            if self._on_reload:
                self._on_reload(index, None)
            return True
