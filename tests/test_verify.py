"""Verification checks the conv call a module really makes (issue 13, item 4), with honest headlines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convlens.analysis.evidence.verdicts import cross_correlation_verdict, headline, verdicts
from convlens.analysis.model.verify import (
    RTOL_FLOAT64,
    capture_calls,
    check_layer,
    flip_invariant,
    verify_model,
)
from convlens.analysis.result import (
    SCHEMA_VERSION,
    AnalysisResult,
    Headline,
    LayerCheck,
    LayerIdentity,
    LayerResult,
    Settings,
    Source,
    Verdicts,
)


class Conv2dSame(nn.Conv2d):
    """timm-style: TF 'SAME' padding computed from the input, then F.conv2d with padding 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        dh, dw = self.dilation
        ph = max((-(-ih // sh) - 1) * sh + (kh - 1) * dh + 1 - ih, 0)
        pw = max((-(-iw // sw) - 1) * sw + (kw - 1) * dw + 1 - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class StdConv2d(nn.Conv2d):
    """timm-style weight standardisation inside forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.batch_norm(
            self.weight.reshape(1, self.out_channels, -1),
            None,
            None,
            training=True,
            momentum=0.0,
            eps=1e-6,
        ).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class NeverConvolves(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1, keepdim=True).expand(-1, self.out_channels, -1, -1)


class TwiceConv(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self._conv_forward(x, self.weight, self.bias)
        return y + F.conv2d(x, self.weight.flip(-1), None, self.stride, self.padding)


class Broken(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shape mismatch somewhere\nsecond line")


def test_conv2d_same_is_checked_on_its_real_call():
    torch.manual_seed(0)
    for stride in (1, 2):
        c = check_layer("same", Conv2dSame(3, 4, 3, stride=stride, bias=True))
        assert c.status == "checked" and c.calls == 1
        assert c.is_cross_correlation and c.max_rel_diff_correlate < 1e-13
        assert c.max_rel_diff_convolve > 1e-2 and c.flip_invariant is False
        assert c.backend == "torch float64" and c.tolerance == RTOL_FLOAT64


def test_weight_standardised_conv_is_exact():
    torch.manual_seed(1)
    conv = StdConv2d(3, 6, 3, padding=1)
    c = check_layer("std", conv)
    assert c.is_cross_correlation and c.max_rel_diff_correlate < 1e-13
    # the module's raw weight would not match: the check used the standardised one
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    raw = nn.Conv2d(3, 6, 3, padding=1).double()
    raw.load_state_dict(conv.double().state_dict())
    with torch.no_grad():
        assert (conv(x) - raw(x)).abs().max() > 1e-2


def test_module_without_conv_call_is_not_executed():
    c = check_layer("never", NeverConvolves(3, 4, 3))
    assert c.status == "not executed" and c.calls == 0
    assert c.max_abs_diff_correlate is None and not c.is_cross_correlation


def test_failing_forward_is_reported_not_raised():
    c = check_layer("broken", Broken(3, 4, 3))
    assert c.status == "failed" and c.message == "RuntimeError: shape mismatch somewhere"


def test_module_calling_conv_twice_checks_each_call():
    torch.manual_seed(2)
    c = check_layer("twice", TwiceConv(2, 3, 3, padding=1))
    assert c.calls == 2 and c.status == "checked" and c.is_cross_correlation
    assert c.max_rel_diff_correlate < 1e-13


def test_calls_are_attributed_to_the_innermost_conv_module():
    inner = nn.Conv2d(2, 2, 3)

    class Wrapper(nn.Conv2d):
        def __init__(self) -> None:
            super().__init__(2, 2, 1)
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(self._conv_forward(x, self.weight, self.bias))

    w = Wrapper()
    calls = capture_calls(w, torch.randn(1, 2, 6, 6))
    assert [c.owner for c in calls] == [w, inner]
    # the wrapper's own check sees only its own call
    assert check_layer("w", w).calls == 1


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv1d(4, 6, 3, stride=2, dilation=2, groups=2, padding=2),
        nn.Conv3d(4, 4, (3, 1, 2), stride=(1, 2, 1), groups=4, dilation=(2, 1, 1)),
        nn.Conv2d(4, 8, 3, stride=2, dilation=2, groups=4, padding=1, padding_mode="circular"),
        nn.Conv2d(3, 4, (2, 4), padding="same", dilation=(1, 2)),
        nn.Conv1d(2, 3, 4, padding="valid", bias=False),
    ],
)
@pytest.mark.filterwarnings("ignore:Using padding='same'")
def test_grouped_dilated_strided_1d_2d_3d(conv: nn.Module):
    torch.manual_seed(3)
    c = check_layer("c", conv)
    assert c.status == "checked" and c.is_cross_correlation
    assert c.max_rel_diff_correlate < 1e-13
    assert c.max_rel_diff_convolve > 1e-3 and c.flip_invariant is False


def test_one_by_one_is_flip_invariant():
    c = check_layer("pw", nn.Conv2d(4, 8, 1))
    assert c.flip_invariant and c.max_rel_diff_convolve < 1e-13
    assert flip_invariant(np.ones((2, 2, 3, 3)))
    assert not flip_invariant(np.arange(9.0).reshape(1, 1, 3, 3))


def _result(checks: list[LayerCheck]) -> AnalysisResult:
    layers = []
    for i, c in enumerate(checks):
        ident = LayerIdentity(
            name=c.layer,
            index=i,
            order="execution",
            dims=2,
            weight_shape=c.weight_shape,
            in_channels=c.weight_shape[1],
            out_channels=c.weight_shape[0],
            kernel_size=c.weight_shape[2:],
        )
        layers.append(LayerResult(identity=ident, n_kernels=1, check=c))
    return AnalysisResult(
        SCHEMA_VERSION, Source("run", "r"), Settings(10, 0), layers, Headline(), Verdicts()
    )


def test_headline_excludes_flip_invariant_layers_and_counts_them():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 5),
        nn.Conv2d(8, 16, 1),
        NeverConvolves(16, 16, 3),
        nn.Conv2d(16, 4, 3),
        nn.Conv2d(4, 4, 1, bias=False),
    )
    torch.manual_seed(4)
    a = _result(verify_model(model))
    h = headline(a)
    assert h.n_layers_checked == 4 and h.n_flip_invariant == 2
    assert h.all_layers_cross_correlation and h.max_rel_diff_correlate < 1e-13
    # the convolution figure is over the 5x5 and 3x3 layers only, not the ~0 of the 1x1 ones
    assert h.min_rel_diff_convolve > 1e-2 and h.min_abs_diff_convolve > 1e-2
    v = verdicts(a).cross_correlation
    assert v is not None and v.verdict == "exact" and v.differs_from_convolution is True
    assert (v.n_checked, v.n_flip_invariant, v.n_not_executed) == (4, 2, 1)
    assert v.tolerances == {"torch float64": RTOL_FLOAT64}
    assert "2 of 4 checked layers are flip-invariant" in v.rule and "2 (not executed)" in v.rule
    assert "torch float64 1e-09" in v.rule
    a.headline, a.verdicts = h, verdicts(a)
    assert AnalysisResult.from_json(a.to_json()) == a


def test_only_flip_invariant_layers_cannot_tell_convolution():
    a = _result(verify_model(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 2, 1))))
    v = cross_correlation_verdict([r.check for r in a.layers if r.check is not None])
    assert v.verdict == "exact" and v.differs_from_convolution is None
    h = headline(a)
    assert h.min_rel_diff_convolve is None and h.n_flip_invariant == 2


def test_onnx_style_check_uses_its_backend_tolerance():
    torch_check = check_layer("t", nn.Conv2d(1, 2, 3))
    onnx_check = LayerCheck(
        layer="o",
        kind="onnx Conv (onnxruntime, float32)",
        weight_shape=[2, 2, 3, 3],
        input_shape=[1, 2, 8, 8],
        max_abs_diff_correlate=2e-7,
        max_abs_diff_convolve=0.5,
        output_scale=2.0,
        is_cross_correlation=True,
    )
    v = cross_correlation_verdict([torch_check, onnx_check])
    assert v.verdict == "exact" and v.differs_from_convolution is True
    assert v.tolerances == {"onnxruntime float32": 1e-4, "torch float64": 1e-9}
    assert v.max_rel_diff == pytest.approx(1e-7)


def test_not_exact_when_a_call_differs():
    c = check_layer("t", nn.Conv2d(1, 2, 3))
    c.max_rel_diff_correlate, c.is_cross_correlation = 1e-6, False
    assert cross_correlation_verdict([c]).verdict == "not exact"
    never = check_layer("n", NeverConvolves(1, 2, 3))
    v = cross_correlation_verdict([never])
    assert v.verdict == "not measured" and v.max_abs_diff is None


def test_failed_layer_is_an_analysis_error_and_the_rest_is_checked():
    from convlens.analysis.model.layers import identify_modules
    from convlens.analysis.orchestration.stages import Timer, call_checks, finish, new_result

    model = nn.Sequential(nn.Conv2d(1, 2, 3), Broken(2, 2, 3))
    modules = identify_modules(model)
    a = new_result(Source("run", "r"), Settings(10, 0), [i for i, _ in modules])
    call_checks(a, modules, [], 0)
    a = finish(a, Timer())
    assert a.layer("0").check is not None and a.layer("0").check.status == "checked"
    assert a.layer("1").check is not None and a.layer("1").check.status == "failed"
    assert [(e.stage, e.message) for e in a.errors] == [
        ("verify", "layer 1: not verified: RuntimeError: shape mismatch somewhere")
    ]
    v = a.verdicts.cross_correlation
    assert v is not None and v.verdict == "exact" and v.n_checked == 1
    assert "not checked: 1 (failed)" in v.rule


def test_a_bug_in_the_comparison_propagates_a_refused_call_is_failed(monkeypatch):
    """Only the user's module is wrapped: a bug in convlens's comparison is not a "failed" layer."""
    from convlens.analysis.model import verify
    from convlens.errors import ConvlensError

    def buggy(*_a, **_kw):
        raise TypeError("a bug in the comparison")

    monkeypatch.setattr(verify, "compare_call", buggy)
    with pytest.raises(TypeError, match="a bug in the comparison"):
        check_layer("c", nn.Conv2d(2, 3, 3))

    def refused(*_a, **_kw):
        raise ConvlensError("the engine refuses this call")

    monkeypatch.setattr(verify, "compare_call", refused)
    c = check_layer("c", nn.Conv2d(2, 3, 3))
    assert c.status == "failed" and c.message == "ConvlensError: the engine refuses this call"


def test_verify_grouped_dilated_depthwise_1d_3d():
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, groups=4, dilation=2, stride=2, padding=1),
        nn.Conv2d(8, 8, 3, groups=8, padding="same", padding_mode="replicate"),
        nn.Conv1d(2, 3, 5) if False else nn.Identity(),
    )
    checks = verify_model(model)
    assert all(c.is_cross_correlation and c.max_abs_diff_correlate < 1e-12 for c in checks)
    assert all(c.max_abs_diff_convolve > 1e-3 for c in checks)
    checks = verify_model(nn.Sequential(nn.Conv1d(2, 3, 5), nn.Conv3d(3, 2, 3)))
    assert [c.kind for c in checks] == ["Conv1d", "Conv3d"] and all(
        c.is_cross_correlation for c in checks
    )
