"""Synthetic competition data: cryo-ET-like tomograms of rod-shaped bacteria with flagellar motors, written as JPEG
slices with train_labels.csv, sample_submission.csv and test_solution.csv, calibrated on the real label file."""

from kitlib.data.synth.generate import MARKER, SIZES, STYLE_FILE, SynthResult, synth_params, synthesize
from kitlib.data.synth.style import STYLES, Style

__all__ = ["MARKER", "SIZES", "STYLES", "STYLE_FILE", "Style", "SynthResult", "synth_params", "synthesize"]
