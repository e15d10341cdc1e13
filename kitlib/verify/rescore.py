"""The verified score (pure numpy): how the detector's and the verifier's opinions of a candidate combine."""

from __future__ import annotations

import numpy as np


def verified_scores(detector_scores: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Detector score x verifier probability, both in [0, 1]: a candidate ranks high only when both stages believe
    it (measured on the demo: better than either alone, or than the probability re-ranking the candidates)."""
    s, p = np.asarray(detector_scores, np.float64), np.asarray(probabilities, np.float64)
    if s.shape != p.shape:
        raise ValueError(f"one probability per candidate: {s.shape} scores, {p.shape} probabilities")
    return s * p


def best_verified(detector_scores: np.ndarray, probabilities: np.ndarray) -> tuple[int, float]:
    """(index, verified score) of the best candidate; on a tie the earlier one (the detector's order) wins."""
    scores = verified_scores(detector_scores, probabilities)
    if not len(scores):
        raise ValueError("no candidates to choose from")
    best = int(np.argmax(scores))
    return best, float(scores[best])
