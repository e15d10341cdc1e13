"""Group k-fold: coverage and balance on the real label file, determinism, the CSV, and resolving which CSV to use."""

import random
from collections import Counter
from pathlib import Path

import pytest

from kitlib.data import DataError
from kitlib.data.folds import make_folds, read_folds, resolve_folds, write_folds
from kitlib.data.labels import TomoRecord, load_labels

REAL_LABELS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "byu_train_labels.csv"


@pytest.fixture(scope="module")
def real_records() -> list[TomoRecord]:
    if not REAL_LABELS.exists():
        pytest.skip(f"{REAL_LABELS} not present")
    return load_labels(REAL_LABELS)


def rec(tomo_id: str, spacing: float = 13.1, motor: bool = False) -> TomoRecord:
    return TomoRecord(tomo_id, (300, 960, 928), spacing, [(150.0, 400.0, 400.0)] if motor else [])


def small_records(n: int = 12) -> list[TomoRecord]:
    return [rec(f"tomo_{i:02d}", 13.1 if i % 3 else 19.7, motor=i % 2 == 0) for i in range(n)]


def per_fold(folds: dict[str, int], records: list[TomoRecord], selected) -> list[int]:
    """How many of the selected records each fold holds (folds numbered 0..max)."""
    counts = Counter(folds[r.tomo_id] for r in records if selected(r))
    return [counts[f] for f in range(max(folds.values()) + 1)]


@pytest.mark.parametrize("n_folds", [3, 5, 10])
def test_real_labels_coverage_and_balance(real_records, n_folds):
    df = make_folds(real_records, n_folds)
    assert df.columns == ["tomo_id", "fold"]
    assert df["tomo_id"].n_unique() == df.height == len(real_records)  # every tomogram once: folds are disjoint
    assert set(df["tomo_id"]) == {r.tomo_id for r in real_records}
    folds = dict(df.iter_rows())
    assert set(folds.values()) == set(range(n_folds))
    sizes = per_fold(folds, real_records, lambda r: True)
    assert max(sizes) - min(sizes) <= 1
    free = per_fold(folds, real_records, lambda r: not r.has_motor)
    overall = sum(free) / len(real_records)
    for n_free, size in zip(free, sizes):
        assert abs(n_free / size - overall) < 0.02


def test_real_labels_major_spacings_spread(real_records):
    n_folds = 5
    folds = dict(make_folds(real_records, n_folds).iter_rows())
    spacings = Counter(r.voxel_spacing for r in real_records)
    majors = [s for s, n in spacings.items() if n >= 40]
    assert sorted(majors) == [13.1, 15.6, 16.1, 16.8, 19.7]
    for s in majors:
        counts = per_fold(folds, real_records, lambda r: r.voxel_spacing == s)
        assert min(counts) > 0, f"spacing {s} missing from a fold: {counts}"
        assert max(counts) - min(counts) <= 2, f"spacing {s}: {counts}"
        for motor in (True, False):
            stratum = per_fold(folds, real_records, lambda r: r.voxel_spacing == s and r.has_motor == motor)
            assert max(stratum) - min(stratum) <= 1, f"spacing {s}, motor {motor}: {stratum}"


def test_real_labels_determinism_and_order(real_records):
    df = make_folds(real_records, 5, seed=3)
    assert df.equals(make_folds(real_records, 5, seed=3))
    shuffled = real_records[:]
    random.Random(1).shuffle(shuffled)
    assert df.equals(make_folds(shuffled, 5, seed=3))
    assert not df.equals(make_folds(real_records, 5, seed=4))


def test_tiny_strata_spread_over_folds():
    # 4 tomograms of a rare spacing among common ones: merged, they still land in 4 different folds.
    records = [rec(f"common_{i:02d}") for i in range(20)] + [rec(f"rare_{i}", 6.5 + i / 10) for i in range(4)]
    for seed in range(5):
        folds = dict(make_folds(records, 5, seed).iter_rows())
        assert len({folds[f"rare_{i}"] for i in range(4)}) == 4


