"""Per-plate sightings (trajectories): every camera read of a plate — weigh-site front and rear
cameras and checkpoint cameras — kept for a retention window, for the trajectory questions of
the alert stage (likely plate of an unidentified weighing, clone plates, bypass routes).

One sorted set per normalised plate, scored by capture time; members carry the camera, site and
read id. Writes are idempotent (a redelivered read is the same member) and trimmed to the
retention window as they happen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernels.plate_grammar import normalise

SIGHTINGS_KEY = "zc:sightings:{plate}"
MIN_CONFIDENCE = 0.5  # reads less sure than this say too little about where a plate was

# ARGV: retention_us, ttl_s, then per read: key, ts_us, member
WRITE_SIGHTINGS = """
local retention, ttl = tonumber(ARGV[1]), ARGV[2]
for i = 3, #ARGV, 3 do
  local key, ts = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('ZADD', key, ts, ARGV[i + 2])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (ts - retention))
  redis.call('EXPIRE', key, ttl)
end
return (#ARGV - 2) / 3
"""


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
        (str(read["ts_us"]), read["camera_id"], read["site_id"], read["read_id"],
         f"{read['confidence']:.3f}")
    )


def parse_member(plate: str, member: bytes | str) -> Sighting:
    text = member.decode() if isinstance(member, bytes) else member
    ts, camera, site, read_id, conf = text.split("|")
    return Sighting(plate, int(ts), camera, site, read_id, float(conf))


def sighting_args(reads: list[dict[str, Any]], retention_s: float) -> list[Any]:
    args: list[Any] = [int(retention_s * 1e6), int(retention_s) + 3600]
    for read in reads:
        plate = normalise(read["plate"])
        if plate and read["confidence"] >= MIN_CONFIDENCE:
            args += [SIGHTINGS_KEY.format(plate=plate), read["ts_us"], member_of(read)]
    return args


class SightingSink:
    def __init__(self, client: Any, retention_s: float):
        self.retention_s = retention_s
        self._write = client.register_script(WRITE_SIGHTINGS)
        self.client = client

    async def write(self, reads: list[dict[str, Any]]) -> int:
        args = sighting_args(reads, self.retention_s)
        if len(args) == 2:
            return 0
        return int(await self._write(args=args))

    async def of(self, plate: str, since_us: int = 0) -> list[Sighting]:
        """Sightings of a plate since ``since_us``, oldest first."""
        key = SIGHTINGS_KEY.format(plate=normalise(plate))
        members = await self.client.zrangebyscore(key, since_us, "+inf")
        return [parse_member(normalise(plate), m) for m in members]
