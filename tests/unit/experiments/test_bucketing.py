"""Bucketing: the same user gets the same variant everywhere, shares hold, one experiment per user."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from collections import Counter

import pytest

from reelhouse.config import ExperimentConfig
from reelhouse.errors import ConfigError
from reelhouse.experiments.bucketing import Bucketing, in_traffic, unit, variant_of

NOW = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)
USERS = [f"u{i}" for i in range(100_000)]


def experiment(name="exp", traffic=1.0, shares=(0.34, 0.33, 0.33), start=None, end=None, salt=None) -> ExperimentConfig:
    variants = [{"name": f"v{i}", "share": share, "ranker": "random"} for i, share in enumerate(shares)]
    return ExperimentConfig(name=name, traffic=traffic, variants=variants, start=start, end=end, salt=salt)


def test_the_unit_hash_is_a_fixed_function_of_its_text():
    # Pinned values: a change of the hash would silently move every user to another variant.
    assert unit("exp:u1") == int.from_bytes(hashlib.sha256(b"exp:u1").digest()[:8], "big") / 2**64
    assert unit("exp:u1") == 0.9245466772767811 and unit("ranker-vs-baselines:u42") == 0.9296102982673993
    assert 0.0 <= unit("") < 1.0
    assert unit("exp:u1") == unit("exp:u1") != unit("exp:u2")


def test_the_same_user_gets_the_same_variant_in_another_process():
    bucketing = Bucketing([experiment()])
    here = {u: bucketing.assign(u, NOW).variant.name for u in USERS[:200]}
    code = (
        "import datetime as dt, json, sys\n"
        "from reelhouse.config import ExperimentConfig\n"
        "from reelhouse.experiments.bucketing import Bucketing\n"
        "e = ExperimentConfig(name='exp', variants=[{'name': f'v{i}', 'share': s, 'ranker': 'random'} "
        "for i, s in enumerate((0.34, 0.33, 0.33))])\n"
        "now = dt.datetime(2026, 11, 21, 12, tzinfo=dt.UTC)\n"
        "print(json.dumps({f'u{i}': Bucketing([e]).assign(f'u{i}', now).variant.name for i in range(200)}))\n"
    )
    # A fresh interpreter with another hash seed: Python's own hash() would differ, ours must not.
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert json.loads(done.stdout) == here
    assert all(bucketing.assign(u, NOW).variant.name == name for u, name in here.items())


def test_shares_hold_within_tolerance_over_many_users():
    shares = (0.5, 0.3, 0.2)
    chosen = experiment(shares=shares)
    counts = Counter(variant_of(chosen, u).name for u in USERS)
    for i, share in enumerate(shares):
        # Binomial standard deviation at n = 100k is at most 0.0016; 0.005 is about three of them.
        assert abs(counts[f"v{i}"] / len(USERS) - share) < 0.005


def test_traffic_share_and_its_ramp_keeps_users_in_their_variant():
    small, large = experiment(traffic=0.2), experiment(traffic=0.6)
    in_small = {u for u in USERS if in_traffic(small, u)}
    in_large = {u for u in USERS if in_traffic(large, u)}
    assert abs(len(in_small) / len(USERS) - 0.2) < 0.005 and abs(len(in_large) / len(USERS) - 0.6) < 0.005
    assert in_small <= in_large  # ramping up only adds users
    # The variant does not depend on the traffic: nobody moves when it ramps.
    assert all(variant_of(small, u) == variant_of(large, u) for u in list(in_small)[:2000])
    shares = Counter(variant_of(small, u).name for u in in_small)
    assert abs(shares["v0"] / len(in_small) - 0.34) < 0.015


def test_a_user_is_in_at_most_the_first_running_experiment_that_includes_them():
    first, second = experiment("first", traffic=0.5), experiment("second", traffic=1.0)
    bucketing = Bucketing([first, second])
    assignments = Counter(bucketing.assign(u, NOW).experiment for u in USERS[:20_000])
    assert abs(assignments["first"] / 20_000 - 0.5) < 0.02
    assert assignments["first"] + assignments["second"] == 20_000
    for user in USERS[:500]:
        expected = "first" if in_traffic(first, user) else "second"
        assert bucketing.assign(user, NOW).experiment == expected


def test_experiments_run_between_start_and_end():
    window = experiment(start="2026-11-21T00:00:00+00:00", end="2026-11-22T00:00:00+00:00")
    bucketing = Bucketing([window])
    assert bucketing.assign("u1", NOW) is not None
    assert bucketing.assign("u1", dt.datetime(2026, 11, 20, 23, 59, tzinfo=dt.UTC)) is None
    assert bucketing.assign("u1", dt.datetime(2026, 11, 22, tzinfo=dt.UTC)) is None  # end is exclusive
    assert bucketing.running(NOW) == [window] and bucketing.running(dt.datetime(2027, 1, 1, tzinfo=dt.UTC)) == []


def test_the_label_and_the_salt():
    chosen = Bucketing([experiment()]).assign("u7", NOW)
    assert chosen.label == f"exp:{chosen.variant.name}"
    # Another salt reshuffles users: many (not all) change variant.
    salted = experiment(salt="2026-11-reshuffle")
    moved = sum(variant_of(experiment(), u) != variant_of(salted, u) for u in USERS[:3000])
    assert 1500 < moved < 2500  # about 2/3 of users land elsewhere with three variants of ~1/3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": "yesterday"}, "not an ISO-8601 time"),
        ({"start": "2026-11-21T00:00:00"}, "no time zone"),
        ({"start": "2026-11-22T00:00:00+00:00", "end": "2026-11-21T00:00:00+00:00"}, "not after start"),
    ],
)
def test_bad_experiment_times_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Bucketing([experiment(**kwargs)])


def test_repeated_experiment_names_are_refused():
    with pytest.raises(ConfigError, match="repeat"):
        Bucketing([experiment("a"), experiment("a")])
