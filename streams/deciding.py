"""Measuring a batch of weighings, and one round of decisions — the cut groups and the
early-settled vehicles that ``MatchBuffers`` hands over together — with failures isolated to
the record that causes them.

Pure functions of plain records, so that a round can run in a helper process
(``streams.decider``) as well as in the worker's main thread: what a round returns is what the
agent writes, and nothing here touches Kafka, Redis or the buffers. Failures are returned as
text for the agent to log and dead-letter, never swallowed."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from kernels.plates import JoinParams
from schemas.checks import Clock
from schemas.policy import Policy, load_policy
from schemas.registry import Registry, load_registry
from streams.gateway import GatewayRound, judge_messages
from streams.stages import (
    decide_group,
    decide_with_support,
    measure_controller,
    measure_passages,
    warm_up,
)

Record = dict[str, Any]
Matched = tuple[list[Record], list[Record]]  # a vehicle's front and rear reads


@dataclass(frozen=True)
class GroupJob:
    """A cut group: its vehicles and reads in (time, id) order, and those of its vehicles that
    were decided early (passage id -> the read ids they were decided with)."""

    vehicles: list[Record]
    reads: list[Record]
    early: dict[str, tuple[str, ...]]


def cut_job(
    vehicles: list[Record], reads: list[Record], early: dict[str, tuple[str, ...]]
) -> GroupJob:
    """The job of a cut group, its records in the order replay decides them in."""
    return GroupJob(
        sorted(vehicles, key=lambda r: (r["ts_us"], r["passage_id"])),
        sorted(reads, key=lambda r: (r["ts_us"], r["read_id"])),
        early,
    )


@dataclass(frozen=True)
class EarlyJob:
    """Vehicles whose reads are final before their site's cut, with those reads."""

    vehicles: list[Record]
    matched: list[Matched]


@dataclass
class Decided:
    """Verdicts and what their evidence rests on; ``poison``: (passage id, reason) of vehicles
    that could not be decided; ``failures``: what went wrong, for the operator's log;
    ``differ``: early-decided vehicles the group's join gave other reads."""

    verdicts: list[Record] = field(default_factory=list)
    support: list[Record] = field(default_factory=list)
    poison: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    differ: list[str] = field(default_factory=list)


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


MEASURES = {"measure_passages": measure_passages, "measure_controller": measure_controller}


@dataclass
class Measured:
    """Measured vehicles; ``rejected``: (passage id, reason, message) of records a check
    refused; ``poison``: (passage id, reason) of records the kernel failed on."""

    vehicles: list[Record] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)
    poison: list[tuple[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, vehicles: list[Record], rejected: list[Any]) -> None:
        self.vehicles += vehicles
        self.rejected += [(r.record["passage_id"], r.reason, r.message) for r in rejected]


def measure_isolating(stage: str, records: list[Record], registry: Registry) -> Measured:
    """A batch in one kernel call (``stage``: a name in ``MEASURES``); should that raise (a
    record no check foresaw), record by record, so that only the poison record is lost.
    Passage ids are unique in ``records``."""
    measure, out = MEASURES[stage], Measured()
    try:
        out.add(*measure(records, registry))
        return out
    except Exception as exc:  # noqa: BLE001 - isolated below, each failure reported
        out.failures.append(f"measuring a batch failed ({_reason(exc)}); isolating the record")
    for record in records:
        try:
            out.add(*measure([record], registry))
        except Exception as exc:  # noqa: BLE001 - the poison record, with its reason
            out.poison.append((record["passage_id"], _reason(exc)))
    return out


def decide_cut(
    job: GroupJob, registry: Registry, policy: Policy, join: JoinParams | None = None
) -> Decided:
    """A cut group in one call; should that raise (nothing foreseen does), its vehicles one by
    one with the group's reads, so that only the poison vehicle is lost."""
    try:
        verdicts, support, differ = decide_group(
            job.vehicles, job.reads, registry, policy, job.early, join
        )
        return Decided(verdicts, support, differ=differ)
    except Exception as exc:  # noqa: BLE001 - isolated below, each failure reported
        out = Decided(failures=[f"deciding the group failed ({_reason(exc)}); isolating"])
    for vehicle in job.vehicles:
        if vehicle["passage_id"] in job.early:
            continue
        try:
            verdicts, support = decide_with_support(
                [vehicle], job.reads, registry, policy, join=join
            )
        except Exception as exc:  # noqa: BLE001 - the poison vehicle, with its reason
            out.poison.append((vehicle["passage_id"], _reason(exc)))
            continue
        out.verdicts += verdicts
        out.support += support
    return out


def decide_settled(job: EarlyJob, registry: Registry, policy: Policy) -> Decided:
    """Early-settled vehicles; one that cannot be decided (nothing foreseen) is left to its
    group, which dead-letters it should it fail there too — so no poison here."""
    try:
        verdicts, support = decide_with_support(job.vehicles, [], registry, policy, job.matched)
        return Decided(verdicts, support)
    except Exception as exc:  # noqa: BLE001 - left to the group's decision, reported
        out = Decided(failures=[f"deciding early failed ({_reason(exc)}); left to its group"])
    for vehicle, matched in zip(job.vehicles, job.matched, strict=True):
        try:
            verdicts, support = decide_with_support([vehicle], [], registry, policy, [matched])
        except Exception as exc:  # noqa: BLE001 - left to the group's decision, reported
            out.failures.append(f"deciding {vehicle['passage_id']} early failed: {_reason(exc)}")
            continue
        out.verdicts += verdicts
        out.support += support
    return out


def decide_round(
    cuts: list[GroupJob],
    settled: list[EarlyJob],
    registry: Registry,
    policy: Policy,
    join: JoinParams | None = None,
) -> tuple[list[Decided], list[Decided]]:
    """Every group of a round, in order: one result per cut group, one per early group (whose
    reads were matched already)."""
    return (
        [decide_cut(job, registry, policy, join) for job in cuts],
        [decide_settled(job, registry, policy) for job in settled],
    )


@cache
def loaded(registry_path: Path, policy_name: str) -> tuple[Registry, Policy]:
    """The registry and policy a helper process decides with, loaded once per process."""
    registry = load_registry(registry_path)
    return registry, load_policy(policy_name or registry.policy)


def decide_round_at(
    registry_path: Path,
    policy_name: str,
    cuts: list[GroupJob],
    settled: list[EarlyJob],
    join: JoinParams | None = None,
) -> tuple[list[Decided], list[Decided]]:
    """``decide_round`` in a helper process, which knows the registry and policy by name."""
    return decide_round(cuts, settled, *loaded(registry_path, policy_name), join)


def judge_gateway_at(
    registry_path: Path,
    policy_name: str,
    messages: list[tuple[bytes, str]],
    clock: Clock | None,
    now_s: float,
    listed: frozenset[str],
) -> GatewayRound:
    """``streams.gateway.judge_messages`` in a helper process."""
    return judge_messages(messages, *loaded(registry_path, policy_name), clock, now_s, listed)


def measure_at(
    registry_path: Path, policy_name: str, stage: str, records: list[Record]
) -> Measured:
    """``measure_isolating`` in a helper process."""
    return measure_isolating(stage, records, loaded(registry_path, policy_name)[0])


def ready_at(registry_path: Path, policy_name: str, join: JoinParams | None = None) -> int:
    """Load a helper process's registry and compile its kernels before the first batch needs
    them (seconds; the worker compiles its own meanwhile); its pid, for the log."""
    warm_up(*loaded(registry_path, policy_name), settle_too=False, join=join)
    return os.getpid()
