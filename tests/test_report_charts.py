"""The report's interactive charts (issue 23, TensorBoard parity offline): the chart specs hold the
run's own numbers (``report/charts.py``), and in headless Chromium every chart's CSV and JSON
downloads equal its data, hover and arrow keys read the plotted values, zoom and legend toggles
work, the weight histogram's epoch slider shows the snapshot's histogram, and chart text stays
>= 11 px at 400 px. The browser tests are slow."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from convlens.report.charts import HIST_BINS, training_charts, weight_histograms
from convlens.runs import read
from convlens.runs.layout import RunLayout


def test_training_charts_hold_every_seeds_metrics():
    rows = {
        "seed 1": [
            {
                "epoch": 1,
                "train_loss": 0.5,
                "val_loss": float("nan"),
                "train_acc": 0.5,
                "val_acc": 0.4,
            }
        ],
        "seed 2": [
            {"epoch": 1, "train_loss": 0.4, "val_loss": 0.6, "train_acc": 0.6, "val_acc": 0.5}
        ],
    }
    c = training_charts(rows)
    loss = c["training-loss"]["series"]
    assert [s["name"] for s in loss] == [
        "seed 1 train",
        "seed 1 validation",
        "seed 2 train",
        "seed 2 validation",
    ]
    assert loss[1]["y"] == [None] and loss[1]["dash"]  # NaN is a gap, not a number
    assert c["training-acc"]["series"][2]["y"] == [0.6]
    json.dumps(c, allow_nan=False)  # valid JSON for the page


def test_weight_histograms_share_bins_across_epochs():
    rng = np.random.default_rng(0)
    snaps = {0: {"w": rng.normal(size=(4, 1, 3, 3))}, 5: {"w": 3 * rng.normal(size=(4, 1, 3, 3))}}
    h = weight_histograms([0, 5], snaps.__getitem__, ["w", "missing"])
    assert h is not None and list(h["layers"]) == ["w"]
    w = h["layers"]["w"]
    assert len(w["edges"]) == HIST_BINS + 1 and [sum(c) for c in w["counts"]] == [36, 36]
    both = np.concatenate([snaps[0]["w"].ravel(), snaps[5]["w"].ravel()])
    assert w["edges"][0] == both.min() and w["edges"][-1] == both.max()
    assert weight_histograms([], snaps.__getitem__, ["w"]) is None


def _open(browser, demo_run):
    pg = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto((demo_run / "report.html").as_uri(), wait_until="load")
    pg.errors = errors
    return pg


@pytest.fixture(scope="module")
def page(browser, demo_run):
    pg = _open(browser, demo_run)
    yield pg
    pg.close()


CHARTS = [
    "training-loss",
    "training-acc",
    "evolution-fraction",
    "evolution-median",
    "evolution-distance",
    "weights",
]


def _download(page, chart: str, fmt: str) -> str:
    with page.expect_download() as info:
        page.locator(f'div.chart[data-chart="{chart}"] button[data-format="{fmt}"]').click()
    return open(info.value.path(), encoding="utf-8").read()


@pytest.mark.slow
@pytest.mark.parametrize("chart", CHARTS)
def test_each_charts_csv_and_json_downloads_equal_its_data(browser, demo_run, chart):
    # a page of its own: Chromium blocks a page's many automatic downloads after the first few
    page = _open(browser, demo_run)
    spec = page.evaluate(
        f"JSON.parse(document.getElementById('convlens-data').textContent).charts[{chart!r}]"
    )
    assert json.loads(_download(page, chart, "json")) == spec
    rows = list(csv.reader(io.StringIO(_download(page, chart, "csv"))))
    if spec["kind"] == "hist":
        assert rows[0] == ["layer", "epoch", "bin_low", "bin_high", "count"]
        got = [(r[0], int(r[1]), float(r[2]), float(r[3]), int(r[4])) for r in rows[1:]]
        want = [
            (layer, e, h["edges"][b], h["edges"][b + 1], n)
            for layer, h in spec["layers"].items()
            for e, counts in zip(h["epochs"], h["counts"], strict=True)
            for b, n in enumerate(counts)
        ]
    else:
        assert rows[0] == ["series", spec["x_label"], spec["y_label"]]
        got = [(r[0], float(r[1]), float(r[2]) if r[2] else None) for r in rows[1:]]
        want = [
            (s["name"], x, y) for s in spec["series"] for x, y in zip(s["x"], s["y"], strict=True)
        ]
    assert got == want
    assert not page.errors, page.errors
    page.close()


@pytest.mark.slow
def test_hover_and_keys_read_the_runs_own_metrics(page, demo_run):
    rows = [r.to_dict() for r in read.metrics(RunLayout(demo_run).root)]
    svg = page.locator('div.chart[data-chart="training-loss"] svg')
    svg.scroll_into_view_if_needed()
    box = svg.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    state = page.evaluate("window.convlens.charts['training-loss']")
    epoch = state["cursor"]
    row = next(r for r in rows if r["epoch"] == epoch)
    label = f"seed {RunLayout(demo_run).root and read.run_record(RunLayout(demo_run)).config.seed}"
    shown = state["readout"].split(f"{label} train ", 1)[1].split(";", 1)[0]
    assert state["readout"].startswith(f"epoch {epoch}: ")
    assert float(shown) == pytest.approx(row["train_loss"], rel=1e-3, abs=1e-4)
    svg.focus()
    page.keyboard.press("End")
    assert page.evaluate("window.convlens.charts['training-loss'].cursor") == rows[-1]["epoch"]
    full = page.evaluate("window.convlens.charts['training-loss'].view")
    page.keyboard.press("+")
    zoomed = page.evaluate("window.convlens.charts['training-loss'].view")
    assert zoomed[1] - zoomed[0] < full[1] - full[0]
    page.keyboard.press("0")
    assert page.evaluate("window.convlens.charts['training-loss'].view") == full
    # a legend entry hides its line and says so
    key = page.locator('div.chart[data-chart="training-loss"] .chart-legend button').first
    key.click()
    assert key.get_attribute("aria-pressed") == "false"
    assert page.evaluate("window.convlens.charts['training-loss'].hidden") == [0]
    key.click()
    # drag to zoom
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=4)
    page.mouse.up()
    view = page.evaluate("window.convlens.charts['training-loss'].view")
    assert full[0] < view[0] < view[1] < full[1]


@pytest.mark.slow
def test_weight_histogram_slider_shows_each_snapshots_histogram(page, demo_run):
    from convlens.runs.read import read_tensors

    spec = page.evaluate(
        "JSON.parse(document.getElementById('convlens-data').textContent).charts.weights"
    )
    box = page.locator('div.chart[data-chart="weights"]')
    layers = list(spec["layers"])
    assert len(layers) >= 2  # every conv layer, not just the first
    box.locator("select.h-layer").select_option(layers[1])
    box.locator("input.h-slider").fill("0")
    state = page.evaluate("window.convlens.charts.weights")
    h = spec["layers"][layers[1]]
    w = read_tensors(RunLayout(demo_run).snapshot(h["epochs"][0]))[layers[1]]
    assert state["layer"] == layers[1] and state["epoch"] == h["epochs"][0]
    assert state["counts"] == np.histogram(w, bins=np.array(h["edges"]))[0].tolist()


@pytest.mark.slow
def test_chart_text_stays_readable_at_400_px(page):
    page.set_viewport_size({"width": 400, "height": 800})
    page.wait_for_timeout(100)
    sizes = page.evaluate(
        "[...document.querySelectorAll('div.chart svg text')].filter(t => t.getClientRects().length)"
        ".map(t => t.getBoundingClientRect().height)"
    )
    font = page.evaluate(
        "Math.min(...[...document.querySelectorAll('div.chart svg')].map(s => "
        "parseFloat(getComputedStyle(s).fontSize) * s.getBoundingClientRect().width / s.viewBox.baseVal.width))"
    )
    page.set_viewport_size({"width": 1280, "height": 900})
    assert sizes and font >= 11, font
