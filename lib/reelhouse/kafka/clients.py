"""The one place Kafka clients are built, from :class:`KafkaConfig` or plain options.

Two client libraries, one set of settings. confluent-kafka (librdkafka) where throughput matters:
producers, readers, administration. kafka-python, pure Python, where a light dependency fits
better: the stream-lag check inside Airflow workers (:func:`kafka_python_consumer`).

Settings come from ``kafka.client`` (shared: security, SASL, SSL), in librdkafka's names, layered
with ``kafka.producer`` for producers; :func:`kafka_python_settings` translates them for
kafka-python and :func:`java_client_settings` for Spark's kafka source. Executors receive plain dicts (configs are not shipped to them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from reelhouse.config import KafkaConfig, TopicConfig
from reelhouse.errors import ConfigError, StackError

if TYPE_CHECKING:
    from kafka import KafkaConsumer

log = logging.getLogger(__name__)


def client_options(kafka: KafkaConfig) -> dict[str, str]:
    """Settings every client shares: servers plus ``kafka.client``."""
    return {"bootstrap.servers": kafka.bootstrap_servers, **kafka.client}


def producer(kafka: KafkaConfig, **overrides: str) -> Producer:
    return Producer({**client_options(kafka), **kafka.producer, **overrides})


def consumer(options: Mapping[str, str], **overrides: str) -> Consumer:
    """A consumer for explicit partition assignment (no group coordination, no commits)."""
    settings = {
        "group.id": "reelhouse-reader",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "fetch.max.bytes": 52_428_800,
        "max.partition.fetch.bytes": 10_485_760,
        "queued.min.messages": 200_000,
        **options,
        **overrides,
    }
    return Consumer(settings)


#: librdkafka setting -> kafka-python argument, for the settings both clients understand.
KAFKA_PYTHON_NAMES = {
    "client.id": "client_id",
    "client.rack": "client_rack",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_plain_username",
    "sasl.password": "sasl_plain_password",
    "sasl.kerberos.service.name": "sasl_kerberos_service_name",
    "ssl.ca.location": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.key.password": "ssl_password",
    "ssl.crl.location": "ssl_crlfile",
    "ssl.cipher.suites": "ssl_ciphers",
}
#: Settings that decide whether and how a client may connect: never dropped silently.
_SECURITY_PREFIXES = ("security.", "sasl.", "ssl.")


def kafka_python_settings(client: Mapping[str, str]) -> dict[str, Any]:
    """``kafka.client`` (librdkafka names) as kafka-python keyword arguments.

    A security setting kafka-python has no equivalent for is an error, since connecting without
    it would be wrong; librdkafka tuning settings (queue sizes, timeouts) are left out.
    """
    settings: dict[str, Any] = {}
    for key, value in client.items():
        if key in KAFKA_PYTHON_NAMES:
            name = KAFKA_PYTHON_NAMES[key]
            settings[name] = value.upper() if name in ("security_protocol", "sasl_mechanism") else value
        elif key == "ssl.endpoint.identification.algorithm":
            settings["ssl_check_hostname"] = value.lower() == "https"
        elif key.startswith(_SECURITY_PREFIXES):
            raise ConfigError(
                f"kafka.client.{key} has no kafka-python equivalent, so the stream-lag check cannot connect "
                f"as the other clients do; supported security settings: {', '.join(sorted(KAFKA_PYTHON_NAMES))}, "
                "ssl.endpoint.identification.algorithm"
            )
        else:
            log.debug("kafka-python ignores the librdkafka setting kafka.client.%s", key)
    return settings


#: librdkafka setting -> Java client setting (Spark's kafka source), where the two differ only in name.
JAVA_CLIENT_NAMES = {
    "client.id": "client.id",
    "client.rack": "client.rack",
    "security.protocol": "security.protocol",
    "sasl.mechanism": "sasl.mechanism",
    "sasl.mechanisms": "sasl.mechanism",
    "sasl.kerberos.service.name": "sasl.kerberos.service.name",
    "ssl.endpoint.identification.algorithm": "ssl.endpoint.identification.algorithm",
    "ssl.cipher.suites": "ssl.cipher.suites",
}
#: SASL mechanism -> the JAAS login module that takes a username and password for it.
_JAAS_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def java_client_settings(client: Mapping[str, str]) -> dict[str, str]:
    """``kafka.client`` (librdkafka names) as Java Kafka client settings, for Spark's kafka source.

    The Java client takes a username and password only inside ``sasl.jaas.config``, and a CA
    bundle as a PEM trust store; both are built here. As for kafka-python, a security setting
    with no Java equivalent is an error, and librdkafka tuning settings are left out.
    """
    settings: dict[str, str] = {}
    for key, value in client.items():
        if key in JAVA_CLIENT_NAMES:
            name = JAVA_CLIENT_NAMES[key]
            settings[name] = value.upper() if name in ("security.protocol", "sasl.mechanism") else value
        elif key == "ssl.ca.location":
            settings["ssl.truststore.type"] = "PEM"
            settings["ssl.truststore.location"] = value
        elif key in ("sasl.username", "sasl.password"):
            continue  # below, as one JAAS entry
        elif key.startswith(_SECURITY_PREFIXES):
            raise ConfigError(
                f"kafka.client.{key} has no Java-client equivalent reelhouse can translate, so the Spark streams "
                f"cannot connect as the other clients do; supported security settings: "
                f"{', '.join(sorted({*JAVA_CLIENT_NAMES, 'ssl.ca.location', 'sasl.username', 'sasl.password'}))}"
            )
        else:
            log.debug("Spark's kafka source ignores the librdkafka setting kafka.client.%s", key)
    if "sasl.username" in client or "sasl.password" in client:
        mechanism = settings.get("sasl.mechanism", "PLAIN")
        module = _JAAS_MODULES.get(mechanism)
        if module is None or not client.get("sasl.username") or "sasl.password" not in client:
            raise ConfigError(
                "kafka.client.sasl.username and sasl.password need each other and a sasl.mechanism of "
                f"{', '.join(_JAAS_MODULES)}; got mechanism {mechanism!r}"
            )

        def quoted(text: str) -> str:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

        settings["sasl.jaas.config"] = (
            f"{module} required username={quoted(client['sasl.username'])} password={quoted(client['sasl.password'])};"
        )
    return settings


def kafka_python_consumer(kafka: KafkaConfig, **overrides: Any) -> KafkaConsumer:
    """A kafka-python consumer of ``kafka``: no automatic commits, new groups start at the earliest offset.

    ``overrides`` are kafka-python arguments (``group_id="..."`` for a consumer group).
    """
    from kafka import KafkaConsumer  # imported on use: most processes never need it
    from kafka.errors import KafkaError

    settings = {
        "bootstrap_servers": [server.strip() for server in kafka.bootstrap_servers.split(",")],
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        **kafka_python_settings(kafka.client),
        **overrides,
    }
    try:
        return KafkaConsumer(**settings)
    except KafkaError as e:
        raise StackError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} with kafka-python: {e}; is the broker up "
            "(reelhouse stack status), and do kafka.client's security settings match it?"
        ) from e


def admin_client(kafka: KafkaConfig) -> AdminClient:
    return AdminClient(client_options(kafka))


def topic_partition_counts(admin: AdminClient, timeout_s: float = 10.0) -> dict[str, int]:
    metadata = admin.list_topics(timeout=timeout_s)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items() if not topic.error}


def ensure_topic(kafka: KafkaConfig, topic: TopicConfig, timeout_s: float = 15.0) -> bool:
    """Create ``topic`` with its explicit partition count unless it exists; True if created.

    An existing topic with a different partition count is reported, not changed: partitions
    can only grow and moving keys between partitions is an operator's decision.
    """
    admin = admin_client(kafka)
    try:
        existing = topic_partition_counts(admin, timeout_s)
    except KafkaException as e:
        raise StackError(
            f"cannot reach Kafka at {kafka.bootstrap_servers}: {e}; is the broker up (reelhouse stack up)?"
        ) from e
    if topic.name in existing:
        if existing[topic.name] != topic.partitions:
            log.warning(
                "topic %s has %d partitions, config asks for %d; leaving it as it is",
                topic.name,
                existing[topic.name],
                topic.partitions,
            )
        return False
    futures = admin.create_topics(
        [NewTopic(topic.name, num_partitions=topic.partitions, replication_factor=topic.replication_factor)],
        request_timeout=timeout_s,
    )
    try:
        futures[topic.name].result(timeout=timeout_s)
    except KafkaException as e:
        if "TOPIC_ALREADY_EXISTS" in str(e):
            return False
        raise StackError(f"could not create topic {topic.name}: {e}") from e
    log.info("created topic %s with %d partitions", topic.name, topic.partitions)
    return True


def delete_topic(kafka: KafkaConfig, name: str, timeout_s: float = 30.0) -> bool:
    """Delete ``name`` and wait for the broker's answer; False (logged) if it could not be."""
    admin = admin_client(kafka)  # must outlive the request, or librdkafka cancels it
    try:
        admin.delete_topics([name], operation_timeout=timeout_s)[name].result(timeout=timeout_s)
        return True
    except KafkaException as e:
        log.warning("could not delete topic %s: %s", name, e)
        return False
