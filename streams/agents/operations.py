"""What operators and people see of a worker: the pages (officer, command centre, dashboard),
the Prometheus metrics, and the consumer lag per topic."""

from __future__ import annotations

import logging
from typing import Any

import schemas
from schemas import topics as T
from sinks.web.server import serve, web_app
from streams.feedback import report_check
from streams.worker import Worker

log = logging.getLogger(__name__)
LAG_CHECK_S = 5.0


def install(worker: Worker) -> None:
    app, settings, metrics = worker.app, worker.settings, worker.metrics

    @app.task
    async def serve_pages():
        if not settings.web_port:
            return
        if worker.case_store is not None:
            await worker.case_store.open()  # the desk reads it from the first request on

        async def send_feedback(fb: dict[str, Any]) -> None:
            encode = schemas.DISPATCH_FEEDBACK.encode_wire
            await worker.outbox.send_all(
                T.DISPATCH_FEEDBACK, [(fb["unit_id"].encode(), encode(fb))]
            )

        pages = web_app(
            worker.redis,
            worker.registry,
            send_feedback,
            report_check(worker.registry),
            settings.heartbeat_interval_s,
            settings.accept_timeout_s,
            worker.case_store,
            worker.desk_review(),
        )
        worker.runners.append(await serve(pages, settings.web_addr, settings.web_port))
        log.info("pages on http://%s:%d/", settings.web_addr, settings.web_port)

    @app.task
    async def serve_metrics():
        if settings.metrics_port:
            metrics.serve(settings.metrics_port, settings.metrics_addr)
            log.info(
                "metrics on http://%s:%d/metrics", settings.metrics_addr, settings.metrics_port
            )

    @app.timer(LAG_CHECK_S, name="measure_lag")
    async def measure_lag():
        for topic, n in worker.progress.topic_lags().items():
            metrics.consumer_lag.labels(topic).set(n)
