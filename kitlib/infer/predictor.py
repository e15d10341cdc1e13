"""`Predictor`: a run's fold models, verifier, config, presence rule and TTA views, resolved and checked once.

Every entry point that predicts (the CLI, the demo, the inference kernel, the dry run, the bench) builds one with
`Predictor.from_run`; local scoring builds one per fold. Everything that is not a tomogram is checked here, before the
first tomogram is read: the config, the checkpoints (loadable, one stack stride, the config's channel count, one
class), the device, the views and the presence rule; each problem is one `DataError` / `ConfigError` line naming the
file. Nobody's config is changed: overrides give the predictor its own copy.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from kitlib.config import ConfigError, KitConfig, PreprocessConfig
from kitlib.data.errors import DataError
from kitlib.data.layout import CompetitionData
from kitlib.data.submission import write_submission
from kitlib.infer.predict import CANDIDATE_SCHEMA, candidates_to_submission, predict_tomograms
from kitlib.infer.tta import View, parse_views
from kitlib.preprocess import grid_policy
from kitlib.presence import PresenceRule
from kitlib.run import RunDir, open_run

if TYPE_CHECKING:
    from kitlib.verify.verifier import Verifier

AUTO_DEVICE = "auto"  # the first CUDA GPU when there is one, else the CPU


class Predictor:
    """Predicts splits with a fold ensemble. Build with `Predictor.from_run`."""

    def __init__(self, cfg: KitConfig, checkpoints: Sequence[Path], rule: PresenceRule | None, source: str,
                 models_grid: bool = True, verifier: Path | None = None):
        """`models_grid`: predict on the grid policy the checkpoints were trained with, whatever `cfg` says.
        `verifier`: a `verifier.pt` that rescores the candidates (its patch settings replace `cfg.verify`'s)."""
        self.source = source
        self.checkpoints = [Path(c) for c in checkpoints]
        if not self.checkpoints:
            raise DataError(f"{source}: no checkpoints (*.pt or fold*/weights/best.pt) to predict with")
        self.devices = resolve_devices(cfg.infer.device, source)
        # one process per device when there are several: each worker loads the models on its own device, so the
        # models here (which check the checkpoints before any tomogram) stay on the CPU
        here = self.devices[0] if len(self.devices) == 1 else "cpu"
        self.cfg = cfg.override({"infer": {"device": here}}, source)
        try:
            self.views: list[View] = parse_views(self.cfg.infer.tta)
        except ValueError as e:
            raise ConfigError(f"{source}: infer.tta: {e}") from e
        self.rule = rule
        self.detectors = self._load_detectors()
        self.cfg = self._grid_config(models_grid)
        self.verifier_path = None if verifier is None else Path(verifier)
        self.verifier: Verifier | None = None
        if self.verifier_path is not None:
            from kitlib.verify.verifier import Verifier

            self.verifier = Verifier.load(self.verifier_path)
            self.cfg = self.cfg.override({"verify": {**self.verifier.geometry(), "enabled": True}},
                                         f"{self.verifier_path} (the verifier's patches)")

    @classmethod
    def from_run(
        cls,
        source: str | Path | Sequence[Path],
        config: KitConfig | str | Path | None = None,
        preset: str | None = None,
        overrides: dict[str, Any] | None = None,
        presence: PresenceRule | str | Path | None = None,
        device: str | None = None,
        tta: Sequence[str] | None = None,
        need_rule: bool = True,
        verify: bool = True,
    ) -> "Predictor":
        """A predictor for a run folder (or a weights dataset folder), or for explicit checkpoints.

        Args:
            source: a run name / folder (its fold checkpoints, else its `*.pt`), or a list of checkpoint paths (their
                run is the folder the layout puts them in).
            config: the config (object or YAML) instead of the run's `config.yaml`; a YAML merges onto `preset`.
            preset: a preset instead of the run's config (only when asked: the run's own config is the default).
            overrides: nested `{section: {key: value}}` applied last (the CLI's `--set`).
            presence: the presence rule (object or JSON) instead of the run's `presence.json`.
            device: `cpu`, `0`, ... or `auto`; default the config's.
            tta: view names instead of the config's `infer.tta`.
            need_rule: False for out-of-fold prediction, before any rule was tuned.
            verify: rescore with the run's `verifier.pt` when it has one (unless `verify.enabled` is set false);
                False for out-of-fold prediction, which the verifier is trained on.
        """
        if isinstance(source, (str, Path)):
            run = open_run(source)
            checkpoints, where = run.checkpoints(), str(run.root)
        else:
            checkpoints = [Path(c) for c in source]
            run = RunDir.of_checkpoint(checkpoints[0]) if checkpoints else None
            where = str(checkpoints[0]) if checkpoints else "predict"
        cfg = _resolve_config(config, preset, run)
        changes: dict[str, dict[str, Any]] = {section: dict(keys) for section, keys in (overrides or {}).items()}
        if device is not None:
            changes.setdefault("infer", {})["device"] = str(device)
        if tta is not None:
            changes.setdefault("infer", {})["tta"] = list(tta)
        cfg = cfg.override(changes, "--set" if overrides else where)
        rule = _resolve_rule(presence, run, need_rule)
        explicit_grid = bool(set(changes.get("preprocess", {})) & set(grid_policy(cfg.preprocess)))
        wanted = verify and changes.get("verify", {}).get("enabled", True)
        verifier = run.verifier if wanted and run is not None and run.verifier.is_file() else None
        return cls(cfg, checkpoints, rule, where, models_grid=not explicit_grid, verifier=verifier)

    def _load_detectors(self) -> list:
        from kitlib.model import ZDetector

        icfg, channels = self.cfg.infer, self.cfg.preprocess.channels
        detectors = [ZDetector.load(c, device=icfg.device, half=icfg.half) for c in self.checkpoints]
        for d in detectors:
            if d.channels != channels:
                raise DataError(f"{d.path}: a {d.channels}-channel model; the kit's stacks have "
                                f"preprocess.channels = {channels} (not a checkpoint of this kit's training?)")
            if d.nc != 1:
                raise DataError(f"{d.path}: a {d.nc}-class detector; the kit's z-head detects one class (motor)")
        strides = {d.stack_stride for d in detectors}
        if len(strides) > 1:
            by_stride = {str(d.path): d.stack_stride for d in detectors}  # fold models are all named best.pt
            raise DataError(f"{self.source}: the checkpoints disagree on the stack stride {by_stride}: "
                            f"ensemble models of one run only")
        return detectors

    def _grid_config(self, models_grid: bool) -> KitConfig:
        """The config with the checkpoints' grid policy (their `kit_meta["grid"]`; older ones record none) unless
        `models_grid` is False: a model predicts on the grid it was trained on, not on a preset's."""
        grids = {json.dumps(d.meta["grid"], sort_keys=True): d.path for d in self.detectors if "grid" in d.meta}
        if len(grids) > 1:
            raise DataError(f"{self.source}: the checkpoints disagree on the grid policy "
                            f"{ {str(path): json.loads(g) for g, path in grids.items()} }: ensemble models of one run only")
        if not grids:
            return self.cfg
        trained, asked = json.loads(next(iter(grids))), grid_policy(self.cfg.preprocess)
        if trained == asked:
            return self.cfg
        if not models_grid:
            warnings.warn(f"{self.source}: predicting on grid {asked}, not the {trained} the models were trained on "
                          f"(--set preprocess.*)", stacklevel=3)
            return self.cfg
        return self.cfg.override({"preprocess": trained}, f"{self.source} (the models' grid policy)")

    def describe(self) -> str:
        """One line for logs: what predicts, how."""
        icfg = self.cfg.infer
        rule = f"{self.rule.kind} {self.rule.value:.4g}" if self.rule else "no presence rule"
        size = f"{icfg.imgsz} px" if icfg.imgsz else " / ".join(sorted({d.size_name() for d in self.detectors}))
        names = [c.parent.parent.name if c.parent.name == "weights" else c.name for c in self.checkpoints]
        return (f"{len(self.detectors)} model(s) {names} from {self.source}: {rule}, "
                f"device {','.join(self.devices)}, grid {_describe_grid(self.cfg.preprocess)}, {size}, "
                f"TTA {[v.name for v in self.views]}, "
                f"slice step {icfg.slice_step}, "
                + (f"verifier of {sum(map(len, self.verifier.nets.values()))} network(s) rescoring the top {icfg.top_k} candidates"
                   if self.verifier else "no verifier"))

    def predict_tomograms(
        self,
        data: CompetitionData,
        split: str,
        tomo_ids: Sequence[str],
        spacings: dict[str, float] | None = None,
        budget_s: float | None = None,
        progress: bool = True,
        patch_dir: Path | None = None,
        probes: dict[str, Any] | None = None,
    ) -> pl.DataFrame:
        """Best candidate per tomogram (`kitlib.infer.predict.CANDIDATE_SCHEMA`), in `tomo_ids` order; see
        `predict_tomograms` (`patch_dir`, `probes`: the verifier's training material). With several devices the
        tomograms are dealt round-robin to one worker process per device, each with the whole budget for its share
        (they run side by side)."""
        return self._predict(self.cfg, data, split, tomo_ids, spacings, budget_s, progress, patch_dir, probes)

    def _predict(self, cfg: KitConfig, data: CompetitionData, split: str, tomo_ids: Sequence[str],
                 spacings: dict[str, float] | None, budget_s: float | None, progress: bool,
                 patch_dir: Path | None = None, probes: dict[str, Any] | None = None) -> pl.DataFrame:
        if len(self.devices) == 1:
            return predict_tomograms(data, split, tomo_ids, self.detectors, cfg, self.views, spacings=spacings,
                                     budget_s=budget_s, progress=progress, verifier=self.verifier,
                                     patch_dir=patch_dir, probes=probes)
        return self._predict_sharded(cfg, data, split, list(tomo_ids), spacings, budget_s, patch_dir, probes)

    def _predict_sharded(self, cfg: KitConfig, data: CompetitionData, split: str, tomo_ids: list[str],
                         spacings: dict[str, float] | None, budget_s: float | None, patch_dir: Path | None,
                         probes: dict[str, Any] | None) -> pl.DataFrame:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        shards = [(device, tomo_ids[i :: len(self.devices)]) for i, device in enumerate(self.devices)]
        deadline = None if budget_s is None else time.time() + budget_s  # the workers' start-up counts too
        context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        with ProcessPoolExecutor(len(shards), mp_context=context) as pool:
            futures = [pool.submit(predict_shard, cfg.override({"infer": {"device": device}}, self.source),
                                   self.checkpoints, data.root, split, ids, spacings, deadline,
                                   verifier=self.verifier_path, patch_dir=patch_dir, probes=probes)
                       for device, ids in shards if ids]
            results = []
            for (device, ids), future in zip([s for s in shards if s[1]], futures):
                try:
                    results.append((device, ids, future.result()))
                except Exception as e:  # noqa: BLE001 - a worker's failure costs its rows only
                    results.append((device, ids, e))
        return merge_shards(tomo_ids, results)

    def predict_split(
        self, data: CompetitionData, split: str, out: Path, budget_s: float | None = None, progress: bool = True
    ) -> tuple[Path, pl.DataFrame]:
        """Write the submission for a split (sample-submission order for test) and return it with the candidates.

        Test tomograms have no known spacing: they are taken as the most common training spacing (the labels' mode),
        else `preprocess.assumed_spacing`. A sample-submission id whose folder is missing gets -1s with a warning; a
        folder that the sample submission does not list is skipped with a warning.
        """
        if self.rule is None:
            raise DataError(f"{self.source}: no presence rule: run local-score first, or pass --presence")
        out = check_output_path(out)
        folders = set(data.tomo_ids(split))
        expected = data.submission_ids() if split == "test" else sorted(folders)
        missing = [t for t in expected if t not in folders]
        if missing:
            warnings.warn(f"{data.split_dir(split)}: no folder for {missing[:5]} -> predicting no motor", stacklevel=2)
        extra = sorted(folders - set(expected))
        if extra:
            warnings.warn(f"{data.split_dir(split)}: {extra[:5]} not in the sample submission -> skipped", stacklevel=2)
        present = [t for t in expected if t in folders]
        spacing = assumed_spacing(data, self.cfg.preprocess.assumed_spacing)
        cfg = self.cfg.override({"preprocess": {"assumed_spacing": spacing}}, self.source)
        candidates = self._predict(cfg, data, split, present, None, budget_s, progress)
        failed = candidates.filter(pl.col("error").is_not_null())
        if len(present) and len(failed) == len(present):
            reasons = failed["error"].str.replace(r"^.*?: ", "").unique().to_list()
            warnings.warn(f"{data.split_dir(split)}: EVERY tomogram failed ({len(failed)}): "
                          f"{reasons[0] if len(reasons) == 1 else reasons[:3]}", stacklevel=2)
        submission = candidates_to_submission(candidates, self.rule.apply(candidates["score"].to_numpy()), expected)
        return write_submission(submission, out, expected), candidates


def predict_shard(cfg: KitConfig, checkpoints: list[Path], root: Path, split: str, tomo_ids: list[str],
                  spacings: dict[str, float] | None, deadline: float | None, threads: int | None = None,
                  verifier: Path | None = None, patch_dir: Path | None = None, probes: dict[str, Any] | None = None,
                  ) -> pl.DataFrame:
    """One worker's share: its own predictor on `cfg`'s device and grid (runs in a spawned process), within the time
    left before `deadline` (a `time.time()`; None: no budget), with `threads` torch threads (None: the default),
    rescored by `verifier` (a `verifier.pt`), writing the verifier's material to `patch_dir` (`predict_tomograms`)."""
    from kitlib import runtime

    runtime.prepare(threads=threads)
    predictor = Predictor(cfg, checkpoints, None, f"worker on {cfg.infer.device}", models_grid=False,
                          verifier=verifier)
    budget_s = None if deadline is None else deadline - time.time()
    return predictor.predict_tomograms(CompetitionData(root), split, tomo_ids, spacings, budget_s, progress=False,
                                       patch_dir=patch_dir, probes=probes)


def merge_shards(tomo_ids: Sequence[str], results: Sequence[tuple[str, list[str], pl.DataFrame | BaseException]]
                 ) -> pl.DataFrame:
    """The workers' candidates in `tomo_ids` order; a worker that failed gives its tomograms no-motor rows carrying
    the failure (and a warning that names the device)."""
    parts = []
    for device, ids, result in results:
        if isinstance(result, BaseException):
            error = f"worker on device {device} failed: {type(result).__name__}: {result}"
            warnings.warn(f"{error} -> predicting no motor for its {len(ids)} tomogram(s)", stacklevel=2)
            rows = [{**{k: 0 for k in CANDIDATE_SCHEMA}, "tomo_id": t, "z": -1.0, "y": -1.0, "x": -1.0,
                     "error": error} for t in ids]
            result = pl.DataFrame(rows, schema=CANDIDATE_SCHEMA)
        parts.append(result)
    merged = pl.concat(parts) if parts else pl.DataFrame(schema=CANDIDATE_SCHEMA)
    order = {t: i for i, t in enumerate(tomo_ids)}
    return merged.sort(pl.col("tomo_id").replace_strict(order, return_dtype=pl.Int64))


def resolve_devices(device: str, source: str = "config") -> list[str]:
    """`infer.device` as the devices to predict on: `cpu`, `0`, `0,1` (a worker per device), or `auto` (every
    visible CUDA GPU, else the CPU). Each is checked by `resolve_device`."""
    import torch

    if str(device).strip().lower() == AUTO_DEVICE:
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [str(i) for i in range(count)] or ["cpu"]
    return [resolve_device(d, source) for d in str(device).split(",")]


def resolve_device(device: str, source: str = "config") -> str:
    """`auto` -> `0` when a CUDA GPU is visible, else `cpu`; a CUDA device on a machine without one is a ConfigError
    (said before any work, instead of ultralytics' traceback at the end of an export)."""
    import torch

    d = str(device).strip().lower()
    if d == AUTO_DEVICE:
        return "0" if torch.cuda.is_available() else "cpu"
    if d in {"cpu", "mps"}:
        return d
    if not torch.cuda.is_available():
        raise ConfigError(f"{source}: device {device!r} needs a CUDA GPU and this machine has none: "
                          f"use the CPU (--device cpu, DEVICE=cpu; PRESET=cpu for training)")
    if d.isdigit() and int(d) >= torch.cuda.device_count():
        raise ConfigError(f"{source}: device {device!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return str(device)


def check_output_path(out: Path) -> Path:
    """`out` as a writable file path (its folder is created), or a DataError naming it."""
    out = Path(out)
    if out.is_dir():
        raise DataError(f"{out}: is a folder; give a file name for the submission, e.g. {out / 'submission.csv'}")
    blocked = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise DataError(f"{out}: cannot be written: {blocked} is a file, not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def assumed_spacing(data: CompetitionData, default: float) -> float:
    """The most common training voxel spacing (the test set gives none), else `default`; a labels file that cannot
    tell (missing, unreadable, no spacing column) only costs a warning: it is not needed to predict."""
    path = data.labels_csv
    if not path.is_file():
        return default
    try:
        spacing = pl.read_csv(path, infer_schema_length=0).unique("tomo_id")["Voxel spacing"].cast(pl.Float64)
        spacing = spacing.filter(spacing.is_finite() & (spacing > 0))
    except (pl.exceptions.PolarsError, OSError, ValueError) as e:
        warnings.warn(f"{path}: cannot read the voxel spacings ({type(e).__name__}) -> assuming {default} A for test",
                      stacklevel=2)
        return default
    return float(spacing.mode().sort()[0]) if len(spacing) else default


def _describe_grid(pre: PreprocessConfig) -> str:
    if pre.grid == "spacing":
        grid = f"resampled to {pre.target_spacing:g} A"
    else:
        grid = f"resized to {pre.resize_to} px (longest in-plane edge)" if pre.grid == "size" else "native"
    return grid + (f", {pre.z_average} slices averaged along z" if pre.z_average > 1 else "")


def _resolve_config(config: KitConfig | str | Path | None, preset: str | None, run: RunDir | None) -> KitConfig:
    if isinstance(config, KitConfig):
        return config
    base = KitConfig.preset(preset) if preset else None
    if config is not None:
        return KitConfig.load(config, base)
    if base is not None:
        return base
    if run is None or not run.config.is_file():
        where = run.root if run else "the checkpoints"
        raise DataError(f"{where}: no config.yaml beside the checkpoints: pass --config FILE or --preset NAME")
    return run.load_config()


def _resolve_rule(presence: PresenceRule | str | Path | None, run: RunDir | None, need: bool) -> PresenceRule | None:
    if isinstance(presence, PresenceRule):
        return presence
    path = Path(presence) if presence is not None else (run.presence if run else None)
    if path is not None and (presence is not None or path.is_file()):
        return PresenceRule.load(path)
    if need:
        where = run.presence if run else "the checkpoints"
        raise DataError(f"{where}: no presence rule (tune one with make local-score, or pass --presence FILE)")
    return None
