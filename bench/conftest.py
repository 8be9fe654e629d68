"""Inputs of the benchmarks, built outside the timers. In ``make test`` (benchmarks disabled) the
same benchmarks run once on small inputs, so the suite cannot rot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from schemas.registry import load_registry
from sim.config import SimConfig
from sim.traffic import CitySimulator


@pytest.fixture(scope="session")
def smoke(request) -> bool:
    opt = request.config.getoption
    return bool(opt("benchmark_disable")) and not opt("benchmark_enable")


@pytest.fixture(scope="session")
def registry():
    return load_registry()


@pytest.fixture(scope="session")
def traffic(registry, smoke):
    return CitySimulator(SimConfig(vehicles=200 if smoke else 3000, seed=5), registry).run()


@dataclass(frozen=True)
class PassageBatch:
    samples: np.ndarray
    offsets: np.ndarray
    rows: np.ndarray
    segments: np.ndarray
    fs: np.ndarray
    spacing: np.ndarray
    width: np.ndarray
    calib: np.ndarray

    def args(self):
        return (
            self.samples,
            self.offsets,
            self.rows,
            self.segments,
            self.fs,
            self.spacing,
            self.width,
            self.calib,
        )


@pytest.fixture(scope="session")
def passage_batch(traffic) -> PassageBatch:
    ps = traffic.passages
    lengths = np.array([len(p["samples"]) // 2 for p in ps])
    return PassageBatch(
        samples=np.frombuffer(b"".join(p["samples"] for p in ps), dtype="<i2"),
        offsets=np.concatenate([[0], np.cumsum(lengths)]),
        rows=np.array([p["rows"] for p in ps]),
        segments=np.array([p["segments"] for p in ps]),
        fs=np.array([p["fs_hz"] for p in ps], dtype=float),
        spacing=np.array([p["row_spacing_m"] for p in ps]),
        width=np.array([p["sensor_width_m"] for p in ps]),
        calib=np.concatenate([np.asarray(p["calib"], dtype=float) for p in ps]),
    )


@pytest.fixture(scope="session")
def plate_sets(smoke):
    from sim.plates import new_plate

    rng = np.random.default_rng(9)
    n = 200 if smoke else 2000
    a = [new_plate(rng, local=bool(rng.random() < 0.6)) for _ in range(n)]
    b = [new_plate(rng, local=bool(rng.random() < 0.6)) for _ in range(n)]
    return a, b
