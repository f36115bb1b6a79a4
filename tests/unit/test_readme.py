"""The README's folder table and documentation list match the tree (a newcomer reads folders from it)."""

from __future__ import annotations

import re
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[2]
README = (PROJECT_DIR / "README.md").read_text()
LISTED = set(re.findall(r"^\| `([^`]+)` \|", README, flags=re.MULTILINE))


def test_every_package_folder_and_top_level_module_is_in_the_folder_table():
    package = PROJECT_DIR / "lib" / "reelhouse"
    entries = {
        f"lib/reelhouse/{path.name}/" if path.is_dir() else f"lib/reelhouse/{path.name}"
        for path in package.iterdir()
        if not path.name.startswith(("_", ".")) and path.name != "py.typed" and path.suffix in ("", ".py")
    }
    assert entries - LISTED == set()


def test_every_top_level_folder_is_in_the_folder_table():
    folders = {
        f"{path.name}/"
        for path in PROJECT_DIR.iterdir()
        # Tool and data folders (dot-folders, caches, outputs) are git-ignored; .ci is the project's.
        if path.is_dir()
        and path.name not in {"lib", "node_modules", "spark-warehouse", "test-artifacts"}
        and (not path.name.startswith((".", "__")) or path.name == ".ci")
    }
    assert folders - LISTED == set()
    assert {entry for entry in LISTED if not entry.startswith("lib/")} - folders - {"lib/"} == set()


def test_every_document_is_listed():
    documents = {f"docs/{path.name}" for path in (PROJECT_DIR / "docs").glob("*.md")}
    assert {doc for doc in documents if f"`{doc}`" not in README} == set()
