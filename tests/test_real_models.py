"""Real pretrained CNNs from public wheels, analysed end to end through the CLI (issue 13).

The model files live in ``tests/data/real`` (source wheel, version, licence and sha256 in its
README). Every expected value here is computed independently of convlens: conv nodes, weights and
attributes read with the ``onnx`` package, state dicts with ``torch.load(weights_only=True)``, the
Fourier front end's bin frequencies as ``k / N`` from the DFT definition, the data arrays generated
here. The one test of a missing feature (an ONNX model with extra inputs run on data) is ``xfail``
with ``strict=False``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from convlens.cli import cli  # noqa: E402

# real pretrained models end to end: run by `make test`, not by the inner loop (`make test-fast`)
pytestmark = pytest.mark.slow

REAL = Path(__file__).parent / "data" / "real"
SILERO_16K = REAL / "silero_vad_16k_op15.onnx"
SILERO_IF = REAL / "silero_vad.onnx"
PPOCR_CLS = REAL / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
MAGIKA = REAL / "magika_standard_v3_3.onnx"
PNET = REAL / "pnet.pt"
RNET = REAL / "rnet.pt"
SILERO_ST = REAL / "silero_vad_16k.safetensors"
FACTORY = "tests.data.real.mtcnn"


# ---------------------------------------------------------------- independent readers


def onnx_convs(path: Path) -> list[tuple[str, str, np.ndarray, dict[str, Any]]]:
    """Every Conv node in graph order, subgraphs at their parent's position: (branch path, node
    name, weight, attributes). Weights from initializers or ``Constant`` nodes of the same graph
    (all that these files use)."""

    def walk(g: Any, branch: str) -> list[tuple[str, str, np.ndarray, dict[str, Any]]]:
        consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        for n in g.node:
            if n.op_type == "Constant":
                consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        out = []
        for n in g.node:
            if n.op_type == "Conv":
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
                out.append((branch, n.name, consts[n.input[1]], attrs))
            for a in n.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    out += walk(a.g, f"{branch}{n.name}/{a.name}/")
        return out

    return walk(onnx.load(str(path)).graph, "")


def state_dict_convs(path: Path) -> dict[str, tuple[int, ...]]:
    """Conv weights (4-D ``*.weight``) of a state dict, name -> shape."""
    import torch

    sd = torch.load(path, weights_only=True)
    return {k[: -len(".weight")]: tuple(v.shape) for k, v in sd.items() if v.ndim == 4}


def hann_fourier_basis(n_fft: int) -> np.ndarray:
    """``[hann * cos(2 pi k n / N); -hann * sin(2 pi k n / N)]`` for k = 0..N/2 (periodic Hann)."""
    n = np.arange(n_fft)
    k = np.arange(n_fft // 2 + 1)[:, None]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    return np.concatenate(
        [hann * np.cos(2 * np.pi * k * n / n_fft), -hann * np.sin(2 * np.pi * k * n / n_fft)]
    )


# ---------------------------------------------------------------- running the CLI


def analyze(target: Path, out: Path, *args: str) -> tuple[Result, dict[str, Any] | None]:
    """``convlens analyze TARGET --out OUT ARGS`` in process; the written JSON if any."""
    r = CliRunner().invoke(cli, ["analyze", str(target), "--out", str(out), *args])
    data = json.loads(out.read_text()) if out.exists() else None
    return r, data


def assert_clean(r: Result, code: int = 0) -> None:
    """Exit ``code``, no traceback, no unexpected exception object."""
    assert "Traceback" not in r.output, r.output
    if r.exception is not None:
        assert isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == code, r.output


def layer(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(lay for lay in data["layers"] if lay["identity"]["name"] == name)


# ---------------------------------------------------------------- provenance


def test_files_match_the_recorded_sha256() -> None:
    """Every model file is the one the README records (source wheel, version, sha256)."""
    readme = (REAL / "README.md").read_text()
    rows = re.findall(r"`([\w.\-]+\.(?:onnx|pt|safetensors))`.*?`([0-9a-f]{64})`", readme)
    models = {p.name for p in REAL.iterdir() if p.suffix in (".onnx", ".pt", ".safetensors")}
    assert {f for f, _ in rows} == models
    import hashlib

    for name, digest in rows:
        assert hashlib.sha256((REAL / name).read_bytes()).hexdigest() == digest, name


# ---------------------------------------------------------------- silero-vad: a 1-D Fourier front end


@pytest.fixture(scope="module")
def silero16(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, dict[str, Any]]:
    r, data = analyze(SILERO_16K, tmp_path_factory.mktemp("s16") / "a.json")
    assert data is not None, r.output
    return r, data


def test_silero_layers_in_graph_order(silero16: tuple[Result, dict[str, Any]]) -> None:
    r, data = silero16
    assert_clean(r)
    convs = onnx_convs(SILERO_16K)
    assert len(convs) == 6
    assert [lay["identity"]["name"] for lay in data["layers"]] == [n for _, n, _, _ in convs]
    assert [lay["identity"]["index"] for lay in data["layers"]] == list(range(6))
    for lay, (_, _, w, attrs) in zip(data["layers"], convs, strict=True):
        ident = lay["identity"]
        assert ident["order"] == "execution"
        assert ident["dims"] == 1
        assert ident["weight_shape"] == list(w.shape)
        assert ident["stride"] == attrs["strides"]
        assert lay["matching"]["n_kernels"] == w.shape[0] * w.shape[1]


def test_silero_first_layer_is_the_stft(silero16: tuple[Result, dict[str, Any]]) -> None:
    _, data = silero16
    _, name, w, attrs = onnx_convs(SILERO_16K)[0]
    assert name == "/model/stft/Conv"
    assert data["headline"]["first_layer"] == name
    ident = data["layers"][0]["identity"]
    assert ident["weight_shape"] == [258, 1, 256] and ident["stride"] == [128] == attrs["strides"]
    # independent fact: the weights are a periodic-Hann-windowed DFT basis, N = 256
    np.testing.assert_allclose(w[:, 0, :], hann_fourier_basis(256), atol=1e-6)


def test_silero_stft_peaks_are_the_dft_bins(silero16: tuple[Result, dict[str, Any]]) -> None:
    """Row k (cosine) and row 129 + k (sine) peak at bin k / 256. Bins 0, 1 and 127, 128 are left
    out: there the Hann window's side bins tie with or fold onto the main bin."""
    _, data = silero16
    m = data["layers"][0]["matching"]
    spec = m["spectral"]
    assert spec is not None and spec["n_fft"] == 256
    peaks = spec["peaks"]
    assert len(peaks) == 258
    for k in range(2, 127):
        assert peaks[k] == k / 256, k
        assert peaks[129 + k] == k / 256, k
    assert spec["peak_max"] == 0.5 and spec["peak_min"] == 0.0
    assert spec["fraction_concentrated"] >= 0.98
    assert m["categories"].get("Fourier/Gabor", 0) >= 250
    v = data["verdicts"]["classical_kernels"]
    assert v["layer"] == "/model/stft/Conv" and v["verdict"] == "yes"


