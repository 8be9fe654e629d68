"""Verdicts into Redis, one atomic script call per batch: the verdict by passage_id with a
retention TTL, the live stream for dashboards, the per-plate history, the KPI counters, and the
batch's camera reads as plate sightings (``sinks.sightings``).

With the verdicts go the evidence records of the enforceable ones (``sinks.evidence``), appended
to their site's chain only if the passage has no record yet (a mark per passage) and the chain's
head is the one the record was sealed after — a record that cannot be linked is reported by
passage, to be sealed again on the current head (``append_evidence``); and each site's match
progress (``streams.matching``: what has been decided), so that after a crash the worker knows
which redelivered inputs are already decided.

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
import redis.exceptions as redis_errors

from sinks import constants as K
from sinks.evidence import HEADS_KEY, Link
from sinks.kpi import increments_of
from sinks.order_sink import WRITE_ORDER_LUA, order_args
from sinks.scripts import Script, lua_key
from sinks.seam import NOTHING_WRITTEN, RoundResults, Written
from sinks.sightings import sighting_args

log = logging.getLogger(__name__)

# One evidence record into its site's chain. ARGV[i ..] are its ``link_args``: passage_id, site
# id, expected head, new head, record, the passage's evidence mark. Appended only if the passage
# has no record yet and the chain's head (in ``heads``) is still the one it was sealed after;
# a record that is not appended breaks the site for the rest of the call (the records sealed
# after it no longer link), and one whose passage has no record yet is added to ``lost`` (to be
# sealed again on the current head). Returns 1 when appended.
LINK_ARGS = 6
LINK_EVIDENCE_LUA = f"""
local LINK_ARGS = {LINK_ARGS}
local function link_evidence(heads, i, ttl, broken, lost)
  local pid, site = ARGV[i], ARGV[i + 1]
  if redis.call('EXISTS', ARGV[i + 5]) == 1 then
    broken[site] = true
    return 0
  end
  if not broken[site] and (redis.call('HGET', heads, site) or '') == ARGV[i + 2] then
    local id = redis.call(
      'XADD', {lua_key(K.EVIDENCE_CHAIN_KEY, site_id="site")}, '*', 'record', ARGV[i + 4])
    redis.call('HSET', heads, site, ARGV[i + 3])
    redis.call('SET', ARGV[i + 5], ARGV[i + 3] .. ' ' .. id, 'EX', ttl)
    return 1
  end
  broken[site] = true
  table.insert(lost, pid)
  return 0
end
"""

# KEYS: evidence heads hash; ARGV: ttl, then per record its ``link_args``. Returns {records
# appended, {passage ids whose record could not be linked}}.
APPEND_EVIDENCE = (
    LINK_EVIDENCE_LUA
    + """
local broken, lost, appended = {}, {}, 0
for i = 2, #ARGV, LINK_ARGS do
  appended = appended + link_evidence(KEYS[1], i, ARGV[1], broken, lost)
end
return {appended, lost}
"""
)


# ARGV: ttl, kpi_ttl, stream, maxlen, sighting retention (µs), sighting ttl, n counters,
# n verdicts, n progress entries, n evidence links, n alerts, then n counters "key<TAB>field",
# then per verdict: verdict key, body, plate history key ('' if no plate), passage_id, ts_us,
# counter indices "1,5", cases key ('' unless an enforceable over-limit case); then per progress
# entry: site id, JSON; then per evidence link its ``link_args``; then per alert: passage_id,
# alert key, body; then per order its ``order_args`` (``sinks.order_sink``); then per
# sighting: key, ts, member.
# KEYS: match progress hash, evidence heads hash. Returns {new verdicts, evidence records
# appended, {passage ids whose record could not be linked}, {ids of new alerts}, {order keys}}.
WRITE_BATCH = (
    LINK_EVIDENCE_LUA
    + WRITE_ORDER_LUA
    + f"""
