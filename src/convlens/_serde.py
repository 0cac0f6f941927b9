"""Typed dataclasses <-> JSON, and a JSON Schema generated from the same type hints.

One small engine for every result file convlens writes (``analysis.json``, ``seeds.json``): the
dataclass is the single source of truth; :func:`to_jsonable` writes it, :func:`from_jsonable` reads
it back *checking every field against its declared type* (a wrong or missing field is an error that
names its path, e.g. ``layers[0].matching.null.p95``), and :func:`json_schema` emits the JSON Schema
(draft 2020-12) that users of other languages can validate against.

Supported annotations: ``bool``, ``int``, ``float``, ``str``, ``None``, ``Any``, ``list[T]``,
``dict[str, T]``, ``tuple[T, ...]``, ``tuple[A, B]``, ``X | Y`` / ``Optional``, ``Literal[...]`` and
dataclasses. Floats are written as JSON numbers; non-finite floats are not valid JSON, so fields that
can be undefined are declared ``float | None`` and hold ``None`` (see :func:`finite`).

>>> from dataclasses import dataclass
>>> @dataclass
... class P:
...     x: int
...     y: float | None = None
>>> to_jsonable(P(1, 2.5))
{'x': 1, 'y': 2.5}
>>> from_jsonable(P, {"x": 1, "y": None})
P(x=1, y=None)
>>> from_jsonable(P, {"x": "1", "y": None})
Traceback (most recent call last):
...
convlens._serde.SchemaError: P.x: expected integer, got str '1'
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import numpy as np

T = TypeVar("T")


class SchemaError(ValueError):
    """A JSON document does not have the declared shape; the message names the field's path."""


