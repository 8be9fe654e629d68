"""``kernels.settle``: a vehicle called settled gets the same reads from ``join_camera`` however
the inputs go on, within the bounds it was told — checked against the join of the finished
inputs on random chains and random continuations."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.plates import JoinParams, join_camera
from kernels.settle import settled_camera

SECOND = 1_000_000
PARAMS = JoinParams()


def _reads_of(assignment: np.ndarray, vehicle: int) -> set[int]:
    return {int(r) for r in np.flatnonzero(assignment == vehicle)}


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_a_settled_vehicle_keeps_its_reads_whatever_comes_later(data):
    times = st.integers(0, 20 * SECOND).map(float)
    taus = st.integers(SECOND // 3, 2 * SECOND).map(float)
    n_v, n_r = data.draw(st.integers(0, 8)), data.draw(st.integers(0, 10))
    t_exp = [data.draw(times) for _ in range(n_v)]
    tau = [data.draw(taus) for _ in range(n_v)]
    lanes = [data.draw(st.integers(1, 3)) for _ in range(n_v)]
    camera_lane = data.draw(st.integers(1, 3))
    read_ts = [data.draw(times) for _ in range(n_r)]
    clash = [float(data.draw(st.booleans())) for _ in range(n_r)]
    texp_from = data.draw(st.integers(0, 26 * SECOND).map(float))
    gate_from = texp_from - data.draw(st.integers(0, 6 * SECOND))
    read_from = data.draw(st.integers(0, 26 * SECOND).map(float))
    # what comes later, within the bounds (often right at them)
    later = st.one_of(st.just(0), st.integers(0, SECOND), st.integers(0, 8 * SECOND))
    for _ in range(data.draw(st.integers(0, 4))):
        t = data.draw(taus)
        lo = max(texp_from, gate_from + PARAMS.gate_tau * t)
        t_exp.append(lo + data.draw(later))
        tau.append(t)
        lanes.append(data.draw(st.integers(1, 3)))
    for _ in range(data.draw(st.integers(0, 5))):
        read_ts.append(read_from + data.draw(later))
        clash.append(float(data.draw(st.booleans())))

    def arrays(nv, nr):
        return (
            np.array(t_exp[:nv], dtype=np.float64),
            np.array(tau[:nv], dtype=np.float64),
            np.array(lanes[:nv], dtype=np.int64),
            camera_lane,
            np.array(read_ts[:nr], dtype=np.float64),
            np.array(clash[:nr], dtype=np.float64),
        )

    early, settled = settled_camera(*arrays(n_v, n_r), texp_from, gate_from, read_from, PARAMS)
    final = join_camera(*arrays(len(t_exp), len(read_ts)), PARAMS)
    for v in np.flatnonzero(settled):
        assert _reads_of(early, v) == _reads_of(final, v), (v, early, final)
    assert all(settled[v] for v in np.flatnonzero(early >= 0) for v in [early[v]])


def test_a_closed_chain_is_settled_and_a_lone_early_truck_before_the_end_of_the_inputs():
    # two trucks 20 s apart, each read once; later inputs only after 40 s
    t_exp = np.array([5.0, 25.0]) * SECOND
    tau = np.array([0.6, 0.6]) * SECOND
    reads = np.array([5.1, 25.2]) * SECOND
    early, settled = settled_camera(
        t_exp, tau, np.array([1, 1]), 1, reads, np.zeros(2), 40 * SECOND, 38 * SECOND, 40 * SECOND
    )
    assert settled.tolist() == [True, True] and early.tolist() == [0, 1]
    # the second truck's gate is still open for reads: only the first is settled
    early, settled = settled_camera(
        t_exp,
        tau,
        np.array([1, 1]),
        1,
        reads[:1],
        np.zeros(1),
        40 * SECOND,
        38 * SECOND,
        25 * SECOND,
    )
    assert settled.tolist() == [True, False] and early.tolist() == [0]
