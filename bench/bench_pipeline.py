"""The worker on the embedded broker against a bare Faust loop over the same messages (issue 4):
``pipeline_vs_bare_faust`` and ``p99_weigh_to_verdict_ms`` at half the measured rate. In
``make test`` a small version runs once so the harness cannot rot; the figures are reported, not
asserted (timing on a shared machine is not a unit test)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from bench.broker import bare_faust_rate, fill, pipeline_run, workload
from streams.embedded import embedded_stack

PARTITIONS = 4


@pytest.mark.benchmark(group="pipeline")
def test_pipeline_vs_bare_faust(benchmark, registry, smoke, tmp_path):
    vehicles = 300 if smoke else 12_000
    start = dt.datetime(2026, 11, 20, 8, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    work = workload(registry, vehicles, seed=21, start=start)

    def run():
        with embedded_stack(tmp_path / "stack") as stack:
            asyncio.run(fill(stack, work.traffic, PARTITIONS))
            bare = bare_faust_rate(stack, work, PARTITIONS, tmp_path / "bare.log")
            pipe = pipeline_run(
                stack,
                registry,
                work,
                PARTITIONS,
                tmp_path,
                latency_fraction=0.5,
                latency_vehicles=300 if smoke else 3000,
            )
        return bare, pipe

    (tmp_path / "stack").mkdir()
    bare, pipe = benchmark.pedantic(run, rounds=1, iterations=1)
    info = benchmark.extra_info
    info["bare_faust_messages_per_s"] = bare
    info["pipeline_messages_per_s"] = pipe.messages_per_s
    info["pipeline_vehicles_per_s"] = pipe.vehicles_per_s
    info["messages_per_vehicle"] = work.messages_per_vehicle
    info["pipeline_vs_bare_faust"] = pipe.messages_per_s / bare
    info["latency_at_vehicles_per_s"] = pipe.paced_vehicles_per_s
    info.update({f"{k}_weigh_to_verdict_ms": v for k, v in pipe.latency_ms.items()})
    print(
        f"\nbare Faust {bare:,.0f} msg/s; pipeline {pipe.messages_per_s:,.0f} msg/s "
        f"({pipe.vehicles_per_s:,.0f} vehicles/s) = {info['pipeline_vs_bare_faust']:.2f}; "
        f"latency at {pipe.paced_vehicles_per_s:,.0f} veh/s: "
        + ", ".join(f"{k} {v:.0f} ms" for k, v in pipe.latency_ms.items())
    )
    assert bare > 0 and pipe.messages_per_s > 0
