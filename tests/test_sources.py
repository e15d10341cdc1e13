"""Extra training sources and the labels override: what they change (training sets, labels) and what they must not
(folds, out-of-fold rows, the tuning set); colliding tomo_ids kept apart; a re-score with corrected labels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from kitlib.cli import main
from kitlib.config import DataConfig, KitConfig
from kitlib.data.errors import DataError
from kitlib.data.export import export_fold
from kitlib.data.labels import TomoRecord
from kitlib.data.layout import CompetitionData
from kitlib.data.overrides import OVERRIDE_COLUMNS, apply_overrides, read_overrides
from kitlib.data.sources import load_training_labels, parse_source
from kitlib.data.synth import synthesize
from kitlib.run import RunDir

TINY = {
    "preprocess": {"stack_stride": 2},
    "model": {"imgsz": 64, "width": 0.125},
    "train": {"epochs": 1, "time_budget_s": None, "batch": 4, "workers": 0},
    "infer": {"tta": ["identity"], "batch": 16, "conf": 0.01},
    "verify": {"steps": 10},
    "tune": {"n_folds": 2, "bootstrap": 20},
}


def _override(path: Path, rows: list[dict]) -> Path:
    pl.DataFrame([{c: str(r.get(c, "")) for c in OVERRIDE_COLUMNS} for r in rows]).write_csv(path)
    return path


def _record(tomo_id: str, motors: list) -> TomoRecord:
    return TomoRecord(tomo_id, (32, 64, 64), 60.0, [tuple(m) for m in motors], len(motors))


# --- pure parts -------------------------------------------------------------------------------------------------

def test_a_source_spec_carries_its_trust():
    plain = parse_source("data/ext")
    assert (plain.name, plain.z_window, plain.negatives) == ("ext", None, True)
    strict = parse_source("data/my ext:z_window=2:negatives=false")
    assert (strict.name, strict.z_window, strict.negatives) == ("my-ext", 2, False)
    with pytest.raises(DataError, match="bad option 'zwindow=2'"):
        parse_source("data/ext:zwindow=2")


def test_overrides_add_remove_and_move_motors(tmp_path):
    records = [_record("a", [(10, 20, 30)]), _record("b", []), _record("c", [(5, 5, 5), (20, 40, 40)])]
    path = _override(tmp_path / "o.csv", [
        {"tomo_id": "b", "action": "add", "z": 12, "y": 30, "x": 31},
        {"tomo_id": "a", "action": "remove", "label_z": 10, "label_y": 20.5, "label_x": 30},
        {"tomo_id": "c", "action": "move", "z": 21, "y": 42, "x": 41, "label_z": 20, "label_y": 40, "label_x": 40},
        {"tomo_id": "b", "action": "none", "z": 1, "y": 2, "x": 3},
    ])
    fixed = {r.tomo_id: r for r in apply_overrides(records, read_overrides(path), path)}
    assert fixed["a"].motors == [] and fixed["a"].n_motors_stated == 0
    assert fixed["b"].motors == [(12.0, 30.0, 31.0)] and fixed["b"].n_motors_stated == 1
    assert fixed["c"].motors == [(5, 5, 5), (21.0, 42.0, 41.0)]
    assert records[0].motors == [(10, 20, 30)]  # the inputs are unchanged


@pytest.mark.parametrize("row, message", [
    ({"tomo_id": "a", "action": "delete"}, "line 2: action 'delete'"),
    ({"tomo_id": "a", "action": "add", "z": 1}, r"line 2: z/y/x must be numbers"),
    ({"tomo_id": "a", "action": "move", "z": 1, "y": 1, "x": 1}, "needs label_z"),
    ({"tomo_id": "zz", "action": "add", "z": 1, "y": 1, "x": 1}, r"line 2 \(zz\): no such tomogram"),
    ({"tomo_id": "a", "action": "remove", "label_z": 1, "label_y": 1, "label_x": 1}, "no labelled motor at"),
])
def test_a_bad_override_row_names_file_and_line(tmp_path, row, message):
    path = _override(tmp_path / "o.csv", [row])
    with pytest.raises(DataError, match=message) as err:
        apply_overrides([_record("a", [(10, 20, 30)])], read_overrides(path), path)
    assert str(path) in str(err.value)


# --- sources on tiny data ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Tiny competition data, an extra source whose first tomo_id collides with a competition one, the tiny config,
    and two local-score runs: `plain` (competition only) and `extra` (with the source)."""
    root = tmp_path_factory.mktemp("sources")
    comp = synthesize(root / "comp", n_train=6, n_test=0, size="tiny", seed=1, progress=False)
    ext = synthesize(root / "ext", n_train=3, n_test=0, size="tiny", seed=7, progress=False)
    taken, mine = comp.train[0].tomo_id, ext.train[0].tomo_id
    (root / "ext" / "train" / mine).rename(root / "ext" / "train" / taken)
    labels = pl.read_csv(root / "ext" / "train_labels.csv").with_columns(pl.col("tomo_id").replace(mine, taken))
    labels.write_csv(root / "ext" / "train_labels.csv")
    (root / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for run, extra in (("plain", []), ("extra", ["--extra", "ext"])):
            assert main(["local-score", "--data", "comp", "--run", run, "--preset", "cpu", "--config", "tiny.yaml",
                         *extra]) == 0
    return root


def test_colliding_ids_are_kept_apart(work):
    labels = load_training_labels(CompetitionData(work / "comp"), DataConfig(extra=(str(work / "ext"),)))
    comp_ids = {r.tomo_id for r in labels.records}
    extra_ids = [r.tomo_id for r in labels.extra]
    assert len(extra_ids) == 3 and all(i.startswith("ext.") for i in extra_ids)
    collided = next(r for r in labels.extra if r.tomo_id.removeprefix("ext.") in comp_ids)
    assert collided.folder == work / "ext" / "train" / collided.tomo_id.removeprefix("ext.")
    # two folders of the same name: the second source is renamed, its tomograms stay apart
    twin = work / "twin" / "ext"
    if not twin.exists():
        shutil.copytree(work / "ext", twin)
    twice = load_training_labels(CompetitionData(work / "comp"), DataConfig(extra=(str(work / "ext"), str(twin))))
    assert len({r.tomo_id for r in twice.extra}) == 6 and [s["name"] for s in twice.sources] == ["ext", "ext-2"]


def test_an_extra_source_changes_training_sets_only(work):
    plain, extra = RunDir(work / "runs" / "plain"), RunDir(work / "runs" / "extra")
    assert plain.folds_csv.read_text() == extra.folds_csv.read_text()
    oof_plain, oof_extra = pl.read_csv(plain.oof), pl.read_csv(extra.oof)
    assert oof_plain["tomo_id"].to_list() == oof_extra["tomo_id"].to_list()  # the OOF rows = the tuning set
    assert oof_plain["fold"].to_list() == oof_extra["fold"].to_list()
    assert not any(t.startswith("ext.") for t in oof_extra["tomo_id"])
    for fold in (0, 1):
        # the training set gains the source's stacks (and, under the negative cap, maybe more negatives);
        # the competition's positives and the held-out split stay as they were
        positives = [{p.stem for p in (r.export_dir(fold) / "labels" / "train").iterdir() if p.read_text()}
                     for r in (plain, extra)]
        assert {n for n in positives[1] if not n.startswith("ext.")} == positives[0]
        assert any(n.startswith("ext.") for n in positives[1])
        val = [sorted(p.name for p in (r.export_dir(fold) / "images" / "val").iterdir()) for r in (plain, extra)]
        assert val[0] == val[1]
    score = json.loads(extra.score.read_text())
    assert [s["name"] for s in score["sources"]] == ["ext"] and score["sources"][0]["tomograms"] == 3
    assert score["per_fold_sources"] == {"0": {"ext": 3}, "1": {"ext": 3}}
    assert json.loads(plain.score.read_text())["sources"] == []


def test_a_source_not_trusted_for_negatives_gives_no_negative_stacks(work, tmp_path):
    # the native grid, so that stack centres are the labels' own slices
    cfg = KitConfig.preset("cpu").override(TINY, "tiny").override({"preprocess": {"grid": "native"}})
    data = CompetitionData(work / "comp")
    labels = load_training_labels(data, DataConfig(extra=(f"{work / 'ext'}:z_window=0:negatives=false",)))
    folds = {r.tomo_id: i % 2 for i, r in enumerate(labels.records)}
    out = export_fold(data.root, tmp_path / "x", 0, cfg, folds, labels.for_training, progress=False)
    stacks = list((out.parent / "labels" / "train").glob("ext.*.txt"))
    assert stacks and all(p.read_text() for p in stacks)  # every stack of the source is a positive
    motors = {r.tomo_id: r.motors for r in labels.extra}
    for p in stacks:  # z_window=0: centred on the motor's own slice
        tomo_id, centre = p.stem.rsplit("_z", 1)
        assert any(round(m[0]) == int(centre) for m in motors[tomo_id])


def test_an_override_rescores_without_retraining_and_trains_the_next_fold(work, tmp_path):
    """A motor added where the model's OOF candidate is turns that tomogram's miss into a hit on re-score (same
    checkpoints, corrected labels), and the next export trains on it."""
    run = RunDir(work / "runs" / "plain")
    oof = pl.read_csv(run.oof)
    miss = oof.filter(~pl.col("hit")).row(0, named=True)
    path = _override(work / "labels_override.csv", [
        {"tomo_id": miss["tomo_id"], "action": "add", "z": round(miss["z"], 1), "y": round(miss["y"], 1),
         "x": round(miss["x"], 1)}])
    copy = work / "runs" / "rescored"
    shutil.copytree(run.root, copy)
    weights = {p: p.stat().st_mtime_ns for p in RunDir(copy).fold_checkpoints().values()}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        assert main(["local-score", "--data", "comp", "--run", "rescored", "--resume",
                     "--labels-override", str(path)]) == 0
    rescored = RunDir(copy)
    assert {p: p.stat().st_mtime_ns for p in rescored.fold_checkpoints().values()} == weights  # not retrained
    row = pl.read_csv(rescored.oof).filter(pl.col("tomo_id") == miss["tomo_id"]).row(0, named=True)
    assert row["hit"] and row["has_motor"]
    score = json.loads(rescored.score.read_text())
    assert score["labels_override"]["sha256"] and score["labels_override"]["rows"] == 1
    assert rescored.load_config().data.labels_override == str(path)
    # the next training: its export labels the added motor
    cfg = KitConfig.preset("cpu").override(TINY, "tiny")
    data = CompetitionData(work / "comp")
    labels = load_training_labels(data, rescored.load_config().data)
    folds = {r.tomo_id: i % 2 for i, r in enumerate(labels.records)}
    other = 1 - folds[miss["tomo_id"]]  # a fold that trains on that tomogram
    out = export_fold(data.root, tmp_path / "x", other, cfg, folds, labels.for_training, progress=False)
    lines = [p.read_text() for p in (out.parent / "labels" / "train").glob(f"{miss['tomo_id']}_z*.txt")]
    assert any(lines)


def test_a_bad_source_fails_before_training(work, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        assert main(["local-score", "--data", "comp", "--run", "bad", "--preset", "cpu", "--config", "tiny.yaml",
                     "--extra", str(tmp_path / "empty")]) == 2
    assert "needs train_labels.csv" in capsys.readouterr().err
    assert not RunDir(work / "runs" / "bad").fold_checkpoints()

