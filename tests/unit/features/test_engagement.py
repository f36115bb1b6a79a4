"""One definition of engagement (features/engagement.py): serving's realtime seeds, the training
label and the registry's engagement measure must agree on it, comments included (they do not count).

The label is checked through training's own :func:`label_condition`, evaluated on a plain row built
the way the training set attributes outcomes to an impression (a flag per outcome type, the best
play's watch ratio); serving through the rule serving/handlers.py calls for every posted event.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelhouse.events.contract import OUTCOME_TYPES
from reelhouse.features.engagement import ENGAGEMENT_TYPES, watch_ratio
from reelhouse.features.registry import MEASURES
from reelhouse.serving import handlers as serving_handlers
from reelhouse.training.columns import OUTCOME_FLAGS, WATCH_RATIO
from reelhouse.training.dataset import label_condition


def event(kind: str, watch_ms: int = 0, duration_ms: int = 10_000) -> dict[str, Any]:
    """An event as serving receives it; only plays carry their watch fields here."""
    found = {"event_type": kind, "user_id": "u1", "video_id": "v1"}
    if kind == "play":
        found |= {"watch_ms": watch_ms, "video_duration_ms": duration_ms}
    return found


def attributed(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The training row of an impression these outcomes followed (dataset.attributed_impressions)."""
    row: dict[str, Any] = {
        flag: int(any(e["event_type"] == kind for e in events)) for kind, flag in OUTCOME_FLAGS.items()
    }
    ratios = [watch_ratio(e["watch_ms"], e["video_duration_ms"]) for e in events if e["event_type"] == "play"]
    row[WATCH_RATIO] = max(ratios, default=0.0)
    return row


def training_label(events: list[dict[str, Any]], threshold: float) -> bool:
    return bool(label_condition(attributed(events).__getitem__, threshold))


def serving_engaged(events: list[dict[str, Any]], threshold: float) -> bool:
    return any(serving_handlers.is_engagement(e, threshold) for e in events)


def test_every_outcome_type_has_a_training_flag():
    assert set(OUTCOME_FLAGS) == set(OUTCOME_TYPES)


@pytest.mark.parametrize(
    ("outcome", "engaged"),
    [
        (event("like"), True),
        (event("share"), True),
        (event("comment"), False),  # the decision: comments are not engagement
        (event("follow"), False),
        (event("skip"), False),
        (event("play", 5_000), True),  # exactly the 0.5 threshold
        (event("play", 4_999), False),
        (event("play", 30_000), True),  # watched past the end: capped at 1
    ],
)
def test_serving_and_the_training_label_agree_on_each_outcome(outcome, engaged):
    assert serving_engaged([outcome], 0.5) is engaged
    assert training_label([outcome], 0.5) is engaged


outcome_strategy = st.builds(
    event,
    st.sampled_from(OUTCOME_TYPES),
    st.integers(0, 60_000),
    st.integers(1, 30_000),
)


@settings(max_examples=300, deadline=None)
@given(
    outcomes=st.lists(outcome_strategy, max_size=6),
    threshold=st.one_of(st.sampled_from([0.25, 0.5, 0.95, 1.0]), st.floats(0.01, 1.0)),
)
def test_an_impression_is_positive_exactly_when_serving_would_count_one_of_its_outcomes(outcomes, threshold):
    assert training_label(outcomes, threshold) == serving_engaged(outcomes, threshold)


def test_the_registry_measure_sums_exactly_the_events_that_can_be_engagement():
    assert MEASURES["engagement"].event_types == ENGAGEMENT_TYPES
    assert "comment" not in MEASURES["engagement"].value