def test_make_folds_rejects_bad_arguments():
    with pytest.raises(ValueError, match="between 2 and"):
        make_folds(small_records(3), n_folds=4)
    with pytest.raises(ValueError, match="between 2 and"):
        make_folds(small_records(), n_folds=1)
    with pytest.raises(ValueError, match="repeated.*tomo_00"):
        make_folds(small_records() + [rec("tomo_00")], n_folds=3)


def test_csv_round_trip(tmp_path):
    df = make_folds(small_records(), 3)
    path = write_folds(df, tmp_path / "sub" / "folds.csv")
    assert path == tmp_path / "sub" / "folds.csv"
    assert read_folds(path) == dict(df.iter_rows())
    assert [p.name for p in path.parent.iterdir()] == ["folds.csv"]  # no temporary file left behind


@pytest.mark.parametrize(
    "text, problem",
    [
        ("tomo_id,split\na,0\n", "missing fold columns"),
        ("tomo_id,fold\na,0\nb,1\na,2\n", "more than once.*'a'"),
        ("tomo_id,fold\na,0\nb,1.5\n", "integers"),
        ("tomo_id,fold\na,0\nb,x\n", "integers"),
        ("tomo_id,fold\na,0\nb,\n", "empty"),
        ("tomo_id,fold\na,0\nb,-1\n", "negative"),
        ("", "cannot read"),
    ],
)
def test_bad_fold_files(tmp_path, text, problem):
    path = tmp_path / "folds.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=problem) as err:
        read_folds(path)
    assert str(err.value).startswith(f"{path}: ")


def test_missing_fold_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_folds(tmp_path / "nope.csv")


def test_resolve_given_path_is_made_then_read(tmp_path):
    records, path = small_records(), tmp_path / "mine" / "folds.csv"
    folds, used = resolve_folds(tmp_path / "comp", records, 3, path=path)
    assert used == path and path.exists()
    assert folds == dict(make_folds(records, 3).iter_rows())
    write_folds(make_folds(records, 3, seed=9), path)
    assert resolve_folds(tmp_path / "comp", records, 3, path=path)[0] == read_folds(path)  # existing file wins


def test_resolve_prefers_folds_csv_in_data_root(tmp_path):
    records, root = small_records(), tmp_path / "comp"
    in_root = write_folds(make_folds(records, 4, seed=5), root / "folds.csv")
    folds, used = resolve_folds(root, records, 4)
    assert used == in_root
    assert folds == read_folds(in_root)


def test_resolve_default_writes_under_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records, root = small_records(), tmp_path / "comp"
    folds, used = resolve_folds(root, records, 3, seed=2)
    assert used == Path("runs/folds/comp-k3-s2.csv")
    assert (tmp_path / used).exists()
    assert folds == dict(make_folds(records, 3, seed=2).iter_rows())
    assert resolve_folds(root, records, 3, seed=2) == (folds, used)


def test_resolve_remakes_a_generated_file_left_by_other_data(tmp_path, monkeypatch, caplog):
    """A re-synthesised dataset in the same folder must not trip over the folds cached for the old one."""
    monkeypatch.chdir(tmp_path)
    records, root = small_records(), tmp_path / "comp"
    _, used = resolve_folds(root, records[:-2], 3)
    folds, again = resolve_folds(root, records, 3)
    assert again == used and set(folds) == {r.tomo_id for r in records}
    assert "making the folds again" in caplog.text


def test_resolve_rejects_a_file_that_does_not_match(tmp_path):
    records, path = small_records(), tmp_path / "folds.csv"
    write_folds(make_folds(records[:-1], 3), path)
    with pytest.raises(DataError, match=r"lacks 1 tomo_id.*tomo_11"):
        resolve_folds(tmp_path, records, 3, path=path)
    write_folds(make_folds(records + [rec("stranger")], 3), path)
    with pytest.raises(DataError, match=r"unknown 1 tomo_id.*stranger"):
        resolve_folds(tmp_path, records, 3, path=path)
    write_folds(make_folds(records, 3), path)
    with pytest.raises(DataError, match=r"folds \[0, 1, 2\], expected 0..4"):
        resolve_folds(tmp_path, records, 5, path=path)
