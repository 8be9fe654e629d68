"""Dispatch orders in Redis after they are written with their alerts (``sinks.redis_sink``): the
changes of ``streams.order_life`` applied atomically, each only if the order still has the status
it was decided on (compare-and-set), with its effects — the order's new body in the unit's and
the command centre's streams (what the pages push), the unit's state, the dispatch KPIs and the
WIM-vs-static drift — and, for an escalation, the successor order. A feedback id is applied once.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from schemas.orders import LIVE, Change, UnitState
from sinks import constants as K
from sinks.kpi import day_of
from sinks.scripts import lua_key

# the keys every order change touches, as Lua expressions built from ``sinks.constants``
ORDERS = lua_key(K.ORDER_STREAM)
ACTIVE = lua_key(K.ACTIVE_ORDERS_KEY)
UNITS = lua_key(K.UNITS_KEY)
DRIFT = lua_key(K.DRIFT_KEY)

# KEYS[1] the order. ARGV: expected status, new body, once key ('' none), ttl, stream maxlen,
# unit stream, closes ('1' or ''), vehicle's open-dispatch key, unit id ('' none), unit state,
# KPI key, KPI ttl, drift device ('' none), drift %, successor key ('' none), successor body,
# successor's unit stream, successor ts, n counters, then (counter, amount) pairs.
# Returns 'ok', 'missing', 'duplicate' or 'status:<what the order is now>'.
CHANGE_ORDER = f"""
local cur = redis.call('GET', KEYS[1])
if not cur then return 'missing' end
local status = cjson.decode(cur)['status']
if status ~= ARGV[1] then return 'status:' .. status end
if ARGV[3] ~= '' and not redis.call('SET', ARGV[3], '1', 'NX', 'EX', ARGV[4]) then
  return 'duplicate'
end
local maxlen = ARGV[5]
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
redis.call('XADD', ARGV[6], 'MAXLEN', '~', maxlen, '*', 'update', ARGV[2])
redis.call('XADD', {ORDERS}, 'MAXLEN', '~', maxlen, '*', 'update', ARGV[2])
if ARGV[7] == '1' or ARGV[15] ~= '' then
  redis.call('ZREM', {ACTIVE}, KEYS[1])
end
if ARGV[7] == '1' and redis.call('GET', ARGV[8]) == KEYS[1] then
  redis.call('DEL', ARGV[8])
end
if ARGV[9] ~= '' then
  redis.call('HSET', {UNITS}, ARGV[9], ARGV[10])
end
local n = tonumber(ARGV[19])
for j = 0, n - 1 do
  redis.call('HINCRBYFLOAT', ARGV[11], ARGV[20 + 2 * j], ARGV[21 + 2 * j])
end
if n > 0 then redis.call('EXPIRE', ARGV[11], ARGV[12]) end
if ARGV[13] ~= '' then
  local pct = tonumber(ARGV[14])
  redis.call('HINCRBYFLOAT', {DRIFT}, ARGV[13] .. ':n', 1)
  redis.call('HINCRBYFLOAT', {DRIFT}, ARGV[13] .. ':sum', pct)
  redis.call('HINCRBYFLOAT', {DRIFT}, ARGV[13] .. ':sumsq', pct * pct)
end
if ARGV[15] ~= '' then
  redis.call('SET', ARGV[15], ARGV[16], 'EX', ARGV[4])
  redis.call('XADD', ARGV[17], 'MAXLEN', '~', maxlen, '*', 'order', ARGV[16])
  redis.call('XADD', {ORDERS}, 'MAXLEN', '~', maxlen, '*', 'order', ARGV[16])
  redis.call('ZADD', {ACTIVE}, ARGV[18], ARGV[15])
  if redis.call('GET', ARGV[8]) == KEYS[1] then
    redis.call('SET', ARGV[8], ARGV[15], 'KEEPTTL')
  end
