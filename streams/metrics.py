"""Prometheus metrics of a worker, in a registry of its own (no process-global state), served
on ``metrics_port`` by prometheus_client's HTTP server. Updated once per batch, never per event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kernels.verdicts import VERDICT_NAMES

LATENCY_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
KERNEL_BUCKETS_S = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass(frozen=True)
class Metric:
    """One metric of a worker: ``Metrics.<attr>`` once made in the worker's registry."""

    attr: str
    kind: type[Counter] | type[Gauge] | type[Histogram]
    name: str
    doc: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None

    def make(self, registry: CollectorRegistry) -> Any:
        extra = {} if self.buckets is None else {"buckets": self.buckets}
        return self.kind(self.name, self.doc, self.labels, registry=registry, **extra)


METRICS = (
    Metric("events_in", Counter, "zhichao_events_in", "Input events consumed", ("topic",)),
    Metric("events_out", Counter, "zhichao_events_out", "Events produced", ("topic",)),
    Metric(
        "stale_events",
        Counter,
        "zhichao_stale_events",
        "Inputs fetched before the latest rebalance, left to be read again from the "
        "committed offsets",
    ),
    Metric(
        "announced_again",
        Counter,
        "zhichao_verdicts_announced_again",
        "Kept verdicts of redelivered, already decided vehicles, sent to vehicles.verdicts again",
    ),
    Metric(
        "evidence_conflicts",
        Counter,
        "zhichao_evidence_conflicts",
        "Evidence records sealed again: their chain moved before they were appended",
    ),
    Metric(
        "verdicts",
        Counter,
        "zhichao_verdicts",
        "Verdicts written, by verdict and whether enforceable",
        ("verdict", "enforceable"),
    ),
    Metric(
        "early_decisions",
        Counter,
        "zhichao_early_decisions",
        "Vehicles decided before their site could be cut (their reads already final)",
    ),
    Metric(
        "early_disagreements",
        Counter,
        "zhichao_early_disagreements",
        "Vehicles decided early that their group's join later gave other reads (a bug)",
    ),
    Metric(
        "decider_failures",
        Counter,
        "zhichao_decider_failures",
        "Deciding helper processes lost (their round was decided in the main thread)",
    ),
    Metric(
        "decider_work",
        Counter,
        "zhichao_decider_work",
        "Batches measured and rounds decided, by where: inline (the worker's main thread, "
        "small ones) or helper (a helper process)",
        ("where",),
    ),
    Metric(
        "dead_letters", Counter, "zhichao_dead_letters", "Inputs sent to dead.letters", ("reason",)
    ),
    Metric(
        "stage_seconds",
        Histogram,
        "zhichao_stage_seconds",
        "Time of one batch call of a stage (kernel wrappers included)",
        ("stage",),
        KERNEL_BUCKETS_S,
    ),
    Metric(
        "weigh_to_verdict",
        Histogram,
        "zhichao_weigh_to_verdict_seconds",
        "From the WIM passage's Kafka timestamp to its verdict written in Redis",
        buckets=LATENCY_BUCKETS_S,
    ),
    Metric(
        "consumer_lag",
        Gauge,
        "zhichao_consumer_lag",
        "Messages not yet read, by topic (sum over this worker's partitions)",
        ("topic",),
    ),
    Metric(
        "pending",
        Gauge,
        "zhichao_pending_vehicles",
        "Weighed vehicles waiting for their camera reads",
    ),
    Metric("assigned", Gauge, "zhichao_assigned_partitions", "Topic partitions this worker holds"),
    Metric(
        "alerts",
        Counter,
        "zhichao_alerts",
        "Alerts raised (once per vehicle, reason, day)",
        ("reason",),
    ),
    Metric(
        "orders",
        Counter,
        "zhichao_dispatch_orders",
        "Interception orders, to a unit or the command centre",
        ("to",),
    ),
    Metric(
        "provisional_orders",
        Counter,
        "zhichao_provisional_orders",
        "Provisional orders (预判): issued, then confirmed or withdrawn by the verdict (one an"
        " officer closed first counts in neither)",
        ("result",),
    ),
    Metric(
        "feedback",
        Counter,
        "zhichao_dispatch_feedback",
        "Officers' reports applied, by kind and result (ok, duplicate, status)",
        ("kind", "result"),
    ),
    Metric(
        "devices_online",
        Gauge,
        "zhichao_devices_online_ratio",
        "Registered devices heard within 3 intervals",
    ),
    Metric(
        "devices_normal",
        Gauge,
        "zhichao_devices_normal_ratio",
        "Registered devices online and reporting ok",
    ),
    Metric(
        "late_inputs",
        Counter,
        "zhichao_late_inputs",
        "Inputs that came after their time was known complete: published later than the "
        "publication slack after capture (their sites may have been decided without them)",
        ("device",),
    ),
    Metric(
        "caught_up", Gauge, "zhichao_partitions_caught_up", "Input partitions read to their end"
    ),
    Metric(
        "redis_up",
        Gauge,
        "zhichao_redis_up",
        "1 while the last Redis write succeeded, 0 during an outage",
    ),
    Metric(
        "broker_up", Gauge, "zhichao_broker_up", "1 while the broker answers the worker's probe"
    ),
    Metric(
        "sink_errors", Counter, "zhichao_sink_errors", "Failed writes to Redis (retried)", ("sink",)
    ),
)


@dataclass
class Metrics:
    """Every metric of ``METRICS`` as an attribute (``metrics.verdicts``), in ``registry``."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        for metric in METRICS:
            setattr(self, metric.attr, metric.make(self.registry))
        self.redis_up.set(1)  # up until a write fails

    def serve(self, port: int, addr: str = "127.0.0.1") -> None:
        start_http_server(port, addr=addr, registry=self.registry)

    def count_in(self, events: Iterable[Any]) -> None:
        per_topic: dict[str, int] = {}
        for event in events:
            topic = event.message.topic
            per_topic[topic] = per_topic.get(topic, 0) + 1
        for topic, n in per_topic.items():
            self.events_in.labels(topic).inc(n)

    def count_verdicts(self, verdicts: list[dict[str, Any]]) -> None:
        per_kind: dict[tuple[str, str], int] = {}
        for v in verdicts:
            key = (v["verdict"], "yes" if v["enforceable"] else "no")
            per_kind[key] = per_kind.get(key, 0) + 1
        for (verdict, enforceable), n in per_kind.items():
            self.verdicts.labels(verdict, enforceable).inc(n)

    def count_verdict_arrays(self, results: list[Any]) -> None:
        """The same counts from arrays (``verdict``, ``enforceable``: gateway batches)."""
        for r in results:
            for code, name in enumerate(VERDICT_NAMES):
                of_kind = r.verdict == code
                enforced = int(np.count_nonzero(of_kind & r.enforceable))
                others = int(np.count_nonzero(of_kind)) - enforced
                for label, n in (("yes", enforced), ("no", others)):
                    if n:
                        self.verdicts.labels(name, label).inc(n)
