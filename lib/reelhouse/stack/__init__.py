"""The local stack: a single-node Apache Kafka broker (KRaft mode) as a detached JVM.

``reelhouse stack up|down|status`` drives :class:`LocalStack`; ``stack up --spark-cluster`` adds a
Spark standalone cluster (:class:`SparkCluster`: one master, a few workers) for jobs submitted
with ``--master spark://...``. Everything it writes lives under ``stack.state_dir``: ``pids/``,
``logs/``, ``conf/`` (the generated broker settings), ``data/`` (the broker's log dirs, which
``up`` never deletes) and the cluster id. On a real cluster (``stack.enabled: false``) nothing
is started and only ``kafka.bootstrap_servers`` matters.
"""

from reelhouse.stack.local import LocalStack, ServiceStatus
from reelhouse.stack.spark_cluster import SparkCluster

__all__ = ["LocalStack", "ServiceStatus", "SparkCluster"]
