"""`make review`: a static page for checking the labels against a run's out-of-fold predictions.

From `oof.csv` (the best candidate per tomogram, its fold, whether it is a hit and was kept) and the train labels,
`select_items` picks three groups:

- ``fp``: the most confident candidates that are not hits (a motor the labels miss?);
- ``fn``: every labelled tomogram the run missed (its best candidate not a hit, or below the presence rule);
- ``far``: true positives farther than a fraction of the hit radius from the label (a label off centre?).

Each item shows three orthogonal contrast-stretched crops (z, y and x planes, the hit radius circled) through its
point, and through the labelled motor when that differs. The reviewer marks it *motor here*, *no motor* or *move
label here*; the page exports the marks as `labels_override.csv` (the format `kitlib.data.overrides` reads; the rows
each mark writes are `item_rows`). The page is one self-contained file (images as PNG data URIs, inline CSS and JS)
that opens offline from disk; marks are kept in the browser's local storage until exported.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import polars as pl
from PIL import Image

from kitlib.config import HIT_RADIUS_A
from kitlib.data.errors import DataError
from kitlib.data.labels import TomoRecord, load_labels
from kitlib.data.layout import CompetitionData
from kitlib.data.tomogram import iter_tomograms
from kitlib.preprocess.contrast import percentile_window, window_lut
from kitlib.run import RunDir

Point = tuple[float, float, float]
GROUPS = {  # group -> (heading, colour)
    "fp": ("Confident false positives: a motor the labels miss?", "#e8890c"),
    "fn": ("False negatives: is the labelled motor there?", "#d6336c"),
    "far": ("Far true positives: is the label off centre?", "#1c7ed6"),
}
MARKS = {"motor": "motor here", "none": "no motor", "move": "move label here"}
OOF_SCHEMA = {"tomo_id": pl.String, "z": pl.Float64, "y": pl.Float64, "x": pl.Float64, "score": pl.Float64,
              "fold": pl.Int64, "hit": pl.Boolean, "dist_A": pl.Float64, "kept": pl.Boolean}  # what it reads of oof.csv
OVERRIDE_HEADER = "tomo_id,action,z,y,x,label_z,label_y,label_x"
CROP_PX = 128  # side of a crop on the page
VIEW_A = 1.25 * HIT_RADIUS_A  # half the side of a crop in Å: the hit-radius circle fits inside
# Crops are palette PNGs (a byte a pixel): the first GREYS entries are grey levels, then the marker colours.
GREYS = 248
CANDIDATE_INK, LABEL_INK, RADIUS_INK, OUTSIDE_INK = range(GREYS, GREYS + 4)
_INK_RGB = ((255, 190, 0), (230, 90, 255), (150, 150, 150), (40, 50, 70))
PALETTE = np.array([(round(v * 255 / (GREYS - 1)),) * 3 for v in range(GREYS)] + list(_INK_RGB)
                   + [(0, 0, 0)] * (256 - GREYS - len(_INK_RGB)), np.uint8)


@dataclass(frozen=True)
class ReviewItem:
    """One thing to look at: the run's best candidate in a tomogram (None: it found none) and the labelled motor it
    concerns (the nearest to the candidate; None: the tomogram has none)."""

    group: str  # a key of GROUPS
    tomo_id: str
    fold: int
    score: float
    dist_A: float | None  # candidate -> nearest labelled motor, as the metric measures it
    candidate: Point | None
    label: Point | None
    voxel_spacing: float

    @property
    def at(self) -> Point:
        """Where the item is about: the labelled motor for a false negative, else the candidate."""
        return self.label if self.group == "fn" else self.candidate  # type: ignore[return-value]

    @property
    def other(self) -> Point | None:
        """The second point shown (candidate or label), when there is one and it is not `at`."""
        second = self.candidate if self.group == "fn" else self.label
        if second is None or np.allclose(second, self.at, atol=0.5):
            return None
        return second

    @property
    def key(self) -> str:
        """Stable across rebuilds of the page (marks are stored under it)."""
        return "|".join([self.group, self.tomo_id, _coords(self.candidate), _coords(self.label)])


def select_items(oof: pl.DataFrame, records: Sequence[TomoRecord], top: int = 20, far: float = 0.5) -> list[ReviewItem]:
    """The page's items, in page order: the `top` highest-scoring candidates that are not hits, every labelled
    tomogram that is not a kept hit (highest score first), and the `top` kept hits farther than `far` x the hit
    radius from their label (farthest first). `oof`: the run's `oof.csv` frame; `records`: the labels."""
    by_id = {r.tomo_id: r for r in records}
    rows = oof.with_columns(pl.col("tomo_id").replace_strict({t: bool(r.motors) for t, r in by_id.items()},
                                                             default=False).alias("labelled"))
    found = pl.col("z") >= 0
    groups = {
        "fp": rows.filter(found & ~pl.col("hit")).sort("score", descending=True).head(top),
        "fn": rows.filter(pl.col("labelled") & ~(pl.col("hit") & pl.col("kept"))).sort("score", descending=True),
        "far": rows.filter(pl.col("hit") & pl.col("kept") & (pl.col("dist_A") > far * HIT_RADIUS_A))
        .sort("dist_A", descending=True).head(top),
    }
    items = []
    for group, frame in groups.items():
        for row in frame.iter_rows(named=True):
            rec = by_id[row["tomo_id"]]
            candidate = (row["z"], row["y"], row["x"]) if row["z"] >= 0 else None
            items.append(ReviewItem(group, rec.tomo_id, row["fold"], row["score"], row["dist_A"], candidate,
                                    _nearest(rec.motors, candidate), rec.voxel_spacing))
    return items


