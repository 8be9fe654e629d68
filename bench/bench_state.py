"""Worker memory with a million plates of state (``worker_rss_1m_plates_mib``), against the same
run with no plates (see ``bench.state``). Smoke size in ``make test``."""

from __future__ import annotations

import pytest

from bench.broker import workload
from bench.gateway import make_batches
from bench.state import state_run, synthetic_plates
from sim.config import ARCHIVE_START, SimConfig
from sim.gateway import pool_of
from sim.traffic import CitySimulator
from streams.embedded import embedded_stack

PARTITIONS = 4
START = ARCHIVE_START  # the simulated archive's day (the root conftest.py)


@pytest.mark.benchmark(group="state")
def test_worker_rss_with_a_million_plates(benchmark, registry, smoke, tmp_path):
    n = 10_000 if smoke else 1_000_000
    plates = synthetic_plates(n)
    work = workload(registry, 200 if smoke else 3000, seed=23, start=START)
    pool = pool_of(CitySimulator(SimConfig(vehicles=500, seed=24), registry).run().truth)
    start_us = int(START.timestamp() * 1e6) + 7_200_000_000
    gateway = make_batches(pool, registry, 2000 if smoke else 200_000, start_us, prefix="state")
    # some of the gateway's trucks are among the listed plates: the 黑名单 path runs too
    listed = plates + sorted({p for p in pool.plate_front if p})[:50]

    def run():
        out = {}
        for name, state in (("empty", []), ("plates", listed)):
            here = tmp_path / name
            (here / "stack").mkdir(parents=True)
            with embedded_stack(here / "stack") as stack:
                out[name] = state_run(stack, state, work, gateway, PARTITIONS, here)
        return out

    runs = benchmark.pedantic(run, rounds=1, iterations=1)
    info = benchmark.extra_info
    info["plates"] = n
    info["worker_rss_1m_plates_mib"] = runs["plates"].worker_peak_rss_mib
    info["worker_rss_no_plates_mib"] = runs["empty"].worker_peak_rss_mib
    info["redis_used_1m_plates_mib"] = runs["plates"].redis_used_mib
    info["redis_used_no_plates_mib"] = runs["empty"].redis_used_mib
    print(
        f"\n{n:,} plates: worker peak RSS {runs['plates'].worker_peak_rss_mib:,.0f} MiB "
        f"(no plates {runs['empty'].worker_peak_rss_mib:,.0f}); Redis "
        f"{runs['plates'].redis_used_mib:,.0f} MiB (no plates {runs['empty'].redis_used_mib:,.0f})"
    )
    assert runs["plates"].worker_peak_rss_mib > 0
