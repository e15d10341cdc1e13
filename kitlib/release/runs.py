"""`make runs`: one line per run folder, printed and written to `runs/index.csv` (with `runs/oof_vs_lb.png`, OOF F2
against the public leaderboard, once two runs have both), and each run's Kaggle ledger, `releases.json`, which traces
a submission back to the run whose weights it used.

The ledger (`RunDir.releases`, a JSON list, oldest first) is appended by the Kaggle commands:

    make bundle RUN=x   {"event": "bundle", "at", "bundle": <id>, "dataset": "<user>/motor-kit-weights", "kit_version"}
    make push-dataset   {"event": "dataset", "at", "bundle", "dataset", "version"}
    make push-kernel    {"event": "kernel", "at", "bundle", "dataset", "dataset_version", "kernel": <ref>, "version"}
    make submit         {"event": "submission", "at", "kernel", "version", "ref", "description"}
    make submissions    sets "status", "public_score", "private_score" of the run's submissions (matched on the
                        submission's ref, else on its description)

A weights bundle's id is a digest of its manifest's files (names and sha256): the same weights, presence rule and
config give the same id. The run a built bundle came from is kept beside it, outside what is uploaded
(`build/datasets/weights.release.json`: the run's folder, the bundle id, the dataset version it was pushed as).
push-kernel links the kernel version to that run only when Kaggle's weights dataset is that bundle (pushed, and its
current version the one it was pushed as), and writes the link into `pushed.json` (`weights`), where submit finds it.
"""

from __future__ import annotations

import csv
import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kitlib.config import KitConfig
from kitlib.data.errors import DataError
from kitlib.release.bundle import MANIFEST_FILE, read_manifest
from kitlib.release.templates import write_json
from kitlib.run import DEFAULT_PROJECT, RunDir

INDEX_FILE = "index.csv"
PLOT_FILE = "oof_vs_lb.png"
LINK_SUFFIX = ".release.json"
PRESETS = ("default", "cpu")
COLUMNS = ("run", "date", "commit", "preset", "data", "extra", "folds", "epochs", "oof_f2", "f2_low", "f2_high",
           "rule", "threshold", "wall_s", "kernel", "kernel_version", "public", "private")


# --- the ledger --------------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def bundle_id(manifest: dict[str, Any]) -> str:
    """12 hex digits of sha256 over a bundle manifest's (name, sha256) pairs."""
    files = sorted((f["name"], f["sha256"]) for f in manifest["files"])
    return hashlib.sha256(json.dumps(files).encode()).hexdigest()[:12]


def _append(run: RunDir, event: str, **entry: Any) -> None:
    run.save_releases([*run.load_releases(), {"event": event, "at": _now(), **entry}])


def _link_path(folder: Path) -> Path:
    return folder.with_name(folder.name + LINK_SUFFIX)


def _link(folder: Path) -> dict[str, Any] | None:
    """The run link of the bundle built in `folder`; None when there is none, or the folder was rebuilt since."""
    path = _link_path(folder)
    if not path.is_file() or not (folder / MANIFEST_FILE).is_file():
        return None
    try:
        link = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: unreadable ({e}); rebuild the weights bundle (make bundle RUN=...)") from e
    return link if link.get("bundle") == bundle_id(read_manifest(folder)) else None


def _linked_run(link: dict[str, Any], what: str) -> RunDir | None:
    run = RunDir(Path(link["run"]))
    if run.root.is_dir():
        return run
    print(f"note: {run.root}: the run is gone; {what} is recorded in no run")
    return None


def record_bundle(folder: Path, run_root: Path) -> str:
    """After `make bundle`: the weights bundle built in `folder` came from run `run_root`; returns its id."""
    manifest = read_manifest(folder)
    bid, run = bundle_id(manifest), RunDir(Path(run_root))
    _append(run, "bundle", bundle=bid, dataset=manifest["dataset"], kit_version=manifest["kit_version"])
    write_json(_link_path(folder), {"run": str(run.root.resolve()), "bundle": bid, "dataset": manifest["dataset"],
                                    "pushed": False, "version": None})
    return bid


def record_dataset(folder: Path, version: int | None) -> None:
    """After `make push-dataset` of `folder` as dataset `version` (None: not known yet): its run records it."""
    link = _link(folder)
    if link is None:
        return
    write_json(_link_path(folder), {**link, "pushed": True, "version": version})
    run = _linked_run(link, f"{link['dataset']} version {version}")
    if run is not None:
        _append(run, "dataset", bundle=link["bundle"], dataset=link["dataset"], version=version)


