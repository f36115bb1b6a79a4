"""Load a :class:`ReelhouseConfig` from YAML, apply environment overrides, resolve paths.

Overrides: ``REELHOUSE__KAFKA__BOOTSTRAP_SERVERS=broker:9092`` sets ``kafka.bootstrap_servers``;
double underscores separate levels and values are read as YAML scalars (``8`` is a number,
``true`` a boolean). A file ``<name>.local.yaml`` beside the chosen file, if present, is merged
over it: that is where machine-specific settings and secrets go (git-ignored).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from reelhouse.config.models import ReelhouseConfig
from reelhouse.errors import ConfigError

ENV_PREFIX = "REELHOUSE__"
DEFAULT_CONFIG_ENV = "REELHOUSE_CONFIG"


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: config file not found; pass --config conf/local.yaml or set {DEFAULT_CONFIG_ENV}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
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


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``REELHOUSE__A__B=v`` variables into ``{"a": {"b": v}}``."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__") if k]
        if not keys:
            continue
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        try:
            node[keys[-1]] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            node[keys[-1]] = raw
    return tree


def _is_uri(location: str) -> bool:
    return "://" in location


def _resolve(location: str | Path, base: Path) -> str:
    text = str(location)
    if _is_uri(text) or Path(text).is_absolute():
        return text
    return str((base / text).resolve())


def _resolve_paths(config: ReelhouseConfig, base: Path) -> ReelhouseConfig:
    return config.model_copy(
        update={
            "data_dir": Path(_resolve(config.data_dir, base)),
            "stack": config.stack.model_copy(update={"state_dir": Path(_resolve(config.stack.state_dir, base))}),
            "lake": config.lake.model_copy(update={"root": _resolve(config.lake.root, base)}),
            "ingest": config.ingest.model_copy(update={"checkpoint_dir": _resolve(config.ingest.checkpoint_dir, base)}),
            "simulator": config.simulator.model_copy(
                update={"catalogue_dir": _resolve(config.simulator.catalogue_dir, base)}
            ),
        }
    )


def _format_validation_error(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {field}: {item['msg']}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> ReelhouseConfig:
    """Load, override and validate a config file; any problem is one :class:`ConfigError`."""
    environ = os.environ if environ is None else environ
    chosen = path or environ.get(DEFAULT_CONFIG_ENV) or "conf/local.yaml"
    config_path = Path(chosen).resolve()
    data = _read_yaml(config_path)
    local_path = config_path.with_name(config_path.stem + ".local.yaml")
    if local_path.exists():
        data = _merge(data, _read_yaml(local_path))
    data = _merge(data, env_overrides(environ))
    try:
        config = ReelhouseConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(config_path, e)) from e
    return _resolve_paths(config, config_path.parent.parent)
