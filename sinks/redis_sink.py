"""Verdicts into Redis, one atomic script call per batch: the verdict by passage_id with a
retention TTL, the live stream for dashboards, the per-plate history, the KPI counters, and the
batch's camera reads as plate sightings (``sinks.sightings``).

Idempotent: the verdict key is written with NX, and only a passage seen for the first time adds
to the stream, the history and the counters, all inside the same script. A passage decided again
after a restart (its inputs redelivered) keeps its first verdict and changes nothing; a worker
killed mid-batch either wrote all of a verdict's effects or none. The script builds its keys
itself, so it needs a standalone Redis (or one hash slot), not Redis Cluster.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from sinks import constants as K
from sinks.kpi import increments_of
from sinks.sightings import sighting_args

log = logging.getLogger(__name__)

# ARGV: ttl, kpi_ttl, stream, maxlen, sighting retention (µs), sighting ttl, n counters,
# n verdicts, then n counters "key<TAB>field", then per verdict: verdict key, body, plate history
# key ('' if no plate), passage_id, ts_us, counter indices "1,5"; then per sighting: key, ts, member
WRITE_BATCH = """
local ttl, kpi_ttl, stream, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local retention, sight_ttl = tonumber(ARGV[5]), ARGV[6]
local n, nv = tonumber(ARGV[7]), tonumber(ARGV[8])
local totals = {}
local new = 0
local first = 9 + n
local i = first
while i < first + 6 * nv do
  if redis.call('SET', ARGV[i], ARGV[i + 1], 'NX', 'EX', ttl) then
    new = new + 1
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'verdict', ARGV[i + 1])
    if ARGV[i + 2] ~= '' then
      redis.call('ZADD', ARGV[i + 2], ARGV[i + 4], ARGV[i + 3])
      redis.call('EXPIRE', ARGV[i + 2], ttl)
    end
    for k in string.gmatch(ARGV[i + 5], '%d+') do
      k = tonumber(k)
      totals[k] = (totals[k] or 0) + 1
    end
  end
  i = i + 6
end
for k, count in pairs(totals) do
  local key, field = string.match(ARGV[8 + k], '^(.-)\t(.*)$')
  redis.call('HINCRBY', key, field, count)
  redis.call('EXPIRE', key, kpi_ttl)
end
while i <= #ARGV do
  local ts = tonumber(ARGV[i + 1])
  redis.call('ZADD', ARGV[i], ts, ARGV[i + 2])
  redis.call('ZREMRANGEBYSCORE', ARGV[i], '-inf', '(' .. (ts - retention))
  redis.call('EXPIRE', ARGV[i], sight_ttl)
  i = i + 3
end
return new
"""


def verdict_body(verdict: dict[str, Any]) -> bytes:
    """The JSON stored and streamed for a verdict (UTF-8, plates as characters)."""
    return orjson.dumps(verdict)


def write_args(
    verdicts: list[dict[str, Any]],
    reads: list[dict[str, Any]],
    ttl_s: int,
    sighting_retention_s: float,
) -> list[Any]:
    """The script's arguments for a batch: counters numbered once per batch."""
    numbers: dict[tuple[str, str], int] = {}
    per_verdict: list[Any] = []
    for v in verdicts:
        indices = [numbers.setdefault(pair, len(numbers) + 1) for pair in increments_of(v)]
        plate = v["plate_front"] or v["plate_rear"]
        per_verdict += [
            K.VERDICT_KEY.format(passage_id=v["passage_id"]),
            verdict_body(v),
            K.PLATE_HISTORY_KEY.format(plate=plate) if plate else "",
            v["passage_id"],
            v["ts_us"],
            ",".join(map(str, indices)),
        ]
    counters = [f"{key}\t{field}" for key, field in numbers]
    head = [
        ttl_s,
        K.KPI_TTL_S,
        K.VERDICT_STREAM,
        K.VERDICT_STREAM_MAXLEN,
        int(sighting_retention_s * 1e6),
        int(sighting_retention_s) + 3600,
        len(counters),
        len(verdicts),
    ]
    return head + counters + per_verdict + sighting_args(reads)


class VerdictSink:
    def __init__(
        self,
        client: aioredis.Redis | str,
        verdict_ttl_s: int,
        sighting_retention_s: float = 3 * 24 * 3600,
    ):
        self.client = aioredis.Redis.from_url(client) if isinstance(client, str) else client
        self.ttl_s = verdict_ttl_s
        self.sighting_retention_s = sighting_retention_s
        self._write = self.client.register_script(WRITE_BATCH)

    async def write(self, verdicts: list[dict[str, Any]], reads: list[dict[str, Any]] = ()) -> int:
        """Write a batch of verdicts and the sightings of camera reads atomically; returns how
        many passages were new."""
        if not verdicts and not reads:
            return 0
        args = write_args(verdicts, list(reads), self.ttl_s, self.sighting_retention_s)
        return int(await self._write(args=args))

    async def write_heartbeats(self, heartbeats: list[dict[str, Any]]) -> None:
        from sinks.devices import write_heartbeats

        await write_heartbeats(self.client, heartbeats, self.ttl_s)

    async def mark_ready(self, partitions: int) -> None:
        """Say that this worker has its partitions (and since when, for the benchmarks)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(K.WORKER_READY_KEY, mapping={"partitions": partitions, "ts": time.time()})
            pipe.expire(K.WORKER_READY_KEY, 3600)
            await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()
