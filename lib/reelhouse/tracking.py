"""MLflow for the whole project: where runs and models go, and the lineage every run records.

Nothing here runs at import: jobs call :func:`configure_mlflow` once, with their config, before
they log anything. The tracking store and the Model Registry share one URI (a local SQLite file
by default, or an MLflow server).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from reelhouse.config import ReelhouseConfig
from reelhouse.errors import ReelhouseError

log = logging.getLogger(__name__)

_SQLITE_PREFIX = "sqlite:///"
# Config keys whose values are credentials (kafka.client sasl.*, lake.storage_options, spark.conf's
# fs.s3a.access.key / fs.azure.account.key.<account>, object_store's *_account_key / master_key ...).
_SECRET_KEY = re.compile(
    r"password|secret|token|credential|access[._]key|private[._]key|account[._]key|master[._]key|sas[._]key",
    re.IGNORECASE,
)
# Query parameters of a URL that carry credentials (redis-py reads ?password=).
_SECRET_QUERY = re.compile(r"(?i)([?&](?:password|passwd|secret|token|access_key|key)=)[^&#]*")
REDACTED = "***"


def configure_mlflow(config: ReelhouseConfig) -> str:
    """Point MLflow's tracking and registry at ``config.mlflow``; return the experiment's id.

    A missing experiment is created with its artifacts under ``mlflow.artifact_root``; an existing
    one keeps the artifact location it was created with.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    uri = config.mlflow.tracking_uri
    if uri.startswith(_SQLITE_PREFIX):
        Path(uri[len(_SQLITE_PREFIX) :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = config.mlflow.experiment
    try:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = mlflow.create_experiment(name, artifact_location=artifact_location(config))
                log.info("created MLflow experiment %s (%s) at %s", name, experiment_id, artifact_location(config))
            except MlflowException:
                # Another job created it in between.
                experiment = mlflow.get_experiment_by_name(name)
                if experiment is None:
                    raise
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                raise ReelhouseError(
                    f"MLflow experiment {name!r} is deleted; restore it (`mlflow experiments restore "
                    f"--experiment-id {experiment.experiment_id}`) or set mlflow.experiment to another name"
                )
            experiment_id = experiment.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
    except MlflowException as e:
        raise ReelhouseError(f"MLflow at {uri} could not be used ({e}); check mlflow.tracking_uri") from e
    return experiment_id


def artifact_location(config: ReelhouseConfig) -> str:
    """``mlflow.artifact_root`` as a URI: local paths become ``file://`` URIs, others are kept."""
    root = config.mlflow.artifact_root
    return root if "://" in root else Path(root).resolve().as_uri()


def _package_dir() -> Path:
    return Path(__file__).resolve().parent


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit(directory: Path | None = None) -> str | None:
    """The commit checked out in the working tree holding reelhouse's code; None outside a git checkout."""
    return _git(directory or _package_dir(), "rev-parse", "HEAD") or None


def git_dirty(directory: Path | None = None) -> bool | None:
    """Whether tracked files differ from that commit (None outside a git checkout)."""
    status = _git(directory or _package_dir(), "status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def _redact(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, key) for v in value]
    if isinstance(value, str):
        if _SECRET_KEY.search(key):
            return REDACTED
        return _without_url_password(value)
    return value


def _without_url_password(text: str) -> str:
    """``text`` with a URL's password (in the authority or the query) replaced by ``***``.

    Only the password is touched: the authority is edited as text, so host case, IPv6 brackets
    and the port stay exactly as written (and a malformed port cannot make the dump fail).
    """
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return text
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{REDACTED}@{host}"
    query = _SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, "?" + parts.query)[1:] if parts.query else parts.query
    if netloc == parts.netloc and query == parts.query:
        return text
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def config_dump(config: ReelhouseConfig) -> dict[str, Any]:
    """The effective config as JSON-ready data, with credentials (secret keys, URL passwords) masked."""
    return _redact(config.model_dump(mode="json"))


def config_hash(config: ReelhouseConfig) -> str:
    """SHA-256 of :func:`config_dump` with sorted keys: equal configs hash alike, on any machine."""
    text = json.dumps(config_dump(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def lineage_tags(config: ReelhouseConfig, lineage: Mapping[str, Any]) -> dict[str, str]:
    """Run tags tying a run to its code, its config and the Delta versions of its inputs.

    ``lineage`` maps table names to the versions read, e.g. ``{"training_set": 3, "silver_events": 12}``;
    each becomes a ``lineage.<table>`` tag.
    """
    tags = {"config_hash": config_hash(config)}
    commit = git_commit()
    if commit is not None:
        tags["git_commit"] = commit
        tags["mlflow.source.git.commit"] = commit  # shown by the MLflow UI
        tags["git_dirty"] = str(bool(git_dirty())).lower()
    tags.update({f"lineage.{table}": str(version) for table, version in sorted(lineage.items())})
    return tags
