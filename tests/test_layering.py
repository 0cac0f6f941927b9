"""The import rules of docs/architecture.md, checked on the source.

The allowed-imports table in docs/architecture.md (between the ``imports-table`` markers) is the
rule: this test parses it, so the document cannot drift from the check. Every import statement of
every module counts, at any depth (inside functions and under ``TYPE_CHECKING`` too), absolute or
relative. A unit is a top-level module or package of convlens; the sub-packages of ``analysis/`` are
units of their own."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

import pytest

import convlens
from convlens.cli import HINTS
from convlens.errors import HintKey

SRC = Path(convlens.__file__).parent
DOC = SRC.parents[1] / "docs" / "architecture.md"
SPLIT = {"analysis"}  # packages whose sub-packages are units of their own


def _table() -> dict[str, tuple[set[str], str]]:
    text = DOC.read_text(encoding="utf-8")
    body = text.split("<!-- imports-table:start -->")[1].split("<!-- imports-table:end -->")[0]
    rows: dict[str, tuple[set[str], str]] = {}
    for line in body.strip().splitlines()[2:]:  # skip the header and the |---| line
        unit, allowed, torch = (c.strip() for c in line.strip().strip("|").split("|"))
        names = set(re.findall(r"`([^`]+)`", allowed))
        assert unit.strip("`") not in rows, f"{unit} listed twice"
        assert torch in ("no", "lazy", "yes"), line
        rows[unit.strip("`")] = (names, torch)
    return rows


TABLE = _table()


def unit_of(module: str) -> str | None:
    """The unit of a dotted module name under ``convlens`` (``None`` for ``convlens`` itself and the
    names its ``__init__`` defines)."""
    parts = module.split(".")[1:]
    if not parts or not ((SRC / parts[0]).is_dir() or (SRC / f"{parts[0]}.py").is_file()):
        return None  # convlens itself, or a name it defines (``from convlens import __version__``)
    if parts[0] in SPLIT and len(parts) > 1 and (SRC / parts[0] / parts[1]).is_dir():
        return f"{parts[0]}.{parts[1]}"
    return parts[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = ["convlens", *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str | None = None) -> list[tuple[str, bool]]:
    """``(imported module, at top level)`` for every import in ``path`` (the module ``module``, by
    default its name under src/); relative imports resolved. ``from a import b`` yields ``a`` and
    ``a.b`` (``b`` may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    here = (module or _module_name(path)).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out: list[tuple[str, bool]] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        out.extend((n, id(node) in top) for n in names)
    return out


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py"))


def test_the_table_lists_every_unit_and_only_units():
    units = {unit_of(_module_name(p)) for p in _modules()} - {None}
    assert units == set(TABLE), (
        f"missing from the table: {sorted(units - set(TABLE))}; "
        f"listed but not in the code: {sorted(set(TABLE) - units)}"
    )
    for unit, (allowed, _) in TABLE.items():
        assert allowed <= set(TABLE), f"{unit} may import unknown units {allowed - set(TABLE)}"


def test_the_allowed_imports_have_no_cycle():
    # a depth-first search over the table: the code's imports are a subset, so no cycle there either
    state: dict[str, int] = {}

    def visit(u: str, path: list[str]) -> None:
        state[u] = 1
        for v in sorted(TABLE[u][0]):
            if state.get(v) == 1:
                pytest.fail("cycle in the allowed imports: " + " -> ".join([*path, u, v]))
            if v not in state:
                visit(v, [*path, u])
        state[u] = 2

    for u in sorted(TABLE):
        if u not in state:
            visit(u, [])


def test_every_import_is_allowed_by_the_table():
    bad = []
    for path in _modules():
        unit = unit_of(_module_name(path))
        allowed, torch_rule = TABLE[unit] if unit else (set(TABLE), "no")
        for name, at_top in imports(path):
            where = f"{path.relative_to(SRC)} imports {name}"
            if name == "torch" or name.startswith("torch."):
                if torch_rule == "no" or (torch_rule == "lazy" and at_top):
                    bad.append(f"{where} (torch: {torch_rule})")
            elif name.startswith("convlens."):
                target = unit_of(name)
                if unit is None:  # convlens/__init__.py: lazy re-exports only
                    if at_top and target not in ("errors",):
                        bad.append(f"{where} at import time")
                elif target is not None and target != unit and target not in allowed:
                    bad.append(where)
    assert not bad, "\n".join(bad)


def test_the_checker_sees_lazy_relative_and_type_checking_imports(tmp_path):
    # the parser itself, on a module written for the purpose
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from convlens.display import View\n"
        "def f():\n    import torch\n    from ..measure import matching\n",
        encoding="utf-8",
    )
    found = imports(probe, "convlens.analysis.result.probe")
    names = {n for n, _ in found}
    assert {"convlens.display", "torch", "convlens.analysis.measure"} <= names
    assert unit_of("convlens.analysis.measure.matching") == "analysis.measure"
    assert unit_of("convlens.analysis.measure") == "analysis.measure"
    assert unit_of("convlens.report.build") == "report"
    assert ("torch", False) in found  # inside a function: lazy


def test_result_types_import_no_display_report_or_torch():
    allowed, torch_rule = TABLE["analysis.result"]
    assert torch_rule == "no" and not allowed & {"display", "report", "analysis.measure"}
    for path in (SRC / "analysis" / "result").rglob("*.py"):
        for name, _ in imports(path):
            assert (
                unit_of(name) not in ("display", "report") if name.startswith("convlens.") else True
            )
            assert not name.startswith("torch"), f"{path.name} imports {name}"


def test_train_does_not_import_analysis_and_parallel_is_a_leaf():
    assert not any(u.startswith("analysis") for u in TABLE["train"][0])
    assert TABLE["parallel"][0] <= {"data", "errors"}


def test_every_hint_key_has_a_cli_hint():
    assert set(get_args(HintKey)) == set(HINTS)
