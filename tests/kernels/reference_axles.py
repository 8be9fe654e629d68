"""The axle kernel written slowly and obviously: plain Python over lists, no Numba.

It follows the algorithm described in ``kernels/axles.py`` step by step; the tests compare the
kernel with it field by field.
"""

from __future__ import annotations

import math
import statistics

from kernels.axles import BASELINE_SAMPLES, MAX_AXLES, MAX_PULSES, AxleParams
from schemas import flags as F

TOP = 32767


def _level(value: float) -> int:
    return TOP if value >= TOP else math.floor(value)


def channel_pulses(x: list[int], params: AxleParams):
    head = x[:BASELINE_SAMPLES]
    b = sum(head) / len(head)
    sigma = math.sqrt(sum((v - b) ** 2 for v in head) / len(head))
    off_i = _level(b + max(params.k_off * sigma, params.min_off))
    on_i = _level(b + max(params.k_on * sigma, params.min_on))
    n = len(x)
    runs: list[list[int]] = []  # kept runs [start, end]
    total = 0
    i = 0
    while i < n:
        if x[i] <= off_i:
            i += 1
            continue
        start = i
        while i < n and x[i] > off_i:
            i += 1
        end = i - 1
        if max(x[start : end + 1]) <= on_i:
            continue
        if 0 < total <= MAX_PULSES and start - runs[-1][1] <= 3:
            runs[-1][1] = end
        elif total < MAX_PULSES:
            runs.append([start, end])
            total += 1
        else:
            total += 1
    pulses = []
    prev_hi = -1
    for p, (r0, r1) in enumerate(runs):
        pad = 2 + (r1 - r0 + 1) // 4
        lo = max(r0 - pad, prev_hi + 1, 0)
        hi = r1 + pad
        if p + 1 < len(runs):
            hi = min(hi, runs[p + 1][0] - 1)
        hi = min(hi, n - 1)
        prev_hi = hi
        area = sum(x[j] - b for j in range(lo, hi + 1))
        moment = sum((x[j] - b) * j for j in range(lo, hi + 1))
        peak = max(x[r0 : r1 + 1])
        pulses.append(
            {
                "lo": lo,
                "hi": hi,
                "area": area,
                "time": moment / area if area > 0 else 0.5 * (lo + hi),
                "cut": r0 < BASELINE_SAMPLES or r1 >= n - 1,
                "clipped": peak >= TOP,
            }
        )
    return total, sigma, pulses


