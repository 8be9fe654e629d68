"""The axle kernel against its slow reference, on hand-picked edge cases and Hypothesis."""

from __future__ import annotations

import numpy as np
import numpy.testing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels.axles import (
    AxleParams,
    BurnosTemperatureModel,
    apply_temperature,
    axle_batch,
    axles,
)
from schemas import flags as F
from sim.signals import SensorLayout, make_calibration, synthesise
from tests.kernels.reference_axles import axles_reference

LAYOUT = SensorLayout(fs_hz=2000, rows=4, segments=2, row_spacing_m=1.0, sensor_width_m=0.05)


def _passage(loads, spacings, kmh=60.0, seed=0, layout=LAYOUT, **kwargs):
    rng = np.random.default_rng(seed)
    cal = make_calibration(rng, layout, noise_scale=1.0)
    p = synthesise(
        rng,
        layout,
        cal,
        np.asarray(loads, float),
        np.asarray(spacings, float),
        kmh / 3.6,
        0.22,
        1.0,
        **kwargs,
    )
    return p.samples, cal.calib.astype(np.float64)


def _check(samples, calib, layout=LAYOUT, params=None):
    """Kernel == reference on one passage; returns the kernel result."""
    got = axles(
        samples,
        layout.rows,
        layout.segments,
        layout.fs_hz,
        layout.row_spacing_m,
        layout.sensor_width_m,
        calib,
        params,
    )
    want = axles_reference(
        [list(map(int, ch)) for ch in samples],
        layout.rows,
        layout.segments,
        layout.fs_hz,
        layout.row_spacing_m,
        layout.sensor_width_m,
        list(calib),
        params,
    )
    k = int(got.axle_count[0])
    assert k == want["count"]
    assert F.to_names(got.flags[0]) == F.to_names(want["flags"])
    npt.assert_allclose(got.speed_kmh[0], want["speed_kmh"], rtol=1e-9)
    npt.assert_allclose(got.loads(0), want["loads"], rtol=1e-9, atol=1e-9)
    npt.assert_allclose(got.spacings(0), want["spacings"], rtol=1e-9, atol=1e-12)
    if k:
        npt.assert_array_equal(got.axle_groups[0, :k], want["groups"] or [0])
        npt.assert_allclose(got.t_first_axle_s[0], want["t_first"], rtol=1e-9)
        npt.assert_allclose(got.t_last_axle_s[0], want["t_last"], rtol=1e-9)
    npt.assert_allclose(got.gvw_kg[0], want["gvw"], rtol=1e-9, atol=1e-9)
    return got


def test_simulated_city_passages_match_the_reference(city_traffic):
    for p in city_traffic.passages[:60]:
        channels = p["rows"] * p["segments"]
        samples = np.frombuffer(p["samples"], dtype="<i2").reshape(channels, -1)
        layout = SensorLayout(
            p["fs_hz"], p["rows"], p["segments"], p["row_spacing_m"], p["sensor_width_m"]
        )
        _check(samples, np.array(p["calib"], dtype=np.float64), layout)


def test_no_axle():
    samples, calib = _passage([], [])
    got = _check(samples, calib)
    assert got.axle_count[0] == 0 and got.flags[0] & F.NO_AXLES


def test_one_axle():
    got = _check(*_passage([6000.0], []))
    assert got.axle_count[0] == 1
    assert abs(got.gvw_kg[0] / 6000 - 1) < 0.06


def test_nine_axles():
    loads = [7000, 9000, 9000, 8000, 8000, 8000, 8000, 8000, 8000]
    spacings = [3.2, 1.35, 6.0, 1.31, 1.31, 4.0, 1.31, 1.31]
    got = _check(*_passage(loads, spacings))
    assert got.axle_count[0] == 9
    npt.assert_allclose(got.spacings(0), spacings, atol=0.05)
    assert list(got.axle_groups[0, :9]) == [0, 1, 1, 2, 2, 2, 3, 3, 3]


def test_pulse_cut_at_the_window_edge():
    samples, calib = _passage([7000, 11000], [4.0])
    cut = samples[:, : samples.shape[1] - 160].copy()  # the last axle leaves after the window
    got = _check(cut, calib)
    assert got.flags[0] & F.PULSE_CUT or got.flags[0] & F.AXLE_COUNT_MISMATCH


def test_dead_channel_is_flagged_and_its_row_left_out_of_the_loads():
    samples, calib = _passage([7000, 11000], [4.0])
    samples = samples.copy()
    samples[3, :] = 900  # row 1, right segment: flat line
    got = _check(samples, calib)
    assert got.flags[0] & F.DEAD_CHANNEL
    assert got.axle_count[0] == 2
    assert abs(got.gvw_kg[0] / 18000 - 1) < 0.06


def test_nan_calibration_gives_no_load_and_a_flag():
    samples, calib = _passage([7000, 11000], [4.0])
    calib = calib.copy()
    calib[2] = np.nan
    got = _check(samples, calib)
    assert got.flags[0] & F.BAD_CALIBRATION
    assert got.gvw_kg[0] == 0.0


def test_read_only_input_arrays():
    samples, calib = _passage([7000, 11000], [4.0])
    ro = np.frombuffer(samples.tobytes(), dtype="<i2")
    ro_calib = np.frombuffer(calib.tobytes(), dtype=np.float64)
    assert not ro.flags.writeable
    got = axles(ro, 4, 2, 2000, 1.0, 0.05, ro_calib)
    assert got.axle_count[0] == 2


