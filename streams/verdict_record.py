"""The verdict record of a measured vehicle: its plate identity, the fields of the verdict
kernel's row, and the hash its evidence is sealed with. Shared by the per-vehicle stages
(``streams.stages``) and the gateway's batches (``streams.gateway``), so that a verdict reads the
same whichever way it was decided.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from kernels import plates
from kernels.verdicts import VERDICT_NAMES, VerdictResult
from schemas import flags as F
from schemas.policy import Policy
from schemas.registry import Registry

CONFLICT_CONFIDENCE = 0.9  # front and rear both this sure and still different: a real conflict


@dataclass(frozen=True)
class Identity:
    plate_front: str
    plate_rear: str
    confidence: float  # the probability that plate_front is right (kernels.plates.calibration)
    flags: int
    read_ids: tuple[str, ...]
    rear_plate: int = 0  # what the rear plate says of the body (kernels.verdicts.REAR_*)
    score: float = 0.0  # the fusion score the probability was calibrated from
    views: int = 0  # cameras whose reads were fused into plate_front


def verdict_record(
    m: dict[str, Any],
    ident: Identity,
    result: VerdictResult,
    i: int,
    registry: Registry,
    policy: Policy,
) -> dict[str, Any]:
    """The verdict of measured vehicle ``m`` (row ``i`` of the kernel's ``result``)."""
    site = registry.sites.get(m["site_id"])
    c = int(result.class_index[i])
    identified = bool(ident.plate_front or ident.plate_rear)
    verdict = {
        "passage_id": m["passage_id"],
        "site_id": m["site_id"],
        "lane": m["lane"],
        "direction": m["direction"],
        "ts_us": m["ts_us"],
        "speed_kmh": round(m["speed_kmh"], 3),
        "axle_count": m["axle_count"],
        "axle_loads_kg": [round(x, 1) for x in m["axle_loads_kg"]],
        "axle_spacings_m": [round(x, 3) for x in m["axle_spacings_m"]],
        "gvw_kg": round(m["gvw_kg"], 1),
        "vehicle_class": policy.class_codes[c] if c >= 0 else "unclassified",
        "limit_kg": _finite(result.limit_kg[i]),
        "excess_kg": _finite(result.excess_kg[i], 1),
        "overload_pct": _finite(result.overload_pct[i], 2),
        "verdict": VERDICT_NAMES[int(result.verdict[i])],
        "enforceable": bool(result.enforceable[i]),
        "plate_front": ident.plate_front,
        "plate_rear": ident.plate_rear,
        "plate_confidence": round(ident.confidence, 4),
        "local": bool(
            site
            and identified
            and plates.is_local(ident.plate_front or ident.plate_rear, site.authority)
        ),
        "flags": F.to_names(result.flags[i]),
        "policy_version": policy.version,
        "evidence_hash": "",
        "device_id": m["device_id"],
        "fine_cny": policy.fine_cny(float(result.excess_kg[i])) if result.verdict[i] == 2 else 0,
        "enforce_threshold_kg": _finite(result.enforce_threshold_kg[i], 1),
    }
    verdict["evidence_hash"] = _evidence_hash(verdict, m.get("samples_sha256"), ident.read_ids)
    return verdict


def _finite(value: float, digits: int = 1) -> float:
    """Verdict fields are Avro floats: NaN (unclassified) is written as 0 with the flag set."""
    return round(float(value), digits) if np.isfinite(value) else 0.0


def _evidence_hash(
    verdict: dict[str, Any], samples_sha256: str | None, read_ids: tuple[str, ...]
) -> str:
    body = {k: v for k, v in verdict.items() if k != "evidence_hash"}
    body["samples_sha256"] = samples_sha256
    body["read_ids"] = list(read_ids)
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
