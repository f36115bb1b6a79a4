"""What the local broker is: where its files live, and the command, properties and log config it runs with.

Pure functions of the config (and of the java binary and classpath passed in), so the command
line and the generated files can be tested without starting anything.

The broker is Apache Kafka in KRaft mode, one JVM that is both broker and controller (node id 1),
with a static one-voter quorum. Static rather than ``--standalone`` (a dynamic quorum) because the
voter's address then comes from ``server.properties``, which ``up`` writes from the config each
time; a dynamic quorum records the controller's endpoint in the metadata log when the storage is
formatted, so a changed ``stack.broker.controller_port`` would no longer match it.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reelhouse.config import StackConfig
from reelhouse.errors import ConfigError, PrerequisiteError

BROKER = "broker"
TITLE = "Kafka broker (Apache Kafka, KRaft)"
NODE_ID = 1
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
#: Written by the storage format into every log dir; its absence means "never formatted".
META_PROPERTIES = "meta.properties"


@dataclass(frozen=True)
class StackPaths:
    """Layout of ``stack.state_dir``: pids/, logs/, conf/ (generated), data/ and the cluster id."""

    state_dir: Path

    @property
    def pids_dir(self) -> Path:
        return self.state_dir / "pids"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def conf_dir(self) -> Path:
        """Files ``up`` generates from the config on every start; editing them has no lasting effect."""
        return self.state_dir / "conf"

    @property
    def broker_data_dir(self) -> Path:
        """The broker's ``log.dirs``: topic partitions and the KRaft metadata log."""
        return self.data_dir / "kafka"

    @property
    def server_properties(self) -> Path:
        return self.conf_dir / "server.properties"

    @property
    def log4j_config(self) -> Path:
        return self.conf_dir / "log4j2.properties"

    @property
    def cluster_id_file(self) -> Path:
        return self.state_dir / "cluster.id"

    def pid_file(self, service: str) -> Path:
        return self.pids_dir / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"


def find_java(environ: Mapping[str, str] | None = None) -> str:
    """``$JAVA_HOME/bin/java``, else ``java`` on PATH."""
    env = os.environ if environ is None else environ
    java_home = env.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").is_file():
        return str(Path(java_home, "bin", "java"))
    on_path = shutil.which("java", path=env.get("PATH"))
    if on_path:
        return on_path
    raise PrerequisiteError(
        "the local Kafka broker needs Java 17+: install it (e.g. apt-get install openjdk-17-jre-headless) "
        "and put `java` on PATH or set JAVA_HOME"
    )


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID as 22 characters of URL-safe base64, as ``kafka-storage random-uuid``."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes)[:22].decode()


def broker_address(stack: StackConfig) -> str:
    return f"{stack.broker.host}:{stack.broker.port}"


def controller_address(stack: StackConfig) -> str:
    return f"{stack.broker.host}:{stack.broker.controller_port}"


def stack_properties(stack: StackConfig, paths: StackPaths) -> dict[str, str]:
    """The settings that make it this stack's broker; ``stack.broker.properties`` may not replace them."""
    host, broker = stack.broker.host, stack.broker
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{host}:{broker.controller_port}",
        "listeners": f"PLAINTEXT://{host}:{broker.port},CONTROLLER://{host}:{broker.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{broker.port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(paths.broker_data_dir),
    }


#: Defaults of a one-broker cluster; ``stack.broker.properties`` may change them.
SINGLE_NODE_DEFAULTS = {
    # Kafka's internal topics default to three replicas, which one broker cannot host.
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    # A consumer group's first member gets its partitions at once instead of after 3 s.
    "group.initial.rebalance.delay.ms": "0",
    # Topics are created on purpose, with their partition count (reelhouse.kafka.ensure_topic):
    # a typo in a topic name is an error, not a new one-partition topic.
    "auto.create.topics.enable": "false",
}


def server_properties(stack: StackConfig, paths: StackPaths) -> dict[str, str]:
    """Every setting of the generated ``server.properties``, in the order they are written."""
    own = stack_properties(stack, paths)
    clashes = sorted(set(stack.broker.properties) & set(own))
    if clashes:
        raise ConfigError(
            f"stack.broker.properties sets {', '.join(clashes)}, which the stack derives itself "
            "(from stack.broker.host, port, controller_port and stack.state_dir); remove them there"
        )
    return {**own, **SINGLE_NODE_DEFAULTS, **stack.broker.properties}


def render_properties(settings: Mapping[str, str]) -> str:
    header = (
        "# Generated by `reelhouse stack up` from the config (stack.broker); rewritten on every start.\n"
        "# Change stack.broker.properties instead of this file.\n"
    )
    return header + "".join(f"{key}={_escape(value)}\n" for key, value in settings.items())


def _escape(value: str) -> str:
    # java.util.Properties treats a backslash as an escape; Windows-style paths would lose theirs.
    return value.replace("\\", "\\\\")


#: The broker logs to stdout, which `up` appends to logs/broker.log: one writer and one file, so
#: what the JVM prints before log4j starts (a bad flag, a missing class) sits next to log4j's lines.
LOG4J2_CONFIG = """\
# Generated by `reelhouse stack up`; rewritten on every start.
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.target = SYSTEM_OUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
# Every start prints each of its several hundred settings; server.properties holds what matters.
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
# One line per slow request and per partition state change would drown the rest.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
"""


def jvm_options(stack: StackConfig, paths: StackPaths) -> list[str]:
    """Kept to the heap and the logging: measured on 2 cores, GC or JIT flags changed the start
    time by less than its run-to-run spread (2-3 s), and they would cost throughput."""
    return [
        f"-Xmx{stack.broker.heap}",
        "-Djava.awt.headless=true",
        # A broker that ran out of heap is better gone (and reported by `status`) than half alive.
        "-XX:+ExitOnOutOfMemoryError",
        f"-Dlog4j2.configurationFile={paths.log4j_config}",
    ]


def broker_command(java: str, classpath: str, stack: StackConfig, paths: StackPaths) -> list[str]:
    return [java, *jvm_options(stack, paths), "-cp", classpath, MAIN_CLASS, str(paths.server_properties)]


def format_command(java: str, classpath: str, stack: StackConfig, paths: StackPaths, cluster_id: str) -> list[str]:
    """Formats ``log.dirs`` for the static quorum of ``server.properties`` (hence no ``--standalone``).

    The id is attached to its option (``--cluster-id=…``): one id in 64 begins with ``-``
    (URL-safe base64), which the tool's parser would otherwise read as an option.
    """
    return [
        java, *jvm_options(stack, paths), "-cp", classpath,
        STORAGE_TOOL, "format", f"--cluster-id={cluster_id}", "--config", str(paths.server_properties),
    ]  # fmt: skip


def is_broker_command(cmdline: Sequence[str] | None, paths: StackPaths) -> bool:
    """True if ``cmdline`` is a JVM running ``kafka.Kafka`` on this stack's ``server.properties``.

    Matching the properties file, not just the main class, keeps ``down`` away from another
    stack's broker (another state dir) and from any other Kafka on the machine.
    """
    if not cmdline or Path(cmdline[0]).name != "java":
        return False
    args = list(cmdline)
    if MAIN_CLASS not in args:
        return False
    return args[args.index(MAIN_CLASS) + 1 :][:1] == [str(paths.server_properties)]


def is_formatted(paths: StackPaths) -> bool:
    return (paths.broker_data_dir / META_PROPERTIES).is_file()
