"""Validity and identity flags, as bits of a uint32 mask (kernels) and names (wire, policy)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

NO_AXLES = 1 << 0
SPEED_OUT_OF_RANGE = 1 << 1
ACCELERATION = 1 << 2
LANE_CHANGE = 1 << 3
AXLE_COUNT_MISMATCH = 1 << 4
CLIPPED = 1 << 5
PULSE_CUT = 1 << 6
DEAD_CHANNEL = 1 << 7
BAD_CALIBRATION = 1 << 8
TOO_MANY_AXLES = 1 << 9
UNCLASSIFIED = 1 << 10
UNIDENTIFIED = 1 << 11
PLATE_FORMAT_INVALID = 1 << 12
FRONT_REAR_CONFLICT = 1 << 13
CERT_EXPIRED = 1 << 14
UNKNOWN_DEVICE = 1 << 15
NO_FRONT = 1 << 16
NO_REAR = 1 << 17
ARTICULATED_MISMATCH = 1 << 18
LOW_PLATE_CONFIDENCE = 1 << 19
TEMPERATURE_CORRECTED = 1 << 20
CLASS_AMBIGUOUS = 1 << 21
OTHER_LANE_PLATE = 1 << 22  # the plate rests only on reads of cameras over other lanes

NAMES: dict[int, str] = {
    NO_AXLES: "no_axles",
    SPEED_OUT_OF_RANGE: "speed_out_of_range",
    ACCELERATION: "acceleration",
    LANE_CHANGE: "lane_change",
    AXLE_COUNT_MISMATCH: "axle_count_mismatch",
    CLIPPED: "clipped",
    PULSE_CUT: "pulse_cut",
    DEAD_CHANNEL: "dead_channel",
    BAD_CALIBRATION: "bad_calibration",
    TOO_MANY_AXLES: "too_many_axles",
    UNCLASSIFIED: "unclassified",
    UNIDENTIFIED: "unidentified",
    PLATE_FORMAT_INVALID: "plate_format_invalid",
    FRONT_REAR_CONFLICT: "front_rear_conflict",
    CERT_EXPIRED: "cert_expired",
    UNKNOWN_DEVICE: "unknown_device",
    NO_FRONT: "no_front",
    NO_REAR: "no_rear",
    ARTICULATED_MISMATCH: "articulated_mismatch",
    LOW_PLATE_CONFIDENCE: "low_plate_confidence",
    TEMPERATURE_CORRECTED: "temperature_corrected",
    CLASS_AMBIGUOUS: "class_ambiguous",
    OTHER_LANE_PLATE: "other_lane_plate",
}
BITS: dict[str, int] = {name: bit for bit, name in NAMES.items()}


def to_names(mask: int) -> list[str]:
    """The flag names set in ``mask``, in bit order (a new list: callers may extend it)."""
    return list(_names_of(int(mask)))


@lru_cache(maxsize=4096)
def _names_of(mask: int) -> tuple[str, ...]:
    return tuple(name for bit, name in NAMES.items() if mask & bit)


def from_names(names: list[str] | tuple[str, ...]) -> int:
    """The mask of ``names``; unknown names raise ValueError naming them."""
    unknown = [n for n in names if n not in BITS]
    if unknown:
        raise ValueError(f"unknown flag name(s): {', '.join(unknown)}; known: {sorted(BITS)}")
    mask = 0
    for n in names:
        mask |= BITS[n]
    return mask


FLAG_DTYPE = np.uint32
