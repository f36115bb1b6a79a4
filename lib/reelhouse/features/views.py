"""The online store's views of features, named once.

* ``<entity>_features`` (:func:`features_view`): one row per entity key holding the registry's
  features. The batch layer's materialisation (online/) and the speed layer (speed/) write it;
  serving reads it on the request path.
* ``<entity>_tiles`` (:func:`tiles_view`): the speed layer's hourly tiles of measure sums, its own
  state (only the speed layer writes and reads them).

The names live in the features layer, not in the jobs that write them, so the batch loader and
the request path do not depend on the streaming job's package to find the rows they share.
"""

from __future__ import annotations


def features_view(entity: str) -> str:
    return f"{entity}_features"


def tiles_view(entity: str) -> str:
    return f"{entity}_tiles"
