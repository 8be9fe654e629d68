"""Batched gateway mode against per-vehicle baselines (issue 7): ``batched_vehicles_per_s``,
``batched_vs_quix_bare`` (vehicles/s of the worker over batches / messages/s of a bare Quix
Streams loop over the same vehicles one message each), the bare Faust loop over those messages,
and produce→verdict latency at 10, 50 and 90 % of the measured maximum. In ``make test`` a
small version runs once so the harness cannot rot; figures are reported, not asserted."""

from __future__ import annotations

import asyncio

import pytest

from bench.broker import bare_rate
from bench.gateway import (
    gateway_latency,
    gateway_run,
    make_batches,
    per_vehicle_messages,
    publish,
)
from schemas import topics as T
from sim.config import ARCHIVE_START, SimConfig
from sim.gateway import pool_of
from sim.traffic import CitySimulator
from streams.embedded import embedded_stack

PARTITIONS = 4
FRACTIONS = (0.1, 0.5, 0.9)
# the per-vehicle copy for the baselines: a topic of its own (on wim.vehicles, the worker
# would decide those vehicles one by one too)
SINGLES = "bench.wim-vehicles"
START = ARCHIVE_START  # the simulated archive's day (the root conftest.py)


@pytest.mark.benchmark(group="gateway")
def test_batched_gateway_vs_quix(benchmark, registry, smoke, tmp_path):
    traffic = CitySimulator(SimConfig(vehicles=600 if smoke else 3000, seed=7), registry).run()
    pool = pool_of(traffic.truth)
    start_us = int(START.timestamp() * 1e6)
    vehicles = 4000 if smoke else 1_500_000
    gateway = make_batches(pool, registry, vehicles, start_us)
    singles = per_vehicle_messages(gateway[: (8 if smoke else 2000)])
    stretch_s = 1.0 if smoke else 4.0
    made = []

    def make_paced(fraction, rate):
        made.append(len(made))
        n = max(int(fraction * rate * stretch_s), 500)
        later = start_us + (len(made) + 1) * 3_600_000_000
        return make_batches(
            pool, registry, n, later, seed=10 + len(made), prefix=f"paced{len(made)}"
        )

    def run():
        with embedded_stack(tmp_path / "stack") as stack:
            asyncio.run(T.ensure_topics(stack.bootstrap, PARTITIONS, (*T.ALL, SINGLES)))
            asyncio.run(publish(stack.bootstrap, SINGLES, singles))
            asyncio.run(
                publish(stack.bootstrap, T.WIM_BATCHES, [(b.key, b.value) for b in gateway])
            )
            topic = (SINGLES,)
            quix = bare_rate(
                "bare_quix", stack, topic, len(singles), PARTITIONS, tmp_path / "quix.log"
            )
            faust = bare_rate(
                "bare_faust", stack, topic, len(singles), PARTITIONS, tmp_path / "faust.log"
            )
            run = gateway_run(stack, gateway, PARTITIONS, tmp_path)
        warm = make_batches(pool, registry, 2000 if smoke else 20000, start_us, prefix="warm")
        fractions = (0.5,) if smoke else FRACTIONS
        latency = gateway_latency(
            warm, fractions, make_paced, run.vehicles_per_s, PARTITIONS, tmp_path
        )
        return quix, faust, run, latency

    (tmp_path / "stack").mkdir()
    quix, faust, run, latency = benchmark.pedantic(run, rounds=1, iterations=1)
    info = benchmark.extra_info
    info["batched_vehicles_per_s"] = run.vehicles_per_s
    info["quix_bare_vehicle_messages_per_s"] = quix
    info["faust_bare_vehicle_messages_per_s"] = faust
    info["batched_vs_quix_bare"] = run.vehicles_per_s / quix
    info["batched_vs_faust_bare"] = run.vehicles_per_s / faust
    info["vehicles_per_batch"] = gateway[0].vehicles
    info["batched_latency_ms"] = {str(f): v for f, v in latency.items()}
    info["batched_worker_rss_mib"] = run.worker_rss_mib
    print(
        f"\nbatched {run.vehicles_per_s:,.0f} veh/s; bare Quix {quix:,.0f} msg/s; bare Faust "
        f"{faust:,.0f} msg/s; latency "
        + "; ".join(
            f"{f:.0%}: " + ", ".join(f"{k} {v:.0f} ms" for k, v in lat.items())
            for f, lat in latency.items()
        )
    )
    assert run.vehicles_per_s > 0 and quix > 0 and faust > 0
