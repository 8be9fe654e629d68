"""A worker's parts and the state it keeps: what every agent of ``streams.agents`` works with.

Built once per Faust app (``streams.app``): the settings, registry and policy; Redis and the
sinks over it; the outbox; the match buffers and what the match agent remembers between
batches; the evidence chain; the decider (the helper process and the kernels); and the rounds
of the match agent and of the batched gateway. ``close()`` releases what it holds.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
import psycopg
import redis.asyncio as aioredis

from schemas.policy import load_policy
from schemas.registry import load_registry
from schemas.settings import Settings
from sinks.evidence import EvidenceChain
from sinks.gateway_sink import GatewaySink
from sinks.order_sink import OrderSink
from sinks.records import migrate
from sinks.records.case_store import CaseStore
from sinks.redis_sink import VerdictSink
from sinks.seam import RoundSinks
from sinks.sightings import Sightings
from sinks.web.desk import Review
from streams.alerting import Alerting
from streams.alerts import load_alert_rules
from streams.decider import Decider
from streams.device_timing import DeviceTiming
from streams.gateway_round import GatewayRound
from streams.intake import ReadPositions
from streams.match_round import MatchRound
from streams.matching import MatchBuffers
from streams.metrics import Metrics
from streams.ordering import Ordering
from streams.outbox import Outbox
from streams.progress import BrokerTime, Progress
from streams.retry import Retry
from streams.review import redecide
from streams.sealing import Sealing
from streams.stages import join_params, warm_up
from streams.transport import FETCH_MAX_WAIT_MS
from streams.validation import Clock
from streams.vouching import LatestSeen

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, app: faust.App, settings: Settings, input_topics: set[str]) -> None:
        self.app = app
        self.settings = settings
        self.registry = registry = load_registry(settings.registry_path)
        self.policy = load_policy(settings.policy or registry.policy)
        self.alert_rules = load_alert_rules()
        self.metrics = metrics = Metrics()
        self.retry = Retry(metrics)
        self.outbox = Outbox(app, metrics)
        self.clock = Clock(settings.max_event_age_s, settings.max_event_ahead_s)
        self.broker_time = BrokerTime()
        self.join = join_params(settings)  # the site join's tolerances, one place for all
        self.buffers = MatchBuffers(
            registry,
            max_wait_s=settings.max_wait_s,
            slack_s=settings.publish_slack_s,
            join=self.join,
            read_retention_s=settings.read_retention_s,
            clock=self.broker_time.now,
        )
        self.positions = ReadPositions()  # per input partition: the last record buffered
        self.timing = DeviceTiming(settings.clock_ahead_alert_s)  # late and fast devices
        # what caught-up inputs vouch for (``streams.vouching``)
        self.latest = LatestSeen(guard_s=2 * FETCH_MAX_WAIT_MS / 1000)
        self.progress = Progress(
            app, input_topics, self.buffers, self.positions, self.latest, metrics
        )
        self.redis = aioredis.Redis.from_url(settings.redis_dsn)
        self.sink = VerdictSink(self.redis, settings.verdict_ttl_s, settings.sighting_retention_s)
        self.sinks = RoundSinks(self.sink)  # a store of record is added beside the live cache
        self.order_sink = OrderSink(self.redis, settings.verdict_ttl_s)
        self.gateway_sink = GatewaySink(self.redis, settings.verdict_ttl_s)
        self.sightings = Sightings(self.redis)
        self.chain = EvidenceChain(settings.evidence_key.encode())
        self.decider = Decider(
            registry,
            self.policy,
            settings.registry_path,
            settings.policy,
            settings.decide_processes,
            metrics.decider_failures.inc,
            settings.inline_passages,
            settings.inline_vehicles,
            lambda where: metrics.decider_work.labels(where).inc(),
            join=self.join,
        )
        self.runners: list[Any] = []  # the pages' web server, cleaned up on close
        self.case_store = self._case_store()
        self.sealing = Sealing(self.chain, registry, self.sink, self.retry, metrics)
        self.alerting = Alerting(
            registry, self.alert_rules, self.sink, self.sightings, self.retry, self.outbox
        )
        self.ordering = Ordering(
            registry, self.alerting, self.order_sink, self.retry, self.outbox, metrics
        )
        self.match = MatchRound(
            settings,
            self.buffers,
            self.decider,
            self.timing,
            self.progress,
            self.sealing,
            self.alerting,
            self.ordering,
            self.sinks,
            self.retry,
            self.outbox,
            metrics,
            self.foresee_kg(),
        )
        self.gateway = GatewayRound(
            self.decider,
            self.clock,
            self.sealing,
            self.alerting,
            self.ordering,
            self.sinks,
            self.gateway_sink,
            self.retry,
            self.outbox,
            metrics,
        )

    def _case_store(self) -> CaseStore | None:
        """The store of record when one is configured; a database at another schema version
        is refused now, before the worker takes any partition (``migrate.WrongSchema``)."""
        if not self.settings.pg_dsn:
            log.warning("no store of record (ZHICHAO_PG_DSN): verdicts are kept in Redis only")
            return None
        try:
            migrate.check(self.settings.pg_dsn)
        except psycopg.OperationalError as exc:  # down now: the cases agent checks once it is up
            log.error("the store of record cannot be reached (%s): the cases agent waits", exc)
        return CaseStore(self.settings.pg_dsn)

    def desk_review(self) -> Review:
        """What the review desk checks cases with: the evidence key, the policy, the agency
        named on notices, and this worker's own decision of a weighing from its record."""
        registry, policy, join = self.registry, self.policy, self.join
        return Review(
            self.settings.evidence_key.encode(),
            policy,
            registry.agency,
            lambda record: redecide(record, registry, policy, join).as_dict(),
        )

    def foresee_kg(self) -> float | None:
        """预判 orders for vehicles heavy enough to be over a limit: half the lightest class
        limit leaves room for every reduction; None when provisional orders are off."""
        s = self.settings
        if not (s.provisional_orders and s.early_decisions):
            return None
        return float(self.policy.class_limit_kg.min()) / 2

    def start_kernels(self) -> None:
        """The helper compiles its kernels while this process compiles its own; small batches
        and rounds are measured and decided here too (``inline_passages``). Returns once both
        are ready, before the worker takes partitions: nothing compiles beside live work."""
        s = self.settings
        self.decider.start()
        warm_up(
            self.registry,
            self.policy,
            measure_too=s.decide_processes == 0 or s.inline_passages > 0,
            join=self.join,
        )
        self.decider.wait_ready()

    async def close(self) -> None:
        """Stop the pages and release the Redis connections (when the worker stops)."""
        for runner in self.runners:
            await runner.cleanup()
        await self.redis.aclose()
        if self.case_store is not None:
            await self.case_store.close()
        self.decider.close()
