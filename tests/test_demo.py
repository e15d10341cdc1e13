"""`make demo`'s data step: synthesise once, reuse on a rerun, replace demo data written with other settings."""

from __future__ import annotations

import kitlib.demo as demo


def test_demo_data_is_synthesised_once_and_replaced_when_the_settings_change(tmp_path):
    root = tmp_path / "demo"
    synth = dict(n_train=2, n_test=1, size="tiny", seed=0)
    demo.ensure_demo_data(root, synth)
    labels = root / "train_labels.csv"
    first = labels.stat().st_mtime_ns
    demo.ensure_demo_data(root, synth)
    assert labels.stat().st_mtime_ns == first  # reused

    demo.ensure_demo_data(root, {**synth, "n_train": 3})
    assert len(list((root / "train").iterdir())) == 3  # the older demo data was replaced
