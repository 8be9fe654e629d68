"""Devices: heartbeats into Redis, the online and normal rates (设备在线率) with their alerts to
operators, and the devices that publish later than the slack."""

from __future__ import annotations

import logging
import time
from functools import partial

import schemas
from schemas import topics as T
from schemas.units import US
from sinks import constants as K
from sinks.devices import device_kpis
from streams.alerts import device_alerts
from streams.worker import Worker

log = logging.getLogger(__name__)
LATE_REPORT_S = 60.0  # how often devices publishing later than the slack are logged


def install(worker: Worker) -> None:
    app, settings, metrics, outbox = worker.app, worker.settings, worker.metrics, worker.outbox
    registry, sink, retry = worker.registry, worker.sink, worker.retry

    @app.agent(app.topic(T.DEVICE_HEARTBEATS), name="heartbeats")
    async def heartbeats(stream):
        async for events in stream.take_events(
            settings.batch_size, within=settings.batch_timeout_s
        ):
            metrics.count_in(events)
            batch = [record for record, _ in await outbox.decoded(events, schemas.DEVICE_HEARTBEAT)]
            await retry("heartbeats", partial(sink.write_heartbeats, batch))

    @app.timer(max(settings.heartbeat_interval_s / 4, 1.0), name="judge_devices")
    async def judge_devices():
        """Device online / normal rates into Redis and Prometheus: a device that misses three
        heartbeat intervals is offline."""
        ids = sorted(registry.wim_devices) + sorted(registry.cameras)
        now_us = int(time.time() * US)
        h = await retry(
            "devices",
            partial(device_kpis, worker.redis, ids, settings.heartbeat_interval_s, now_us),
        )
        metrics.devices_online.set(h.online_rate)
        metrics.devices_normal.set(h.normal_rate)
        late, ahead = worker.timing.take()
        alerts = device_alerts(
            h,
            registry,
            worker.alert_rules,
            int(time.time() * US),
            late,
            ahead,
            settings.publish_slack_s,
        )
        new = await retry(
            "devices",
            partial(sink.write_alerts_once, alerts, K.OPS_ALERT_KEY, K.OPS_ALERT_STREAM),
        )
        await outbox.send_alerts(alerts, set(new))

    @app.timer(LATE_REPORT_S, name="report_late")
    async def report_late():
        """Devices that publish later than the slack break what "known until" rests on."""
        late = worker.match.state.late_unreported
        if late:
            log.warning(
                "inputs published more than %.1f s after capture in the last %.0f s, per device: "
                "%s; their sites may have been decided without them "
                "(ZHICHAO_PUBLISH_SLACK_S, zhichao_late_inputs)",
                settings.publish_slack_s,
                LATE_REPORT_S,
                dict(sorted(late.items())),
            )
            late.clear()
