"""The local stack against a real Apache Kafka broker (KRaft, one JVM), no mocks of the broker.

Tests that stop, kill or restart the broker use a private stack (``make_private_stack``); the
others share the session's broker.
"""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from reelhouse.config import KafkaConfig, ReelhouseConfig, TopicConfig
from reelhouse.errors import StackError
from reelhouse.kafka import admin_client, ensure_topic, kafka_python_consumer, producer
from reelhouse.stack import LocalStack, health, local, processes
from reelhouse.stack.services import is_broker_command
from tests.support.kafka import produce, read_topic

pytestmark = pytest.mark.integration

MakeStack = Callable[..., LocalStack]

# Every acknowledged message must be in the log exactly once: idempotence keeps retries after a
# lost acknowledgement from writing a message twice, acks=all waits for the (one) in-sync replica.
RELIABLE = {"enable.idempotence": "true", "acks": "all", "message.timeout.ms": "180000"}


def fresh_topic(config: ReelhouseConfig, partitions: int) -> str:
    topic = TopicConfig(name=f"stack-test-{uuid.uuid4().hex[:8]}", partitions=partitions)
    assert ensure_topic(config.kafka, topic)
    return topic.name


def read_all(config: ReelhouseConfig, topic: str) -> list[bytes]:
    """Every message value of ``topic``, to each partition's end."""
    return [message.value() for message in read_topic(config.kafka, topic)]


def produce_numbers(kafka: KafkaConfig, topic: str, numbers: range) -> None:
    """Each number as a message, reliably, spread over the partitions by key."""
    produce(kafka, topic, [str(n).encode() for n in numbers], [str(n % 97).encode() for n in numbers], **RELIABLE)


# ---- the session broker ---------------------------------------------------------------------


def test_up_runs_one_kafka_broker(local_stack: LocalStack, stack_config: ReelhouseConfig) -> None:
    [broker] = local_stack.status()
    assert broker.name == "broker" and broker.running and broker.pid is not None
    assert broker.address == f"127.0.0.1:{stack_config.stack.broker.port}"
    assert is_broker_command(processes.process_cmdline(broker.pid), local_stack.paths)
    assert broker.log_file.exists() and "Kafka Server started" in broker.log_file.read_text()
    assert (broker.data_dir / "meta.properties").is_file()
    assert local_stack.broker_running()
    assert local_stack.describe().count("running, pid") == 1


def test_second_up_refuses_and_leaves_the_stack_running(local_stack: LocalStack) -> None:
    before = [s.pid for s in local_stack.status()]
    with pytest.raises(StackError, match="already running"):
        LocalStack(local_stack.config).up()
    assert [s.pid for s in local_stack.status()] == before


def test_events_topic_has_the_configured_partition_count(stack_config: ReelhouseConfig) -> None:
    metadata = admin_client(stack_config.kafka).list_topics(timeout=10)
    topic = stack_config.kafka.events_topic
    assert len(metadata.topics[topic.name].partitions) == topic.partitions


def test_topics_are_not_created_by_accident(stack_config: ReelhouseConfig) -> None:
    # auto.create.topics.enable=false: producing to a misspelt topic fails instead of creating it.
    failures: list[str] = []
    writer = producer(stack_config.kafka, **{"message.timeout.ms": "3000"})
    writer.produce("no-such-topic", b"x", on_delivery=lambda err, msg: failures.append(str(err)))
    writer.flush(10)
    assert failures and "no-such-topic" not in admin_client(stack_config.kafka).list_topics(timeout=10).topics


def test_a_kafka_python_consumer_group_reads_back_everything_produced(stack_config: ReelhouseConfig) -> None:
    topic = fresh_topic(stack_config, partitions=3)
    produce_numbers(stack_config.kafka, topic, range(5_000))

    group = kafka_python_consumer(stack_config.kafka, group_id=f"stack-test-{uuid.uuid4().hex[:6]}")
    try:
        group.subscribe([topic])
        seen: Counter[int] = Counter()
        deadline = time.monotonic() + 60
        while sum(seen.values()) < 5_000 and time.monotonic() < deadline:
            for records in group.poll(timeout_ms=500).values():
                seen.update(int(record.value) for record in records)
        group.commit()
        assignment = group.assignment()
        committed = {tp.partition: group.committed(tp) for tp in assignment}
    finally:
        group.close()
    assert sorted(seen) == list(range(5_000)) and set(seen.values()) == {1}
    assert {tp.partition for tp in assignment} == {0, 1, 2}  # one member gets every partition
    assert sum(committed.values()) == 5_000  # the group's offsets are stored by the broker


