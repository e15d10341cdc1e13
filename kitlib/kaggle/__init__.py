"""Kaggle plumbing: credentials, three dataset bundles, push / status / output / submit through the real `kaggle` API.

Nothing here imports `kaggle` at module level: the package authenticates (and prints help) at import time, so it is
imported only after `credentials.resolve()` has found credentials.
"""

from kitlib.kaggle.errors import KaggleError, KaggleSetupError

__all__ = ["KaggleError", "KaggleSetupError"]
