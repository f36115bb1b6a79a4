"""load_config: committed files load, overrides layer file < .local.yaml < environment, errors name file and field."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from reelhouse.config import ReelhouseConfig, load_config
from reelhouse.config.loader import env_overrides
from reelhouse.errors import ConfigError

REPO_CONF = Path(__file__).resolve().parents[3] / "conf"
MINIMAL = """\
kafka:
  bootstrap_servers: 127.0.0.1:19092
  events_topic:
    name: reelhouse.events
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def committed(tmp_path: Path, name: str) -> Path:
    """A copy of a committed conf file in ``tmp_path/conf``: a developer's git-ignored
    ``conf/*.local.yaml`` must not leak into the test, and paths then resolve under tmp_path."""
    target = tmp_path / "conf" / name
    target.parent.mkdir()
    shutil.copy(REPO_CONF / name, target)
    return target


def config_error(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={} if environ is None else environ)
    return str(caught.value)


# ---------------------------------------------------------------------------------- committed files


def test_conf_local_yaml_loads_with_its_values_and_paths_under_the_project(tmp_path):
    config = load_config(committed(tmp_path, "local.yaml"), environ={})
    assert isinstance(config, ReelhouseConfig)
    assert config.env == "local"
    assert config.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert (config.kafka.events_topic.name, config.kafka.events_topic.partitions) == ("reelhouse.events", 4)
    assert config.stack.enabled is True
    assert config.ingest.max_offsets_per_trigger == 2_000_000
    assert config.spark.conf == {"spark.driver.memory": "3g"}
    # Every relative location resolves against the project dir, the parent of conf/.
    assert config.data_dir == tmp_path / ".reelhouse"
    assert config.stack.state_dir == tmp_path / ".reelhouse/stack"
    assert config.lake.root == str(tmp_path / ".reelhouse/lake")
    assert config.ingest.checkpoint_dir == str(tmp_path / ".reelhouse/checkpoints/ingest_events")
    assert config.simulator.catalogue_dir == str(tmp_path / ".reelhouse/catalogue")


def test_conf_cluster_example_yaml_loads_and_keeps_uris_and_absolute_paths(tmp_path):
    config = load_config(committed(tmp_path, "cluster.example.yaml"), environ={})
    assert config.env == "prod"
    assert config.kafka.bootstrap_servers.split(",")[2] == "kafka-3.internal:9092"
    assert config.kafka.events_topic.replication_factor == 3
    assert config.kafka.client["security.protocol"] == "SASL_SSL"
    assert config.stack.enabled is False
    assert config.ingest.max_offsets_per_trigger == 20_000_000
    assert config.ingest.min_partitions == 48
    # s3:// URIs and absolute paths are left exactly as written.
    assert config.lake.root == "s3://reelhouse-lake/prod"
    assert config.ingest.checkpoint_dir == "s3://reelhouse-lake/prod/_checkpoints/ingest_events"
    assert config.simulator.catalogue_dir == "s3://reelhouse-lake/prod/_catalogue"
    assert config.data_dir == Path("/var/lib/reelhouse")
    # A default that the file does not set is still relative, so it resolves under the project.
    assert config.stack.state_dir == tmp_path / ".reelhouse/stack"


def test_the_config_path_can_come_from_reelhouse_config(tmp_path):
    path = committed(tmp_path, "cluster.example.yaml")
    assert load_config(None, environ={"REELHOUSE_CONFIG": str(path)}).env == "prod"


# ---------------------------------------------------------------------------------- overrides


def test_environment_overrides_apply_and_are_typed(tmp_path):
    environ = {
        "REELHOUSE__KAFKA__BOOTSTRAP_SERVERS": "broker:9092",
        "REELHOUSE__INGEST__MAX_OFFSETS_PER_TRIGGER": "5",
        "REELHOUSE__SPARK__UI_ENABLED": "true",
        "REELHOUSE_CONFIG": "ignored-when-a-path-is-given.yaml",
        "PATH": "/usr/bin",
    }
    config = load_config(committed(tmp_path, "local.yaml"), environ=environ)
    assert config.kafka.bootstrap_servers == "broker:9092"
    # Values are read as YAML scalars: "5" is the int 5, "true" the bool True.
    assert config.ingest.max_offsets_per_trigger == 5
    assert type(config.ingest.max_offsets_per_trigger) is int
    assert config.spark.ui_enabled is True
    # Siblings of an overridden key keep their file values (the merge is deep).
    assert config.kafka.events_topic.name == "reelhouse.events"
    assert config.ingest.query_name == "ingest_events"


def test_env_overrides_builds_a_nested_tree_from_prefixed_names_only():
    environ = {
        "REELHOUSE__KAFKA__EVENTS_TOPIC__PARTITIONS": "12",
        "REELHOUSE__ENV": "",
        "REELHOUSE__": "no keys",
        "REELHOUSE_CONFIG": "conf/x.yaml",
        "HOME": "/root",
    }
    assert env_overrides(environ) == {"kafka": {"events_topic": {"partitions": 12}}, "env": ""}


def test_a_local_yaml_beside_the_file_is_merged_over_it_and_the_environment_over_both(tmp_path):
    path = committed(tmp_path, "local.yaml")
    write(
        tmp_path / "conf/local.local.yaml",
        """\
        kafka:
          events_topic:
            partitions: 8
        ingest:
          min_partitions: 3
          max_offsets_per_trigger: 100
        """,
    )
    config = load_config(path, environ={"REELHOUSE__INGEST__MAX_OFFSETS_PER_TRIGGER": "7"})
    assert config.kafka.events_topic.partitions == 8  # from local.local.yaml
    assert config.kafka.events_topic.name == "reelhouse.events"  # sibling kept from local.yaml
    assert config.ingest.min_partitions == 3  # from local.local.yaml
    assert config.ingest.max_offsets_per_trigger == 7  # environment beats both files
    assert config.ingest.trigger == "processing_time"  # untouched, from local.yaml


