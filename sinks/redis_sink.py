"""Verdicts into Redis: by passage_id with a retention TTL, a live stream for dashboards, a
per-plate history and KPI counters per site/day and city/day. Writes are idempotent: a passage
decided twice (inputs redelivered after a restart) keeps its first verdict and adds nothing to
the stream, the history or the counters again."""

from __future__ import annotations

import json
import logging
from typing import Any

import redis.asyncio as aioredis

from sinks import constants as K
from sinks.kpi import aggregate

log = logging.getLogger(__name__)


class VerdictSink:
    def __init__(self, dsn: str, verdict_ttl_s: int):
        self.client = aioredis.Redis.from_url(dsn)
        self.ttl_s = verdict_ttl_s

    async def write(self, verdicts: list[dict[str, Any]]) -> int:
        """Write a batch in two pipelines; returns how many passages were new."""
        if not verdicts:
            return 0
        async with self.client.pipeline(transaction=False) as pipe:
            for v in verdicts:
                pipe.set(K.SEEN_KEY.format(passage_id=v["passage_id"]), 1, nx=True, ex=self.ttl_s)
            first = await pipe.execute()
        async with self.client.pipeline(transaction=False) as pipe:
            for v, is_new in zip(verdicts, first, strict=True):
                if not is_new:
                    continue  # decided again after a restart: the first verdict stands
                body = json.dumps(v, ensure_ascii=False)
                pipe.set(K.VERDICT_KEY.format(passage_id=v["passage_id"]), body, ex=self.ttl_s)
                pipe.xadd(K.VERDICT_STREAM, {"verdict": body}, maxlen=K.VERDICT_STREAM_MAXLEN,
                          approximate=True)
                plate = v["plate_front"] or v["plate_rear"]
                if plate:
                    key = K.PLATE_HISTORY_KEY.format(plate=plate)
                    pipe.zadd(key, {v["passage_id"]: v["ts_us"]})
                    pipe.expire(key, self.ttl_s)
            new = [v for v, is_new in zip(verdicts, first, strict=True) if is_new]
            for (scope, scope_id, day, name), n in aggregate(new).items():
                key = (K.KPI_SITE_DAY_KEY.format(site_id=scope_id, day=day) if scope == "site"
                       else K.KPI_CITY_DAY_KEY.format(day=day))
                pipe.hincrby(key, name, n)
                pipe.expire(key, K.KPI_TTL_S)
            await pipe.execute()
        return len(new)

    async def write_heartbeats(self, heartbeats: list[dict[str, Any]]) -> None:
        from sinks.devices import write_heartbeats

        await write_heartbeats(self.client, heartbeats, self.ttl_s)

    async def mark_ready(self, partitions: int) -> None:
        await self.client.set(K.WORKER_READY_KEY, partitions, ex=3600)

    async def close(self) -> None:
        await self.client.aclose()
