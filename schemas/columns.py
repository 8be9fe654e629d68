"""The batched gateway's column format (``zhichao.VehicleBatch``, ``zhichao.VerdictBatch``):
numeric columns are little-endian packed arrays of one value per vehicle (per axle for loads and
spacings), text columns are the values joined by newlines, and per-axle arrays are
``MAX_AXLES`` wide once unpacked.

``unpack``: a decoded ``VehicleBatch`` -> its valid rows as columns. A batch that cannot be read
as a whole (unknown site or device, columns of different lengths) is one ``BatchProblem``; rows
that fail a check are left out with their reasons (``RowProblem``) and the rest goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from schemas.checks import (
    MAX_AXLE_LOAD_KG,
    MAX_AXLE_SPACING_M,
    MAX_PASSAGE_US,
    MAX_PLATE_CHARS,
    MAX_SPEED_KMH,
    Clock,
    common_problem,
    device_problem,
)
from schemas.plate_grammar import is_trailer, normalise
from schemas.registry import Registry
from schemas.units import US

MAX_AXLES = 12  # the widest vehicle the contract carries (and the kernels' array width)
MAX_BATCH_VEHICLES = 100_000
ID_LIMIT = 128  # characters of a batch or passage id
TEXT_COLUMNS = ("passage_ids", "plate_front", "plate_rear")
# the packed columns and their wire types: one value per vehicle, then per axle and per gap
VEHICLE_BATCH_COLUMNS = {
    "ts_us": "<i8",
    "last_axle_ts_us": "<i8",
    "speed_kmh": "<f4",
    "axle_count": "u1",
    "front_confidence": "<f4",
    "rear_confidence": "<f4",
}
AXLE_COLUMNS = {"axle_loads_kg": "<f4", "axle_spacings_m": "<f4"}
VERDICT_BATCH_COLUMNS = {
    "ts_us": "<i8",
    "gvw_kg": "<f4",
    "limit_kg": "<f4",
    "class_index": "i1",
    "verdict": "u1",
    "enforceable": "u1",
    "flags": "<u4",
}


def join_text(values: list[str]) -> str:
    """A text column on the wire: the values joined by newlines."""
    return "\n".join(values)


def split_text(text: str) -> list[str]:
    return text.split("\n")


def pack(values: dict[str, np.ndarray], wire: dict[str, str]) -> dict[str, bytes]:
    """Numeric columns on the wire: each array as its wire type's bytes."""
    return {name: np.asarray(values[name]).astype(dtype).tobytes() for name, dtype in wire.items()}


def unpacked(record: dict[str, Any], name: str, dtype: str, n: int) -> np.ndarray:
    """Packed column ``name`` of ``n`` values, in int64 or float64 (what the stages compute in);
    a column of another length is a ``BatchProblem``."""
    raw = record[name]
    if len(raw) != n * np.dtype(dtype).itemsize:
        raise BatchProblem("bad_batch_shape", f"{name}: {len(raw)} bytes for {n} values")
    column = np.frombuffer(raw, dtype=dtype)
    return column.astype(np.int64 if column.dtype.kind in "iu" else np.float64)


@dataclass(frozen=True)
class RowProblem:
    row: int
    passage_id: str
    reason: str
    message: str


class BatchProblem(ValueError):
    """A batch that cannot be read as a whole: (reason, message) for the dead-letter topic."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def rejected_message(rejected: list[RowProblem], rows: int, shown: int = 20) -> str:
    """One dead letter's text for the rows of a batch that were left out."""
    parts = [f"row {p.row} ({p.passage_id}): {p.reason}: {p.message}" for p in rejected[:shown]]
    more = f"; and {len(rejected) - shown} more" if len(rejected) > shown else ""
    return f"{len(rejected)} of {rows} rows left out: " + "; ".join(parts) + more


@dataclass(frozen=True)
class Columns:
    """The valid rows of a batch; per-vehicle arrays of equal length n."""

    batch_id: str
    site_id: str
    device_id: str
    lane: int
    direction: str
    sent_us: int
    passage_ids: list[str]
    ts_us: np.ndarray  # int64
    last_axle_ts_us: np.ndarray  # int64
    speed_kmh: np.ndarray  # float64
    axle_count: np.ndarray  # int64
    axle_loads_kg: np.ndarray  # float64 [n, MAX_AXLES], zero beyond axle_count
    axle_spacings_m: np.ndarray  # float64 [n, MAX_AXLES - 1], zero beyond axle_count - 1
    gvw_kg: np.ndarray  # float64, the sum of the axle loads
    plate_front: list[str]  # normalised, '' when unread
    plate_rear: list[str]
    rear_is_trailer: np.ndarray  # bool: the rear plate is a 挂 trailer's
    front_confidence: np.ndarray  # float64
    rear_confidence: np.ndarray

    def __len__(self) -> int:
        return len(self.passage_ids)


