"""A smoke run of the benchmark suite with tiny sizes: every benchmark runs and writes its table."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_bench_smoke(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--reps", "1", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    ids = {row["id"] for row in results["rows"]}
    assert {"P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8", "exact"} <= ids
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("| id | case |") and "Machine:" in md
    assert results["machine"]["cores"] >= 1
