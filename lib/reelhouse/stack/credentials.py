"""Credentials of the local S3 server: generated on first ``stack up``, kept in the state dir (0600).

They never go into committed config. They are long random hex strings because rclone rejects
short access keys (``InvalidAccessKeyId``).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from reelhouse.errors import StackError


@dataclass(frozen=True)
class ObjectStoreCredentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)

    @classmethod
    def generate(cls) -> ObjectStoreCredentials:
        return cls(access_key_id=secrets.token_hex(16), secret_access_key=secrets.token_hex(32))


def load_or_create_credentials(path: Path) -> ObjectStoreCredentials:
    """Read the credentials file, creating it with fresh credentials (mode 0600) if missing."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    credentials = ObjectStoreCredentials.generate()
    payload = json.dumps(
        {"access_key_id": credentials.access_key_id, "secret_access_key": credentials.secret_access_key}, indent=2
    )
    try:
        # O_EXCL with mode 0600: the secret is never readable by others, not even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)  # another `stack up` won the race; use its credentials
    with os.fdopen(fd, "w") as f:
        f.write(payload + "\n")
    return credentials


def _read(path: Path) -> ObjectStoreCredentials:
    text = path.read_text()
    try:
        data = json.loads(text)
        credentials = ObjectStoreCredentials(str(data["access_key_id"]), str(data["secret_access_key"]))
    except (ValueError, KeyError, TypeError) as e:
        raise StackError(
            f"{path}: unreadable object-store credentials ({e}); stop the stack and delete the file, "
            "`reelhouse stack up` writes new ones"
        ) from e
    if not credentials.access_key_id or not credentials.secret_access_key:
        raise StackError(f"{path}: empty object-store credentials; delete the file and run `reelhouse stack up`")
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)
    return credentials