def axles_reference(
    channels: list[list[int]],
    rows: int,
    segs: int,
    fs: float,
    spacing: float,
    width: float,
    calib: list[float],
    params: AxleParams | None = None,
) -> dict:
    params = params or AxleParams()
    flags = 0
    per_channel, dead = [], []
    for c, x in enumerate(channels):
        if not (calib[c] > 0 and math.isfinite(calib[c])):
            flags |= F.BAD_CALIBRATION
        total, sigma, pulses = channel_pulses(list(x), params)
        if total > MAX_PULSES:
            flags |= F.TOO_MANY_AXLES
        dead.append(sigma < params.dead_channel_std and total == 0)
        if dead[-1]:
            flags |= F.DEAD_CHANNEL
        for p in pulses:
            flags |= F.PULSE_CUT if p["cut"] else 0
            flags |= F.CLIPPED if p["clipped"] else 0
        per_channel.append(pulses)

    clusters = []  # per row: list of {"area": [per segment], "time": t}
    row_dead = []
    for r in range(rows):
        row_dead.append(any(dead[r * segs + s] for s in range(segs)))
        items = [(p["lo"], s, p) for s in range(segs) for p in per_channel[r * segs + s]]
        items.sort(key=lambda item: item[0])  # stable: segment order, then pulse order
        row = []
        end = None
        for lo, s, p in items:
            if not row or lo > end + 2.0:
                row.append({"area": [0.0] * segs, "moment": 0.0, "weight": 0.0})
                end = p["hi"]
            else:
                end = max(end, p["hi"])
            row[-1]["area"][s] += p["area"]
            row[-1]["moment"] += p["area"] * p["time"]
            row[-1]["weight"] += p["area"]
        for cl in row:
            cl["time"] = cl["moment"] / cl["weight"] if cl["weight"] > 0 else cl["moment"]
            if not row_dead[r] and any(a == 0.0 for a in cl["area"]):
                flags |= F.LANE_CHANGE
        clusters.append(row)

    counts = [len(row) for row in clusters]
    best_k, best_votes = 0, 0
    for c in counts:
        votes = counts.count(c)
        if votes > best_votes or (votes == best_votes and c > best_k):
            best_k, best_votes = c, votes
    if best_votes < rows:
        flags |= F.AXLE_COUNT_MISMATCH
    empty = {
        "count": 0,
        "speed_kmh": 0.0,
        "loads": [],
        "spacings": [],
        "groups": [],
        "gvw": 0.0,
        "t_first": 0.0,
        "t_last": 0.0,
    }
    if best_k == 0:
        return {**empty, "flags": flags | F.NO_AXLES}
    if best_k > MAX_AXLES:
        flags |= F.TOO_MANY_AXLES
    k_used = min(best_k, MAX_AXLES)
    ok = [r for r in range(rows) if counts[r] == best_k]
    if len(ok) < 2:
        return {**empty, "count": k_used, "flags": flags | F.AXLE_COUNT_MISMATCH}

    def t(r, k):
        return clusters[r][k]["time"]

    speeds = []
    for k in range(k_used):
        outer = [
            statistics.median(
                (t(rb, k) - t(ra, k)) / ((rb - ra) * spacing) for rb in ok if rb != ra
            )
            for ra in ok
        ]
        slope = statistics.median(outer)
        speeds.append(fs / slope if slope > 0 else 0.0)
    speed = statistics.median(speeds)
    if min(speeds) <= 0 or speed <= 0:
        return {**empty, "count": k_used, "flags": flags | F.SPEED_OUT_OF_RANGE}
    kmh = speed * 3.6
    if not params.speed_min_kmh <= kmh <= params.speed_max_kmh:
        flags |= F.SPEED_OUT_OF_RANGE
    if (max(speeds) - min(speeds)) / speed > params.accel_tol:
        flags |= F.ACCELERATION

    loads = []
    for k in range(k_used):
        vals = [
            sum(calib[r * segs + s] * clusters[r][k]["area"][s] for s in range(segs))
            * speeds[k]
            / (width * fs)
            for r in ok
            if not row_dead[r]
        ]
        if not vals:
            loads.append(0.0)
            continue
        med = statistics.median(vals)
        dev = [abs(v - med) for v in vals]
        tol = max(3.5 * 1.4826 * statistics.median(dev), 0.10 * abs(med))
        kept = [v for v, d in zip(vals, dev, strict=True) if d <= tol]
        loads.append(sum(kept) / len(kept) if kept else 0.0)
    if flags & F.BAD_CALIBRATION:
        loads = [0.0] * k_used

    spacings, groups = [], [0]
    for k in range(k_used - 1):
        dt = sum(t(r, k + 1) - t(r, k) for r in ok) / len(ok)
        spacings.append(dt / fs * 0.5 * (speeds[k] + speeds[k + 1]))
        groups.append(groups[-1] + (1 if spacings[-1] >= params.group_spacing_max_m else 0))
    r0 = ok[0]
    return {
        "count": k_used,
        "speed_kmh": kmh,
        "loads": loads,
        "spacings": spacings,
        "groups": groups,
        "gvw": sum(loads),
        "flags": flags,
        "t_first": t(r0, 0) / fs - r0 * spacing / speeds[0],
        "t_last": t(r0, k_used - 1) / fs - r0 * spacing / speeds[k_used - 1],
    }
