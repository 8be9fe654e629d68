"""Overload verdicts over a batch of measured vehicles (Numba), driven by policy arrays.

Per vehicle:

1. **Class** from the whole axle pattern: axles closer than ``group_spacing_max_m`` form a
   group, and the vehicle's groups and the gaps between them are matched against the policy's
   axle configurations (GB 1589-2016: rigid trucks, tractor–semitrailers, trucks with drawbar or
   centre-axle trailers, twin-steer rigids and tractors). Each spacing may be read
   ``ambiguity_tolerance_m`` either way, so a vehicle can fit several configurations: every
   class among them is a *candidate*. A 挂 plate read at the rear camera rules out the rigid
   ones; a rear plate equal to the front one makes a rigid one the likelier. The vehicle's
   class is the candidate that the plates support, then the one fitted without tolerance, then
   the policy's first; none fits -> ``unclassified``.
2. **Limit** = the class limit with the adjustments the data supports: air suspension (bonus or
   replacement limit) when the input says so, −3000 kg per single-tyre non-drive axle when a
   tyre identifier counted them.
3. **Verdict**: excess = GVW − limit; ``ok`` within the policy margin, ``warning`` within the
   1000 kg band above it (62号令 Art. 43), else ``overlimit``.
4. **Enforceable** is stricter, because a fine must survive every doubt:
   - the *enforcement limit* takes every unknown in the vehicle's favour: the highest limit
     among the candidate classes, air suspension unless the input says none, no single-tyre
     reduction unless counted;
   - the measured GVW minus the device's error bound for its accuracy class must exceed that
     limit (with the margin) by more than the warning band;
   - the device's 检定 certificate must be valid at the passage time, the plate identified with
     at least ``min_plate_confidence``, the speed inside the policy range, and no flag in the
     policy's forbidding set may be present.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from kernels import config
from kernels.axles import MAX_AXLES
from schemas import flags as F
from schemas.policy import Policy

OK, WARNING, OVERLIMIT = 0, 1, 2
VERDICT_NAMES = ("ok", "warning", "overlimit")
AIR_UNKNOWN, AIR_NO, AIR_YES = -1, 0, 1
# what the rear camera says about the body: nothing, a 挂 trailer plate, or the front plate again
REAR_UNKNOWN, REAR_TRAILER, REAR_SAME = 0, 1, 2


@dataclass(frozen=True)
class VerdictInputs:
    """One row per vehicle; arrays of equal length."""

    axle_count: np.ndarray  # int32
    axle_spacings_m: np.ndarray  # float64 [n, MAX_AXLES - 1]
    gvw_kg: np.ndarray  # float64
    speed_kmh: np.ndarray  # float64
    flags: np.ndarray  # uint32, measurement and identity flags so far
    ts_us: np.ndarray  # int64, passage time
    cert_from_us: np.ndarray  # int64, 检定 valid from (inclusive)
    cert_to_us: np.ndarray  # int64, valid to (exclusive)
    device_error_pct: np.ndarray  # float64, error bound of the device's accuracy class
    plate_confidence: np.ndarray  # float64, 0 when unidentified
    air_suspension: np.ndarray  # int8: -1 unknown, 0 no, 1 yes
    single_tyre_axles: np.ndarray  # int32: qualifying single-tyre axles, -1 unknown
    rear_plate: np.ndarray | int = REAR_UNKNOWN  # int8: REAR_UNKNOWN, REAR_TRAILER, REAR_SAME


@dataclass(frozen=True)
class VerdictResult:
    class_index: np.ndarray  # int32, -1 unclassified
    limit_kg: np.ndarray
    enforce_limit_kg: np.ndarray
    excess_kg: np.ndarray
    overload_pct: np.ndarray
    verdict: np.ndarray  # int8: 0 ok, 1 warning, 2 overlimit
    enforceable: np.ndarray  # bool
    enforce_threshold_kg: np.ndarray  # the measured GVW above which a fine would hold
    flags: np.ndarray  # uint32


@njit(fastmath=config.FASTMATH, cache=config.CACHE, inline="always")
def _fits(k, spacings, i, groups, n_groups, lo, hi, p, group_max, tol):
    """How axle configuration ``p`` (of ``n_groups`` groups, ``k`` axles) fits vehicle i: 0 not,
    1 only within the tolerance, 2 as measured. Within a group every spacing is below
    ``group_max``; between groups each is at least ``group_max`` and inside the
    configuration's range for that gap."""
    strict = True
    j = 0
    for g in range(n_groups):
        for _ in range(groups[p, g] - 1):
            s = spacings[i, j]
            j += 1
            if s >= group_max + tol:
                return 0
            if s >= group_max:
                strict = False
        if g < n_groups - 1:
            s = spacings[i, j]
            j += 1
            if s < group_max - tol or s < lo[p, g] - tol or s > hi[p, g] + tol:
                return 0
            if s < group_max or s < lo[p, g] or s > hi[p, g]:
                strict = False
    return 2 if strict else 1


