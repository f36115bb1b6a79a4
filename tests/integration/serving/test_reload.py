"""What changes under a running service: a ranker alias moving while requests keep coming, a recall
table rewritten in Delta, and the service itself restarting (users' "seen" state must survive)."""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter

import httpx
import pyarrow as pa
import pytest

from reelhouse.lake import Lake
from reelhouse.recall.tables import candidates_table
from reelhouse.serving.server import ServingServer
from tests.integration.serving.conftest import AUTH, ServingEnvironment, serving_config, set_alias

pytestmark = pytest.mark.integration


def test_moving_the_alias_swaps_the_model_under_load_without_a_failed_request(serving_env: ServingEnvironment):
    lightgbm, logistic = serving_env.versions["lightgbm"], serving_env.versions["logistic_regression"]
    name = serving_env.registered_model
    set_alias(serving_env.config, "canary", lightgbm)
    config = serving_config(
        serving_env.config,
        serving={
            "ranker_alias": "canary",
            "alias_poll_s": 0.2,
            # Budgets that a busy test machine cannot miss: this test is about the swap.
            "budgets": {"store_ms": 5_000, "rank_ms": 5_000},
        },
    )
    answers: list[tuple[float, int, str, tuple[str, ...]]] = []
    by_worker: dict[int, list[str]] = {w: [] for w in range(4)}
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                try:
                    response = client.get(
                        "/v1/feed", headers=AUTH, params={"user_id": f"load-{worker}-{i % 7}", "k": 5}
                    )
                    body = response.json() if response.status_code == 200 else {}
                    answers.append(
                        (
                            time.monotonic(),
                            response.status_code,
                            body.get("ranker", ""),
                            tuple(body.get("degraded", ())),
                        )
                    )
                    by_worker[worker].append(body.get("ranker", ""))
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)
                i += 1

    with ServingServer(config) as server:
        workers = [threading.Thread(target=hammer, args=(w,)) for w in range(4)]
        for worker in workers:
            worker.start()
        try:
            deadline = time.monotonic() + 60
            while sum(1 for a in answers if a[2] == f"{name}/{lightgbm}") < 20:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            moved_at = time.monotonic()
            set_alias(serving_env.config, "canary", logistic)
            while sum(1 for a in answers if a[2] == f"{name}/{logistic}") < 20:
                assert time.monotonic() < deadline, "the service never switched to the new version"
                time.sleep(0.05)
        finally:
            stop.set()
            for worker in workers:
                worker.join(30)
    assert not errors
    assert Counter(status for _, status, _, _ in answers) == {200: len(answers)}
    assert {ranker for _, _, ranker, _ in answers} == {f"{name}/{lightgbm}", f"{name}/{logistic}"}
    assert all(degraded == () for *_, degraded in answers)
    assert min(t for t, _, ranker, _ in answers if ranker == f"{name}/{logistic}") >= moved_at
    # Each client's requests follow one another: once one was ranked by the new version, every
    # later one was too (no request went back to the old model after the swap).
    for labels in by_worker.values():
        switched = labels.index(f"{name}/{logistic}") if f"{name}/{logistic}" in labels else len(labels)
        assert set(labels[switched:]) <= {f"{name}/{logistic}"}
        assert set(labels[:switched]) <= {f"{name}/{lightgbm}"}


def test_a_rewritten_candidates_table_is_picked_up_while_serving(spark, serving_env: ServingEnvironment, tmp_path):
    # A private copy of the lake, so the rewrite does not change other tests' tables.
    lake_root = tmp_path / "lake"
    shutil.copytree(serving_env.config.lake.root, lake_root)
    config = serving_config(serving_env.config, lake={"root": str(lake_root)}, serving={"tables_poll_s": 0.2})
    lake = Lake(config.lake)
    spec = candidates_table(config.recall)
    before = lake.to_arrow(spec.name)
    user = "joined-after-the-build"
    picks = serving_env.videos[:40:4]
    with ServingServer(config) as server:
        first = httpx.get(f"{server.url}/v1/feed", headers=AUTH, params={"user_id": user, "k": 5}).json()
        assert {item["source"] for item in first["items"]} <= {"trending", "exploration"}
        version = server.state.index.versions["user_candidates"]
        rows = before.to_pylist() + [
            {
                "user_id": user,
                "video_id": v,
                "source": "als",
                "source_rank": i,
                "score": 1.0,
                "position": i,
                "as_of": before["as_of"][0].as_py(),
            }
            for i, v in enumerate(picks)
        ]
        lake.write_arrow(spark, pa.Table.from_pylist(rows, schema=spec.schema), spec, mode="overwrite")

        def reloaded() -> bool:
            return server.state.index.versions["user_candidates"] > version

        deadline = time.monotonic() + 60
        while not reloaded():
            assert time.monotonic() < deadline, "the new table version was never loaded"
            time.sleep(0.05)
        body = httpx.get(f"{server.url}/v1/feed", headers=AUTH, params={"user_id": user, "k": 10}).json()
        assert any(item["source"] == "als" and item["video_id"] in picks for item in body["items"])
        assert server.state.metrics.table_reloads.labels("loaded")._value.get() >= 2


def test_seen_videos_survive_a_restart_of_the_service(serving_env: ServingEnvironment):
    user = serving_env.users[30]
    with ServingServer(serving_env.config) as first:
        page = httpx.get(f"{first.url}/v1/feed", headers=AUTH, params={"user_id": user, "k": 10}).json()
        shown = {i["video_id"] for i in page["items"]}
        assert len(shown) == 10
    # Stopping flushed the user's state to the online store; a new process reads it from there.
    with ServingServer(serving_env.config) as second:
        assert second.state.writer.overlay(user) == ([], [])
        again = httpx.get(f"{second.url}/v1/feed", headers=AUTH, params={"user_id": user, "k": 10}).json()
        assert len(again["items"]) == 10 and not shown & {i["video_id"] for i in again["items"]}
