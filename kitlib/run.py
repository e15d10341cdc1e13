"""The run folder: its layout, defined once here, and the rule that a new run never overwrites an old one.

    runs/<name>/
      config.yaml           the KitConfig the run was created with (what predict, z-error and bundle read)
      run.json              when it was created, by which kit version and `git describe` of the kit's source
      releases.json         its ledger on Kaggle: weights bundles, dataset / kernel versions, submissions and scores
      folds.csv             the fold assignment it was scored with
      fold<k>/              ultralytics' training folder of the model that holds fold k out:
        weights/best.pt       its checkpoint (`fold_checkpoint`), last.pt, results.csv, plots
        train.log             its training's output when folds train side by side (`train.parallel_folds`)
      export/stacks/        every tomogram's training stacks, stored once (a cache: safe to delete)
      export/fold<k>/       fold k's training export: links into export/stacks
      verify/               each held-out tomogram's candidates with the verifier's patches (a cache: safe to delete)
      verifier.pt           the verifier's fold networks (verify.enabled), which rescore the candidates
      presence.json         the presence rule tuned on the out-of-fold predictions
      oof.csv, score.json   out-of-fold candidates and the local score; f2_curve.png, score_hist.png
      submission.csv        the test split's submission; test_candidates.csv, test_detections.png, demo.json
      z_error.json          the z-head check; z_error.png
      review.html           the page for checking the out-of-fold mistakes against the labels (make review)

A folder of flat `*.pt` checkpoints with `config.yaml` and `presence.json` beside them (the `weights` dataset, or a
train kernel's output) is read the same way: `checkpoints()` finds its `*.pt`.

Creating a run under a name that already holds one (`config.yaml` exists) is refused unless asked (`exist_ok`:
replace its files, `resume`: continue it); nothing outside the layout above is ever written or deleted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from kitlib.config import KitConfig
from kitlib.data.errors import DataError
from kitlib.data.folds import FOLDS_FILENAME
from kitlib.version import package_version, version_stamp

DEFAULT_PROJECT = Path("runs")
_FOLD_DIR = re.compile(r"fold(\d+)$")
_FOLD_FILE = re.compile(r"fold(\d+)\.pt$")
VERIFIER_FILE = "verifier.pt"  # beside the detectors' checkpoints, in a run and in a weights dataset


def best_checkpoint(save_dir: Path) -> Path:
    """ultralytics' best checkpoint in a training folder."""
    return Path(save_dir) / "weights" / "best.pt"


def last_checkpoint(save_dir: Path) -> Path:
    """ultralytics' latest checkpoint in a training folder (what a resume continues)."""
    return Path(save_dir) / "weights" / "last.pt"


def fold_of_file(path: Path) -> int | None:
    """The fold of a flat fold checkpoint's name (`fold2.pt` -> 2), else None."""
    m = _FOLD_FILE.match(Path(path).name)
    return int(m.group(1)) if m else None


class RunExistsError(DataError):
    """A new run was asked for under a name that already holds one."""


