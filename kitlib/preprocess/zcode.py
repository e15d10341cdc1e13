"""The z encoding of the training-export contract (pure numpy, no torch).

A label's third point value carries the motor's z offset from the stack's centre slice:
``zenc = clip((dz / z_span + 1) / 2, ZENC_MIN, 1)`` with ``z_span = 2 * stack_stride``; ``zenc == 0`` means
"z unknown" (ultralytics zeroes points that leave the frame). The z-head predicts zenc in (0, 1) (a sigmoid).
"""

from __future__ import annotations

import numpy as np

ZENC_MIN = 0.001  # smallest encoded value: 0 is reserved for "unknown"


def z_span_for(stack_stride: int) -> int:
    """Slices covered from the stack's centre to either outer channel and beyond: 2 * stack_stride."""
    return 2 * int(stack_stride)


def encode_dz(dz, z_span: float) -> np.ndarray:
    """dz (slices, motor_z - centre_z) -> zenc in [ZENC_MIN, 1]."""
    if z_span <= 0:
        raise ValueError(f"z_span must be positive, got {z_span}")
    return np.clip((np.asarray(dz, dtype=np.float64) / z_span + 1.0) / 2.0, ZENC_MIN, 1.0)


def decode_zenc(zenc, z_span: float) -> np.ndarray:
    """zenc in (0, 1] -> dz in slices, in (-z_span, z_span]."""
    return (2.0 * np.asarray(zenc, dtype=np.float64) - 1.0) * z_span
