"""The 黑名单 (vehicles with unhandled cases) in Redis, kept from the ``blacklist.updates`` topic:
the set of plates the alert stage checks (``zc:blacklist``) and, per plate, why and since when
(``zc:blacklist:info``), shown with the alert. Updates of one plate share a partition (key:
plate), so they apply in the order they were sent; applying one twice changes nothing."""

from __future__ import annotations

from typing import Any

import orjson

from schemas.plate_grammar import normalise, plate_format
from sinks import constants as K

ACTIONS = ("add", "remove")


def update_problem(update: dict[str, Any]) -> tuple[str, str] | None:
    """Why an update cannot be applied (reason code, message), or None."""
    if update["action"] not in ACTIONS:
        return "bad_action", f"action {update['action']!r} is not one of {ACTIONS}"
    plate = normalise(update["plate"])
    if not plate or plate_format(plate) is None:
        return "bad_plate", f"{len(update['plate'])}-character text is not a valid plate"
    return None


async def apply_updates(client: Any, updates: list[dict[str, Any]]) -> None:
    """Apply valid updates in order, in one transaction."""
    if not updates:
        return
    async with client.pipeline(transaction=True) as pipe:
        for u in updates:
            plate = normalise(u["plate"])
            if u["action"] == "add":
                pipe.sadd(K.BLACKLIST_KEY, plate)
                info = {k: u[k] for k in ("reason", "case_ref", "ts_us", "source")}
                pipe.hset(K.BLACKLIST_INFO_KEY, plate, orjson.dumps(info))
            else:
                pipe.srem(K.BLACKLIST_KEY, plate)
                pipe.hdel(K.BLACKLIST_INFO_KEY, plate)
        await pipe.execute()


# KEYS: the 黑名单 set; ARGV[1]: plates joined by newlines. Returns the listed ones: one
# argument in and a few out, however many plates a batch has (a reply per plate, or an argument
# per plate, costs the worker more than Redis' lookups).
LISTED = """
local out = {}
for plate in string.gmatch(ARGV[1], '[^\\n]+') do
  if redis.call('SISMEMBER', KEYS[1], plate) == 1 then
    table.insert(out, plate)
  end
end
return out
"""


async def listed(client: Any, plates: list[str]) -> set[str]:
    """Which of ``plates`` (canonical) are on the list."""
    if not plates:
        return set()
    hits = await client.register_script(LISTED)(keys=[K.BLACKLIST_KEY], args=["\n".join(plates)])
    return {h.decode() for h in hits}
