"""Every runtime setting in one place: defaults, then ``ZHICHAO_*`` environment variables, then
explicit overrides (the command line). Secrets have no working default."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from schemas.registry import EXAMPLE_CITY

ENV_PREFIX = "ZHICHAO_"
_BOOLS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLS |= {"0": False, "false": False, "no": False, "off": False, "": False}


@dataclass(frozen=True)
class Settings:
    broker_url: str = "kafka://127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT SSL SASL_PLAINTEXT SASL_SSL
    kafka_sasl_mechanism: str = ""  # PLAIN SCRAM-SHA-256 SCRAM-SHA-512
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = dataclasses.field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    redis_dsn: str = "redis://127.0.0.1:6379/0"  # rediss:// for TLS; password in the DSN
    # the store of record (PostgreSQL: weighings, cases, their history); empty: none, the
    # worker keeps only the live cache in Redis
    pg_dsn: str = dataclasses.field(default="", repr=False)
    store: str = "memory://"  # rocksdb:// in production
    partitions: int = 6
    registry_path: Path = EXAMPLE_CITY
    data_dir: Path = Path("zhichao-data")  # the worker's local table state (rocksdb://)
    policy: str = ""  # empty: the registry's policy
    verdict_ttl_s: int = 30 * 24 * 3600
    # a worker that dies (SIGKILL, power) keeps its partitions until this runs out; Tansu also
    # holds every group join for half of it, so a worker's start-up waits 5 s at 10 s. 10 s with
    # Faust's 3 s heartbeats is Kafka's classic consumer default; 6 s is the least a Kafka broker
    # accepts by default (group.min.session.timeout.ms)
    session_timeout_s: float = 10.0
    batch_size: int = 256
    batch_timeout_s: float = 0.02
    # fetched input records waiting for the match agent (streams.inbox); past it, fetching pauses
    inbox_size: int = 4096
    gateway_take: int = 64  # gateway batches (zhichao.VehicleBatch) judged per round
    max_wait_s: float = 10.0  # a weighing waits at most this long (wall time) for its reads
    # devices publish a record within this long of its timestamp; a WIM station that publishes
    # a passage after its last axle needs the longest passage (~8 s for a slow 20 m truck) here
    publish_slack_s: float = 2.0
    # a device whose records run this far ahead of the other inputs has a fast clock: an
    # operator alert (设备时钟超前), since its partition's sites are cut before their inputs arrive
    clock_ahead_alert_s: float = 30.0
    # decide a weighing as soon as its reads are final (streams.matching.settled) instead of at
    # its site's cut: seconds sooner (docs/semantics.md, "Early decisions"); off decides at
    # cuts only
    early_decisions: bool = True
    # interception orders planned on a heavy vehicle's front reads (预判), seconds before its
    # verdict, then confirmed or withdrawn by it (needs early decisions)
    provisional_orders: bool = True
    # helper processes that decide rounds (site join, plate fusion, verdict kernel) beside the
    # main thread (streams.decider); 0: in the main thread
    decide_processes: int = 1
    # with a helper, a batch of at most this many passages is still measured, and a round of at
    # most this many vehicles decided, in the main thread: measuring a passage costs more than
    # pickling it to the helper and the agent would only wait for the answer, so every batch
    # is measured here by default; a round at live rates is small, its round trip to the helper
    # costs more than the work, while a backlog's large rounds go to the helper
    # (docs/performance.md, "What limits a backlog"). 0: everything to the helper
    inline_passages: int = 4096
    inline_vehicles: int = 128
    # a round's inputs are acknowledged once its messages are on the broker, from a task; at most
    # this many rounds wait so, which bounds the inputs left unacknowledged (streams.delivery)
    acks_rounds_in_flight: int = 4
    # reads with no vehicle to wait for are released once both of their site's inputs are this
    # far (event time) past them (streams.matching)
    read_retention_s: float = 600.0
    # the site join of weighings and camera reads (kernels.plates.join_camera; docs/semantics.md,
    # "When a weighing is decided"). A camera captures a vehicle at the time its speed says,
    # within τ = join_tau_base_s + join_tau_per_s · |camera offset| / speed; a read farther than
    # join_gate_tau · τ from it, or seen by a camera more than join_max_lane_gap lanes away, is
    # not the vehicle's. The costs are in squared τ: ((t_read − t_expected) / τ)² plus
    # join_adjacent_lane_cost for a neighbouring lane and join_type_clash_cost for a 挂 plate on
    # a front camera, against join_null_cost for a vehicle or a read left without a match
    join_tau_base_s: float = 0.5
    join_tau_per_s: float = 0.10
    join_gate_tau: float = 3.0
    join_max_lane_gap: int = 1
    join_adjacent_lane_cost: float = 2.0
    join_type_clash_cost: float = 3.0
    join_null_cost: float = 9.0
    join_rear_extra_m: float = 1.5  # a rear plate sits this far behind the last axle
    join_frame_gap_s: float = 0.35  # one camera's reads closer than this are frames of one vehicle
    # vehicles slower than this (a jam, a stop on the sensors) are expected as if at this speed
    join_min_speed_ms: float = 0.3
    sighting_retention_s: float = 3 * 24 * 3600  # per-plate trajectories kept this long
    heartbeat_interval_s: float = 60.0  # devices report this often; offline after 3 missed
    max_event_age_s: float = 400 * 24 * 3600  # older inputs go to dead.letters (bad_timestamp)
    max_event_ahead_s: float = 600.0  # so do inputs this far ahead of the worker's clock
    metrics_port: int = 9464  # Prometheus /metrics; 0 turns it off
    metrics_addr: str = "127.0.0.1"
    # officer and command-centre pages (sinks.web); 0 turns them off. Behind a TLS proxy in
    # production: tokens travel in a cookie
    web_port: int = 8640
    web_addr: str = "127.0.0.1"
    accept_timeout_s: float = 60.0  # an order nobody accepts in this time goes to the next unit
    # how often the week's over-limit trucks per source enterprise are counted in the store of
    # record (源头监管, schemas/policy/sources.yaml); 0 turns the check off
    source_check_s: float = 600.0
    # HMAC key of the evidence chain (sinks.evidence): a long random secret; none by default,
    # a worker will not start without it (``zhichao up`` makes one for the demo)
    evidence_key: str = dataclasses.field(default="", repr=False)

    @classmethod
    def load(
        cls, overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None
    ) -> Settings:
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _convert(f.name, f.type, raw)
        for name, value in (overrides or {}).items():
            if value is None:
                continue
            if name not in {f.name for f in fields(cls)}:
                raise ValueError(f"unknown setting {name!r}")
            values[name] = value
        settings = dataclasses.replace(cls(), **values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.partitions < 1:
            raise ValueError("partitions must be >= 1")
        if self.decide_processes < 0:
            raise ValueError("decide_processes must be >= 0")
        if self.inline_passages < 0 or self.inline_vehicles < 0:
            raise ValueError("inline_passages and inline_vehicles must be >= 0")
        if self.publish_slack_s < 0:
            raise ValueError("publish_slack_s must be >= 0")
        if self.clock_ahead_alert_s <= 0:
            raise ValueError("clock_ahead_alert_s must be > 0")
        if self.acks_rounds_in_flight < 1:
            raise ValueError("acks_rounds_in_flight must be >= 1")
        if self.read_retention_s <= 0:
            raise ValueError("read_retention_s must be > 0")
        if self.source_check_s < 0:
            raise ValueError("source_check_s must be >= 0 (0: no source supervision)")
        self._validate_join()
        if self.kafka_security_protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ValueError(f"unknown kafka_security_protocol {self.kafka_security_protocol}")
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_mechanism and self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError("SASL needs kafka_sasl_mechanism, _username and _password")
        if not self.broker_url.startswith("kafka://"):
            raise ValueError("broker_url must look like kafka://host:port[;host:port]")
        if not self.redis_dsn.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_dsn must start with redis://, rediss:// or unix://")
        if self.pg_dsn and not self.pg_dsn.startswith(("postgresql://", "postgres://")):
            raise ValueError("pg_dsn must start with postgresql:// (or be empty: no store)")

    def _validate_join(self) -> None:
        for name in _JOIN_POSITIVE:
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")
        for name in _JOIN_NON_NEGATIVE:
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0")


# the site join's settings that divide or scale a tolerance, and those that add to a cost
_JOIN_POSITIVE = ("join_tau_base_s", "join_gate_tau", "join_null_cost", "join_min_speed_ms")
_JOIN_NON_NEGATIVE = (
    "join_tau_per_s",
    "join_max_lane_gap",
    "join_adjacent_lane_cost",
    "join_type_clash_cost",
    "join_rear_extra_m",
    "join_frame_gap_s",
)


def _convert(name: str, kind: Any, raw: str) -> Any:
    kind = kind if isinstance(kind, str) else getattr(kind, "__name__", str(kind))
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "bool":
            return _BOOLS[raw.strip().lower()]
    except (ValueError, KeyError):
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