def test_the_local_file_is_named_after_the_chosen_file(tmp_path):
    path = write(tmp_path / "conf/cluster.yaml", MINIMAL)
    write(tmp_path / "conf/local.local.yaml", "env: wrong-file\n")
    write(tmp_path / "conf/cluster.local.yaml", "env: staging\n")
    assert load_config(path, environ={}).env == "staging"


def test_relative_paths_resolve_against_the_project_dir_not_the_working_dir(tmp_path, monkeypatch):
    path = write(
        tmp_path / "project/conf/app.yaml",
        MINIMAL
        + """\
lake:
  root: lake/here
ingest:
  checkpoint_dir: s3://bucket/checkpoints
simulator:
  catalogue_dir: /abs/catalogue
""",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path, environ={})
    assert config.lake.root == str(tmp_path / "project/lake/here")
    assert config.ingest.checkpoint_dir == "s3://bucket/checkpoints"
    assert config.simulator.catalogue_dir == "/abs/catalogue"
    assert config.data_dir == tmp_path / "project/.reelhouse"


def test_a_relative_config_path_is_taken_from_the_working_dir(tmp_path, monkeypatch):
    write(tmp_path / "conf/app.yaml", MINIMAL)
    monkeypatch.chdir(tmp_path)
    assert load_config("conf/app.yaml", environ={}).lake.root == str(tmp_path / ".reelhouse/lake")


# ---------------------------------------------------------------------------------- errors


def test_a_missing_file_is_a_config_error_naming_it(tmp_path):
    missing = tmp_path / "conf/nope.yaml"
    message = config_error(missing)
    assert str(missing) in message
    assert "not found" in message


def test_invalid_yaml_is_a_config_error_naming_the_file(tmp_path):
    path = write(tmp_path / "conf/bad.yaml", "kafka: [unclosed\n")
    message = config_error(path)
    assert message.startswith(f"{path}: not valid YAML")


def test_invalid_yaml_in_the_local_file_names_the_local_file(tmp_path):
    path = write(tmp_path / "conf/app.yaml", MINIMAL)
    local = write(tmp_path / "conf/app.local.yaml", "kafka: {oops\n")
    assert config_error(path).startswith(f"{local}: not valid YAML")


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("just text\n", "str"), ("42\n", "int")])
def test_a_top_level_that_is_not_a_mapping_is_a_config_error(tmp_path, text, kind):
    path = write(tmp_path / "conf/app.yaml", text)
    assert config_error(path) == f"{path}: expected a mapping at the top level, got {kind}"


@pytest.mark.parametrize(
    ("extra_yaml", "environ", "field", "words"),
    [
        ("spark:\n  masterr: local[4]\n", {}, "spark.masterr", "Extra inputs are not permitted"),
        ("surprise: 1\n", {}, "surprise", "Extra inputs are not permitted"),
        ("ingest:\n  min_partitions: many\n", {}, "ingest.min_partitions", "valid integer"),
        ("stack:\n  broker:\n    port: 70000\n", {}, "stack.broker.port", "less than or equal to 65535"),
        ("", {"REELHOUSE__KAFKA__BOOTSTRAP_SERVERS": "broker"}, "kafka.bootstrap_servers", "host:port"),
        ("", {"REELHOUSE__KAFKA__BOOTSTRAP_SERVERS": "a:1,b:x"}, "kafka.bootstrap_servers", "host:port"),
        ("", {"REELHOUSE__INGEST__MAX_OFFSETS_PER_TRIGGER": "0"}, "ingest.max_offsets_per_trigger", "greater than"),
    ],
    ids=["unknown-nested-key", "unknown-top-key", "wrong-type", "out-of-range", "no-port", "bad-port", "env-zero"],
)
def test_invalid_values_raise_one_config_error_naming_file_and_dotted_field(
    tmp_path, extra_yaml, environ, field, words
):
    path = write(tmp_path / "conf/app.yaml", MINIMAL + extra_yaml)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)
    message = str(caught.value)
    assert message.startswith(f"{path}: invalid configuration")
    assert f"\n  {field}: " in message
    assert words in message
    assert isinstance(caught.value.__cause__, ValidationError)  # raised `from e`


def test_a_missing_required_section_names_it(tmp_path):
    path = write(tmp_path / "conf/app.yaml", "env: dev\n")
    message = config_error(path)
    assert str(path) in message
    assert "\n  kafka: Field required" in message


def test_an_empty_file_is_an_empty_mapping_and_fails_only_on_required_fields(tmp_path):
    path = write(tmp_path / "conf/app.yaml", "")
    assert "kafka: Field required" in config_error(path)


def test_librdkafka_settings_from_the_environment_keep_their_dots_and_stay_strings():
    # librdkafka keys are dotted (sasl.password) and every value is a string; a password that
    # looks like a number or a YAML time (10:30) must arrive exactly as typed.
    tree = env_overrides(
        {
            "REELHOUSE__KAFKA__CLIENT__SASL_PASSWORD": "10:30",
            "REELHOUSE__KAFKA__PRODUCER__LINGER_MS": "5",
            "REELHOUSE__INGEST__MAX_OFFSETS_PER_TRIGGER": "5",
        }
    )
    assert tree["kafka"]["client"] == {"sasl.password": "10:30"}
    assert tree["kafka"]["producer"] == {"linger.ms": "5"}
    assert tree["ingest"]["max_offsets_per_trigger"] == 5


def test_a_config_path_that_is_a_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_config(tmp_path)
