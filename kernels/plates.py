"""Plate matching: normalisation, confusion-weighted distance, read fusion (M2), site join (M1).

The distance and the site-join assignment run in the Cython module ``_plates`` when it is
built, else in its pure-Python twin (``NATIVE`` says which). Costs are data: a
:class:`CostModel` is built from the table in ``schemas/policy/plate-costs.yaml`` for the
local province of a site, or from a learned matrix.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np

from schemas.plate_grammar import (
    CODE,
    MAX_PLATE_LEN,
    N_CODES,
    PROVINCES,
    SUFFIXES,
    UNKNOWN,
    authority_of,
    encode_plates,
    is_trailer,
    normalise,
    plate_format,
)
from schemas.settings import Settings

try:
    from kernels import _plates as _impl
except ImportError:  # no compiler on this platform: the twin gives the same answers, slower
    from kernels import _plates_py as _impl

NATIVE = bool(_impl.CYTHON_MODULE)
SCALE = 100  # costs are int32 hundredths in the kernels
SYMBOLS_PER_POSITION = 34  # the serial alphabet; the prior of a character is uniform over it
_IS_SUFFIX = np.zeros(N_CODES, dtype=bool)
_IS_SUFFIX[[CODE[s] for s in SUFFIXES]] = True
NO_CUTOFF = np.iinfo(np.int32).max // 4

__all__ = [
    "NATIVE",
    "CostModel",
    "FusedPlate",
    "cost_model",
    "distance",
    "one_to_many",
    "many_to_many",
    "fuse_reads",
    "Calibration",
    "calibration",
    "evidence_kind",
    "plate_probability",
    "is_local",
    "normalise",
    "plate_format",
    "site_join",
    "authority_of",
]


@dataclass(frozen=True)
class CostModel:
    """Substitution matrix and position-dependent insertion/deletion costs (hundredths)."""

    sub: np.ndarray  # int32 [N_CODES * N_CODES], flattened
    indel_edge: int
    indel_suffix: int
    indel_inner: int

    @classmethod
    def from_table(cls, table: dict[str, Any], local_province: str | None = None) -> CostModel:
        def c(value: float) -> int:
            return round(float(value) * SCALE)

        sub = np.full((N_CODES, N_CODES), c(table["other_substitution"]), dtype=np.int32)
        for p in PROVINCES:
            for q in PROVINCES:
                near = local_province in (p, q)
                key = "province_vs_local_province" if near else "province_vs_province"
                sub[CODE[p], CODE[q]] = c(table[key])
        for kind in ("weak", "strong"):
            for pair in table[f"{kind}_pairs"]:
                x, y = CODE[pair[0]], CODE[pair[1]]
                sub[x, y] = sub[y, x] = c(table[kind])
        unknown = CODE[UNKNOWN]
        sub[unknown, :] = sub[:, unknown] = c(table["unknown_vs_any"])
        np.fill_diagonal(sub, c(table["identical"]))
        return cls(
            sub.reshape(-1).copy(),
            c(table["indel_edge"]),
            c(table["indel_suffix"]),
            c(table["indel_inner"]),
        )

    def indel(self, codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Cost of inserting/deleting each character of each plate: int32 [n, MAX_PLATE_LEN]."""
        n = codes.shape[0]
        out = np.full((n, MAX_PLATE_LEN), self.indel_inner, dtype=np.int32)
        out[_IS_SUFFIX[codes]] = self.indel_suffix
        out[:, 0] = self.indel_edge
        rows = np.flatnonzero(lengths > 0)
        out[rows, lengths[rows] - 1] = self.indel_edge
        return out


@lru_cache(maxsize=64)
def cost_model(local_province: str | None = None) -> CostModel:
    """The default table (plates.md §0.2) for a site in ``local_province``."""
    from schemas.plate_costs import load_plate_costs

    return CostModel.from_table(load_plate_costs(), local_province)


@dataclass(frozen=True)
class EncodedPlates:
    codes: np.ndarray
    lengths: np.ndarray
    indel: np.ndarray

    @classmethod
    def of(cls, plates: list[str], model: CostModel) -> EncodedPlates:
        codes, lengths = encode_plates(plates)
        return cls(codes, lengths, model.indel(codes, lengths))


