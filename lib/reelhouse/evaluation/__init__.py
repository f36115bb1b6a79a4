"""Offline evaluation: interaction logs in, every model's top-K metrics out.

``imports`` reads and validates interaction logs (CSV/Parquet) and builds evaluation data;
``lakehouse`` builds it from the lake's silver events (the top-K metrics are :mod:`reelhouse.recall.metrics`);
``protocol`` fits and scores the models (baselines, recall sources, the ranked pipeline);
``pipeline`` is the recall + LightGBM ranking pipeline; ``report`` writes the table and plot;
``run`` is what ``reelhouse evaluate`` calls.
"""
