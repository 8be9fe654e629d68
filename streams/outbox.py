"""What the worker sends: messages handed to the producer, with their deliveries (done once the
broker has each one), the alerts and orders that Redis took for the first time, verdicts, and
dead letters with their reasons.

Redis is the record of alerts and orders; their topics are for downstream consumers, so only
those Redis took as new are sent. A round waits for its deliveries before its inputs are
acknowledged (``streams.delivery``); a caller that passes ``deliveries`` collects them there,
one that does not waits for them at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust

import schemas
from schemas import topics as T
from schemas.orders import COMMAND_CENTRE
from schemas.units import US
from streams.metrics import Metrics

log = logging.getLogger(__name__)
Messages = list[tuple[bytes | None, bytes]]


def dead_letter_record(event: Any, reason: str, message: str) -> bytes:
    m = event.message
    return schemas.DEAD_LETTER.encode_wire(
        {
            "topic": m.topic,
            "partition": m.partition,
            "offset": m.offset,
            "reason": reason,
            "message": message,
            "ts_us": int(time.time() * US),
            "key": m.key,
            "value": m.value if isinstance(m.value, bytes) else b"",
        }
    )


def verdict_key(verdict: dict[str, Any]) -> bytes:
    return (verdict["plate_front"] or verdict["plate_rear"] or verdict["passage_id"]).encode()


def alert_key(alert: dict[str, Any]) -> bytes:
    """An alert's Kafka key: its subject (a plate, a passage, a device, or a source's id)."""
    subject = alert["plate"] or alert["passage_id"] or alert["device_id"] or alert["site_id"]
    return subject.encode()


class Outbox:
    def __init__(self, app: faust.App, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def hand_over(self, topic: str, messages: Messages) -> list[Any]:
        """Hand messages to the producer; returns their deliveries."""
        self.metrics.events_out.labels(topic).inc(len(messages))
        producer = self.app.producer
        return [await producer.send(topic, k, v, None, None, None) for k, v in messages]

    async def send_all(self, topic: str, messages: Messages) -> None:
        """Hand messages to the producer and wait until the broker has them all."""
        await asyncio.gather(*await self.hand_over(topic, messages))

    @staticmethod
    async def delivered(sent: list[Any], deliveries: list[Any] | None) -> None:
        """Wait for ``sent`` here, or leave it to the round's ``deliveries`` when given."""
        if deliveries is None:
            await asyncio.gather(*sent)
        else:
            deliveries += sent

    async def send_dead(self, event: Any, reason: str, message: str, ack: bool = True) -> None:
        """A dead letter for ``event``, acknowledged once the broker has it; ``ack=False`` when
        the rest of it is still to be written (a gateway batch's bad rows)."""
        await self.send_dead_and_ack([(event, reason, message)], [event] if ack else [])

    async def send_dead_and_ack(self, bad: list[tuple[Any, str, str]], acked: list[Any]) -> None:
        """Dead letters for ``bad``; once the broker has them all, ``acked`` acknowledged."""
        await asyncio.gather(*await self.send_dead_letters(bad))
        for event in acked:
            event.ack()

    async def send_dead_letters(self, bad: list[tuple[Any, str, str]]) -> list[Any]:
        """Dead letters for ``(event, reason, message)``, handed to the producer in one call;
        returns their deliveries (the caller acknowledges the events once they are done).

        A flood of bad input (a gateway sending a wrong schema id for everything, a device
        that sends garbage after a firmware update) must cost little per message: one log line
        per reason and batch with its count and first example, each letter at debug level."""
        if not bad:
            return []
        by_reason: dict[str, list[tuple[Any, str]]] = {}
        for event, reason, message in bad:
            by_reason.setdefault(reason, []).append((event, message))
        for reason, letters in by_reason.items():
            self.metrics.dead_letters.labels(reason).inc(len(letters))
            m, message = letters[0][0].message, letters[0][1]
            log.warning(
                "%d dead letter(s) %s, the first from %s[%d]@%d: %s",
                len(letters),
                reason,
                m.topic,
                m.partition,
                m.offset,
                message,
            )
        if log.isEnabledFor(logging.DEBUG):
            for event, reason, message in bad:
                m = event.message
                log.debug(
                    "dead letter %s from %s[%d]@%d: %s",
                    reason,
                    m.topic,
                    m.partition,
                    m.offset,
                    message,
                )
        records = [(None, dead_letter_record(e, r, msg)) for e, r, msg in bad]
        return await self.hand_over(T.DEAD_LETTERS, records)

    async def decoded(self, events: list[Any], codec: Any) -> list[tuple[dict[str, Any], Any]]:
        """(record, event) of the events ``codec`` can decode; the others to dead.letters,
        acknowledged once the broker has them."""
        out, bad = [], []
        for event in events:
            try:
                out.append((codec.decode_wire(event.value), event))
            except schemas.DecodeError as exc:
                bad.append((event, "undecodable", str(exc)))
        if bad:
            await self.send_dead_and_ack(bad, [event for event, _, _ in bad])
        return out

    async def send_alerts(
        self, alerts: list[dict[str, Any]], new_ids: set[str], deliveries: list[Any] | None = None
    ) -> None:
        """The alerts Redis took for the first time, to the ``alerts`` topic."""
        fresh = {a["alert_id"]: a for a in reversed(alerts) if a["alert_id"] in new_ids}
        for a in fresh.values():
            self.metrics.alerts.labels(a["reason"]).inc()
        encode = schemas.ALERT.encode_wire
        sent = await self.hand_over(
            T.ALERTS,
            [(alert_key(a), encode(a)) for a in fresh.values()],
        )
        await self.delivered(sent, deliveries)

    async def send_orders(
        self, orders: list[dict[str, Any]], new_ids: set[str], deliveries: list[Any] | None = None
    ) -> None:
        """The orders Redis took for the first time, to ``dispatch.orders`` (keyed by unit)."""
        fresh = [o for o in orders if o["order_id"] in new_ids]
        for o in fresh:
            self.metrics.orders.labels(
                "command_centre" if o["unit_id"] == COMMAND_CENTRE else "unit"
            ).inc()
        encode = schemas.DISPATCH_ORDER.encode_wire
        sent = await self.hand_over(
            T.DISPATCH_ORDERS, [(o["unit_id"].encode(), encode(o)) for o in fresh]
        )
        await self.delivered(sent, deliveries)

    async def send_verdicts(self, verdicts: list[dict[str, Any]]) -> list[Any]:
        """Verdicts to ``vehicles.verdicts`` (keyed by plate); returns their deliveries."""
        encode = schemas.VERDICT.encode_wire
        return await self.hand_over(
            T.VEHICLES_VERDICTS, [(verdict_key(v), encode(v)) for v in verdicts]
        )
