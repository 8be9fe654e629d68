"""Axle loads from raw strip-sensor signals (Numba), one batch of passages per call.

The algorithm, per passage (DESIGN §1, reference/domain.md §1.3):

1. **Baseline and noise** per channel: mean and standard deviation of the first 32 samples.
2. **Hysteresis thresholds**: a pulse is a maximal run above ``baseline + thr_off`` that reaches
   ``baseline + thr_on`` somewhere; ``thr = max(k · noise, floor)``. Quiet stretches are skipped
   64 samples at a time by a vectorised block maximum, so the cost per quiet sample is small.
3. **Padding**: each run is widened by ``2 + len/4`` samples on both sides (not into its
   neighbours) to catch the pulse tails below the threshold. Its area is ``Σ(x − baseline)``
   and its time the area-weighted centroid.
4. **Axles per row**: pulses of a row's segments that overlap in time are one axle (left and
   right wheel). An axle missing on a segment of a live channel is a one-sided pulse: the vehicle
   straddles the lane (``lane_change``).
5. **Row consensus**: the axle count is the most common count over rows (ties to the larger);
   rows that disagree are left out (``axle_count_mismatch``).
6. **Speed per axle** from the centroid times over rows by the repeated median (Siegel) of the
   pairwise slopes, which ignores one bad row out of four. Vehicle speed: median over axles;
   per-axle speeds that differ by more than ``accel_tol`` flag ``acceleration``.
7. **Load** per axle and row by the area method ``C · (v / L) · area / fs`` summed over segments;
   rows are averaged after rejecting outliers beyond ``max(3.5 · 1.4826 · MAD, 10 %)`` of the
   median. Rows with a dead (flat) channel are not used for loads.
8. **Spacings** ``(t_{k+1} − t_k) · (v_k + v_{k+1}) / 2`` averaged over rows; **groups** join
   axles closer than ``group_spacing_max_m``; **GVW** is the sum of the axle loads.

Everything above is a pure function of the arrays; :func:`axle_batch` validates them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from kernels import config
from schemas import flags as F
from schemas.columns import MAX_AXLES

MAX_PULSES = 24  # per channel
MAX_ROWS = 8
MAX_SEGMENTS = 4
MAX_CHANNELS = MAX_ROWS * MAX_SEGMENTS
BASELINE_SAMPLES = 32
BLOCK = 64
INT16_TOP = 32767

# Indices into the float64 parameter vector the kernel reads.
P_K_ON, P_K_OFF, P_MIN_ON, P_MIN_OFF = 0, 1, 2, 3
P_SPEED_MIN, P_SPEED_MAX, P_ACCEL_TOL, P_GROUP_MAX, P_DEAD_STD = 4, 5, 6, 7, 8
N_PARAMS = 9


@dataclass(frozen=True)
class AxleParams:
    """Thresholds of the axle kernel (counts are int16 sample units)."""

    k_on: float = 10.0  # pulse opens above max(k_on · noise, min_on)
    k_off: float = 4.0  # and closes below max(k_off · noise, min_off)
    min_on: float = 60.0
    min_off: float = 25.0
    speed_min_kmh: float = 1.0
    speed_max_kmh: float = 160.0
    accel_tol: float = 0.06  # relative spread of per-axle speeds that flags acceleration
    group_spacing_max_m: float = 2.4
    dead_channel_std: float = 0.3  # a channel flatter than this (counts) is dead

    def as_array(self) -> np.ndarray:
        return np.array(
            [
                self.k_on,
                self.k_off,
                self.min_on,
                self.min_off,
                self.speed_min_kmh,
                self.speed_max_kmh,
                self.accel_tol,
                self.group_spacing_max_m,
                self.dead_channel_std,
            ],
            dtype=np.float64,
        )


@dataclass(frozen=True)
class AxleResult:
    """Per-passage outputs of a batch (index i = passage i)."""

    axle_count: np.ndarray  # int32 [n]
    speed_kmh: np.ndarray  # float64 [n]
    axle_loads_kg: np.ndarray  # float64 [n, MAX_AXLES], zero past axle_count
    axle_spacings_m: np.ndarray  # float64 [n, MAX_AXLES - 1]
    axle_groups: np.ndarray  # int8 [n, MAX_AXLES], group number per axle
    gvw_kg: np.ndarray  # float64 [n]
    flags: np.ndarray  # uint32 [n]
    t_first_axle_s: np.ndarray  # float64 [n], first axle on row 0, from the first sample
    t_last_axle_s: np.ndarray  # float64 [n]

    def loads(self, i: int) -> np.ndarray:
        return self.axle_loads_kg[i, : self.axle_count[i]]

    def spacings(self, i: int) -> np.ndarray:
        return self.axle_spacings_m[i, : max(self.axle_count[i] - 1, 0)]


# ------------------------------------------------------------------------------------------
# Numba kernels
# ------------------------------------------------------------------------------------------
@njit(fastmath=config.FASTMATH, cache=config.CACHE)
def _small_median(values, m, scratch):
    """Median of values[:m] (m >= 1), sorted by insertion in ``scratch``."""
    for a in range(m):
        v = values[a]
        b = a - 1
        while b >= 0 and scratch[b] > v:
            scratch[b + 1] = scratch[b]
            b -= 1
        scratch[b + 1] = v
    if m % 2 == 1:
        return scratch[m // 2]
    return 0.5 * (scratch[m // 2 - 1] + scratch[m // 2])


@njit(fastmath=config.FASTMATH, cache=config.CACHE)
def _channel_pulses(x, base, n, params, runs, pulses):
    """Pulses of one channel x[base:base+n] into ``pulses`` rows:
    (pstart, pend, area, centroid, peak, cut, clipped). Returns (count, baseline, noise)."""
    xc = x[base : base + n]
    s = 0.0
    for j in range(BASELINE_SAMPLES):
        s += xc[j]
    b = s / BASELINE_SAMPLES
    v = 0.0
    for j in range(BASELINE_SAMPLES):
        d = xc[j] - b
        v += d * d
    sigma = math.sqrt(v / BASELINE_SAMPLES)
    thr_on = max(params[P_K_ON] * sigma, params[P_MIN_ON])
    thr_off = max(params[P_K_OFF] * sigma, params[P_MIN_OFF])
    off_level = b + thr_off
    on_level = b + thr_on
    off_i = INT16_TOP if off_level >= INT16_TOP else int(math.floor(off_level))
    on_i = INT16_TOP if on_level >= INT16_TOP else int(math.floor(on_level))

    # runs: [start, end, core area, core moment, peak], scanned once
    n_runs = 0
    i = 0
    while i < n:
        if i + BLOCK <= n:
            # fixed trip count: LLVM vectorises this test of BLOCK quiet samples
            above = 0
            block = xc[i : i + BLOCK]  # a view indexed from 0: no wraparound
            for j in range(BLOCK):
                above |= block[j] > off_i
            if not above:
                i += BLOCK
                continue
        end = min(i + BLOCK, n)
        j = i
        while j < end and xc[j] <= off_i:
            j += 1
        if j == end:
            i = end
            continue
        start = j
        peak = xc[j]
        area = 0.0
        moment = 0.0
        while j < n:
            v = xc[j]
            if v <= off_i:
                break
            peak = max(peak, v)
            d = v - b
            area += d
            moment += d * j
            j += 1
        i = j
        if peak <= on_i:
            continue
        if 0 < n_runs <= runs.shape[0] and start - runs[n_runs - 1, 1] <= 3:
            last = n_runs - 1  # a dip inside one pulse: merge, gap samples included
            for g in range(int(runs[last, 1]) + 1, start):
                d = xc[g] - b
                area += d
                moment += d * g
            runs[last, 1] = j - 1
            runs[last, 2] += area
            runs[last, 3] += moment
            runs[last, 4] = max(runs[last, 4], peak)
        elif n_runs < runs.shape[0]:
            runs[n_runs, 0] = start
            runs[n_runs, 1] = j - 1
            runs[n_runs, 2] = area
            runs[n_runs, 3] = moment
            runs[n_runs, 4] = peak
            n_runs += 1
        else:
            n_runs += 1  # counted, not stored: too many pulses

    # pad each run into its quiet neighbourhood (not into its neighbours) for the tails
    stored = min(n_runs, runs.shape[0])
    prev_hi = -1
    for p in range(stored):
        r0 = int(runs[p, 0])
        r1 = int(runs[p, 1])
        pad = 2 + (r1 - r0 + 1) // 4
        lo = max(r0 - pad, prev_hi + 1, 0)
        hi = r1 + pad
        if p + 1 < stored:
            hi = min(hi, int(runs[p + 1, 0]) - 1)
        hi = min(hi, n - 1)
        prev_hi = hi
        area = runs[p, 2]
        moment = runs[p, 3]
        for j in range(lo, r0):
            d = xc[j] - b
            area += d
            moment += d * j
        for j in range(r1 + 1, hi + 1):
            d = xc[j] - b
            area += d
            moment += d * j
        pulses[p, 0] = lo
        pulses[p, 1] = hi
        pulses[p, 2] = area
        pulses[p, 3] = moment / area if area > 0 else 0.5 * (lo + hi)
        pulses[p, 4] = runs[p, 4]
        pulses[p, 5] = 1.0 if (r0 < BASELINE_SAMPLES or r1 >= n - 1) else 0.0
        pulses[p, 6] = 1.0 if runs[p, 4] >= INT16_TOP else 0.0
    return n_runs, b, sigma


@njit(fastmath=config.FASTMATH, cache=config.CACHE)
def _one_passage(
    x,
    base,
    n,
    rows,
    segs,
    fs,
    spacing,
    width,
    calib,
    params,
    ws_runs,
    ws_pulses,
    cl_area,
    cl_time,
    scratch,
    iws,
    fws,
    out_loads,
    out_spacings,
    out_groups,
    i,
):
    """Decode one passage; writes row i of the outputs and returns (count, speed, flags, t0, t1)."""
    flags = 0
    channels = rows * segs
    n_pulses = iws[0]
    n_pulses[:channels] = 0
    dead = iws[1]
    dead[:channels] = 0
    for c in range(channels):
        if not (calib[c] > 0.0 and math.isfinite(calib[c])):
            flags |= F.BAD_CALIBRATION
        cnt, _b, sigma = _channel_pulses(x, base + c * n, n, params, ws_runs, ws_pulses[c])
        n_pulses[c] = cnt
        if cnt > MAX_PULSES:
            flags |= F.TOO_MANY_AXLES
            n_pulses[c] = MAX_PULSES
        if sigma < params[P_DEAD_STD] and cnt == 0:
            dead[c] = True
            flags |= F.DEAD_CHANNEL
        for p in range(n_pulses[c]):
            if ws_pulses[c, p, 5] > 0:
                flags |= F.PULSE_CUT
            if ws_pulses[c, p, 6] > 0:
                flags |= F.CLIPPED

    # axles per row: overlapping pulses of the row's segments
    max_k = MAX_PULSES * segs
    cl_area[:rows, :max_k, :segs] = 0.0
    cl_time[:rows, :max_k] = 0.0
    cl_count = iws[2]
    cl_count[:rows] = 0
    row_dead = iws[3]
    row_dead[:rows] = 0
    order = iws[4]
    seg_of = iws[5]
    idx_of = iws[6]
    starts = fws[0]
    for r in range(rows):
        m = 0
        for s in range(segs):
            c = r * segs + s
            if dead[c]:
                row_dead[r] = True
            for p in range(n_pulses[c]):
                seg_of[m] = s
                idx_of[m] = p
                m += 1
        for q in range(m):  # insertion sort of the row's pulses by start (stable)
            st = ws_pulses[r * segs + seg_of[q], idx_of[q], 0]
            b = q - 1
            while b >= 0 and starts[b] > st:
                starts[b + 1] = starts[b]
                order[b + 1] = order[b]
                b -= 1
            starts[b + 1] = st
            order[b + 1] = q
        k = -1
        cluster_end = -1.0
        weight = 0.0
        for q in range(m):
            o = order[q]
            pulse = ws_pulses[r * segs + seg_of[o], idx_of[o]]
            if k < 0 or pulse[0] > cluster_end + 2.0:
                if k >= 0:
                    cl_time[r, k] /= weight if weight > 0 else 1.0
                k += 1
                cluster_end = pulse[1]
                weight = 0.0
            else:
                cluster_end = max(cluster_end, pulse[1])
            cl_area[r, k, seg_of[o]] += pulse[2]
            cl_time[r, k] += pulse[2] * pulse[3]
            weight += pulse[2]
        if k >= 0:
            cl_time[r, k] /= weight if weight > 0 else 1.0
        cl_count[r] = k + 1
        if not row_dead[r]:
            for kk in range(k + 1):
                for s in range(segs):
                    if cl_area[r, kk, s] == 0.0:
                        flags |= F.LANE_CHANGE

    # consensus over rows
    best_k = 0
    best_votes = 0
    for r in range(rows):
        votes = 0
        for r2 in range(rows):
            if cl_count[r2] == cl_count[r]:
                votes += 1
        if votes > best_votes or (votes == best_votes and cl_count[r] > best_k):
            best_votes = votes
            best_k = cl_count[r]
    if best_votes < rows:
        flags |= F.AXLE_COUNT_MISMATCH
    if best_k == 0:
        return 0, 0.0, flags | F.NO_AXLES, 0.0, 0.0
    if best_k > MAX_AXLES:
        flags |= F.TOO_MANY_AXLES
    k_used = min(best_k, MAX_AXLES)
    ok_rows = iws[7]
    n_ok = 0
    for r in range(rows):
        if cl_count[r] == best_k:
            ok_rows[n_ok] = r
            n_ok += 1
    if n_ok < 2:
        return k_used, 0.0, flags | F.AXLE_COUNT_MISMATCH, 0.0, 0.0

    # speed per axle: repeated median of pairwise slopes (samples per metre)
    speeds = fws[1]
    speeds[:MAX_AXLES] = 0.0
    inner = fws[2]
    outer = fws[3]
    for k in range(k_used):
        for a in range(n_ok):
            m = 0
            for b in range(n_ok):
                if a != b:
                    ra, rb = ok_rows[a], ok_rows[b]
                    inner[m] = (cl_time[rb, k] - cl_time[ra, k]) / ((rb - ra) * spacing)
                    m += 1
            outer[a] = _small_median(inner, m, scratch)
        slope = _small_median(outer, n_ok, scratch)
        speeds[k] = fs / slope if slope > 0 else 0.0
    speed = _small_median(speeds, k_used, scratch)
    vmin = speeds[:k_used].min()
    vmax = speeds[:k_used].max()
    if vmin <= 0.0 or speed <= 0.0:
        return k_used, 0.0, flags | F.SPEED_OUT_OF_RANGE, 0.0, 0.0
    kmh = speed * 3.6
    if kmh < params[P_SPEED_MIN] or kmh > params[P_SPEED_MAX]:
        flags |= F.SPEED_OUT_OF_RANGE
    if (vmax - vmin) / speed > params[P_ACCEL_TOL]:
        flags |= F.ACCELERATION

    # loads: area method per row, robust mean over rows
    vals = fws[4]
    dev = fws[5]
    for k in range(k_used):
        m = 0
        for a in range(n_ok):
            r = ok_rows[a]
            if row_dead[r]:
                continue
            w = 0.0
            for s in range(segs):
                w += calib[r * segs + s] * cl_area[r, k, s]
            vals[m] = w * speeds[k] / (width * fs)
            m += 1
        if m == 0:
            out_loads[i, k] = 0.0
            continue
        med = _small_median(vals, m, scratch)
        for q in range(m):
            dev[q] = abs(vals[q] - med)
        tol = max(3.5 * 1.4826 * _small_median(dev, m, scratch), 0.10 * abs(med))
        total = 0.0
        kept = 0
        for q in range(m):
            if dev[q] <= tol:
                total += vals[q]
                kept += 1
        out_loads[i, k] = total / kept if kept > 0 else 0.0
    if flags & F.BAD_CALIBRATION:
        for k in range(k_used):
            out_loads[i, k] = 0.0

    # spacings and groups
    group = 0
    out_groups[i, 0] = 0
    for k in range(k_used - 1):
        dt = 0.0
        for a in range(n_ok):
            r = ok_rows[a]
            dt += cl_time[r, k + 1] - cl_time[r, k]
        out_spacings[i, k] = dt / n_ok / fs * 0.5 * (speeds[k] + speeds[k + 1])
        if out_spacings[i, k] >= params[P_GROUP_MAX]:
            group += 1
        out_groups[i, k + 1] = group
    r0 = ok_rows[0]
    t_first = cl_time[r0, 0] / fs - r0 * spacing / speeds[0]
    t_last = cl_time[r0, k_used - 1] / fs - r0 * spacing / speeds[k_used - 1]
    return k_used, kmh, flags, t_first, t_last


@njit(fastmath=config.FASTMATH, cache=config.CACHE)
def _axle_batch(
    samples,
    offsets,
    rows,
    segs,
    fs,
    spacing,
    width,
    calib,
    calib_offsets,
    params,
    out_count,
    out_speed,
    out_loads,
    out_spacings,
    out_groups,
    out_gvw,
    out_flags,
    out_t0,
    out_t1,
):
    ws_runs = np.zeros((MAX_PULSES, 5))
    ws_pulses = np.zeros((MAX_CHANNELS, MAX_PULSES, 7))
    cl_area = np.zeros((MAX_ROWS, MAX_PULSES * MAX_SEGMENTS, MAX_SEGMENTS))
    cl_time = np.zeros((MAX_ROWS, MAX_PULSES * MAX_SEGMENTS))
    scratch = np.zeros(MAX_ROWS * MAX_AXLES)
    iws = np.zeros((8, MAX_PULSES * MAX_CHANNELS), dtype=np.int64)  # integer scratch rows
    fws = np.zeros((6, MAX_PULSES * MAX_CHANNELS))  # float scratch rows
    for i in range(offsets.size - 1):
        channels = rows[i] * segs[i]
        n = (offsets[i + 1] - offsets[i]) // channels
        c0 = calib_offsets[i]
        k, kmh, fl, t0, t1 = _one_passage(
            samples,
            offsets[i],
            n,
            rows[i],
            segs[i],
            fs[i],
            spacing[i],
            width[i],
            calib[c0 : c0 + channels],
            params,
            ws_runs,
            ws_pulses,
            cl_area,
            cl_time,
            scratch,
            iws,
            fws,
            out_loads,
            out_spacings,
            out_groups,
            i,
        )
        out_count[i] = k
        out_speed[i] = kmh
        out_flags[i] = fl
        out_t0[i] = t0
        out_t1[i] = t1
        total = 0.0
        for a in range(k):
            total += out_loads[i, a]
        out_gvw[i] = total


# ------------------------------------------------------------------------------------------
# Public wrappers
# ------------------------------------------------------------------------------------------
def _as_array(name: str, value, dtype, n: int) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    arr = np.full(n, arr, dtype=dtype) if arr.ndim == 0 else np.ascontiguousarray(arr)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have one value per passage ({n}), got shape {arr.shape}")
    return arr


def axle_batch(
    samples: np.ndarray,
    offsets: np.ndarray,
    rows,
    segments,
    fs_hz,
    row_spacing_m,
    sensor_width_m,
    calib: np.ndarray,
    calib_offsets: np.ndarray | None = None,
    params: AxleParams | None = None,
) -> AxleResult:
    """Decode a batch of passages whose int16 samples are concatenated in ``samples``.

    Passage i owns ``samples[offsets[i]:offsets[i+1]]`` (channel-major, ``rows[i] ·
    segments[i]`` channels) and ``calib[calib_offsets[i]:calib_offsets[i] + channels]``.
    Scalars broadcast over the batch. Read-only arrays (``np.frombuffer``) are fine.
    """
    samples = np.asarray(samples)
    if samples.dtype != np.int16:
        raise TypeError(f"samples must be int16 (np.frombuffer(raw, '<i2')), got {samples.dtype}")
    if samples.ndim != 1 or not samples.flags.c_contiguous:
        raise ValueError("samples must be one contiguous 1-D array (concatenate the passages)")
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or offsets.size < 1:
        raise ValueError("offsets must be a 1-D array of n + 1 sample offsets")
    n = offsets.size - 1
    if offsets[0] != 0 or offsets[-1] != samples.size or np.any(np.diff(offsets) < 0):
        raise ValueError("offsets must rise from 0 to len(samples)")
    rows_a = _as_array("rows", rows, np.int64, n)
    segs_a = _as_array("segments", segments, np.int64, n)
    fs_a = _as_array("fs_hz", fs_hz, np.float64, n)
    spacing_a = _as_array("row_spacing_m", row_spacing_m, np.float64, n)
    width_a = _as_array("sensor_width_m", sensor_width_m, np.float64, n)
    channels = rows_a * segs_a
    if np.any((rows_a < 2) | (rows_a > MAX_ROWS) | (segs_a < 1) | (segs_a > MAX_SEGMENTS)):
        raise ValueError(f"need 2 <= rows <= {MAX_ROWS} and 1 <= segments <= {MAX_SEGMENTS}")
    lengths = np.diff(offsets)
    if np.any(lengths % channels != 0):
        bad = int(np.flatnonzero(lengths % channels != 0)[0])
        raise ValueError(
            f"passage {bad}: {lengths[bad]} samples is not a multiple of {channels[bad]} channels"
        )
    if np.any(lengths // channels < BASELINE_SAMPLES + 2):
        bad = int(np.flatnonzero(lengths // channels < BASELINE_SAMPLES + 2)[0])
        raise ValueError(f"passage {bad}: fewer than {BASELINE_SAMPLES + 2} samples per channel")
    for name, arr in (("fs_hz", fs_a), ("row_spacing_m", spacing_a), ("sensor_width_m", width_a)):
        if not np.all(np.isfinite(arr) & (arr > 0)):
            raise ValueError(f"{name} must be finite and positive for every passage")
    calib = np.ascontiguousarray(calib, dtype=np.float64)
    if calib_offsets is None:
        calib_offsets = np.concatenate([[0], np.cumsum(channels)])[:n]
    calib_offsets = _as_array("calib_offsets", calib_offsets, np.int64, n)
    if n and np.any(calib_offsets + channels > calib.size):
        raise ValueError("calib is shorter than calib_offsets + channels of some passage")
    p = (params or AxleParams()).as_array()

    out = AxleResult(
        axle_count=np.zeros(n, dtype=np.int32),
        speed_kmh=np.zeros(n),
        axle_loads_kg=np.zeros((n, MAX_AXLES)),
        axle_spacings_m=np.zeros((n, MAX_AXLES - 1)),
        axle_groups=np.zeros((n, MAX_AXLES), dtype=np.int8),
        gvw_kg=np.zeros(n),
        flags=np.zeros(n, dtype=np.uint32),
        t_first_axle_s=np.zeros(n),
        t_last_axle_s=np.zeros(n),
    )
    if n:
        _axle_batch(
            samples,
            offsets,
            rows_a,
            segs_a,
            fs_a,
            spacing_a,
            width_a,
            calib,
            calib_offsets,
            p,
            out.axle_count,
            out.speed_kmh,
            out.axle_loads_kg,
            out.axle_spacings_m,
            out.axle_groups,
            out.gvw_kg,
            out.flags,
            out.t_first_axle_s,
            out.t_last_axle_s,
        )
    return out


def axles(
    samples: np.ndarray,
    rows: int,
    segments: int,
    fs_hz: float,
    row_spacing_m: float,
    sensor_width_m: float,
    calib,
    params: AxleParams | None = None,
) -> AxleResult:
    """One passage: ``samples`` int16, channel-major (1-D, or 2-D ``[channels, n]``)."""
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = np.ascontiguousarray(samples).reshape(-1)
    return axle_batch(
        samples,
        np.array([0, samples.size]),
        rows,
        segments,
        fs_hz,
        row_spacing_m,
        sensor_width_m,
        np.asarray(calib, dtype=np.float64),
        params=params,
    )


# Temperature correction (domain.md F8), optional: quartz sensors need none; piezo polymer and
# ceramic sensors do. Burnos: C_T = k1 · 10^(w1 · (T0 − Ta)); W_static = W_raw / C_T. The
# constants were fitted at one site in Poland and are site-specific: fit your own.
@dataclass(frozen=True)
class BurnosTemperatureModel:
    k1: float = 1.012860
    w1: float = -0.005277
    t0_c: float = 20.0

    def factor(self, temperature_c: np.ndarray) -> np.ndarray:
        """Multiply raw loads by this (1 / C_T); NaN temperatures leave loads unchanged."""
        t = np.asarray(temperature_c, dtype=np.float64)
        c_t = self.k1 * np.power(10.0, self.w1 * (self.t0_c - t))
        return np.where(np.isfinite(t), 1.0 / c_t, 1.0)


def apply_temperature(
    result: AxleResult, temperature_c: np.ndarray, model: BurnosTemperatureModel
) -> AxleResult:
    """Corrected copy of ``result`` (loads and GVW), flagged ``temperature_corrected``."""
    factor = model.factor(temperature_c)
    corrected = np.isfinite(np.asarray(temperature_c, dtype=np.float64))
    return AxleResult(
        axle_count=result.axle_count,
        speed_kmh=result.speed_kmh,
        axle_loads_kg=result.axle_loads_kg * factor[:, None],
        axle_spacings_m=result.axle_spacings_m,
        axle_groups=result.axle_groups,
        gvw_kg=result.gvw_kg * factor,
        flags=result.flags | np.where(corrected, F.TEMPERATURE_CORRECTED, 0).astype(np.uint32),
        t_first_axle_s=result.t_first_axle_s,
        t_last_axle_s=result.t_last_axle_s,
    )
