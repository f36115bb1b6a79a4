"""conf/local.yaml holds only what differs from the defaults in lib/reelhouse/config/models.py.

A value repeated from the code would pin the demo to it: changing the default in code would then do
nothing for ``make demo``. The checker walks the raw YAML (not the merged config) alongside the
pydantic models and names every dotted key whose value equals the code's default.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from reelhouse.config import RecallConfig, ReelhouseConfig, load_config

LOCAL_YAML = Path(__file__).resolve().parents[3] / "conf" / "local.yaml"


def _strip_optional(annotation: Any) -> Any:
    """``X | None`` -> ``X``; anything else unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _model_class(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip_optional(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _list_item_model(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip_optional(annotation)
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return _model_class(item)
    return None


def _coerce(annotation: Any, raw: Any) -> Any:
    """The raw YAML value as the field holds it (``.reelhouse`` -> ``Path('.reelhouse')``, a dict -> a model)."""
    try:
        return TypeAdapter(annotation).validate_python(raw)
    except ValidationError:
        return raw


def default_equal_keys(raw: Any, model: type[BaseModel] = ReelhouseConfig, prefix: str = "") -> list[str]:
    """Dotted keys of ``raw`` (a YAML mapping shaped like ``model``) whose values equal the model's defaults.

    A mapping for a nested model that equals the default as a whole is reported once, by its own key;
    otherwise its keys are checked one by one. Dicts and lists of plain values compare as a whole; lists
    of models (``experiments``) are checked item by item (``experiments[0].variants[1].ranker``).
    Keys the model does not know are left to validation.
    """
    found: list[str] = []
    if not isinstance(raw, dict):
        return found
    for key, value in raw.items():
        field = model.model_fields.get(key)
        if field is None:
            continue
        dotted = f"{prefix}{key}"
        if not field.is_required() and _coerce(field.annotation, value) == field.get_default(call_default_factory=True):
            found.append(dotted)
            continue
        nested = _model_class(field.annotation)
        if nested is not None and isinstance(value, dict):
            found.extend(default_equal_keys(value, nested, f"{dotted}."))
            continue
        item_model = _list_item_model(field.annotation)
        if item_model is not None and isinstance(value, list):
            for index, item in enumerate(value):
                found.extend(default_equal_keys(item, item_model, f"{dotted}[{index}]."))
    return found


def test_conf_local_yaml_sets_no_value_equal_to_the_code_default():
    raw = yaml.safe_load(LOCAL_YAML.read_text())
    repeated = default_equal_keys(raw)
    assert not repeated, (
        f"{LOCAL_YAML.name} repeats the defaults of lib/reelhouse/config/models.py for {', '.join(repeated)}; "
        "remove them so a change of the default in code reaches the local demo"
    )


def test_conf_local_yaml_loads_and_validates(tmp_path):
    # A copy alone: a git-ignored conf/local.local.yaml beside the original (a token) must not leak in.
    path = tmp_path / "conf" / "local.yaml"
    path.parent.mkdir()
    path.write_text(LOCAL_YAML.read_text())
    config = load_config(path, environ={})
    assert isinstance(config, ReelhouseConfig)
    assert config.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert config.experiments, "the demo's A/B test is defined"


BASE = {"kafka": {"bootstrap_servers": "127.0.0.1:19092", "events_topic": {"name": "reelhouse.events"}}}


def test_the_checker_passes_values_that_differ_and_required_keys():
    raw = {
        **BASE,
        "spark": {"conf": {"spark.driver.memory": "3g"}, "shuffle_partitions": 8},
        "recall": {"quotas": {"ease": 10}},
        "serving": {"budgets": {"store_ms": 5}},
    }
    assert default_equal_keys(raw) == []


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"env": "local"}, ["env"]),
        ({"data_dir": ".reelhouse"}, ["data_dir"]),  # a str the field turns into the default Path
        ({"spark": {"master": "local[2]", "shuffle_partitions": 8}}, ["spark.master"]),
        ({"simulator": {"rate": 50000}}, ["simulator"]),  # int for a float default; the whole section is default
        ({"speed": {"processing_time": "0 seconds", "watermark_s": 60}}, ["speed.processing_time"]),
        ({"stack": {"broker": {"port": 19092, "heap": "1g"}}}, ["stack.broker.port"]),
        ({"serving": {"budgets": {"store_ms": 20, "rank_ms": 25}, "port": 9000}}, ["serving.budgets"]),
        ({"maintenance": {"tables": None, "max_concurrent_tasks": 2}}, ["maintenance.tables"]),
        ({"orchestration": {"streams": ["ingest_events", "stream_features"]}}, ["orchestration"]),
        ({"lake": {}}, ["lake"]),  # an empty section is the default too
        (
            {
                "recall": {
                    "quotas": dict(RecallConfig().quotas),  # the default map, whatever it holds
                    "lookback_days": 7,
                }
            },
            ["recall.quotas"],
        ),
        ({"experiments": []}, ["experiments"]),
    ],
)
def test_the_checker_names_every_value_equal_to_the_default(extra, expected):
    assert default_equal_keys({**BASE, **extra}) == expected


