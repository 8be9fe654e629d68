"""A peer's baseline: a bare Quix Streams application (``quixstreams``, librdkafka underneath)
that only counts the messages of the benchmark's topics, on the same broker. Like
``bench.bare_faust`` it records, in Redis, the wall time of its first and latest message and the
count (every 0.2 s, outside the per-message path)."""

from __future__ import annotations

import os
import threading
import time

import redis
from quixstreams import Application


def main() -> None:
    topics = os.environ["BENCH_TOPICS"].split(",")
    key = os.environ["BENCH_KEY"]
    client = redis.Redis.from_url(os.environ["ZHICHAO_REDIS_DSN"])
    app = Application(
        broker_address=os.environ["ZHICHAO_BROKER_URL"].removeprefix("kafka://"),
        consumer_group=os.environ.get("BENCH_APP_ID", "bench-quix"),
        auto_offset_reset="earliest",
        auto_create_topics=False,
        use_changelog_topics=False,
        state_dir=os.environ.get("BENCH_STATE_DIR", "/tmp/zhichao-bench-quix"),  # noqa: S108
    )
    seen = {"n": 0, "first": 0.0, "last": 0.0}

    def count(_value: object) -> None:
        now = time.time()
        if not seen["n"]:
            seen["first"] = now
        seen["n"] += 1
        seen["last"] = now

    for name in topics:
        source = app.topic(name, value_deserializer="bytes", key_deserializer="bytes")
        app.dataframe(source).update(count)

    def report() -> None:
        while True:
            time.sleep(0.2)
            if seen["n"]:
                client.hset(key, mapping=seen)

    threading.Thread(target=report, daemon=True).start()
    app.run()


if __name__ == "__main__":
    main()
