"""Pure numpy preprocessing: percentile contrast, the spacing policy's resampling, 5-channel slice stacks, the z encoding."""

from kitlib.preprocess.contrast import apply_window, normalize_tomogram, percentile_window
from kitlib.preprocess.grid import model_grid, stack_batches
from kitlib.preprocess.resample import (
    grid_policy,
    resample_factor,
    resample_volume,
    resampled_shape,
    to_original,
    to_resampled,
)
from kitlib.preprocess.stacks import make_stack, make_stacks, reflect_index, stack_indices, z_average

__all__ = [
    "apply_window",
    "grid_policy",
    "make_stack",
    "make_stacks",
    "model_grid",
    "normalize_tomogram",
    "percentile_window",
    "reflect_index",
    "resample_factor",
    "resample_volume",
    "resampled_shape",
    "stack_batches",
    "stack_indices",
    "to_original",
    "to_resampled",
    "z_average",
]
