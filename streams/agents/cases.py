"""The store of record's agent: every verdict on ``vehicles.verdicts`` into PostgreSQL
(``sinks.records.case_store``): over-limit and warning weighings kept without expiry, and a
case in 待审核 for each enforceable one; then every verdict's sighting and the hourly traffic
counts (``sinks.records.traffic``), in a transaction of their own. Apart from the live path,
so that an outage of the store of record holds only this agent: while PostgreSQL is down it
waits with its batch unacknowledged, and Kafka keeps what comes next; nothing is lost when it
returns.
"""

from __future__ import annotations

import logging
from functools import partial

import schemas
from schemas import topics as T
from schemas.codec import decimal_floats
from sinks.evidence import records_of
from sinks.records.case_store import CaseStore
from streams.worker import Worker

log = logging.getLogger(__name__)
BATCH = 1024  # verdicts per transaction: a backlog is copied in large batches


def install(worker: Worker, store: CaseStore | None) -> None:
    if store is None:
        return
    app, settings, metrics, outbox = worker.app, worker.settings, worker.metrics, worker.outbox

    @app.agent(app.topic(T.VEHICLES_VERDICTS), name="cases")
    async def cases(stream):
        await store.open()  # connects in the background: a server that is down is waited for
        # a worker started while the server was down checks its schema version now
        await worker.retry(store.name, store.check_schema, store.unavailable, store.store)
        async for events in stream.noack_take(BATCH, within=settings.batch_timeout_s * 10):
            metrics.count_in(events)
            decoded = await outbox.decoded(events, schemas.VERDICT)  # the others dead-lettered
            verdicts = [decimal_floats(schemas.VERDICT, v) for v, _ in decoded]
            with metrics.stage_seconds.labels("cases").time():
                # the evidence records as sealed in the live chains: kept with their weighings,
                # so a case keeps its evidence after the live cache has forgotten it
                sealed = [(v["passage_id"], v["site_id"]) for v in verdicts if v["enforceable"]]
                records = await worker.retry("evidence", partial(records_of, worker.redis, sealed))
                if len(records) < len(sealed):
                    log.warning(
                        "%d enforceable verdicts have no evidence record in the live chains: "
                        "their cases cannot be filed",
                        len(sealed) - len(records),
                    )
                await worker.retry(
                    store.name,
                    partial(store.store_verdicts, verdicts, records),
                    store.unavailable,
                    store.store,
                )
                await worker.retry(
                    store.name,
                    partial(store.store_traffic, verdicts),
                    store.unavailable,
                    store.store,
                )
            for _, event in decoded:
                event.ack()  # only now: a crash before this stores the batch again, once
