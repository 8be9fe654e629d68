"""Raw strip-sensor signals that follow the DESIGN §1 signal convention exactly.

A tyre with contact length ``a`` and a parabolic pressure profile rolls at speed v over a strip of
width L. The force on the strip is the wheel load times the share of the contact patch over the
strip, so ``∫ F dt = W · L / v`` for every pulse (domain.md F1'). The channel reads
``x = baseline + G · F + noise`` in int16 counts, with per-channel gain G; the passage carries the
calibration ``C ≈ 1 / G``, so ``W = C · (v / L) · Σ(x − baseline) / fs`` inverts it.

The wheel load is dynamic (domain.md F9): ``W(t) = W0 · (1 + A1 sin(2π f1 t + φ1) + A2 sin(2π
f2 t + φ2))`` with body bounce f1 in [1, 4] Hz and axle hop f2 in [8, 15] Hz; the amplitudes and
the calibration error scale with the chosen COST 323 class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT16_MAX = np.iinfo(np.int16).max
INT16_MIN = np.iinfo(np.int16).min
PRE_SAMPLES = 64  # quiet samples before the first pulse (the baseline uses the first 32)
POST_SAMPLES = 64


@dataclass(frozen=True)
class SensorLayout:
    fs_hz: int
    rows: int
    segments: int
    row_spacing_m: float
    sensor_width_m: float

    @property
    def channels(self) -> int:
        return self.rows * self.segments


@dataclass(frozen=True)
class ChannelCalibration:
    gain: np.ndarray  # counts per kg of force on the strip, per channel
    calib: np.ndarray  # published C per channel (≈ 1 / gain, with calibration error)
    baseline: np.ndarray  # int baseline per channel
    noise_counts: float


def make_calibration(
    rng: np.random.Generator, layout: SensorLayout, noise_scale: float
) -> ChannelCalibration:
    """One device's channels: sensitivity spread, calibration error, baselines and noise."""
    gain = 4.0 * rng.uniform(0.9, 1.1, size=layout.channels)
    cal_error = rng.uniform(-0.008, 0.008, size=layout.channels) * noise_scale
    calib = (1.0 / gain) * (1.0 + cal_error)
    baseline = rng.integers(200, 1500, size=layout.channels).astype(np.float64)
    return ChannelCalibration(gain, calib.astype(np.float32), baseline, 6.0 * noise_scale)


def _patch_cdf(u: np.ndarray, a: float) -> np.ndarray:
    """CDF of the parabolic contact-pressure profile on [-a/2, a/2]."""
    z = np.clip(2.0 * u / a, -1.0, 1.0)
    return 0.5 + 0.75 * z - 0.25 * z**3


def strip_force(
    t: np.ndarray,
    t_centre: float,
    speed: float,
    load: np.ndarray | float,
    contact_m: float,
    width_m: float,
) -> np.ndarray:
    """Force (kg) on the strip from a wheel whose patch centre is over it at t_centre."""
    c = speed * (t - t_centre)
    share = _patch_cdf(width_m / 2.0 - c, contact_m) - _patch_cdf(-width_m / 2.0 - c, contact_m)
    return load * share


@dataclass(frozen=True)
class Passage:
    samples: np.ndarray  # int16 [channels, n]
    t_axle_us: np.ndarray  # int64 time offset of each axle on row 0 from the first sample
    n_samples: int


