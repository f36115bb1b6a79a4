"""S3 credentials: generated once, long enough for rclone, private, reused on the next `up`."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from reelhouse.errors import StackError
from reelhouse.stack.credentials import ObjectStoreCredentials, load_or_create_credentials


def test_first_call_creates_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "credentials.json"
    credentials = load_or_create_credentials(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # rclone answers InvalidAccessKeyId to short keys such as "ak"; these are 32 and 64 hex chars.
    assert len(credentials.access_key_id) == 32 and len(credentials.secret_access_key) == 64


def test_later_calls_reuse_the_stored_credentials(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    assert load_or_create_credentials(path) == load_or_create_credentials(path)


def test_each_state_dir_gets_its_own_random_credentials(tmp_path: Path) -> None:
    first = load_or_create_credentials(tmp_path / "a.json")
    second = load_or_create_credentials(tmp_path / "b.json")
    assert first.access_key_id != second.access_key_id
    assert first.secret_access_key != second.secret_access_key


def test_secret_is_not_in_repr() -> None:
    credentials = ObjectStoreCredentials.generate()
    assert credentials.secret_access_key not in repr(credentials)


def test_loose_permissions_are_tightened(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    load_or_create_credentials(path)
    path.chmod(0o644)
    load_or_create_credentials(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ["not json", "{}", '{"access_key_id": "", "secret_access_key": ""}'])
def test_broken_file_is_reported_not_overwritten(tmp_path: Path, content: str) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(content)
    with pytest.raises(StackError, match="credentials"):
        load_or_create_credentials(path)
    assert path.read_text() == content
