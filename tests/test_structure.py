"""Sizes that keep convlens readable by a newcomer (docs/architecture.md, section 1): no module over
600 lines, no folder over 15 modules, a thin ``cli.py`` (under 300 lines), a README of at most 250
lines. The import rules themselves are tests/test_layering.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import convlens

SRC = Path(convlens.__file__).parent
ROOT = SRC.parents[1]

MAX_MODULE_LINES = 600
MAX_MODULES_PER_FOLDER = 15
MAX_CLI_LINES = 299
MAX_README_LINES = 250


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_over_600_lines():
    long = {
        str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := _lines(p)) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_folder_over_15_modules():
    per_folder = Counter(str(p.parent.relative_to(SRC)) for p in SRC.rglob("*.py"))
    crowded = {d: n for d, n in per_folder.items() if n > MAX_MODULES_PER_FOLDER}
    assert not crowded, f"folders over {MAX_MODULES_PER_FOLDER} modules (with __init__): {crowded}"


def test_cli_is_thin():
    assert _lines(SRC / "cli.py") <= MAX_CLI_LINES


def test_readme_is_short_and_links_resolve():
    readme = ROOT / "README.md"
    assert _lines(readme) <= MAX_README_LINES
    import re

    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme.read_text(encoding="utf-8")):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to missing {target}"
