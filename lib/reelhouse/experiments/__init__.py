"""Experiments: deterministic bucketing of users into variants, and the A/B analysis of their outcomes."""
