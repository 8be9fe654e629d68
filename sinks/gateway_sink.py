"""Batched gateway mode into Redis: one script call per ``VehicleBatch``, whatever its size.

The batch's KPI increments (aggregated by ``streams.gateway.counters``) and a one-line summary
on the dashboards' batch stream, once per ``batch_id``: a batch delivered again (a restart, a
gateway that resends) changes nothing. The verdicts of the batch travel as one ``VerdictBatch``
on Kafka; the vehicles that need one (over the limit, 黑名单) are written one by one with the
per-vehicle sink (``sinks.redis_sink``, without counting them again).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sinks import constants as K
from sinks.scripts import Script

# ARGV: ttl, kpi ttl, stream, maxlen, then per batch: seen key, summary, n counters, then n
# pairs "key<TAB>field", increment. Returns per batch 1 when it was new, 0 when written before.
WRITE_GATEWAY_BATCHES = """
local ttl, kpi_ttl, stream, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local out, touched = {}, {}
local i = 5
while i <= #ARGV do
  local n = tonumber(ARGV[i + 2])
  local first = i + 3
  i = first + 2 * n
  if redis.call('SET', ARGV[first - 3], '1', 'NX', 'EX', ttl) then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'batch', ARGV[first - 2])
    for j = first, i - 1, 2 do
      local key, field = string.match(ARGV[j], '^(.-)\t(.*)$')
      redis.call('HINCRBY', key, field, ARGV[j + 1])
      touched[key] = true
    end
    table.insert(out, 1)
  else
    table.insert(out, 0)
  end
end
for key in pairs(touched) do
  redis.call('EXPIRE', key, kpi_ttl)
end
return out
"""


@dataclass(frozen=True)
class BatchCount:
    batch_id: str
    summary: bytes  # JSON line for the dashboards' batch stream
    counters: Counter[tuple[str, str]]  # (KPI hash, counter) -> increment


class GatewaySink:
    def __init__(self, client: Any, ttl_s: int):
        self.client = client
        self.ttl_s = ttl_s
        self._write = Script(client, WRITE_GATEWAY_BATCHES)

    async def write(self, batches: list[BatchCount]) -> list[bool]:
        """Count each batch once (one script call for all); per batch, whether it was new."""
        if not batches:
            return []
        args: list[Any] = [self.ttl_s, K.KPI_TTL_S, K.GATEWAY_BATCH_STREAM, K.VERDICT_STREAM_MAXLEN]
        for b in batches:
            args += [
                K.GATEWAY_BATCH_SEEN_KEY.format(batch_id=b.batch_id),
                b.summary,
                len(b.counters),
            ]
            for (key, field), n in b.counters.items():
                args += [f"{key}\t{field}", n]
        return [bool(x) for x in await self._write(args=args)]
