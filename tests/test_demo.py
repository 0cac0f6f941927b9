"""``convlens.demo``: its options (the demo itself is trained in test_pipelines/test_train)."""

from __future__ import annotations

import dataclasses

import pytest

from convlens.demo import DemoOptions, run_demo


def test_demo_options_defaults_frozen_and_one_way_to_give_them(tmp_path):
    o = DemoOptions()
    assert (o.data, o.epochs, o.seed, o.n_seeds, o.n_null, o.force) == (
        None, None, 10, 3, 2000, False,
    )  # fmt: skip
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.seed = 1  # type: ignore[misc]
    assert DemoOptions.of(None, {"seed": 3}) == DemoOptions(seed=3)
    with pytest.raises(TypeError, match="not both"):
        run_demo(tmp_path / "d", DemoOptions(), n_null=100)
    assert not (tmp_path / "d").exists()
