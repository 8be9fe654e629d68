"""The plate distance and the order-preserving assignment, written slowly from their definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np

from schemas.plate_grammar import PROVINCES, SUFFIXES

TABLE = {
    "strong": {"0D", "0Q", "8B", "2Z", "5S", "6G"},
    "weak": {
        "DQ",
        "17",
        "1T",
        "1L",
        "7T",
        "0C",
        "CG",
        "89",
        "UV",
        "VY",
        "UY",
        "MN",
        "MW",
        "NW",
        "HM",
        "KX",
        "EF",
        "PR",
        "4A",
    },
}


def substitution(a: str, b: str, local: str | None) -> float:
    if a == b:
        return 0.0
    if "?" in (a, b):
        return 0.3
    if a + b in TABLE["strong"] or b + a in TABLE["strong"]:
        return 0.25
    if a + b in TABLE["weak"] or b + a in TABLE["weak"]:
        return 0.5
    if a in PROVINCES and b in PROVINCES:
        return 0.3 if local in (a, b) else 0.5
    return 1.0


def indel(plate: str, i: int) -> float:
    if i == 0 or i == len(plate) - 1:
        return 0.5
    if plate[i] in SUFFIXES:
        return 0.5
    return 1.0


def distance(a: str, b: str, local: str | None = None) -> float:
    d = [[0.0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        d[i][0] = d[i - 1][0] + indel(a, i - 1)
    for j in range(1, len(b) + 1):
        d[0][j] = d[0][j - 1] + indel(b, j - 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(
                d[i - 1][j] + indel(a, i - 1),
                d[i][j - 1] + indel(b, j - 1),
                d[i - 1][j - 1] + substitution(a[i - 1], b[j - 1], local),
            )
    return d[len(a)][len(b)]


def best_order_preserving_cost(cost, n: int, m: int, null_row: float, null_col: float) -> float:
    """Try every order-preserving partial matching (small inputs only)."""
    best = null_row * n + null_col * m
    for k in range(1, min(n, m) + 1):
        for rows in itertools.combinations(range(n), k):
            for cols in itertools.combinations(range(m), k):
                total = sum(cost[r][c] for r, c in zip(rows, cols, strict=True))
                total += null_row * (n - k) + null_col * (m - k)
                best = min(best, total)
    return best


def join_camera(t_exp, tau, vehicle_lane, camera_lane, read_ts, read_clash, params):
    """One camera's site join written out: frames grouped into observations, vehicles of the
    same or an adjacent lane, independent segments of overlapping gates, and in each segment
    the order-preserving assignment (the twin's ``align_in_order``) of the costs
    ((t − t_exp)/τ)² + adjacent-lane + type-clash, infinite outside the gate."""
    from kernels._plates_py import align_in_order

    n_v, n_r = len(t_exp), len(read_ts)
    result = [-1] * n_r
    eligible = [i for i in range(n_v) if abs(vehicle_lane[i] - camera_lane) <= 1]
    if not eligible or not n_r:
        return result
    vehicles = sorted(eligible, key=lambda i: t_exp[i])  # stable: index order on ties
    reads = sorted(range(n_r), key=lambda k: read_ts[k])
    observations: list[list[int]] = []  # runs of frames, each a list of reads
    for k in reads:
        if observations and read_ts[k] - read_ts[observations[-1][-1]] <= params.frame_gap_s * 1e6:
            observations[-1].append(k)
        else:
            observations.append([k])
    obs_ts = [read_ts[o[0]] for o in observations]
    obs_clash = [max(read_clash[k] for k in o) for o in observations]
    # events: (start, kind, index, end) — vehicle windows first on equal starts
    events = [
        (t_exp[i] - params.gate_tau * tau[i], 0, pos, t_exp[i] + params.gate_tau * tau[i])
        for pos, i in enumerate(vehicles)
    ] + [(t, 1, j, t) for j, t in enumerate(obs_ts)]
    events.sort(key=lambda e: (e[0], e[1]))
    segments, reach = [], float("-inf")
    for start, kind, index, end in events:
        if start > reach or not segments:
            segments.append(([], []))
        segments[-1][kind].append(index)
        reach = max(reach, end)
    for seg_v, seg_o in segments:
        if not seg_v or not seg_o:
            continue
        rows = [vehicles[p] for p in sorted(seg_v)]
        cols = sorted(seg_o)
        cost = np.empty((len(rows), len(cols)))
        for a, i in enumerate(rows):
            for b, j in enumerate(cols):
                dt = (obs_ts[j] - t_exp[i]) / tau[i]
                c = dt * dt + params.adjacent_lane_cost * (abs(vehicle_lane[i] - camera_lane) > 0)
                c = c + params.type_clash_cost * obs_clash[j]
                cost[a, b] = math.inf if abs(dt) > params.gate_tau else c
        half = params.null_cost / 2.0
        for a, col in enumerate(align_in_order(cost, half, half)):
            if col >= 0:
                for k in observations[cols[col]]:
                    result[k] = rows[a]
    return result
