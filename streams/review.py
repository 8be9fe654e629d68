"""The review's second opinion: a case's weighing decided again from its evidence record.

The record holds the measured vehicle (the axle loads, spacings and the digest of the raw sensor
samples they were computed from) and the camera reads it was matched to. They go through
``decide_with_support``, the code ``zhichao replay`` and the worker decide with, under the
policy and registry in force, and the verdict that comes out is compared with the one sealed.
They agree when the verdict's hash is the same (every field, the samples digest and the reads).
A reviewer sees the fields that differ: a device whose 检定 was withdrawn since, or a policy
that changed, shows here before a case is filed on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kernels.plates import JoinParams
from schemas.policy import Policy
from schemas.registry import Registry
from streams.stages import decide_with_support

COMPARED = (  # the verdict's fields a reviewer reads, in the order the desk lists differences
    "verdict",
    "enforceable",
    "vehicle_class",
    "gvw_kg",
    "limit_kg",
    "excess_kg",
    "overload_pct",
    "enforce_threshold_kg",
    "fine_cny",
    "plate_front",
    "plate_rear",
    "plate_confidence",
    "local",
    "flags",
    "axle_loads_kg",
    "axle_spacings_m",
    "policy_version",
)


@dataclass(frozen=True)
class Redecision:
    agrees: bool | None  # None: the record holds nothing to decide again from
    reason: str  # agrees, differs, no_measurement, undecidable
    message: str
    differs: tuple[str, ...] = ()
    verdict: dict[str, Any] | None = None  # as decided now

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def redecide(
    record: dict[str, Any],
    registry: Registry,
    policy: Policy,
    join: JoinParams | None = None,
) -> Redecision:
    """Decide the weighing of evidence record body ``record`` again and compare."""
    measured, reads, sealed = record.get("measurement"), record.get("reads"), record["verdict"]
    if not isinstance(measured, dict) or not isinstance(reads, dict):
        return Redecision(None, "no_measurement", "证据记录未含测量数据（网关批次），无法重新判定")
    try:
        verdicts, _ = decide_with_support(
            [measured],
            [],
            registry,
            policy,
            matched=[(list(reads.get("front", [])), list(reads.get("rear", [])))],
            join=join,
        )
    except (KeyError, TypeError, ValueError) as exc:  # a record this code cannot read
        return Redecision(None, "undecidable", f"无法按证据记录重新判定：{exc}")
    now = verdicts[0]
    if now["evidence_hash"] == sealed.get("evidence_hash"):
        return Redecision(True, "agrees", "按证据记录重新判定，结果一致", (), now)
    differs = tuple(k for k in COMPARED if now.get(k) != sealed.get(k))
    if now["policy_version"] != sealed.get("policy_version"):
        message = (
            f"重新判定与原判定不一致：原判定依据政策 {sealed.get('policy_version')}，"
            f"现行政策为 {now['policy_version']}"
        )
    else:
        message = "重新判定与原判定不一致：" + "、".join(differs or ("证据摘要",))
    return Redecision(False, "differs", message, differs, now)
