"""How long a weighing waits, in event time, before its camera-join assignment can no longer
change — once its chain of gates is whole, and by the survivor-path merge that the worker now
uses (``kernels.settle``; this estimate came first and is kept as an independent, slow version
of the rule). On simulated traffic, not the worker: ``python -m bench.join_wait [VEHICLES]
[SEED]``.

Per camera and direction, the join (``kernels.plates.join_camera``) is an order-preserving
assignment on chains of overlapping gates. Inputs become known in event time: a passage when its
last axle is weighed, a run of frames when no further frame can join it. Two rules:

- **chain closure**: a vehicle's assignment is final once its whole chain is known (time has
  passed the chain's reach). This is per camera, so it is a lower bound on the worker's rule,
  which waits for a gap on every camera of the site at once.
- **survivor merge**: the assignment is a shortest path on the vehicles × observations grid of
  the chain; any future path leaves the known rectangle through its edge. Once the tracebacks of
  every edge cell that can still be on an optimal path agree on the earliest vehicles, later
  inputs cannot change them (a Viterbi decoder's survivor-path merge). Edge cells that cannot:
  leaving downwards before the first observation a future vehicle's gate could reach, and
  leaving rightwards at a vehicle whose gate has closed (both are dominated by the DP's own path
  to a later edge cell). Future vehicles' gates open at most ``delta`` before their passage is
  known; ``delta`` is taken from the data here (a deployment would bound it by speed limits).

The wait of a vehicle is the latest over its cameras, from its last axle. Both rules see the same
inputs at the same times (no publication slack, no batching), so only their difference matters.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from kernels.plate_grammar import is_trailer, normalise
from kernels.plates import JoinParams, expected_capture_us
from schemas.registry import Registry, load_registry
from sim.config import SimConfig
from sim.traffic import CitySimulator
from streams.stages import measure_passages

US = 1_000_000


@dataclass
class Camera:
    """One camera's side of the join for one direction."""

    t_exp: np.ndarray  # per vehicle
    tau: np.ndarray
    cost_lane: np.ndarray  # adjacent-lane cost per vehicle
    known_at: np.ndarray  # when each vehicle's passage is known
    obs: list[tuple[float, float, float]]  # (start, clash, known at) per run of frames
    delta: float


def _moves(cost: np.ndarray, half_null: float) -> np.ndarray:
    """``align_in_order``'s table of moves (0 match, 1 skip row, 2 skip column), same ties."""
    n, m = cost.shape
    best = np.zeros((n + 1, m + 1))
    move = np.zeros((n + 1, m + 1), np.int8)
    for j in range(1, m + 1):
        best[0, j], move[0, j] = best[0, j - 1] + half_null, 2
    for i in range(1, n + 1):
        best[i, 0], move[i, 0] = best[i - 1, 0] + half_null, 1
        for j in range(1, m + 1):
            options = (
                best[i - 1, j - 1] + cost[i - 1, j - 1],
                best[i - 1, j] + half_null,
                best[i, j - 1] + half_null,
            )
            k = 0
            if options[1] < options[k]:
                k = 1
            if options[2] < options[k]:
                k = 2
            best[i, j], move[i, j] = options[k], k
    return move


def _trace(move: np.ndarray, i: int, j: int) -> dict[int, int]:
    """Row -> column (or -1) along the traceback from cell (i, j)."""
    out = {}
    while i > 0 or j > 0:
        k = move[i, j]
        if k == 0:
            out[i - 1] = j - 1
            i, j = i - 1, j - 1
        elif k == 1:
            out[i - 1] = -1
            i -= 1
        else:
            j -= 1
    return out


def cameras_of(
    measured: list[dict[str, Any]], reads: list[dict[str, Any]], registry: Registry
) -> dict[tuple[str, str], tuple[list[dict[str, Any]], Camera]]:
    """Per (camera, direction): the vehicles its join considers, and its side of the join."""
    p = JoinParams()
    cams = {c.id: c for c in registry.cameras.values() if c.view in ("front", "rear")}
    vehicles, reads_of = defaultdict(list), defaultdict(list)
    for m in measured:
        for c in cams.values():
            if c.site == m["site_id"] and abs(c.lane - m["lane"]) <= 1:
                vehicles[(c.id, m["direction"])].append(m)
    for r in reads:
        if r["camera_id"] in cams:
            reads_of[(r["camera_id"], r["direction"])].append(r)
    out = {}
    for key, vs in vehicles.items():
        cam = cams[key[0]]
        t_exp, tau = expected_capture_us(
            cam.view,
            cam.d_cam_m,
            np.array([v["ts_us"] for v in vs], float),
            np.array([v["last_axle_ts_us"] for v in vs], float),
            np.array([v["speed_kmh"] / 3.6 for v in vs]),
            p,
        )
        known_at = np.array([v["last_axle_ts_us"] for v in vs], float)
        runs: list[list[float]] = []  # [start, clash, last frame]
        for r in sorted(reads_of[key], key=lambda r: r["ts_us"]):
            clash = float(cam.view == "front" and is_trailer(normalise(r["plate"])))
            if runs and r["ts_us"] - runs[-1][2] <= p.frame_gap_s * US:
                runs[-1][1], runs[-1][2] = max(runs[-1][1], clash), r["ts_us"]
            else:
                runs.append([r["ts_us"], clash, r["ts_us"]])
        out[key] = (
            vs,
            Camera(
                t_exp,
                tau,
                np.array([p.adjacent_lane_cost * (v["lane"] != cam.lane) for v in vs]),
                known_at,
                [(s, c, last + p.frame_gap_s * US) for s, c, last in runs],
                float(np.max(known_at - (t_exp - p.gate_tau * tau))),
            ),
        )
    return out