def test_clipped_signal_is_flagged():
    samples, calib = _passage([7000, 11000], [4.0])
    samples = samples.copy()
    hot = samples[0] > 3000
    samples[0, hot] = 32767
    got = _check(samples, calib)
    assert got.flags[0] & F.CLIPPED


def test_lane_change_one_sided_pulses():
    side = np.array([[0.5, 0.0], [0.5, 0.0], [0.5, 0.5], [0.5, 0.5]])
    got = _check(*_passage([7000, 11000], [4.0], side_share=side))
    assert got.flags[0] & F.LANE_CHANGE


def test_acceleration_is_flagged():
    got = _check(
        *_passage([7000, 9000, 9000, 9000, 9000], [3.4, 1.3, 7.0, 1.31], kmh=20, accel_ms2=1.5)
    )
    assert got.flags[0] & F.ACCELERATION


def test_speed_out_of_range():
    got = _check(*_passage([7000, 11000], [4.0], kmh=40), params=AxleParams(speed_max_kmh=30))
    assert got.flags[0] & F.SPEED_OUT_OF_RANGE


def test_batch_equals_one_at_a_time():
    passages = [_passage([7000, 11000], [4.0], seed=s, kmh=30 + 10 * s) for s in range(4)]
    samples = np.concatenate([p[0].reshape(-1) for p in passages])
    offsets = np.cumsum([0] + [p[0].size for p in passages])
    calib = np.concatenate([p[1] for p in passages])
    batch = axle_batch(samples, offsets, 4, 2, 2000, 1.0, 0.05, calib)
    for i, (s, c) in enumerate(passages):
        one = axles(s, 4, 2, 2000, 1.0, 0.05, c)
        npt.assert_array_equal(batch.axle_loads_kg[i], one.axle_loads_kg[0])
        assert batch.flags[i] == one.flags[0]


def test_empty_batch():
    out = axle_batch(np.zeros(0, np.int16), np.array([0]), 4, 2, 2000, 1.0, 0.05, np.zeros(0))
    assert out.axle_count.shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"samples": np.zeros(800, np.float32)}, TypeError, "int16"),
        ({"offsets": np.array([0, 700])}, ValueError, "rise from 0"),
        (
            {
                "samples": np.zeros(804, np.int16),
                "offsets": np.array([0, 804]),
                "rows": 4,
                "segments": 2,
                "calib": np.ones(8),
                "fs_hz": 2000,
            },
            ValueError,
            "not a multiple",
        ),
        ({"rows": 1}, ValueError, "rows"),
        ({"fs_hz": 0.0}, ValueError, "fs_hz"),
        ({"calib": np.ones(3)}, ValueError, "calib is shorter"),
    ],
)
def test_wrapper_rejects_bad_input_with_advice(kwargs, error, message):
    args = {
        "samples": np.zeros(800, np.int16),
        "offsets": np.array([0, 800]),
        "rows": 4,
        "segments": 2,
        "fs_hz": 2000,
        "row_spacing_m": 1.0,
        "sensor_width_m": 0.05,
        "calib": np.ones(8),
    }
    args.update(kwargs)
    with pytest.raises(error, match=message):
        axle_batch(**args)


def test_temperature_model_is_optional_and_flags_what_it_changed():
    got = axles(
        *_passage([7000, 11000], [4.0])[:1],
        4,
        2,
        2000,
        1.0,
        0.05,
        _passage([7000, 11000], [4.0])[1],
    )
    corrected = apply_temperature(got, np.array([35.0]), BurnosTemperatureModel())
    assert corrected.flags[0] & F.TEMPERATURE_CORRECTED
    assert corrected.gvw_kg[0] != got.gvw_kg[0]
    unchanged = apply_temperature(got, np.array([np.nan]), BurnosTemperatureModel())
    assert unchanged.gvw_kg[0] == got.gvw_kg[0]
    assert not unchanged.flags[0] & F.TEMPERATURE_CORRECTED


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_axles=st.integers(0, 9),
    kmh=st.floats(5.0, 110.0),
    fs=st.sampled_from([1000, 2000, 5000]),
    rows=st.integers(2, 5),
    seed=st.integers(0, 10_000),
    data=st.data(),
)
def test_hypothesis_kernel_equals_reference(n_axles, kmh, fs, rows, seed, data):
    loads = data.draw(st.lists(st.floats(300.0, 14_000.0), min_size=n_axles, max_size=n_axles))
    spacings = data.draw(
        st.lists(st.floats(1.1, 8.0), min_size=max(n_axles - 1, 0), max_size=max(n_axles - 1, 0))
    )
    layout = SensorLayout(fs_hz=fs, rows=rows, segments=2, row_spacing_m=1.0, sensor_width_m=0.05)
    samples, calib = _passage(loads, spacings, kmh=kmh, seed=seed, layout=layout)
    got = _check(samples, calib, layout)
    if rows >= 3 and n_axles and not got.flags[0] & ~np.uint32(F.ACCELERATION):
        assert got.axle_count[0] == n_axles
        assert abs(got.gvw_kg[0] / sum(loads) - 1) < 0.12