def record_kernel(folder: Path, dataset_version: int | None, kernel: str, version: int) -> dict[str, Any] | None:
    """After `make push-kernel`: link kernel `kernel` version `version` to the run of the weights bundle built in
    `folder`, when Kaggle's weights dataset (at `dataset_version`) is that bundle; the link (for pushed.json), else
    None with a note saying why."""
    link = _link(folder)
    what = f"kernel {kernel} version {version}"
    if link is None:
        print(f"note: {folder}: no weights bundle made from a run (make bundle RUN=...); {what} is linked to no run")
        return None
    if not link["pushed"] or link["version"] not in (None, dataset_version):
        said = f"pushed as version {link['version']}" if link["pushed"] else "never pushed: make push-dataset"
        print(f"note: {link['dataset']} version {dataset_version} on Kaggle is not the bundle of {link['run']} "
              f"({said}); {what} is linked to no run")
        return None
    weights = {"run": link["run"], "bundle": link["bundle"], "dataset": link["dataset"],
               "dataset_version": dataset_version}
    run = _linked_run(link, what)
    if run is not None:
        _append(run, "kernel", **{k: v for k, v in weights.items() if k != "run"}, kernel=kernel, version=version)
    return weights


def project_runs(project: Path = DEFAULT_PROJECT) -> list[RunDir]:
    """Every run folder (one holding config.yaml) directly under `project`, by name."""
    folders = sorted(p for p in Path(project).iterdir() if p.is_dir()) if Path(project).is_dir() else []
    return [run for run in map(RunDir, folders) if run.exists()]


def _has_kernel(run: RunDir, kernel: str, version: int) -> bool:
    return any(e["event"] == "kernel" and e["kernel"] == kernel and e["version"] == version
               for e in run.load_releases())


def record_submission(kernel: str, version: int, ref: int, description: str, project: Path = DEFAULT_PROJECT,
                      linked: str | None = None) -> RunDir | None:
    """After `make submit`: the run whose weights kernel `kernel` version `version` mounted (the `linked` run, else
    one under `project`) records submission `ref`; None (and a note) when no run has that kernel version."""
    candidates = ([RunDir(Path(linked))] if linked and Path(linked).is_dir() else []) + project_runs(project)
    run = next((r for r in candidates if _has_kernel(r, kernel, version)), None)
    if run is None:
        print(f"note: no run records pushing {kernel} version {version}; submission {ref} is recorded in no run")
        return None
    _append(run, "submission", kernel=kernel, version=version, ref=ref, description=description)
    return run