@njit(fastmath=config.FASTMATH, cache=config.CACHE, inline="always")
def _classify(
    k, spacings, i, rear, of_class, axles, groups, n_groups, lo, hi, combination, group_max, tol
):
    """(class, candidate classes as a bit mask) of vehicle i; class -1 when nothing fits."""
    best = -1
    best_score = -1
    mask = np.int64(0)
    if k < 2 or k > groups.shape[1]:
        return best, mask
    for p in range(of_class.size):
        if axles[p] != k:
            continue
        fit = _fits(k, spacings, i, groups, n_groups[p], lo, hi, p, group_max, tol)
        if fit == 0:
            continue
        c = of_class[p]
        combined = combination[c] != 0
        if rear == REAR_TRAILER and not combined:
            continue  # a 挂 plate at the rear: a combination, whatever the axles suggest
        mask |= np.int64(1) << c
        supported = (rear == REAR_SAME and not combined) or (rear == REAR_TRAILER and combined)
        score = (4 if supported else 0) + fit
        if score > best_score:  # ties: the policy's order, most common first
            best, best_score = c, score
    return best, mask


@njit(fastmath=config.FASTMATH, cache=config.CACHE)
def _verdicts(
    count,
    spacings,
    gvw,
    speed,
    flags_in,
    ts,
    cert_from,
    cert_to,
    err_pct,
    plate_conf,
    air,
    single_tyres,
    rear,
    of_class,
    axles,
    groups,
    n_groups,
    gap_lo,
    gap_hi,
    combination,
    limit_kg,
    air_bonus,
    air_limit,
    scal,
    forbidding,
    out_class,
    out_limit,
    out_elimit,
    out_excess,
    out_pct,
    out_verdict,
    out_enf,
    out_threshold,
    out_flags,
):
    group_max, tol_m = scal[0], scal[1]
    reduction, band, margin, add_err = scal[2], scal[3], scal[4] / 100.0, scal[5]
    min_conf, v_min, v_max = scal[6], scal[7], scal[8]
    for i in range(count.size):
        fl = np.int64(flags_in[i])
        k = count[i]
        c, candidates = _classify(
            k,
            spacings,
            i,
            rear[i],
            of_class,
            axles,
            groups,
            n_groups,
            gap_lo,
            gap_hi,
            combination,
            group_max,
            tol_m,
        )
        if not (cert_from[i] <= ts[i] < cert_to[i]):
            fl |= F.CERT_EXPIRED
        if plate_conf[i] <= 0.0:
            fl |= F.UNIDENTIFIED
        elif plate_conf[i] < min_conf:
            fl |= F.LOW_PLATE_CONFIDENCE
        if speed[i] < v_min or speed[i] > v_max:
            fl |= F.SPEED_OUT_OF_RANGE
        out_class[i] = c
        if c < 0:
            fl |= F.UNCLASSIFIED
            out_limit[i] = np.nan
            out_elimit[i] = np.nan
            out_excess[i] = np.nan
            out_pct[i] = np.nan
            out_verdict[i] = 0
            out_enf[i] = False
            out_threshold[i] = np.nan
            out_flags[i] = fl
            continue
        if candidates != np.int64(1) << c:
            fl |= F.CLASS_AMBIGUOUS
        # legal limit: the adjustments the data supports
        limit = limit_kg[c]
        if air[i] == 1:
            limit = air_limit[c] if air_limit[c] > 0 else limit + air_bonus[c]
        if single_tyres[i] > 0:
            limit -= reduction * single_tyres[i]
        # enforcement limit: every unknown in the vehicle's favour
        elimit = limit_kg[c]
        for e in range(limit_kg.size):
            if candidates & (np.int64(1) << e):
                elimit = max(elimit, limit_kg[e])
                if air[i] != 0:
                    alt = air_limit[e] if air_limit[e] > 0 else limit_kg[e] + air_bonus[e]
                    elimit = max(elimit, alt)
        if single_tyres[i] > 0:
            elimit -= reduction * single_tyres[i]
        excess = gvw[i] - limit
        tolerance = margin * limit
        if excess <= tolerance:
            verdict = 0
        elif excess <= tolerance + band:
            verdict = 1
        else:
            verdict = 2
        err = err_pct[i] / 100.0 if add_err > 0 else 0.0
        threshold = (elimit * (1.0 + margin) + band) / (1.0 - err) if err < 1.0 else np.inf
        enforceable = verdict == 2 and gvw[i] > threshold and (fl & forbidding) == 0
        if enforceable and plate_conf[i] < min_conf:
            enforceable = False
        out_limit[i] = limit
        out_elimit[i] = elimit
        out_excess[i] = excess
        out_pct[i] = 100.0 * excess / limit
        out_verdict[i] = verdict
        out_enf[i] = enforceable
        out_threshold[i] = threshold
        out_flags[i] = fl