def _cutoff(max_cost: float | None) -> int:
    return NO_CUTOFF if max_cost is None else int(round(max_cost * SCALE))


def distance(a: str, b: str, model: CostModel | None = None) -> float:
    """Distance between two canonical plates (plates.md §0.2 units)."""
    if a == b:
        return 0.0
    return float(one_to_many(a, [b], model)[0])


def one_to_many(
    query: str, candidates: list[str], model: CostModel | None = None, max_cost: float | None = None
) -> np.ndarray:
    """Distances from ``query`` to each candidate; above ``max_cost`` only a lower bound."""
    return many_to_many([query], list(candidates), model, max_cost)[0]


def many_to_many(
    a: list[str] | EncodedPlates,
    b: list[str] | EncodedPlates,
    model: CostModel | None = None,
    max_cost: float | None = None,
) -> np.ndarray:
    """Distance matrix [len(a), len(b)] in plate units (int kernel, float result)."""
    return many_to_many_int(a, b, model, max_cost) / SCALE


def many_to_many_int(
    a: list[str] | EncodedPlates,
    b: list[str] | EncodedPlates,
    model: CostModel | None = None,
    max_cost: float | None = None,
) -> np.ndarray:
    """Distance matrix in hundredths (int32), for callers that batch the encoding themselves."""
    model = model or cost_model()
    ea = a if isinstance(a, EncodedPlates) else EncodedPlates.of(list(a), model)
    eb = b if isinstance(b, EncodedPlates) else EncodedPlates.of(list(b), model)
    return _impl.cdist(
        ea.codes,
        ea.lengths,
        ea.indel,
        eb.codes,
        eb.lengths,
        eb.indel,
        model.sub,
        N_CODES,
        _cutoff(max_cost),
    )


def is_local(plate: str, site_authority: str) -> bool:
    """本地车: the plate was issued by the site's own authority (same province and letter)."""
    return bool(plate) and authority_of(plate) == site_authority


# -------------------------------------------------------------------------------------------
# M2: fusion of several reads of one identity
# -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FusedPlate:
    plate: str  # '' when no usable read
    score: float  # Π of per-position vote shares: evidence, not yet a probability
    n_reads: int
    format_valid: bool
    views: int = 1  # cameras among the reads (frames of one camera are one view)

    @classmethod
    def empty(cls) -> FusedPlate:
        return cls("", 0.0, 0, False, 0)


def _distances_of_distinct(plates: list[str], model: CostModel) -> np.ndarray:
    """All pairwise distances, computed once per distinct plate (reads mostly agree)."""
    distinct = sorted(set(plates))
    if len(distinct) == 1:
        return np.zeros((len(plates), len(plates)))
    index = np.array([distinct.index(p) for p in plates])
    d = many_to_many(distinct, distinct, model)
    return d[np.ix_(index, index)]


Read = tuple  # (plate, char_conf | None, confidence[, camera]): one camera read


def fuse_reads(
    reads: list[Read],
    model: CostModel | None = None,
    min_read_conf: float = 0.2,
    agree_within: float = 1.0,
) -> FusedPlate:
    """Fuse reads ``(plate, char_conf, confidence[, camera])`` of one identity (one view, or
    front+rear of a rigid truck). Never mixes 挂 and non-挂 reads: the caller separates them, and
    a mix here keeps only the group of the best read.

    The medoid (least weighted distance to the others; format-valid, then more confident, on
    ties) fixes the length. Same-length reads within ``agree_within`` of it vote per position
    by naive Bayes: a read shows the true character with its character confidence c, any other
    of the K symbols with (1 − c)/(K − 1). Frames of one camera share its view (the same dirt
    gives the same misread), so they are one witness: each frame votes with weight 1/frames of
    its camera. ``score`` is the product of the per-position posteriors, discounted by the
    share of read confidence that lies farther than ``agree_within`` from the medoid (reads of
    something else). It orders identities by evidence but is not a probability:
    ``calibrated`` turns it into one.
    """
    model = model or cost_model()
    usable = []
    for read in reads:
        plate, char_conf, conf = read[0], read[1], read[2]
        camera = read[3] if len(read) > 3 else None
        plate = normalise(plate)
        if not plate or conf < min_read_conf:
            continue
        cc = char_conf if char_conf and len(char_conf) == len(plate) else [conf] * len(plate)
        usable.append((plate, cc, float(conf), camera))
    if not usable:
        return FusedPlate.empty()
    best = max(usable, key=lambda r: (plate_format(r[0]) is not None, r[2]))
    usable = [r for r in usable if is_trailer(r[0]) == is_trailer(best[0])]
    plates = [r[0] for r in usable]
    if len(usable) == 1:
        plate, cc, _, _ = usable[0]
        score = math.prod(min(max(float(c), 0.0), 1.0) for c in cc)
        return FusedPlate(plate, score, 1, plate_format(plate) is not None)
    weights = _witness_weights([r[3] for r in usable])
    if plates.count(plates[0]) == len(plates):
        fused = _fuse_agreeing(usable, weights)
    else:
        fused = _fuse_voting(usable, model, agree_within, weights)
    return replace(fused, views=_views([r[3] for r in usable]))


