"""The batched gateway's column format (``zhichao.VehicleBatch``, ``zhichao.VerdictBatch``):
numeric columns are little-endian packed arrays of one value per vehicle, text columns are the
values joined by newlines, and per-axle columns are ``MAX_AXLES`` wide."""

from __future__ import annotations

MAX_AXLES = 12  # the widest vehicle the contract carries (and the kernels' array width)
TEXT_COLUMNS = ("passage_ids", "plate_front", "plate_rear")


def join_text(values: list[str]) -> str:
    """A text column on the wire: the values joined by newlines."""
    return "\n".join(values)


def split_text(text: str) -> list[str]:
    return text.split("\n")
