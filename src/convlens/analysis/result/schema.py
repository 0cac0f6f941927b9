"""The JSON Schema of the result files, generated from the dataclasses (``schema.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from convlens._serde import json_schema
from convlens.analysis.result.io import SCHEMA_VERSION, SEEDS_SCHEMA_VERSION
from convlens.analysis.result.summary import AnalysisResult, SeedsSummary


def analysis_schema() -> dict[str, Any]:
    """The JSON Schema of ``analysis.json`` (what ``schema.json`` holds)."""
    schema = json_schema(
        AnalysisResult,
        title="convlens analysis result",
        schema_id=f"https://convlens.invalid/schema/analysis-{SCHEMA_VERSION}.json",
    )
    schema["$defs"]["AnalysisResult"]["properties"]["schema_version"] = {"const": SCHEMA_VERSION}
    return schema


def seeds_schema() -> dict[str, Any]:
    schema = json_schema(SeedsSummary, title="convlens seeds summary")
    schema["$defs"]["SeedsSummary"]["properties"]["schema_version"] = {
        "const": SEEDS_SCHEMA_VERSION
    }
    return schema


SCHEMA_PATH = Path(__file__).parent.parent / "schema.json"


def schema_text() -> str:
    """The exact text of ``schema.json``."""
    return json.dumps(analysis_schema(), indent=2) + "\n"


def write_schema() -> Path:
    """Regenerate ``schema.json`` after changing the types above (a test checks it is in sync):
    ``python -c "from convlens.analysis.result import write_schema; write_schema()"``."""
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    return SCHEMA_PATH