def _views(cameras: list[Any]) -> int:
    """Independent views among reads: distinct cameras, and each read of an unknown one."""
    return len({c for c in cameras if c is not None}) + sum(c is None for c in cameras)


def _witness_weights(cameras: list[Any]) -> list[float]:
    """Each read's share of its camera's vote: 1 / frames of that camera (1 if unknown)."""
    frames = Counter(c for c in cameras if c is not None)
    return [1.0 if c is None else 1.0 / frames[c] for c in cameras]


def _fuse_voting(
    usable: list[tuple[str, list[float], float, Any]],
    model: CostModel,
    agree_within: float,
    weights: list[float] | None = None,
) -> FusedPlate:
    """``fuse_reads`` of two or more usable reads: medoid, then per-position votes."""
    weights = weights or [1.0] * len(usable)
    plates = [r[0] for r in usable]
    d = _distances_of_distinct(plates, model)
    vote = np.array([r[2] * w for r, w in zip(usable, weights, strict=True)])
    score = d @ vote
    order = sorted(
        range(len(usable)), key=lambda i: (score[i], plate_format(plates[i]) is None, -usable[i][2])
    )
    m = order[0]
    medoid = plates[m]
    near = d[m] <= agree_within
    peers = [
        (r, w)
        for r, w, ok in zip(usable, weights, near, strict=True)
        if ok and len(r[0]) == len(medoid)
    ]
    # reads that disagree with the medoid do not vote; their weight discounts the result
    dissent = float(sum(v for v, ok in zip(vote, near, strict=True) if not ok))
    support = float(sum(r[2] * w for r, w in peers))
    chars, conf = [], support / (support + dissent)
    log_other = math.log(SYMBOLS_PER_POSITION - 1)
    # per read and position: a read showing ch adds w · (log c − (log(1 − c) − log(K − 1))) to
    # ch's score over the all-wrong baseline; posteriors are relative to the best candidate
    for i in range(len(medoid)):
        gain: dict[str, float] = {medoid[i]: 0.0}  # candidates: the medoid's first, then seen
        seen: dict[str, int] = {}
        for (plate, cc, _, _), w in peers:
            c = min(max(cc[i], 0.01), 0.999)
            ch = plate[i]
            gain[ch] = gain.get(ch, 0.0) + w * (math.log(c) - math.log(1.0 - c) + log_other)
            seen[ch] = 1
        candidates = [ch for ch in gain if ch in seen]
        scores = [gain[ch] for ch in candidates]
        top = max(scores)
        unseen = (SYMBOLS_PER_POSITION - len(candidates)) * math.exp(-top)
        posterior = [math.exp(x - top) for x in scores]
        best = max(range(len(candidates)), key=posterior.__getitem__)
        chars.append(candidates[best])
        conf *= posterior[best] / (sum(posterior) + unseen)
    plate = "".join(chars)
    return FusedPlate(plate, float(conf), len(usable), plate_format(plate) is not None)


