"""The evidence records of enforceable verdicts (``sinks.evidence``): sealed into their site's
chain before the write, and sealed again when the chain moved under this worker, until every
enforceable verdict has its record."""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from schemas.registry import Registry
from sinks.evidence import EvidenceChain, Link, evidence_body
from sinks.redis_sink import VerdictSink
from sinks.seam import Written
from streams.metrics import Metrics
from streams.retry import Retry

log = logging.getLogger(__name__)
LOUD_ATTEMPT = 3  # from this attempt on, a chain that keeps moving is an error, not a warning


class Sealing:
    def __init__(
        self,
        chain: EvidenceChain,
        registry: Registry,
        sink: VerdictSink,
        retry: Retry,
        metrics: Metrics,
    ) -> None:
        self.chain = chain
        self.registry = registry
        self.sink = sink
        self.retry = retry
        self.metrics = metrics

    def bodies(self, decided: list[dict[str, Any]], support: list[dict[str, Any]]) -> list[Any]:
        """(verdict, evidence body) of the enforceable verdicts, for the chain."""
        return [
            (v, evidence_body(v, s, self.registry))
            for v, s in zip(decided, support, strict=True)
            if v["enforceable"]
        ]

    def bodies_on(self, decided: list[dict[str, Any]], support: dict[str, Any]) -> list[Any]:
        """The same, for verdicts whose evidence rests on one record (a gateway batch)."""
        return [(v, evidence_body(v, support, self.registry)) for v in decided if v["enforceable"]]

    def seal(self, bodies: list[Any]) -> list[Link]:
        return self.chain.extend(bodies)

    async def restore(self) -> None:
        """The chains' heads as Redis has them (a worker given partitions starts from them)."""
        self.chain.restore(await self.retry("evidence", self.sink.evidence_heads))

    async def check(self, written: Written, links: list[Link]) -> None:
        """After a write: when Redis' chains are not where this worker sealed (a redelivered
        verdict's record was in its chain already, or another writer moved a chain in a
        rebalance), the heads are read again, and every record of a passage that has none yet
        is sealed again on them and appended, until it is in its chain: an enforceable verdict
        always has its evidence record."""
        if written.appended == len(links):
            return
        lost = set(written.lost)
        pending = [link for link in links if link.passage_id in lost]
        attempt = 0
        while True:
            self.chain.heads.clear()
            await self.restore()
            if not pending:
                return
            attempt += 1
            self.metrics.evidence_conflicts.inc(len(pending))
            (log.warning if attempt < LOUD_ATTEMPT else log.error)(
                "evidence chain moved under this worker: sealing %d records again (attempt %d)",
                len(pending),
                attempt,
            )
            pending = self.chain.reseal(pending)
            _, still = await self.retry("evidence", partial(self.sink.append_evidence, pending))
            lost = set(still)
            pending = [link for link in pending if link.passage_id in lost]
            if pending:
                await asyncio.sleep(min(0.05 * attempt, 1.0))
