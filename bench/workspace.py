"""A reelhouse workspace of its own: a config whose every location lies under one directory.

The project's ``conf/local.yaml`` with free ports for the broker, its controller and the feed
service, and the lake, checkpoints, catalogue, MLflow store and stack state under ``root``; the
simulator settings given override the catalogue's size. Benchmarks that run ``reelhouse demo``
and the loop use it, and so does the demo smoke test, so a run never touches the developer's
``.reelhouse`` or a port in use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reelhouse.stack.ports import free_ports

PROJECT_DIR = Path(__file__).resolve().parents[1]


def workspace_config(root: Path, simulator: dict[str, Any], name: str = "reelhouse.yaml") -> Path:
    """Write the workspace's config as ``root/name`` and return its path."""
    broker, controller, serving = free_ports(3)
    base = yaml.safe_load((PROJECT_DIR / "conf" / "local.yaml").read_text())
    base.setdefault("kafka", {})["bootstrap_servers"] = f"127.0.0.1:{broker}"
    base.update(
        data_dir=str(root),
        stack={
            "enabled": True,
            "state_dir": str(root / "stack"),
            "broker": {"port": broker, "controller_port": controller},
        },
        lake={"root": str(root / "lake")},
        ingest={"checkpoint_dir": str(root / "checkpoints" / "ingest_events")},
        simulator={"catalogue_dir": str(root / "catalogue"), **simulator},
        mlflow={
            "tracking_uri": f"sqlite:///{root}/mlflow/mlflow.db",
            "artifact_root": str(root / "mlflow" / "artifacts"),
        },
        serving={"port": serving},
    )
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text(yaml.safe_dump(base))
    return path
