"""The report in a real headless Chromium (issue 15): contrast from rendered styles (light, dark,
print), no sideways scroll at 400 px, headings clear of the sticky nav, the worked example's hover
arithmetic, the playground's feature map against ``ops.correlate`` (bank kernels, a typed kernel and
an uploaded PNG), the keyboard-operable epoch slider against the recorded probe maps, and the
static content with scripts off. One browser for the module; every test here is slow."""

import numpy as np
import pytest

from convlens.ops import correlate2d
from tests.browser import ARTIFACTS

pytestmark = pytest.mark.slow  # a real headless Chromium


#: WCAG 2 contrast of every visible element with its own text against its composed background
CONTRAST_JS = """() => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
  const over = (top, under) => [0, 1, 2].map(i => top[i] * top[3] + under[i] * (1 - top[3]));
  const background = el => { const layers = [];
    for (let e = el; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) { layers.push(c); if (c[3] >= 1) break; } }
    let col = [255, 255, 255]; for (const l of layers.reverse()) col = over(l, col); return col; };
  const bad = []; let n = 0;
  for (const el of document.querySelectorAll("body *")) {
    if (["SCRIPT", "STYLE", "OPTION", "NOSCRIPT", "TITLE"].includes(el.tagName) || el.closest("svg")) continue;
    const own = [...el.childNodes].some(t => t.nodeType === 3 && t.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const st = getComputedStyle(el); if (st.visibility === "hidden" || st.display === "none") continue;
    const bg = background(el), fg = over(parse(st.color), bg);
    const a = lum(fg), b = lum(bg), ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    n++;
    if (ratio < 4.5) bad.push([el.tagName, el.className, el.textContent.trim().slice(0, 40), ratio.toFixed(2)]);
  }
  return {n, bad};
}"""


@pytest.fixture(scope="module")
def url(demo_run):
    return (demo_run / "report.html").as_uri()


def _page(browser, url, width=1280, **kw):
    page = browser.new_page(viewport={"width": width, "height": 900}, **kw)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url, wait_until="load")
    page.errors = errors
    return page


#: every level of ``verdicts.ood_learned``; the page gets one pill of each (whatever the run's data
#: show) so that their colours and line styles are checked too
OOD_LEVELS = {
    "learned from the task",
    "learned from training on these images",
    "learned from training but task unresolved",
    "no random-label control",
    "present before training",
    "not supported",
    "no untrained control",
}
ADD_OOD_PILLS = (
    "levels => { const p = document.createElement('p'); p.id = 'ood-pills';"
    " for (const v of levels) { const s = document.createElement('span');"
    " s.className = 'verdict v-' + v.replaceAll(' ', '-'); s.textContent = v; p.append(s, ' '); }"
    " document.querySelector('#answer .answer').append(p); }"
)


