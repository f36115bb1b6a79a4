"""The demo's token file: the service token never sits in a file other users can read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from reelhouse.config import load_config
from reelhouse.demo import SECRET_FILE_MODE, ensure_serving_token
from tests.conftest import PROJECT_DIR


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of conf/local.yaml alone (a git-ignored local.local.yaml beside the original may hold a token)."""
    monkeypatch.delenv("REELHOUSE__SERVING__TOKEN", raising=False)
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "local.yaml"
    path.write_text((PROJECT_DIR / "conf" / "local.yaml").read_text())
    return path


@pytest.fixture
def open_umask():
    """A umask that restricts nothing, so only the code's own mode keeps others out."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_token_file_is_owner_only_from_its_creation(config_path: Path, open_umask, monkeypatch):
    # With chmod disabled, the file can only be 0600 if it was created so: a file written first and
    # restricted afterwards would be world-readable here (umask 0) and for a moment in real life.
    monkeypatch.setattr(os, "chmod", lambda *args, **kwargs: None)
    monkeypatch.setattr(os, "fchmod", lambda *args, **kwargs: None)
    local = config_path.with_name("local.local.yaml")
    assert ensure_serving_token(config_path)
    assert mode(local) == SECRET_FILE_MODE == 0o600
    token = load_config(config_path, environ={}).serving.token
    assert token and len(token) >= 32
    assert not ensure_serving_token(config_path)  # a token is there now: nothing is rewritten
    assert load_config(config_path, environ={}).serving.token == token


def test_an_existing_file_open_to_others_is_restricted_and_keeps_its_settings(config_path: Path, open_umask):
    local = config_path.with_name("local.local.yaml")
    local.write_text(yaml.safe_dump({"spark": {"shuffle_partitions": 3}}))
    local.chmod(0o644)
    assert ensure_serving_token(config_path)
    assert mode(local) == 0o600
    config = load_config(config_path, environ={})
    assert config.serving.token and config.spark.shuffle_partitions == 3


def test_a_file_that_already_holds_a_token_is_restricted_too(config_path: Path, open_umask):
    local = config_path.with_name("local.local.yaml")
    local.write_text(yaml.safe_dump({"serving": {"token": "an-existing-token-of-the-user"}}))
    local.chmod(0o664)
    assert not ensure_serving_token(config_path)
    assert mode(local) == 0o600
    assert load_config(config_path, environ={}).serving.token == "an-existing-token-of-the-user"
