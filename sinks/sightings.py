"""Per-plate sightings (trajectories): every camera read of a plate — weigh-site front and rear
cameras and checkpoint cameras — kept for a retention window, for the trajectory questions of
the alert stage (likely plate of an unidentified weighing, clone plates, bypass routes).

One sorted set per normalised plate, scored by capture time, members carrying the camera, site
and read id; and one per checkpoint camera, members carrying the plate and its colour. Written
with the verdicts, in the sink's batch script: idempotent (a redelivered read is the same
member) and trimmed to the retention window as they happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.plate_grammar import normalise
from sinks import constants as K

SIGHTINGS_KEY = K.SIGHTINGS_KEY
CAMERA_SIGHTINGS_KEY = K.CAMERA_SIGHTINGS_KEY
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
            if read["view"] == "checkpoint":
                key = CAMERA_SIGHTINGS_KEY.format(camera_id=read["camera_id"])
                args += [key, read["ts_us"], camera_member(plate, read)]
    return args


def camera_member(plate: str, read: dict[str, Any]) -> str:
    return "|".join((plate, str(read["ts_us"]), read["plate_color"], read["read_id"]))


def parse_camera_member(member: bytes | str) -> tuple[str, int, str]:
    """(plate, ts_us, colour) of a checkpoint camera's sighting."""
    plate, ts, colour, _ = (member.decode() if isinstance(member, bytes) else member).split("|")
    return plate, int(ts), colour


class Sightings:
    """Reads the trajectories the sink writes (``sinks.redis_sink``)."""

    def __init__(self, client: Any):
        self.client = client

    async def at_camera(self, camera_id: str, lo_us: int, hi_us: int) -> list[tuple[str, int, str]]:
        """(plate, ts_us, colour) read by a checkpoint camera between ``lo_us`` and ``hi_us``."""
        key = CAMERA_SIGHTINGS_KEY.format(camera_id=camera_id)
        return [parse_camera_member(m) for m in await self.client.zrangebyscore(key, lo_us, hi_us)]

    async def of(self, plate: str, since_us: int = 0) -> list[Sighting]:
        """Sightings of a plate since ``since_us``, oldest first."""
        key = SIGHTINGS_KEY.format(plate=normalise(plate))
        members = await self.client.zrangebyscore(key, since_us, "+inf")
        return [parse_member(normalise(plate), m) for m in members]

    async def sites_between(self, plate: str, lo_us: int, hi_us: int) -> set[str]:
        """The sites where ``plate`` was read between ``lo_us`` and ``hi_us``."""
        key = SIGHTINGS_KEY.format(plate=normalise(plate))
        members = await self.client.zrangebyscore(key, lo_us, hi_us)
        return {parse_member(plate, m).site_id for m in members}