def test_contrast_layout_nav_print_and_dark_mode(browser, url):
    ARTIFACTS.mkdir(exist_ok=True)
    for scheme in ("light", "dark"):
        page = _page(browser, url, color_scheme=scheme)
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        # the run's own OOD learned pills are there; one of every level is added beside them
        own = ", ".join("#answer .v-" + v.replace(" ", "-") for v in OOD_LEVELS)
        assert page.locator(own).count() >= 1
        page.evaluate(ADD_OOD_PILLS, sorted(OOD_LEVELS))
        res = page.evaluate(CONTRAST_JS)
        assert res["n"] > 200 and not res["bad"], (scheme, res["bad"][:10])
        # the check itself catches a low-contrast element (grey on grey, 1.3:1)
        page.evaluate(
            "() => { const p = document.createElement('p'); p.id = 'probe-low'; p.textContent = 'low';"
            " p.style.color = '#777'; p.style.background = '#999'; document.querySelector('main').append(p); }"
        )
        assert [b[2] for b in page.evaluate(CONTRAST_JS)["bad"]] == ["low"]
        page.evaluate("document.getElementById('probe-low').remove()")
        assert page.locator(".verdict").count() >= 5
        if scheme == "dark":
            bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert bg == "rgb(19, 22, 28)", bg
        page.screenshot(path=str(ARTIFACTS / f"report-1280-{scheme}.png"))
        assert not page.errors, page.errors
        page.close()
    # print: verdicts black on white with a border (legible without colour), contrast still >= 4.5
    page = _page(browser, url)
    page.emulate_media(media="print")
    page.evaluate(ADD_OOD_PILLS, sorted(OOD_LEVELS))
    pills = page.eval_on_selector_all(
        ".verdict",
        "els => els.map(e => { const s = getComputedStyle(e); "
        "return [s.color, s.backgroundColor, s.borderTopWidth, s.borderTopStyle, e.textContent]; })",
    )
    assert pills and all(c == "rgb(0, 0, 0)" for c, *_ in pills), pills[:3]
    assert all(bg in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)") for _, bg, *_ in pills)
    assert all(float(w[:-2]) >= 1 for _, _, w, *_ in pills)
    # verdict levels differ in line style as well as in their words: legible in black and white
    level = dict.fromkeys(("yes", "exact", "holds", "learned from the task"), "solid")
    level |= dict.fromkeys(
        (
            "weak",
            "not supported",
            "learned from image statistics",
            "learned from training on these images",
            "learned from training but task unresolved",
            "no random-label control",
        ),
        "dashed",
    )
    for *_, style, word in pills:
        assert style == level.get(word, "dotted"), (word, style)
    assert {w for *_, w in pills} >= OOD_LEVELS  # every OOD learned level was checked
    assert page.evaluate("getComputedStyle(document.querySelector('nav')).display") == "none"
    assert not page.evaluate(CONTRAST_JS)["bad"]
    page.evaluate("document.getElementById('ood-pills').remove()")
    page.emulate_media(media="screen")
    # a nav jump leaves the heading below the sticky nav
    for sid in ("learned", "distribution", "reproduce"):
        page.click(f'nav a[href="#{sid}"]')
        page.wait_for_timeout(50)
        top = page.evaluate(f"document.querySelector('#{sid} h2').getBoundingClientRect().top")
        nav = page.evaluate("document.querySelector('nav').getBoundingClientRect().bottom")
        assert top >= nav - 1, (sid, top, nav)
    page.close()
    # 400 px: no sideways scroll, the nav does not stick
    page = _page(browser, url, width=400)
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    assert page.evaluate("getComputedStyle(document.querySelector('nav')).position") == "static"
    page.screenshot(path=str(ARTIFACTS / "report-400.png"))
    assert not page.errors, page.errors
    page.close()


def test_worked_example_hover_focus_and_flip(browser, url):
    from convlens.explain import explain, parse_matrix
    from convlens.report.build import SEED_INPUT, SEED_KERNEL

    k, x = parse_matrix(SEED_KERNEL), parse_matrix(SEED_INPUT)
    page = _page(browser, url)
    page.hover('#wx-output button[data-i="0"][data-j="0"]')
    detail = page.inner_text("#wx-detail")
    assert detail.startswith(
        "cell (0, 0): 1\u00d79 + 2\u00d78 + 3\u00d77 + 4\u00d75"
    ) and detail.endswith("= 154")
    assert page.locator("#wx-input td.hl").count() == 9
    # keyboard: Tab reaches the cells; focus shows the bottom-right window and sum
    page.focus('#wx-output button[data-i="1"][data-j="0"]')
    page.keyboard.press("Tab")
    want = explain(k, x).output
    assert page.inner_text("#wx-detail").endswith(f"= {want[1][1]}")
    hl = page.eval_on_selector_all(
        "#wx-input td.hl", "els => els.map(e => [+e.dataset.i, +e.dataset.j])"
    )
    assert sorted(map(tuple, hl)) == [(i, j) for i in (1, 2, 3) for j in (1, 2, 3)]
    # flip: the kernel shown flips and the outputs become the true convolution
    page.check("#wx-conv")
    conv = explain(k, x, convolve=True).output
    shown = page.eval_on_selector_all("#wx-output button", "els => els.map(e => +e.textContent)")
    assert shown == [int(v) for v in np.asarray(conv).ravel()]
    first = page.inner_text('#wx-kernel td[data-i="0"][data-j="0"]')
    assert first == "9" and page.inner_text("#wx-detail").endswith(f"= {conv[1][1]}")
    assert not page.errors, page.errors
    page.close()