def test_silero_stft_atoms_match_the_bank_atom_of_their_bin(
    silero16: tuple[Result, dict[str, Any]],
) -> None:
    """Each cos/sin atom's best bank match is the Hann-windowed cos/sin of its own bin k / 256 at
    |cos| 1 (names carry 4 decimals: within 6e-5, bins are 3.9e-3 apart); the two all-zero rows
    (sin at k = 0 and k = 128) are not counted as matches."""
    _, data = silero16
    kernels = data["layers"][0]["matching"]["kernels"]
    assert len(kernels) == 258
    for row, kind, k in [(k, "hann_cos", k) for k in range(1, 129)] + [
        (129 + k, "hann_sin", k) for k in range(1, 128)
    ]:
        rec = kernels[row]
        name, f = re.fullmatch(r"(\w+)\(f=([0-9.e-]+)\)", rec["best_match"]).groups()  # type: ignore[union-attr]
        assert name == kind and abs(float(f) - k / 256) <= 6e-5, (row, rec["best_match"])
        assert rec["score"] >= 0.9999 and rec["above_null95"], row
    w = onnx_convs(SILERO_16K)[0][2]
    for row in (129, 257):
        assert not np.any(w[row])  # exactly zero in the file
        assert kernels[row]["above_null95"] is False


