"""Presence rules (which tomograms get a motor): a tuned threshold or quantile, applied at inference (pure numpy)."""

from kitlib.presence.rule import PresenceRule, f2_curve, f2_quantile_curve, tune_presence

__all__ = ["PresenceRule", "f2_curve", "f2_quantile_curve", "tune_presence"]