def _check_playground(page) -> None:
    state = page.evaluate("window.convlens.playground")
    x = np.array(state["input"], dtype=np.float64)
    k = np.array(state["kernel"], dtype=np.float64)
    want = correlate2d(x, k, padding=state["padding"])
    got = np.array(state["output"])
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_playground_matches_the_engine_and_reads_an_uploaded_png(browser, url, tmp_path):
    from PIL import Image

    page = _page(browser, url)
    n_k = page.locator("#pg-kernel option").count() - 1
    n_i = page.locator("#pg-image option").count() - 1
    assert n_k >= 5 and n_i >= 2
    labels = page.locator("#pg-kernel option").all_inner_texts()
    assert "prewitt_x" in labels and any(t.startswith("trained conv1 unit") for t in labels)
    for i in range(n_i):
        page.select_option("#pg-image", str(i))
        for kk in range(n_k):
            page.select_option("#pg-kernel", str(kk))
            for pad in ("valid", "same"):
                page.select_option("#pg-padding", pad)
                _check_playground(page)
    page.fill("#pg-custom", "1 0 -1; 2 0 -2; 1 0 -1.5")
    assert page.input_value("#pg-kernel") == "custom"
    _check_playground(page)
    assert page.evaluate("window.convlens.playground.kernel")[2][2] == -1.5
    # an uploaded PNG: grey levels read back exactly, feature map equal to the engine's
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(17, 23), dtype=np.uint8)
    png = tmp_path / "mine.png"
    Image.fromarray(pixels, mode="L").save(png)
    page.set_input_files("#pg-file", str(png))
    page.wait_for_function(
        "window.convlens.playground && window.convlens.playground.input.length === 17"
    )
    assert page.input_value("#pg-image") == "upload"
    got = np.array(page.evaluate("window.convlens.playground.input"))
    np.testing.assert_allclose(got, pixels / 255.0, rtol=0, atol=1e-6)
    _check_playground(page)
    # inspect one output cell by keyboard (row/column inputs) and by hovering the feature map
    page.select_option("#pg-padding", "same")
    page.fill("#pg-row", "0")
    page.fill("#pg-col", "5")
    out = np.array(page.evaluate("window.convlens.playground.output"))
    got = page.evaluate("window.convlens.inspect")
    assert got["cell"] == [0, 5] and abs(got["sum"] - out[0, 5]) <= 1e-9
    assert page.inner_text("#pg-detail").startswith(
        "cell (0, 5): 1\u00d70 + 0\u00d70"
    )  # padded row
    box = page.locator("#pg-out").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.99, box["y"] + box["height"] * 0.99)
    got = page.evaluate("window.convlens.inspect")
    assert got["cell"] == [out.shape[0] - 1, out.shape[1] - 1]
    assert abs(got["sum"] - out[-1, -1]) <= 1e-9
    page.fill("#pg-custom", "1 2; x")
    assert "cannot compute" in page.inner_text("#pg-status")
    assert not page.errors, page.errors
    page.close()


def test_epoch_slider_keyboard_and_maps_equal_the_recorded_ones(browser, url, demo_run):

    from convlens.analysis.result import AnalysisResult

    first = AnalysisResult.read(demo_run / "analysis.json").first_layer
    epochs = sorted(int(f.name[6:9]) for f in (demo_run / "snapshots").glob("epoch-*.safetensors"))
    page = _page(browser, url)
    slider = page.locator("#ev-slider")
    assert slider.get_attribute("type") == "range"
    assert int(slider.get_attribute("max")) == len(epochs) - 1
    slider.focus()
    page.keyboard.press("Home")
    assert page.inner_text("#ev-epoch") == f"epoch {epochs[0]}"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#ev-epoch") == f"epoch {epochs[2]}"
    assert slider.get_attribute("aria-valuetext") == f"epoch {epochs[2]}"
    n_probes = page.locator("#ev-probe option").count()
    assert n_probes >= 2
    for e_idx in (2, len(epochs) - 1):
        if e_idx == len(epochs) - 1:
            page.keyboard.press("End")
        for p in range(n_probes):
            page.select_option("#ev-probe", str(p))
            state = page.evaluate("window.convlens.slider")
            assert state["epoch"] == epochs[e_idx]
            want = _first_layer_map(demo_run, first.name, epochs[e_idx], state["probe"])
            got = np.array(state["maps"])
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))
    assert page.locator("#ev-kernels canvas").count() == min(16, first.identity.out_channels)
    assert not page.errors, page.errors
    page.close()


