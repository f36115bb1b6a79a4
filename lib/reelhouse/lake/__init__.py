"""The lake: Delta tables written by Spark executors and committed by delta-rs on the driver."""

from reelhouse.lake.delta import AppTransaction, CommitResult, Lake, TableSpec
from reelhouse.lake.files import FileAction, TableFileWriter

__all__ = ["AppTransaction", "CommitResult", "FileAction", "Lake", "TableFileWriter", "TableSpec"]
