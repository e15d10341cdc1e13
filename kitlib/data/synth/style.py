"""Appearance styles of the synthetic generator: the ranges one tomogram's imaging and specimen are drawn from.

Real tomograms differ by microscope, detector, dose, reconstruction, ice and organism. Each synthetic tomogram draws
one named style (a family of ranges), then its own values inside them, so a dataset mixes several renderings. The
families are explicit so a run can train on some and be scored on one it never saw (`make generalize`).
"""

from __future__ import annotations

from dataclasses import dataclass

Range = tuple[float, float]


@dataclass(frozen=True)
class Style:
    """Ranges (low, high) drawn uniformly per tomogram. Lengths in Angstrom, grey levels in 8-bit units."""

    name: str
    # imaging
    wedge_stretch: Range = (1.3, 1.8)  # z elongation of compact objects by the missing wedge
    bandpass: Range = (0.0, 0.0)  # CTF-like: fraction of the density's low frequencies removed (0: none)
    bandpass_a: Range = (400.0, 900.0)  # sigma of the low-pass that is removed
    blur_a: Range = (0.0, 0.0)  # resolution loss: sigma of a gaussian blur of the density
    noise_per_gain: Range = (0.45, 0.7)  # noise std / gain at the native grid
    shot_noise: Range = (0.0, 0.0)  # part of the noise whose std follows sqrt(grey), as in counting at low dose
    ice: Range = (1.0, 1.0)  # ice thickness relative to thin ice: noise x ice, contrast / sqrt(ice)
    gradient: Range = (0.0, 14.0)  # lighting change across the field of view
    z_drift: Range = (0.0, 0.0)  # mean grey change from the top slice to the bottom one (either sign)
    jpeg_quality: Range = (85.0, 95.0)
    # specimen
    gold_per_um2: Range = (2.0, 6.0)  # fiducial clusters x 2
    motor_scale: Range = (0.7, 0.95)  # x the C-ring's 530 A diameter: ~370-500 A
    motor_core: Range = (0.0, 0.85)  # density of the bell's core: 0 shows a hollow ring, 0.85 a filled bell
    filament_length_a: Range = (400.0, 3500.0)
    filament_bend: Range = (0.2, 0.9)  # std of the filament's turn away from the motor's normal


STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style("clean"),  # thin ice, good dose, little processing
        Style("ctf", wedge_stretch=(1.5, 2.1), bandpass=(0.5, 0.9), blur_a=(10.0, 30.0), jpeg_quality=(75.0, 95.0)),
        Style("dose", noise_per_gain=(0.6, 0.95), shot_noise=(0.5, 1.0), jpeg_quality=(50.0, 80.0),
              gold_per_um2=(4.0, 12.0)),
        Style("thick", wedge_stretch=(1.6, 2.2), bandpass=(0.0, 0.4), ice=(1.2, 1.6), gradient=(10.0, 35.0),
              z_drift=(8.0, 30.0)),
    )
}


def check_styles(names) -> tuple[str, ...]:
    """The style names as a sorted tuple (None: all of them); an unknown one raises ValueError naming the choices."""
    if names is None:
        return tuple(STYLES)
    names = tuple(sorted(set(names)))
    unknown = [n for n in names if n not in STYLES]
    if unknown or not names:
        raise ValueError(f"unknown style(s) {unknown or names!r}: choose from {', '.join(STYLES)}")
    return names