local ttl, kpi_ttl, stream, maxlen = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local retention, sight_ttl = tonumber(ARGV[5]), ARGV[6]
local n, nv, np = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local ne, na, no = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
local totals, isnew, broken, alerted, isalerted, ordered = {{}}, {{}}, {{}}, {{}}, {{}}, {{}}
local new, appended, lost = 0, 0, {{}}
local first = 13 + n
local i = first
while i < first + 7 * nv do
  if redis.call('SET', ARGV[i], ARGV[i + 1], 'NX', 'EX', ttl) then
    new = new + 1
    isnew[ARGV[i + 3]] = true
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'verdict', ARGV[i + 1])
    if ARGV[i + 2] ~= '' then
      redis.call('ZADD', ARGV[i + 2], ARGV[i + 4], ARGV[i + 3])
      redis.call('EXPIRE', ARGV[i + 2], ttl)
    end
    for k in string.gmatch(ARGV[i + 5], '%d+') do
      k = tonumber(k)
      totals[k] = (totals[k] or 0) + 1
    end
    if ARGV[i + 6] ~= '' then
      redis.call('ZADD', ARGV[i + 6], ARGV[i + 4], ARGV[i + 3])
      redis.call('EXPIRE', ARGV[i + 6], kpi_ttl)
    end
  end
  i = i + 7
end
for k, count in pairs(totals) do
  local key, field = string.match(ARGV[12 + k], '^(.-)\t(.*)$')
  redis.call('HINCRBY', key, field, count)
  redis.call('EXPIRE', key, kpi_ttl)
end
for _ = 1, np do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for _ = 1, ne do
  appended = appended + link_evidence(KEYS[2], i, ttl, broken, lost)
  i = i + LINK_ARGS
end
for _ = 1, na do
  if isnew[ARGV[i]] and redis.call('SET', ARGV[i + 1], ARGV[i + 2], 'NX', 'EX', ttl) then
    redis.call('XADD', {lua_key(K.ALERT_STREAM)}, 'MAXLEN', '~', maxlen, '*', 'alert', ARGV[i + 2])
    table.insert(alerted, ARGV[i + 1])
    isalerted[ARGV[i + 1]] = true
  end
  i = i + 3
end
for _ = 1, no do  -- one open dispatch per vehicle
  if isalerted[ARGV[i]] and redis.call('SET', ARGV[i + 1], ARGV[i + 2], 'NX', 'EX', ttl) then
    write_order(i, ttl, maxlen, kpi_ttl, ordered)
  end
  i = i + 8
end
while i <= #ARGV do
  local ts = tonumber(ARGV[i + 1])
  redis.call('ZADD', ARGV[i], ts, ARGV[i + 2])
  redis.call('ZREMRANGEBYSCORE', ARGV[i], '-inf', '(' .. (ts - retention))
  redis.call('EXPIRE', ARGV[i], sight_ttl)
  i = i + 3
end
return {{new, appended, lost, alerted, ordered}}
"""
)


# KEYS: one per record; ARGV: ttl, stream, maxlen, then the bodies. A record whose key is new is
# stored and added to the stream; returns 1/0 per record.
WRITE_ONCE = """
local out = {}
for j = 1, #KEYS do
  if redis.call('SET', KEYS[j], ARGV[3 + j], 'NX', 'EX', ARGV[1]) then
    redis.call('XADD', ARGV[2], 'MAXLEN', '~', ARGV[3], '*', 'alert', ARGV[3 + j])
    out[j] = 1
  else
    out[j] = 0
  end
