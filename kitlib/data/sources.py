"""Extra training sources and the labels every training and score reads.

An extra source is a folder in the competition layout (``train/<tomo_id>/`` slices and ``train_labels.csv``), e.g. a
public cryo-ET motor dataset converted to it. Its tomograms train every fold and are never held out, scored or used
to tune presence, so the competition's folds and out-of-fold rows do not change when a source is added. Their
tomo_ids are prefixed with the source's name (``<name>.<tomo_id>``) so they cannot collide with the competition's.

A source's trust is written after its folder: ``DIR:z_window=2:negatives=false`` (positives only within +-2 slices of
its motors; no negative stacks from it, for sources whose motor-free tomograms may hide unlabelled motors).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from kitlib.config import DataConfig
from kitlib.data.errors import DataError
from kitlib.data.labels import TomoRecord, load_labels
from kitlib.data.layout import CompetitionData
from kitlib.data.overrides import apply_overrides, file_sha256, read_overrides


@dataclass(frozen=True)
class ExtraSource:
    """One extra source: its folder, the name that prefixes its tomo_ids, and its trust."""

    path: Path
    name: str
    z_window: int | None = None  # None: the export's z_window
    negatives: bool = True

    def describe(self, n_tomograms: int) -> dict:
        """What score.json and the fold checkpoints record of the source."""
        return {"name": self.name, "path": str(self.path), "tomograms": n_tomograms,
                "z_window": self.z_window, "negatives": self.negatives}


@dataclass(frozen=True)
class TrainingLabels:
    """The competition's records (folds, scoring, tuning) and the extra sources' (training only), both with the
    labels override applied; `sources` describes each source, `override` the override file (path and sha256)."""

    records: list[TomoRecord]
    extra: list[TomoRecord]
    sources: list[dict]
    override: dict | None

    @property
    def for_training(self) -> list[TomoRecord]:
        return self.records + self.extra


def parse_source(spec: str) -> ExtraSource:
    """``DIR[:z_window=N][:negatives=true|false]`` -> `ExtraSource`; a DataError says what is wrong with the spec."""
    folder, *options = spec.split(":")
    path = Path(folder).expanduser()
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", path.resolve().name).strip("-") or "extra"
    trust: dict = {}
    for option in options:
        key, sep, value = option.partition("=")
        if key == "z_window" and sep and value.isdigit():
            trust["z_window"] = int(value)
        elif key == "negatives" and value.lower() in ("true", "false"):
            trust["negatives"] = value.lower() == "true"
        else:
            raise DataError(f"extra source {spec!r}: bad option {option!r} "
                            f"(options: z_window=<slices>, negatives=true|false)")
    return ExtraSource(path, name, **trust)


def load_extra(source: ExtraSource, taken: set[str]) -> list[TomoRecord]:
    """The source's records with prefixed tomo_ids, folders and trust; DataError when the folder is not in the
    competition layout, a tomogram folder is missing, or a prefixed id is already `taken`."""
    data = CompetitionData(source.path)
    if not data.labels_csv.is_file():
        raise DataError(f"{source.path}: an extra source needs train_labels.csv and train/<tomo_id>/ "
                        f"(the competition's layout)")
    records = []
    for rec in load_labels(data.labels_csv):
        folder = data.split_dir("train") / rec.tomo_id
        if not folder.is_dir():
            raise DataError(f"{folder}: listed in {data.labels_csv} but there is no such folder")
        tomo_id = f"{source.name}.{rec.tomo_id}"
        if tomo_id in taken:
            raise DataError(f"{source.path}: tomo_id {tomo_id} is already a competition tomogram's; rename the folder")
        taken.add(tomo_id)
        records.append(dataclasses.replace(rec, tomo_id=tomo_id, folder=folder, source=source.name,
                                           z_window=source.z_window, negatives=source.negatives))
    return records


def load_training_labels(data: CompetitionData, cfg: DataConfig) -> TrainingLabels:
    """The competition's labels and `cfg.extra`'s, with `cfg.labels_override` applied to both."""
    records = load_labels(data.labels_csv)
    taken = {r.tomo_id for r in records}
    extra, sources = [], []
    for spec in cfg.extra:
        source = parse_source(spec)
        named = {s["name"] for s in sources}
        if source.name in named:  # two folders of one name: keep their tomograms apart
            suffix = next(k for k in range(2, len(named) + 3) if f"{source.name}-{k}" not in named)
            source = dataclasses.replace(source, name=f"{source.name}-{suffix}")
        loaded = load_extra(source, taken)
        extra += loaded
        sources.append(source.describe(len(loaded)))
    override = None
    if cfg.labels_override:
        path = Path(cfg.labels_override)
        rows = read_overrides(path)
        fixed = apply_overrides(records + extra, rows, path)
        records, extra = fixed[: len(records)], fixed[len(records):]
        override = {"path": str(path), "sha256": file_sha256(path), "rows": len(rows)}
    return TrainingLabels(records, extra, sources, override)
