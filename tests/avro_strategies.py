"""Hypothesis strategies that draw any record of a parsed Avro schema."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def for_schema(schema: Any) -> st.SearchStrategy:
    if isinstance(schema, list):  # union
        return st.one_of([for_schema(branch) for branch in schema])
    if isinstance(schema, str):
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(*INT32),
            "long": st.integers(*INT64),
            "float": st.floats(width=32, allow_nan=False),
            "double": st.floats(allow_nan=False),
            "bytes": st.binary(max_size=64),
            "string": st.text(max_size=12),
        }[schema]
    kind = schema["type"]
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: for_schema(f["type"]) for f in schema["fields"]})
    if kind == "array":
        return st.lists(for_schema(schema["items"]), max_size=6)
    if kind == "map":
        return st.dictionaries(st.text(max_size=6), for_schema(schema["values"]), max_size=4)
    return for_schema(kind)