def _produce_in_process(bootstrap: str, topic: str, writer: int, count: int) -> tuple[int, int]:
    """One producer process: ``count`` messages ``<writer>-<n>`` to partition 0; (acknowledged, failed)."""
    kafka = KafkaConfig(bootstrap_servers=bootstrap, events_topic=TopicConfig(name=topic))
    results = Counter[bool]()
    writer_client = producer(kafka, **RELIABLE, **{"linger.ms": "5"})
    for n in range(count):
        writer_client.produce(
            topic, f"{writer}-{n}".encode(), partition=0, on_delivery=lambda err, msg: results.update([err is None])
        )
        writer_client.poll(0)
    writer_client.flush(120)
    return results[True], results[False]


def test_four_producer_processes_writing_to_one_partition_lose_nothing(stack_config: ReelhouseConfig) -> None:
    topic = fresh_topic(stack_config, partitions=1)
    writers, per_writer = 4, 20_000
    with multiprocessing.get_context("spawn").Pool(writers) as pool:
        results = pool.starmap(
            _produce_in_process,
            [(stack_config.kafka.bootstrap_servers, topic, w, per_writer) for w in range(writers)],
        )
    assert results == [(per_writer, 0)] * writers

    values = Counter(v.decode() for v in read_all(stack_config, topic))
    expected = {f"{w}-{n}" for w in range(writers) for n in range(per_writer)}
    assert set(values) == expected
    assert set(values.values()) == {1}  # each exactly once


# ---- private stacks: stopped, killed, restarted -----------------------------------------------


def test_messages_survive_down_and_up_and_new_ones_are_appended(make_private_stack: MakeStack) -> None:
    stack = make_private_stack()
    stack.up()
    config = stack.config
    topic = fresh_topic(config, partitions=3)
    produce_numbers(config.kafka, topic, range(10_000))
    cluster_id = stack.paths.cluster_id_file.read_text()

    stack.down()
    assert not stack.broker_running()
    stack.up()

    assert stack.paths.cluster_id_file.read_text() == cluster_id  # formatted once, kept
    produce_numbers(config.kafka, topic, range(10_000, 12_000))
    values = read_all(config, topic)
    assert sorted(int(v) for v in values) == list(range(12_000))


def test_a_cluster_id_that_begins_with_a_dash_formats_and_starts(make_private_stack: MakeStack) -> None:
    # One generated id in 64 begins with "-"; the storage tool once read it as an option.
    stack = make_private_stack()
    stack.paths.cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
    stack.paths.cluster_id_file.write_text("-W9Cdl0zRJmbxP0hBC75kg\n")
    stack.up()
    assert stack.broker_running()
    topic = fresh_topic(stack.config, partitions=1)
    produce_numbers(stack.config.kafka, topic, range(10))
    assert sorted(int(v) for v in read_all(stack.config, topic)) == list(range(10))


def test_every_acknowledged_message_survives_a_sigkill_of_the_broker_exactly_once(
    make_private_stack: MakeStack,
) -> None:
    stack = make_private_stack()
    stack.up()
    config = stack.config
    topic = fresh_topic(config, partitions=2)
    acknowledged: list[int] = []
    failed: list[str] = []
    restarted = threading.Event()
    acknowledged_after_restart: list[int] = []
    stop = threading.Event()

    def on_delivery(err, msg) -> None:  # noqa: ANN001 - confluent_kafka's callback
        if err is not None:
            failed.append(str(err))
            return
        acknowledged.append(int(msg.value()))
        if restarted.is_set():
            acknowledged_after_restart.append(int(msg.value()))

    def keep_producing() -> None:
        # A steady stream (about 5,000 messages/s), before, during and after the crash. Delivery
        # reports only arrive through poll(), so this thread polls all along, also while the
        # broker is away and librdkafka's queue fills up.
        writer = producer(config.kafka, **RELIABLE)
        n = 0
        while not stop.is_set():
            for _ in range(50):
                try:
                    writer.produce(topic, key=str(n % 31).encode(), value=str(n).encode(), on_delivery=on_delivery)
                    n += 1
                except BufferError:
                    break
            writer.poll(0.01)
        assert writer.flush(180) == 0

    producing = threading.Thread(target=keep_producing)
    producing.start()
    try:
        while len(acknowledged) < 5_000:
            time.sleep(0.05)
        killed = stack.kill_broker()
        assert not processes.is_alive(killed) and not stack.broker_running()
        time.sleep(1)  # the producer goes on into a broker that is not there
        stack.restart_broker()
        restarted.set()
        deadline = time.monotonic() + 120
        while len(acknowledged_after_restart) < 5_000 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        producing.join(timeout=240)
    assert not producing.is_alive()
    assert failed == []
    assert len(acknowledged_after_restart) >= 5_000

    values = Counter(int(v) for v in read_all(config, topic))
    missing = set(acknowledged) - set(values)
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {sorted(missing)[:10]}"
    duplicated = [n for n, times in values.items() if times > 1]
    assert not duplicated, f"{len(duplicated)} messages read more than once, e.g. {sorted(duplicated)[:10]}"