def _column(name: str, value, dtype, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    arr = np.full(n, arr, dtype=dtype) if arr.ndim == 0 else np.ascontiguousarray(arr)
    if arr.shape[:1] != (n,):
        raise ValueError(f"{name}: expected {n} rows, got shape {arr.shape}")
    return arr


def decide(inputs: VerdictInputs, policy: Policy) -> VerdictResult:
    """Verdicts for a batch. Scalars in ``inputs`` broadcast; read-only arrays are fine."""
    n = np.asarray(inputs.axle_count).shape[0]
    spacings = np.ascontiguousarray(inputs.axle_spacings_m, dtype=np.float64)
    if spacings.shape != (n, MAX_AXLES - 1):
        raise ValueError(f"axle_spacings_m must be [n, {MAX_AXLES - 1}], got {spacings.shape}")
    cols = {
        "count": _column("axle_count", inputs.axle_count, np.int64, n),
        "gvw": _column("gvw_kg", inputs.gvw_kg, np.float64, n),
        "speed": _column("speed_kmh", inputs.speed_kmh, np.float64, n),
        "flags": _column("flags", inputs.flags, np.uint32, n),
        "ts": _column("ts_us", inputs.ts_us, np.int64, n),
        "cert_from": _column("cert_from_us", inputs.cert_from_us, np.int64, n),
        "cert_to": _column("cert_to_us", inputs.cert_to_us, np.int64, n),
        "err": _column("device_error_pct", inputs.device_error_pct, np.float64, n),
        "conf": _column("plate_confidence", inputs.plate_confidence, np.float64, n),
        "air": _column("air_suspension", inputs.air_suspension, np.int8, n),
        "tyres": _column("single_tyre_axles", inputs.single_tyre_axles, np.int64, n),
        "rear": _column("rear_plate", inputs.rear_plate, np.int8, n),
    }
    if np.any((cols["rear"] < REAR_UNKNOWN) | (cols["rear"] > REAR_SAME)):
        raise ValueError("rear_plate must be REAR_UNKNOWN, REAR_TRAILER or REAR_SAME")
    if np.any(~np.isfinite(cols["gvw"])):
        raise ValueError("gvw_kg must be finite (flag bad measurements instead of passing NaN)")
    scal = np.array(
        [
            policy.group_spacing_max_m,
            policy.ambiguity_tolerance_m,
            policy.single_tyre_reduction_kg,
            policy.warning_band_kg,
            policy.margin_pct,
            1.0 if policy.add_device_error_bound else 0.0,
            policy.min_plate_confidence,
            policy.speed_min_kmh,
            policy.speed_max_kmh,
        ]
    )
    out = VerdictResult(
        class_index=np.empty(n, np.int32),
        limit_kg=np.empty(n),
        enforce_limit_kg=np.empty(n),
        excess_kg=np.empty(n),
        overload_pct=np.empty(n),
        verdict=np.empty(n, np.int8),
        enforceable=np.empty(n, np.bool_),
        enforce_threshold_kg=np.empty(n),
        flags=np.empty(n, np.uint32),
    )
    if n:
        _verdicts(
            cols["count"],
            spacings,
            cols["gvw"],
            cols["speed"],
            cols["flags"],
            cols["ts"],
            cols["cert_from"],
            cols["cert_to"],
            cols["err"],
            cols["conf"],
            cols["air"],
            cols["tyres"],
            cols["rear"],
            policy.pattern_class,
            policy.pattern_axles,
            policy.pattern_groups,
            policy.pattern_group_count,
            policy.pattern_gap_lo_m,
            policy.pattern_gap_hi_m,
            policy.class_combination,
            policy.class_limit_kg,
            policy.class_air_bonus_kg,
            policy.class_air_limit_kg,
            scal,
            np.int64(policy.forbidding_mask),
            out.class_index,
            out.limit_kg,
            out.enforce_limit_kg,
            out.excess_kg,
            out.overload_pct,
            out.verdict,
            out.enforceable,
            out.enforce_threshold_kg,
            out.flags,
        )
    return out


def warm_up(policy: Policy) -> None:
    """Compile the verdict kernel now (about a second), not on the first live batch."""
    one = np.ones(1)
    decide(
        VerdictInputs(
            axle_count=np.array([2], dtype=np.int32),
            axle_spacings_m=np.zeros((1, MAX_AXLES - 1)),
            gvw_kg=one * 18_000.0,
            speed_kmh=one * 60.0,
            flags=0,
            ts_us=0,
            cert_from_us=0,
            cert_to_us=1,
            device_error_pct=5.0,
            plate_confidence=1.0,
            air_suspension=AIR_UNKNOWN,
            single_tyre_axles=-1,
        ),
        policy,
    )
