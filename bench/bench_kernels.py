"""Kernel throughput, each against a baseline measured in the same process (ratios are the
headline: these machines are noisy). ``python -m bench.run`` turns the JSON into summary.json."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import plates
from kernels.axles import MAX_AXLES, axle_batch
from kernels.verdicts import VerdictInputs, decide
from schemas.policy import load_policy
from tests.kernels.reference_axles import axles_reference


@pytest.mark.benchmark(group="axles")
def test_axles_kernel(benchmark, passage_batch):
    axle_batch(*passage_batch.args())  # compile outside the timer
    result = benchmark(axle_batch, *passage_batch.args())
    benchmark.extra_info["samples"] = int(passage_batch.samples.size)
    assert result.axle_count.size == passage_batch.offsets.size - 1


@pytest.mark.benchmark(group="axles")
def test_axles_numpy_max_baseline(benchmark, passage_batch):
    """A full read of the same array by NumPy: the memory-bandwidth yardstick."""
    benchmark(passage_batch.samples.max)
    benchmark.extra_info["samples"] = int(passage_batch.samples.size)


@pytest.mark.benchmark(group="axles")
def test_axles_python_reference_baseline(benchmark, traffic):
    """The slow, obvious reference on two passages (per-sample cost is what is compared)."""
    picked = traffic.passages[:2]
    decoded = [
        (np.frombuffer(p["samples"], "<i2").reshape(p["rows"] * p["segments"], -1).tolist(), p)
        for p in picked
    ]

    def run():
        for channels, p in decoded:
            axles_reference(
                channels,
                p["rows"],
                p["segments"],
                p["fs_hz"],
                p["row_spacing_m"],
                p["sensor_width_m"],
                list(p["calib"]),
            )

    benchmark.pedantic(run, rounds=2, iterations=1)
    benchmark.extra_info["samples"] = int(sum(len(p["samples"]) // 2 for p in picked))


@pytest.mark.benchmark(group="plates")
def test_plates_kernel_at_matching_threshold(benchmark, plate_sets):
    """All pairs within M3's 'possible match' distance (1.0): the batch API's use."""
    model = plates.cost_model("浙")
    a = plates.EncodedPlates.of(plate_sets[0], model)
    b = plates.EncodedPlates.of(plate_sets[1], model)
    benchmark(plates.many_to_many_int, a, b, model, 1.0)
    benchmark.extra_info["pairs"] = len(plate_sets[0]) * len(plate_sets[1])


@pytest.mark.benchmark(group="plates")
def test_plates_kernel_full_distances(benchmark, plate_sets):
    model = plates.cost_model("浙")
    a = plates.EncodedPlates.of(plate_sets[0], model)
    b = plates.EncodedPlates.of(plate_sets[1], model)
    benchmark(plates.many_to_many_int, a, b, model, None)
    benchmark.extra_info["pairs"] = len(plate_sets[0]) * len(plate_sets[1])


@pytest.mark.benchmark(group="plates")
def test_plates_rapidfuzz_generic_weights_baseline(benchmark, plate_sets):
    """rapidfuzz's Levenshtein with non-uniform weights (its generic path), one worker."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    benchmark(
        process.cdist,
        plate_sets[0],
        plate_sets[1],
        scorer=Levenshtein.distance,
        scorer_kwargs={"weights": (2, 2, 3)},
        workers=1,
    )
    benchmark.extra_info["pairs"] = len(plate_sets[0]) * len(plate_sets[1])


@pytest.fixture(scope="module")
def verdict_inputs(smoke):
    n = 10_000 if smoke else 1_000_000
    rng = np.random.default_rng(3)
    layouts = np.array(
        [
            [3.4, 1.35, 7.0, 1.31, 1.31],
            [1.85, 3.0, 7.0, 1.31, 1.31],
            [3.6, 7.0, 1.35, 0, 0],
            [4.5, 0, 0, 0, 0],
        ]
    )
    counts = np.array([6, 6, 4, 2])
    pick = rng.integers(0, 4, size=n)
    spacings = np.zeros((n, MAX_AXLES - 1))
    spacings[:, :5] = layouts[pick]
    t0 = 1_795_000_000_000_000
    return VerdictInputs(
        axle_count=counts[pick],
        axle_spacings_m=spacings,
        gvw_kg=rng.uniform(3_000, 70_000, n),
        speed_kmh=rng.uniform(20, 90, n),
        flags=np.zeros(n, np.uint32),
        ts_us=np.full(n, t0),
        cert_from_us=np.full(n, t0 - 10**12),
        cert_to_us=np.full(n, t0 + 10**12),
        device_error_pct=np.full(n, 5.0),
        plate_confidence=rng.uniform(0.5, 1.0, n),
        air_suspension=np.full(n, -1, np.int8),
        single_tyre_axles=np.full(n, -1),
    )


@pytest.mark.benchmark(group="verdicts")
def test_verdicts_kernel(benchmark, verdict_inputs):
    policy = load_policy()
    decide(verdict_inputs, policy)
    benchmark(decide, verdict_inputs, policy)
    benchmark.extra_info["vehicles"] = int(verdict_inputs.gvw_kg.size)
