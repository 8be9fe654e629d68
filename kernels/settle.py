"""Which vehicles' camera-join results are final before their chain of gates is whole.

``kernels.plates.join_camera`` splits a camera's vehicles and observations into segments (chains
of overlapping gates) and in each finds the order-preserving assignment: a shortest path on the
grid of vehicles (rows, by expected capture time) × observations (columns, by time). A chain is
only whole once traffic leaves a gap, which at a busy site takes many seconds of event time
(docs/performance.md, "What bounds the latency").

Much earlier, what is known of an open chain is a rectangle of the grid — the vehicles and the
observations no later input can precede — and later inputs only add rows below it and columns
to its right. The best path to each cell of the rectangle is already what it will be: it depends
on the cells above and to the left alone. Every path of the finished grid leaves the rectangle
through a cell on its bottom row or right column, so if the paths to all of those that can still
lie on the finished path give the earliest rows the same columns, nothing that comes later
changes them (the survivor-path merge of a Viterbi decoder). Cells that cannot: leaving
downwards before the first observation a later vehicle's gate reaches, and leaving rightwards at
a vehicle whose gate has closed before any later observation — the DP's own path to a later edge
cell is then at least as good, and it is the one the ties resolve to.

:func:`settled_camera` applies this to one camera: segments that are already whole are decided
outright; in the first open one, the merged rows are. Bounds on later inputs come from the
caller (``streams.matching``): their expected times, gate openings and read times. The cost
table and the DP are the join's own (``segment_cost``, the same comparisons), so a settled
vehicle gets what ``join_camera`` will give it over any later inputs within the bounds.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from kernels import config
from kernels.plates import JoinParams, Observations, _impl, segment_cost

MARGIN_US = 1_000.0  # bounds are kept this much on the safe side of rounding


@njit(fastmath=config.FASTMATH_NEVER, cache=config.CACHE)
def _merged_rows(cost, half_null, j0, open_rows, out):
    """The rows whose column (or −1) the paths to every live edge cell agree on, as a prefix:
    returns its length, the columns in ``out``. Same DP and ties as ``align_in_order``; live
    edge cells: (n, j) for j ≥ ``j0`` and (a, m) for the rows ``a`` in ``open_rows``."""
    n, m = cost.shape
    best = np.zeros((n + 1, m + 1))
    move = np.zeros((n + 1, m + 1), dtype=np.int8)
    for j in range(1, m + 1):
        best[0, j] = best[0, j - 1] + half_null
        move[0, j] = 2
    for i in range(1, n + 1):
        best[i, 0] = best[i - 1, 0] + half_null
        move[i, 0] = 1
        for j in range(1, m + 1):
            a = best[i - 1, j - 1] + cost[i - 1, j - 1]
            b = best[i - 1, j] + half_null
            c = best[i, j - 1] + half_null
            k = 0
            v = a
            if b < v:
                k = 1
                v = b
            if c < v:
                k = 2
                v = c
            best[i, j] = v
            move[i, j] = k
    agreed = n
    for a in open_rows:  # a path leaving at (a, m) says nothing of rows a and below
        agreed = min(agreed, a)
    first = True
    cols = np.full(n, -1, dtype=np.int64)
    for e in range(m + 1 - j0 + open_rows.size):
        if e <= m - j0:
            i, j = n, j0 + e
        else:
            i, j = open_rows[e - (m - j0) - 1], m
        cols[:] = -1
        while i > 0 or j > 0:
            k = move[i, j]
            if k == 0:
                cols[i - 1] = j - 1
                i -= 1
                j -= 1
            elif k == 1:
                i -= 1
            else:
                j -= 1
        if first:
            out[:agreed] = cols[:agreed]
            first = False
        else:
            for r in range(agreed):
                if cols[r] != out[r]:
                    agreed = r
                    break
    return agreed


def settled_camera(
    t_exp_us: np.ndarray,
    tau_us: np.ndarray,
    vehicle_lane: np.ndarray,
    camera_lane: int,
    read_ts_us: np.ndarray,
    read_clash: np.ndarray,
    texp_from_us: float,
    gate_from_us: float,
    read_from_us: float,
    params: JoinParams | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(the vehicle of each read or −1, whether each vehicle is settled) for one camera.

    Arguments as ``join_camera``'s, and what is known of later inputs: every later vehicle's
    expected time here is ≥ ``texp_from_us`` and its gate opens ≥ ``gate_from_us``; every later
    read is at ≥ ``read_from_us``. A settled vehicle has the reads given here over these inputs
    and any later ones (none for a vehicle more than ``max_lane_gap`` lanes away)."""
    params = params or JoinParams()
    n_v = t_exp_us.size
    result = np.full(read_ts_us.size, -1, dtype=np.int64)
    settled = np.ones(n_v, dtype=bool)
    lane_gap = np.abs(vehicle_lane - camera_lane)
    eligible = np.flatnonzero(lane_gap <= params.max_lane_gap)
    settled[eligible] = False
    if eligible.size == 0:
        return result, settled
    v_order = eligible[np.argsort(t_exp_us[eligible], kind="stable")]
    obs = Observations.of(read_ts_us, read_clash, params)
    gate = params.gate_tau * tau_us[v_order]
    row_lo, row_hi = t_exp_us[v_order] - gate, t_exp_us[v_order] + gate
    # known: rows no later vehicle can precede, observations no later read can extend
    n_known = int(np.searchsorted(t_exp_us[v_order], texp_from_us - MARGIN_US, side="left"))
    gap = params.frame_gap_s * 1e6
    m_known = int(np.searchsorted(obs.last + gap, read_from_us - MARGIN_US, side="left"))
    later_row_lo = min([gate_from_us, *row_lo[n_known:].tolist()]) - MARGIN_US
    later_col_lo = min([read_from_us, *obs.ts[m_known:].tolist()]) - MARGIN_US
    unknown_from = min(later_row_lo, later_col_lo)

    obs_vehicle = np.full(obs.ts.size, -1, dtype=np.int64)
    half_null = params.null_cost / 2.0
    for rows, cols, reach in _segments(row_lo[:n_known], row_hi[:n_known], obs.ts[:m_known]):
        vs, os_ = v_order[rows], cols
        if reach < unknown_from:  # whole: nothing later can join it
            if os_.size:
                cost = segment_cost(vs, os_, t_exp_us, tau_us, lane_gap, obs, params)
                for vi, col in enumerate(_impl.align_in_order(cost, half_null, half_null)):
                    if col >= 0:
                        obs_vehicle[os_[col]] = vs[vi]
            settled[vs] = True
            continue
        # the first open segment: its merged rows; everything after it waits
        cost = segment_cost(vs, os_, t_exp_us, tau_us, lane_gap, obs, params)
        j0 = int(np.searchsorted(obs.ts[os_], later_row_lo, side="left"))
        open_rows = np.flatnonzero(row_hi[rows] >= later_col_lo).astype(np.int64)
        cols_of = np.full(rows.size, -1, dtype=np.int64)
        agreed = _merged_rows(cost, half_null, j0, open_rows, cols_of)
        for vi in range(agreed):
            if cols_of[vi] >= 0:
                obs_vehicle[os_[cols_of[vi]]] = vs[vi]
        settled[vs[:agreed]] = True
        break
    mine = settled[obs_vehicle[obs.of_read]] & (obs_vehicle[obs.of_read] >= 0)
    result[obs.order[mine]] = obs_vehicle[obs.of_read][mine]
    return result, settled


def _segments(
    row_lo: np.ndarray, row_hi: np.ndarray, obs_ts: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """``join_camera``'s segments of the known rows (by expected time) and observations: rows
    and columns of each (ascending) and its reach."""
    events = np.concatenate([row_lo, obs_ts])
    ends = np.concatenate([row_hi, obs_ts])
    kinds = np.concatenate([np.zeros(row_lo.size, np.int8), np.ones(obs_ts.size, np.int8)])
    idx = np.concatenate([np.arange(row_lo.size), np.arange(obs_ts.size)])
    out: list[tuple[list[int], list[int], float]] = []
    reach = -np.inf
    for k in np.lexsort((kinds, events)).tolist():
        if events[k] > reach or not out:
            out.append(([], [], reach))
        reach = max(reach, float(ends[k]))
        out[-1][int(kinds[k])].append(int(idx[k]))
        out[-1] = (out[-1][0], out[-1][1], reach)
    return [
        (np.sort(np.array(r, dtype=np.int64)), np.sort(np.array(c, dtype=np.int64)), reach)
        for r, c, reach in out
    ]


def warm_up() -> None:
    """Compile the merge kernel now (seconds), not on the first live round."""
    _merged_rows(np.zeros((1, 1)), 4.5, 0, np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
