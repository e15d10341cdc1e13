"""Competition data: tomogram folders, labels, submissions, layout, synthetic data, folds."""

from kitlib.data.errors import DataError
from kitlib.data.labels import LABEL_COLUMNS, TomoRecord, load_labels

__all__ = ["DataError", "LABEL_COLUMNS", "TomoRecord", "load_labels"]
