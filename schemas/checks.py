"""The checks every decoded input shares beyond its Avro schema, record by record
(``streams.validation``) and column by column (``schemas.columns.unpack``): the contract's
limits, the registry's sites and devices, and the worker's clock. Each check returns
``(reason, message)`` for the dead-letter topic, or None.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from schemas.registry import Registry
from schemas.units import US

DIRECTIONS = ("up", "down")
MAX_SPEED_KMH = 250.0
MAX_PLATE_CHARS = 12
MAX_AXLE_LOAD_KG = 100_000  # loads are below this
MAX_AXLE_SPACING_M = 30  # spacings are below this
MAX_PASSAGE_US = 60 * US  # a vehicle's last axle is at most this long after its first


@dataclass(frozen=True)
class Clock:
    """Event times a worker accepts: not older than ``max_age_s``, not ahead by more than
    ``max_ahead_s`` of the worker's clock."""

    max_age_s: float
    max_ahead_s: float

    def problem(self, ts_us: int, now_s: float | None = None) -> tuple[str, str] | None:
        now_s = time.time() if now_s is None else now_s
        if ts_us < (now_s - self.max_age_s) * US or ts_us > (now_s + self.max_ahead_s) * US:
            when = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_us / US))
                if (0 <= ts_us < 2**62)
                else str(ts_us)
            )
            return "bad_timestamp", f"event time {when} UTC is too far from now"
        return None


def common_problem(r: dict[str, Any], registry: Registry) -> tuple[str, str] | None:
    """What every input names: a registered site, a direction, a time."""
    if r["site_id"] not in registry.sites:
        return "unknown_site", f"site {r['site_id']!r} is not in the registry"
    if r["direction"] not in DIRECTIONS:
        return "bad_direction", f"direction {r['direction']!r} is not up or down"
    if not 0 < r["ts_us"] < 2**62:
        return "bad_timestamp", f"ts_us={r['ts_us']} is not a time"
    return None


def device_problem(r: dict[str, Any], registry: Registry) -> tuple[str, str] | None:
    """A WIM device's input: a registered device, at the site and on a lane of it."""
    device = registry.wim_devices.get(r["device_id"])
    if device is None:
        return "unknown_device", f"WIM device {r['device_id']!r} is not in the registry"
    if device.site != r["site_id"]:
        return "device_site_mismatch", f"WIM device {device.id} is at {device.site}"
    if not 1 <= r["lane"] <= registry.sites[r["site_id"]].lanes:
        return "bad_lane", f"lane {r['lane']} does not exist at {r['site_id']}"
    return None
