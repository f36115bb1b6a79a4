"""What every online store must do, whatever it runs on: written once, run against each store.

A test module subclasses :class:`OnlineStoreBehaviour` as ``Test...`` and provides a ``store``
fixture (an empty store whose default TTL is one hour); the class brings the tests. Times are
taken from the wall clock, not fixed dates, because a server store (Redis) expires rows on its
own clock: a fixed date would turn into the past and those rows would never be stored.
"""

from __future__ import annotations

import datetime as dt

import pytest

from reelhouse.online import FeatureRow, OnlineStore

DEFAULT_TTL_S = 3600.0


def now_s() -> dt.datetime:
    """The current UTC time to the second, so it survives the stores' millisecond encoding exactly."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def row(key: str, version: int, plays: int, at: dt.datetime, expires_at: dt.datetime | None = None) -> FeatureRow:
    return FeatureRow(
        entity_key=key,
        values={"plays_1h": plays, "completion_rate_1h": 0.5},
        feature_time=at,
        version=version,
        expires_at=expires_at,
    )


class OnlineStoreBehaviour:
    """The :class:`~reelhouse.online.OnlineStore` contract, on the ``store`` fixture of the subclass."""

    @pytest.fixture
    def t0(self) -> dt.datetime:
        return now_s()

    def test_a_batched_read_returns_every_key_and_none_for_missing(self, store: OnlineStore, t0: dt.datetime):
        store.write("video_features", [row("v1", 1, 10, t0), row("v2", 1, 20, t0)])

        got = store.read("video_features", ["v1", "v2", "v404", "v1"], now=t0)

        assert list(got) == ["v1", "v2", "v404"]
        assert got["v1"].values == {"plays_1h": 10, "completion_rate_1h": 0.5}
        assert got["v2"].values["plays_1h"] == 20
        assert got["v404"] is None
        assert got["v1"].feature_time == t0 and got["v1"].version == 1
        assert got["v1"].expires_at == t0 + dt.timedelta(seconds=DEFAULT_TTL_S)

    def test_empty_writes_and_reads(self, store: OnlineStore, t0: dt.datetime):
        assert store.write("video_features", []) == 0
        assert store.read("video_features", [], now=t0) == {}

    def test_an_older_version_never_replaces_a_newer_one(self, store: OnlineStore, t0: dt.datetime):
        # A replayed backfill (version 3) arriving after the stream's fresher value (version 5).
        assert store.write("video_features", [row("v1", 5, 50, t0)]) == 1
        assert store.write("video_features", [row("v1", 3, 30, t0)]) == 0
        assert store.write("video_features", [row("v1", 5, 99, t0)]) == 0  # same version: first write wins

        assert store.read("video_features", ["v1"], now=t0)["v1"].values["plays_1h"] == 50
        assert store.write("video_features", [row("v1", 6, 60, t0)]) == 1
        assert store.read("video_features", ["v1"], now=t0)["v1"].values["plays_1h"] == 60

    def test_versions_in_one_write_are_applied_in_order(self, store: OnlineStore, t0: dt.datetime):
        rows = [row("v1", 2, 20, t0), row("v1", 1, 10, t0), row("v1", 4, 40, t0), row("v1", 3, 30, t0)]
        assert store.write("video_features", rows) == 2
        assert store.read("video_features", ["v1"], now=t0)["v1"].version == 4

    def test_rows_expire_after_their_ttl(self, store: OnlineStore, t0: dt.datetime):
        store.write("video_features", [row("v1", 1, 10, t0)])  # default TTL: one hour after t0
        store.write("video_features", [row("v2", 1, 20, t0)], ttl_s=60)

        got = store.read("video_features", ["v1", "v2"], now=t0 + dt.timedelta(minutes=30))
        assert got["v1"] is not None and got["v2"] is None  # v2 lived one minute
        assert store.read("video_features", ["v1"], now=t0 + dt.timedelta(hours=2))["v1"] is None

    def test_expires_at_wins_over_the_ttl(self, store: OnlineStore, t0: dt.datetime):
        until = t0 + dt.timedelta(minutes=10)
        store.write("video_features", [row("v1", 1, 10, t0, expires_at=until)], ttl_s=86_400)

        assert store.read("video_features", ["v1"], now=t0 + dt.timedelta(minutes=5))["v1"].expires_at == until
        assert store.read("video_features", ["v1"], now=until)["v1"] is None  # expired at, not after, its time

    def test_a_newer_version_brings_its_own_expiry(self, store: OnlineStore, t0: dt.datetime):
        store.write("video_features", [row("v1", 1, 10, t0)], ttl_s=60)
        store.write("video_features", [row("v1", 2, 20, t0)])  # default TTL: one hour

        got = store.read("video_features", ["v1"], now=t0 + dt.timedelta(minutes=30))["v1"]
        assert got is not None and got.version == 2

    def test_views_are_separate_namespaces(self, store: OnlineStore, t0: dt.datetime):
        store.write("video_features", [row("x", 1, 1, t0)])
        store.write("user_features", [row("x", 1, 2, t0)])
        assert store.read("video_features", ["x"], now=t0)["x"].values["plays_1h"] == 1
        assert store.read("user_features", ["x"], now=t0)["x"].values["plays_1h"] == 2

    def test_a_read_of_2000_keys_with_missing_ones(self, store: OnlineStore, t0: dt.datetime):
        # More keys than one statement or pipeline takes; every fourth key was never written.
        written = [i for i in range(2_000) if i % 4 != 3]
        assert store.write("video_features", [row(f"v{i}", 1, i, t0) for i in written]) == len(written)

        got = store.read("video_features", [f"v{i}" for i in range(2_000)], now=t0)

        assert len(got) == 2_000
        assert sum(r is not None for r in got.values()) == len(written) == 1_500
        assert all((got[f"v{i}"] is None) == (i % 4 == 3) for i in range(2_000))
        assert got["v1998"].values["plays_1h"] == 1998 and got["v1999"] is None

    def test_keys_are_data_not_code(self, store: OnlineStore, t0: dt.datetime):
        nasty = "v1') OR 1=1; DROP TABLE online_features; --"
        odd = "user:42 ünï cødé * ?"
        store.write("video_features", [row(nasty, 1, 7, t0), row(odd, 1, 9, t0), row("v2", 1, 8, t0)])
        assert store.read("video_features", [nasty], now=t0)[nasty].values["plays_1h"] == 7
        assert store.read("video_features", [odd], now=t0)[odd].values["plays_1h"] == 9
        assert store.read("video_features", ["v2"], now=t0)["v2"] is not None

    def test_naive_times_are_rejected(self, store: OnlineStore, t0: dt.datetime):
        with pytest.raises(ValueError, match="naive"):
            store.write("video_features", [row("v1", 1, 1, t0), row("v2", 1, 1, at=dt.datetime(2026, 11, 21))])
        with pytest.raises(ValueError, match="naive"):
            store.read("video_features", ["v1"], now=dt.datetime(2026, 11, 21))
        assert store.read("video_features", ["v1", "v2"], now=t0) == {"v1": None, "v2": None}  # nothing half-written
