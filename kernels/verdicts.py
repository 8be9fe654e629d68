"""Overload verdicts over a batch of measured vehicles (Numba), driven by policy arrays.

Per vehicle:

1. **Class** from the axle count and spacings: a spacing after the first that is at least
   ``combination_gap_min_m`` is the tractor–trailer gap (a combination); the tractor's drive axle
   is single when the tractor has two axles or its last spacing is at least
   ``group_spacing_max_m``. The class is the policy row whose axle range, combination and
   drive-axle fields match; none matches -> ``unclassified``.
2. **Limit** = the class limit with the adjustments the data supports: air suspension (bonus or
   replacement limit) when the input says so, −3000 kg per single-tyre non-drive axle when a
   tyre identifier counted them.
3. **Verdict**: excess = GVW − limit; ``ok`` within the policy margin, ``warning`` within the
   1000 kg band above it (62号令 Art. 43), else ``overlimit``.
4. **Enforceable** is stricter, because a fine must survive every doubt:
   - the *enforcement limit* takes every unknown in the vehicle's favour: air suspension unless
     the input says none, no single-tyre reduction unless counted, and the more lenient class
     when a spacing lies within ``ambiguity_tolerance_m`` of a threshold;
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
def _classify(k, spacings, i, comb_gap, group_max, tol, table):
    """(class, lenient class) of vehicle i via ``table[k, combination, drive + 1]`` (-1 = none).

    The lenient reading moves both thresholds by ``tol`` toward the higher limit: a shorter
    tractor-trailer gap still counts as a combination, a longer drive spacing still a tandem.
    One pass over the spacings finds both gaps.
    """
    if k < 2:
        return -1, -1
    kk = min(k, MAX_AXLES)
    gap = -1
    gap_lenient = -1
    for j in range(1, k - 1):
        s = spacings[i, j]
        if gap_lenient < 0 and s >= comb_gap - tol:
            gap_lenient = j
        if s >= comb_gap:
            gap = j
            break
    if gap < 0:
        strict = table[kk, 0, 0]
    else:
        strict = table[kk, 1, 2 if (gap == 1 or spacings[i, gap - 1] >= group_max) else 1]
    if gap_lenient < 0:
        lenient = table[kk, 0, 0]
    else:
        single = gap_lenient == 1 or spacings[i, gap_lenient - 1] >= group_max + tol
        lenient = table[kk, 1, 2 if single else 1]
    return strict, lenient


def class_table(policy: Policy) -> np.ndarray:
    """int32 [MAX_AXLES + 1, 2, 3]: the policy class of (axle count, combination, drive axle),
    drive = -1 (rigid), 0 (tandem drive), 1 (single drive); -1 where no class matches. Kept on
    the (immutable) policy after the first call: the kernel is called once per batch."""
    table = policy.__dict__.get("_class_table")
    if table is None:
        table = _class_table(policy)
        table.setflags(write=False)
        object.__setattr__(policy, "_class_table", table)
    return table


def _class_table(policy: Policy) -> np.ndarray:
    table = np.full((MAX_AXLES + 1, 2, 3), -1, dtype=np.int32)
    for k in range(2, MAX_AXLES + 1):
        for comb, drives in ((0, (-1,)), (1, (0, 1))):
            for drive in drives:
                for c in range(len(policy.class_codes)):
                    fits = policy.class_axles_min[c] <= k <= policy.class_axles_max[c]
                    wanted = policy.class_single_drive[c]
                    if fits and policy.class_combination[c] == comb and wanted in (-1, drive):
                        table[k, comb, drive + 1] = c
                        break
    return table


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
    table,
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
    comb_gap, group_max, tol_m = scal[0], scal[1], scal[2]
    reduction, band, margin, add_err = scal[3], scal[4], scal[5] / 100.0, scal[6]
    min_conf, v_min, v_max = scal[7], scal[8], scal[9]
    for i in range(count.size):
        fl = np.int64(flags_in[i])
        k = count[i]
        c, lenient = _classify(k, spacings, i, comb_gap, group_max, tol_m, table)
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
        if lenient != c:
            fl |= F.CLASS_AMBIGUOUS
        # legal limit: the adjustments the data supports
        limit = limit_kg[c]
        if air[i] == 1:
            limit = air_limit[c] if air_limit[c] > 0 else limit + air_bonus[c]
        if single_tyres[i] > 0:
            limit -= reduction * single_tyres[i]
        # enforcement limit: every unknown in the vehicle's favour
        e = c if lenient < 0 else lenient
        elimit = max(limit_kg[c], limit_kg[e])
        if air[i] != 0:
            alt_c = air_limit[c] if air_limit[c] > 0 else limit_kg[c] + air_bonus[c]
            alt_e = air_limit[e] if air_limit[e] > 0 else limit_kg[e] + air_bonus[e]
            elimit = max(elimit, alt_c, alt_e)
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
    }
    if np.any(~np.isfinite(cols["gvw"])):
        raise ValueError("gvw_kg must be finite (flag bad measurements instead of passing NaN)")
    scal = np.array(
        [
            policy.combination_gap_min_m,
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
            class_table(policy),
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
