"""kafka.client's librdkafka settings as kafka-python arguments and Java client settings, without a broker."""

from __future__ import annotations

import pytest

from reelhouse.errors import ConfigError
from reelhouse.kafka.clients import java_client_settings, kafka_python_settings


def test_the_settings_of_a_sasl_ssl_cluster_are_translated():
    # conf/cluster.example.yaml's client section, plus the password from the environment.
    client = {
        "security.protocol": "sasl_ssl",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "reelhouse",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ssl/kafka-ca.pem",
        "ssl.endpoint.identification.algorithm": "https",
    }
    assert kafka_python_settings(client) == {
        "security_protocol": "SASL_SSL",  # librdkafka takes any case, kafka-python upper case only
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "reelhouse",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/ssl/kafka-ca.pem",
        "ssl_check_hostname": True,
    }


def test_hostname_checks_can_be_turned_off_as_in_librdkafka():
    assert kafka_python_settings({"ssl.endpoint.identification.algorithm": "none"}) == {"ssl_check_hostname": False}


def test_librdkafka_tuning_settings_are_left_out():
    assert kafka_python_settings({"socket.keepalive.enable": "true", "client.id": "lag-check"}) == {
        "client_id": "lag-check"
    }


def test_a_security_setting_without_an_equivalent_is_an_error():
    # Connecting without it would not be the connection the other clients make.
    with pytest.raises(ConfigError, match=r"kafka\.client\.sasl\.oauthbearer\.config has no kafka-python equivalent"):
        kafka_python_settings({"sasl.oauthbearer.config": "scope=kafka"})


def test_the_settings_of_a_sasl_ssl_cluster_reach_the_java_client_as_jaas_and_a_pem_trust_store():
    client = {
        "security.protocol": "sasl_ssl",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "reelhouse",
        "sasl.password": 'pa"ss\\word',
        "ssl.ca.location": "/etc/ssl/kafka-ca.pem",
        "ssl.endpoint.identification.algorithm": "https",
        "socket.keepalive.enable": "true",  # librdkafka tuning: not for the Java client
    }
    assert java_client_settings(client) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required "
        'username="reelhouse" password="pa\\"ss\\\\word";',
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": "/etc/ssl/kafka-ca.pem",
        "ssl.endpoint.identification.algorithm": "https",
    }


def test_plain_is_the_java_clients_default_mechanism_for_a_username():
    settings = java_client_settings({"security.protocol": "SASL_PLAINTEXT", "sasl.username": "u", "sasl.password": "p"})
    assert settings["sasl.jaas.config"] == (
        'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="p";'
    )


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ({"sasl.username": "u"}, "need each other"),
        ({"sasl.mechanism": "GSSAPI", "sasl.username": "u", "sasl.password": "p"}, "mechanism 'GSSAPI'"),
        ({"ssl.certificate.location": "/c.pem"}, r"kafka\.client\.ssl\.certificate\.location has no Java-client"),
    ],
)
def test_java_settings_that_cannot_be_translated_are_errors(client, message):
    with pytest.raises(ConfigError, match=message):
        java_client_settings(client)