@dataclass(frozen=True)
class RunDir:
    """Paths of one run folder (nothing is created until a writer asks)."""

    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def presence(self) -> Path:
        return self.root / "presence.json"

    @property
    def folds_csv(self) -> Path:
        return self.root / FOLDS_FILENAME

    @property
    def oof(self) -> Path:
        return self.root / "oof.csv"

    @property
    def score(self) -> Path:
        return self.root / "score.json"

    @property
    def submission(self) -> Path:
        return self.root / "submission.csv"

    @property
    def test_candidates(self) -> Path:
        return self.root / "test_candidates.csv"

    @property
    def demo(self) -> Path:
        return self.root / "demo.json"

    @property
    def z_error(self) -> Path:
        return self.root / "z_error.json"

    @property
    def info(self) -> Path:
        """run.json: created, kit_version, git (written when the run is claimed)."""
        return self.root / "run.json"

    @property
    def releases(self) -> Path:
        """releases.json: the run's Kaggle ledger (`kitlib.release.runs`)."""
        return self.root / "releases.json"

    @property
    def review(self) -> Path:
        """`make review`'s page of out-of-fold mistakes to check (it exports labels_override.csv)."""
        return self.root / "review.html"

    def plot(self, name: str) -> Path:
        """`<run>/<name>.png`."""
        return self.root / f"{name}.png"

    def fold_dir(self, fold: int) -> Path:
        """ultralytics' save_dir for the model that holds `fold` out."""
        return self.root / f"fold{int(fold)}"

    def fold_checkpoint(self, fold: int) -> Path:
        return best_checkpoint(self.fold_dir(fold))

    def fold_last(self, fold: int) -> Path:
        return last_checkpoint(self.fold_dir(fold))

    def fold_file(self, fold: int) -> Path:
        """A fold's checkpoint as a flat file (a weights dataset, a train kernel's output)."""
        return self.root / f"fold{int(fold)}.pt"

    def export_dir(self, fold: int) -> Path:
        return self.root / "export" / f"fold{int(fold)}"

    @property
    def verifier(self) -> Path:
        """The verifier's fold networks (`kitlib.verify.Verifier`)."""
        return self.root / VERIFIER_FILE

    @property
    def verify_patches(self) -> Path:
        """Each held-out tomogram's candidates and the verifier's patches (`kitlib.verify.store`)."""
        return self.root / "verify"

    @property
    def export_stacks(self) -> Path:
        """The stacks every fold's export links to (each tomogram read and stored once)."""
        return self.root / "export" / "stacks"

    def fold_checkpoints(self) -> dict[int, Path]:
        """fold -> checkpoint of every fold model present: `fold<k>/weights/best.pt`, else a flat `fold<k>.pt`."""
        found = {fold: p for p in self.root.glob("fold*.pt") if (fold := fold_of_file(p)) is not None}
        for d in self.root.glob("fold*"):
            m = _FOLD_DIR.match(d.name)
            if m and best_checkpoint(d).is_file():
                found[int(m.group(1))] = best_checkpoint(d)
        return dict(sorted(found.items()))

    def checkpoints(self) -> list[Path]:
        """Every detector checkpoint to ensemble: the fold models, else every flat `*.pt` but the verifier's (a weights
        dataset)."""
        folds = self.fold_checkpoints()
        return list(folds.values()) if folds else sorted(p for p in self.root.glob("*.pt") if p.name != VERIFIER_FILE)

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> "RunDir":
        """The run a checkpoint belongs to by this layout: `<run>/fold<k>/weights/best.pt`, `<run>/weights/best.pt`
        (a single `train` run) or `<run>/<name>.pt` (a weights dataset)."""
        p = Path(checkpoint)
        if p.parent.name == "weights":
            up = p.parent.parent
            return cls(up.parent if _FOLD_DIR.match(up.name) else up)
        return cls(p.parent)

    def exists(self) -> bool:
        """A run lives here (its config was written)."""
        return self.config.is_file()

    def load_config(self) -> KitConfig:
        """The run's own config."""
        if not self.config.is_file():
            raise DataError(f"{self.config}: not found: {self.root} is not a run folder (make local-score RUN=... makes one)")
        return KitConfig.load(self.config)

    def save_config(self, cfg: KitConfig) -> Path:
        return cfg.save(self.config)

    def load_info(self) -> dict:
        """run.json's record ({} for a run made before the kit wrote one)."""
        return _read_json(self.info, {}, "the run's creation record; fix or remove it")

    def save_info(self) -> Path:
        """Record now, the kit's package version and `git describe` of its source tree as the run's creation."""
        info = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "kit_version": package_version(), "git": version_stamp()}
        return _write_json(self.info, info)

    def load_releases(self) -> list[dict]:
        """releases.json's entries, oldest first ([] before the first release)."""
        return _read_json(self.releases, [], "the run's Kaggle ledger; fix or move it away")

    def save_releases(self, entries: list[dict]) -> Path:
        return _write_json(self.releases, entries)


def _read_json(path: Path, empty, what: str):
    """A JSON file's data, `empty` when it does not exist; DataError when it cannot be read."""
    if not path.is_file():
        return empty
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e}): {what}") from e


def _write_json(path: Path, data) -> Path:
    """Write `data` as indented JSON, replacing `path` only once complete."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)
    return path


def run_dir(run: str | Path, project: str | Path = DEFAULT_PROJECT) -> RunDir:
    """The run folder of `run`: a path when it names an existing folder or has a `/`, else `<project>/<run>`."""
    path = Path(run)
    if path.is_dir() or len(path.parts) > 1:
        return RunDir(path)
    return RunDir(Path(project) / path)


def open_run(run: str | Path, project: str | Path = DEFAULT_PROJECT) -> RunDir:
    """An existing run (DataError naming the folder otherwise)."""
    rd = run_dir(run, project)
    if not rd.root.is_dir():
        raise DataError(f"{rd.root}: no such run (train one with: make local-score RUN={rd.name})")
    return rd


def claim_run(
    run: str | Path, project: str | Path = DEFAULT_PROJECT, exist_ok: bool = False, resume: bool = False
) -> RunDir:
    """The run folder of `run`, created, with its creation recorded (`run.json`; a resumed run keeps its own); a name
    that already holds a run is refused unless `exist_ok` (its files are replaced as the new run writes them; its
    Kaggle ledger `releases.json` is kept) or `resume` (which needs one)."""
    rd = run_dir(run, project)
    if rd.exists() and not (exist_ok or resume):
        raise RunExistsError(
            f"{rd.root}: a run of that name exists; choose another name (RUN=... / --run), continue it "
            f"(RESUME=1 / --resume) or replace its files (EXIST_OK=1 / --exist-ok)"
        )
    if resume and not rd.exists():
        raise DataError(f"{rd.root}: nothing to resume (no config.yaml)")
    rd.root.mkdir(parents=True, exist_ok=True)
    if not (resume and rd.info.is_file()):  # a resumed run keeps its creation record
        rd.save_info()
    return rd


def new_run(
    run: str | Path, cfg: KitConfig, project: str | Path = DEFAULT_PROJECT, exist_ok: bool = False,
    resume: bool = False,
) -> tuple[RunDir, KitConfig]:
    """`claim_run`, then record `cfg` as the run's config; returns the folder and the config to use (when resuming,
    the run's own saved config: `cfg` is ignored)."""
    rd = claim_run(run, project, exist_ok, resume)
    if resume:
        return rd, rd.load_config()
    rd.save_config(cfg)
    return rd, cfg


__all__ = ["DEFAULT_PROJECT", "VERIFIER_FILE", "RunDir", "RunExistsError", "best_checkpoint", "claim_run",
           "fold_of_file", "last_checkpoint", "new_run", "open_run", "run_dir"]
