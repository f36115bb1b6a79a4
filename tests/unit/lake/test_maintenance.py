"""Which partitions maintenance compacts, and how its settings are overridden (no Spark)."""

from __future__ import annotations

import pytest

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import ConfigError
from reelhouse.lake.maintenance import compaction_condition, maintenance_settings, table_names


def test_too_few_small_files_compact_nothing():
    assert compaction_condition(["day"], [{"day": "a"}] * 3, min_files=4) is None


def test_an_unpartitioned_table_with_enough_small_files_compacts_whole():
    assert compaction_condition([], [{}] * 4, min_files=4) == ""


def test_only_partitions_with_enough_small_files_are_named():
    # a: 4 small files (qualifies), b: 3 (does not, though the table has 7 in all).
    files = [{"day": "a"}] * 4 + [{"day": "b"}] * 3
    assert compaction_condition(["day"], files, min_files=4) == "(`day` = 'a')"
    assert compaction_condition(["day"], files, min_files=5) is None


def test_several_partition_columns_name_each_partition_exactly_with_nulls_and_quotes():
    files = [{"day": "a", "region": None}] * 2 + [{"day": "o'b", "region": "eu"}] * 2 + [{"day": "a", "region": "eu"}]
    assert compaction_condition(["day", "region"], files, min_files=2) == (
        "(`day` = 'a' AND `region` IS NULL) OR (`day` = 'o\\'b' AND `region` = 'eu')"
    )


def test_overrides_are_validated_like_the_file():
    config = ReelhouseConfig.model_validate({"kafka": {"bootstrap_servers": "x:1", "events_topic": {"name": "e"}}})
    settings = maintenance_settings(config, table_names(" a, b ,"), 0)
    assert (settings.tables, settings.vacuum_retention_hours) == (["a", "b"], 0)
    with pytest.raises(ConfigError, match="invalid maintenance override"):
        maintenance_settings(config, None, -1)