def test_silero_one_tap_conv_is_skipped_with_a_reason(
    silero16: tuple[Result, dict[str, Any]],
) -> None:
    r, data = silero16
    last = layer(data, "/model/decoder/decoder/2/Conv")
    assert last["identity"]["weight_shape"] == [1, 128, 1]
    assert last["matching"]["skipped"]
    assert "peak frequencies" in r.output


def test_silero_if_subgraphs_with_constant_weights(tmp_path: Path) -> None:
    """``silero_vad.onnx`` (spox export): no initializers at all, both sample-rate branches of an
    ``If`` hold six convs each, every weight in a ``Constant`` node of the branch."""
    assert len(onnx.load(str(SILERO_IF)).graph.initializer) == 0
    convs = onnx_convs(SILERO_IF)
    assert len(convs) == 12
    r, data = analyze(SILERO_IF, tmp_path / "a.json")
    assert_clean(r)
    assert data is not None
    names = [lay["identity"]["name"] for lay in data["layers"]]
    assert len(names) == 12
    expected = {(b.split("/")[1].replace("_branch", ""), n) for b, n, _, _ in convs}
    assert {(s.split("/")[1], s.split("/", 2)[2]) for s in names} == expected
    assert any("subgraph" in n for n in data["notes"])
    stfts = [(b, n, w) for b, n, w, _ in convs if n.endswith("stft/Conv")]
    assert sorted(w.shape for _, _, w in stfts) == [(130, 1, 128), (258, 1, 256)]  # 8 and 16 kHz
    for b, n, w in stfts:
        n_fft = w.shape[2]
        np.testing.assert_allclose(w[:, 0, :], hann_fourier_basis(n_fft), atol=1e-6)
        got = layer(data, f"If_0/{b.split('/')[1].replace('_branch', '')}/{n}")
        peaks = got["matching"]["spectral"]["peaks"]
        half = n_fft // 2 + 1
        assert [peaks[k] for k in range(2, half - 2)] == [k / n_fft for k in range(2, half - 2)]
        assert got["matching"]["categories"].get("Fourier/Gabor", 0) >= 2 * (half - 4)


