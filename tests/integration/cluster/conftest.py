"""A private local stack with a Spark standalone cluster (2 workers x 1 core x 1g), once per module.

Free ports and a temporary state dir, so it never meets the session stack or a developer's
cluster; stopped when the module ends, also after a failure.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reelhouse.errors import PrerequisiteError
from reelhouse.stack import LocalStack, processes
from reelhouse.stack.spark_cluster import find_spark_class
from tests.integration.conftest import build_test_config, free_ports, missing_prerequisite, require_broker_prerequisites


def _ports_apart_from(taken: set[int]) -> list[int]:
    while True:
        ports = free_ports(2)
        if not taken & set(ports):
            return ports


@pytest.fixture(scope="module")
def cluster_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    require_broker_prerequisites()
    try:
        find_spark_class()
    except PrerequisiteError as e:
        missing_prerequisite(str(e))
    config = build_test_config(tmp_path_factory.mktemp("cluster-stack"))
    master_port, webui_port = _ports_apart_from({config.stack.broker.port, config.stack.broker.controller_port})
    cluster = config.stack.spark_cluster.model_copy(
        update={
            "master_port": master_port,
            "master_webui_port": webui_port,
            "workers": 2,
            "cores_per_worker": 1,
            "memory_per_worker": "1g",
        }
    )
    config = config.model_copy(update={"stack": config.stack.model_copy(update={"spark_cluster": cluster})})
    stack = LocalStack(config)
    pids: list[int] = []
    try:
        stack.up(spark_cluster=True)
        pids = [d.pid for d in stack.spark_cluster.status() if d.pid is not None]
        yield stack
    finally:
        stack.down()
    assert not [pid for pid in pids if processes.is_alive(pid)], "stack down left Spark daemons running"
