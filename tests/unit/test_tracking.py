"""What tracking.py logs of the config: credentials masked, everything else verbatim (known answers).

The contract (lib/reelhouse/tracking.py): :func:`config_dump` is ``config.model_dump(mode="json")``
where every string under a key matching ``password|secret|token|credential|access_key|private_key``
(any case) becomes ``***``, and every other string that is a URL with a password keeps everything
but the password, which becomes ``***``. Lists inherit their key; dicts restart it per entry.
:func:`config_hash` is the SHA-256 of that dump with sorted keys.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest

from reelhouse.config import ReelhouseConfig
from reelhouse.tracking import REDACTED, _redact, config_dump, config_hash

KAFKA = {"bootstrap_servers": "127.0.0.1:19092", "events_topic": {"name": "reelhouse.events"}}


def make_config(**sections: Any) -> ReelhouseConfig:
    """A valid config: the minimal kafka section plus ``sections`` (top-level keys, whole sections)."""
    return ReelhouseConfig.model_validate({"kafka": KAFKA, **sections})


def dumped_text(config: ReelhouseConfig) -> str:
    return json.dumps(config_dump(config))


def test_the_mask_is_three_stars():
    # Every expected value below is written as "***"; pin the constant so a change is deliberate.
    assert REDACTED == "***"


# ------------------------------------------------------------------------------------ serving token


def test_the_serving_token_is_masked():
    config = make_config(serving={"token": "tok-4f9a1c"})
    dump = config_dump(config)
    assert dump["serving"]["token"] == "***"
    assert "tok-4f9a1c" not in dumped_text(config)


def test_an_all_digit_token_from_the_environment_is_masked_too():
    # ServingConfig turns a JSON number into text; as text it falls under the "token" key like any other.
    config = make_config(serving={"token": 987654321})
    assert config.serving.token == "987654321"
    assert config_dump(config)["serving"]["token"] == "***"
    assert "987654321" not in dumped_text(config)


def test_an_unset_token_stays_null():
    # Masking hides values; it does not invent one: None is not a string, so it is kept as None.
    assert config_dump(make_config())["serving"]["token"] is None


# ------------------------------------------------------------------------------- secret-named keys


@pytest.mark.parametrize(
    ("section", "field", "key"),
    [
        # kafka.client: librdkafka settings (the comment in tracking.py names sasl.*)
        ("kafka", "client", "sasl.password"),
        ("kafka", "client", "ssl.key.password"),
        ("kafka", "client", "sasl.oauthbearer.client.secret"),
        # lake.storage_options: delta-rs / object_store names, upper and lower case
        ("lake", "storage_options", "AWS_ACCESS_KEY_ID"),  # "access_key", case-insensitive
        ("lake", "storage_options", "AWS_SECRET_ACCESS_KEY"),
        ("lake", "storage_options", "aws_secret_access_key"),
        ("lake", "storage_options", "AWS_SESSION_TOKEN"),
        ("lake", "storage_options", "azure_client_secret"),
        ("lake", "storage_options", "azure_storage_sas_token"),
        ("lake", "storage_options", "GOOGLE_APPLICATION_CREDENTIALS"),  # "credential"
        ("lake", "storage_options", "azure_storage_access_key"),
        # spark.conf: Hadoop settings of S3A
        ("spark", "conf", "spark.hadoop.fs.s3a.secret.key"),
        ("spark", "conf", "spark.hadoop.fs.s3a.session.token"),
        # stack.broker.properties: server.properties
        ("stack", "broker", "ssl.keystore.password"),
        # a PEM private key under a key that says so
        ("lake", "storage_options", "gcs_private_key"),
    ],
)
def test_values_under_secret_named_keys_are_masked(section, field, key):
    value = "s3cr3t-value-0042"
    if section == "kafka":
        config = make_config(kafka={**KAFKA, field: {key: value}})
    elif section == "stack":
        config = make_config(stack={"broker": {"properties": {key: value}}})
    else:
        config = make_config(**{section: {field: {key: value}}})
    dump = config_dump(config)
    container = dump["stack"]["broker"]["properties"] if section == "stack" else dump[section][field]
    assert container == {key: "***"}  # the key is kept (one can see *what* was set), the value is not
    assert value not in dumped_text(config)


@pytest.mark.parametrize(
    ("section", "field", "settings"),
    [
        (
            "kafka",
            "client",
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "reelhouse",
                "ssl.ca.location": "/etc/reelhouse/kafka-ca.pem",
            },
        ),
        ("lake", "storage_options", {"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://minio:9000"}),
        ("spark", "conf", {"spark.executor.memory": "8g", "spark.hadoop.fs.s3.impl": "S3AFileSystem"}),
    ],
)
def test_values_under_ordinary_keys_are_kept_verbatim(section, field, settings):
    # None of these keys matches the secret pattern and no value is a URL with a password.
    sections = {section: {**KAFKA, field: settings}} if section == "kafka" else {section: {field: settings}}
    assert config_dump(make_config(**sections))[section][field] == settings


def test_a_secret_next_to_ordinary_settings_masks_only_the_secret():
    client = {"security.protocol": "SASL_SSL", "sasl.username": "reelhouse", "sasl.password": "hunter2"}
    dump = config_dump(make_config(kafka={**KAFKA, "client": client}))
    assert dump["kafka"]["client"] == {
        "security.protocol": "SASL_SSL",
        "sasl.username": "reelhouse",
        "sasl.password": "***",
    }


# ---------------------------------------------------------------------------- credentials in URLs


@pytest.mark.parametrize(
    ("sections", "path", "expected"),
    [
        # online_store.redis_url: user and password, or the password alone (Redis AUTH without ACL user)
        (
            {"online_store": {"redis_url": "redis://default:hunter2@redis.internal:6379/0"}},
            ("online_store", "redis_url"),
            "redis://default:***@redis.internal:6379/0",
        ),
        (
            {"online_store": {"redis_url": "rediss://:hunter2@redis.internal:6380/0"}},
            ("online_store", "redis_url"),
            "rediss://:***@redis.internal:6380/0",
        ),
        # a percent-encoded password (p@ss) is masked whole
        (
            {"online_store": {"redis_url": "rediss://default:p%40ss@redis.internal:6380/2"}},
            ("online_store", "redis_url"),
            "rediss://default:***@redis.internal:6380/2",
        ),
        # mlflow.tracking_uri: a server behind basic auth, or a database-backed store
        (
            {"mlflow": {"tracking_uri": "https://alice:hunter2@mlflow.example.com/"}},
            ("mlflow", "tracking_uri"),
            "https://alice:***@mlflow.example.com/",
        ),
        (
            {"mlflow": {"tracking_uri": "postgresql://mlflow:hunter2@db.internal:5432/mlflow"}},
            ("mlflow", "tracking_uri"),
            "postgresql://mlflow:***@db.internal:5432/mlflow",
        ),
        # s3 keys embedded in a URI: the secret key sits where a password does
        (
            {"mlflow": {"artifact_root": "s3://AKIAEXAMPLE:hunter2@reelhouse-artifacts/mlflow"}},
            ("mlflow", "artifact_root"),
            "s3://AKIAEXAMPLE:***@reelhouse-artifacts/mlflow",
        ),
        (
            {"lake": {"root": "s3://AKIAEXAMPLE:hunter2@reelhouse-lake/prod"}},
            ("lake", "root"),
            "s3://AKIAEXAMPLE:***@reelhouse-lake/prod",
        ),
        # a URL as a value of an ordinary map key (the key says nothing; the URL's password is still masked)
        (
            {"lake": {"storage_options": {"AWS_ENDPOINT_URL": "http://minio:hunter2@minio.internal:9000"}}},
            ("lake", "storage_options", "AWS_ENDPOINT_URL"),
            "http://minio:***@minio.internal:9000",
        ),
        # path, query and fragment survive the masking
        (
            {"mlflow": {"tracking_uri": "https://alice:hunter2@mlflow.example.com:8443/api?x=1#top"}},
            ("mlflow", "tracking_uri"),
            "https://alice:***@mlflow.example.com:8443/api?x=1#top",
        ),
    ],
)
def test_passwords_in_urls_are_masked_and_the_rest_of_the_url_kept(sections, path, expected):
    config = make_config(**sections)
    value: Any = config_dump(config)
    for part in path:
        value = value[part]
    assert value == expected
    assert "hunter2" not in dumped_text(config)


@pytest.mark.parametrize(
    ("sections", "path"),
    [
        ({"online_store": {"redis_url": "redis://redis.internal:6379/0"}}, ("online_store", "redis_url")),
        ({"mlflow": {"tracking_uri": "sqlite:///.reelhouse/mlflow/mlflow.db"}}, ("mlflow", "tracking_uri")),
        ({"mlflow": {"tracking_uri": "https://mlflow.example.internal"}}, ("mlflow", "tracking_uri")),
        ({"lake": {"root": "s3://reelhouse-lake/prod"}}, ("lake", "root")),
        # a user name without a password is not a password: kept
        ({"online_store": {"redis_url": "redis://reader@redis.internal:6379/0"}}, ("online_store", "redis_url")),
        # an "@" outside any URL is not a credential
        ({"env": "ops@example.com"}, ("env",)),
        ({"spark": {"master": "spark://10.0.0.5:7077"}}, ("spark", "master")),
    ],
)
def test_urls_without_a_password_are_kept_verbatim(sections, path):
    config = make_config(**sections)
    value: Any = config_dump(config)
    expected: Any = config.model_dump(mode="json")
    for part in path:
        value, expected = value[part], expected[part]
    assert value == expected


# ------------------------------------------------------------------------ the dump as a whole


def test_a_config_without_secrets_dumps_exactly_as_pydantic_does():
    # The defaults hold no credential (token unset, redis URL without password): nothing may change.
    config = make_config()
    assert config_dump(config) == config.model_dump(mode="json")


def test_only_the_credentials_differ_from_the_plain_dump():
    config = make_config(
        kafka={**KAFKA, "client": {"sasl.username": "reelhouse", "sasl.password": "pw-kafka"}},
        lake={
            "root": "s3://reelhouse-lake/prod",
            "storage_options": {"AWS_REGION": "eu-west-1", "AWS_SECRET_ACCESS_KEY": "pw-s3"},
        },
        online_store={"type": "redis", "redis_url": "redis://:pw-redis@redis.internal:6379/0"},
        mlflow={"tracking_uri": "https://bob:pw-mlflow@mlflow.internal"},
        serving={"token": "pw-serving"},
        experiments=[
            {"name": "exp1", "variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "ranker": "random"}]}
        ],
    )
    expected = config.model_dump(mode="json")
    expected["kafka"]["client"]["sasl.password"] = "***"
    expected["lake"]["storage_options"]["AWS_SECRET_ACCESS_KEY"] = "***"
    expected["online_store"]["redis_url"] = "redis://:***@redis.internal:6379/0"
    expected["mlflow"]["tracking_uri"] = "https://bob:***@mlflow.internal"
    expected["serving"]["token"] = "***"
    dump = config_dump(config)
    assert dump == expected  # every other value, nested lists of models included, is untouched
    assert "pw-" not in json.dumps(dump)


def test_dumping_does_not_change_the_config():
    config = make_config(
        kafka={**KAFKA, "client": {"sasl.password": "pw-kafka"}},
        online_store={"redis_url": "redis://:pw-redis@redis.internal:6379/0"},
        serving={"token": "pw-serving"},
    )
    before = config.model_dump(mode="json")
    config_dump(config)
    config_hash(config)
    assert config.model_dump(mode="json") == before
    assert config.serving.token == "pw-serving"
    assert config.kafka.client == {"sasl.password": "pw-kafka"}
    assert config.online_store.redis_url == "redis://:pw-redis@redis.internal:6379/0"


# ------------------------------------------------------------------- nested structures (_redact)


def test_nested_dicts_and_lists_are_masked_at_every_depth_without_touching_the_input():
    data = {
        "outer": {
            "inner": [
                {"password": "pw-1", "url": "redis://u:pw-2@h:6379/0", "name": "kept"},
                "mysql://root:pw-3@db/x",
                ["plain", "https://h/path"],
            ],
            "count": 3,
            "ratio": 0.5,
            "flag": True,
            "nothing": None,
        },
        # a list inherits its key: every string in it is a secret
        "tokens": ["pw-4", "pw-5"],
    }
    original = copy.deepcopy(data)
    assert _redact(data) == {
        "outer": {
            "inner": [
                {"password": "***", "url": "redis://u:***@h:6379/0", "name": "kept"},
                "mysql://root:***@db/x",
                ["plain", "https://h/path"],
            ],
            "count": 3,  # non-strings pass through
            "ratio": 0.5,
            "flag": True,
            "nothing": None,
        },
        "tokens": ["***", "***"],
    }
    assert data == original  # the input is not modified


def test_secret_key_matching_ignores_case():
    assert _redact({"Password": "a", "DB_PASSWORD": "b", "MyToken": "c", "Private_Key": "d", "user": "e"}) == {
        "Password": "***",
        "DB_PASSWORD": "***",
        "MyToken": "***",
        "Private_Key": "***",
        "user": "e",
    }


# ----------------------------------------------------------------------------------- config_hash


def test_the_hash_is_sha256_of_the_sorted_compact_dump():
    config = make_config(serving={"token": "pw"})
    text = json.dumps(config_dump(config), sort_keys=True, separators=(",", ":"))
    assert config_hash(config) == hashlib.sha256(text.encode()).hexdigest()
    assert len(config_hash(config)) == 64


def test_the_hash_ignores_secret_values_and_map_order_but_not_settings():
    base = config_hash(make_config(serving={"token": "one"}, lake={"storage_options": {"A": "1", "B": "2"}}))
    # Another token hashes alike (the hash is of the masked dump, so it cannot leak the secret) ...
    assert config_hash(make_config(serving={"token": "two"}, lake={"storage_options": {"A": "1", "B": "2"}})) == base
    # ... map order does not matter (sorted keys) ...
    assert config_hash(make_config(serving={"token": "one"}, lake={"storage_options": {"B": "2", "A": "1"}})) == base
    # ... and a real setting does.
    assert config_hash(make_config(serving={"token": "one"}, lake={"storage_options": {"A": "1", "B": "3"}})) != base


# -------------------------------------------------------------------- secrets the masking misses


def test_a_redis_password_in_the_query_string_is_masked():
    config = make_config(online_store={"redis_url": "redis://redis.internal:6379/0?password=hunter2"})
    assert "hunter2" not in dumped_text(config)


def test_the_s3a_access_key_in_spark_conf_is_masked():
    config = make_config(spark={"conf": {"spark.hadoop.fs.s3a.access.key": "AKIAEXAMPLE0042"}})
    assert config_dump(config)["spark"]["conf"] == {"spark.hadoop.fs.s3a.access.key": "***"}


def test_an_azure_account_key_in_spark_conf_is_masked():
    key = "spark.hadoop.fs.azure.account.key.reelhouse.dfs.core.windows.net"
    config = make_config(spark={"conf": {key: "c2VjcmV0LWFjY291bnQta2V5"}})
    assert config_dump(config)["spark"]["conf"] == {key: "***"}


@pytest.mark.parametrize(
    "key", ["azure_storage_account_key", "account_key", "azure_storage_master_key", "google_service_account_key"]
)
def test_object_store_account_keys_in_storage_options_are_masked(key):
    config = make_config(lake={"storage_options": {key: "c2VjcmV0LWFjY291bnQta2V5"}})
    assert config_dump(config)["lake"]["storage_options"] == {key: "***"}


def test_a_url_with_a_bad_port_is_masked_not_an_error():
    config = make_config(online_store={"redis_url": "redis://:hunter2@redis.internal:99999/0"})
    assert "hunter2" not in dumped_text(config)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:hunter2@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
        ("redis://:hunter2@Redis.Internal:6379/0", "redis://:***@Redis.Internal:6379/0"),
    ],
)
def test_masking_a_url_changes_nothing_but_the_password(url, expected):
    assert config_dump(make_config(online_store={"redis_url": url}))["online_store"]["redis_url"] == expected
