"""The activity-log event contract (what every producer writes and every job reads)."""
