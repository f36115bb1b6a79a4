from __future__ import annotations

import numpy as np
import pytest

from reelhouse.events.contract import Invalid, validate_payload
from reelhouse.simulator.malformed import EXPECTED_REASON, MALFORMED_KINDS, corrupt
from reelhouse.simulator.traffic import VALID

from .simworld import START_MS, generator

BROKER_TIME = START_MS + 3_600_000


@pytest.fixture(scope="module")
def valid_values() -> list[bytes]:
    return generator().next_block(2_000).values


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_kind_is_rejected_with_its_reason(kind: str, valid_values: list[bytes]) -> None:
    rng = np.random.default_rng(0)
    # 200 events of every type cover each variant of the kind (which field, which unit ...).
    for value in valid_values[:200]:
        broken = corrupt(value, MALFORMED_KINDS.index(kind), rng, oversized_bytes=16_384 + 4_096)
        with pytest.raises(Invalid) as caught:
            validate_payload(broken, BROKER_TIME)
        assert caught.value.reason == EXPECTED_REASON[kind], (kind, broken[:200])


def test_generated_share_and_kinds_match_the_block_labels() -> None:
    block = generator(malformed_share=0.2, oversized_bytes=20_480).next_block(20_000)
    share = (block.kind != VALID).mean()
    assert 0.18 < share < 0.22
    seen = set()
    for value, kind in zip(block.values, block.kind.tolist()):
        if kind == VALID:
            continue
        with pytest.raises(Invalid) as caught:
            validate_payload(value, BROKER_TIME)
        assert caught.value.reason == EXPECTED_REASON[MALFORMED_KINDS[kind]]
        seen.add(MALFORMED_KINDS[kind])
    assert seen == set(MALFORMED_KINDS)
