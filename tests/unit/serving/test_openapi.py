"""The checked-in OpenAPI document is the app's: regenerate it with
``reelhouse serve --write-openapi docs/openapi.json`` when the API changes."""

from __future__ import annotations

import json

from reelhouse.cli import main
from reelhouse.config import load_config
from reelhouse.serving.app import create_app
from tests.conftest import PROJECT_DIR

DOCUMENT = PROJECT_DIR / "docs" / "openapi.json"


def config():
    return load_config(PROJECT_DIR / "conf" / "local.yaml", environ={})


def test_docs_openapi_json_is_the_apps_document():
    assert json.loads(DOCUMENT.read_text()) == create_app(config()).openapi(), (
        "docs/openapi.json is out of date: run `reelhouse serve --write-openapi docs/openapi.json`"
    )


def test_the_document_describes_every_route_and_its_errors():
    document = create_app(config()).openapi()
    assert set(document["paths"]) == {"/v1/feed", "/v1/events", "/healthz", "/readyz", "/metrics"}
    feed = document["paths"]["/v1/feed"]["get"]
    assert [p["name"] for p in feed["parameters"]] == [
        "user_id",
        "k",
        "session_id",
        "os",
        "app_version",
        "country",
        "network",
    ]
    assert {"200", "422", "503"} <= set(feed["responses"])
    events = document["paths"]["/v1/events"]["post"]
    assert {"202", "401", "413", "422", "503"} <= set(events["responses"])
    assert events["security"] == [{"bearer": []}]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_the_cli_writes_the_document(tmp_path):
    target = tmp_path / "openapi.json"
    assert main(["serve", "--config", str(PROJECT_DIR / "conf" / "local.yaml"), "--write-openapi", str(target)]) == 0
    assert json.loads(target.read_text()) == json.loads(DOCUMENT.read_text())


def test_serve_refuses_to_start_without_a_token(tmp_path, capsys, monkeypatch):
    import uvicorn

    def started(*args, **kwargs):
        raise AssertionError("the service started without a token")

    monkeypatch.setattr(uvicorn, "run", started)
    monkeypatch.delenv("REELHOUSE__SERVING__TOKEN", raising=False)
    # A copy of conf/local.yaml alone: a git-ignored conf/local.local.yaml beside the original may set a token.
    (tmp_path / "conf").mkdir()
    copy = tmp_path / "conf" / "local.yaml"
    copy.write_text((PROJECT_DIR / "conf" / "local.yaml").read_text())
    assert main(["serve", "--config", str(copy)]) == 2
    error = capsys.readouterr().err
    assert "serving.token is not set" in error and "REELHOUSE__SERVING__TOKEN" in error
