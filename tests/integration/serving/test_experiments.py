"""An A/B test through the running service: each user stays in one variant, the variant's ranker and
recall sources apply, and every impression carries ``<experiment>:<variant>`` into Kafka."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import httpx
import pytest

from reelhouse.experiments.bucketing import Bucketing
from reelhouse.serving.server import ServingServer
from tests.integration.serving.conftest import AUTH, ServingEnvironment, TopicReader, serving_config

pytestmark = pytest.mark.integration

EXPERIMENT = {
    "name": "ranker-vs-baselines",
    "variants": [
        {"name": "ranker", "share": 0.34, "ranker": "alias:champion"},
        {"name": "popularity", "share": 0.33, "ranker": "popularity", "recall_sources": ["popularity"]},
        {"name": "random", "share": 0.33, "ranker": "random"},
    ],
}


@pytest.fixture(scope="module")
def experiment_server(serving_env: ServingEnvironment):
    config = serving_config(serving_env.config, experiments=[EXPERIMENT])
    with ServingServer(config) as server:
        yield server


def test_users_stay_in_their_variant_and_get_its_ranker(
    experiment_server: ServingServer, serving_env: ServingEnvironment
):
    bucketing = Bucketing(experiment_server.config.experiments)
    expected_ranker = {
        "ranker": f"{serving_env.registered_model}/{serving_env.versions['lightgbm']}",
        "popularity": "popularity",
        "random": "random",
    }
    seen = Counter()
    with httpx.Client(base_url=experiment_server.url) as client:
        for user in [f"ab-{i}" for i in range(60)] + serving_env.users[31:36]:
            variants = set()
            for _ in range(2):
                body = client.get("/v1/feed", headers=AUTH, params={"user_id": user, "k": 6}).json()
                assert body["experiment"] == "ranker-vs-baselines" and body["degraded"] == []
                assert body["ranker"] == expected_ranker[body["variant"]]
                variants.add(body["variant"])
            assert variants == {bucketing.assign(user, dt.datetime.now(dt.UTC)).variant.name}
            seen[variants.pop()] += 1
    assert set(seen) == {"ranker", "popularity", "random"}


def test_the_popularity_variant_recalls_only_popularity_and_ranks_by_trending_score(
    experiment_server: ServingServer, serving_env: ServingEnvironment
):
    bucketing = Bucketing(experiment_server.config.experiments)
    now = dt.datetime.now(dt.UTC)
    user = next(u for u in serving_env.users[36:] if bucketing.assign(u, now).variant.name == "popularity")
    body = httpx.get(f"{experiment_server.url}/v1/feed", headers=AUTH, params={"user_id": user, "k": 10}).json()
    assert {item["source"] for item in body["items"]} <= {"popularity", "trending", "exploration"}
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


def test_impressions_carry_the_variant(experiment_server: ServingServer, serving_env: ServingEnvironment):
    reader = TopicReader(serving_env.config.kafka)
    try:
        bodies = [
            httpx.get(
                f"{experiment_server.url}/v1/feed", headers=AUTH, params={"user_id": f"ab-kafka-{i}", "k": 3}
            ).json()
            for i in range(6)
        ]
        wanted = {b["request_id"]: f"{b['experiment']}:{b['variant']}" for b in bodies}
        messages = reader.wait_for(lambda found: sum(v.get("request_id") in wanted for _, v in found) >= 18)
    finally:
        reader.close()
    impressions = [v for _, v in messages if v.get("request_id") in wanted]
    assert len(impressions) == 18
    assert all(i["variant"] == wanted[i["request_id"]] for i in impressions)


def test_variants_can_pin_a_version_or_another_alias(serving_env: ServingEnvironment):
    lightgbm, logistic = serving_env.versions["lightgbm"], serving_env.versions["logistic_regression"]
    experiment = {
        "name": "pinned",
        "variants": [
            {"name": "pinned", "share": 0.5, "ranker": f"version:{lightgbm}"},
            {"name": "challenger", "share": 0.5, "ranker": "alias:challenger"},
        ],
    }
    expected = {"pinned": lightgbm, "challenger": logistic}
    with ServingServer(serving_config(serving_env.config, experiments=[experiment])) as server:
        found = set()
        for i in range(30):
            body = httpx.get(f"{server.url}/v1/feed", headers=AUTH, params={"user_id": f"pin-{i}", "k": 3}).json()
            assert body["ranker"] == f"{serving_env.registered_model}/{expected[body['variant']]}"
            found.add(body["variant"])
    assert found == {"pinned", "challenger"}