class _Problems(dict[int, tuple[str, str]]):
    """Per row, the first check it failed."""

    def mark(self, mask: np.ndarray, reason: str, message: str) -> None:
        if mask.any():  # the usual batch has no bad row
            for i in np.flatnonzero(mask):
                self.setdefault(int(i), (reason, message))


def unpack(
    record: dict[str, Any],
    registry: Registry,
    clock: Clock | None = None,
    now_s: float | None = None,
) -> tuple[Columns, list[RowProblem]]:
    """The valid rows of a decoded ``VehicleBatch`` and the problems of the others; raises
    ``BatchProblem`` when the batch as a whole is unusable."""
    _check_whole(record, registry)
    n = record["count"]
    text = {name: split_text(record[name]) for name in TEXT_COLUMNS}
    for name, values in text.items():
        if len(values) != n:
            raise BatchProblem("bad_batch_shape", f"{name}: {len(values)} values for {n}")
    cols = {name: unpacked(record, name, dtype, n) for name, dtype in VEHICLE_BATCH_COLUMNS.items()}
    counts = cols["axle_count"]
    total = int(counts.sum())
    loads = unpacked(record, "axle_loads_kg", AXLE_COLUMNS["axle_loads_kg"], total)
    gaps = unpacked(record, "axle_spacings_m", AXLE_COLUMNS["axle_spacings_m"], total - n)

    problems = _Problems()
    _check_numbers(problems, cols, loads, gaps)
    if clock is not None:  # the clock check of every input, on the column at once
        now = time.time() if now_s is None else now_s
        lo, hi = (now - clock.max_age_s) * US, (now + clock.max_ahead_s) * US
        ts = cols["ts_us"]
        problems.mark((ts < lo) | (ts > hi), "bad_timestamp", "event time too far from now")
    ids, fronts, rears = (text[name] for name in TEXT_COLUMNS)
    _check_text(problems, ids, fronts, rears)
    cols["axle_loads_kg"], cols["axle_spacings_m"] = _padded(counts, loads, gaps)
    fronts, rears = list(map(normalise, fronts)), list(map(normalise, rears))
    if problems:  # the usual batch has none: no copies then
        keep = np.ones(n, dtype=bool)
        keep[list(problems)] = False
        idx = np.flatnonzero(keep)
        ids, fronts, rears = ([xs[i] for i in idx] for xs in (ids, fronts, rears))
        cols = {name: np.ascontiguousarray(a[idx]) for name, a in cols.items()}
    columns = Columns(
        batch_id=record["batch_id"],
        site_id=record["site_id"],
        device_id=record["device_id"],
        lane=record["lane"],
        direction=record["direction"],
        sent_us=record["sent_us"],
        passage_ids=list(ids),
        gvw_kg=cols["axle_loads_kg"].sum(axis=1),
        plate_front=fronts,
        plate_rear=rears,
        rear_is_trailer=np.array(list(map(is_trailer, rears)), dtype=bool),
        **cols,
    )
    rejected = [RowProblem(i, text["passage_ids"][i], *problems[i]) for i in sorted(problems)]
    return columns, rejected


def _check_whole(record: dict[str, Any], registry: Registry) -> None:
    """What makes a batch unusable as a whole: its site, device, size or id."""
    found = common_problem({**record, "ts_us": record["sent_us"]}, registry) or device_problem(
        record, registry
    )
    if found:
        raise BatchProblem(*found)
    n = record["count"]
    if not 0 < n <= MAX_BATCH_VEHICLES:
        raise BatchProblem("bad_batch_shape", f"count {n} outside 1..{MAX_BATCH_VEHICLES}")
    if len(record["batch_id"]) > ID_LIMIT or not record["batch_id"]:
        raise BatchProblem("bad_batch_id", f"batch_id must be 1..{ID_LIMIT} characters")


