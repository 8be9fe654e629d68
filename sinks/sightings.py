"""Per-plate sightings (trajectories): every camera read of a plate — weigh-site front and rear
cameras and checkpoint cameras — kept for a retention window, for the trajectory questions of
the alert stage (likely plate of an unidentified weighing, clone plates, bypass routes).

One sorted set per normalised plate, scored by capture time; members carry the camera, site and
read id. Written with the verdicts, in the sink's batch script: idempotent (a redelivered read
is the same member) and trimmed to the retention window as they happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernels.plate_grammar import normalise

SIGHTINGS_KEY = "zc:sightings:{plate}"
MIN_CONFIDENCE = 0.5  # reads less sure than this say too little about where a plate was


@dataclass(frozen=True)
class Sighting:
    plate: str
    ts_us: int
    camera_id: str
    site_id: str
    read_id: str
    confidence: float


def member_of(read: dict[str, Any]) -> str:
    return "|".join(
        (
            str(read["ts_us"]),
            read["camera_id"],
            read["site_id"],
            read["read_id"],
            f"{read['confidence']:.3f}",
        )
    )


def parse_member(plate: str, member: bytes | str) -> Sighting:
    text = member.decode() if isinstance(member, bytes) else member
    ts, camera, site, read_id, conf = text.split("|")
    return Sighting(plate, int(ts), camera, site, read_id, float(conf))


def sighting_args(reads: list[dict[str, Any]]) -> list[Any]:
    """(key, ts, member) triples for the reads that say where a plate was."""
    args: list[Any] = []
    for read in reads:
        plate = normalise(read["plate"])
        if plate and read["confidence"] >= MIN_CONFIDENCE:
            args += [SIGHTINGS_KEY.format(plate=plate), read["ts_us"], member_of(read)]
    return args


class Sightings:
    """Reads the trajectories the sink writes (``sinks.redis_sink``)."""

    def __init__(self, client: Any):
        self.client = client

    async def of(self, plate: str, since_us: int = 0) -> list[Sighting]:
        """Sightings of a plate since ``since_us``, oldest first."""
        key = SIGHTINGS_KEY.format(plate=normalise(plate))
        members = await self.client.zrangebyscore(key, since_us, "+inf")
        return [parse_member(normalise(plate), m) for m in members]
