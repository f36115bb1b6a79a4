"""The online feature store: the latest feature values per entity, served to the feed.

One small interface (:class:`OnlineStore`) chosen by config (``online_store.type``); rows are
versioned (an older write never replaces a newer one), carry the time their values became
known, and expire after a TTL. Reads are batched: one call for a user and all its candidates.
"""

from reelhouse.online.sqlite import SqliteOnlineStore
from reelhouse.online.store import FeatureRow, OnlineStore, open_online_store

__all__ = ["FeatureRow", "OnlineStore", "SqliteOnlineStore", "open_online_store"]