def test_silero_quantised_by_onnxruntime(tmp_path: Path) -> None:
    """The user's own dynamic quantisation of the real VAD (``quantize_dynamic``, uint8 weights):
    six ``ConvInteger`` nodes, weights dequantised; the STFT atoms keep their DFT-bin peaks."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    q = tmp_path / "vad_q.onnx"
    quantize_dynamic(
        str(SILERO_16K), str(q), weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"]
    )
    graph = onnx.load(str(q)).graph
    conv_int = [n.name for n in graph.node if n.op_type == "ConvInteger"]
    assert len(conv_int) == 6
    r, data = analyze(q, tmp_path / "a.json")
    assert_clean(r)
    assert data is not None
    assert sorted(lay["identity"]["name"] for lay in data["layers"]) == sorted(conv_int)
    assert any("quantised" in n for n in data["notes"])
    stft = layer(data, "/model/stft/Conv_quant")
    assert stft["identity"]["weight_shape"] == [258, 1, 256]
    peaks = stft["matching"]["spectral"]["peaks"]
    assert [peaks[k] for k in range(2, 127)] == [k / 256 for k in range(2, 127)]


def audio_windows(path: Path, n: int = 40) -> Path:
    """``npz:`` 16 kHz windows ``(N, 1, 576)`` in [-1, 1]: a 440 Hz tone in noise (label 1) or
    noise alone (label 0)."""
    rng = np.random.default_rng(0)
    t = np.arange(576) / 16000
    x = 0.05 * rng.standard_normal((n, 1, 576))
    x[::2, 0] += 0.5 * np.sin(2 * np.pi * 440 * t)
    np.savez(path, x=x.astype(np.float32), y=(np.arange(n) % 2 == 0).astype(np.int64))
    return path


def test_silero_torch_port_matches_onnxruntime(tmp_path: Path) -> None:
    """``tests/data/real/silero.py`` is the VAD: loaded with the ONNX file's weights, it gives
    onnxruntime's speech probabilities (zero state, 16 kHz) to float32 precision."""
    import onnxruntime as ort
    import torch

    from tests.data.real.silero import vad16k

    ini = {
        i.name: torch.tensor(numpy_helper.to_array(i))
        for i in onnx.load(str(SILERO_16K)).graph.initializer
    }
    names = {"stft_conv.weight": "model.stft.forward_basis_buffer"}
    names |= {f"lstm_cell.{p}": f"model.decoder.rnn.{p}" for p in ("weight_ih", "weight_hh")}
    names |= {f"lstm_cell.{p}": f"model.decoder.rnn.{p}" for p in ("bias_ih", "bias_hh")}
    names |= {f"final_conv.{p}": f"model.decoder.decoder.2.{p}" for p in ("weight", "bias")}
    for i in range(4):
        for p in ("weight", "bias"):
            names[f"conv{i + 1}.{p}"] = f"model.encoder.{i}.reparam_conv.{p}"
    model = vad16k()
    model.load_state_dict({k: ini[v] for k, v in names.items()})
    model.eval()
    x = np.load(audio_windows(tmp_path / "a.npz"))["x"][:6]
    with torch.no_grad():
        ours = model(torch.tensor(x)).numpy().ravel()
    sess = ort.InferenceSession(str(SILERO_16K))
    state = np.zeros((2, 1, 128), np.float32)
    sr = np.array(16000, dtype=np.int64)
    theirs = [sess.run(None, {"input": w, "state": state, "sr": sr})[0].item() for w in x]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_silero_safetensors_weights_only_stem_first(tmp_path: Path) -> None:
    """Without an architecture: safetensors keys come sorted, so ``stft_conv`` is the file's last
    conv; the stated stem rule (fewest input channels) still puts it first."""
    from safetensors import safe_open

    with safe_open(str(SILERO_ST), "np") as f:
        keys = f.keys()  # the order the file stores (sorted)
        convs = [k[: -len(".weight")] for k in keys if f.get_tensor(k).ndim == 3]
    assert convs == ["conv1", "conv2", "conv3", "conv4", "final_conv", "stft_conv"]
    r, data = analyze(SILERO_ST, tmp_path / "a.json")
    assert_clean(r)
    assert data is not None
    assert data["headline"]["first_layer"] == "stft_conv"
    assert data["layers"][0]["identity"]["order"] == "file"
    assert any("first layer chosen by heuristic" in n for n in data["notes"])
    assert data["verdicts"]["classical_kernels"]["verdict"] == "yes"


def test_silero_safetensors_with_audio(tmp_path: Path) -> None:
    """The 1-D model end to end on audio data: the shipped weights, the port as factory, windows
    ``(N, 1, 576)`` read as 1-D; every conv call checked exactly, in execution order, the STFT
    first with its DFT-bin peaks."""
    data_file = audio_windows(tmp_path / "audio.npz")
    r, data = analyze(
        SILERO_ST, tmp_path / "a.json", "--factory", "tests.data.real.silero:vad16k",
        "--data", f"npz:{data_file}", "--normalize", "none", "--ood", "noise",
    )  # fmt: skip
    assert_clean(r)
    assert data is not None
    names = [lay["identity"]["name"] for lay in data["layers"]]
    assert names == ["stft_conv", "conv1", "conv2", "conv3", "conv4", "final_conv"]
    assert all(lay["identity"]["order"] == "execution" for lay in data["layers"])
    for lay in data["layers"]:
        c = lay["check"]
        assert c["status"] == "checked" and c["is_cross_correlation"] is True
        assert c["max_rel_diff_correlate"] <= 1e-9
    first = data["layers"][0]
    assert first["check"]["input_shape"][1] == 1 and first["check"]["input_shape"][2] >= 256
    assert any("L=576" in n for n in data["notes"])  # the (N, 1, 576) array read as 1-D
    peaks = first["matching"]["spectral"]["peaks"]
    assert [peaks[k] for k in range(2, 127)] == [k / 256 for k in range(2, 127)]
    assert first["distribution"] is not None
    assert data["verdicts"]["classical_kernels"]["layer"] == "stft_conv"


