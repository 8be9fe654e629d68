"""Write simulated traffic to Avro container files and JSON lines, with ground truth."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fastavro

import schemas
from sim.traffic import CityTraffic

FILES = {
    "wim_passages": schemas.WIM_PASSAGE,
    "camera_reads": schemas.CAMERA_READ,
    "device_heartbeats": schemas.DEVICE_HEARTBEAT,
}


def _wire_fields(record: dict[str, Any]) -> dict[str, Any]:
    """Drop the simulator's private annotations (keys starting with '_')."""
    return {k: v for k, v in record.items() if not k.startswith("_")}


def write_avro(path: Path, codec: schemas.Codec, records: Iterable[dict[str, Any]]) -> int:
    count = 0

    def rows() -> Iterable[dict[str, Any]]:
        nonlocal count
        for record in records:
            count += 1
            yield _wire_fields(record)

    with open(path, "wb") as fh:
        fastavro.writer(fh, codec.parsed, rows(), codec="null", sync_interval=1 << 20)
    return count


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(_wire_fields(record), ensure_ascii=False, default=_json_default))
            fh.write("\n")
            count += 1
    return count


def write_traffic(
    traffic: CityTraffic, out_dir: Path, fmt: str = "avro", manifest: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write inputs (``avro``, ``jsonl`` or ``both``), ``truth.jsonl`` and ``manifest.json``."""
    if fmt not in ("avro", "jsonl", "both"):
        raise ValueError(f"format must be avro, jsonl or both, got {fmt!r}")
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = {
        "wim_passages": traffic.passages,
        "camera_reads": traffic.reads,
        "device_heartbeats": traffic.heartbeats,
    }
    files: dict[str, str] = {}
    for stem, records in sources.items():
        if fmt in ("avro", "both"):
            write_avro(out_dir / f"{stem}.avro", FILES[stem], records)
            files[f"{stem}.avro"] = f"{len(records)} records"
        if fmt in ("jsonl", "both"):
            # the values a consumer sees on the wire (Avro floats are 32-bit)
            codec = FILES[stem]
            wire = (codec.decode(codec.encode(_wire_fields(r))) for r in records)
            write_jsonl(out_dir / f"{stem}.jsonl", wire)
            files[f"{stem}.jsonl"] = f"{len(records)} records"
    truth_rows = [{**t, "record": "passage"} for t in traffic.truth]
    truth_rows += [{"record": "bypasser", "plate": p} for p in traffic.bypassers]
    truth_rows += [{"record": "cloned", "plate": p} for p in traffic.cloned]
    write_jsonl(out_dir / "truth.jsonl", truth_rows)
    files["truth.jsonl"] = f"{len(truth_rows)} records"
    summary = {**(manifest or {}), "files": files}
    with open(out_dir / "manifest.json", "w", encoding="utf-8") as fh:
        json.dump(summary, fh, ensure_ascii=False, indent=2)
    return summary
