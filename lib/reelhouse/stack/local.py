""":class:`LocalStack`: start, stop, restart, kill and describe the local Kafka broker (and the Spark cluster)."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reelhouse import jvm
from reelhouse.config import ReelhouseConfig
from reelhouse.errors import StackError
from reelhouse.kafka import ensure_topic
from reelhouse.stack import health, processes
from reelhouse.stack.services import (
    BROKER,
    LOG4J2_CONFIG,
    TITLE,
    StackPaths,
    broker_address,
    broker_command,
    controller_address,
    find_java,
    format_command,
    is_broker_command,
    is_formatted,
    new_cluster_id,
    render_properties,
    server_properties,
)
from reelhouse.stack.spark_cluster import SparkCluster

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceStatus:
    """What `status` knows about one local service."""

    name: str
    title: str
    running: bool
    pid: int | None
    address: str
    data_dir: Path
    log_file: Path
    pid_file: Path


class LocalStack:
    """The local broker of ``config.stack``: one Apache Kafka JVM in KRaft mode (broker and controller).

    The broker runs detached; its pid file under ``stack.state_dir/pids`` is the only record of
    what this class started, so a new instance (another CLI call) can stop it. Its data, under
    ``stack.state_dir/data``, is never deleted here: topics and messages outlive ``down``/``up``
    and a killed broker.
    """

    def __init__(self, config: ReelhouseConfig) -> None:
        self._config = config
        self._stack = config.stack
        self.paths = StackPaths(config.stack.state_dir)
        # The Popen handle of the broker this instance started, kept so it is reaped on stop.
        self._child: subprocess.Popen[bytes] | None = None
        self.spark_cluster = SparkCluster(config, self.paths)

    # ---- public API -------------------------------------------------------------------------

    @property
    def config(self) -> ReelhouseConfig:
        return self._config

    def up(self, spark_cluster: bool = False) -> None:
        """Start the broker, wait until it answers, create the events topic.

        With ``spark_cluster`` also start the Spark standalone cluster; a broker that already
        runs is then kept as it is and only the cluster is added.
        """
        if not self._stack.enabled:
            log.info("stack.enabled is false: nothing to start, Kafka is at %s", self._config.kafka.bootstrap_servers)
            return
        start_broker = not (spark_cluster and self.broker_running())
        if start_broker:
            self._refuse_if_running()
            self._check_config()
            self._start_broker()
            log.info("local stack is up: broker at %s", broker_address(self._stack))
        if not spark_cluster:
            return
        try:
            self.spark_cluster.up()
        except BaseException:
            if start_broker:
                self._stop_broker()
            raise

    def down(self) -> None:
        """Stop what `up` started (the pids of our pid files, if they still run our broker); safe to repeat."""
        if not self._stack.enabled:
            log.info("stack.enabled is false: nothing to stop")
            return
        stopped = self.spark_cluster.down()
        if self._stop_broker():
            stopped.append(TITLE)
        log.info("local stack is down (stopped: %s)", ", ".join(stopped) or "nothing was running")

    def restart_broker(self) -> None:
        """Stop the broker (if it runs) and start it again on the same data.

        Every acknowledged message stays readable, producers and consumers reconnect and carry on,
        and new messages are appended after the old ones. Also the way back after :meth:`kill_broker`.
        """
        if not self._stack.enabled:
            raise StackError("stack.enabled is false: there is no local broker to restart")
        self._stop_broker()
        self._check_config()
        self._start_broker()
        log.info("broker restarted at %s", broker_address(self._stack))

    def kill_broker(self) -> int:
        """SIGKILL the broker, as a crash would (no shutdown, no flush); returns its pid. For tests.

        Acknowledged messages survive: they are in the page cache, and the next start recovers the
        log segments that were not closed cleanly. Start it again with :meth:`restart_broker`.
        """
        if not self._stack.enabled:
            raise StackError("stack.enabled is false: there is no local broker to kill")
        pid = self._broker_pid()
        if pid is None or not processes.kill_process(pid, self._is_broker):
            raise StackError(f"no local broker runs (pid file {self.paths.pid_file(BROKER)}): nothing to kill")
        self._reap(pid)
        processes.remove_pid_file(self.paths.pid_file(BROKER))
        log.info("killed %s (pid %d) with SIGKILL", TITLE, pid)
        return pid

    def broker_running(self) -> bool:
        return self._stack.enabled and self._broker_pid() is not None

    def status(self) -> list[ServiceStatus]:
        """One entry per local service; empty when the stack is disabled."""
        if not self._stack.enabled:
            return []
        pid = self._broker_pid()
        return [
            ServiceStatus(
                name=BROKER,
                title=TITLE,
                running=pid is not None,
                pid=pid,
                address=broker_address(self._stack),
                data_dir=self.paths.broker_data_dir,
                log_file=self.paths.log_file(BROKER),
                pid_file=self.paths.pid_file(BROKER),
            )
        ]

    def describe(self) -> str:
        if not self._stack.enabled:
            return (
                "local stack disabled (stack.enabled: false): nothing runs locally; "
                f"Kafka is at {self._config.kafka.bootstrap_servers}"
            )
        lines = [f"local stack (state in {self.paths.state_dir})"]
        for service in self.status():
            state = f"running, pid {service.pid}" if service.running else "not running"
            lines += [
                f"  {service.title}: {state}",
                f"    address    {service.address} (controller {controller_address(self._stack)})",
                f"    data       {service.data_dir}",
                f"    log        {service.log_file}",
                f"    config     {self.paths.server_properties}",
            ]
        lines += self.spark_cluster.describe_lines()
        return "\n".join(lines)

    # ---- internals --------------------------------------------------------------------------

    def _is_broker(self, cmdline: Sequence[str] | None) -> bool:
        return is_broker_command(cmdline, self.paths)

    def _broker_pid(self) -> int | None:
        return processes.owned_pid(self.paths.pid_file(BROKER), self._is_broker)

    def _refuse_if_running(self) -> None:
        pid_file = self.paths.pid_file(BROKER)
        pid = processes.clean_stale_pid_file(pid_file, self._is_broker)
        if pid is not None:
            raise StackError(
                f"the local stack is already running: {TITLE} pid {pid} (pid file {pid_file}). "
                "Use it as it is, or run `reelhouse stack down` first"
            )

    def _check_config(self) -> None:
        broker = self._stack.broker
        if broker.port == broker.controller_port:
            raise StackError(
                f"stack.broker.port and stack.broker.controller_port are both {broker.port}; give them different ports"
            )
        servers = [s.strip() for s in self._config.kafka.bootstrap_servers.split(",")]
        if broker_address(self._stack) not in servers:
            log.warning(
                "kafka.bootstrap_servers (%s) does not name the local broker (%s): clients will not reach it",
                self._config.kafka.bootstrap_servers,
                broker_address(self._stack),
            )

    def _refuse_taken_ports(self) -> None:
        broker = self._stack.broker
        for port, key in (
            (broker.port, "stack.broker.port (and kafka.bootstrap_servers)"),
            (broker.controller_port, "stack.broker.controller_port"),
        ):
            try:
                taken = processes.port_in_use(broker.host, port)
            except OSError as e:
                raise StackError(
                    f"the {TITLE} cannot listen on {broker.host}:{port}: {e}; check stack.broker.host"
                ) from e
            if taken:
                raise StackError(
                    f"port {port} on {broker.host} is already in use by another process, so the "
                    f"{TITLE} cannot listen there; change {key} or stop that process"
                )

    def _write_broker_files(self) -> None:
        """server.properties and the log4j2 config, from the config, on every start."""
        for directory in (self.paths.pids_dir, self.paths.logs_dir, self.paths.conf_dir, self.paths.broker_data_dir):
            directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.paths.server_properties, render_properties(server_properties(self._stack, self.paths)))
        _write_atomically(self.paths.log4j_config, LOG4J2_CONFIG)

    def _cluster_id(self) -> str:
        """The stack's cluster id: generated once, then read from ``cluster.id`` in the state dir."""
        path = self.paths.cluster_id_file
        try:
            cluster_id = path.read_text().strip()
        except FileNotFoundError:
            cluster_id = ""
        if not cluster_id:
            cluster_id = new_cluster_id()
            _write_atomically(path, cluster_id + "\n")
        return cluster_id

    def _format_storage(self, java: str, classpath: str) -> None:
        """Format ``log.dirs`` on the first start only: formatting is what makes an empty dir a broker's."""
        if is_formatted(self.paths):
            return
        cluster_id = self._cluster_id()
        log_file = self.paths.log_file(BROKER)
        offset = processes.log_size(log_file)
        log.info("formatting the broker's storage in %s (cluster id %s)", self.paths.broker_data_dir, cluster_id)
        argv = format_command(java, classpath, self._stack, self.paths, cluster_id)
        with log_file.open("ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} formatting storage ===\n".encode())
            out.flush()
            try:
                result = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    cwd=self.paths.state_dir, timeout=self._stack.start_timeout_s, check=False,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                raise StackError(
                    f"formatting the broker's storage took longer than {self._stack.start_timeout_s:g} s "
                    f"(stack.start_timeout_s). Last lines of {log_file}:\n{_indent(processes.log_tail(log_file, offset))}"
                ) from None
        if result.returncode != 0 or not is_formatted(self.paths):
            raise StackError(
                f"formatting the broker's storage in {self.paths.broker_data_dir} failed (exit code "
                f"{result.returncode}). Last lines of {log_file}:\n{_indent(processes.log_tail(log_file, offset))}"
            )

    def _start_broker(self) -> None:
        """Spawn the broker, record its pid, wait until it answers, ensure the events topic; on failure stop it."""
        java, classpath = find_java(), jvm.broker_classpath()
        self._refuse_taken_ports()
        self._write_broker_files()
        self._format_storage(java, classpath)
        log_file = self.paths.log_file(BROKER)
        log_offset = processes.log_size(log_file)
        argv = broker_command(java, classpath, self._stack, self.paths)
        child = processes.spawn(argv, os.environ, log_file, cwd=self.paths.state_dir, label="kafka.Kafka")
        self._child = child
        processes.write_pid(self.paths.pid_file(BROKER), child.pid)
        address = broker_address(self._stack)
        log.info("started %s (pid %d) on %s, log %s", TITLE, child.pid, address, log_file)

        started_at = time.monotonic()
        probe = health.KafkaMetadataProbe(self._stack.broker.host, self._stack.broker.port)
        try:
            healthy = health.wait_until(probe, started_at + self._stack.start_timeout_s, lambda: child.poll() is None)
        except health.ServiceExited:
            self._stop_broker()
            raise StackError(
                f"{TITLE} exited with code {child.returncode} while starting on {address}. "
                f"Last lines of {log_file}:\n{_indent(processes.log_tail(log_file, log_offset))}"
            ) from None
        finally:
            probe.close()
        if not healthy:
            self._stop_broker()
            raise StackError(
                f"{TITLE} did not answer a Kafka metadata request on {address} within "
                f"{self._stack.start_timeout_s:g} s (stack.start_timeout_s) and was stopped. "
                f"Last lines of {log_file}:\n{_indent(processes.log_tail(log_file, log_offset))}"
            )
        log.info("%s is healthy after %.2f s", TITLE, time.monotonic() - started_at)
        try:
            ensure_topic(self._config.kafka, self._config.kafka.events_topic)
        except BaseException:
            self._stop_broker()
            raise

    def _stop_broker(self) -> bool:
        """Stop the broker behind the pid file if it is ours; always remove the pid file."""
        pid_file = self.paths.pid_file(BROKER)
        pid = processes.read_pid(pid_file)
        if pid is None:
            processes.remove_pid_file(pid_file)
            return False
        stopped = processes.stop_process(pid, self._is_broker, self._stack.stop_timeout_s)
        if stopped:
            log.info("stopped %s (pid %d)", TITLE, pid)
        elif processes.is_alive(pid):
            log.warning(
                "pid file %s names pid %d, which is not this stack's broker (%s); leaving it alone",
                pid_file,
                pid,
                " ".join(processes.process_cmdline(pid) or ["?"])[:300],
            )
        self._reap(pid)
        processes.remove_pid_file(pid_file)
        return stopped

    def _reap(self, pid: int) -> None:
        if self._child is not None and self._child.pid == pid:
            self._child.poll()
            self._child = None


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