end
return 'ok'
"""


# A new order's effects in Lua, shared by the verdict batch (``sinks.redis_sink.WRITE_BATCH``)
# and provisional orders: ARGV[i ..] are its ``order_args`` (alert key, vehicle's open-dispatch
# key, order key, unit's order stream, body, ts_us, dispatch KPI key, counter); the caller has
# set the open-dispatch key. Adds the order key to ``ordered``.
WRITE_ORDER_LUA = f"""
local function write_order(i, ttl, maxlen, kpi_ttl, ordered)
  redis.call('SET', ARGV[i + 2], ARGV[i + 4], 'EX', ttl)
  redis.call('XADD', ARGV[i + 3], 'MAXLEN', '~', maxlen, '*', 'order', ARGV[i + 4])
  redis.call('XADD', {ORDERS}, 'MAXLEN', '~', maxlen, '*', 'order', ARGV[i + 4])
  redis.call('ZADD', {ACTIVE}, ARGV[i + 5], ARGV[i + 2])
  redis.call('HINCRBY', ARGV[i + 6], ARGV[i + 7], 1)
  redis.call('EXPIRE', ARGV[i + 6], kpi_ttl)
  table.insert(ordered, ARGV[i + 2])
end
"""


def order_args(o: dict[str, Any]) -> list[Any]:
    """The arguments ``WRITE_ORDER_LUA`` reads for order ``o``."""
    return [
        K.ALERT_KEY.format(alert_id=o["alert_id"]),
        K.OPEN_DISPATCH_KEY.format(vehicle=o["plate"] or o["alert_id"]),
        K.ORDER_KEY.format(order_id=o["order_id"]),
        K.UNIT_ORDERS_KEY.format(unit_id=o["unit_id"]),
        orjson.dumps(o),
        o["ts_us"],
        K.DISPATCH_KPI_KEY.format(day=day_of(o["ts_us"])),
        o["action"],
    ]


# Provisional orders (预判), written without their alert (the vehicle has no verdict yet), and
# like a verdict's orders only where that alert would be new (one per vehicle, reason and
# window) and the vehicle has no open order; none for a vehicle whose verdict is out already
# (redelivered after a restart). ARGV: ttl, stream maxlen, KPI ttl, then per order its
# ``order_args``, its verdict key and its foreseen key. Returns the order keys written.
ORDER_AHEAD = (
    WRITE_ORDER_LUA
    + """
local ttl, maxlen, kpi_ttl = ARGV[1], ARGV[2], ARGV[3]
local ordered = {}
for i = 4, #ARGV, 10 do
  if redis.call('EXISTS', ARGV[i], ARGV[i + 8]) == 0
      and redis.call('SET', ARGV[i + 1], ARGV[i + 2], 'NX', 'EX', ttl) then
    write_order(i, ttl, maxlen, kpi_ttl, ordered)
    redis.call('HINCRBY', ARGV[i + 6], 'provisional', 1)
    redis.call('SET', ARGV[i + 9], ARGV[i + 1], 'EX', ttl)
  end
end
return ordered
"""
)

# The live provisional orders of weighings. ARGV: their foreseen keys. Returns, per weighing
# that has one, its index (1-based) and the order's JSON (the vehicle's current order: an
# escalation's successor after an escalation).
FORESEEN_ORDERS = """
local out = {}
for i = 1, #ARGV do
  local open = redis.call('GET', ARGV[i])
  local id = open and redis.call('GET', open)
  local body = id and redis.call('GET', id)
  if body then
    table.insert(out, i)
    table.insert(out, body)
  end