def chain_waits(cam: Camera) -> list[tuple[int, float, float, bool]]:
    """(vehicle index, final by chain closure, final by survivor merge, whether the merged
    assignment is the one the whole chain gives), event time in µs."""
    p = JoinParams()
    gate_lo = cam.t_exp - p.gate_tau * cam.tau
    gate_hi = cam.t_exp + p.gate_tau * cam.tau
    events = [(gate_lo[i], 0, i, gate_hi[i]) for i in np.argsort(cam.t_exp, kind="stable")]
    events += [(s, 1, j, s) for j, (s, _, _) in enumerate(cam.obs)]
    events.sort(key=lambda e: (e[0], e[1]))
    chains: list[tuple[list[int], list[int], float]] = []
    reach = -np.inf
    for start, kind, index, end in events:
        if start > reach or not chains:
            chains.append(([], [], start))
        reach = max(reach, end)
        chains[-1][kind].append(index)
        chains[-1] = (chains[-1][0], chains[-1][1], reach)
    out = []
    for rows, cols, reach in chains:
        if not rows:
            continue
        rows = sorted(rows, key=lambda i: cam.t_exp[i])
        cols = sorted(cols)
        whole = max([reach] + [cam.known_at[i] for i in rows] + [cam.obs[j][2] for j in cols])
        cost = np.full((len(rows), len(cols)), np.inf)
        for a, i in enumerate(rows):
            for b, j in enumerate(cols):
                dt = (cam.obs[j][0] - cam.t_exp[i]) / cam.tau[i]
                if abs(dt) <= p.gate_tau:
                    cost[a, b] = dt * dt + cam.cost_lane[i] + p.type_clash_cost * cam.obs[j][1]
        moments = {cam.known_at[i] for i in rows} | {cam.obs[j][2] for j in cols}
        moments |= {gate_hi[i] + 1 for i in rows} | {cam.obs[j][0] + cam.delta + 1 for j in cols}
        final: dict[int, float] = {}
        early: dict[int, int] = {}  # row -> column, as decided before the chain was whole
        for now in sorted(t for t in moments if t < whole):
            n = 0
            while n < len(rows) and cam.known_at[rows[n]] <= now:
                n += 1
            m = 0
            while m < len(cols) and cam.obs[cols[m]][2] <= now:
                m += 1
            move = _moves(cost[:n, :m], p.null_cost / 2)
            j0 = 0
            while j0 < m and cam.obs[cols[j0]][0] < now - cam.delta:
                j0 += 1
            next_obs = cam.obs[cols[m]][0] if m < len(cols) else np.inf
            open_rows = [a for a in range(n) if gate_hi[rows[a]] >= min(now, next_obs)]
            edges = [(n, j) for j in range(j0, m + 1)] + [(a, m) for a in open_rows]
            traces = [_trace(move, i, j) for i, j in edges]
            r = 0
            while r < n and all(r in t for t in traces) and len({t[r] for t in traces}) == 1:
                final.setdefault(rows[r], now)
                early.setdefault(r, traces[0][r])
                r += 1
        answer = _trace(_moves(cost, p.null_cost / 2), len(rows), len(cols))
        out += [
            (i, whole, final.get(i, whole), early.get(a, answer[a]) == answer[a])
            for a, i in enumerate(rows)
        ]
    return out


def waits(vehicles: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Seconds of event time from each vehicle's last axle to its final assignment on every
    one of its cameras, by chain closure and by survivor merge; and how many (vehicle, camera)
    assignments the merge fixed differently from the whole chain (it must be none)."""
    registry = load_registry()
    traffic = CitySimulator(SimConfig(vehicles=vehicles, seed=seed), registry).run()
    measured, _ = measure_passages(traffic.passages, registry)
    closure: dict[str, float] = defaultdict(float)
    merge: dict[str, float] = defaultdict(float)
    wrong = 0
    for vs, cam in cameras_of(measured, traffic.reads, registry).values():
        for i, whole, merged, same in chain_waits(cam):
            wrong += not same
            pid = vs[i]["passage_id"]
            closure[pid] = max(closure[pid], whole)
            merge[pid] = max(merge[pid], merged)
    last = {m["passage_id"]: m["last_axle_ts_us"] for m in measured}
    ids = sorted(closure)
    return (
        np.array([(closure[i] - last[i]) / US for i in ids]),
        np.array([(merge[i] - last[i]) / US for i in ids]),
        wrong,
    )


def main() -> None:
    vehicles = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    closure, merge, wrong = waits(vehicles, seed)
    for name, x in (("chain closure, per camera", closure), ("survivor merge", merge)):
        q = np.percentile(x, [50, 90, 99])
        print(
            f"{name}: p50 {q[0]:.1f} s, p90 {q[1]:.1f} s, p99 {q[2]:.1f} s, max {x.max():.1f} s"
            f" of event time after the last axle ({len(x)} vehicles, seed {seed})"
        )
    print(f"assignments the merge fixed differently from the whole chain: {wrong}")


if __name__ == "__main__":
    main()