def finite(v: Any) -> float | None:
    """``float(v)``, or ``None`` when ``v`` is None, NaN or infinite (undefined, written as null)."""
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def to_jsonable(obj: Any) -> Any:
    """Plain JSON data (dict/list/str/int/float/bool/None) from dataclasses, numpy values, tuples."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _same_kind(tp: Any, data: Any) -> bool:
    """Whether ``data`` has the JSON kind of ``tp`` (object, array) so its error is the one to show."""
    if isinstance(data, dict):
        return dataclasses.is_dataclass(tp) or get_origin(tp) is dict
    if isinstance(data, list):
        return get_origin(tp) in (list, tuple)
    return False


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if tp is bool:
        return "boolean"
    if tp is int:
        return "integer"
    if tp is float:
        return "number"
    if tp is str:
        return "string"
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return f"object {tp.__name__}"
    origin = get_origin(tp)
    if origin in (list, tuple):
        return "array"
    if origin is dict:
        return "object"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in get_args(tp))
    return str(tp)


def from_jsonable(tp: type[T] | Any, data: Any, path: str = "") -> T:
    """Build ``tp`` from plain JSON data, checking each value; raises :class:`SchemaError`."""
    where = path or getattr(tp, "__name__", "value")
    if tp is Any:
        return typing.cast(T, data)
    if tp is type(None):
        if data is not None:
            raise SchemaError(f"{where}: expected null, got {_describe(data)}")
        return typing.cast(T, None)
    if _is_union(tp):
        arms = [a for a in get_args(tp) if data is not None or a is type(None)]
        errors = []
        for arm in arms:
            try:
                return typing.cast(T, from_jsonable(arm, data, path))
            except SchemaError as exc:
                errors.append((arm, exc))
        # one arm of the right JSON kind (an object for a dataclass, an array for a list): its
        # error names the deepest wrong field, which says more than "expected X or Y"
        kind = [(a, e) for a, e in errors if _same_kind(a, data)]
        if len(kind) == 1:
            raise kind[0][1]
        raise SchemaError(f"{where}: expected {_type_name(tp)}, got {_describe(data)}")
    if dataclasses.is_dataclass(tp):
        return typing.cast(T, _dataclass_from(typing.cast(type, tp), data, path))
    return typing.cast(T, _scalar_or_container(tp, data, where, path))


def _scalar_or_container(tp: Any, data: Any, where: str, path: str) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if tp is bool:
        if not isinstance(data, bool):
            raise SchemaError(f"{where}: expected boolean, got {_describe(data)}")
        return data
    if tp is int:
        # JSON Schema's "integer" includes 2.0: accept integral floats as the schema does
        if isinstance(data, float) and math.isfinite(data) and data.is_integer():
            return int(data)
        if isinstance(data, bool) or not isinstance(data, int):
            raise SchemaError(f"{where}: expected integer, got {_describe(data)}")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise SchemaError(f"{where}: expected number, got {_describe(data)}")
        if not math.isfinite(data):
            raise SchemaError(f"{where}: expected a finite number, got {data!r}")
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise SchemaError(f"{where}: expected string, got {_describe(data)}")
        return data
    if origin is Literal:
        if data not in args or isinstance(data, bool) != isinstance(args[0], bool):
            raise SchemaError(f"{where}: expected {_type_name(tp)}, got {_describe(data)}")
        return data
    if origin is list:
        if not isinstance(data, list):
            raise SchemaError(f"{where}: expected array, got {_describe(data)}")
        return [from_jsonable(args[0], v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is tuple:
        return _tuple_from(args, data, where)
    if origin is dict:
        if not isinstance(data, dict):
            raise SchemaError(f"{where}: expected object, got {_describe(data)}")
        return {str(k): from_jsonable(args[1], v, f"{where}[{k!r}]") for k, v in data.items()}
    raise TypeError(f"unsupported annotation {tp!r} at {where}")


def _tuple_from(args: tuple[Any, ...], data: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(data, list | tuple):
        raise SchemaError(f"{where}: expected array, got {_describe(data)}")
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(from_jsonable(args[0], v, f"{where}[{i}]") for i, v in enumerate(data))
    if len(data) != len(args):
        raise SchemaError(f"{where}: expected an array of {len(args)} items, got {len(data)}")
    return tuple(
        from_jsonable(a, v, f"{where}[{i}]")
        for i, (a, v) in enumerate(zip(args, data, strict=True))
    )


def _dataclass_from(cls: type, data: Any, path: str) -> Any:
    where = path or cls.__name__
    if not isinstance(data, dict):
        raise SchemaError(f"{where}: expected object {cls.__name__}, got {_describe(data)}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise SchemaError(f"{where}: unexpected field {unknown[0]!r}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        sub = f"{where}.{f.name}"
        if f.name not in data:
            raise SchemaError(f"{sub}: missing")
        kwargs[f.name] = from_jsonable(hints[f.name], data[f.name], sub)
    return cls(**kwargs)


def json_schema(root: type, *, title: str, schema_id: str | None = None) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of dataclass ``root``; nested dataclasses go to ``$defs``."""
    defs: dict[str, Any] = {}
    body = _schema_of(root, defs)
    out: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    if schema_id:
        out["$id"] = schema_id
    out["title"] = title
    out.update(body)
    out["$defs"] = dict(sorted(defs.items()))
    return out


def _schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if tp is Any:
        return {}
    simple = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}
    if tp in simple:
        return {"type": simple[tp]}
    if dataclasses.is_dataclass(tp):
        return _dataclass_schema(typing.cast(type, tp), defs)
    origin, args = get_origin(tp), get_args(tp)
    if _is_union(tp):
        return {"anyOf": [_schema_of(a, defs) for a in args]}
    if origin is Literal:
        return {"enum": list(args)}
    if origin is list:
        return {"type": "array", "items": _schema_of(args[0], defs)}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": _schema_of(args[0], defs)}
        return {
            "type": "array",
            "prefixItems": [_schema_of(a, defs) for a in args],
            "items": False,
            "minItems": len(args),
        }
    if origin is dict:
        return {"type": "object", "additionalProperties": _schema_of(args[1], defs)}
    raise TypeError(f"unsupported annotation {tp!r}")


def _dataclass_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    name = cls.__name__
    ref = {"$ref": f"#/$defs/{name}"}
    if name in defs:
        return ref
    defs[name] = {}  # placeholder: recursion
    hints = _hints(cls)
    fields = dataclasses.fields(cls)
    entry: dict[str, Any] = {"type": "object"}
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    if doc and not doc.startswith(f"{name}("):
        entry["description"] = " ".join(doc.split())
    entry["properties"] = {f.name: _schema_of(hints[f.name], defs) for f in fields}
    entry["required"] = [f.name for f in fields]
    entry["additionalProperties"] = False
    defs[name] = entry
    return ref
