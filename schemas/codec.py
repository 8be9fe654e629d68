"""Avro codecs for the wire contract: schemaless bodies and the Confluent wire format.

Each ``schemas/<namespace>.<Name>.avsc`` file is parsed once, when this module is imported. A
:class:`Codec` encodes and decodes one record type; malformed bytes raise :class:`DecodeError`
naming the record and what was wrong, never a bare fastavro exception and never a half-read
record (trailing bytes are an error too).

Bit-level integrity is the transport's job (Kafka checks a CRC32C on every record batch); what
this layer guarantees is that bytes which do not form exactly one valid record are rejected.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import yaml

SCHEMA_DIR = Path(__file__).resolve().parent
MAGIC_BYTE = 0
_WIRE_HEADER = struct.Struct(">bI")

# fastavro raises these for bytes that are not a valid record of the schema.
_DECODE_FAILURES = (
    EOFError,
    ValueError,
    UnicodeDecodeError,
    IndexError,
    KeyError,
    TypeError,
    OverflowError,
    MemoryError,
    struct.error,
)


class SchemaError(Exception):
    """Root of the errors of this package."""


class DecodeError(SchemaError):
    """Bytes that are not exactly one valid record of the expected schema."""


class EncodeError(SchemaError):
    """A Python object that does not fit the schema."""


def _load_schema_ids() -> dict[str, int]:
    with open(SCHEMA_DIR / "schema_ids.yaml", encoding="utf-8") as fh:
        ids = yaml.safe_load(fh)
    if len(set(ids.values())) != len(ids):
        raise SchemaError("schema_ids.yaml assigns one id to two records")
    return {str(name): int(i) for name, i in ids.items()}


@dataclass(frozen=True)
class Codec:
    """Encoder and decoder of one Avro record type."""

    full_name: str
    schema_id: int
    parsed: Any = field(repr=False)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f["name"] for f in self.parsed["fields"])

    def encode(self, record: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        try:
            fastavro.schemaless_writer(out, self.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{self.full_name}: cannot encode record: {exc}") from exc
        return out.getvalue()

    def decode(self, payload: bytes, start: int = 0) -> dict[str, Any]:
        """The record in ``payload[start:]`` (an offset, not a slice: bodies can be large)."""
        if not isinstance(payload, bytes | bytearray | memoryview):
            raise DecodeError(f"{self.full_name}: expected bytes, got {type(payload).__name__}")
        buf = io.BytesIO(payload)
        buf.seek(start)
        try:
            record = fastavro.schemaless_reader(buf, self.parsed, None)
        except _DECODE_FAILURES as exc:
            raise DecodeError(
                f"{self.full_name}: malformed Avro body ({type(exc).__name__}: {exc})"
            ) from exc
        if buf.tell() != len(payload):
            raise DecodeError(
                f"{self.full_name}: {len(payload) - buf.tell()} trailing bytes after the record"
            )
        return record

    def encode_wire(self, record: dict[str, Any]) -> bytes:
        return _WIRE_HEADER.pack(MAGIC_BYTE, self.schema_id) + self.encode(record)

    def decode_wire(self, payload: bytes) -> dict[str, Any]:
        schema_id = wire_schema_id(payload)
        if schema_id != self.schema_id:
            known = _NAMES_BY_ID.get(schema_id, "an unknown schema")
            raise DecodeError(
                f"{self.full_name}: schema id {schema_id} ({known}) where {self.schema_id} "
                "was expected"
            )
        return self.decode(payload, _WIRE_HEADER.size)


def wire_schema_id(payload: bytes) -> int:
    """The schema id of a Confluent-framed message, or DecodeError if it is not framed."""
    if len(payload) < _WIRE_HEADER.size:
        raise DecodeError(f"message of {len(payload)} bytes is shorter than the 5-byte header")
    magic, schema_id = _WIRE_HEADER.unpack_from(payload)
    if magic != MAGIC_BYTE:
        raise DecodeError(f"magic byte is {magic}, not {MAGIC_BYTE}: not Confluent wire format")
    return schema_id


def _load_codecs() -> dict[str, Codec]:
    ids = _load_schema_ids()
    named: dict[str, Any] = {}
    codecs = {}
    for path in sorted(SCHEMA_DIR.glob("*.avsc")):
        full_name = path.stem
        if full_name not in ids:
            raise SchemaError(f"{path.name} has no id in schema_ids.yaml")
        parsed = fastavro.schema.load_schema(str(path), named_schemas=named)
        if parsed["name"] != full_name:
            raise SchemaError(f"{path.name} defines {parsed['name']}, not {full_name}")
        codecs[full_name] = Codec(full_name, ids[full_name], parsed)
    return codecs


CODECS: dict[str, Codec] = _load_codecs()
_NAMES_BY_ID = {c.schema_id: name for name, c in CODECS.items()}


def codec_for_id(schema_id: int) -> Codec:
    name = _NAMES_BY_ID.get(schema_id)
    if name is None:
        raise DecodeError(f"unknown schema id {schema_id}")
    return CODECS[name]


def decode_any_wire(payload: bytes) -> tuple[str, dict[str, Any]]:
    """Decode a framed message of any known schema: (full name, record)."""
    codec = codec_for_id(wire_schema_id(payload))
    return codec.full_name, codec.decode(payload, _WIRE_HEADER.size)


def _carries_float(avro_type: Any) -> bool:
    if avro_type == "float":
        return True
    if isinstance(avro_type, list):
        return any(_carries_float(t) for t in avro_type)
    return (
        isinstance(avro_type, dict)
        and avro_type.get("type") == "array"
        and (_carries_float(avro_type["items"]))
    )


def _decimal(value: Any) -> Any:
    if isinstance(value, float):
        return float(str(np.float32(value)))
    if isinstance(value, list):
        return [_decimal(v) for v in value]
    return value


def decimal_floats(codec: Codec, record: dict[str, Any]) -> dict[str, Any]:
    """``record`` decoded by ``codec`` with each Avro ``float`` as the shortest decimal that
    encodes to the same 32 bits: the value the sender wrote (20622.2, not 20622.19921875), as
    far as a float carries it. For records kept and shown to people (the store of record)."""
    names = [f["name"] for f in codec.parsed["fields"] if _carries_float(f["type"])]
    return {**record, **{n: _decimal(record[n]) for n in names if n in record}}