# ---------------------------------------------------------------- PP-OCR classifier (paddle2onnx)


@pytest.fixture(scope="module")
def ppocr(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, dict[str, Any]]:
    r, data = analyze(PPOCR_CLS, tmp_path_factory.mktemp("cls") / "a.json")
    assert data is not None, r.output
    return r, data


def test_ppocr_constant_node_weights_found(ppocr: tuple[Result, dict[str, Any]]) -> None:
    r, data = ppocr
    assert_clean(r)
    assert len(onnx.load(str(PPOCR_CLS)).graph.initializer) == 0  # every weight is a Constant
    convs = onnx_convs(PPOCR_CLS)
    assert len(convs) == 53
    assert [lay["identity"]["name"] for lay in data["layers"]] == [n for _, n, _, _ in convs]
    for lay, (_, _, w, attrs) in zip(data["layers"], convs, strict=True):
        assert lay["identity"]["weight_shape"] == list(w.shape)
        assert lay["identity"]["groups"] == attrs.get("group", 1)
        assert lay["matching"]["n_kernels"] == w.shape[0] * w.shape[1]
        assert bool(lay["matching"]["skipped"]) == (w.shape[2:] == (1, 1))


@pytest.mark.parametrize("path", [PPOCR_CLS, SILERO_IF], ids=["ppocr", "silero_if"])
def test_constant_node_weights_are_read_exactly(path: Path) -> None:
    """The weights convlens analyses are the Constant nodes' tensors, bit for bit."""
    from convlens.analysis.model.weights_only import onnx_layers

    _, weights, _ = onnx_layers(path)
    convs = onnx_convs(path)
    assert len(weights) == len(convs)
    for branch, node, w, _ in convs:
        sub = branch.split("/")[1].replace("_branch", "") if branch else ""
        key = f"If_0/{sub}/{node}" if branch else node
        assert np.array_equal(weights[key], w.astype(np.float64)), key


def test_ppocr_first_layer(ppocr: tuple[Result, dict[str, Any]]) -> None:
    _, data = ppocr
    _, name, w, attrs = onnx_convs(PPOCR_CLS)[0]
    assert data["headline"]["first_layer"] == name == "Conv@0"
    ident = data["layers"][0]["identity"]
    assert ident["weight_shape"] == [8, 3, 3, 3] == list(w.shape)
    assert ident["stride"] == [2, 2] == attrs["strides"]
    assert ident["padding"] == attrs["pads"]
    assert data["verdicts"]["classical_kernels"]["layer"] == "Conv@0"
    assert any("layout NCHW" in n for n in data["notes"])


