"""Offset arithmetic of the Kafka source: parsing, resolving, rate limiting and planning read tasks."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reelhouse.errors import KafkaSourceError
from reelhouse.kafka.offsets import (
    EARLIEST,
    LATEST,
    OffsetRange,
    limit_offsets,
    parse_starting_offsets,
    plan_ranges,
    resolve_offsets,
    total_records,
    with_new_partitions,
)

TOPICS = ["events", "other"]

# ---------------------------------------------------------------------------------- parse_starting_offsets


@pytest.mark.parametrize("spec", ["earliest", "latest", "  latest\n"])
def test_earliest_and_latest_are_kept_as_words(spec):
    assert parse_starting_offsets(spec, TOPICS) == spec.strip()


def test_json_offsets_become_an_offset_map_with_normalised_partition_keys():
    spec = '{"events": {"0": 23, "01": -2, "2": -1}, "other": {}}'
    # "01" is partition 1; -2 / -1 are kept as earliest / latest markers for resolve_offsets.
    assert parse_starting_offsets(spec, TOPICS) == {"events": {"0": 23, "1": EARLIEST, "2": LATEST}, "other": {}}


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("newest", "must be earliest, latest or JSON"),
        ("[1, 2]", "must be an object of topics"),
        ('"earliest"', "must be an object of topics"),
        ('{"nope": {"0": 1}}', "'nope', which is not subscribed"),
        ('{"events": [1, 2]}', "must map partitions to offsets"),
        ('{"events": {"a": 1}}', "events[a]=1"),
        ('{"events": {"-1": 1}}', "events[-1]=1"),
        ('{"events": {"²": 1}}', "events[²]=1"),  # a digit to str.isdigit, but not a number to int()
        ('{"events": {"0": -3}}', "events[0]=-3"),
        ('{"events": {"0": 1.5}}', "events[0]=1.5"),
        ('{"events": {"0": "5"}}', "events[0]='5'"),
        ('{"events": {"0": true}}', "events[0]=True"),
        ('{"events": {"0": null}}', "events[0]=None"),
    ],
    ids=[
        "word", "list", "json-string", "unknown-topic", "partitions-not-object", "partition-letter",
        "partition-negative", "partition-superscript", "offset-below-minus-2", "offset-float", "offset-string",
        "offset-bool", "offset-null",
    ],
)
def test_bad_starting_offsets_raise_kafka_source_error(spec, words):
    with pytest.raises(KafkaSourceError) as caught:
        parse_starting_offsets(spec, TOPICS)
    assert words in str(caught.value)


# ---------------------------------------------------------------------------------- resolve_offsets

EARLIEST_MAP = {"events": {"0": 10, "1": 0, "2": 5}}
LATEST_MAP = {"events": {"0": 50, "1": 7, "2": 5}}


def test_markers_resolve_to_earliest_and_latest_and_unnamed_partitions_start_at_earliest():
    requested = {"events": {"0": LATEST, "1": EARLIEST}}
    # 0 -> latest 50; 1 -> earliest 0; 2 is not named -> its earliest, 5.
    assert resolve_offsets(requested, EARLIEST_MAP, LATEST_MAP) == {"events": {"0": 50, "1": 0, "2": 5}}


def test_explicit_offsets_are_kept():
    assert resolve_offsets({"events": {"0": 42}}, EARLIEST_MAP, LATEST_MAP) == {"events": {"0": 42, "1": 0, "2": 5}}


def test_an_empty_request_starts_every_partition_at_earliest():
    assert resolve_offsets({}, EARLIEST_MAP, LATEST_MAP) == EARLIEST_MAP


@pytest.mark.parametrize("requested", [{"events": {"3": 0}}, {"other": {"0": 0}}], ids=["partition", "topic"])
def test_naming_a_partition_that_does_not_exist_raises(requested):
    with pytest.raises(KafkaSourceError, match="does not exist"):
        resolve_offsets(requested, EARLIEST_MAP, LATEST_MAP)


# ---------------------------------------------------------------------------------- with_new_partitions


def test_a_partition_added_to_the_topic_starts_at_zero_and_known_ones_are_kept():
    start = {"events": {"0": 12, "1": 30}}
    current = {"events": {"0": 99, "1": 99, "2": 4}, "other": {"0": 8}}
    assert with_new_partitions(start, current) == {"events": {"0": 12, "1": 30, "2": 0}, "other": {"0": 0}}
    assert start == {"events": {"0": 12, "1": 30}}  # not mutated


# ---------------------------------------------------------------------------------- limit_offsets


def test_without_a_limit_or_under_it_every_partition_reads_to_latest():
    start = {"events": {"0": 0, "1": 10}}
    latest = {"events": {"0": 100, "1": 40}}
    assert limit_offsets(start, latest, None) == latest
    assert limit_offsets(start, latest, 130) == latest  # 100 + 30 lag fits exactly


def test_the_budget_is_shared_in_proportion_to_lag():
    start = {"events": {"0": 0, "1": 1000, "2": 5}}
    latest = {"events": {"0": 300, "1": 1100, "2": 5}}
    # Lags 300 / 100 / 0, budget 100: shares 75 and 25; partition 2 has nothing and stays put.
    assert limit_offsets(start, latest, 100) == {"events": {"0": 75, "1": 1025, "2": 5}}


def test_a_small_lagging_partition_still_gets_one_record():
    start = {"events": {"0": 0, "1": 0}}
    latest = {"events": {"0": 10_000, "1": 3}}
    # Its share, 3 * 10 // 10003, rounds to 0; it gets one record so it never starves.
    assert limit_offsets(start, latest, 10) == {"events": {"0": 9, "1": 1}}


def test_new_partitions_are_read_from_zero():
    assert limit_offsets({"events": {"0": 5}}, {"events": {"0": 5, "1": 4}}, None) == {"events": {"0": 5, "1": 4}}


def test_a_partition_behind_its_start_has_no_lag_and_does_not_move():
    # start > latest (the source already probed past the reported end): lag 0, not negative.
    assert limit_offsets({"events": {"0": 9}}, {"events": {"0": 7}}, 100) == {"events": {"0": 9}}


offset_maps = st.dictionaries(
    st.sampled_from([str(p) for p in range(6)]), st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), min_size=1
)


@settings(max_examples=300, deadline=None)
@given(offset_maps, st.integers(1, 10**6))
def test_limit_offsets_never_exceeds_the_budget_except_for_one_record_minimums(pairs, budget):
    start = {"t": {p: s for p, (s, _) in pairs.items()}}
    latest = {"t": {p: s + lag for p, (s, lag) in pairs.items()}}
    end = limit_offsets(start, latest, budget)
    lags = {p: lag for p, (_, lag) in pairs.items()}
    total = sum(lags.values())
    taken = {p: end["t"][p] - start["t"][p] for p in pairs}
    for p, lag in lags.items():
        assert 0 <= taken[p] <= lag
        if lag:
            assert taken[p] >= 1
            assert taken[p] >= min(lag, lag * budget // total)
    if total <= budget:
        assert taken == lags
    else:
        minimums = sum(1 for lag in lags.values() if lag and lag * budget // total == 0)
        assert sum(taken.values()) <= budget + minimums


# ---------------------------------------------------------------------------------- plan_ranges


def test_one_range_per_partition_with_data_in_partition_order():
    start = {"b": {"10": 0, "2": 5}, "a": {"0": 3}}
    end = {"b": {"10": 4, "2": 5, "1": 2}, "a": {"0": 9}}
    # b[2] has no data; b[1] is unknown to start so it starts at 0; partitions sort numerically (1, 2, 10).
    assert plan_ranges(start, end) == [
        OffsetRange("a", 0, 3, 9),
        OffsetRange("b", 1, 0, 2),
        OffsetRange("b", 10, 0, 4),
    ]


def test_plans_are_deterministic_whatever_the_dict_order():
    start = {"t": {"0": 0, "1": 0, "2": 0}}
    end_a = {"t": {"0": 100, "1": 7, "2": 50}}
    end_b = {"t": {"2": 50, "0": 100, "1": 7}}
    assert plan_ranges(start, end_a, 8) == plan_ranges(start, end_b, 8)


def test_enough_partitions_means_no_splitting():
    start = {"t": {"0": 0, "1": 0}}
    end = {"t": {"0": 1000, "1": 1000}}
    assert plan_ranges(start, end, 2) == [OffsetRange("t", 0, 0, 1000), OffsetRange("t", 1, 0, 1000)]


def test_a_single_partition_is_cut_into_equal_pieces():
    assert plan_ranges({"t": {"0": 100}}, {"t": {"0": 500}}, 4) == [
        OffsetRange("t", 0, 100, 200),
        OffsetRange("t", 0, 200, 300),
        OffsetRange("t", 0, 300, 400),
        OffsetRange("t", 0, 400, 500),
    ]


def test_three_equal_partitions_and_four_cores_give_at_least_four_tasks():
    # Each partition's fair share is 4/3 of a task; rounding each share alone would give 3 tasks.
    ranges = plan_ranges({}, {"t": {"0": 1000, "1": 1000, "2": 1000}}, 4)
    assert len(ranges) >= 4
    assert sum(r.size for r in ranges) == 3000


def test_a_small_range_is_still_cut_into_min_partitions_pieces():
    # 5 records, 4 tasks wanted: ceil(5 / 4) = 2-record steps would make only 3 pieces.
    ranges = plan_ranges({}, {"t": {"0": 5}}, 4)
    assert [r.size for r in ranges] == [1, 1, 1, 2]


def test_nothing_to_read_gives_no_ranges():
    assert plan_ranges({"t": {"0": 5}}, {"t": {"0": 5}}, 8) == []
    assert plan_ranges({}, {}, 8) == []


def test_an_end_before_its_start_raises():
    with pytest.raises(KafkaSourceError, match=r"t\[0\] end offset 3 is before start 10"):
        plan_ranges({"t": {"0": 10}}, {"t": {"0": 3}})


@settings(max_examples=400, deadline=None)
@given(offset_maps, st.integers(1, 64))
def test_split_ranges_cover_every_offset_exactly_once(pairs, min_partitions):
    start = {"t": {p: s for p, (s, _) in pairs.items()}}
    end = {"t": {p: s + size for p, (s, size) in pairs.items()}}
    wanted = {p: (s, s + size) for p, (s, size) in pairs.items() if size}
    ranges = plan_ranges(start, end, min_partitions)
    assert ranges == plan_ranges(start, end, min_partitions)
    assert all(r.size > 0 and r.topic == "t" for r in ranges)
    for p, (low, high) in wanted.items():
        pieces = [r for r in ranges if r.partition == int(p)]
        # Consecutive, in order, from start to end: no gap, no overlap.
        assert pieces[0].start == low and pieces[-1].end == high
        assert all(a.end == b.start for a, b in zip(pieces, pieces[1:]))
    assert {str(r.partition) for r in ranges} == set(wanted)
    total = sum(high - low for low, high in wanted.values())
    assert len(ranges) >= min(min_partitions, total)


@settings(max_examples=200, deadline=None)
@given(offset_maps, st.integers(1, 16))
def test_split_pieces_of_a_partition_differ_by_at_most_one_record(pairs, min_partitions):
    assume(any(size for _, size in pairs.values()))
    end = {"t": {p: s + size for p, (s, size) in pairs.items()}}
    ranges = plan_ranges({"t": {p: s for p, (s, _) in pairs.items()}}, end, min_partitions)
    for p in {r.partition for r in ranges}:
        sizes = [r.size for r in ranges if r.partition == p]
        assert max(sizes) - min(sizes) <= 1


# ---------------------------------------------------------------------------------- total_records


def test_total_records_sums_every_partition_and_counts_unknown_ones_from_zero():
    start = {"t": {"0": 10, "1": 5}}
    end = {"t": {"0": 15, "1": 5, "2": 3}, "u": {"0": 2}}
    # 5 + 0 + 3 (t[2] from 0) + 2 (u[0] from 0)
    assert total_records(start, end) == 10


def test_total_records_matches_the_planned_ranges():
    start = {"t": {"0": 100, "1": 0}}
    end = {"t": {"0": 350, "1": 40}}
    assert total_records(start, end) == sum(r.size for r in plan_ranges(start, end, 7)) == 290
