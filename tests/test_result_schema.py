"""The typed result: JSON round trip, the JSON Schema (in sync, validating real results), versions,
and field-level errors for malformed files."""

import json
from dataclasses import dataclass, field

import jsonschema
import numpy as np
import pytest

from convlens._serde import SchemaError, finite, from_jsonable, json_schema, to_jsonable
from convlens.analysis import analyze_weights
from convlens.analysis.result import (
    SCHEMA_PATH,
    SCHEMA_VERSION,
    AnalysisResult,
    SeedsSummary,
    analysis_schema,
    schema_text,
    seeds_schema,
)
from convlens.errors import ConvlensError


@dataclass
class _Inner:
    a: int
    b: float | None = None


@dataclass
class _Outer:
    name: str
    pair: tuple[float, float]
    items: list[_Inner] = field(default_factory=list)
    table: dict[str, list[int]] = field(default_factory=dict)
    shape: tuple[int, ...] = ()
    flag: bool = False


def test_serde_round_trip_and_numpy_values():
    o = _Outer("x", (1.0, 2.5), [_Inner(1, np.float64(0.5)), _Inner(2)], {"k": [1, 2]}, (3, 4))
    data = to_jsonable(o)
    assert data["items"][0]["b"] == 0.5 and type(data["items"][0]["b"]) is float
    assert data["shape"] == [3, 4]
    back = from_jsonable(_Outer, json.loads(json.dumps(data)))
    assert back == o and back.shape == (3, 4) and back.pair == (1.0, 2.5)


def test_serde_errors_name_the_path():
    good = to_jsonable(_Outer("x", (1.0, 2.0), [_Inner(1)]))
    cases = [
        (("items", 0, "a"), "1", r"_Outer\.items\[0\]\.a: expected integer, got str"),
        (("items", 0, "a"), True, r"expected integer, got bool"),
        (("pair",), [1.0], r"_Outer\.pair: expected an array of 2 items, got 1"),
        (("flag",), 1, r"_Outer\.flag: expected boolean"),
        (("table",), {"k": [1.5]}, r"_Outer\.table\['k'\]\[0\]: expected integer"),
    ]
    for path, value, message in cases:
        doc = json.loads(json.dumps(good))
        target = doc
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
        with pytest.raises(SchemaError, match=message):
            from_jsonable(_Outer, doc)
    doc = dict(good, extra=1)
    with pytest.raises(SchemaError, match="unexpected field 'extra'"):
        from_jsonable(_Outer, doc)
    doc = dict(good)
    del doc["name"]
    with pytest.raises(SchemaError, match=r"_Outer\.name: missing"):
        from_jsonable(_Outer, doc)


def test_finite_maps_undefined_to_none():
    assert finite(float("nan")) is None and finite(float("inf")) is None and finite(None) is None
    assert finite(np.float32(0.25)) == 0.25


def test_json_schema_of_types_matches_what_serde_accepts():
    schema = json_schema(_Outer, title="t")
    jsonschema.Draft202012Validator.check_schema(schema)
    good = to_jsonable(_Outer("x", (1.0, 2.0), [_Inner(1, None)], {"k": [1]}, (1,)))
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(good, pair=[1.0]), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(dict(good, extra=1), schema)


def test_schema_file_is_in_sync_with_the_types():
    """``schema.json`` is generated from the dataclasses; regenerate it with
    ``python -c "from convlens.analysis.result import write_schema; write_schema()"``."""
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text()
    jsonschema.Draft202012Validator.check_schema(analysis_schema())
    jsonschema.Draft202012Validator.check_schema(seeds_schema())


def _model_file_result():
    rng = np.random.default_rng(0)
    w = {
        "stem.weight": rng.standard_normal((8, 3, 5, 5)),
        "body.weight": rng.standard_normal((8, 8, 3, 3)),
        "pw.weight": rng.standard_normal((4, 8, 1, 1)),
        "c1d.weight": rng.standard_normal((4, 2, 7)),
    }
    from convlens.analysis.result import Headline, Settings, Source, Verdicts

    layers = analyze_weights(w, n_null=200)
    return AnalysisResult(
        SCHEMA_VERSION, Source("model_file", "m"), Settings(200, 0), layers, Headline(), Verdicts()
    )


def test_model_file_result_round_trips_and_validates():
    a = _model_file_result()
    text = a.to_json()
    assert AnalysisResult.from_json(text) == a
    jsonschema.validate(json.loads(text), analysis_schema())
    assert [r.identity.order for r in a.layers] == ["file"] * 4
    c1d = a.layers[3].matching
    assert a.layers[3].identity.dims == 1 and c1d.skipped is None and c1d.spectral is not None


def test_run_result_round_trips_and_validates(tiny_run_analysis):
    a = tiny_run_analysis
    doc = json.loads(a.to_json())
    jsonschema.validate(doc, json.loads(SCHEMA_PATH.read_text()))
    assert AnalysisResult.from_dict(doc) == a
    assert doc["schema_version"] == SCHEMA_VERSION


def test_seeds_summary_validates(tiny_run_analysis):
    from convlens.analysis.evidence.seeds import aggregate

    s = aggregate([tiny_run_analysis, tiny_run_analysis], [0, 1])
    jsonschema.validate(json.loads(s.to_json()), seeds_schema())
    assert SeedsSummary.from_json(s.to_json()) == s


def test_wrong_or_missing_version_is_a_clear_error():
    a = _model_file_result()
    doc = json.loads(a.to_json())
    with pytest.raises(ConvlensError, match=r"schema_version 99; this version of convlens reads"):
        AnalysisResult.from_dict(dict(doc, schema_version=99))
    with pytest.raises(ConvlensError, match=r"older convlens \(convlens-analysis/1\)"):
        AnalysisResult.from_dict({"format": "convlens-analysis/1", "matching": []})
    with pytest.raises(ConvlensError, match="is not an analysis"):
        AnalysisResult.from_dict({"something": "else"})
    with pytest.raises(ConvlensError, match="expected a JSON object"):
        AnalysisResult.from_dict([1, 2])
    with pytest.raises(ConvlensError, match="not valid JSON"):
        AnalysisResult.from_json("{")
    with pytest.raises(ConvlensError, match="nested too deeply"):
        AnalysisResult.from_json("[" * 100_000 + "]" * 100_000)
    bad = json.loads(a.to_json())
    bad["layers"][1]["matching"]["null"]["p95"] = "high"
    with pytest.raises(ConvlensError, match=r"layers\[1\]\.matching\.null\.p95: expected number"):
        AnalysisResult.from_dict(bad)


def test_read_reports_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConvlensError, match="does not exist"):
        AnalysisResult.read(tmp_path / "none.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConvlensError, match="cannot read"):
        AnalysisResult.read(tmp_path / "bin.json")


@dataclass
class _Num:
    i: int
    f: float


def test_reader_agrees_with_the_schema_on_integral_floats_and_refuses_infinities():
    """Regression: outside review of issues 11-12 (integral floats, infinities)."""
    assert from_jsonable(_Num, {"i": 2.0, "f": 1}) == _Num(2, 1.0)
    with pytest.raises(SchemaError, match="expected integer"):
        from_jsonable(_Num, {"i": 2.5, "f": 1})
    with pytest.raises(SchemaError, match="finite number"):
        from_jsonable(_Num, {"i": 1, "f": float("inf")})
    assert np.isfinite(from_jsonable(_Num, {"i": 1, "f": 1e308}).f)