def _fuse_agreeing(
    usable: list[tuple[str, list[float], float, Any]], weights: list[float] | None = None
) -> FusedPlate:
    """``fuse_reads`` when every read shows the same plate (the usual case): the same arithmetic
    in the same order, without the distances and the candidate bookkeeping. The medoid is that
    plate, nothing dissents, and each position has one candidate, whose posterior against the
    K − 1 unseen symbols is 1 / (1 + (K − 1)·e^−gain)."""
    weights = weights or [1.0] * len(usable)
    plate = usable[0][0]
    log_other = math.log(SYMBOLS_PER_POSITION - 1)
    conf = 1.0
    for i in range(len(plate)):
        gain = 0.0
        for (_, cc, _, _), w in zip(usable, weights, strict=True):
            c = min(max(cc[i], 0.01), 0.999)
            gain = gain + w * (math.log(c) - math.log(1.0 - c) + log_other)
        unseen = (SYMBOLS_PER_POSITION - 1) * math.exp(-gain)
        conf *= 1.0 / (1.0 + unseen)
    return FusedPlate(plate, float(conf), len(usable), plate_format(plate) is not None)


# -------------------------------------------------------------------------------------------
# Calibration: from a fusion score to the probability that the plate is right
# -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """A monotone map from score to probability, linear between its knots (an isotonic fit's
    steps, as ``schemas/policy/plate-calibration.yaml`` keeps them)."""

    score: np.ndarray  # knots, increasing, from 0 to 1
    probability: np.ndarray  # non-decreasing, in [0, 1]

    def __call__(self, score: np.ndarray | float) -> np.ndarray:
        return np.interp(score, self.score, self.probability)


IDENTITY = Calibration(np.array([0.0, 1.0]), np.array([0.0, 1.0]))


def evidence_kind(views: int, format_valid: bool) -> str:
    """Which map of a source applies: a plate of invalid format, one view, or several."""
    if not format_valid:
        return "invalid_format"
    return "one_view" if views <= 1 else "several_views"


@lru_cache(maxsize=1)
def _calibrations() -> dict[tuple[str, str], Calibration]:
    from schemas.plate_calibration import load_plate_calibration

    table = load_plate_calibration()
    return {
        (source, kind): Calibration(np.array(m["score"]), np.array(m["probability"]))
        for source, kinds in table["maps"].items()
        for kind, m in kinds.items()
    }


def calibration(source: str, kind: str) -> Calibration:
    """The fitted map of ``source`` (``camera``: fused camera reads; ``gateway``: a vendor's
    own confidence) for one ``evidence_kind``."""
    try:
        return _calibrations()[(source, kind)]
    except KeyError:
        raise KeyError(f"plate-calibration.yaml has no map for {source}/{kind}") from None


def plate_probability(fused: FusedPlate, source: str = "camera") -> float:
    """The probability that ``fused.plate`` is the vehicle's plate (0 when there is none)."""
    if not fused.plate:
        return 0.0
    kind = evidence_kind(fused.views, fused.format_valid)
    return float(calibration(source, kind)(fused.score))


# -------------------------------------------------------------------------------------------
# M1: site join of WIM vehicles and camera reads
# -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JoinParams:
    """The site join's tolerances and costs: each is the setting ``join_<name>``, explained and
    validated in ``schemas.settings``, whose defaults these are (the worker passes its own)."""

    tau_base_s: float = Settings.join_tau_base_s
    tau_per_s: float = Settings.join_tau_per_s  # τ = tau_base_s + tau_per_s · |d_cam| / v
    gate_tau: float = Settings.join_gate_tau  # candidates within gate_tau · τ
    max_lane_gap: int = Settings.join_max_lane_gap  # lanes between a camera and its vehicles
    adjacent_lane_cost: float = Settings.join_adjacent_lane_cost
    type_clash_cost: float = Settings.join_type_clash_cost
    null_cost: float = Settings.join_null_cost  # a vehicle or a read left without a match
    rear_extra_m: float = Settings.join_rear_extra_m  # rear plate behind the last axle
    frame_gap_s: float = Settings.join_frame_gap_s  # one camera's frames of one vehicle
    min_speed_ms: float = Settings.join_min_speed_ms  # slower vehicles expected at this speed


