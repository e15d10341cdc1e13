"""The one error type for bad competition data."""


class DataError(ValueError):
    """Bad input data. The message starts with the offending path: ``"<path>: <problem>"``."""
