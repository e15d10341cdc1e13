"""Errors of the Kaggle layer."""


class KaggleError(RuntimeError):
    """Kaggle (or the kaggle client on its behalf) reported a failure; the message carries the server's words."""


class KaggleSetupError(KaggleError):
    """Local setup is missing or wrong (credentials); raised before anything is sent."""
