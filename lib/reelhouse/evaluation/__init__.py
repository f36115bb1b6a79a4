"""Offline evaluation: interaction logs in, every model's top-K metrics out.

``logfile`` reads, validates and splits interaction logs (CSV/Parquet), ``item_features`` their
item attributes and vectors, ``data`` turns clean rows into evaluation data and ``lake_import``
writes an imported log to the lake;
``lakehouse`` builds it from the lake's silver events (the top-K metrics are :mod:`reelhouse.recall.metrics`);
``protocol`` fits and scores the models (baselines, recall sources, the ranked pipeline);
``pipeline`` is the recall + LightGBM ranking pipeline; ``report`` writes the table and plot;
``run`` is what ``reelhouse evaluate`` calls; ``quality`` is the runs of ``make bench-quality``.
"""
