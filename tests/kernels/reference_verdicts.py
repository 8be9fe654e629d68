"""The verdict kernel written out per vehicle, reading the Policy object directly."""

from __future__ import annotations

import math

from schemas import flags as F


def classify(k, spacings, policy, comb_gap, group_max):
    if k < 2:
        return None
    gaps = [j for j in range(1, k - 1) if spacings[j] >= comb_gap]
    combination = bool(gaps)
    single_drive = None
    if combination:
        g = gaps[0]
        single_drive = g == 1 or spacings[g - 1] >= group_max
    for c, code in enumerate(policy.class_codes):
        if not policy.class_axles_min[c] <= k <= policy.class_axles_max[c]:
            continue
        if bool(policy.class_combination[c]) != combination:
            continue
        wanted = policy.class_single_drive[c]
        if wanted == -1 or (single_drive is not None and bool(wanted) == single_drive):
            return c
    return None


def verdict(v: dict, policy) -> dict:
    fl = v["flags"]
    k, sp = v["axle_count"], v["spacings"]
    c = classify(k, sp, policy, policy.combination_gap_min_m, policy.group_spacing_max_m)
    lenient = classify(
        k,
        sp,
        policy,
        policy.combination_gap_min_m - policy.ambiguity_tolerance_m,
        policy.group_spacing_max_m + policy.ambiguity_tolerance_m,
    )
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
    if lenient != c:
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
    candidates = [c] if lenient is None else [c, lenient]
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
