"""The A/B report from hand-made silver events, on local Spark and real Delta tables."""

from __future__ import annotations

import datetime as dt
import json
import random

import pyarrow as pa
import pytest

from reelhouse.config.models import ExperimentConfig, VariantConfig
from reelhouse.errors import ReelhouseError
from reelhouse.experiments.report import AB_RESULTS, STATUS_ANALYSED, STATUS_NOT_RUNNING, ab_report, run_key
from reelhouse.lake import Lake
from reelhouse.silver.tables import SILVER_EVENTS
from tests.integration.conftest import build_test_config

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 11, 21, 10, 0, tzinfo=dt.UTC)
END = T0 + dt.timedelta(hours=2)
EXPERIMENT = "feed-test"
DURATION_MS = 10_000


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def event(event_id, event_type, request_id, user, video, time, watch_ms=None, variant=None):
    return {
        "event_id": event_id, "event_type": event_type, "schema_version": 1, "user_id": user, "video_id": video,
        "event_time": time, "session_id": "s1", "request_id": request_id, "device_os": "ios",
        "device_app_version": "1.0", "device_country": "US", "device_network": "wifi", "watch_ms": watch_ms,
        "video_duration_ms": DURATION_MS if event_type == "play" else None,
        "position": 0 if event_type == "impression" else None, "variant": variant,
        "received_at": time + dt.timedelta(seconds=1), "session_key": f"{user}:0", "session_start": time,
        "known_user": True, "known_video": True, "user_country": "US", "user_age_group": "18-24",
        "creator_id": "c1", "topic": "pets", "upload_time": None, "event_date": time.date(),
        "event_hour": time.strftime("%Y-%m-%dT%H"),
    }  # fmt: skip


def seed_silver(spark, lake: Lake) -> dict[str, dict[str, float]]:
    """Three arms, 30 users each; "better" watches 30 points more of each video. Returns the
    expected per-impression means per variant, counted here from the generated outcomes."""
    rng = random.Random(11)
    rows, totals = [], {}
    for variant, lift in (("control", 0.0), ("better", 0.3), ("same", 0.0)):
        counts = totals.setdefault(variant, {"impressions": 0, "played": 0, "watch": 0.0, "liked": 0})
        for u in range(30):
            user, taste = f"{variant}-u{u}", rng.uniform(0.2, 0.5)
            for i in range(rng.randint(2, 6)):
                request, video, time = f"r-{user}-{i}", f"v{i}", at(rng.uniform(0, 115))
                rows.append(
                    event(f"i-{user}-{i}", "impression", request, user, video, time, variant=f"{EXPERIMENT}:{variant}")
                )
                counts["impressions"] += 1
                if rng.random() < 0.8:
                    ratio = min(1.0, max(0.0, taste + lift + rng.gauss(0, 0.05)))
                    rows.append(event(f"p-{user}-{i}", "play", request, user, video, time + dt.timedelta(minutes=1),
                                      watch_ms=round(ratio * DURATION_MS)))  # fmt: skip
                    counts["played"] += 1
                    counts["watch"] += round(ratio * DURATION_MS) / DURATION_MS
                if rng.random() < 0.2:
                    rows.append(event(f"l-{user}-{i}", "like", request, user, video, time + dt.timedelta(minutes=2)))
                    counts["liked"] += 1
    rows += [
        # Another experiment, an unstamped feed and an impression after the interval: not counted.
        event("x1", "impression", "rx1", "control-u0", "v9", at(5), variant="other-exp:a"),
        event("x2", "impression", "rx2", "control-u1", "v9", at(5)),
        event("x3", "impression", "rx3", "control-u2", "v9", at(125), variant=f"{EXPERIMENT}:control"),
        # A user seen in two variants is left out of the analysis.
        event("y1", "impression", "ry1", "mixed", "v1", at(10), variant=f"{EXPERIMENT}:control"),
        event("y2", "impression", "ry2", "mixed", "v2", at(20), variant=f"{EXPERIMENT}:better"),
    ]
    lake.write_arrow(spark, pa.Table.from_pylist(rows, schema=SILVER_EVENTS.schema), SILVER_EVENTS)
    return {
        v: {"played": c["played"] / c["impressions"], "watch_ratio": c["watch"] / c["impressions"],
            "liked": c["liked"] / c["impressions"], "shared": 0.0, "impressions": c["impressions"]}
        for v, c in totals.items()
    }  # fmt: skip


@pytest.fixture
def config(tmp_path):
    base = build_test_config(tmp_path)
    experiments = [
        ExperimentConfig(
            name=EXPERIMENT,
            variants=[
                VariantConfig(name="control", share=0.34),
                VariantConfig(name="better", share=0.33),
                VariantConfig(name="same", share=0.33),
            ],
        ),
        # Ended before the interval: skipped unless asked for by name.
        ExperimentConfig(
            name="finished",
            end="2026-11-01T00:00:00+00:00",
            variants=[VariantConfig(name="a", share=0.5), VariantConfig(name="b", share=0.5)],
        ),
    ]
    return base.model_copy(update={"experiments": experiments})


