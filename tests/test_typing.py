"""Issue 25: a type checker sees convlens's top-level names as what they are (they load lazily at
run time, but ``convlens.load`` & co. were ``Any`` to mypy)."""

from __future__ import annotations

import pytest

NAMES = ["load", "correlate", "correlate2d", "explain", "get_kernel", "ConvlensError"]


@pytest.mark.slow
def test_mypy_sees_the_top_level_names(tmp_path):
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "use.py"
    snippet.write_text(
        "import convlens\n"
        + "".join(f"reveal_type(convlens.{n})\n" for n in NAMES)
        + "x: int = convlens.correlate2d([[1.0]], [[1.0]])\n",  # an array is not an int
        encoding="utf-8",
    )
    out, _err, _status = api.run(
        [str(snippet), "--no-incremental", "--follow-imports=silent", "--ignore-missing-imports"]
    )
    revealed = [ln for ln in out.splitlines() if "Revealed type" in ln]
    assert len(revealed) == len(NAMES), out
    for name, line in zip(NAMES, revealed, strict=True):
        assert '"Any"' not in line, (name, line)
    assert "Incompatible types in assignment" in out  # correlate2d's return type is known


def test_the_lazy_names_still_load_on_first_use():
    """Importing convlens stays cheap: the type-checking imports do not run."""
    import subprocess
    import sys

    code = (
        "import sys, convlens; assert 'convlens.ops' not in sys.modules; "
        "assert 'torch' not in sys.modules; convlens.correlate2d; "
        "assert 'convlens.ops' in sys.modules; print(sorted(convlens.__all__)[:2])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
