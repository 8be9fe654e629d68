"""The likely plate of an unidentified weighing (未识别车牌, ``plates.md`` M7): a truck whose plate
was covered or unreadable at the weigh site was usually read at the checkpoint (卡口) before it
on the same road. Its predicted time there is the weighing's time minus the distance over the
road's truck speed; a yellow (truck) plate read there within the link's spread is a candidate,
unless that plate was itself read at the weigh site around then (another truck). Candidates are
ranked by how far their time is from the prediction, in units of the spread.

It names a lead for the command centre, never a plate to fine: the alert stays ``unidentified``
and no verdict changes. Pure functions; the worker reads the sightings from Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.registry import Registry, Site
from schemas.units import US

SPREAD_SHARE = 0.25  # of the travel time, each side: link travel times vary this much
SPREAD_MIN_S = 60.0
MAX_CANDIDATES = 3
TRUCK_COLOURS = ("yellow", "yellowgreen")  # 黄牌 (and new-energy trucks)


@dataclass(frozen=True)
class Probe:
    """Where and when to look: one checkpoint camera, a time window and the expected time."""

    camera_id: str
    site_id: str
    expected_us: int
    lo_us: int
    hi_us: int


@dataclass(frozen=True)
class Candidate:
    plate: str
    camera_id: str
    site_id: str
    ts_us: int
    z: float  # |time - expected| / spread: 0 is a perfect fit, 1 the edge of the window


def upstream_probe(site: Site, ts_us: int, registry: Registry) -> Probe | None:
    """The nearest checkpoint before ``site`` on its road, and when the truck passed it."""
    sign = 1.0 if site.direction == "up" else -1.0
    before = [
        c
        for c in registry.checkpoints
        if c.road == site.road and (site.km - c.km) * sign > 0 and c.bypass_of is None
    ]
    if not before:
        return None
    checkpoint = min(before, key=lambda c: abs(site.km - c.km))
    road = registry.roads.get(site.road)
    speed_ms = (road.truck_speed_kmh if road else 60.0) / 3.6
    travel_s = abs(site.km - checkpoint.km) * 1000.0 / speed_ms
    spread_s = max(SPREAD_SHARE * travel_s, SPREAD_MIN_S)
    expected = ts_us - int(travel_s * US)
    cameras = [c.id for c in registry.cameras_of_site(checkpoint.id)]
    if not cameras:
        return None
    return Probe(
        cameras[0],
        checkpoint.id,
        expected,
        expected - int(spread_s * US),
        expected + int(spread_s * US),
    )


def rank(
    probe: Probe,
    reads: list[tuple[str, int, str]],
    seen_at_site: set[str],
) -> list[Candidate]:
    """Candidates from the checkpoint's reads ``(plate, ts_us, colour)`` in the probe's window,
    without the plates read at the weigh site itself, best first (one entry per plate)."""
    half = (probe.hi_us - probe.lo_us) / 2
    best: dict[str, Candidate] = {}
    for plate, ts, colour in reads:
        if not probe.lo_us <= ts <= probe.hi_us or plate in seen_at_site:
            continue
        if colour not in TRUCK_COLOURS:
            continue
        z = abs(ts - probe.expected_us) / half
        if plate not in best or z < best[plate].z:
            best[plate] = Candidate(plate, probe.camera_id, probe.site_id, ts, round(z, 3))
    return sorted(best.values(), key=lambda c: (c.z, c.plate))[:MAX_CANDIDATES]
