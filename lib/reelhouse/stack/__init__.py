"""The local stack: an S3 server (rclone) and a Kafka-protocol broker (Tansu) as detached processes.

``reelhouse stack up|down|status`` drives :class:`LocalStack`; ``stack up --spark-cluster`` adds a
Spark standalone cluster (:class:`SparkCluster`: one master, a few workers) for jobs submitted
with ``--master spark://...``. Everything it writes lives under
``stack.state_dir``: ``pids/``, ``logs/``, ``data/`` and the generated S3 credentials. On a real
cluster (``stack.enabled: false``) nothing is started and only ``kafka.bootstrap_servers`` matters.
"""

from reelhouse.stack.local import LocalStack, ServiceStatus
from reelhouse.stack.spark_cluster import SparkCluster

__all__ = ["LocalStack", "ServiceStatus", "SparkCluster"]