end
return out
"""


def state_of(unit_id: str, raw: bytes | None) -> UnitState:
    s = orjson.loads(raw) if raw else {}
    return UnitState(unit_id, s.get("available", True), s.get("at"))


def order_key(order_id: str) -> str:
    return K.ORDER_KEY.format(order_id=order_id)


def change_args(change: Change, ttl_s: int, now_us: int, feedback_id: str | None) -> list[Any]:
    o, succ = change.order, change.successor
    counters = [x for name, amount in change.counters.items() for x in (name, amount)]
    device, pct = change.drift or ("", 0.0)
    return [
        change.expected_status,
        orjson.dumps(o),
        K.FEEDBACK_ONCE_KEY.format(feedback_id=feedback_id) if feedback_id else "",
        ttl_s,
        K.VERDICT_STREAM_MAXLEN,
        K.UNIT_ORDERS_KEY.format(unit_id=o["unit_id"]),
        "1" if change.closes else "",
        K.OPEN_DISPATCH_KEY.format(vehicle=o["plate"] or o["alert_id"]),
        o["unit_id"] if change.unit_state is not None else "",
        orjson.dumps(change.unit_state) if change.unit_state is not None else "",
        K.DISPATCH_KPI_KEY.format(day=day_of(now_us)),
        K.KPI_TTL_S,
        device,
        pct,
        order_key(succ["order_id"]) if succ else "",
        orjson.dumps(succ) if succ else "",
        K.UNIT_ORDERS_KEY.format(unit_id=succ["unit_id"]) if succ else "",
        succ["ts_us"] if succ else 0,
        len(change.counters),
        *counters,
    ]


class OrderSink:
    def __init__(self, client: aioredis.Redis, ttl_s: int):
        self.client = client
        self.ttl_s = ttl_s
        self._change = client.register_script(CHANGE_ORDER)
        self._ahead = client.register_script(ORDER_AHEAD)
        self._foreseen = client.register_script(FORESEEN_ORDERS)

    async def write_ahead(self, orders: list[dict[str, Any]]) -> list[str]:
        """Provisional orders (``streams.dispatch.order_for(provisional=True)``), each unless
        its vehicle has an open order; the ids written."""
        if not orders:
            return []
        args: list[Any] = [self.ttl_s, K.VERDICT_STREAM_MAXLEN, K.KPI_TTL_S]
        for o in orders:
            passage_id = o["vehicle"]["passage_id"]
            args += order_args(o)
            args += [
                K.VERDICT_KEY.format(passage_id=passage_id),
                K.FORESEEN_KEY.format(passage_id=passage_id),
            ]
        written = await self._ahead(args=args)
        prefix = len(order_key(""))
        return [w[prefix:].decode() for w in written]

    async def foreseen(self, passage_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The provisional orders of these weighings still live (passage id -> order)."""
        if not passage_ids:
            return {}
        keys = [K.FORESEEN_KEY.format(passage_id=p) for p in passage_ids]
        found = await self._foreseen(args=keys)
        out = {}
        for i, body in zip(found[::2], found[1::2], strict=True):
            order, passage_id = orjson.loads(body), passage_ids[int(i) - 1]
            if (
                order["status"] in LIVE
                and order.get("provisional")
                and order["vehicle"]["passage_id"] == passage_id
            ):
                out[passage_id] = order
        return out

    async def order(self, order_id: str) -> dict[str, Any] | None:
        raw = await self.client.get(order_key(order_id))
        return orjson.loads(raw) if raw else None

    async def apply(self, change: Change, now_us: int, feedback_id: str | None = None) -> str:
        """Write a change if the order still has ``change.expected_status``; what Redis said."""
        result = await self._change(
            keys=[order_key(change.order["order_id"])],
            args=change_args(change, self.ttl_s, now_us, feedback_id),
        )
        return result.decode() if isinstance(result, bytes) else str(result)

    async def active(self, ordered_before_us: float | str = "+inf") -> list[dict[str, Any]]:
        """Orders not yet closed (or escalated), oldest first."""
        keys = await self.client.zrangebyscore(K.ACTIVE_ORDERS_KEY, "-inf", ordered_before_us)
        if not keys:
            return []
        bodies = await self.client.mget(keys)
        return [orjson.loads(b) for b in bodies if b]

    async def unit_state(self, unit_id: str) -> UnitState:
        """Where a unit last said it was, and whether it is free."""
        return state_of(unit_id, await self.client.hget(K.UNITS_KEY, unit_id))

    async def unit_states(self) -> dict[str, UnitState]:
        """Every unit that has reported (``dispatch.feedback``); the others are at home, free."""
        raw = await self.client.hgetall(K.UNITS_KEY)
        return {u.decode(): state_of(u.decode(), s) for u, s in raw.items()}

    async def set_unit_state(self, unit_id: str, state: dict[str, Any], once: str) -> bool:
        """A unit's own status report; False if this report was applied before."""
        key = K.FEEDBACK_ONCE_KEY.format(feedback_id=once)
        if not await self.client.set(key, "1", nx=True, ex=self.ttl_s):
            return False
        await self.client.hset(K.UNITS_KEY, unit_id, orjson.dumps(state))
        return True
