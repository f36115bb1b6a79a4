"""Re-ranking: from scored candidates to a page of ``k`` videos.

Rules, in order of precedence:

1. Videos the user has already seen (shown or watched, see state.py) never come back.
2. ``exploration_slots`` places go to exploration candidates (new videos) when there are any,
   the best-scored ones first, even if the model scores them below the rest of the page.
3. Diversity: at most ``max_per_topic`` videos of one topic and ``max_per_creator`` of one
   creator. A video whose topic or creator is unknown counts against no cap.
4. ``k`` videos whenever ``k`` unseen candidates exist: when the caps cannot be met with what is
   left (a short candidate list, one dominant topic), they are relaxed, since a shorter page is
   worse for the user than a less diverse one. Exploration places are filled first, then the
   best-scored remaining candidates, caps ignored.

Within these rules the highest scores win, and the page is in descending score order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Page:
    picked: np.ndarray  # candidate indices, page order
    relaxed: bool  # the caps had to be relaxed to fill k


def rerank(
    scores: np.ndarray,
    topics: np.ndarray,
    creators: np.ndarray,
    exploration: np.ndarray,
    k: int,
    max_per_topic: int,
    max_per_creator: int,
    exploration_slots: int,
    seen: np.ndarray | None = None,
) -> Page:
    """Indices of the page's candidates. ``topics``/``creators``: int codes, -1 unknown;
    ``exploration``, ``seen``: bool per candidate. NaN scores rank last."""
    order = np.argsort(-np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf), kind="stable")
    if seen is not None:
        order = order[~np.asarray(seen, dtype=bool)[order]]
    ranked = order.tolist()
    k = min(k, len(ranked))
    topic = np.asarray(topics).tolist()
    creator = np.asarray(creators).tolist()
    explore = np.asarray(exploration, dtype=bool).tolist()
    reserve = min(exploration_slots, k, sum(explore[i] for i in ranked))

    picked: list[int] = []
    taken: set[int] = set()
    per_topic: dict[int, int] = {}
    per_creator: dict[int, int] = {}

    def fits(i: int) -> bool:
        t, c = topic[i], creator[i]
        return (t < 0 or per_topic.get(t, 0) < max_per_topic) and (c < 0 or per_creator.get(c, 0) < max_per_creator)

    def take(i: int) -> None:
        picked.append(i)
        taken.add(i)
        if topic[i] >= 0:
            per_topic[topic[i]] = per_topic.get(topic[i], 0) + 1
        if creator[i] >= 0:
            per_creator[creator[i]] = per_creator.get(creator[i], 0) + 1

    def fill(limit: int, capped: bool, exploring_only: bool = False, regular_limit: int | None = None) -> None:
        """Take candidates by score until ``limit`` are picked; with ``regular_limit``, at most that
        many non-exploration ones; ``capped``: only those within the caps."""
        regular = sum(not explore[i] for i in picked)
        for i in ranked:
            if len(picked) >= limit:
                return
            if i in taken or (exploring_only and not explore[i]):
                continue
            if regular_limit is not None and not explore[i] and regular >= regular_limit:
                continue
            if not capped or fits(i):
                take(i)
                regular += not explore[i]

    # Best first within the caps, leaving ``reserve`` places that only exploration videos may take.
    fill(k, capped=True, regular_limit=k - reserve)
    owed = max(0, reserve - sum(explore[i] for i in picked))
    before = len(picked)
    if owed:  # the exploration videos left all break a cap: their places outrank the caps
        fill(before + owed, capped=False, exploring_only=True)
    relaxed = len(picked) > before
    fill(k, capped=True)
    before = len(picked)
    fill(k, capped=False)  # what is left cannot meet the caps: relax them rather than return fewer
    relaxed = relaxed or len(picked) > before
    position = {i: p for p, i in enumerate(ranked)}
    picked.sort(key=position.__getitem__)
    return Page(np.array(picked, dtype=np.int64), relaxed=relaxed)


def explore(
    page: np.ndarray, scores: np.ndarray, epsilon: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The served page and each slot's propensity: epsilon-greedy per slot over the rules' page.

    For slot ``p`` of the page, ``M`` candidates are not placed yet and the greedy choice is the
    next video of ``page`` (the rules' pick) not placed yet, or, once a draw has taken one of those,
    the best-scored candidate left. With probability ``epsilon`` the slot shows a uniform draw among
    the ``M`` (the greedy one included), else the greedy one; so the probability of what it shows,
    given the request's candidates and the slots before, is ``(1 - epsilon) + epsilon / M`` for the
    greedy video and ``epsilon / M`` for any other. That is the ``propensity`` an impression logs
    (docs/events.md): every candidate has a positive chance at every slot, which off-policy
    evaluation needs. A drawn video may break the diversity caps; exploration is worth that.
    Returns candidate indices in page order and float64 propensities."""
    page = np.asarray(page, dtype=np.int64)
    n, k = len(scores), len(page)
    if epsilon <= 0 or k == 0:
        return page, np.ones(k)
    placed = np.zeros(n, dtype=bool)
    fallback: list[int] | None = None  # best-scored first, computed when a draw first needs it
    greedy_queue = page.tolist()
    picked: list[int] = []
    propensity = np.empty(k)
    for slot in range(k):
        while greedy_queue and placed[greedy_queue[0]]:
            greedy_queue.pop(0)
        if greedy_queue:
            greedy = greedy_queue[0]
        else:
            if fallback is None:
                fallback = np.argsort(
                    -np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf), kind="stable"
                ).tolist()
            greedy = next(i for i in fallback if not placed[i])
        remaining = n - slot
        if rng.random() < epsilon:
            choice = int(np.flatnonzero(~placed)[rng.integers(remaining)])
        else:
            choice = greedy
        propensity[slot] = (1.0 - epsilon) * (choice == greedy) + epsilon / remaining
        placed[choice] = True
        picked.append(choice)
    return np.asarray(picked, dtype=np.int64), propensity