def _first_layer_map(run, layer: str, epoch: int, probe: int) -> np.ndarray:
    """The first conv layer's map for one probe image, from the run's snapshot and probe inputs
    by torch's float64 conv2d (an oracle independent of the engine that derives the report's)."""
    import torch
    from safetensors.numpy import load_file

    from convlens.analysis.measure.featuremaps import load_probes

    snap = load_file(str(run / "snapshots" / f"epoch-{epoch:03d}.safetensors"))
    x = load_probes(run / "probes")[0][probe : probe + 1]  # the OOD probes rebuilt by recipe
    w, b = snap[f"{layer}.weight"], snap.get(f"{layer}.bias")
    out = torch.nn.functional.conv2d(
        torch.from_numpy(x).double(),
        torch.from_numpy(w).double(),
        None if b is None else torch.from_numpy(b).double(),
        padding=w.shape[-1] // 2,
    )
    return out[0].numpy()


def test_static_content_reads_without_javascript(browser, url):
    page = _page(browser, url, java_script_enabled=False)
    text = page.inner_text("main")
    # the one answer's summary opens the page (report, CLI and README print the same words)
    assert "No, not between input signals" in text and "154" in text and "Glossary" in text
    assert "cell (0, 0): 1\u00d79" in page.inner_text("#wx-detail")
    assert page.locator("#layers svg.kern").count() >= 16
    assert "needs JavaScript" in text  # the noscript notes of the playground and slider
    # issue 23: no control that would do nothing stays visible (the worked example's output cells
    # are buttons that show their values, so they stay)
    dead = page.evaluate(
        "[...document.querySelectorAll('input, select, textarea, canvas, output')]"
        ".filter(e => e.getClientRects().length).map(e => e.id)"
    )
    assert dead == [], dead
    page.close()


@pytest.mark.parametrize(
    ("k", "stride", "pad", "dil"),
    [(3, 1, 0, 1), (5, 2, 2, 1), (3, 1, 1, 3), (2, 3, 2, 2), (1, 1, 0, 1), (4, 2, 1, 2)],
)
def test_multichannel_step_equals_the_engine(browser, url, k, stride, pad, dil):
    """Issue 23: the page's 3-channel step (bias, ReLU, stride, zero padding, dilation) equals
    ``convlens.ops.correlate`` (PyTorch's Conv2d semantics) exactly on its integers, and its
    output-size line is PyTorch's formula."""
    from convlens.ops import correlate

    page = _page(browser, url)
    for name, v in (("k", k), ("stride", stride), ("pad", pad), ("dil", dil)):
        page.select_option(f"#mc-{name}", str(v))
    st = page.evaluate("window.convlens.mc")
    x = np.array(st["x"], dtype=np.int64)[None]
    w = np.array(st["w"], dtype=np.int64)[None]
    assert w.shape == (1, 3, k, k)
    ref = correlate(x, w, bias=np.array([st["bias"]]), stride=stride, padding=pad, dilation=dil)
    assert np.array_equal(np.array(st["pre"]), ref[0, 0])
    assert np.array_equal(np.array(st["out"]), np.maximum(ref[0, 0], 0))
    side = (7 + 2 * pad - dil * (k - 1) - 1) // stride + 1
    assert page.inner_text("#mc-size").endswith(f"= {side}")
    cell = page.locator("#mc button.cell").last
    cell.click()
    got = page.evaluate("window.convlens.mcCell")
    i, j = got["cell"]
    assert got["pre"] == ref[0, 0, i, j] and "ReLU: max(0, " in page.inner_text("#mc-detail")
    assert not page.errors, page.errors
    page.close()


def test_multichannel_step_says_when_the_dilated_kernel_does_not_fit(browser, url):
    page = _page(browser, url)
    for name, v in (("k", 5), ("dil", 3)):
        page.select_option(f"#mc-{name}", str(v))
    assert "does not fit" in page.inner_text("#mc-size")
    assert page.evaluate("window.convlens.mc.pre") == []
    page.close()


