"""The baseline of the pipeline benchmark: a bare Faust agent that only counts the messages of
the input topics (same broker, same topic contents, same consumer settings as the worker).
It records, in Redis, the wall time of its first and latest message and the count.

``BENCH_STOCK=1`` runs it on faust-streaming as shipped: the baseline of the headline,
``raw_pipeline_vs_bare_faust``, the figure a user comparing with a plain Faust application
would see. Otherwise it runs on the worker's own transport (``streams.transport``: the short
fetch long-poll and the quick delivery), the baseline of ``raw_pipeline_vs_own_transport``:
that transport speeds up a bare loop too, so the ratio leaves the pipeline's work beyond
Faust's."""

from __future__ import annotations

import os
import sys
import time

import faust
import redis

from schemas import topics as T
from schemas.settings import Settings
from streams.transport import App

KEY = "zc:bench:bare"


def create_app(
    broker_url: str,
    redis_dsn: str,
    app_id: str,
    topics: tuple[str, ...] = (T.WIM_PASSAGES, T.ANPR_READS),
    key: str = KEY,
    stock: bool = False,
) -> faust.App:
    app = (faust.App if stock else App)(
        app_id,
        broker=broker_url,
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        consumer_max_fetch_size=32 << 20,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=Settings.load().session_timeout_s,  # the worker's: same join wait
        web_enabled=False,
        datadir=os.environ.get("BENCH_STATE_DIR", "bench-bare-data"),
    )
    source = app.topic(*topics)
    client = redis.Redis.from_url(redis_dsn)

    seen = {"n": 0, "first": 0.0, "last": 0.0}

    @app.agent(source)
    async def count(stream):
        async for _ in stream:
            now = time.time()
            if not seen["n"]:
                seen["first"] = now
            seen["n"] += 1
            seen["last"] = now

    @app.timer(0.2)
    async def report():
        if seen["n"]:
            client.hset(key, mapping=seen)

    return app


def main() -> None:
    app = create_app(
        os.environ["ZHICHAO_BROKER_URL"],
        os.environ["ZHICHAO_REDIS_DSN"],
        os.environ.get("BENCH_APP_ID", "bench-bare"),
        tuple(os.environ.get("BENCH_TOPICS", f"{T.WIM_PASSAGES},{T.ANPR_READS}").split(",")),
        os.environ.get("BENCH_KEY", KEY),
        stock=os.environ.get("BENCH_STOCK") == "1",
    )
    sys.argv = ["bare-faust", "worker", "--loglevel", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main()