def _check_numbers(
    problems: _Problems, cols: dict[str, np.ndarray], loads: np.ndarray, gaps: np.ndarray
) -> None:
    """The per-row checks of the numeric columns (``streams.validation.vehicle_problem``'s
    limits); ``loads`` and ``gaps`` flat, axle after axle."""
    counts, speed, ts, last = (
        cols[k] for k in ("axle_count", "speed_kmh", "ts_us", "last_axle_ts_us")
    )
    n = counts.size
    bad_count = (counts < 2) | (counts > MAX_AXLES)
    problems.mark(bad_count, "bad_axles", f"axle count outside 2..{MAX_AXLES}")
    rows = np.repeat(np.arange(n), counts)
    bad_load = ~np.isfinite(loads) | (loads < 0) | (loads >= MAX_AXLE_LOAD_KG)
    if bad_load.any():
        bad_rows = np.bincount(rows[bad_load], minlength=n) > 0
        problems.mark(bad_rows, "bad_axles", f"axle loads 0..{MAX_AXLE_LOAD_KG} kg")
    gap_rows = np.repeat(np.arange(n), np.maximum(counts - 1, 0))
    bad_gap = ~np.isfinite(gaps) | (gaps <= 0) | (gaps >= MAX_AXLE_SPACING_M)
    if bad_gap.any():
        bad_rows = np.bincount(gap_rows[bad_gap], minlength=n) > 0
        problems.mark(bad_rows, "bad_axles", f"axle spacings 0..{MAX_AXLE_SPACING_M} m")
    problems.mark(
        ~np.isfinite(speed) | (speed <= 0) | (speed > MAX_SPEED_KMH), "bad_speed", "speed"
    )
    for conf in (cols["front_confidence"], cols["rear_confidence"]):
        problems.mark(
            ~np.isfinite(conf) | (conf < 0) | (conf > 1), "bad_confidence", "outside 0..1"
        )
    late = last > ts + MAX_PASSAGE_US
    problems.mark((ts <= 0) | (last < ts) | late, "bad_timestamp", "axle times")


def _check_text(problems: _Problems, ids: list[str], fronts: list[str], rears: list[str]) -> None:
    """The per-row checks of the text columns: unique passage ids, plate readings."""
    n = len(ids)
    if len(set(ids)) < n or not all(ids) or max(map(len, ids)) > ID_LIMIT:
        seen: set[str] = set()
        for i, pid in enumerate(ids):
            if not pid or len(pid) > ID_LIMIT or pid in seen:
                problems.setdefault(i, ("bad_passage_id", "empty, too long or twice in the batch"))
            seen.add(pid)
    for plates_read in (fronts, rears):
        joined = "".join(plates_read)
        if (joined and not joined.isalnum()) or max(map(len, plates_read)) > MAX_PLATE_CHARS:
            for i, plate in enumerate(plates_read):
                if len(plate) > MAX_PLATE_CHARS or not (plate.isalnum() or plate == ""):
                    problems.setdefault(i, ("bad_plate", "text is not a plate reading"))


def _padded(
    counts: np.ndarray, loads: np.ndarray, gaps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The flat per-axle columns as [n, MAX_AXLES] and [n, MAX_AXLES - 1] arrays, zero beyond
    each row's axles; rows whose axle count does not fit stay zero (they are left out)."""
    n, total = counts.size, loads.size
    gap_counts = np.maximum(counts - 1, 0)
    rows = np.repeat(np.arange(n), counts)
    gap_rows = np.repeat(np.arange(n), gap_counts)
    padded_loads = np.zeros((n, MAX_AXLES))
    padded_gaps = np.zeros((n, MAX_AXLES - 1))
    fits = (counts >= 2) & (counts <= MAX_AXLES)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gap_starts = np.concatenate([[0], np.cumsum(gap_counts)[:-1]])
    flat_fits = np.repeat(fits, counts)
    pos = np.arange(total) - np.repeat(starts, counts)
    padded_loads[rows[flat_fits], pos[flat_fits]] = loads[flat_fits]
    gap_fits = np.repeat(fits, gap_counts)
    gpos = np.arange(gaps.size) - np.repeat(gap_starts, gap_counts)
    padded_gaps[gap_rows[gap_fits], gpos[gap_fits]] = gaps[gap_fits]
    return padded_loads, padded_gaps
