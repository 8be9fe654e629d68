"""The verdict kernel written out per vehicle, reading the Policy object directly."""

from __future__ import annotations

import itertools
import math

from schemas import flags as F


def groupings(spacings, group_max, tol):
    """Every way the spacings can be read into groups within the tolerance: (group sizes, gaps,
    read as measured)."""
    roles = []
    for s in spacings:
        options = []
        if s < group_max + tol:
            options.append(("in", s < group_max))
        if s >= group_max - tol:
            options.append(("gap", s >= group_max))
        roles.append(options)
    for choice in itertools.product(*roles):
        sizes, gaps = [1], []
        for (role, _), s in zip(choice, spacings, strict=True):
            if role == "in":
                sizes[-1] += 1
            else:
                sizes.append(1)
                gaps.append(s)
        yield sizes, gaps, all(exact for _, exact in choice)


def classify(k, spacings, policy, rear=0):
    """(class or None, candidate classes), written from the policy's configurations."""
    if not 2 <= k <= len(policy.pattern_groups[0]):
        return None, set()
    tol = policy.ambiguity_tolerance_m
    found = []  # (score, order, class)
    for sizes, gaps, exact in groupings(spacings[: k - 1], policy.group_spacing_max_m, tol):
        for p, c in enumerate(policy.pattern_class):
            wanted = [g for g in policy.pattern_groups[p] if g]
            if wanted != sizes:
                continue
            lo, hi = policy.pattern_gap_lo_m[p], policy.pattern_gap_hi_m[p]
            if not all(lo[j] - tol <= g <= hi[j] + tol for j, g in enumerate(gaps)):
                continue
            combined = bool(policy.class_combination[c])
            if rear == 1 and not combined:
                continue
            inside = exact and all(lo[j] <= g <= hi[j] for j, g in enumerate(gaps))
            supported = (rear == 2 and not combined) or (rear == 1 and combined)
            found.append((4 * supported + (2 if inside else 1), -p, int(c)))
    if not found:
        return None, set()
    return max(found)[2], {c for _, _, c in found}


def verdict(v: dict, policy) -> dict:
    fl = v["flags"]
    k, sp = v["axle_count"], v["spacings"]
    c, candidates = classify(k, sp, policy, v.get("rear", 0))
    if not v["cert_from"] <= v["ts"] < v["cert_to"]:
        fl |= F.CERT_EXPIRED
    if v["plate_conf"] <= 0:
        fl |= F.UNIDENTIFIED
    elif v["plate_conf"] < policy.min_plate_confidence:
        fl |= F.LOW_PLATE_CONFIDENCE
    if not policy.speed_min_kmh <= v["speed"] <= policy.speed_max_kmh:
        fl |= F.SPEED_OUT_OF_RANGE
    if c is None:
        return {"class": -1, "verdict": 0, "enforceable": False, "flags": fl | F.UNCLASSIFIED}
    if candidates != {c}:
        fl |= F.CLASS_AMBIGUOUS

    def with_air(cc):
        air_limit = policy.class_air_limit_kg[cc]
        return (
            air_limit
            if air_limit > 0
            else policy.class_limit_kg[cc] + policy.class_air_bonus_kg[cc]
        )

    limit = with_air(c) if v["air"] == 1 else policy.class_limit_kg[c]
    reduction = policy.single_tyre_reduction_kg * max(v["single"], 0)
    limit -= reduction
    elimit = max(policy.class_limit_kg[x] for x in candidates)
    if v["air"] != 0:
        elimit = max([elimit] + [with_air(x) for x in candidates])
    elimit -= reduction
    excess = v["gvw"] - limit
    tolerance = policy.margin_pct / 100 * limit
    if excess <= tolerance:
        result = 0
    elif excess <= tolerance + policy.warning_band_kg:
        result = 1
    else:
        result = 2
    err = v["err"] / 100 if policy.add_device_error_bound else 0.0
    threshold = (elimit * (1 + policy.margin_pct / 100) + policy.warning_band_kg) / (1 - err)
    enforceable = (
        result == 2
        and v["gvw"] > threshold
        and not fl & policy.forbidding_mask
        and v["plate_conf"] >= policy.min_plate_confidence
    )
    return {
        "class": c,
        "limit": limit,
        "elimit": elimit,
        "excess": excess,
        "pct": 100 * excess / limit,
        "verdict": result,
        "enforceable": enforceable,
        "threshold": threshold if math.isfinite(threshold) else math.inf,
        "flags": fl,
    }