def table_rows(lake: Lake) -> list[dict]:
    rows = lake.to_arrow(AB_RESULTS.name).to_pylist()
    return sorted(rows, key=lambda r: (r["run"], r["metric"], r["variant"]))


def test_the_report_finds_the_better_variant_and_reruns_replace_their_rows(spark, config, tmp_path):
    lake = Lake(config.lake)
    expected = seed_silver(spark, lake)

    result = ab_report(spark, config, T0, END)

    assert result.ok and json.loads(result.to_json())["ok"] is True
    assert result.experiments["finished"].status == STATUS_NOT_RUNNING
    report = result.experiments[EXPERIMENT]
    assert report.status == STATUS_ANALYSED and report.control == "control"
    assert report.users == {"control": 30, "better": 30, "same": 30} and report.excluded_users == 1
    assert "watch_ratio:better" in report.significant
    assert not any(s.endswith(":same") for s in report.significant)

    rows = table_rows(lake)
    assert len(rows) == result.rows == 3 * 4
    assert (
        {r["run"] for r in rows}
        == {run_key(EXPERIMENT, T0, END)}
        == {f"{EXPERIMENT}__20261121T100000Z_20261121T120000Z"}
    )
    by_key = {(r["variant"], r["metric"]): r for r in rows}
    for variant, means in expected.items():
        for metric in ("played", "watch_ratio", "liked", "shared"):
            row = by_key[(variant, metric)]
            assert row["mean"] == pytest.approx(means[metric]), (variant, metric)
            assert row["impressions"] == means["impressions"] and row["users"] == 30
            assert row["interval_start"] == T0 and row["interval_end"] == END and row["alpha"] == 0.05
    control, better = by_key[("control", "watch_ratio")], by_key[("better", "watch_ratio")]
    assert control["is_control"] and control["delta"] is None and control["significant"] is None
    assert better["significant"] is True and better["p_value"] < 1e-6
    assert (
        better["delta_ci_low"]
        < expected["better"]["watch_ratio"] - expected["control"]["watch_ratio"]
        < better["delta_ci_high"]
    )
    assert 0.2 < better["delta_ci_low"]
    assert by_key[("same", "watch_ratio")]["significant"] is False

    out = config.data_dir / "ab" / EXPERIMENT / "20261121T100000Z_20261121T120000Z"
    markdown = (out / f"{EXPERIMENT}.md").read_text()
    assert report.report == str(out / f"{EXPERIMENT}.md") and report.plot == str(out / f"{EXPERIMENT}.png")
    assert "# A/B report: feed-test" in markdown and "### feed-test: `watch_ratio`" in markdown
    assert "1 user(s) seen in more than one variant were left out" in markdown
    assert report.srm_p_value > 0.5 and "sample ratio test p = " in markdown  # 30/30/30 users for 34/33/33%
    assert "sample ratio mismatch" not in markdown
    assert (out / f"{EXPERIMENT}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summaries = json.loads((out / f"{EXPERIMENT}.json").read_text())
    assert len(summaries) == 12 and summaries[0]["variant"] == "control"

    # The same interval again: the run's rows are replaced, not added to.
    again = ab_report(spark, config, T0, END, out_dir=tmp_path / "again")
    assert again.version == result.version + 1
    assert table_rows(lake) == rows
    assert (tmp_path / "again" / f"{EXPERIMENT}.md").read_text() == markdown

    # Another interval, the first hour only: a second run next to the first.
    first_hour = ab_report(spark, config, T0, at(60), experiment=EXPERIMENT, out_dir=tmp_path / "hour")
    assert first_hour.ok and set(first_hour.experiments) == {EXPERIMENT}
    runs = {r["run"] for r in table_rows(lake)}
    assert runs == {run_key(EXPERIMENT, T0, END), run_key(EXPERIMENT, T0, at(60))}
    assert len(table_rows(lake)) == 24


def test_an_experiment_without_impressions_is_reported_not_ok(spark, config):
    lake = Lake(config.lake)
    impression = pa.Table.from_pylist([event("x", "impression", "r1", "u1", "v1", at(1))], schema=SILVER_EVENTS.schema)
    lake.write_arrow(spark, impression, SILVER_EVENTS)
    result = ab_report(spark, config, T0, END, experiment="finished")  # asked by name: analysed even though ended
    assert not result.ok and result.experiments["finished"].status == "no_impressions"
    assert lake.to_arrow(AB_RESULTS.name).num_rows == 0


def test_bad_requests_are_rejected_before_any_work(spark, config):
    with pytest.raises(
        ReelhouseError, match=r"'nope' is not in config.experiments \(configured: feed-test, finished\)"
    ):
        ab_report(spark, config, T0, END, experiment="nope")
    with pytest.raises(ReelhouseError, match="non-empty and timezone-aware"):
        ab_report(spark, config, END, T0)
    with pytest.raises(ReelhouseError, match="config.experiments is empty"):
        ab_report(spark, config.model_copy(update={"experiments": []}), T0, END)