def expected_capture_us(
    view: str,
    d_cam_m: float,
    t_first_us: np.ndarray,
    t_last_us: np.ndarray,
    speed_ms: np.ndarray,
    params: JoinParams,
) -> tuple[np.ndarray, np.ndarray]:
    """Expected capture time and tolerance τ (µs) of each vehicle at one camera."""
    v = np.maximum(speed_ms, params.min_speed_ms)
    if view == "rear":
        t_exp = t_last_us + (d_cam_m + params.rear_extra_m) / v * 1e6
    else:
        t_exp = t_first_us + d_cam_m / v * 1e6
    tau = (params.tau_base_s + params.tau_per_s * abs(d_cam_m) / v) * 1e6
    return t_exp, tau


@dataclass(frozen=True)
class Observations:
    """One camera's reads as observations: runs of frames closer than ``frame_gap_s``."""

    order: np.ndarray  # read indices sorted by time
    of_read: np.ndarray  # observation of each sorted read
    ts: np.ndarray  # first frame of each observation
    last: np.ndarray  # last frame of each observation
    clash: np.ndarray  # 1.0 when any frame shows a type clash

    @classmethod
    def of(cls, read_ts_us: np.ndarray, read_clash: np.ndarray, params: JoinParams) -> Observations:
        order = np.argsort(read_ts_us, kind="stable")
        ts = np.asarray(read_ts_us[order], dtype=np.float64)
        if ts.size == 0:
            return cls(order, order, ts, ts, ts)
        new_obs = np.diff(ts, prepend=-np.inf) > params.frame_gap_s * 1e6
        starts = np.flatnonzero(new_obs)
        ends = np.append(starts[1:], ts.size) - 1
        clash = np.maximum.reduceat(read_clash[order], starts)
        return cls(order, np.cumsum(new_obs) - 1, ts[new_obs], ts[ends], clash)


def segment_cost(
    rows: np.ndarray,
    cols: np.ndarray,
    t_exp_us: np.ndarray,
    tau_us: np.ndarray,
    lane_gap: np.ndarray,
    obs: Observations,
    params: JoinParams,
) -> np.ndarray:
    """The join's cost table of vehicles ``rows`` (by expected time) against observations
    ``cols`` (by time): ((t_obs − t_exp)/τ)² + adjacent lane + type clash, ∞ outside the gate."""
    dt = (obs.ts[cols][None, :] - t_exp_us[rows][:, None]) / tau_us[rows][:, None]
    cost = dt**2 + params.adjacent_lane_cost * (lane_gap[rows][:, None] > 0)
    cost = cost + params.type_clash_cost * obs.clash[cols][None, :]
    cost[np.abs(dt) > params.gate_tau] = np.inf
    return np.ascontiguousarray(cost, dtype=np.float64)


