"""reelhouse: a TikTok-style recommendation lakehouse.

Where an event goes, folder by folder: ``events`` (the contract) -> ``kafka`` (clients, topics,
offsets) -> ``streaming`` (Spark reads Kafka, ingestion) -> ``lake`` (Delta tables). ``config``
holds typed settings, ``stack`` the local services and ``simulator`` the synthetic traffic.
"""

__version__ = "0.1.0"
