"""`reelhouse evaluate` end to end: logs with bad rows, the recall sources, the pipeline, the report."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reelhouse.cli import main
from reelhouse.config import load_config
from reelhouse.evaluation.lake_import import import_interactions
from reelhouse.evaluation.lakehouse import evaluation_data_from_events
from reelhouse.evaluation.logfile import LogColumns
from reelhouse.evaluation.run import EvaluateOptions, run_evaluation
from reelhouse.lake import Lake
from reelhouse.recall.metrics import metric_names
from tests.support.synthetic_log import START_S, synthetic_log

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parents[3]
CONFIG = str(PROJECT_DIR / "conf" / "local.yaml")
BAD_ROWS = "u1,,1790000000,0.5\nu2,i3,someday,0.5\nu3,i4,1790000000,lots\n"


@pytest.fixture(scope="module")
def log_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    log, items = synthetic_log(n_users=400, n_items=300, n_interactions=12_000, seed=2)
    log.to_csv(root / "log.csv", index=False)
    with open(root / "log.csv", "a") as out:
        out.write(BAD_ROWS)
    items.to_csv(root / "items.csv", index=False)
    return root


def _isolate(monkeypatch, root: Path) -> None:
    monkeypatch.setenv("REELHOUSE__DATA_DIR", str(root))
    monkeypatch.setenv("REELHOUSE__LAKE__ROOT", str(root / "lake"))


def test_evaluate_a_log_from_the_command_line(log_files, tmp_path, monkeypatch, capsys):
    _isolate(monkeypatch, tmp_path)
    monkeypatch.setenv("REELHOUSE__RECALL__QUOTAS__ALS", "0")  # ALS (Spark) is covered below
    out = tmp_path / "report"
    code = main(
        [
            "evaluate",
            "--config",
            CONFIG,
            "--interactions",
            str(log_files / "log.csv"),
            "--time-col",
            "ts",
            "--rating-col",
            "watch_ratio",
            "--item-features",
            str(log_files / "items.csv"),
            "--k",
            "10,20",
            "--output-dir",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out.strip().splitlines()
    result = json.loads(printed[-1])
    assert set(result) == {"k", "users", "models", "pipeline"} and result["k"] == [10, 20] and result["users"] > 100
    assert set(result["pipeline"]["validation"]) == {"ranker", "ease", "covisit", "topic", "popularity"}
    models = result["models"]
    # No embeddings: the embedding and content sources are skipped; ALS is off here.
    assert list(models) == ["random", "popularity", "ease", "covisit", "topic", "pipeline"]
    assert all(list(metrics) == metric_names([10, 20]) for metrics in models.values())
    # The synthetic log has a popularity signal (Zipf items) and a topic signal.
    assert models["popularity"]["ndcg@10"] > 2 * models["random"]["ndcg@10"]
    assert models["popularity"]["recall@20"] > models["random"]["recall@20"]
    assert models["topic"]["ndcg@10"] > models["popularity"]["ndcg@10"]
    assert models["pipeline"]["ndcg@10"] > models["popularity"]["ndcg@10"]

    assert any(line.startswith("| pipeline |") for line in printed)
    assert (out / "report.md").read_text().startswith("# Offline evaluation")
    assert (out / "metrics.png").stat().st_size > 1000
    quarantine = pq.read_table(out / "quarantine.parquet").column("reason").to_pylist()
    assert sorted(quarantine) == ["missing_item", "non_numeric_rating", "unparseable_time"]
    imported = json.loads((out / "import_report.json").read_text())
    assert imported["valid"] == 12_000 and imported["rows_read"] == 12_003


def test_als_and_the_pipeline_with_a_split_column(log_files, tmp_path, spark):
    environ = {
        "REELHOUSE__DATA_DIR": str(tmp_path),
        "REELHOUSE__RECALL__ALS_MAX_ITER": "4",
        "REELHOUSE__RECALL__ALS_RANK": "8",
        "REELHOUSE__RECALL__QUOTAS__COVISIT": "0",
        "REELHOUSE__RECALL__QUOTAS__TOPIC": "0",
        "REELHOUSE__RECALL__QUOTAS__EASE": "0",
    }
    config = load_config(CONFIG, environ=environ)
    # The split column: days 0-23 train, 24-26 valid, 27-29 test (30 days of data).
    frame = pd.read_csv(log_files / "log.csv").dropna()
    frame = frame[pd.to_numeric(frame["ts"], errors="coerce").notna()]
    day = (pd.to_numeric(frame["ts"]) - START_S) // 86_400
    frame["split"] = np.select([day < 24, day < 27], ["train", "valid"], "test")
    frame.to_parquet(tmp_path / "log.parquet")

    options = EvaluateOptions(
        k=(10,),
        interactions=str(tmp_path / "log.parquet"),
        columns=LogColumns("user_id", "item_id", time="ts", rating="watch_ratio", split="split"),
        output_dir=tmp_path / "report",
    )
    run = run_evaluation(config, options, lambda: spark)
    models = run.result.models
    assert list(models) == ["random", "popularity", "als", "pipeline"]
    assert models["als"]["ndcg@10"] > models["random"]["ndcg@10"]
    assert models["pipeline"]["recall@10"] > models["random"]["recall@10"]
    assert "split: column" in run.markdown
    # ALS's settings were chosen on a holdout of train (the grid's ranks, not the configured 8).
    assert run.details["tuning"].startswith("{'als': {'als_rank': ")
    assert (tmp_path / "report" / "tuning.json").exists()


def _silver_events(days: int) -> pa.Table:
    log, _ = synthetic_log(n_users=200, n_items=150, n_interactions=4_000, days=days, seed=4)
    stamp = pa.array(log["ts"].to_numpy() * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    return pa.table(
        {
            "user_id": pa.array(log["user_id"]),
            "video_id": pa.array(log["item_id"]),
            "event_type": pa.array(["play"] * len(log)),
            "event_time": stamp,
            "received_at": stamp,
            "watch_ms": pa.array((log["watch_ratio"].to_numpy() * 10_000).astype("int64")),
            "video_duration_ms": pa.array(np.full(len(log), 10_000, dtype="int64")),
        }
    )


def test_silver_events_hold_out_the_last_day(spark):
    events = spark.createDataFrame(_silver_events(days=5).to_pandas())
    data = evaluation_data_from_events(events, load_config(CONFIG).recall)
    described = data.description
    end = dt.datetime.fromisoformat(described["test_end"])
    assert dt.datetime.fromisoformat(described["test_start"]) == end - dt.timedelta(days=1)
    assert dt.datetime.fromisoformat(described["valid_start"]) == end - dt.timedelta(days=2)
    assert data.train.time_s.max() < dt.datetime.fromisoformat(described["valid_start"]).timestamp()
    assert data.test.nnz > 0 and data.valid is not None and data.valid.nnz > 0
    assert data.test.multiply(data.seen).nnz == 0  # pairs seen in training are not held out


def test_the_import_writes_the_table_and_the_quarantine(spark, log_files, tmp_path, monkeypatch):
    # The library function the job calls (the job adds argument parsing and its own SparkSession).
    _isolate(monkeypatch, tmp_path)
    config = load_config(CONFIG)
    columns = LogColumns("user_id", "item_id", time="ts", rating="watch_ratio")

    def run_import():
        return import_interactions(spark, config, log_files / "log.csv", columns, item_features=log_files / "items.csv")

    report = json.loads(run_import().to_json())
    assert report["malformed"] == {"missing_item": 1, "unparseable_time": 1, "non_numeric_rating": 1}
    # A time cut: the latest tenth of the rows is test, the tenth before valid (a few ties aside).
    assert sum(report["splits"].values()) == 12_000
    assert abs(report["splits"]["test"] - 1_200) < 20 and abs(report["splits"]["valid"] - 1_200) < 20
    lake = Lake(config.lake)
    table = lake.to_arrow("imported_interactions")
    assert table.num_rows == 12_000 and set(table.column("split").to_pylist()) == {"train", "valid", "test"}
    assert lake.to_arrow("imported_item_features").num_rows == 300
    assert pq.read_table(report["quarantine"]).num_rows == 3

    # Importing the same file again replaces the table: same rows, a new version.
    version = lake.version("imported_interactions")
    run_import()
    assert lake.to_arrow("imported_interactions").num_rows == 12_000
    assert lake.version("imported_interactions") == version + 1