def text_lines(path: Path, n: int = 40) -> Path:
    """``npz:`` text-line images the classifier was made for: (N, 3, 48, 192) uint8, label 1 =
    rotated by 180 degrees (PP-OCR's direction classifier input size)."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font: Any = ImageFont.load_default(size=28)
    except TypeError:  # Pillow without FreeType sizes
        font = ImageFont.load_default()
    words = ["convlens", "hello world", "OCR 2024", "kernel", "filter bank", "Gabor", "wheel"]
    xs, ys = [], []
    for i in range(n):
        img = Image.new("RGB", (192, 48), (255, 255, 255))
        ImageDraw.Draw(img).text((4 + i % 9, 6), words[i % len(words)], fill=(0, 0, 0), font=font)
        a = np.asarray(img)
        if i % 2:
            a = a[::-1, ::-1]
        xs.append(a.transpose(2, 0, 1))
        ys.append(i % 2)
    np.savez(path, x=np.stack(xs).astype(np.uint8), y=np.array(ys, dtype=np.int64))
    return path


@pytest.mark.slow
def test_ppocr_with_data_is_exact_cross_correlation(tmp_path: Path) -> None:
    """Run on text lines through onnxruntime: every one of the 53 Conv nodes checked against
    ``ops.correlate``; the flip-invariant ones are exactly the 1x1 convs of the graph."""
    data_file = text_lines(tmp_path / "lines.npz")
    r, data = analyze(
        PPOCR_CLS, tmp_path / "a.json", "--data", f"npz:{data_file}", "--ood", "noise"
    )
    assert_clean(r)
    assert data is not None
    convs = onnx_convs(PPOCR_CLS)
    n_1x1 = sum(w.shape[2:] == (1, 1) for _, _, w, _ in convs)
    assert n_1x1 == 41
    h = data["headline"]
    assert h["n_layers_checked"] == 53 and h["n_flip_invariant"] == n_1x1
    assert h["all_layers_cross_correlation"] is True
    for lay in data["layers"]:
        c = lay["check"]
        assert c["status"] == "checked" and c["is_cross_correlation"] is True
        assert c["max_rel_diff_correlate"] <= c["tolerance"] == 1e-4
    first = data["layers"][0]["check"]
    assert first["input_shape"][1:] == [3, 48, 192]
    assert "noise" in data["distribution"]["ood"][0]["name"]


def nhwc_batch1(src: Path, dst: Path) -> Path:
    """The classifier as a TensorFlow-style export would take it: input ``[1, 48, 192, 3]``
    (channels last, a fixed batch of 1) and a ``Transpose`` to NCHW in front of the real graph."""
    from onnx import TensorProto, helper

    m = onnx.load(str(src))
    g = m.graph
    assert [i.name for i in g.input] == ["x"]
    del g.input[:]
    g.input.extend([helper.make_tensor_value_info("x_nhwc", TensorProto.FLOAT, [1, 48, 192, 3])])
    g.node.insert(0, helper.make_node("Transpose", ["x_nhwc"], ["x"], perm=[0, 3, 1, 2]))
    onnx.checker.check_model(m)
    onnx.save(m, str(dst))
    return dst


@pytest.mark.slow
def test_ppocr_nhwc_fixed_batch_matches_nchw(tmp_path: Path) -> None:
    """Same weights, same data, channels-last input with a fixed batch of 1: every layer's ID
    activation mean equals the one of the NCHW original (a misread layout could not)."""
    lines = f"npz:{text_lines(tmp_path / 'lines.npz')}"
    common = ("--data", lines, "--ood", "noise", "--null-size", "200")
    r1, nchw = analyze(PPOCR_CLS, tmp_path / "nchw.json", *common)
    nhwc_file = nhwc_batch1(PPOCR_CLS, tmp_path / "nhwc.onnx")
    r2, nhwc = analyze(nhwc_file, tmp_path / "nhwc.json", *common)
    assert_clean(r1)
    assert_clean(r2)
    assert nchw is not None and nhwc is not None
    assert any("NHWC" in n for n in nhwc["notes"])
    assert [lay["identity"]["name"] for lay in nhwc["layers"]] == [
        lay["identity"]["name"] for lay in nchw["layers"]
    ]
    for a, b in zip(nchw["layers"], nhwc["layers"], strict=True):
        assert b["check"]["status"] == "checked"
        assert b["check"]["input_shape"][0] == 1
        assert b["distribution"]["id_mean"] == pytest.approx(
            a["distribution"]["id_mean"], rel=1e-4, abs=1e-6
        )


# ---------------------------------------------------------------- magika (tf2onnx, 5x1 kernels)


def test_magika_non_square_kernels_matched_as_1d(tmp_path: Path) -> None:
    convs = onnx_convs(MAGIKA)
    assert len(convs) == 1
    _, name, w, _ = convs[0]
    assert w.shape == (512, 256, 5, 1)
    r, data = analyze(MAGIKA, tmp_path / "a.json")
    assert_clean(r)
    assert data is not None
    (lay,) = data["layers"]
    assert lay["identity"]["name"] == name and lay["identity"]["kernel_size"] == [5, 1]
    m = lay["matching"]
    assert m["n_kernels"] == 512 * 256
    assert "5x1" in m["geometry"] and "1-D" in m["geometry"]
    assert m["spectral"]["n_fft"] >= 5
    assert m["kernels"] == []  # over the per-kernel detail limit: summary only, and said so
    assert any(name in n for n in data["notes"])


def test_magika_with_image_data_is_one_clear_error(tmp_path: Path) -> None:
    """The model reads int32 byte ids ``[N, 2048]``: image data cannot fit; exit 2, one line."""
    r, data = analyze(MAGIKA, tmp_path / "a.json", "--data", "digits", "--ood", "noise")
    assert_clean(r, 2)
    errors = [ln for ln in r.output.splitlines() if ln.startswith("convlens: error")]
    assert len(errors) == 1
    assert data is None or data["errors"]  # a weight analysis, if written, records the failure


# ---------------------------------------------------------------- MTCNN (facenet-pytorch state dicts)


@pytest.mark.parametrize("path", [PNET, RNET], ids=["pnet", "rnet"])
def test_mtcnn_weights_only(path: Path, tmp_path: Path) -> None:
    expected = state_dict_convs(path)
    r, data = analyze(path, tmp_path / "a.json")
    assert_clean(r)
    assert data is not None
    assert {
        lay["identity"]["name"]: tuple(lay["identity"]["weight_shape"]) for lay in data["layers"]
    } == expected
    assert data["headline"]["first_layer"] == "conv1"
    assert data["layers"][0]["identity"]["order"] == "file"
    assert any("first layer chosen by heuristic" in n for n in data["notes"])
    o, c = expected["conv1"][:2]
    assert layer(data, "conv1")["matching"]["n_kernels"] == o * c


def lfw_crops(path: Path) -> Path:
    """``npz:`` 24x24 RGB crops: scikit-image's ``lfw_subset`` (100 faces, then 100 non-faces),
    grey replicated to three channels, label 1 = face. RNet's input size."""
    from skimage.data import lfw_subset
    from skimage.transform import resize

    imgs = lfw_subset()
    x = np.stack([resize(im, (24, 24), anti_aliasing=True) for im in imgs])
    x = np.repeat(x[:, None], 3, axis=1)
    y = np.r_[np.ones(100), np.zeros(100)].astype(np.int64)
    np.savez(path, x=(x * 255).round().astype(np.uint8), y=y)
    return path


