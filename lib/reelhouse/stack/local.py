""":class:`LocalStack`: start, stop, restart and describe the local S3 server, Kafka broker and Spark cluster."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import StackError
from reelhouse.kafka import ensure_topic
from reelhouse.stack import health, processes
from reelhouse.stack.credentials import ObjectStoreCredentials, load_or_create_credentials
from reelhouse.stack.services import (
    BINARY_NAMES,
    BROKER,
    OBJECT_STORE,
    SERVICE_NAMES,
    TITLES,
    ServiceSpec,
    StackPaths,
    broker_data_dir,
    broker_spec,
    find_rclone,
    find_tansu,
    object_store_spec,
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
    data_dir: Path | None
    log_file: Path
    pid_file: Path


class LocalStack:
    """The local services of ``config.stack``: an S3 server (unless storage is memory) and a broker.

    Processes run detached; their pid files under ``stack.state_dir/pids`` are the only record of
    what this class started, so a new instance (another CLI call) can stop them.
    """

    def __init__(self, config: ReelhouseConfig) -> None:
        self._config = config
        self._stack = config.stack
        self.paths = StackPaths(config.stack.state_dir)
        # Popen handles of processes this instance started, kept so they are reaped on stop.
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self.spark_cluster = SparkCluster(config, self.paths)

    # ---- public API -------------------------------------------------------------------------

    @property
    def config(self) -> ReelhouseConfig:
        return self._config

    def up(self, spark_cluster: bool = False) -> None:
        """Start the services, wait until they answer, create the events topic.

        With ``spark_cluster`` also start the Spark standalone cluster; a stack that already
        runs is then kept as it is and only the cluster is added.
        """
        if not self._stack.enabled:
            log.info("stack.enabled is false: nothing to start, Kafka is at %s", self._config.kafka.bootstrap_servers)
            return
        start_services = not (spark_cluster and all(s.running for s in self.status()))
        if start_services:
            self._start_services()
        if not spark_cluster:
            return
        try:
            self.spark_cluster.up()
        except BaseException:
            if start_services:
                for name in reversed(SERVICE_NAMES):
                    self._stop(name)
            raise

    def _start_services(self) -> None:
        self._refuse_if_running()
        self._check_config()
        specs = self._specs()
        for directory in (self.paths.pids_dir, self.paths.logs_dir, self.paths.data_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if self._stack.broker.storage == "s3":
            # Tansu does not create its bucket; for rclone a bucket is a directory. A log left by
            # an earlier stack is removed: Tansu resumes a partition by a conditional write that
            # rclone does not enforce, so it would write new batches over the old ones from
            # offset 0 (see restart_broker). Topics therefore live as long as the stack.
            bucket = self.paths.object_store_root / self._stack.object_store.bucket
            if bucket.exists() and any(bucket.iterdir()):
                log.info("removing the broker log of an earlier stack in %s", bucket)
                shutil.rmtree(bucket)
                self._forget_stream_progress()
            bucket.mkdir(parents=True, exist_ok=True)
        started: list[ServiceSpec] = []
        try:
            for spec in specs:
                started.append(spec)
                self._start(spec)
            self._ensure_events_topic()
        except BaseException:
            for spec in reversed(started):
                self._stop(spec.name)
            raise
        log.info("local stack is up: broker at %s", self._broker_address())

    def down(self) -> None:
        """Stop what `up` started (pids from our pid files running our binaries); safe to repeat."""
        if not self._stack.enabled:
            log.info("stack.enabled is false: nothing to stop")
            return
        stopped = self.spark_cluster.down()
        stopped += [name for name in reversed(SERVICE_NAMES) if self._stop(name)]
        log.info("local stack is down (stopped: %s)", ", ".join(stopped) or "nothing was running")

    def restart_broker(self) -> None:
        """Stop the broker process and start it again on the same storage (the S3 server stays up).

        With s3 storage every acknowledged message survives and stays readable, and clients
        resume where they were. Known limit: Tansu 0.6 finds where to append in a partition by
        a conditional S3 write (If-None-Match) that rclone's S3 server does not enforce, so
        messages *produced after* a restart are written from offset 0 over the old log. Use a
        restart to test recovery of readers; produce to a fresh stack. With memory storage
        everything is lost. Tansu's graceful stop waits about 5 s while clients stay connected.
        """
        if not self._stack.enabled:
            raise StackError("stack.enabled is false: there is no local broker to restart")
        if self._stack.broker.storage == "s3" and not self._running(OBJECT_STORE):
            raise StackError(
                f"the S3 server the broker stores its data on is not running (state in {self.paths.state_dir}); "
                "run `reelhouse stack down` and `reelhouse stack up`"
            )
        if self._stack.broker.storage == "memory":
            log.warning("restarting a broker with memory storage: every topic and message is lost")
        spec = next(s for s in self._specs() if s.name == BROKER)
        self._stop(BROKER)
        try:
            self._start(spec)
            self._ensure_events_topic()
        except BaseException:
            self._stop(BROKER)
            raise
        log.info("broker restarted at %s", spec.address)

    def _forget_stream_progress(self) -> None:
        """The streams' checkpoints count offsets of the log just removed; they would skip the new one."""
        for checkpoint in (self._config.ingest.checkpoint_dir, self._config.speed.checkpoint_dir):
            if "://" not in checkpoint and Path(checkpoint).exists():
                log.info("removing the stream checkpoint %s: it refers to the removed broker log", checkpoint)
                shutil.rmtree(checkpoint)

    def broker_running(self) -> bool:
        return self._stack.enabled and self._running(BROKER)

    def status(self) -> list[ServiceStatus]:
        """One entry per service the config uses; empty when the stack is disabled."""
        if not self._stack.enabled:
            return []
        names = [BROKER] if self._stack.broker.storage == "memory" else [OBJECT_STORE, BROKER]
        return [self._status(name) for name in names]

    def describe(self) -> str:
        if not self._stack.enabled:
            return (
                "local stack disabled (stack.enabled: false): nothing runs locally; "
                f"Kafka is at {self._config.kafka.bootstrap_servers}"
            )
        lines = [f"local stack (state in {self.paths.state_dir})"]
        for service in self.status():
            state = f"running, pid {service.pid}" if service.running else "not running"
            scheme = "http://" if service.name == OBJECT_STORE else ""
            if service.data_dir is not None:
                data = str(service.data_dir)
            else:
                data = "in memory (lost when the broker stops)"
            lines += [
                f"  {service.title}: {state}",
                f"    address  {scheme}{service.address}",
                f"    data     {data}",
                f"    log      {service.log_file}",
            ]
        lines += self.spark_cluster.describe_lines()
        return "\n".join(lines)

    # ---- internals --------------------------------------------------------------------------

    def _specs(self) -> list[ServiceSpec]:
        """The services to start, in order; resolves binaries and credentials."""
        credentials: ObjectStoreCredentials | None = None
        specs: list[ServiceSpec] = []
        if self._stack.broker.storage == "s3":
            credentials = load_or_create_credentials(self.paths.credentials_file)
            specs.append(object_store_spec(self._stack, self.paths, find_rclone(), credentials, os.environ))
        specs.append(broker_spec(self._stack, self.paths, find_tansu(), credentials, os.environ))
        return specs

    def _running(self, name: str) -> bool:
        return processes.owned_pid(self.paths.pid_file(name), BINARY_NAMES[name]) is not None

    def _refuse_if_running(self) -> None:
        running = []
        for name in SERVICE_NAMES:
            pid = processes.clean_stale_pid_file(self.paths.pid_file(name), BINARY_NAMES[name])
            if pid is not None:
                running.append(f"{TITLES[name]} pid {pid} (pid file {self.paths.pid_file(name)})")
        if running:
            raise StackError(
                "the local stack is already running: " + "; ".join(running)
                + ". Use it as it is, or run `reelhouse stack down` first"
            )

    def _check_config(self) -> None:
        stack = self._stack
        if stack.broker.storage == "s3" and (stack.broker.host, stack.broker.port) == (
            stack.object_store.host,
            stack.object_store.port,
        ):
            raise StackError(
                f"stack.broker.port and stack.object_store.port are both {stack.broker.port}; give them different ports"
            )
        servers = [s.strip() for s in self._config.kafka.bootstrap_servers.split(",")]
        if self._broker_address() not in servers:
            log.warning(
                "kafka.bootstrap_servers (%s) does not name the local broker (%s): clients will not reach it",
                self._config.kafka.bootstrap_servers, self._broker_address(),
            )

    def _broker_address(self) -> str:
        return f"{self._stack.broker.host}:{self._stack.broker.port}"

    def _start(self, spec: ServiceSpec) -> None:
        """Spawn ``spec``, record its pid, wait for its health check; on failure stop it and raise."""
        try:
            port_taken = processes.port_in_use(spec.host, spec.port)
        except OSError as e:
            raise StackError(
                f"the {spec.title} cannot listen on {spec.address}: {e}; check stack.{spec.name}.host"
            ) from e
        if port_taken:
            raise StackError(
                f"port {spec.port} on {spec.host} is already in use by another process, so the "
                f"{spec.title} cannot listen there; change {spec.port_key} or stop that process"
            )
        log_file = self.paths.log_file(spec.name)
        log_offset = processes.log_size(log_file)
        child = processes.spawn(spec.argv, spec.env, log_file, cwd=self.paths.state_dir)
        self._children[spec.name] = child
        processes.write_pid(self.paths.pid_file(spec.name), child.pid)
        log.info("started %s (pid %d) on %s, log %s", spec.title, child.pid, spec.address, log_file)

        deadline = time.monotonic() + self._stack.start_timeout_s
        if spec.name == OBJECT_STORE:
            probe = lambda left: health.answers_http(spec.host, spec.port, left)  # noqa: E731
            what = "answer HTTP"
        else:
            probe = health.KafkaMetadataProbe(spec.host, spec.port)
            what = "answer a Kafka metadata request"
        started_at = time.monotonic()
        try:
            healthy = health.wait_until(probe, deadline, lambda: child.poll() is None)
        except health.ServiceExited:
            self._stop(spec.name)
            raise StackError(
                f"{spec.title} exited with code {child.returncode} while starting on {spec.address}. "
                f"Last lines of {log_file}:\n{_indent(processes.log_tail(log_file, log_offset))}"
            ) from None
        finally:
            if isinstance(probe, health.KafkaMetadataProbe):
                probe.close()
        if not healthy:
            self._stop(spec.name)
            raise StackError(
                f"{spec.title} did not {what} on {spec.address} within {self._stack.start_timeout_s:g} s "
                f"(stack.start_timeout_s) and was stopped. Last lines of {log_file}:\n"
                f"{_indent(processes.log_tail(log_file, log_offset))}"
            )
        log.info("%s is healthy after %.2f s", spec.title, time.monotonic() - started_at)

    def _stop(self, name: str) -> bool:
        """Stop the service behind ``name``'s pid file if it is ours; always remove the pid file."""
        pid_file = self.paths.pid_file(name)
        pid = processes.read_pid(pid_file)
        if pid is None:
            processes.remove_pid_file(pid_file)
            return False
        binary = BINARY_NAMES[name]
        stopped = processes.stop_process(pid, binary, self._stack.stop_timeout_s)
        if stopped:
            log.info("stopped %s (pid %d)", TITLES[name], pid)
        elif processes.is_alive(pid):
            log.warning(
                "pid file %s names pid %d, which is not a %s process (%s); leaving it alone",
                pid_file, pid, binary, " ".join(processes.process_cmdline(pid) or ["?"]),
            )
        child = self._children.pop(name, None)
        if child is not None and child.pid == pid:
            child.poll()
        processes.remove_pid_file(pid_file)
        return stopped

    def _status(self, name: str) -> ServiceStatus:
        pid = processes.owned_pid(self.paths.pid_file(name), BINARY_NAMES[name])
        if name == OBJECT_STORE:
            address = f"{self._stack.object_store.host}:{self._stack.object_store.port}"
            data_dir: Path | None = self.paths.object_store_root
        else:
            address = self._broker_address()
            data_dir = broker_data_dir(self._stack, self.paths)
        return ServiceStatus(
            name=name,
            title=TITLES[name],
            running=pid is not None,
            pid=pid,
            address=address,
            data_dir=data_dir,
            log_file=self.paths.log_file(name),
            pid_file=self.paths.pid_file(name),
        )

    def _ensure_events_topic(self) -> None:
        ensure_topic(self._config.kafka, self._config.kafka.events_topic)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())
