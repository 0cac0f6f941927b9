"""The import rules of docs/architecture.md, checked on the source: lower layers never import
torch or higher layers, and every error hint key has a CLI hint."""

import ast
from pathlib import Path
from typing import get_args

import convlens
from convlens.cli import HINTS
from convlens.errors import HintKey

SRC = Path(convlens.__file__).parent

# module prefix -> packages of convlens (and torch) it must not import, at any depth
FORBIDDEN = {
    "ops": {
        "torch",
        "kernels",
        "explain",
        "data",
        "apply",
        "models",
        "train",
        "analysis",
        "report",
    },
    "kernels": {"torch", "explain", "data", "apply", "models", "train", "analysis", "report"},
    "explain": {"torch", "data", "apply", "models", "train", "analysis", "report"},
    "data": {"torch", "apply", "models", "train", "analysis", "report"},
    "apply": {"torch", "models", "train", "analysis", "report"},
    "report": {"torch", "train", "models"},
    "analysis/result.py": {"torch", "train", "models", "report"},
    "_serde.py": {"torch"},
    "runs": {
        "torch",
        "ops",
        "kernels",
        "explain",
        "data",
        "apply",
        "models",
        "train",
        "analysis",
        "report",
        "export",
        "parallel",
        "display",
        "pipelines",
    },
    "train": {"analysis", "report"},
    "display.py": {"torch", "train", "models"},
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _top(name: str) -> str | None:
    if name == "torch" or name.startswith("torch."):
        return "torch"
    if name.startswith("convlens."):
        return name.split(".")[1]
    return None


def test_lower_layers_do_not_import_higher_ones_or_torch():
    bad = []
    for prefix, forbidden in FORBIDDEN.items():
        target = SRC / prefix
        files = [target] if target.suffix == ".py" else sorted(target.rglob("*.py"))
        assert files, prefix
        for f in files:
            for name in _imports(f):
                if _top(name) in forbidden:
                    bad.append(f"{f.relative_to(SRC)} imports {name}")
    assert not bad, bad


def test_every_hint_key_has_a_cli_hint():
    assert set(get_args(HintKey)) == set(HINTS)
