"""kafka.client's librdkafka settings as kafka-python arguments, without a broker."""

from __future__ import annotations

import pytest

from reelhouse.errors import ConfigError
from reelhouse.kafka.clients import kafka_python_settings


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