def test_rnet_with_factory_and_data(tmp_path: Path) -> None:
    """RNet returns (box regression, face probability): with ``--output 1`` it runs on face crops;
    every conv call checked exactly (torch float64) in execution order."""
    data_file = lfw_crops(tmp_path / "lfw.npz")
    r, data = analyze(
        RNET, tmp_path / "a.json", "--factory", f"{FACTORY}:rnet",
        "--data", f"npz:{data_file}", "--output", "1", "--ood", "noise",
    )  # fmt: skip
    assert_clean(r)
    assert data is not None
    assert [lay["identity"]["name"] for lay in data["layers"]] == ["conv1", "conv2", "conv3"]
    assert all(lay["identity"]["order"] == "execution" for lay in data["layers"])
    for lay in data["layers"]:
        assert lay["check"]["status"] == "checked" and lay["check"]["is_cross_correlation"]
        assert lay["check"]["max_rel_diff_correlate"] <= 1e-9


def test_rnet_on_bundled_grey_faces(tmp_path: Path) -> None:
    """The bundled ``faces`` (25x25 grey) into an RGB model: converted, not a traceback."""
    r, data = analyze(
        RNET, tmp_path / "a.json", "--factory", f"{FACTORY}:rnet",
        "--data", "faces", "--output", "1", "--ood", "noise",
    )  # fmt: skip
    assert_clean(r)
    assert data is not None and data["layers"][0]["check"]["input_shape"][1] == 3
    assert any("RGB" in n for n in data["notes"])  # the conversion is stated
    assert any("tuple" in n for n in data["notes"])  # and so is the head used as logits
    # receptive fields by the recurrence r += (k - 1) * j, j *= s over RNet's own modules
    from tests.data.real.mtcnn import RNet

    net, r, j, want = RNet(), 1, 1, {}
    for name in ("conv1", "pool1", "conv2", "pool2", "conv3"):
        mod = getattr(net, name)
        k = mod.kernel_size if isinstance(mod.kernel_size, int) else mod.kernel_size[0]
        s = mod.stride if isinstance(mod.stride, int) else mod.stride[0]
        r, j = r + (k - 1) * j, j * s
        want[name] = r
    got = {f["name"]: f["size"] for f in data["receptive_fields"]["theoretical"]}
    assert got == {c: [want[c], want[c]] for c in ("conv1", "conv2", "conv3")} == {
        "conv1": [3, 3], "conv2": [9, 9], "conv3": [17, 17]
    }  # fmt: skip


