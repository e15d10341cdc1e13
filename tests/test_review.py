"""`make review`: which out-of-fold mistakes the page lists and the rows each mark writes (pure), then the real page
in a real headless Chromium: built by the CLI from synthetic tiny data, opened from file:// with the network cut,
marked by clicks, exported, and the downloaded labels_override.csv compared row by row and applied by the kit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kitlib.cli import main
from kitlib.config import KitConfig
from kitlib.data.labels import TomoRecord, load_labels
from kitlib.data.overrides import apply_overrides, read_overrides
from kitlib.data.synth import synthesize
from kitlib.evaluation.review import (CANDIDATE_INK, CROP_PX, OUTSIDE_INK, OVERRIDE_HEADER, PALETTE, VIEW_A,
                                      ReviewItem, item_crops, item_rows, select_items)
from kitlib.run import RunDir

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def oof_frame(rows: list[tuple]) -> pl.DataFrame:
    """An oof.csv frame (the columns the review reads) from (tomo_id, (z, y, x) or None, score, hit, kept, dist_A)."""
    return pl.DataFrame(
        [(t, *(zyx or (-1.0, -1.0, -1.0)), score, i % 2, hit, dist, kept)
         for i, (t, zyx, score, hit, kept, dist) in enumerate(rows)],
        schema={"tomo_id": pl.String, "z": pl.Float64, "y": pl.Float64, "x": pl.Float64, "score": pl.Float64,
                "fold": pl.Int64, "hit": pl.Boolean, "dist_A": pl.Float64, "kept": pl.Boolean},
        orient="row",
    )


def test_select_items_and_the_rows_of_each_mark():
    def rec(tomo_id, *motors):
        return TomoRecord(tomo_id, (40, 100, 100), 10.0, list(motors), len(motors))

    records = [rec("empty_hi"), rec("empty_lo"), rec("empty_none"), rec("good", (10.0, 40.0, 40.0)),
               rec("low", (12.0, 30.0, 30.0)), rec("elsewhere", (5.0, 5.0, 5.0), (30.0, 80.0, 80.0)),
               rec("far", (20.0, 50.0, 50.0)), rec("failed", (8.0, 8.0, 8.0))]
    oof = oof_frame([
        ("empty_hi", (1.0, 2.0, 3.0), 0.9, False, True, None),
        ("empty_lo", (4.0, 5.0, 6.0), 0.2, False, False, None),
        ("empty_none", None, 0.0, False, False, None),
        ("good", (10.0, 41.0, 40.0), 0.95, True, True, 10.0),  # a close kept hit: not listed
        ("low", (12.0, 31.0, 30.0), 0.1, True, False, 10.0),  # a hit below the presence rule: a false negative
        ("elsewhere", (28.04, 70.25, 81.0), 0.8, False, True, 102.0),  # near the second motor, outside the radius
        ("far", (20.0, 50.0, 110.0), 0.7, True, True, 600.0),
        ("failed", None, 0.0, False, False, None),  # an unreadable tomogram: no candidate
    ])
    items = select_items(oof, records, top=2)
    assert [(i.group, i.tomo_id) for i in items] == [
        ("fp", "empty_hi"), ("fp", "elsewhere"),  # top 2 by score: empty_lo is cut
        ("fn", "elsewhere"), ("fn", "low"), ("fn", "failed"),  # by score
        ("far", "far"),
    ]
    fp_else, fn_else, fn_failed, far = items[1], items[2], items[4], items[5]
    assert fp_else.label == fn_else.label == (30.0, 80.0, 80.0)  # the motor nearest the candidate
    assert fn_failed.candidate is None and fn_failed.at == fn_failed.label == (8.0, 8.0, 8.0) and not fn_failed.other
    assert fn_else.at == (30.0, 80.0, 80.0) and fn_else.other == (28.04, 70.25, 81.0)
    assert items[0].label is None and items[0].other is None and far.other == (20.0, 50.0, 50.0)
    assert select_items(oof, records, top=2, far=0.7)[-1].group == "fn"  # 600 A is not beyond 0.7 of 1000 A

    assert item_rows(items[0]) == {"motor": "empty_hi,add,1,2,3,,,", "none": "empty_hi,none,1,2,3,,,"}
    assert item_rows(fp_else) == {"motor": "elsewhere,add,28,70.2,81,,,", "none": "elsewhere,none,28,70.2,81,,,",
                                  "move": "elsewhere,move,28,70.2,81,30,80,80"}
    assert item_rows(fn_else) == {"motor": "", "none": "elsewhere,remove,,,,30,80,80"}
    assert item_rows(far) == {"motor": "", "none": "far,remove,,,,20,50,50", "move": "far,move,20,50,110,20,50,50"}


@pytest.fixture
def review_run(tmp_path):
    """Synthetic tiny data and a run whose oof.csv holds false positives (one in a labelled tomogram), false
    negatives (one without a candidate, one below the rule) and a far true positive."""
    data = synthesize(tmp_path / "data", 6, 0, size="tiny", progress=False).out
    labels = {r.tomo_id: r for r in load_labels(data / "train_labels.csv")}
    assert labels["tomo_1646c2"].motors == [(17.0, 48.0, 33.0)] and labels["tomo_70ae96"].motors == [(8.0, 42.0, 73.0)]
    assert not labels["tomo_6e808e"].motors and not labels["tomo_17fba3"].motors
    assert len(labels["tomo_6307a4"].motors) == 4
    run = RunDir(tmp_path / "runs" / "r1")
    run.save_config(KitConfig.preset("cpu"))
    far = 5.7 * labels["tomo_70ae96"].voxel_spacing  # 597 A: beyond half the hit radius
    oof_frame([
        ("tomo_6e808e", (16.0, 48.26, 50.0), 0.9, False, True, None),
        ("tomo_1646c2", (20.0, 60.0, 40.5), 0.7, False, True, 1805.0),
        ("tomo_17fba3", (10.5, 20.0, 30.0), 0.5, False, True, None),
        ("tomo_a718be", (3.0, 90.0, 90.0), 0.05, False, False, None),
        ("tomo_6307a4", (17.0, 29.5, 77.0), 0.1, True, False, 64.0),
        ("tomo_70ae96", (8.0, 42.0, 67.3), 0.6, True, True, far),
    ]).write_csv(run.oof)
    return data, run


def test_crops_are_centred_and_show_what_lies_outside():
    volume = np.full((12, 60, 60), 50, np.uint8)
    volume[9:12, 19:22, 29:32] = 200  # a bright cube around (10, 20, 30)
    item = ReviewItem("fp", "t", 0, 0.9, None, (10.0, 20.0, 30.0), None, VIEW_A / 12)  # crops 24 voxels wide
    crops = item_crops(volume, item, item.at, np.arange(256, dtype=np.uint8))  # contrast: identity
    assert [c.shape for c in crops] == [(CROP_PX, CROP_PX)] * 3
    assert all((PALETTE[c[66, 66]] == 200).all() for c in crops)  # the centre voxel (the crosshair leaves it open)
    column = crops[1][:, 66]  # the y plane (rows z -2 .. 21, 5.33 px each) down through x = 30
    inside, below = column[20:48], column[84:115]  # z 2 .. 7 (inside the circle, above the crosshair); past z 11
    assert (PALETTE[inside] == 50).all() and (below == OUTSIDE_INK).all()
    assert (crops[0][66, 71:75] == CANDIDATE_INK).all()  # the crosshair's right arm


def test_review_cli_refuses_what_it_cannot_review(review_run, capsys):
    data, run = review_run
    oof = pl.read_csv(run.oof)
    oof.with_columns(pl.lit("tomo_unknown").alias("tomo_id")).write_csv(run.oof)
    assert main(["review", "--data", str(data), "--run", str(run.root)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {data / 'train_labels.csv'}: no labels for 1 tomograms")
    run.oof.unlink()
    assert main(["review", "--data", str(data), "--run", str(run.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {run.oof}: not found") and "\n" not in err


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium): the page's "
                                                   "clicks and export are tested in a real browser only")
def test_review_page_in_chromium(review_run, tmp_path):
    from playwright.sync_api import sync_playwright

    data, run = review_run
    assert main(["review", "--data", str(data), "--run", str(run.root)]) == 0
    page_html = run.review.read_text()
    assert "http://" not in page_html and "https://" not in page_html

    expected = [
        "tomo_6e808e,add,16,48.3,50,,,",  # FP marked "no motor", then "motor here"
        "tomo_1646c2,add,20,60,40.5,,,",  # FP in a labelled tomogram: "motor here" (a second motor)
        "tomo_17fba3,none,10.5,20,30,,,",  # FP: "no motor"
        "tomo_1646c2,remove,,,,17,48,33",  # FN without a hit: "no motor"
        "tomo_70ae96,move,8,42,67.3,8,42,73",  # far TP: "move label here"
    ]  # tomo_a718be (FP) unmarked and tomo_6307a4 (FN) "motor here": no rows
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(accept_downloads=True, viewport={"width": 1300, "height": 900})
            context.route(lambda url: not url.startswith(("file:", "data:", "blob:")),
                          lambda route: (outside.append(route.request.url), route.abort()))
            page = context.new_page()
            page.goto(run.review.resolve().as_uri())

            cards = page.locator(".card")
            assert cards.count() == 7
            groups = {g: page.locator(f".g-{g} .card").count() for g in ("fp", "fn", "far")}
            assert groups == {"fp": 4, "fn": 2, "far": 1}
            images = page.locator(".card img")
            assert images.count() == 3 * (4 + 2 + 1 + 3)  # a second strip at the label: 1646c2 (FP and FN), far TP
            assert page.evaluate("[...document.images].every(i => i.complete && i.naturalWidth === 128)")
            assert "fold" in cards.nth(0).inner_text() and "tomo_6e808e" in cards.nth(0).inner_text()
            assert "597 Å from the label" in page.locator(".g-far .card").inner_text()

            def click(group: str, tomo_id: str, mark: str) -> None:
                page.locator(f".g-{group} .card", has_text=tomo_id).locator(f"button[data-mark={mark}]").click()

            click("fp", "tomo_6e808e", "none")
            click("fp", "tomo_6e808e", "motor")
            assert page.locator(".g-fp .card", has_text="tomo_6e808e").get_attribute("class") == "card marked"
            pressed = page.locator(".g-fp .card", has_text="tomo_6e808e").locator("button[aria-pressed=true]")
            assert pressed.count() == 1 and pressed.inner_text() == "motor here"
            assert page.locator(".g-fn .card", has_text="tomo_6307a4").locator("button[data-mark=move]").count() == 0
            click("fp", "tomo_1646c2", "move")
            click("fn", "tomo_1646c2", "none")
            downloads = []
            page.on("download", lambda d: downloads.append(d))
            page.click("#export")  # both change the same labelled motor: refused, said why
            assert "tomo_1646c2" in page.inner_text("#status") and "bad" in page.get_attribute("#status", "class")
            click("fp", "tomo_1646c2", "motor")
            click("fp", "tomo_17fba3", "none")
            click("fn", "tomo_6307a4", "motor")
            click("far", "tomo_70ae96", "move")
            click("fp", "tomo_a718be", "motor")
            click("fp", "tomo_a718be", "motor")  # a second click unmarks
            assert page.inner_text("#status") == "marked 6 of 7, 5 rows to export"
            with page.expect_download() as info:
                page.click("#export")
            download = info.value
            assert download.suggested_filename == "labels_override.csv"
            csv_path = tmp_path / "labels_override.csv"
            download.save_as(csv_path)
            assert len(downloads) == 1  # the refused export downloaded nothing
            page.reload()  # the marks survive a reload (local storage)
            assert page.locator("button[aria-pressed=true]").count() == 6
        finally:
            browser.close()
    assert not outside, outside
    assert csv_path.read_text().splitlines() == [OVERRIDE_HEADER, *expected]

    fixed = {r.tomo_id: r for r in apply_overrides(load_labels(data / "train_labels.csv"), read_overrides(csv_path))}
    assert fixed["tomo_6e808e"].motors == [(16.0, 48.3, 50.0)] and fixed["tomo_1646c2"].motors == [(20.0, 60.0, 40.5)]
    assert fixed["tomo_70ae96"].motors == [(8.0, 42.0, 67.3)] and not fixed["tomo_17fba3"].motors


def test_review_out_and_top(review_run):
    data, run = review_run
    out = run.root / "elsewhere" / "page.html"
    assert main(["review", "--data", str(data), "--run", str(run.root), "--out", str(out), "--top", "1"]) == 0
    text = out.read_text()
    assert not run.review.exists() and text.count('<article class="card"') == 1 + 2 + 1  # top 1 FP, every FN
