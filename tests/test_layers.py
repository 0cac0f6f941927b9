"""Layer identity (``analysis/model/layers.py``, ``forward.py``): execution order from hooks, geometry
from the module, never a name convention; activations only of the convs that ran."""

import numpy as np
import pytest
import torch
from torch import nn

from convlens.analysis.model import forward
from convlens.analysis.model.layers import identify_modules, identify_weights
from convlens.errors import ConvlensError
from tests.model_zoo import Unused


class _Reordered(nn.Module):
    """Defines its convs in the opposite order to how it runs them, plus one that never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(8, 4, 3, padding="same", dilation=2)
        self.unused = nn.Conv1d(2, 2, 5)
        self.stem = nn.Conv2d(3, 8, (3, 5), stride=2, padding=(1, 2), groups=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.stem(x)))


def test_execution_order_not_definition_order():
    model = _Reordered().train()
    out = identify_modules(model, torch.zeros(1, 3, 16, 16))
    ids = [i for i, _ in out]
    assert [i.name for i in ids] == ["stem", "head", "unused"]
    assert [i.index for i in ids] == [0, 1, 2]
    assert [i.order for i in ids] == ["execution", "execution", "definition"]
    assert model.training  # mode restored
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed
    stem, head, unused = ids
    assert (stem.kernel_size, stem.stride, stem.padding, stem.groups) == ([3, 5], [2, 2], [1, 2], 1)
    assert (stem.in_channels, stem.out_channels, stem.dims) == (3, 8, 2)
    assert head.padding == "same" and head.dilation == [2, 2] and head.module_type == "Conv2d"
    assert unused.dims == 1 and unused.weight_shape == [2, 2, 5]


def test_without_input_definition_order_is_stated():
    ids = [i for i, _ in identify_modules(_Reordered())]
    assert [i.name for i in ids] == ["head", "unused", "stem"]
    assert {i.order for i in ids} == {"definition"}


def test_weights_only_keep_file_order_and_say_so():
    # the stem-like layer (layers.STEM_RULE) comes first; the rest keep file order
    ids = identify_weights(
        {"blocks.0.conv_dw": np.zeros((8, 1, 3, 3)), "conv_stem": np.zeros((8, 3, 3, 3))}
    )
    assert [(i.name, i.index, i.order) for i in ids] == [
        ("conv_stem", 0, "file"),
        ("blocks.0.conv_dw", 1, "file"),
    ]
    assert ids[0].weight_key == "conv_stem.weight" and ids[0].stride is None


class _Fails(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lookup: dict[str, torch.Tensor] = {}
        return self.c(x) + lookup["missing"]  # the user's own bug


def test_run_model_wraps_the_models_failures_not_convlens_bugs():
    from convlens.analysis.model import layers
    from convlens.analysis.model.layers import run_model
    from convlens.errors import ConvlensError

    x = torch.zeros(1, 1, 5, 5)
    with pytest.raises(ConvlensError, match=r"the data of shape \(1, 1, 5, 5\) failed: KeyError"):
        run_model(_Fails(), x, "the data")
    with pytest.raises(ConvlensError, match="RuntimeError"):  # torch's own error: wrong channels
        run_model(nn.Conv2d(3, 2, 3), x, "the data")

    def hook(*_a: object) -> None:
        raise TypeError("hook bug")

    # the same hook as if convlens had defined it (convlens's forward hooks run inside the model):
    # its failure is a bug of convlens and propagates as it is
    hook.__code__ = hook.__code__.replace(co_filename=layers.__file__)
    conv = nn.Conv2d(1, 2, 3)
    conv.register_forward_hook(hook)
    with pytest.raises(TypeError, match="hook bug"):
        run_model(conv, x, "the data")


def test_activations_skip_convs_that_never_run_and_name_data_misfits():
    """Regression: outside review of issues 11-12 (convs that never run, data that do not fit)."""
    model = Unused()
    x = torch.zeros(5, 1, 8, 8)
    acts = forward.collect(model, forward.batches_of(x), "digits")
    assert set(acts.layer_scores) == {"c"} and acts.n == 5
    with pytest.raises(ConvlensError, match=r"running the model on 'rgb' .* failed: RuntimeError"):
        forward.collect(model, forward.batches_of(torch.zeros(2, 3, 8, 8)), "rgb")
    with pytest.raises(ConvlensError, match="does the data fit the model"):
        identify_modules(model, torch.zeros(2, 3, 8, 8))
