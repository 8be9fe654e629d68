"""The measured vehicle (``zhichao.MeasuredVehicle``): what every stage after weighing works on,
whichever way the axle loads were found — by the axle kernel from raw samples, by the WIM
controller, or by a site gateway. Built here only, so that the three sources cannot drift apart.
"""

from __future__ import annotations

from typing import Any


def measured_vehicle(
    *,
    passage_id: str,
    site_id: str,
    device_id: str,
    lane: int,
    direction: str,
    ts_us: int,
    last_axle_ts_us: int,
    speed_kmh: float,
    axle_loads_kg: list[float],
    axle_spacings_m: list[float],
    gvw_kg: float,
    flags: list[str],
    source: str,
    samples_sha256: str | None = None,
    tyres: list[int] | None = None,
    air_suspension: bool | None = None,
) -> dict[str, Any]:
    """One measured vehicle. ``ts_us`` is its first axle's time and ``axle_count`` the number of
    loads; ``source`` is ``raw``, ``controller`` or ``gateway``, and ``samples_sha256`` the
    digest of the raw samples the loads were measured from (raw only)."""
    return {
        "passage_id": passage_id,
        "site_id": site_id,
        "device_id": device_id,
        "lane": lane,
        "direction": direction,
        "ts_us": ts_us,
        "last_axle_ts_us": last_axle_ts_us,
        "speed_kmh": speed_kmh,
        "axle_count": len(axle_loads_kg),
        "axle_loads_kg": axle_loads_kg,
        "axle_spacings_m": axle_spacings_m,
        "gvw_kg": gvw_kg,
        "flags": flags,
        "source": source,
        "samples_sha256": samples_sha256,
        "tyres": tyres,
        "air_suspension": air_suspension,
    }
