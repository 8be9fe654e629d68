"""Interception orders (拦截调度) from a round's alerts: planned for the alerts that call for one
(``streams.dispatch``), and the 预判 orders issued ahead of their verdicts, then confirmed or
withdrawn by them (``streams.order_life``)."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

from schemas.registry import Registry
from schemas.units import US
from sinks.order_sink import OrderSink
from streams.alerting import Alerting
from streams.dispatch import order_for, plan_interception
from streams.metrics import Metrics
from streams.order_life import confirm, withdraw
from streams.outbox import Outbox
from streams.retry import Retry

log = logging.getLogger(__name__)
WITHDRAWN_NOTE = "复核：车辆判定未确认该指令，已撤回"


class Ordering:
    def __init__(
        self,
        registry: Registry,
        alerting: Alerting,
        order_sink: OrderSink,
        retry: Retry,
        outbox: Outbox,
        metrics: Metrics,
    ) -> None:
        self.registry = registry
        self.alerting = alerting
        self.order_sink = order_sink
        self.retry = retry
        self.outbox = outbox
        self.metrics = metrics

    async def plan_orders(
        self,
        alerts: list[dict[str, Any]],
        verdicts: list[dict[str, Any]],
        provisional: bool = False,
    ) -> list[dict[str, Any]]:
        """Interception orders for the alerts that call for one: the first such alert of a
        vehicle in the batch; the sink keeps one open per vehicle."""
        acting = {}
        for a in alerts:
            if self.alerting.calls_for_order(a):
                acting.setdefault(a["plate"] or a["passage_id"], a)
        if not acting:
            return []
        states = await self.retry("units", self.order_sink.unit_states)
        seen = {v["passage_id"]: v for v in verdicts}
        now = time.time()
        orders = []
        for a in acting.values():
            v = seen[a["passage_id"]]
            site = self.registry.sites[a["site_id"]]
            plan = plan_interception(
                site, v["speed_kmh"], a["ts_us"] / US, now, self.registry, states
            )
            local = v["local"] if a["plate"] else None
            orders.append(
                order_for(
                    a,
                    plan,
                    self.registry,
                    int(now * US),
                    v["speed_kmh"],
                    local,
                    provisional=provisional,
                )
            )
        return orders

    async def order_ahead(self, ahead: list[dict[str, Any]], deliveries: list[Any]) -> None:
        """预判: orders for the heavy vehicles decided on their front reads alone
        (``MatchBuffers.settled``), seconds before their verdicts; each verdict then confirms
        or withdraws its vehicle's order (``settle_foreseen``). No alert and no verdict is
        written for them: those wait for the rear reads."""
        alerts = [
            a for a in await self.alerting.alerts_of(ahead) if self.alerting.calls_for_order(a)
        ]
        orders = await self.plan_orders(alerts, ahead, provisional=True)
        written = await self.retry("orders", partial(self.order_sink.write_ahead, orders))
        self.metrics.provisional_orders.labels("issued").inc(len(written))
        await self.outbox.send_orders(orders, set(written), deliveries)

    async def foreseen(self, passage_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The provisional orders of these weighings, by passage id."""
        return await self.retry("orders", partial(self.order_sink.foreseen, passage_ids))

    def standing(
        self, foreseen: dict[str, dict[str, Any]], alerts: list[dict[str, Any]]
    ) -> set[str]:
        """The weighings whose provisional order their verdict's alerts call for: same plate."""
        return {
            a["passage_id"]
            for a in alerts
            if self.alerting.calls_for_order(a)
            and a["passage_id"] in foreseen
            and a["plate"] == foreseen[a["passage_id"]]["plate"]
        }

    async def settle_foreseen(self, foreseen: dict[str, dict[str, Any]], stand: set[str]) -> None:
        """A provisional order that its verdict calls for stands (an ordinary order now); the
        others are withdrawn, and the officer's page says so."""
        now_us = int(time.time() * US)
        for passage_id, order in foreseen.items():
            stands = passage_id in stand
            change = confirm(order, now_us) if stands else withdraw(order, now_us, WITHDRAWN_NOTE)
            result = await self.retry("orders", partial(self.order_sink.apply, change, now_us))
            if result == "ok":
                self.metrics.provisional_orders.labels("confirmed" if stands else "withdrawn").inc()
            else:  # an officer closed or escalated it meanwhile: theirs stands
                log.info("provisional order not settled (%s)", result)