def test_the_checker_reports_default_topic_settings_but_not_the_required_name():
    raw = {"kafka": {"bootstrap_servers": "b:9092", "events_topic": {"name": "t", "partitions": 4}}}
    assert default_equal_keys(raw) == ["kafka.events_topic.partitions"]


def test_the_checker_looks_inside_experiment_variants():
    raw = {
        **BASE,
        "experiments": [
            {
                "name": "ab",
                "traffic": 1.0,
                "variants": [
                    {"name": "a", "share": 0.5, "ranker": "alias:champion"},
                    {"name": "b", "share": 0.5, "ranker": "random", "recall_sources": None},
                ],
            }
        ],
    }
    assert default_equal_keys(raw) == [
        "experiments[0].traffic",
        "experiments[0].variants[0].ranker",
        "experiments[0].variants[1].recall_sources",
    ]


def test_the_checker_catches_a_default_added_to_a_copy_of_conf_local_yaml(tmp_path, monkeypatch):
    defaults = ReelhouseConfig.model_fields["training"].get_default(call_default_factory=True)
    raw = yaml.safe_load(LOCAL_YAML.read_text())
    # A default-equal key beside one that differs (so the key itself is named, not its section) ...
    raw.setdefault("training", {}).update(promotion_margin=defaults.promotion_margin, seed=defaults.seed + 1)
    # ... and one nested under required keys.
    raw["kafka"]["events_topic"]["replication_factor"] = 1
    copy = tmp_path / "local.yaml"
    copy.write_text(yaml.safe_dump(raw))

    assert sorted(default_equal_keys(yaml.safe_load(copy.read_text()))) == [
        "kafka.events_topic.replication_factor",
        "training.promotion_margin",
    ]
    # and the test of conf/local.yaml fails on that copy, naming both keys.
    monkeypatch.setattr(sys.modules[__name__], "LOCAL_YAML", copy)
    with pytest.raises(AssertionError, match=r"kafka\.events_topic\.replication_factor, training\.promotion_margin"):
        test_conf_local_yaml_sets_no_value_equal_to_the_code_default()


def test_an_override_of_one_key_of_a_default_map_keeps_the_other_keys() -> None:
    # conf/local.yaml no longer spells out recall.quotas: overriding one quota must change that one
    # quota of the code's default map, not replace the map with {als: 0}.
    config = load_config(LOCAL_YAML, environ={"REELHOUSE__RECALL__QUOTAS__ALS": "0"})
    defaults = ReelhouseConfig.model_fields["recall"].default_factory().quotas
    assert config.recall.quotas == {**defaults, "als": 0}
