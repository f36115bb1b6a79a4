from __future__ import annotations

from collections import defaultdict

import numpy as np
import orjson
import pytest

from reelhouse.events.contract import EVENT_TYPES, validate_payload
from reelhouse.simulator.traffic import IMPRESSION, MAX_SESSION_MS, PLAY, SKIP, VALID, EventBlock

from .simworld import START_MS, generator, small_catalogue

BROKER_TIME = START_MS + 3 * 3_600_000  # when a broker would receive these events


@pytest.fixture(scope="module")
def blocks() -> list[EventBlock]:
    """~120k valid events of one process."""
    gen = generator()
    return [gen.next_block(35_000) for _ in range(4)]


def events(blocks: list[EventBlock]) -> list[dict]:
    return [orjson.loads(v) for b in blocks for v in b.values]


def test_every_valid_event_passes_the_contract(blocks: list[EventBlock]) -> None:
    count = 0
    for block in blocks:
        assert (block.kind == VALID).all()
        for key, value, event_type in zip(block.keys, block.values, block.event_type.tolist()):
            row = validate_payload(value, BROKER_TIME)
            assert row["event_type"] == EVENT_TYPES[event_type]
            assert key == row["user_id"].encode()  # Kafka key = user id
            count += 1
    assert count > 100_000


def test_same_seed_same_messages_and_another_seed_differs() -> None:
    a, b = generator(), generator()
    for _ in range(3):
        block_a, block_b = a.next_block(5_000), b.next_block(5_000)
        assert block_a.values == block_b.values and block_a.keys == block_b.keys
    other = generator(small_catalogue(seed=12)).next_block(5_000)
    assert other.values[:100] != generator().next_block(5_000).values[:100]


def test_ids_are_unique_across_blocks_processes_and_runs(blocks: list[EventBlock]) -> None:
    catalogue = small_catalogue()
    runs = [
        generator(catalogue, process_index=0, processes=2).next_block(10_000),
        generator(catalogue, process_index=1, processes=2).next_block(10_000),
        generator(catalogue, start_ms=START_MS + 1).next_block(10_000),  # a later run with the same seed
    ]
    rows = events(blocks + runs)
    event_ids = [r["event_id"] for r in rows]
    assert len(set(event_ids)) == len(event_ids)
    sessions = defaultdict(set)
    for r in rows:
        sessions[r["session_id"]].add(r["user_id"])
    assert all(len(users) == 1 for users in sessions.values())  # a session id never spans users
    # A process only simulates its own share of the users.
    assert {int(r["user_id"][1:]) % 2 for r in events(runs[1:2])} == {1}


def test_feed_pages_and_outcomes_share_request_ids(blocks: list[EventBlock]) -> None:
    rows = events(blocks[:1])
    pages: dict[str, list[dict]] = defaultdict(list)
    outcomes = []
    for r in rows:
        if r["event_type"] == "impression":
            pages[r["request_id"]].append(r)
        else:
            outcomes.append(r)
    assert pages and "" not in pages
    for request_id, impressions in pages.items():
        # A page is 8 distinct videos at positions 0..7 for one user in one session.
        assert sorted(i["position"] for i in impressions) == list(range(8)), request_id
        assert len({i["video_id"] for i in impressions}) == 8
        assert len({(i["user_id"], i["session_id"]) for i in impressions}) == 1
    first_shown: dict[str, int] = {}
    for impressions in pages.values():
        session = impressions[0]["session_id"]
        first_shown[session] = min(first_shown.get(session, 2**62), impressions[0]["event_time"])
    for impressions in pages.values():  # nothing new is shown after MAX_SESSION_MS
        assert impressions[0]["event_time"] - first_shown[impressions[0]["session_id"]] <= MAX_SESSION_MS
    shown = {(i["request_id"], i["video_id"]): i for imps in pages.values() for i in imps}
    organic = [o for o in outcomes if o["request_id"] == ""]
    # organic_share (default 0.08) of the plays and skips; likes etc. follow plays.
    assert 0.05 < len(organic) / len(outcomes) < 0.12
    for outcome in outcomes:
        if outcome["request_id"]:
            impression = shown[(outcome["request_id"], outcome["video_id"])]
            assert outcome["event_time"] >= impression["event_time"]
            assert outcome["session_id"] == impression["session_id"]
        if outcome["event_type"] == "play":
            assert 0 < outcome["watch_ms"] <= outcome["video_duration_ms"]


def test_affinity_drives_watch_ratio_and_engagement(blocks: list[EventBlock]) -> None:
    event_type = np.concatenate([b.event_type for b in blocks])
    affinity = np.concatenate([b.affinity for b in blocks])
    watch = np.concatenate([b.watch_ms for b in blocks])
    duration = np.concatenate([b.video_duration_ms for b in blocks])
    outcome = (event_type == PLAY) | (event_type == SKIP)
    ratio = watch[outcome] / duration[outcome]
    # The score is 7 * affinity + noise of sd 0.9: the correlation is clearly positive (~0.4).
    assert np.corrcoef(affinity[outcome], ratio)[0, 1] > 0.25
    high = affinity[outcome] > np.quantile(affinity[outcome], 0.9)
    low = affinity[outcome] < np.quantile(affinity[outcome], 0.1)
    assert (event_type[outcome][high] == SKIP).mean() < (event_type[outcome][low] == SKIP).mean()
    # Likes follow affinity too: liked videos have a higher mean affinity than plays in general.
    liked = affinity[event_type == EVENT_TYPES.index("like")]
    assert liked.mean() > affinity[event_type == PLAY].mean()


def test_impressions_follow_popularity(blocks: list[EventBlock]) -> None:
    video = np.concatenate([b.video[b.event_type == IMPRESSION] for b in blocks])
    counts = np.sort(np.bincount(video))[::-1]
    assert counts[:50].sum() / counts.sum() > 0.25  # top 1% of 5,000 videos: a quarter of impressions


def test_uploads_are_shown_after_their_upload_time() -> None:
    gen = generator(ms_per_event=50.0)  # ~1 simulated hour per 72k events
    shown_new = []
    for _ in range(4):
        block = gen.next_block(20_000)
        new = block.video >= 5_000
        upload_time = START_MS + gen.catalogue.videos.upload_offset_ms[block.video[new]]
        assert (block.event_time_ms[new] >= upload_time).all()
        shown_new.append(new.sum())
    assert sum(shown_new) > 0


def test_event_times_never_pass_now_nor_lag_hours_behind() -> None:
    now = START_MS + 10 * 60_000  # the run started only 10 minutes before now
    gen = generator(ms_per_event=60.0)  # far faster than wall-clock time
    for _ in range(3):
        times = gen.next_block(10_000, now_ms=now).event_time_ms
        assert times.max() <= now
        # Held back to the session margin (30 min) behind now, so hardly any time needs capping.
        assert times.min() >= now - 31 * 60_000
        assert (times == now).mean() < 0.001
        now += 1_000


def test_max_events_truncates_exactly() -> None:
    assert len(generator().next_block(5_000, max_events=1_234)) == 1_234