def join_camera(
    t_exp_us: np.ndarray,
    tau_us: np.ndarray,
    vehicle_lane: np.ndarray,
    camera_lane: int,
    read_ts_us: np.ndarray,
    read_clash: np.ndarray,
    params: JoinParams | None = None,
) -> np.ndarray:
    """Match one camera's reads to vehicles keeping order; returns the vehicle of each read or -1.

    Reads closer than ``frame_gap_s`` are frames of one vehicle and are matched together (as one
    observation at the first frame's time). Cost ``((t_obs − t_exp)/τ)² + adjacent_lane_cost ·
    [another lane] + type_clash_cost · [type clash]``; only vehicles at most ``max_lane_gap``
    lanes from the camera, within ``gate_tau`` · τ. The order-preserving
    assignment runs on independent segments (separated by gaps wider than any gate), so the
    answer does not depend on how the input is cut into batches as long as every segment is
    whole (``kernels.settle`` says when part of an unfinished one is final already).
    """
    params = params or JoinParams()
    n_v, n_r = t_exp_us.size, read_ts_us.size
    result = np.full(n_r, -1, dtype=np.int64)
    lane_gap = np.abs(vehicle_lane - camera_lane)
    eligible = np.flatnonzero(lane_gap <= params.max_lane_gap)
    if n_v == 0 or n_r == 0 or eligible.size == 0:
        return result
    v_order = eligible[np.argsort(t_exp_us[eligible], kind="stable")]
    obs = Observations.of(read_ts_us, read_clash, params)
    obs_vehicle = np.full(obs.ts.size, -1, dtype=np.int64)

    gate = params.gate_tau * tau_us[v_order]
    events = np.concatenate([t_exp_us[v_order] - gate, obs.ts])
    ends = np.concatenate([t_exp_us[v_order] + gate, obs.ts])
    kinds = np.concatenate([np.zeros(v_order.size, np.int8), np.ones(obs.ts.size, np.int8)])
    idx = np.concatenate([np.arange(v_order.size), np.arange(obs.ts.size)])
    order = np.lexsort((kinds, events))
    seg_v: list[int] = []
    seg_o: list[int] = []
    reach = -np.inf
    half_null = params.null_cost / 2.0

    v_order_l, t_exp_l, tau_l = v_order.tolist(), t_exp_us.tolist(), tau_us.tolist()
    lane_gap_l, obs_ts_l, obs_clash_l = lane_gap.tolist(), obs.ts.tolist(), obs.clash.tolist()

    def flush_one(v: int, o: int) -> None:
        """A segment of one vehicle and one observation (most of them): ``segment_cost``'s
        arithmetic on Python floats, in the same order, and ``align_in_order``'s rule for a
        1×1 table (match unless skipping both is cheaper)."""
        dt = (obs_ts_l[o] - t_exp_l[v]) / tau_l[v]
        cost = dt * dt + params.adjacent_lane_cost * (lane_gap_l[v] > 0)
        cost = cost + params.type_clash_cost * obs_clash_l[o]
        if abs(dt) > params.gate_tau:
            cost = math.inf
        if not half_null + half_null < cost:
            obs_vehicle[o] = v

    def flush() -> None:
        if len(seg_v) == 1 and len(seg_o) == 1:
            flush_one(v_order_l[seg_v[0]], seg_o[0])
        elif seg_v and seg_o:
            vs = v_order[np.sort(np.array(seg_v))]  # rows by expected time, columns by time
            os_ = np.sort(np.array(seg_o))
            cost = segment_cost(vs, os_, t_exp_us, tau_us, lane_gap, obs, params)
            for vi, col in enumerate(_impl.align_in_order(cost, half_null, half_null)):
                if col >= 0:
                    obs_vehicle[os_[col]] = vs[vi]
        seg_v.clear()
        seg_o.clear()

    events_l, ends_l, kinds_l, idx_l = events.tolist(), ends.tolist(), kinds.tolist(), idx.tolist()
    for k in order.tolist():
        if events_l[k] > reach:
            flush()
        reach = max(reach, ends_l[k])
        (seg_o if kinds_l[k] else seg_v).append(idx_l[k])
    flush()
    result[obs.order] = obs_vehicle[obs.of_read]
    return result


def site_join(
    vehicles: dict[str, np.ndarray],
    reads: dict[str, np.ndarray],
    cameras: dict[str, tuple[str, int, float]],
    params: JoinParams | None = None,
) -> np.ndarray:
    """Assign every read of one site and direction to a vehicle (index) or -1.

    ``vehicles``: ``t_first_us``, ``t_last_us``, ``speed_ms``, ``lane`` arrays.
    ``reads``: ``ts_us``, ``camera`` (index into ``camera_ids``), ``trailer`` (bool) arrays and
    ``camera_ids`` (list). ``cameras``: camera id -> (view, lane, d_cam_m).
    """
    params = params or JoinParams()
    out = np.full(reads["ts_us"].size, -1, dtype=np.int64)
    for cam_index, camera_id in enumerate(reads["camera_ids"]):
        if camera_id not in cameras:
            continue
        view, lane, d_cam = cameras[camera_id]
        if view not in ("front", "rear"):
            continue
        mine = np.flatnonzero(reads["camera"] == cam_index)
        if mine.size == 0:
            continue
        t_exp, tau = expected_capture_us(
            view, d_cam, vehicles["t_first_us"], vehicles["t_last_us"], vehicles["speed_ms"], params
        )
        clash = reads["trailer"][mine] if view == "front" else np.zeros(mine.size, dtype=bool)
        out[mine] = join_camera(
            t_exp,
            tau,
            vehicles["lane"],
            lane,
            reads["ts_us"][mine],
            clash.astype(np.float64),
            params,
        )
    return out
