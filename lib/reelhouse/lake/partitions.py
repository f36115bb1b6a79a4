"""Hourly partitions: how the lake's hourly tables name an hour, defined once.

Tables partitioned by hour (silver's ``event_hour``, gold's and the speed layer's
``feature_hour``) hold the UTC hour as text, e.g. ``2026-11-21T05``. The width is fixed, so the
values sort, and compare in partition filters, as the hours do. Python writes and parses them
with :data:`HOUR_FORMAT`; Spark's ``date_format`` writes them with :data:`SPARK_HOUR_FORMAT`,
which is the same format only because reelhouse sessions run in UTC (session.py).
"""

from __future__ import annotations

import datetime as dt

HOUR_FORMAT = "%Y-%m-%dT%H"
SPARK_HOUR_FORMAT = "yyyy-MM-dd'T'HH"  # HOUR_FORMAT as a Spark datetime pattern


def hour_partition(moment: dt.datetime) -> str:
    """The partition value of the UTC hour containing ``moment``; a naive ``moment`` is UTC (the
    project's one time rule, reelhouse/arguments.py), never the machine's local time."""
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
    return moment.astimezone(dt.UTC).strftime(HOUR_FORMAT)


def partition_hour(value: str) -> dt.datetime:
    """The start (UTC) of the hour a partition value names: the inverse of :func:`hour_partition`."""
    return dt.datetime.strptime(value, HOUR_FORMAT).replace(tzinfo=dt.UTC)