def test_restart_broker_keeps_the_data_and_clients_carry_on(make_private_stack: MakeStack) -> None:
    stack = make_private_stack()
    stack.up()
    config = stack.config
    topic = fresh_topic(config, partitions=1)
    produce_numbers(config.kafka, topic, range(1_000))
    before = stack.status()[0].pid

    stack.restart_broker()

    assert stack.broker_running() and stack.status()[0].pid != before
    produce_numbers(config.kafka, topic, range(1_000, 2_000))
    assert [int(v) for v in read_all(config, topic)] == list(range(2_000))  # one partition: in order


def test_down_stops_our_broker_and_no_other_process(make_private_stack: MakeStack) -> None:
    stack = make_private_stack()
    stack.up()
    [pid] = [s.pid for s in stack.status()]
    stack.down()
    assert pid is not None and not processes.is_alive(pid)
    assert not any(stack.paths.pids_dir.glob("*.pid"))
    assert not any(s.running for s in stack.status())

    bystander = subprocess.Popen(["sleep", "60"])
    try:
        processes.write_pid(stack.paths.pid_file("broker"), bystander.pid)
        stack.down()  # the pid file lies: its pid runs `sleep`, not our broker
        assert bystander.poll() is None
        assert not any(stack.paths.pids_dir.glob("*.pid"))

        processes.write_pid(stack.paths.pid_file("broker"), bystander.pid)
        stack.up()  # a pid file naming a foreign process is stale, not "already running"
        assert stack.broker_running() and bystander.poll() is None
        stack.down()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


@pytest.mark.parametrize(
    ("port_of", "key"),
    [
        ("port", r"stack\.broker\.port \(and kafka\.bootstrap_servers\)"),
        ("controller_port", r"stack\.broker\.controller_port"),
    ],
)
def test_a_taken_port_names_the_config_key(make_private_stack: MakeStack, port_of: str, key: str) -> None:
    stack = make_private_stack()
    broker = stack.config.stack.broker
    port = getattr(broker, port_of)
    with socket.create_server((broker.host, port)):
        with pytest.raises(StackError, match=rf"port {port} .*{key}"):
            stack.up()
    assert not stack.broker_running()
    assert not stack.paths.pid_file("broker").exists()


def test_a_broker_that_exits_at_start_is_reported_with_its_log(
    make_private_stack: MakeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = make_private_stack()
    real_command = local.broker_command

    def with_a_bad_jvm_flag(*args, **kwargs) -> list[str]:  # noqa: ANN002, ANN003
        java, *rest = real_command(*args, **kwargs)
        return [java, "-XX:+NoSuchOption", *rest]

    monkeypatch.setattr(local, "broker_command", with_a_bad_jvm_flag)
    with pytest.raises(StackError, match=r"(?s)exited with code \d+ while starting.*NoSuchOption"):
        stack.up()
    assert not stack.broker_running()
    assert not any(stack.paths.pids_dir.glob("*.pid"))


def test_a_bad_broker_setting_fails_the_first_start_with_the_log(make_private_stack: MakeStack) -> None:
    config = make_private_stack().config
    broker = config.stack.broker.model_copy(update={"properties": {"log.retention.hours": "forever"}})
    stack = LocalStack(config.model_copy(update={"stack": config.stack.model_copy(update={"broker": broker})}))
    try:
        with pytest.raises(StackError, match=r"(?s)formatting the broker's storage .*failed.*log\.retention\.hours"):
            stack.up()
        assert not stack.broker_running()
    finally:
        stack.down()


def test_health_check_timeout_stops_the_broker(make_private_stack: MakeStack, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = make_private_stack(start_timeout_s=8)
    monkeypatch.setattr(health.KafkaMetadataProbe, "__call__", lambda self, seconds_left: False)
    with pytest.raises(StackError, match=r"(?s)did not answer a Kafka metadata request .*within 8 s.*Last lines"):
        stack.up()
    assert not stack.broker_running()
    assert not any(stack.paths.pids_dir.glob("*.pid"))
    assert _brokers_of(stack) == []


def _brokers_of(stack: LocalStack) -> list[int]:
    """Pids of live processes running this stack's broker, whatever the pid files say."""
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in pids if is_broker_command(processes.process_cmdline(pid), stack.paths)]