def synthesise(
    rng: np.random.Generator,
    layout: SensorLayout,
    cal: ChannelCalibration,
    axle_loads_kg: np.ndarray,
    spacings_m: np.ndarray,
    speed_ms: float,
    contact_m: float,
    noise_scale: float,
    *,
    accel_ms2: float = 0.0,
    side_share: np.ndarray | None = None,
    dynamic: bool = True,
    noise: bool = True,
) -> Passage:
    """Samples of one passage. ``side_share[r, s]`` is the share of the axle load on segment s of
    row r (default: near-even left/right split); ``accel_ms2`` makes the vehicle speed up."""
    n_axles = axle_loads_kg.size
    positions = np.concatenate([[0.0], np.cumsum(spacings_m)])  # axle k behind axle 0
    span = (
        positions[-1] + (layout.rows - 1) * layout.row_spacing_m + contact_m + layout.sensor_width_m
    )
    pulse_s = (contact_m + layout.sensor_width_m) / speed_ms
    t0 = PRE_SAMPLES / layout.fs_hz + pulse_s  # first patch centre on row 0
    # position of axle 0 relative to row 0 at time t: s(t) = v (t - t0) + a/2 (t - t0)^2
    if accel_ms2 == 0.0:
        duration = t0 + span / speed_ms
    else:
        disc = speed_ms**2 + 2.0 * accel_ms2 * span
        if disc <= 0:
            raise ValueError("the vehicle stops before it has crossed the sensors")
        duration = t0 + (np.sqrt(disc) - speed_ms) / accel_ms2
    n = int(np.ceil(duration * layout.fs_hz)) + POST_SAMPLES
    t = np.arange(n) / layout.fs_hz
    signal = np.zeros((layout.channels, n))

    def crossing_time(distance: float) -> float:
        if accel_ms2 == 0.0:
            return t0 + distance / speed_ms
        return t0 + (np.sqrt(speed_ms**2 + 2.0 * accel_ms2 * distance) - speed_ms) / accel_ms2

    if side_share is None:
        imbalance = rng.uniform(-0.04, 0.04, size=n_axles) if noise else np.zeros(n_axles)
        side_share = np.zeros((layout.rows, layout.segments, n_axles))
        side_share[:, :, :] = 1.0 / layout.segments
        if layout.segments == 2:
            side_share[:, 0, :] += imbalance
            side_share[:, 1, :] -= imbalance
    elif side_share.ndim == 2:
        side_share = np.repeat(side_share[:, :, None], n_axles, axis=2)

    amp1 = rng.uniform(0.0, 0.09, size=n_axles) * noise_scale if dynamic else np.zeros(n_axles)
    amp2 = rng.uniform(0.0, 0.035, size=n_axles) * noise_scale if dynamic else np.zeros(n_axles)
    f1, f2 = rng.uniform(1.0, 4.0, size=n_axles), rng.uniform(8.0, 15.0, size=n_axles)
    ph1, ph2 = rng.uniform(0, 2 * np.pi, size=n_axles), rng.uniform(0, 2 * np.pi, size=n_axles)
    half = int(np.ceil(1.5 * pulse_s * layout.fs_hz)) + 2
    t_axle_row0 = np.zeros(n_axles)
    for k in range(n_axles):
        for r in range(layout.rows):
            tc = crossing_time(positions[k] + r * layout.row_spacing_m)
            if r == 0:
                t_axle_row0[k] = tc
            v_here = speed_ms + accel_ms2 * (tc - t0)
            centre = int(round(tc * layout.fs_hz))
            lo, hi = max(0, centre - half), min(n, centre + half + 1)
            tt = t[lo:hi]
            w = axle_loads_kg[k] * (
                1.0
                + amp1[k] * np.sin(2 * np.pi * f1[k] * tt + ph1[k])
                + amp2[k] * np.sin(2 * np.pi * f2[k] * tt + ph2[k])
            )
            force = strip_force(tt, tc, v_here, w, contact_m, layout.sensor_width_m)
            for s in range(layout.segments):
                c = r * layout.segments + s
                signal[c, lo:hi] += cal.gain[c] * side_share[r, s, k] * force
    signal += cal.baseline[:, None]
    if noise:
        signal += rng.normal(0.0, cal.noise_counts, size=signal.shape)
        drift = rng.uniform(-1.0, 1.0, size=layout.channels) * cal.noise_counts
        signal += drift[:, None] * np.linspace(0.0, 1.0, n)[None, :]
    samples = np.clip(np.rint(signal), INT16_MIN, INT16_MAX).astype(np.int16)
    return Passage(samples, np.rint(t_axle_row0 * 1e6).astype(np.int64), n)
