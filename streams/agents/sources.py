"""Source supervision (源头监管) from the store of record: every ``source_check_s`` the week's
over-limit truck-days per source enterprise (``sinks.records.sources``); a source at the week's
threshold alerts the command centre, once a week (Redis, then the ``alerts`` topic). Apart from
the live path: a store that is down holds only this check."""

from __future__ import annotations

import datetime as dt
import logging
import time
from functools import partial

from schemas.registry import CHINA
from schemas.units import US
from sinks.records.sources import load_source_rules, week_counts, week_of
from streams.alerts import source_alerts
from streams.worker import Worker

log = logging.getLogger(__name__)


def install(worker: Worker) -> None:
    store, registry, settings = worker.case_store, worker.registry, worker.settings
    if store is None or not registry.sources or not settings.source_check_s:
        return
    rules = load_source_rules()

    @worker.app.timer(settings.source_check_s, name="source_supervision")
    async def supervise():
        try:
            await check_weeks()
        except Exception:  # noqa: BLE001 - a timer's error would stop the worker: next tick again
            log.exception("源头监管: the check failed; again in %.0f s", settings.source_check_s)

    async def check_weeks():
        await store.open()  # safe when open; the first tick may come before the other agents'
        now = dt.datetime.now(CHINA)
        # last week too: a threshold reached just before Monday, or sightings stored late
        # (after an outage of the store), still alert for their week; ids keep it once a week
        weeks = [now - dt.timedelta(days=7), now]
        alerts = []
        for moment in weeks:
            counts = await worker.retry(
                store.name,
                partial(week_counts, store.pool, registry, rules, moment),
                store.unavailable,
                store.store,
            )
            alerts += source_alerts(
                registry,
                counts,
                week_of(moment.date()),
                rules.weekly_overlimit_trucks,
                worker.alert_rules,
                int(time.time() * US),
            )
        if not alerts:
            return
        new = await worker.retry("alerts", partial(worker.sink.write_alerts_once, alerts))
        await worker.outbox.send_alerts(alerts, set(new))
        for a in alerts:
            if a["alert_id"] in new:
                log.warning("%s", a["message"])
