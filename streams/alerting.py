"""The alerts of a round: from its verdicts (``streams.alerts``: 超限, 严重超限, 黑名单, repeat
offenders, unidentified weighings with their likely plates), from where its plates have been
(``streams.trajectory``: 黑名单 plates at checkpoints, 绕行, 套牌). The rules are pure; this
reads what they need from Redis, once per batch where it can."""

from __future__ import annotations

from functools import partial
from typing import Any

from schemas.plate_grammar import normalise
from schemas.registry import Registry
from schemas.units import US
from sinks.blacklist import listed
from sinks.redis_sink import VerdictSink, is_case
from sinks.sightings import MIN_CONFIDENCE, Sightings
from streams.alerts import AlertRules, alerts_for, sighting_alert
from streams.likely_plate import rank, upstream_probe
from streams.outbox import Outbox
from streams.retry import Retry
from streams.trajectory import (
    bypass_cameras,
    clashes,
    clone_alert,
    impossible_journeys,
    suspected_bypass,
)

DAY_US = 86_400 * US


class Alerting:
    def __init__(
        self,
        registry: Registry,
        rules: AlertRules,
        sink: VerdictSink,
        sightings: Sightings,
        retry: Retry,
        outbox: Outbox,
    ) -> None:
        self.registry = registry
        self.rules = rules
        self.sink = sink
        self.redis = sink.client
        self.sightings = sightings
        self.retry = retry
        self.outbox = outbox
        self.bypass_cams = bypass_cameras(registry)

    def calls_for_order(self, alert: dict[str, Any]) -> bool:
        return self.rules.reasons[alert["reason"]]["action"] in ("intercept", "refuse_entry")

    async def raise_alerts(self, verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The alerts of a batch of verdicts, unidentified weighings with their likely plates."""
        out = await self.alerts_of(verdicts)
        for a in out:
            if a["reason"] == "unidentified":
                await self.retry("sightings", partial(self.add_likely_plates, a))
        return out

    async def alerts_of(self, verdicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The alerts of a batch of verdicts, with each plate's blacklist entry and earlier
        cases read from Redis once per batch."""
        if not verdicts:
            return []
        since = min(v["ts_us"] for v in verdicts) - self.rules.repeat_window_days * DAY_US
        blacklisted, cases = await self.retry(
            "alerts", partial(self.sink.alert_context, verdicts, since)
        )
        out = []
        for v in sorted(verdicts, key=lambda v: (v["ts_us"], v["passage_id"])):
            plate = v["plate_front"] or v["plate_rear"]
            out += alerts_for(
                v, self.registry, self.rules, cases.get(plate, 0), plate in blacklisted
            )
            if plate and is_case(v):
                cases[plate] = cases.get(plate, 0) + 1  # a later verdict in this batch sees it
        return out

    async def add_likely_plates(self, alert: dict[str, Any]) -> None:
        """An unidentified weighing's likely plates from the checkpoint before it (M7)."""
        registry = self.registry
        probe = upstream_probe(registry.sites[alert["site_id"]], alert["ts_us"], registry)
        if probe is None:
            return
        reads = await self.sightings.at_camera(probe.camera_id, probe.lo_us, probe.hi_us)
        spread = (probe.hi_us - probe.lo_us) // 2
        lo, hi = alert["ts_us"] - spread, alert["ts_us"] + spread
        seen = set()
        for plate in {r[0] for r in reads}:
            if alert["site_id"] in await self.sightings.sites_between(plate, lo, hi):
                seen.add(plate)
        found = rank(probe, reads, seen)
        if found:
            alert["likely_plates"] = [c.plate for c in found]
            name = registry.sites[probe.site_id].name
            alert["message"] += f"；疑似车牌 {'、'.join(alert['likely_plates'])}（{name}）"

    async def raise_trajectory_alerts(
        self, reads: list[dict[str, Any]], deliveries: list[Any]
    ) -> None:
        """黑名单 plates read by any camera (checkpoints too), and suspected bypasses (绕行, M6),
        judged when a bypass road's camera reads a truck, from the plate's sightings (those of
        this batch are written by now)."""
        alerts = await self._blacklist_sightings(reads)
        for r in reads:
            checkpoint = self.bypass_cams.get(r["camera_id"])
            if checkpoint is None or r["confidence"] < MIN_CONFIDENCE or not r["plate"]:
                continue
            since = r["ts_us"] - self.rules.bypass_lookback_s * US
            history = await self.retry("sightings", partial(self.sightings.of, r["plate"], since))
            alert = suspected_bypass(r, checkpoint, history, self.registry, self.rules)
            if alert is not None:
                alerts.append(alert)
        await self._send_once(alerts, deliveries)

    async def _blacklist_sightings(self, reads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        sure = {}  # weigh-site reads are alerted with their weighing
        for r in reads:
            plate = normalise(r["plate"]) if r["confidence"] >= MIN_CONFIDENCE else ""
            if plate and r["view"] == "checkpoint":
                sure.setdefault(plate, r)
        hits = await self.retry("alerts", partial(listed, self.redis, sorted(sure)))
        return [sighting_alert(sure[p], p, self.rules, self.registry) for p in sorted(hits)]

    async def raise_clone_alerts(
        self, verdicts: list[dict[str, Any]], deliveries: list[Any]
    ) -> None:
        """Suspected cloned plates (套牌, M5): confident weighings of one plate at places no
        truck could have driven between (this batch's verdicts are written by now)."""
        rule = self.rules.clone
        window_us = rule.window_s * US
        sure = [
            v for v in verdicts if v["plate_front"] and v["plate_confidence"] >= rule.confidence
        ]
        probes = [(v["plate_front"], v["ts_us"] - window_us, v["ts_us"] + window_us) for v in sure]
        if not probes:
            return
        known = {v["passage_id"]: v for v in verdicts}
        weighed = await self.retry("alerts", partial(self.sink.weighings_of, probes, known))
        alerts = []
        for v in sure:
            plate = v["plate_front"]
            conflicts = impossible_journeys(v, weighed.get(plate, []), self.registry, self.rules)
            if not conflicts:
                continue
            since = v["ts_us"] - rule.days * DAY_US
            count = await self.retry(
                "alerts",
                partial(self.sink.count_clone_conflict, plate, v["passage_id"], v["ts_us"], since),
            )
            clash = next((o for o in conflicts if clashes(v, o)), None)
            if clash is not None or count >= rule.conflicts:
                alerts.append(
                    clone_alert(v, clash or conflicts[0], count, self.registry, self.rules)
                )
        await self._send_once(alerts, deliveries)

    async def _send_once(self, alerts: list[dict[str, Any]], deliveries: list[Any]) -> None:
        """Alerts raised without a verdict: written once per id, the new ones sent."""
        if alerts:
            new = await self.retry("alerts", partial(self.sink.write_alerts_once, alerts))
            await self.outbox.send_alerts(alerts, set(new), deliveries)