def test_pnet_probability_map_is_one_clear_error(tmp_path: Path) -> None:
    """PNet's face head is a map ``(N, 2, h, w)``, not logits: exit 2 with one line, and the weight
    analysis already computed is still written, with the failure in ``errors``."""
    r, data = analyze(
        PNET, tmp_path / "a.json", "--factory", f"{FACTORY}:pnet",
        "--data", "faces", "--output", "1", "--ood", "noise",
    )  # fmt: skip
    assert_clean(r, 2)
    errors = [ln for ln in r.output.splitlines() if ln.startswith("convlens: error")]
    assert len(errors) == 1 and "logits" in errors[0]
    assert data is not None and data["errors"]
    assert data["layers"][0]["identity"]["name"] == "conv1"


def test_silero_with_audio(tmp_path: Path) -> None:
    """A synthetic 16 kHz signal (tones in noise vs noise) through the real VAD, its recurrent
    ``state`` and sample rate ``sr`` given with --input (the graph's data input is ``[batch,
    sequence]``, no channel axis): runs, every conv node is verified against the engine, the STFT
    layer's activations are measured, and the note says what was fed."""
    rng = np.random.default_rng(0)
    t = np.arange(512) / 16000
    x = 0.05 * rng.standard_normal((40, 1, 512))
    x[::2, 0] += 0.5 * np.sin(2 * np.pi * 440 * t)
    y = (np.arange(40) % 2 == 0).astype(np.int64)
    np.savez(tmp_path / "audio.npz", x=x.astype(np.float32), y=y)
    r, data = analyze(
        SILERO_16K, tmp_path / "a.json", "--data", f"npz:{tmp_path / 'audio.npz'}", "--ood", "noise",
        "--input", "state=zeros", "--input", "sr=16000",
    )  # fmt: skip
    assert_clean(r)
    assert data is not None and all(
        layer["check"]["is_cross_correlation"] for layer in data["layers"]
    )
    assert "the data go to graph input 'input'" in r.output and "sr: array(16000)" in r.output
    # its output is one speech probability per window: no max-softmax of a single column
    assert "model output 'output' has one column" in r.output
    baselines = data["distribution"]["baselines"]  # before: max-softmax AUROC 0.5, a constant
    assert all(b["max_softmax_auroc"] is None for b in baselines.values()) or not baselines
    # without the other inputs: one line naming them and the option
    r2, _ = analyze(SILERO_16K, tmp_path / "b.json", "--data", f"npz:{tmp_path / 'audio.npz'}")
    assert r2.exit_code == 2 and "--input NAME=VALUE" in r2.output
    assert data is not None and data["layers"][0]["distribution"] is not None