def item_rows(item: ReviewItem) -> dict[str, str]:
    """mark -> the `labels_override.csv` row it writes ("" for none: *motor here* on a labelled motor confirms it)
    for every mark the item offers; *move label here* only where a labelled motor and a candidate both are."""
    def row(action: str, at: Point | None, label: Point | None) -> str:
        return ",".join([item.tomo_id, action, _coords(at), _coords(label)])

    if item.group == "fp":
        rows = {"motor": row("add", item.candidate, None), "none": row("none", item.candidate, None)}
    else:
        rows = {"motor": "", "none": row("remove", None, item.label)}
    if item.group != "fn" and item.label is not None:
        rows["move"] = row("move", item.candidate, item.label)
    return rows


def write_review(
    data: CompetitionData, run: RunDir, out: str | Path | None = None, top: int = 20, far: float = 0.5,
    progress: bool = True,
) -> tuple[Path, list[ReviewItem]]:
    """Write the review page of `run` (default: `run.review`) for `data`'s train labels; returns it and its items.
    Each tomogram is read once; one that cannot be read is warned about and its items shown without crops."""
    if top < 0:
        raise DataError(f"top must be >= 0, got {top}")
    out = Path(out) if out is not None else run.review
    if out.is_dir():
        raise DataError(f"{out}: is a folder; --out names the HTML file to write")
    records = load_labels(data.labels_csv)
    items = select_items(read_oof(run.oof, {r.tomo_id for r in records}, data.labels_csv), records, top, far)
    preprocess = run.load_config().preprocess
    ids = list(dict.fromkeys(item.tomo_id for item in items))
    crops: dict[str, list[list[str]]] = {}
    stream = iter_tomograms([data.split_dir("train") / t for t in ids], progress=progress, desc="review")
    for folder, volume in stream:
        if isinstance(volume, DataError):
            warnings.warn(f"{volume} -> its items are shown without crops", stacklevel=2)
            continue
        lut = window_lut(*percentile_window(volume, preprocess.clip_low, preprocess.clip_high,
                                            preprocess.sample_step))
        for item in (i for i in items if i.tomo_id == folder.name):
            crops[item.key] = [[_png(c) for c in item_crops(volume, item, point, lut)]
                               for point in (item.at, item.other) if point is not None]
        del volume
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_page(run.name, items, crops), encoding="utf-8")
    return out, items


def read_oof(path: Path, known: set[str], labels_csv: Path) -> pl.DataFrame:
    """The run's out-of-fold frame with the columns the review needs, every tomogram among `known` (the labelled
    ones in `labels_csv`); a DataError names what is missing."""
    if not path.is_file():
        raise DataError(f"{path}: not found (make local-score RUN={path.parent.name} writes it)")
    try:
        oof = pl.read_csv(path, schema_overrides=OOF_SCHEMA)
    except (OSError, pl.exceptions.PolarsError) as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    missing = [c for c in OOF_SCHEMA if c not in oof.columns]
    if missing:
        raise DataError(f"{path}: missing columns {missing} (rescore the run: make local-score RUN=... RESUME=1)")
    unknown = sorted(set(oof["tomo_id"]) - known)
    if unknown:
        raise DataError(f"{labels_csv}: no labels for {len(unknown)} tomograms of {path}, e.g. {unknown[:3]} "
                        f"(pass the data the run was scored on: DATA=... / --data)")
    return oof


