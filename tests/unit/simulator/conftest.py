from __future__ import annotations

import pytest

from reelhouse.simulator.catalogue import Catalogue

from .simworld import small_catalogue


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return small_catalogue()
