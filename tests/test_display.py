"""The notebook API: convlens.load, _repr_html_ and .plot(), and the executed example notebook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import convlens
from convlens.analysis.result import AnalysisResult
from convlens.errors import ConvlensError
from convlens.pipelines import write_result

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def loaded(tiny_run_copy, tiny_run_analysis):
    write_result(tiny_run_analysis, tiny_run_copy / "analysis.json")
    return convlens.load(tiny_run_copy)


def test_load_run_and_model_json(loaded, tiny_run_copy, tmp_path):
    # load wraps the typed result for display; the dataclass itself knows no display
    from convlens.display import View

    assert isinstance(loaded, View) and isinstance(loaded.result, AnalysisResult)
    assert not hasattr(AnalysisResult, "_repr_html_") and not hasattr(AnalysisResult, "plot")
    assert loaded.to_dict() == AnalysisResult.read(tiny_run_copy / "analysis.json").to_dict()
    # a model analysis JSON (analysed .safetensors file): the weights beside it are found
    from convlens.pipelines import analyze_target

    model = tmp_path / "m.safetensors"
    model.write_bytes((tiny_run_copy / "model.safetensors").read_bytes())
    _, dest = analyze_target(model, n_null=100)
    m = convlens.load(dest)
    assert m.source.kind == "model_file"
    from convlens.display import kernel_arrays

    learned, bank = kernel_arrays(m.first_layer.matching.kernels[0])
    assert learned is not None and bank is not None and learned.shape == bank.shape == (5, 5)
    with pytest.raises(ConvlensError, match=r"no analysis\.json"):
        convlens.load(tmp_path)
    with pytest.raises(ConvlensError, match="neither a run directory"):
        convlens.load(tmp_path / "missing")


@pytest.mark.slow
def test_html_and_plots(loaded):
    from matplotlib.figure import Figure

    from convlens.display import kernel_arrays

    page = loaded._repr_html_()
    assert page.count("data:image/png;base64,") == 1 and "conv1" in page and "conv2" in page
    layer = loaded.first_layer
    assert "learned (top)" not in layer._repr_html_()  # the title is in the PNG, not the HTML
    assert layer._repr_html_().count("<img") == 1 and "not drawn" not in layer._repr_html_()
    k = layer.matching.kernels[0]
    assert "best match" in k._repr_html_()
    learned, bank = kernel_arrays(k)
    assert learned.shape == (5, 5) and bank.shape == (5, 5)
    assert abs(learned.mean()) < 1e-12
    for fig in (loaded.plot(), layer.plot(max_kernels=4), k.plot()):
        assert isinstance(fig, Figure)
    assert len(layer.plot(max_kernels=4).axes) == 8


def test_without_weights_only_bank_kernels(tiny_run_analysis):
    # a result not loaded through convlens.load (no weights attached) still displays
    from convlens.display import show

    shown = show(tiny_run_analysis)
    k = shown.first_layer.matching.kernels[0]
    assert "best match" in k._repr_html_()
    assert "no weights file" in shown.first_layer._repr_html_()
    assert show(shown) is shown and shown.value is tiny_run_analysis
    assert shown.layer(tiny_run_analysis.layers[0].name).value is tiny_run_analysis.layers[0]
    with pytest.raises(TypeError, match="has no plot"):
        shown.headline.plot()


def test_import_and_load_do_not_import_matplotlib_or_torch(loaded, tiny_run_copy):
    code = (
        "import sys, convlens; r = convlens.load(sys.argv[1]); "
        "assert 'matplotlib' not in sys.modules and 'torch' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('matplotlib', 'torch')))[:3]"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    subprocess.run([sys.executable, "-c", code, str(tiny_run_copy)], check=True, env=env)


@pytest.mark.slow
def test_example_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "examples" / "quickstart.ipynb", as_version=4)
    env_path = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", env_path)  # the kernel inherits it: this checkout's convlens
    client = nbclient.NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(html) == 3 and all("data:image/png;base64," in h for h in html)
    assert "'Figure'" in outputs[-1]["data"]["text/plain"]


def test_load_finds_a_runs_weights_from_its_analysis_json(
    signal_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``convlens.load("RUN/analysis.json")`` of a run analysed by a relative path looked for the
    weights in ``RUN/RUN`` and drew no learned kernels.

    Regression: integration QA of the merged branches (load of a relative run's analysis.json)."""
    import convlens
    from convlens.analysis import analyze_run
    from convlens.display import _weights
    from convlens.pipelines import write_result

    monkeypatch.chdir(signal_runs)
    write_result(analyze_run(Path("run"), n_null=100), Path("run") / "analysis.json")
    for path in ("run", "run/analysis.json", signal_runs / "run" / "analysis.json"):
        r = convlens.load(path)
        assert r.source.path == "run"
        assert set(_weights(r)) >= {"conv1.weight"}, path


def test_load_of_a_model_file_says_to_analyse_it(tmp_path: Path) -> None:
    """``convlens.load("net.safetensors")`` failed with a UTF-8 decoding error.

    Regression: integration QA of the merged branches (load of a model file)."""
    import convlens

    model = tmp_path / "net.safetensors"
    model.write_bytes(b"\xf9\x00binary")
    with pytest.raises(ConvlensError, match=r"is a model file.*net\.safetensors\.analysis\.json"):
        convlens.load(model)


@pytest.mark.slow  # about 1-2 s; the inner loop keeps the faster tests of this module
def test_channels_display_in_notebooks(loaded, tiny_run_analysis):
    """``view.channels[i]`` shows a layer's channels: a summary (images, sets, face-part detectors
    against their nulls) and one PNG of each channel's maximising input and top exemplar crops,
    read from channels.safetensors beside the analysis; a fresh in-memory result draws the arrays
    it holds."""
    from matplotlib.figure import Figure

    assert "with exemplars (view.channels[i])" in loaded._repr_html_()
    rec = loaded.channels[0]
    page = rec._repr_html_()
    assert page.count("<img") == 1 and "top and bottom 6 per channel" in page
    assert "face-part detectors" in page and "random-label network" not in page  # no control here
    fig = rec.plot(max_channels=3)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 * (1 + rec.k)
    drawn = [len(ax.images) for ax in fig.axes]
    assert drawn[0] == 1 and sum(drawn) == 3 * (1 + rec.k)  # maximising input and k crops each
    # the title of a crop is its exemplar's peak value
    top = rec.channels[0].top[0]
    assert fig.axes[1].get_title() == f"{top.value:.2f}"  # an exemplar's own field, not the view's
    assert type(top.result).__name__ == "Exemplar" and top.value == top.result.value
    from convlens.display import show

    fresh = show(tiny_run_analysis).channels[1].plot(max_channels=2)
    assert sum(len(ax.images) for ax in fresh.axes) == 2 * (1 + rec.k)
