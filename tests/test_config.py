"""Config that fails early: typed values, one-line errors naming the file (or option) and the key, partial YAML merged
onto a preset, `--set` overrides, keys of older kits moved; and the CLI answering each problem with exit 2 before any
tomogram is read."""

from __future__ import annotations

import pytest

from kitlib.cli import main
from kitlib.config import ConfigError, KitConfig, parse_overrides
from kitlib.data.synth import synthesize
from kitlib.testing import tiny_run


@pytest.mark.parametrize("changes, message", [
    ({"infer": {"slice_step": "four"}}, "f.yaml: infer.slice_step: expected a whole number, got 'four'"),
    ({"train": {"epochs": "ten"}}, "f.yaml: train.epochs: expected a whole number, got 'ten'"),
    ({"infer": {"batch": 0}}, "f.yaml: infer.batch: must be >= 1, got 0"),
    ({"infer": {"conf": 1.5}}, "f.yaml: infer.conf: must be in [0, 1], got 1.5"),
    ({"infer": {"half": "yes"}}, "f.yaml: infer.half: expected true or false, got 'yes'"),
    ({"infer": {"tta": "identity, flip_lr"}}, None),  # one name: accepted as a list of one (then checked by name)
    ({"infer": {"nope": 1}}, "f.yaml: infer.nope: unknown key"),
    ({"infer": 3}, "f.yaml: section 'infer' must be a mapping of keys, got 3"),
    ({"inference": {}}, "f.yaml: unknown section 'inference'"),
    ({"model": {"scale": "q"}}, "f.yaml: model.scale: must be one of"),
    ({"preprocess": {"clip_low": 99, "clip_high": 2}}, "f.yaml: preprocess.clip_low (99.0) must be below clip_high"),
    ([1, 2], "f.yaml: expected a mapping of sections, got list"),
])
def test_bad_values_are_one_line_errors_naming_file_and_key(changes, message):
    if message is None:
        assert KitConfig().override(changes, "f.yaml").infer.tta == ("identity, flip_lr",)
        return
    with pytest.raises(ConfigError) as e:
        KitConfig().override(changes, "f.yaml")
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_partial_yaml_merges_onto_the_preset_and_roundtrips(tmp_path):
    path = tmp_path / "partial.yaml"
    path.write_text("train: {epochs: 3}\ninfer: {device: 0}\n")
    cpu = KitConfig.preset("cpu")
    merged = KitConfig.load(path, cpu)
    assert merged.train.epochs == 3 and merged.infer.device == "0"  # `device: 0` reads as a number
    assert merged.model == cpu.model and merged.preprocess == cpu.preprocess
    assert cpu.train.epochs == KitConfig.preset("cpu").train.epochs != 3  # the preset object is not changed
    saved = merged.save(tmp_path / "saved.yaml")
    assert KitConfig.load(saved) == merged


@pytest.mark.parametrize("text, message", [
    ("", "empty config file"),
    ("train: [epochs: 3\n", "not valid YAML (line"),
    ("train: 5\n", "section 'train' must be a mapping"),
])
def test_unreadable_files_name_themselves(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        KitConfig.load(path)
    assert str(e.value).startswith(f"{path}: {message}"), e.value


def test_set_overrides_parse_yaml_values():
    assert parse_overrides(["infer.batch=8", "infer.tta=[identity,flip_lr]", "preprocess.target_spacing=null"]) == {
        "infer": {"batch": 8, "tta": ["identity", "flip_lr"]}, "preprocess": {"target_spacing": None}}
    with pytest.raises(ConfigError, match="--set batch=8: expected section.key=value"):
        parse_overrides(["batch=8"])


def test_keys_of_older_kits_move_with_a_warning():
    with pytest.warns(UserWarning, match="infer.time_budget_s is no longer a setting"):
        cfg = KitConfig().override({"train": {"imgsz": 320}, "infer": {"time_budget_s": 5.0}}, "old.yaml")
    assert cfg.model.imgsz == 320


def test_an_older_kits_target_spacing_names_its_grid_policy():
    """Before `preprocess.grid`, a target spacing meant resampling and null the native grid: old runs keep theirs."""
    base = KitConfig().override({"preprocess": {"grid": "size"}})
    assert base.override({"preprocess": {"target_spacing": None}}).preprocess.grid == "native"
    old = base.override({"preprocess": {"target_spacing": 16.0}}).preprocess
    assert (old.grid, old.target_spacing) == ("spacing", 16.0)
    assert base.override({"preprocess": {"target_spacing": 20.0, "grid": "size"}}).preprocess.grid == "size"
    with pytest.raises(ConfigError, match="preprocess.grid: must be one of"):
        base.override({"preprocess": {"grid": "fixed"}}, "f.yaml")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cfg_cli")
    synthesize(root / "comp", 0, 2, size="tiny", seed=2, progress=False)
    tiny_run(root / "runs" / "t")
    return root


@pytest.mark.parametrize("args, message", [
    (["--set", "infer.slice_step=four"], "--set: infer.slice_step: expected a whole number, got 'four'"),
    (["--set", "infer.batch=0"], "--set: infer.batch: must be >= 1, got 0"),
    (["--set", "infer.tta=[identity,sideways]"], "infer.tta: unknown TTA view(s) ['sideways']"),
    (["--config", "bad.yaml"], "bad.yaml: train.epochs: expected a whole number, got 'ten'"),
    (["--config", "empty.yaml"], "empty.yaml: empty config file"),
    (["--device", "0"], "needs a CUDA GPU"),
    (["--out", "runs"], "runs: is a folder"),
])
def test_cli_predict_refuses_bad_settings_before_any_tomogram(tiny, monkeypatch, capsys, args, message):
    import torch

    if args[0] == "--device" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tiny)
    (tiny / "bad.yaml").write_text("train: {epochs: ten}\n")
    (tiny / "empty.yaml").write_text("")
    assert main(["predict", "--data", "comp", "--run", "t", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tiny / "runs" / "t" / "submission.csv").exists()


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("motor-kit ")


def test_demo_settings_merge_onto_the_cpu_preset():
    """`demo --set ...` changes the demo's own (cpu) preset, not the GPU default."""
    from kitlib.cli import _new_config, build_parser

    args = build_parser().parse_args(["demo", "--set", "infer.batch=8"])
    cfg = _new_config(args, preset="cpu")
    assert cfg.infer.batch == 8 and cfg.model == KitConfig.preset("cpu").model
