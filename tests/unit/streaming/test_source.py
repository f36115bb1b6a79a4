"""The options every stream hands Spark's `kafka` source, and how a data-loss stop is reported."""

from __future__ import annotations

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import StreamError
from reelhouse.streaming.source import data_loss_error, is_data_loss, kafka_options


def _config(**ingest: object) -> ReelhouseConfig:
    return ReelhouseConfig.model_validate(
        {
            "kafka": {
                "bootstrap_servers": "broker-1:9092,broker-2:9092",
                "events_topic": {"name": "events"},
                "client": {"security.protocol": "SASL_SSL"},
            },
            "ingest": ingest,
        }
    )


def test_options_come_from_the_stream_section_with_data_loss_checks_on_by_default() -> None:
    config = _config(max_offsets_per_trigger=1000, min_partitions=8, starting_offsets="latest")

    options = kafka_options(config, config.ingest)

    assert options == {
        "kafka.bootstrap.servers": "broker-1:9092,broker-2:9092",
        "subscribe": "events",
        "startingOffsets": "latest",
        "minPartitions": "8",
        "maxOffsetsPerTrigger": "1000",
        "failOnDataLoss": "true",
        "kafka.security.protocol": "SASL_SSL",
    }


def test_no_per_trigger_limit_leaves_the_option_out() -> None:
    config = _config(max_offsets_per_trigger=None, fail_on_data_loss=False)

    options = kafka_options(config, config.ingest)

    assert "maxOffsetsPerTrigger" not in options
    assert options["failOnDataLoss"] == "false"


def test_the_speed_layer_reads_with_its_own_section() -> None:
    config = _config()

    assert kafka_options(config, config.speed)["maxOffsetsPerTrigger"] == str(config.speed.max_offsets_per_trigger)


def test_a_data_loss_stop_becomes_one_error_that_says_what_to_do() -> None:
    # The first line of what Spark's Kafka source raises when failOnDataLoss stops a query.
    spark_says = RuntimeError(
        "[KAFKA_DATA_LOSS.START_OFFSET_RESET] Some data may have been lost because they are not available in "
        "Kafka any more; either the data was aged out by Kafka or the topic may have been deleted before all "
        "the data in the topic was processed. If you don't want your streaming query to fail on such cases, "
        "set the source option 'failOnDataLoss' to 'false'.\nat org.apache.spark..."
    )
    config = _config()

    assert is_data_loss(spark_says)
    error = data_loss_error("the ingestion stream", config.ingest, spark_says)

    assert isinstance(error, StreamError)
    assert "deleted by retention" in str(error) and config.ingest.checkpoint_dir in str(error)
    assert "\n" not in str(error)
    assert not is_data_loss(RuntimeError("Python worker exited unexpectedly"))
