"""Quality benchmark: every recall source and the pipeline on MovieLens-100k, Recommenders' protocol.

MovieLens-100k comes from the ``recbole`` 1.2.1 wheel on PyPI, which ships it as
``recbole/dataset_example/ml-100k/ml-100k.{inter,item,user}``. The GroupLens licence forbids
redistributing the data, so the wheel is downloaded at run time (``pip download --no-deps``, into
``~/.cache/reelhouse``) and read from the zip; nothing of it is committed or installed.

Runs (:mod:`reelhouse.evaluation.quality`): a 75/25 split stratified by user with a fixed seed,
once without and once with the timestamp column, and once with the movies' genres as multi-hot
content vectors. Every source's hyper-parameters are tuned on a holdout of the training data.
Published nDCG@10 on the same protocol (Microsoft Recommenders' benchmark): SAR 0.382, BPR
0.442, BiVAE 0.475. Last line: JSON.

    make bench-quality
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from reelhouse.config import load_config
from reelhouse.evaluation.quality import PUBLISHED_NDCG_AT_10, best_source_above_pipeline, quality_runs
from reelhouse.jobs import job_session

RECBOLE = "recbole==1.2.1"
WHEEL = "recbole-1.2.1-py3-none-any.whl"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.{}"


def recbole_wheel(cache: Path) -> Path:
    """The recbole wheel in ``cache``, downloaded from PyPI (no dependencies) when absent."""
    wheel = cache / WHEEL
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", RECBOLE, "--no-deps", "--quiet", "-d", str(cache)], check=True
        )
    return wheel


def movielens_100k(wheel: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(ratings: user_id, item_id, rating, timestamp; items: item_id, genres (multi-hot))``."""
    with zipfile.ZipFile(wheel) as archive:
        inter = pd.read_csv(io.BytesIO(archive.read(MEMBER.format("inter"))), sep="\t", dtype=str)
        items = pd.read_csv(io.BytesIO(archive.read(MEMBER.format("item"))), sep="\t", dtype=str, keep_default_na=False)
    inter.columns = [c.split(":")[0] for c in inter.columns]
    items.columns = [c.split(":")[0] for c in items.columns]
    ratings = inter.astype({"rating": float, "timestamp": float})
    genres = items["class"].str.split()
    vocabulary = sorted({g for row in genres for g in row})
    position = {g: i for i, g in enumerate(vocabulary)}
    vectors = np.zeros((len(items), len(vocabulary)), dtype=np.float32)
    for row, values in enumerate(genres):
        vectors[row, [position[g] for g in values]] = 1.0
    return ratings, pd.DataFrame({"item_id": items["item_id"], "genres": list(vectors)})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="conf/local.yaml")
    parser.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reelhouse"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its shutdown lines would follow the JSON
    config = load_config(args.config)
    ratings, items = movielens_100k(recbole_wheel(args.cache))
    with tempfile.TemporaryDirectory(prefix="reelhouse-quality-") as scratch, ExitStack() as stack:
        sessions = []

        def spark():  # noqa: ANN202 - started when ALS first needs it, stopped on the way out
            if not sessions:
                sessions.append(stack.enter_context(job_session(config, "bench-quality")))
            return sessions[0]

        root = Path(scratch)
        ratings.to_csv(root / "ml-100k.csv", index=False)
        table = pa.table(
            {
                "item_id": items["item_id"],
                "genres": pa.array([v.tolist() for v in items["genres"]], pa.list_(pa.float32())),
            }
        )
        pq.write_table(table, root / "genres.parquet")
        runs = quality_runs(config, root / "ml-100k.csv", root / "genres.parquet", spark, root / "reports")
    result = {
        "benchmark": "quality",
        "dataset": "ml-100k",
        "k": 10,
        "split": "75/25 stratified by user, seed 42 (Microsoft Recommenders' python_stratified_split protocol)",
        "ratings": len(ratings),
        "runs": runs,
        "published": PUBLISHED_NDCG_AT_10,
        "above_pipeline": {name: best_source_above_pipeline(run) for name, run in runs.items()},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
