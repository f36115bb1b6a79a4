"""The lake: Delta tables written and read in Spark by delta-spark, read without Spark by delta-rs."""

from reelhouse.lake.delta import AppTransaction, CommitResult, Lake, TableSpec, commit_metadata

__all__ = ["AppTransaction", "CommitResult", "Lake", "TableSpec", "commit_metadata"]
