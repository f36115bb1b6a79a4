"""Where lake and import files live: a local directory or an object store, as pyarrow sees it.

For listing the lake root (maintenance) and reading files beside the lake (imports, embeddings)
without Spark; Delta tables themselves are read through :class:`reelhouse.lake.Lake`.
"""

from __future__ import annotations

import pyarrow.fs as pafs


def filesystem_for(uri: str, storage_options: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem and in-filesystem path of a local path or object-store URI.

    ``s3a://`` (the name Spark's Hadoop connector uses, e.g. in a checkpoint location) is the
    same bucket as pyarrow's ``s3://``.
    """
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://") :]
    options = storage_options or {}
    if uri.startswith("s3://") and options:
        fs = pafs.S3FileSystem(
            access_key=options.get("AWS_ACCESS_KEY_ID"),
            secret_key=options.get("AWS_SECRET_ACCESS_KEY"),
            region=options.get("AWS_REGION"),
            endpoint_override=options.get("AWS_ENDPOINT_URL"),
        )
        return fs, uri[len("s3://") :]
    return pafs.FileSystem.from_uri(uri)
