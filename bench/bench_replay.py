"""End-to-end figures without a broker: ``zhichao replay`` from Avro files, and the simulator."""

from __future__ import annotations

import pytest

from sim.config import SimConfig
from sim.output import write_traffic
from sim.traffic import CitySimulator
from zhichao.replay import load_inputs, replay


@pytest.fixture(scope="module")
def avro_dir(tmp_path_factory, traffic):
    out = tmp_path_factory.mktemp("replay")
    write_traffic(traffic, out, "avro")
    return out


@pytest.mark.benchmark(group="replay")
def test_replay_from_avro_files(benchmark, avro_dir, registry, traffic):
    files = sorted(avro_dir.glob("*.avro"))
    replay(load_inputs(files), registry)  # compile the kernels outside the timer

    def run():
        return replay(load_inputs(files), registry)

    verdicts, _ = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["vehicles"] = len(verdicts)
    assert len(verdicts) == len(traffic.passages)


@pytest.mark.benchmark(group="replay")
def test_simulate_2000_vehicles(benchmark, registry, tmp_path, smoke):
    n = 100 if smoke else 2000

    def run():
        traffic = CitySimulator(SimConfig(vehicles=n, seed=1), registry).run()
        write_traffic(traffic, tmp_path, "avro")

    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info["vehicles"] = n
