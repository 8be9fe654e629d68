"""An archive of verdicts into the store of record, as the live worker's cases agent writes them
(``zhichao db load``, ``zhichao replay --to-db``): weighings, cases in 待审核, sightings and the
hourly counts, in batches, each stored idempotently. An analyst can analyse an archive without a
running stack, and a report can be checked against replay.

Every line goes through the verdict schema first (the record the worker would have sent over
Kafka, its floats as Avro carries them), so a line that is not a verdict stops the load with its
file and line number before anything is written. No evidence record comes with an archive: the
cases it opens stay in 待审核 and cannot be filed (review refuses a case without evidence).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import schemas
from schemas.codec import SchemaError, decimal_floats
from sinks.records.case_store import CaseStore

BATCH = 1024  # the cases agent's
VERDICTS = ("ok", "warning", "overlimit")


class LoadError(ValueError):
    """A line of the archive that is not a verdict."""


@dataclass
class Loaded:
    verdicts: int = 0
    weighings: int = 0  # stored for the first time
    cases: int = 0  # opened
    sightings: int = 0  # stored for the first time


def read_verdicts(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The verdicts of JSON-lines files, as the worker sends them (``LoadError`` names the
    first bad line)."""
    out = []
    for path in paths:
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise LoadError(f"{path}:{n}: not UTF-8 JSON lines of verdicts") from exc
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    wire = schemas.VERDICT.decode_wire(schemas.VERDICT.encode_wire(record))
                except (ValueError, SchemaError) as exc:
                    raise LoadError(f"{path}:{n}: not a verdict: {exc}") from exc
                if wire["verdict"] not in VERDICTS:
                    raise LoadError(
                        f"{path}:{n}: verdict {wire['verdict']!r} is not one of "
                        f"{', '.join(VERDICTS)}"
                    )
                out.append(decimal_floats(schemas.VERDICT, wire))
    return out


async def load_verdicts(dsn: str, verdicts: list[dict[str, Any]], batch: int = BATCH) -> Loaded:
    """Store ``verdicts`` batch by batch, as the cases agent does; loading again changes
    nothing."""
    store = await CaseStore(dsn).open()
    loaded = Loaded(verdicts=len(verdicts))
    try:
        await store.check_schema()
        for i in range(0, len(verdicts), batch):
            part = verdicts[i : i + batch]
            stored = await store.store_verdicts(part)
            loaded.weighings += stored.weighings
            loaded.cases += stored.cases
            loaded.sightings += await store.store_traffic(part)
    finally:
        await store.close()
    return loaded
