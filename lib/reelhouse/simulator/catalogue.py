"""The simulated world's dimension data: users, creators' videos and the uploads that arrive later.

Everything is drawn from the seed, so every producer process rebuilds the same catalogue and
the same upload stream without exchanging data. Times are kept as offsets in milliseconds from
the simulation start (negative = before it) and become epoch milliseconds only when written.

Latent variables (``taste``, ``activity``, ``watch_bias``, ``mix``, ``popularity``) drive the
behaviour model. They are written to ``user_tastes.parquet`` and ``video_topics.parquet`` as
ground truth, **for evaluation only**: a model must learn them from events, never read them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from reelhouse.errors import CatalogueError

log = logging.getLogger(__name__)

TOPIC_NAMES = (
    "comedy", "dance", "food", "pets", "sports", "gaming", "beauty", "fashion",
    "music", "diy", "travel", "science", "fitness", "education", "cars", "art",
    "news", "movies", "family", "nature", "tech", "finance", "books", "asmr",
)  # fmt: skip
COUNTRIES = ("US", "IN", "BR", "ID", "MX", "GB", "DE", "FR", "JP", "PH", "VN", "TR", "EG", "NG", "CA", "ES", "IT", "KR")
COUNTRY_WEIGHTS = (22, 12, 9, 8, 5, 5, 4, 4, 4, 4, 4, 3, 3, 3, 3, 3, 3, 3)
OS_NAMES = ("ios", "android", "web", "other")
OS_WEIGHTS = (42, 53, 4, 1)
APP_VERSIONS = ("33.2.0", "33.1.4", "33.0.1", "32.9.0", "32.5.2", "31.0.0")
APP_VERSION_WEIGHTS = (35, 25, 15, 12, 8, 5)
AGE_GROUPS = ("13-17", "18-24", "25-34", "35-44", "45+")
AGE_GROUP_WEIGHTS = (12, 35, 28, 15, 10)

DAY_MS = 86_400_000
# Uploads are generated in fixed-size chunks so the stream is the same whatever times it is asked about.
_UPLOAD_CHUNK = 64

CATALOGUE_FILES = ("users", "videos", "user_tastes", "video_topics")


def topic_names(topics: int) -> tuple[str, ...]:
    if topics <= len(TOPIC_NAMES):
        return TOPIC_NAMES[:topics]
    return tuple(f"topic_{i:02d}" for i in range(topics))


def user_id(index: int) -> str:
    return f"u{index:06d}"


def video_id(index: int) -> str:
    return f"v{index:07d}"


def creator_id(index: int) -> str:
    return f"c{index:06d}"


def _probabilities(weights: tuple[float, ...]) -> np.ndarray:
    array = np.asarray(weights, dtype=np.float64)
    return array / array.sum()


@dataclass
class Users:
    country: np.ndarray  # int16 codes into COUNTRIES
    os: np.ndarray  # int16 codes into OS_NAMES
    app_version: np.ndarray  # int16 codes into APP_VERSIONS
    age_group: np.ndarray  # int16 codes into AGE_GROUPS
    signup_offset_ms: np.ndarray  # int64, negative: before the simulation start
    taste: np.ndarray  # float32 (users, topics), rows sum to 1 — latent
    activity: np.ndarray  # float64, relative session frequency — latent
    watch_bias: np.ndarray  # float32, how much longer than average this user watches — latent

    def __len__(self) -> int:
        return len(self.activity)


@dataclass
class Videos:
    creator: np.ndarray  # int32
    topic: np.ndarray  # int16 primary topic
    mix: np.ndarray  # float32 (videos, topics), rows sum to 1 — latent
    quality: np.ndarray  # float32 in [0, 1]
    duration_ms: np.ndarray  # int64
    popularity: np.ndarray  # float64 Zipf weight — latent
    upload_offset_ms: np.ndarray  # int64, negative: uploaded before the simulation start

    def __len__(self) -> int:
        return len(self.popularity)

    def concat(self, other: Videos) -> Videos:
        return Videos(**{f.name: np.concatenate([getattr(self, f.name), getattr(other, f.name)]) for f in fields(self)})

    def head(self, count: int) -> Videos:
        return Videos(**{f.name: getattr(self, f.name)[:count] for f in fields(self)})


class Catalogue:
    """Users, videos and the deterministic upload stream of one seed.

    ``videos`` grows as :meth:`uploads_until` is asked about later times; video ``i`` is
    ``video_id(i)``, the first ``initial_videos`` exist before the simulation starts and the
    rest are uploads in upload-time order.
    """

    def __init__(
        self,
        *,
        seed: int,
        users: int,
        videos: int,
        topics: int,
        creators: int,
        zipf_exponent: float,
        uploads_per_hour: float,
    ) -> None:
        if seed < 0:
            raise CatalogueError(f"seed must be >= 0, got {seed}")
        self.seed = seed
        self.topics = topic_names(topics)
        self.zipf_exponent = zipf_exponent
        self.uploads_per_hour = uploads_per_hour
        self.initial_videos = videos
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
        t = len(self.topics)
        # Topics differ in size; creators specialise in one topic; a few creators post most videos.
        self._topic_share = rng.dirichlet(np.full(t, 3.0))
        self._creator_topic = rng.choice(t, size=creators, p=self._topic_share).astype(np.int16)
        creator_weight = 1.0 / np.arange(1, creators + 1) ** 0.8
        self._creator_cum = np.cumsum(rng.permutation(creator_weight))
        self.users = self._draw_users(rng, users, t)
        # Zipf popularity by rank; better videos tend to rank higher. Uploads are ranked against
        # the same reference scores, so a new video can become a hit.
        scores = rng.random(videos) * 0.6 + 0.4 * rng.normal(size=videos)
        self._reference_scores = np.sort(scores)
        self.videos = self._draw_videos(rng, videos, scores)
        # Mostly recent (mean age 45 days), at least a minute old, none older than three years.
        age_ms = np.minimum(rng.exponential(45 * DAY_MS, size=videos), 3 * 365 * DAY_MS) + rng.integers(
            60_000, 3_600_000, size=videos
        )
        self.videos.upload_offset_ms = -age_ms.astype(np.int64)
        self._upload_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
        self._next_upload_offset = 0.0

    @property
    def creators(self) -> int:
        return len(self._creator_topic)

    def _draw_users(self, rng: np.random.Generator, count: int, topics: int) -> Users:
        return Users(
            country=rng.choice(len(COUNTRIES), size=count, p=_probabilities(COUNTRY_WEIGHTS)).astype(np.int16),
            os=rng.choice(len(OS_NAMES), size=count, p=_probabilities(OS_WEIGHTS)).astype(np.int16),
            app_version=rng.choice(len(APP_VERSIONS), size=count, p=_probabilities(APP_VERSION_WEIGHTS)).astype(
                np.int16
            ),
            age_group=rng.choice(len(AGE_GROUPS), size=count, p=_probabilities(AGE_GROUP_WEIGHTS)).astype(np.int16),
            signup_offset_ms=-rng.integers(DAY_MS, 3 * 365 * DAY_MS, size=count, dtype=np.int64),
            taste=rng.dirichlet(np.full(topics, 0.3), size=count).astype(np.float32),
            activity=rng.lognormal(0.0, 1.0, size=count),
            watch_bias=rng.normal(0.0, 0.4, size=count).astype(np.float32),
        )

    def _draw_videos(self, rng: np.random.Generator, count: int, scores: np.ndarray) -> Videos:
        t = len(self.topics)
        creator = np.searchsorted(self._creator_cum, rng.random(count) * self._creator_cum[-1], side="right")
        creator = np.minimum(creator, self.creators - 1).astype(np.int32)
        own_topic = rng.random(count) < 0.8
        topic = np.where(own_topic, self._creator_topic[creator], rng.choice(t, size=count, p=self._topic_share))
        topic = topic.astype(np.int16)
        mix = 0.3 * rng.dirichlet(np.full(t, 0.3), size=count)
        mix[np.arange(count), topic] += 0.7
        # Rank 1 is the most popular; ties in score share a rank.
        rank = len(self._reference_scores) - np.searchsorted(self._reference_scores, scores, side="left")
        popularity = 1.0 / np.maximum(rank, 1).astype(np.float64) ** self.zipf_exponent
        quality = np.clip(0.55 + 0.45 * (scores - 0.3) + rng.normal(0.0, 0.1, size=count), 0.0, 1.0)
        duration = np.clip(rng.lognormal(np.log(25_000), 0.8, size=count), 3_000, 600_000).astype(np.int64)
        return Videos(
            creator=creator,
            topic=topic,
            mix=mix.astype(np.float32),
            quality=quality.astype(np.float32),
            duration_ms=duration,
            popularity=popularity,
            upload_offset_ms=np.zeros(count, dtype=np.int64),
        )

    def uploads_until(self, offset_ms: float) -> int:
        """Number of videos (initial + uploads) that exist at ``offset_ms`` after the start."""
        if self.uploads_per_hour <= 0:
            return self.initial_videos
        while self._next_upload_offset <= offset_ms:
            self._draw_upload_chunk()
        uploads = self.videos.upload_offset_ms[self.initial_videos :]
        return self.initial_videos + int(np.searchsorted(uploads, offset_ms, side="right"))

    def _draw_upload_chunk(self) -> None:
        rng = self._upload_rng
        gaps = rng.exponential(3_600_000.0 / self.uploads_per_hour, size=_UPLOAD_CHUNK)
        offsets = self._next_upload_offset + np.cumsum(gaps)
        self._next_upload_offset = float(offsets[-1])
        scores = rng.random(_UPLOAD_CHUNK) * 0.6 + 0.4 * rng.normal(size=_UPLOAD_CHUNK)
        chunk = self._draw_videos(rng, _UPLOAD_CHUNK, scores)
        chunk.upload_offset_ms = np.ceil(offsets).astype(np.int64)
        self.videos = self.videos.concat(chunk)

    def ensure_videos(self, count: int) -> None:
        """Generate uploads until at least ``count`` videos exist (the first ``count`` never change)."""
        if count > self.initial_videos and self.uploads_per_hour <= 0:
            raise CatalogueError(f"no uploads are configured, so there are only {self.initial_videos} videos")
        while len(self.videos) < count:
            self._draw_upload_chunk()

    def user_ids(self) -> list[str]:
        return [user_id(i) for i in range(len(self.users))]

    def video_ids(self, start: int = 0, stop: int | None = None) -> list[str]:
        return [video_id(i) for i in range(start, len(self.videos) if stop is None else stop)]

    # -- writing -----------------------------------------------------------------------------

    def tables(self, start_ms: int, video_count: int | None = None) -> dict[str, pa.Table]:
        """The four catalogue tables, with times as UTC timestamps (``start_ms`` anchors offsets)."""
        count = self.initial_videos if video_count is None else video_count
        self.ensure_videos(count)
        videos = self.videos.head(count)
        users = self.users
        ts = pa.timestamp("ms", tz="UTC")
        uids = pa.array(self.user_ids(), pa.string())
        vids = pa.array(self.video_ids(0, count), pa.string())
        t = len(self.topics)
        return {
            "users": pa.table(
                {
                    "user_id": uids,
                    "country": pa.array(np.asarray(COUNTRIES)[users.country]),
                    "os": pa.array(np.asarray(OS_NAMES)[users.os]),
                    "app_version": pa.array(np.asarray(APP_VERSIONS)[users.app_version]),
                    "age_group": pa.array(np.asarray(AGE_GROUPS)[users.age_group]),
                    "signup_time": pa.array(start_ms + users.signup_offset_ms, ts),
                }
            ),
            "videos": pa.table(
                {
                    "video_id": vids,
                    "creator_id": pa.array([creator_id(int(c)) for c in videos.creator], pa.string()),
                    "topic": pa.array(np.asarray(self.topics)[videos.topic]),
                    "duration_ms": pa.array(videos.duration_ms, pa.int64()),
                    "upload_time": pa.array(start_ms + videos.upload_offset_ms, ts),
                    "quality": pa.array(videos.quality, pa.float32()),
                    "uploaded_during_simulation": pa.array(videos.upload_offset_ms >= 0),
                }
            ),
            "user_tastes": pa.table(
                {
                    "user_id": uids,
                    "taste": pa.FixedSizeListArray.from_arrays(pa.array(users.taste.reshape(-1)), t),
                    "activity": pa.array(users.activity, pa.float64()),
                    "watch_bias": pa.array(users.watch_bias, pa.float32()),
                }
            ),
            "video_topics": pa.table(
                {
                    "video_id": vids,
                    "topic_mix": pa.FixedSizeListArray.from_arrays(pa.array(videos.mix.reshape(-1)), t),
                    "popularity": pa.array(videos.popularity, pa.float64()),
                }
            ),
        }

    def write(self, directory: str, start_ms: int, video_count: int | None = None) -> dict[str, str]:
        """Write the catalogue as parquet files under ``directory``; returns name -> path.

        Each file is written under a temporary name and renamed, so a reader never sees half a file.
        """
        from pyarrow import fs

        filesystem, root = fs.FileSystem.from_uri(directory if "://" in directory else str(Path(directory).absolute()))
        filesystem.create_dir(root, recursive=True)
        paths = {}
        topics = ",".join(self.topics)
        for name, table in self.tables(start_ms, video_count).items():
            table = table.replace_schema_metadata(
                {"reelhouse.seed": str(self.seed), "reelhouse.topics": topics, "reelhouse.start_ms": str(start_ms)}
            )
            final = f"{root.rstrip('/')}/{name}.parquet"
            partial = f"{final}.{os.getpid()}.tmp"
            pq.write_table(table, partial, filesystem=filesystem)
            filesystem.move(partial, final)
            paths[name] = final if "://" not in directory else f"{directory.rstrip('/')}/{name}.parquet"
        log.info(
            "wrote catalogue (%d users, %d videos) to %s",
            len(self.users),
            video_count or self.initial_videos,
            directory,
        )
        return paths


# -- reading -------------------------------------------------------------------------------------


@dataclass
class WrittenCatalogue:
    """A catalogue read back from the files :meth:`Catalogue.write` wrote (the one the lake knows).

    Row ``i`` of ``users`` is ``user_id(i)`` and row ``j`` of ``videos`` is ``video_id(j)``,
    exactly as in the :class:`Catalogue` that wrote it, uploads during the run included.
    """

    users: Users
    videos: Videos
    topics: tuple[str, ...]
    seed: int
    start_ms: int


def _codes(values: pa.ChunkedArray, names: tuple[str, ...], column: str) -> np.ndarray:
    lookup = {name: code for code, name in enumerate(names)}
    unknown = sorted({v for v in values.to_pylist() if v not in lookup})
    if unknown:
        raise CatalogueError(f"{column} has values the simulator does not know: {unknown[:5]}; known: {list(names)}")
    return np.asarray([lookup[v] for v in values.to_pylist()], dtype=np.int16)


def _fixed_lists(values: pa.ChunkedArray, width: int) -> np.ndarray:
    flat = values.combine_chunks().flatten() if values.num_chunks else pa.array([], pa.float32())
    return flat.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, width)


def read_catalogue(directory: str) -> WrittenCatalogue:
    """Read the four catalogue files under ``directory`` (a path or URI) back into users and videos.

    Raises ``FileNotFoundError`` when a file is missing and ``ValueError`` when the files do not
    belong together (row counts, id order, seeds), naming the file.
    """
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(directory if "://" in directory else str(Path(directory).absolute()))
    tables: dict[str, pa.Table] = {}
    for name in CATALOGUE_FILES:
        path = f"{root.rstrip('/')}/{name}.parquet"
        if filesystem.get_file_info(path).type != fs.FileType.File:
            raise FileNotFoundError(f"no {name}.parquet in the catalogue directory {directory}")
        tables[name] = pq.read_table(path, filesystem=filesystem)
    metadata = [table.schema.metadata or {} for table in tables.values()]
    seeds = {m.get(b"reelhouse.seed") for m in metadata}
    if len(seeds) != 1 or None in seeds:
        found = sorted(str(s) for s in seeds)
        raise CatalogueError(f"the catalogue files in {directory} come from different runs (seeds {found})")
    topics = tuple(metadata[0].get(b"reelhouse.topics", b"").decode().split(","))
    users, videos, tastes, mixes = (tables[n] for n in ("users", "videos", "user_tastes", "video_topics"))
    for name, table, ids, make_id in (
        ("users", users, tastes, user_id),
        ("videos", videos, mixes, video_id),
    ):
        expected = [make_id(i) for i in range(table.num_rows)]
        key = "user_id" if name == "users" else "video_id"
        if table[key].to_pylist() != expected or ids[key].to_pylist() != expected:
            raise CatalogueError(f"{name} in {directory} are not in id order or do not match their latent file")
    start_ms = int(metadata[0].get(b"reelhouse.start_ms", b"0"))
    ms = pa.timestamp("ms", tz="UTC")
    creators = videos["creator_id"].to_pylist()
    return WrittenCatalogue(
        users=Users(
            country=_codes(users["country"], COUNTRIES, "users.country"),
            os=_codes(users["os"], OS_NAMES, "users.os"),
            app_version=_codes(users["app_version"], APP_VERSIONS, "users.app_version"),
            age_group=_codes(users["age_group"], AGE_GROUPS, "users.age_group"),
            signup_offset_ms=users["signup_time"].cast(ms).cast(pa.int64()).to_numpy() - start_ms,
            taste=_fixed_lists(tastes["taste"], len(topics)),
            activity=tastes["activity"].to_numpy().astype(np.float64),
            watch_bias=tastes["watch_bias"].to_numpy().astype(np.float32),
        ),
        videos=Videos(
            creator=np.asarray([int(c[1:]) for c in creators], dtype=np.int32),
            topic=_codes(videos["topic"], topics, "videos.topic"),
            mix=_fixed_lists(mixes["topic_mix"], len(topics)),
            quality=videos["quality"].to_numpy().astype(np.float32),
            duration_ms=videos["duration_ms"].to_numpy().astype(np.int64),
            popularity=mixes["popularity"].to_numpy().astype(np.float64),
            upload_offset_ms=videos["upload_time"].cast(ms).cast(pa.int64()).to_numpy() - start_ms,
        ),
        topics=topics,
        seed=int(next(iter(seeds))),
        start_ms=start_ms,
    )