def _torch_net(payload, weights=None):
    """convlens's SmallCNN in float64 with the page's own weights (the final ones, or a snapshot's
    conv weights over them)."""
    import torch

    from convlens.models import build_model
    from convlens.runs.records import ModelSpec

    n = payload["net"]
    spec = ModelSpec(
        "page",
        n["in_channels"],
        tuple(n["input_hw"]),
        len(n["classes"]),
        tuple(len(n["weights"][f"conv{i + 1}.bias"]) for i in range(len(n["kernels"]))),
        tuple(n["kernels"]),
        tuple(n["pool"]),
        len(n["weights"]["fc1.bias"]),
    )
    model = build_model(spec).double()
    state = {
        k: torch.tensor(v, dtype=torch.float64)
        for k, v in {**n["weights"], **(weights or {})}.items()
    }
    model.load_state_dict(state)
    return model


def _payload(page):
    return page.evaluate("JSON.parse(document.getElementById('convlens-data').textContent)")


def test_own_image_pass_equals_the_network_in_torch(browser, url, tmp_path):
    """Issue 23: an image through the trained network in the page (every conv layer's maps, the
    logits) equals convlens's SmallCNN in torch float64 on the same weights and input to 1e-6; an
    uploaded image of the network's size is normalised exactly as the training data were."""
    import torch
    from PIL import Image

    page = _page(browser, url)
    payload = _payload(page)
    model = _torch_net(payload)
    n = payload["net"]

    def check():
        st = page.evaluate("window.convlens.net")
        x = torch.tensor([st["x"]], dtype=torch.float64)
        with torch.no_grad():
            logits, maps = model.forward_with_convs(x)
        for i, m in enumerate(st["maps"]):
            assert np.abs(np.array(m) - maps[f"conv{i + 1}"][0].numpy()).max() < 1e-6
        assert np.abs(np.array(st["logits"]) - logits[0].numpy()).max() < 1e-6
        assert abs(sum(st["probs"]) - 1) < 1e-12
        return st

    for i in range(len(payload["slider"]["probes"])):
        page.select_option("#net-image", str(i))
        check()
    h, w = n["input_hw"]
    rgb = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "mine.png")
    page.set_input_files("#net-file", str(tmp_path / "mine.png"))
    page.wait_for_function("window.convlens.net && window.convlens.net.source === 'upload'")
    st = check()
    grey = (0.2126 * rgb[..., 0] + 0.7152 * rgb[..., 1] + 0.0722 * rgb[..., 2]) / 255
    assert np.abs(np.array(st["x"][0]) - (grey - n["mean"]) / n["std"]).max() < 1e-9
    assert "prediction: " in page.inner_text("#net-out")
    assert not page.errors, page.errors
    page.close()


def test_the_epoch_slider_serves_every_conv_layer(browser, url, demo_run):
    """Issue 23: the slider's layer menu shows a deeper layer's kernels at each snapshot epoch
    (the snapshot's own values, 7 significant digits) and its probe feature maps, computed through
    the layers before it with that epoch's weights (equal to torch float64 to 1e-6)."""
    import torch

    from convlens.runs.layout import RunLayout
    from convlens.runs.read import read_tensors

    page = _page(browser, url)
    payload = _payload(page)
    S = payload["slider"]
    layers = list(S["layers"])
    assert len(layers) >= 2 and page.locator("#ev-layer option").count() == len(layers)
    page.select_option("#ev-layer", layers[-1])
    for index in (0, len(S["epochs"]) // 2):
        page.locator("#ev-slider").fill(str(index))
        st = page.evaluate("window.convlens.slider")
        epoch = S["epochs"][index]
        assert st["layer"] == layers[-1] and st["epoch"] == epoch
        snap = read_tensors(RunLayout(demo_run).snapshot(epoch))
        for name in layers:
            got = np.array(S["layers"][name]["weights"][index])
            assert np.allclose(got, snap[f"{name}.weight"], rtol=1e-6, atol=1e-12)
        weights = {
            f"{name}.{t}": S["layers"][name]["weights" if t == "weight" else "bias"][index]
            for name in layers
            for t in ("weight", "bias")
        }
        model = _torch_net(payload, weights)
        probe = S["probes"][int(page.input_value("#ev-probe"))]["x"]
        with torch.no_grad():
            _, maps = model.forward_with_convs(torch.tensor([probe], dtype=torch.float64))
        assert np.abs(np.array(st["maps"]) - maps[layers[-1]][0].numpy()).max() < 1e-6
    assert not page.errors, page.errors
    page.close()
