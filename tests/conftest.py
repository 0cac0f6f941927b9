import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=60,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite the files under tests/golden/ from the current output instead of comparing "
        "(review the diff before committing; see tests/golden/README.md)",
    )


SLOW_FIXTURES = ("demo_run",)
"""Tests that need one of these session fixtures are marked slow: ``demo_run`` trains a 2-seed
demo with its random-label controls (about 10 s on 2 cores) before the first of them runs, so the
inner loop (``make test-fast``) leaves them to ``make test``."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in SLOW_FIXTURES):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when pytest runs with ``--update-golden``: golden tests rewrite their files."""
    return bool(request.config.getoption("--update-golden"))


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A small faces run trained once per session, for tests that only read a run directory.

    3 epochs, snapshots and probes on, OOD sets motorcycle and noise (20 images each). Read only:
    a test that writes into the run (analysis.json, deleting files) takes ``tiny_run_copy``. The
    run is hashed when trained and checked at the end of the session, so a test that changes it
    anyway shows up as an error naming this fixture.
    """
    from convlens.data.datasets import load_bundled
    from convlens.train import TrainConfig, Trainer

    run = tmp_path_factory.mktemp("tiny_run") / "run"
    cfg = TrainConfig(epochs=3, ood=["motorcycle", "noise"], ood_size=20)
    Trainer(cfg, load_bundled("faces", 0), run, progress=False).train()
    before = _digest(run)
    yield run
    assert _digest(run) == before, (
        "a test changed the shared tiny_run directory; tests that write into a run must use "
        "tiny_run_copy"
    )


@pytest.fixture
def tiny_run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of ``tiny_run`` at ``tmp_path / "run"``, free to modify."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


@pytest.fixture(scope="session")
def tiny_run_analysis(tiny_run: Path):  # -> AnalysisResult
    """``analyze_run(tiny_run, n_null=200)`` computed once per session (not written to disk)."""
    from convlens.analysis import analyze_run

    return analyze_run(tiny_run, n_null=200)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``convlens demo`` (2 seeds, 20 epochs, null 500) run once per session through the CLI; read
    only (the report tests copy it before changing anything)."""
    from click.testing import CliRunner

    from convlens.cli import cli

    out = tmp_path_factory.mktemp("demo") / "run"
    r = CliRunner().invoke(
        cli,
        ["demo", "--out", str(out), "-q", "--null-size", "500", "--seeds", "2", "--epochs", "20"],
    )
    assert r.exit_code == 0, r.output
    assert r.output.strip().endswith("report.html")
    return out


@pytest.fixture(scope="session")
def signal_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch signals run and its random-label control (1-D first layer), trained once per
    session for the 1-D checks of test_run_path, test_controls, test_display and test_pipelines.
    Not hashed like ``tiny_run``: test_display writes ``run/analysis.json`` into it."""
    from convlens.data.datasets import load_bundled
    from convlens.train import TrainConfig, Trainer

    root = tmp_path_factory.mktemp("signals")
    common = {"data": "signals", "epochs": 2, "ood": ["noise"], "ood_size": 8}
    for name, shuffle in (("run", False), ("ctrl", True)):
        cfg = TrainConfig(**common, shuffle_labels=shuffle)  # type: ignore[arg-type]
        Trainer(cfg, load_bundled("signals", 0), root / name, progress=False).train()
    return root


@pytest.fixture
def no_figures(monkeypatch):
    """Every figure as an empty data URI: for tests of the text and template only (fast)."""
    from convlens.report import figures

    for name in dir(figures):
        fn = getattr(figures, name)
        ours = callable(fn) and getattr(fn, "__module__", "") == figures.__name__
        if ours and not name.startswith("_") and name != "to_data_uri":
            monkeypatch.setattr(figures, name, lambda *_a, **_k: "data:image/png;base64,")


@pytest.fixture(scope="module")
def browser():
    """One headless Debian Chromium per test module (tests/browser.py: its binary, flags and the
    skip-or-fail rule), for the report's browser tests."""
    from tests.browser import CHROMIUM, FLAGS, sync_playwright

    with sync_playwright()() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()
