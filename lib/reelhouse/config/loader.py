"""Load a :class:`ReelhouseConfig` from YAML, apply environment overrides, resolve paths.

Overrides: ``REELHOUSE__KAFKA__BOOTSTRAP_SERVERS=broker:9092`` sets ``kafka.bootstrap_servers``;
double underscores separate levels and values are read as JSON scalars (``8`` is a number,
``true`` a boolean, anything that is not JSON a string). Under ``kafka.client`` and
``kafka.producer`` a ``_`` in the last key stands for ``.``:
``REELHOUSE__KAFKA__CLIENT__SASL_PASSWORD`` sets ``sasl.password``. A file ``<name>.local.yaml`` beside the chosen file, if present, is merged
over it: that is where machine-specific settings and secrets go (git-ignored).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from reelhouse.config.models import ReelhouseConfig
from reelhouse.errors import ConfigError

ENV_PREFIX = "REELHOUSE__"
DEFAULT_CONFIG_ENV = "REELHOUSE_CONFIG"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as e:
        raise ConfigError(
            f"{path}: config file not found; pass --config conf/local.yaml or set {DEFAULT_CONFIG_ENV}"
        ) from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config file: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _seed_dict_defaults(data: dict[str, Any], override: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``data`` with the code's default of every dict-valued setting ``override`` names and ``data``
    lacks, so that ``REELHOUSE__RECALL__QUOTAS__ALS=0`` changes one quota of the default map instead
    of replacing the whole map with ``{als: 0}`` (config files hold only what differs from defaults)."""
    seeded = dict(data)
    for key, value in override.items():
        field = model.model_fields.get(key)
        if field is None or not isinstance(value, Mapping):
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = seeded.get(key)
            seeded[key] = _seed_dict_defaults(dict(current) if isinstance(current, Mapping) else {}, value, annotation)
        elif key not in seeded and field.default_factory is not None:
            default = field.default_factory()  # type: ignore[call-arg]
            if isinstance(default, dict):
                seeded[key] = default
    return seeded


# Maps of librdkafka settings: their keys are dotted (sasl.password), which an environment
# variable name cannot carry, so `_` in a key below these paths stands for `.`.
_DOTTED_KEY_MAPS = {("kafka", "client"), ("kafka", "producer")}


def _env_value(raw: str) -> Any:
    """JSON scalars and lists (8, true, null, [1, 2]) become typed values; anything else is a string.

    JSON rather than YAML: YAML 1.1 would read a password such as 10:30 as the number 630.
    """
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``REELHOUSE__A__B=v`` variables into ``{"a": {"b": v}}``."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__") if k]
        if not keys:
            continue
        if tuple(keys[:2]) in _DOTTED_KEY_MAPS and len(keys) == 3:
            keys[2] = keys[2].replace("_", ".")
            value: Any = raw  # librdkafka takes every setting as a string
        else:
            value = _env_value(raw)
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return tree


def _is_uri(location: str) -> bool:
    return "://" in location


def _resolve(location: str | Path, base: Path) -> str:
    text = str(location)
    if _is_uri(text) or Path(text).is_absolute():
        return text
    return str((base / text).resolve())


def _resolve_sqlite_uri(uri: str, base: Path) -> str:
    """``sqlite:///relative/path`` against ``base``; ``sqlite:////abs`` and other URIs unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix) :].startswith("/"):
        return prefix + str((base / uri[len(prefix) :]).resolve())
    return uri


def _resolve_paths(config: ReelhouseConfig, base: Path) -> ReelhouseConfig:
    embeddings = config.recall.embeddings_path
    return config.model_copy(
        update={
            "data_dir": Path(_resolve(config.data_dir, base)),
            "stack": config.stack.model_copy(update={"state_dir": Path(_resolve(config.stack.state_dir, base))}),
            "lake": config.lake.model_copy(update={"root": _resolve(config.lake.root, base)}),
            "ingest": config.ingest.model_copy(update={"checkpoint_dir": _resolve(config.ingest.checkpoint_dir, base)}),
            "speed": config.speed.model_copy(update={"checkpoint_dir": _resolve(config.speed.checkpoint_dir, base)}),
            "simulator": config.simulator.model_copy(
                update={"catalogue_dir": _resolve(config.simulator.catalogue_dir, base)}
            ),
            "online_store": config.online_store.model_copy(
                update={"path": Path(_resolve(config.online_store.path, base))}
            ),
            "mlflow": config.mlflow.model_copy(
                update={
                    "tracking_uri": _resolve_sqlite_uri(config.mlflow.tracking_uri, base),
                    "artifact_root": _resolve(config.mlflow.artifact_root, base),
                }
            ),
            "recall": config.recall.model_copy(
                update={"embeddings_path": None if embeddings is None else _resolve(embeddings, base)}
            ),
        }
    )


def _format_validation_error(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {field}: {item['msg']}")
    return "\n".join(lines)


def config_file(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The config file :func:`load_config` reads: ``path``, else ``$REELHOUSE_CONFIG``, else ``conf/local.yaml``."""
    environ = os.environ if environ is None else environ
    return Path(path or environ.get(DEFAULT_CONFIG_ENV) or "conf/local.yaml").resolve()


def local_overrides_file(config_path: str | Path) -> Path:
    """The git-ignored ``<name>.local.yaml`` beside a config file, merged over it (secrets, machine settings)."""
    config_path = Path(config_path)
    return config_path.with_name(config_path.stem + ".local.yaml")


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> ReelhouseConfig:
    """Load, override and validate a config file; any problem is one :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    config_path = config_file(path, environ)
    data = _read_yaml(config_path)
    local_path = local_overrides_file(config_path)
    if local_path.exists():
        local = _read_yaml(local_path)
        data = _merge(_seed_dict_defaults(data, local, ReelhouseConfig), local)
    overrides = env_overrides(environ)
    data = _merge(_seed_dict_defaults(data, overrides, ReelhouseConfig), overrides)
    try:
        config = ReelhouseConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(config_path, e)) from e
    return _resolve_paths(config, config_path.parent.parent)