def _score(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def record_scores(rows: list[dict[str, Any]], project: Path = DEFAULT_PROJECT) -> list[str]:
    """After `make submissions` (`rows`: `kitlib.kaggle.api.submissions()`, newest first): each run's submissions
    take the status and scores of the row with their ref, else their description; a line per change."""
    by_ref = {str(r["ref"]): r for r in rows}
    by_description = {r["description"]: r for r in reversed(rows)}  # the newest of equal descriptions
    lines = []
    for run in project_runs(project):
        entries, changed = run.load_releases(), False
        for e in (e for e in entries if e["event"] == "submission"):
            row = by_ref.get(str(e["ref"])) or by_description.get(e["description"])
            if row is None:
                continue
            new = {"status": row["status"], "public_score": _score(row["public_score"]),
                   "private_score": _score(row["private_score"])}
            if any(e.get(k) != v for k, v in new.items()):
                e.update(new)
                changed = True
                lines.append(f"{run.root}: submission {e['ref']} ({e['kernel']} v{e['version']}) {new['status']}, "
                             f"public {new['public_score']}, private {new['private_score']}")
        if changed:
            run.save_releases(entries)
    return lines


# --- the index ---------------------------------------------------------------------------------------------------


def _leaves(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def nearest_preset(cfg: KitConfig) -> str:
    """The preset `cfg` differs least from, with how many settings differ: `cpu`, `default+3`."""
    mine = _leaves(cfg.to_dict())
    diffs = {name: sum(mine.get(k) != v for k, v in _leaves(KitConfig.preset(name).to_dict()).items())
             for name in PRESETS}
    name = min(diffs, key=diffs.get)
    return name + (f"+{diffs[name]}" if diffs[name] else "")


def _read_score(run: RunDir) -> dict[str, Any]:
    if not run.score.is_file():
        return {}
    try:
        return json.loads(run.score.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{run.score}: unreadable ({e}); score the run again (make local-score RUN={run.name} "
                        f"RESUME=1)") from e


def _date(run: RunDir, info: dict[str, Any]) -> str:
    """When the run was scored (score.json), else created (run.json, else config.yaml), local time."""
    if run.score.is_file() or "created" not in info:
        when = datetime.fromtimestamp((run.score if run.score.is_file() else run.config).stat().st_mtime)
    else:
        when = datetime.fromisoformat(info["created"]).astimezone()
    return when.strftime("%Y-%m-%d %H:%M")


def _span(values: list[Any]) -> str:
    known = sorted(int(v) for v in values if v is not None)
    if not known:
        return ""
    return str(known[0]) if known[0] == known[-1] else f"{known[0]}-{known[-1]}"


def _last_submission(run: RunDir, since: str) -> dict[str, Any]:
    """The run's latest scored submission since `since` (its creation: a replaced run's are not its), else latest."""
    subs = [e for e in run.load_releases() if e["event"] == "submission" and e["at"] >= since]
    scored = [e for e in subs if e.get("public_score") is not None]
    return (scored or subs or [{}])[-1]


def index_row(run: RunDir) -> dict[str, Any]:
    """The run's line of the index (`COLUMNS`; None where the run has no such record)."""
    score, info = _read_score(run), run.load_info()
    epochs = list((score.get("per_fold_epochs") or {}).values())
    low, high = score.get("f2_ci") or (None, None)
    sub = _last_submission(run, info.get("created", ""))
    return {
        "run": run.name, "date": _date(run, info), "commit": info.get("git"),
        "preset": nearest_preset(run.load_config()), "data": score.get("data"),
        "extra": " ".join(s["name"] for s in score.get("sources") or []) or None,
        "folds": len(epochs) or None, "epochs": _span(epochs) or None,
        "oof_f2": score.get("f2"), "f2_low": low, "f2_high": high,
        "rule": score.get("rule"), "threshold": score.get("threshold"), "wall_s": score.get("wall_s"),
        "kernel": sub.get("kernel"), "kernel_version": sub.get("version"),
        "public": sub.get("public_score"), "private": sub.get("private_score"),
    }


def write_index(project: Path = DEFAULT_PROJECT) -> tuple[list[dict[str, Any]], list[Path]]:
    """Index every run under `project` into `<project>/index.csv`, and plot OOF F2 against the public leaderboard
    into `<project>/oof_vs_lb.png` when two runs or more have both; (rows, files written)."""
    runs = project_runs(project)
    if not runs:
        raise DataError(f"{project}: no run folders (make local-score RUN=<name> makes one)")
    rows = [index_row(run) for run in runs]
    out = Path(project) / INDEX_FILE
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    both = [r for r in rows if r["oof_f2"] is not None and r["public"] is not None]
    return rows, [out] + ([plot_oof_vs_lb(both, Path(project) / PLOT_FILE)] if len(both) >= 2 else [])


def plot_oof_vs_lb(rows: list[dict[str, Any]], path: Path) -> Path:
    """OOF F2 (with its 95% CI) against the public score of each run (private as a hollow marker when known)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.subplots()
    for i, r in enumerate(rows):
        low, high = (r["oof_f2"] if v is None else v for v in (r["f2_low"], r["f2_high"]))
        xerr = [[r["oof_f2"] - low], [high - r["oof_f2"]]]
        ax.errorbar([r["oof_f2"]], [r["public"]], xerr=xerr, fmt="o", color=f"C{i % 10}", capsize=3, label=r["run"])
        if r["private"] is not None:
            ax.plot([r["oof_f2"]], [r["private"]], "o", mfc="none", color=f"C{i % 10}")
    values = [r[k] for r in rows for k in ("f2_low", "f2_high", "oof_f2", "public", "private") if r[k] is not None]
    span = (min(values) - 0.02, max(values) + 0.02)
    ax.plot(span, span, color="0.6", ls=":", lw=1, label="LB = OOF")
    ax.set(xlabel="OOF F2 (95% CI)", ylabel="public leaderboard (hollow: private)", xlim=span, ylim=span,
           title=f"Local score against the leaderboard ({len(rows)} runs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120, format="png")
    return path


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None or value == "" else fmt.format(value)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def format_index(rows: list[dict[str, Any]]) -> str:
    """A text table of the index, one run a line."""
    header = ("run", "date", "commit", "preset", "data", "extra", "folds x ep", "OOF F2 [95% CI]", "rule", "wall",
              "kernel", "public", "private")
    cells = [header] + [(
        r["run"], r["date"], _cell(r["commit"]), r["preset"], _cell(r["data"] and Path(r["data"]).name),
        _cell(r["extra"]), _cell(r["folds"] and f"{r['folds']}x{r['epochs'] or '?'}"),
        _cell(r["oof_f2"], "{:.4f}") + ("" if r["f2_low"] is None else f" [{r['f2_low']:.3f}, {r['f2_high']:.3f}]"),
        _cell(r["rule"] and f"{r['rule']} {_cell(r['threshold'], '{:.3g}')}"),
        _cell(None if r["wall_s"] is None else _duration(r["wall_s"])),
        _cell(r["kernel"] and f"{r['kernel'].split('/')[-1]} v{r['kernel_version']}"),
        _cell(r["public"], "{:.4f}"), _cell(r["private"], "{:.4f}"),
    ) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
