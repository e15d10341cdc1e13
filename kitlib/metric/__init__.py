"""The exact competition metric (pure polars/numpy): `score`, and `breakdown` / `summarize` to see why."""

from kitlib.metric.f2 import breakdown, f_beta, score, summarize

__all__ = ["breakdown", "f_beta", "score", "summarize"]