def item_crops(volume: np.ndarray, item: ReviewItem, at: Point, lut: np.ndarray) -> list[np.ndarray]:
    """The z, y and x planes through `at` (`PALETTE` indices, `CROP_PX` square, `VIEW_A` each side; `lut`: the
    tomogram's contrast), the hit radius circled and the item's candidate and labelled motor marked where they fall
    inside."""
    half = max(2, round(VIEW_A / item.voxel_spacing))
    scale = CROP_PX / (2 * half)
    centre = [int(round(v)) for v in at]
    grey = ((lut.astype(np.uint16) * (GREYS - 1) + 127) // 255).astype(np.uint8)
    crops = []
    for axis in range(3):
        plane, inside = _plane(volume, centre, axis, half, grey)
        image = cv2.resize(plane, (CROP_PX, CROP_PX), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)
        image[cv2.resize(inside, (CROP_PX, CROP_PX), interpolation=cv2.INTER_NEAREST) == 0] = OUTSIDE_INK
        rows, cols = (a for a in range(3) if a != axis)

        def pixel(p: Point) -> tuple[float, float]:
            return (p[cols] - centre[cols] + half + 0.5) * scale, (p[rows] - centre[rows] + half + 0.5) * scale

        cv2.circle(image, _int(pixel(at)), round(HIT_RADIUS_A / item.voxel_spacing * scale), RADIUS_INK, 1)
        for point, ink in ((item.label, LABEL_INK), (item.candidate, CANDIDATE_INK)):
            if point is not None:
                _crosshair(image, pixel(point), ink)
        crops.append(image)
    return crops


def _plane(volume: np.ndarray, centre: Sequence[int], axis: int, half: int,
           lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (2 half)^2 window of the plane `axis` = centre[axis] around the other two coordinates, contrast applied
    (0 outside the volume), and its mask of voxels inside the volume (1)."""
    fixed = min(max(centre[axis], 0), volume.shape[axis] - 1)
    plane = volume[(slice(None),) * axis + (fixed,)]
    r0, c0 = (centre[a] - half for a in range(3) if a != axis)
    window = plane[max(r0, 0): max(r0 + 2 * half, 0), max(c0, 0): max(c0 + 2 * half, 0)]
    out, inside = np.zeros((2 * half, 2 * half), np.uint8), np.zeros((2 * half, 2 * half), np.uint8)
    where = np.s_[max(-r0, 0): max(-r0, 0) + window.shape[0], max(-c0, 0): max(-c0, 0) + window.shape[1]]
    if window.size:
        out[where] = cv2.LUT(np.ascontiguousarray(window), lut)
        inside[where] = 1
    return out, inside


def _crosshair(image: np.ndarray, at: tuple[float, float], ink: int, gap: int = 5, arm: int = 9) -> None:
    """A crosshair with an open centre (the motor stays visible) at `at` (x, y pixels), if inside the image."""
    x, y = _int(at)
    if not (0 <= x < image.shape[1] and 0 <= y < image.shape[0]):
        return
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        cv2.line(image, (x + dx * gap, y + dy * gap), (x + dx * (gap + arm), y + dy * (gap + arm)), ink, 2)


def _int(p: tuple[float, float]) -> tuple[int, int]:
    return int(math.floor(p[0])), int(math.floor(p[1]))


def _png(image: np.ndarray) -> str:
    """A crop of `PALETTE` indices as a palette PNG data URI."""
    png = Image.frombytes("P", image.shape[::-1], np.ascontiguousarray(image).tobytes())
    png.putpalette(PALETTE.ravel().tolist())
    buffer = io.BytesIO()
    png.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _nearest(motors: Sequence[Point], point: Point | None) -> Point | None:
    """The labelled motor nearest `point` (the first when there is no point); None without motors."""
    if not motors:
        return None
    return min(motors, key=lambda m: math.dist(m, point)) if point is not None else motors[0]


def _coords(p: Point | None) -> str:
    """`z,y,x` with up to one decimal (voxel indices), or `,,` for none."""
    return ",".join(f"{v:.1f}".removesuffix(".0") for v in p) if p is not None else ",,"


def render_page(run_name: str, items: Sequence[ReviewItem], crops: dict[str, list[list[str]]]) -> str:
    """The whole HTML page; `crops[item.key]`: rows of PNG data URIs (z, y, x planes) through `at`, then `other`."""
    data = [{"key": it.key, "rows": item_rows(it)} for it in items]
    sections = []
    for group, (heading, colour) in GROUPS.items():
        cards = [_card(i, it, crops.get(it.key, [])) for i, it in enumerate(items) if it.group == group]
        sections.append(f'<section class="group g-{group}" style="--c:{colour}"><h2>{html.escape(heading)} '
                        f'<span class="n">{len(cards)}</span></h2>'
                        f'<div class="grid">{"".join(cards) or "<p class=empty>none</p>"}</div></section>')
    legend = (f'<span class="key" style="color:{_css(CANDIDATE_INK)}">&#x271A; candidate</span> '
              f'<span class="key" style="color:{_css(LABEL_INK)}">&#x271A; labelled motor</span> '
              f'<span class="key" style="color:{_css(RADIUS_INK)}">&#x25EF; hit radius</span> '
              f'<span><i class="swatch" style="background:{_css(OUTSIDE_INK)}"></i> outside the tomogram</span> '
              f'<span class="hint">coordinates (z, y, x) in voxels</span>')
    payload = json.dumps({"run": run_name, "header": OVERRIDE_HEADER, "items": data}).replace("</", "<\\/")
    return _PAGE.format(title=html.escape(f"review: {run_name}"), legend=legend, sections="".join(sections),
                        style=_STYLE, script=_SCRIPT, payload=payload, n=len(items))


def _card(index: int, item: ReviewItem, rows: list[list[str]]) -> str:
    """One item's card: what it is, its crops (a strip per point, each plane captioned with its index), its marks."""
    def pt(p: Point | None) -> str:
        return "none" if p is None else f"({_coords(p).replace(',', ', ')})"

    dist = "no labelled motor" if item.label is None else (
        "no candidate" if item.dist_A is None else f"{item.dist_A:.0f} Å from the label")
    names = ["at label", "at candidate"] if item.group == "fn" else ["at candidate", "at label"]
    strips = "".join(
        f'<div class="strip"><span class="where">{name}</span>'
        + "".join(f'<figure><img src="{uri}" alt="{plane} plane"><figcaption>{plane} {round(v)}</figcaption></figure>'
                  for uri, plane, v in zip(row, "zyx", point)) + "</div>"
        for name, row, point in zip(names, rows, (item.at, item.other))
    ) or '<p class="empty">tomogram unreadable: no crops</p>'
    buttons = "".join(f'<button type="button" data-mark="{m}" title="{html.escape(r or "label confirmed: no row")}"'
                      f'>{MARKS[m]}</button>' for m, r in item_rows(item).items())
    return (f'<article class="card" data-i="{index}"><header><b>{html.escape(item.tomo_id)}</b>'
            f'<span>fold {item.fold}</span><span>score {item.score:.3f}</span><span>{dist}</span></header>'
            f'<p class="coords">candidate {pt(item.candidate)} · label {pt(item.label)} · '
            f'{item.voxel_spacing:g} Å/voxel</p>{strips}<div class="marks">{buttons}</div></article>')


def _css(ink: int) -> str:
    return "rgb({},{},{})".format(*PALETTE[ink])


_STYLE = """
*{box-sizing:border-box}body{margin:0;font:13px/1.35 system-ui,sans-serif;background:#f4f5f7;color:#222}
.bar{position:sticky;top:0;z-index:2;display:flex;gap:14px;align-items:center;flex-wrap:wrap;padding:8px 14px;
background:#212529;color:#eee}.bar h1{font-size:15px;margin:0}.bar .key{font-weight:600}
.bar button{font:inherit;padding:5px 12px;border:0;border-radius:4px;background:#37b24d;color:#fff;cursor:pointer}
#status{color:#ced4da}.swatch{display:inline-block;width:11px;height:11px;border:1px solid #adb5bd;
vertical-align:-1px}#status.bad{color:#ff8787}
.group{padding:4px 14px 10px}.group h2{font-size:14px;margin:10px 0 6px;color:var(--c)}
.group h2 .n{background:var(--c);color:#fff;border-radius:9px;padding:0 7px;font-size:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:8px;align-items:start}
.card{background:#fff;border-radius:6px;border-left:5px solid var(--c);padding:6px 8px;box-shadow:0 1px 2px #0002}
.card header{display:flex;gap:10px;flex-wrap:wrap}.card header span{color:#555}
.coords{margin:2px 0 4px;color:#666;font-size:12px}.empty{color:#888;margin:4px 0}
.strip{display:flex;gap:4px;align-items:center;margin-bottom:3px}
.where{writing-mode:vertical-rl;transform:rotate(180deg);font-size:11px;color:#777}
figure{margin:0;position:relative}figure img{display:block;width:128px;height:128px;image-rendering:pixelated;
border-radius:3px}figcaption{position:absolute;top:2px;left:4px;color:#fff;font-size:11px;text-shadow:0 0 2px #000}
.marks{display:flex;gap:6px;margin-top:4px}.marks button{font:inherit;padding:3px 9px;border:1px solid #adb5bd;
border-radius:4px;background:#f8f9fa;cursor:pointer}
.marks button[aria-pressed=true]{color:#fff;border-color:transparent}
.marks button[data-mark=motor][aria-pressed=true]{background:#2b8a3e}
.marks button[data-mark=none][aria-pressed=true]{background:#c92a2a}
.marks button[data-mark=move][aria-pressed=true]{background:#5f3dc4}
.card.marked{background:#f1f8ff}
"""

_SCRIPT = """
const D = JSON.parse(document.getElementById("items").textContent);
const marks = {};
const store = k => "motor-kit-review|" + D.run + "|" + k;
function show(i) {
  const card = document.querySelector('.card[data-i="' + i + '"]');
  card.classList.toggle("marked", i in marks);
  card.querySelectorAll("button[data-mark]").forEach(b => b.setAttribute("aria-pressed", b.dataset.mark === marks[i]));
  const rows = Object.entries(marks).filter(([j, m]) => D.items[j].rows[m]).length;
  status("marked " + Object.keys(marks).length + " of " + D.items.length + ", " + rows + " rows to export", false);
}
function status(text, bad) {
  const s = document.getElementById("status"); s.textContent = text; s.classList.toggle("bad", bad);
}
function mark(i, m) {
  if (marks[i] === m) delete marks[i]; else marks[i] = m;
  const k = store(D.items[i].key);
  try { if (i in marks) localStorage.setItem(k, marks[i]); else localStorage.removeItem(k); } catch (e) {}
  show(i);
}
function csv() {
  const rows = [], labels = {};
  for (const i of Object.keys(marks).map(Number).sort((a, b) => a - b)) {
    const row = D.items[i].rows[marks[i]];
    if (!row) continue;
    const f = row.split(",");
    if (f[1] === "remove" || f[1] === "move") {
      const label = f[0] + " (" + f.slice(5).join(", ") + ")";
      if (label in labels) throw new Error("two marks change the labelled motor " + label + ": keep one");
      labels[label] = true;
    }
    rows.push(row);
  }
  return [D.header, ...rows].join("\\n") + "\\n";
}
document.addEventListener("click", e => {
  const b = e.target.closest(".card button[data-mark]");
  if (b) mark(Number(b.closest(".card").dataset.i), b.dataset.mark);
});
document.getElementById("export").addEventListener("click", () => {
  let text;
  try { text = csv(); } catch (e) { status(e.message, true); return; }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([text], {type: "text/csv"}));
  a.download = "labels_override.csv";
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
});
D.items.forEach((it, i) => {
  let m = null;
  try { m = localStorage.getItem(store(it.key)); } catch (e) {}
  if (m && m in it.rows) marks[i] = m;
  show(i);
});
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{style}</style></head>
<body><div class="bar"><h1>{title}</h1><span>{n} items</span>{legend}
<button type="button" id="export">Export labels_override.csv</button><span id="status"></span></div>
{sections}
<script type="application/json" id="items">{payload}</script>
<script>{script}</script>
</body></html>
"""