end
return out
"""


def verdict_body(verdict: dict[str, Any]) -> bytes:
    """The JSON stored and streamed for a verdict (UTF-8, plates as characters)."""
    return orjson.dumps(verdict)


def write_args(
    verdicts: list[dict[str, Any]],
    reads: list[dict[str, Any]],
    ttl_s: int,
    sighting_retention_s: float,
    progress: dict[str, Any] | None = None,
    evidence: list[Link] = (),
    alerts: list[dict[str, Any]] = (),
    orders: list[dict[str, Any]] = (),
    count: bool = True,
) -> list[Any]:
    """The script's arguments for a batch: counters numbered once per batch (none when the
    verdicts are counted elsewhere: ``count=False``)."""
    numbers: dict[tuple[str, str], int] = {}
    per_verdict: list[Any] = []
    for v in verdicts:
        pairs = increments_of(v) if count else []
        indices = [numbers.setdefault(pair, len(numbers) + 1) for pair in pairs]
        plate = v["plate_front"] or v["plate_rear"]
        per_verdict += [
            K.VERDICT_KEY.format(passage_id=v["passage_id"]),
            verdict_body(v),
            K.PLATE_HISTORY_KEY.format(plate=plate) if plate else "",
            v["passage_id"],
            v["ts_us"],
            ",".join(map(str, indices)),
            K.CASES_KEY.format(plate=plate) if plate and is_case(v) else "",
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
        len(progress or {}),
        len(evidence),
        len(alerts),
        len(orders),
    ]
    sites = [x for site, p in (progress or {}).items() for x in (site, orjson.dumps(p))]
    links = [x for e in evidence for x in link_args(e)]
    alerted = [
        x
        for a in alerts
        for x in (a["passage_id"], K.ALERT_KEY.format(alert_id=a["alert_id"]), orjson.dumps(a))
    ]
    ordered = [x for o in orders for x in order_args(o)]
    return head + counters + per_verdict + sites + links + alerted + ordered + sighting_args(reads)


def link_args(link: Link) -> tuple[Any, ...]:
    """What ``LINK_EVIDENCE_LUA`` reads for one record."""
    return (
        link.passage_id,
        link.site_id,
        link.expected_head,
        link.new_head,
        link.line,
        K.EVIDENCE_MARK_KEY.format(passage_id=link.passage_id),
    )


def is_case(verdict: dict[str, Any]) -> bool:
    """An enforceable over-limit verdict: a case (案件) that counts toward repeat offending."""
    return verdict["verdict"] == "overlimit" and verdict["enforceable"]


# what tells that Redis is down rather than wrong: a write is retried until it is back
REDIS_DOWN = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    redis_errors.BusyLoadingError,
)


class VerdictSink:
    """The live cache's side of a round (``sinks.seam.RoundSink``) and the reads the alert
    rules make of it."""

    name = "verdicts"
    store = "Redis"
    unavailable = REDIS_DOWN

    def __init__(
        self,
        client: aioredis.Redis | str,
        verdict_ttl_s: int,
        sighting_retention_s: float = 3 * 24 * 3600,
    ):
        self.client = aioredis.Redis.from_url(client) if isinstance(client, str) else client
        self.ttl_s = verdict_ttl_s
        self.sighting_retention_s = sighting_retention_s
        self._write = Script(self.client, WRITE_BATCH)
        self._once = self.client.register_script(WRITE_ONCE)
        self._append = Script(self.client, APPEND_EVIDENCE)

    async def write(
        self,
        verdicts: list[dict[str, Any]],
        reads: list[dict[str, Any]] = (),
        progress: dict[str, Any] | None = None,
        evidence: list[Link] = (),
        alerts: list[dict[str, Any]] = (),
        orders: list[dict[str, Any]] = (),
        count: bool = True,
    ) -> Written:
        """Write a batch of verdicts with their evidence records and alerts, the sites' match
        progress and the sightings of camera reads, atomically; ``count=False``: the verdicts'
        KPI counters were written already (gateway batches count as a whole)."""
        if not verdicts and not reads and not progress:
            return NOTHING_WRITTEN
        args = write_args(
            verdicts,
            list(reads),
            self.ttl_s,
            self.sighting_retention_s,
            progress,
            list(evidence),
            list(alerts),
            list(orders),
            count,
        )
        new, appended, lost, alerted, ordered = await self._write(
            keys=[K.MATCH_PROGRESS_KEY, HEADS_KEY], args=args
        )
        a_prefix = len(K.ALERT_KEY.format(alert_id=""))
        o_prefix = len(K.ORDER_KEY.format(order_id=""))
        return Written(
            int(new),
            int(appended),
            [p.decode() for p in lost],
            [a[a_prefix:].decode() for a in alerted],
            [o[o_prefix:].decode() for o in ordered],
        )

    async def write_round(self, results: RoundResults) -> Written:
        return await self.write(
            results.verdicts,
            results.reads,
            results.progress,
            results.evidence,
            results.alerts,
            results.orders,
            count=results.count,
        )

    async def verdicts_of(self, passage_ids: list[str]) -> list[dict[str, Any]]:
        """The verdicts kept for these passages (their first writes), in the order asked; a
        passage with none kept (never decided, or expired) is left out."""
        if not passage_ids:
            return []
        bodies = await self.client.mget([K.VERDICT_KEY.format(passage_id=i) for i in passage_ids])
        return [orjson.loads(b) for b in bodies if b]

    async def write_alerts_once(
        self,
        alerts: list[dict[str, Any]],
        key_format: str = K.ALERT_KEY,
        stream: str = K.ALERT_STREAM,
    ) -> list[str]:
        """Alerts raised without a verdict (trajectories; operators' device alerts with
        ``K.OPS_ALERT_KEY``), each once per id; the ids written for the first time."""
        if not alerts:
            return []
        keys = [key_format.format(alert_id=a["alert_id"]) for a in alerts]
        bodies = [orjson.dumps(a) for a in alerts]
        new = await self._once(
            keys=keys, args=[self.ttl_s, stream, K.VERDICT_STREAM_MAXLEN, *bodies]
        )
        return [a["alert_id"] for a, fresh in zip(alerts, new, strict=True) if fresh]

    async def weighings_of(
        self,
        probes: list[tuple[str, int, int]],
        known: dict[str, dict[str, Any]] | None = None,
    ) -> dict[str, list[dict[str, Any]]]:
        """The verdicts of each plate weighed between ``lo`` and ``hi`` µs, per (plate, lo, hi):
        two round trips for a batch (plate histories, then the verdicts), the second only for
        verdicts not in ``known`` (by passage id: the batch just written, usually all)."""
        if not probes:
            return {}
        async with self.client.pipeline(transaction=False) as pipe:
            for plate, lo, hi in probes:
                pipe.zrangebyscore(K.PLATE_HISTORY_KEY.format(plate=plate), lo, hi)
            found_ids = [[i.decode() for i in found] for found in await pipe.execute()]
        verdicts = dict(known or {})
        wanted = sorted({i for found in found_ids for i in found} - verdicts.keys())
        if wanted:
            bodies = await self.client.mget([K.VERDICT_KEY.format(passage_id=i) for i in wanted])
            verdicts.update((i, orjson.loads(b)) for i, b in zip(wanted, bodies, strict=True) if b)
        return {
            plate: [verdicts[i] for i in found if i in verdicts]
            for (plate, _, _), found in zip(probes, found_ids, strict=True)
        }

    async def count_clone_conflict(
        self, plate: str, passage_id: str, ts_us: int, since_us: int
    ) -> int:
        """Record an impossible journey of a plate; how many it has had since ``since_us``."""
        key = K.CLONE_CONFLICTS_KEY.format(plate=plate)
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zadd(key, {passage_id: ts_us})
            pipe.expire(key, K.KPI_TTL_S)
            pipe.zcount(key, since_us, "+inf")
            *_, count = await pipe.execute()
        return int(count)

    async def alert_context(
        self, verdicts: list[dict[str, Any]], since_us: int
    ) -> tuple[set[str], dict[str, int]]:
        """For the plates of ``verdicts``: which are blacklisted (黑名单), and how many cases
        each has had since ``since_us`` (for the repeat-offender rule). One round trip."""
        plates = sorted({v["plate_front"] or v["plate_rear"] for v in verdicts} - {""})
        if not plates:
            return set(), {}
        cased = sorted({v["plate_front"] or v["plate_rear"] for v in verdicts if is_case(v)} - {""})
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.smismember(K.BLACKLIST_KEY, plates)
            for plate in cased:
                pipe.zcount(K.CASES_KEY.format(plate=plate), since_us, "+inf")
            listed, *counts = await pipe.execute()
        return (
            {p for p, hit in zip(plates, listed, strict=True) if hit},
            dict(zip(cased, map(int, counts), strict=True)),
        )

    async def append_evidence(self, evidence: list[Link]) -> tuple[int, list[str]]:
        """Link records sealed again after their chain moved (``EvidenceChain.reseal``): how many
        were appended, and the passages whose record still could not be linked."""
        if not evidence:
            return 0, []
        args: list[Any] = [self.ttl_s, *(x for e in evidence for x in link_args(e))]
        appended, lost = await self._append(keys=[HEADS_KEY], args=args)
        return int(appended), [p.decode() for p in lost]

    async def evidence_heads(self) -> dict[str, str]:
        """Every site's evidence chain head, ``"<seq> <hash>"``."""
        raw = await self.client.hgetall(HEADS_KEY)
        return {site.decode(): head.decode() for site, head in raw.items()}

    async def match_progress(self) -> dict[str, Any]:
        """Every site's match progress, as written with its verdicts."""
        raw = await self.client.hgetall(K.MATCH_PROGRESS_KEY)
        return {site.decode(): orjson.loads(p) for site, p in raw.items()}

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
