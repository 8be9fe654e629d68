"""The Faust app of a zhichao worker: built from the settings, with the agents of every domain
(``streams.agents``) working on one ``streams.worker.Worker``.

- ``match``: ``wim.passages`` + ``wim.vehicles`` + ``anpr.reads`` -> verdicts, their evidence,
  alerts and interception orders -> Redis and ``vehicles.verdicts``, ``alerts``,
  ``dispatch.orders`` (``streams.agents.match``).
- ``gateway``: ``wim.batches`` judged as arrays -> ``vehicles.verdict-batches``.
- ``feedback``, ``escalate``, ``blacklist``: the officer loop (``streams.agents.orders``).
- ``heartbeats`` and the device timers (``streams.agents.devices``).
- the pages, the metrics and the lag gauge (``streams.agents.operations``).
- ``cases``: ``vehicles.verdicts`` -> the store of record on PostgreSQL (``streams.agents.cases``).
- ``source_supervision``: the week's over-limit trucks per source enterprise, from the store of
  record, alerted to the command centre (``streams.agents.sources``).

Anything that cannot be decoded or measured goes to ``dead.letters`` with a reason.
"""

from __future__ import annotations

import faust

from schemas import topics as T
from schemas.settings import Settings
from streams.agents import cases, devices, gateway, match, operations, orders, sources
from streams.inbox import Inbox, InboxTopic
from streams.kafka_security import faust_credentials
from streams.transport import App
from streams.worker import Worker

MAX_REQUEST_BYTES = 16 << 20
MAX_BATCH_BYTES = 1 << 20  # gateway verdict batches are tens of KB each
MAX_FETCH_BYTES = 32 << 20


def build_app(settings: Settings) -> faust.App:
    """The Faust app alone: the broker, the serializers (raw: the worker codes Avro itself) and
    the producer's and consumer's sizes."""
    return App(
        "zhichao",
        broker=settings.broker_url,
        store=settings.store,
        datadir=str(settings.data_dir),
        topic_partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        producer_compression_type=None,
        producer_max_request_size=MAX_REQUEST_BYTES,
        producer_max_batch_size=MAX_BATCH_BYTES,
        consumer_max_fetch_size=MAX_FETCH_BYTES,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_credentials=faust_credentials(settings),
        web_enabled=False,  # the pages have their own server (``streams.agents.operations``)
    )


def create_app(settings: Settings) -> faust.App:
    """The worker's app, its kernels compiled and its agents installed; ``app.zhichao`` is the
    ``Worker`` (``await app.zhichao.close()`` when the app has stopped)."""
    app = build_app(settings)
    app.conf.zhichao = settings  # what the agents were built with, for the operator
    inputs = InboxTopic(app, topics=list(T.SITE_KEYED), inbox=Inbox(settings.inbox_size))
    worker = Worker(app, settings, set(inputs.topics))
    worker.start_kernels()
    match.install(worker, inputs)
    gateway.install(worker)
    orders.install(worker)
    devices.install(worker)
    operations.install(worker)
    cases.install(worker, worker.case_store)
    sources.install(worker)
    app.zhichao = worker
    return app
